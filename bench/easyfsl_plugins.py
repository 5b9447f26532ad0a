"""easyfsl's methods as partbench plugin learners, to run them beside partbench's own on the
same cached features and episodes (an independent implementation, one episode at a time).

    PYTHONPATH=bench python -m benchmark run --config configs/5way1shot.yaml --set \
      'learners=[protonet_cosine, pt_map, "easyfsl_plugins:PTMAP", tim, "easyfsl_plugins:TIM"]'

easyfsl (a dev dependency of partbench) runs each episode through `process_support_set` and
`forward` on an identity backbone over the features partbench hands every learner.
"""

from __future__ import annotations

import torch
from easyfsl import methods
from torch import nn

from baselines import EpisodeFeatures, Learner


class _EasyFSL(Learner):
    """One easyfsl FewShotClassifier over an identity backbone, one episode at a time."""

    method: type  # the easyfsl class
    transductive = True

    def __init__(self, **options) -> None:
        self.model = self.method(nn.Identity(), **options)

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> _EasyFSL:
        """support.embeddings (B, n_support, D), labels (B, n_support)."""
        self.support, self.labels = support.embeddings.float(), labels
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) easyfsl's scores, episode by episode."""
        scores = []
        # the runner predicts under inference mode; easyfsl's TIM fine-tunes with autograd, which
        # needs tensors made outside it
        with torch.inference_mode(False), torch.enable_grad():
            support, labels = self.support.clone(), self.labels.clone()
            for b, features in enumerate(query.embeddings.float().clone()):
                self.model.process_support_set(support[b], labels[b])
                scores.append(self.model(features).detach())
        return torch.stack(scores)


class BDCSPN(_EasyFSL):
    name, method, paper = "easyfsl_bd_cspn", methods.BDCSPN, "easyfsl 1.5.0 BDCSPN"


class LaplacianShot(_EasyFSL):
    name, method, paper = "easyfsl_laplacianshot", methods.LaplacianShot, "easyfsl LaplacianShot"


class TIM(_EasyFSL):
    name, method, paper = "easyfsl_tim", methods.TIM, "easyfsl 1.5.0 TIM"


class PTMAP(_EasyFSL):
    name, method, paper = "easyfsl_pt_map", methods.PTMAP, "easyfsl 1.5.0 PTMAP"

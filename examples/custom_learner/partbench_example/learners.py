"""A feature learner defined outside partbench: 1-nearest-neighbour by cosine similarity.

Registered through the entry point `example_nn` in this package's pyproject.toml, so after
`pip install` a config can name it: `learners: [example_nn]`. Without installing, name it by
path: `learners: ["partbench_example.learners:NearestNeighbour"]` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines import EpisodeFeatures, Learner, check_support, one_hot, to_compute


class NearestNeighbour(Learner):
    """Score of way j for a query: its highest cosine similarity to a support image of way j."""

    name = "example_nn"
    paper = "Cover & Hart 1967, nearest neighbour pattern classification (example plugin)"

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "NearestNeighbour":
        check_support(support, labels, n_way, self.name)
        self.support = F.normalize(to_compute(support.embeddings), dim=-1)  # (B, n, D)
        self.onehot = one_hot(labels, n_way).bool()  # (B, n, N)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) best cosine similarity per way."""
        q = F.normalize(to_compute(query.embeddings), dim=-1)
        similarity = torch.bmm(q, self.support.transpose(1, 2))  # (B, m, n)
        masked = similarity[..., None].masked_fill(~self.onehot[:, None], -2.0)  # (B, m, n, N)
        return masked.amax(dim=2)

"""Our batched learners against easyfsl's per-episode implementations on identical episodes.

Runs when easyfsl is installed (`pip install easyfsl==1.5.0 --no-deps`); skipped otherwise.
easyfsl scores by -||q - p|| (a square root of ours) and takes a backbone: nn.Identity over the
precomputed features.
"""

from __future__ import annotations

import pytest
import torch
from test_baselines import N_QUERY, N_WAY, base_embeddings, toy_episodes

from baselines import get_learner

easyfsl_methods = pytest.importorskip("easyfsl.methods")


def easyfsl_scores(model, support, labels, query) -> torch.Tensor:
    """(B, m, N) easyfsl scores, one process_support_set + forward per episode."""
    out = []
    with torch.no_grad():
        for e in range(support.embeddings.shape[0]):
            model.process_support_set(support.embeddings[e].float(), labels[e])
            out.append(model(query.embeddings[e].float()))
    return torch.stack(out)


@pytest.mark.parametrize("k_shot", [1, 5])
def test_protonet_agrees_with_easyfsl(k_shot):
    support, labels, query, _ = toy_episodes(b=20, k_shot=k_shot, dim=64, seed=k_shot, spread=0.4)
    ours = get_learner("protonet").fit(support, labels, N_WAY).predict(query)
    theirs = easyfsl_scores(
        easyfsl_methods.PrototypicalNetworks(torch.nn.Identity()), support, labels, query
    )
    # A hard-enough toy problem that both make mistakes, on the same queries.
    accuracy = (theirs.argmax(-1) == torch.arange(N_WAY).repeat_interleave(N_QUERY)).float().mean()
    assert 0.4 < accuracy < 0.98
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    torch.testing.assert_close(ours, -(theirs**2), rtol=1e-4, atol=1e-3)


def test_protonet_cosine_agrees_with_easyfsl_cosine_prototypes():
    # easyfsl's SimpleShot without centring/normalisation is cosine to the class mean.
    support, labels, query, _ = toy_episodes(b=20, k_shot=3, dim=64, seed=11, spread=0.4)
    ours = get_learner("protonet_cosine").fit(support, labels, N_WAY).predict(query)
    theirs = easyfsl_scores(easyfsl_methods.SimpleShot(torch.nn.Identity()), support, labels, query)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_simpleshot_agrees_with_easyfsl_in_one_shot():
    # easyfsl's SimpleShot ranks by cosine to the centroid; with one shot the centroid has unit
    # norm, so its ranking equals SimpleShot's Euclidean nearest centroid.
    support, labels, query, _ = toy_episodes(b=20, k_shot=1, dim=64, seed=12, spread=0.4)
    learner = get_learner("simpleshot")
    base = base_embeddings(64)
    learner.prepare(base)
    ours = learner.fit(support, labels, N_WAY).predict(query)
    model = easyfsl_methods.SimpleShot(
        torch.nn.Identity(), feature_centering=base.mean(0), feature_normalization=2
    )
    theirs = easyfsl_scores(model, support, labels, query)
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    torch.testing.assert_close(ours, 2 * theirs - 2, rtol=1e-4, atol=1e-5)  # -|q-c|^2 = 2cos - 2

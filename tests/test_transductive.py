"""The transductive learners (bd_cspn, laplacianshot, tim, pt_map) against easyfsl 1.5.0.

easyfsl's `BDCSPN`, `LaplacianShot`, `TIM` and `PTMAP` run one episode at a time
(process_support_set + forward, nn.Identity backbone over precomputed features); ours run all
episodes at once. All eight are deterministic, so the same predictions are required, on episodes
hard enough that both make mistakes, and the scores within float32 tolerances. The comparisons are skipped
when easyfsl is not installed (`pip install easyfsl==1.5.0 --no-deps`); the other tests run.
"""

from __future__ import annotations

import json

import pytest
import torch

import benchmark
from baselines import EpisodeFeatures, get_learner, get_learner_class, learner_names
from baselines.pt_map import power_transform
from benchmark.config.run import config_from_dict
from results.records import read_records
from results.schema import validate_result_file

N_WAY, N_QUERY = 5, 10
TRANSDUCTIVE = ("bd_cspn", "laplacianshot", "tim", "pt_map")
EASYFSL = {
    "bd_cspn": "BDCSPN",
    "laplacianshot": "LaplacianShot",
    "tim": "TIM",
    "pt_map": "PTMAP",
}
# Scores: BD-CSPN and TIM are cosines. LaplacianShot's are near-hard softmaxes of squared
# distances (here a matmul, there cdist) and PT-MAP's Sinkhorn plans (stopping on a 1e-6
# tolerance, so the last iteration may differ): 1e-4 absolute.
ATOL = {"bd_cspn": 1e-5, "laplacianshot": 1e-4, "tim": 1e-5, "pt_map": 1e-4}
# easyfsl's PT-MAP computes exp(-10 * squared distance) with no stabilisation, which underflows
# in float32 for squared distances above ~9 (entries or whole rows to 0; all of them: NaN); ours subtracts
# each row's minimum first (baselines.pt_map). Equal plans need easyfsl's regime: small features.
FEATURE_SCALE = {"pt_map": 0.1}


def episodes(
    b: int = 8,
    k_shot: int = 1,
    n_query: int = N_QUERY,
    dim: int = 32,
    seed: int = 0,
    spread: float = 0.5,
    scale: float = 1.0,
):
    """B float32 episodes: class centres ~ N(0, spread^2), images = centre + N(0, 1), times
    `scale`. Returns support, labels (B, N*K), query, truth (B, N*Q)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(b, N_WAY, dim, generator=g) * spread
    rows = torch.arange(b)[:, None]
    labels = torch.arange(N_WAY).repeat_interleave(k_shot).expand(b, -1).contiguous()
    truth = torch.arange(N_WAY).repeat_interleave(n_query).expand(b, -1).contiguous()
    support = centres[rows, labels] + torch.randn(*labels.shape, dim, generator=g)
    query = centres[rows, truth] + torch.randn(*truth.shape, dim, generator=g)
    return EpisodeFeatures(scale * support), labels, EpisodeFeatures(scale * query), truth


def easyfsl_scores(name: str, support, labels, query, **options) -> torch.Tensor:
    """(B, m, N) easyfsl scores, one process_support_set + forward per episode (the test is
    skipped without easyfsl)."""
    easyfsl_methods = pytest.importorskip("easyfsl.methods")
    model = getattr(easyfsl_methods, EASYFSL[name])(torch.nn.Identity(), **options)
    out = []
    with torch.no_grad():
        for e in range(support.embeddings.shape[0]):
            model.process_support_set(support.embeddings[e], labels[e])
            out.append(model(query.embeddings[e]))
    return torch.stack(out)


def ours(name: str, support, labels, query, **options) -> torch.Tensor:
    return get_learner(name, **options).fit(support, labels, N_WAY).predict(query)


def accuracy(scores: torch.Tensor, truth: torch.Tensor) -> float:
    return (scores.argmax(-1) == truth).float().mean().item()


def assert_same(name: str, mine: torch.Tensor, theirs: torch.Tensor, truth: torch.Tensor) -> None:
    assert torch.isfinite(theirs).all(), f"easyfsl's {name} is not finite on this data"
    assert 0.4 < accuracy(theirs, truth) < 0.98, "too easy or too hard to tell methods apart"
    assert torch.equal(mine.argmax(-1), theirs.argmax(-1)), f"{name}: other predictions"
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=ATOL[name])


@pytest.mark.parametrize("k_shot", [1, 5])
@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_same_predictions_as_easyfsl(name, k_shot):
    support, labels, query, truth = episodes(
        k_shot=k_shot, seed=k_shot, scale=FEATURE_SCALE.get(name, 1.0)
    )
    if name == "pt_map":  # the regime where easyfsl's exp(-10 cost) does not underflow
        means = power_transform(support.embeddings, 0.5).mean(1, keepdim=True)
        assert 10 * torch.cdist(power_transform(query.embeddings, 0.5), means).max() ** 2 < 80
    mine = ours(name, support, labels, query)
    assert_same(name, mine, easyfsl_scores(name, support, labels, query), truth)


# Options away from the defaults, each reaching easyfsl under the same keyword: a wrong or
# ignored option would change the predictions. TIM's default lr (1e-4) barely moves the
# prototypes; at 1e-2 its fine-tuning changes predictions (checked below), so the optimiser
# itself is compared.
OPTIONS = {
    "laplacianshot": {"inference_steps": 5, "knn": 5, "lambda_regularization": 2.0},
    "tim": {
        "fine_tuning_steps": 20,
        "fine_tuning_lr": 1e-2,
        "cross_entropy_weight": 0.5,
        "marginal_entropy_weight": 2.0,
        "conditional_entropy_weight": 0.3,
        "temperature": 5.0,
    },
    "pt_map": {
        "fine_tuning_steps": 4,
        "fine_tuning_lr": 0.5,
        "lambda_regularization": 5.0,
        "power_factor": 0.7,
    },
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_options_match_easyfsl(name):
    support, labels, query, truth = episodes(k_shot=2, seed=7, scale=FEATURE_SCALE.get(name, 1.0))
    mine = ours(name, support, labels, query, **OPTIONS[name])
    assert_same(name, mine, easyfsl_scores(name, support, labels, query, **OPTIONS[name]), truth)
    if name == "tim":  # the fine-tuning matters here: without it other queries win
        untuned = ours(name, support, labels, query, **{**OPTIONS[name], "fine_tuning_steps": 0})
        assert not torch.equal(untuned.argmax(-1), mine.argmax(-1))


def test_pt_map_stays_finite_where_easyfsl_underflows():
    # raw 512-d features: squared distances in the hundreds; easyfsl's plan is NaN
    support, labels, query, truth = episodes(b=3, dim=512, spread=1.0, scale=3.0)
    theirs = easyfsl_scores("pt_map", support, labels, query)
    assert torch.isnan(theirs).all(), "easyfsl no longer underflows here: revisit pt_map's docs"
    mine = ours("pt_map", support, labels, query)
    assert torch.isfinite(mine).all()
    torch.testing.assert_close(mine.sum(2), torch.ones(3, N_WAY * N_QUERY))  # mass 1 per query
    torch.testing.assert_close(mine.sum(1), torch.full((3, N_WAY), float(N_QUERY)))  # per class
    assert accuracy(mine, truth) > 0.9


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_batched_equals_one_episode_at_a_time(name):
    support, labels, query, _ = episodes(b=4, k_shot=2, seed=3, scale=FEATURE_SCALE.get(name, 1.0))
    together = ours(name, support, labels, query)
    for b in range(4):
        one = lambda f, b=b: EpisodeFeatures(f.embeddings[b : b + 1])
        alone = ours(name, one(support), labels[b : b + 1], one(query))
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_transductive_flag_and_queries_used_jointly(name):
    cls = get_learner_class(name)
    assert name in learner_names() and cls.transductive is True and cls.stochastic is False
    # transductive in fact: moving the other queries changes the first query's scores
    support, labels, query, _ = episodes(b=1, seed=5, scale=FEATURE_SCALE.get(name, 1.0))
    moved = query.embeddings.clone()
    moved[:, 1:] += 0.5 * FEATURE_SCALE.get(name, 1.0)
    before = ours(name, support, labels, query)[:, 0]
    after = ours(name, support, labels, EpisodeFeatures(moved))[:, 0]
    assert not torch.allclose(before, after, rtol=1e-4, atol=1e-6)


def test_tim_fine_tunes_under_inference_mode():
    support, labels, query, _ = episodes(seed=9)
    expected = ours("tim", support, labels, query, **OPTIONS["tim"])
    with torch.inference_mode():
        scores = ours("tim", support, labels, query, **OPTIONS["tim"])
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize(
    "name, options",
    [
        ("bd_cspn", {"temperature": 0}),
        ("laplacianshot", {"knn": 0}),
        ("laplacianshot", {"inference_steps": 0}),
        ("tim", {"fine_tuning_lr": 0}),
        ("pt_map", {"lambda_regularization": -1}),
    ],
)
def test_bad_options_are_rejected(name, options):
    with pytest.raises(ValueError, match=name):
        get_learner(name, **options)


def test_tim_gradient_by_hand_is_autograds():
    support, labels, query, _ = episodes(b=3, k_shot=2, seed=10)
    learner = get_learner("tim", **OPTIONS["tim"]).fit(support, labels, N_WAY)
    unit = torch.nn.functional.normalize
    s, q = unit(support.embeddings, dim=-1), unit(query.embeddings, dim=-1)
    onehot = torch.nn.functional.one_hot(labels, N_WAY).float()
    g = torch.Generator().manual_seed(1)
    prototypes = learner.prototypes + 0.3 * torch.randn(learner.prototypes.shape, generator=g)
    prototypes.requires_grad_(True)
    learner.loss(prototypes, s, onehot, q).sum().backward()
    by_hand = learner.gradient(prototypes.detach(), torch.cat([s, q], 1), onehot)
    torch.testing.assert_close(by_hand, prototypes.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # a tiny run: twin, random backbone, 16 episodes
def test_a_run_marks_the_four_transductive(tiny_run_config, tmp_path):
    tiny_run_config["learners"] = ["protonet", *TRANSDUCTIVE]
    tiny_run_config["episodes"]["n_episodes"] = 16
    produced = benchmark.run_benchmark(
        config_from_dict(tiny_run_config), run_dir=tmp_path / "run", progress=False
    )
    records = read_records(produced.run_dir / "records.jsonl")
    flags = records.groupby("learner")["transductive"].agg(set).to_dict()
    assert flags == {"protonet": {False}, **{name: {True} for name in TRANSDUCTIVE}}
    assert (records.groupby("learner").size() == 16).all()
    result = json.loads((produced.run_dir / "result.json").read_text())
    assert {n: m["transductive"] for n, m in result["metrics"].items()} == {
        "protonet": False,
        **dict.fromkeys(TRANSDUCTIVE, True),
    }
    assert validate_result_file(produced.run_dir / "result.json", records=records) == []

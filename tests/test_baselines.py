"""Baseline learners: registry, every learner on a tiny batch, per-episode references, golden values.

References are written here from the papers' definitions in plain numpy / Python loops, one
episode at a time, and compared with the batched learners on the same episodes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import baselines
from baselines import EpisodeFeatures, Learner, get_learner, learner_names, register
from baselines.registry import UnknownLearnerError
from baselines.seeding import episode_seeds

N_WAY, K_SHOT, N_QUERY, DIM, SLOTS = 4, 3, 5, 12, 3
PART_DIM, LOCAL = 8, 4  # slot/local width != global width (an earlier part stage); cells per image
FEATURE_LEARNERS = learner_names(Learner)  # image learners: tests/test_image_learners.py
# test doubles and presence_only (the toy's presence is random: it reads no embedding)
NOT_LEARNING = {
    "random",
    "presence_only",
    "presence_only_predicted",
    "presence_only_oracle",
}  # no above-chance requirement


def toy_episodes(
    b: int = 3,
    n_way: int = N_WAY,
    k_shot: int = K_SHOT,
    n_query: int = N_QUERY,
    dim: int = DIM,
    slots: int = SLOTS,
    seed: int = 0,
    spread: float = 3.0,
    dtype: torch.dtype = torch.float16,
    part_dim: int = PART_DIM,
    local: int = LOCAL,
):
    """B separable episodes: class centres ~ N(0, spread^2), images = centre + N(0, 1), per slot
    and per local descriptor likewise; each slot present with probability 0.7. Slots and local
    descriptors are part_dim wide (not dim). Returns support, labels, query, truth."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(b, n_way, dim, generator=g) * spread
    part_centres = torch.randn(b, n_way, slots, part_dim, generator=g) * spread
    local_centres = torch.randn(b, n_way, local, part_dim, generator=g) * spread
    rows = torch.arange(b)[:, None]

    def side(per_way: int) -> tuple[EpisodeFeatures, torch.Tensor]:
        labels = torch.arange(n_way).repeat_interleave(per_way).expand(b, -1).contiguous()
        n = labels.shape[1]
        emb = centres[rows, labels] + torch.randn(b, n, dim, generator=g)
        parts = part_centres[rows, labels] + torch.randn(b, n, slots, part_dim, generator=g)
        present = torch.rand(b, n, slots, generator=g) < 0.7
        cells = local_centres[rows, labels] + torch.randn(b, n, local, part_dim, generator=g)
        return EpisodeFeatures(emb.to(dtype), parts.to(dtype), present, cells.to(dtype)), labels

    support, labels = side(k_shot)
    query, truth = side(n_query)
    return support, labels, query, truth


def base_embeddings(dim: int = DIM, seed: int = 1) -> torch.Tensor:
    return torch.randn(64, dim, generator=torch.Generator().manual_seed(seed)) + 0.5


def run(
    name: str, support, labels, query, n_way: int = N_WAY, **options
) -> tuple[Learner, torch.Tensor]:
    learner = get_learner(name, **options)
    learner.prepare(base_embeddings(support.embeddings.shape[-1]))
    return learner, learner.fit(support, labels, n_way).predict(query)


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


# ---------------------------------------------------------------- registry


def test_registry_lists_every_baseline():
    assert set(learner_names()) >= {
        "protonet",
        "protonet_cosine",
        "part_protonet",
        "part_protonet_loo",
        "simpleshot",
        "logreg",
        "maml",
        "random",
        "part_protonet_grid2",
        "part_protonet_grid3",
        "part_protonet_shuffled",
        "dn4",
        "bd_cspn",
        "laplacianshot",
        "tim",
        "pt_map",
    }
    assert learner_names() == sorted(learner_names())
    for name in learner_names():
        cls = baselines.get_learner_class(name)
        assert cls.name == name and cls.paper, f"{name} must cite its paper"


def test_registry_rejects_duplicates_and_non_learners():
    with pytest.raises(ValueError, match="'protonet' is taken"):

        @register
        class Again(Learner):  # noqa: F811
            name = "protonet"

            def fit(self, support, labels, n_way):
                return self

            def predict(self, query):
                return query.embeddings

    with pytest.raises(TypeError, match="not a subclass"):
        register(object)
    assert baselines.get_learner_class("protonet").__name__ == "ProtoNet"


def test_registry_suggests_nearest_name_on_typo():
    with pytest.raises(UnknownLearnerError, match="did you mean 'protonet'") as info:
        get_learner("protonte")
    assert isinstance(info.value, KeyError)  # the runner maps KeyError to a config error
    with pytest.raises(KeyError, match="registered: bd_cspn, dn4, finetune, laplacianshot, logreg"):
        get_learner("zzzzzz")


def test_get_learner_passes_options():
    assert get_learner("random", seed=7).seed == 7
    with pytest.raises(TypeError):
        get_learner("protonet", no_such_option=1)


# ---------------------------------------------------------------- every learner


@pytest.mark.parametrize("name", FEATURE_LEARNERS)
def test_every_learner_on_a_tiny_batch(name):
    support, labels, query, truth = toy_episodes()
    learner, scores = run(name, support, labels, query)
    assert scores.shape == (3, N_WAY * N_QUERY, N_WAY)
    assert scores.dtype == torch.float32  # float16 features, float32 compute
    assert scores.device == query.embeddings.device
    assert torch.isfinite(scores).all()
    accuracy = (scores.argmax(-1) == truth).float().mean().item()
    if name not in NOT_LEARNING:
        assert accuracy > 0.9, f"{name}: {accuracy:.2f} on separable toy data (chance 0.25)"
    contributions = learner.part_contributions()
    if learner.uses_parts and not name.startswith("part_protonet_foreground"):  # one merged slot
        assert contributions.shape == (3, SLOTS) and torch.isfinite(contributions).all()
    else:
        assert contributions is None


@pytest.mark.parametrize("name", sorted(set(FEATURE_LEARNERS) - {"random"}))  # random: per batch
def test_batched_equals_one_episode_at_a_time(name):
    support, labels, query, _ = toy_episodes(b=3, seed=4, spread=1.0)
    _, together = run(name, support, labels, query)
    for b in range(3):
        one = lambda f, b=b: EpisodeFeatures(
            f.embeddings[b : b + 1],
            f.part_embeddings[b : b + 1],
            f.part_present[b : b + 1],
            f.local_descriptors[b : b + 1],
        )
        _, alone = run(name, one(support), labels[b : b + 1], one(query))
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FEATURE_LEARNERS)
def test_predict_before_fit_is_a_clear_error(name):
    _, _, query, _ = toy_episodes()
    learner = get_learner(name)
    learner.prepare(base_embeddings())
    with pytest.raises(RuntimeError, match="before predict"):
        learner.predict(query)


@pytest.mark.parametrize("name", FEATURE_LEARNERS)
def test_bad_labels_are_rejected(name):
    support, labels, _, _ = toy_episodes()
    learner = get_learner(name)
    learner.prepare(base_embeddings())
    with pytest.raises(ValueError, match="labels must lie in"):
        learner.fit(support, labels + 1, N_WAY)
    with pytest.raises(ValueError, match="every way needs"):
        learner.fit(support, labels.clamp_max(N_WAY - 2), N_WAY)
    with pytest.raises(ValueError, match=r"\(B, n_support\)"):
        learner.fit(support, labels[:, :-1], N_WAY)


def test_part_learners_demand_part_features():
    support, labels, _, _ = toy_episodes()
    bare = EpisodeFeatures(support.embeddings)
    for name in learner_names():
        if baselines.get_learner_class(name).uses_parts:
            with pytest.raises(ValueError, match="part_embeddings"):
                get_learner(name).fit(bare, labels, N_WAY)


def test_local_descriptor_learners_demand_local_descriptors():
    support, labels, _, _ = toy_episodes()
    bare = EpisodeFeatures(support.embeddings, support.part_embeddings, support.part_present)
    names = [n for n in FEATURE_LEARNERS if baselines.get_learner_class(n).uses_local_descriptors]
    assert names == ["dn4"]
    for name in names:
        with pytest.raises(ValueError, match="features.dense"):
            get_learner(name).fit(bare, labels, N_WAY)


def test_learners_work_under_inference_mode():
    support, labels, query, truth = toy_episodes()
    for name in ("logreg", "maml"):
        with torch.inference_mode():
            _, scores = run(name, support, labels, query)
        assert (scores.argmax(-1) == truth).float().mean() > 0.9


# ---------------------------------------------------------------- per-episode references


def ref_protonet(s, y, q, n_way, cosine=False):
    out = []
    for e in range(s.shape[0]):
        protos = np.stack([s[e][y[e] == c].mean(0) for c in range(n_way)])
        if cosine:
            qn = q[e] / np.linalg.norm(q[e], axis=1, keepdims=True)
            pn = protos / np.linalg.norm(protos, axis=1, keepdims=True)
            out.append(qn @ pn.T)
        else:
            out.append(-np.array([[((x - p) ** 2).sum() for p in protos] for x in q[e]]))
    return np.stack(out)


def test_protonet_matches_reference():
    support, labels, query, _ = toy_episodes(seed=2)
    _, scores = run("protonet", support, labels, query)
    expected = ref_protonet(np64(support.embeddings), labels.numpy(), np64(query.embeddings), N_WAY)
    np.testing.assert_allclose(np64(scores), expected, rtol=1e-4, atol=1e-3)


def test_protonet_cosine_matches_reference():
    support, labels, query, _ = toy_episodes(seed=3)
    _, scores = run("protonet_cosine", support, labels, query)
    expected = ref_protonet(
        np64(support.embeddings), labels.numpy(), np64(query.embeddings), N_WAY, cosine=True
    )
    np.testing.assert_allclose(np64(scores), expected, atol=1e-5)


def test_simpleshot_matches_reference():
    support, labels, query, _ = toy_episodes(seed=5)
    _, scores = run("simpleshot", support, labels, query)
    mean = np64(base_embeddings()).mean(0)

    def cl2n(x):
        x = x - mean
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    expected = ref_protonet(
        cl2n(np64(support.embeddings)), labels.numpy(), cl2n(np64(query.embeddings)), N_WAY
    )
    np.testing.assert_allclose(np64(scores), expected, atol=1e-5)


def test_simpleshot_requires_prepare():
    support, labels, _, _ = toy_episodes()
    with pytest.raises(RuntimeError, match="prepare"):
        get_learner("simpleshot").fit(support, labels, N_WAY)
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        get_learner("simpleshot").prepare(None)


def unit(x: np.ndarray) -> np.ndarray:
    """Each vector (last axis) divided by its Euclidean length; zero vectors stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ref_part_features(features, normalize):
    """(embeddings, part_embeddings) as float64 arrays, L2-normalised when normalize == "l2"."""
    emb, parts = np64(features.embeddings), np64(features.part_embeddings)
    return (unit(emb), unit(parts)) if normalize == "l2" else (emb, parts)


def ref_part_distances(support, labels, query, n_way, weights, normalize="l2"):
    """Plain loops: (B, m, N) weighted-mean distances and (B, m, N, T) per-term shares of them."""
    s_emb, s_parts = ref_part_features(support, normalize)
    q_emb, q_parts = ref_part_features(query, normalize)
    s_present, q_present = support.part_present.numpy(), query.part_present.numpy()
    b, m, n_slots = q_present.shape
    dist = np.zeros((b, m, n_way))
    share = np.zeros((b, m, n_way, n_slots + 1))
    for e in range(b):
        y = labels[e].numpy()
        for c in range(n_way):
            g_proto = s_emb[e][y == c].mean(0)
            for i in range(m):
                num, den, parts = 0.0, 0.0, []
                for s in range(n_slots):
                    rows = (y == c) & s_present[e, :, s]
                    if q_present[e, i, s] and rows.any():
                        d = ((q_parts[e, i, s] - s_parts[e][rows, s].mean(0)) ** 2).sum()
                        parts.append(weights[e][s] * d)
                        num, den = num + weights[e][s] * d, den + weights[e][s]
                    else:
                        parts.append(0.0)
                d = ((q_emb[e, i] - g_proto) ** 2).sum()
                parts.append(weights[e][-1] * d)
                num, den = num + weights[e][-1] * d, den + weights[e][-1]
                dist[e, i, c] = num / den
                share[e, i, c] = np.array(parts) / den
    return dist, share


def ref_margin_shares(dist, share):
    b, m, _ = dist.shape
    out = np.zeros((b, share.shape[-1]))
    for e in range(b):
        total = np.zeros(share.shape[-1])
        for i in range(m):
            top, runner_up = np.argsort(dist[e, i], kind="stable")[:2]
            total += share[e, i, runner_up] - share[e, i, top]
        out[e] = total / total.sum()
    return out


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"global_weight": 2.0, "part_weight": [1.0, 0.0, 3.0]},
        {"normalize": "none"},
        {"normalize": "none", "global_weight": 2.0, "part_weight": 0.5},
    ],
)
def test_part_protonet_matches_reference(options):
    support, labels, query, _ = toy_episodes(seed=6, spread=1.0)
    learner, scores = run("part_protonet", support, labels, query, **options)
    parts = np.broadcast_to(options.get("part_weight", 1.0), (SLOTS,))
    weights = np.tile(np.r_[parts, options.get("global_weight", 1.0)], (3, 1))
    dist, share = ref_part_distances(
        support, labels, query, N_WAY, weights, options.get("normalize", "l2")
    )
    np.testing.assert_allclose(np64(scores), -dist, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        np64(learner.part_contributions()), ref_margin_shares(dist, share)[:, :-1], atol=1e-4
    )


def ref_loo_weights(support, labels, n_way, floor=0.05, normalize="l2"):
    """Each term's leave-one-out nearest-prototype accuracy, by literally leaving one out."""
    s_emb, s_parts = ref_part_features(support, normalize)
    s_present = support.part_present.numpy()
    b, n, n_slots = s_present.shape
    out = np.ones((b, n_slots + 1))
    for e in range(b):
        y = labels[e].numpy()
        for t in range(n_slots + 1):
            feats = s_emb[e] if t == n_slots else s_parts[e, :, t]
            has = np.ones(n, bool) if t == n_slots else s_present[e, :, t]
            hits = tried = 0
            for i in range(n):
                keep = has.copy()
                keep[i] = False
                if not has[i] or not (keep & (y == y[i])).any():
                    continue
                d = {
                    c: ((feats[i] - feats[keep & (y == c)].mean(0)) ** 2).sum()
                    for c in range(n_way)
                    if (keep & (y == c)).any()
                }
                tried += 1
                hits += min(d, key=d.get) == y[i]
            if tried:
                chance = 1 / n_way
                out[e, t] = floor + max(hits / tried - chance, 0) / (1 - chance)
    return out


@pytest.mark.parametrize("normalize", ["l2", "none"])
def test_part_protonet_loo_weights_match_reference(normalize):
    support, labels, query, _ = toy_episodes(seed=7, spread=0.7)
    learner, scores = run("part_protonet_loo", support, labels, query, normalize=normalize)
    weights = ref_loo_weights(support, labels, N_WAY, normalize=normalize)
    assert len(np.unique(weights.round(6))) > 2, "toy data should give varied LOO weights"
    np.testing.assert_allclose(np64(learner.weights), weights, atol=1e-6)
    dist, _ = ref_part_distances(support, labels, query, N_WAY, weights, normalize)
    np.testing.assert_allclose(np64(scores), -dist, rtol=1e-4, atol=1e-3)


def test_part_protonet_l2_terms_ignore_each_embedding_scale():
    """With normalize="l2" a term cannot win by its norm: rescaling every global and slot
    embedding of every image by its own positive factor leaves the scores unchanged; the raw
    formulation (normalize="none") does change, so the check has teeth."""
    support, labels, query, _ = toy_episodes(seed=8, spread=1.0, dtype=torch.float32)
    g = torch.Generator().manual_seed(9)

    def rescaled(f: EpisodeFeatures) -> EpisodeFeatures:
        b, n, s, _ = f.part_embeddings.shape
        return EpisodeFeatures(
            f.embeddings * (0.2 + 5 * torch.rand(b, n, 1, generator=g)),
            f.part_embeddings * (0.2 + 5 * torch.rand(b, n, s, 1, generator=g)),
            f.part_present,
        )

    for normalize, unchanged in (("l2", True), ("none", False)):
        _, before = run("part_protonet", support, labels, query, normalize=normalize)
        _, after = run(
            "part_protonet", rescaled(support), labels, rescaled(query), normalize=normalize
        )
        assert torch.allclose(before, after, atol=1e-5) == unchanged, normalize


def test_part_protonet_loo_keeps_fixed_weights_without_evidence():
    support, labels, query, _ = toy_episodes(k_shot=1)
    learner, _ = run("part_protonet_loo", support, labels, query, part_weight=0.5)
    expected = torch.tensor([0.5] * SLOTS + [1.0]).expand(3, -1)
    torch.testing.assert_close(learner.weights, expected)


def test_part_protonet_rejects_bad_options():
    with pytest.raises(ValueError, match="global_weight"):
        get_learner("part_protonet", global_weight=0)
    with pytest.raises(ValueError, match="normalize"):
        get_learner("part_protonet", normalize="l1")
    support, labels, _, _ = toy_episodes()
    with pytest.raises(ValueError, match="part_weight has 2 values"):
        get_learner("part_protonet", part_weight=[1.0, 2.0]).fit(support, labels, N_WAY)


@pytest.mark.parametrize("k_shot", [1, 3])
def test_logreg_reaches_the_per_episode_optimum(k_shot):
    """Against the primal problem in W (D, N) solved per episode by scipy's L-BFGS in float64."""
    from scipy.optimize import minimize

    support, labels, query, _ = toy_episodes(seed=8, k_shot=k_shot, spread=0.5)
    decay = 0.01
    _, scores = run("logreg", support, labels, query, weight_decay=decay)
    for e in range(3):
        x = np64(support.embeddings[e])
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        onehot = np.eye(N_WAY)[labels[e].numpy()]

        def objective(theta, x=x, onehot=onehot):
            weight, bias = theta[:-N_WAY].reshape(DIM, N_WAY), theta[-N_WAY:]
            logits = x @ weight + bias
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            loss = -(onehot * np.log(p)).sum(1).mean() + decay / 2 * (weight**2).sum()
            grad = (p - onehot) / len(x)
            return loss, np.r_[(x.T @ grad + decay * weight).ravel(), grad.sum(0)]

        theta = minimize(
            objective,
            np.zeros(DIM * N_WAY + N_WAY),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 5000, "gtol": 1e-10},
        ).x
        q = np64(query.embeddings[e])
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        expected = q @ theta[:-N_WAY].reshape(DIM, N_WAY) + theta[-N_WAY:]
        # logits are defined up to a per-query constant (the bias is unpenalised): centre them
        centre = lambda z: z - z.mean(-1, keepdims=True)
        np.testing.assert_allclose(centre(np64(scores[e])), centre(expected), atol=1e-3)


def test_maml_matches_plain_sgd_reference():
    support, labels, query, _ = toy_episodes(seed=9, spread=1.0)
    steps, lr = 4, 0.7
    _, scores = run("maml", support, labels, query, steps=steps, inner_lr=lr)
    for e in range(3):
        x = np64(support.embeddings[e])
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        onehot = np.eye(N_WAY)[labels[e].numpy()]
        weight, bias = np.zeros((DIM, N_WAY)), np.zeros(N_WAY)
        for _ in range(steps):  # gradient of the mean cross-entropy, written out
            logits = x @ weight + bias
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            weight -= lr * x.T @ (p - onehot) / len(x)
            bias -= lr * (p - onehot).mean(0)
        q = np64(query.embeddings[e])
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        np.testing.assert_allclose(np64(scores[e]), q @ weight + bias, atol=1e-5)


def test_random_learner_is_seeded_and_at_chance():
    support, labels, query, truth = toy_episodes(b=40, n_query=25)
    _, first = run("random", support, labels, query, seed=3)
    _, again = run("random", support, labels, query, seed=3)
    _, other = run("random", support, labels, query, seed=4)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    accuracy = (first.argmax(-1) == truth).float().mean().item()
    assert abs(accuracy - 1 / N_WAY) < 0.05  # 4000 queries: 5 standard errors is ~0.034


def ref_dn4(support, labels, query, n_way, k):
    """DN4 by its definition, one episode, one query, one class at a time (float64)."""
    s_loc, q_loc = unit(np64(support.local_descriptors)), unit(np64(query.local_descriptors))
    b, m = q_loc.shape[:2]
    out = np.zeros((b, m, n_way))
    for e in range(b):
        y = labels[e].numpy()
        for c in range(n_way):
            pool = s_loc[e][y == c].reshape(-1, s_loc.shape[-1])  # every descriptor of class c
            for i in range(m):
                for x in q_loc[e, i]:
                    out[e, i, c] += np.sort(pool @ x)[::-1][:k].sum()
    return out


@pytest.mark.parametrize("k", [1, 3, 50])  # 50 > the class pool (3 shots x 4 cells): all of it
def test_dn4_matches_reference(k):
    support, labels, query, _ = toy_episodes(seed=8, spread=1.0)
    perm = torch.randperm(labels.shape[1], generator=torch.Generator().manual_seed(0))
    support = EpisodeFeatures(
        support.embeddings[:, perm], None, None, support.local_descriptors[:, perm]
    )  # ways interleaved
    labels = labels[:, perm]
    _, scores = run("dn4", support, labels, query, k=k)
    np.testing.assert_allclose(
        np64(scores), ref_dn4(support, labels, query, N_WAY, k), rtol=1e-4, atol=1e-3
    )


def test_controls_are_part_protonet_over_their_own_regions():
    support, labels, query, _ = toy_episodes(seed=9)
    _, plain = run("part_protonet", support, labels, query)
    for name, masks in (
        ("part_protonet_grid2", "grid2"),
        ("part_protonet_grid3", "grid3"),
        ("part_protonet_shuffled", "shuffled"),
        ("part_protonet_predicted", "predicted"),
    ):
        cls = baselines.get_learner_class(name)
        assert cls.uses_parts and cls.own_masks == masks
        # the difference is in the features alone (the grids' weights set to part_protonet's)
        _, scores = run(
            name, support, labels, query, **({"part_weight": 1.0} if "grid" in name else {})
        )
        torch.testing.assert_close(scores, plain)
    with pytest.raises(TypeError):
        get_learner("part_protonet_grid2", mask_mode="oracle")
    assert baselines.get_learner_class("part_protonet").own_masks is None


@pytest.mark.parametrize("name, options", [("random", {}), ("maml", {"init_std": 0.5})])
def test_stochastic_learners_depend_on_the_episode_not_the_batch(name, options):
    support, labels, query, _ = toy_episodes(b=4, seed=5)
    indices = np.array([10, 11, 12, 13])
    learner = get_learner(name, **options)
    assert learner.stochastic
    learner.seed_episodes(episode_seeds(3, name, indices))
    together = learner.fit(support, labels, N_WAY).predict(query)
    for b in (2, 0):  # alone, in another order, under its own index: the same scores
        one = lambda f, b=b: EpisodeFeatures(f.embeddings[b : b + 1])
        learner.seed_episodes(episode_seeds(3, name, indices[b : b + 1]))
        alone = learner.fit(one(support), labels[b : b + 1], N_WAY).predict(one(query))
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    learner.seed_episodes(episode_seeds(4, name, indices))  # another run seed: other draws
    assert not torch.equal(learner.fit(support, labels, N_WAY).predict(query), together)
    learner.seed_episodes(episode_seeds(3, name, indices[:2]))
    with pytest.raises(ValueError, match="2 seeds for a call with 4 episodes"):
        learner.fit(support, labels, N_WAY).predict(query)


def test_episode_seeds_are_a_function_of_run_learner_and_index():
    seeds = episode_seeds(0, "random", np.arange(600))
    assert seeds.dtype == np.int64 and (seeds >= 0).all()
    assert len(set(seeds.tolist())) == 600  # no two episodes share a stream (the old bug: 64)
    np.testing.assert_array_equal(episode_seeds(0, "random", [599, 3]), seeds[[599, 3]])
    assert not set(episode_seeds(0, "maml", np.arange(600)).tolist()) & set(seeds.tolist())
    with pytest.raises(ValueError):
        episode_seeds(0, "random", [-1])


def test_random_learner_ignores_the_features_and_favours_no_way():
    # a chance row: every way predicted about equally often, whatever the features say
    support, labels, query, _ = toy_episodes(b=40, n_query=25)
    _, scores = run("random", support, labels, query, seed=11)
    shifted = EpisodeFeatures(query.embeddings * 3 + 1, query.part_embeddings, query.part_present)
    _, again = run("random", support, labels, shifted, seed=11)
    torch.testing.assert_close(scores, again)
    share = torch.bincount(scores.argmax(-1).flatten(), minlength=N_WAY) / scores[..., 0].numel()
    assert share.shape == (N_WAY,)
    assert (share - 1 / N_WAY).abs().max() < 0.04  # 4000 queries: one standard error is ~0.007


# ---------------------------------------------------------------- golden values, worked by hand


def features(*rows, parts=None, present=None) -> EpisodeFeatures:
    emb = torch.tensor([rows], dtype=torch.float32)
    return EpisodeFeatures(
        emb,
        None if parts is None else torch.tensor([parts]),
        None if present is None else torch.tensor([present]),
    )


def test_golden_protonet():
    support = features([0.0, 0.0], [2.0, 0.0], [0.0, 4.0])  # prototypes (1, 0) and (0, 4)
    labels = torch.tensor([[0, 0, 1]])
    scores = (
        get_learner("protonet").fit(support, labels, 2).predict(features([1.0, 1.0], [0.0, 3.0]))
    )
    torch.testing.assert_close(scores, torch.tensor([[[-1.0, -10.0], [-10.0, -1.0]]]))


def test_golden_protonet_cosine():
    support = features([0.0, 0.0], [2.0, 0.0], [0.0, 4.0])
    labels = torch.tensor([[0, 0, 1]])
    scores = (
        get_learner("protonet_cosine")
        .fit(support, labels, 2)
        .predict(features([1.0, math.sqrt(3.0)], [3.0, 0.0]))
    )
    torch.testing.assert_close(scores, torch.tensor([[[0.5, math.sqrt(3.0) / 2], [1.0, 0.0]]]))


def test_golden_simpleshot():
    learner = get_learner("simpleshot")
    learner.prepare(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))  # mean (1, 1)
    support = features([3.0, 1.0], [1.0, 4.0])  # centred, normalised: (1, 0) and (0, 1)
    scores = learner.fit(support, torch.tensor([[0, 1]]), 2).predict(
        features([2.0, 2.0], [1.0, 0.0])
    )
    near = 2.0 - math.sqrt(2.0)  # (1,1)/sqrt2 is equally far from both
    torch.testing.assert_close(scores, torch.tensor([[[-near, -near], [-2.0, -4.0]]]))


def golden_part_episode():
    # D = 1, S = 2 slots. Way 0 has slot 0 only; way 1 has both. The query has both.
    support = features(
        [0.0], [2.0], parts=[[[0.0], [9.0]], [[4.0], [1.0]]], present=[[True, False], [True, True]]
    )
    query = features([1.0], parts=[[[1.0], [0.0]]], present=[[True, True]])
    return support, torch.tensor([[0, 1]]), query


def test_golden_part_protonet_raw():
    support, labels, query = golden_part_episode()
    learner = get_learner("part_protonet", normalize="none")
    scores = learner.fit(support, labels, 2).predict(query)
    # way 0: slot 0 (1-0)^2 = 1, slot 1 unavailable, global 1 -> 2/2; way 1: (9 + 1 + 1)/3.
    torch.testing.assert_close(scores, torch.tensor([[[-1.0, -11.0 / 3.0]]]))
    # per-term margins: slot 0: 3 - 1/2, slot 1: 1/3 - 0, global: 1/3 - 1/2; total 8/3.
    torch.testing.assert_close(learner.part_contributions(), torch.tensor([[15 / 16, 1 / 8]]))
    weighted = get_learner(
        "part_protonet", global_weight=2.0, part_weight=[1.0, 3.0], normalize="none"
    )
    scores = weighted.fit(support, labels, 2).predict(query)
    torch.testing.assert_close(scores, torch.tensor([[[-1.0, -7.0 / 3.0]]]))  # 14 / 6


def test_golden_part_protonet_l2():
    # D = 2, S = 1. Way 0: globals (2, 0), (0, 3) -> unit (1, 0), (0, 1), prototype their mean
    # (0.5, 0.5) (not renormalised); slot only in the first image, (3, 4) -> (0.6, 0.8).
    # Way 1: global (0, -5) -> (0, -1); slot (0, -2) -> (0, -1).
    support = features(
        [2.0, 0.0],
        [0.0, 3.0],
        [0.0, -5.0],
        parts=[[[3.0, 4.0]], [[0.0, 0.0]], [[0.0, -2.0]]],
        present=[[True], [False], [True]],
    )
    query = features([6.0, 0.0], parts=[[[0.0, 10.0]]], present=[[True]])  # (1, 0) and (0, 1)
    learner = get_learner("part_protonet")
    scores = learner.fit(support, torch.tensor([[0, 0, 1]]), 2).predict(query)
    # way 0: global 0.25 + 0.25 = 0.5, slot 0.36 + 0.04 = 0.4 -> 0.45; way 1: (2 + 4) / 2 = 3.
    torch.testing.assert_close(scores, torch.tensor([[[-0.45, -3.0]]]))
    # margins (runner-up way 1 minus top way 0, each term / 2): slot 2 - 0.2, global 1 - 0.25.
    torch.testing.assert_close(learner.part_contributions(), torch.tensor([[1.8 / 2.55]]))


def test_golden_part_protonet_loo():
    # Global embeddings separate the ways; slot 0 is swapped between them, so LOO finds it useless.
    support = features(
        [0.0],
        [1.0],
        [10.0],
        [11.0],
        parts=[[[0.0]], [[5.0]], [[5.0]], [[0.0]]],
        present=[[True]] * 4,
    )
    learner = get_learner("part_protonet_loo", normalize="none").fit(
        support, torch.tensor([[0, 0, 1, 1]]), 2
    )
    torch.testing.assert_close(learner.weights, torch.tensor([[0.05, 1.05]]))


def test_golden_logreg_reaches_the_analytic_optimum():
    from scipy.optimize import brentq

    decay = 0.1
    learner = get_learner("logreg", steps=1500, lr=0.05, weight_decay=decay)
    scores = learner.fit(features([1.0], [-1.0]), torch.tensor([[0, 1]]), 2).predict(
        features([1.0])
    )
    # By symmetry W = (u/2, -u/2), b0 = b1; the loss log(1 + e^-u) + decay u^2 / 4 is stationary at
    # sigmoid(-u) = decay u / 2; the query x = 1 then gets logit gap u.
    u = brentq(lambda u: 1 / (1 + math.exp(u)) - decay * u / 2, 0.0, 50.0)
    assert abs((scores[0, 0, 0] - scores[0, 0, 1]).item() - u) < 1e-3


def test_golden_maml_one_step():
    learner = get_learner("maml", steps=1, inner_lr=1.0)
    support = features([1.0, 0.0], [0.0, 1.0])
    scores = learner.fit(support, torch.tensor([[0, 1]]), 2).predict(
        features([1.0, 0.0], [0.6, 0.8])
    )
    # From zero: p = 1/2, W <- lr * (Y - p)^T X / n = [[1/4, -1/4], [-1/4, 1/4]], b stays 0.
    torch.testing.assert_close(scores, torch.tensor([[[0.25, -0.25], [-0.05, 0.05]]]))


def test_golden_dn4():
    # D = 2, L = 2 cells per image, 1 shot. Way 0: (1, 0), (0, 1); way 1: (-1, 0), (0, 2) ->
    # unit (0, 1). Query: (2, 0), (3, 4) -> unit (1, 0), (0.6, 0.8).
    support = EpisodeFeatures(
        torch.zeros(1, 2, 1),
        None,
        None,
        torch.tensor([[[[0.0, 1.0], [1.0, 0.0]], [[-1.0, 0.0], [0.0, 2.0]]]]),
    )
    query = EpisodeFeatures(
        torch.zeros(1, 1, 1), None, None, torch.tensor([[[[2.0, 0.0], [3.0, 4.0]]]])
    )
    labels = torch.tensor([[0, 1]])
    one = get_learner("dn4", k=1).fit(support, labels, 2).predict(query)
    # k=1: way 0: 1 + 0.8; way 1: max(-1, 0) + max(-0.6, 0.8) = 0.8
    torch.testing.assert_close(one, torch.tensor([[[1.8, 0.8]]]))
    # k=2 (and k=3, clamped to the pool of 2): way 0: (1 + 0) + (0.6 + 0.8); way 1: (0 - 1) + (0.8 - 0.6)
    for k in (2, 3):
        both = get_learner("dn4", k=k).fit(support, labels, 2).predict(query)
        torch.testing.assert_close(both, torch.tensor([[[2.4, -0.8]]]))
    with pytest.raises(ValueError, match="k"):
        get_learner("dn4", k=0)


def test_golden_random():
    # The documented definition: torch.rand(n_query, n_way) from a CPU generator seeded with the
    # episode's seed; without seed_episodes, call position b is episode index b of run `seed`.
    support = features([0.0], [1.0])
    scores = (
        get_learner("random", seed=11)
        .fit(support, torch.tensor([[0, 1]]), 2)
        .predict(features([0.0], [0.0], [0.0]))
    )
    seed = int(episode_seeds(11, "random", [0])[0])
    expected = torch.rand(3, 2, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(scores, expected[None])


def test_presence_only_reads_presence_and_nothing_else():
    # scores are a function of part_present alone: new embeddings change nothing
    support, labels, query, _ = toy_episodes()
    _, scores = run("presence_only", support, labels, query)
    noise = lambda f: EpisodeFeatures(
        torch.randn_like(f.embeddings.float()).half(),
        torch.randn_like(f.part_embeddings.float()).half(),
        f.part_present,
        f.local_descriptors,
    )
    _, again = run("presence_only", noise(support), labels, noise(query))
    torch.testing.assert_close(scores, again)
    flipped = EpisodeFeatures(query.embeddings, query.part_embeddings, ~query.part_present)
    _, other = run("presence_only", support, labels, flipped)
    assert not torch.equal(scores, other)  # ... and presence does change them


def test_grid_controls_keep_part_protonets_global_share_and_foreground_merges_slots():
    from baselines.part_controls import PART_GLOBAL_SHARE, _foreground

    grid = get_learner("part_protonet_grid3")
    share = grid.global_weight / (grid.global_weight + 9 * float(grid.part_weight))
    assert share == pytest.approx(PART_GLOBAL_SHARE)
    assert float(get_learner("part_protonet_grid3", global_share=None).part_weight) == 1.0
    support, _, _, _ = toy_episodes()
    merged = _foreground(support, "test")
    assert merged.part_embeddings.shape[2] == 1 and merged.part_present.shape[2] == 1
    assert torch.equal(merged.part_present[..., 0], support.part_present.any(-1))

"""Variable-way variable-shot episodes (Meta-Dataset's protocol, Triantafillou et al. 2020)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from test_episodes_sampler import GOLDEN, M64, ref_below, ref_fisher_yates, ref_mix, ref_stream

from episodes import EpisodeSampler, taxonomy


def ref_variable(labels, class_keys, settings_, i):
    """Meta-Dataset's steps, written from episodes/variable.py's docstring with Python numbers."""
    p = settings_["protocol"]
    key = ref_mix((ref_stream(settings_) + (i + 1) * GOLDEN) & M64)

    def word(slot):
        return ref_mix((key + (slot + 1) * GOLDEN) & M64)

    def draw32(slot):  # integer draws use a word's high 32 bits
        return word(slot) >> 32

    def unit(w):  # [0, 1)
        return (w >> 11) / 2.0**53

    n_classes = len(class_keys)
    n = p["min_ways"] + ref_below(draw32(0), min(p["max_ways"], n_classes) - p["min_ways"] + 1)
    classes = [
        class_keys[c] for c in ref_fisher_yates(n_classes, [draw32(s) for s in range(1, n + 1)])
    ]
    images = [[j for j, label in enumerate(labels) if label == c] for c in classes]
    q = min(p["max_query"], min(len(x) for x in images) // 2)
    beta = unit(word(n + 1))
    support_size = min(
        p["max_support"],
        sum(math.floor(beta * min(p["max_support_per_class"], len(x) - q) + 1) for x in images),
    )
    lo, hi = math.log(p["min_shot_weight"]), math.log(p["max_shot_weight"])
    weights = [
        len(x) * math.exp(lo + unit(word(n + 2 + j)) * (hi - lo)) for j, x in enumerate(images)
    ]
    total = math.fsum(weights)
    shots = [
        min(math.floor(w / total * (support_size - n)) + 1, len(x) - q)
        for w, x in zip(weights, images)
    ]
    support, query = [], []
    stride = p["max_support"] + p["max_query"]
    for j, (x, k) in enumerate(zip(images, shots)):
        picks = [
            x[t]
            for t in ref_fisher_yates(len(x), [draw32(128 + j * stride + t) for t in range(k + q)])
        ]
        support.append(tuple(picks[:k]))
        query.append(tuple(picks[k:]))
    return tuple(classes), tuple(support), tuple(query)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(2, 160), min_size=5, max_size=60),
    seed=st.integers(0, 2**32),
    index=st.integers(0, 10**9),
)
def test_variable_episodes_follow_meta_dataset(sizes, seed, index):
    names = [f"k{j:02d}" for j in range(len(sizes))]
    labels = [c for c, n in zip(names, sizes) for _ in range(n)]
    sampler = EpisodeSampler(
        labels, seed=seed, split="s", mode="variable", class_splits=dict.fromkeys(names, "s")
    )
    ep = sampler[index]
    n = ep.n_way
    assert 5 <= n <= min(50, len(sizes)) and len(set(ep.classes)) == n
    class_size = {c: s for c, s in zip(names, sizes)}
    q = min(10, min(class_size[c] for c in ep.classes) // 2)
    assert all(len(x) == q for x in ep.query)
    shots = [len(s) for s in ep.support]
    assert all(1 <= k <= class_size[c] - q for k, c in zip(shots, ep.classes))
    assert sum(shots) <= 500
    flat = [i for way in ep.support + ep.query for i in way]
    assert len(flat) == len(set(flat))
    assert all(labels[i] == c for c, s, x in zip(ep.classes, ep.support, ep.query) for i in s + x)
    assert (ep.classes, ep.support, ep.query) == ref_variable(
        labels, sampler.class_keys, sampler.settings, index
    )


def test_ways_are_uniform_and_shots_vary():
    labels = [c.synset for c in taxonomy.classes() for _ in range(30)]
    sampler = EpisodeSampler(labels, seed=1, split="train", mode="variable")
    episodes = sampler.episodes(0, 920)
    ways = Counter(e.n_way for e in episodes)
    assert set(ways) <= set(range(5, 51))
    assert stats.chisquare([ways[w] for w in range(5, 51)]).pvalue > 1e-4
    assert len({len(s) for e in episodes for s in e.support}) > 5
    assert all(len(e.query[0]) == 10 for e in episodes)  # 30 images per class: min(10, 15)
    again = EpisodeSampler(labels, seed=1, split="train", mode="variable")
    assert again[917] == episodes[917]
    assert np.all([e.index for e in episodes] == np.arange(920))

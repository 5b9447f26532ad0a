"""The counter-based generator and the partial Fisher-Yates selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_episodes_sampler import ref_fisher_yates

from episodes.counter_rng import below, draws, draws32, episode_keys, uniform01
from episodes.selection import _choose_dense, _choose_sparse, choose_distinct


def test_splitmix64_reference_vector():
    # splitmix64 seeded with 1234567 (Vigna's reference splitmix64.c): our episode keys for
    # episodes 0..4 of stream 1234567 are exactly its first five outputs.
    assert episode_keys(1234567, np.arange(5)).tolist() == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


def test_draws32_are_the_halves_of_the_words():
    keys = episode_keys(3, np.arange(4))
    words = draws(keys, 5, 3)
    got = draws32(keys, 5, 5)[
        :, :, 0
    ].T  # h = 3 words: draws 0..2 high halves, 3..4 low halves of words 0..1
    np.testing.assert_array_equal(got[:, :3], words >> np.uint64(32))
    np.testing.assert_array_equal(got[:, 3:], words[:, :2] & np.uint64(0xFFFFFFFF))
    assert draws32(keys, 0, 0).shape == (0, 4, 1)
    blocks = draws32(keys, 5, 5, blocks=3)  # block j starts at word 5 + 3j
    np.testing.assert_array_equal(blocks[:, :, 0], draws32(keys, 5, 5)[:, :, 0])
    np.testing.assert_array_equal(blocks[:, :, 2], draws32(keys, 11, 5)[:, :, 0])


def test_below_and_uniform01_ranges():
    keys = episode_keys(3, np.arange(2000))
    words = draws(keys, 0, 10)
    n = np.arange(1, 11)
    r = below(draws32(keys, 0, 10)[:, :, 0].T, n)
    assert r.min() >= 0 and np.all(r < n)
    assert np.all(below(np.array([2**32 - 1], dtype=np.uint64), 7) == 6)
    u = uniform01(words)
    assert u.min() >= 0 and u.max() < 1
    assert uniform01(np.array([0, 2**64 - 1], dtype=np.uint64)).tolist() == [0.0, 1 - 2.0**-53]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    m=st.integers(0, 12),
    rows=st.integers(0, 30),
    extra=st.integers(0, 60),
    seed=st.integers(0, 2**64 - 1),
)
def test_dense_and_sparse_match_the_textbook_loop(data, m, rows, extra, seed):
    width = m + extra
    sizes = np.array(
        data.draw(st.lists(st.integers(m, max(m, width)), min_size=rows, max_size=rows)),
        dtype=np.int64,
    )
    if rows and not sizes.max(initial=0) <= width:
        width = int(sizes.max())
    words = draws32(episode_keys(seed, np.arange(rows)), 0, m)[:, :, 0]  # (m, rows)
    expected = np.array(
        [ref_fisher_yates(int(s), [int(w) for w in row]) for s, row in zip(sizes, words.T)],
        dtype=np.int64,
    ).reshape(rows, m)
    np.testing.assert_array_equal(
        _choose_dense(sizes.astype(np.uint64), words, max(width, 1)).T, expected
    )
    np.testing.assert_array_equal(_choose_sparse(sizes.astype(np.uint64), words.T), expected)
    np.testing.assert_array_equal(choose_distinct(sizes, words, max(width, 1)).T, expected)


def test_wide_rows_use_the_sparse_path_and_agree():
    sizes = np.array([5000, 4096, 70000])
    words = draws32(episode_keys(1, np.arange(3)), 0, 4)[:, :, 0]
    out = choose_distinct(sizes, words, 70000)
    for s, row, got in zip(sizes, words.T, out.T):
        assert got.tolist() == ref_fisher_yates(int(s), [int(w) for w in row])


@pytest.mark.parametrize("width, m", [(256, 8), (257, 8), (3000, 14), (40_000, 50)])
def test_dense_position_types_match_the_textbook_loop(width, m):
    # uint8 up to 256 items, int16 above, int32 above 32768: the type must not change results
    sizes = np.array([width, width - 1, m, (width + m) // 2], dtype=np.int64)
    words = draws32(episode_keys(9, np.arange(4)), 0, m)[:, :, 0]
    got = _choose_dense(sizes.astype(np.uint64), words, width)
    for s, row, col in zip(sizes, words.T, got.T):
        assert col.tolist() == ref_fisher_yates(int(s), [int(w) for w in row])

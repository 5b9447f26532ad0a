"""Variable-way, variable-shot episodes following Meta-Dataset's protocol.

Triantafillou et al., "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
Examples", ICLR 2020, section 3.2 and its `sampling.py`. For one episode, from the C classes of
the split:

1. ways N uniform in [min_ways, min(max_ways, C)]; N classes uniformly without replacement;
2. queries per class q = min(max_query, floor(min over chosen classes of |c| / 2));
3. support-set size S = min(max_support, sum_c floor(beta * min(max_support_per_class, |c| - q) + 1))
   with beta ~ U[0, 1);
4. shots k_c = min(floor(R_c * (S - N)) + 1, |c| - q), where R_c is proportional to
   |c| * exp(U[log min_shot_weight, log max_shot_weight)).

These are the formulas of Meta-Dataset's `sample_support_set_size` and
`sample_num_support_per_class`, with its defaults (max_ways_upper_bound 50, max_num_query 10,
max_support_set_size 500, max_support_size_contrib_per_class 100, log-weights log 0.5 .. log 2).

All draws are counter-based (see counter_rng), one 64-bit word per draw: integer draws use its
high 32 bits, floats in [0, 1) its high 53 bits. Slot 0: N; slots 1..N: the Fisher-Yates steps choosing the
classes; slot N+1: beta; slots N+2..2N+1: the shot weights; way j's image steps start at slot
128 + j * (max_support + max_query). The few float steps use Python's math module
(IEEE-754 +, *, /, floor, ceil, and libm's exp and log on two constants) rather than numpy's
vectorised transcendental functions, whose last bit can depend on the CPU's SIMD path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from episodes.counter_rng import below, draws, uniform01
from episodes.selection import choose_distinct

HEADER_SLOTS = 128  # slots [0, 128) hold the per-episode draws; images start after them
_HIGH = np.uint64(32)  # integer draws use the high 32 bits of a 64-bit word


@dataclass(frozen=True)
class MetaDatasetProtocol:
    """Meta-Dataset's episode parameters (defaults = the paper's)."""

    min_ways: int = 5
    max_ways: int = 50
    max_query: int = 10
    max_support: int = 500
    max_support_per_class: int = 100
    min_shot_weight: float = 0.5
    max_shot_weight: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_ways <= self.max_ways:
            raise ValueError(
                f"MetaDatasetProtocol: need 1 <= min_ways <= max_ways, got {self.min_ways}, "
                f"{self.max_ways}"
            )
        if 2 * self.max_ways + 2 > HEADER_SLOTS:
            raise ValueError(f"MetaDatasetProtocol: max_ways must be <= {HEADER_SLOTS // 2 - 1}")
        if min(self.max_query, self.max_support, self.max_support_per_class) < 1:
            raise ValueError(
                "MetaDatasetProtocol: max_query, max_support, max_support_per_class must be >= 1"
            )
        if not 0 < self.min_shot_weight <= self.max_shot_weight:
            raise ValueError("MetaDatasetProtocol: need 0 < min_shot_weight <= max_shot_weight")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @property
    def way_stride(self) -> int:
        """Slots reserved per way for its image draws (an upper bound on k_c + q)."""
        return self.max_support + self.max_query


def variable_episode_arrays(
    key: np.ndarray, class_sizes: np.ndarray, protocol: MetaDatasetProtocol
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """One variable episode's choices: class positions (N,), per-way image positions, and q.

    Args:
        key: (1,) uint64, the episode's key (counter_rng.episode_keys).
        class_sizes: (C,) int64 images per class of the split; all >= 2, C >= protocol.min_ways.

    Returns:
        (classes, picks, q): classes (N,) int64 positions into the split's classes; picks[j]
        (k_j + q,) int64 positions into way j's image list, support first, then query.
    """
    p = protocol
    n_classes = len(class_sizes)
    header = draws(key, 0, HEADER_SLOTS)
    max_ways = min(p.max_ways, n_classes)
    n_way = p.min_ways + int(below(header[:, 0] >> _HIGH, max_ways - p.min_ways + 1)[0])
    classes = choose_distinct(
        np.array([n_classes]), header[0, 1 : n_way + 1, None] >> _HIGH, n_classes
    )[:, 0]
    sizes = [int(class_sizes[c]) for c in classes]
    n_query = min(p.max_query, min(sizes) // 2)
    remaining = [s - n_query for s in sizes]
    beta = float(uniform01(header[:, n_way + 1])[0])
    # floor(beta * c + 1) with beta in [0, 1): every class adds at least one, so S >= N
    support_size = min(
        p.max_support,
        sum(math.floor(beta * min(p.max_support_per_class, r) + 1) for r in remaining),
    )
    log_low, log_high = math.log(p.min_shot_weight), math.log(p.max_shot_weight)
    noise = [
        math.exp(log_low + float(u) * (log_high - log_low))
        for u in uniform01(header[0, n_way + 2 : 2 * n_way + 2])
    ]
    weights = [s * w for s, w in zip(sizes, noise)]
    total = math.fsum(weights)
    shots = [
        min(math.floor(w / total * (support_size - n_way)) + 1, r)
        for w, r in zip(weights, remaining)
    ]
    picks = []
    for j, (size, k) in enumerate(zip(sizes, shots)):
        words = draws(key, HEADER_SLOTS + j * p.way_stride, k + n_query)
        picks.append(choose_distinct(np.array([size]), words[0, :, None] >> _HIGH, size)[:, 0])
    return classes, picks, n_query

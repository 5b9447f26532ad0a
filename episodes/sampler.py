"""EpisodeSampler: N-way K-shot episodes as a pure function of (seed, split, settings, index).

    from episodes import EpisodeSampler
    sampler = EpisodeSampler(labels, seed=0, split="test", n_way=5, k_shot=1, n_query=15)
    episode = sampler[17]                 # Episode: classes, support/query image indices
    batch = sampler.batch(0, 600)         # EpisodeBatch: (600, 5, 1) support, (600, 5, 15) query

How episode i is drawn (fixed-shape modes). All randomness comes from counter_rng: 64-bit word s
of episode i is mix64(key_i + (s + 1) * golden), key_i = mix64(stream + (i + 1) * golden), all
modulo 2**64, where mix64 is splitmix64's output function, golden = 0x9E3779B97F4A7C15 and stream
= the first 8 bytes (little-endian) of sha256 of `settings` as canonical JSON (sorted keys, no
spaces). A block of D 32-bit draws
at word s0 uses the h = ceil(D / 2) words s0 .. s0+h-1: draw d is the high half of word s0+d if
d < h, else the low half of word s0+d-h. An integer in [0, n) is (draw * n) >> 32. Classes of
the split are sorted by key (`class_keys`), super-categories by name, a class's images by
dataset index. With N ways, K shots, Q queries:

    header: one block of 2N+1 draws at word 0
        draw 0              `within`: the super-category, uniform among those with >= N classes
        draws 1 .. N        the partial Fisher-Yates steps choosing the N classes (`mixed`,
                            `within`) or the N super-categories (`across`), in way order
        draws N+1 .. 2N     `across`: the class of way j, uniform within its super-category
    way j: one block of K+Q draws at word N+1 + j*ceil((K+Q)/2)
        draw t              step t of the partial Fisher-Yates over the class's images; the
                            first K picks are the support, the next Q the query

Any change to this layout, to counter_rng or to selection changes every published episode and
needs a FORMAT_VERSION bump.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from episodes import taxonomy
from episodes.counter_rng import below, draws32, episode_keys, stream_key
from episodes.episode import Episode, EpisodeBatch
from episodes.errors import PartbenchError
from episodes.selection import choose_distinct
from episodes.stacking import to_episodes
from episodes.variable import MetaDatasetProtocol, variable_episode_arrays
from episodes.workspace import Workspace

FORMAT_VERSION = 1
FIXED_MODES = ("mixed", "within", "across")
MODES = FIXED_MODES + ("variable",)
_DEFAULT_SHAPE = {"n_way": 5, "k_shot": 1, "n_query": 15}
_CHUNK = 1024  # episodes per vectorised step of batch(): keeps the working set in L2 (measured)
_MAX_INDEX = 2**63 - 1
_ITEM_BLOCK = 16  # episodes drawn together for sampler[i]; changes speed only, never episodes


class EpisodeSettingsError(PartbenchError, ValueError):
    """A sampler setting that cannot work with the given labels and class lists."""


class EpisodeSampler:
    """Seeded, data-free few-shot episodes over one split of a labelled image list.

    Args:
        labels: the class key (synset) of every image; image index = position in this sequence.
        seed: any integer; with the settings it fixes every episode.
        split: the split to draw classes from ("train", "val", "test" or a split of class_splits).
        n_way, k_shot, n_query: N, K and Q (defaults 5, 1, 15); not allowed with mode="variable".
        mode: "mixed" (any N classes of the split), "within" (all N from one super-category; the
            super-category is uniform among those with at least N classes in the split, so classes
            of small super-categories are drawn more often than with "mixed"), "across" (N
            distinct super-categories, uniform among those in the split, then one class uniformly
            within each) or "variable" (Meta-Dataset's variable-way variable-shot protocol; see
            episodes.variable; only `sampler[i]`, not `batch()`).
        class_splits: class key -> split name; default: PartImageNet's OOD splits. Every label
            must be a key.
        super_categories: class key -> super-category; default: PartImageNet's. Needed only by
            "within" and "across", for the classes of the split.
        n_episodes: optional length, making the sampler a sequence (len, iteration).
        protocol: Meta-Dataset parameters for mode="variable" (default: the paper's).

    Raises:
        EpisodeSettingsError: an infeasible setting, naming the setting to change and the classes
            at fault.
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        seed: int,
        split: str = "test",
        n_way: int | None = None,
        k_shot: int | None = None,
        n_query: int | None = None,
        mode: str = "mixed",
        class_splits: Mapping[str, str] | None = None,
        super_categories: Mapping[str, str] | None = None,
        n_episodes: int | None = None,
        protocol: MetaDatasetProtocol | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise EpisodeSettingsError(f"seed must be an integer, got {seed!r}")
        if mode not in MODES:
            raise EpisodeSettingsError(f"unknown mode={mode!r}: expected one of {', '.join(MODES)}")
        if n_episodes is not None and (
            isinstance(n_episodes, bool)
            or not isinstance(n_episodes, (int, np.integer))
            or n_episodes < 0
        ):
            raise EpisodeSettingsError(
                f"n_episodes must be a non-negative integer or None, got {n_episodes!r}"
            )
        self.mode = mode
        self.split = split
        self.n_episodes = None if n_episodes is None else int(n_episodes)
        class_splits = dict(taxonomy.class_splits() if class_splits is None else class_splits)
        self._check_split(split, class_splits)
        self.class_keys: tuple[str, ...] = tuple(
            sorted(c for c, s in class_splits.items() if s == split)
        )
        self._image_table, self._class_sizes = _images_per_class(
            labels, class_splits, self.class_keys
        )

        shape = {"n_way": n_way, "k_shot": k_shot, "n_query": n_query}
        if mode == "variable":
            given = [name for name, value in shape.items() if value is not None]
            if given:
                raise EpisodeSettingsError(
                    f"mode='variable' draws ways, shots and queries itself: remove {', '.join(given)} "
                    "(or tune them through protocol=MetaDatasetProtocol(...))"
                )
            self.protocol = protocol or MetaDatasetProtocol()
            self.n_way = self.k_shot = self.n_query = None
            self._check_variable()
        else:
            if protocol is not None:
                raise EpisodeSettingsError(
                    f"protocol= applies to mode='variable' only, not mode={mode!r}"
                )
            self.protocol = None
            shape = {k: _DEFAULT_SHAPE[k] if v is None else v for k, v in shape.items()}
            for name, value in shape.items():
                low = 0 if name == "n_query" else 1
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, np.integer))
                    or value < low
                ):
                    raise EpisodeSettingsError(f"{name} must be an integer >= {low}, got {value!r}")
            self.n_way, self.k_shot, self.n_query = (
                int(shape[k]) for k in ("n_way", "k_shot", "n_query")
            )
            self._check_class_sizes(self.k_shot + self.n_query, "k_shot + n_query")
            if mode == "mixed":
                self._check_mixed()
            else:
                self._build_groups(
                    dict(
                        taxonomy.class_super_categories()
                        if super_categories is None
                        else super_categories
                    )
                )

        self.settings: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "seed": int(seed),
            "split": split,
            "mode": mode,
            "n_way": self.n_way,
            "k_shot": self.k_shot,
            "n_query": self.n_query,
        }
        if self.protocol is not None:
            self.settings["protocol"] = self.protocol.as_dict()
        self.seed = int(seed)
        self._stream = stream_key(self.settings)
        self._item_block: tuple[int, list[Episode]] | None = None

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        if self.n_episodes is None:
            raise TypeError("this EpisodeSampler has no length: pass n_episodes=... to build it")
        return self.n_episodes

    def __iter__(self) -> Iterator[Episode]:
        if self.n_episodes is None:
            raise TypeError(
                "iterating needs a length: pass n_episodes=... (or index sampler[i] / call batch())"
            )
        if self.mode == "variable":
            return (self[i] for i in range(self.n_episodes))
        return self._iter_fixed()

    def _iter_fixed(self) -> Iterator[Episode]:
        step = 1024
        for start in range(0, self.n_episodes, step):
            yield from self.episodes(start, min(start + step, self.n_episodes))

    def __getitem__(self, i: int) -> Episode:
        i = operator.index(i)
        if i < 0 and self.n_episodes is not None:
            i += self.n_episodes
        self._check_range(i, i + 1)
        if self.mode == "variable":
            return self._variable_episode(i)
        # episodes come in aligned blocks of _ITEM_BLOCK, the last block kept: a loop over
        # sampler[i] costs about what episodes() does, a random access about one episode
        first = i - i % _ITEM_BLOCK
        cached = self._item_block
        if cached is None or cached[0] != first:
            stop = (
                first + _ITEM_BLOCK
                if self.n_episodes is None
                else min(first + _ITEM_BLOCK, self.n_episodes)
            )
            cached = (
                first,
                to_episodes(self.take(np.arange(first, min(stop, _MAX_INDEX))), self.class_keys),
            )
            self._item_block = cached
        return cached[1][i - first]

    def episodes(self, start: int, stop: int) -> list[Episode]:
        """Episodes start..stop-1 (== [self[i] for i in range(start, stop)], faster)."""
        if self.mode == "variable":
            self._check_range(start, stop)
            return [self._variable_episode(i) for i in range(start, stop)]
        return to_episodes(self.batch(start, stop), self.class_keys)

    def batch(self, start: int, stop: int) -> EpisodeBatch:
        """Episodes start..stop-1 stacked: support (B, N, K), query (B, N, Q), classes (B, N)."""
        return self.take(np.arange(start, stop, dtype=np.int64))

    def take(self, indices: Sequence[int] | np.ndarray) -> EpisodeBatch:
        """The episodes with the given indices (any order, repeats allowed), stacked."""
        if self.mode == "variable":
            raise EpisodeSettingsError(
                "batch()/take() need fixed-shape episodes but mode='variable' varies N, K and Q per "
                "episode: use sampler[i] or sampler.episodes(start, stop)"
            )
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices):
            self._check_range(int(indices.min()), int(indices.max()) + 1)
        n, k, q = self.n_way, self.k_shot, self.n_query
        classes = np.empty((len(indices), n), dtype=np.int64)
        support = np.empty((len(indices), n, k), dtype=np.int64)
        query = np.empty((len(indices), n, q), dtype=np.int64)
        ws = Workspace()  # scratch memory shared by the chunks of this call
        for s in range(0, len(indices), _CHUNK):
            e = s + _CHUNK
            self._fill(indices[s:e], classes[s:e], support[s:e], query[s:e], ws)
        return EpisodeBatch(
            split=self.split, indices=indices, classes=classes, support=support, query=query
        )

    def __repr__(self) -> str:
        shape = (
            ""
            if self.mode == "variable"
            else f", n_way={self.n_way}, k_shot={self.k_shot}, n_query={self.n_query}"
        )
        return (
            f"EpisodeSampler(seed={self.seed}, split={self.split!r}, mode={self.mode!r}{shape}, "
            f"classes={len(self.class_keys)}, n_episodes={self.n_episodes})"
        )

    # ------------------------------------------------------------------ drawing
    def _fill(
        self,
        indices: np.ndarray,
        classes: np.ndarray,
        support: np.ndarray,
        query: np.ndarray,
        ws: Workspace,
    ) -> None:
        """Write episodes `indices` (B,) into classes (B, N), support (B, N, K), query (B, N, Q).

        Everything is computed step-major (draw t of all rows at once) and transposed only in
        the last gather, which writes straight into the outputs.
        """
        n, k, q = self.n_way, self.k_shot, self.n_query
        b = len(indices)
        keys = episode_keys(self._stream, indices)
        head = draws32(keys, 0, 2 * n + 1, ws=ws, name="head")[:, :, 0]  # (2N+1, B)
        if self.mode == "mixed":
            n_classes = len(self.class_keys)
            chosen = choose_distinct(
                np.full(b, n_classes), head[1 : n + 1], n_classes, ws=ws, name="classes"
            )
        elif self.mode == "within":
            groups = self._eligible_groups[below(head[0], len(self._eligible_groups))]
            picks = choose_distinct(
                self._group_sizes[groups],
                head[1 : n + 1],
                self._group_table.shape[1],
                ws=ws,
                name="classes",
            )
            chosen = self._group_table[groups[None, :], picks]
        else:  # across
            n_groups = len(self._group_sizes)
            groups = choose_distinct(
                np.full(b, n_groups), head[1 : n + 1], n_groups, ws=ws, name="classes"
            )
            within = below(head[n + 1 : 2 * n + 1], self._group_sizes[groups])
            chosen = self._group_table[groups, within]
        classes[:] = chosen.T
        rows = classes.reshape(-1)  # row b*N + j: way j of episode b
        image_draws = draws32(keys, n + 1, k + q, blocks=n, ws=ws, name="images")
        image_draws = image_draws.reshape(k + q, b * n)  # way j of episode b: column b*N + j
        width = self._image_table.shape[1]
        picks = choose_distinct(
            self._class_sizes[rows], image_draws, width, ws=ws, name="picks"
        )  # (K+Q, B*N)
        flat_index = np.add(
            picks.T.reshape(b, n, k + q),
            (classes * width)[:, :, None],
            out=ws.get("flat_index", (b, n, k + q), np.int64),
        )
        table = self._image_table.reshape(-1)
        table.take(flat_index[:, :, :k], out=support, mode="clip")  # in range: clip is a no-op
        table.take(flat_index[:, :, k:], out=query, mode="clip")

    def _variable_episode(self, i: int) -> Episode:
        classes, picks, q = variable_episode_arrays(
            episode_keys(self._stream, np.array([i])), self._class_sizes, self.protocol
        )
        images = [self._image_table[c, p].tolist() for c, p in zip(classes.tolist(), picks)]
        return Episode(
            index=i,
            split=self.split,
            classes=tuple(self.class_keys[c] for c in classes.tolist()),
            support=tuple(tuple(row[: len(row) - q]) for row in images),
            query=tuple(tuple(row[len(row) - q :]) for row in images),
        )

    # ------------------------------------------------------------------ checks
    def _check_range(self, start: int, stop: int) -> None:
        limit = _MAX_INDEX if self.n_episodes is None else self.n_episodes
        if start < 0 or stop > limit or start > stop:
            raise IndexError(
                f"episode range [{start}, {stop}) outside [0, {limit})"
                + ("" if self.n_episodes is None else " (n_episodes)")
            )

    @staticmethod
    def _check_split(split: str, class_splits: Mapping[str, str]) -> None:
        known = sorted(set(class_splits.values()))
        if split not in known:
            raise EpisodeSettingsError(
                f"unknown split={split!r}: the class lists (class_splits) hold splits {known}"
            )

    def _check_class_sizes(self, need: int, setting: str) -> None:
        short = [(c, int(s)) for c, s in zip(self.class_keys, self._class_sizes) if s < need]
        if short:
            listed = ", ".join(f"{c} ({s})" for c, s in short)
            raise EpisodeSettingsError(
                f"{setting} = {need} images per class, but {len(short)} class(es) of split "
                f"{self.split!r} have fewer: {listed}. Lower {setting}, or leave those classes out "
                "of class_splits"
            )

    def _check_mixed(self) -> None:
        if self.n_way > len(self.class_keys):
            raise EpisodeSettingsError(
                f"n_way={self.n_way} but split {self.split!r} has only {len(self.class_keys)} "
                f"classes: lower n_way to at most {len(self.class_keys)}"
            )

    def _check_variable(self) -> None:
        self._check_class_sizes(2, "mode='variable' (Meta-Dataset needs >= 2 images per class)")
        if len(self.class_keys) < self.protocol.min_ways:
            raise EpisodeSettingsError(
                f"mode='variable' draws at least protocol.min_ways={self.protocol.min_ways} ways "
                f"but split {self.split!r} has only {len(self.class_keys)} classes: lower "
                "MetaDatasetProtocol(min_ways=...)"
            )

    def _build_groups(self, super_categories: Mapping[str, str]) -> None:
        missing = [c for c in self.class_keys if c not in super_categories]
        if missing:
            raise EpisodeSettingsError(
                f"mode={self.mode!r} needs a super-category for every class of split "
                f"{self.split!r}; super_categories lacks {missing}"
            )
        names = sorted({super_categories[c] for c in self.class_keys})
        members = [
            [j for j, c in enumerate(self.class_keys) if super_categories[c] == g] for g in names
        ]
        self._group_names = tuple(names)
        self._group_sizes = np.array([len(m) for m in members], dtype=np.int64)
        self._group_table = np.zeros((len(names), int(self._group_sizes.max())), dtype=np.int64)
        for g, m in enumerate(members):
            self._group_table[g, : len(m)] = m
        counts = ", ".join(f"{g} {len(m)}" for g, m in zip(names, members))
        if self.mode == "within":
            self._eligible_groups = np.flatnonzero(self._group_sizes >= self.n_way)
            if not len(self._eligible_groups):
                raise EpisodeSettingsError(
                    f"mode='within' needs a super-category with >= n_way={self.n_way} classes in "
                    f"split {self.split!r}, but the largest has {self._group_sizes.max()} "
                    f"({counts}): lower n_way or use mode='mixed'"
                )
        elif self.n_way > len(names):
            raise EpisodeSettingsError(
                f"mode='across' needs n_way={self.n_way} distinct super-categories but split "
                f"{self.split!r} has {len(names)} ({counts}): lower n_way or use mode='mixed'"
            )

    def images_of(self, class_key: str) -> np.ndarray:
        """Image indices of one class of the split, ascending: (size,) int64."""
        try:
            j = self.class_keys.index(class_key)
        except ValueError:
            raise KeyError(f"{class_key!r} is not a class of split {self.split!r}") from None
        return self._image_table[j, : self._class_sizes[j]].copy()

    def labels_to_indices(self) -> dict[str, list[int]]:
        """class key -> its image indices, for the classes of the split (learn2learn's bookkeeping)."""
        return {c: self.images_of(c).tolist() for c in self.class_keys}

    @property
    def super_category_keys(self) -> tuple[str, ...] | None:
        """The split's super-categories in sorted order ("within"/"across" modes), else None."""
        return getattr(self, "_group_names", None)


def _images_per_class(
    labels: Sequence[str], class_splits: Mapping[str, str], class_keys: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Image indices of each class in class_keys: (C, max size) int64 table padded with -1, sizes (C,)."""
    code_of: dict[str, int] = {}
    codes = np.fromiter(
        (code_of.setdefault(label, len(code_of)) for label in labels),
        dtype=np.int64,
        count=len(labels),
    )
    unknown = [name for name in code_of if name not in class_splits]
    if unknown:
        shown = ", ".join(map(repr, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise EpisodeSettingsError(
            f"labels name {len(unknown)} class(es) absent from class_splits: {shown}. Add them to "
            "class_splits (class key -> split) or fix the labels"
        )
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(code_of) + 1))
    groups = [
        order[starts[code_of[c]] : starts[code_of[c] + 1]] if c in code_of else order[:0]
        for c in class_keys
    ]
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    table = np.full((len(class_keys), max(1, int(sizes.max(initial=0)))), -1, dtype=np.int64)
    for j, g in enumerate(groups):
        table[j, : len(g)] = g
    return table, sizes

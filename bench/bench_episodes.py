"""Episode descriptions per second on ONE core: partbench's sampler vs learn2learn and easyfsl.

    .venv/bin/python bench/bench_episodes.py [--episodes 200000] [--peer-episodes 3000]

Setting: 5-way 1-shot 15-query on the test split of the full-size twin (30 classes, 4598 images,
153-154 per class; labels from benchmark.data.twin.generate.plan_counts(full=True), no images needed).
The process is pinned to one CPU and every thread pool is set to 1 thread before numpy or torch
load. The contenders run interleaved, --repeats rounds; each figure is the best round, both by
wall clock and by the process's CPU time (on a shared, loaded machine the CPU-time figure is the
one that measures the code rather than the neighbours).

- partbench: `EpisodeSampler.batch(0, B)` (vectorised) with B = --episodes (20,000: a
  benchmark run's worth), plus, for context, one batch of --big-batch (200,000: its 128 MB of
  fresh output memory costs page faults), `sampler.episodes(0, B/10)` (the same as Episode
  objects) and `sampler[i]` one at a time.
- learn2learn 0.2.0: `TaskDataset(MetaDataset(test images), [NWays(n=5), KShots(k=16)]).sample()`,
  without LoadData (descriptions only; sample() still collates the 80 indices into a tensor).
- easyfsl 1.5.0: iterating `TaskSampler(test images, n_way=5, n_shot=1, n_query=15)`. Its
  `__init__` calls `Sampler.__init__(data_source=None)`, a TypeError on torch 2.14; the bench
  subclasses it with a mixin placed after it in the MRO that swallows that argument (no global
  patching). Installs easyfsl==1.5.0 --no-deps if missing.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_WAY, K_SHOT, N_QUERY = 5, 1, 15


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity on this OS)"


def full_twin_test_labels() -> tuple[list[str], list[str]]:
    """(labels of all 24095 images in split/class order, labels of the 4598 test images)."""
    from benchmark.data.twin.generate import plan_counts

    plan = plan_counts(full=True)
    labels = [
        synset
        for split in ("train", "val", "test")
        for synset, n in plan[split].items()
        for _ in range(n)
    ]
    test = [synset for synset, n in plan["test"].items() for _ in range(n)]
    return labels, test


def time_rounds(runs: dict[str, tuple], repeats: int) -> dict[str, tuple[float, float]]:
    """name -> (best wall episodes/s, best CPU-time episodes/s); runs: name -> (callable, episodes)."""
    best = {name: [float("inf"), float("inf")] for name in runs}
    for _ in range(repeats):
        for name, (run, _count) in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name][0] = min(best[name][0], wall)
            best[name][1] = min(best[name][1], max(cpu, 1e-9))
    return {name: (runs[name][1] / w, runs[name][1] / c) for name, (w, c) in best.items()}


def ensure_easyfsl() -> None:
    try:
        importlib.import_module("easyfsl")
    except ImportError:
        print("installing easyfsl==1.5.0 --no-deps ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "easyfsl==1.5.0", "--no-deps"],
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--episodes", type=int, default=20_000, help="episodes per partbench batch() call"
    )
    parser.add_argument(
        "--big-batch",
        type=int,
        default=200_000,
        help="episodes of one large batch() call (context)",
    )
    parser.add_argument("--peer-episodes", type=int, default=3_000, help="episodes per peer run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pinned = pin_to_one_core()
    ensure_easyfsl()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from episodes import EpisodeSampler

    all_labels, test_labels = full_twin_test_labels()
    runs: dict[str, tuple] = {}

    # ---- partbench
    sampler = EpisodeSampler(
        all_labels, seed=0, split="test", n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY
    )
    sampler.batch(0, 1000)  # warm-up
    b = args.episodes
    runs["partbench batch()"] = (lambda: sampler.batch(0, b), b)
    big = args.big_batch
    runs[f"partbench batch() of {big:,} at once"] = (lambda: sampler.batch(0, big), big)
    n_obj = max(1, b // 10)
    runs["partbench episodes() -> Episode objects"] = (lambda: sampler.episodes(0, n_obj), n_obj)
    n_item = max(1, b // 100)
    runs["partbench sampler[i], one at a time"] = (
        lambda: [sampler[i] for i in range(n_item)],
        n_item,
    )

    # ---- learn2learn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import learn2learn as l2l

        class Indices(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(test_labels)

            def __getitem__(self, i: int):
                return i, test_labels[i]

        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(test_labels):
            by_label.setdefault(label, []).append(i)
        meta = l2l.data.MetaDataset(Indices(), labels_to_indices=by_label)
        taskset = l2l.data.TaskDataset(
            meta,
            task_transforms=[
                l2l.data.transforms.NWays(meta, n=N_WAY),
                l2l.data.transforms.KShots(meta, k=K_SHOT + N_QUERY),
            ],
            num_tasks=-1,
        )
        task = taskset.sample()
        assert task.numel() == N_WAY * (K_SHOT + N_QUERY), task.shape
        p = args.peer_episodes
        runs["learn2learn TaskDataset.sample()"] = (lambda: [taskset.sample() for _ in range(p)], p)

    # ---- easyfsl
    from easyfsl.samplers import TaskSampler

    class _SwallowDataSource(torch.utils.data.Sampler):
        """Accepts the data_source=None that easyfsl passes up; torch 2.14's Sampler takes none."""

        def __init__(self, data_source=None) -> None:
            super().__init__()

    class PatchedTaskSampler(TaskSampler, _SwallowDataSource):
        """easyfsl 1.5.0's TaskSampler, unchanged, made constructible on torch 2.14."""

    class LabelledTestImages:
        def get_labels(self) -> list[str]:
            return test_labels

    p = args.peer_episodes
    easy = PatchedTaskSampler(
        LabelledTestImages(), n_way=N_WAY, n_shot=K_SHOT, n_query=N_QUERY, n_tasks=p
    )
    first = next(iter(easy))
    assert len(first) == N_WAY * (K_SHOT + N_QUERY)
    runs["easyfsl TaskSampler iteration"] = (lambda: list(easy), p)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rates = time_rounds(runs, args.repeats)

    # ---- report
    peers = ("learn2learn TaskDataset.sample()", "easyfsl TaskSampler iteration")
    ours = rates["partbench batch()"]
    peer = tuple(max(rates[name][c] for name in peers) for c in (0, 1))
    print(
        f"\nEpisode descriptions/s (partbench batch() = {b:,} episodes per call), {N_WAY}-way {K_SHOT}-shot {N_QUERY}-query, test split of the full-size "
        f"twin ({len(sampler.class_keys)} classes, {len(test_labels)} images); one core ({pinned}); "
        f"best of {args.repeats} interleaved rounds"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"learn2learn {l2l.__version__}, easyfsl 1.5.0; {platform.processor() or platform.machine()}"
    )
    print(
        "easyfsl workaround: TaskSampler subclassed with a Sampler mixin after it in the MRO that accepts "
        "and drops data_source=None (torch 2.14's Sampler.__init__ takes no arguments)\n"
    )
    width = max(map(len, rates))
    print(
        f"  {'':<{width}}  {'wall clock':>14}  {'CPU time':>14}  {'x faster peer (wall / CPU)':>28}"
    )
    for name, (wall, cpu) in rates.items():
        print(
            f"  {name:<{width}}  {wall:>12,.0f}/s  {cpu:>12,.0f}/s  {wall / peer[0]:>12,.1f} / {cpu / peer[1]:,.1f}"
        )
    for name in peers:
        print(
            f"partbench batch() vs {name}: x{ours[0] / rates[name][0]:,.0f} (wall), x{ours[1] / rates[name][1]:,.0f} (CPU)"
        )
    for label, c in (("wall clock", 0), ("CPU time", 1)):
        print(
            f"goals ({label}): >= 100,000 episodes/s: {'met' if ours[c] >= 100_000 else 'NOT met'} "
            f"({ours[c]:,.0f}); >= 50x the faster peer: {'met' if ours[c] >= 50 * peer[c] else 'NOT met'} "
            f"(x{ours[c] / peer[c]:,.0f})"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

"""Episodes per second: our batched learners against easyfsl's (and learn2learn's) per-episode loops.

    python bench/bench_learners.py [--episodes 20000] [--chunk 16] [--threads 1] [--device cpu]
    python bench/bench_learners.py --transductive [--episodes 600] [--chunk C] [--raw]

All three score 5-way 1-shot 15-query episodes on the same cached features: a (n_images, 512)
float16 table of synthetic class-clustered embeddings standing in for the feature cache (30
test-split classes), widened once to float32 as a harness keeps it in memory (not timed).

- ours: `baselines.get_learner("protonet")` on chunks of `--chunk` episodes; per chunk one gather
  of the (B, N*(K+Q)) episode index array from episodes.EpisodeSampler.batch(), then fit/predict.
- easyfsl: `easyfsl.utils.evaluate` (process_support_set + forward per episode) with
  `easyfsl.methods.PrototypicalNetworks(nn.Identity())`, on the very same episodes, fed by a
  plain iterable of (support, labels, query, labels, class ids) tuples gathered per episode.
  We do not use easyfsl's TaskSampler (it would sample other episodes, and its __init__ calls
  `Sampler.__init__(data_source=None)`, a TypeError on torch 2.14), so no workaround is needed.
- learn2learn: a `learn2learn.data.TaskDataset` (NWays, KShots, LoadData, RemapLabels) over a
  MetaDataset of the same feature table, sampling its own episodes; per task, ProtoNet in torch.

Each timing is the best of `--repeats` runs (the machine is shared; the minimum is the least
disturbed); CPU time is printed beside wall time. Small chunks win on CPU: a chunk's gathered
block (16 episodes: 2.6 MB) stays in cache, while a 500-episode block (82 MB) is a fresh
allocation whose page faults cost more than the arithmetic. One torch thread is the default: at
16 episodes per call a second thread adds more synchronisation than work (`--threads 2` to see).
The script installs easyfsl 1.5.0 (`pip install easyfsl==1.5.0 --no-deps`) if missing.
Accuracies are printed as a sanity check: ours and easyfsl's must be equal.

`--transductive` times the four transductive learners instead (bd_cspn, laplacianshot, tim,
pt_map; `--learners` for a subset) against easyfsl's BDCSPN, LaplacianShot, TIM and PTMAP, each
run as easyfsl's `evaluate` does (eval mode, no_grad, process_support_set + forward per episode),
on the same episodes (600 by default) of the same table with its rows L2-normalised. On raw rows
easyfsl's PT-MAP underflows (exp(-10 * squared distances of hundreds)) and scores NaN (`--raw`
to see it); on normalised rows it still does in a few episodes, whose 1-shot prototypes are far
from some queries (whole rows of exp(-10 * cost) are 0 in float32), hence a few per mille of
PT-MAP's predictions differ, easyfsl's being the underflowed ones (baselines/pt_map.py). Ours
run `--chunk` episodes per call, by default where each is fastest (TRANSDUCTIVE_CHUNK). One run
each (`--repeats`): easyfsl's loop takes one to two minutes for the four. The table gives both
wall times, their ratio, both accuracies and the share of queries where the two predict the
same way; the goal line checks each ratio >= 20 and our total < 30 s. Two more columns: `floor s`,
the cheapest batched pass over the same episodes at the same chunk (`protonet_cosine`: the gather
of each episode's features and one query-prototype product), which no learner can undercut, and
`20x needs s`, easyfsl's time / 20: where the floor exceeds it, 20x is out of reach here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import get_learner  # noqa: E402
from baselines.base import EpisodeFeatures  # noqa: E402
from episodes import EpisodeSampler, taxonomy  # noqa: E402


def ensure_easyfsl() -> None:
    if importlib.util.find_spec("easyfsl") is None:
        print("installing easyfsl==1.5.0 (--no-deps) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "easyfsl==1.5.0", "--no-deps"],
            check=True,
        )
        importlib.invalidate_caches()


def feature_table(
    n_classes: int, per_class: int, dim: int, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """(n_classes * per_class, dim) float16 embeddings clustered by class, and class ids (n,)."""
    g = torch.Generator().manual_seed(seed)
    class_ids = np.repeat(np.arange(n_classes), per_class)
    centres = torch.randn(n_classes, dim, generator=g)
    noise = 3.0 * torch.randn(len(class_ids), dim, generator=g)  # 1-shot accuracy near 0.77
    table = centres[torch.from_numpy(class_ids)] + noise
    return table.half(), class_ids


def best_of(repeats: int, run: Callable[[], float]) -> tuple[float, float, float]:
    """(smallest wall time in s, smallest CPU time in s, the run's accuracy) over `repeats` runs."""
    wall, cpu, accuracy = float("inf"), float("inf"), float("nan")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        accuracy = run()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, accuracy


def ours(
    table: torch.Tensor, support: np.ndarray, query: np.ndarray, chunk: int
) -> Callable[[], float]:
    """Batched ProtoNet over all episodes, `chunk` at a time; returns the query accuracy."""
    b, n_way, k_shot = support.shape
    n_query = query.shape[2]
    device = table.device
    index = torch.from_numpy(np.concatenate([support.reshape(b, -1), query.reshape(b, -1)], 1))
    index = index.to(device)
    labels = torch.arange(n_way, device=device).repeat_interleave(k_shot).expand(chunk, -1)
    truth = torch.arange(n_way, device=device).repeat_interleave(n_query)
    learner = get_learner("protonet")
    split = n_way * k_shot

    def run() -> float:
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, b, chunk):
            feats = torch.nn.functional.embedding(index[start : start + chunk], table)  # one gather
            rows = feats.shape[0]
            scores = learner.fit(EpisodeFeatures(feats[:, :split]), labels[:rows], n_way).predict(
                EpisodeFeatures(feats[:, split:])
            )
            correct += (scores.argmax(-1) == truth).sum()
        return correct.item() / (b * n_way * n_query)

    return run


def easyfsl_loop(
    table: torch.Tensor, support: np.ndarray, query: np.ndarray
) -> Callable[[], float]:
    from easyfsl.methods import PrototypicalNetworks
    from easyfsl.utils import evaluate

    b, n_way, k_shot = support.shape
    n_query = query.shape[2]
    support_labels = torch.arange(n_way).repeat_interleave(k_shot)
    query_labels = torch.arange(n_way).repeat_interleave(n_query)
    support_t, query_t = torch.from_numpy(support), torch.from_numpy(query)
    model = PrototypicalNetworks(torch.nn.Identity())

    class Tasks:  # what easyfsl's DataLoader would yield, from our episode index arrays
        def __len__(self) -> int:
            return b

        def __iter__(self):
            for e in range(b):
                yield (
                    table[support_t[e].reshape(-1)],
                    support_labels,
                    table[query_t[e].reshape(-1)],
                    query_labels,
                    list(range(n_way)),
                )

    return lambda: evaluate(model, Tasks(), device=str(table.device), use_tqdm=False)


def learn2learn_loop(
    table: torch.Tensor,
    class_ids: np.ndarray,
    n_tasks: int,
    n_way: int,
    k_shot: int,
    n_query: int,
    seed: int,
) -> Callable[[], float]:
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    random.seed(seed)  # learn2learn samples from Python's global `random`; bench-only
    dataset = l2l.data.MetaDataset(
        torch.utils.data.TensorDataset(table, torch.from_numpy(class_ids))
    )
    tasks = l2l.data.TaskDataset(
        dataset,
        task_transforms=[
            NWays(dataset, n_way),
            KShots(dataset, k_shot + n_query),
            LoadData(dataset),
            RemapLabels(dataset),
        ],
        num_tasks=-1,
    )

    def run() -> float:
        correct = 0
        with torch.no_grad():
            for _ in range(n_tasks):
                x, y = tasks.sample()
                order = torch.argsort(y, stable=True).view(n_way, k_shot + n_query)
                s, q = x[order[:, :k_shot]], x[order[:, k_shot:]].reshape(-1, x.shape[-1])
                prototypes = s.mean(1)
                scores = -(torch.cdist(q, prototypes) ** 2)
                truth = y[order[:, k_shot:]].reshape(-1)
                correct += int((scores.argmax(-1) == truth).sum())
        return correct / (n_tasks * n_way * n_query)

    return run


TRANSDUCTIVE = {  # ours -> easyfsl.methods class
    "bd_cspn": "BDCSPN",
    "laplacianshot": "LaplacianShot",
    "tim": "TIM",
    "pt_map": "PTMAP",
}
# episodes per call where each is fastest on one CPU thread: a chunk of 16-32 episodes keeps
# its features in cache for the cheap ones; PT-MAP's Sinkhorn tail (episodes that take up to
# 1000 iterations) is a Python loop per call, paid once over a large chunk
TRANSDUCTIVE_CHUNK = {"bd_cspn": 32, "laplacianshot": 32, "tim": 16, "pt_map": 600}


def ours_predictions(
    name: str, table: torch.Tensor, support: np.ndarray, query: np.ndarray, chunk: int
) -> Callable[[], torch.Tensor]:
    """Learner `name` over all episodes, `chunk` at a time; returns predictions (B, N*Q)."""
    b, n_way, k_shot = support.shape
    index = torch.from_numpy(np.concatenate([support.reshape(b, -1), query.reshape(b, -1)], 1))
    index = index.to(table.device)
    labels = torch.arange(n_way, device=table.device).repeat_interleave(k_shot).expand(chunk, -1)
    split = n_way * k_shot

    def run() -> torch.Tensor:
        learner, out = get_learner(name), []
        for start in range(0, b, chunk):
            feats = torch.nn.functional.embedding(index[start : start + chunk], table)
            rows = feats.shape[0]
            scores = learner.fit(EpisodeFeatures(feats[:, :split]), labels[:rows], n_way).predict(
                EpisodeFeatures(feats[:, split:])
            )
            out.append(scores.argmax(-1))
        return torch.cat(out)

    return run


def easyfsl_predictions(
    method: str, table: torch.Tensor, support: np.ndarray, query: np.ndarray
) -> Callable[[], torch.Tensor]:
    """easyfsl.methods.<method> one episode at a time, as easyfsl.utils.evaluate runs it
    (eval mode, no_grad, process_support_set then forward); returns predictions (B, N*Q)."""
    from easyfsl import methods

    b, n_way, k_shot = support.shape
    support_labels = torch.arange(n_way, device=table.device).repeat_interleave(k_shot)
    support_t, query_t = torch.from_numpy(support), torch.from_numpy(query)
    model = getattr(methods, method)(torch.nn.Identity()).eval()

    def run() -> torch.Tensor:
        out = []
        with torch.no_grad():
            for e in range(b):
                model.process_support_set(table[support_t[e].reshape(-1)], support_labels)
                out.append(model(table[query_t[e].reshape(-1)]).argmax(-1))
        return torch.stack(out)

    return run


def timed(repeats: int, run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    """(smallest wall time in s over `repeats` runs, the last run's predictions)."""
    wall, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        wall = min(wall, time.perf_counter() - start)
    return wall, out


def transductive_main(args: argparse.Namespace, table: torch.Tensor, batch) -> int:
    """The four transductive learners against easyfsl's per-episode loop on the same episodes."""
    if not args.raw:
        table = torch.nn.functional.normalize(table, dim=-1)
    n_way, n_query = batch.query.shape[1], batch.query.shape[2]
    truth = torch.arange(n_way, device=table.device).repeat_interleave(n_query)
    names = args.learners or list(TRANSDUCTIVE)
    print(
        f"{len(batch.support)} episodes, rows {'raw' if args.raw else 'L2-normalised'}, "
        f"ours {args.chunk or TRANSDUCTIVE_CHUNK} episodes per call"
    )
    print(
        f"{'learner':<15}{'partbench s':>12}{'easyfsl s':>11}{'ratio':>8}"
        f"{'acc partbench':>15}{'acc easyfsl':>13}{'same pred':>11}{'floor s':>9}{'20x needs s':>13}"
    )
    total, ratios = 0.0, []
    floors: dict[int, float] = {}  # chunk -> floor time: learners at the same chunk share it
    for name in names:
        chunk = args.chunk or TRANSDUCTIVE_CHUNK[name]
        wall, mine = timed(
            args.repeats, ours_predictions(name, table, batch.support, batch.query, chunk)
        )
        peer_wall, theirs = timed(
            args.repeats, easyfsl_predictions(TRANSDUCTIVE[name], table, batch.support, batch.query)
        )
        # The floor: the cheapest batched pass over the same episodes at the same chunk (the
        # gather of each episode's features and one query-prototype product, protonet_cosine).
        # No transductive learner can take less; where it exceeds easyfsl's time / 20, the 20x
        # goal is out of reach on this machine whatever the learner's own arithmetic.
        if chunk not in floors:
            floors[chunk], _ = timed(
                max(3, args.repeats),
                ours_predictions("protonet_cosine", table, batch.support, batch.query, chunk),
            )
        floor = floors[chunk]
        total += wall
        ratios.append(peer_wall / wall)
        print(
            f"{name:<15}{wall:>12.3f}{peer_wall:>11.3f}{peer_wall / wall:>8.1f}"
            f"{(mine == truth).float().mean().item():>15.4f}"
            f"{(theirs == truth).float().mean().item():>13.4f}"
            f"{(mine == theirs).float().mean().item():>11.4f}"
            f"{floor:>9.3f}{peer_wall / 20:>13.3f}",
            flush=True,
        )
    met = min(ratios) >= 20 and total < 30
    print(
        f"goal (each >= 20x easyfsl's loop, ours < 30 s in all): {'met' if met else 'NOT met'} "
        f"(ours {total:.2f} s in all; smallest ratio {min(ratios):.1f}x)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--episodes", type=int, help="episodes for ours (default 20000; --transductive: 600)"
    )
    parser.add_argument("--peer-episodes", type=int, default=1000, help="episodes per peer run")
    parser.add_argument(
        "--chunk",
        type=int,
        help="episodes per learner call (default 16: the gathered block stays in cache; "
        "--transductive: per learner, 16 to 600)",
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--images-per-class", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--repeats", type=int, help="runs per timing (default 3; --transductive: 1)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--transductive",
        action="store_true",
        help="time bd_cspn, laplacianshot, tim, pt_map against easyfsl instead",
    )
    parser.add_argument(
        "--learners", nargs="+", choices=list(TRANSDUCTIVE), help="with --transductive: a subset"
    )
    parser.add_argument(
        "--raw", action="store_true", help="with --transductive: keep the rows unnormalised"
    )
    args = parser.parse_args(argv)
    defaults = (600, None, 1) if args.transductive else (20000, 16, 3)
    for key, default in zip(("episodes", "chunk", "repeats"), defaults):
        if getattr(args, key) is None:
            setattr(args, key, default)
    torch.set_num_threads(args.threads)
    n_way, k_shot, n_query = 5, 1, 15
    ensure_easyfsl()

    test_classes = taxonomy.split_classes("test")
    half, class_ids = feature_table(len(test_classes), args.images_per_class, args.dim, args.seed)
    table = half.float().to(args.device)
    labels = [test_classes[c] for c in class_ids]
    sampler = EpisodeSampler(
        labels, seed=args.seed, split="test", n_way=n_way, k_shot=k_shot, n_query=n_query
    )
    start = time.perf_counter()
    batch = sampler.batch(0, args.episodes)
    sampling = time.perf_counter() - start
    print(
        f"{n_way}-way {k_shot}-shot {n_query}-query, D={args.dim}, {len(table)} images, "
        f"device={args.device}, torch threads={torch.get_num_threads()}; "
        f"EpisodeSampler.batch: {args.episodes / sampling:,.0f} episodes/s (not in the timings)"
    )

    if args.transductive:
        return transductive_main(args, table, batch)
    peer = slice(0, args.peer_episodes)
    rows = [
        (
            "ours: batched protonet",
            args.episodes,
            *best_of(args.repeats, ours(table, batch.support, batch.query, args.chunk)),
        )
    ]
    *_, acc_same = best_of(1, ours(table, batch.support[peer], batch.query[peer], args.chunk))
    rows.append(
        (
            "easyfsl evaluate loop",
            args.peer_episodes,
            *best_of(args.repeats, easyfsl_loop(table, batch.support[peer], batch.query[peer])),
        )
    )
    rows.append(
        (
            "learn2learn TaskDataset loop",
            args.peer_episodes,
            *best_of(
                args.repeats,
                learn2learn_loop(
                    table.cpu(), class_ids, args.peer_episodes, n_way, k_shot, n_query, args.seed
                ),
            ),
        )
    )

    ours_rate, ours_cpu_rate = args.episodes / rows[0][2], args.episodes / rows[0][3]
    print(
        f"{'implementation':<30}{'episodes':>9}{'wall s':>9}{'episodes/s':>12}{'ours x':>8}"
        f"{'episodes/CPU-s':>16}{'ours x':>8}{'accuracy':>10}"
    )
    for name, n, wall, cpu, accuracy in rows:
        print(
            f"{name:<30}{n:>9}{wall:>9.3f}{n / wall:>12,.0f}{ours_rate * wall / n:>8.1f}"
            f"{n / cpu:>16,.0f}{ours_cpu_rate * cpu / n:>8.1f}{accuracy:>10.4f}"
        )
    acc_easyfsl = rows[1][4]
    print(
        f"same {args.peer_episodes} episodes: accuracy ours {acc_same:.4f}, easyfsl {acc_easyfsl:.4f} "
        f"({'equal' if abs(acc_same - acc_easyfsl) < 1e-9 else 'DIFFERENT'})"
    )
    fastest_peer = max(n / wall for _, n, wall, _, _ in rows[1:])
    met = ours_rate >= 20000 and ours_rate >= 100 * fastest_peer
    print(
        f"goal (>= 20,000 episodes/s and >= 100x the faster peer, wall clock): "
        f"{'met' if met else 'NOT met'} ({ours_rate:,.0f} episodes/s, "
        f"{ours_rate / fastest_peer:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What it costs to score N test episodes with one backbone, from JPEG files to accuracy.

    python bench/bench_end_to_end.py                        # 600 episodes, the demo's setting
    python bench/bench_end_to_end.py --peer-episodes 30     # quick: peers extrapolated to 600
    python bench/bench_end_to_end.py --episodes 50          # smoke run (features barely amortised)
    python bench/bench_end_to_end.py --twin-size 400        # ImageNet-size images

Setting: the demo's backbone (resnet10t at 64 px, random weights, fp32 on the CPU), 5-way 1-shot
15-query test episodes drawn by episodes.EpisodeSampler from the synthetic twin (or --data ROOT).

- partbench: `extract_features` over the union of the episodes' images (no cache, masks="none"),
  then the batched ProtoNet (`baselines.get_learner("protonet")`) through
  `benchmark.evaluation.feature_learners.predict_batch`, `--chunk` episodes per call.
- easyfsl: `easyfsl.utils.evaluate` with `PrototypicalNetworks(backbone)`: per episode, the
  episode's images are decoded, preprocessed and run through the backbone, then ProtoNet. It sees
  the very same episodes and the very same pixels (one preprocessing function for all three), so
  its accuracy must equal partbench's (partbench stores features in float16; a near-tie could
  flip a query, which the script reports). easyfsl's loop is timed as documented: `evaluate`
  over a task iterable that loads each task's images when it is reached.
- learn2learn: a `learn2learn.data.TaskDataset` (NWays, KShots, LoadData, RemapLabels) over a
  MetaDataset of the test split's images; per task the backbone and ProtoNet as above. It samples
  its own episodes (its accuracy is printed, not compared).

The peers cost the same for every episode, so with --peer-episodes P < N they run P episodes and
their time for N is extrapolated linearly (the output says so). partbench always runs all N.
Goal: partbench at least 50x faster than the faster peer, printed as met or not.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import get_learner  # noqa: E402
from benchmark.data.partimagenet import load_partimagenet  # noqa: E402
from benchmark.data.twin.generate import generate_twin  # noqa: E402
from benchmark.evaluation.feature_learners import predict_batch  # noqa: E402
from benchmark.features.extraction import extract_features
from benchmark.features.images import PartImageDataset, SplitTransform  # noqa: E402
from benchmark.models.backbones import build_backbone  # noqa: E402
from episodes import EpisodeSampler  # noqa: E402

GOAL = 50.0


class Pooled(nn.Module):
    """The backbone as easyfsl and learn2learn call it: (n, 3, H, W) -> (n, D) pooled embedding."""

    def __init__(self, backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model  # registered, so .eval() reaches it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.feature_map(images.contiguous(memory_format=torch.channels_last))[1]


class Pixels(torch.utils.data.Dataset):
    """Dataset image -> normalised (3, H, W) float32 input, exactly as extract_features makes it."""

    def __init__(
        self, dataset, backbone, indices: np.ndarray, labels: np.ndarray | None = None
    ) -> None:
        self.split = SplitTransform.of(backbone.transform)
        self.items = PartImageDataset(dataset, indices, self.split, None)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.items)

    def load(self, positions) -> torch.Tensor:
        """(n, 3, H, W) inputs of the given positions."""
        return self.split.normalise(torch.stack([self.items[int(p)][0] for p in positions]))

    def __getitem__(self, k: int):
        return self.load([k])[0], int(self.labels[k])


def dataset_root(args) -> Path:
    if args.data:
        return Path(args.data)
    cache = Path(os.environ.get("PARTBENCH_CACHE") or Path.home() / ".cache" / "partbench")
    root = cache / f"bench-twin-{args.twin_size}px-{args.images_per_class}"
    return generate_twin(
        root,
        images_per_class=args.images_per_class,
        image_size=args.twin_size,
        workers=max(1, os.cpu_count() or 1),
    )


def run_partbench(
    dataset, backbone, batch, chunk: int, num_workers: int
) -> tuple[float, np.ndarray]:
    """(seconds, (B, n_query_total) predicted labels): features once, then batched ProtoNet."""
    start = time.perf_counter()
    needed = np.unique(np.concatenate([batch.support.ravel(), batch.query.ravel()]))
    features = extract_features(
        dataset,
        needed,
        backbone,
        masks="none",
        cache_dir=None,
        device="cpu",
        precision="fp32",
        batch_size=64,
        num_workers=num_workers,
        progress=False,
    )
    learner = get_learner("protonet")
    predicted = []
    for s in range(0, len(batch), chunk):
        part = type(batch)(
            batch.split,
            batch.indices[s : s + chunk],
            batch.classes[s : s + chunk],
            batch.support[s : s + chunk],
            batch.query[s : s + chunk],
        )
        out = predict_batch(learner, part, features.gather, features.gather)
        predicted.append(out.predicted)
    return time.perf_counter() - start, np.concatenate(predicted)


def run_easyfsl(pixels: Pixels, model: nn.Module, batch) -> tuple[float, float]:
    """(seconds, accuracy) of easyfsl's documented `evaluate` over the same episodes."""
    from easyfsl.methods import PrototypicalNetworks
    from easyfsl.utils import evaluate

    b, n_way, k_shot = batch.support.shape
    n_query = batch.query.shape[2]
    support_labels = torch.arange(n_way).repeat_interleave(k_shot)
    query_labels = torch.arange(n_way).repeat_interleave(n_query)

    class Tasks:  # what easyfsl's task loader yields, from our episodes; images loaded per task
        def __len__(self) -> int:
            return b

        def __iter__(self):
            for e in range(b):
                yield (
                    pixels.load(batch.support[e].ravel()),
                    support_labels,
                    pixels.load(batch.query[e].ravel()),
                    query_labels,
                    list(range(n_way)),
                )

    start = time.perf_counter()
    accuracy = evaluate(PrototypicalNetworks(model), Tasks(), device="cpu", use_tqdm=False)
    return time.perf_counter() - start, float(accuracy)


def run_learn2learn(
    dataset,
    backbone,
    model: nn.Module,
    split_indices: np.ndarray,
    labels: np.ndarray,
    n_tasks: int,
    n_way: int,
    k_shot: int,
    n_query: int,
    seed: int,
) -> tuple[float, float]:
    """(seconds, accuracy) of a TaskDataset loop; its episodes are its own."""
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    random.seed(seed)  # learn2learn samples from Python's global `random`; bench-only
    local = Pixels(dataset, backbone, split_indices, labels)
    by_label: dict[int, list[int]] = {}
    for k, y in enumerate(labels):
        by_label.setdefault(int(y), []).append(k)
    meta = l2l.data.MetaDataset(local, labels_to_indices=by_label)
    tasks = l2l.data.TaskDataset(
        meta,
        task_transforms=[
            NWays(meta, n_way),
            KShots(meta, k_shot + n_query),
            LoadData(meta),
            RemapLabels(meta),
        ],
        num_tasks=-1,
    )
    correct = 0
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(n_tasks):
            x, y = tasks.sample()
            emb = model(x)
            order = torch.argsort(y, stable=True).view(n_way, k_shot + n_query)
            prototypes = emb[order[:, :k_shot]].mean(1)
            q = emb[order[:, k_shot:]].reshape(-1, emb.shape[-1])
            truth = y[order[:, k_shot:]].reshape(-1)
            correct += int(((-torch.cdist(q, prototypes)).argmax(-1) == truth).sum())
    return time.perf_counter() - start, correct / (n_tasks * n_way * n_query)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument(
        "--peer-episodes",
        type=int,
        default=None,
        help="episodes the peers run (default: all); fewer are extrapolated to --episodes",
    )
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64, help="model input size")
    parser.add_argument(
        "--data", default=None, help="a PartImageNet-format root instead of the twin"
    )
    parser.add_argument("--twin-size", type=int, default=128, help="the twin's image size (pixels)")
    parser.add_argument("--images-per-class", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=64, help="episodes per learner call")
    parser.add_argument("--num-workers", type=int, default=0, help="partbench's decode workers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n_way, k_shot, n_query = 5, 1, 15
    peer_n = min(args.peer_episodes or args.episodes, args.episodes)

    dataset = load_partimagenet(dataset_root(args))
    backbone = build_backbone(args.model, image_size=args.image_size, seed=args.seed)
    backbone.model.to(memory_format=torch.channels_last).eval()
    sampler = EpisodeSampler(
        dataset.labels,
        seed=args.seed,
        split="test",
        n_way=n_way,
        k_shot=k_shot,
        n_query=n_query,
        n_episodes=args.episodes,
    )
    batch = sampler.batch(0, args.episodes)
    truth = np.repeat(np.arange(n_way), n_query)
    print(
        f"{args.model} @ {args.image_size}px (random weights, fp32, cpu, {torch.get_num_threads()} "
        f"torch threads), {n_way}-way {k_shot}-shot {n_query}-query, {args.episodes} test episodes "
        f"of {dataset.root.name} ({len(dataset.split_indices('test'))} test images)"
    )

    ours_s, ours_pred = run_partbench(dataset, backbone, batch, args.chunk, args.num_workers)
    model = Pooled(backbone).eval()
    pixels = Pixels(dataset, backbone, np.arange(len(dataset.images)))
    head = type(batch)(
        batch.split,
        batch.indices[:peer_n],
        batch.classes[:peer_n],
        batch.support[:peer_n],
        batch.query[:peer_n],
    )
    fsl_s, acc_fsl = run_easyfsl(pixels, model, head)
    test = dataset.split_indices("test")
    labels = np.unique(dataset.labels[test], return_inverse=True)[1]
    l2l_s, l2l_acc = run_learn2learn(
        dataset, backbone, model, test, labels, peer_n, n_way, k_shot, n_query, args.seed
    )

    scale = args.episodes / peer_n
    fsl_n, l2l_n = fsl_s * scale, l2l_s * scale
    acc_ours = float((ours_pred == truth).mean())
    acc_ours_head = float((ours_pred[:peer_n] == truth).mean())
    note = "" if scale == 1 else f" (extrapolated from {peer_n} episodes)"
    print(f"{'':<34}{'seconds':>10}{'per episode ms':>16}{'partbench x':>13}{'accuracy':>10}")
    print(
        f"{'partbench (features once + batch)':<34}{ours_s:>10.2f}{1e3 * ours_s / args.episodes:>16.2f}"
        f"{1.0:>13.1f}{acc_ours:>10.4f}"
    )
    print(
        f"{'easyfsl PrototypicalNetworks':<34}{fsl_n:>10.2f}{1e3 * fsl_s / peer_n:>16.2f}"
        f"{fsl_n / ours_s:>13.1f}{acc_fsl:>10.4f}{note}"
    )
    print(
        f"{'learn2learn TaskDataset loop':<34}{l2l_n:>10.2f}{1e3 * l2l_s / peer_n:>16.2f}"
        f"{l2l_n / ours_s:>13.1f}{l2l_acc:>10.4f}{note} (its own episodes)"
    )
    differing = round(abs(acc_ours_head - acc_fsl) * peer_n * n_way * n_query)
    same = differing == 0
    print(
        f"same {peer_n} episodes: accuracy partbench {acc_ours_head:.4f}, easyfsl {acc_fsl:.4f}: "
        f"{'equal' if same else f'DIFFERENT (by {differing} queries)'}"
    )
    ratio = min(fsl_n, l2l_n) / ours_s
    print(
        f"goal: partbench >= {GOAL:.0f}x the faster peer: {'met' if ratio >= GOAL else 'NOT met'} "
        f"({ratio:.1f}x)"
    )
    return {
        "partbench_s": ours_s,
        "easyfsl_s": fsl_n,
        "learn2learn_s": l2l_n,
        "ratio": ratio,
        "accuracy_partbench": acc_ours,
        "accuracy_easyfsl": acc_fsl,
        "equal": same,
    }


if __name__ == "__main__":
    main()

"""Training epochs with and without the decoded-image cache: epoch time and the data's share.

    python bench/bench_decoded_cache.py                              # the demo twin (128 px)
    python bench/bench_decoded_cache.py --full                       # the full-size twin (24k images)
    python bench/bench_decoded_cache.py --twin-size 400 --images-per-class 8   # ImageNet-size JPEGs
    python bench/bench_decoded_cache.py --data /path/to/PartImageNet

Each mode trains the demo's setting (resnet10t at 64 px, classification on the train split,
batch 64, SGD) for --epochs epochs, the way benchmark.training does (SplitImages, augmentation
seeded per image, a DataLoader with --num-workers workers). Per epoch it times the wait for the
next batch (data) and the step (forward, backward, optimizer): data share = data / (data + step).
- files: every epoch decodes the JPEGs;
- cache: the first use builds the decoded-image cache (timed apart: "build"), every epoch then
  reads the memory-mapped views. The cache is written to a temporary folder and removed after.
--max-steps caps the steps per epoch (the output says so) to keep a run short on a small machine.
The cache's disk use is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.data.partimagenet import load_partimagenet  # noqa: E402
from benchmark.data.twin.generate import generate_twin  # noqa: E402
from benchmark.training.classification import classification_loss  # noqa: E402
from benchmark.training.data import SplitImages, train_class_keys  # noqa: E402
from benchmark.training.decoded_cache import DecodedViews  # noqa: E402
from benchmark.training.model import build_training_model  # noqa: E402


def dataset_root(args) -> Path:
    if args.data:
        return Path(args.data)
    cache = Path(os.environ.get("PARTBENCH_CACHE") or Path.home() / ".cache" / "partbench")
    name = "full" if args.full else str(args.images_per_class)
    root = cache / f"bench-twin-{args.twin_size}px-{name}"
    return generate_twin(
        root,
        images_per_class=args.images_per_class,
        image_size=args.twin_size,
        full=args.full,
        workers=max(1, os.cpu_count() or 1),
    )


def run_epochs(images: SplitImages, args, seed: int = 0) -> list[dict[str, float]]:
    """Train --epochs epochs; per epoch the seconds waiting for data and stepping."""
    model, _ = build_training_model(
        args.model,
        image_size=args.image_size,
        n_classes=len(train_class_keys()),
        part_head=False,
        seed=seed,
    )
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    out = []
    for epoch in range(args.epochs):
        images.set_epoch(epoch)
        loader = DataLoader(
            images,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.num_workers,
            generator=torch.Generator().manual_seed(epoch),
        )
        data = step = 0.0
        steps = 0
        start = time.perf_counter()
        for x, y, _ in loader:
            fetched = time.perf_counter()
            data += fetched - start
            loss, _ = classification_loss(model(x), y, None, part_weight=0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            start = time.perf_counter()
            step += start - fetched
            steps += 1
            if args.max_steps and steps >= args.max_steps:
                break
        out.append({"epoch_s": data + step, "data_s": data, "step_s": step, "steps": steps})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--full", action="store_true", help="the full-size twin (24,095 images)")
    parser.add_argument("--twin-size", type=int, default=128)
    parser.add_argument("--images-per-class", type=int, default=20)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=0, help="cap on steps per epoch (0: none)")
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args(argv)

    dataset = load_partimagenet(dataset_root(args))
    common = dict(
        image_size=args.image_size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        augment=True,
        seed=0,
        class_keys=train_class_keys(),
    )
    files = SplitImages(dataset, "train", **common)
    cap = f", at most {args.max_steps} steps per epoch" if args.max_steps else ""
    print(
        f"{args.model} @ {args.image_size}px, batch {args.batch_size}, {args.num_workers} workers, "
        f"{torch.get_num_threads()} torch threads; {len(files)} train images of "
        f"{dataset.root.name} (view {files.view_size} px){cap}"
    )
    results = {"files": run_epochs(files, args)}
    with tempfile.TemporaryDirectory() as tmp:
        cached = SplitImages(dataset, "train", **common)
        start = time.perf_counter()
        cached.decoded = DecodedViews.open(
            tmp,
            fingerprint=dataset.fingerprint,
            indices=cached.indices,
            view_size=cached.view_size,
            with_labels=False,
            make_view=cached.make_view,
            num_workers=args.num_workers,
        )
        build = time.perf_counter() - start
        disk = cached.decoded.nbytes
        results["cache"] = run_epochs(cached, args)
    print(
        f"{'mode':<8}{'epoch':>6}{'steps':>7}{'epoch s':>10}{'data s':>9}{'step s':>9}{'data share':>12}"
    )
    for mode, epochs in results.items():
        for e, r in enumerate(epochs):
            print(
                f"{mode:<8}{e + 1:>6}{r['steps']:>7}{r['epoch_s']:>10.2f}{r['data_s']:>9.2f}"
                f"{r['step_s']:>9.2f}{r['data_s'] / r['epoch_s']:>12.1%}"
            )
    print(
        f"cache build (decode every train image once): {build:.2f} s; disk use {disk / 2**20:.1f} MiB "
        f"({disk / len(cached):,.0f} bytes per image)"
    )
    mean = lambda mode, key: sum(r[key] for r in results[mode]) / len(results[mode])  # noqa: E731
    print(
        f"mean epoch: files {mean('files', 'epoch_s'):.2f} s (data {mean('files', 'data_s') / mean('files', 'epoch_s'):.1%}), "
        f"cache {mean('cache', 'epoch_s'):.2f} s (data {mean('cache', 'data_s') / mean('cache', 'epoch_s'):.1%})"
    )
    return {"results": results, "build_s": build, "disk_bytes": disk}


if __name__ == "__main__":
    main()

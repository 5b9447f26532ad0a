"""Feature-extraction throughput against the model's pure forward throughput.

Both run the same model at the same batch size, device and precision. "forward" feeds random
tensors already on the device; "extract" is `extract_features` end to end (JPEG decode, resize,
masks to the feature grid, host-to-device copy, forward, part pooling). The data path's cost is
1 - extract/forward (goal: under 20%).

Examples:
    python bench/bench_features.py --model resnet18 --image-size 128 --n-images 256 --device cpu
    python bench/bench_features.py --model resnet50 --image-size 224 --n-images 4096 \
        --device cuda --precision bf16 --batch-size 256 --num-workers 12
    python bench/bench_features.py --data /path/to/PartImageNet   # the real release or the twin

Images: by default --n-images synthetic JPEGs of --source-size pixels (ImageNet-like 500x375) with
rectangular part masks, written to a temporary folder; --data ROOT uses a dataset on disk
(benchmark.data.partimagenet.load_partimagenet).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.data.decode import decode_rgb  # noqa: E402
from benchmark.features.extraction import extract_features
from benchmark.features.feature_set import N_SLOTS  # noqa: E402
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.models.backbones import build_backbone  # noqa: E402
from benchmark.models.device import autocast, resolve_device, resolve_precision  # noqa: E402


class JpegPartDataset:
    """Synthetic JPEG files on disk with rectangular slot masks (the minimum extract_features reads).

    The pixels are a smooth colour field plus fine texture, at a noise level that gives files of
    about ImageNet's size (~110 KB at 350x400, quality 90): entropy decoding, and so decode time,
    grows with the bytes, and white noise or flat fields would under- or overstate it.
    """

    def __init__(
        self,
        folder: Path,
        n: int,
        size: tuple[int, int],
        seed: int = 0,
        reduced_decode: bool = True,
    ) -> None:
        rng = np.random.default_rng(seed)
        h, w = size
        self.paths, self.boxes = [], []
        for i in range(n):
            low = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
            smooth = np.asarray(
                Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32
            )
            texture = rng.normal(0.0, 30.0, size=(h, w, 1)) + rng.normal(0.0, 8.0, size=(h, w, 3))
            pixels = np.clip(smooth + texture, 0, 255).astype(np.uint8)
            path = folder / f"img_{i:06d}.JPEG"
            Image.fromarray(pixels).save(path, quality=90)
            self.paths.append(path)
            boxes = []
            for slot in rng.choice(N_SLOTS, size=3, replace=False):
                y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
                boxes.append((int(slot), y0, x0, y0 + h // 3, x0 + w // 3))
            self.boxes.append(boxes)
        self.size = size
        self.images = self.paths
        self.reduced_decode = reduced_decode
        self.mean_file_kb = (
            float(np.mean([p.stat().st_size for p in self.paths]) / 1024) if n else 0.0
        )
        self.fingerprint = hashlib.sha256(f"jpeg-synth:{n}:{size}:{seed}".encode()).hexdigest()

    def load_image(
        self, i: int, size: tuple[int, int] | None = None, resample: str = "bicubic"
    ) -> Image.Image:
        """As PartDataset.load_image; with reduced_decode=False always a full decode (the
        data path before reduced-scale decoding, for comparison)."""
        if not self.reduced_decode:
            size = None  # SplitTransform resizes the full decode
        return decode_rgb(self.paths[i], size, resample)

    def slot_masks(self, i: int) -> np.ndarray:
        masks = np.zeros((N_SLOTS, *self.size), dtype=bool)
        for slot, y0, x0, y1, x1 in self.boxes[i]:
            masks[slot, y0:y1, x0:x1] = True
        return masks


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its reaped children (loader workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def forward_images_per_s(
    backbone, device, dtype, batch_size: int, n_batches: int
) -> tuple[float, float]:
    """(images/s, images per CPU-second) of the trunk alone on random inputs on the device."""
    h, w = backbone.image_size
    x = torch.randn(batch_size, 3, h, w, device=device).contiguous(
        memory_format=torch.channels_last
    )
    with torch.inference_mode(), autocast(device, dtype):
        for _ in range(2):  # warm-up (cuDNN autotune, allocator)
            backbone.feature_map(x)
        _sync(device)
        start, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(n_batches):
            backbone.feature_map(x)
        _sync(device)
    n = batch_size * n_batches
    return n / (time.perf_counter() - start), n / (cpu_seconds() - cpu)


def loader_images_per_s(
    dataset, indices, backbone, batch_size: int, num_workers: int, masks: str
) -> float:
    """Images/s of the data path alone (decode, resize, masks to the grid; no model)."""
    grid = (backbone.image_size[0] // 32, backbone.image_size[1] // 32)  # a CNN's stride-32 grid
    split = SplitTransform.of(backbone.transform)
    ds = PartImageDataset(
        dataset, indices, split or backbone.transform, grid if masks == "oracle" else None
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(indices) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n-images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--masks", default="oracle", choices=("oracle", "none"))
    parser.add_argument(
        "--source-size",
        default="350x400",
        help="HxW of the synthetic JPEGs (ImageNet's typical size; ~110 KB each)",
    )
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="decode every JPEG at full size (the data path before reduced-scale "
        "decoding), for a before/after comparison",
    )
    parser.add_argument(
        "--goal",
        type=float,
        default=0.8,
        help="extraction must reach this fraction of the pure forward rate",
    )
    parser.add_argument(
        "--data", default=None, help="a PartImageNet-format root instead of synthetic JPEGs"
    )
    parser.add_argument("--split", default=None, help="with --data: images of this split only")
    parser.add_argument(
        "--forward-batches",
        type=int,
        default=0,
        help="batches of the pure forward (0: as many as the extraction has)",
    )
    parser.add_argument(
        "--skip-data-only",
        action="store_true",
        help="skip the data-path-alone pass (one more decode of every image)",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    backbone = build_backbone(args.model, image_size=args.image_size)
    backbone.model.to(device, memory_format=torch.channels_last).eval()

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            from benchmark.data.partimagenet import load_partimagenet

            dataset = load_partimagenet(Path(args.data))
            pool = (
                dataset.split_indices(args.split) if args.split else np.arange(len(dataset.images))
            )
            indices = pool[: args.n_images]
        else:
            h, w = (int(v) for v in args.source_size.split("x"))
            dataset = JpegPartDataset(
                Path(tmp), args.n_images, (h, w), reduced_decode=not args.full_decode
            )
            indices = np.arange(args.n_images)
        n_batches = args.forward_batches or max(1, len(indices) // args.batch_size)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fwd, fwd_cpu = forward_images_per_s(backbone, device, dtype, args.batch_size, n_batches)
        peak_fwd = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

        common = dict(
            masks=args.masks,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=device,
            precision=args.precision,
            cache_dir=None,
            progress=False,
        )
        extract_features(dataset, indices[: args.batch_size], backbone, **common)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start, cpu = time.perf_counter(), cpu_seconds()
        extract_features(dataset, indices, backbone, **common)
        _sync(device)
        ext = len(indices) / (time.perf_counter() - start)
        ext_cpu = len(indices) / (cpu_seconds() - cpu)
        peak_ext = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        data_only = (
            float("nan")
            if args.skip_data_only
            else loader_images_per_s(
                dataset, indices, backbone, args.batch_size, args.num_workers, args.masks
            )
        )

    figures = {
        "model": args.model,
        "image_size": args.image_size,
        "n_images": int(len(indices)),
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "precision": str(dtype).removeprefix("torch."),
        "masks": args.masks,
        "reduced_decode": not args.full_decode,
        "mean_file_kb": (
            round(dataset.mean_file_kb, 1) if hasattr(dataset, "mean_file_kb") else None
        ),  # None for --data (JSON has no NaN that compares equal)
        "goal_extract_over_forward": args.goal,
        "goal_met": bool(ext / fwd >= args.goal),
        "forward_images_per_cpu_s": round(fwd_cpu, 1),
        "extract_images_per_cpu_s": round(ext_cpu, 1),
        "cpu_extract_over_forward": round(ext_cpu / fwd_cpu, 3),
        "forward_images_per_s": round(fwd, 1),
        "extract_images_per_s": round(ext, 1),
        "data_path_alone_images_per_s": None if args.skip_data_only else round(data_only, 1),
        "extract_over_forward": round(ext / fwd, 3),
        "data_path_cost": round(1 - ext / fwd, 3),
        # ru_maxrss is in KiB on Linux; workers are children of this process
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_children_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
    }
    if device.type == "cuda":
        figures["peak_gpu_mib_forward"] = round(peak_fwd / 2**20, 1)
        figures["peak_gpu_mib_extract"] = round(peak_ext / 2**20, 1)

    print(
        f"{args.model} @ {args.image_size}px, batch {args.batch_size}, {figures['precision']} on "
        f"{figures['device_name']} ({len(indices)} images of {args.source_size if not args.data else 'the dataset'}"
        + (f", mean {figures['mean_file_kb']} KB" if figures["mean_file_kb"] is not None else "")
        + f", {args.num_workers} workers, masks={args.masks}, "
        f"{'full' if args.full_decode else 'reduced-scale'} decode)"
    )
    print(f"  pure forward       {fwd:9.1f} images/s")
    print(f"  feature extraction {ext:9.1f} images/s")
    print(f"  data path alone    {data_only:9.1f} images/s (no model)")
    print(f"  extract / forward  {ext / fwd:9.3f}   (data path cost {100 * (1 - ext / fwd):.1f}%)")
    print(
        f"  per CPU-second     {fwd_cpu:9.1f} forward, {ext_cpu:.1f} extraction images "
        f"(ratio {ext_cpu / fwd_cpu:.3f}; less disturbed by other load than wall time)"
    )
    print(
        f"  goal: extraction >= {args.goal:.2f} x pure forward (wall clock): "
        f"{'met' if figures['goal_met'] else 'NOT met'}"
    )
    if device.type == "cuda":
        print(
            f"  peak GPU memory    {figures['peak_gpu_mib_extract']:9.1f} MiB (forward only: "
            f"{figures['peak_gpu_mib_forward']:.1f} MiB)"
        )
    print(
        f"  peak RSS           {figures['peak_rss_mib']:9.1f} MiB (largest worker: "
        f"{figures['peak_rss_children_mib']:.1f} MiB)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()

"""`python -m benchmark doctor`: what this machine offers partbench, and how fast it extracts.

Prints the environment (Python, torch with its CUDA and cuDNN, torchvision, timm, Pillow,
numpy), the devices with their bf16 support, the cache's location and size per kind, and a tiny
timed run on the chosen device: images/s of feature extraction from ImageNet-size JPEGs written
to a temporary folder, images/s of the model's pure forward on random inputs, and peak memory.
"""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import PIL
import timm
import torch
import torchvision
from PIL import Image

from benchmark.config.cache_layout import cache_root, cache_usage
from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.features.extraction import extract_features
from benchmark.models.backbones import build_backbone
from benchmark.models.device import autocast, precision_name, resolve_device, resolve_precision


def environment() -> dict[str, str]:
    """Versions of what partbench runs on."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda or "none (CPU build)",
        "cuDNN": str(cudnn) if cudnn else "none",
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "Pillow": PIL.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def devices() -> list[dict[str, str]]:
    """The CPU and every CUDA device, with bf16 support."""
    out = [
        {
            "device": "cpu",
            "name": platform.processor() or platform.machine(),
            "cores": str(os.cpu_count()),
            "torch threads": str(torch.get_num_threads()),
            "bf16": "runs (autocast), rarely faster than fp32 on CPUs",
        }
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            with torch.cuda.device(i):
                bf16 = torch.cuda.is_bf16_supported()
            out.append(
                {
                    "device": f"cuda:{i}",
                    "name": props.name,
                    "memory": f"{props.total_memory / 2**30:.1f} GiB",
                    "capability": f"{props.major}.{props.minor}",
                    "bf16": "yes" if bf16 else "no",
                }
            )
    return out


def _sample_dataset(folder: Path, n: int, size: tuple[int, int] = (350, 400)) -> PartDataset:
    """n textured JPEGs of ImageNet's typical size (~100 KB) as a PartDataset without parts."""
    rng = np.random.default_rng(0)
    h, w = size
    records = []
    for i in range(n):
        low = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(
            smooth + rng.normal(0, 30, (h, w, 1)) + rng.normal(0, 8, (h, w, 3)), 0, 255
        )
        path = folder / f"n01440764_{i}.JPEG"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        records.append(ImageRecord(i, i + 1, "test", "n01440764", path.name, path, h, w))
    return PartDataset(
        folder, "doctor", records, [[] for _ in records], f"doctor-{n}-{h}x{w}", Counter()
    )


def timed_run(
    device: str = "auto",
    model: str = "resnet10t",
    image_size: int = 64,
    n_images: int = 128,
    batch_size: int = 32,
    precision: str = "auto",
    num_workers: int = 0,
) -> dict[str, float | str]:
    """Images/s of extraction (JPEG files to features, no cache) and of the pure forward, and
    peak memory, on `device`."""
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    backbone = build_backbone(model, image_size=image_size)
    backbone.model.to(dev, memory_format=torch.channels_last).eval()
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    n_batches = max(1, n_images // batch_size)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.inference_mode(), autocast(dev, dtype):
        backbone.feature_map(x)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(n_batches):
            backbone.feature_map(x)
        sync()
    forward = batch_size * n_batches / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        data = _sample_dataset(Path(tmp), n_images)
        common = dict(
            masks="none",
            batch_size=batch_size,
            num_workers=num_workers,
            device=dev,
            precision=precision,
            cache_dir=None,
            progress=False,
        )
        extract_features(data, np.arange(min(batch_size, n_images)), backbone, **common)  # warm-up
        start = time.perf_counter()
        extract_features(data, np.arange(n_images), backbone, **common)
        sync()
        extract = n_images / (time.perf_counter() - start)
    out: dict[str, float | str] = {
        "device": str(dev),
        "model": f"{model} @ {image_size}px",
        "precision": precision_name(dtype),
        "images": n_images,
        "extract_images_per_s": round(extract, 1),
        "forward_images_per_s": round(forward, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if dev.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def doctor(
    device: str = "auto",
    cache_dir: str | None = None,
    model: str = "resnet10t",
    image_size: int = 64,
    n_images: int = 128,
    num_workers: int = 0,
) -> int:
    """Print the report; returns the exit status (0)."""
    print("environment:")
    for k, v in environment().items():
        print(f"  {k:<12} {v}")
    print("devices:")
    for d in devices():
        print("  " + ", ".join(f"{k} {v}" if k != "device" else v for k, v in d.items()))
    root = cache_root(cache_dir)
    usage = cache_usage(root)
    print(
        f"cache: {root} ({_mib(sum(usage.values()))}; "
        + ", ".join(f"{k} {_mib(v)}" for k, v in usage.items())
        + ")"
    )
    print(f"timed run ({n_images} JPEGs of 350x400 px, written to a temporary folder):")
    run = timed_run(device, model, image_size, n_images, num_workers=num_workers)
    print(
        f"  {run['model']} on {run['device']}, {run['precision']}: extraction "
        f"{run['extract_images_per_s']} images/s, pure forward {run['forward_images_per_s']} "
        f"images/s (extraction / forward {run['extract_images_per_s'] / run['forward_images_per_s']:.2f})"
    )
    memory = f"peak RSS {run['peak_rss_mib']} MiB"
    if "peak_gpu_mib" in run:
        memory += f", peak GPU memory {run['peak_gpu_mib']} MiB"
    print(f"  {memory}")
    return 0

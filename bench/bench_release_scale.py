"""The user's path on a release-shaped twin at the real release's size, step by step, measured.

    python bench/bench_release_scale.py --scale 1 --workers 2          # the full release (24,095)
    python bench/bench_release_scale.py --scale 0.02 --workers 2       # a quick check (581 images)

Steps, each in its own process so that its peak RSS is its own (os.wait4's ru_maxrss):
  generate   the release-shaped twin, PartImageNet_OOD.zip (benchmark.data.twin.release_archive)
  prepare    `prepare` on that zip (the user's first command; --allow-partial below scale 1)
  load 1st   load_partimagenet on the prepared copy, an empty cache (reads every image header)
  load 2nd   the same, the size check recorded in the cache
  train files  one pass over the train split's training data (SplitImages, demo setting
             --train-size px with augmentation, batch 64, --num-workers 0), decoding the JPEGs
  cache build  the decoded-image cache of the same views (decode every train image once)
  train cache  the same pass, reading the cache
  extract    bench/bench_features.py on the test split: --model at --image-size, random
             weights, on --device (default CPU), against the model's pure forward
             (--forward-batches batches of --batch-size); and the
             same for --goal-model at --goal-size (the decode goal: >= 0.8 per CPU-second)
Printed: wall time, CPU time, peak RSS and disk per step; the disk peak of prepare (free space
sampled every second, so other writers on the disk add noise). Everything is written under
--workdir (default: a new temporary folder) and removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = (
    "generate",
    "prepare",
    "load_first",
    "load_later",
    "train_files",
    "cache_build",
    "train_cache",
    "extract",
    "extract_goal",
)


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ------------------------------------------------------------------------------------------------
# Steps (each runs in a child process: `--step NAME`), returning their own figures
# ------------------------------------------------------------------------------------------------


def step_generate(args, work: Path) -> dict:
    from benchmark.data.twin.release_archive import generate_release_archive

    archive = generate_release_archive(
        work / "download", scale=args.scale, seed=0, workers=args.workers, progress=not args.quiet
    )
    import zipfile

    with zipfile.ZipFile(archive) as z:
        inner = {i.filename: i.file_size for i in z.infolist()}
    images = 0
    for split in ("train", "val", "test"):
        with zipfile.ZipFile(archive) as z, z.open(f"{split}.zip") as f:
            images += len(zipfile.ZipFile(f).infolist())
    return {
        "archive_bytes": archive.stat().st_size,
        "images": images,
        "inner_zip_bytes": sum(v for k, v in inner.items() if k.endswith(".zip")),
        "mean_image_kb": sum(v for k, v in inner.items() if k.endswith(".zip")) / images / 1e3,
    }


def step_prepare(args, work: Path) -> dict:
    from benchmark.data.release.prepare import prepare_release

    report = prepare_release(
        work / "download" / "PartImageNet_OOD.zip",
        work / "prepared",
        allow_partial=args.scale < 1,
        workers=args.workers,
        progress=not args.quiet,
    )
    return {
        "images": report.images,
        "full_release": report.full_release,
        "disk_bytes": folder_bytes(work / "prepared"),
    }


def step_load(args, work: Path) -> dict:
    from benchmark.data.partimagenet import load_partimagenet

    dataset = load_partimagenet(work / "prepared", cache_dir=work / "cache")
    return {"images": len(dataset.images)}


def _split_images(args, work: Path):
    import warnings

    from benchmark.data.errors import DatasetDefectWarning
    from benchmark.data.partimagenet import load_partimagenet
    from benchmark.training.data import SplitImages, train_class_keys

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        dataset = load_partimagenet(work / "prepared", cache_dir=work / "cache")
    images = SplitImages(
        dataset,
        "train",
        image_size=args.train_size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        augment=True,
        seed=0,
        class_keys=train_class_keys(),
    )
    return dataset, images


def _one_pass(images, args) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    images.set_epoch(0)
    loader = DataLoader(
        images,
        batch_size=64,
        shuffle=True,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    n = 0
    for x, _, _ in tqdm(loader, desc="training data", disable=args.quiet, mininterval=2.0):
        n += len(x)
    return {"images": n, "view_size": images.view_size}


def step_train_files(args, work: Path) -> dict:
    _, images = _split_images(args, work)
    return _one_pass(images, args)


def _decoded(args, work: Path):
    from benchmark.training.decoded_cache import DecodedViews

    dataset, images = _split_images(args, work)
    images.decoded = DecodedViews.open(
        work / "cache",
        fingerprint=dataset.fingerprint,
        indices=images.indices,
        view_size=images.view_size,
        with_labels=False,
        make_view=images.make_view,
        num_workers=args.num_workers,
        progress=not args.quiet,
    )
    return images


def step_cache_build(args, work: Path) -> dict:
    images = _decoded(args, work)
    return {"images": len(images), "disk_bytes": images.decoded.nbytes}


def step_train_cache(args, work: Path) -> dict:
    return _one_pass(_decoded(args, work), args)


def _extract(args, work: Path, model: str, size: int, n_images: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_features

    return bench_features.main(
        [
            "--data",
            str(work / "prepared"),
            "--split",
            "test",
            "--model",
            model,
            "--image-size",
            str(size),
            "--n-images",
            str(n_images),
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--num-workers",
            str(args.num_workers),
            "--batch-size",
            str(args.batch_size),
            "--forward-batches",
            str(args.forward_batches),
            "--skip-data-only",
        ]
    )


def step_extract(args, work: Path) -> dict:
    return _extract(args, work, args.model, args.image_size, args.extract_images)


def step_extract_goal(args, work: Path) -> dict:
    return _extract(args, work, args.goal_model, args.goal_size, args.goal_images)


# ------------------------------------------------------------------------------------------------
# The parent: one child per step, wall / CPU / peak RSS from os.wait4
# ------------------------------------------------------------------------------------------------


class DiskPeak:
    """The largest drop of the disk's free space below its level at start, sampled every second."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.start = folder, shutil.disk_usage(folder).free
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, self.start - shutil.disk_usage(self.folder).free)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_step(name: str, args, work: Path) -> dict:
    out = work / f"step-{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--workdir", str(work)]
    cmd += args.forward
    env = {**os.environ, "PARTBENCH_CACHE": str(work / "cache")}
    start = time.perf_counter()
    with DiskPeak(work) as disk:
        proc = subprocess.Popen(cmd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed (exit {proc.returncode})")
    figures = json.loads(out.read_text())
    figures.update(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        disk_peak_bytes=disk.peak,
    )
    return figures


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def table(res: dict, args) -> list[str]:
    rows = [("step", "wall", "CPU", "peak RSS", "disk", "notes")]

    def row(name, label, disk="", notes=""):
        r = res[name]
        rows.append(
            (
                label,
                f"{r['wall_s']:.1f} s",
                f"{r['cpu_s']:.1f} s",
                f"{r['peak_rss_mib']:.0f} MiB",
                disk,
                notes,
            )
        )

    g = res["generate"]
    row(
        "generate",
        "generate the archive",
        _gb(g["archive_bytes"]),
        f"{g['images']:,} images, mean {g['mean_image_kb']:.0f} KB, {args.workers} workers",
    )
    p = res["prepare"]
    row(
        "prepare",
        "prepare",
        f"{_gb(p['disk_bytes'])} written, peak {_gb(p['disk_peak_bytes'])}",
        ", ".join(f"{s} {n:,}" for s, n in p["images"].items()),
    )
    row("load_first", "load, first (reads the image headers)")
    row("load_later", "load, later (size check recorded)")
    t = res["train_files"]
    row(
        "train_files",
        "training data pass, from the files",
        "",
        f"{t['images']:,} images at {args.train_size} px (views {t['view_size']} px), "
        f"{t['images'] / res['train_files']['wall_s']:.0f} images/s",
    )
    c = res["cache_build"]
    row("cache_build", "decoded-image cache build", _gb(c["disk_bytes"]))
    row(
        "train_cache",
        "training data pass, from the cache",
        "",
        f"{res['train_cache']['images'] / res['train_cache']['wall_s']:.0f} images/s",
    )
    for key in ("extract", "extract_goal"):
        if key not in res:
            continue
        e = res[key]
        row(
            key,
            f"features {e['model']} @ {e['image_size']} px, test split",
            "",
            f"{e['n_images']:,} images: {e['extract_images_per_s']:.1f} images/s vs forward "
            f"{e['forward_images_per_s']:.1f} (ratio {e['extract_over_forward']:.2f}); per "
            f"CPU-second {e['extract_images_per_cpu_s']:.1f} vs {e['forward_images_per_cpu_s']:.1f}"
            f" (ratio {e['cpu_extract_over_forward']:.2f})",
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each class's images")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes/threads for generation and prepare's decode check",
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--train-size", type=int, default=64, help="training input size (demo: 64)")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--extract-images",
        type=int,
        default=10**9,
        help="test images to extract (default: the whole test split)",
    )
    parser.add_argument(
        "--forward-batches",
        type=int,
        default=8,
        help="batches of --batch-size for the pure-forward rate",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="feature extraction batch")
    parser.add_argument("--device", default="cpu", help="feature extraction device (cpu, cuda)")
    parser.add_argument("--precision", default="auto", help="feature extraction precision")
    parser.add_argument("--goal-model", default="resnet18")
    parser.add_argument("--goal-size", type=int, default=128)
    parser.add_argument("--goal-images", type=int, default=1024)
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.step:  # a child: run one step, write its figures
        work = Path(args.workdir)
        figures = globals()[f"step_{args.step.removesuffix('_first').removesuffix('_later')}"](
            args, work
        )
        (work / f"step-{args.step}.json").write_text(json.dumps(figures, default=str))
        return figures

    args.forward = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--keep",)]
    args.forward = _drop_option(args.forward, "--workdir")
    args.forward = _drop_option(args.forward, "--json")
    args.forward = _drop_option(args.forward, "--steps")
    own = args.workdir is None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="partbench-release-"))
    work.mkdir(parents=True, exist_ok=True)
    steps = [s for s in args.steps.split(",") if s]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    res: dict = {}
    try:
        for name in steps:
            res[name] = run_step(name, args, work)
            print(
                f"[{name}] {res[name]['wall_s']:.1f} s wall, {res[name]['cpu_s']:.1f} s CPU, "
                f"peak RSS {res[name]['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    finally:
        if own and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nrelease-shaped twin at scale {args.scale} ({started}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end)"
    )
    if set(STEPS) <= set(res):
        for line in table(res, args):
            print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
    return res


def _drop_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    main()

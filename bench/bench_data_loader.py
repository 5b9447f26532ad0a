"""How long load_partimagenet takes on a release-sized copy (24095 images, ~100k part polygons).

    PYTHONPATH=. python bench/bench_data_loader.py [--images 24095] [--parts-per-image 4] [--points 30]

Writes a generated PartImageNet_OOD copy into a temporary folder (COCO jsons in the real format,
random star-shaped polygons on 500x375 images; every image file is one small flat-colour JPEG of
that size, as the loader reads only headers), then times `load_partimagenet` (json parse, table
checks, pycocotools index, one pycocotools conversion of every polygon, stat of every image; the
first load also reads every image header for the size check, later loads find it recorded in the
cache folder) and one `part_masks` per image on a sample. Prints the figures; nothing is kept.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.release.facts import SPLIT_IMAGES
from episodes import taxonomy

IMAGE_W, IMAGE_H = 500, 375


def _polygon(rng: np.random.Generator, n_points: int) -> list[float]:
    """A random star-shaped polygon inside the image (x0, y0, x1, y1, ...)."""
    cx, cy = rng.uniform(80, IMAGE_W - 80), rng.uniform(80, IMAGE_H - 80)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_points))
    radii = rng.uniform(10, 70, n_points)
    xy = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return [round(float(v), 2) for v in xy.ravel()]


def write_copy(root: Path, n_images: int, parts_per_image: int, n_points: int, seed: int) -> int:
    """Write the jsons and the image files; returns the number of annotations."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.new("RGB", (IMAGE_W, IMAGE_H), (120, 90, 60)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    categories = [
        {"id": p.id, "name": p.name, "supercategory": p.super_category} for p in taxonomy.parts()
    ]
    parts_of = {
        s: [p.id for p in taxonomy.parts() if p.super_category == s]
        for s in taxonomy.SUPER_CATEGORIES
    }
    supers = taxonomy.class_super_categories()
    total = sum(SPLIT_IMAGES.values())
    n_anns = 0
    for split, count in SPLIT_IMAGES.items():
        synsets = taxonomy.split_classes(split)
        images, anns = [], []
        for i in range(round(count * n_images / total)):
            synset = synsets[i % len(synsets)]
            name = f"{synset}_{i}.JPEG"
            folder = root / split / synset
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(jpeg)
            images.append({"id": i + 1, "file_name": name, "height": IMAGE_H, "width": IMAGE_W})
            for _ in range(parts_per_image):
                n_anns += 1
                anns.append(
                    {
                        "id": n_anns,
                        "image_id": i + 1,
                        "category_id": int(rng.choice(parts_of[supers[synset]])),
                        "segmentation": [_polygon(rng, n_points)],
                        "area": 1000.0,
                        "bbox": [0, 0, 1, 1],
                        "iscrowd": 0,
                    }
                )
        (root / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": categories})
        )
    return n_anns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=sum(SPLIT_IMAGES.values()))
    ap.add_argument("--parts-per-image", type=int, default=4)
    ap.add_argument("--points", type=int, default=30, help="points per polygon")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Written by a child process, so this process's peak memory is the loader's alone.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            n_anns = pool.apply(
                write_copy,
                (root / "copy", args.images, args.parts_per_image, args.points, args.seed),
            )
        json_mb = sum((root / "copy" / f"{s}.json").stat().st_size for s in SPLIT_IMAGES) / 1e6
        wall, cpu = [], []
        for _ in range(args.repeats + 1):  # the first load reads the headers; the others do not
            ds = None  # let the previous copy go before the next load
            w0, c0 = time.perf_counter(), time.process_time()
            ds = load_partimagenet(root / "copy", cache_dir=root / "cache")
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        first_wall, first_cpu = wall.pop(0), cpu.pop(0)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        gc.disable()  # as the loader does
        c0 = time.process_time()
        for split in SPLIT_IMAGES:  # the part of the load that is json parsing alone
            json.loads((root / "copy" / f"{split}.json").read_bytes())
        json_cpu = time.process_time() - c0
        gc.enable()
        sample = np.linspace(0, len(ds.images) - 1, 200).astype(int)
        start = time.perf_counter()
        for i in sample:
            ds.part_masks(int(i))
        per_image_ms = (time.perf_counter() - start) / len(sample) * 1e3
    print(
        f"images={len(ds.images)} annotations={n_anns} points/polygon={args.points} "
        f"json={json_mb:.0f} MB"
    )
    print(
        f"first load_partimagenet (reads every image header for the size check): wall "
        f"{first_wall:.2f} s, CPU {first_cpu:.2f} s"
    )
    print(
        f"later load_partimagenet (size check recorded) over {args.repeats} runs: wall best {min(wall):.2f} s "
        f"(median {statistics.median(wall):.2f} s), CPU best {min(cpu):.2f} s "
        f"(median {statistics.median(cpu):.2f} s)"
    )
    print(f"  of which json.loads of the three files: CPU {json_cpu:.2f} s")
    print(f"part_masks: {per_image_ms:.2f} ms per {IMAGE_W}x{IMAGE_H} image (200 images)")
    print(
        f"peak RSS while loading: {peak_mb:.0f} MB; load average now: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()

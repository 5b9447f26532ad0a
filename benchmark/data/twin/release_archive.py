"""The release-shaped twin: the synthetic twin written as users receive the real release.

`generate_release_archive(out)` writes `out/PartImageNet_OOD.zip`, shaped like the download:

    PartImageNet_OOD.zip
        train.zip   train/<synset>/<file_name>   every image of train.json
        val.zip     val/<synset>/<file_name>
        test.zip    test/<synset>/<file_name>
        train.json  val.json  test.json          COCO: images, annotations, the 40 categories

at the release's size: the 16,540 real train file names in the real train.json order and ids
(`release_train_files()`, packaged data), val and test with the release's 2,957 / 4,598 images
spread evenly over their classes (the release does not publish per-class val/test counts), and
ImageNet-like images: mostly 500 px on the long side (500x375, 500x333, 375x500, ...) and about
110 KB of JPEG each (a twin scene upscaled, with sensor-like noise so it compresses like a photo).

`scale` < 1 keeps the first ceil(scale x n) images of each class (at least one) for quick runs.
The archive is a pure function of (seed, scale): images are rendered in `workers` processes, a
bounded number of chunks in flight, and written in a fixed order with fixed zip timestamps, so
memory does not grow with the release and the bytes do not depend on `workers`. Inner zips are
streamed into the outer zip (nothing of the archive is held in memory, nothing written twice).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from benchmark.data.release import facts as release
from benchmark.data.release.train_files import release_train_files
from benchmark.data.twin.generate import plan_counts
from benchmark.data.twin.render import render_image
from benchmark.data.twin.shapes import stable_seed
from episodes.taxonomy import SPLITS, parts

RELEASE_VERSION = 1
ARCHIVE_NAME = release.HUB_FILENAME
RENDER_SIZE = 192  # the twin scene is rendered square at this size, then resized to (W, H)
NOISE_SIGMA = 19.0  # grey-level s.d. of the luminance noise that makes photo-like JPEG sizes
JPEG_QUALITY = 92
# ImageNet-like stored sizes (width, height) and how often each is drawn.
IMAGE_SIZES: tuple[tuple[tuple[int, int], float], ...] = (
    ((500, 375), 0.45),
    ((375, 500), 0.12),
    ((500, 333), 0.15),
    ((333, 500), 0.04),
    ((500, 400), 0.06),
    ((400, 500), 0.03),
    ((500, 500), 0.05),
    ((500, 281), 0.05),
    ((640, 480), 0.05),
)
CHUNK = 32  # images per job sent to a worker


def _kept(count: int, scale: float) -> int:
    return max(1, math.ceil(count * scale - 1e-9))


def release_plan(scale: float = 1.0) -> dict[str, list[str]]:
    """split -> file names in json order: the real train names, and `<synset>_<k>` for val/test.

    At `scale` < 1 each class keeps its first ceil(scale x n) images (order kept).
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    train = release_train_files()
    per_class = Counter(name.split("_", 1)[0] for name in train)
    seen: Counter[str] = Counter()
    plan = {"train": []}
    for name in train:
        synset = name.split("_", 1)[0]
        seen[synset] += 1
        if seen[synset] <= _kept(per_class[synset], scale):
            plan["train"].append(name)
    counts = plan_counts(full=True)
    for split in ("val", "test"):
        plan[split] = [
            f"{synset}_{k + 1}.JPEG"
            for synset, n in counts[split].items()
            for k in range(_kept(n, scale))
        ]
    return plan


def image_size_of(file_name: str, seed: int) -> tuple[int, int]:
    """The stored (width, height) of an image: drawn from IMAGE_SIZES by its name and seed."""
    u = np.random.default_rng(stable_seed("release-size", seed, file_name)).random()
    total = 0.0
    for size, p in IMAGE_SIZES:
        total += p
        if u < total:
            return size
    return IMAGE_SIZES[-1][0]


@dataclass(frozen=True)
class _Job:
    split: str
    names: tuple[str, ...]
    indices: tuple[int, ...]  # index of each image within its class (the twin scene's index)
    seed: int


def render_release_image(name: str, index: int, seed: int) -> tuple[bytes, dict]:
    """One image of the release-shaped twin: its JPEG bytes and its json entry (no id).

    Args:
        name: its file name, `<synset>_<n>.JPEG`.
        index: its index within its class (which twin scene it shows).
        seed: the archive's seed.
    Returns:
        (JPEG bytes, {"file_name", "height", "width", "annotations": polygons in pixels of the
        stored size}).
    """
    synset = name.split("_", 1)[0]
    width, height = image_size_of(name, seed)
    scene = render_image(synset, index, seed=seed, image_size=RENDER_SIZE)
    pixels = np.asarray(
        Image.fromarray(scene.pixels).resize((width, height), Image.Resampling.BILINEAR),
        dtype=np.int16,
    )
    rng = np.random.default_rng(stable_seed("release-noise", seed, name))
    noise = rng.normal(0.0, NOISE_SIGMA, size=(height, width, 1)).astype(np.int16)
    pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=JPEG_QUALITY)
    sx, sy = width / RENDER_SIZE, height / RENDER_SIZE
    annotations = []
    for a in scene.annotations:
        polys = [
            [round(v * (sx if k % 2 == 0 else sy), 2) for k, v in enumerate(poly)]
            for poly in a.segmentation
        ]
        x, y, w, h = a.bbox
        annotations.append(
            {
                "category_id": a.part_id,
                "segmentation": polys,
                "area": round(a.area * sx * sy, 2),
                "bbox": [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)],
                "iscrowd": 0,
            }
        )
    return buf.getvalue(), {
        "file_name": name,
        "height": height,
        "width": width,
        "annotations": annotations,
    }


def _render_chunk(job: _Job) -> list[tuple[bytes, dict]]:
    """(JPEG bytes, json entry without id) of each image of the job; runs in a worker."""
    return [
        render_release_image(name, index, job.seed) for name, index in zip(job.names, job.indices)
    ]


def _jobs(split: str, names: list[str], seed: int) -> list[_Job]:
    seen: Counter[str] = Counter()
    indices = []
    for name in names:
        synset = name.split("_", 1)[0]
        indices.append(seen[synset])
        seen[synset] += 1
    return [
        _Job(split, tuple(names[i : i + CHUNK]), tuple(indices[i : i + CHUNK]), seed)
        for i in range(0, len(names), CHUNK)
    ]


def _rendered(jobs: list[_Job], workers: int):
    """Each job's result in job order, with at most 2 x workers jobs in flight."""
    if workers == 1:
        for job in jobs:
            yield _render_chunk(job)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        pending: deque = deque()
        queue = iter(jobs)
        for job in queue:
            pending.append(pool.submit(_render_chunk, job))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            for job in queue:
                pending.append(pool.submit(_render_chunk, job))
                break
            yield result
    finally:  # on Ctrl-C, drop the queued chunks instead of rendering them first
        pool.shutdown(wait=True, cancel_futures=True)


_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same bytes on every run


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED  # JPEGs do not compress; the release stores them
    info.external_attr = 0o644 << 16
    return info


def _coco(entries: list[dict], first_id: int) -> dict:
    images, annotations = [], []
    for i, entry in enumerate(entries):
        image_id = first_id + i
        images.append(
            {
                "id": image_id,
                "file_name": entry["file_name"],
                "height": entry["height"],
                "width": entry["width"],
            }
        )
        for ann in entry["annotations"]:
            annotations.append({"id": len(annotations), "image_id": image_id, **ann})
    categories = [{"id": p.id, "name": p.name, "supercategory": p.super_category} for p in parts()]
    return {"images": images, "annotations": annotations, "categories": categories}


def archive_parameters(*, scale: float, seed: int) -> dict:
    """What the archive is a function of (recorded beside it as `<archive>.params.json`)."""
    return {
        "generator": "partbench-release-twin",
        "version": RELEASE_VERSION,
        "scale": scale,
        "seed": seed,
        "render_size": RENDER_SIZE,
        "noise_sigma": NOISE_SIGMA,
        "jpeg_quality": JPEG_QUALITY,
    }


def generate_release_archive(
    out: str | os.PathLike,
    *,
    scale: float = 1.0,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write `out/PartImageNet_OOD.zip` (see the module docstring) and return its path.

    Args:
        out: a folder (created); an archive already there with the same parameters is reused.
        scale: fraction of each class's images, in (0, 1]; 1 is the full release (24,095).
        seed: the one seed everything derives from.
        workers: rendering processes (spawned: a calling script needs the __main__ guard).
        progress: a progress bar per split on stderr.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ARCHIVE_NAME
    params_file = out / f"{ARCHIVE_NAME}.params.json"
    params = archive_parameters(scale=scale, seed=seed)
    if archive.is_file() and params_file.is_file():
        try:
            if json.loads(params_file.read_text(encoding="utf-8")) == params:
                return archive
        except ValueError:
            pass
    plan = release_plan(scale)
    partial = archive.with_name(f".{ARCHIVE_NAME}.partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as outer:
            entries: dict[str, list[dict]] = {}
            for split in SPLITS:
                entries[split] = []
                inner_name = release.INNER_ZIP.format(split=split)
                # the inner zip streams into the outer one: neither is held in memory or on
                # disk twice (a stream that cannot seek makes zipfile write data descriptors)
                with (
                    outer.open(_info(inner_name), "w", force_zip64=True) as stream,
                    zipfile.ZipFile(stream, "w", allowZip64=True) as inner,
                    tqdm(
                        total=len(plan[split]),
                        desc=f"release twin {split}",
                        unit="img",
                        disable=not progress,
                        mininterval=2.0,
                    ) as bar,
                ):
                    for chunk in _rendered(_jobs(split, plan[split], seed), workers):
                        for jpeg, entry in chunk:
                            synset = entry["file_name"].split("_", 1)[0]
                            inner.writestr(_info(f"{split}/{synset}/{entry['file_name']}"), jpeg)
                            entries[split].append(entry)
                        bar.update(len(chunk))
            for split in SPLITS:
                text = json.dumps(_coco(entries[split], first_id=0), separators=(",", ":"))
                outer.writestr(_info(release.ANNOTATION_FILE.format(split=split)), text)
                entries[split] = []  # the json is written; its entries are not needed any more
        os.replace(partial, archive)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    params_file.write_text(json.dumps(params, indent=1) + "\n", encoding="utf-8")
    return archive

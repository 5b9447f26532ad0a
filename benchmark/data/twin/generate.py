"""The synthetic twin of PartImageNet_OOD: the real on-disk format, procedural images.

`generate_twin(out)` writes

    <out>/<split>/<synset>/<synset>_<n>.JPEG      n = 1, 2, ... per class
    <out>/<split>.json                            COCO: images, annotations, the 40 categories
    <out>/.partbench-twin.json                    generator version and parameters

for the same 158 synsets, splits and super-categories as the real release, with one COCO
annotation (one or more polygons) per visible part instance. Images come from `synth_render`:
each class is its super-category's body plan with class-specific part shapes, colours and
patterns (`synth_shapes`). The output is a pure function of the parameters: same seed, same
bytes, whatever `workers`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmark.data.release.facts import SPLIT_IMAGES as FULL_SPLIT_IMAGES
from benchmark.data.twin.render import render_image
from episodes.taxonomy import SPLITS, classes, parts

TWIN_VERSION = 1
MARKER = ".partbench-twin.json"


def plan_counts(*, images_per_class: int = 20, full: bool = False) -> dict[str, dict[str, int]]:
    """split -> synset -> number of images, without rendering anything.

    `full=True` gives the real release's counts: train per class from classes.csv, val and test
    spread as evenly as possible over their classes (the first classes get one more).
    """
    if not full and images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    plan: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for split in SPLITS:
        members = [c for c in classes() if c.split == split]
        for i, c in enumerate(members):
            if not full:
                n = images_per_class
            elif split == "train":
                if c.train_images is None:
                    raise ValueError(f"classes.csv has no train_images for train class {c.synset}")
                n = c.train_images
            else:
                q, r = divmod(FULL_SPLIT_IMAGES[split], len(members))
                n = q + (1 if i < r else 0)
            plan[split][c.synset] = n
    return plan


def twin_parameters(
    *, images_per_class: int = 20, image_size: int = 128, seed: int = 0, full: bool = False
) -> dict:
    """The marker's content for these parameters: compare it with `read_twin_marker(out)`."""
    return {
        "generator": "partbench-twin",
        "version": TWIN_VERSION,
        "images_per_class": None if full else images_per_class,
        "image_size": image_size,
        "seed": seed,
        "full": full,
    }


def read_twin_marker(out: str | Path) -> dict | None:
    """The marker of a generated twin at `out`, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _render_class(job: tuple[str, str, int, int, int, str]) -> list[dict]:
    """Render and write one class's images; return their image entries with annotations.

    Runs in a worker process: it only writes files under its own class folder.
    """
    split, synset, count, seed, size, folder = job
    class_dir = Path(folder) / split / synset
    class_dir.mkdir(exist_ok=True)  # not parents: never recreate a folder the caller removed
    entries = []
    for i in range(count):
        file_name = f"{synset}_{i + 1}.JPEG"
        image = render_image(synset, i, seed=seed, image_size=size)
        (class_dir / file_name).write_bytes(image.jpeg_bytes())
        entries.append(
            {
                "file_name": file_name,
                "height": size,
                "width": size,
                "annotations": [
                    {
                        "category_id": a.part_id,
                        "segmentation": a.segmentation,
                        "area": a.area,
                        "bbox": a.bbox,
                        "iscrowd": 0,
                    }
                    for a in image.annotations
                ],
            }
        )
    return entries


def _coco(split_entries: list[list[dict]]) -> dict:
    """A split's COCO dict; ids are 1-based and follow class order, then image order."""
    images, annotations = [], []
    for class_entries in split_entries:
        for entry in class_entries:
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": entry["file_name"],
                    "height": entry["height"],
                    "width": entry["width"],
                }
            )
            for ann in entry["annotations"]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    categories = [{"id": p.id, "name": p.name, "supercategory": p.super_category} for p in parts()]
    return {"images": images, "annotations": annotations, "categories": categories}


def generate_twin(
    out: str | Path,
    *,
    images_per_class: int = 20,
    image_size: int = 128,
    seed: int = 0,
    full: bool = False,
    workers: int = 1,
) -> Path:
    """Write the synthetic twin to `out` and return `out` as a Path.

    If `out` already holds a twin generated with the same parameters and version, it is reused
    as is. A twin with other parameters is replaced. A non-empty folder that is not a twin is
    refused (it may be the real data). The twin is built in a temporary sibling folder and
    renamed into place at the end, so an interrupted run never leaves a half dataset at `out`.

    Args:
        images_per_class: images of each of the 158 classes (ignored when `full`).
        image_size: width and height of every image, in pixels.
        seed: the one seed everything derives from.
        full: the real release's per-split counts (train 16540 / val 2957 / test 4598).
        workers: processes rendering classes in parallel; the bytes do not depend on it. The
            processes are spawned, so a calling script needs the `if __name__ == "__main__":`
            guard.
    """
    out = Path(out)
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    params = twin_parameters(
        images_per_class=images_per_class, image_size=image_size, seed=seed, full=full
    )
    plan = plan_counts(images_per_class=images_per_class, full=full)
    if out.exists():
        marker = read_twin_marker(out)
        if marker is not None and {k: marker.get(k) for k in params} == params:
            return out
        if marker is None and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(
                f"{out} exists and is not a synthetic twin (no {MARKER}); refusing to overwrite "
                "it: name an empty or new folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the twin is ordinary data
    try:
        jobs = [
            (split, synset, n, seed, image_size, str(tmp))
            for split in SPLITS
            for synset, n in plan[split].items()
        ]
        for split in SPLITS:
            (tmp / split).mkdir()
        if workers > 1:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            try:
                rendered = list(pool.map(_render_class, jobs, chunksize=1))
            finally:  # on Ctrl-C, drop the queued classes instead of rendering them all first
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            rendered = [_render_class(job) for job in jobs]
        per_split: dict[str, list[list[dict]]] = {split: [] for split in SPLITS}
        for job, entries in zip(jobs, rendered):
            per_split[job[0]].append(entries)
        for split in SPLITS:
            text = json.dumps(_coco(per_split[split]), separators=(",", ":"))
            (tmp / f"{split}.json").write_text(text, encoding="utf-8")
        counts = {split: sum(plan[split].values()) for split in SPLITS}
        (tmp / MARKER).write_text(
            json.dumps({**params, "counts": counts}, indent=1) + "\n", encoding="utf-8"
        )
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished twin onto `out`, setting an older twin aside first."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "twin")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

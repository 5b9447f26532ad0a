"""Load the PartImageNet_OOD release (or the synthetic twin, which has the same format).

    dataset = load_partimagenet("~/data/PartImageNet_OOD")

reads `<split>.json` (COCO, one per split) and checks it against the packaged class and part
tables (episodes/data/*.csv): every image's class is the synset prefix of its file name and must
be a class of that split; the categories must be the 40 parts. Images are stat-ed (for the
missing-file check and the fingerprint) and their headers read once per dataset fingerprint (the
size check of image_sizes.py); pixels and masks are read on demand by PartDataset.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from pycocotools.coco import COCO

from benchmark.data import masks
from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.data.errors import DatasetDefectWarning, DatasetError, first_few
from benchmark.data.image_sizes import check_image_sizes
from benchmark.data.layout import Layout, find_layout
from episodes import taxonomy
from episodes.storage import sha256_hex

_CLASS_TABLE = "the packaged class table (episodes/data/classes.csv)"
_PART_TABLE = "the packaged part table (episodes/data/parts.csv)"


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_json(path: Path) -> tuple[bytes, object]:
    raw = path.read_bytes()
    try:
        return raw, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a valid JSON file ({e})") from None


def _check_coco_shape(data: object, path: Path) -> None:
    """The top level of a COCO file: an object with lists `images`, `annotations`, `categories`."""
    if not isinstance(data, dict):
        raise DatasetError(
            f"{path}: not a COCO annotation file: the top level is a "
            f"{type(data).__name__}, expected an object with keys images, "
            f"annotations, categories"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(
                f"{path}: not a COCO annotation file: no '{key}' field "
                f"(found: {', '.join(map(str, data)) or 'nothing'})"
            )
        if not isinstance(data[key], list):
            raise DatasetError(
                f"{path}: field '{key}' must be a list, got {type(data[key]).__name__}"
            )


def _check_categories(categories: list, path: Path) -> None:
    """The categories must be the 40 parts, by id and name."""
    expected = {p.id: p.name for p in taxonomy.parts()}
    found: dict[object, object] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DatasetError(
                f"{path}: categories[{i}] must be an object with 'id' and 'name', got {cat!r}"
            )
        found[cat["id"]] = cat["name"]
    if found == expected and len(categories) == len(expected):
        return
    problems = []
    if len(categories) != len(found):
        problems.append("duplicate category ids")
    if extra := [k for k in found if k not in expected]:
        problems.append(f"ids not in the table: {first_few(f'{k} {found[k]!r}' for k in extra)}")
    if missing := [k for k in expected if k not in found]:
        problems.append(f"missing ids: {first_few(f'{k} {expected[k]!r}' for k in missing)}")
    if renamed := [k for k in expected if k in found and found[k] != expected[k]]:
        problems.append(
            "names differ: "
            + first_few(
                f"id {k} is {found[k]!r} in the file, {expected[k]!r} in the table" for k in renamed
            )
        )
    raise DatasetError(
        f"{path}: field 'categories' differs from the 40 parts of {_PART_TABLE}: "
        + "; ".join(problems)
    )


def _unsafe_file_name(name: str) -> bool:
    """A file_name must be a bare file name: no folder, no '..', not absolute."""
    return (
        not name
        or "/" in name
        or "\\" in name
        or ".." in name
        or "\0" in name
        or os.path.isabs(name)
        or name == "."
    )


def _check_images(images: list, path: Path, split: str) -> list[tuple[int, str, str, int, int]]:
    """Check each image entry; returns (id, file_name, synset, height, width) in json order."""
    out = []
    bad_fields: list[str] = []
    unsafe: list[str] = []
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            bad_fields.append(f"images[{i}] is a {type(img).__name__}, not an object")
            continue
        problems = [k for k in ("id", "height", "width") if not _is_int(img.get(k))]
        problems += [k for k in ("height", "width") if _is_int(img.get(k)) and img[k] <= 0]
        if not isinstance(img.get("file_name"), str):
            problems.append("file_name")
        if problems:
            bad_fields.append(
                f"images[{i}] (id {img.get('id')!r}): "
                + ", ".join(f"{k}={img.get(k)!r}" for k in problems)
            )
            continue
        name = img["file_name"]
        if _unsafe_file_name(name):
            unsafe.append(f"{name!r} (image id {img['id']})")
            continue
        out.append((img["id"], name, name.split("_", 1)[0], img["height"], img["width"]))
    if unsafe:
        raise DatasetError(
            f"{path}: refused file_name values that are not a bare file name (a folder separator, "
            f"'..' or an absolute path; nothing was read): {first_few(unsafe)}"
        )
    if bad_fields:
        raise DatasetError(
            f"{path}: image entries need an integer 'id', a string 'file_name' and positive integer "
            f"'height' and 'width'; wrong in: {first_few(bad_fields)}"
        )
    ids = Counter(r[0] for r in out)
    names = Counter(r[1] for r in out)
    if dup := [k for k, n in ids.items() if n > 1]:
        raise DatasetError(f"{path}: duplicate image ids: {first_few(dup)}")
    if dup := [k for k, n in names.items() if n > 1]:
        raise DatasetError(f"{path}: duplicate file_name values: {first_few(dup)}")
    _check_classes(out, path, split)
    return out


def _check_classes(images: list[tuple[int, str, str, int, int]], path: Path, split: str) -> None:
    """Every image's synset must be a class of this split in the packaged table."""
    table = taxonomy.class_splits()
    unknown: dict[str, str] = {}
    elsewhere: dict[str, str] = {}
    for _, name, synset, _, _ in images:
        if synset not in table:
            unknown.setdefault(synset, name)
        elif table[synset] != split:
            elsewhere.setdefault(synset, name)
    if unknown:
        raise DatasetError(
            f"{path}: field 'file_name': {len(unknown)} synset prefixes are not classes of "
            f"{_CLASS_TABLE}: " + first_few(f"{s} (e.g. {n})" for s, n in unknown.items())
        )
    if elsewhere:
        raise DatasetError(
            f"{path}: field 'file_name': {len(elsewhere)} classes in the {split} file belong to "
            f"another split in {_CLASS_TABLE} (the OOD splits hold disjoint classes): "
            + first_few(f"{s} (e.g. {n}) is a {table[s]} class" for s, n in elsewhere.items())
        )


def _check_annotations(annotations: list, path: Path, image_ids: set[int]) -> None:
    """Each annotation needs id, image_id (of a listed image), category_id (a part) and segmentation."""
    part_ids = {p.id for p in taxonomy.parts()}
    bad: list[str] = []
    orphans: list[str] = []
    unknown_parts: list[str] = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            bad.append(f"annotations[{i}] is a {type(ann).__name__}, not an object")
            continue
        problems = [k for k in ("id", "image_id", "category_id") if not _is_int(ann.get(k))]
        if "segmentation" not in ann:
            problems.append("segmentation")
        area = ann.get("area", 0)
        if not isinstance(area, (int, float)) or isinstance(area, bool):
            problems.append("area")
        if problems:
            bad.append(
                f"annotations[{i}] (id {ann.get('id')!r}): "
                + ", ".join(f"{k}={ann.get(k)!r}" for k in problems)
            )
        elif ann["image_id"] not in image_ids:
            orphans.append(f"annotation {ann['id']} -> image_id {ann['image_id']}")
        elif ann["category_id"] not in part_ids:
            unknown_parts.append(f"annotation {ann['id']} -> category_id {ann['category_id']}")
    if bad:
        raise DatasetError(
            f"{path}: annotation entries need integer 'id', 'image_id', 'category_id', a "
            f"'segmentation' and a numeric 'area'; wrong in: {first_few(bad)}"
        )
    if orphans:
        raise DatasetError(
            f"{path}: field 'image_id' names no image of the file: {first_few(orphans)}"
        )
    if unknown_parts:
        raise DatasetError(
            f"{path}: field 'category_id' is not one of the 40 part ids of "
            f"{_PART_TABLE}: {first_few(unknown_parts)}"
        )


def _coco_index(data: dict) -> COCO:
    """A pycocotools index of the loaded dict (COCO() prints progress; kept off stdout)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _normalise_splits(splits: Sequence[str], what: str = "splits") -> tuple[str, ...]:
    if isinstance(splits, str):
        splits = (splits,)
    unknown = [s for s in splits if s not in taxonomy.SPLITS]
    if unknown or not splits:
        raise DatasetError(
            f"{what}: unknown {first_few(map(repr, unknown)) or '(none given)'}; "
            f"valid splits are {', '.join(taxonomy.SPLITS)}"
        )
    return tuple(s for s in taxonomy.SPLITS if s in splits)  # canonical order, no duplicates


def load_partimagenet(
    root: str | os.PathLike,
    splits: Sequence[str] = taxonomy.SPLITS,
    *,
    needed: Mapping[str, str] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> PartDataset:
    """Read a PartImageNet_OOD copy (or the synthetic twin) under `root`.

    Args:
        root: the release folder, in one of the layouts of benchmark.data.layout.
        splits: which splits to load; images come in train, val, test order whatever the order here.
        needed: split -> why the run needs it (a phrase after "this run", see
            benchmark.data.splits.required_splits). When given, only these splits must be there;
            the other splits of `splits` are loaded if the copy has them (so a full copy gives the
            same images, indices and fingerprint whatever the run needs). None: all of `splits`
            are needed.
        cache_dir: where a passed image-size check is recorded (see image_sizes.py); None: the
            image headers are read on every load.
    Returns:
        PartDataset with every listed image (json order within a split) and its kept annotations.
    Raises:
        DatasetError: missing root, or a needed split not there; a json that is not COCO or
            disagrees with the packaged tables; an unsafe file_name; images listed but missing on
            disk or of another size than their json entry.
    Warns:
        DatasetDefectWarning: once, summarising annotations skipped for known defects and images
            left without a usable part annotation.
    """
    root = Path(root).expanduser()
    splits = _normalise_splits(splits)
    if needed is None:
        needed = {s: f"loads the {s} split" for s in splits}
    else:
        _normalise_splits(list(needed), "needed splits")
        needed = {s: needed[s] for s in taxonomy.SPLITS if s in needed}
    layout = find_layout(root, needed)
    loaded = tuple(
        s for s in taxonomy.SPLITS if s in needed or (s in splits and s in layout.splits)
    )
    # The json's ~10^5 lists and dicts make the cyclic GC rescan the heap over and over (half the
    # load time); nothing built here is cyclic, so it is paused while loading.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        dataset = _load(root, loaded, layout)
    finally:
        if gc_was_enabled:
            gc.enable()
    check_image_sizes(
        dataset.images,
        dataset.fingerprint,
        None if cache_dir is None else Path(cache_dir).expanduser(),
    )
    _warn_defects(root, dataset.defects)
    return dataset


def _load(root: Path, splits: tuple[str, ...], layout: Layout) -> PartDataset:
    hasher = hashlib.sha256()
    images: list[ImageRecord] = []
    annotations: list[list[dict]] = []
    defects: Counter = Counter()
    for split in splits:
        path = layout.splits[split].annotation_file
        raw, data = _read_json(path)
        hasher.update(f"{split}.json {sha256_hex(raw)}\n".encode())
        del raw
        _check_coco_shape(data, path)
        _check_categories(data["categories"], path)
        entries = _check_images(data["images"], path, split)
        _check_annotations(data["annotations"], path, {e[0] for e in entries})
        by_image = _coco_index(data).imgToAnns
        kept, found = masks.screen_split([(e[0], e[3], e[4]) for e in entries], by_image)
        defects.update(found)
        annotations.extend(kept)
        folders = {s: layout.image_dir(split, s) for s in {e[2] for e in entries}}
        for image_id, name, synset, height, width in entries:
            images.append(
                ImageRecord(
                    index=len(images),
                    image_id=image_id,
                    split=split,
                    synset=synset,
                    file_name=name,
                    path=folders[synset] / name,
                    height=height,
                    width=width,
                )
            )
        del data, by_image, kept
    _hash_image_files(images, layout, hasher)
    return PartDataset(
        root=root,
        layout=layout.name,
        images=images,
        annotations=annotations,
        fingerprint=hasher.hexdigest(),
        defects=defects,
        splits=splits,
    )


def _hash_image_files(images: list[ImageRecord], layout: Layout, hasher) -> None:
    """Add the sorted (split/file_name, size) list to the fingerprint; error on missing files."""
    rows, missing = [], []
    for rec in images:
        try:
            size = os.stat(rec.path).st_size
        except (FileNotFoundError, NotADirectoryError):
            missing.append(str(rec.path))
            continue
        rows.append(f"{rec.split}/{rec.file_name} {size}\n")
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(images)} images listed in the annotation files are missing "
            f"on disk (layout {layout.name}): {first_few(missing, 3)}"
        )
    hasher.update("".join(sorted(rows)).encode())


def _warn_defects(root: Path, defects: Counter) -> None:
    """One warning summarising what was skipped, dropped or left without parts."""
    if not defects:
        return
    said = []
    if skipped := sum(defects[r] for r in masks.SKIP_REASONS):
        counts = ", ".join(f"{r}: {defects[r]}" for r in masks.SKIP_REASONS if defects[r])
        said.append(
            f"skipped {skipped} part annotations with known defects of the PartImageNet "
            f"files ({counts})"
        )
    if dropped := defects[masks.POLYGON_DROPPED]:
        said.append(
            f"dropped {dropped} polygons of < 3 points from annotations kept with their "
            f"other polygons ({masks.POLYGON_DROPPED}: {dropped})"
        )
    if no_parts := defects[masks.NO_PARTS]:
        said.append(
            f"{no_parts} images have no usable part annotation, none listed or all "
            f"skipped ({masks.NO_PARTS}: {no_parts}); their part masks are empty"
        )
    warnings.warn(
        f"{root}: " + "; ".join(said) + "; went on, the counts are in PartDataset.defects",
        DatasetDefectWarning,
        stacklevel=3,
    )

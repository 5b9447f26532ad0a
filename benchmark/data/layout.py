"""Find where a PartImageNet_OOD copy keeps its images and annotation files.

Copies of the release come in many on-disk layouts: unpacked on macOS (`__MACOSX/`, `._*`), under
one or two wrapping folders, with images moved under `images/`, synset folders flattened, or the
annotation files kept in `annotations/`. `find_layout` resolves each split on its own (its json
and its image folder) inside the root or a wrapping folder, and when a split the run needs is not
there, says exactly which piece is missing, what it did see, and (for zips where image folders
should be) to run `python -m benchmark prepare`.

Finding a folder is not accepting it: the loader then checks that every image the json lists is
in that folder (benchmark/data/partimagenet.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.errors import DatasetError, first_few
from episodes.taxonomy import SPLITS

# Annotation file of a split, relative to the folder holding the layout, in the order tried.
JSON_PLACES: tuple[str, ...] = (
    "{split}.json",
    "annotations/{split}.json",
    "annotations/{split}/{split}.json",
)
# Image folder of a split, in the order tried; each holds <synset>/<file_name> or <file_name>.
IMAGE_PLACES: tuple[str, ...] = ("{split}", "images/{split}", "JPEGImages")

# The one folder name a copy of the release is usually unpacked under.
RELEASE_FOLDER = "PartImageNet_OOD"
# How many wrapping folders (of any name) above the layout are looked through.
MAX_WRAPPERS = 2

KNOWN_LAYOUTS: tuple[str, ...] = (
    "images: {split}/{synset}/{file_name}, images/{split}/{synset}/{file_name}, "
    "{split}/{file_name}, images/{split}/{file_name} or JPEGImages/{synset}/{file_name}",
    "annotations: {split}.json, annotations/{split}.json or annotations/{split}/{split}.json",
    f"both under the root or up to {MAX_WRAPPERS} wrapping folders ({RELEASE_FOLDER}/ or a "
    "folder's only sub-folder); __MACOSX/, ._* and .DS_Store are ignored",
)

PREPARE_HINT = (
    "unpack it with `python -m benchmark prepare {source} --out DIR` and set data.root to DIR"
)


def is_junk(name: str) -> bool:
    """Files that macOS and archivers leave beside the real ones (and other hidden entries)."""
    return name == "__MACOSX" or name.startswith(".")


def real_entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder` other than junk, sorted by name; [] if it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not is_junk(e.name)), key=lambda e: e.name)
    except OSError:
        return []


@dataclass(frozen=True)
class SplitFiles:
    """Where one split keeps its files.

    Attributes:
        annotation_file: the split's COCO json.
        image_folder: the folder holding its images.
        nested: True if images sit in one sub-folder per synset (`<image_folder>/<synset>/`),
            False if directly in `image_folder` (the file name carries the synset).
        pattern: the place as a pattern relative to the user's root, e.g.
            "images/{split}/{synset}/{file_name} + annotations/{split}.json".
    """

    annotation_file: Path
    image_folder: Path
    nested: bool
    pattern: str


@dataclass(frozen=True)
class Layout:
    """Where one copy of the release keeps its files.

    Attributes:
        name: the matched layout as a pattern relative to the user's root, e.g.
            "PartImageNet_OOD/{split}/{synset}/{file_name} + PartImageNet_OOD/{split}.json"
            (one "split: pattern" item per split where splits differ).
        base: the folder holding the layout (the root, or a wrapping folder under it).
        splits: split -> its files, for every split found (needed or not), in canonical order.
    """

    name: str
    base: Path
    splits: dict[str, SplitFiles]

    @property
    def annotation_files(self) -> dict[str, Path]:
        return {s: f.annotation_file for s, f in self.splits.items()}

    def image_dir(self, split: str, synset: str) -> Path:
        """The folder holding the images of one class of one split."""
        files = self.splits[split]
        return files.image_folder / synset if files.nested else files.image_folder


def describe_layouts() -> str:
    return "; ".join(KNOWN_LAYOUTS)


def _is_nested(folder: Path) -> bool:
    """A split folder holding sub-folders is one folder per synset; else it is flat."""
    return any(e.is_dir() for e in real_entries(folder))


@dataclass(frozen=True)
class _Probe:
    """What one candidate folder holds for one split."""

    json: Path | None
    json_place: str | None
    images: Path | None
    image_place: str | None
    zips: tuple[Path, ...]  # <split>.zip (or images/<split>.zip) where the folder should be


def _probe(base: Path, split: str) -> _Probe:
    json = next((p for p in JSON_PLACES if (base / p.format(split=split)).is_file()), None)
    place = next((p for p in IMAGE_PLACES if (base / p.format(split=split)).is_dir()), None)
    zips = tuple(
        base / f"{p.format(split=split)}.zip"
        for p in IMAGE_PLACES[:2]
        if (base / f"{p.format(split=split)}.zip").is_file()
    )
    return _Probe(
        None if json is None else base / json.format(split=split),
        json,
        None if place is None else base / place.format(split=split),
        place,
        zips,
    )


def _split_files(base: Path, prefix: str, probe: _Probe) -> SplitFiles:
    nested = probe.image_place == "JPEGImages" or _is_nested(probe.images)
    images = probe.image_place + ("/{synset}" if nested else "") + "/{file_name}"
    return SplitFiles(
        annotation_file=probe.json,
        image_folder=probe.images,
        nested=nested,
        pattern=f"{prefix}{images} + {prefix}{probe.json_place}",
    )


def _candidates(root: Path) -> list[Path]:
    """The root, then up to MAX_WRAPPERS wrapping folders: `PartImageNet_OOD/` if there, else a
    folder's only sub-folder (junk ignored), descending while the folder holds no json."""
    found = [root]
    folder = root
    for _ in range(MAX_WRAPPERS):
        entries = real_entries(folder)
        if any(e.name.endswith(".json") for e in entries):
            break
        subdirs = [Path(e.path) for e in entries if e.is_dir()]
        if (folder / RELEASE_FOLDER).is_dir():
            folder = folder / RELEASE_FOLDER
        elif len(subdirs) == 1:
            folder = subdirs[0]
        else:
            break
        found.append(folder)
    return found


def _looks_like_seg_release(base: Path) -> bool:
    """PartImageNet_Seg ships PNG part masks under annotations/<split>/ (and images/<split>/)."""
    if "partimagenet_seg" in base.name.lower():
        return True
    for split in ("train", "val", "test"):
        folder = base / "annotations" / split
        if any(e.name.lower().endswith(".png") for e in real_entries(folder)):
            return True
    return False


def _seen(base: Path) -> str:
    """The sub-folders and json files in `base` (and its annotations/ folder)."""
    entries = real_entries(base)
    folders = [f"{e.name}/" for e in entries if e.is_dir()]
    jsons = [e.name for e in entries if e.is_file() and e.name.endswith(".json")]
    jsons += [
        f"annotations/{e.name}"
        for e in real_entries(base / "annotations")
        if e.is_file() and e.name.endswith(".json")
    ]
    zips = [e.name for e in entries if e.is_file() and e.name.endswith(".zip")]
    parts = [
        f"folders {first_few(folders, 10) if folders else '(none)'}",
        f"json files {first_few(jsons, 10) if jsons else '(none)'}",
    ]
    if zips:
        parts.append(f"zip files {first_few(zips, 10)}")
    return f"{base}: " + ", ".join(parts)


def _missing(split: str, probe: _Probe, why: str, root: Path) -> str:
    """One sentence naming the missing piece(s) of one split and why the run needs it."""
    if probe.json is None and probe.images is None:
        what = f"{split}/ and {split}.json are missing"
    elif probe.json is None:
        what = f"{split}.json is missing (its images are in {probe.images})"
    else:
        what = f"{split}/ is missing (its annotations are in {probe.json})"
    if probe.images is None and probe.zips:
        what += f"; {probe.zips[0]} is there instead of a folder: " + PREPARE_HINT.format(
            source=root
        )
    return f"{what}; this run {why}"


def find_layout(root: Path, needed: Mapping[str, str]) -> Layout:
    """Find the PartImageNet_OOD copy under `root` holding every split in `needed`.

    Args:
        root: the folder the user named (data.root).
        needed: split -> why the run needs it, as a phrase after "this run", e.g.
            {"test": "evaluates on the test split"}. Other splits found are in the layout too.
    Raises:
        DatasetError: the root is missing or not a folder, holds the PartImageNet_Seg release, or
            lacks a needed split (the message names the missing file or folder of each, what was
            seen, and points to `prepare` where zips sit in place of image folders).
    """
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        hint = (
            f"; if it is the downloaded archive, {PREPARE_HINT.format(source=root)}"
            if root.suffix == ".zip"
            else ""
        )
        raise DatasetError(
            f"dataset root {root} {what}. Set data.root to the folder of the PartImageNet_OOD "
            f"release, in one of these layouts: {describe_layouts()}{hint}"
        )
    candidates = _candidates(root)
    probes = {base: {s: _probe(base, s) for s in SPLITS} for base in candidates}
    for base in candidates:
        if _looks_like_seg_release(base):
            raise DatasetError(
                f"{base} looks like the PartImageNet_Seg release (PNG masks under annotations/"
                f"<split>/; its splits share classes), not PartImageNet_OOD, whose train/val/test "
                f"hold disjoint classes as few-shot episodes need. Download PartImageNet_OOD and "
                f"point data.root at it."
            )
        found = {s: p for s, p in probes[base].items() if p.json and p.images}
        if all(s in found for s in needed):
            prefix = "" if base == root else base.relative_to(root).as_posix() + "/"
            splits = {s: _split_files(base, prefix, p) for s, p in found.items()}
            patterns = {f.pattern for f in splits.values()}
            name = (
                patterns.pop()
                if len(patterns) == 1
                else "; ".join(f"{s}: {f.pattern}" for s, f in splits.items())
            )
            return Layout(name=name, base=base, splits=splits)
    # Report against the folder that holds the most pieces of the needed splits.
    best = max(
        candidates,
        key=lambda b: (
            sum(
                (p.json is not None) + (p.images is not None) + bool(p.zips)
                for s, p in probes[b].items()
                if s in needed
            ),
            -candidates.index(b),
        ),
    )
    lacking = [
        _missing(s, probes[best][s], why, root)
        for s, why in needed.items()
        if not (probes[best][s].json and probes[best][s].images)
    ]
    anything = any(p.json or p.images or p.zips for b in candidates for p in probes[b].values())
    head = (
        f"dataset root {root}" + ("" if best == root else f" (in {best})") + ": "
        if anything
        else f"no PartImageNet_OOD layout found under dataset root {root}: "
    )
    archives = [
        Path(e.path)
        for b in candidates
        for e in real_entries(b)
        if e.is_file()
        and e.name.endswith(".zip")
        and not any(Path(e.path) in p.zips for p in probes[b].values())
    ]
    hint = (
        f". {archives[0]} is an archive: " + PREPARE_HINT.format(source=archives[0])
        if archives
        else ""
    )
    raise DatasetError(
        head
        + ". ".join(lacking)
        + hint
        + ". Saw "
        + " | ".join(_seen(b) for b in candidates)
        + f". Accepted layouts: {describe_layouts()}"
    )

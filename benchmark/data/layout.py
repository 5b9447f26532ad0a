"""Find where a PartImageNet_OOD copy keeps its images and annotation files.

Copies of the release come in a few on-disk layouts. `find_layout` looks for each of them under
the root the user named (and one folder below it) and says what it found where none matches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.errors import DatasetError

# Image folders and annotation files, relative to the folder holding the layout.
_IMAGE_STYLES: dict[str, str] = {
    "split-folders": "{split}/{synset}/{file_name}",
    "JPEGImages": "JPEGImages/{synset}/{file_name}",
}
_JSON_DIRS: dict[str, str] = {"": "{split}.json", "annotations": "annotations/{split}.json"}

# The one folder name a copy of the release is usually unpacked under.
RELEASE_FOLDER = "PartImageNet_OOD"

KNOWN_LAYOUTS: tuple[str, ...] = tuple(
    f"{images} + {jsons}" for images in _IMAGE_STYLES.values() for jsons in _JSON_DIRS.values()
) + (f"any of these one folder down ({RELEASE_FOLDER}/ or the root's only sub-folder)",)


@dataclass(frozen=True)
class Layout:
    """Where one copy of the release keeps its files.

    Attributes:
        name: the matched layout as a pattern relative to the user's root,
            e.g. "PartImageNet_OOD/{split}/{synset}/{file_name} + PartImageNet_OOD/{split}.json".
        base: the folder holding the layout (the root, or one folder under it).
        annotation_files: split -> its COCO json.
        image_style: "split-folders" or "JPEGImages".
    """

    name: str
    base: Path
    annotation_files: dict[str, Path]
    image_style: str

    def image_dir(self, split: str, synset: str) -> Path:
        """The folder holding the images of one class of one split."""
        if self.image_style == "JPEGImages":
            return self.base / "JPEGImages" / synset
        return self.base / split / synset


def describe_layouts() -> str:
    return "; ".join(KNOWN_LAYOUTS)


def _candidates(root: Path) -> list[Path]:
    """The root itself, then `PartImageNet_OOD/` under it, then its only sub-folder (if one)."""
    found = [root]
    release = root / RELEASE_FOLDER
    if release.is_dir():
        found.append(release)
    subdirs = [Path(e.path) for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    if len(subdirs) == 1 and subdirs[0] not in found:
        found.append(subdirs[0])
    return found


def _match(base: Path, prefix: str, splits: Sequence[str]) -> tuple[Layout | None, str]:
    """The layout held by `base`, or None and a line saying what was missing there."""
    json_dir = next(
        (d for d in _JSON_DIRS if all((base / d / f"{s}.json").is_file() for s in splits)), None)
    if all((base / s).is_dir() for s in splits):
        style = "split-folders"
    elif (base / "JPEGImages").is_dir():
        style = "JPEGImages"
    else:
        style = None
    if json_dir is not None and style is not None:
        name = f"{prefix}{_IMAGE_STYLES[style]} + {prefix}{_JSON_DIRS[json_dir]}"
        files = {s: base / json_dir / f"{s}.json" for s in splits}
        return Layout(name=name, base=base, annotation_files=files, image_style=style), ""
    missing = []
    if json_dir is None:
        jsons = " or ".join(f"{base / d / f'{{split}}.json'}" for d in _JSON_DIRS)
        missing.append(f"no {jsons} for every split of {', '.join(splits)}")
    if style is None:
        folders = ", ".join(f"{s}/" for s in splits)
        missing.append(f"no image folders {folders} nor JPEGImages/")
    return None, f"{base}: " + "; ".join(missing)


def _looks_like_seg_release(base: Path) -> bool:
    """PartImageNet_Seg ships PNG part masks under annotations/<split>/ (and images/<split>/)."""
    if "partimagenet_seg" in base.name.lower():
        return True
    for split in ("train", "val", "test"):
        folder = base / "annotations" / split
        if folder.is_dir():
            with os.scandir(folder) as entries:
                if any(e.name.lower().endswith(".png") for e in entries):
                    return True
    return False


def find_layout(root: Path, splits: Sequence[str]) -> Layout:
    """Find the PartImageNet_OOD layout under `root` holding every split in `splits`.

    Raises:
        DatasetError: the root is missing or not a folder, holds the PartImageNet_Seg release,
            or holds none of the known layouts (the message lists them and what was missing).
    """
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(
            f"dataset root {root} {what}. Set data.root to the folder of the PartImageNet_OOD "
            f"release, in one of these layouts: {describe_layouts()}")
    candidates = _candidates(root)
    reasons = []
    for base in candidates:
        prefix = "" if base == root else f"{base.name}/"
        layout, why = _match(base, prefix, splits)
        if layout is not None:
            return layout
        reasons.append(why)
    for base in candidates:
        if _looks_like_seg_release(base):
            raise DatasetError(
                f"{base} looks like the PartImageNet_Seg release (PNG masks under annotations/"
                f"<split>/; its splits share classes), not PartImageNet_OOD, whose train/val/test "
                f"hold disjoint classes as few-shot episodes need. Download PartImageNet_OOD and "
                f"point data.root at it.")
    raise DatasetError(
        f"no PartImageNet_OOD layout found under dataset root {root}. Looked for: "
        f"{describe_layouts()}. Found: " + " | ".join(reasons))

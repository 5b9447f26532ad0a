"""The in-memory view of a PartImageNet-format dataset (real release or synthetic twin).

`load_partimagenet` (benchmark/data/partimagenet.py) builds it; features, the sampler and the
runner only read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data import decode, masks
from benchmark.data.errors import DatasetError
from episodes import taxonomy


@dataclass(frozen=True)
class ImageRecord:
    """One image of the release.

    Attributes:
        index: position in `PartDataset.images` (the image index used by episodes).
        image_id: the COCO `id` in its split's json.
        split: "train", "val" or "test".
        synset: object class, from the file name's prefix (no json field carries it).
        file_name: as in the json, e.g. "n04252225_8354.JPEG" (never a folder or "..").
        path: the resolved file on disk.
    """

    index: int
    image_id: int
    split: str
    synset: str
    file_name: str
    path: Path
    height: int
    width: int


@dataclass
class PartDataset:
    """Images in split order (train, val, test; json order within a split) with part annotations.

    Attributes:
        root: the dataset root the user named.
        layout: name of the on-disk layout that matched.
        images: all images; `images[i].index == i`.
        annotations: per image index, the kept annotations of its parts (json order): dicts
            with the json's "id", "image_id", "category_id" (part id), "area", and as
            "segmentation" one compressed COCO RLE dict of the annotation's polygons, made by
            pycocotools at load time (see benchmark/data/masks.py).
        fingerprint: hex sha256 over the annotation files and the image list.
        defects: count of annotations skipped, by reason ("polygon with < 3 points",
            "area == 0", "segmentation pycocotools cannot decode"), plus the count of 2-point
            polygons dropped from annotations kept with their other polygons, and of images
            with no usable part annotation; empty when clean.
        splits: the splits loaded, in canonical order (a partial copy may lack some).
    """

    root: Path
    layout: str
    images: list[ImageRecord]
    annotations: list[list[dict]]
    fingerprint: str
    defects: Counter = field(default_factory=Counter)
    # Keyword-only, so positional construction (tests' in-memory subclasses) keeps its meaning.
    splits: tuple[str, ...] = field(default=taxonomy.SPLITS, kw_only=True)

    @property
    def labels(self) -> np.ndarray:
        """(n_images,) synset of each image, as a numpy str array."""
        return np.array([r.synset for r in self.images])

    def split_indices(self, split: str) -> np.ndarray:
        """(n,) int64 indices of the images of one split."""
        return np.array([r.index for r in self.images if r.split == split], dtype=np.int64)

    def load_image(
        self, i: int, size: tuple[int, int] | None = None, resample: str = "bicubic"
    ) -> Image.Image:
        """The pixels of image i as an RGB PIL image of the json's (width, height), or resized
        (squashed) to `size` = (width, height); see benchmark/data/decode.py (any colour mode,
        PNG bytes in a .JPEG file, reduced-scale JPEG decoding)."""
        rec = self.images[i]
        with Image.open(rec.path) as img:
            if img.size != (rec.width, rec.height):
                raise DatasetError(
                    f"{rec.path}: the image is {img.size[0]}x{img.size[1]} (width x height) but "
                    f"its entry (image id {rec.image_id}) in the {rec.split} annotation file says "
                    f"{rec.width}x{rec.height}; its part masks would not line up"
                )
            return decode.to_rgb(img, size, resample)

    def part_masks(self, i: int) -> dict[int, np.ndarray]:
        """Part id -> (H, W) bool mask (union of image i's annotations of that part).

        Only parts with at least one kept annotation appear. Decoded with pycocotools at the
        json's height and width.
        """
        rec = self.images[i]
        return masks.part_masks(self.annotations[i], rec.height, rec.width)

    def slot_rles(self, i: int) -> dict[int, dict]:
        """Slot index -> compressed COCO RLE of image i's masks merged per slot (as slot_masks,
        without decoding): what feature extraction needs for the coverage of the grid."""
        return masks.slot_rles(self.annotations[i], _slot_of_part())

    def slot_masks(self, i: int) -> np.ndarray:
        """(13, H, W) bool: image i's part masks merged per generic slot, in taxonomy.PART_SLOTS
        order (e.g. slot "Head" is the union of any "<super-category> Head" part)."""
        rec = self.images[i]
        out = np.zeros((len(taxonomy.PART_SLOTS), rec.height, rec.width), dtype=bool)
        slot_of = _slot_of_part()
        for part, mask in self.part_masks(i).items():
            out[slot_of[part]] |= mask
        return out


@cache
def _slot_of_part() -> dict[int, int]:
    """Part id -> index in taxonomy.PART_SLOTS."""
    return {p.id: p.slot_index for p in taxonomy.parts()}

"""The in-memory view of a PartImageNet-format dataset (real release or synthetic twin).

`load_partimagenet` (benchmark/data/partimagenet.py) builds it; features, the sampler and the
runner only read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
        annotations: per image index, the kept COCO annotation dicts of its parts.
        fingerprint: hex sha256 over the annotation files and the image list.
        defects: count of annotations skipped, by reason (e.g. "polygon with < 3 points").
    """

    root: Path
    layout: str
    images: list[ImageRecord]
    annotations: list[list[dict]]
    fingerprint: str
    defects: Counter = field(default_factory=Counter)

    @property
    def labels(self) -> np.ndarray:
        """(n_images,) synset of each image, as a numpy str array."""
        return np.array([r.synset for r in self.images])

    def split_indices(self, split: str) -> np.ndarray:
        """(n,) int64 indices of the images of one split."""
        return np.array([r.index for r in self.images if r.split == split], dtype=np.int64)

"""Torch datasets over one split of a PartDataset, for training and for validation embeddings.

Augmentation randomness comes from a generator seeded by (seed, epoch, image index), never from
global state: the same image in the same epoch gets the same crop in any worker, any process and
after a resume.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from benchmark.data.decode import load_image_at
from benchmark.models.part_head import label_map_from_slot_masks
from episodes.taxonomy import split_classes


class ImageSource(Protocol):
    """What training reads from a dataset (benchmark.data.dataset.PartDataset satisfies it)."""

    images: Sequence  # records with .split, .synset, .height and .width
    fingerprint: str

    def load_image(self, i: int) -> Image.Image: ...  # PartDataset's also takes size=(w, h)
    def slot_masks(self, i: int) -> np.ndarray: ...  # (13, H, W) bool
    def split_indices(self, split: str) -> np.ndarray: ...


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of ints (seed, epoch, index, ...), via numpy's SeedSequence."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def train_class_keys() -> tuple[str, ...]:
    """The 109 train synsets in taxonomy order: label k of the classifier is train_class_keys()[k]."""
    return split_classes("train")


def random_resized_crop_box(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's RandomResizedCrop, drawn from `generator`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    side = min(height, width)  # fallback: central square
    return (height - side) // 2, (width - side) // 2, side, side


# Side of the stored training view, relative to the training resolution: RandomResizedCrop's
# smallest crop (area scale 0.35, aspect 4/3) spans ~0.51 of a side, so a view of twice the
# training resolution feeds even that crop without upsampling.
AUGMENT_MARGIN = 2


def view_size(source: ImageSource, indices: np.ndarray, image_size: int) -> int:
    """S: image_size * AUGMENT_MARGIN, but no larger than the largest stored side of the images
    (a view never upsamples a small dataset, which then trains on its pixels unchanged)."""
    largest = max(max(source.images[int(i)].height, source.images[int(i)].width) for i in indices)
    return int(min(image_size * AUGMENT_MARGIN, largest))


def training_view(
    source: ImageSource, image_index: int, size: int, with_labels: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The image squashed to (size, size): pixels (S, S, 3) uint8 (the shared decode path, at
    reduced scale for large JPEGs), and with_labels the part label map (S, S) uint8 (slot
    0..12, background 13; nearest)."""
    record = source.images[image_index]
    pixels = np.asarray(load_image_at(source, image_index, (size, size)), dtype=np.uint8)
    if not with_labels:
        return pixels, None
    slot_masks = torch.from_numpy(np.ascontiguousarray(source.slot_masks(image_index)))
    labels = label_map_from_slot_masks(slot_masks)[None]  # (1, H, W)
    if tuple(labels.shape[-2:]) != (record.height, record.width):
        raise ValueError(
            f"image {image_index}: slot masks {tuple(labels.shape[-2:])} "
            f"do not match the image size {(record.height, record.width)}"
        )
    if tuple(labels.shape[-2:]) != (size, size):
        labels = TF.resize(labels, [size, size], interpolation=InterpolationMode.NEAREST_EXACT)
    return pixels, labels[0].to(torch.uint8).numpy()


class SplitImages(Dataset):
    """Images of one split, resized to a square `image_size`, optionally augmented.

    item j -> (image (3, S, S) float32 normalised, label int64, label_map (S, S) int64 | (0,)).
    label: index into `class_keys` (the 109 train classes for training; -1 for other classes).
    label_map: per-pixel part slot (0..12) or background (13), from `slot_masks`, resized with
    the image (nearest); only when `with_masks`.
    Call `set_epoch(e)` before each epoch so that augmentation differs between epochs.
    """

    def __init__(
        self,
        source: ImageSource,
        split: str,
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool,
        seed: int,
        with_masks: bool = False,
        class_keys: Sequence[str] | None = None,
        indices: np.ndarray | None = None,
        interpolation: str = "bicubic",
        decoded: Any = None,
    ) -> None:
        self.source = source
        self.split = split
        self.indices = np.asarray(
            source.split_indices(split) if indices is None else indices, dtype=np.int64
        )
        if self.indices.size == 0:
            raise ValueError(
                f"dataset {getattr(source, 'root', '')!s} has no images in split {split!r}"
            )
        wrong = [int(i) for i in self.indices if source.images[int(i)].split != split]
        if wrong:
            raise ValueError(
                f"SplitImages({split!r}) was given images of another split: {wrong[:5]}"
            )
        self.image_size = int(image_size)
        self.view_size = view_size(source, self.indices, self.image_size)
        # a benchmark.training.decoded_cache.DecodedViews of these views, or None: decode per read
        self.decoded = decoded
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.augment = augment
        self.interpolation = InterpolationMode(interpolation)
        self.seed = int(seed)
        self.with_masks = with_masks
        self.epoch = 0
        keys = list(class_keys) if class_keys is not None else []
        position = {k: n for n, k in enumerate(keys)}
        synsets = [source.images[int(i)].synset for i in self.indices]
        if class_keys is not None and split == "train":
            unknown = sorted({s for s in synsets if s not in position})
            if unknown:
                raise ValueError(
                    f"train images of classes outside the 109 train classes: {unknown[:5]}; "
                    "the dataset's train split must hold PartImageNet-OOD train classes only"
                )
        self.labels = torch.tensor([position.get(s, -1) for s in synsets], dtype=torch.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.load(int(self.indices[j]), self.labels[j])

    def make_view(self, image_index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The training view of one image (what the decoded-image cache stores)."""
        return training_view(self.source, image_index, self.view_size, self.with_masks)

    def load(self, image_index: int, label: torch.Tensor | int = -1):
        """Load and transform dataset image `image_index` (a global index).

        The crop is drawn in the stored image's coordinates and taken from the (S, S) training
        view scaled to it, so a run reads the same pixels from the decoded-image cache as from
        the files.
        """
        if self.decoded is not None:
            pixels, labels = self.decoded.view(image_index)
        else:
            pixels, labels = self.make_view(image_index)
        if self.with_masks and labels is None:
            raise ValueError("the decoded-image cache holds no label maps; build it with_labels")
        image = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)  # (3, S, S) u8, a copy
        record = self.source.images[image_index]
        height, width, side = record.height, record.width, self.view_size
        size = [self.image_size, self.image_size]
        if self.augment:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, image_index))
            top, left, h, w = random_resized_crop_box(height, width, g)
            flip = bool(torch.rand(1, generator=g) < 0.5)
            top, h = _to_view(top, h, height, side)
            left, w = _to_view(left, w, width, side)
        else:
            top, left, h, w, flip = 0, 0, side, side, False
        image = TF.resized_crop(
            image, top, left, h, w, size, interpolation=self.interpolation, antialias=True
        )
        if flip:
            image = TF.horizontal_flip(image)
        image = (image.float() / 255.0 - self.mean) / self.std
        if self.with_masks:
            masks = torch.from_numpy(np.array(labels))[None]  # (1, S, S)
            masks = TF.resized_crop(
                masks, top, left, h, w, size, interpolation=InterpolationMode.NEAREST_EXACT
            )
            if flip:
                masks = TF.horizontal_flip(masks)
            masks = masks[0].long()
        else:
            masks = torch.zeros(0, dtype=torch.int64)
        return image, torch.as_tensor(label, dtype=torch.int64), masks


def _to_view(start: int, length: int, stored: int, side: int) -> tuple[int, int]:
    """A crop interval of a stored side in pixels of the view's side (identity when equal)."""
    if stored == side:
        return start, length
    scale = side / stored
    begin = min(int(round(start * scale)), side - 1)
    return begin, max(1, min(int(round(length * scale)), side - begin))

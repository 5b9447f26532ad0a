"""Torch datasets over one split of a PartDataset, for training and for validation embeddings.

Augmentation randomness comes from a generator seeded by (seed, epoch, image index), never from
global state: the same image in the same epoch gets the same crop in any worker, any process and
after a resume.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from benchmark.part_head import label_map_from_slot_masks
from episodes.taxonomy import split_classes


class ImageSource(Protocol):
    """What training reads from a dataset (benchmark.data.dataset.PartDataset satisfies it)."""

    images: Sequence  # records with .split and .synset
    fingerprint: str

    def load_image(self, i: int) -> Image.Image: ...
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
    height: int, width: int, generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
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


class SplitImages(Dataset):
    """Images of one split, resized to a square `image_size`, optionally augmented.

    item j -> (image (3, S, S) float32 normalised, label int64, label_map (S, S) int64 | (0,)).
    label: index into `class_keys` (the 109 train classes for training; -1 for other classes).
    label_map: per-pixel part slot (0..12) or background (13), from `slot_masks`, resized with
    the image (nearest); only when `with_masks`.
    Call `set_epoch(e)` before each epoch so that augmentation differs between epochs.
    """

    def __init__(
        self, source: ImageSource, split: str, *, image_size: int, mean: Sequence[float],
        std: Sequence[float], augment: bool, seed: int, with_masks: bool = False,
        class_keys: Sequence[str] | None = None, indices: np.ndarray | None = None,
        interpolation: str = "bicubic",
    ) -> None:
        self.source = source
        self.split = split
        self.indices = np.asarray(source.split_indices(split) if indices is None else indices,
                                  dtype=np.int64)
        if self.indices.size == 0:
            raise ValueError(f"dataset {getattr(source, 'root', '')!s} has no images in split {split!r}")
        wrong = [int(i) for i in self.indices if source.images[int(i)].split != split]
        if wrong:
            raise ValueError(f"SplitImages({split!r}) was given images of another split: {wrong[:5]}")
        self.image_size = int(image_size)
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

    def load(self, image_index: int, label: torch.Tensor | int = -1):
        """Load and transform dataset image `image_index` (a global index)."""
        image = TF.pil_to_tensor(self.source.load_image(image_index).convert("RGB"))  # (3,H,W) u8
        masks = None
        if self.with_masks:
            slot_masks = torch.from_numpy(np.ascontiguousarray(self.source.slot_masks(image_index)))
            masks = label_map_from_slot_masks(slot_masks)[None]  # (1, H, W)
            if masks.shape[-2:] != image.shape[-2:]:
                raise ValueError(f"image {image_index}: slot masks {tuple(masks.shape[-2:])} "
                                 f"do not match the image size {tuple(image.shape[-2:])}")
        size = [self.image_size, self.image_size]
        height, width = image.shape[-2:]
        if self.augment:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, image_index))
            top, left, h, w = random_resized_crop_box(height, width, g)
            flip = bool(torch.rand(1, generator=g) < 0.5)
        else:
            top, left, h, w, flip = 0, 0, height, width, False
        image = TF.resized_crop(image, top, left, h, w, size, interpolation=self.interpolation,
                                antialias=True)
        if flip:
            image = TF.horizontal_flip(image)
        image = (image.float() / 255.0 - self.mean) / self.std
        if masks is not None:
            masks = TF.resized_crop(masks, top, left, h, w, size,
                                    interpolation=InterpolationMode.NEAREST_EXACT)
            if flip:
                masks = TF.horizontal_flip(masks)
            masks = masks[0].long()
        else:
            masks = torch.zeros(0, dtype=torch.int64)
        return image, torch.as_tensor(label, dtype=torch.int64), masks

"""Dataset images as the backbone sees them: the squash resize (SplitTransform) and the torch
dataset of pixels, slot coverage and area (PartImageDataset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from benchmark.data.dataset import PartDataset
from benchmark.data.decode import accepts_size
from benchmark.data.masks import rle_counts
from benchmark.features.device_decode import read_routed
from benchmark.features.feature_set import N_SLOTS
from benchmark.features.pooling import run_coverage, slot_coverage


@dataclass(frozen=True)
class SplitTransform:
    """A timm eval transform split at ToTensor: PIL steps run in the loader workers, the
    normalisation on the device, so uint8 pixels cross to the GPU (4x fewer bytes).

    Attributes:
        pil_steps: PIL image -> PIL image (resize, crop).
        mean, std: per-channel normalisation of [0, 1] pixels.
    """

    pil_steps: Callable
    mean: tuple[float, ...]
    std: tuple[float, ...]
    squash: tuple[tuple[int, int], str] | None = None

    @classmethod
    def of(cls, transform: Callable) -> "SplitTransform | None":
        """Split Compose([PIL steps..., ToTensor, Normalize]); None for any other shape.

        `squash` is ((width, height), interpolation) when the PIL steps only resize to a fixed
        size (timm's "squash" crop mode): the decoder can then produce that size directly, at
        reduced scale for large JPEGs (benchmark/data/decode.py)."""
        steps = list(getattr(transform, "transforms", []))
        at = [i for i, t in enumerate(steps) if isinstance(t, transforms.ToTensor)]
        if (
            len(at) != 1
            or at[0] != len(steps) - 2
            or not isinstance(steps[-1], transforms.Normalize)
        ):
            return None
        norm = steps[-1]
        return cls(
            transforms.Compose(steps[: at[0]]),
            tuple(map(float, torch.as_tensor(norm.mean).flatten())),
            tuple(map(float, torch.as_tensor(norm.std).flatten())),
            _squash_size(steps[: at[0]]),
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> (H, W, 3) uint8 tensor."""
        if image.mode != "RGB":  # load_image promises RGB; convert() would copy even then
            image = image.convert("RGB")
        if self.squash is None or image.size != self.squash[0]:  # else decoded at that size
            image = self.pil_steps(image)
        return torch.from_numpy(np.array(image, dtype=np.uint8))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 channels_last, as ToTensor + Normalize."""
        mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
        x = pixels.permute(0, 3, 1, 2).float().div_(255)
        return x.sub_(mean).div_(std)


def _squash_size(pil_steps: list) -> tuple[tuple[int, int], str] | None:
    """((width, height), interpolation) when pil_steps are Resize((h, w)) and at most a
    CenterCrop of that same size (a no-op); else None."""
    if not pil_steps or not isinstance(pil_steps[0], transforms.Resize):
        return None
    resize = pil_steps[0]
    size = resize.size
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        return None
    rest = pil_steps[1:]
    if rest and not (
        len(rest) == 1
        and isinstance(rest[0], transforms.CenterCrop)
        and tuple(rest[0].size) == tuple(size)
    ):
        return None
    return (int(size[1]), int(size[0])), resize.interpolation.value


class PartImageDataset(Dataset):
    """Images of a PartDataset as model inputs, with slot coverage on the feature grid.

    Item k: (image, coverage, area). image: (H, W, 3) uint8 when `transform` is a SplitTransform,
    else the transform's (3, H, W) float32; coverage: (S, h, w) float32 fraction of each feature
    cell covered by each slot's mask; area: (S,) float32 fraction of the image each slot's mask
    covers. Both are empty (0,) tensors when grid is None. The masks are those of image
    `mask_indices[k]` (default: image k's own; masks="shuffled" passes other images').
    """

    def __init__(
        self,
        dataset: Any,
        indices: np.ndarray,
        transform: Callable,
        grid: tuple[int, int] | None,
        mask_indices: np.ndarray | None = None,
        device_decode: bool = False,
    ) -> None:
        self.dataset = dataset
        self.indices = indices
        self.transform = transform
        self.grid = grid
        self.mask_indices = indices if mask_indices is None else mask_indices
        # items become (bytes or pixels, encoded, coverage, area) for benchmark.features.device_decode
        self.device_decode = device_decode
        squash = getattr(transform, "squash", None)
        # decode straight to the model's input size (reduced-scale JPEG decoding) when possible
        self.decode_size = squash if squash is not None and accepts_size(dataset) else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple:
        i = int(self.indices[k])
        if self.device_decode:
            payload, encoded = read_routed(self.dataset, i)
            image = payload if encoded else self._pixels(i)
            return (image, encoded, *self._parts(k))
        return (self._pixels(i), *self._parts(k))

    def _pixels(self, i: int) -> torch.Tensor:
        if self.decode_size is not None:
            size, resample = self.decode_size
            return self.transform(self.dataset.load_image(i, size=size, resample=resample))
        return self.transform(self.dataset.load_image(i))

    def _parts(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(coverage (S, h, w), area (S,)) of item k's masks; empty tensors without a grid."""
        if self.grid is None:
            return torch.empty(0), torch.empty(0)
        i = int(self.mask_indices[k])
        if type(self.dataset).slot_masks is PartDataset.slot_masks:
            # the release's own masks: coverage from the RLE runs, no mask decoded (a dataset
            # that overrides slot_masks, e.g. held in memory, takes the path below)
            rec = self.dataset.images[i]
            runs = {s: rle_counts(r) for s, r in self.dataset.slot_rles(i).items()}
            return run_coverage(runs, rec.height, rec.width, self.grid)
        masks = np.asarray(self.dataset.slot_masks(i), dtype=bool)
        if masks.ndim != 3 or masks.shape[0] != N_SLOTS:
            raise ValueError(f"slot_masks({i}) has shape {masks.shape}; expected ({N_SLOTS}, H, W)")
        # a count, not a float64 mean: the same value, without a float copy of 13 full masks
        pixels = masks.shape[1] * masks.shape[2]
        area = torch.from_numpy(np.count_nonzero(masks.reshape(N_SLOTS, -1), axis=1) / pixels)
        area = area.float()
        return slot_coverage(masks, self.grid), area

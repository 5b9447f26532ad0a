"""JPEG decoding on the extraction device: batches of file bytes to (B, H, W, 3) uint8 images.

On CUDA, loader workers only read each file's bytes and its header (benchmark/data/jpeg_header.py);
the main process decodes a whole batch with nvjpeg (`torchvision.io.decode_jpeg(list, device=
"cuda")`) and resizes on the GPU. Files nvjpeg should not take (PNG bytes, greyscale, CMYK,
progressive, ...) are decoded and resized by the workers on the CPU path
(benchmark/data/decode.py) and travel as pixels. The same code runs with device="cpu" (torchvision's
CPU decoder), which is how the routing and assembly are tested without a GPU.

The GPU resize is torch's antialiased bicubic on the full decode, the CPU path Pillow's bicubic
(after reduced-scale decoding): pixels differ by a few levels, so the feature cache keys the
decode path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from benchmark.data.errors import DatasetError
from benchmark.data.jpeg_header import decodes_on_gpu, read_jpeg_info


def image_path(dataset: Any, i: int) -> Path | None:
    """The file of dataset image i (PartDataset records carry .path), or None when the dataset
    does not keep its images in files."""
    record = dataset.images[i]
    path = getattr(record, "path", record)
    return path if isinstance(path, Path) else None


def can_decode_on_device(dataset: Any) -> bool:
    """True when every image of the dataset can be read as file bytes."""
    return len(dataset.images) > 0 and image_path(dataset, 0) is not None


@dataclass
class RoutedBatch:
    """A batch whose images are either encoded JPEG bytes or CPU-decoded pixels.

    Attributes:
        items: per image, a (n_bytes,) uint8 tensor of the file (encoded[k]) or its (H, W, 3)
            uint8 pixels at the model's input size.
        encoded: per image, True when items[k] is still to be decoded.
    """

    items: list[torch.Tensor]
    encoded: list[bool]

    def to_device(self, device: torch.device, size: tuple[int, int]) -> torch.Tensor:
        """(B, H, W, 3) uint8 on `device`; size = (width, height) of the model input."""
        width, height = size
        out = torch.empty((len(self.items), height, width, 3), dtype=torch.uint8, device=device)
        positions = [k for k, enc in enumerate(self.encoded) if enc]
        if positions:
            with (
                warnings.catch_warnings()
            ):  # torchvision 0.29 deprecates its decoders for torchcodec
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = decode_jpeg(
                    [self.items[k] for k in positions], mode=ImageReadMode.RGB, device=device
                )
            for k, image in zip(positions, decoded):
                out[k] = resize_uint8(image, (height, width))
        for k, enc in enumerate(self.encoded):
            if not enc:
                out[k] = self.items[k].to(device, non_blocking=True)
        return out


def resize_uint8(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) uint8 -> (h, w, 3) uint8 at size = (h, w): antialiased bicubic, no crop."""
    if tuple(image.shape[-2:]) != tuple(size):
        x = F.interpolate(
            image[None].float(), size=size, mode="bicubic", antialias=True, align_corners=False
        )
        image = x[0].round_().clamp_(0, 255).to(torch.uint8)
    return image.permute(1, 2, 0)


def read_routed(dataset: Any, i: int) -> tuple[torch.Tensor | None, bool]:
    """(file bytes (n,) uint8, True) when image i decodes on the device, else (None, False).

    The header's stored size is checked against the dataset record, as the CPU path does.
    """
    path = image_path(dataset, i)
    data = path.read_bytes()
    info = read_jpeg_info(data)
    if not decodes_on_gpu(info):
        return None, False
    record = dataset.images[i]
    expected = (getattr(record, "width", info.width), getattr(record, "height", info.height))
    if (info.width, info.height) != expected:
        raise DatasetError(
            f"{path}: the image is {info.width}x{info.height} (width x height) but its annotation "
            f"entry says {expected[0]}x{expected[1]}; its part masks would not line up"
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), True


def collate_routed(batch: list[tuple]) -> tuple:
    """Loader items (payload, encoded, *rest) -> (RoutedBatch, *rest stacked), e.g. the part
    coverage and areas of benchmark.features.images.PartImageDataset."""
    items = [item[0] for item in batch]
    encoded = [bool(item[1]) for item in batch]
    rest = [torch.stack([item[j] for item in batch]) for j in range(2, len(batch[0]))]
    return (RoutedBatch(items, encoded), *rest)

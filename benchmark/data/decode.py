"""Image files to RGB pixels: the one decode path that training and feature extraction share.

ImageNet (and so PartImageNet) holds, besides ordinary YCbCr JPEGs, CMYK and greyscale JPEGs and
a few PNG files named `.JPEG`; Pillow opens all of them by content, and `to_rgb` converts every
mode to RGB (palette and alpha images through RGBA, so transparency does not pick palette
entries at random).

Reduced-scale decoding: when the wanted size is at most half the stored size in both directions,
libjpeg can decode straight to 1/2, 1/4 or 1/8 of the size by DCT scaling (Pillow's `draft`),
skipping most of the inverse-DCT work. The draft image covers the original extent plus up to one
partial pixel at the right and bottom edges (its size is rounded up), so the final resize reads
the exact box `(0, 0, W/s, H/s)` of it: the result has the same geometry as resizing the full
decode, and masks given in the original image's coordinates stay aligned.
"""

from __future__ import annotations

import inspect

import numpy as np
from PIL import Image

# Pillow's names for the resampling filters timm/torchvision configs use.
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def to_rgb(
    image: Image.Image, size: tuple[int, int] | None = None, resample: str = "bicubic"
) -> Image.Image:
    """An opened (not yet loaded) image as RGB, optionally resized to `size`.

    Args:
        image: from `Image.open`; any mode and format Pillow reads (JPEG of any colour space,
            PNG, ...).
        size: (width, height) to resize to without cropping ("squash"), or None for the stored
            size. A JPEG at least twice `size` in both directions is decoded at reduced scale.
        resample: a key of RESAMPLE.

    Returns:
        An RGB image of `size` (or of the stored size).
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample={resample!r} is not one of {sorted(RESAMPLE)}")
    box = None
    if size is not None and image.format == "JPEG":
        # draft() only reduces when the stored size is at least twice `size`; it returns the
        # original extent in draft-image coordinates (None when it cannot apply).
        drafted = image.draft("RGB", size)
        if drafted is not None:
            box = drafted[1]
    rgb = _convert(image)
    if size is None or (rgb.size == tuple(size) and box is None):
        return rgb
    return rgb.resize(tuple(size), RESAMPLE[resample], box=box)


def _convert(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB (CMYK, L, LA, P, RGBA, I;16, ...)."""
    if image.mode == "RGB":
        image.load()
        return image
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        # alpha dropped, as torchvision's and timm's loaders do (convert("RGB"))
        return image.convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit / integer greyscale: scale to 8 bits instead of clipping at 255
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        grey = np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")


def accepts_size(dataset) -> bool:
    """True when dataset.load_image takes a size (PartDataset does; in-memory test sets may not)."""
    try:
        return "size" in inspect.signature(dataset.load_image).parameters
    except (TypeError, ValueError):
        return False


def load_image_at(dataset, i: int, size: tuple[int, int], resample: str = "bicubic") -> Image.Image:
    """dataset.load_image(i) as RGB at `size` = (width, height): decoded at that size when the
    dataset's load_image takes a size, else loaded and resized here."""
    if accepts_size(dataset):
        return dataset.load_image(i, size=size, resample=resample)
    image = dataset.load_image(i)
    image = image if image.mode == "RGB" else _convert(image)
    return image if image.size == tuple(size) else image.resize(tuple(size), RESAMPLE[resample])


def decode_rgb(path, size: tuple[int, int] | None = None, resample: str = "bicubic") -> Image.Image:
    """The file at `path` as RGB (see `to_rgb`); for callers with no stored size to check."""
    with Image.open(path) as image:
        return to_rgb(image, size, resample)

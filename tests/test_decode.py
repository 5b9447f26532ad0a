"""The shared decode path: every colour mode ImageNet holds becomes RGB, and reduced-scale JPEG
decoding gives the same geometry as a full decode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.data.decode import RESAMPLE, decode_rgb, to_rgb
from benchmark.data.errors import DatasetError
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.models.backbones import build_backbone

W, H = 375, 300  # not multiples of 8: the draft image's size is rounded up


def _scene(width: int = W, height: int = H) -> np.ndarray:
    """(H, W, 3) uint8: a smooth background with sharp rectangles at non-block-aligned places,
    so that any shift of the geometry shows as large differences along their edges."""
    yy, xx = np.mgrid[:height, :width]
    img = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    img = img.astype(np.uint8)
    img[37:141, 51:203] = (250, 20, 20)
    img[190:263, 230:331] = (10, 240, 30)
    return img


def _dataset(paths: list[Path], sizes: list[tuple[int, int]]) -> PartDataset:
    records = [
        ImageRecord(i, i + 1, "train", "n01440764", p.name, p, h, w)
        for i, (p, (w, h)) in enumerate(zip(paths, sizes))
    ]
    return PartDataset(paths[0].parent, "test", records, [[] for _ in records], "0" * 64, Counter())


def test_every_mode_in_the_wild_decodes_to_rgb(tmp_path):
    rgb = _scene(64, 48)
    files = {}
    files["cmyk.JPEG"] = lambda p: Image.fromarray(rgb).convert("CMYK").save(p, "JPEG", quality=95)
    files["grey.JPEG"] = lambda p: Image.fromarray(rgb).convert("L").save(p, "JPEG", quality=95)
    files["png.JPEG"] = lambda p: Image.fromarray(rgb).save(p, "PNG")
    files["palette.JPEG"] = lambda p: (
        Image.fromarray(rgb).quantize(64).save(p, "PNG", transparency=0)
    )
    files["rgba.JPEG"] = lambda p: Image.fromarray(rgb).convert("RGBA").save(p, "PNG")
    files["grey16.JPEG"] = lambda p: Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(
        p, "PNG"
    )
    paths = []
    for name, write in files.items():
        write(tmp_path / name)
        paths.append(tmp_path / name)
    data = _dataset(paths, [(64, 48)] * len(paths))
    for i, path in enumerate(paths):
        image = data.load_image(i)
        assert image.mode == "RGB" and image.size == (64, 48), path.name
        pixels = np.asarray(image, dtype=np.int16)
        if path.name.startswith("grey"):
            expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.int16)[..., None]
            if path.name == "grey16.JPEG":
                expected = rgb[..., :1].astype(np.int16)
            assert np.abs(pixels - expected).mean() < 3, path.name
            assert (pixels[..., 0] == pixels[..., 1]).all()
        else:
            # CMYK round trip and palette quantisation are lossy; colours must still be right
            assert np.abs(pixels - rgb).mean() < 12, path.name
        resized = data.load_image(i, size=(32, 24))
        assert resized.mode == "RGB" and resized.size == (32, 24)


def test_a_stored_size_unlike_the_json_is_refused(tmp_path):
    Image.fromarray(_scene()).save(tmp_path / "a.JPEG", quality=90)
    data = _dataset([tmp_path / "a.JPEG"], [(W + 1, H)])
    with pytest.raises(DatasetError, match="376x300"):
        data.load_image(0, size=(64, 64))


@pytest.mark.parametrize("size", [(64, 64), (128, 96), (90, 150)])
def test_reduced_scale_decode_matches_a_full_decode(tmp_path, size):
    path = tmp_path / "scene.JPEG"
    Image.fromarray(_scene()).save(path, quality=92)
    full = np.asarray(decode_rgb(path).resize(size, RESAMPLE["bicubic"]), dtype=np.int16)
    reduced = np.asarray(decode_rgb(path, size), dtype=np.int16)
    assert reduced.shape == full.shape
    diff = np.abs(reduced - full)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())

    # The same draft decode resized without the exact box (the rounded-up draft image taken as
    # the whole extent) is measurably misaligned: the check above can fail.
    with Image.open(path) as image:
        scale = image.draft("RGB", size)
        assert scale is not None and image.size != (W, H), "the test needs a reduced decode"
        naive = np.asarray(image.convert("RGB").resize(size, RESAMPLE["bicubic"]), dtype=np.int16)
    off = np.abs(naive - full)
    assert off.mean() > diff.mean() and off.max() > diff.max()


def test_no_reduced_decode_when_the_input_is_more_than_half_the_stored_size(tmp_path):
    path = tmp_path / "scene.JPEG"
    Image.fromarray(_scene()).save(path, quality=92)
    size = (W // 2 + 1, H // 2 + 1)
    full = np.asarray(decode_rgb(path).resize(size, RESAMPLE["bicubic"]))
    assert np.array_equal(np.asarray(decode_rgb(path, size)), full)
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(decode_rgb(path)))


def test_unknown_resample_is_refused(tmp_path):
    Image.fromarray(_scene(16, 16)).save(tmp_path / "a.JPEG")
    with pytest.raises(ValueError, match="resample"):
        decode_rgb(tmp_path / "a.JPEG", (8, 8), resample="cubic")


def test_feature_items_are_decoded_straight_to_the_model_input(tmp_path):
    path = tmp_path / "scene.JPEG"
    Image.fromarray(_scene()).save(path, quality=92)
    data = _dataset([path], [(W, H)])
    split = SplitTransform.of(build_backbone("test_resnet", image_size=64).transform)
    (size, resample) = split.squash
    assert size == (64, 64) and resample in RESAMPLE  # the model's own interpolation
    items = PartImageDataset(data, np.arange(1), split, None)
    assert items.decode_size == split.squash
    image, _, _ = items[0]
    assert torch.equal(image, torch.from_numpy(np.array(decode_rgb(path, size, resample))))

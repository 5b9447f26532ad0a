"""Device-side JPEG decoding: which files go to the GPU, and the mixed batches it assembles.

The routing and assembly run here on the CPU (torchvision's CPU decoder stands in for nvjpeg);
the CUDA test runs where a GPU is present and is skipped otherwise.
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.data.errors import DatasetError
from benchmark.data.jpeg_header import decodes_on_gpu, read_jpeg_info
from benchmark.features.device_decode import collate_routed
from benchmark.features.extraction import extract_features
from benchmark.features.feature_set import N_SLOTS
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.models.backbones import build_backbone

W, H = 150, 120


def _pixels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(H // 10, W // 10, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((W, H), Image.BICUBIC))


def _encode(kind: str, seed: int = 0) -> bytes:
    image = Image.fromarray(_pixels(seed))
    out = io.BytesIO()
    if kind == "baseline":
        image.save(out, "JPEG", quality=90)
    elif kind == "progressive":
        image.save(out, "JPEG", quality=90, progressive=True)
    elif kind == "grey":
        image.convert("L").save(out, "JPEG", quality=90)
    elif kind == "cmyk":
        image.convert("CMYK").save(out, "JPEG", quality=90)
    elif kind == "png":
        image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "kind, gpu, components",
    [
        ("baseline", True, 3),
        ("progressive", False, 3),
        ("grey", False, 1),
        ("cmyk", False, 4),
        ("png", False, None),
    ],
)
def test_routing_reads_the_frame_header(kind, gpu, components):
    data = _encode(kind)
    info = read_jpeg_info(data)
    assert decodes_on_gpu(info) is gpu
    if components is None:
        assert info is None
    else:
        assert (info.components, info.width, info.height, info.precision) == (components, W, H, 8)
    if kind == "cmyk":
        assert info.adobe_transform in (0, 2)  # Pillow writes an Adobe segment for CMYK


def test_cut_or_garbage_bytes_go_to_the_cpu_path():
    data = _encode("baseline")
    assert read_jpeg_info(data[:30]) is None
    assert read_jpeg_info(b"\xff\xd8" + b"\x00" * 40) is None
    assert read_jpeg_info(b"") is None
    assert not decodes_on_gpu(None)


def _dataset(tmp_path, kinds: list[str], sizes=None) -> PartDataset:
    records = []
    for i, kind in enumerate(kinds):
        path = tmp_path / f"n01440764_{i}.JPEG"
        path.write_bytes(_encode(kind, seed=i))
        w, h = sizes[i] if sizes else (W, H)
        records.append(ImageRecord(i, i + 1, "test", "n01440764", path.name, path, h, w))
    return PartDataset(tmp_path, "test", records, [[] for _ in records], "1" * 64, Counter())


def test_mixed_batches_assemble_in_order_and_match_the_cpu_path(tmp_path):
    kinds = ["baseline", "grey", "png", "baseline", "cmyk", "progressive"]
    data = _dataset(tmp_path, kinds)
    split = SplitTransform.of(build_backbone("test_resnet", image_size=64).transform)
    indices = np.arange(len(kinds))
    routed = PartImageDataset(data, indices, split, None, device_decode=True)
    plain = PartImageDataset(data, indices, split, None)
    loader = DataLoader(routed, batch_size=len(kinds), collate_fn=collate_routed)
    batch, coverage, area = next(iter(loader))
    assert batch.encoded == [k == "baseline" for k in kinds]
    pixels = batch.to_device(torch.device("cpu"), split.squash[0])
    assert pixels.shape == (len(kinds), 64, 64, 3) and pixels.dtype == torch.uint8
    for k, kind in enumerate(kinds):
        expected = plain[k][0].int()
        diff = (pixels[k].int() - expected).abs().float()
        if kind == "baseline":  # torch's antialiased bicubic on the full decode vs Pillow's
            assert diff.mean() < 2.0 and diff.max() < 40, (kind, diff.mean(), diff.max())
        else:  # decoded by the worker on the CPU path: the very same pixels
            assert diff.max() == 0, kind
    assert coverage.shape == area.shape == (len(kinds), 0)


def test_a_header_size_unlike_the_record_is_refused(tmp_path):
    data = _dataset(tmp_path, ["baseline"], sizes=[(W, H + 2)])
    split = SplitTransform.of(build_backbone("test_resnet", image_size=64).transform)
    routed = PartImageDataset(data, np.arange(1), split, None, device_decode=True)
    with pytest.raises(DatasetError, match=f"{W}x{H} .*says {W}x{H + 2}"):
        routed[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_extraction_decodes_on_the_device_and_matches_the_cpu(tmp_path):
    kinds = ["baseline", "grey", "baseline", "png", "cmyk", "baseline"]
    data = _dataset(tmp_path, kinds)
    masks = np.zeros((len(kinds), N_SLOTS, H, W), dtype=bool)
    masks[:, 0, : H // 2, : W // 2] = True
    data.slot_masks = lambda i: masks[i]  # type: ignore[method-assign]
    backbone = build_backbone("resnet10t", image_size=64)
    common = dict(batch_size=4, precision="fp32", progress=False, cache_dir=tmp_path / "cache")
    on_gpu = extract_features(data, np.arange(len(kinds)), backbone, device="cuda", **common)
    on_cpu = extract_features(data, np.arange(len(kinds)), backbone, device="cpu", **common)
    assert on_gpu.key != on_cpu.key  # the decode path is part of the cache key
    cos = torch.nn.functional.cosine_similarity(
        on_gpu.embeddings.float(), on_cpu.embeddings.float()
    )
    assert (cos > 0.99).all(), cos
    assert torch.equal(on_gpu.part_present, on_cpu.part_present)

"""Part-aware features: pooling, masks (oracle / predicted / none), gather, cache, devices, ranks."""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.dataset import ImageRecord, PartDataset
from benchmark.features.extraction import extract_features
from benchmark.features.feature_set import N_SLOTS, PRESENCE_MIN_AREA, FeatureSet, slot_names
from benchmark.features.images import SplitTransform
from benchmark.features.pooling import grid_coverage, shuffled_partners, slot_coverage
from benchmark.models.backbones import BackboneError, build_backbone
from benchmark.models.device import resolve_device, resolve_precision

TINY = "test_resnet"  # stride 32: a 64 px input gives a 2x2 feature map
SIZE = 64
H, W = 48, 64  # image pixels; a 2x2 grid cell is 24x32 pixels


@dataclass
class TinyPartDataset(PartDataset):
    """A PartDataset held in memory: seeded noise images with rectangular part-slot masks."""

    pixels: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.pixels[i])

    def slot_masks(self, i: int) -> np.ndarray:
        return self.masks[i]


def tiny_dataset(n: int = 10, seed: int = 0) -> TinyPartDataset:
    """n images of H x W. Image i: slot 0 (Head) covers the top-left grid cell exactly; slot 1
    (Body) a random rectangle; slot 2 (Foot) a 2x2-pixel speck (too small to be present)."""
    rng = np.random.default_rng(seed)
    pixels, masks, records = [], [], []
    for i in range(n):
        pixels.append(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8))
        m = np.zeros((N_SLOTS, H, W), dtype=bool)
        m[0, : H // 2, : W // 2] = True
        y0, x0 = rng.integers(0, H // 2), rng.integers(0, W // 2)
        m[1, y0 : y0 + H // 2, x0 : x0 + W // 2] = True
        m[2, 40:42, 60:62] = True
        masks.append(m)
        records.append(
            ImageRecord(
                i, i + 1, "train", "n01440764", f"img_{i}.JPEG", Path(f"img_{i}.JPEG"), H, W
            )
        )
    digest = hashlib.sha256(
        b"".join(p.tobytes() for p in pixels) + b"".join(m.tobytes() for m in masks)
    )
    return TinyPartDataset(
        Path("."),
        "memory",
        records,
        [[] for _ in records],
        digest.hexdigest(),
        Counter(),
        pixels,
        masks,
    )


@pytest.fixture(scope="module")
def data() -> TinyPartDataset:
    return tiny_dataset()


@pytest.fixture()
def backbone():
    return build_backbone(TINY, image_size=SIZE, seed=0)


def _reference_map(backbone, dataset, i):
    """The backbone's map and pooled embedding of image i, computed outside extract_features."""
    x = backbone.transform(dataset.load_image(i))[None]
    with torch.inference_mode():
        return backbone.feature_map(x)


def _extract(dataset, backbone, **kw) -> FeatureSet:
    kw.setdefault("device", "cpu")
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 4)
    return extract_features(
        dataset, kw.pop("indices", np.arange(len(dataset.images))), backbone, **kw
    )


def test_oracle_features_pool_the_map_under_each_slot(data, backbone):
    fs = _extract(data, backbone)
    n, d = len(data.images), backbone.num_features
    assert fs.embeddings.shape == (n, d) and fs.embeddings.dtype == torch.float16
    assert fs.part_embeddings.shape == (n, N_SLOTS, d) and fs.part_embeddings.dtype == torch.float16
    assert fs.part_present.shape == (n, N_SLOTS) and fs.part_present.dtype == torch.bool
    assert torch.equal(fs.image_indices, torch.arange(n))
    # Head covers cell (0, 0) exactly, Body a whole cell's area, Foot a 4-pixel speck, the rest nothing
    assert fs.part_present[:, :2].all() and not fs.part_present[:, 2:].any()
    assert (fs.part_embeddings[:, 2:] == 0).all()
    for i in (0, 7):
        fmap, pooled = _reference_map(backbone, data, i)
        torch.testing.assert_close(fs.embeddings[i].float(), pooled[0], atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(
            fs.part_embeddings[i, 0].float(), fmap[0, :, 0, 0], atol=2e-3, rtol=2e-3
        )
        cover = torch.nn.functional.adaptive_avg_pool2d(
            torch.from_numpy(data.masks[i][1])[None].float(), (2, 2)
        )[0]
        body = (fmap[0] * cover).sum(dim=(1, 2)) / cover.sum()
        torch.testing.assert_close(fs.part_embeddings[i, 1].float(), body, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("shape, grid", [((37, 50), (7, 7)), ((5, 3), (2, 2)), ((48, 64), (2, 2))])
def test_slot_coverage_is_the_covered_fraction_of_each_cell(shape, grid):
    masks = np.random.default_rng(0).random((N_SLOTS, *shape)) < 0.3
    masks[4:] = False
    got = slot_coverage(masks, grid)
    # independent: upsample by the grid size so every cell is whole pixels, then average
    up = np.kron(masks, np.ones((1, grid[0], grid[1]), dtype=bool))
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(up).float()[None], grid)[0]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    assert (got[4:] == 0).all()


def test_split_transform_equals_the_timm_transform(data, backbone):
    split = SplitTransform.of(backbone.transform)
    assert split is not None
    image = data.load_image(3)
    got = split.normalise(split(image)[None])
    torch.testing.assert_close(got[0], backbone.transform(image), atol=1e-5, rtol=1e-5)


def test_vit_patch_tokens_pool_like_a_feature_map(data):
    vit = build_backbone("test_vit", image_size=SIZE)  # 16 px patches: a 4x4 token grid
    fs = _extract(data, vit, indices=[0, 5])
    assert fs.part_embeddings.shape == (2, N_SLOTS, 64)
    assert fs.part_present[:, :2].all() and not fs.part_present[:, 2:].any()
    for row, i in enumerate((0, 5)):
        x = vit.transform(data.load_image(i))[None]
        with torch.inference_mode():
            tokens = vit.model.forward_features(x)
            cls = vit.model.forward_head(tokens, pre_logits=True)
        grid = tokens[0, 1:].reshape(4, 4, 64)  # row-major patches after the class token
        torch.testing.assert_close(
            fs.part_embeddings[row, 0].float(), grid[:2, :2].mean(dim=(0, 1)), atol=2e-3, rtol=2e-3
        )  # Head = the top-left quarter
        torch.testing.assert_close(fs.embeddings[row].float(), cls[0], atol=2e-3, rtol=2e-3)


def test_gather_maps_any_index_shape_through_the_lookup(data, backbone):
    subset = np.array([9, 2, 5, 0])
    fs = _extract(data, backbone, indices=subset)
    episode = np.array([[[5, 0], [9, 9]], [[2, 5], [0, 2]]])  # (B=2, N=2, K=2)
    got = fs.gather(episode)
    assert (
        got.embeddings.shape == (2, 2, 2, backbone.num_features)
        and got.embeddings.dtype == torch.float32
    )
    assert got.part_embeddings.shape == (2, 2, 2, N_SLOTS, backbone.num_features)
    assert got.part_present.shape == (2, 2, 2, N_SLOTS)
    row_of = {int(v): r for r, v in enumerate(subset)}
    for pos in np.ndindex(episode.shape):
        assert torch.equal(got.embeddings[pos], fs.embeddings[row_of[int(episode[pos])]].float())
    with pytest.raises(KeyError, match=r"\[1, 42\]"):
        fs.gather(np.array([0, 1, 42]))
    assert fs.to("cpu").gather(torch.tensor([2])).embeddings.shape == (1, backbone.num_features)


def test_no_masks_gives_global_embeddings_only(data, backbone):
    fs = _extract(data, backbone, masks="none", indices=[3, 4])
    assert fs.part_embeddings is None and fs.part_present is None
    assert fs.gather(np.array([4])).part_embeddings is None
    _, pooled = _reference_map(backbone, data, 4)
    torch.testing.assert_close(fs.embeddings[1].float(), pooled[0], atol=2e-3, rtol=2e-3)


class _SlotHead(torch.nn.Module):
    """A 1x1-conv part head: (B, C, h, w) -> (B, S+1, h, w) logits, background last."""

    def __init__(self, channels: int, seed: int, bias_slot: int | None = None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, N_SLOTS + 1, 1)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()
            if bias_slot is not None:
                self.conv.bias[bias_slot] = 1e4

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.conv(fmap)


def test_predicted_masks_come_from_the_head_not_the_annotations(data, backbone):
    oracle = _extract(data, backbone)
    head = _SlotHead(backbone.num_features, seed=0)
    predicted = _extract(data, backbone, masks="predicted", part_head=head)
    assert predicted.part_embeddings.shape == oracle.part_embeddings.shape
    assert torch.isfinite(predicted.part_embeddings.float()).all()
    assert not torch.equal(predicted.part_present, oracle.part_present)
    assert predicted.key != oracle.key
    # every cell assigned to one slot (each of the 4 cells counts), so a present slot's
    # embedding is the mean of the cells it won; with all cells to Wing it is the global mean
    wing = _extract(
        data,
        backbone,
        masks="predicted",
        part_head=_SlotHead(backbone.num_features, 0, bias_slot=6),
    )
    assert wing.part_present[:, 6].all() and wing.part_present.sum() == len(data.images)
    torch.testing.assert_close(
        wing.part_embeddings[:, 6].float(), oracle.embeddings.float(), atol=2e-3, rtol=2e-3
    )


def test_predicted_masks_default_to_the_head_saved_with_a_train_checkpoint(data, tmp_path):
    from benchmark.models.part_head import part_head_for

    trunk = build_backbone(TINY, image_size=SIZE, seed=4)
    head = part_head_for(trunk.model)  # the stage decoder a train checkpoint holds
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for p in head.parameters():
            p.data.normal_()
    head.eval()
    path = tmp_path / "best.pt"
    torch.save(
        {
            "model": trunk.model.state_dict(),
            "part_head": head.state_dict(),
            "meta": {"model_name": TINY, "saw_test_classes": False},
        },
        path,
    )
    trained = build_backbone(TINY, "train", path, image_size=SIZE)
    implicit = _extract(data, trained, masks="predicted")
    explicit = _extract(
        data,
        build_backbone(TINY, "train", path, image_size=SIZE),
        masks="predicted",
        part_head=head,
    )
    assert implicit.key == explicit.key
    assert torch.equal(implicit.part_present, explicit.part_present)
    torch.testing.assert_close(implicit.part_embeddings, explicit.part_embeddings)


def test_predicted_masks_never_read_slot_masks(backbone):
    class NoAnnotations(TinyPartDataset):
        def slot_masks(self, i):
            raise AssertionError("predicted masks must not read annotations")

    blind = NoAnnotations(
        **{k: getattr(tiny_dataset(4), k) for k in TinyPartDataset.__dataclass_fields__}
    )
    fs = _extract(blind, backbone, masks="predicted", part_head=_SlotHead(backbone.num_features, 1))
    assert fs.part_present.shape == (4, N_SLOTS)


def test_parallel_workers_give_the_same_features(data, backbone):
    serial = _extract(data, backbone, indices=[0, 1, 2, 3, 4])
    parallel = _extract(data, backbone, indices=[0, 1, 2, 3, 4], num_workers=2, batch_size=2)
    torch.testing.assert_close(parallel.embeddings, serial.embeddings, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(
        parallel.part_embeddings, serial.part_embeddings, atol=1e-3, rtol=1e-3
    )


def test_features_beyond_float16_range_are_refused(data, backbone):
    with torch.no_grad():
        backbone.model.layer4[-1].bn2.bias.fill_(1e6)  # post-ReLU activations overflow float16
    with pytest.raises(FloatingPointError, match="inf/NaN in float16"):
        _extract(data, backbone, indices=[0, 1])


def test_bad_arguments_are_named(data, backbone):
    with pytest.raises(ValueError, match="masks="):
        _extract(data, backbone, masks="gt")
    with pytest.raises(ValueError, match="duplicates"):
        _extract(data, backbone, indices=[1, 1])
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        _extract(data, backbone, indices=[10])


def test_device_and_precision_choice():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    assert resolve_precision("auto", torch.device("cuda", 0)) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='auto'"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_features_match_cpu_within_noise(data, backbone):
    cpu = _extract(data, backbone, device="cpu")
    gpu = _extract(data, backbone, device="cuda", precision="bf16")
    cos = torch.nn.functional.cosine_similarity(
        cpu.embeddings.float(), gpu.embeddings.float(), dim=1
    )
    assert cos.min() > 0.99
    assert torch.equal(cpu.part_present, gpu.part_present)


# --- the feature cache ---------------------------------------------------------------------------


def _count_forwards(backbone) -> Counter:
    """Count calls of the backbone's trunk (instance-level wrappers of forward_features and
    forward_intermediates, which an earlier part stage uses instead)."""
    calls: Counter = Counter()
    features, intermediates = backbone.model.forward_features, backbone.model.forward_intermediates

    def counted(x):
        calls["forward"] += 1
        return features(x)

    def counted_intermediates(x, **kw):
        calls["forward"] += 1
        return intermediates(x, **kw)

    backbone.model.forward_features = counted
    backbone.model.forward_intermediates = counted_intermediates
    return calls


def test_cache_hit_skips_the_model_and_returns_the_same_features(data, tmp_path):
    first_backbone = build_backbone(TINY, image_size=SIZE, seed=0)
    first_calls = _count_forwards(first_backbone)
    first = _extract(data, first_backbone, cache_dir=tmp_path)
    assert first_calls["forward"] > 0
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [f"features-{first.key}.pt"]  # no temp file left behind

    again_backbone = build_backbone(TINY, image_size=SIZE, seed=0)  # a new run, same weights
    again_calls = _count_forwards(again_backbone)
    again = _extract(data, again_backbone, cache_dir=tmp_path)
    assert again_calls["forward"] == 0
    assert again.key == first.key
    for name in ("embeddings", "part_embeddings", "part_present", "image_indices"):
        assert torch.equal(getattr(again, name), getattr(first, name))


def test_cache_misses_when_weights_change_in_place(data, tmp_path):
    backbone = build_backbone(TINY, image_size=SIZE)
    _extract(data, backbone, cache_dir=tmp_path)
    with torch.no_grad():
        backbone.model.conv1[0].weight.mul_(1.01)  # e.g. fine-tuned after build_backbone
    calls = _count_forwards(backbone)
    _extract(data, backbone, cache_dir=tmp_path)
    assert calls["forward"] > 0


@pytest.mark.parametrize(
    "change",
    [
        "indices",
        "masks",
        "image_size",
        "weights",
        "dataset",
        "precision",
        "part_head",
        "part_stage",
        "dense",
        "mask_seed",
    ],
)
def test_cache_misses_when_any_key_part_changes(data, tmp_path, change):
    head = _SlotHead(96, seed=0)
    base = dict(masks="predicted", part_head=head) if change == "part_head" else {}
    _extract(data, build_backbone(TINY, image_size=SIZE), cache_dir=tmp_path, **base)
    size, seed, dataset, kw = SIZE, 0, data, dict(base)
    if change == "indices":
        kw["indices"] = [0, 1, 2]
    elif change == "masks":
        kw["masks"] = "none"
    elif change == "image_size":
        size = 96
    elif change == "weights":
        seed = 1
    elif change == "dataset":
        dataset = tiny_dataset(seed=1)
    elif change == "precision":
        kw["precision"] = "bf16"
    elif change == "part_stage":
        kw["part_stage"] = 16
    elif change == "dense":
        kw["dense"] = True
    elif change == "mask_seed":  # only shuffled masks use the seed: shuffle in both runs
        _extract(data, build_backbone(TINY, image_size=SIZE), cache_dir=tmp_path, masks="shuffled")
        kw.update(masks="shuffled", mask_seed=1)
    else:
        kw["part_head"] = _SlotHead(96, seed=1)
    backbone = build_backbone(TINY, image_size=size, seed=seed)
    calls = _count_forwards(backbone)
    _extract(dataset, backbone, cache_dir=tmp_path, **kw)
    assert calls["forward"] > 0
    assert len(list(tmp_path.glob("features-*.pt"))) == (3 if change == "mask_seed" else 2)


def _flip_a_bit_of_the_embeddings(path):
    """Flip one bit inside the stored embeddings' bytes, as a bad disk or RAM would."""
    stored = torch.load(path, weights_only=True)["embeddings"].numpy().tobytes()
    raw = bytearray(path.read_bytes())
    start = raw.find(stored[:64])
    assert start > 0
    raw[start + 37] ^= 0x10
    path.write_bytes(bytes(raw))


def _nan_with_a_matching_hash(path):
    from benchmark.models.tensor_hash import tensors_sha256

    payload = torch.load(path, weights_only=True)
    payload["embeddings"][3, 5] = float("nan")
    names = ("embeddings", "part_embeddings", "part_present", "image_indices")
    payload["tensors_sha256"] = tensors_sha256({n: payload[n] for n in names if n in payload})
    torch.save(payload, path)


@pytest.mark.parametrize(
    "damage, why",
    [
        ("garbage", "unreadable"),
        ("truncated", "unreadable"),
        ("other_key", "holds key"),
        ("flipped_bit", "damaged: its tensors no longer match|unreadable"),
        ("edited_value", "damaged: its tensors no longer match"),
        ("nan", "holds NaN or infinite values in 'embeddings'"),
    ],
)
def test_damaged_cache_file_is_recomputed_with_a_warning(data, backbone, tmp_path, damage, why):
    first = _extract(data, backbone, cache_dir=tmp_path)
    path = tmp_path / f"features-{first.key}.pt"
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "flipped_bit":
        _flip_a_bit_of_the_embeddings(path)
    elif damage == "nan":
        _nan_with_a_matching_hash(path)
    else:
        payload = torch.load(path, weights_only=True)
        if damage == "edited_value":
            payload["embeddings"][0, 0] += 1
        else:
            payload["key"] = "0" * 64
        torch.save(payload, path)
    calls = _count_forwards(backbone)
    with pytest.warns(UserWarning, match=f"feature cache file .*{path.name}.*({why}).*recomputing"):
        again = _extract(data, backbone, cache_dir=tmp_path)
    assert calls["forward"] > 0
    torch.testing.assert_close(again.embeddings, first.embeddings)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _extract(data, backbone, cache_dir=tmp_path)  # rewritten: a clean hit
    assert calls["forward"] == 0


# --- two processes (gloo) give the same features as one ------------------------------------------

N_DIST = 9  # 2 ranks: unequal shards of 5 and 4 images


def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        fs = extract_features(
            tiny_dataset(),
            np.arange(N_DIST)[::-1].copy(),
            build_backbone(TINY, image_size=SIZE),
            device="cpu",
            batch_size=2,
            progress=False,
            cache_dir=str(Path(out_dir) / "cache"),
        )
        torch.save(
            {
                "embeddings": fs.embeddings,
                "part_embeddings": fs.part_embeddings,
                "part_present": fs.part_present,
                "image_indices": fs.image_indices,
                "key": fs.key,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_give_the_same_features_as_one(data, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    indices = np.arange(N_DIST)[::-1].copy()
    single = _extract(data, build_backbone(TINY, image_size=SIZE), indices=indices, batch_size=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["key"] == single.key
        assert torch.equal(got["image_indices"], torch.from_numpy(indices))
        torch.testing.assert_close(got["embeddings"], single.embeddings, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(
            got["part_embeddings"], single.part_embeddings, atol=1e-3, rtol=1e-3
        )
        assert torch.equal(got["part_present"], single.part_present)
    # rank 0 wrote the cache once; one process reuses it
    backbone = build_backbone(TINY, image_size=SIZE)
    calls = _count_forwards(backbone)
    _extract(data, backbone, indices=indices, cache_dir=tmp_path / "cache")
    assert calls["forward"] == 0


def test_predicted_coverage_is_the_heads_softmax_over_slots():
    from benchmark.features.feature_set import N_SLOTS
    from benchmark.features.pooling import predicted_coverage

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, N_SLOTS + 1, 3, 3, generator=gen)
    coverage = predicted_coverage(logits, (3, 3))
    assert coverage.shape == (2, N_SLOTS, 3, 3)
    expected = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    assert torch.allclose(coverage, expected[:, :N_SLOTS], atol=1e-6)
    # the background's share is what the slots leave: coverage of a cell sums below 1
    assert torch.allclose(coverage.sum(1) + expected[:, N_SLOTS], torch.ones(2, 3, 3), atol=1e-6)
    # a confident head gives (almost) the 0/1 coverage of its argmax
    peaked = torch.full((1, N_SLOTS + 1, 2, 2), -30.0)
    peaked[0, 1, 0, 0] = peaked[0, N_SLOTS, 1, 1] = 30.0
    sharp = predicted_coverage(peaked, (2, 2))
    assert sharp[0, 1, 0, 0] > 0.999 and sharp[0, :, 1, 1].sum() < 1e-6


def test_a_finer_head_grid_is_area_pooled_onto_the_part_grid():
    from benchmark.features.feature_set import N_SLOTS
    from benchmark.features.pooling import predicted_coverage

    # a confident head on a 4x4 grid: slot 2 in one cell of the top-left 2x2 block, else background
    logits = torch.full((1, N_SLOTS + 1, 4, 4), -30.0)
    logits[0, N_SLOTS] = 30.0
    logits[0, 2, 1, 1], logits[0, N_SLOTS, 1, 1] = 30.0, -30.0
    coverage = predicted_coverage(logits, (2, 2))
    # a quarter of the top-left part cell, nothing elsewhere: the cell's area coverage (bilinear
    # resizing would sample between cells and halve or miss it)
    torch.testing.assert_close(coverage[0, 2], torch.tensor([[0.25, 0.0], [0.0, 0.0]]))
    assert coverage[0, :2].sum() + coverage[0, 3:].sum() < 1e-6


# --- part stage, controls, dense descriptors -------------------------------------------------------


def _stage_map(backbone, dataset, i, index):
    """(fmap, pooled, map of feature_info[index]) of image i, straight from timm."""
    x = backbone.transform(dataset.load_image(i))[None]
    with torch.inference_mode():
        fmap, pooled = backbone.feature_map(x)
        stage = backbone.model.forward_intermediates(x, indices=[index], intermediates_only=True)[0]
    return fmap, pooled, stage


def test_resnet_part_stage_pools_the_stride_16_map(data, backbone):
    # test_resnet: strides 2, 4, 8, 16, 32 with 32, 32, 48, 192, 96 channels; 64 px -> 4x4 at 16
    assert backbone.stage_index(16) == 3 and backbone.stage_index(32) is None
    assert backbone.stage_index("last") is None and backbone.part_channels(3) == 192
    last = _extract(data, backbone)
    fs = _extract(data, backbone, part_stage=16, dense=True)
    n = len(data.images)
    assert fs.part_embeddings.shape == (n, N_SLOTS, 192)  # D_part = 192 != D = 96
    assert fs.dense.shape == (n, 16, 192) and fs.dense.dtype == torch.float16
    torch.testing.assert_close(fs.embeddings, last.embeddings)  # the global embedding stays
    assert torch.equal(fs.part_present, last.part_present)  # presence is defined in the image
    for i in (0, 7):
        _, _, stage = _stage_map(backbone, data, i, 3)
        assert stage.shape == (1, 192, 4, 4)
        cover = slot_coverage(data.masks[i], (4, 4))  # the coverage at the stage's grid
        for slot in (0, 1):
            expected = (stage[0] * cover[slot]).sum(dim=(1, 2)) / cover[slot].sum()
            torch.testing.assert_close(
                fs.part_embeddings[i, slot].float(), expected, atol=2e-3, rtol=2e-3
            )
        # Head is the top-left quarter: exactly the 2x2 top-left cells of the 4x4 map
        torch.testing.assert_close(
            fs.part_embeddings[i, 0].float(),
            stage[0, :, :2, :2].mean(dim=(1, 2)),
            atol=2e-3,
            rtol=2e-3,
        )
        torch.testing.assert_close(fs.dense[i].float(), stage[0].flatten(1).T, atol=2e-3, rtol=2e-3)
        got = fs.gather(np.array([[i]]))
        assert (
            got.local_descriptors.shape == (1, 1, 16, 192) and got.part_embeddings.shape[-1] == 192
        )


def test_stride_8_stage_and_bad_stages(data, backbone):
    fs = _extract(data, backbone, indices=[1, 2], part_stage=8)
    assert fs.part_embeddings.shape == (2, N_SLOTS, 48)
    with pytest.raises(BackboneError, match=r"strides \[32, 16, 8, 4, 2\]"):
        _extract(data, backbone, part_stage=64)
    with pytest.raises(BackboneError, match="part_stage"):
        _extract(data, backbone, part_stage="first")


def test_vit_has_one_stage_the_patch_stride(data):
    vit = build_backbone("test_vit", image_size=SIZE)  # 16 px patches: 4x4 tokens at every block
    assert set(vit.stage_strides()) == {16} and vit.stage_index(16) is None
    last = _extract(data, vit, indices=[0, 5])
    fs = _extract(data, vit, indices=[0, 5], part_stage=16, dense=True)
    assert last.dense is None and fs.key != last.key  # dense maps are part of the key
    torch.testing.assert_close(fs.part_embeddings, last.part_embeddings)
    assert fs.dense.shape == (2, 16, 64)
    with pytest.raises(BackboneError, match=r"strides \[16\]"):
        _extract(data, vit, indices=[0], part_stage=8)


def test_grid_coverage_golden():
    # 2x2 regions on a 2x2 map: each region is one cell
    np.testing.assert_allclose(grid_coverage(2, (2, 2)).numpy(), np.eye(4).reshape(4, 2, 2))
    # 3x3 regions on a 2x2 map: cell 0 spans regions [0, 1.5), so region 0 fills 2/3 of it per
    # side and region 1 the other 1/3; region (0, 0) -> 4/9 of cell (0, 0), the centre 1/9 of each
    cov = grid_coverage(3, (2, 2)).numpy()
    np.testing.assert_allclose(cov[0], [[4 / 9, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(cov[4], np.full((2, 2), 1 / 9), atol=1e-6)
    np.testing.assert_allclose(cov[1], [[2 / 9, 2 / 9], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(cov.sum(0), np.ones((2, 2)), atol=1e-6)  # a partition
    assert slot_names("grid2") == ("cell 0,0", "cell 0,1", "cell 1,0", "cell 1,1")


def test_grid_masks_pool_fixed_cells_and_read_no_annotation(backbone):
    data = tiny_dataset()

    def no_masks(i):
        raise AssertionError("grid masks must not read annotations")

    data.slot_masks = no_masks
    fs = _extract(data, backbone, masks="grid2", part_stage=16, indices=[0, 3])
    assert fs.part_embeddings.shape == (2, 4, 192) and fs.part_present.all()
    for row, i in enumerate((0, 3)):
        _, _, stage = _stage_map(backbone, data, i, 3)
        quads = [stage[0, :, r : r + 2, c : c + 2].mean(dim=(1, 2)) for r in (0, 2) for c in (0, 2)]
        torch.testing.assert_close(
            fs.part_embeddings[row].float(), torch.stack(quads), atol=2e-3, rtol=2e-3
        )
    assert _extract(data, backbone, masks="grid3", indices=[0]).part_embeddings.shape == (1, 9, 96)


def test_shuffled_partners_are_a_seeded_derangement():
    idx = np.arange(10, 50, 3)
    partners = shuffled_partners(idx, seed=0)
    assert sorted(partners) == sorted(idx) and not (partners == idx).any()
    assert np.array_equal(partners, shuffled_partners(idx, seed=0))
    assert not np.array_equal(partners, shuffled_partners(idx, seed=1))
    with pytest.raises(ValueError, match="at least 2"):
        shuffled_partners(idx[:1], seed=0)


def test_shuffled_masks_pool_this_image_under_another_images_masks(data, backbone):
    idx = np.arange(len(data.images))
    fs = _extract(data, backbone, masks="shuffled", mask_seed=3)
    partners = shuffled_partners(idx, seed=3)
    for i in (0, 4):
        fmap, pooled, _ = _stage_map(backbone, data, i, 3)
        masks = data.masks[partners[i]]
        cover = slot_coverage(masks, (2, 2))
        present = torch.from_numpy(masks.mean(axis=(1, 2)) >= PRESENCE_MIN_AREA)
        assert torch.equal(fs.part_present[i], present)
        body = (fmap[0] * cover[1]).sum(dim=(1, 2)) / cover[1].sum()  # the partner's Body
        torch.testing.assert_close(fs.part_embeddings[i, 1].float(), body, atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(fs.embeddings[i].float(), pooled[0], atol=2e-3, rtol=2e-3)

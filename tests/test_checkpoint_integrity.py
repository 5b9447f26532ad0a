"""Checkpoints verify what they return: flipped bits and NaN weights are retrained or refused."""

from __future__ import annotations

import pytest
import timm
import torch

from benchmark.models.backbones import BackboneError, build_backbone
from benchmark.models.tensor_hash import tensors_sha256
from benchmark.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    usable_cached_checkpoint,
)

TINY = "test_resnet"


def _trained(tmp_path, name="best.pt", **extra):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(TINY, num_classes=0)
    path = tmp_path / name
    save_checkpoint(
        {
            "model": model.state_dict(),
            "part_head": None,
            "meta": {"model_name": TINY, "saw_test_classes": False, **extra},
        },
        path,
    )
    return path


def _flip_a_weight_bit(path):
    state = torch.load(path, weights_only=True)["model"]
    weight = max(state.values(), key=lambda t: t.numel()).numpy().tobytes()
    raw = bytearray(path.read_bytes())
    at = raw.find(weight[:64])
    assert at > 0
    raw[at + 101] ^= 0x04
    path.write_bytes(bytes(raw))


def _nan_with_matching_hashes(path):
    obj = torch.load(path, weights_only=True)
    next(v for v in obj["model"].values() if v.is_floating_point()).view(-1)[0] = float("nan")
    obj.pop("tensors_sha256")
    save_checkpoint(obj, path)  # re-sealed: both hashes agree, only finiteness can tell


def test_a_clean_checkpoint_loads_and_carries_its_tensor_hash(tmp_path):
    path = _trained(tmp_path)
    obj = load_checkpoint(path)
    assert obj["tensors_sha256"] == tensors_sha256(
        {k: v for k, v in obj.items() if k != "tensors_sha256"}
    )
    assert usable_cached_checkpoint(tmp_path) == path


@pytest.mark.parametrize(
    "keep_sha256_file, why",
    [
        (True, r"is damaged: its sha256 .* recorded in best.pt.sha256"),
        (False, r"is damaged: its tensors no longer match|cannot be read as weights"),
    ],
)
def test_flipped_bits_are_caught(tmp_path, keep_sha256_file, why):
    path = _trained(tmp_path)
    _flip_a_weight_bit(path)
    if not keep_sha256_file:
        (tmp_path / "best.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match=f"checkpoint {path} ({why})"):
        load_checkpoint(path)


def test_nan_weights_are_caught(tmp_path):
    path = _trained(tmp_path)
    _nan_with_matching_hashes(path)
    with pytest.raises(CheckpointError, match=r"holds NaN or infinite values in 'model\."):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", [_flip_a_weight_bit, _nan_with_matching_hashes])
def test_the_trained_weights_cache_retrains_a_damaged_checkpoint(tmp_path, damage):
    best = _trained(tmp_path)
    _trained(tmp_path, "last.pt")
    damage(best)
    with pytest.warns(UserWarning, match=f"checkpoint {best} .*; retraining"):
        assert usable_cached_checkpoint(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt.corrupt",
        "best.pt.sha256.corrupt",
        "last.pt.corrupt",
        "last.pt.sha256.corrupt",
    ]
    assert usable_cached_checkpoint(tmp_path) is None  # nothing left to trust: train afresh


@pytest.mark.parametrize(
    "damage, message",
    [
        (_flip_a_weight_bit, r"is damaged: its sha256 .*; refusing to use it"),
        (_nan_with_matching_hashes, r"holds NaN or infinite values in 'model\..*'; retrain it"),
    ],
)
def test_a_damaged_user_checkpoint_is_refused_in_one_line(tmp_path, damage, message):
    path = _trained(tmp_path)
    damage(path)
    with pytest.raises(BackboneError, match=message) as info:
        build_backbone(TINY, weights="train", checkpoint=path)
    assert "\n" not in str(info.value)


def test_non_weights_and_nan_plain_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "meta": {"model_name": TINY}}, junk)
    with pytest.raises(BackboneError, match="does not fit"):
        build_backbone(TINY, weights="train", checkpoint=junk)
    pickle = tmp_path / "pickle.pt"
    torch.save({"model": object()}, pickle)  # not loadable with weights_only=True
    with pytest.raises(BackboneError, match="cannot read training checkpoint"):
        build_backbone(TINY, weights="train", checkpoint=pickle)
    with torch.random.fork_rng(devices=[]):
        model = timm.create_model(TINY)
    state = model.state_dict()
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = float("inf")
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    with pytest.raises(BackboneError, match="holds NaN or infinite values"):
        build_backbone(TINY, weights="file", checkpoint=plain)

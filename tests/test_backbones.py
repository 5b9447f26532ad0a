"""Backbones: each weight source, provenance and the ImageNet leak flag, feature maps."""

from __future__ import annotations

import hashlib

import pytest
import timm
import torch
from safetensors.torch import save_file

from benchmark.models.backbones import BackboneError, build_backbone, state_dict_sha256
from benchmark.models.part_head import part_head_for

TINY = "test_resnet"  # 0.37 M parameters, one of timm's test models


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _seeded_timm(name: str, seed: int, **kw) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, **kw).eval()


def test_random_weights_are_determined_by_the_seed_and_leave_global_rng_alone():
    before = torch.random.get_rng_state()
    a = build_backbone(TINY, seed=1)
    b = build_backbone(TINY, seed=1)
    c = build_backbone(TINY, seed=2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert _same_state(a.model, b.model) and a.weights_sha256 == b.weights_sha256
    assert not _same_state(a.model, c.model) and a.weights_sha256 != c.weights_sha256
    assert a.provenance["source"] == "random" and a.provenance["saw_test_classes"] is False
    assert a.provenance["checkpoint"] is None and a.provenance["sha256_of"] == "state_dict"


def test_local_file_loads_the_checkpoint_and_keeps_the_model_preprocessing(tmp_path):
    source = _seeded_timm(TINY, seed=7)  # with its 1000-class head: the loader drops it
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    backbone = build_backbone(TINY, weights="file", checkpoint=path, image_size=64)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fmap, pooled = backbone.feature_map(x)
        expected_map = source.forward_features(x)
        expected_pooled = source.forward_head(expected_map, pre_logits=True)
    assert torch.equal(fmap, expected_map) and torch.equal(pooled, expected_pooled)
    prov = backbone.provenance
    assert prov["checkpoint"] == "weights.pth"  # the file name, never the machine path
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["saw_test_classes"] is True  # a plain file says nothing: assume it saw them
    expected_cfg = timm.data.resolve_model_data_config(source)
    assert backbone.data_config["mean"] == expected_cfg["mean"]
    assert backbone.data_config["interpolation"] == expected_cfg["interpolation"]
    assert backbone.data_config["input_size"] == (3, 64, 64)


def test_checkpoint_metadata_can_clear_the_leak_flag(tmp_path):
    source = _seeded_timm(TINY, seed=3, num_classes=0)
    st = tmp_path / "clean.safetensors"
    save_file(source.state_dict(), st, metadata={"saw_test_classes": "false"})
    assert build_backbone(TINY, "file", st).provenance["saw_test_classes"] is False
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": source.state_dict(), "meta": {"saw_test_classes": False}}, wrapped)
    loaded = build_backbone(TINY, "file", wrapped)
    assert loaded.provenance["saw_test_classes"] is False and _same_state(loaded.model, source)
    unknown = tmp_path / "unknown.pth"
    torch.save({"model": source.state_dict(), "meta": {"saw_test_classes": "maybe"}}, unknown)
    assert build_backbone(TINY, "file", unknown).provenance["saw_test_classes"] is True


def test_train_checkpoint_loads_backbone_head_and_meta(tmp_path):
    trained = _seeded_timm(TINY, seed=5, num_classes=109)  # classification pre-training head
    head = part_head_for(trained)
    path = tmp_path / "best.pt"
    meta = {"model_name": TINY, "saw_test_classes": False, "epoch": 3, "image_size": 96}
    torch.save({"model": trained.state_dict(), "part_head": head.state_dict(), "meta": meta}, path)
    backbone = build_backbone(TINY, weights="train", checkpoint=path)
    state = backbone.model.state_dict()
    assert all(
        torch.equal(state[k], v) for k, v in trained.state_dict().items() if not k.startswith("fc.")
    )
    assert backbone.provenance["saw_test_classes"] is False
    assert (
        backbone.provenance["meta"]["epoch"] == 3 and backbone.provenance["checkpoint"] == "best.pt"
    )
    assert torch.equal(
        backbone.part_head_state["classifier.weight"], head.state_dict()["classifier.weight"]
    )
    assert backbone.part_head().stage_indices == head.stage_indices
    assert backbone.image_size == (96, 96)  # trained at 96 px: features use the same size


def test_train_checkpoint_errors_name_the_problem(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(_seeded_timm(TINY, 0).state_dict(), plain)
    with pytest.raises(BackboneError, match="not a partbench training checkpoint"):
        build_backbone(TINY, "train", plain)
    other = tmp_path / "other.pt"
    torch.save({"model": {}, "meta": {"model_name": "resnet18"}}, other)
    with pytest.raises(BackboneError, match="resnet18"):
        build_backbone(TINY, "train", other)
    with pytest.raises(BackboneError, match="checkpoint file not found"):
        build_backbone(TINY, "file", tmp_path / "missing.pth")
    with pytest.raises(BackboneError, match="needs checkpoint"):
        build_backbone(TINY, "train")


def test_a_part_head_of_another_design_is_refused_by_name(tmp_path):
    trained = _seeded_timm(TINY, seed=5)
    path = tmp_path / "best.pt"
    old_head = torch.nn.Conv2d(trained.num_features, 14, 1).state_dict()
    meta = {"model_name": TINY, "saw_test_classes": False}
    torch.save({"model": trained.state_dict(), "part_head": old_head, "meta": meta}, path)
    with pytest.raises(BackboneError, match="best.pt.*older head design.*retrain"):
        build_backbone(TINY, weights="train", checkpoint=path).part_head()


def test_random_backbone_has_no_part_head():
    with pytest.raises(BackboneError, match="no part-segmentation head"):
        build_backbone(TINY).part_head()


def test_hub_offline_without_cached_weights_says_to_use_a_local_file(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BackboneError, match="no model hub is reachable.*weights='file'"):
        build_backbone(TINY, weights="hub")


def test_hub_offline_uses_weights_already_in_the_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    source = _seeded_timm(TINY, seed=11)
    hub_id = timm.get_pretrained_cfg(TINY).hf_hub_id  # timm/test_resnet.r160_in1k
    repo = tmp_path / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(source.state_dict(), repo / "snapshots" / "abc123" / "model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    backbone = build_backbone(TINY, weights="hub")
    assert (
        backbone.provenance["source"] == "hub" and backbone.provenance["saw_test_classes"] is True
    )
    assert backbone.provenance["hub_id"] == hub_id
    state = backbone.model.state_dict()
    assert all(
        torch.equal(state[k], v) for k, v in source.state_dict().items() if not k.startswith("fc.")
    )


def test_unknown_model_name_suggests_close_timm_names():
    with pytest.raises(BackboneError, match="did you mean.*resnet50"):
        build_backbone("resnet_50")
    with pytest.raises(BackboneError, match="weights="):
        build_backbone(TINY, weights="imagenet")


@pytest.mark.parametrize(
    "name, channels, grid", [("test_resnet", 96, (2, 2)), ("test_vit", 64, (4, 4))]
)
def test_feature_map_is_nchw_for_cnns_and_vits(name, channels, grid):
    backbone = build_backbone(name, image_size=64)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fmap, pooled = backbone.feature_map(x)
        tokens = backbone.model.forward_features(x)
    assert fmap.shape == (3, channels, *grid) and pooled.shape == (3, channels)
    if tokens.ndim == 3:  # ViT: the map is the patch tokens, the class token dropped
        assert torch.equal(fmap[:, :, 0, 1], tokens[:, 1 + 1])
        assert torch.allclose(pooled, backbone.model.forward_head(tokens, pre_logits=True))
    else:
        assert torch.equal(fmap, tokens)
        assert torch.allclose(pooled, tokens.mean(dim=(2, 3)), atol=1e-6)


def test_state_dict_hash_sees_every_value():
    model = build_backbone(TINY).model
    before = state_dict_sha256(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert state_dict_sha256(model) != before

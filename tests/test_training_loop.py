"""train_backbone on a tiny in-memory dataset: each method learns, checkpoints round-trip, resume
gives the same weights as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from test_training_data import make_toy_dataset

from benchmark.models.backbones import build_backbone
from benchmark.training import TrainConfig, load_checkpoint
from benchmark.training import loop as training_loop

TINY = dict(
    model_name="test_resnet",
    image_size=32,
    batch_size=16,
    lr=0.05,
    seed=0,
    val_episodes=20,
    val_k_shot=1,
    val_n_query=3,
)
MODEL_KEYS = ("model_name", "image_size", "seed")


def train_backbone(dataset, *, out_dir, **settings):
    """training_loop.train_backbone with the model and the training settings in one dict."""
    model = {k: settings.pop(k) for k in MODEL_KEYS}
    return training_loop.train_backbone(
        dataset, TrainConfig(**settings), out_dir=out_dir, progress=False, **model
    )


def _history(out_dir):
    return load_checkpoint(out_dir / "last.pt")["history"]


def test_classification_reduces_the_loss_and_leaves_global_rng_alone(tmp_path):
    ds = make_toy_dataset()
    rng_before = torch.random.get_rng_state()
    best = train_backbone(ds, method="classification", epochs=4, out_dir=tmp_path, **TINY)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    history = _history(tmp_path)
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]
    assert history[-1]["ce"] < 0.7 * history[1]["ce"]
    assert history[-1]["acc"] > 0.5  # 6 classes: chance is 1/6
    meta = load_checkpoint(best)["meta"]
    assert meta["saw_test_classes"] is False and meta["train_classes"] == "partimagenet-ood-train"
    vals = [h["val_accuracy"] for h in history[1:]]
    assert meta["val_accuracy"] == max(vals) and meta["epoch"] == 1 + vals.index(max(vals))
    assert meta["dataset_fingerprint"] == ds.fingerprint


def test_protonet_episodic_training_runs_and_learns(tmp_path):
    ds = make_toy_dataset()
    best = train_backbone(
        ds,
        method="protonet",
        epochs=3,
        out_dir=tmp_path,
        n_way=3,
        k_shot=2,
        part_head="joint",
        n_query=3,
        episodes_per_epoch=6,
        episodes_per_step=2,
        **{**TINY, "lr": 0.02},
    )
    history = _history(tmp_path)
    assert len(history) == 4
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history[1:])
    assert history[-1]["ce"] < history[1]["ce"]
    checkpoint = load_checkpoint(best)
    assert checkpoint["meta"]["method"] == "protonet" and checkpoint["part_head"] is not None
    assert history[-1]["seg"] < history[1]["seg"]


def test_part_head_after_trains_on_the_frozen_selected_backbone(tmp_path):
    ds = make_toy_dataset()
    best = train_backbone(
        ds,
        method="classification",
        epochs=1,
        part_head="after",
        part_head_epochs=4,
        out_dir=tmp_path,
        **{**TINY, "image_size": 64},
    )
    history = _history(tmp_path)
    seg = [h["seg"] for h in history[2:]]
    assert len(seg) == 4 and seg[-1] < 0.8 * seg[0]
    checkpoint = load_checkpoint(best)
    assert checkpoint["part_head"] is not None
    # the backbone is the one selected after phase one: the part head did not move it
    last = load_checkpoint(tmp_path / "last.pt")
    for key, value in checkpoint["model"].items():
        assert torch.equal(value, last["model"][key]), key
    # and the features engineer's loader rebuilds backbone and head from it
    backbone = build_backbone("test_resnet", "train", checkpoint=best, image_size=64)
    assert backbone.provenance["saw_test_classes"] is False
    head = backbone.part_head()
    _, _, _, logits = backbone.part_features(torch.zeros(2, 3, 64, 64), None, head)
    assert logits.shape == (2, 14, 32, 32)  # the stage decoder's stride-2 grid


def test_a_head_trained_on_an_adopted_backbone_phase_equals_one_trained_in_one_run(tmp_path):
    ds = make_toy_dataset()
    after = dict(method="classification", epochs=2, part_head="after", part_head_epochs=2, **TINY)
    whole = load_checkpoint(train_backbone(ds, out_dir=tmp_path / "whole", **after))
    backbone = {**after, "part_head": False, "part_head_epochs": None}
    train_backbone(ds, out_dir=tmp_path / "backbone", **backbone)
    model = {k: after.pop(k) for k in MODEL_KEYS}
    split = load_checkpoint(
        training_loop.train_backbone(
            ds,
            TrainConfig(**after),
            out_dir=tmp_path / "head",
            progress=False,
            backbone_phase_from=tmp_path / "backbone",
            **model,
        )
    )
    for part in ("model", "part_head"):
        for key, value in whole[part].items():
            assert torch.equal(value, split[part][key]), (part, key)
    assert split["meta"]["config"] == whole["meta"]["config"]  # best.pt says what trained it
    assert _history(tmp_path / "head") == _history(tmp_path / "whole")


def test_a_backbone_phase_of_other_settings_is_refused_by_name(tmp_path):
    ds = make_toy_dataset()
    train_backbone(ds, method="classification", epochs=1, out_dir=tmp_path / "b", **TINY)
    settings = dict(TINY)
    model = {k: settings.pop(k) for k in MODEL_KEYS}
    other = TrainConfig(method="classification", epochs=2, part_head="after", **settings)
    with pytest.raises(ValueError, match="last.pt is not this run's backbone phase"):
        training_loop.train_backbone(
            ds,
            other,
            out_dir=tmp_path / "h",
            progress=False,
            backbone_phase_from=tmp_path / "b",
            **model,
        )


def test_part_head_joint_loss_drops(tmp_path):
    ds = make_toy_dataset()
    train_backbone(
        ds,
        method="classification",
        epochs=4,
        part_head="joint",
        part_head_weight=1.0,
        out_dir=tmp_path,
        **{**TINY, "image_size": 64},
    )
    seg = [h["seg"] for h in _history(tmp_path)[1:]]
    assert seg[-1] < 0.7 * seg[0]
    assert load_checkpoint(tmp_path / "best.pt")["part_head"] is not None


def test_checkpoint_round_trip_hash_and_corruption(tmp_path):
    ds = make_toy_dataset()
    best = train_backbone(ds, epochs=1, out_dir=tmp_path, **TINY)
    digest = (tmp_path / "best.pt.sha256").read_text().split()[0]
    from episodes.storage import file_sha256

    assert file_sha256(best) == digest
    checkpoint = torch.load(best, weights_only=True)
    assert set(checkpoint) == {"model", "part_head", "meta", "tensors_sha256"}
    backbone = build_backbone("test_resnet", "train", checkpoint=best, image_size=32)
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, checkpoint["model"][key]), key
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 0xFF
    best.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is damaged: its sha256"):
        load_checkpoint(best)


def test_resume_refuses_other_settings(tmp_path):
    ds = make_toy_dataset()
    train_backbone(ds, epochs=1, out_dir=tmp_path, **TINY)
    with pytest.raises(ValueError, match="lr"):
        train_backbone(ds, epochs=1, out_dir=tmp_path, **{**TINY, "lr": 0.1})


def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch):
    ds = make_toy_dataset()
    settings = dict(method="classification", epochs=3, part_head="joint", **TINY)
    whole = train_backbone(ds, out_dir=tmp_path / "whole", **settings)

    original = training_loop._Trainer._train_epoch

    def stop_in_third_epoch(self, net, opt, sched, epoch, after):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, net, opt, sched, epoch, after)

    monkeypatch.setattr(training_loop._Trainer, "_train_epoch", stop_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_backbone(ds, out_dir=tmp_path / "split", **settings)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epochs_done"] == 2
    assert not (tmp_path / "split" / "best.pt").exists()  # best.pt means "training complete"
    monkeypatch.setattr(training_loop._Trainer, "_train_epoch", original)
    resumed = train_backbone(ds, out_dir=tmp_path / "split", **settings)

    a, b = (
        load_checkpoint(tmp_path / "whole" / "last.pt"),
        load_checkpoint(tmp_path / "split" / "last.pt"),
    )
    for part in ("model", "classifier", "part_head"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["history"] == b["history"]
    assert load_checkpoint(whole)["meta"] == load_checkpoint(resumed)["meta"]


def test_training_autocasts_at_the_configured_precision(tmp_path, monkeypatch):
    asked = []
    real = training_loop.autocast

    def spy(device, dtype):
        asked.append(dtype)
        return real(device, dtype)

    monkeypatch.setattr(training_loop, "autocast", spy)
    train_backbone(make_toy_dataset(), epochs=1, precision="bf16", out_dir=tmp_path, **TINY)
    assert asked and set(asked) == {torch.bfloat16}  # "auto" would be float32 on the CPU

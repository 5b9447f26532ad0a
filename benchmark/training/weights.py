"""The run's backbone weights: built as configured, or (`backbone.weights: train`) trained on the
train split once per setting and cached under a key of everything that changes the weights."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from benchmark.config.cache_layout import CHECKPOINTS_FOLDER, cache_root, short_key
from benchmark.config.errors import ConfigError
from benchmark.config.run import RunConfig
from benchmark.config.training import TrainConfig, backbone_phase, weights_identity
from benchmark.data.dataset import PartDataset
from benchmark.models.backbones import Backbone, build_backbone
from benchmark.training.checkpoint import CHECKPOINT_NAMES, usable_cached_checkpoint
from benchmark.training.loop import train_backbone
from episodes import EpisodeSettingsError


def resolve_backbone(
    cfg: RunConfig, dataset: PartDataset, progress: bool = True, *, needs_part_head: bool = False
) -> Backbone:
    """Build the timm backbone; with `weights: train`, train it on the train split once and cache
    it (with a part head too when `needs_part_head`: the run reads predicted masks)."""
    bb = cfg.backbone
    checkpoint = Path(bb.checkpoint).expanduser() if bb.checkpoint else None
    if bb.weights == "train":
        checkpoint = trained_checkpoint(cfg, dataset, progress, needs_part_head=needs_part_head)
    return build_backbone(
        bb.name, weights=bb.weights, checkpoint=checkpoint, image_size=bb.image_size, seed=bb.seed
    )


def trained_checkpoint(
    cfg: RunConfig, dataset: PartDataset, progress: bool = True, *, needs_part_head: bool = False
) -> Path:
    """The checkpoint trained on the train split for this (dataset, backbone, train) setting.

    A part head trained "after" the backbone has a folder of its own, keyed by the head's
    settings too; the backbone it trains on comes from the folder of the backbone's settings
    alone, so another head setting (or a config without a head) reuses the trained backbone.
    """
    # Predicted part masks need a part head; train one after the backbone unless configured.
    train = replace(
        cfg.train, part_head=cfg.train.part_head or ("after" if needs_part_head else False)
    )
    backbone_train = backbone_phase(train)
    backbone_dir = _checkpoint_folder(cfg, dataset, backbone_train)
    out_dir = _checkpoint_folder(cfg, dataset, train)
    cached = usable_cached_checkpoint(out_dir)  # verified; a damaged one is set aside
    if cached is not None:
        return cached
    if out_dir == backbone_dir or not _finished_backbone_phase(backbone_dir):
        _say(
            f"training {cfg.backbone.name} on the train split ({train.method}, "
            f"{train.epochs} epochs) into {backbone_dir}"
        )
        best = _train(cfg, dataset, backbone_train, backbone_dir, progress)
        if out_dir == backbone_dir:  # no head, or one trained jointly with the backbone
            return best
    _say(
        f"training its part head ({train.resolved().part_head_epochs} epochs on the frozen "
        f"backbone of {backbone_dir.name}) into {out_dir}"
    )
    return _train(cfg, dataset, train, out_dir, progress, backbone_phase_from=backbone_dir)


def _finished_backbone_phase(folder: Path) -> bool:
    """Whether a head can adopt `folder`'s backbone phase: its best.pt verifies, and the end
    state (last.pt) and selection (selected.pt) the head trains from are there too."""
    usable = usable_cached_checkpoint(folder) is not None  # verified; damaged files set aside
    return usable and all((folder / name).is_file() for name in CHECKPOINT_NAMES)


def _checkpoint_folder(cfg: RunConfig, dataset: PartDataset, train: TrainConfig) -> Path:
    bb = cfg.backbone
    identity = weights_identity(train, model_name=bb.name, image_size=bb.image_size, seed=bb.seed)
    key = short_key({"data": dataset.fingerprint, "weights": identity})
    return cache_root(cfg.cache_dir) / CHECKPOINTS_FOLDER / f"{bb.name}-{key}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _train(
    cfg: RunConfig,
    dataset: PartDataset,
    train: TrainConfig,
    out_dir: Path,
    progress: bool,
    backbone_phase_from: Path | None = None,
) -> Path:
    bb = cfg.backbone
    try:
        return train_backbone(
            dataset,
            train,
            model_name=bb.name,
            image_size=bb.image_size,
            seed=bb.seed,
            out_dir=out_dir,
            device=cfg.features.device,
            resume=True,
            progress=progress,
            decoded_cache=(cache_root(cfg.cache_dir) if train.decoded_cache else None),
            backbone_phase_from=backbone_phase_from,
        )
    except EpisodeSettingsError as exc:
        raise ConfigError(
            f"train.val_k_shot/train.val_n_query: model selection on the val "
            f"split cannot draw its episodes: {exc}"
        ) from None

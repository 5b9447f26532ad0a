"""The run's backbone weights: built as configured, or (`backbone.weights: train`) trained on the
train split once per setting and cached under a key of everything that changes the weights."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from benchmark.config.cache_layout import CHECKPOINTS_FOLDER, cache_root, short_key
from benchmark.config.errors import ConfigError
from benchmark.config.run import RunConfig
from benchmark.config.training import weights_identity
from benchmark.data.dataset import PartDataset
from benchmark.models.backbones import Backbone, build_backbone
from benchmark.training.checkpoint import usable_cached_checkpoint
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
    """The checkpoint trained on the train split for this (dataset, backbone, train) setting."""
    bb = cfg.backbone
    # Predicted part masks need a part head; train one after the backbone unless configured.
    train = replace(
        cfg.train, part_head=cfg.train.part_head or ("after" if needs_part_head else False)
    )
    identity = weights_identity(train, model_name=bb.name, image_size=bb.image_size, seed=bb.seed)
    key = short_key({"data": dataset.fingerprint, "weights": identity})
    out_dir = cache_root(cfg.cache_dir) / CHECKPOINTS_FOLDER / f"{bb.name}-{key}"
    cached = usable_cached_checkpoint(out_dir)  # verified; a damaged one is set aside
    if cached is not None:
        return cached
    head = (
        f" + {train.resolved().part_head_epochs} part-head epochs on the frozen backbone"
        if train.part_head == "after"
        else ""
    )
    print(
        f"training {bb.name} on the train split ({train.method}, {train.epochs} epochs{head}) "
        f"into {out_dir}",
        file=sys.stderr,
        flush=True,
    )
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
        )
    except EpisodeSettingsError as exc:
        raise ConfigError(
            f"train.val_k_shot/train.val_n_query: model selection on the val "
            f"split cannot draw its episodes: {exc}"
        ) from None

"""The run's backbone weights: built as configured, or (`backbone.weights: train`) trained on the
train split once per setting and cached under a key of everything that changes the weights."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.backbones import Backbone, build_backbone
from benchmark.cache import cache_root, short_key
from benchmark.config import ConfigError, RunConfig
from benchmark.data.dataset import PartDataset
from benchmark.training.episodic import EpisodeSpec
from benchmark.training.loop import train_backbone
from episodes import EpisodeSettingsError


def resolve_backbone(cfg: RunConfig, dataset: PartDataset, progress: bool = True) -> Backbone:
    """Build the timm backbone; with `weights: train`, train it on the train split once and cache it."""
    bb = cfg.backbone
    checkpoint = Path(bb.checkpoint).expanduser() if bb.checkpoint else None
    if bb.weights == "train":
        checkpoint = trained_checkpoint(cfg, dataset, progress)
    return build_backbone(bb.name, weights=bb.weights, checkpoint=checkpoint,
                          image_size=bb.image_size, seed=bb.seed)


def trained_checkpoint(cfg: RunConfig, dataset: PartDataset, progress: bool = True) -> Path:
    """The checkpoint trained on the train split for this (dataset, backbone, train) setting."""
    tr = cfg.train
    # Predicted part masks need a part head; train one after the backbone unless configured.
    part_head = tr.part_head or ("after" if cfg.features.masks in ("predicted", "support-oracle")
                                 else False)
    # Everything that changes the weights; loader workers do not (augmentation is seeded per image).
    key = short_key({"data": dataset.fingerprint, "backbone": cfg.backbone.name,
                     "image_size": cfg.backbone.image_size, "seed": cfg.backbone.seed,
                     "train": {**vars(tr), "part_head": part_head, "num_workers": None}})
    out_dir = cache_root(cfg.cache_dir) / "checkpoints" / f"{cfg.backbone.name}-{key}"
    best = out_dir / "best.pt"
    if best.is_file():
        return best
    print(f"training {cfg.backbone.name} on the train split ({tr.method}, {tr.epochs} epochs) "
          f"into {out_dir}", file=sys.stderr, flush=True)
    val = EpisodeSpec(n_way=5, k_shot=tr.val_k_shot, n_query=tr.val_n_query,
                      n_episodes=tr.val_episodes)
    try:
        return train_backbone(
            dataset, model_name=cfg.backbone.name, image_size=cfg.backbone.image_size,
            method=tr.method, epochs=tr.epochs, batch_size=tr.batch_size, lr=tr.lr,
            part_head=part_head, seed=cfg.backbone.seed, out_dir=out_dir,
            device=cfg.features.device, num_workers=tr.num_workers, val_episodes=val,
            resume=True, progress=progress,
        )
    except EpisodeSettingsError as exc:
        raise ConfigError(f"train.val_k_shot/train.val_n_query: model selection on the val "
                          f"split cannot draw its episodes: {exc}") from None

"""The module trained on the train split: a timm backbone plus the heads a method needs."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.models.backbones import build_backbone, trunk_and_stages, trunk_features
from benchmark.models.part_head import part_head_for


def _training(head: nn.Module | None) -> bool:
    return head is not None and any(p.requires_grad for p in head.parameters())


class TrainingModel(nn.Module):
    """backbone + optional linear classifier + optional part-segmentation head.

    forward(images (B, 3, S, S)) -> (pooled (B, D), class_logits (B, C) | None,
    part_logits (B, 14, h, w) | None), h x w the part head's finest stage grid. One forward call
    per step, as DistributedDataParallel needs.
    """

    def __init__(self, backbone: nn.Module, n_classes: int | None, part_head: bool) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.num_features
        self.classifier = nn.Linear(dim, n_classes) if n_classes else None
        self.part_head = part_head_for(backbone) if part_head else None

    def trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (feature map (B, C, h, w), pooled (B, C)), defined as in
        benchmark.models.backbones.Backbone.feature_map (the features the harness extracts): the
        model's own pooled embedding, or the map's average when its head changes the width."""
        return trunk_features(self.backbone, images)

    def forward(self, images: torch.Tensor):
        # A head runs only while it trains: with part_head="after", the classifier sits out the
        # part-head phase and the part head sits out the backbone phase.
        head = self.part_head if _training(self.part_head) else None
        stages = head.stage_indices if head is not None else ()
        fmap, pooled, maps = trunk_and_stages(self.backbone, images, stages)
        logits = self.classifier(pooled) if _training(self.classifier) else None
        parts = head(fmap, *maps) if head is not None else None
        return pooled, logits, parts

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C) globally pooled backbone features."""
        return self.trunk(images)[1]


def build_training_model(
    model_name: str, *, image_size: int, n_classes: int | None, part_head: bool, seed: int
) -> tuple[TrainingModel, dict]:
    """A randomly initialised timm backbone (benchmark.models.backbones, weights="random") plus heads.

    Returns the model and the backbone's timm data config (mean, std, interpolation). Heads are
    initialised from `seed` under fork_rng, so the caller's global RNG state is left untouched.
    """
    backbone = build_backbone(model_name, "random", image_size=image_size, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = TrainingModel(backbone.model, n_classes, part_head)
    return model, dict(backbone.data_config)


def set_batchnorm_mode(model: nn.Module, mode: str) -> None:
    """After model.train(): mode "frozen" puts every BatchNorm in eval mode (running statistics,
    affine weights still trained), so a step's result does not depend on how the batch is split
    over processes. "local" and "sync" leave BN training (sync converts it beforehand)."""
    if mode == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

"""The training settings: one dataclass, which is both the run config's `train` section and what
`train_backbone` takes, and the choice lists its fields draw from.

Standard library only, so the config checker and the CLI read it without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

TRAIN_METHODS = ("classification", "protonet")  # cross-entropy over train classes | episodic
PART_HEAD_MODES = (False, "joint", "after")  # no head | trained with the backbone | after it
BATCHNORM_MODES = ("auto", "local", "sync", "frozen")  # auto: sync under multi-GPU torchrun
VAL_WAYS = 5  # model selection uses 5-way val episodes
# The part head (benchmark.models.part_head): a decoder over the backbone's stages of these
# strides, `width` channels wide; trained "after" the backbone with AdamW at this learning rate.
PART_HEAD_STRIDES = (2, 4, 8, 16)
PART_HEAD_WIDTH = 64
PART_HEAD_LR = 3e-3
# Fields that do not change the weights: a resumed or cached run may differ in them.
RUNTIME_FIELDS = ("num_workers", "decoded_cache")


@dataclass
class TrainConfig:
    """Training on the train split (used when `backbone.weights: train`).

    The first fields are the ones most runs set; the rest tune the optimisation and ProtoNet's
    training episodes. batch_size is global (summed over torchrun processes).
    """

    method: str = "classification"  # TRAIN_METHODS
    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.2  # SGD with Nesterov momentum, warm-up then cosine
    part_head: str | bool = False  # PART_HEAD_MODES
    val_episodes: int = 100  # 5-way val episodes for model selection
    val_k_shot: int = 5
    val_n_query: int = 10
    num_workers: int = 0
    precision: str = "auto"  # benchmark.config.device.PRECISIONS: autocast while training
    part_head_weight: float = 0.5  # "joint": weight of the part-segmentation loss
    part_head_epochs: int | None = None  # "after": epochs of the head; None: max(1, epochs // 2)
    optimizer: str = "sgd"  # a timm optimizer name ("sgd", "adamw", ...)
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    batchnorm: str = "auto"  # BATCHNORM_MODES
    n_way: int = 10  # protonet: training episodes' shape, count and episodes per step
    k_shot: int = 5
    n_query: int = 10
    episodes_per_epoch: int = 100
    episodes_per_step: int = 1
    val_seed: int = 0
    # keep each image's decoded training view on disk (memory-mapped) so epochs after the first
    # read pixels, not JPEGs; same weights either way (python -m benchmark cache --clear decoded)
    decoded_cache: bool = False

    def resolved(self) -> "TrainConfig":
        """This config with its defaults that depend on other fields filled in."""
        if self.part_head_epochs is not None:
            return self
        return replace(
            self, part_head_epochs=max(1, self.epochs // 2) if self.part_head == "after" else 0
        )


def backbone_phase(config: TrainConfig) -> TrainConfig:
    """The settings of the backbone alone: with part_head "after" the backbone trains exactly as
    without a head (the head is built but sits out, and nothing random depends on it), so one
    trained backbone serves every part-head setting (`train_backbone(backbone_phase_from=...)`)."""
    if config.part_head != "after":
        return config
    return replace(config, part_head=False, part_head_epochs=None)


def weights_identity(
    config: TrainConfig, *, model_name: str, image_size: int, seed: int
) -> dict[str, Any]:
    """Everything that determines the trained weights besides the data: checkpoints record it,
    a resumed run must match it, and the run's weights cache is keyed by its hash."""
    settings = {k: v for k, v in asdict(config.resolved()).items() if k not in RUNTIME_FIELDS}
    identity = {
        "model_name": model_name,
        "image_size": int(image_size),
        "seed": int(seed),
        "train": settings,
    }
    if config.part_head:  # the head's design changes its weights as much as its settings do
        identity["part_head_design"] = {
            "strides": list(PART_HEAD_STRIDES),
            "width": PART_HEAD_WIDTH,
            "after_lr": PART_HEAD_LR,
        }
    return identity

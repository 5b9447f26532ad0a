"""Training on the train split (clean protocol): classification pre-training, ProtoNet
meta-training, an optional part-segmentation head; val-episode model selection; checkpoints.

Entry point: `train_backbone(dataset, TrainConfig(...), model_name=..., ...) -> Path` of best.pt.
"""

from benchmark.config.training import TrainConfig

__all__ = ["EpisodeSpec", "TrainConfig", "load_checkpoint", "save_checkpoint", "train_backbone"]

_LAZY = {
    "EpisodeSpec": "episodic",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "train_backbone": "loop",
}


def __getattr__(name: str):
    # Lazy: the trainer imports torch and timm; the config checker (and with it `benchmark list`)
    # reads benchmark.config.training, which must not pay for them.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"benchmark.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'benchmark.training' has no attribute {name!r}")

"""Training on the train split (clean protocol): classification pre-training, ProtoNet
meta-training, an optional part-segmentation head; val-episode model selection; checkpoints.

Entry point: `train_backbone(dataset, TrainConfig(...), model_name=..., ...) -> Path` of best.pt.
"""

from benchmark.training.checkpoint import load_checkpoint, save_checkpoint
from benchmark.training.episodic import EpisodeSpec
from benchmark.training.config import TrainConfig
from benchmark.training.loop import train_backbone

__all__ = ["EpisodeSpec", "TrainConfig", "load_checkpoint", "save_checkpoint",
           "train_backbone"]

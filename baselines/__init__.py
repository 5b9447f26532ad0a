"""Few-shot learners: over cached features, batched across episodes (Learner), or over pixels
and the backbone, one episode at a time (ImageLearner).

Importing the package registers every learner; `get_learner(spec, **options)` builds one (a
registered name, a `module:Class` path, or a `partbench.learners` entry point).
"""

from baselines import (
    bd_cspn,
    dn4,
    finetune,
    laplacianshot,
    logreg,
    maml,
    part_controls,
    part_protonet,
    presence_only,
    protonet,
    pt_map,
    random_learner,
    simpleshot,
    tim,
)
from baselines.base import EpisodeFeatures, Learner, check_support, class_means, one_hot, to_compute
from baselines.image_learner import ImageLearner
from baselines.plugins import LearnerSpecError
from baselines.registry import (
    UnknownLearnerError,
    get_learner,
    get_learner_class,
    get_learner_origin,
    learner_names,
    register,
)
from baselines.seeding import episode_seeds

__all__ = [
    "EpisodeFeatures",
    "ImageLearner",
    "Learner",
    "LearnerSpecError",
    "UnknownLearnerError",
    "check_support",
    "class_means",
    "episode_seeds",
    "get_learner",
    "get_learner_class",
    "get_learner_origin",
    "learner_names",
    "one_hot",
    "register",
    "to_compute",
]

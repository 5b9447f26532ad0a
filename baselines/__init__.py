"""Few-shot learners over cached features, batched across episodes.

Importing the package registers every learner; `get_learner(name, **options)` builds one.
"""

from baselines import (dn4, logreg, maml, part_controls, part_protonet, protonet,  # noqa: F401
                       random_learner, simpleshot)
from baselines.base import EpisodeFeatures, Learner
from baselines.registry import (UnknownLearnerError, get_learner, get_learner_class,
                                learner_names, register)

__all__ = ["EpisodeFeatures", "Learner", "UnknownLearnerError", "get_learner",
           "get_learner_class", "learner_names", "register"]

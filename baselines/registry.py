"""Name -> learner class registry: `@register` on a Learner (or ImageLearner) subclass,
`get_learner(spec, **kw)`.

A spec is a registered name, else a `module:Class` path or a `partbench.learners` entry point
(baselines.plugins). Duplicate names are refused; an unknown name raises UnknownLearnerError
(a KeyError) that suggests the nearest known name; a plugin that fails to load raises
LearnerSpecError (a ValueError) naming the spec and the fix.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from baselines.base import Learner
from baselines.image_learner import ImageLearner
from baselines.plugins import LEARNER_BASES, entry_points, learner_origin, load_plugin
from episodes.errors import PartbenchError

_REGISTRY: dict[str, type[Learner] | type[ImageLearner]] = {}

L = TypeVar("L", bound=type)


class UnknownLearnerError(PartbenchError, KeyError):
    """No learner is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def register(cls: L) -> L:
    """Class decorator: register a Learner or ImageLearner subclass under its `name` attribute."""
    if not (isinstance(cls, type) and issubclass(cls, LEARNER_BASES)):
        raise TypeError(
            f"register: {cls!r} is not a subclass of baselines.base.Learner "
            "or baselines.image_learner.ImageLearner"
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: {cls.__qualname__} needs a non-empty class attribute `name`")
    if name in _REGISTRY:
        other = _REGISTRY[name]
        raise ValueError(
            f"register: learner name {name!r} is taken by "
            f"{other.__module__}.{other.__qualname__}; choose another name"
        )
    _REGISTRY[name] = cls
    return cls


def get_learner_class(name: str) -> type[Learner] | type[ImageLearner]:
    """The class of learner spec `name`: registered, `module:Class`, or an entry point.

    UnknownLearnerError (with a suggestion) if it is none of them; LearnerSpecError if a plugin
    fails to load.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    plugin = load_plugin(str(name))
    if plugin is not None:
        return plugin
    known = [*_REGISTRY, *entry_points()]
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownLearnerError(
        f"unknown learner {name!r}{hint} (registered: {', '.join(learner_names())}; or give "
        "package.module:ClassName, or install a package with a partbench.learners entry point)"
    )


def get_learner_origin(name: str) -> dict[str, Any]:
    """Where the learner of spec `name` comes from (baselines.plugins.learner_origin)."""
    return learner_origin(name, get_learner_class(name))


def get_learner(name: str, **kwargs: Any) -> Learner:
    """A new instance of the learner registered under `name`, built with `kwargs`."""
    return get_learner_class(name)(**kwargs)


def learner_names(protocol: type | None = None) -> list[str]:
    """Registered (built-in) learner names, sorted; only subclasses of `protocol` (Learner or
    ImageLearner) if given. Plugins: baselines.plugins.entry_points()."""
    return sorted(
        n for n, cls in _REGISTRY.items() if protocol is None or issubclass(cls, protocol)
    )

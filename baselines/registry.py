"""Name -> learner class registry: `@register` on a Learner subclass, `get_learner(name, **kw)`.

Duplicate names are refused; an unknown name raises UnknownLearnerError (a KeyError) that
suggests the nearest registered name.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from baselines.base import Learner

_REGISTRY: dict[str, type[Learner]] = {}

L = TypeVar("L", bound=type[Learner])


class UnknownLearnerError(KeyError):
    """No learner is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def register(cls: L) -> L:
    """Class decorator: register a Learner subclass under its `name` attribute."""
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        raise TypeError(f"register: {cls!r} is not a subclass of baselines.base.Learner")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: {cls.__qualname__} needs a non-empty class attribute `name`")
    if name in _REGISTRY:
        other = _REGISTRY[name]
        raise ValueError(f"register: learner name {name!r} is taken by "
                         f"{other.__module__}.{other.__qualname__}; choose another name")
    _REGISTRY[name] = cls
    return cls


def get_learner_class(name: str) -> type[Learner]:
    """The class registered under `name`; UnknownLearnerError (with a suggestion) if none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownLearnerError(
            f"unknown learner {name!r}{hint} (registered: {', '.join(learner_names())})"
        ) from None


def get_learner(name: str, **kwargs: Any) -> Learner:
    """A new instance of the learner registered under `name`, built with `kwargs`."""
    return get_learner_class(name)(**kwargs)


def learner_names() -> list[str]:
    """Registered learner names, sorted."""
    return sorted(_REGISTRY)

"""Learners defined outside partbench: `module:Class` specs and the `partbench.learners` entry points.

A learner spec in a config is a registered name (`protonet`), a `package.module:ClassName` path
to a Learner or ImageLearner subclass in any importable module, or the name of an entry point in
the group `partbench.learners` of an installed distribution, e.g. in its pyproject.toml:

    [project.entry-points."partbench.learners"]
    my_method = "my_package.learners:MyLearner"

Every failure (no such module, an import error inside it, no such class, a class that is not a
learner) is a LearnerSpecError whose one line names the spec and what to fix. `learner_origin`
says where a class came from, for result files: module, distribution and version where
installed, and the sha256 of its source file.
"""

from __future__ import annotations

import importlib
import inspect
import re
from importlib import metadata
from typing import Any

from baselines.base import Learner
from baselines.image_learner import ImageLearner
from episodes.errors import PartbenchError
from episodes.storage import file_sha256

ENTRY_POINT_GROUP = "partbench.learners"
LEARNER_BASES = (Learner, ImageLearner)


class LearnerSpecError(PartbenchError, ValueError):
    """A learner spec that cannot be loaded; the message names the spec and the fix."""


def is_learner_class(obj: Any) -> bool:
    """True for a concrete subclass of Learner or ImageLearner."""
    return (
        isinstance(obj, type)
        and issubclass(obj, LEARNER_BASES)
        and obj not in LEARNER_BASES
        and not inspect.isabstract(obj)
    )


def entry_points() -> dict[str, metadata.EntryPoint]:
    """Name -> entry point of every installed `partbench.learners` entry point (first one wins)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def load_plugin(spec: str) -> type | None:
    """The learner class of a `module:Class` spec or an entry-point name; None if `spec` is
    neither (a plain name no entry point has). Raises LearnerSpecError when loading fails."""
    if ":" in spec:
        module, _, attr = spec.partition(":")
        return _load(spec, module, attr, where=f"learner {spec!r}")
    ep = entry_points().get(spec)
    if ep is None:
        return None
    dist = f" of {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
    module, _, attr = ep.value.partition(":")
    return _load(
        spec,
        module.strip(),
        attr.strip(),
        where=f"learner {spec!r} (entry point {ENTRY_POINT_GROUP} -> {ep.value}{dist})",
    )


def _load(spec: str, module: str, attr: str, where: str) -> type:
    if not module or not attr:
        raise LearnerSpecError(f"{where}: write it as package.module:ClassName")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise LearnerSpecError(
                f"{where}: no module named {exc.name!r}; install the package "
                "that provides it or put its folder on PYTHONPATH"
            ) from None
        raise LearnerSpecError(f"{where}: importing {module!r} failed: {exc}") from None
    except (Exception, SystemExit) as exc:  # any error (or exit) in the user's module: one line
        raise LearnerSpecError(
            f"{where}: importing {module!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LearnerSpecError(f"{where}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not is_learner_class(obj):
        raise LearnerSpecError(
            f"{where}: {module}.{attr} is not a concrete subclass of "
            "baselines.Learner (features) or baselines.ImageLearner (images)"
        )
    return obj


def learner_origin(spec: str, cls: type) -> dict[str, Any]:
    """Where learner class `cls` (loaded for `spec`) came from, as JSON-able data:

    {"spec", "kind": "builtin" | "module" | "entry-point", "class": "module.Qualname",
     "module", "distribution": name | None, "version": str | None,
     "source_sha256": "<sha256 hex>" | None (the file defining the class),
     "dependencies": {name: installed version} of a plugin distribution's requirements}
    """
    builtin = cls.__module__.split(".")[0] == "baselines"
    kind = "module" if ":" in spec else "builtin" if builtin else "entry-point"
    ep = entry_points().get(spec) if kind == "entry-point" else None
    dist_name = version = None
    if ep is not None and ep.dist is not None:
        dist_name, version = ep.dist.name, ep.dist.version
    else:
        names = metadata.packages_distributions().get(cls.__module__.split(".")[0], [])
        if names:
            dist_name = names[0]
            try:
                version = metadata.version(dist_name)
            except metadata.PackageNotFoundError:
                version = None
    return {
        "spec": spec,
        "kind": kind,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "module": cls.__module__,
        "distribution": dist_name,
        "version": version,
        "source_sha256": _source_sha256(cls),
    } | ({} if builtin or dist_name is None else {"dependencies": _dependencies(dist_name)})


def _dependencies(dist_name: str) -> dict[str, str]:
    """The installed version of each requirement of `dist_name` (extras and the uninstalled
    left out): what a plugin's number also depends on."""
    try:
        requires = metadata.requires(dist_name) or []
    except metadata.PackageNotFoundError:
        return {}
    found = {}
    for line in requires:
        if "extra ==" in line:
            continue
        name = re.split(r"[\s;<>=!~\[(]", line.strip(), maxsplit=1)[0]
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return dict(sorted(found.items()))


def _source_sha256(cls: type) -> str | None:
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:  # defined in a built-in or C module
        return None
    if path is None:
        return None
    return file_sha256(path)

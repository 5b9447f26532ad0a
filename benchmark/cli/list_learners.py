"""`list`: the registered learners and plugins, shipped configs and each config choice."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "list",
        help="list the registered learners, shipped configs and the values "
        "each config choice takes",
    )


def main(args: argparse.Namespace) -> int:
    from baselines import ImageLearner, get_learner_class, learner_names
    from benchmark.config.run import CHOICES, shipped_configs

    print("learners:")
    width = max(map(len, learner_names())) + 2  # a long name never runs into its description
    for name in learner_names():
        cls = get_learner_class(name)
        flags = [
            f
            for f, on in (
                ("parts", cls.uses_parts),
                ("transductive", cls.transductive),
                ("images", issubclass(cls, ImageLearner)),
            )
            if on
        ]
        extra = f" [{', '.join(flags)}]" if flags else ""
        print(f"  {name:<{width}}{cls.paper}{extra}")
    print_plugins()
    print("shipped configs:")
    for name in shipped_configs():
        print(f"  {name}")
    print("config keys with a fixed set of values:")
    for key, choices in CHOICES.items():
        print(f"  {key:<22}{' | '.join(str(c).lower() if c is False else c for c in choices)}")
    return 0


def print_plugins() -> None:
    """The `partbench.learners` entry points, where each comes from, and whether it loads."""
    from baselines import LearnerSpecError, get_learner_class, learner_names
    from baselines.plugins import ENTRY_POINT_GROUP, entry_points

    found = entry_points()
    print(f"plugin learners (entry points {ENTRY_POINT_GROUP}; also any package.module:ClassName):")
    if not found:
        print("  (none installed)")
    for name, ep in sorted(found.items()):
        dist = (
            f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        )
        if name in learner_names():
            status = "shadowed by the built-in learner of that name"
        else:
            try:
                status = get_learner_class(name).paper or "loads"
            except LearnerSpecError as exc:
                status = f"FAILS: {exc}"
        print(f"  {name:<22}{ep.value} from {dist}: {status}")

"""Annotation protocols: which test-time annotations a learner's features were allowed to read.

One fact, defined once, at the bottom of the package tree (validate and the leaderboard need it
and must not import `benchmark`):

- "none": no annotation of any test image; part masks, if any, are predicted from pixels (the
  part head) or are annotation-free regions (the controls: grid cells, another image's masks).
- "support": the support images' annotations may be used, the queries' never (query masks are
  predicted).
- "all": the queries' annotations too. A diagnostic upper bound, not a method: PartImageNet's
  part set differs per super-category, so a query's annotation alone names its super-category.

A learner's protocol follows from the mask mode of its features (`MASK_MODE_ANNOTATIONS`); a
learner without part features reads no annotation ("none").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANNOTATION_PROTOCOLS = ("none", "support", "all")  # least to most test-time annotation
TEST_TIME_ANNOTATIONS = "all"  # the protocol whose rows are marked and ranked apart
# mask mode of a learner's part features -> what test-time annotation it reads
MASK_MODE_ANNOTATIONS = {
    None: "none",  # no part features
    "none": "none",
    "predicted": "none",
    "grid2": "none",
    "grid3": "none",
    "shuffled": "none",  # another image's masks: the shuffle never pairs an image with its own
    "support-oracle": "support",
    "oracle": "all",
}
# what the leaderboard writes beside an "all" row
ANNOTATION_MARKS = {
    "none": "",
    "support": "support annotations",
    "all": "test-time annotations (upper bound)",
}


def annotations_of_mask_mode(mask_mode: str | None) -> str:
    """The annotation protocol of features pooled with `mask_mode` (None: no part features).

    Raises ValueError for a mask mode this table does not know (a new mode must say what it reads).
    """
    try:
        return MASK_MODE_ANNOTATIONS[mask_mode]
    except KeyError:
        raise ValueError(
            f"mask mode {mask_mode!r} has no annotation protocol; known: "
            f"{sorted(m for m in MASK_MODE_ANNOTATIONS if m)}"
        ) from None


def learner_annotations(metric: Mapping[str, Any]) -> str:
    """A result file's learner entry's protocol: its declared `annotations`, or (older files
    without one) the one its mask_mode implies."""
    declared = metric.get("annotations")
    return declared if declared is not None else annotations_of_mask_mode(metric.get("mask_mode"))


def protocol_problems(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Problems of a result file's metrics section: an unknown protocol, or a declared protocol
    that contradicts the learner's mask mode (e.g. "none" over oracle masks)."""
    problems = []
    for learner, metric in sorted(metrics.items()):
        declared = metric.get("annotations")
        if declared is None:
            continue  # older files: derived from mask_mode
        if declared not in ANNOTATION_PROTOCOLS:
            problems.append(
                f"metrics.{learner}.annotations: {declared!r} is not one of "
                f"{list(ANNOTATION_PROTOCOLS)}"
            )
            continue
        try:
            implied = annotations_of_mask_mode(metric.get("mask_mode"))
        except ValueError as exc:
            problems.append(f"metrics.{learner}.mask_mode: {exc}")
            continue
        if declared != implied:
            problems.append(
                f"metrics.{learner}.annotations: declares {declared!r} but its mask "
                f"mode {metric.get('mask_mode')!r} reads test-time annotations of "
                f"protocol {implied!r}"
            )
    return problems

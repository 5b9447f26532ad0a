"""PartImageNet's frozen class and part tables, packaged with the code.

The 158 object classes (synset, OOD split, super-category, readable name) and the 40 part
categories (id, name, super-category) of the PartImageNet OOD release. They are data, not code:
the sampler checks its splits against them and the loader checks the annotation files against
them. Part names map onto 13 generic *part slots* ("Head", "Body", ...), so that a quadruped's
head and a fish's head share one slot in part-pooled features.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

SPLITS: tuple[str, ...] = ("train", "val", "test")

SUPER_CATEGORIES: tuple[str, ...] = (
    "Quadruped",
    "Biped",
    "Fish",
    "Bird",
    "Snake",
    "Reptile",
    "Car",
    "Bicycle",
    "Boat",
    "Aeroplane",
    "Bottle",
)

# The generic part names, in the order of the part-slot axis of every part-pooled tensor.
PART_SLOTS: tuple[str, ...] = (
    "Head",
    "Body",
    "Foot",
    "Tail",
    "Hand",
    "Fin",
    "Wing",
    "Tier",
    "Side Mirror",
    "Seat",
    "Sail",
    "Mouth",
    "Engine",
)


@dataclass(frozen=True)
class ClassInfo:
    """One object class: an ImageNet synset with its OOD split and super-category."""

    synset: str
    split: str
    super_category: str
    name: str
    train_images: int | None  # published for train classes only


@dataclass(frozen=True)
class PartInfo:
    """One of the 40 part categories, as listed in the released COCO json."""

    id: int
    name: str
    super_category: str

    @property
    def slot(self) -> str:
        """The generic part name: "Quadruped Head" -> "Head", "Car Side Mirror" -> "Side Mirror"."""
        return self.name[len(self.super_category) + 1 :]

    @property
    def slot_index(self) -> int:
        return PART_SLOTS.index(self.slot)


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("episodes").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def classes() -> tuple[ClassInfo, ...]:
    """The 158 PartImageNet classes, in the packaged table's order."""
    return tuple(
        ClassInfo(
            synset=row["synset"],
            split=row["split"],
            super_category=row["super_category"],
            name=row["imagenet_name"],
            train_images=int(row["train_images"]) if row["train_images"] else None,
        )
        for row in _read_csv("classes.csv")
    )


@cache
def parts() -> tuple[PartInfo, ...]:
    """The 40 part categories, ordered by id (ids are 0..39)."""
    rows = _read_csv("parts.csv")
    return tuple(
        PartInfo(id=int(r["id"]), name=r["name"], super_category=r["supercategory"]) for r in rows
    )


@cache
def class_by_synset() -> dict[str, ClassInfo]:
    return {c.synset: c for c in classes()}


def split_classes(split: str) -> tuple[str, ...]:
    """Synsets of one OOD split ("train", "val" or "test"), in table order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return tuple(c.synset for c in classes() if c.split == split)


def class_splits() -> dict[str, str]:
    """synset -> split, for all 158 classes."""
    return {c.synset: c.split for c in classes()}


def class_super_categories() -> dict[str, str]:
    """synset -> super-category, for all 158 classes."""
    return {c.synset: c.super_category for c in classes()}

"""Infeasible or malformed settings fail when the sampler is built, naming the setting and classes."""

from __future__ import annotations

import pytest

from episodes import EpisodeSampler, EpisodeSettingsError, MetaDatasetProtocol, taxonomy


def labels(per_class: int = 20) -> list[str]:
    return [c.synset for c in taxonomy.classes() for _ in range(per_class)]


def test_n_way_above_the_split_size():
    with pytest.raises(EpisodeSettingsError, match=r"n_way=31 .*only 30 classes.*lower n_way"):
        EpisodeSampler(labels(), seed=0, split="test", n_way=31)


def test_class_with_too_few_images_is_named():
    small = labels() + []
    victim = taxonomy.split_classes("test")[3]
    small = [x for x in small if x != victim] + [victim] * 7
    with pytest.raises(EpisodeSettingsError, match=rf"k_shot \+ n_query = 16.*{victim} \(7\)"):
        EpisodeSampler(small, seed=0, split="test")
    # the same labels are fine for a setting that needs 7 images
    EpisodeSampler(small, seed=0, split="test", k_shot=2, n_query=5)


def test_class_of_the_split_without_images():
    victim = taxonomy.split_classes("val")[0]
    with pytest.raises(EpisodeSettingsError, match=rf"{victim} \(0\)"):
        EpisodeSampler([x for x in labels() if x != victim], seed=0, split="val")


def test_unknown_split_and_mode():
    with pytest.raises(
        EpisodeSettingsError, match=r"unknown split='testing'.*\['test', 'train', 'val'\]"
    ):
        EpisodeSampler(labels(), seed=0, split="testing")
    with pytest.raises(
        EpisodeSettingsError, match=r"unknown mode='fine'.*mixed, within, across, variable"
    ):
        EpisodeSampler(labels(), seed=0, mode="fine")


def test_labels_naming_an_unknown_class():
    with pytest.raises(EpisodeSettingsError, match=r"absent from class_splits: 'n99999999'"):
        EpisodeSampler(labels() + ["n99999999"], seed=0)


def test_within_and_across_infeasible():
    # val: the largest super-category (Quadruped) has 5 classes
    with pytest.raises(EpisodeSettingsError, match=r"mode='within'.*n_way=6.*Quadruped 5"):
        EpisodeSampler(labels(), seed=0, split="val", mode="within", n_way=6)
    # val has 10 super-categories (no Aeroplane)
    with pytest.raises(EpisodeSettingsError, match=r"mode='across'.*n_way=11.*has 10"):
        EpisodeSampler(labels(), seed=0, split="val", mode="across", n_way=11)


def test_own_class_lists_need_super_categories_for_within():
    own = {"a": "mine", "b": "mine", "c": "other"}
    lab = ["a"] * 20 + ["b"] * 20 + ["c"] * 20
    EpisodeSampler(lab, seed=0, split="mine", n_way=2, class_splits=own)  # mixed needs none
    with pytest.raises(EpisodeSettingsError, match=r"super_categories lacks \['a', 'b'\]"):
        EpisodeSampler(lab, seed=0, split="mine", n_way=2, mode="within", class_splits=own)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_way": 0}, "n_way must be an integer >= 1"),
        ({"k_shot": 0}, "k_shot must be an integer >= 1"),
        ({"n_query": -1}, "n_query must be an integer >= 0"),
        ({"k_shot": 1.5}, "k_shot must be an integer"),
        ({"seed": "0"}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"n_episodes": -3}, "n_episodes must be a non-negative integer"),
        ({"n_episodes": "5"}, "n_episodes must be a non-negative integer"),
        ({"mode": "variable", "n_way": 5}, r"mode='variable' draws ways.*remove n_way"),
        ({"protocol": MetaDatasetProtocol()}, "protocol= applies to mode='variable' only"),
        (
            {"mode": "variable", "split": "val", "protocol": MetaDatasetProtocol(min_ways=20)},
            r"min_ways=20 .*only 19 classes",
        ),
    ],
)
def test_bad_settings(kwargs, pattern):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(EpisodeSettingsError, match=pattern):
        EpisodeSampler(labels(), **kwargs)


def test_variable_mode_needs_two_images_per_class():
    victim = taxonomy.split_classes("test")[0]
    lab = [x for x in labels() if x != victim] + [victim]
    with pytest.raises(EpisodeSettingsError, match=rf"mode='variable'.*{victim} \(1\)"):
        EpisodeSampler(lab, seed=0, mode="variable")


def test_variable_episodes_cannot_be_batched():
    sampler = EpisodeSampler(labels(), seed=0, mode="variable")
    with pytest.raises(
        EpisodeSettingsError, match=r"batch\(\)/take\(\) need fixed-shape.*sampler\[i\]"
    ):
        sampler.batch(0, 10)


def test_bad_protocol():
    with pytest.raises(ValueError, match="min_ways <= max_ways"):
        MetaDatasetProtocol(min_ways=10, max_ways=5)

"""Fixed episode files: round trip, hashes, and clear errors on edited or mismatched files."""

from __future__ import annotations

import dataclasses
import json

import pytest

from episodes import (
    EpisodeFileError,
    EpisodeSampler,
    episodes_hash,
    load_episodes,
    save_episodes,
    taxonomy,
)


@pytest.fixture
def sampler() -> EpisodeSampler:
    labels = [c.synset for c in taxonomy.classes() for _ in range(20)]
    return EpisodeSampler(labels, seed=7, split="test", k_shot=2, n_query=3)


def test_round_trip(tmp_path, sampler):
    path = tmp_path / "test.json"
    episodes = sampler.episodes(0, 60)
    written = save_episodes(
        path, episodes, settings=sampler.settings, dataset_fingerprint="twin-abc"
    )
    loaded = load_episodes(path, dataset_fingerprint="twin-abc", settings=sampler.settings)
    assert loaded.episodes == tuple(episodes)
    assert loaded.settings == sampler.settings
    assert loaded.episodes_hash == written.episodes_hash == episodes_hash(episodes)
    assert loaded.content_hash == written.content_hash
    assert len(loaded) == 60
    assert [p.name for p in tmp_path.iterdir()] == ["test.json"]  # no temporary file left


def test_variable_episodes_round_trip(tmp_path):
    labels = [c.synset for c in taxonomy.classes() for _ in range(20)]
    sampler = EpisodeSampler(labels, seed=7, split="train", mode="variable")
    episodes = sampler.episodes(0, 5)
    save_episodes(tmp_path / "v.json", episodes, settings=sampler.settings, dataset_fingerprint="x")
    assert load_episodes(tmp_path / "v.json").episodes == tuple(episodes)


def test_hash_depends_on_content_and_order(sampler):
    eps = sampler.episodes(0, 10)
    assert episodes_hash(eps) != episodes_hash(eps[::-1])
    assert episodes_hash(eps) != episodes_hash(sampler.episodes(1, 11))
    assert episodes_hash(eps) == episodes_hash(iter(eps))
    assert len(episodes_hash(eps)) == 64


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "change, pattern",
    [
        (
            lambda d: d["episodes"][3]["support"][0].__setitem__(0, 1),
            "do not match field 'episodes_hash'",
        ),
        (lambda d: d["episodes"].pop(), "field 'n_episodes' says 20"),
        (lambda d: d["settings"].__setitem__("seed", 8), "field 'content_hash' does not match"),
        (
            lambda d: d.__setitem__("dataset_fingerprint", "other"),
            "field 'content_hash' does not match",
        ),
        (lambda d: d.__setitem__("format_version", 99), "'format_version' is 99"),
        (lambda d: d.__setitem__("format", "coco"), "not a partbench episode file"),
        (lambda d: d.pop("settings"), "field 'settings' is missing"),
        (lambda d: d["episodes"][0].pop("query"), "malformed record in field 'episodes'"),
    ],
)
def test_edited_files_are_refused(tmp_path, sampler, change, pattern):
    path = tmp_path / "e.json"
    save_episodes(
        path, sampler.episodes(0, 20), settings=sampler.settings, dataset_fingerprint="fp"
    )
    _edit(path, change)
    with pytest.raises(EpisodeFileError, match=pattern) as info:
        load_episodes(path)
    assert str(path) in str(info.value)


def test_other_dataset_or_settings_are_refused(tmp_path, sampler):
    path = tmp_path / "e.json"
    save_episodes(
        path, sampler.episodes(0, 5), settings=sampler.settings, dataset_fingerprint="fp-1"
    )
    with pytest.raises(EpisodeFileError, match="made for dataset fingerprint 'fp-1'.*is 'fp-2'"):
        load_episodes(path, dataset_fingerprint="fp-2")
    with pytest.raises(EpisodeFileError, match="settings differ.*n_query: file 3 vs wanted 15"):
        load_episodes(path, settings={**sampler.settings, "n_query": 15})


def test_unreadable_files(tmp_path):
    with pytest.raises(EpisodeFileError, match="episode file .*missing.json: no such file"):
        load_episodes(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EpisodeFileError, match="cannot read"):
        load_episodes(tmp_path / "bad.json")


def test_save_replaces_an_existing_file(tmp_path, sampler):
    path = tmp_path / "e.json"
    save_episodes(path, sampler.episodes(0, 5), settings=sampler.settings, dataset_fingerprint="fp")
    save_episodes(path, sampler.episodes(5, 7), settings=sampler.settings, dataset_fingerprint="fp")
    assert [e.index for e in load_episodes(path).episodes] == [5, 6]
    with pytest.raises(TypeError):
        save_episodes(path, [], settings={"x": object()}, dataset_fingerprint="fp")
    assert [e.index for e in load_episodes(path).episodes] == [5, 6]


# --- meaning: a file edited and re-hashed (save_episodes recomputes both hashes) is still refused

LABELS = [c.synset for c in taxonomy.classes() for _ in range(20)]


def _first_index_of(synset: str, skip: int = 0) -> int:
    return [i for i, label in enumerate(LABELS) if label == synset][skip]


def _swap_ways(e):
    return dataclasses.replace(e, classes=(e.classes[1], e.classes[0], *e.classes[2:]))


def _reuse_support_as_query(e):
    query = ((e.support[0][0], *e.query[0][1:]), *e.query[1:])
    return dataclasses.replace(e, query=query)


def _train_class_as_test(e):
    train = taxonomy.split_classes("train")[0]
    images = tuple(_first_index_of(train, k) for k in range(len(e.support[0])))
    queries = tuple(_first_index_of(train, 10 + k) for k in range(len(e.query[0])))
    return dataclasses.replace(
        e,
        classes=(train, *e.classes[1:]),
        support=(images, *e.support[1:]),
        query=(queries, *e.query[1:]),
    )


def _out_of_range(e):
    return dataclasses.replace(e, query=((10**6, *e.query[0][1:]), *e.query[1:]))


def _other_class_image(e):
    stranger = next(c for c in taxonomy.split_classes("test") if c not in e.classes)
    return dataclasses.replace(
        e, support=((_first_index_of(stranger), *e.support[0][1:]), *e.support[1:])
    )


def _short_support(e):
    return dataclasses.replace(e, support=(e.support[0][:1], *e.support[1:]))


def _relabel_split(e):
    return dataclasses.replace(e, split="val")


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (_swap_ways, r"image \d+ \(support of way 0\) is of class n\d+, not of way 0's class"),
        (
            _reuse_support_as_query,
            r"image \d+ is used twice \(support of way 0 and query of way 0\)",
        ),
        (
            _train_class_as_test,
            r"way 0's class n\d+ belongs to the train split, not to the test split",
        ),
        (_out_of_range, r"image 1000000 \(query of way 0\) is not an image of the dataset"),
        (_other_class_image, r"image \d+ \(support of way 0\) is of class"),
        (_short_support, r"way 0 has 1 support images, but the settings say k_shot=2"),
        (_relabel_split, r"split 'val', but the file's settings say 'test'"),
    ],
)
def test_rehashed_edits_are_refused_by_meaning(tmp_path, sampler, edit, pattern):
    episodes = list(sampler.episodes(0, 6))
    episodes[4] = edit(episodes[4])
    path = tmp_path / "edited.json"
    save_episodes(path, episodes, settings=sampler.settings, dataset_fingerprint="fp")
    load_episodes(path)  # the hashes alone are consistent: only the meaning is wrong
    with pytest.raises(EpisodeFileError, match=pattern) as info:
        load_episodes(path, labels=LABELS)
    assert str(path) in str(info.value) and "episode 4 (entry 4)" in str(info.value)


def test_image_of_another_dataset_split_is_refused(tmp_path, sampler):
    episodes = sampler.episodes(0, 3)
    path = tmp_path / "e.json"
    save_episodes(path, episodes, settings=sampler.settings, dataset_fingerprint="fp")
    image = episodes[1].query[2][0]
    splits = ["test"] * len(LABELS)
    assert len(load_episodes(path, labels=LABELS, image_splits=splits)) == 3
    splits[image] = "train"
    with pytest.raises(
        EpisodeFileError,
        match=rf"episode 1 .*image {image} \(query of way 2\) "
        "belongs to the train split",
    ):
        load_episodes(path, labels=LABELS, image_splits=splits)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('{"format": "partbench-episodes", "format": "x"}', "key 'format' appears twice"),
        ("[" * 5000 + "]" * 5000, "nest deeper than 64 levels"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_ambiguous_or_absurd_json_is_refused(tmp_path, text, pattern):
    path = tmp_path / "e.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(EpisodeFileError, match=pattern):
        load_episodes(path)

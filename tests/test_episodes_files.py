"""Fixed episode files: round trip, hashes, and clear errors on edited or mismatched files."""

from __future__ import annotations

import json

import pytest

from episodes import EpisodeFileError, EpisodeSampler, episodes_hash, load_episodes, save_episodes, taxonomy


@pytest.fixture
def sampler() -> EpisodeSampler:
    labels = [c.synset for c in taxonomy.classes() for _ in range(20)]
    return EpisodeSampler(labels, seed=7, split="test", k_shot=2, n_query=3)


def test_round_trip(tmp_path, sampler):
    path = tmp_path / "test.json"
    episodes = sampler.episodes(0, 60)
    written = save_episodes(path, episodes, settings=sampler.settings, dataset_fingerprint="twin-abc")
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
        (lambda d: d["episodes"][3]["support"][0].__setitem__(0, 1), "do not match field 'episodes_hash'"),
        (lambda d: d["episodes"].pop(), "field 'n_episodes' says 20"),
        (lambda d: d["settings"].__setitem__("seed", 8), "field 'content_hash' does not match"),
        (lambda d: d.__setitem__("dataset_fingerprint", "other"), "field 'content_hash' does not match"),
        (lambda d: d.__setitem__("format_version", 99), "'format_version' is 99"),
        (lambda d: d.__setitem__("format", "coco"), "not a partbench episode file"),
        (lambda d: d.pop("settings"), "field 'settings' is missing"),
        (lambda d: d["episodes"][0].pop("query"), "malformed record in field 'episodes'"),
    ],
)
def test_edited_files_are_refused(tmp_path, sampler, change, pattern):
    path = tmp_path / "e.json"
    save_episodes(path, sampler.episodes(0, 20), settings=sampler.settings, dataset_fingerprint="fp")
    _edit(path, change)
    with pytest.raises(EpisodeFileError, match=pattern) as info:
        load_episodes(path)
    assert str(path) in str(info.value)


def test_other_dataset_or_settings_are_refused(tmp_path, sampler):
    path = tmp_path / "e.json"
    save_episodes(path, sampler.episodes(0, 5), settings=sampler.settings, dataset_fingerprint="fp-1")
    with pytest.raises(EpisodeFileError, match="made for dataset fingerprint 'fp-1'.*is 'fp-2'"):
        load_episodes(path, dataset_fingerprint="fp-2")
    with pytest.raises(EpisodeFileError, match="settings differ.*n_query: file 3 vs wanted 15"):
        load_episodes(path, settings={**sampler.settings, "n_query": 15})


def test_unreadable_files(tmp_path):
    with pytest.raises(EpisodeFileError, match="cannot read"):
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

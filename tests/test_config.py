"""Config files: shipped configs load, overrides win, and bad keys or types are named."""

from pathlib import Path

import pytest

from benchmark.config import ConfigError, config_from_dict, load_config, shipped_configs


def test_every_shipped_config_loads_by_bare_name(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a bare name must work from any folder
    names = shipped_configs()
    assert "5way1shot.yaml" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.learners and cfg.episodes.n_way >= 2


def test_bare_name_without_suffix_and_path_both_resolve(tmp_path):
    by_name = load_config("5way1shot")
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nepisodes: {n_way: 3, k_shot: 2}\n")
    by_path = load_config(path)
    assert by_name.episodes.n_way == 5
    assert (by_path.name, by_path.episodes.n_way, by_path.episodes.k_shot) == ("mine", 3, 2)


def test_overrides_win_and_are_parsed_as_yaml():
    cfg = load_config("5way1shot.yaml", ["episodes.k_shot=5", "backbone.weights=random",
                                          "learners=[protonet, {name: simpleshot}]"])
    assert cfg.episodes.k_shot == 5
    assert cfg.backbone.weights == "random"
    assert [spec.name for spec in cfg.learners] == ["protonet", "simpleshot"]


@pytest.mark.parametrize("raw, message", [
    ({"episodes": {"n_wya": 5}}, "unknown key 'episodes.n_wya' in episodes; valid keys: split, n_way"),
    ({"colour": 1}, "unknown key 'colour' at the top level"),
    ({"episodes": {"n_way": "five"}}, "episodes.n_way: expected an integer, got 'five'"),
    ({"episodes": {"n_way": True}}, "episodes.n_way: expected an integer"),
    ({"episodes": {"n_way": 0}}, "episodes.n_way: must be at least 1"),
    ({"episodes": {"mode": "fine"}}, "episodes.mode: 'fine' is not one of: mixed, within"),
    ({"data": {"source": "partimagenet"}}, "data.root: required when data.source is partimagenet"),
    ({"backbone": {"weights": "file"}}, "backbone.checkpoint: required"),
    ({"learners": [{"nme": "protonet"}]}, "unknown key 'learners[0].nme'"),
    ({"data": 3}, "data: expected a mapping"),
    ({"features": {"part_stage": "first"}}, "features.part_stage: 'first' must be last or the stride"),
    ({"features": {"part_stage": 0}}, "features.part_stage: 0 must be last or the stride"),
    ({"features": {"masks": "grid4"}}, "features.masks: 'grid4' is not one of"),
])
def test_bad_config_names_the_key_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_bad_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("episodes:\n  k_shot: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text("episodes: {kshot: 1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'episodes.kshot'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        load_config(tmp_path / "missing.yaml")


def test_malformed_override_is_refused():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config("5way1shot", ["episodes.n_way"])


def test_part_stage_and_control_masks_parse():
    cfg = config_from_dict({"features": {"part_stage": 16, "dense": True, "masks": "grid3"}})
    assert (cfg.features.part_stage, cfg.features.dense, cfg.features.masks) == (16, True, "grid3")
    assert config_from_dict({}).features.part_stage == "last"


def test_mask_choices_are_the_feature_modes_plus_support_oracle():
    from benchmark.config import CHOICES
    from benchmark.features import MASK_MODES

    assert set(CHOICES["features.masks"]) == {*MASK_MODES, "support-oracle"}

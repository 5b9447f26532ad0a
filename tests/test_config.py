"""Config files: shipped configs load, overrides win, and bad keys or types are named."""

import pytest

from benchmark.config.errors import ConfigError
from benchmark.config.run import config_from_dict, load_config, shipped_configs


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
    cfg = load_config(
        "5way1shot.yaml",
        ["episodes.k_shot=5", "backbone.weights=random", "learners=[protonet, {name: simpleshot}]"],
    )
    assert cfg.episodes.k_shot == 5
    assert cfg.backbone.weights == "random"
    assert [spec.name for spec in cfg.learners] == ["protonet", "simpleshot"]


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"episodes": {"n_wya": 5}},
            "unknown key 'episodes.n_wya' in episodes; valid keys: split, n_way",
        ),
        ({"colour": 1}, "unknown key 'colour' at the top level"),
        ({"episodes": {"n_way": "five"}}, "episodes.n_way: expected an integer, got 'five'"),
        ({"episodes": {"n_way": True}}, "episodes.n_way: expected an integer"),
        ({"episodes": {"n_way": 0}}, "episodes.n_way: must be at least 1"),
        ({"episodes": {"mode": "fine"}}, "episodes.mode: 'fine' is not one of: mixed, within"),
        (
            {"data": {"source": "partimagenet"}},
            "data.root: required when data.source is partimagenet",
        ),
        ({"backbone": {"weights": "file"}}, "backbone.checkpoint: required"),
        ({"learners": [{"nme": "protonet"}]}, "unknown key 'learners[0].nme'"),
        ({"data": 3}, "data: expected a mapping"),
        (
            {"features": {"part_stage": "first"}},
            "features.part_stage: 'first' must be last or the stride",
        ),
        ({"features": {"part_stage": 0}}, "features.part_stage: 0 must be last or the stride"),
        ({"features": {"masks": "grid4"}}, "features.masks: 'grid4' is not one of"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_bad_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("episodes:\n  k_shot: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not a usable YAML config"):
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


def test_mask_choices_are_the_extracted_modes_plus_support_oracle():
    from benchmark.config.features import EXTRACTED_MASK_MODES
    from benchmark.config.run import CHOICES

    assert set(CHOICES["features.masks"]) == {*EXTRACTED_MASK_MODES, "support-oracle"}


# --- issue 10: every bad value or file is one config error at load time ------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"train": {"num_workers": -1}},
            "train.num_workers: must be 0 (load in the main process) or more",
        ),
        ({"features": {"num_workers": -2}}, "features.num_workers: must be 0"),
        ({"train": {"epochs": 0}}, "train.epochs: must be at least 1, got 0"),
        ({"train": {"epochs": -3}}, "train.epochs: must be at least 1, got -3"),
        ({"train": {"part_head_epochs": 0}}, "train.part_head_epochs: must be at least 1"),
        ({"train": {"part_head_epochs": -1}}, "train.part_head_epochs: must be at least 1"),
        ({"train": {"lr": -0.1}}, "train.lr: must be a positive finite number, got -0.1"),
        ({"train": {"lr": 0}}, "train.lr: must be a positive finite number, got 0.0"),
        ({"features": {"device": "gpu"}}, "features.device: 'gpu' is not a device; use auto, cpu"),
        ({"features": {"device": "cuda:x"}}, "features.device: 'cuda:x' is not a device"),
    ],
)
def test_bad_values_are_config_errors(raw, message):
    with pytest.raises(ConfigError, match=None) as err:
        config_from_dict(raw)
    assert message in str(err.value)


def test_cuda_is_refused_where_there_is_none(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ConfigError, match="features.device: 'cuda:0', but this machine has no usable CUDA"
    ):
        config_from_dict({"features": {"device": "cuda:0"}})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"'cuda:3', but this machine has 1 CUDA device"):
        config_from_dict({"features": {"device": "cuda:3"}})
    assert config_from_dict({"features": {"device": "cuda:0"}}).features.device == "cuda:0"


# "billion laughs": 9 levels of 9 aliases each, 9**9 values once expanded, in 300 bytes
BOMB_LEVELS = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
    f"{b}: &{b} [" + ", ".join([f"*{a}"] * 9) + "]" for a, b in zip("abcdefgh", "bcdefghi")
]
BOMB = "".join(level + "\n" for level in BOMB_LEVELS)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"# only a comment\n", "the file is empty"),
        (
            b"name: a\nname: b\n",
            "line 2: key 'name' appears twice in one mapping (first on line 1)",
        ),
        (b"episodes:\n  seed: 1\n  seed: 2\n", "key 'seed' appears twice"),
        (b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9)"),
        (b"name: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
        ((BOMB + "data: {root: *i}\n").encode(), "an alias bomb, not a config"),
        (b"x: &x [1]\n" + b"".join(b"k%d: *x\n" % i for i in range(150)), "more than 100 aliases"),
        (b"a: " + b"[" * 1200 + b"]" * 1200 + b"\n", "nested too deeply"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_an_alias_bomb_in_an_override_or_learner_options_is_refused():
    options = "{" + ", ".join(BOMB_LEVELS) + "}"
    with pytest.raises(ConfigError, match="override 'learners=.*an alias bomb"):
        load_config("5way1shot", ["learners=[{name: protonet, options: " + options + "}]"])


def test_a_merge_key_override_is_not_a_duplicate(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "base: &base {n_way: 5, k_shot: 1}\nepisodes:\n  <<: *base\n  k_shot: 5\n".replace(
            "base: &base", "x: &base"
        )
    )
    with pytest.raises(ConfigError, match="unknown key 'x'"):  # merged fine; x itself is unknown
        load_config(path)


def test_n_episodes_beyond_memory_is_refused_before_anything_runs():
    from benchmark.config.run import check_fits_in_memory

    cfg = config_from_dict({"episodes": {"n_episodes": 1000}, "learners": ["protonet"]})
    check_fits_in_memory(cfg, memory=2**30)
    with pytest.raises(
        ConfigError,
        match=r"episodes.n_episodes: 1000000 episodes x 1 learner\(s\) "
        r"need about .* GiB .* at most about \d+ episodes fit",
    ):
        check_fits_in_memory(config_from_dict({"episodes": {"n_episodes": 10**6}}), memory=2**30)
    with pytest.raises(ConfigError, match="at most about"):
        load_config("5way1shot", ["episodes.n_episodes=100000000000"])

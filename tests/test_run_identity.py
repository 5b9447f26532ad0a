"""A run's identity: what its records depend on, compared on resume with one line per change."""

from __future__ import annotations

import pytest

from benchmark.config.run import config_from_dict
from benchmark.run.identity import (
    RunIdentityError,
    check_config,
    check_content,
    determining_config,
    learner_fingerprint,
    read_identity,
    write_identity,
)


def _cfg(**episodes):
    return config_from_dict({"episodes": {"seed": 0, **episodes}, "learners": ["protonet"]})


def test_speed_and_location_keys_are_not_part_of_the_identity():
    a = determining_config(_cfg())
    b = determining_config(
        config_from_dict(
            {
                "episodes": {"seed": 0, "batch_size": 7, "n_episodes": 9},
                "learners": ["protonet"],
                "features": {"batch_size": 3, "num_workers": 2, "device": "cpu"},
                "name": "other",
                "output_dir": "elsewhere",
                "report": {"confidence": 0.9},
            }
        )
    )
    assert a == b
    assert a["episodes.seed"] == 0 and a["learners"] == [{"name": "protonet", "options": {}}]
    assert "episodes.batch_size" not in a and "report.confidence" not in a


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"episodes": {"seed": 1}}, "episodes.seed: 0 in the run, 1 now"),
        ({"episodes": {"k_shot": 5}}, "episodes.k_shot: 1 in the run, 5 now"),
        ({"backbone": {"weights": "random"}}, "backbone.weights: train in the run, random now"),
        (
            {"learners": [{"name": "protonet", "options": {"distance": "cosine"}}]},
            'learners: [{"name":"protonet","options":{}}] in the run, '
            '[{"name":"protonet","options":{"distance":"cosine"}}] now',
        ),
    ],
)
def test_a_changed_setting_is_named(tmp_path, raw, message):
    write_identity(tmp_path, determining_config(_cfg()), None)
    stored = read_identity(tmp_path)
    now = config_from_dict(
        {"learners": ["protonet"], **raw, "episodes": {"seed": 0, **raw.get("episodes", {})}}
    )
    with pytest.raises(RunIdentityError) as info:
        check_config(stored, now, tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    check_config(stored, _cfg(), tmp_path)  # the same settings resume


def test_changed_content_is_named_and_fingerprints_follow_every_part(tmp_path):
    content = {"dataset.fingerprint": "d1", "backbone.weights_sha256": "w1"}
    write_identity(tmp_path, determining_config(_cfg()), content, wall_time_s=3.5)
    stored = read_identity(tmp_path)
    assert stored["wall_time_s"] == 3.5
    check_content(stored, dict(content), tmp_path)
    with pytest.raises(RunIdentityError, match="backbone.weights_sha256: w1 in the run, w2 now"):
        check_content(stored, {**content, "backbone.weights_sha256": "w2"}, tmp_path)
    learner = {"name": "protonet", "options": {}}
    base = learner_fingerprint(stored["config"], content, learner)
    assert len(base) == 16
    assert base != learner_fingerprint(
        stored["config"], {**content, "dataset.fingerprint": "d2"}, learner
    )
    assert base != learner_fingerprint(stored["config"], content, {**learner, "options": {"x": 1}})
    assert base != learner_fingerprint(determining_config(_cfg(seed=1)), content, learner)


def test_an_edited_identity_file_is_refused(tmp_path):
    (tmp_path / "run.json").write_text('{"format": "partbench-run", "format": "x"}')
    with pytest.raises(RunIdentityError, match="appears twice"):
        read_identity(tmp_path)
    (tmp_path / "run.json").write_text('{"format": "other"}')
    with pytest.raises(RunIdentityError, match="not a partbench run identity"):
        read_identity(tmp_path)
    assert read_identity(tmp_path / "nowhere") is None

"""A learner's output is untrusted input: what a user sees when a plugin returns NaN, the wrong
shape or numpy, raises mid-run, exits the interpreter, or fine-tunes the shared backbone; a
learner listed twice; resumes that would mix episodes or seeds; a variable-way run's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from benchmark.__main__ import main
from benchmark.evaluation.guard import LearnerFailure, checked_scores
from benchmark.evaluation.image_learners import UnchangedBackbone
from results.records import read_records

PLUGINS = '''
import sys
import numpy as np
import torch
from baselines import ImageLearner, Learner


class Scores(Learner):
    """Zeros of the episodes' shape, or what `bad` makes of them."""
    name = "scores"
    calls = 0

    def fit(self, support, labels, n_way):
        self.n_way = n_way
        return self

    def zeros(self, query, extra=0):
        return torch.zeros(*query.embeddings.shape[:2], self.n_way + extra)


class AllNaN(Scores):
    def predict(self, query):
        return self.zeros(query) * float("nan")


class OneNaNWay(Scores):
    def predict(self, query):
        scores = self.zeros(query)
        scores[..., 2] = float("nan")
        return scores


class ExtraWay(Scores):
    def predict(self, query):
        return self.zeros(query, extra=1)


class NumpyScores(Scores):
    def predict(self, query):
        return self.zeros(query).numpy()


class RaisesOnThirdBatch(Scores):
    def predict(self, query):
        type(self).calls += 1
        if type(self).calls == 3:
            raise RuntimeError("out of ideas")
        return self.zeros(query)


class ExitsInPredict(Scores):
    def predict(self, query):
        sys.exit(0)


class TrainsInPlace(ImageLearner):
    """Shifts the shared backbone's first weight: what a careless fine-tuner does."""
    name = "trains_in_place"

    def fit(self, support, labels, n_way, backbone, masks=None):
        self.n_way = n_way
        with torch.no_grad():
            next(backbone.parameters()).add_(1.0)
        return self

    def predict(self, query):
        return torch.zeros(len(query), self.n_way)
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> str:
    """The module name of the plugin learners above, importable for this test."""
    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "hostile_learners.py").write_text(PLUGINS)
    (tmp_path / "plugs" / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugs"))
    return "hostile_learners"


def run(config: dict, tmp_path: Path, *extra: str) -> tuple[int, Path]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    return main(["run", "--quiet", "--config", str(path), "--out", str(out), *extra]), out


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "plugin, says",
    [
        ("AllNaN", "600 non-finite score(s)"),
        ("OneNaNWay", "120 non-finite score(s) (NaN or inf) of 600"),
        ("ExtraWay", "shape (8, 15, 6), expected a finite real torch.Tensor of shape (8, 15, 5)"),
        ("NumpyScores", "predict() returned ndarray"),
    ],
)
def test_unusable_scores_stop_the_learner_and_publish_nothing(
    plugin, says, plugins, tiny_run_config, tmp_path, capsys
):
    config = dict(tiny_run_config, learners=["protonet", f"{plugins}:{plugin}"])
    config["episodes"] = dict(config["episodes"], n_query=3)
    code, out = run(config, tmp_path)
    line = error_line(capsys)
    assert code == 2
    assert f"learner '{plugins}:{plugin}' at episodes 0-7" in line and says in line
    assert not (out / "result.json").exists()  # nothing published
    kept = read_records(out / "records.jsonl")
    assert set(kept["learner"]) == {"protonet"} and len(kept) == 40  # the finished learner stays


@pytest.mark.slow
def test_a_plugin_that_raises_mid_run_is_one_line_and_keeps_its_finished_episodes(
    plugins, tiny_run_config, tmp_path, capsys
):
    config = dict(tiny_run_config, learners=[f"{plugins}:RaisesOnThirdBatch"])
    code, out = run(config, tmp_path)
    line = error_line(capsys)
    assert code == 2
    assert "raised RuntimeError: out of ideas at episodes 16-23" in line
    assert str(out / "records.jsonl") in line and "--resume" in line
    assert sorted(read_records(out / "records.jsonl")["episode"]) == list(range(16))
    assert not (out / "result.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, says",
    [
        ("exits_on_import:Anything", "importing 'exits_on_import' failed: SystemExit"),
        ("hostile_learners:ExitsInPredict", "raised SystemExit: 0 at episodes 0-7"),
    ],
)
def test_a_plugin_that_exits_the_interpreter_cannot_end_the_run_silently(
    spec, says, plugins, tiny_run_config, tmp_path, capsys
):
    code, out = run(dict(tiny_run_config, learners=[spec]), tmp_path)
    assert code == 2 and says in error_line(capsys)
    assert not (out / "result.json").exists()


def test_score_checks_name_the_learner_and_episodes():
    good = torch.zeros(2, 3, 5)
    assert checked_scores(good, (2, 3, 5), "mine", [4, 5]) is good
    assert checked_scores(torch.zeros(2, 3, 5, dtype=torch.int64), (2, 3, 5), "m", [0]) is not None
    for bad, says in [
        (torch.zeros(2, 3, 4), "shape (2, 3, 4)"),
        (torch.zeros(2, 3, 5, dtype=torch.bool), "torch.bool"),
        (torch.full((2, 3, 5), float("inf")), "30 non-finite"),
        ([[0.0] * 5] * 3, "returned list"),
    ]:
        with pytest.raises(LearnerFailure, match="learner 'mine' at episodes 4-5") as caught:
            checked_scores(bad, (2, 3, 5), "mine", [4, 5])
        assert says in str(caught.value)


def test_a_backbone_changed_in_place_is_refused_and_put_back():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    guard = UnchangedBackbone(net)
    net.train()
    guard.check("careful", 0)  # mode is put back silently: no weight moved
    assert not net.training
    net(torch.randn(2, 3, 8, 8))  # an eval forward moves no statistic
    guard.check("careful", 1)
    net.train()
    net(torch.randn(2, 3, 8, 8))  # a train-mode forward moves BatchNorm's running statistics
    with pytest.raises(
        LearnerFailure, match=r"'careless' changed the shared backbone .* episode 2"
    ):
        guard.check("careless", 2)
    # the next learner sees the backbone as the run loaded it
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


@pytest.mark.slow
def test_an_image_learner_that_trains_the_shared_backbone_stops_the_run(
    plugins, tiny_run_config, tmp_path, capsys
):
    config = dict(tiny_run_config, learners=["protonet", f"{plugins}:TrainsInPlace"])
    config["episodes"] = dict(config["episodes"], n_episodes=4)
    code, out = run(config, tmp_path)
    line = error_line(capsys)
    assert code == 2 and "changed the shared backbone in place at episode 0" in line
    assert set(read_records(out / "records.jsonl")["learner"]) == {"protonet"}


@pytest.mark.slow
def test_a_learner_listed_twice_gets_a_row_per_copy(tiny_run_config, tmp_path, capsys):
    twice = [
        {"name": "logreg", "options": {"steps": 1}},
        {"name": "logreg", "options": {"steps": 30}},
        {"name": "logreg", "label": "logreg_long", "options": {"steps": 60}},
    ]
    code, out = run(dict(tiny_run_config, learners=twice), tmp_path)
    assert code == 0
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    labels = sorted(metrics)
    assert len(labels) == 3 and "logreg_long" in labels
    assert all(label.startswith("logreg@") for label in labels if label != "logreg_long")
    assert (
        main(["validate", str(out / "result.json"), "--records", str(out / "records.jsonl")]) == 0
    )
    # the labels are in the run's config.yaml: a resume keys the copies the same way
    capsys.readouterr()
    assert main(["run", "--quiet", "--resume", str(out)]) == 0


def test_the_same_learner_twice_with_the_same_options_is_refused(tiny_run_config, tmp_path, capsys):
    code, _ = run(dict(tiny_run_config, learners=["protonet", "protonet"]), tmp_path)
    line = error_line(capsys)
    assert code == 2 and "learners[1]" in line and "label" in line


@pytest.mark.slow
def test_resuming_with_fewer_episodes_or_other_seeds_is_refused(tiny_run_config, tmp_path, capsys):
    config = dict(tiny_run_config, learners=["protonet"])
    config["episodes"] = dict(config["episodes"], n_episodes=16)
    code, out = run(config, tmp_path, "--seeds", "0,1")
    assert code == 0
    capsys.readouterr()
    assert main(["run", "--quiet", "--resume", str(out), "--seeds", "0,2"]) == 2
    assert "started with seeds [0, 1], not [0, 2]" in error_line(capsys)
    assert not (out / "seed-2").exists()
    fewer = ["run", "--quiet", "--resume", str(out), "--set", "episodes.n_episodes=8"]
    assert main(fewer) == 2
    assert "no longer draws" in error_line(capsys)
    assert main(["run", "--quiet", "--resume", str(out)]) == 0


@pytest.mark.slow
def test_a_variable_way_run_has_one_row_per_learner_as_its_result_file(
    tiny_run_config, tmp_path, capsys
):
    config = dict(tiny_run_config, learners=["protonet", "simpleshot"])
    config["episodes"] = dict(config["episodes"], mode="variable")
    code, out = run(config, tmp_path)
    assert code == 0
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    tables = out / "tables"
    accuracy = (tables / "accuracy.csv").read_text().strip().splitlines()
    assert len(accuracy) == 1 + 2  # header and one row per learner, not one per way count
    for learner, values in metrics.items():
        row = next(line for line in accuracy if f",{learner}," in line)
        assert f"{values['accuracy']:.2f}" in row
    paired = (tables / "paired.csv").read_text().strip().splitlines()
    assert len(paired) == 2 and ",simpleshot,protonet,40," in paired[1]


SLOW_PLUGIN = '''
import time
import torch
from baselines import Learner


class SlowThenDies(Learner):
    """0.2 s per call; the third call dies (as a kill would), later calls work."""
    name = "slow"
    calls = 0

    def fit(self, support, labels, n_way):
        self.n_way = n_way
        return self

    def predict(self, query):
        type(self).calls += 1
        if type(self).calls == 3:
            raise RuntimeError("killed")
        time.sleep(0.2)
        return torch.zeros(*query.embeddings.shape[:2], self.n_way)
'''


@pytest.mark.slow
def test_learner_time_and_wall_time_survive_a_kill(tiny_run_config, tmp_path, monkeypatch, capsys):
    from benchmark.run import folder

    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "slow_learner.py").write_text(SLOW_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugs"))
    monkeypatch.setattr(folder, "SAVE_TIMES_EVERY_S", 0.0)
    # a kill: the process ends without closing its run folder (no final write of run.json)
    monkeypatch.setattr(folder.RunFolder, "close", lambda self: self.writer.close())
    code, out = run(dict(tiny_run_config, learners=["slow_learner:SlowThenDies"]), tmp_path)
    assert code == 2
    first = json.loads((out / "run.json").read_text())
    assert first["learner_time_s"]["slow_learner:SlowThenDies"] >= 0.4  # two calls before it died
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(tmp_path / "plugs"))
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    # 2 calls before the kill and 3 after: 5 x 0.2 s, not only the resumed session's 0.6 s
    assert result["learner_time_s"]["slow_learner:SlowThenDies"] >= 1.0
    assert result["wall_time_s"] > first["wall_time_s"] >= 0.4


def test_a_plugin_origin_names_the_versions_of_its_dependencies():
    from easyfsl.methods import PrototypicalNetworks

    from baselines.plugins import learner_origin

    origin = learner_origin("easyfsl.methods:PrototypicalNetworks", PrototypicalNetworks)
    assert origin["kind"] == "module" and origin["distribution"] == "easyfsl"
    assert origin["dependencies"]["torch"] == torch.__version__.split("+")[0]
    assert "dependencies" not in learner_origin("protonet", type(_builtin()))


def _builtin():
    from baselines import get_learner

    return get_learner("protonet")


def test_part_shares_are_checked_like_scores():
    from benchmark.evaluation.guard import checked_contributions

    shares = torch.zeros(2, 13)
    assert checked_contributions(shares, 2, "mine", [0, 1]) is shares
    assert checked_contributions(None, 2, "mine", [0, 1]) is None
    for bad, says in [
        (torch.zeros(3, 13), "(3, 13)"),
        (torch.zeros(2), "(2,)"),
        ([0.0] * 13, "list"),
        (torch.full((2, 13), float("nan")), "non-finite"),
    ]:
        with pytest.raises(LearnerFailure, match="learner 'mine' at episodes 0-1") as caught:
            checked_contributions(bad, 2, "mine", [0, 1])
        assert says in str(caught.value)

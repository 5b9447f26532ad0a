"""The command line: list, run, report, validate and leaderboard, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmark.__main__ import main


@pytest.fixture
def two_runs(tiny_run_config, tmp_path) -> list[Path]:
    """A 1-shot and a 2-shot run of the tiny config, made through the CLI."""
    runs = []
    for shots in (1, 2):
        raw = dict(
            tiny_run_config,
            name=f"tiny{shots}",
            episodes=dict(tiny_run_config["episodes"], k_shot=shots, n_query=2),
        )
        config = tmp_path / f"tiny{shots}.yaml"
        config.write_text(yaml.safe_dump(raw))
        out = tmp_path / f"run{shots}"
        assert main(["run", "--quiet", "--config", str(config), "--out", str(out)]) == 0
        runs.append(out)
    return runs


def test_list_names_every_learner_and_shipped_config(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "protonet",
        "part_protonet",
        "simpleshot",
        "logreg",
        "maml",
        "random",
        "bd_cspn",
        "laplacianshot",
        "tim",
        "pt_map",
    ):
        assert f"  {name} " in out
    assert "5way1shot.yaml" in out and "5way5shot.yaml" in out


@pytest.mark.slow  # two tiny runs
def test_report_validate_and_leaderboard_over_two_runs(two_runs, tmp_path, capsys):
    report = tmp_path / "report"
    assert (
        main(["report", *map(str, two_runs), "--out", str(report), "--baseline", "protonet"]) == 0
    )
    assert (report / "accuracy_vs_shots.png").stat().st_size > 5_000
    accuracy = (report / "accuracy.csv").read_text()
    assert accuracy.count("protonet") >= 4  # 2 learners x 2 runs

    results = [str(run / "result.json") for run in two_runs]
    records = [str(run / "records.jsonl") for run in two_runs]
    capsys.readouterr()
    assert main(["validate", *results, "--records", *records]) == 0
    assert "2 of 2 result files valid" in capsys.readouterr().out

    assert main(["leaderboard", str(tmp_path), "--out", str(tmp_path / "board")]) == 0
    # one table per setting and annotation protocol: protonet sees none, oracle part pooling all
    tables = sorted(path.stem for path in (tmp_path / "board").glob("*.csv"))
    assert len(tables) == 4
    assert sum(stem.endswith("_annotations-all") for stem in tables) == 2
    assert {stem.split("_")[3] for stem in tables} == {"1shot", "2shot"}

    tampered = json.loads(Path(results[0]).read_text())
    tampered["metrics"]["protonet"]["accuracy"] += 5
    Path(results[0]).write_text(json.dumps(tampered))
    capsys.readouterr()
    assert main(["validate", results[0]]) == 1
    assert "metrics.protonet" in capsys.readouterr().out


def test_bad_config_is_a_one_line_error_not_a_traceback(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("episodes: {n_wya: 5}\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "episodes.n_wya" in err and "Traceback" not in err

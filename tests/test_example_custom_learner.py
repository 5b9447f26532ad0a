"""The example outside package (examples/custom_learner) end to end, by both routes:

- its feature learner through `python -m benchmark run`, found by entry point (a dist-info made
  in a temporary folder from the example's own pyproject, so importlib.metadata finds it; the
  user's environment is never touched) and by `module:Class` path;
- its own loop over an episode file, scored into a result file.
Both end in a result file that `validate --records` accepts.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from benchmark.__main__ import main
from results.cli import validate_main
from results.schema import read_result

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_learner"


def install_by_hand(site: Path, project: Path, entry_points: dict[str, str] | None = None) -> dict:
    """Copy `project`'s package into `site` with a dist-info whose entry_points.txt is the
    pyproject's (or `entry_points`): what `pip install --target site` would leave."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    for package in tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]:
        shutil.copytree(project / package, site / package)
    points = entry_points or meta["entry-points"]["partbench.learners"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    (info / "entry_points.txt").write_text(
        "[partbench.learners]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
    )
    (info / "top_level.txt").write_text("partbench_example\n")
    return meta


def run_config(tiny_run_config, tmp_path, learners) -> Path:
    config = tmp_path / "plugin.yaml"
    config.write_text(
        yaml.safe_dump(
            dict(
                tiny_run_config,
                learners=learners,
                episodes=dict(tiny_run_config["episodes"], n_episodes=16),
            )
        )
    )
    return config


def test_plugin_learner_runs_by_entry_point_and_by_path(
    tiny_run_config, tmp_path, monkeypatch, capsys
):
    site = tmp_path / "site"
    meta = install_by_hand(site, EXAMPLE)
    monkeypatch.syspath_prepend(str(site))
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "example_nn" in listed and "partbench-example-learner 0.1.0" in listed
    config = run_config(
        tiny_run_config,
        tmp_path,
        ["protonet", "example_nn", "partbench_example.learners:NearestNeighbour"],
    )
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--config", str(config), "--out", str(out)]) == 0
    result = read_result(out / "result.json")
    by_entry_point = result["metrics"]["example_nn"]
    by_path = result["metrics"]["partbench_example.learners:NearestNeighbour"]
    assert (
        by_entry_point["accuracy"] == by_path["accuracy"] > 20.0
    )  # the same learner, above chance
    assert validate_main([out / "result.json"], records=[out / "records.jsonl"]) == 0
    origin = by_entry_point.get("origin")
    if origin is not None:  # written by runners that record learner origins
        assert origin["kind"] == "entry-point" and origin["distribution"] == meta["name"]
        assert origin["version"] == meta["version"] and re.fullmatch(
            "[0-9a-f]{64}", origin["source_sha256"]
        )
        assert by_path["origin"]["kind"] == "module"
        assert result["metrics"]["protonet"]["origin"]["kind"] == "builtin"


@pytest.mark.parametrize(
    "spec, points, message",
    [
        (
            "broken_nn",
            {"broken_nn": "partbench_example.nowhere:X"},
            "no module named 'partbench_example.nowhere'",
        ),
        (
            "not_a_learner",
            {"not_a_learner": "partbench_example.own_loop:histogram"},
            "is not a concrete subclass of baselines.Learner",
        ),
        ("partbench_example.learners:Nothing", None, "has no attribute 'Nothing'"),
    ],
)
def test_a_plugin_that_cannot_load_is_one_line_naming_the_spec(
    tiny_run_config, tmp_path, monkeypatch, capsys, spec, points, message
):
    site = tmp_path / "site"
    install_by_hand(site, EXAMPLE, points)
    monkeypatch.syspath_prepend(str(site))
    config = run_config(tiny_run_config, tmp_path, ["protonet", spec])
    assert main(["run", "--quiet", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1
    assert f"learner {spec!r}" in errors[0] and message in errors[0]


def test_own_loop_example_scores_into_a_valid_result(tiny_run_config, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from partbench_example import own_loop

    config = run_config(tiny_run_config, tmp_path, ["protonet"])
    episodes = tmp_path / "E.json"
    assert main(["episodes", "--config", str(config), "--out", str(episodes), "--names"]) == 0
    # --root defaults to the folder the names file was written from
    path = own_loop.main([str(episodes), "--out", str(tmp_path / "scored")])
    result = read_result(path)
    assert result["metrics"]["colour_histogram"]["n_episodes"] == 16
    assert result["weights"]["saw_test_classes"] is False
    assert validate_main([path], records=[tmp_path / "scored" / "records.jsonl"]) == 0
    lines = (tmp_path / "scored" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["episode"] for line in lines] == list(range(16))

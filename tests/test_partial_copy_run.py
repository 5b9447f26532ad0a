"""A train+val-only copy of the release (as VLPart's or PartGLEE's instructions leave it) runs val
episodes end to end through the command line, and a run that needs test says exactly what is
missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.__main__ import main

pytestmark = pytest.mark.slow


@pytest.fixture
def train_val_copy(tiny_twin_root, tmp_path) -> Path:
    """The tiny twin with train and val only, unpacked on macOS under a wrapping folder."""
    root = tmp_path / "download"
    base = root / "PartImageNet"
    base.mkdir(parents=True)
    for split in ("train", "val"):
        (base / split).symlink_to(tiny_twin_root / split, target_is_directory=True)
        shutil.copyfile(tiny_twin_root / f"{split}.json", base / f"{split}.json")
    (root / "__MACOSX" / "PartImageNet").mkdir(parents=True)
    (root / "__MACOSX" / "PartImageNet" / "._train.json").write_bytes(b"\0\5\26\7")
    return root


@pytest.fixture
def config(train_val_copy, tiny_run_config, tmp_path) -> Path:
    raw = dict(
        tiny_run_config,
        name="trainval",
        data={"source": "partimagenet", "root": str(train_val_copy)},
        episodes=dict(tiny_run_config["episodes"], n_episodes=8, n_query=2),
        learners=["protonet", "simpleshot"],
    )  # simpleshot prepares on train features
    path = tmp_path / "trainval.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_train_val_copy_runs_val_episodes_end_to_end(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--quiet",
                "--config",
                str(config),
                "--set",
                "episodes.split=val",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    assert result["setting"]["split"] == "val"
    assert set(result["metrics"]) == {"protonet", "simpleshot"}
    n_train_val = sum(
        len(
            json.loads(
                (Path(config).parent / "download" / "PartImageNet" / f"{s}.json").read_text()
            )["images"]
        )
        for s in ("train", "val")
    )
    assert result["dataset"]["n_images"] == n_train_val  # no test split was needed or loaded
    capsys.readouterr()
    assert main(["validate", str(out / "result.json")]) == 0


def test_a_run_on_the_test_split_names_what_is_missing(config, tmp_path, capsys):
    assert main(["run", "--quiet", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in errors[0]  # one line, no traceback
    assert "test/ and test.json are missing; this run evaluates on the test split" in errors[0]

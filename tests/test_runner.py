"""End to end: `run` on a tiny twin writes records, tables, plots and a valid result file; a run
stopped by a fault or a SIGKILL resumes to exactly the records of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import benchmark
from benchmark.config.errors import ConfigError
from benchmark.config.run import config_from_dict
from benchmark.evaluation import feature_learners as evaluate
from benchmark.run import orchestrator as runner
from benchmark.run.folder import load_run_config
from episodes import load_episodes
from results.records import read_records
from results.schema import validate_result_file

REPO = Path(__file__).resolve().parent.parent


def _records(run_dir: Path, *, fingerprint: bool = True) -> list[dict]:
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row.pop("run_id")
        row.pop("checksum")  # covers the run_id
        if not fingerprint:
            row.pop("fingerprint")
    return sorted(rows, key=lambda r: (r["learner"], r["episode"]))


@pytest.mark.slow
def test_run_writes_every_output_and_a_valid_result(tiny_run_config, tmp_path, capsys):
    cfg = config_from_dict(tiny_run_config)
    produced = benchmark.run_benchmark(cfg, run_dir=tmp_path / "run", progress=False)
    run_dir = produced.run_dir
    # the run ends with its wall time per step
    assert re.search(
        r"wall time per step: twin [\d.]+ s, (backbone|training) [\d.]+ s, "
        r"features [\d.]+ s, episodes [\d.]+ s, report [\d.]+ s \(total [\d.]+ s\)",
        capsys.readouterr().err,
    )

    records = read_records(run_dir / "records.jsonl")
    # the programmatic entry point returns what it wrote
    assert produced.result == json.loads((run_dir / "result.json").read_text())
    assert produced.records.equals(records)
    assert produced.tables["accuracy"].shape[0] == 2
    assert sorted(records.groupby("learner")["episode"].nunique().items()) == [
        ("part_protonet", 40),
        ("protonet", 40),
    ]
    assert (records["total"] == 15).all()
    assert validate_result_file(run_dir / "result.json", records=records) == []
    result = json.loads((run_dir / "result.json").read_text())
    # the evaluated episodes are those of the public sampler, hashed independently of the runner
    from benchmark.data.partimagenet import load_partimagenet
    from episodes import EpisodeSampler, episodes_hash

    labels = load_partimagenet(tiny_run_config["data"]["root"]).labels
    sampler = EpisodeSampler(labels, seed=0, split="test", n_way=5, k_shot=1, n_query=3)
    expected = episodes_hash(sampler[i] for i in range(40))
    assert result["episodes"] == {"hash": expected, "requested": 40, "run": 40}
    assert result["weights"]["saw_test_classes"] is False
    assert result["setting"]["split"] == "test"
    for name in ("accuracy", "super_category", "per_class", "part_contributions", "paired"):
        assert (run_dir / "tables" / f"{name}.csv").is_file()
        assert (run_dir / "tables" / f"{name}.md").is_file()
    assert (run_dir / "plots" / "episode_0.png").stat().st_size > 10_000
    assert list((run_dir / "plots").glob("super_category_*.png"))
    # the run folder carries its resolved config, which loads back to the same settings
    again = load_run_config(run_dir, [])
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.slow
def test_a_fault_keeps_finished_episodes_and_resume_completes_them(
    tiny_run_config, tmp_path, monkeypatch
):
    cfg = config_from_dict(tiny_run_config)
    reference = runner.run(cfg, run_dir=tmp_path / "reference", progress=False)

    real = evaluate.predict_batch
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash mid-run")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "predict_batch", failing)
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated crash"):
        runner.run(cfg, run_dir=broken, progress=False)
    kept = _records(broken)
    assert len(kept) == 3 * 8  # the three finished batches of 8 episodes survive the fault
    assert not (broken / "result.json").exists()

    monkeypatch.setattr(evaluate, "predict_batch", real)
    runner.run(load_run_config(broken, []), run_dir=broken, resume=True, progress=False)
    assert _records(broken) == _records(reference)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tiny_run_config, tmp_path):
    raw = dict(tiny_run_config, learners=["protonet"])
    raw["episodes"] = dict(raw["episodes"], n_episodes=3000, batch_size=1)
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "benchmark", "run", "--quiet"]
    proc = subprocess.Popen(
        [*command, "--config", str(config), "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    records = killed / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if records.is_file() and records.stat().st_size > 20_000:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(records.read_text().splitlines())
    assert 0 < done_before < 3000, proc.stderr.read().decode()[-2000:]

    resumed = subprocess.run(
        [*command, "--resume", str(killed)], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    fresh = runner.run(config_from_dict(raw), run_dir=tmp_path / "fresh", progress=False)
    assert _records(killed) == _records(fresh)


@pytest.mark.slow
def test_fixed_episode_file_gives_the_same_episodes_as_the_sampler(tiny_run_config, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config))
    episode_file = tmp_path / "tiny.episodes.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "episodes",
            "--config",
            str(config),
            "--out",
            str(episode_file),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    frozen = load_episodes(episode_file)
    assert made.stdout == (
        f"{len(frozen)} episodes written to {episode_file} (episodes hash {frozen.episodes_hash})\n"
    )

    sampled = runner.run(
        config_from_dict(tiny_run_config), run_dir=tmp_path / "sampled", progress=False
    )
    raw = dict(tiny_run_config, episodes=dict(tiny_run_config["episodes"], file=str(episode_file)))
    fixed = runner.run(config_from_dict(raw), run_dir=tmp_path / "fixed", progress=False)
    # the same episodes, but two settings (a file and a sampler): two run fingerprints
    assert _records(fixed, fingerprint=False) == _records(sampled, fingerprint=False)
    hashes = [
        json.loads((d / "result.json").read_text())["episodes"]["hash"] for d in (sampled, fixed)
    ]
    assert hashes[0] == hashes[1]


def test_episode_file_from_other_data_is_refused(tiny_run_config, tmp_path):
    from episodes import save_episodes
    from episodes.episode import Episode

    episode_file = tmp_path / "other.json"
    save_episodes(
        episode_file,
        [Episode(0, "test", ("n01440764",), ((0,),), ((1,),))],
        settings={"mode": "mixed"},
        dataset_fingerprint="not-this-dataset",
    )
    raw = dict(tiny_run_config, episodes=dict(tiny_run_config["episodes"], file=str(episode_file)))
    with pytest.raises(ConfigError, match="episodes.file"):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)


def test_infeasible_episode_setting_names_the_config_key(tiny_run_config, tmp_path):
    raw = dict(tiny_run_config, episodes=dict(tiny_run_config["episodes"], k_shot=5, n_query=5))
    with pytest.raises(ConfigError, match="episodes:.*k_shot"):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)


def test_unknown_learner_is_named_with_a_suggestion(tiny_run_config, tmp_path):
    raw = dict(tiny_run_config, learners=["protonett"])
    with pytest.raises(ConfigError, match="did you mean 'protonet'"):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)


@pytest.mark.slow
def test_variable_way_variable_shot_episodes_run_one_by_one(tiny_run_config, tmp_path):
    raw = dict(
        tiny_run_config, learners=["protonet"], episodes={"mode": "variable", "n_episodes": 6}
    )
    run_dir = runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)
    records = read_records(run_dir / "records.jsonl")
    assert len(records) == 6
    assert records["k_shot"].isna().all() and records["n_query"].isna().all()
    assert records["n_way"].between(5, 30).all() and records["n_way"].nunique() > 1
    assert validate_result_file(run_dir / "result.json", records=records) == []


def test_part_learner_without_part_masks_is_a_config_error(tiny_run_config, tmp_path):
    raw = dict(tiny_run_config, features={"masks": "none"})
    with pytest.raises(ConfigError, match="features.masks is none"):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)


@pytest.mark.slow
def test_torchrun_two_processes_give_the_records_of_one(tiny_run_config, tmp_path):
    raw = dict(tiny_run_config, learners=["protonet", "simpleshot"])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    two = tmp_path / "two"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "benchmark",
            "run",
            "--quiet",
            "--config",
            str(config),
            "--out",
            str(two),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = runner.run(config_from_dict(raw), run_dir=tmp_path / "one", progress=False)
    assert _records(two) == _records(one)
    # the 2-process run sharded extraction: both shards went into one cache entry per feature set
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2


@pytest.mark.slow
def test_weights_train_trains_once_on_the_train_split_and_reuses_the_checkpoint(
    tiny_run_config, tmp_path
):
    raw = dict(
        tiny_run_config,
        learners=["protonet"],
        backbone=dict(tiny_run_config["backbone"], weights="train"),
        train={"epochs": 1, "batch_size": 32, "val_episodes": 4, "val_k_shot": 1, "val_n_query": 2},
        episodes=dict(tiny_run_config["episodes"], n_episodes=8),
    )
    first = runner.run(config_from_dict(raw), run_dir=tmp_path / "first", progress=False)
    checkpoints = list((tmp_path / "cache" / "checkpoints").glob("*/best.pt"))
    assert len(checkpoints) == 1
    made = checkpoints[0].stat().st_mtime_ns
    weights = json.loads((first / "result.json").read_text())["weights"]
    assert weights["provenance"] == "train" and weights["saw_test_classes"] is False
    assert weights["checkpoint"] == "best.pt" and len(weights["sha256"]) == 64

    second = runner.run(config_from_dict(raw), run_dir=tmp_path / "second", progress=False)
    assert checkpoints[0].stat().st_mtime_ns == made  # reused, not retrained
    assert _records(second) == _records(first)


def test_val_episodes_the_data_cannot_hold_are_a_config_error(tiny_run_config, tmp_path):
    raw = dict(
        tiny_run_config,
        backbone=dict(tiny_run_config["backbone"], weights="train"),
        train={"epochs": 1, "val_k_shot": 5, "val_n_query": 10},
    )
    with pytest.raises(ConfigError, match="train.val_k_shot/train.val_n_query"):
        runner.run(config_from_dict(raw), run_dir=tmp_path / "run", progress=False)

"""A run folder cannot publish a wrong number: resumes with other settings, runs onto a run, a
second writer, records of another setting and a failed start are refused or cleaned up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TINY_TWIN

from benchmark.__main__ import main
from benchmark.config.errors import ConfigError
from benchmark.config.run import config_from_dict
from benchmark.evaluation import feature_learners as evaluate
from benchmark.run import orchestrator as runner
from benchmark.run.folder import load_run_config
from results.records import RecordWriter, record_line

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tiny_twin_root, tmp_path_factory) -> tuple[dict, Path]:
    """A finished tiny run (protonet, 16 episodes) and its raw config, made once."""
    base = tmp_path_factory.mktemp("finished")
    raw = {
        "name": "tiny",
        "output_dir": str(base / "outputs"),
        "cache_dir": str(base / "cache"),
        "data": {"source": "synthetic", "root": str(tiny_twin_root), "synthetic": TINY_TWIN},
        "backbone": {"name": "resnet10t", "weights": "random", "image_size": 32},
        "episodes": {"n_way": 5, "k_shot": 1, "n_query": 3, "n_episodes": 16, "batch_size": 8},
        "learners": ["protonet"],
    }
    run_dir = runner.run(config_from_dict(raw), run_dir=base / "run", progress=False)
    return raw, run_dir


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished[1], copy)
    return copy


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("episodes.seed=1", "episodes.seed: 0 in the run, 1 now"),
        ("episodes.k_shot=2", "episodes.k_shot: 1 in the run, 2 now"),
        ("backbone.weights=hub", "backbone.weights: random in the run, hub now"),
        ("learners=[protonet, {name: part_protonet, options: {normalize: none}}]", "learners: "),
    ],
)
def test_resume_with_another_setting_is_refused_and_changes_nothing(
    run_copy, capsys, override, message
):
    before = _snapshot(run_copy)
    assert main(["run", "--quiet", "--resume", str(run_copy), "--set", override]) == 2
    line = _one_line(capsys)
    assert message in line and "records would mix two settings" in line
    assert _snapshot(run_copy) == before


def test_an_edited_config_yaml_is_refused(run_copy, capsys):
    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["episodes"]["n_query"] = 2
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--quiet", "--resume", str(run_copy)]) == 2
    assert "episodes.n_query: 3 in the run, 2 now" in _one_line(capsys)


def test_resume_may_change_speed_settings_and_extend_the_run(run_copy):
    cfg = load_run_config(run_copy, ["episodes.batch_size=4", "episodes.n_episodes=20"])
    runner.run(cfg, run_dir=run_copy, resume=True, progress=False)
    result = json.loads((run_copy / "result.json").read_text())
    assert result["episodes"]["run"] == 20 and result["episodes"]["requested"] == 20


def test_an_episode_file_changed_behind_the_same_path_is_refused(finished, tmp_path, capsys):
    from benchmark.data.partimagenet import load_partimagenet
    from episodes import EpisodeSampler, save_episodes

    raw, _ = finished
    dataset = load_partimagenet(raw["data"]["root"])

    def write(seed: int, path: Path) -> None:
        sampler = EpisodeSampler(
            dataset.labels, seed=seed, split="test", n_way=5, k_shot=1, n_query=3
        )
        save_episodes(
            path,
            sampler.episodes(0, 8),
            settings=sampler.settings,
            dataset_fingerprint=dataset.fingerprint,
        )

    episode_file = tmp_path / "test.episodes.json"
    write(0, episode_file)
    fixed = dict(raw, episodes=dict(raw["episodes"], file=str(episode_file)))
    run_dir = runner.run(config_from_dict(fixed), run_dir=tmp_path / "run", progress=False)
    write(1, episode_file)  # another valid file under the same name
    before = _snapshot(run_dir)
    assert main(["run", "--quiet", "--resume", str(run_dir)]) == 2
    assert "what the run's config names has changed (episodes.file_hash: " in _one_line(capsys)
    assert _snapshot(run_dir) == before


def test_run_out_onto_a_finished_run_is_refused(finished, run_copy, capsys, tmp_path):
    config = tmp_path / "five.yaml"
    config.write_text(
        yaml.safe_dump(dict(finished[0], episodes=dict(finished[0]["episodes"], k_shot=5)))
    )
    before = _snapshot(run_copy)
    assert main(["run", "--quiet", "--config", str(config), "--out", str(run_copy)]) == 2
    assert "already holds a partbench run; nothing was written" in _one_line(capsys)
    assert _snapshot(run_copy) == before


def test_a_second_writer_gets_one_line_and_changes_nothing(run_copy, capsys):
    before = _snapshot(run_copy)
    with RecordWriter(run_copy / "records.jsonl"):  # a run holding the folder
        assert main(["run", "--quiet", "--resume", str(run_copy)]) == 2
        assert "another process is writing this records file" in _one_line(capsys)
    assert _snapshot(run_copy) == before


def test_validate_refuses_records_of_another_fingerprint(finished, run_copy, tmp_path, capsys):
    raw, _ = finished
    other = runner.run(
        config_from_dict(dict(raw, episodes=dict(raw["episodes"], seed=1))),
        run_dir=tmp_path / "other",
        progress=False,
    )
    run_id = json.loads((run_copy / "result.json").read_text())["run_id"]
    forged = tmp_path / "forged.jsonl"  # the other run's records, relabelled and re-sealed
    forged.write_text(
        "".join(
            record_line({**json.loads(line), "run_id": run_id})
            for line in (other / "records.jsonl").read_text().splitlines()
        )
    )
    assert main(["validate", str(run_copy / "result.json"), "--records", str(forged)]) == 1
    assert (
        "metrics.protonet.fingerprint: the result was made under run fingerprint"
        in capsys.readouterr().out
    )


def test_wall_time_counts_every_invocation(finished, tmp_path, monkeypatch):
    raw, _ = finished
    cfg = config_from_dict(raw)
    real, calls = evaluate.predict_batch, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "predict_batch", failing)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError):
        runner.run(cfg, run_dir=run_dir, progress=False)
    first = json.loads((run_dir / "run.json").read_text())["wall_time_s"]
    assert first > 0
    monkeypatch.setattr(evaluate, "predict_batch", real)
    runner.run(load_run_config(run_dir, []), run_dir=run_dir, resume=True, progress=False)
    total = json.loads((run_dir / "result.json").read_text())["wall_time_s"]
    assert total > first


def test_a_config_error_after_the_data_loads_leaves_no_run_folder(finished, tmp_path):
    raw, _ = finished
    run_dir = tmp_path / "outputs" / "run"
    with pytest.raises(ConfigError, match="did you mean 'protonet'"):
        runner.run(
            config_from_dict(dict(raw, learners=["protonett"])), run_dir=run_dir, progress=False
        )
    assert not run_dir.exists() and not (tmp_path / "outputs").exists()


def test_a_rehashed_edited_episode_file_is_refused_and_leaves_no_folder(finished, tmp_path, capsys):
    import dataclasses

    from benchmark.data.partimagenet import load_partimagenet
    from episodes import EpisodeSampler, save_episodes

    raw, _ = finished
    dataset = load_partimagenet(raw["data"]["root"])
    sampler = EpisodeSampler(dataset.labels, seed=0, split="test", n_way=5, k_shot=1, n_query=3)
    episodes = sampler.episodes(0, 4)
    e = episodes[2]
    episodes[2] = dataclasses.replace(e, classes=(e.classes[1], e.classes[0], *e.classes[2:]))
    episode_file = tmp_path / "edited.json"
    save_episodes(
        episode_file, episodes, settings=sampler.settings, dataset_fingerprint=dataset.fingerprint
    )  # hashes recomputed: they agree
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(dict(raw, episodes=dict(raw["episodes"], file=str(episode_file))))
    )
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--config", str(config), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert "episodes.file:" in line and "episode 2 (entry 2): image" in line
    assert "not of way 0's class" in line
    assert not out.exists()


def test_a_damaged_trained_checkpoint_is_retrained_with_a_warning(finished, tmp_path):
    from benchmark.training.checkpoint import load_checkpoint

    raw, _ = finished
    trained = dict(
        raw,
        cache_dir=str(tmp_path / "cache"),
        backbone=dict(raw["backbone"], weights="train"),
        train={"epochs": 1, "batch_size": 32, "val_episodes": 4, "val_k_shot": 1, "val_n_query": 2},
        episodes=dict(raw["episodes"], n_episodes=8),
    )
    first = runner.run(config_from_dict(trained), run_dir=tmp_path / "first", progress=False)
    (best,) = (tmp_path / "cache" / "checkpoints").glob("*/best.pt")
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 0x08  # one flipped bit; its .sha256 still lies beside it
    best.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"checkpoint {best} is damaged.*; retraining"):
        second = runner.run(config_from_dict(trained), run_dir=tmp_path / "second", progress=False)
    assert (best.parent / "best.pt.corrupt").is_file()
    load_checkpoint(best)  # the retrained one verifies
    sha = [
        json.loads((d / "result.json").read_text())["weights"]["sha256"] for d in (first, second)
    ]
    assert all(len(s) == 64 for s in sha)

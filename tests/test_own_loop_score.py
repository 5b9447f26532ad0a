"""Scoring a method's own loop: `episodes --names`, then `score` -> records and a valid result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmark.__main__ import main
from results.cli import validate_main
from results.leaderboard import merge
from results.records import read_records
from results.schema import read_result


@pytest.fixture
def episode_file(tiny_run_config, tmp_path) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            dict(tiny_run_config, episodes=dict(tiny_run_config["episodes"], n_episodes=12))
        )
    )
    out = tmp_path / "E.json"
    assert main(["episodes", "--config", str(config), "--out", str(out), "--names"]) == 0
    return out


def names(episode_file: Path) -> dict:
    return json.loads(episode_file.with_name("E.names.json").read_text())


def write_predictions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def truth_and_guesses(doc: dict) -> tuple[list[dict], int, int]:
    """Predictions that are right except for query 0 of every odd episode; (rows, correct, total)."""
    rows, correct, total = [], 0, 0
    for e in doc["episodes"]:
        truth = [w for w, way in enumerate(e["query"]) for _ in way]
        guess = list(truth)
        if e["episode"] % 2:
            guess[0] = (guess[0] + 1) % len(e["classes"])
        rows.append({"episode": e["episode"], "predictions": guess})
        correct += sum(g == t for g, t in zip(guess, truth))
        total += len(truth)
    return rows, correct, total


def test_names_file_lists_each_episodes_images_and_classes(episode_file):
    doc = names(episode_file)
    assert doc["dataset"]["name"] == "synthetic-twin" and len(doc["episodes"]) == 12
    first = doc["episodes"][0]
    assert len(first["classes"]) == 5 and all(c.startswith("n") for c in first["classes"])
    assert [len(w) for w in first["support"]] == [1] * 5 and [len(w) for w in first["query"]] == [
        3
    ] * 5
    assert all(n.startswith("test/") for way in first["query"] for n in way)


def test_score_writes_a_result_that_validates_and_merges(episode_file, tmp_path, capsys):
    rows, correct, total = truth_and_guesses(names(episode_file))
    preds = write_predictions(tmp_path / "mine.jsonl", rows[::-1])  # any line order
    out = tmp_path / "scored"
    assert (
        main(
            [
                "score",
                str(preds),
                "--episodes",
                str(episode_file),
                "--name",
                "mine",
                "--out",
                str(out),
                "--backbone",
                "resnet10t",
                "--saw-test-classes",
                "no",
            ]
        )
        == 0
    )
    result = read_result(out / "result.json")
    records = read_records(out / "records.jsonl")
    # 12 episodes of 15 queries: the mean per-episode accuracy is the fraction correct
    assert result["metrics"]["mine"]["accuracy"] == pytest.approx(100 * correct / total)
    assert correct < total and result["metrics"]["mine"]["n_episodes"] == 12
    assert result["weights"]["saw_test_classes"] is False
    assert result["metrics"]["mine"]["origin"]["kind"] == "predictions"
    assert result["metrics"]["mine"]["transductive"] is False
    assert sorted(records["episode"]) == list(range(12))
    assert (
        validate_main(
            [out / "result.json"],
            records=[out / "records.jsonl"],
            episodes_file=episode_file,
            episode_file_hasher=lambda p: __import__("episodes").load_episodes(p).episodes_hash,
        )
        == 0
    )
    assert "mine" in next(iter(merge(tmp_path).values()))["learner"].tolist()


def test_undeclared_weights_count_as_having_seen_the_test_classes(episode_file, tmp_path):
    rows, _, _ = truth_and_guesses(names(episode_file))
    preds = write_predictions(tmp_path / "p.jsonl", rows)
    assert (
        main(
            [
                "score",
                str(preds),
                "--episodes",
                str(episode_file),
                "--name",
                "m",
                "--out",
                str(tmp_path / "o"),
                "--transductive",
            ]
        )
        == 0
    )
    result = read_result(tmp_path / "o" / "result.json")
    assert result["weights"]["saw_test_classes"] is True
    assert result["weights"]["provenance"] == "undeclared"
    assert result["metrics"]["m"]["transductive"] is True


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda rows: rows[:-1], "episode 11 has no predictions"),
        (lambda rows: rows + [rows[3]], "episode 3 is given twice"),
        (
            lambda rows: rows + [{"episode": 40, "predictions": [0] * 15}],
            "episode 40 is not in the episode file",
        ),
        (
            lambda rows: [
                dict(r, predictions=r["predictions"][:-1]) if r["episode"] == 5 else r for r in rows
            ],
            "episode 5: 14 predictions, but it has 15 queries",
        ),
        (
            lambda rows: [dict(r, predictions=[7] * 15) if r["episode"] == 2 else r for r in rows],
            "episode 2: query 0 is predicted as way 7, not a way in [0, 5)",
        ),
        (
            lambda rows: [
                dict(r, predictions=[0.0] * 15) if r["episode"] == 4 else r for r in rows
            ],
            'episode 4: "predictions" must be a list of integer way indices',
        ),
    ],
)
def test_tampered_or_incomplete_predictions_are_refused_naming_the_episode(
    episode_file, tmp_path, capsys, tamper, message
):
    rows, _, _ = truth_and_guesses(names(episode_file))
    preds = write_predictions(tmp_path / "p.jsonl", tamper(rows))
    out = tmp_path / "o"
    assert (
        main(
            ["score", str(preds), "--episodes", str(episode_file), "--name", "m", "--out", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (out / "result.json").exists()


def test_score_api_needs_no_torch(episode_file, tmp_path):
    import subprocess
    import sys

    rows, correct, total = truth_and_guesses(names(episode_file))
    preds = write_predictions(tmp_path / "p.jsonl", rows)
    code = (
        "import sys\n"
        "from episodes import load_episodes\n"
        "from episodes.taxonomy import class_super_categories\n"
        "from results.scoring import read_predictions, score\n"
        f"f = load_episodes({str(episode_file)!r})\n"
        f"score(read_predictions({str(preds)!r}), f.episodes, name='api', out_dir={str(tmp_path / 'api')!r},\n"
        "      episodes_hash=f.episodes_hash, settings=f.settings,\n"
        "      dataset={'name': 'synthetic-twin', 'fingerprint': f.dataset_fingerprint},\n"
        "      super_categories=class_super_categories())\n"
        "print('torch' in sys.modules)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert read_result(tmp_path / "api" / "result.json")["metrics"]["api"][
        "accuracy"
    ] == pytest.approx(100 * correct / total)

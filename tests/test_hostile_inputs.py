"""Hostile input, as a user hits it: every mistake is one line and exit 2, never a traceback,
a hang or a wrong number (issue 18). Special files and oversized inputs are refused up front."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from benchmark.cli.main import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def episode_file(tiny_run_config, tmp_path) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            dict(tiny_run_config, episodes=dict(tiny_run_config["episodes"], n_episodes=4))
        )
    )
    out = tmp_path / "E.json"
    assert main(["episodes", "--config", str(config), "--out", str(out), "--names"]) == 0
    return out


def right_predictions(episode_file: Path) -> list[dict]:
    doc = json.loads(episode_file.with_name("E.names.json").read_text())
    return [
        {
            "episode": e["episode"],
            "predictions": [w for w, way in enumerate(e["query"]) for _ in way],
        }
        for e in doc["episodes"]
    ]


def score(episode_file: Path, predictions: Path, *extra: str) -> int:
    return main(
        [
            "score",
            str(predictions),
            "--episodes",
            str(episode_file),
            "--name",
            "m",
            "--out",
            str(predictions.parent / "scored"),
            *extra,
        ]
    )


# ---------------------------------------------------------------- A. no wrong number from score


def test_score_refuses_a_line_with_a_key_twice(episode_file, tmp_path, capsys):
    rows = right_predictions(episode_file)
    lines = [json.dumps(r) for r in rows]
    # json.loads keeps the last "predictions": all wrong ways would silently score 100 %
    wrong = [0] * len(rows[1]["predictions"])
    lines[1] = (
        f'{{"episode": 1, "predictions": {json.dumps(wrong)}, '
        f'"predictions": {json.dumps(rows[1]["predictions"])}}}'
    )
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(lines) + "\n")
    assert score(episode_file, preds) == 2
    err = one_line_error(capsys)
    assert f"{preds}:2:" in err and "'predictions' appears twice" in err
    assert not (tmp_path / "scored" / "result.json").exists()


def test_score_refuses_a_dataset_name_the_names_file_contradicts(episode_file, tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in right_predictions(episode_file)))
    assert score(episode_file, preds, "--dataset-name", "partimagenet-ood") == 2
    err = one_line_error(capsys)
    assert "--dataset-name 'partimagenet-ood' contradicts" in err and "'synthetic-twin'" in err
    assert score(episode_file, preds, "--dataset-name", "imagenet") == 2
    assert "--dataset-name 'imagenet': not a dataset" in one_line_error(capsys)
    assert not (tmp_path / "scored" / "result.json").exists()
    assert score(episode_file, preds, "--dataset-name", "synthetic-twin") == 0


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"episode": 0, "predictions": [%s]}' % ("9" * 5000), "an integer of 5,000 digits"),
        ('{"episode": %s, "predictions": [0]}' % ("1" * 5000), "an integer of 5,000 digits"),
        ("[" * 20000 + "]" * 20000, "nest deeper than 64"),
    ],
)
def test_score_refuses_absurd_lines_in_one_line(episode_file, tmp_path, capsys, line, message):
    preds = tmp_path / "p.jsonl"
    preds.write_text(line + "\n")
    assert score(episode_file, preds) == 2
    err = one_line_error(capsys)
    assert f"{preds}:1:" in err and message in err and len(err) < 300


def test_score_refuses_an_oversized_line(episode_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("results.scoring.MAX_LINE_BYTES", 1000)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"episode": 0, "predictions": [' + "0, " * 1000 + "0]}\n")
    assert score(episode_file, preds) == 2
    assert f"{preds}:1: a line of" in one_line_error(capsys)


def test_score_refuses_dev_zero_and_a_fifo_as_predictions(episode_file, tmp_path, capsys):
    assert score(episode_file, Path("/dev/zero")) == 2
    assert "predictions file /dev/zero: is a device" in one_line_error(capsys)
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    assert score(episode_file, fifo) == 2  # would block forever if opened for reading
    assert f"predictions file {fifo}: is a FIFO" in one_line_error(capsys)


# ---------------------------------------------------------------- episode files


def test_an_episode_file_that_repeats_an_index_is_refused_at_the_file_check(episode_file, capsys):
    from episodes.files import _content_hash
    from episodes.hashing import episode_from_record, episodes_hash

    doc = json.loads(episode_file.read_text())
    doc["episodes"][2]["index"] = doc["episodes"][1]["index"]
    # re-hash it as an editor would, so that only the repeated index is wrong
    digest = episodes_hash([episode_from_record(r) for r in doc["episodes"]])
    doc["episodes_hash"] = digest
    doc["content_hash"] = _content_hash(doc["settings"], doc["dataset_fingerprint"], digest)
    episode_file.write_text(json.dumps(doc))
    preds = episode_file.parent / "p.jsonl"
    preds.write_text("")
    assert score(episode_file, preds) == 2
    err = one_line_error(capsys)
    assert "episode index 1 appears twice" in err and str(episode_file) in err


def test_dev_zero_as_an_episode_file_is_one_line(episode_file, tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in right_predictions(episode_file)))
    assert (
        main(
            [
                "score",
                str(preds),
                "--episodes",
                "/dev/zero",
                "--name",
                "m",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "episode file /dev/zero: is a device" in one_line_error(capsys)


# ---------------------------------------------------------------- E/F. records files


def records_file(tmp_path: Path, n: int = 3) -> tuple[Path, list[str]]:
    from results_factories import fake_records

    from results.records import record_line

    lines = [record_line(r) for r in fake_records("protonet", 0.6, n)]
    run = tmp_path / "run"
    run.mkdir()
    return run / "records.jsonl", lines


def test_repair_keeps_a_torn_tail_behind_a_bad_last_line(tmp_path, capsys):
    path, lines = records_file(tmp_path)
    torn = lines[2][:40]
    path.write_text(lines[0] + lines[1] + "garbage\n" + torn)
    assert main(["repair", str(path.parent)]) == 0
    assert path.read_text() == lines[0] + lines[1]
    assert (path.parent / "records.jsonl.rejected").read_text() == "garbage\n" + torn + "\n"


def test_resume_reading_a_bad_last_line_and_a_torn_tail_deletes_nothing(tmp_path):
    from results.records import RecordError, RecordWriter

    path, lines = records_file(tmp_path)
    text = lines[0] + "garbage\n" + lines[1][:40]
    path.write_text(text)
    with pytest.raises(RecordError, match="records.jsonl:2: .*repair"):
        RecordWriter(path)
    assert path.read_text() == text  # both lines still there, for repair to move aside


@pytest.mark.parametrize("code, words", [(28, "no space left"), (27, "ulimit -f")])
def test_a_full_disk_while_appending_records_names_the_file(tmp_path, code, words):
    from results_factories import fake_records

    from episodes.storage import DiskWriteError
    from results.records import RecordWriter

    path, _ = records_file(tmp_path)
    writer = RecordWriter(path)

    class FullDisk:
        def write(self, text):
            raise OSError(code, os.strerror(code))

        def close(self):
            raise OSError(code, os.strerror(code))

        def fileno(self):
            return os.open(os.devnull, os.O_RDONLY)

    writer._handle.close()
    writer._handle = FullDisk()
    with pytest.raises(DiskWriteError) as caught:
        writer.append_many(fake_records("protonet", 0.6, 2))
    assert str(path) in str(caught.value) and words in str(caught.value)
    writer.close()  # nothing left to write twice


def test_repair_on_a_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    path, lines = records_file(tmp_path)
    path.write_text(lines[0] + "garbage\n" + lines[1])

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("results.records.repair.atomic_write_bytes", full)
    assert main(["repair", str(path.parent)]) == 2
    err = one_line_error(capsys)
    assert f"{path}: no space left on the device" in err
    assert path.read_text() == lines[0] + "garbage\n" + lines[1]  # untouched


def test_appending_records_past_ulimit_f_is_one_line_naming_the_file(tmp_path):
    import subprocess
    import sys

    path, _ = records_file(tmp_path)
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from results.records import RecordWriter\n"
        "from results_factories import fake_records\n"
        "from episodes.errors import PartbenchError\n"
        f"w = RecordWriter({str(path)!r})\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
        "try:\n"
        "    w.append_many(fake_records('protonet', 0.6, 50))\n"
        "except PartbenchError as exc:\n"
        "    print(exc); sys.exit(2)\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)]),
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2, done.stderr
    assert f"{path}: file too large" in done.stdout and "Traceback" not in done.stderr


# ---------------------------------------------------------------- report


def test_report_with_a_baseline_typo_or_no_records_is_one_line(tmp_path, capsys):
    from results_factories import fake_records

    from results.records import RecordWriter

    path, _ = records_file(tmp_path)
    with RecordWriter(path) as writer:
        writer.append_many(fake_records("protonet", 0.6, 3))
    assert (
        main(["report", str(path.parent), "--out", str(tmp_path / "o"), "--baseline", "protonte"])
        == 2
    )
    assert (
        "--baseline 'protonte': not a learner of these records; give one of protonet"
        in one_line_error(capsys)
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["report", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert f"{empty}: no records to report" in one_line_error(capsys)


# ---------------------------------------------------------------- doctor


def test_doctor_with_a_bad_device_is_one_line(capsys):
    assert main(["doctor", "--device", "gpu0"]) == 2
    assert "--device: 'gpu0' is not a device; use auto, cpu, cuda or cuda:N" in one_line_error(
        capsys
    )


def test_doctor_with_cuda_on_a_machine_without_it_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["doctor", "--device", "cuda"]) == 2
    assert "--device: 'cuda', but this machine has no usable CUDA device" in one_line_error(capsys)


# ---------------------------------------------------------------- config and --set


@pytest.mark.parametrize(
    "override, message",
    [
        ("episodes.n_way=abc", "--set episodes.n_way=abc: episodes.n_way: expected an integer"),
        ("episodes.n_way=" + "9" * 5000, "an integer of 5,000 digits (at most 40)"),
        ("episodes.n_way=" + "[" * 20000 + "]" * 20000, "nested too deeply"),
        ("name=../../x", "name: '../../x' must be a plain folder name"),
        ("name=/tmp/elsewhere", "name: '/tmp/elsewhere' must be a plain folder name"),
        # an unknown key is the --set's fault, whether it is the key set or inside its value
        ("episodes.bogus=1", "--set episodes.bogus=1: unknown key 'episodes.bogus'"),
        (
            "data={source: synthetic, bogus: 1}",
            "--set data={source: synthetic, bogus: 1}: unknown key 'data.bogus'",
        ),
        ("learners=[{bogus: 1}]", "--set learners=[{bogus: 1}]: unknown key 'learners[0].bogus'"),
    ],
)
def test_bad_set_values_are_one_short_line_naming_the_set(tmp_path, capsys, override, message):
    out = tmp_path / "outputs"
    assert (
        main(["run", "--config", "5way1shot", "--set", f"output_dir={out}", "--set", override]) == 2
    )
    err = one_line_error(capsys)
    assert message in err and len(err) < 400 and "5way1shot.yaml" not in err
    assert not out.exists() and not (tmp_path.parent / "x").exists()


def test_output_dir_naming_a_file_names_the_key(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["run", "--config", "5way1shot", "--set", f"output_dir={blocker}"]) == 2
    assert f"output_dir: '{blocker}' names a file, not a folder" in one_line_error(capsys)


def test_an_unknown_backbone_name_names_backbone_name(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--config",
                "5way1shot",
                "--set",
                f"output_dir={tmp_path / 'o'}",
                "--set",
                "backbone.name=resnet10x",
                "--set",
                "features.part_stage=16",
            ]
        )
        == 2
    )
    err = one_line_error(capsys)
    assert "backbone.name: unknown timm model name 'resnet10x'" in err and "features." not in err


# ---------------------------------------------------------------- validate and leaderboard folders


def test_validate_refuses_a_150_mb_result_file_up_front(tmp_path, capsys):
    huge = tmp_path / "result.json"
    with open(huge, "wb") as handle:  # sparse: no 150 MB written
        handle.truncate(150 * 2**20)
    assert main(["validate", str(huge)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {huge}" in out and "157,286,400 bytes, more than the" in out


def test_a_folder_mixing_results_with_other_files_skips_them_and_says_so(
    episode_file, tmp_path, capsys
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "E.json").write_bytes(episode_file.read_bytes())
    (folder / "E.names.json").write_bytes(episode_file.with_name("E.names.json").read_bytes())
    (folder / "config.yaml").write_text("name: x\n")
    (folder / "records.jsonl").write_text("")
    os.mkfifo(folder / "result.json")  # reading it would hang
    with open(folder / "big.json", "wb") as handle:
        handle.truncate(150 * 2**20)
    assert main(["validate", str(folder)]) == 2  # nothing left to check
    out = capsys.readouterr().out
    for name, why in [
        ("E.json", "an episode or names file"),
        ("E.names.json", "an episode"),
        ("result.json", "is a FIFO"),
        ("big.json", "more than the"),
    ]:
        assert f"skipped {folder / name}: " in out and why in out, (name, out)
    assert main(["leaderboard", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"skipped {folder / 'result.json'}: " in out and "Traceback" not in out


# ---------------------------------------------------------------- prepare


def _release(tmp_path: Path) -> Path:
    from test_data_prepare import build_release_zip

    return build_release_zip(tmp_path / "src")


def test_prepare_refuses_zip_bombs_listed_and_nested_and_writes_neither(tmp_path):
    import zipfile

    from benchmark.data.release.prepare import prepare_release

    archive = _release(tmp_path)
    zeros = bytes(64 << 20)  # deflates about 1000:1
    nested = tmp_path / "bomb.zip"
    with zipfile.ZipFile(nested, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/n0/bomb2.JPEG", zeros)
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("PartImageNet_OOD/bomb.JPEG", zeros)
        zf.write(nested, "PartImageNet_OOD/bomb.zip")
    report = prepare_release(archive, tmp_path / "out", allow_partial=True)
    refused = "\n".join(report.refused)
    assert "bomb.JPEG (compressed" in refused and "a zip bomb" in refused
    assert "bomb.zip!train/n0/bomb2.JPEG (compressed" in refused
    assert not [p for p in tmp_path.rglob("bomb*.JPEG")]


def test_prepare_refuses_a_member_declaring_more_than_the_release_holds(tmp_path, monkeypatch):
    from benchmark.data.errors import DatasetError
    from benchmark.data.release.prepare import prepare_release

    monkeypatch.setattr("benchmark.data.release.unpack.MAX_MEMBER_BYTES", 1000)
    with pytest.raises(
        DatasetError, match=r"train.json .declares [0-9,]+ bytes, more than the 1,000"
    ):
        prepare_release(_release(tmp_path), tmp_path / "out", allow_partial=True)


def test_prepare_on_a_fifo_is_one_line(tmp_path, capsys):
    fifo = tmp_path / "PartImageNet_OOD.zip"
    os.mkfifo(fifo)
    assert main(["prepare", str(fifo), "--out", str(tmp_path / "out")]) == 2
    assert f"release archive {fifo}: is a FIFO" in one_line_error(capsys)


def test_prepare_with_a_corrupt_annotation_member_is_one_line(tmp_path, capsys):
    import zipfile

    archive = _release(tmp_path)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            method = zipfile.ZIP_DEFLATED if info.filename.endswith("train.json") else 0
            dst.writestr(info.filename, src.read(info), compress_type=method)
    with zipfile.ZipFile(damaged) as zf:
        info = zf.getinfo("PartImageNet_OOD/train.json")
    raw = bytearray(damaged.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 5, start + info.compress_size - 5):
        raw[i] ^= 0x5A
    damaged.write_bytes(bytes(raw))
    assert main(["prepare", str(damaged), "--out", str(tmp_path / "out")]) == 2
    assert "train.json: cannot be read from its archive" in one_line_error(capsys)


def test_prepare_with_a_member_name_that_is_not_utf8_is_one_line(tmp_path, capsys):
    import zipfile

    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("PartImageNet_OOD/caf\u00e9.json", b"{}")
    raw = archive.read_bytes().replace("caf\u00e9".encode(), b"caf\xff\xfe")  # flag 0x800 stays
    archive.write_bytes(raw)
    assert main(["prepare", str(archive), "--out", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys)
    assert str(archive) in err or "names.zip" in err

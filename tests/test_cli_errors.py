"""User errors end in one line and exit 2 in every command; a bug keeps its traceback."""

from __future__ import annotations

import pytest
from results_factories import fake_records

from benchmark.__main__ import main
from benchmark.cli import main as cli
from results.records import RecordWriter, record_line


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("own", ["config.yaml", "result.json", "tables/accuracy.csv", "notes.txt"])
def test_run_out_onto_a_folder_with_files_changes_nothing(tmp_path, capsys, own):
    out = tmp_path / "mine"
    (out / own).parent.mkdir(parents=True)
    (out / own).write_text("the user's own file\n")
    assert main(["run", "--config", "5way1shot", "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert f"--out {out}: the folder already holds" in err and "--resume" in err
    assert (out / own).read_text() == "the user's own file\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [own]


def test_run_out_naming_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["run", "--config", "5way1shot", "--out", str(target)]) == 2
    assert "names a file, not a folder" in _one_line_error(capsys)
    assert target.read_text() == "x"


def test_unwritable_output_is_one_line(tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    with RecordWriter(records) as writer:
        writer.append_many(fake_records("protonet", 0.6, 3))
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["report", str(records), "--out", str(blocker / "report")]) == 2
    err = _one_line_error(capsys)
    assert str(blocker) in err


def test_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    # root ignores chmod, so stand in for the kernel's answer to a write into a read-only folder
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "accuracy.csv"))

    monkeypatch.setattr("results.tables.write_report", refuse)
    records = tmp_path / "records.jsonl"
    with RecordWriter(records) as writer:
        writer.append_many(fake_records("protonet", 0.6, 3))
    assert main(["report", str(records), "--out", str(tmp_path / "ro")]) == 2
    assert "ro/accuracy.csv: Permission denied" in _one_line_error(capsys)


def test_report_on_a_damaged_run_names_the_repair_and_repair_fixes_it(tmp_path, capsys):
    run = tmp_path / "run"
    records = fake_records("protonet", 0.6, 4)
    run.mkdir()
    lines = [record_line(r) for r in records]
    (run / "records.jsonl").write_text(
        lines[0] + "garbage\n" + lines[1] + lines[1] + "".join(lines[2:])
    )
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 2
    err = _one_line_error(capsys)
    assert "records.jsonl:2:" in err and "python -m benchmark repair" in err
    assert main(["repair", str(run)]) == 0
    out = capsys.readouterr().out
    assert "moved line 2" in out and "moved line 4" in out and "nothing deleted" in out
    assert (run / "records.jsonl.rejected").read_text() == "garbage\n" + lines[1]
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert main(["repair", str(run)]) == 0
    assert "nothing to repair (4 good records)" in capsys.readouterr().out


def test_validate_with_an_unreadable_episode_file_is_one_line(tmp_path, capsys):
    (tmp_path / "r.json").write_text("{}")
    (tmp_path / "e.json").write_text('{"format": 1, "format": 2}')
    assert main(["validate", str(tmp_path / "r.json"), "--episodes", str(tmp_path / "e.json")]) == 2
    assert "appears twice" in capsys.readouterr().out


def test_a_bug_keeps_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("an internal mistake")

    monkeypatch.setitem(cli.COMMANDS, "list", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: an internal mistake" in err
    assert "a bug, not a problem with your input" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["synth", "--out", "{tmp}/tw", "--images-per-class", "-5"],
            "synth --images-per-class: must be at least 1",
        ),
        (
            ["synth", "--out", "{tmp}/tw", "--image-size", "2"],
            "synth --image-size: must be at least 32",
        ),
        (
            ["episodes", "--config", "5way1shot", "--out", "{tmp}"],
            "is a folder; name the episode file",
        ),
        (
            ["episodes", "--config", "5way1shot", "--out", "{tmp}/no/e.json"],
            "does not exist; create it",
        ),
        (
            [
                "episodes",
                "--config",
                "5way1shot",
                "--out",
                "{tmp}/e.json",
                "--set",
                "episodes.n_episodes=100000000000",
            ],
            "at most about",
        ),
        (["run", "--resume", "{tmp}/nothing"], "no config.yaml there"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, capsys, argv, message):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "tw").exists() and not (tmp_path / "e.json").exists()

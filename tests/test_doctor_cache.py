"""`python -m benchmark cache` lists and clears one kind of cache entry; `doctor` reports the
environment, the devices, the cache and a timed run."""

from __future__ import annotations

import re

import pytest

from benchmark.__main__ import main


def _fill(root):
    (root / "decoded").mkdir(parents=True)
    (root / "decoded" / "k.pixels.npy").write_bytes(b"\0" * 3 * 2**20)
    (root / "features").mkdir()
    (root / "features" / "features-k.pt").write_bytes(b"\0" * 2**20)
    (root / "twin-abc" / "train").mkdir(parents=True)
    (root / "twin-abc" / "train" / "a.JPEG").write_bytes(b"\0" * 2**19)


def test_cache_lists_sizes_and_clears_only_the_kind_asked(tmp_path, capsys):
    _fill(tmp_path)
    assert main(["cache", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"decoded\s+3\.0 MiB", out) and re.search(r"features\s+1\.0 MiB", out)
    assert re.search(r"twin\s+0\.5 MiB", out) and re.search(r"total\s+4\.5 MiB", out)
    assert main(["cache", "--cache-dir", str(tmp_path), "--clear", "decoded"]) == 0
    assert "3.0 MiB freed" in capsys.readouterr().out
    assert not (tmp_path / "decoded").exists()
    assert (tmp_path / "features" / "features-k.pt").is_file() and (tmp_path / "twin-abc").is_dir()


def test_cache_refuses_an_unknown_kind(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cache", "--cache-dir", str(tmp_path), "--clear", "everything"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_doctor_reports_environment_devices_cache_and_a_timed_run(tmp_path, capsys):
    _fill(tmp_path)
    assert (
        main(
            [
                "doctor",
                "--device",
                "cpu",
                "--cache-dir",
                str(tmp_path),
                "--model",
                "test_resnet",
                "--image-size",
                "32",
                "--n-images",
                "8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for name in ("python", "torch", "torch CUDA", "cuDNN", "timm"):
        assert re.search(rf"^  {re.escape(name)}\s+\S", out, re.M), name
    assert re.search(r"^  cpu, .*bf16", out, re.M)
    assert f"cache: {tmp_path} (4.5 MiB;" in out
    run = re.search(r"extraction ([\d.]+) images/s, pure forward ([\d.]+) images/s", out)
    assert run and float(run.group(1)) > 0 and float(run.group(2)) > 0
    assert re.search(r"peak RSS [\d.]+ MiB", out)

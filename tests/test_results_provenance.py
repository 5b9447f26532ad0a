"""Provenance helpers: versions from package metadata (torch never imported), git state, hardware."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from results.provenance import git_state, hardware_info, package_versions


def test_versions_are_read_without_importing_torch():
    was_loaded = "torch" in sys.modules
    versions = package_versions(extra=("surely-not-a-package-xyz",))
    assert {"partbench", "torch", "timm", "python"} <= set(versions)
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["surely-not-a-package-xyz"] == "not installed"
    assert ("torch" in sys.modules) == was_loaded


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_state_reports_commit_and_dirtiness(tmp_path):
    assert git_state(tmp_path) == (None, None)
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(["git", *env, "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    commit = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "f.txt").write_text("b")
    assert git_state(tmp_path) == (commit, True)


def test_hardware_info_keeps_the_extras():
    assert hardware_info("cpu", gpus=0)["device"] == "cpu"
    assert hardware_info("cpu", gpus=0)["gpus"] == 0

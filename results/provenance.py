"""What a result file records about where it came from: versions, git state, hardware.

Versions are read from installed package metadata (importlib.metadata), so torch and timm are
named without being imported. Helpers only: the runner decides what to pass to `build_result`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """{"partbench", "torch", "timm", "python", *extra}: installed versions ("not installed" if absent).

    Result files require partbench, torch, timm and python.
    """
    versions = {"python": platform.python_version()}
    for name in ("partbench", "torch", "timm", *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state(path: str | os.PathLike[str] = ".") -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree holding `path`; (None, None) outside git or without git.

    dirty: True when tracked files differ from the commit (untracked files are ignored).
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def hardware_info(device: str, **extra: Any) -> dict[str, Any]:
    """{"device": device (e.g. "cpu", "NVIDIA H100 80GB HBM3"), platform, machine, cpu_count, ...}.

    The runner names the device (it knows torch's device); pass GPU count, memory etc. as extra.
    """
    return {
        "device": device,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_implementation": sys.implementation.name,
    } | extra

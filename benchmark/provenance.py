"""What a result file records about the software and machine that produced it."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def software_versions() -> dict[str, str]:
    """Versions of partbench, python and the libraries that can change a number."""
    import numpy
    import timm
    import torch

    import benchmark

    versions = {
        "partbench": benchmark.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import learn2learn

        versions["learn2learn"] = learn2learn.__version__
    except ImportError:  # optional at run time: only the MAML learner needs it
        pass
    return versions


def git_commit() -> str | None:
    """The commit of the partbench checkout, with "-dirty" if it has local changes; None if not a repo."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def hardware(device: str) -> dict[str, object]:
    """The machine and accelerator the run used."""
    import torch

    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_count"] = torch.cuda.device_count()
    return info

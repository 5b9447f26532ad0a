"""A run's folder: created under output_dir with a time stamp, holding the resolved config.yaml
that `--resume` reads back."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from benchmark.config import ConfigError, RunConfig, apply_override, config_from_dict
from episodes.storage import atomic_write_text


def prepare_run_dir(cfg: RunConfig, run_dir: Path | None, resume: bool) -> Path:
    """The run folder (a new one unless given), holding the run's resolved config.yaml."""
    if run_dir is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        base = Path(cfg.output_dir).expanduser() / f"{cfg.name}-{stamp}"
        run_dir, n = base, 1
        while run_dir.exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run folder: {run_dir}", file=sys.stderr, flush=True)
    if not (resume and (run_dir / "config.yaml").is_file()):
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


def load_run_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    """The config of a run folder (for --resume), with `KEY=VALUE` overrides applied."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it a partbench run folder?")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)

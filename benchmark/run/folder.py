"""The run folder a run holds: locked before anything is written, sealed, cleaned up if unused.

Order of a new run: the folder must be new or empty; the records file is locked; then run.json
(the run's identity, benchmark.run.identity) and config.yaml are written. A second process
aimed at the same folder fails at the lock with one line and changes nothing. A resume reads the
config, locks, and refuses any difference from the identity before data is loaded. A new run
that fails before its first record leaves no folder behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from benchmark.config.errors import ConfigError
from benchmark.config.run import RunConfig, load_config
from benchmark.run.identity import (
    RunIdentityError,
    check_config,
    check_content,
    determining_config,
    learner_fingerprint,
    read_identity,
    write_identity,
)
from episodes.storage import atomic_write_text
from results.records import RecordWriter
from results.run_files import CONFIG_FILE, IDENTITY_FILE, RECORDS_FILE


def check_new_run_folder(out: Path) -> None:
    """`run --out` writes only into a new or empty folder: never over a run or the user's files."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: names a file, not a folder; give a new folder's path")
    if out.is_dir() and any(out.iterdir()):
        what = (
            "a partbench run"
            if (out / CONFIG_FILE).is_file() or (out / RECORDS_FILE).is_file()
            else "files of yours"
        )
        raise ConfigError(
            f"--out {out}: the folder already holds {what}; nothing was written. "
            "Give a new or empty folder, or continue a stopped run with "
            f"`run --resume {out}`"
        )


def new_run_dir(cfg: RunConfig) -> Path:
    """<output_dir>/<name>-<UTC time>, with -2, -3, ... if taken."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_dir).expanduser() / f"{cfg.name}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def prepare_run_dir(cfg: RunConfig, run_dir: Path | None, resume: bool) -> Path:
    """A folder that holds sub-runs (a multi-seed run's seed-<s>/): new or empty unless resumed.

    Its config.yaml is written once, when it is made; each sub-run is a RunFolder of its own
    (locked, sealed and checked on resume).
    """
    if resume:
        assert run_dir is not None
        _check_same_seeds(cfg, run_dir)
        return run_dir
    path = run_dir or new_run_dir(cfg)
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 makes and checks the folder
        path.mkdir(parents=True, exist_ok=True)
        return path
    check_new_run_folder(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def _check_same_seeds(cfg: RunConfig, run_dir: Path) -> None:
    """A resumed multi-seed run keeps the seeds it was started with: other seeds would leave
    seed folders that its config.yaml does not name."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return
    started = load_config(path).backbone.seeds
    if started != cfg.backbone.seeds:
        raise ConfigError(
            f"backbone.seeds: {run_dir} was started with seeds {started}, not "
            f"{cfg.backbone.seeds}; resume it with the same seeds, or start a new run"
        )


SAVE_TIMES_EVERY_S = 10.0  # how often a running run writes its times to run.json


class RunFolder:
    """A run folder held by this process (its records lock), with the run's identity.

    Attributes:
        path: the folder. writer: the open RecordWriter (the lock). resumed: a --resume.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path | None, resume: bool) -> None:
        self.cfg, self.resumed = cfg, resume
        self.started = time.time()
        self._sealed = False  # the content check passed: this invocation's time counts
        self._made: list[Path] = []  # what this process created, newest last
        self._learner_time: dict[str, float] = {}  # this invocation's, by learner
        self._times_saved = time.time()
        if resume:
            assert run_dir is not None
            self.path = run_dir
            self.writer = RecordWriter(run_dir / RECORDS_FILE)  # lock before any check or write
            try:
                stored = read_identity(run_dir)
                if stored is None:
                    raise RunIdentityError(
                        f"--resume {run_dir}: no {IDENTITY_FILE} there (a run of an older "
                        "partbench, or it was deleted), so its settings cannot be checked; "
                        "start a new run"
                    )
                check_config(stored, cfg, run_dir)
            except BaseException:
                self.writer.close()
                raise
            self.identity = stored
            return
        self.path = run_dir or new_run_dir(cfg)
        check_new_run_folder(self.path)
        self._made += [p for p in (*reversed(self.path.parents), self.path) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        records = self.path / RECORDS_FILE
        existed = records.exists()
        self.writer = RecordWriter(records)  # the lock comes first: a second writer stops here
        if not existed:
            self._made.append(records)
        try:
            check_new_run_folder_held(self.path)
            self.identity = {"config": determining_config(cfg), "content": {}, "wall_time_s": 0.0}
            self._made.append(self.path / IDENTITY_FILE)
            write_identity(self.path, self.identity["config"], None)
            self._made.append(self.path / CONFIG_FILE)
            atomic_write_text(
                self.path / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False)
            )
        except BaseException:
            self.abandon()
            raise

    def seal_content(self, content: Mapping[str, Any]) -> None:
        """Check (resume) or store (first measurement) what the config names, as measured."""
        content = dict(content)
        check_content(self.identity, content, self.path)
        self.identity["content"] = content
        self._sealed = True
        self._write_times()

    def fingerprint(self, learner: Mapping[str, Any]) -> str:
        """The fingerprint records of `learner` ({"name", "options"}) carry; on resume, the
        learner's existing records must carry it too."""
        fingerprint = learner_fingerprint(
            self.identity["config"], self.identity["content"], learner
        )
        found = self.writer.fingerprints.get(learner["name"], set()) - {fingerprint}
        if found:
            raise RunIdentityError(
                f"{self.path / RECORDS_FILE}: records of learner {learner['name']!r} carry run "
                f"fingerprint {sorted(map(str, found))[0]!r}, not this run's {fingerprint!r}: "
                "they were made under other settings; start a new run"
            )
        return fingerprint

    def wall_time_s(self) -> float:
        """Seconds spent on this run over every invocation so far."""
        return float(self.identity.get("wall_time_s", 0.0)) + time.time() - self.started

    def learner_time_s(self) -> dict[str, float]:
        """Seconds of fit and predict per learner (records' name), over every invocation."""
        stored = self.identity.get("learner_time_s", {})
        return {
            k: stored.get(k, 0.0) + self._learner_time.get(k, 0.0)
            for k in {*stored, *self._learner_time}
        }

    def add_learner_time(self, learner: str, seconds: float) -> None:
        """Count `seconds` of `learner`'s evaluation; run.json is brought up to date at most
        every SAVE_TIMES_EVERY_S, so a killed run keeps (nearly) all its time."""
        self._learner_time[learner] = self._learner_time.get(learner, 0.0) + seconds
        if self._sealed and time.time() - self._times_saved >= SAVE_TIMES_EVERY_S:
            self._write_times()

    def _write_times(self) -> None:
        write_identity(
            self.path,
            self.identity["config"],
            self.identity["content"],
            self.wall_time_s(),
            self.learner_time_s(),
        )
        self._times_saved = time.time()

    def abandon(self) -> None:
        """A new run that wrote no record: remove what this process created, nothing else."""
        if self.resumed or getattr(self, "writer", None) is not None and self.writer.done:
            return
        if getattr(self, "writer", None) is not None:
            self.writer.close()
        for path in reversed(self._made):
            try:
                path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
            except OSError:
                pass  # not empty: someone else's files now live there

    def close(self) -> None:
        """Record this invocation's time in run.json (unless it was refused before its content
        check: a refused resume changes nothing) and release the lock."""
        if self._sealed and (self.path / IDENTITY_FILE).is_file():
            self._write_times()
        self.writer.close()


def check_new_run_folder_held(path: Path) -> None:
    """Under the lock: the folder holds nothing but the records file this process just made
    (another process may have filled it between the first check and the lock)."""
    others = [p.name for p in path.iterdir() if p.name != RECORDS_FILE]
    if others or (path / RECORDS_FILE).stat().st_size:
        raise ConfigError(
            f"--out {path}: another run started in this folder at the same time; "
            "nothing was written. Give a new or empty folder"
        )


def load_run_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    """The config of a run folder (for --resume), read strictly, with `KEY=VALUE` overrides."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"--resume {run_dir}: no config.yaml there; is it a partbench run folder?"
        )
    return load_config(path, overrides)

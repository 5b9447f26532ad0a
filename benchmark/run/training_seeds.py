"""Several training seeds in one run: one backbone per seed, all on the very same episodes.

`backbone.seeds: [0, 1, 2]` (or `run --seeds 0,1,2`) makes RUN_DIR/seed-<s>/ a complete run per
seed (records, tables, a result file of its own that validates like any other), then adds to
RUN_DIR/tables the spread between seeds (results.training_seeds): per learner the mean over seeds, the
between-seed std and the episode CI, and the paired differences computed within each seed and
then combined. Every seed's result file gets the same `seed_spread` section, so a leaderboard
row says how many training runs stand behind it.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.config.run import RunConfig
from benchmark.run.folder import prepare_run_dir
from benchmark.run.orchestrator import RunResult, run_benchmark
from results.run_files import RESULT_FILE
from results.run_result import ci_settings
from results.schema import with_sections, write_result
from results.tables import save_table, to_text
from results.training_seeds import seed_accuracy_table, seed_paired_table, seed_summary


@dataclass
class SeedsResult:
    """A multi-seed run: its folder, each seed's RunResult, and the between-seed tables."""

    run_dir: Path
    seeds: dict[int, RunResult]
    tables: dict[str, pd.DataFrame]


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    """The single-seed config of one training seed."""
    backbone = dataclasses.replace(cfg.backbone, seed=seed, seeds=[])
    return dataclasses.replace(cfg, backbone=backbone, name=f"{cfg.name}-seed{seed}")


def run_seeds(
    cfg: RunConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> SeedsResult | None:
    """Run `cfg` once per seed in `cfg.backbone.seeds` and report the spread between seeds
    (None on torchrun ranks > 0). A stopped multi-seed run resumes seed by seed."""
    parent = prepare_run_dir(cfg, run_dir, resume)
    outcomes: dict[int, RunResult] = {}
    for seed in cfg.backbone.seeds:
        folder = parent / f"seed-{seed}"
        _say(f"\n=== training seed {seed} ({len(outcomes) + 1} of {len(cfg.backbone.seeds)})")
        outcome = run_benchmark(
            seed_config(cfg, seed),
            run_dir=folder,
            resume=resume and folder.is_dir(),
            progress=progress,
            verbose=verbose,
        )
        if outcome is None:  # a torchrun rank > 0: rank 0 writes
            return None
        outcomes[seed] = outcome
    records = {seed: outcome.records for seed, outcome in outcomes.items()}
    confidence = ci_settings(cfg.to_dict()["report"])["confidence"]
    tables = {"seeds_accuracy": seed_accuracy_table(records, confidence=confidence)}
    names = [spec.key for spec in cfg.learners]
    if len(names) > 1:
        tables["seeds_paired"] = seed_paired_table(records, names[0], confidence=confidence)
    for name, table in tables.items():
        save_table(table, parent / "tables" / name)
        _say(f"\n{name.replace('_', ' ')} ({len(records)} training seeds):\n{to_text(table)}")
    summary = seed_summary(records, confidence=confidence)
    for seed, outcome in outcomes.items():
        outcome.result = with_sections(
            outcome.result, {"seed_spread": summary | {"this_seed": seed}}
        )
        write_result(outcome.run_dir / RESULT_FILE, outcome.result)
    _say(f"\nper-seed result files: {parent}/seed-*/result.json   tables: {parent / 'tables'}")
    return SeedsResult(parent, outcomes, tables)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

"""`python -m benchmark run`: config -> dataset -> backbone -> features -> episodes -> learners
-> per-episode records -> tables and a leaderboard result file.

Each stage owns its policy (benchmark.data.source, benchmark.training.weights, benchmark.features,
episodes.source, benchmark.run.components, benchmark.run.folder, benchmark.run.episode_loop,
benchmark.run.report, results.run_result); this module only passes data along.
Costly stages cache under the cache folder, and per-episode records are appended as they are
computed, so a stopped run resumes where it stopped (`--resume RUN_DIR`) without losing or
repeating an episode. `run_benchmark(cfg)` is the programmatic entry point.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from baselines import ImageLearner, get_learner_origin
from benchmark.config.cache_layout import FEATURES_FOLDER, cache_root
from benchmark.config.run import RunConfig
from benchmark.data.dataset import PartDataset
from benchmark.data.source import resolve_dataset
from benchmark.data.splits import required_splits
from benchmark.evaluation.image_learners import ImageEvaluator
from benchmark.features.mask_quality import measure_mask_quality
from benchmark.features.provider import FeatureProvider
from benchmark.models.device import hardware
from benchmark.run.components import (
    build_learners,
    check_part_stage,
    episode_source,
    reads_predicted_masks,
)
from benchmark.run.episode_loop import evaluate_episodes
from benchmark.run.folder import RunFolder
from benchmark.run.report import write_run_report
from benchmark.run.step_timer import StepTimer
from benchmark.training.distributed import init_distributed
from benchmark.training.weights import resolve_backbone
from episodes import EpisodeSource
from results.records import read_records
from results.run_files import RECORDS_FILE, RESULT_FILE
from results.run_result import result_from_run
from results.schema import write_result


@dataclass
class RunResult:
    """What a run produced: its folder, the result file's content, the per-episode records and
    the report tables (accuracy, super_category, part_contributions, paired) by name."""

    run_dir: Path
    result: dict
    records: pd.DataFrame
    tables: dict[str, pd.DataFrame]


def run_benchmark(
    cfg: RunConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> RunResult | None:
    """Run the benchmark described by `cfg` (None on torchrun ranks > 0).

    Records are appended per batch of episodes; with resume=True the episodes already in
    run_dir/records.jsonl are skipped, so a stopped run loses nothing and repeats nothing.
    Under `torchrun --nproc_per_node=N`, every process joins training (DDP) and feature
    extraction (sharded); rank 0 alone evaluates the episodes and writes the outputs.
    """
    learners = build_learners(cfg)  # a bad learner spec fails before any folder is made
    check_part_stage(cfg)  # so does a stride the backbone lacks (not after training it)
    timer = StepTimer()
    ctx = init_distributed(cfg.features.device)
    folder = None
    try:
        needed = required_splits(cfg)  # only these must be there: a train+val copy runs val
        with timer.step("twin" if cfg.data.source == "synthetic" else "dataset"):
            if ctx.is_main:
                folder = RunFolder(cfg, run_dir, resume)  # locked and checked before any data loads
                run_dir = folder.path
                _say(f"run folder: {run_dir}")
                dataset = resolve_dataset(cfg.data, cfg.cache_dir, needed)  # rank 0 first: the twin
            ctx.barrier()
            if not ctx.is_main:
                dataset = resolve_dataset(cfg.data, cfg.cache_dir, needed)
        if dataset.defects and ctx.is_main:
            _say(
                "skipped annotations: " + ", ".join(f"{k}: {v}" for k, v in dataset.defects.items())
            )
        source = episode_source(cfg, dataset)
        shown = progress and ctx.is_main
        with timer.step("training" if cfg.backbone.weights == "train" else "backbone"):
            backbone = resolve_backbone(
                cfg, dataset, shown, needs_part_head=reads_predicted_masks(cfg)
            )
        with timer.step("features"):
            features = FeatureProvider(
                dataset, backbone, cfg.features, cache_root(cfg.cache_dir) / FEATURES_FOLDER, shown
            )
            # Every rank takes part in (sharded) extraction of every feature set the learners use
            # (the run's, and each annotation-free control's own); one (support, query) pair each.
            gathers = [
                features.gatherers(source.image_indices(dataset), learner)
                for _, learner in learners
            ]
            for _, learner in learners:
                if learner.needs_base_features:
                    learner.prepare(features.base_embeddings())
        if not ctx.is_main:
            return None
        folder.seal_content(run_content(dataset, backbone, features, source))
        fc = cfg.features
        with timer.step("features"):
            quality = (
                measure_mask_quality(
                    dataset,
                    source.image_indices(dataset),
                    backbone,
                    batch_size=fc.batch_size,
                    num_workers=fc.num_workers,
                    device=features.device,
                    precision=fc.precision,
                )
                if reads_predicted_masks(cfg)
                else None
            )
        with timer.step("episodes"):
            images = None
            if any(isinstance(learner, ImageLearner) for _, learner in learners):
                images = ImageEvaluator(
                    dataset,
                    backbone,
                    features.device,
                    cfg.features.precision,
                    run_seed=cfg.episodes.seed,
                )
            run_id = evaluate_episodes(cfg, folder, source, learners, gathers, progress, images)
        with timer.step("report"):
            records = read_records(run_dir / RECORDS_FILE)
            tables = write_run_report(
                cfg,
                run_dir,
                records,
                quality,
                dataset,
                source,
                gathers[-1],
                learners[-1],
                images,
                verbose=verbose,
            )
            result = result_from_run(
                run_id=run_id,
                config=cfg.to_dict(),
                episodes={
                    "split": source.split,
                    "settings": source.settings,
                    "hash": source.hash(),
                    "requested": source.n_episodes,
                },
                dataset={
                    "fingerprint": dataset.fingerprint,
                    "n_images": len(dataset.images),
                    "skipped_annotations": dataset.defects,
                },
                weights=backbone.provenance,
                hardware=hardware(features.device),
                records=records,
                wall_time_s=folder.wall_time_s(),
                sections={
                    "mask_quality": quality.to_dict() if quality is not None else None,
                    "learner_time_s": learner_times(folder, learners),
                },
                origins={spec.key: get_learner_origin(spec.name) for spec, _ in learners},
            )
            path = write_result(run_dir / RESULT_FILE, result)
        _say(timer.summary())
        _say(f"\nresult file: {path}  (check it with: python -m benchmark validate {path})")
        _say(f"tables: {run_dir / 'tables'}   plots: {run_dir / 'plots'}")
        return RunResult(run_dir, result, records, tables)
    except BaseException:
        if folder is not None:
            folder.abandon()  # a new run that wrote no record leaves no folder behind
        raise
    finally:
        if folder is not None:
            folder.close()
        ctx.close()


def run(
    cfg: RunConfig,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> Path | None:
    """`run_benchmark`, returning only the run folder (None on torchrun ranks > 0)."""
    outcome = run_benchmark(cfg, run_dir=run_dir, resume=resume, progress=progress, verbose=verbose)
    return None if outcome is None else outcome.run_dir


def run_content(
    dataset: PartDataset, backbone, features: FeatureProvider, source: EpisodeSource
) -> dict:
    """What the run's config names, measured: the content part of its identity."""
    return {
        "dataset.fingerprint": dataset.fingerprint,
        "backbone.weights_sha256": backbone.provenance.get("sha256"),
        "features.keys": features.keys(),
        "episodes.settings": source.settings,
        "episodes.file_hash": source.hash() if source.fixed is not None else None,
    }


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def learner_times(folder: RunFolder, learners: list) -> dict[str, float]:
    """Each configured learner's fit+predict seconds over every invocation (0 if none ran)."""
    times = folder.learner_time_s()
    return {spec.key: round(times.get(spec.key, 0.0), 3) for spec, _ in learners}

"""`python -m benchmark run`: config -> dataset -> backbone -> features -> episodes -> learners
-> per-episode records -> tables and a leaderboard result file.

Each stage owns its policy (benchmark.data.source, benchmark.training.weights, benchmark.features,
episodes.source, benchmark.stages, results.run_result); this module only passes data along.
Costly stages cache under the cache folder, and per-episode records are appended as they are
computed, so a stopped run resumes where it stopped (`--resume RUN_DIR`) without losing or
repeating an episode. `run_benchmark(cfg)` is the programmatic entry point.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from baselines import ImageLearner, get_learner_origin
from baselines.base import Learner
from benchmark import evaluate
from benchmark.cache import cache_root, short_key
from benchmark.config import LearnerConfig, RunConfig
from benchmark.data.dataset import PartDataset
from benchmark.data.source import resolve_dataset
from benchmark.data.splits import required_splits
from benchmark.device import hardware
from benchmark.features import FeatureProvider, learner_masks, slot_names
from benchmark.image_episodes import ImageEvaluator
from benchmark.mask_quality import measure_mask_quality
from benchmark.run_folder import RunFolder
from benchmark.stage_timer import StageTimer
from benchmark.stages import build_learners, episode_source, reads_predicted_masks
from benchmark.training.distributed import init_distributed
from benchmark.training.weights import resolve_backbone
from episodes import EpisodeSource
from episodes.taxonomy import PART_SLOTS, class_super_categories, classes
from results.plots import plot_predicted_episode, write_plots
from results.records import read_records, records_from_predictions
from results.run_result import ci_settings, result_from_run
from results.schema import write_result
from results.tables import save_table, write_report


@dataclass
class RunResult:
    """What a run produced: its folder, the result file's content, the per-episode records and
    the report tables (accuracy, super_category, part_contributions, paired) by name."""

    run_dir: Path
    result: dict
    records: pd.DataFrame
    tables: dict[str, pd.DataFrame]


def run_benchmark(cfg: RunConfig, *, run_dir: Path | None = None, resume: bool = False,
                  progress: bool = True) -> RunResult | None:
    """Run the benchmark described by `cfg` (None on torchrun ranks > 0).

    Records are appended per batch of episodes; with resume=True the episodes already in
    run_dir/records.jsonl are skipped, so a stopped run loses nothing and repeats nothing.
    Under `torchrun --nproc_per_node=N`, every process joins training (DDP) and feature
    extraction (sharded); rank 0 alone evaluates the episodes and writes the outputs.
    """
    learners = build_learners(cfg)  # a bad learner spec fails before any folder is made
    timer = StageTimer()
    ctx = init_distributed(cfg.features.device)
    folder = None
    try:
        needed = required_splits(cfg)  # only these must be there: a train+val copy runs val
        with timer.stage("twin" if cfg.data.source == "synthetic" else "dataset"):
            if ctx.is_main:
                folder = RunFolder(cfg, run_dir, resume)  # locked and checked before any data loads
                run_dir = folder.path
                _say(f"run folder: {run_dir}")
                dataset = resolve_dataset(cfg.data, cfg.cache_dir, needed)  # rank 0 first: the twin
            ctx.barrier()
            if not ctx.is_main:
                dataset = resolve_dataset(cfg.data, cfg.cache_dir, needed)
        if dataset.defects and ctx.is_main:
            _say("skipped annotations: " + ", ".join(f"{k}: {v}" for k, v in dataset.defects.items()))
        source = episode_source(cfg, dataset)
        shown = progress and ctx.is_main
        with timer.stage("training" if cfg.backbone.weights == "train" else "backbone"):
            backbone = resolve_backbone(cfg, dataset, shown, needs_part_head=reads_predicted_masks(cfg))
        with timer.stage("features"):
            features = FeatureProvider(dataset, backbone, cfg.features,
                                       cache_root(cfg.cache_dir) / "features", shown)
            # Every rank takes part in (sharded) extraction of every feature set the learners use
            # (the run's, and each annotation-free control's own); one (support, query) pair each.
            gathers = [features.gatherers(source.image_indices(dataset), learner)
                       for _, learner in learners]
            for _, learner in learners:
                if learner.needs_base_features:
                    learner.prepare(features.base_embeddings())
        if not ctx.is_main:
            return None
        folder.seal_content(run_content(dataset, backbone, features, source))
        fc = cfg.features
        with timer.stage("features"):
            quality = measure_mask_quality(
                dataset, source.image_indices(dataset), backbone, batch_size=fc.batch_size,
                num_workers=fc.num_workers, device=features.device,
                precision=fc.precision) if reads_predicted_masks(cfg) else None
        with timer.stage("episodes"):
            images = None
            if any(isinstance(learner, ImageLearner) for _, learner in learners):
                images = ImageEvaluator(dataset, backbone, features.device, cfg.features.precision,
                                        run_seed=cfg.episodes.seed)
            run_id = evaluate_episodes(cfg, folder, source, learners, gathers, progress, images)
        with timer.stage("report"):
            records = read_records(run_dir / "records.jsonl")
            ci = ci_settings(cfg.to_dict()["report"])
            names = [spec.name for spec in cfg.learners]
            tables = write_report(records, run_dir / "tables",
                                  baseline=names[0] if len(names) > 1 else None, **ci)
            if quality is not None:
                tables["mask_quality"] = pd.DataFrame(quality.rows())
                save_table(tables["mask_quality"], run_dir / "tables" / "mask_quality")
                _say(f"predicted masks against the annotations ({quality.n_images} images): mIoU "
                     f"{100 * quality.grid_miou:.1f} on the {quality.grid[0]}x{quality.grid[1]} "
                     f"feature grid, {100 * quality.image_miou:.1f} per pixel")
            write_plots(records, run_dir / "plots", **ci)
            plot_first_episode(run_dir / "plots" / "episode_0.png", dataset, source, gathers[-1],
                               learners[-1], images)
            result = result_from_run(
                run_id=run_id, config=cfg.to_dict(),
                episodes={"split": source.split, "settings": source.settings, "hash": source.hash(),
                          "requested": source.n_episodes},
                dataset={"fingerprint": dataset.fingerprint, "n_images": len(dataset.images),
                         "skipped_annotations": dataset.defects},
                weights=backbone.provenance, hardware=hardware(features.device), records=records,
                wall_time_s=folder.wall_time_s(),
                sections={"mask_quality": quality.to_dict() if quality is not None else None},
                origins={spec.name: get_learner_origin(spec.name) for spec, _ in learners})
            path = write_result(run_dir / "result.json", result)
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


def run(cfg: RunConfig, *, run_dir: Path | None = None, resume: bool = False,
        progress: bool = True) -> Path | None:
    """`run_benchmark`, returning only the run folder (None on torchrun ranks > 0)."""
    outcome = run_benchmark(cfg, run_dir=run_dir, resume=resume, progress=progress)
    return None if outcome is None else outcome.run_dir


def evaluate_episodes(cfg: RunConfig, folder: RunFolder, source: EpisodeSource,
                      learners: list[tuple[LearnerConfig, Learner | ImageLearner]],
                      gathers: list[tuple], progress: bool,
                      images: ImageEvaluator | None = None) -> str:
    """Evaluate every learner on every episode not yet in the folder's records; the run id.

    gathers[i]: learner i's (gather_support, gather_query). Feature learners run
    `episodes.batch_size` episodes per call, image learners (which need `images`) one at a time;
    stochastic learners are seeded per episode from episodes.seed."""
    supers = class_super_categories()
    run_id = short_key({"config": cfg.to_dict(), "dir": folder.path.name})
    size = cfg.episodes.batch_size if source.batched else 1  # variable shapes go one at a time
    writer = folder.writer
    writer.require({"split": source.split})
    if writer.setting is not None:
        run_id = writer.setting["run_id"]  # resuming: keep the run's identity
    for (spec, learner), gather in zip(learners, gathers):
        masks = learner_masks(cfg.features.masks, learner)
        fingerprint = folder.fingerprint({"name": spec.name, "options": spec.options})
        todo = [p for p, i in enumerate(source.indices) if (spec.name, i) not in writer.done]
        if not todo:
            continue
        by_image = isinstance(learner, ImageLearner)
        step = 1 if by_image else size
        with tqdm(total=len(todo), desc=spec.name, unit="ep", disable=not progress,
                  file=sys.stderr) as bar:
            for start in range(0, len(todo), step):
                positions = todo[start:start + step]
                if by_image:
                    done = images.positions(learner, source, positions, spec.name)
                else:
                    done = evaluate.predict_positions(learner, source, positions, *gather,
                                                      run_seed=cfg.episodes.seed,
                                                      learner_name=spec.name)
                out = done.predictions
                writer.append_many(records_from_predictions(
                    run_id=run_id, learner=spec.name, split=source.split,
                    k_shot=done.k_shot, variable_shape=not source.batched,
                    episodes=done.episodes, classes=done.classes, labels=out.labels,
                    predicted=out.predicted, part_contributions=out.contributions,
                    super_categories=supers,
                    slot_names=PART_SLOTS if masks is None else slot_names(masks),
                    mask_mode=masks, fingerprint=fingerprint,
                    transductive=learner.transductive))
                bar.update(len(done.episodes))
    return run_id


def plot_first_episode(path: Path, dataset: PartDataset, source: EpisodeSource, gathers: tuple,
                       named_learner: tuple[LearnerConfig, Learner | ImageLearner],
                       images: ImageEvaluator | None = None) -> Path:
    """Draw the run's first episode (support and two queries per way, part masks tinted) with the
    predictions of `named_learner` (the last learner in the config)."""
    spec, learner = named_learner
    predict = None
    if isinstance(learner, ImageLearner):
        predict = lambda shown: images.episode(learner, shown, spec.name)  # noqa: E731
    episode, predicted = evaluate.preview(learner, source.episode(0), *gathers, predict=predict)
    names = {c.synset: c.name for c in classes()}
    return plot_predicted_episode(
        episode.support, episode.query, [names.get(c, c) for c in episode.classes], predicted,
        lambda i: (np.asarray(dataset.load_image(i).convert("RGB")), dataset.slot_masks(i)),
        path, slot_names=PART_SLOTS,
        title=f"episode 0 ({episode.split}), predictions of {spec.name}")


def run_content(dataset: PartDataset, backbone, features: FeatureProvider,
                source: EpisodeSource) -> dict:
    """What the run's config names, measured: the content part of its identity."""
    return {"dataset.fingerprint": dataset.fingerprint,
            "backbone.weights_sha256": backbone.provenance.get("sha256"),
            "features.keys": features.keys(),
            "episodes.settings": source.settings,
            "episodes.file_hash": source.hash() if source.fixed is not None else None}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

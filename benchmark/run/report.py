"""A finished run's report: the tables (printed and saved), the mask-quality table of a run that
reads predicted masks, the plots, and episode 0 drawn with its part masks and predictions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from baselines import ImageLearner
from baselines.base import Learner
from benchmark.config.run import LearnerConfig, RunConfig
from benchmark.data.dataset import PartDataset
from benchmark.evaluation import feature_learners as evaluate
from benchmark.evaluation.image_learners import ImageEvaluator
from benchmark.features.mask_quality import MaskQuality
from episodes import EpisodeSource
from episodes.taxonomy import PART_SLOTS, classes
from results.plots import plot_predicted_episode, write_plots
from results.run_result import ci_settings
from results.tables import save_table, write_report

HEADLINE_TABLES = ("accuracy", "paired")  # what the end of a run prints without --verbose


def write_run_report(
    cfg: RunConfig,
    run_dir: Path,
    records: pd.DataFrame,
    quality: MaskQuality | None,
    dataset: PartDataset,
    source: EpisodeSource,
    gathers: tuple,
    named_learner: tuple[LearnerConfig, Learner | ImageLearner],
    images: ImageEvaluator | None,
    verbose: bool = False,
) -> dict[str, pd.DataFrame]:
    """Write run_dir/tables and run_dir/plots; the tables by name (paired against the first
    learner when there are several; mask_quality when `quality`). `gathers` and
    `named_learner`: the last learner's, for the drawing of episode 0. The screen shows the
    headline (accuracy, paired) unless `verbose`, which prints every table."""
    ci = ci_settings(cfg.to_dict()["report"])
    names = [spec.key for spec in cfg.learners]
    tables = write_report(
        records,
        run_dir / "tables",
        baseline=names[0] if len(names) > 1 else None,
        printed=None if verbose else HEADLINE_TABLES,
        **ci,
    )
    if not verbose:
        others = ", ".join(name.replace("_", " ") for name in tables if name not in HEADLINE_TABLES)
        print(f"\n(also in {run_dir / 'tables'}: {others}; `run --verbose` prints them)")
    if quality is not None:
        tables["mask_quality"] = pd.DataFrame(quality.rows())
        save_table(tables["mask_quality"], run_dir / "tables" / "mask_quality")
        print(
            f"predicted masks against the annotations ({quality.n_images} images): mIoU "
            f"{100 * quality.grid_miou:.1f} on the {quality.grid[0]}x{quality.grid[1]} "
            f"feature grid, {100 * quality.image_miou:.1f} per pixel, "
            f"{100 * quality.soft_miou:.1f} as soft coverage; goal {quality.pixel_goal()}",
            file=sys.stderr,
        )
    write_plots(records, run_dir / "plots", **ci)
    plot_first_episode(
        run_dir / "plots" / "episode_0.png", dataset, source, gathers, named_learner, images
    )
    return tables


def plot_first_episode(
    path: Path,
    dataset: PartDataset,
    source: EpisodeSource,
    gathers: tuple,
    named_learner: tuple[LearnerConfig, Learner | ImageLearner],
    images: ImageEvaluator | None = None,
) -> Path:
    """Draw the run's first episode (support and two queries per way, part masks tinted) with the
    predictions of `named_learner` (the last learner in the config)."""
    spec, learner = named_learner
    predict = None
    if isinstance(learner, ImageLearner):
        predict = lambda shown: images.episode(learner, shown, spec.name)  # noqa: E731
    episode, predicted = evaluate.preview(learner, source.episode(0), *gathers, predict=predict)
    names = {c.synset: c.name for c in classes()}
    return plot_predicted_episode(
        episode.support,
        episode.query,
        [names.get(c, c) for c in episode.classes],
        predicted,
        lambda i: (np.asarray(dataset.load_image(i).convert("RGB")), dataset.slot_masks(i)),
        path,
        slot_names=PART_SLOTS,
        title=f"episode 0 ({episode.split}), predictions of {spec.key}",
    )

"""The evaluation loop: every learner on every episode its run has not recorded yet.

Feature learners run `episodes.batch_size` same-shape episodes per call over their feature set,
image learners one episode at a time over pixels; each finished call is appended to the run's
locked records file at once, so a stopped run resumes where it stopped without repeating an
episode. A record carries its learner's run fingerprint, mask mode and protocol.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from baselines import ImageLearner
from baselines.base import Learner
from benchmark.config.cache_layout import short_key
from benchmark.config.run import LearnerConfig, RunConfig
from benchmark.evaluation import feature_learners as evaluate
from benchmark.evaluation.image_learners import ImageEvaluator
from benchmark.features.feature_set import slot_names
from benchmark.features.provider import learner_masks
from benchmark.run.folder import RunFolder
from episodes import EpisodeSource
from episodes.taxonomy import PART_SLOTS, class_super_categories
from results.records import records_from_predictions


def evaluate_episodes(
    cfg: RunConfig,
    folder: RunFolder,
    source: EpisodeSource,
    learners: list[tuple[LearnerConfig, Learner | ImageLearner]],
    gathers: list[tuple],
    progress: bool,
    images: ImageEvaluator | None = None,
) -> str:
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
        with tqdm(
            total=len(todo), desc=spec.name, unit="ep", disable=not progress, file=sys.stderr
        ) as bar:
            for start in range(0, len(todo), step):
                positions = todo[start : start + step]
                if by_image:
                    done = images.positions(learner, source, positions, spec.name)
                else:
                    done = evaluate.predict_positions(
                        learner,
                        source,
                        positions,
                        *gather,
                        run_seed=cfg.episodes.seed,
                        learner_name=spec.name,
                    )
                out = done.predictions
                writer.append_many(
                    records_from_predictions(
                        run_id=run_id,
                        learner=spec.name,
                        split=source.split,
                        k_shot=done.k_shot,
                        variable_shape=not source.batched,
                        episodes=done.episodes,
                        classes=done.classes,
                        labels=out.labels,
                        predicted=out.predicted,
                        part_contributions=out.contributions,
                        super_categories=supers,
                        slot_names=PART_SLOTS if masks is None else slot_names(masks),
                        mask_mode=masks,
                        fingerprint=fingerprint,
                        transductive=learner.transductive,
                    )
                )
                bar.update(len(done.episodes))
    return run_id

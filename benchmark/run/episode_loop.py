"""The evaluation loop: every learner on every episode its run has not recorded yet.

Feature learners run `episodes.batch_size` same-shape episodes per call over their feature set,
image learners one episode at a time over pixels; each finished call is appended to the run's
locked records file at once, so a stopped run resumes where it stopped without repeating an
episode. A record carries its learner's run fingerprint, mask mode and protocol.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from baselines import ImageLearner
from baselines.base import Learner
from benchmark.config.cache_layout import short_key
from benchmark.config.run import LearnerConfig, RunConfig
from benchmark.evaluation import feature_learners as evaluate
from benchmark.evaluation.guard import learner_errors
from benchmark.evaluation.image_learners import ImageEvaluator
from benchmark.features.feature_set import slot_names
from benchmark.features.provider import learner_masks
from benchmark.run.folder import RunFolder
from benchmark.run.identity import RunIdentityError
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
    check_recorded_episodes(writer.done, source.indices, writer.path)
    for (spec, learner), gather in zip(learners, gathers):
        masks = learner_masks(cfg.features.masks, learner)
        fingerprint = folder.fingerprint(fingerprinted(spec))
        todo = [p for p, i in enumerate(source.indices) if (spec.key, i) not in writer.done]
        if not todo:
            continue
        by_image = isinstance(learner, ImageLearner)
        step = 1 if by_image else size
        with tqdm(
            total=len(todo), desc=spec.key, unit="ep", disable=not progress, file=sys.stderr
        ) as bar:
            for start in range(0, len(todo), step):
                positions = todo[start : start + step]
                episodes = [source.indices[p] for p in positions]
                started = time.perf_counter()
                with learner_errors(learner, spec.key, episodes, str(writer.path)):
                    if by_image:
                        done = images.positions(learner, source, positions, spec.key)
                    else:
                        done = evaluate.predict_positions(
                            learner,
                            source,
                            positions,
                            *gather,
                            run_seed=cfg.episodes.seed,
                            learner_name=spec.key,
                        )
                folder.add_learner_time(spec.key, time.perf_counter() - started)
                out = done.predictions
                writer.append_many(
                    records_from_predictions(
                        run_id=run_id,
                        learner=spec.key,
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


def fingerprinted(spec: LearnerConfig) -> dict:
    """What a learner's records are fingerprinted by: its name and options and, for a labelled
    copy, the label (the records' name) beside the learner it runs."""
    if spec.label is None:
        return {"name": spec.name, "options": spec.options}
    return {"name": spec.label, "learner": spec.name, "options": spec.options}


def check_recorded_episodes(done, indices, records) -> None:
    """Records of episodes the source does not hold (a resume with a smaller n_episodes, or
    another episode file) would be published beside the new ones: refuse them, with the fix."""
    wanted = set(indices)
    extra = sorted({episode for _, episode in done} - wanted)
    if extra:
        raise RunIdentityError(
            f"{records}: records of {len(extra)} episode(s) this run no longer draws (e.g. "
            f"episode {extra[0]}; episodes.n_episodes is {len(wanted)}): resume with the run's "
            "own episodes.n_episodes (or more), or start a new run"
        )

"""`python -m benchmark run`: config -> dataset -> backbone -> features -> episodes -> learners
-> per-episode records -> tables and a leaderboard result file.

Each stage caches what is costly (the twin, trained weights, features) under the cache folder,
and per-episode records are appended as they are computed, so a stopped run resumes where it
stopped (`--resume RUN_DIR`) without losing or repeating an episode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from benchmark.config import ConfigError, RunConfig, config_from_dict, apply_override
from benchmark.data.dataset import PartDataset
from results._io import atomic_write_text
from episodes import (EpisodeFileError, EpisodeSampler, EpisodeSettingsError, episodes_hash,
                      load_episodes, stack_episodes)
from episodes.episode import Episode, EpisodeBatch
from episodes.stacking import episode_shape
from episodes.taxonomy import PART_SLOTS, class_super_categories, classes

def cache_root(cfg: RunConfig) -> Path:
    """Where the twin, trained weights and features are cached."""
    root = cfg.cache_dir or os.environ.get("PARTBENCH_CACHE") or Path.home() / ".cache" / "partbench"
    return Path(root).expanduser()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _key(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --- dataset -------------------------------------------------------------------------------------

def resolve_dataset(cfg: RunConfig) -> PartDataset:
    """Load the real release, or the synthetic twin (generated into the cache on first use)."""
    from benchmark.data.partimagenet import load_partimagenet

    if cfg.data.source == "partimagenet":
        return load_partimagenet(Path(cfg.data.root).expanduser())
    from benchmark.data.synth import MARKER, generate_twin

    syn = cfg.data.synthetic
    params = {"images_per_class": syn.images_per_class, "image_size": syn.image_size,
              "seed": syn.seed, "full": syn.full}
    root = Path(cfg.data.root).expanduser() if cfg.data.root else (
        cache_root(cfg) / f"twin-{_key(params)}")
    if not (root / MARKER).is_file():
        _say(f"generating the synthetic twin into {root} (once; reused by later runs)")
    generate_twin(root, **params)  # reuses a twin made with the same parameters
    return load_partimagenet(root)


# --- backbone ------------------------------------------------------------------------------------

def resolve_backbone(cfg: RunConfig, dataset: PartDataset, progress: bool = True):
    """Build the timm backbone; with `weights: train`, train it on the train split once and cache it."""
    from benchmark.backbones import build_backbone

    bb = cfg.backbone
    checkpoint = Path(bb.checkpoint).expanduser() if bb.checkpoint else None
    if bb.weights == "train":
        checkpoint = trained_checkpoint(cfg, dataset, progress)
    return build_backbone(bb.name, weights=bb.weights, checkpoint=checkpoint,
                          image_size=bb.image_size, seed=bb.seed)


def trained_checkpoint(cfg: RunConfig, dataset: PartDataset, progress: bool = True) -> Path:
    """The checkpoint trained on the train split for this (dataset, backbone, train) setting."""
    from benchmark.training import train_backbone

    tr = cfg.train
    part_head = tr.part_head or ("after" if cfg.features.masks in ("predicted", "support-oracle")
                                 else False)
    # Everything that changes the weights; loader workers do not (augmentation is seeded per image).
    key = _key({"data": dataset.fingerprint, "backbone": cfg.backbone.name,
                "image_size": cfg.backbone.image_size, "seed": cfg.backbone.seed,
                "train": {**vars(tr), "part_head": part_head, "num_workers": None}})
    out_dir = cache_root(cfg) / "checkpoints" / f"{cfg.backbone.name}-{key}"
    best = out_dir / "best.pt"
    if best.is_file():
        return best
    _say(f"training {cfg.backbone.name} on the train split ({tr.method}, {tr.epochs} epochs) "
         f"into {out_dir}")
    from benchmark.training import EpisodeSpec

    val = EpisodeSpec(n_way=5, k_shot=tr.val_k_shot, n_query=tr.val_n_query,
                      n_episodes=tr.val_episodes)
    try:
        return train_backbone(
            dataset, model_name=cfg.backbone.name, image_size=cfg.backbone.image_size,
            method=tr.method, epochs=tr.epochs, batch_size=tr.batch_size, lr=tr.lr,
            part_head=part_head, seed=cfg.backbone.seed, out_dir=out_dir,
            device=cfg.features.device, num_workers=tr.num_workers, val_episodes=val,
            resume=True, progress=progress,
        )
    except EpisodeSettingsError as exc:
        raise ConfigError(f"train.val_k_shot/train.val_n_query: model selection on the val "
                          f"split cannot draw its episodes: {exc}") from None


# --- episodes ------------------------------------------------------------------------------------

@dataclass
class EpisodeSource:
    """The episodes a run evaluates: drawn by the sampler, or read from a fixed episode file."""

    split: str
    n_episodes: int
    settings: dict
    sampler: EpisodeSampler | None = None
    fixed: tuple[Episode, ...] | None = None

    @property
    def batched(self) -> bool:
        """True when the episodes share one shape and can be evaluated many at a time."""
        if self.sampler is not None:
            return self.sampler.mode != "variable"
        return len({episode_shape(e) for e in self.fixed}) == 1 and episode_shape(self.fixed[0]) is not None

    @property
    def indices(self) -> list[int]:
        """Episode index of each position (records identify an episode by its index)."""
        if self.sampler is not None:
            return list(range(self.n_episodes))
        return [e.index for e in self.fixed]

    def class_keys(self) -> tuple[str, ...]:
        if self.sampler is not None:
            return tuple(self.sampler.class_keys)
        return tuple(sorted({c for e in self.fixed for c in e.classes}))

    def episode(self, position: int) -> Episode:
        return self.sampler[position] if self.sampler is not None else self.fixed[position]

    def batch(self, positions: list[int]) -> EpisodeBatch:
        """The episodes at `positions`, stacked."""
        if self.sampler is not None:
            return self.sampler.take(positions)
        return stack_episodes([self.fixed[p] for p in positions], self.class_keys())

    def image_indices(self, dataset: PartDataset) -> np.ndarray:
        """(n,) dataset images the episodes can use: the split's, or the fixed episodes' own."""
        if self.sampler is not None:
            return dataset.split_indices(self.split)
        used = {i for e in self.fixed for way in (*e.support, *e.query) for i in way}
        return np.array(sorted(used), dtype=np.int64)

    def hash(self) -> str:
        """episodes_hash of every evaluated episode, in order (the value result files record)."""
        if self.fixed is not None:
            return episodes_hash(self.fixed)
        if self.sampler.mode == "variable":
            return episodes_hash(self.sampler[i] for i in range(self.n_episodes))
        step = 4096
        return episodes_hash(
            e for start in range(0, self.n_episodes, step)
            for e in self.sampler.episodes(start, min(start + step, self.n_episodes)))


def build_sampler(cfg: RunConfig, dataset: PartDataset) -> EpisodeSampler:
    ep = cfg.episodes
    shape = {} if ep.mode == "variable" else dict(n_way=ep.n_way, k_shot=ep.k_shot,
                                                   n_query=ep.n_query)
    try:
        return EpisodeSampler(dataset.labels, seed=ep.seed, split=ep.split, mode=ep.mode,
                              n_episodes=ep.n_episodes, **shape)
    except EpisodeSettingsError as exc:
        raise ConfigError(f"episodes: {exc}") from None


def episode_source(cfg: RunConfig, dataset: PartDataset) -> EpisodeSource:
    if cfg.episodes.file:
        try:
            loaded = load_episodes(Path(cfg.episodes.file).expanduser(),
                                   dataset_fingerprint=dataset.fingerprint)
        except (EpisodeFileError, OSError) as exc:
            raise ConfigError(f"episodes.file: {exc}") from None
        if not loaded.episodes:
            raise ConfigError(f"episodes.file: {cfg.episodes.file} holds no episode")
        return EpisodeSource(loaded.episodes[0].split, len(loaded.episodes),
                             dict(loaded.settings), fixed=loaded.episodes)
    sampler = build_sampler(cfg, dataset)
    return EpisodeSource(cfg.episodes.split, cfg.episodes.n_episodes, dict(sampler.settings),
                         sampler=sampler)


# --- the run -------------------------------------------------------------------------------------

def new_run_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_dir).expanduser() / f"{cfg.name}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def load_run_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it a partbench run folder?")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)


class FeatureProvider:
    """Features of the images a run needs, extracted once per mask mode and cached on disk."""

    def __init__(self, cfg: RunConfig, dataset: PartDataset, backbone, progress: bool) -> None:
        from benchmark.device import resolve_device

        self.cfg, self.dataset, self.backbone, self.progress = cfg, dataset, backbone, progress
        self.device = resolve_device(cfg.features.device)
        self._sets: dict[tuple[str, str], object] = {}

    def features(self, indices: np.ndarray, masks: str, tag: str):
        """FeatureSet (on the run's device) of dataset images `indices` with `masks` part masks."""
        from benchmark.features import extract_features

        if (tag, masks) not in self._sets:
            fc = self.cfg.features
            features = extract_features(
                self.dataset, indices, self.backbone, masks=masks, batch_size=fc.batch_size,
                num_workers=fc.num_workers, device=self.device, precision=fc.precision,
                cache_dir=str(cache_root(self.cfg) / "features"), progress=self.progress,
            )
            self._sets[(tag, masks)] = features.to(self.device)
        return self._sets[(tag, masks)]

    def gatherers(self, indices: np.ndarray) -> tuple:
        """(gather_support, gather_query) over the images `indices` that the episodes use."""
        masks = self.cfg.features.masks
        if masks == "support-oracle":  # annotations on the support set only
            support = self.features(indices, "oracle", "episodes")
            query = self.features(indices, "predicted", "episodes")
        else:
            support = query = self.features(indices, masks, "episodes")
        return support.gather, query.gather

    def base_embeddings(self):
        """(n_train, D) float32 global embeddings of the train split, for learners' prepare()."""
        train = self.dataset.split_indices("train")
        return self.features(train, "none", "train").embeddings.float()


def run(cfg: RunConfig, *, run_dir: Path | None = None, resume: bool = False,
        progress: bool = True) -> Path | None:
    """Run the benchmark described by `cfg`; returns the run folder (None on torchrun ranks > 0).

    Records are appended per batch of episodes; with resume=True the episodes already in
    run_dir/records.jsonl are skipped, so a stopped run loses nothing and repeats nothing.
    Under `torchrun --nproc_per_node=N`, every process joins training (DDP) and feature
    extraction (sharded); rank 0 alone evaluates the episodes and writes the outputs.
    """
    from benchmark.training.distributed import init_distributed

    started = time.time()
    ctx = init_distributed(cfg.features.device)
    try:
        if ctx.is_main:
            run_dir = run_dir or new_run_dir(cfg)
            run_dir.mkdir(parents=True, exist_ok=True)
            _say(f"run folder: {run_dir}")
            if not (resume and (run_dir / "config.yaml").is_file()):
                atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(),
                                                                          sort_keys=False))
            dataset = resolve_dataset(cfg)  # rank 0 first: it may generate the twin
        ctx.barrier()
        if not ctx.is_main:
            dataset = resolve_dataset(cfg)
        if dataset.defects and ctx.is_main:
            _say("skipped annotations: " + ", ".join(f"{k}: {v}" for k, v in dataset.defects.items()))
        source = episode_source(cfg, dataset)
        learners = build_learners(cfg)
        backbone = resolve_backbone(cfg, dataset, progress and ctx.is_main)
        features = FeatureProvider(cfg, dataset, backbone, progress and ctx.is_main)
        # Every rank takes part in (sharded) extraction of every feature set the learners use.
        gathers = features.gatherers(source.image_indices(dataset))
        if any(type(learner).prepare is not _base_prepare() for _, learner in learners):
            features.base_embeddings()
        if not ctx.is_main:
            return None
        run_id = evaluate_episodes(cfg, run_dir, source, learners, features, gathers, progress)
        finish_run(cfg, run_dir, run_id, dataset, source, backbone, features, started)
        return run_dir
    finally:
        ctx.close()


def evaluate_episodes(cfg: RunConfig, run_dir: Path, source: EpisodeSource, learners: list,
                      features: FeatureProvider, gathers: tuple, progress: bool) -> str:
    """Evaluate every learner on every episode not yet in run_dir/records.jsonl; the run id."""
    from benchmark.evaluate import predict_batch, predict_episode
    from results.records import RecordWriter, records_from_predictions

    gather_support, gather_query = gathers
    supers = class_super_categories()
    run_id = _key({"config": cfg.to_dict(), "dir": run_dir.name})
    with RecordWriter(run_dir / "records.jsonl", expect={"split": source.split}) as writer:
        if writer.setting is not None:
            run_id = writer.setting["run_id"]  # resuming: keep the run's identity
        for spec, learner in learners:
            todo = [p for p, i in enumerate(source.indices) if (spec.name, i) not in writer.done]
            if not todo:
                continue
            if type(learner).prepare is not _base_prepare():
                learner.prepare(features.base_embeddings())
            common = dict(run_id=run_id, learner=spec.name, split=source.split,
                          super_categories=supers, slot_names=PART_SLOTS,
                          mask_mode=cfg.features.masks if learner.uses_parts else None)
            bar = _progress(len(todo), spec.name, progress)
            if source.batched:
                for chunk in _chunks(todo, cfg.episodes.batch_size):
                    batch = source.batch(chunk)
                    out = predict_batch(learner, batch, gather_support, gather_query)
                    keys = np.asarray(source.class_keys())[batch.classes]
                    writer.append_many(records_from_predictions(
                        **common, k_shot=int(batch.support.shape[2]), episodes=batch.indices,
                        classes=keys, labels=out.labels, predicted=out.predicted,
                        part_contributions=out.contributions))
                    bar.update(len(chunk))
            else:
                for p in todo:
                    episode = source.episode(p)
                    out = predict_episode(learner, episode, gather_support, gather_query)
                    records = records_from_predictions(
                        **common, k_shot=None, episodes=[episode.index], classes=[episode.classes],
                        labels=out.labels, predicted=out.predicted,
                        part_contributions=out.contributions)
                    writer.append_many([{**r, "n_query": None} for r in records])
                    bar.update(1)
            bar.close()
    return run_id


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def finish_run(cfg: RunConfig, run_dir: Path, run_id: str, dataset: PartDataset,
               source: EpisodeSource, backbone, features: FeatureProvider, started: float) -> None:
    """Tables (printed; CSV/Markdown/LaTeX), plots and the leaderboard result file."""
    from results.plots import write_plots
    from results.provenance import git_state, hardware_info, package_versions
    from results.records import read_records
    from results.schema import build_result, write_result
    from results.tables import write_report

    records = read_records(run_dir / "records.jsonl")
    rep = cfg.report
    ci = dict(confidence=rep.confidence, method="bootstrap" if rep.bootstrap else "normal",
              seed=rep.seed)
    names = [spec.name for spec in cfg.learners]
    write_report(records, run_dir / "tables", baseline=names[0] if len(names) > 1 else None, **ci)
    write_plots(records, run_dir / "plots", **ci)
    plot_first_episode(cfg, run_dir / "plots", dataset, source, features)
    commit, dirty = git_state(Path(__file__).resolve().parent)
    prov = backbone.provenance
    ep = cfg.episodes
    result = build_result(
        run_id=run_id, name=cfg.name,
        setting={"split": source.split, "n_way": source.settings.get("n_way"),
                 "k_shot": source.settings.get("k_shot"), "n_query": source.settings.get("n_query"),
                 "mode": source.settings.get("mode"), "mask_mode": cfg.features.masks},
        config=cfg.to_dict(),
        seeds={"episodes": ep.seed, "backbone": cfg.backbone.seed,
               "synthetic_twin": cfg.data.synthetic.seed, "report": rep.seed},
        versions=package_versions(("numpy", "pandas", "learn2learn")),
        git_commit=commit, git_dirty=dirty,
        hardware=hardware_info(str(features.device), **_accelerator(features.device)),
        dataset={"name": "synthetic-twin" if cfg.data.source == "synthetic" else "partimagenet-ood",
                 "fingerprint": dataset.fingerprint, "n_images": len(dataset.images),
                 "skipped_annotations": dict(dataset.defects)},
        weights={"backbone": backbone.name, "provenance": prov["source"],
                 "sha256": prov.get("sha256"), "saw_test_classes": bool(prov["saw_test_classes"]),
                 "checkpoint": prov.get("checkpoint"), "image_size": cfg.backbone.image_size},
        episodes_hash=source.hash(), episodes_requested=source.n_episodes,
        wall_time_s=time.time() - started, records=records,
        confidence=rep.confidence, ci_method=ci["method"], ci_seed=rep.seed,
    )
    path = write_result(run_dir / "result.json", result)
    _say(f"\nresult file: {path}  (check it with: python -m benchmark validate {path})")
    _say(f"tables: {run_dir / 'tables'}   plots: {run_dir / 'plots'}")


def plot_first_episode(cfg: RunConfig, out_dir: Path, dataset: PartDataset,
                       source: EpisodeSource, features: FeatureProvider,
                       queries_per_way: int = 2) -> Path:
    """Draw the run's first episode (support and a few queries per way, part masks tinted) with
    the predictions of the last learner in the config."""
    from benchmark.evaluate import predict_episode
    from episodes.episode import Episode
    from results.plots import plot_episode

    spec = cfg.learners[-1]
    (_, learner), = build_learners(dataclasses.replace(cfg, learners=[spec]))
    if type(learner).prepare is not _base_prepare():
        learner.prepare(features.base_embeddings())
    full = source.episode(0)
    episode = Episode(full.index, full.split, full.classes, full.support,
                      tuple(q[:queries_per_way] for q in full.query))
    out = predict_episode(learner, episode, *features.gatherers(source.image_indices(dataset)))
    names = {c.synset: c.name for c in classes()}

    def pictures(indices: list[int]) -> tuple[list, list]:
        images = [np.asarray(dataset.load_image(i).convert("RGB")) for i in indices]
        return images, [dataset.slot_masks(i) for i in indices]

    support = [i for way in episode.support for i in way]
    query = [i for way in episode.query for i in way]
    s_images, s_masks = pictures(support)
    q_images, q_masks = pictures(query)
    label = [names.get(c, c) for c in episode.classes]
    return plot_episode(
        s_images, [label[w] for w, way in enumerate(episode.support) for _ in way],
        q_images, [label[w] for w in out.labels[0]], [label[w] for w in out.predicted[0]],
        out_dir / "episode_0.png", support_masks=s_masks, query_masks=q_masks,
        slot_names=PART_SLOTS, title=f"episode 0 ({full.split}), predictions of {spec.name}")


def _accelerator(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"gpu": torch.cuda.get_device_name(device), "gpu_count": torch.cuda.device_count()}


def _base_prepare():
    from baselines.base import Learner

    return Learner.prepare


def build_learners(cfg: RunConfig) -> list:
    from baselines import get_learner, get_learner_class

    learners = []
    for spec in cfg.learners:
        options = dict(spec.options)
        try:
            if get_learner_class(spec.name).uses_parts:
                if cfg.features.masks == "none":
                    raise ConfigError(f"learners: {spec.name} pools features over part masks, but "
                                      "features.masks is none; set it to oracle, predicted or "
                                      "support-oracle")
                options.setdefault("mask_mode", cfg.features.masks)
            learners.append((spec, get_learner(spec.name, **options)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"learners: {spec.name}: {exc}") from exc
    return learners


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, file=sys.stderr)

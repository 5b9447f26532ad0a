"""`python -m benchmark run`: config -> dataset -> backbone -> features -> episodes -> learners
-> per-episode records -> tables and a leaderboard result file.

Each stage caches what is costly (the twin, trained weights, features) under the cache folder,
and per-episode records are appended as they are computed, so a stopped run resumes where it
stopped (`--resume RUN_DIR`) without losing or repeating an episode.
"""

from __future__ import annotations

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
from episodes import EpisodeSampler, episodes_hash, load_episodes
from episodes.episode import Episode, EpisodeBatch
from episodes.taxonomy import class_super_categories

TWIN_MARKER = ".partbench-twin.json"


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
    syn = cfg.data.synthetic
    params = {"images_per_class": syn.images_per_class, "image_size": syn.image_size,
              "seed": syn.seed, "full": syn.full}
    root = Path(cfg.data.root).expanduser() if cfg.data.root else (
        cache_root(cfg) / f"twin-{_key(params)}")
    if not (root / TWIN_MARKER).is_file():
        from benchmark.data.synth import generate_twin

        _say(f"generating the synthetic twin into {root} (once; reused by later runs)")
        generate_twin(root, **params)
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
    key = _key({"data": dataset.fingerprint, "backbone": cfg.backbone.name,
                "image_size": cfg.backbone.image_size, "seed": cfg.backbone.seed,
                "train": {**vars(tr), "part_head": part_head}})
    out_dir = cache_root(cfg) / "checkpoints" / f"{cfg.backbone.name}-{key}"
    best = out_dir / "best.pt"
    if best.is_file():
        return best
    _say(f"training {cfg.backbone.name} on the train split ({tr.method}, {tr.epochs} epochs) "
         f"into {out_dir}")
    return train_backbone(
        dataset, model_name=cfg.backbone.name, image_size=cfg.backbone.image_size,
        method=tr.method, epochs=tr.epochs, batch_size=tr.batch_size, lr=tr.lr,
        part_head=part_head, seed=cfg.backbone.seed, out_dir=out_dir,
        device=cfg.features.device, num_workers=tr.num_workers, val_episodes=tr.val_episodes,
        resume=True, progress=progress,
    )


# --- episodes ------------------------------------------------------------------------------------

def build_sampler(cfg: RunConfig, dataset: PartDataset) -> EpisodeSampler:
    ep = cfg.episodes
    return EpisodeSampler(
        dataset.labels, seed=ep.seed, split=ep.split, n_way=ep.n_way, k_shot=ep.k_shot,
        n_query=ep.n_query, mode=ep.mode, n_episodes=ep.n_episodes,
    )


@dataclass
class EpisodeSource:
    """The episodes a run evaluates: from the sampler, or from a fixed episode file."""

    n_episodes: int
    settings: dict
    sampler: EpisodeSampler | None = None
    fixed: list[Episode] | None = None

    @property
    def batched(self) -> bool:
        """True when episodes share one shape and can be evaluated many at a time."""
        if self.sampler is not None:
            return self.settings.get("mode") != "variable"
        shapes = {(len(e.support), *map(len, e.support), *map(len, e.query)) for e in self.fixed}
        return len(shapes) == 1

    def episode(self, i: int) -> Episode:
        return self.sampler[i] if self.sampler is not None else self.fixed[i]

    def batch(self, start: int, stop: int) -> EpisodeBatch:
        if self.sampler is not None:
            return self.sampler.batch(start, stop)
        chosen = self.fixed[start:stop]
        keys = {k: i for i, k in enumerate(sorted({c for e in chosen for c in e.classes}))}
        self._keys = sorted(keys, key=keys.get)
        return EpisodeBatch(
            split=chosen[0].split,
            indices=np.array([e.index for e in chosen], dtype=np.int64),
            classes=np.array([[keys[c] for c in e.classes] for e in chosen], dtype=np.int64),
            support=np.array([e.support for e in chosen], dtype=np.int64),
            query=np.array([e.query for e in chosen], dtype=np.int64),
        )

    def class_keys(self) -> tuple[str, ...]:
        return self.sampler.class_keys if self.sampler is not None else tuple(self._keys)

    def all_episodes(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(self.n_episodes))


def episode_source(cfg: RunConfig, dataset: PartDataset) -> EpisodeSource:
    if cfg.episodes.file:
        loaded = load_episodes(Path(cfg.episodes.file).expanduser())
        if loaded.dataset_fingerprint != dataset.fingerprint:
            raise ConfigError(
                f"episodes.file: {cfg.episodes.file} was drawn from a dataset with fingerprint "
                f"{loaded.dataset_fingerprint[:12]}..., not this one ({dataset.fingerprint[:12]}...): "
                "its image indices would point at other images; regenerate it with "
                "`python -m benchmark episodes`"
            )
        return EpisodeSource(len(loaded.episodes), dict(loaded.settings), fixed=list(loaded.episodes))
    sampler = build_sampler(cfg, dataset)
    return EpisodeSource(cfg.episodes.n_episodes, dict(sampler.settings), sampler=sampler)


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


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(cfg: RunConfig, *, run_dir: Path | None = None, resume: bool = False,
        progress: bool = True) -> Path:
    """Run the benchmark described by `cfg`; returns the run folder."""
    from results.records import RecordWriter

    started = time.time()
    run_dir = run_dir or new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    _say(f"run folder: {run_dir}")
    config_text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if resume and (run_dir / "config.yaml").is_file():
        pass  # keep the original; overrides given with --resume only change how, not what
    else:
        write_text_atomic(run_dir / "config.yaml", config_text)

    dataset = resolve_dataset(cfg)
    if dataset.defects:
        _say("skipped annotations: " + ", ".join(f"{k}: {v}" for k, v in dataset.defects.items()))
    source = episode_source(cfg, dataset)
    learners = build_learners(cfg)
    backbone = resolve_backbone(cfg, dataset, progress)
    features = FeatureProvider(cfg, dataset, backbone, progress)

    writer = RecordWriter(run_dir / "records.jsonl")
    run_id = _key({"config": config_text, "dir": run_dir.name})
    supers = class_super_categories()
    from benchmark.evaluate import evaluate_batch, evaluate_episode

    gather_support, gather_query = features.gatherers(source)
    for spec, learner in learners:
        if type(learner).prepare is not _base_prepare():
            learner.prepare(features.base_embeddings())
        meta = {"run_id": run_id, "learner": spec.name, "k_shot": cfg.episodes.k_shot,
                "n_query": cfg.episodes.n_query, "mask_mode": cfg.features.masks
                if learner.uses_parts else None}
        todo = [i for i in range(source.n_episodes) if (spec.name, i) not in writer.done]
        if not todo:
            continue
        bar = _progress(len(todo), f"{spec.name}", progress)
        if source.batched:
            step = cfg.episodes.batch_size
            for start in range(0, source.n_episodes, step):
                stop = min(start + step, source.n_episodes)
                wanted = [i for i in range(start, stop) if (spec.name, i) not in writer.done]
                if not wanted:
                    continue
                batch = _subset(source.batch(start, stop), [i - start for i in wanted])
                records = evaluate_batch(learner, batch, source.class_keys(), supers,
                                         gather_support, gather_query)
                writer.append_many([{**meta, **_fix_shape(r, batch)} for r in records])
                bar.update(len(records))
        else:
            for i in todo:
                record = evaluate_episode(learner, source.episode(i), supers,
                                          gather_support, gather_query)
                writer.append_many([{**meta, **record, "k_shot": None, "n_query": None}])
                bar.update(1)
        bar.close()
    writer.close()
    finish_run(cfg, run_dir, dataset, source, backbone, features, started)
    return run_dir


def _fix_shape(record: dict, batch: EpisodeBatch) -> dict:
    return {**record, "k_shot": int(batch.support.shape[2]), "n_query": int(batch.query.shape[2])}


def _subset(batch: EpisodeBatch, rows: list[int]) -> EpisodeBatch:
    if len(rows) == len(batch):
        return batch
    return EpisodeBatch(batch.split, batch.indices[rows], batch.classes[rows],
                        batch.support[rows], batch.query[rows])


def _base_prepare():
    from baselines.base import Learner

    return Learner.prepare


def build_learners(cfg: RunConfig) -> list:
    from baselines import get_learner

    learners = []
    for spec in cfg.learners:
        try:
            learners.append((spec, get_learner(spec.name, **spec.options)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"learners: {spec.name}: {exc}") from exc
    return learners


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, file=sys.stderr)

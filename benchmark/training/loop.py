"""`train_backbone`: train a timm backbone on the train split, select it on val-split episodes.

Clean protocol: gradients come from train-split images only (109 classes); val-split images (19
classes) are embedded without gradients to pick the best epoch; test-split images are never read.

Randomness is a function of (seed, epoch, ...): data order (DistributedSampler seeded, set_epoch),
augmentation (seed, epoch, image index), episodes (episode number), model init (seed under
fork_rng), and the global RNG inside an epoch (forked and seeded from (seed, epoch)). So a run
interrupted after epoch e and resumed from last.pt ends with the same weights as an
uninterrupted run, and N processes give the same result as one process with the same global batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import timm
import timm.optim
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from benchmark.config.cache_layout import cache_root
from benchmark.config.training import (
    BATCHNORM_MODES,
    PART_HEAD_LR,
    PART_HEAD_MODES,
    TRAIN_METHODS,
    VAL_WAYS,
    TrainConfig,
    backbone_phase,
    weights_identity,
)
from benchmark.models.device import autocast, resolve_precision
from benchmark.models.part_head import part_seg_loss
from benchmark.training.checkpoint import (
    TRAIN_CLASSES_TAG,
    cpu_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from benchmark.training.classification import classification_loss
from benchmark.training.data import ImageSource, SplitImages, derive_seed, train_class_keys
from benchmark.training.decoded_cache import DecodedViews
from benchmark.training.distributed import DistContext, init_distributed
from benchmark.training.episodic import (
    EpisodeImages,
    EpisodeSpec,
    episode_arrays,
    episode_sampler,
    protonet_accuracy,
    protonet_loss,
)
from benchmark.training.model import build_training_model, set_batchnorm_mode


def train_backbone(
    dataset: ImageSource,
    config: TrainConfig,
    *,
    model_name: str,
    image_size: int,
    seed: int,
    out_dir: str | Path,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    decoded_cache: str | Path | None = None,
    backbone_phase_from: str | Path | None = None,
) -> Path:
    """Train `model_name` from random init on `dataset`'s train split; return best.pt's path.

    config.method: "classification" (linear head, cross-entropy over the 109 train classes) or
        "protonet" (episodic, Snell et al. 2017; config n_way, k_shot, n_query,
        episodes_per_epoch, episodes_per_step).
    config.part_head: False, "joint" (part-segmentation loss added with weight
        `part_head_weight`) or "after" (trained `part_head_epochs` more epochs on the frozen
        selected backbone).
    Model selection: config.val_episodes 5-way val episodes of val_k_shot/val_n_query.
    decoded_cache: a cache folder: decode each image's training view once into memory-mapped
        files there (benchmark/training/decoded_cache.py) and read those in every epoch; the
        weights are the same as without it. None: the default cache folder when
        config.decoded_cache is true, else decode the JPEGs in every epoch.
    backbone_phase_from: with part_head "after", a folder where `backbone_phase(config)` was
        trained to the end: its selected backbone and history are taken (verified, and its
        settings and data must match) and only the part head trains, so changing the head's
        settings never retrains the backbone.
    Writes out_dir/best.pt (+ .sha256) and out_dir/last.pt (resume state); both record
    weights_identity(config, ...), which a resumed run must match. Under torchrun, only rank 0
    writes and prints.
    """
    # Under torchrun this joins (or starts) the process group and leaves it up: the runner goes on
    # to shard feature extraction over it.
    ctx = init_distributed(device)
    identity = weights_identity(config, model_name=model_name, image_size=image_size, seed=seed)
    if decoded_cache is None and config.decoded_cache:
        decoded_cache = cache_root(None)  # asked for in the config: the default cache folder
    return _Trainer(
        dataset,
        config.resolved(),
        identity,
        Path(out_dir),
        ctx,
        resume,
        progress,
        Path(decoded_cache) if decoded_cache is not None else None,
        Path(backbone_phase_from) if backbone_phase_from is not None else None,
    ).run()


def _validate(config: TrainConfig, image_size: int, world_size: int) -> None:
    if config.method not in TRAIN_METHODS:
        raise ValueError(f"method must be one of {TRAIN_METHODS}, got {config.method!r}")
    if config.part_head not in PART_HEAD_MODES:
        raise ValueError(f"part_head must be one of {PART_HEAD_MODES}, got {config.part_head!r}")
    if config.batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {config.batchnorm!r}")
    if config.epochs < 1 or image_size < 8:
        raise ValueError("epochs must be >= 1 and image_size >= 8")
    if config.part_head == "after" and config.resolved().part_head_epochs < 1:
        raise ValueError("part_head_epochs must be >= 1: an untrained head's masks mean nothing")
    if config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of "
            f"processes ({world_size})"
        )
    if config.method == "protonet" and config.episodes_per_step % world_size:
        raise ValueError(
            f"episodes_per_step {config.episodes_per_step} must be divisible by the "
            f"number of processes ({world_size})"
        )


class _Trainer:
    def __init__(
        self,
        dataset: ImageSource,
        config: TrainConfig,
        identity: dict[str, Any],
        out_dir: Path,
        ctx: DistContext,
        resume: bool,
        progress: bool,
        decoded_cache: Path | None = None,
        backbone_phase_from: Path | None = None,
    ) -> None:
        self.model_name, self.image_size = identity["model_name"], identity["image_size"]
        self.seed = identity["seed"]
        _validate(config, self.image_size, ctx.world_size)
        self.dataset, self.config, self.identity, self.out_dir = dataset, config, identity, out_dir
        self.ctx, self.resume, self.progress = ctx, resume, progress and ctx.is_main
        self.num_workers = config.num_workers
        self.decoded_cache = decoded_cache
        if backbone_phase_from is not None and config.part_head != "after":
            raise ValueError('backbone_phase_from needs part_head="after"')
        self.backbone_phase_from = backbone_phase_from
        self._decoded_train: DecodedViews | None = None
        self.device = ctx.device
        self.cuda = self.device.type == "cuda"
        self.dtype = resolve_precision(config.precision, self.device)
        self.batchnorm = config.batchnorm
        if self.batchnorm == "auto":
            self.batchnorm = "sync" if ctx.distributed and self.cuda else "local"
        self.class_keys = train_class_keys()
        self.labels = np.asarray(
            dataset.labels if hasattr(dataset, "labels") else [r.synset for r in dataset.images]
        )
        # selected.pt: the best epoch so far; best.pt appears only once training is complete, so
        # its presence means "done" (the runner reuses it without loading the trainer).
        self.last_path, self.best_path = out_dir / "last.pt", out_dir / "best.pt"
        self.selected_path = out_dir / "selected.pt"

        c = config
        self.model, data_cfg = build_training_model(
            self.model_name,
            image_size=self.image_size,
            n_classes=len(self.class_keys) if c.method == "classification" else None,
            part_head=bool(c.part_head),
            seed=derive_seed(self.seed, 0xB0) % (1 << 31),
        )
        self.mean, self.std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
        self.interpolation = str(data_cfg.get("interpolation", "bicubic"))
        if self.batchnorm == "sync":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        if self.cuda:
            self.model.to(memory_format=torch.channels_last)

        val = SplitImages(
            dataset,
            "val",
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            augment=False,
            seed=self.seed,
            interpolation=self.interpolation,
        )
        val.decoded = self._decoded_views(val, with_labels=False)
        self.val_images = val
        spec = EpisodeSpec(VAL_WAYS, c.val_k_shot, c.val_n_query, c.val_episodes)
        sampler = episode_sampler(self.labels, seed=c.val_seed, split="val", spec=spec)
        self.val_support, self.val_query = episode_arrays(sampler, spec.n_episodes)

    # ---- phases -------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.config.epochs + (
            self.config.part_head_epochs if self.config.part_head == "after" else 0
        )

    def _in_after_phase(self, epoch: int) -> bool:
        return self.config.part_head == "after" and epoch >= self.config.epochs

    def _set_trainable(self, after_phase: bool) -> None:
        m = self.model
        for p in m.backbone.parameters():
            p.requires_grad_(not after_phase)
        if m.classifier is not None:
            for p in m.classifier.parameters():
                p.requires_grad_(not after_phase)
        if m.part_head is not None:
            train_head = self.config.part_head == "joint" or after_phase
            for p in m.part_head.parameters():
                p.requires_grad_(train_head)

    def _steps_per_epoch(self, after_phase: bool) -> int:
        c = self.config
        if c.method == "protonet" and not after_phase:
            return max(1, c.episodes_per_epoch // c.episodes_per_step)
        n_train = len(self.dataset.split_indices("train"))
        per_rank = n_train // self.ctx.world_size
        steps = per_rank // (c.batch_size // self.ctx.world_size)
        if steps < 1:
            raise ValueError(
                f"batch_size {c.batch_size} is larger than the train split ({n_train} images)"
            )
        return steps

    def _optimizer(self, after_phase: bool):
        c = self.config
        trainable = self.model.part_head if after_phase else self.model  # frozen params skipped
        # the head alone, from scratch on a frozen trunk: AdamW (the backbone's SGD at its lr
        # suits the trunk, not a fresh decoder)
        name, lr = ("adamw", PART_HEAD_LR) if after_phase else (c.optimizer, c.lr)
        opt = timm.optim.create_optimizer_v2(
            trainable, opt=name, lr=lr, weight_decay=c.weight_decay, momentum=0.9
        )
        n_epochs = c.part_head_epochs if after_phase else c.epochs
        total = n_epochs * self._steps_per_epoch(after_phase)
        warmup = 0 if after_phase else int(round(c.warmup_epochs * self._steps_per_epoch(False)))

        def factor(step: int) -> float:  # linear warm-up, then cosine to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (
                1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup)))
            )

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def _wrap(self) -> nn.Module:
        if not self.ctx.distributed:
            return self.model
        ids = [self.device.index] if self.cuda else None
        return DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=True)

    # ---- data ---------------------------------------------------------------------------
    def _loader_kwargs(self, epoch: int) -> dict[str, Any]:
        return dict(
            num_workers=self.num_workers,
            pin_memory=self.cuda,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0xD1)),
        )

    def _train_images(self, epoch: int, with_masks: bool) -> SplitImages:
        c = self.config
        train = SplitImages(
            self.dataset,
            "train",
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            augment=True,
            seed=self.seed,
            with_masks=with_masks,
            interpolation=self.interpolation,
            class_keys=self.class_keys,
        )
        if self.decoded_cache is not None and self._decoded_train is None:
            # one set for all epochs; with label maps whenever a part head trains in any phase
            labelled = SplitImages(
                self.dataset,
                "train",
                image_size=self.image_size,
                mean=self.mean,
                std=self.std,
                augment=True,
                seed=self.seed,
                with_masks=bool(c.part_head),
                class_keys=self.class_keys,
            )
            self._decoded_train = self._decoded_views(labelled, with_labels=bool(c.part_head))
        train.decoded = self._decoded_train
        train.set_epoch(epoch)
        return train

    def _decoded_views(self, images: SplitImages, with_labels: bool) -> DecodedViews | None:
        """The decoded-image cache of `images`' views (built by rank 0 first), or None."""
        if self.decoded_cache is None:
            return None
        common = dict(
            fingerprint=self.dataset.fingerprint,
            indices=images.indices,
            view_size=images.view_size,
            with_labels=with_labels,
            make_view=images.make_view,
            num_workers=self.num_workers,
            progress=self.progress,
        )
        if self.ctx.is_main:
            views = DecodedViews.open(self.decoded_cache, **common)
        self.ctx.barrier()
        if not self.ctx.is_main:
            views = DecodedViews.open(self.decoded_cache, **common)
        return views

    def _image_loader(self, epoch: int, with_masks: bool) -> DataLoader:
        c = self.config
        train = self._train_images(epoch, with_masks)
        sampler = DistributedSampler(
            train,
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            train,
            batch_size=c.batch_size // self.ctx.world_size,
            sampler=sampler,
            drop_last=True,
            **self._loader_kwargs(epoch),
        )

    def _episode_loader(self, epoch: int, with_masks: bool) -> DataLoader:
        c = self.config
        images = self._train_images(epoch, with_masks)
        spec = EpisodeSpec(c.n_way, c.k_shot, c.n_query, c.episodes_per_epoch)
        sampler = episode_sampler(self.labels, seed=self.seed, split="train", spec=spec)
        per_rank = c.episodes_per_step // self.ctx.world_size
        steps = self._steps_per_epoch(False)
        first = epoch * steps * c.episodes_per_step  # fresh episodes every epoch
        ids = [
            first + s * c.episodes_per_step + self.ctx.rank * per_rank + j
            for s in range(steps)
            for j in range(per_rank)
        ]
        return DataLoader(
            EpisodeImages(images, sampler, ids, with_masks=with_masks),
            batch_size=per_rank,
            shuffle=False,
            **self._loader_kwargs(epoch),
        )

    # ---- steps --------------------------------------------------------------------------
    def _autocast(self):
        return autocast(self.device, self.dtype)  # config.precision ("auto": bf16 on CUDA)

    def _to_device(self, x: torch.Tensor, image: bool = False) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if image and self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _step_images(self, net: nn.Module, batch, part_weight: float):
        images, labels, maps = batch
        images, labels = self._to_device(images, True), self._to_device(labels)
        maps = self._to_device(maps) if maps.numel() else None
        with self._autocast():
            outputs = net(images)
        return classification_loss(
            outputs,
            labels,
            maps,
            part_weight=part_weight,
            label_smoothing=self.config.label_smoothing,
        )

    def _step_episodes(self, net: nn.Module, batch):
        images, maps, n_way, k_shot = batch  # images (b, n, 3, S, S); maps (b, n, S, S) | (b, n, 0)
        b, n = images.shape[:2]
        flat = self._to_device(images.flatten(0, 1), True)
        with self._autocast():
            pooled, _, part_logits = net(flat)
        pooled = pooled.float().reshape(b, n, -1)
        losses, accs = zip(
            *(protonet_loss(pooled[i], int(n_way[i]), int(k_shot[i])) for i in range(b))
        )
        loss = torch.stack(losses).mean()
        stats = {"ce": float(loss.detach()), "acc": float(torch.stack(accs).mean())}
        if part_logits is not None:
            seg = part_seg_loss(part_logits, self._to_device(maps.flatten(0, 1)))
            loss = loss + self.config.part_head_weight * seg
            stats["seg"] = float(seg.detach())
        return loss, stats

    # ---- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def val_accuracy(self) -> float:
        """ProtoNet accuracy on the fixed val episodes, from globally pooled embeddings."""
        was_training = self.model.training
        self.model.eval()
        # A DataLoader draws its workers' base seed from `generator`, else from the global RNG.
        loader = DataLoader(
            self.val_images,
            batch_size=max(64, self.config.batch_size),
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.cuda,
            generator=torch.Generator().manual_seed(self.seed),
        )
        chunks = []
        for images, _, _ in loader:
            with self._autocast():
                chunks.append(self.model.embed(self._to_device(images, True)).float().cpu())
        self.model.train(was_training)
        acc = protonet_accuracy(
            torch.cat(chunks), self.val_images.indices, self.val_support, self.val_query
        )
        if self.ctx.distributed:  # every rank embeds the same images; rank 0's number decides
            t = torch.tensor([acc], dtype=torch.float64, device=self.device)
            dist.broadcast(t, src=0)
            acc = float(t.item())
        return acc

    # ---- checkpoints --------------------------------------------------------------------
    def _meta(self, epoch: int, val_accuracy: float | None) -> dict[str, Any]:
        c = self.config
        return {
            "model_name": self.model_name,
            "image_size": self.image_size,
            "method": c.method,
            "epoch": int(epoch),
            "val_accuracy": None if val_accuracy is None else float(val_accuracy),
            "train_classes": TRAIN_CLASSES_TAG,
            "saw_test_classes": False,
            "dataset_fingerprint": str(getattr(self.dataset, "fingerprint", "")),
            "part_head": c.part_head or None,
            "mean": list(self.mean),
            "std": list(self.std),
            "batchnorm": self.batchnorm,
            "config": self.identity,
        }

    def _save_selected(self, epoch: int, acc: float) -> None:
        if self.ctx.is_main:
            head = self.model.part_head if self.config.part_head == "joint" else None
            save_checkpoint(
                {
                    "model": cpu_state_dict(self.model.backbone),
                    "part_head": cpu_state_dict(head) if head is not None else None,
                    "meta": self._meta(epoch, acc),
                },
                self.selected_path,
            )
        self.ctx.barrier()

    def _write_best(self) -> None:
        """best.pt = the selected epoch (+ the part head trained after it, if any)."""
        if self.ctx.is_main:
            selected = load_checkpoint(self.selected_path)
            if self.config.part_head == "after":
                selected["part_head"] = cpu_state_dict(self.model.part_head)
            save_checkpoint(selected, self.best_path)
        self.ctx.barrier()

    def _save_last(self, epochs_done: int, opt, sched) -> None:
        if self.ctx.is_main:
            m = self.model
            save_checkpoint(
                {
                    "model": cpu_state_dict(m.backbone),
                    "classifier": cpu_state_dict(m.classifier)
                    if m.classifier is not None
                    else None,
                    "part_head": cpu_state_dict(m.part_head) if m.part_head is not None else None,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epochs_done": epochs_done,
                    "best_val_accuracy": self.best_acc,
                    "best_epoch": self.best_epoch,
                    "history": self.history,
                    "meta": self._meta(epochs_done, self.best_acc),
                },
                self.last_path,
            )
        self.ctx.barrier()

    def _load_last(self) -> dict[str, Any] | None:
        if not (self.resume and self.last_path.is_file()):
            return None
        state = load_checkpoint(self.last_path)
        saved, wanted = state["meta"]["config"], self.identity
        if saved != wanted:

            def flat(d: dict) -> dict:
                return {**{k: v for k, v in d.items() if k != "train"}, **d.get("train", {})}

            saved, wanted = flat(saved), flat(wanted)
            diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise ValueError(
                f"{self.last_path} was written by a run with other settings "
                f"({', '.join(diff)}); use another out_dir or resume=False"
            )
        if state["meta"]["dataset_fingerprint"] != str(getattr(self.dataset, "fingerprint", "")):
            raise ValueError(
                f"{self.last_path} was trained on another dataset (fingerprint "
                "differs); use another out_dir or resume=False"
            )
        return state

    def _adopt_backbone_phase(self, folder: Path) -> dict[str, Any]:
        """The end of the backbone phase, from a folder that trained `backbone_phase(config)`:
        its last.pt (as the resume state: epochs_done = config.epochs, history, best epoch) and
        its selected.pt (copied here: the head trains on that backbone)."""
        c = self.config
        state = load_checkpoint(folder / "last.pt")
        selected = load_checkpoint(folder / "selected.pt")
        wanted = weights_identity(
            backbone_phase(c),
            model_name=self.model_name,
            image_size=self.image_size,
            seed=self.seed,
        )
        fingerprint = str(getattr(self.dataset, "fingerprint", ""))
        for name, checkpoint in (("last.pt", state), ("selected.pt", selected)):
            meta = checkpoint["meta"]
            if meta["config"] != wanted or meta["dataset_fingerprint"] != fingerprint:
                raise ValueError(
                    f"{folder / name} is not this run's backbone phase (other settings or "
                    "data); train the backbone there first"
                )
        if int(state["epochs_done"]) != c.epochs:
            raise ValueError(f"{folder / 'last.pt'} is not a finished backbone phase")
        if self.ctx.is_main:  # under this run's settings: best.pt will say what trained it
            meta = selected["meta"]
            meta = self._meta(meta["epoch"], meta["val_accuracy"])
            save_checkpoint({**selected, "meta": meta}, self.selected_path)
        self.ctx.barrier()
        return {**state, "part_head": None}  # the head starts from its seeded initialisation

    def _restore_modules(self, state: dict[str, Any]) -> None:
        m = self.model
        m.backbone.load_state_dict(state["model"])
        if m.classifier is not None and state.get("classifier") is not None:
            m.classifier.load_state_dict(state["classifier"])
        if m.part_head is not None and state.get("part_head") is not None:
            m.part_head.load_state_dict(state["part_head"])

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> Path:
        c = self.config
        self.history: list[dict[str, Any]] = []
        self.best_acc, self.best_epoch = -1.0, 0
        state = self._load_last()
        if state is None and self.backbone_phase_from is not None:
            state = self._adopt_backbone_phase(self.backbone_phase_from)
        start = 0
        if state is not None:
            self._restore_modules(state)
            start = int(state["epochs_done"])
            self.best_acc, self.best_epoch = (
                float(state["best_val_accuracy"]),
                int(state["best_epoch"]),
            )
            self.history = list(state["history"])
        if start >= self.total_epochs and self.best_path.is_file():
            return self.best_path

        if start == 0:  # a fresh run: results of an earlier one in out_dir are stale
            if self.ctx.is_main:
                for stale in (self.best_path, self.selected_path):
                    for path in (stale, stale.with_name(stale.name + ".sha256")):
                        path.unlink(missing_ok=True)
            self.ctx.barrier()
            acc0 = self.val_accuracy()
            self.history.append({"epoch": 0, "val_accuracy": acc0})
        epochs_bar = tqdm(
            range(start, self.total_epochs),
            desc=f"train {self.model_name} ({c.method})",
            disable=not self.progress,
            initial=start,
            total=self.total_epochs,
        )
        opt = sched = None
        phase = None
        for epoch in epochs_bar:
            after = self._in_after_phase(epoch)
            if phase != after:
                if after:  # part head on the frozen selected backbone
                    self.model.backbone.load_state_dict(
                        load_checkpoint(self.selected_path)["model"]
                    )
                self._set_trainable(after)
                opt, sched = self._optimizer(after)
                if (
                    state is not None
                    and int(state["epochs_done"]) == epoch
                    and self._in_after_phase(epoch - 1) == after
                ):
                    opt.load_state_dict(state["optimizer"])
                    sched.load_state_dict(state["scheduler"])
                net, phase = self._wrap(), after
            stats = self._train_epoch(net, opt, sched, epoch, after)
            record = {"epoch": epoch + 1, **stats}
            if not after:
                acc = self.val_accuracy()
                record["val_accuracy"] = acc
                if acc > self.best_acc:
                    self.best_acc, self.best_epoch = acc, epoch + 1
                    self._save_selected(epoch + 1, acc)
            self.history.append(record)
            epochs_bar.set_postfix(loss=f"{stats['loss']:.3f}", val=f"{self.best_acc:.3f}")
            if self.progress:
                tqdm.write(
                    f"epoch {epoch + 1}/{self.total_epochs}: "
                    + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
                )
            self._save_last(epoch + 1, opt, sched)
        self._write_best()
        return self.best_path

    def _train_epoch(self, net: nn.Module, opt, sched, epoch: int, after: bool) -> dict[str, float]:
        c = self.config
        self.model.train()
        self.model.backbone.train(not after)  # frozen after: BN keeps the selected statistics
        set_batchnorm_mode(self.model, self.batchnorm)
        episodic = c.method == "protonet" and not after
        with_masks = c.part_head == "joint" or after
        loader = (
            self._episode_loader(epoch, with_masks)
            if episodic
            else self._image_loader(epoch, with_masks)
        )
        totals: dict[str, float] = {}
        n = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not self.progress)
        rng_devices = [self.device] if self.cuda else []
        with torch.random.fork_rng(devices=rng_devices):  # dropout etc.: seeded by (seed, epoch)
            epoch_seed = derive_seed(self.seed, epoch, 0xE0)
            torch.default_generator.manual_seed(epoch_seed)
            if self.cuda:  # only this process's device, whose state fork_rng restores
                torch.cuda.default_generators[self.device.index or 0].manual_seed(epoch_seed)
            for batch in bar:
                if episodic:
                    loss, stats = self._step_episodes(net, batch)
                else:
                    loss, stats = self._step_images(
                        net, batch, 1.0 if after else c.part_head_weight
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                stats["loss"] = float(loss.detach())
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                n += 1
                bar.set_postfix(loss=f"{stats['loss']:.3f}")
        means = {k: v / max(1, n) for k, v in totals.items()}
        return {k: self.ctx.all_reduce_mean(v) for k, v in sorted(means.items())}

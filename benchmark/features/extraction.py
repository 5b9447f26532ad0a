"""`extract_features`: one pass of the backbone over a set of images, pooled into a FeatureSet,
sharded over torch.distributed ranks and cached on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from benchmark.config.features import EXTRACTED_MASK_MODES, GRID_MASK_MODES, PART_STAGE_LAST
from benchmark.features.cache import (
    cache_key,
    cache_path,
    indices_sha256,
    load_features,
    save_features,
)
from benchmark.features.device_decode import RoutedBatch, can_decode_on_device, collate_routed
from benchmark.features.feature_set import FeatureSet, n_slots
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.features.pooling import (
    PREDICTED_COVERAGE,
    grid_coverage,
    pool_parts,
    predicted_coverage,
    shuffled_partners,
)
from benchmark.models.backbones import Backbone, state_dict_sha256
from benchmark.models.device import (
    autocast,
    comm_device,
    dist_rank_world,
    precision_name,
    resolve_device,
    resolve_precision,
)


def feature_key_parts(
    dataset: Any,
    indices: np.ndarray,
    backbone: Backbone,
    masks: str,
    part_head: nn.Module | None,
    dtype: torch.dtype,
    stage_index: int | None = None,
    dense: bool = False,
    mask_seed: int = 0,
) -> dict[str, Any]:
    """Everything that determines the features, as JSON-able values."""
    cfg = backbone.data_config
    return {
        "dataset": dataset.fingerprint,
        "indices": indices_sha256(indices),
        "n_images": len(indices),
        "backbone": backbone.name,
        # hashed now, not at build time: weights changed in place (fine-tuning) must miss
        "weights_sha256": state_dict_sha256(backbone.model),
        "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(cfg.items())},
        "masks": masks,
        "part_head_sha256": state_dict_sha256(part_head) if part_head is not None else None,
        "predicted_coverage": PREDICTED_COVERAGE if masks == "predicted" else None,
        "precision": precision_name(dtype),
        # the feature_info index (None: the last map), and its stride for a reader of the key
        "part_stage": None
        if stage_index is None
        else [stage_index, backbone.stage_strides()[stage_index]],
        "dense": bool(dense),
        "mask_seed": int(mask_seed) if masks == "shuffled" else None,
    }


def _check_indices(dataset: Any, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(
            f"indices must be a 1-d sequence of ints, got shape {idx.shape} {idx.dtype}"
        )
    idx = idx.astype(np.int64)
    n = len(dataset.images)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(
            f"indices must lie in [0, {n}) (the dataset's images); got {idx.min()}..{idx.max()}"
        )
    if np.unique(idx).size != idx.size:
        raise ValueError("indices contain duplicates; pass each image index once")
    return idx


def _part_grid(
    backbone: Backbone, stage_index: int | None, device: torch.device, dtype: torch.dtype
) -> tuple[int, int]:
    """(h', w') of the map the part slots pool over, from one probe image."""
    h, w = backbone.image_size
    probe = torch.zeros(1, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    with autocast(device, dtype):
        _, _, part_map = backbone.stage_features(probe, stage_index)
    return int(part_map.shape[2]), int(part_map.shape[3])


def _batch_coverage(
    masks: str,
    coverage: torch.Tensor,
    area: torch.Tensor,
    logits: torch.Tensor | None,
    grid: tuple[int, int],
    batch: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(coverage (B, S, h', w'), area (B, S) or None) of one batch under mask mode `masks`."""
    if masks == "predicted":
        return predicted_coverage(logits, grid), None
    if masks in GRID_MASK_MODES:
        cells = grid_coverage(GRID_MASK_MODES[masks], grid).to(device)
        return cells.expand(batch, *cells.shape), None
    return coverage.to(device, non_blocking=True), area.to(device, non_blocking=True)


def uses_device_decode(
    dataset: Any, backbone: Backbone, device: torch.device, allowed: bool
) -> bool:
    """True when extraction decodes JPEGs on the device: CUDA, a squash-resize transform and
    images in files (benchmark/features/device_decode.py); `allowed` False forces the CPU path."""
    split = SplitTransform.of(backbone.transform)
    return (
        allowed
        and device.type == "cuda"
        and split is not None
        and split.squash is not None
        and can_decode_on_device(dataset)
    )


def _extract_shard(
    dataset: Any,
    shard: np.ndarray,
    backbone: Backbone,
    masks: str,
    part_head: nn.Module | None,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    dtype: torch.dtype,
    progress: bool,
    stage_index: int | None = None,
    dense: bool = False,
    mask_indices: np.ndarray | None = None,
    device_decode: bool = True,
) -> dict[str, torch.Tensor]:
    """Features of one shard of images, on `device`: embeddings (n, D) f16; unless
    masks="none", part_embeddings (n, S, D_part) f16 and part_present (n, S) bool; with dense,
    dense (n, L, D_part) f16. mask_indices: the image whose masks each shard image uses."""
    grid = _part_grid(backbone, stage_index, device, dtype)
    split = SplitTransform.of(backbone.transform)
    reads_masks = masks in ("oracle", "shuffled")
    on_device = uses_device_decode(dataset, backbone, device, device_decode)
    ds = PartImageDataset(
        dataset,
        shard,
        split or backbone.transform,
        grid if reads_masks else None,
        mask_indices,
        device_decode=on_device,
    )
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        collate_fn=collate_routed if on_device else None,
    )
    d, d_part, s = backbone.num_features, backbone.part_channels(stage_index), n_slots(masks)
    empty = {
        "embeddings": torch.zeros(0, d, dtype=torch.float16, device=device),
        "part_embeddings": torch.zeros(0, s, d_part, dtype=torch.float16, device=device),
        "part_present": torch.zeros(0, s, dtype=torch.bool, device=device),
        "dense": torch.zeros(0, grid[0] * grid[1], d_part, dtype=torch.float16, device=device),
    }
    names = ["embeddings"] + (["part_embeddings", "part_present"] if masks != "none" else [])
    names += ["dense"] if dense else []
    # filled in place: a list of batches joined at the end would hold the features twice
    out = {name: empty[name].new_zeros((len(shard), *empty[name].shape[1:])) for name in names}
    at = 0
    for images, coverage, area in tqdm(
        loader, desc=f"features {backbone.name}", disable=not progress, unit="batch", leave=False
    ):
        if isinstance(images, RoutedBatch):
            images = images.to_device(device, split.squash[0])
        else:
            images = images.to(device, non_blocking=True)
        images = split.normalise(images) if split is not None else images
        images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            if masks == "predicted":  # the head's coverage is area-pooled to the part grid
                _, pooled, part_map, logits = backbone.part_features(images, stage_index, part_head)
            else:
                _, pooled, part_map = backbone.stage_features(images, stage_index)
                logits = None
        rows = slice(at, at + images.shape[0])
        at = rows.stop
        out["embeddings"][rows] = pooled
        if dense:
            out["dense"][rows] = part_map.flatten(2).transpose(1, 2)
        if masks == "none":
            continue
        cover, cover_area = _batch_coverage(
            masks, coverage, area, logits, grid, images.shape[0], device
        )
        part_emb, present = pool_parts(part_map.float(), cover, cover_area)
        out["part_embeddings"][rows] = part_emb
        out["part_present"][rows] = present
    if at != len(shard):
        raise RuntimeError(f"feature extraction read {at} of {len(shard)} images")
    return out


def _all_gather_shards(
    local: dict[str, torch.Tensor], sizes: list[int], device: torch.device
) -> dict[str, torch.Tensor]:
    """Concatenate every rank's shard in rank order (shards padded to the largest)."""
    cdev = comm_device(device)
    longest = max(sizes)
    gathered = {}
    for name, tensor in local.items():
        # gloo has no bool collectives: ship as uint8
        send = tensor.to(cdev, torch.uint8 if tensor.dtype == torch.bool else tensor.dtype)
        padded = send.new_zeros((longest, *send.shape[1:]))
        padded[: send.shape[0]] = send
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        merged = torch.cat([p[:n] for p, n in zip(parts, sizes)])
        gathered[name] = merged.to(tensor.dtype)
    return gathered


def _all_ranks_agree(flag: bool, device: torch.device) -> bool:
    """True when `flag` holds on every rank."""
    t = torch.tensor([int(flag)], device=comm_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def extract_features(
    dataset: Any,
    indices: Sequence[int] | np.ndarray,
    backbone: Backbone,
    *,
    masks: str = "oracle",
    part_head: nn.Module | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    part_stage: int | str = PART_STAGE_LAST,
    dense: bool = False,
    mask_seed: int = 0,
    device_decode: bool = True,
) -> FeatureSet:
    """Extract (or load from the cache) the features of dataset images `indices`, in that order.

    Args:
        dataset: a PartDataset (needs .images, .fingerprint, .load_image(i), and for
            masks="oracle" .slot_masks(i) -> (S, H, W) bool).
        indices: (n,) distinct dataset image indices.
        backbone: from build_backbone; its model is moved to `device` (channels_last).
        masks: one of EXTRACTED_MASK_MODES (see the module docstring).
        part_head: for masks="predicted": module mapping (B, C, h, w) -> (B, S+1, h', w')
            logits; default: the head saved with a "train" backbone checkpoint.
        batch_size, num_workers: DataLoader settings (workers decode and resize in parallel).
        device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:N".
        precision: benchmark.config.device.PRECISIONS ("auto": bf16 autocast on CUDA, fp32 on CPU).
        cache_dir: folder of the feature cache; None disables caching.
        progress: show a tqdm bar (rank 0 only).
        part_stage: "last", or the stride of an earlier feature map of the backbone, which the
            part slots pool over (and dense descriptors come from); see Backbone.stage_index.
        dense: also keep every image's part-stage map as local descriptors (FeatureSet.dense).
        mask_seed: seed of the mask swap of masks="shuffled" (ignored otherwise).
        device_decode: on CUDA, decode baseline JPEGs on the GPU in batches (nvjpeg), the other
            files on the CPU (benchmark/features/device_decode.py); False keeps every decode on the CPU.

    Returns:
        A FeatureSet on the CPU, identical on every rank under torch.distributed.
    """
    if masks not in EXTRACTED_MASK_MODES:
        raise ValueError(f"masks={masks!r} is not one of {EXTRACTED_MASK_MODES}")
    if batch_size < 1 or num_workers < 0:
        raise ValueError(
            f"batch_size must be >= 1 and num_workers >= 0; got {batch_size}, {num_workers}"
        )
    idx = _check_indices(dataset, indices)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    if masks == "predicted" and part_head is None:
        part_head = backbone.part_head()
    if masks != "predicted":
        part_head = None
    stage_index = backbone.stage_index(part_stage)
    mask_indices = shuffled_partners(idx, mask_seed) if masks == "shuffled" else idx
    parts = feature_key_parts(
        dataset, idx, backbone, masks, part_head, dtype, stage_index, dense, mask_seed
    )
    if uses_device_decode(dataset, backbone, dev, device_decode):
        parts["decode"] = "device"  # GPU resize differs from Pillow's by a few pixel levels
    key = cache_key(parts)
    rank, world = dist_rank_world()

    path = cache_path(cache_dir, key) if cache_dir is not None else None
    cached = _load_cached(path, key, idx, dev, world)
    if cached is not None:
        return _feature_set(cached, key)

    shards = np.array_split(idx, world)
    mask_shards = np.array_split(mask_indices, world)
    backbone.model.to(dev, memory_format=torch.channels_last).eval()
    if part_head is not None:
        part_head.to(dev).eval()
    with torch.inference_mode():
        local = _extract_shard(
            dataset,
            shards[rank],
            backbone,
            masks,
            part_head,
            batch_size,
            num_workers,
            dev,
            dtype,
            progress and rank == 0,
            stage_index,
            dense,
            mask_shards[rank],
            device_decode,
        )
        if world > 1:
            local = _all_gather_shards(local, [len(s) for s in shards], dev)
    result = _checked_result(local, idx, backbone)
    if path is not None:
        if rank == 0:
            save_features(path, key, parts, result)
        if world > 1:
            dist.barrier()
    return _feature_set(result, key)


def _load_cached(
    path: Path | None, key: str, idx: np.ndarray, dev: torch.device, world: int
) -> dict[str, torch.Tensor | None] | None:
    """The cached tensors of `key` at `path` if every rank has a valid copy, else None (then
    every rank extracts: ranks must not disagree on whether to take part)."""
    cached = load_features(path, key, idx) if path is not None else None
    hit = cached is not None
    if world > 1 and path is not None:
        hit = _all_ranks_agree(hit, dev)
    return cached if hit else None


def _checked_result(
    local: dict[str, torch.Tensor], idx: np.ndarray, backbone: Backbone
) -> dict[str, torch.Tensor | None]:
    """The extracted tensors on the CPU, with absent kinds as None and the image indices added;
    refuses any inf/NaN (a float16 overflow or broken weights must not reach a learner)."""
    # clone: leave inference mode behind (on the CPU .cpu() would return the inference tensor)
    result: dict[str, torch.Tensor | None] = {k: v.cpu().clone() for k, v in local.items()}
    for kind in ("part_embeddings", "part_present", "dense"):
        result.setdefault(kind, None)
    result["image_indices"] = torch.from_numpy(idx)
    floats = [t for t in result.values() if t is not None and t.is_floating_point()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in floats)
    if bad:
        raise FloatingPointError(
            f"{bad} feature values of {backbone.name} are inf/NaN in float16 (range +-65504): the "
            f"weights ({backbone.provenance['source']}) give activations too large or invalid; "
            "check the checkpoint, or try precision='fp32'"
        )
    return result


def _feature_set(tensors: dict[str, Any], key: str) -> FeatureSet:
    return FeatureSet(
        tensors["embeddings"],
        tensors["part_embeddings"],
        tensors["part_present"],
        tensors["image_indices"],
        key,
        tensors["dense"],
    )

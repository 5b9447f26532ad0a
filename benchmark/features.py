"""Part-aware features: per image a global embedding and one pooled embedding per part slot.

Geometry: every image is resized to the backbone's square input size without cropping (timm's
"squash" mode, crop_pct=1), so cell (y, x) of the (h, w) feature map sees the same fraction of the
original image as of the resized one. A slot's mask is therefore taken straight from the original
image to the feature grid by area interpolation (the fraction of each cell the part covers), and
the part embedding is the coverage-weighted mean of the feature map. A slot is present when its
coverage sums to at least PRESENCE_MIN_CELLS cells; absent slots get a zero embedding. Images
cross to the device as uint8 and are normalised there (timm's mean/std): 4x fewer bytes.

Masks:
- "oracle":    the image's annotated parts, united per slot (PartDataset.slot_masks).
- "predicted": a part-segmentation head on the feature map, `part_head(fmap) -> (B, S+1, h, w)`
               logits (background last); its softmax is each slot's estimated coverage of each
               cell (what the head is trained to predict). No annotation is read.
- "none":      no part features (part_embeddings and part_present are None).

Under torch.distributed each rank extracts a contiguous shard of the indices and the shards are
all-gathered, so every rank returns the same FeatureSet as one process would.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm.auto import tqdm

from baselines.base import EpisodeFeatures
from benchmark.backbones import Backbone, state_dict_sha256
from benchmark.config import FeaturesConfig
from benchmark.device import (
    autocast,
    comm_device,
    dist_rank_world,
    precision_name,
    resolve_device,
    resolve_precision,
)
from benchmark.feature_cache import cache_key, cache_path, indices_sha256, load_features, save_features
from episodes.taxonomy import PART_SLOTS

MASK_MODES = ("oracle", "predicted", "none")
N_SLOTS = len(PART_SLOTS)
PRESENCE_MIN_CELLS = 0.25  # a slot covering less than a quarter of one feature cell is absent


@dataclass
class FeatureSet:
    """Features of a set of dataset images, stored in half precision.

    Attributes:
        embeddings: (n, D) float16 global embedding per image.
        part_embeddings: (n, S, D) float16 pooled embedding per part slot (PART_SLOTS order),
            zero where absent; None for masks="none".
        part_present: (n, S) bool; None for masks="none".
        image_indices: (n,) int64 dataset image index of each row.
        key: the cache key (sha256) of these features.
    """

    embeddings: torch.Tensor
    part_embeddings: torch.Tensor | None
    part_present: torch.Tensor | None
    image_indices: torch.Tensor
    key: str = ""
    _lookup: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.image_indices.shape[0]
        size = int(self.image_indices.max()) + 1 if n else 0
        lookup = torch.full((size,), -1, dtype=torch.int64, device=self.image_indices.device)
        lookup[self.image_indices] = torch.arange(n, device=self.image_indices.device)
        self._lookup = lookup

    def __len__(self) -> int:
        return self.image_indices.shape[0]

    def rows(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Row positions (...,) of dataset image indices of any shape (...)."""
        idx = torch.as_tensor(idx, dtype=torch.int64).to(self._lookup.device)
        inside = (idx >= 0) & (idx < self._lookup.shape[0])
        pos = torch.where(inside, self._lookup[idx.clamp(0, max(self._lookup.shape[0] - 1, 0))], -1)
        if (pos < 0).any():
            missing = torch.unique(idx[pos < 0])[:10].tolist()
            raise KeyError(f"image indices {missing} have no features in this FeatureSet")
        return pos

    def gather(self, idx: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> EpisodeFeatures:
        """Features of dataset images idx (...) as EpisodeFeatures with embeddings (..., D),
        part_embeddings (..., S, D) and part_present (..., S), floats cast to `dtype`."""
        pos = self.rows(idx)
        return EpisodeFeatures(
            embeddings=self.embeddings[pos].to(dtype),
            part_embeddings=None if self.part_embeddings is None else self.part_embeddings[pos].to(dtype),
            part_present=None if self.part_present is None else self.part_present[pos],
        )

    def to(self, device: str | torch.device) -> "FeatureSet":
        """A copy with every tensor on `device`."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return FeatureSet(move(self.embeddings), move(self.part_embeddings), move(self.part_present),
                          move(self.image_indices), self.key)


@functools.lru_cache(maxsize=256)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32: the fraction of output cell i's extent that input pixel p covers.

    Cell i spans [i * n_in / n_out, (i + 1) * n_in / n_out) in pixel units, pixel p spans
    [p, p + 1); rows sum to 1. `R_h @ mask @ R_w.T` is the exact area-interpolated mask (the
    fraction of each cell covered), equal to adaptive average pooling when n_out divides n_in.
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    pixels = np.arange(n_in, dtype=np.float64)
    ends = np.minimum(edges[1:, None], pixels[None] + 1)
    starts = np.maximum(edges[:-1, None], pixels[None])
    overlap = np.clip(ends - starts, 0, None)
    return (overlap / (n_in / n_out)).astype(np.float32)


def slot_coverage(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """(S, H, W) bool slot masks -> (S, h, w) float32 fraction of each grid cell covered."""
    s, h_in, w_in = masks.shape
    coverage = torch.zeros((s, *grid), dtype=torch.float32)
    # torch, not numpy: DataLoader workers run torch on one thread, while numpy's BLAS would
    # start a thread pool per worker and oversubscribe the cores
    rows = torch.from_numpy(area_weights(h_in, grid[0]))
    cols = torch.from_numpy(area_weights(w_in, grid[1]))
    filled = np.flatnonzero(masks.reshape(s, -1).any(axis=1))  # most slots are empty
    if filled.size:
        chosen = torch.from_numpy(np.ascontiguousarray(masks[filled])).float()
        coverage[torch.from_numpy(filled)] = rows @ chosen @ cols.T
    return coverage


@dataclass(frozen=True)
class SplitTransform:
    """A timm eval transform split at ToTensor: PIL steps run in the loader workers, the
    normalisation on the device, so uint8 pixels cross to the GPU (4x fewer bytes).

    Attributes:
        pil_steps: PIL image -> PIL image (resize, crop).
        mean, std: per-channel normalisation of [0, 1] pixels.
    """

    pil_steps: Callable
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, transform: Callable) -> "SplitTransform | None":
        """Split Compose([PIL steps..., ToTensor, Normalize]); None for any other shape."""
        steps = list(getattr(transform, "transforms", []))
        at = [i for i, t in enumerate(steps) if isinstance(t, transforms.ToTensor)]
        if len(at) != 1 or at[0] != len(steps) - 2 or not isinstance(steps[-1], transforms.Normalize):
            return None
        norm = steps[-1]
        return cls(transforms.Compose(steps[: at[0]]), tuple(map(float, torch.as_tensor(norm.mean).flatten())),
                   tuple(map(float, torch.as_tensor(norm.std).flatten())))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> (H, W, 3) uint8 tensor."""
        if image.mode != "RGB":  # load_image promises RGB; convert() would copy even then
            image = image.convert("RGB")
        return torch.from_numpy(np.array(self.pil_steps(image), dtype=np.uint8))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 channels_last, as ToTensor + Normalize."""
        mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
        x = pixels.permute(0, 3, 1, 2).float().div_(255)
        return x.sub_(mean).div_(std)


class PartImageDataset(Dataset):
    """Images of a PartDataset as model inputs, with slot coverage on the feature grid.

    Item k: (image, coverage). image: (H, W, 3) uint8 when `transform` is a SplitTransform, else
    the transform's (3, H, W) float32; coverage: (S, h, w) float32 fraction of each feature cell
    covered by each slot's mask, or an empty (0,) tensor when grid is None.
    """

    def __init__(self, dataset: Any, indices: np.ndarray, transform: Callable,
                 grid: tuple[int, int] | None) -> None:
        self.dataset = dataset
        self.indices = indices
        self.transform = transform
        self.grid = grid

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(self.indices[k])
        image = self.transform(self.dataset.load_image(i))
        if self.grid is None:
            return image, torch.empty(0)
        masks = np.asarray(self.dataset.slot_masks(i), dtype=bool)
        if masks.ndim != 3 or masks.shape[0] != N_SLOTS:
            raise ValueError(f"slot_masks({i}) has shape {masks.shape}; expected ({N_SLOTS}, H, W)")
        return image, slot_coverage(masks, self.grid)


def pool_parts(fmap: torch.Tensor, coverage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage-weighted mean of a feature map per slot.

    Args:
        fmap: (B, C, h, w) float feature map.
        coverage: (B, S, h, w) fraction of each cell covered by each slot, in [0, 1].

    Returns:
        part_embeddings (B, S, C), zero for absent slots; part_present (B, S) bool.
    """
    mass = coverage.sum(dim=(2, 3))
    present = mass >= PRESENCE_MIN_CELLS
    pooled = torch.einsum("bshw,bchw->bsc", coverage, fmap) / mass.clamp_min(1e-6)[..., None]
    return torch.where(present[..., None], pooled, torch.zeros_like(pooled)), present


def predicted_coverage(logits: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, S+1, h', w') part-head logits (background last) -> (B, S, h, w) soft coverage.

    The head is trained against each cell's area coverage per slot (soft targets), so its softmax
    estimates the same quantity the oracle masks give; an argmax would hand nearly every cell of a
    small feature map to the background and no part would ever be present.
    """
    if logits.ndim != 4 or logits.shape[1] != N_SLOTS + 1:
        raise ValueError(f"part_head returned shape {tuple(logits.shape)}; expected (B, {N_SLOTS + 1}, h, w)")
    if tuple(logits.shape[-2:]) != tuple(grid):
        logits = F.interpolate(logits.float(), size=grid, mode="bilinear", align_corners=False)
    return logits.float().softmax(dim=1)[:, :N_SLOTS]


def feature_key_parts(dataset: Any, indices: np.ndarray, backbone: Backbone, masks: str,
                      part_head: nn.Module | None, dtype: torch.dtype) -> dict[str, Any]:
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
        "precision": precision_name(dtype),
    }


def _check_indices(dataset: Any, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-d sequence of ints, got shape {idx.shape} {idx.dtype}")
    idx = idx.astype(np.int64)
    n = len(dataset.images)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}) (the dataset's images); got {idx.min()}..{idx.max()}")
    if np.unique(idx).size != idx.size:
        raise ValueError("indices contain duplicates; pass each image index once")
    return idx


def _feature_grid(backbone: Backbone, device: torch.device, dtype: torch.dtype) -> tuple[int, int]:
    h, w = backbone.image_size
    probe = torch.zeros(1, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    with autocast(device, dtype):
        fmap, _ = backbone.feature_map(probe)
    return int(fmap.shape[2]), int(fmap.shape[3])


def _extract_shard(dataset: Any, shard: np.ndarray, backbone: Backbone, masks: str,
                   part_head: nn.Module | None, batch_size: int, num_workers: int,
                   device: torch.device, dtype: torch.dtype, progress: bool) -> dict[str, torch.Tensor]:
    """Features of one shard of images, on `device`: embeddings (n, D) f16, and unless
    masks="none", part_embeddings (n, S, D) f16 and part_present (n, S) bool."""
    grid = _feature_grid(backbone, device, dtype)
    split = SplitTransform.of(backbone.transform)
    ds = PartImageDataset(dataset, shard, split or backbone.transform, grid if masks == "oracle" else None)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if num_workers > 0 else None)
    d = backbone.num_features
    names = ("embeddings",) if masks == "none" else ("embeddings", "part_embeddings", "part_present")
    out: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for images, coverage in tqdm(loader, desc=f"features {backbone.name}", disable=not progress,
                                 unit="batch", leave=False):
        images = images.to(device, non_blocking=True)
        images = split.normalise(images) if split is not None else images
        images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            fmap, pooled = backbone.feature_map(images)
            logits = part_head(fmap) if masks == "predicted" else None
        out["embeddings"].append(pooled.half())
        if masks == "none":
            continue
        if masks == "predicted":
            coverage = predicted_coverage(logits, grid)
        else:
            coverage = coverage.to(device, non_blocking=True)
        part_emb, present = pool_parts(fmap.float(), coverage)
        out["part_embeddings"].append(part_emb.half())
        out["part_present"].append(present)
    empty = {"embeddings": torch.zeros(0, d, dtype=torch.float16, device=device),
             "part_embeddings": torch.zeros(0, N_SLOTS, d, dtype=torch.float16, device=device),
             "part_present": torch.zeros(0, N_SLOTS, dtype=torch.bool, device=device)}
    return {k: torch.cat(v) if v else empty[k] for k, v in out.items()}


def _all_gather_shards(local: dict[str, torch.Tensor], sizes: list[int],
                       device: torch.device) -> dict[str, torch.Tensor]:
    """Concatenate every rank's shard in rank order (shards padded to the largest)."""
    import torch.distributed as dist

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
    import torch.distributed as dist

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
) -> FeatureSet:
    """Extract (or load from the cache) the features of dataset images `indices`, in that order.

    Args:
        dataset: a PartDataset (needs .images, .fingerprint, .load_image(i), and for
            masks="oracle" .slot_masks(i) -> (S, H, W) bool).
        indices: (n,) distinct dataset image indices.
        backbone: from build_backbone; its model is moved to `device` (channels_last).
        masks: "oracle", "predicted" or "none" (see the module docstring).
        part_head: for masks="predicted": module mapping (B, C, h, w) -> (B, S+1, h', w')
            logits; default: the head saved with a "train" backbone checkpoint.
        batch_size, num_workers: DataLoader settings (workers decode and resize in parallel).
        device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:N".
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16", "fp16", "fp32".
        cache_dir: folder of the feature cache; None disables caching.
        progress: show a tqdm bar (rank 0 only).

    Returns:
        A FeatureSet on the CPU, identical on every rank under torch.distributed.
    """
    if masks not in MASK_MODES:
        raise ValueError(f"masks={masks!r} is not one of {MASK_MODES}")
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0; got {batch_size}, {num_workers}")
    idx = _check_indices(dataset, indices)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    if masks == "predicted" and part_head is None:
        part_head = backbone.part_head()
    if masks != "predicted":
        part_head = None
    parts = feature_key_parts(dataset, idx, backbone, masks, part_head, dtype)
    key = cache_key(parts)
    rank, world = dist_rank_world()

    path = cache_path(cache_dir, key) if cache_dir is not None else None
    cached = load_features(path, key, idx) if path is not None else None
    hit = cached is not None
    if world > 1 and path is not None:
        hit = _all_ranks_agree(hit, dev)
    if hit:
        assert cached is not None
        return FeatureSet(cached["embeddings"], cached["part_embeddings"], cached["part_present"],
                          cached["image_indices"], key)

    shards = np.array_split(idx, world)
    backbone.model.to(dev, memory_format=torch.channels_last).eval()
    if part_head is not None:
        part_head.to(dev).eval()
    with torch.inference_mode():
        local = _extract_shard(dataset, shards[rank], backbone, masks, part_head, batch_size,
                               num_workers, dev, dtype, progress and rank == 0)
        if world > 1:
            local = _all_gather_shards(local, [len(s) for s in shards], dev)
    # clone: leave inference mode behind (on the CPU .cpu() would return the inference tensor)
    result = {k: v.cpu().clone() for k, v in local.items()}
    result.setdefault("part_embeddings", None)
    result.setdefault("part_present", None)
    result["image_indices"] = torch.from_numpy(idx)
    floats = [t for t in result.values() if t is not None and t.is_floating_point()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in floats)
    if bad:
        raise FloatingPointError(
            f"{bad} feature values of {backbone.name} are inf/NaN in float16 (range +-65504): the "
            f"weights ({backbone.provenance['source']}) give activations too large or invalid; "
            "check the checkpoint, or try precision='fp32'")

    if path is not None:
        if rank == 0:
            save_features(path, key, parts, result)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    return FeatureSet(result["embeddings"], result["part_embeddings"], result["part_present"],
                      result["image_indices"], key)


class FeatureProvider:
    """The features a run needs, extracted once per (image set, mask mode), cached on disk and
    kept on the run's device.

    config: the run's features section (masks, batching, device, precision).
    cache_dir: the feature cache folder, or None for no disk cache.
    """

    def __init__(self, dataset: Any, backbone: Backbone, config: FeaturesConfig,
                 cache_dir: str | os.PathLike | None, progress: bool = True) -> None:
        self.dataset, self.backbone, self.config = dataset, backbone, config
        self.cache_dir, self.progress = cache_dir, progress
        self.device = resolve_device(config.device)
        self._sets: dict[tuple[str, str], FeatureSet] = {}

    def features(self, indices: np.ndarray, masks: str, tag: str) -> FeatureSet:
        """FeatureSet (on the run's device) of dataset images `indices` with `masks` part masks;
        `tag` names the image set (one set per tag and mask mode is kept in memory)."""
        if (tag, masks) not in self._sets:
            fc = self.config
            features = extract_features(
                self.dataset, indices, self.backbone, masks=masks, batch_size=fc.batch_size,
                num_workers=fc.num_workers, device=self.device, precision=fc.precision,
                cache_dir=None if self.cache_dir is None else str(self.cache_dir),
                progress=self.progress,
            )
            self._sets[(tag, masks)] = features.to(self.device)
        return self._sets[(tag, masks)]

    def gatherers(self, indices: np.ndarray) -> tuple[Callable, Callable]:
        """(gather_support, gather_query) over the images `indices` that the episodes use."""
        masks = self.config.masks
        if masks == "support-oracle":  # annotations on the support set only
            support = self.features(indices, "oracle", "episodes")
            query = self.features(indices, "predicted", "episodes")
        else:
            support = query = self.features(indices, masks, "episodes")
        return support.gather, query.gather

    def base_embeddings(self) -> torch.Tensor:
        """(n_train, D) float32 global embeddings of the train split, for learners' prepare()."""
        train = self.dataset.split_indices("train")
        return self.features(train, "none", "train").embeddings.float()

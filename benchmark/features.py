"""Part-aware features: per image a global embedding and one pooled embedding per part slot.

Geometry: every image is resized to the backbone's square input size without cropping (timm's
"squash" mode, crop_pct=1), so cell (y, x) of the (h, w) feature map sees the same fraction of the
original image as of the resized one. A slot's mask is therefore taken straight from the original
image to the feature grid by area interpolation (the fraction of each cell the part covers), and
the part embedding is the coverage-weighted mean of the feature map. A slot is present when it
covers at least PRESENCE_MIN_AREA of the image (measured on the mask's own pixels, so presence is
the same at every stage); absent slots get a zero embedding. Images cross to the device as uint8
and are normalised there (timm's mean/std): 4x fewer bytes.

Part stage (`part_stage`): the slots pool over the last feature map ("last", stride 32 for most
CNNs) or an earlier, finer one (stride 16 or 8, taken with timm's forward_intermediates; see
Backbone.stage_index). The global embedding is always the model's own pooled output, so the slot
embeddings have C_part channels (e.g. resnet10t: 256 at stride 16, 128 at stride 8) while the
global one has D = num_features (512): D_part != D in general. ViTs have one stride (the patch
size) for every block, so their part_stage is always the last map.

Dense local descriptors (`dense=True`): the part-stage map is also stored per image as
(h' * w', C_part) float16 rows, for local-descriptor learners (DN4). Cost: n * h' * w' * C_part * 2
bytes on disk and in memory (docs/parts.md gives measured figures).

Masks:
- "oracle":    the image's annotated parts, united per slot (PartDataset.slot_masks).
- "predicted": a part-segmentation head on the feature map, `part_head(fmap) -> (B, S+1, h, w)`
               logits (background last); its softmax is each slot's estimated coverage of each
               cell (what the head is trained to predict). No annotation is read.
- "none":      no part features (part_embeddings and part_present are None).
Controls that read no annotation of the image itself (same slot machinery, other regions):
- "grid2", "grid3": the n x n cells of the image as n^2 slots (every slot always present).
- "shuffled":  each image pooled with the oracle slot masks of another image of the same set,
               chosen by a seeded random cyclic order (`mask_seed`; never the image itself), so
               the regions have realistic part shapes and areas but say nothing about this image.

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
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm.auto import tqdm

from baselines.base import EpisodeFeatures
from benchmark.backbones import Backbone, state_dict_sha256
from benchmark.errors import ConfigError
from benchmark.data.decode import accepts_size
from benchmark.device import (
    autocast,
    comm_device,
    dist_rank_world,
    precision_name,
    resolve_device,
    resolve_precision,
)
from benchmark.device_decode import RoutedBatch, can_decode_on_device, collate_routed, read_routed
from benchmark.feature_cache import cache_key, cache_path, indices_sha256, load_features, save_features
from benchmark.feature_config import (EXTRACTED_MASK_MODES, GRID_MASK_MODES, PART_STAGE_LAST,
                                      FeaturesConfig)
from episodes.taxonomy import PART_SLOTS

N_SLOTS = len(PART_SLOTS)
# A slot covering less than 1% of the image is absent, whatever the feature grid: 0.25 of a cell
# of a 7x7 map (224 px, stride 32) is 0.5%, of a 2x2 map (64 px) 6%; one image-level rule keeps
# the set of present slots the same at every stage.
PRESENCE_MIN_AREA = 0.01


def n_slots(masks: str) -> int:
    """S: the part slots the features of mask mode `masks` have (0 for "none")."""
    if masks == "none":
        return 0
    if masks in GRID_MASK_MODES:
        return GRID_MASK_MODES[masks] ** 2
    return N_SLOTS


def slot_names(masks: str) -> tuple[str, ...]:
    """Names of the S slots of mask mode `masks`: PART_SLOTS, or "cell r,c" for a grid."""
    if masks in GRID_MASK_MODES:
        n = GRID_MASK_MODES[masks]
        return tuple(f"cell {r},{c}" for r in range(n) for c in range(n))
    return () if masks == "none" else tuple(PART_SLOTS)


@dataclass
class FeatureSet:
    """Features of a set of dataset images, stored in half precision.

    Attributes:
        embeddings: (n, D) float16 global embedding per image.
        part_embeddings: (n, S, D_part) float16 pooled embedding per part slot (PART_SLOTS
            order, or grid cells), zero where absent; None for masks="none". D_part is the
            part stage's width, D for the last stage.
        part_present: (n, S) bool; None for masks="none".
        image_indices: (n,) int64 dataset image index of each row.
        key: the cache key (sha256) of these features.
        dense: (n, L, D_part) float16 local descriptors (the part-stage map's L = h' * w' cells,
            row-major), or None when not extracted.
    """

    embeddings: torch.Tensor
    part_embeddings: torch.Tensor | None
    part_present: torch.Tensor | None
    image_indices: torch.Tensor
    key: str = ""
    dense: torch.Tensor | None = None
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
        part_embeddings (..., S, D_part), part_present (..., S) and local_descriptors
        (..., L, D_part), floats cast to `dtype`."""
        pos = self.rows(idx)
        return EpisodeFeatures(
            embeddings=self.embeddings[pos].to(dtype),
            part_embeddings=None if self.part_embeddings is None else self.part_embeddings[pos].to(dtype),
            part_present=None if self.part_present is None else self.part_present[pos],
            local_descriptors=None if self.dense is None else self.dense[pos].to(dtype),
        )

    def to(self, device: str | torch.device) -> "FeatureSet":
        """A copy with every tensor on `device`."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return FeatureSet(move(self.embeddings), move(self.part_embeddings), move(self.part_present),
                          move(self.image_indices), self.key, move(self.dense))


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
    coverage = np.zeros((s, *grid), dtype=np.float32)
    filled = np.flatnonzero(masks.reshape(s, -1).any(axis=1))  # most slots are empty
    if filled.size:
        # R_h @ mask @ R_w.T by numpy's own einsum loops (optimize=False: no BLAS), on one
        # thread: a matrix product through torch or BLAS would wake a thread pool for this small
        # reduction, which with num_workers=0 runs between forward passes, and on a busy 2-core
        # machine the pool's spinning cost 20-100x the arithmetic
        rows = area_weights(h_in, grid[0])
        cols = area_weights(w_in, grid[1])
        chosen = masks[filled].astype(np.float32)
        banded = np.einsum("ih,fhw->fiw", rows, chosen, optimize=False)
        coverage[filled] = np.einsum("fiw,jw->fij", banded, cols, optimize=False)
    return torch.from_numpy(coverage)


def grid_coverage(cells: int, grid: tuple[int, int]) -> torch.Tensor:
    """(cells^2, h, w) float32: the fraction of each feature cell covered by each of the
    cells x cells equal regions of the image (row-major), the "gridN" control's slot masks.

    Region (r, c) is pixel (r, c) of a cells x cells "image", so area_weights gives it exactly:
    coverage[r * cells + c] = R_h[:, r] outer R_w[:, c].
    """
    rows = torch.from_numpy(area_weights(cells, grid[0]))  # (h, cells)
    cols = torch.from_numpy(area_weights(cells, grid[1]))  # (w, cells)
    return torch.einsum("yr,xc->rcyx", rows, cols).reshape(cells * cells, *grid).contiguous()


def shuffled_partners(indices: np.ndarray, seed: int) -> np.ndarray:
    """(n,) the image whose masks each of `indices` borrows under masks="shuffled".

    The images are put in a random order (numpy Generator seeded with `seed`) and each borrows the
    masks of the next one in that cycle, so no image keeps its own masks (n >= 2) and every
    image's masks are used exactly once.
    """
    if len(indices) < 2:
        raise ValueError("masks='shuffled' needs at least 2 images to swap masks between")
    order = np.random.default_rng(seed).permutation(len(indices))
    partners = np.empty(len(indices), dtype=np.int64)
    partners[order] = indices[np.roll(order, -1)]
    return partners


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
    squash: tuple[tuple[int, int], str] | None = None

    @classmethod
    def of(cls, transform: Callable) -> "SplitTransform | None":
        """Split Compose([PIL steps..., ToTensor, Normalize]); None for any other shape.

        `squash` is ((width, height), interpolation) when the PIL steps only resize to a fixed
        size (timm's "squash" crop mode): the decoder can then produce that size directly, at
        reduced scale for large JPEGs (benchmark/data/decode.py)."""
        steps = list(getattr(transform, "transforms", []))
        at = [i for i, t in enumerate(steps) if isinstance(t, transforms.ToTensor)]
        if len(at) != 1 or at[0] != len(steps) - 2 or not isinstance(steps[-1], transforms.Normalize):
            return None
        norm = steps[-1]
        return cls(transforms.Compose(steps[: at[0]]), tuple(map(float, torch.as_tensor(norm.mean).flatten())),
                   tuple(map(float, torch.as_tensor(norm.std).flatten())), _squash_size(steps[: at[0]]))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> (H, W, 3) uint8 tensor."""
        if image.mode != "RGB":  # load_image promises RGB; convert() would copy even then
            image = image.convert("RGB")
        if self.squash is None or image.size != self.squash[0]:  # else decoded at that size
            image = self.pil_steps(image)
        return torch.from_numpy(np.array(image, dtype=np.uint8))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 channels_last, as ToTensor + Normalize."""
        mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
        x = pixels.permute(0, 3, 1, 2).float().div_(255)
        return x.sub_(mean).div_(std)


def _squash_size(pil_steps: list) -> tuple[tuple[int, int], str] | None:
    """((width, height), interpolation) when pil_steps are Resize((h, w)) and at most a
    CenterCrop of that same size (a no-op); else None."""
    if not pil_steps or not isinstance(pil_steps[0], transforms.Resize):
        return None
    resize = pil_steps[0]
    size = resize.size
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        return None
    rest = pil_steps[1:]
    if rest and not (len(rest) == 1 and isinstance(rest[0], transforms.CenterCrop)
                     and tuple(rest[0].size) == tuple(size)):
        return None
    return (int(size[1]), int(size[0])), resize.interpolation.value


class PartImageDataset(Dataset):
    """Images of a PartDataset as model inputs, with slot coverage on the feature grid.

    Item k: (image, coverage, area). image: (H, W, 3) uint8 when `transform` is a SplitTransform,
    else the transform's (3, H, W) float32; coverage: (S, h, w) float32 fraction of each feature
    cell covered by each slot's mask; area: (S,) float32 fraction of the image each slot's mask
    covers. Both are empty (0,) tensors when grid is None. The masks are those of image
    `mask_indices[k]` (default: image k's own; masks="shuffled" passes other images').
    """

    def __init__(self, dataset: Any, indices: np.ndarray, transform: Callable,
                 grid: tuple[int, int] | None, mask_indices: np.ndarray | None = None,
                 device_decode: bool = False) -> None:
        self.dataset = dataset
        self.indices = indices
        self.transform = transform
        self.grid = grid
        self.mask_indices = indices if mask_indices is None else mask_indices
        # items become (bytes or pixels, encoded, coverage, area) for benchmark.device_decode
        self.device_decode = device_decode
        squash = getattr(transform, "squash", None)
        # decode straight to the model's input size (reduced-scale JPEG decoding) when possible
        self.decode_size = squash if squash is not None and accepts_size(dataset) else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple:
        i = int(self.indices[k])
        if self.device_decode:
            payload, encoded = read_routed(self.dataset, i)
            image = payload if encoded else self._pixels(i)
            return (image, encoded, *self._parts(k))
        return (self._pixels(i), *self._parts(k))

    def _pixels(self, i: int) -> torch.Tensor:
        if self.decode_size is not None:
            size, resample = self.decode_size
            return self.transform(self.dataset.load_image(i, size=size, resample=resample))
        return self.transform(self.dataset.load_image(i))

    def _parts(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(coverage (S, h, w), area (S,)) of item k's masks; empty tensors without a grid."""
        if self.grid is None:
            return torch.empty(0), torch.empty(0)
        i = int(self.mask_indices[k])
        masks = np.asarray(self.dataset.slot_masks(i), dtype=bool)
        if masks.ndim != 3 or masks.shape[0] != N_SLOTS:
            raise ValueError(f"slot_masks({i}) has shape {masks.shape}; expected ({N_SLOTS}, H, W)")
        area = torch.from_numpy(masks.reshape(N_SLOTS, -1).mean(axis=1, dtype=np.float64)).float()
        return slot_coverage(masks, self.grid), area


def pool_parts(fmap: torch.Tensor, coverage: torch.Tensor,
               area: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage-weighted mean of a feature map per slot.

    Args:
        fmap: (B, C, h, w) float feature map.
        coverage: (B, S, h, w) fraction of each cell covered by each slot, in [0, 1].
        area: (B, S) fraction of the image each slot covers; default: the mean coverage (equal
            to it for exact area-interpolated masks; the estimate for predicted ones).

    Returns:
        part_embeddings (B, S, C), zero for absent slots; part_present (B, S) bool, true where
        area >= PRESENCE_MIN_AREA.
    """
    mass = coverage.sum(dim=(2, 3))
    area = coverage.mean(dim=(2, 3)) if area is None else area.to(mass.device)
    present = (area >= PRESENCE_MIN_AREA) & (mass > 0)
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
                      part_head: nn.Module | None, dtype: torch.dtype,
                      stage_index: int | None = None, dense: bool = False,
                      mask_seed: int = 0) -> dict[str, Any]:
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
        # the feature_info index (None: the last map), and its stride for a reader of the key
        "part_stage": None if stage_index is None else [stage_index, backbone.stage_strides()[stage_index]],
        "dense": bool(dense),
        "mask_seed": int(mask_seed) if masks == "shuffled" else None,
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


def _part_grid(backbone: Backbone, stage_index: int | None, device: torch.device,
               dtype: torch.dtype) -> tuple[int, int]:
    """(h', w') of the map the part slots pool over, from one probe image."""
    h, w = backbone.image_size
    probe = torch.zeros(1, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    with autocast(device, dtype):
        _, _, part_map = backbone.stage_features(probe, stage_index)
    return int(part_map.shape[2]), int(part_map.shape[3])


def _batch_coverage(masks: str, coverage: torch.Tensor, area: torch.Tensor,
                    logits: torch.Tensor | None, grid: tuple[int, int], batch: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(coverage (B, S, h', w'), area (B, S) or None) of one batch under mask mode `masks`."""
    if masks == "predicted":
        return predicted_coverage(logits, grid), None
    if masks in GRID_MASK_MODES:
        cells = grid_coverage(GRID_MASK_MODES[masks], grid).to(device)
        return cells.expand(batch, *cells.shape), None
    return coverage.to(device, non_blocking=True), area.to(device, non_blocking=True)


def uses_device_decode(dataset: Any, backbone: Backbone, device: torch.device, allowed: bool) -> bool:
    """True when extraction decodes JPEGs on the device: CUDA, a squash-resize transform and
    images in files (benchmark/device_decode.py); `allowed` False forces the CPU path."""
    split = SplitTransform.of(backbone.transform)
    return (allowed and device.type == "cuda" and split is not None and split.squash is not None
            and can_decode_on_device(dataset))


def _extract_shard(dataset: Any, shard: np.ndarray, backbone: Backbone, masks: str,
                   part_head: nn.Module | None, batch_size: int, num_workers: int,
                   device: torch.device, dtype: torch.dtype, progress: bool,
                   stage_index: int | None = None, dense: bool = False,
                   mask_indices: np.ndarray | None = None,
                   device_decode: bool = True) -> dict[str, torch.Tensor]:
    """Features of one shard of images, on `device`: embeddings (n, D) f16; unless
    masks="none", part_embeddings (n, S, D_part) f16 and part_present (n, S) bool; with dense,
    dense (n, L, D_part) f16. mask_indices: the image whose masks each shard image uses."""
    grid = _part_grid(backbone, stage_index, device, dtype)
    split = SplitTransform.of(backbone.transform)
    reads_masks = masks in ("oracle", "shuffled")
    on_device = uses_device_decode(dataset, backbone, device, device_decode)
    ds = PartImageDataset(dataset, shard, split or backbone.transform, grid if reads_masks else None,
                          mask_indices, device_decode=on_device)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if num_workers > 0 else None,
                        collate_fn=collate_routed if on_device else None)
    d, d_part, s = backbone.num_features, backbone.part_channels(stage_index), n_slots(masks)
    empty = {"embeddings": torch.zeros(0, d, dtype=torch.float16, device=device),
             "part_embeddings": torch.zeros(0, s, d_part, dtype=torch.float16, device=device),
             "part_present": torch.zeros(0, s, dtype=torch.bool, device=device),
             "dense": torch.zeros(0, grid[0] * grid[1], d_part, dtype=torch.float16, device=device)}
    names = ["embeddings"] + (["part_embeddings", "part_present"] if masks != "none" else [])
    names += ["dense"] if dense else []
    # filled in place: a list of batches joined at the end would hold the features twice
    out = {name: empty[name].new_zeros((len(shard), *empty[name].shape[1:])) for name in names}
    at = 0
    for images, coverage, area in tqdm(loader, desc=f"features {backbone.name}",
                                       disable=not progress, unit="batch", leave=False):
        if isinstance(images, RoutedBatch):
            images = images.to_device(device, split.squash[0])
        else:
            images = images.to(device, non_blocking=True)
        images = split.normalise(images) if split is not None else images
        images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            fmap, pooled, part_map = backbone.stage_features(images, stage_index)
            # the head was trained on the last map; its logits are resized to the part grid
            logits = part_head(fmap) if masks == "predicted" else None
        rows = slice(at, at + images.shape[0])
        at = rows.stop
        out["embeddings"][rows] = pooled
        if dense:
            out["dense"][rows] = part_map.flatten(2).transpose(1, 2)
        if masks == "none":
            continue
        cover, cover_area = _batch_coverage(masks, coverage, area, logits, grid,
                                            images.shape[0], device)
        part_emb, present = pool_parts(part_map.float(), cover, cover_area)
        out["part_embeddings"][rows] = part_emb
        out["part_present"][rows] = present
    if at != len(shard):
        raise RuntimeError(f"feature extraction read {at} of {len(shard)} images")
    return out


def _all_gather_shards(local: dict[str, torch.Tensor], sizes: list[int],
                       device: torch.device) -> dict[str, torch.Tensor]:
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
        precision: benchmark.device.PRECISIONS ("auto": bf16 autocast on CUDA, fp32 on CPU).
        cache_dir: folder of the feature cache; None disables caching.
        progress: show a tqdm bar (rank 0 only).
        part_stage: "last", or the stride of an earlier feature map of the backbone, which the
            part slots pool over (and dense descriptors come from); see Backbone.stage_index.
        dense: also keep every image's part-stage map as local descriptors (FeatureSet.dense).
        mask_seed: seed of the mask swap of masks="shuffled" (ignored otherwise).
        device_decode: on CUDA, decode baseline JPEGs on the GPU in batches (nvjpeg), the other
            files on the CPU (benchmark/device_decode.py); False keeps every decode on the CPU.

    Returns:
        A FeatureSet on the CPU, identical on every rank under torch.distributed.
    """
    if masks not in EXTRACTED_MASK_MODES:
        raise ValueError(f"masks={masks!r} is not one of {EXTRACTED_MASK_MODES}")
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0; got {batch_size}, {num_workers}")
    idx = _check_indices(dataset, indices)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    if masks == "predicted" and part_head is None:
        part_head = backbone.part_head()
    if masks != "predicted":
        part_head = None
    stage_index = backbone.stage_index(part_stage)
    mask_indices = shuffled_partners(idx, mask_seed) if masks == "shuffled" else idx
    parts = feature_key_parts(dataset, idx, backbone, masks, part_head, dtype, stage_index,
                              dense, mask_seed)
    if uses_device_decode(dataset, backbone, dev, device_decode):
        parts["decode"] = "device"  # GPU resize differs from Pillow's by a few pixel levels
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
                          cached["image_indices"], key, cached["dense"])

    shards = np.array_split(idx, world)
    mask_shards = np.array_split(mask_indices, world)
    backbone.model.to(dev, memory_format=torch.channels_last).eval()
    if part_head is not None:
        part_head.to(dev).eval()
    with torch.inference_mode():
        local = _extract_shard(dataset, shards[rank], backbone, masks, part_head, batch_size,
                               num_workers, dev, dtype, progress and rank == 0, stage_index,
                               dense, mask_shards[rank], device_decode)
        if world > 1:
            local = _all_gather_shards(local, [len(s) for s in shards], dev)
    # clone: leave inference mode behind (on the CPU .cpu() would return the inference tensor)
    result = {k: v.cpu().clone() for k, v in local.items()}
    result.setdefault("part_embeddings", None)
    result.setdefault("part_present", None)
    result.setdefault("dense", None)
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
                    dist.barrier()
    return FeatureSet(result["embeddings"], result["part_embeddings"], result["part_present"],
                      result["image_indices"], key, result["dense"])


def learner_masks(run_masks: str, learner: Any) -> str | None:
    """The mask mode of the part features `learner` is given: its own (the annotation-free
    controls), else the run's features.masks for a part learner; None for any other learner."""
    if getattr(learner, "own_masks", None) is not None:
        return learner.own_masks
    return run_masks if getattr(learner, "uses_parts", False) else None


class FeatureProvider:
    """The features a run needs, extracted once per (image set, mask mode), cached on disk and
    kept on the run's device.

    config: the run's features section (masks, part_stage, dense, batching, device, precision).
    cache_dir: the feature cache folder, or None for no disk cache.

    Raises:
        ConfigError: features.part_stage names a stride the backbone does not have.
    """

    def __init__(self, dataset: Any, backbone: Backbone, config: FeaturesConfig,
                 cache_dir: str | os.PathLike | None, progress: bool = True) -> None:
        self.dataset, self.backbone, self.config = dataset, backbone, config
        self.cache_dir, self.progress = cache_dir, progress
        self.device = resolve_device(config.device)
        self._sets: dict[tuple[str, str, bool], FeatureSet] = {}
        try:
            backbone.stage_index(config.part_stage)
        except ValueError as exc:  # BackboneError
            raise ConfigError(f"features.{exc}") from None

    def features(self, indices: np.ndarray, masks: str, tag: str, dense: bool = False) -> FeatureSet:
        """FeatureSet (on the run's device) of dataset images `indices` with `masks` part masks
        (and dense maps if `dense`); `tag` names the image set (one set per tag, mask mode and
        dense flag is kept in memory)."""
        if (tag, masks, dense) not in self._sets:
            fc = self.config
            features = extract_features(
                self.dataset, indices, self.backbone, masks=masks, batch_size=fc.batch_size,
                num_workers=fc.num_workers, device=self.device, precision=fc.precision,
                cache_dir=None if self.cache_dir is None else str(self.cache_dir),
                progress=self.progress, part_stage=fc.part_stage, dense=dense,
                mask_seed=fc.mask_seed,
            )
            self._sets[(tag, masks, dense)] = features.to(self.device)
        return self._sets[(tag, masks, dense)]

    def gatherers(self, indices: np.ndarray, learner: Any = None) -> tuple[Callable, Callable]:
        """(gather_support, gather_query) over the images `indices` that the episodes use, for
        `learner` (its own mask mode if it is a control); default: the run's masks.

        The run's own set keeps the dense maps when features.dense is set, so local-descriptor
        learners and the others share one extraction; a control's set has its own mask mode and
        no dense maps."""
        own = getattr(learner, "own_masks", None)
        masks = own or self.config.masks
        dense = own is None and self.config.dense
        if masks == "support-oracle":  # annotations on the support set only
            support = self.features(indices, "oracle", "episodes", dense)
            query = self.features(indices, "predicted", "episodes", dense)
        else:
            support = query = self.features(indices, masks, "episodes", dense)
        return support.gather, query.gather

    def keys(self) -> list[str]:
        """The cache keys of every feature set extracted so far, sorted (part of a run's identity)."""
        return sorted(features.key for features in self._sets.values())

    def base_embeddings(self) -> torch.Tensor:
        """(n_train, D) float32 global embeddings of the train split, for learners' prepare()."""
        train = self.dataset.split_indices("train")
        return self.features(train, "none", "train").embeddings.float()

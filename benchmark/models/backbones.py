"""Backbones: any timm model as a feature extractor, with weights from one of four sources.

Weight sources (`build_backbone(weights=...)`):
- "random": timm's own initialisation, seeded; the global torch RNG is left untouched.
- "file":   a local checkpoint (state dict as .pth/.pt/.bin/.safetensors, or a dict holding one
            under "state_dict"/"model"), loaded by timm through
            `pretrained_cfg_overlay=dict(file=...)`, so the model keeps its own preprocessing.
- "hub":    timm's published pretrained weights (Hugging Face hub), when a hub is reachable or
            the weights are already in the local hub cache.
- "train":  a checkpoint written by partbench's trainer: `torch.save({"model": state_dict,
            "part_head": state_dict | None, "meta": {...}})`.

The ImageNet leak flag `provenance["saw_test_classes"]`: every PartImageNet class is an
ImageNet-1k class, so weights that may have seen ImageNet have seen the test classes. The rule:
- random  -> False (no data seen);
- hub     -> True (timm's hub weights are trained on ImageNet or a superset);
- file / train -> the checkpoint's metadata decides: False only if its "meta" dict (torch
  checkpoint) or its safetensors header says `saw_test_classes` is false; otherwise (absent or
  unknown) True. partbench's trainer writes `meta["saw_test_classes"] = False` only when it
  started from random weights and trained on the train split alone.

No absolute machine paths go into the provenance: a checkpoint is named by its file name and
identified by the sha256 of its bytes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import timm
import timm.data
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open
from torch import nn

from benchmark.config.backbone import WEIGHT_SOURCES
from benchmark.models.part_head import part_head_for, stage_inputs
from benchmark.models.tensor_hash import checkpoint_problem, file_hash_problem, first_non_finite
from episodes.errors import PartbenchError
from episodes.storage import file_sha256


class BackboneError(PartbenchError, ValueError):
    """A backbone cannot be built as asked; the message names the argument or file to fix."""


@dataclass
class Backbone:
    """A timm model (created with num_classes=0) and the preprocessing its weights expect.

    Attributes:
        name: the timm model name.
        model: the timm model, in eval mode.
        data_config: timm data config (input_size, mean, std, interpolation, crop_pct,
            crop_mode). crop_pct=1.0 and crop_mode="squash": the whole image is resized to the
            square input size without cropping, so part masks stay aligned with the pixels.
        transform: timm eval transform built from data_config (PIL image -> (3, H, W) float).
        provenance: where the weights come from (see the module docstring); JSON-able.
        part_head_state: state dict of a part-segmentation head saved with a "train"
            checkpoint, else None (see `part_head()`).
    """

    name: str
    model: nn.Module
    data_config: dict[str, Any]
    transform: Callable
    provenance: dict[str, Any]
    part_head_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def num_features(self) -> int:
        """C: channels of the feature map (and the embedding size D)."""
        return int(self.model.num_features)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the model input."""
        _, h, w = self.data_config["input_size"]
        return int(h), int(w)

    @property
    def weights_sha256(self) -> str:
        return self.provenance["sha256"]

    def feature_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the trunk once.

        Args:
            images: (B, 3, H, W) normalised images.

        Returns:
            fmap: (B, C, h, w) spatial feature map (ViT-like: patch tokens as a grid, prefix
                tokens dropped).
            pooled: (B, C) the model's own pooled embedding (its num_classes=0 head: average
                pool for CNNs, class token / pooling for ViTs); the average of fmap when the
                head changes the width (e.g. MobileNetV3's conv head), so that global and
                part embeddings share one space.
        """
        return trunk_features(self.model, images)

    def stage_index(self, stage: int | str) -> int | None:
        """Which feature map part slots pool over: `stage` "last" (or the stride of the last map)
        -> None, meaning forward_features' own map; an earlier stride (e.g. 16 or 8) -> the index
        in timm's `feature_info` of the deepest stage with that stride (the index
        `forward_intermediates` takes).

        ViTs (and other isotropic models) report the patch size as the stride of every block, so
        their only stage is the last one: a finer part grid there comes from a larger image size.

        Raises:
            BackboneError: a stride the model does not have, or a model without feature_info.
        """
        if stage == "last":
            return None
        strides = self.stage_strides()
        if not isinstance(stage, int) or isinstance(stage, bool) or stage not in strides:
            raise BackboneError(
                f"part_stage={stage!r}: {self.name} has feature maps at strides "
                f"{sorted(set(strides), reverse=True)}; use one of them or 'last'"
            )
        index = max(i for i, s in enumerate(strides) if s == stage)
        return None if index == len(strides) - 1 else index

    def stage_strides(self) -> list[int]:
        """The stride (input pixels per feature cell) of each entry of timm's feature_info."""
        info = getattr(self.model, "feature_info", None)
        if not info or not hasattr(self.model, "forward_intermediates"):
            raise BackboneError(
                f"{self.name} exposes no feature_info/forward_intermediates in "
                "this timm version; part_stage must be 'last'"
            )
        return [int(entry["reduction"]) for entry in info]

    def part_channels(self, stage_index: int | None) -> int:
        """C_part: channels of the map the part slots pool over (num_features for the last)."""
        if stage_index is None:
            return self.num_features
        return int(self.model.feature_info[stage_index]["num_chs"])

    def stage_features(
        self, images: torch.Tensor, stage_index: int | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the trunk once; return (fmap, pooled, part_map).

        fmap (B, C, h, w) and pooled (B, C) are those of `feature_map`; part_map
        (B, C_part, h', w') is fmap itself for stage_index None, else the output of
        feature_info[stage_index] (taken with timm's forward_intermediates, no extra norm).
        """
        fmap, pooled, part_map, _ = self._stage_maps(images, stage_index, ())
        return fmap, pooled, part_map

    def part_features(
        self, images: torch.Tensor, stage_index: int | None, part_head: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`stage_features` plus the part head's (B, S+1, h'', w'') logits, from one trunk pass
        that also takes the stage maps the head reads (benchmark.models.part_head's protocol)."""
        fmap, pooled, part_map, head_maps = self._stage_maps(
            images, stage_index, stage_inputs(part_head)
        )
        return fmap, pooled, part_map, part_head(fmap, *head_maps)

    def _stage_maps(
        self, images: torch.Tensor, stage_index: int | None, extra: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """One trunk pass: fmap, pooled, the part map (fmap for stage_index None) and the maps
        of feature_info indices `extra`, in their order."""
        part_index = () if stage_index is None else (stage_index,)
        fmap, pooled, maps = trunk_and_stages(self.model, images, part_index + extra)
        part_map = maps[0] if part_index else fmap
        return fmap, pooled, part_map, maps[len(part_index) :]

    def part_head(self) -> nn.Module:
        """The part-segmentation head saved with a "train" checkpoint, in eval mode: a
        benchmark.models.part_head.PartSegHead over this model's stages (`part_head_for`)."""
        if self.part_head_state is None:
            raise BackboneError(
                f"backbone {self.name!r} ({self.provenance['source']} weights) has no "
                "part-segmentation head; train one (part-aware pre-training) or use masks='oracle'"
            )
        head = part_head_for(self.model)
        try:
            head.load_state_dict(self.part_head_state)
        except RuntimeError:
            raise BackboneError(
                f"the part head saved with {self.provenance.get('checkpoint') or self.name!r} "
                "does not fit this version's stage decoder (an older head design); retrain it: "
                "python -m benchmark cache --clear checkpoints"
            ) from None
        return head.eval()


def trunk_features(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fmap (B, C, h, w), pooled (B, C)) of a timm model (num_classes=0) on (B, 3, H, W) images;
    see Backbone.feature_map. Training uses it too, so heads train on the features extracted."""
    return _fmap_and_pooled(model, model.forward_features(images), images)


def trunk_and_stages(
    model: nn.Module, images: torch.Tensor, indices: tuple[int, ...] | list[int]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """One trunk pass: (fmap (B, C, h, w), pooled (B, C), the maps of feature_info `indices` in
    their order) of a timm model on (B, 3, H, W) images; no extra pass when `indices` is empty."""
    if not indices:
        fmap, pooled = trunk_features(model, images)
        return fmap, pooled, []
    order = sorted(set(indices))
    raw, maps = model.forward_intermediates(images, indices=order, intermediates_only=False)
    by_index = dict(zip(order, maps))
    fmap, pooled = _fmap_and_pooled(model, raw, images)
    return fmap, pooled, [by_index[i] for i in indices]


def _fmap_and_pooled(
    model: nn.Module, raw: torch.Tensor, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """forward_features output `raw` -> (fmap (B, C, h, w), pooled (B, C))."""
    fmap = to_nchw(model, raw, images.shape[-2:])
    pooled = model.forward_head(raw, pre_logits=True)
    if pooled.ndim != 2 or pooled.shape[1] != fmap.shape[1]:
        pooled = fmap.mean(dim=(2, 3))
    return fmap, pooled


def to_nchw(model: nn.Module, raw: torch.Tensor, hw: torch.Size) -> torch.Tensor:
    """forward_features output of a timm model for (H, W) = hw inputs -> (B, C, h, w)."""
    if raw.ndim == 4:
        if getattr(model, "output_fmt", "NCHW") == "NHWC":  # e.g. Swin, MambaOut
            return raw.permute(0, 3, 1, 2)
        return raw
    if raw.ndim == 3:  # tokens (B, N, C)
        n_prefix = int(getattr(model, "num_prefix_tokens", 0))
        tokens = raw[:, n_prefix:]
        patch_embed = getattr(model, "patch_embed", None)
        if patch_embed is not None and hasattr(patch_embed, "dynamic_feat_size"):
            h, w = patch_embed.dynamic_feat_size(tuple(hw))
        else:
            h = w = int(round(tokens.shape[1] ** 0.5))
        if h * w != tokens.shape[1]:
            raise BackboneError(
                f"cannot lay {tokens.shape[1]} tokens of {type(model).__name__} out as an "
                f"{h}x{w} grid; use a CNN or a plain ViT"
            )
        return tokens.transpose(1, 2).reshape(raw.shape[0], raw.shape[2], h, w)
    raise BackboneError(f"{type(model).__name__}.forward_features gave shape {tuple(raw.shape)}")


def state_dict_sha256(state: dict[str, torch.Tensor] | nn.Module) -> str:
    """Hex sha256 over the names, dtypes, shapes and bytes of a state dict's tensors."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_model_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise BackboneError(f"backbone.name: unknown timm model name {name!r}{hint}")


def _create(name: str, image_size: int | None, fixed_size: bool, **kwargs: Any) -> nn.Module:
    # Models with a fixed input size (ViTs) must be built for the size they will see;
    # timm resamples their position embeddings when it loads weights.
    if image_size is not None and fixed_size:
        kwargs["img_size"] = image_size
    return timm.create_model(name, num_classes=0, **kwargs)


def _has_fixed_input_size(name: str) -> bool:
    cfg = timm.get_pretrained_cfg(name)
    return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))


def _random_model(name: str, image_size: int | None, fixed: bool, seed: int) -> nn.Module:
    # timm initialises from the global torch RNG: fork it so the caller's state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create(name, image_size, fixed, pretrained=False)


def _read_meta(path: Path) -> dict[str, Any]:
    """The metadata stored in a checkpoint file ({} when it carries none)."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        meta: dict[str, Any] = dict(header)
        if "saw_test_classes" in meta:
            meta["saw_test_classes"] = str(meta["saw_test_classes"]).lower() in ("1", "true", "yes")
        return meta
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("meta"), dict):
        return dict(checkpoint["meta"])
    return {}


def _saw_test_classes(meta: dict[str, Any]) -> bool:
    """True unless the metadata says explicitly (a bool False) that no test class was seen."""
    return meta.get("saw_test_classes") is not False


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        if getattr(hf_constants, "HF_HUB_OFFLINE", False):
            return False
        host = urlparse(hf_constants.ENDPOINT).hostname or "huggingface.co"
    except ImportError:
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _hub_cached_file(name: str) -> Path | None:
    """The weights of timm's default pretrained tag for `name`, if already in the hub cache."""
    cfg = timm.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _hub_model(name: str, image_size: int | None, fixed: bool) -> tuple[nn.Module, dict]:
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise BackboneError(
            f"timm publishes no pretrained weights for {name!r}; use weights='file'"
        )
    prov = {"hub_id": cfg.hf_hub_id or cfg.url}
    if _hub_reachable():
        try:
            return _create(name, image_size, fixed, pretrained=True), prov
        except Exception as err:  # network, auth, missing file: all leave no weights
            raise BackboneError(
                f"could not download the hub weights of {name!r} ({err}); download them where a "
                "hub is reachable and use weights='file', checkpoint=<path>"
            ) from err
    cached = _hub_cached_file(name)
    if cached is None:
        raise BackboneError(
            f"weights='hub' for {name!r}, but no model hub is reachable from this machine and "
            "the weights are not in the local hub cache. Download the weights on a machine "
            f"with internet access (e.g. timm.create_model({name!r}, pretrained=True) and "
            "torch.save(model.state_dict(), 'w.pth')), copy the file here and use "
            "weights='file', checkpoint='w.pth'"
        )
    overlay = dict(file=str(cached))
    model = _create(name, image_size, fixed, pretrained=True, pretrained_cfg_overlay=overlay)
    return model, prov


def _train_model(
    name: str, path: Path, image_size: int | None, fixed: bool
) -> tuple[nn.Module, dict[str, Any], dict | None, int | None]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BackboneError(
            f"cannot read training checkpoint {path}: {' '.join(str(err).split())[:200]}"
        ) from None
    problem = checkpoint_problem(checkpoint)
    if problem is not None:
        raise BackboneError(f"training checkpoint {path} {problem}; retrain it or use another")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise BackboneError(
            f"{path.name} is not a partbench training checkpoint: expected a dict with a "
            "'model' state dict (and 'part_head', 'meta'); for a plain state dict use "
            "weights='file'"
        )
    meta = checkpoint.get("meta") or {}
    trained_name = meta.get("model_name", meta.get("backbone"))
    if isinstance(trained_name, str) and trained_name != name:
        raise BackboneError(f"{path.name} holds a {trained_name!r} backbone, not {name!r}")
    if image_size is None and isinstance(meta.get("image_size"), int):
        image_size = meta["image_size"]  # the size it was trained at
    model = _random_model(name, image_size, fixed, seed=0)
    state = {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}
    classifier = timm.get_pretrained_cfg(name).classifier if timm.get_pretrained_cfg(name) else None
    classifier_prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    # The trainer's classification layer (109 train classes) has no place in a feature extractor.
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith(tuple(p + "." for p in classifier_prefixes))
    }
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BackboneError(
            f"{path.name} does not fit {name!r}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model, dict(meta), checkpoint.get("part_head"), image_size


def build_backbone(
    name: str,
    weights: str = "random",
    checkpoint: str | os.PathLike | None = None,
    image_size: int | None = None,
    *,
    seed: int = 0,
) -> Backbone:
    """Build a timm feature extractor (num_classes=0) with weights from one source.

    Args:
        name: a timm model name (timm.list_models()).
        weights: "random", "file", "hub" or "train" (see the module docstring).
        checkpoint: the weights file, for weights="file" and "train".
        image_size: square input size in pixels; default: the model's own input size (for a
            "train" checkpoint: the meta's image_size, the size it was trained at).
        seed: seed of the random initialisation (weights="random").

    Raises:
        BackboneError: unknown name (with close timm names), missing checkpoint, unreadable or
            mismatched weights, or no hub reachable.
    """
    _check_model_name(name)
    if weights not in WEIGHT_SOURCES:
        raise BackboneError(f"weights={weights!r} is not one of {WEIGHT_SOURCES}")
    path: Path | None = None
    if weights in ("file", "train"):
        if checkpoint is None:
            raise BackboneError(f"weights={weights!r} needs checkpoint=<path to the weights file>")
        path = Path(checkpoint)
        if not path.is_file():
            raise BackboneError(f"checkpoint file not found: {path}")
        problem = file_hash_problem(path)  # a .sha256 beside it is a promise: keep it
        if problem is not None:
            raise BackboneError(f"checkpoint {path} {problem}; refusing to use it")
    elif checkpoint is not None:
        raise BackboneError(
            f"checkpoint= is only used with weights='file' or 'train', not {weights!r}"
        )
    if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
        raise BackboneError(f"image_size={image_size!r} must be an int >= 8 (pixels)")

    fixed = _has_fixed_input_size(name)
    provenance: dict[str, Any] = {"source": weights, "name": name, "checkpoint": None}
    part_head_state = None
    if weights == "random":
        model = _random_model(name, image_size, fixed, seed)
        provenance.update(seed=seed, saw_test_classes=False)
    elif weights == "file":
        assert path is not None
        try:
            meta = _read_meta(path)
            model = _create(
                name,
                image_size,
                fixed,
                pretrained=True,
                pretrained_cfg_overlay=dict(file=str(path)),
            )
        except Exception as err:
            raise BackboneError(f"cannot load {path.name} into {name!r}: {err}") from err
        provenance.update(saw_test_classes=_saw_test_classes(meta), meta=_jsonable(meta))
    elif weights == "hub":
        model, hub_prov = _hub_model(name, image_size, fixed)
        provenance.update(hub_prov, saw_test_classes=True)
    else:
        assert path is not None
        model, meta, part_head_state, image_size = _train_model(name, path, image_size, fixed)
        provenance.update(saw_test_classes=_saw_test_classes(meta), meta=_jsonable(meta))

    if path is not None:
        bad = first_non_finite(dict(model.state_dict()))
        if bad is not None:
            raise BackboneError(
                f"checkpoint {path} holds NaN or infinite values in {bad!r}; "
                "those weights cannot give meaningful features"
            )
        provenance.update(checkpoint=path.name, sha256=file_sha256(path), sha256_of="file")
    else:
        provenance.update(sha256=state_dict_sha256(model), sha256_of="state_dict")

    model.eval()
    data_config = timm.data.resolve_model_data_config(model)
    if image_size is not None:
        data_config["input_size"] = (3, image_size, image_size)
    data_config.update(crop_pct=1.0, crop_mode="squash")
    transform = timm.data.create_transform(**data_config, is_training=False)
    return Backbone(name, model, data_config, transform, provenance, part_head_state)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    """Keep the JSON-able entries of checkpoint metadata (no tensors, no paths)."""
    out = {}
    for key, value in meta.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[str(key)] = value
    return out

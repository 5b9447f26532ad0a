"""Run configuration: typed dataclasses read from YAML, with command-line overrides.

Every key is checked: an unknown key or a value of the wrong type is an error that names the
key's full path (e.g. `episodes.n_way`) and what would fix it. Overrides (`--set KEY=VALUE`) are
applied before the check, so they win over the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


@dataclass
class SyntheticConfig:
    """Parameters of the synthetic twin generated on first use (see `python -m benchmark synth`)."""

    images_per_class: int = 20
    image_size: int = 128
    seed: int = 0
    full: bool = False


@dataclass
class DataConfig:
    """Which dataset: the embedded synthetic twin, or the real PartImageNet_OOD release."""

    source: str = "synthetic"  # "synthetic" | "partimagenet"
    root: str | None = None  # partimagenet: the release folder; synthetic: where to put the twin
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class BackboneConfig:
    """A timm model and where its weights come from."""

    name: str = "resnet10t"
    weights: str = "train"  # "random" | "file" | "hub" | "train"
    checkpoint: str | None = None  # weights: file
    image_size: int = 64
    seed: int = 0
    # several training seeds: one backbone per seed, each evaluated on the same episodes, and
    # the spread between seeds reported beside the episode CI (empty: the one `seed` above)
    seeds: list[int] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Training on the train split, used when `backbone.weights: train`."""

    method: str = "classification"  # "classification" | "protonet"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.2  # SGD with Nesterov momentum, warm-up then cosine
    part_head: str | bool = False  # False | "joint" | "after"
    val_episodes: int = 100  # 5-way val episodes for model selection
    val_k_shot: int = 5
    val_n_query: int = 10
    num_workers: int = 0


@dataclass
class FeaturesConfig:
    """Feature extraction: part masks, batching, device and precision."""

    masks: str = "oracle"  # "oracle" | "predicted" | "support-oracle" | "none"
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "fp32" | "bf16"


@dataclass
class EpisodesConfig:
    """Which episodes are evaluated."""

    split: str = "test"
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15
    n_episodes: int = 600
    mode: str = "mixed"  # "mixed" | "within" | "across" | "variable"
    seed: int = 0
    file: str | None = None  # a fixed episode file; overrides the sampler settings above
    batch_size: int = 64  # episodes per learner call: larger batches only add allocation cost


@dataclass
class LearnerConfig:
    """A registered learner (`python -m benchmark list`) and its keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportConfig:
    confidence: float = 0.95
    bootstrap: bool = False
    seed: int = 0


@dataclass
class RunConfig:
    """A whole benchmark run."""

    name: str = "run"
    output_dir: str = "outputs"
    cache_dir: str | None = None  # default: $PARTBENCH_CACHE or ~/.cache/partbench
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    episodes: EpisodesConfig = field(default_factory=EpisodesConfig)
    learners: list[LearnerConfig] = field(
        default_factory=lambda: [LearnerConfig("protonet")]
    )
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES: dict[str, tuple[Any, ...]] = {
    "data.source": ("synthetic", "partimagenet"),
    "backbone.weights": ("random", "file", "hub", "train"),
    "train.method": ("classification", "protonet"),
    "train.part_head": (False, "joint", "after"),
    "features.masks": ("oracle", "predicted", "support-oracle", "none"),
    "features.precision": ("auto", "fp32", "bf16"),
    "episodes.split": ("train", "val", "test"),
    "episodes.mode": ("mixed", "within", "across", "variable"),
}

POSITIVE: tuple[str, ...] = (
    "data.synthetic.images_per_class", "data.synthetic.image_size", "backbone.image_size",
    "train.batch_size", "train.val_episodes", "train.val_k_shot", "train.val_n_query",
    "features.batch_size", "episodes.n_way", "episodes.k_shot",
    "episodes.n_query", "episodes.n_episodes", "episodes.batch_size",
)


def shipped_configs() -> list[str]:
    """Names of the configs shipped with partbench (usable as a bare `--config NAME`)."""
    folder = resources.files("benchmark").joinpath("configs")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given if it exists, else a shipped config of that name (".yaml" optional)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name if path.suffix else f"{path.name}.yaml"
    shipped = Path(str(resources.files("benchmark").joinpath("configs", name)))
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config {str(name_or_path)!r} not found: it is neither a file nor a shipped config "
        f"(shipped: {', '.join(shipped_configs())})"
    )


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (path or shipped name), apply `KEY=VALUE` overrides, check and type it."""
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=VALUE` in a nested dict; VALUE is parsed as YAML (`3`, `true`, `[a, b]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like KEY=VALUE, e.g. episodes.n_way=5")
    node = raw
    *parents, leaf = key.strip().split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[leaf] = yaml.safe_load(value)


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from plain data, checking every key, type and choice."""
    cfg = _build(RunConfig, raw, "")
    _check_values(cfg)
    return cfg


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"in {prefix}" if prefix else "at the top level"
        raise ConfigError(
            f"unknown key {_join(prefix, unknown[0])!r} {where}; valid keys: {', '.join(fields)}"
        )
    missing = [
        name for name, f in fields.items()
        if name not in raw and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required key {_join(prefix, missing[0])!r}")
    kwargs = {name: _coerce(hints[name], value, _join(prefix, name)) for name, value in raw.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if item_type is LearnerConfig:
            return [_learner(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is typing.Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _learner(value: Any, key: str) -> LearnerConfig:
    """A learner entry is a bare name (`protonet`) or a mapping {name: ..., options: {...}}."""
    if isinstance(value, str):
        return LearnerConfig(name=value)
    return _build(LearnerConfig, value, key)


def _check_values(cfg: RunConfig) -> None:
    for key, choices in CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            shown = ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)
            raise ConfigError(f"{key}: {value!r} is not one of: {shown}")
    for key in POSITIVE:
        if _get(cfg, key) < 1:
            raise ConfigError(f"{key}: must be at least 1, got {_get(cfg, key)}")
    if cfg.data.source == "partimagenet" and not cfg.data.root:
        raise ConfigError(
            "data.root: required when data.source is partimagenet "
            "(the folder of the PartImageNet_OOD release)"
        )
    if cfg.backbone.weights == "file" and not cfg.backbone.checkpoint:
        raise ConfigError("backbone.checkpoint: required when backbone.weights is file")
    if not 0 < cfg.report.confidence < 1:
        raise ConfigError(f"report.confidence: must lie in (0, 1), got {cfg.report.confidence}")
    if len(set(cfg.backbone.seeds)) != len(cfg.backbone.seeds) or any(
            s < 0 for s in cfg.backbone.seeds):
        raise ConfigError(f"backbone.seeds: distinct seeds >= 0 please, got {cfg.backbone.seeds}")
    if not cfg.learners:
        raise ConfigError("learners: name at least one learner (see `python -m benchmark list`)")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))

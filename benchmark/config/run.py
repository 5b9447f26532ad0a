"""Run configuration: typed dataclasses read from YAML, with command-line overrides.

Every key is checked: an unknown key or a value of the wrong type is an error that names the
key's full path (e.g. `episodes.n_way`) and what would fix it. Overrides (`--set KEY=VALUE`) are
applied before the check, so they win over the file.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchmark.config.backbone import WEIGHT_SOURCES, BackboneConfig
from benchmark.config.data import DATA_SOURCES, DataConfig, SyntheticConfig
from benchmark.config.device import PRECISIONS
from benchmark.config.errors import ConfigError
from benchmark.config.features import MASK_MODES, FeaturesConfig
from benchmark.config.strict_yaml import StrictYAMLError, load_yaml
from benchmark.config.training import BATCHNORM_MODES, PART_HEAD_MODES, TRAIN_METHODS, TrainConfig
from episodes.sampler import MODES
from episodes.storage import json_sha256
from episodes.taxonomy import SPLITS

__all__ = [
    "CHOICES",
    "BackboneConfig",
    "ConfigError",
    "DataConfig",
    "EpisodesConfig",
    "FeaturesConfig",
    "LearnerConfig",
    "ReportConfig",
    "RunConfig",
    "SyntheticConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
]


@dataclass
class EpisodesConfig:
    """Which episodes are evaluated."""

    split: str = "test"  # episodes.taxonomy.SPLITS
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15
    n_episodes: int = 600
    mode: str = "mixed"  # episodes.sampler.MODES
    seed: int = 0
    file: str | None = None  # a fixed episode file; overrides the sampler settings above
    batch_size: int = 64  # episodes per learner call: larger batches only add allocation cost


@dataclass
class LearnerConfig:
    """A registered learner (`python -m benchmark list`), its keyword options, and the label its
    rows carry: a learner listed twice (e.g. logreg with two step counts) needs a label per copy."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        """The learner's name in records, tables and result files: its label, else its name."""
        return self.label if self.label is not None else self.name


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
    learners: list[LearnerConfig] = field(default_factory=lambda: [LearnerConfig("protonet")])
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict[str, Any]:
        """As plain data; a learner without a label has no `label` key (so the identity and
        config.yaml of runs made before labels existed stay as they were)."""
        raw = dataclasses.asdict(self)
        for learner in raw["learners"]:
            if learner["label"] is None:
                del learner["label"]
        return raw


# The config keys with a fixed set of values, each list defined beside the code that uses it.
CHOICES: dict[str, tuple[Any, ...]] = {
    "data.source": DATA_SOURCES,
    "backbone.weights": WEIGHT_SOURCES,
    "train.method": TRAIN_METHODS,
    "train.part_head": PART_HEAD_MODES,
    "train.precision": PRECISIONS,
    "train.batchnorm": BATCHNORM_MODES,
    "features.masks": MASK_MODES,
    "features.precision": PRECISIONS,
    "episodes.split": SPLITS,
    "episodes.mode": MODES,
}

POSITIVE: tuple[str, ...] = (
    "data.synthetic.images_per_class",
    "data.synthetic.image_size",
    "backbone.image_size",
    "train.batch_size",
    "train.val_episodes",
    "train.val_k_shot",
    "train.val_n_query",
    "train.epochs",
    "train.n_way",
    "train.k_shot",
    "train.n_query",
    "train.episodes_per_epoch",
    "train.episodes_per_step",
    "features.batch_size",
    "episodes.n_way",
    "episodes.k_shot",
    "episodes.n_query",
    "episodes.n_episodes",
    "episodes.batch_size",
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
    raw = read_config_file(path)
    for item in overrides:
        apply_override(raw, item)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        # blame the --set that gave the bad value, not the file it overrode
        message = str(exc)
        for item in reversed(overrides):
            key = item.partition("=")[0].strip()
            if _concerns(exc.key, key) or message.startswith((f"{key}:", f"{key}.", f"{key}[")):
                raise ConfigError(f"--set {_shown_override(item)}: {message}") from None
        raise ConfigError(f"{path}: {message}") from None


def _concerns(fault: str | None, key: str) -> bool:
    """Whether the key at fault is the overridden `key` or lies inside its value."""
    return fault is not None and (fault == key or fault.startswith((f"{key}.", f"{key}[")))


def _shown_override(item: str, limit: int = 80) -> str:
    """An override as an error message shows it: whole when short, else its start (a 40 KB
    value must not make a 40 KB message)."""
    return item if len(item) <= limit else f"{item[:limit]}... ({len(item):,} characters)"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, read strictly (see benchmark.config.strict_yaml).

    Raises:
        ConfigError: one line naming the file: unreadable, not UTF-8, empty, not YAML, a key
            twice, an unsafe tag, an alias bomb, or a top level that is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None
    try:
        raw = load_yaml(text)
    except StrictYAMLError as exc:
        raise ConfigError(f"{path}: not a usable YAML config: {exc}") from None
    if raw is None:
        raise ConfigError(
            f"{path}: the file is empty; a config names at least its learners "
            "(start from a shipped one: `python -m benchmark list`)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=VALUE` in a nested dict; VALUE is parsed as YAML (`3`, `true`, `[a, b]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(
            f"override {_shown_override(item)!r} must look like KEY=VALUE, e.g. episodes.n_way=5"
        )
    node = raw
    *parents, leaf = key.strip().split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {_shown_override(item)!r}: {part!r} is not a section")
        node = child
    try:
        node[leaf] = load_yaml(value)
    except StrictYAMLError as exc:
        reason = _shown_override(str(exc), limit=200)
        raise ConfigError(
            f"override {_shown_override(item)!r}: not a usable YAML value: {reason}"
        ) from None


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
            f"unknown key {_join(prefix, unknown[0])!r} {where}; valid keys: {', '.join(fields)}",
            key=_join(prefix, unknown[0]),
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"missing required key {_join(prefix, missing[0])!r}", key=_join(prefix, missing[0])
        )
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
        raise ConfigError(
            f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )
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
    stage = cfg.features.part_stage
    if stage != "last" and not (isinstance(stage, int) and stage >= 1):
        raise ConfigError(
            f"features.part_stage: {stage!r} must be last or the stride of an "
            "earlier feature map (an integer such as 16 or 8)"
        )
    if len(set(cfg.backbone.seeds)) != len(cfg.backbone.seeds) or any(
        s < 0 for s in cfg.backbone.seeds
    ):
        raise ConfigError(f"backbone.seeds: distinct seeds >= 0 please, got {cfg.backbone.seeds}")
    if not cfg.learners:
        raise ConfigError("learners: name at least one learner (see `python -m benchmark list`)")
    _check_learner_keys(cfg.learners)
    _check_run_folder_values(cfg)
    _check_integrity_values(cfg)


LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+@:-]{0,99}")


def _check_learner_keys(learners: list[LearnerConfig]) -> None:
    """Every learner's rows need a name of their own (a second copy under the same key would be
    skipped as already recorded, silently): an unlabelled learner whose name repeats is labelled
    name@<6 hex digits of its options>; copies that still collide are refused."""
    counts = collections.Counter(spec.name for spec in learners)
    for i, spec in enumerate(learners):
        if spec.label is None and counts[spec.name] > 1:
            spec.label = f"{spec.name}@{json_sha256(spec.options)[:6]}"
        elif spec.label is not None and not LABEL_PATTERN.fullmatch(spec.label):
            raise ConfigError(
                f"learners[{i}].label: {spec.label!r} must be 1-100 letters, digits or _.+@:- "
                "(starting with a letter or digit)"
            )
    seen: dict[str, int] = {}
    for i, spec in enumerate(learners):
        if spec.key in seen:
            raise ConfigError(
                f"learners[{i}]: {spec.key!r} is already learners[{seen[spec.key]}] (the same "
                f"learner with the same options?); give each copy its own label, e.g. "
                f"{{name: {spec.name}, label: {spec.name}_2, options: ...}}"
            )
        seen[spec.key] = i


def _check_run_folder_values(cfg: RunConfig) -> None:
    """`name` is one folder name, so every run folder stays inside `output_dir`; `output_dir`
    must be a folder (or not exist yet)."""
    name = cfg.name
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or name.startswith("~")
    ):
        raise ConfigError(
            f"name: {_shown_override(name)!r} must be a plain folder name (no '/', "
            "'..' or absolute path): each run folder is made inside output_dir"
        )
    out = Path(cfg.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"output_dir: {cfg.output_dir!r} names a file, not a folder; give a "
            "folder for the run folders"
        )


# --- value checks of issue 10: every bad value is a config error at load time ----------------

NON_NEGATIVE: tuple[str, ...] = ("train.num_workers", "features.num_workers")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# Peak bytes to read one (learner, episode) record back and report it (about 4.5 KB measured,
# see docs/reliability.md), and to hold one episode: per image index and per episode.
RECORD_PEAK_BYTES = 5_000
EPISODE_BYTES_PER_IMAGE, EPISODE_BYTES = 48, 600
VARIABLE_EPISODE_IMAGES = 500  # Meta-Dataset episodes hold up to ~500 images


def _check_integrity_values(cfg: RunConfig) -> None:
    for key in NON_NEGATIVE:
        if _get(cfg, key) < 0:
            raise ConfigError(
                f"{key}: must be 0 (load in the main process) or more, got {_get(cfg, key)}"
            )
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs: must be at least 1, got {cfg.train.epochs}")
    head_epochs = cfg.train.part_head_epochs
    if head_epochs is not None and head_epochs < 1:  # 0 would publish an untrained head's masks
        raise ConfigError(
            f"train.part_head_epochs: must be at least 1 (or null: half of train.epochs), "
            f"got {head_epochs}"
        )
    if not cfg.train.lr > 0 or cfg.train.lr == float("inf"):
        raise ConfigError(f"train.lr: must be a positive finite number, got {cfg.train.lr}")
    check_device(cfg.features.device, "features.device")
    check_fits_in_memory(cfg)


def check_device(device: str, key: str) -> None:
    """A device string partbench can use: auto, cpu, cuda or cuda:N, CUDA only where it exists.

    torch is imported only for a CUDA device (a CUDA run imports it anyway).
    """
    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"{key}: {device!r} is not a device; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch  # lazy: only a CUDA config pays for it at load time

        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}: {device!r}, but this machine has no usable CUDA device "
                "(torch.cuda.is_available() is False); use auto or cpu"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}: {device!r}, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)"
            )


def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def episodes_memory_bytes(n_episodes: int, n_learners: int, images_per_episode: int) -> int:
    """Peak bytes to hold the episodes of a run and read its records back for the report."""
    episode = EPISODE_BYTES + EPISODE_BYTES_PER_IMAGE * images_per_episode
    return n_episodes * (episode + n_learners * RECORD_PEAK_BYTES)


def check_fits_in_memory(cfg: RunConfig, memory: int | None = None) -> None:
    """Refuse an n_episodes whose records could never be reported on this machine."""
    memory = physical_memory_bytes() if memory is None else memory
    ep = cfg.episodes
    if memory is None or ep.file:
        return
    images = (
        VARIABLE_EPISODE_IMAGES if ep.mode == "variable" else ep.n_way * (ep.k_shot + ep.n_query)
    )
    need = episodes_memory_bytes(ep.n_episodes, len(cfg.learners), images)
    if need > memory:
        fits = memory // max(episodes_memory_bytes(1, len(cfg.learners), images), 1)
        raise ConfigError(
            f"episodes.n_episodes: {ep.n_episodes} episodes x {len(cfg.learners)} learner(s) need "
            f"about {need / 2**30:.3g} GiB to record and report, but this machine has "
            f"{memory / 2**30:.3g} GiB; at most about {fits} episodes fit"
        )


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true/false",
        type(None): "null",
    }.get(tp, getattr(tp, "__name__", str(tp)))

"""partbench: a few-shot, part-aware benchmark harness for PartImageNet.

The public face of the harness; everything else under benchmark/ is internal and may change:

    from benchmark import load_config, run_benchmark
    result = run_benchmark(load_config("5way1shot", ["episodes.n_episodes=100"]))
    print(result.tables["accuracy"])

`run_benchmark(cfg) -> RunResult` is `python -m benchmark run` from Python (a notebook, another
tool); `run_training_seeds` is `run --seeds`; `train_backbone` trains a backbone on the train
split on its own. `PartbenchError` is the base of every error that means "this input cannot be
used" (ConfigError for a config).
"""

from __future__ import annotations

import importlib

from benchmark.config import ConfigError, RunConfig, load_config
from episodes.errors import PartbenchError

__version__ = "0.1.0"

# Lazy: these import torch and timm, which `import benchmark` (and the CLI's --help, list,
# validate) must not pay for. name -> the module that defines it.
_LAZY = {
    "RunResult": "benchmark.run.orchestrator",
    "run_benchmark": "benchmark.run.orchestrator",
    "run_training_seeds": "benchmark.run.training_seeds",
    "TrainConfig": "benchmark.config.training",
    "train_backbone": "benchmark.training.loop",
}

__all__ = ["ConfigError", "PartbenchError", "RunConfig", "load_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, "run_seeds" if name == "run_training_seeds" else name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")

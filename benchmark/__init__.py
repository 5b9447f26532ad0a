"""partbench: a few-shot, part-aware benchmark harness for PartImageNet.

`benchmark.run_benchmark(cfg) -> RunResult` runs a benchmark from Python (a notebook, another
tool) and returns what it produced; `python -m benchmark run` is the same from the shell.
"""

__version__ = "0.1.0"

__all__ = ["RunResult", "run_benchmark"]


def __getattr__(name: str):
    # Lazy: the runner imports torch and timm, which `import benchmark` (and the CLI's --help,
    # list, validate) must not pay for.
    if name in __all__:
        from benchmark.run import orchestrator

        return getattr(orchestrator, name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")

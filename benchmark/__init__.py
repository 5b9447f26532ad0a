"""partbench: a few-shot, part-aware benchmark harness for PartImageNet."""

__version__ = "0.1.0"

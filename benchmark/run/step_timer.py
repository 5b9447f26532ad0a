"""Wall time per step of a run (dataset, training, features, episodes, ...), reported at its end so a user sees where the minutes went."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class StepTimer:
    """Accumulates wall-clock seconds per named pipeline step, in the order steps first ran.

    Usage:
        timer = StepTimer()
        with timer.step("features"):
            ...
        print(timer.summary())
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the enclosed block under `name` (added to earlier blocks of that name), also
        when it raises."""
        start = self._clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + (self._clock() - start)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        """One line: 'wall time per step: twin 1.2 s, training 80.0 s, ... (total 95.1 s)'."""
        parts = ", ".join(f"{name} {secs:.1f} s" for name, secs in self.seconds.items())
        return f"wall time per step: {parts} (total {self.total:.1f} s)"

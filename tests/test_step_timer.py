"""The run's per-step wall time: accumulated per name, in first-run order, also on errors."""

from __future__ import annotations

import pytest

from benchmark.run.step_timer import StepTimer


def test_steps_accumulate_in_first_run_order_and_count_a_failing_block():
    ticks = iter([0.0, 2.0, 10.0, 13.5, 20.0, 21.0, 30.0, 30.25])
    timer = StepTimer(clock=lambda: next(ticks))
    with timer.step("twin"):
        pass
    with timer.step("features"):
        pass
    with timer.step("twin"):
        pass
    with pytest.raises(RuntimeError):
        with timer.step("report"):
            raise RuntimeError("fault")
    assert list(timer.seconds) == ["twin", "features", "report"]
    assert timer.seconds == {"twin": 3.0, "features": 3.5, "report": 0.25}
    assert timer.total == 6.75
    assert timer.summary() == (
        "wall time per step: twin 3.0 s, features 3.5 s, report 0.2 s (total 6.8 s)"
    )

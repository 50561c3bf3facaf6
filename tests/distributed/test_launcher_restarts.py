"""The launcher restarts a crashed child like a controller (issue #14, "Also"): a budget per time
window instead of per run, and the reason in words."""

from __future__ import annotations

import signal

import pytest

from spiral.launch.restarts import MAX_RESTARTS, RESTART_WINDOW_SECONDS, RestartBudget, exit_reason


def test_crashes_spread_over_a_long_run_never_exhaust_the_budget() -> None:
    """Before: the 4th crash of one child abandoned the run, however long ago the first three were."""
    budget = RestartBudget()
    for crash in range(20):
        now = crash * (RESTART_WINDOW_SECONDS / 2)  # two crashes per window at most
        assert budget.allows(now), f"crash {crash} at {now} s"
        budget.record(now)


def test_a_crash_loop_exhausts_the_budget_within_the_window() -> None:
    budget = RestartBudget()
    for second in range(MAX_RESTARTS):
        assert budget.allows(float(second))
        budget.record(float(second))
    assert not budget.allows(float(MAX_RESTARTS)) and budget.recent(float(MAX_RESTARTS)) == MAX_RESTARTS
    # Once the window has passed, the old restarts are forgotten.
    assert budget.allows(RESTART_WINDOW_SECONDS + 1.0) and budget.recent(RESTART_WINDOW_SECONDS + 1.0) == 1


@pytest.mark.parametrize(
    ("code", "want"),
    [
        (1, "exited with code 1"),
        (-signal.SIGKILL, "was killed by SIGKILL (out of memory, or killed from outside)"),
        (-signal.SIGSEGV, "was killed by SIGSEGV"),
        (143, "stopped on SIGTERM (exit code 143)"),
        (0, "exited with code 0"),
    ],
    ids=["error", "sigkill", "segfault", "sigterm-trapped", "clean"],
)
def test_exit_reasons_name_the_signal_or_the_code(code: int, want: str) -> None:
    assert exit_reason(code) == want


@pytest.mark.parametrize(("kwargs", "message"), [({"max_restarts": -1}, "max_restarts must be ≥ 0, got -1"), ({"window_seconds": 0.0}, "window_seconds must be > 0, got 0.0")])
def test_a_budget_refuses_nonsense(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RestartBudget(**kwargs)

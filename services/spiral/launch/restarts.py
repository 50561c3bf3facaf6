"""When the local launcher restarts a crashed child, and how it says why: a restart budget per time
window, like a Kubernetes controller (whose crash backoff resets once a pod has run cleanly for a
while), and the exit status in words.

A fixed count over the whole run (the launcher's first rule) abandoned a run after four crashes of
one child spread over any length of time, e.g. four spot-instance actor kills in a day. Counting
only the restarts of the last :data:`RESTART_WINDOW_SECONDS` still gives up on a child that crash
loops, and forgets crashes long past. Called by :mod:`spiral.launch.local`; pure (the caller passes
the clock).
"""

from __future__ import annotations

import signal
from collections import deque

#: Restarts of one child allowed within the window before the launcher gives up on the run.
MAX_RESTARTS = 3
#: Seconds after which a restart no longer counts (five minutes: far longer than a crash loop's
#: restarts, each a few seconds apart; far shorter than a run).
RESTART_WINDOW_SECONDS = 300.0


class RestartBudget:
    """At most ``max_restarts`` restarts within any ``window_seconds``. Not thread-safe."""

    def __init__(self, max_restarts: int = MAX_RESTARTS, window_seconds: float = RESTART_WINDOW_SECONDS) -> None:
        """
        Raises:
            ValueError: ``max_restarts`` < 0 or ``window_seconds`` ≤ 0 (names the value).
        """
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be ≥ 0, got {max_restarts}")
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        self.max_restarts = max_restarts
        self.window_seconds = window_seconds
        self._times: deque[float] = deque()

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_seconds:
            self._times.popleft()

    def recent(self, now: float) -> int:
        """Restarts within the window ending at ``now``."""
        self._forget(now)
        return len(self._times)

    def allows(self, now: float) -> bool:
        """Whether one more restart at ``now`` stays within the budget."""
        return self.recent(now) < self.max_restarts

    def record(self, now: float) -> None:
        self._times.append(now)


def exit_reason(returncode: int | None) -> str:
    """A child's exit status in words: ``exited with code 1``, ``was killed by SIGKILL``, …

    ``subprocess`` reports death by a signal as ``-N``; a service that trapped the signal itself
    exits ``128 + N`` (:class:`spiral.process.StopFlag`).
    """
    if returncode is None:
        return "is still running"
    if returncode < 0:
        if -returncode == signal.SIGKILL:
            return f"was killed by {_signal_name(-returncode)} (out of memory, or killed from outside)"
        return f"was killed by {_signal_name(-returncode)}"
    if returncode > 128 and returncode - 128 < signal.NSIG:
        return f"stopped on {_signal_name(returncode - 128)} (exit code {returncode})"
    return f"exited with code {returncode}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

"""What every SPIRAL process shares, services and the single-process trainer alike: the one
signal trap and the torch thread setting. Transport-free, below both ``spiral.learning`` and
``spiral.services`` in the layering.

:class:`StopFlag` is the only place that handles SIGTERM/SIGINT: the services
(:func:`spiral.services.runtime.run_service`), the local launcher (:mod:`spiral.launch.local`) and
the single-process trainer poll it between steps, so a stop always finishes the current step and
checkpoints.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import torch

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def configure_torch_threads(threads: int | None) -> None:
    """Set torch's intra-op threads; None keeps torch's default.

    Raises:
        ValueError: ``threads`` < 1 (names the value).
    """
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"torch threads must be a positive integer, got {threads}")
    torch.set_num_threads(threads)


class StopFlag:
    """Set by SIGTERM/SIGINT (while installed) or by :meth:`set`; loops poll :meth:`is_set`.

    Thread-safe. Use as a context manager to install the trap for a block and restore the previous
    handlers afterwards (the single-process trainer inside a test), or :meth:`install` for the
    whole process (services). Signals can only be trapped from the main thread: elsewhere the
    flag still works through :meth:`set`.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopFlag:
        """Route SIGTERM and SIGINT here (from the main thread; a no-op in other threads)."""
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not the main thread: SIGTERM/SIGINT are not trapped, only StopFlag.set() stops")
            return self
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Restore the handlers :meth:`install` replaced."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> StopFlag:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _handle(self, signum: int, _frame: object) -> None:
        self.signal_name = signal.Signals(signum).name
        self.signum = signum
        logger.info("received %s: stopping after the current step (checkpointing first)", self.signal_name)
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    @property
    def exit_code(self) -> int | None:
        """``128 + signum`` once a signal set the flag (130 for Ctrl-C, 143 for SIGTERM), else None."""
        return None if self.signum is None else 128 + self.signum

    def exit_if_signalled(self) -> None:
        """Raise ``SystemExit(128 + signum)`` when a signal stopped the work before it finished:
        the conventional code, which a pod's restart policy (and the local launcher) treat as
        "stopped, not done" — unlike 0, which means the budget was spent."""
        if self.exit_code is not None:
            raise SystemExit(self.exit_code)

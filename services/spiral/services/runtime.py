"""What every SPIRAL process shares around its work: the one signal trap, torch threads, the
per-role options of ``spiral serve``, the lifecycle of a service process, and the version
high-water mark of the learners.

* :class:`spiral.process.StopFlag` (the one signal trap, shared with the local launcher and the
  single-process trainer) is installed here for every service process.
* :class:`ServeOptions` carries every knob a role reads besides its config, explicitly (the
  ``spiral serve`` options; no environment variables are read here).
* :func:`run_service` is the shared skeleton of ``spiral serve ROLE``: threads, the trap, the
  role's work with its resources closed in reverse order, and the exit code.

Nothing here imports gRPC.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

from spiral.fsio import atomic_write_text
from spiral.process import StopFlag, configure_torch_threads

logger = logging.getLogger(__name__)

#: How often blocked loops re-check the stop flag (seconds).
POLL_SECONDS = 0.2
#: Client channel reconnect backoff: gRPC's default grows to 120 s, far too slow to notice a
#: restarted peer in a local run.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
#: Seconds the last threads of a finished service get to end before the process exits regardless.
EXIT_JOIN_SECONDS = 2.0



class VersionHighWater:
    """The highest weights version ever published, kept in a small file beside the checkpoints.

    A learner killed between checkpoints has published versions its checkpoint does not know;
    resuming from the checkpoint's version would send subscribers *older* version numbers. So every
    publish records the version here (atomically: a few bytes), and a restarted learner continues
    above ``max(checkpoint version, high-water mark)``. Not thread-safe: one publisher per file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        """The recorded version, or -1 when there is none (or it is unreadable)."""
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return -1

    def write(self, version: int) -> None:
        atomic_write_text(self.path, str(version))


# ------------------------------------------------------------------------- service process ---


class ServeOptions(NamedTuple):
    """The per-process options of ``spiral serve ROLE`` (flags or their ``SPIRAL_*`` variables)."""

    job: str = "local"  # the `spiral_job` label of every metric (the SpiralJob name)
    ready_file: Path | None = None  # where to write the bound ports once serving
    resume: bool = True  # continue from existing checkpoints (learners, replay)
    threads: int | None = None  # torch intra-op threads; None = torch's default
    actor_id: str | None = None  # names an actor and seeds its data; None = host name + pid


class Outcome(enum.Enum):
    """How a role's work ended, and so the process's exit code."""

    FINISHED = "finished"  # the budget is spent (or a server was asked to stop): exit 0
    STOPPED = "stopped"  # stopped before the work was done: 128 + signal number (0 without a signal)
    FAILED = "failed"  # a permanent failure (a refused trajectory, a protocol mismatch): exit 1


def run_service(options: ServeOptions, work: Callable[[StopFlag, ExitStack], Outcome]) -> None:
    """Run one role's ``work`` as this process's whole life, the same way for every role.

    Sets the torch threads, installs the one signal trap, calls ``work(stop, resources)`` — which
    starts its server and clients, registers their closing on ``resources`` and returns once done
    or stopped — closes the resources in reverse order, and exits with the outcome's code.

    A process whose threads a client left stuck still exits, once its resources are closed
    (:func:`exit_even_if_stuck`).

    Raises:
        SystemExit: 1 for :attr:`Outcome.FAILED`; 128 + signal number for a signalled
            :attr:`Outcome.STOPPED`.
    """
    configure_torch_threads(options.threads)
    stop = StopFlag().install()
    with ExitStack() as resources:
        outcome = work(stop, resources)
    code = 0
    if outcome == Outcome.FAILED:
        code = 1
    elif outcome == Outcome.STOPPED:
        code = stop.exit_code or 0
    exit_even_if_stuck(code)
    if code:
        raise SystemExit(code)


def exit_even_if_stuck(code: int, join_seconds: float = EXIT_JOIN_SECONDS) -> None:
    """Make sure the process can end: its work is done and checkpointed, but a server thread that
    a client left stuck (see :mod:`spiral.services.server`) would keep the interpreter from exiting
    — a pod would then sit out its whole termination grace and be SIGKILLed. Joins the remaining
    non-daemon threads for ``join_seconds``; if any is still alive, logs them and exits with
    ``code`` at once (``os._exit``, after flushing the logs)."""
    deadline = time.monotonic() + join_seconds
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if not stuck:
        return
    logger.error("threads still running after the work ended (%s): exiting with code %d anyway", ", ".join(stuck), code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

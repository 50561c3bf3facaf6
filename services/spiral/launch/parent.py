"""Children of ``spiral train`` die with their launcher.

The launcher passes its pid in ``SPIRAL_PARENT_PID``; the child asks Linux to SIGTERM it when that
parent goes (``PR_SET_PDEATHSIG``). This runs in the child after exec rather than as a
``preexec_fn``: a ``preexec_fn`` forces ``fork()`` in a launcher that already runs gRPC threads, and
gRPC's at-fork handlers then occasionally aborted the child before exec (seen: SIGABRT with
"epoll_wait error: Bad file descriptor").
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal

logger = logging.getLogger(__name__)

PARENT_PID_ENV = "SPIRAL_PARENT_PID"


def die_with_parent_from_env() -> None:
    """If started by the launcher, get SIGTERM when it dies (and stop now if it already has)."""
    value = os.environ.get(PARENT_PID_ENV)
    if not value:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the launcher's own cleanup still applies
        logger.debug("PR_SET_PDEATHSIG unavailable; relying on the launcher's cleanup")
    if os.getppid() != int(value):  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

"""Children of ``spiral train`` die with their launcher.

The launcher passes its pid as ``spiral serve --parent-pid``; the child asks Linux to SIGTERM it
when that parent goes (``PR_SET_PDEATHSIG``). This runs in the child after exec rather than as a
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


def die_with_parent(parent_pid: int | None) -> None:
    """Get SIGTERM when process ``parent_pid`` dies (and stop now if it already has); None: no-op."""
    if parent_pid is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the launcher's own cleanup still applies
        logger.debug("PR_SET_PDEATHSIG unavailable; relying on the launcher's cleanup")
    if os.getppid() != parent_pid:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

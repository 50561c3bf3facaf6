"""What the launcher reads back from its children's logs (``<output_dir>/logs/<name>.log``).

A child's log is for post-mortems, but a few of its lines matter to the person at the terminal
now: warnings and errors (e.g. that MNIST's t10k images are being split, which changes what the
evaluation means), the learners' "resumed from …" line, and — when a child dies — its last error
lines. :class:`LogTail` reads a growing log incrementally; :func:`notable` and
:func:`last_error_lines` are pure.

Children log with ``%(asctime)s %(levelname)s [%(process)d] %(name)s:%(lineno)d %(message)s``
(:mod:`spiral.services.serve_cli`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

#: ``2024-01-01 12:00:00,123 WARNING [123] spiral.data.mnist:87 MNIST: …``
LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) \[\d+\] (?P<where>\S+) (?P<message>.*)$")
#: INFO lines worth showing all the same: how far a resumed run had come.
NOTABLE_INFO = ("resumed from",)
#: Lines of a dead child's log shown on the terminal at most.
ERROR_TAIL_LINES = 12


class Note(NamedTuple):
    """A child's log line worth showing: its level and message (without time, pid, module)."""

    level: str
    message: str


def notable(line: str) -> Note | None:
    """The :class:`Note` in one log line: a warning or error, or a notable info line; else None."""
    match = LOG_LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    level, message = match["level"], match["message"]
    if level in ("WARNING", "ERROR", "CRITICAL") or any(marker in message for marker in NOTABLE_INFO):
        return Note(level, message)
    return None


class LogTail:
    """Complete lines appended to a file since the last call. Not thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in lines]


def last_error_lines(path: Path, limit: int = ERROR_TAIL_LINES) -> list[str]:
    """The lines that say why a child died: its last traceback (from ``Traceback`` on), else its
    last ERROR/CRITICAL lines, else its last lines; at most ``limit``, the last ones kept."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Traceback")), None)
    if start is not None:
        chosen = lines[start:]
    else:
        errors = [line for line in lines if (m := LOG_LINE.match(line)) and m["level"] in ("ERROR", "CRITICAL")]
        chosen = errors or lines
    return chosen[-limit:]

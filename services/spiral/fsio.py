"""Atomic file writes: the one tmp-file-and-rename helper every writer of SPIRAL uses.

A file is written under a temporary name in its own folder, then renamed over the target
(``os.replace`` is atomic on POSIX within one file system). A reader therefore sees either the old
file or the whole new one, never half of it, even after a crash or a SIGKILL mid-write; a failed
write removes its temporary file and leaves the old target untouched. Temporary names are
``.<name>.<random>.tmp`` (hidden, so globs over a dataset folder skip them).

Callers: training checkpoints (:mod:`spiral.learning.checkpoint`), the learners' version
high-water marks, the services' ready files, replay checkpoints, the MuJoCo Scenes renderer and
the dataset downloader (which streams into :func:`atomic_output` and checks the MD5 before the
rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_output(path: Path | str, *, durable: bool = False) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` when the block ends without an exception.

    Parent folders are created. An exception inside the block (e.g. a checksum mismatch) removes
    the temporary file and propagates; ``path`` keeps its old contents.

    Args:
        durable: also ``fsync`` the file and its folder, so the new contents survive a power loss
            (costs a disk flush; used for checkpoints that are expensive to lose).

    Raises:
        OSError: the folder is not writable or the disk is full.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes, *, durable: bool = False) -> Path:
    """Replace ``path`` with ``data`` atomically; returns ``path``. Raises: OSError."""
    with atomic_output(path, durable=durable) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: Path | str, text: str, *, durable: bool = False) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically; returns ``path``. Raises: OSError."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_torch_save(path: Path | str, obj: Any, *, durable: bool = False) -> Path:
    """``torch.save(obj)`` into ``path`` atomically; returns ``path``. Raises: OSError."""
    import torch  # here, not at the top: the MuJoCo Scenes render workers use this module without torch

    with atomic_output(path, durable=durable) as handle:
        torch.save(obj, handle)
    return Path(path)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Save replay tables to disk and restore them on start.

One file holds every table (``torch.save`` of plain dicts and tensors, read back with
``weights_only=True``, so a checkpoint cannot run code). Writes are atomic and durable
(:func:`spiral.fsio.atomic_torch_save`: a temporary file, flushed to disk, renamed over the target),
so a crash or a SIGKILL mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.errors import InvalidArgumentError
from spiral.fsio import atomic_torch_save
from spiral.replay.table import ItemData, Table

logger = logging.getLogger(__name__)

#: Bumped when the on-disk layout changes; older files are refused with a clear message.
CHECKPOINT_FORMAT = 1


class CheckpointResult(NamedTuple):
    path: Path
    num_items: int
    num_bytes: int


def save_tables(tables: Mapping[str, Table], path: Path | str) -> CheckpointResult:
    """Atomically write every table's snapshot to ``path`` (parent folders are created).

    Raises:
        OSError: the folder is not writable or the disk is full (the old file is untouched).
    """
    path = Path(path)
    states = {name: table.state_dict() for name, table in tables.items()}
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, "tables": states}, durable=True)
    num_items = sum(int(s["keys"].numel()) for s in states.values())
    size = path.stat().st_size
    logger.info("replay checkpoint: %d items in %d tables, %d bytes → %s", num_items, len(states), size, path)
    return CheckpointResult(path, num_items, size)


def load_tables(path: Path | str) -> dict[str, dict]:
    """Read a checkpoint's table snapshots (name → snapshot).

    Raises:
        FileNotFoundError: no file at ``path``.
        InvalidArgumentError: not a replay checkpoint, or a different format version.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise InvalidArgumentError(f"{path} is not a readable replay checkpoint: {type(err).__name__}: {err}") from None
    if not isinstance(payload, dict) or "tables" not in payload:
        raise InvalidArgumentError(f"{path} is not a replay checkpoint (no 'tables' entry)")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise InvalidArgumentError(f"{path} has checkpoint format {payload.get('format')!r}; this release reads format {CHECKPOINT_FORMAT}")
    return dict(payload["tables"])


def restore_tables(tables: Mapping[str, Table], path: Path | str, *, keep: Callable[[ItemData], bool] | None = None) -> int:
    """Load ``path`` into the matching tables; returns the items restored.

    Tables in the file that are not configured any more are skipped with a warning; configured
    tables missing from the file stay empty.

    Args:
        keep: restore only the items it accepts (the rest are dropped, with a warning naming the
            count): a checkpoint must not bring back items the server would refuse today.

    Raises:
        FileNotFoundError, InvalidArgumentError: see :func:`load_tables`.
    """
    snapshots = load_tables(path)
    restored = 0
    for name, snapshot in snapshots.items():
        table = tables.get(name)
        if table is None:
            logger.warning("replay checkpoint %s has table %r, which is not configured: skipped (configured: %s)", path, name, sorted(tables))
            continue
        restored += table.load_state_dict(snapshot, keep=keep)
    logger.info("restored %d replay items from %s", restored, path)
    return restored

"""Checkpoint files of a training run: where they live, and reading/writing them atomically.

A checkpoint is one ``torch.save``-d dict (see :class:`spiral.learning.state.TrainingState` for
its keys). It is written with :func:`spiral.fsio.atomic_torch_save` (tmp + rename) so a crash
mid-write never leaves a half checkpoint where a restart would look for one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from spiral.fsio import atomic_torch_save

log = logging.getLogger(__name__)

LATEST = "latest.pt"


def save_checkpoint(directory: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``directory/latest.pt`` atomically; returns that path.

    Raises:
        OSError: the folder is not writable or the disk is full (the previous file is untouched).
    """
    path = atomic_torch_save(Path(directory) / LATEST, payload)
    log.info("checkpoint written to %s", path)
    return path


def find_checkpoint(path: Path | str) -> Path | None:
    """Resolve a checkpoint file, or a directory holding ``latest.pt``; None when there is none."""
    path = Path(path)
    if path.is_file():
        return path
    candidate = path / LATEST
    return candidate if candidate.is_file() else None


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: nothing at ``path`` (names the path and what was expected).
        ValueError: the file is not a SPIRAL checkpoint.
    """
    resolved = find_checkpoint(path)
    if resolved is None:
        raise FileNotFoundError(f"no checkpoint at {path} (expected a .pt file or a folder with {LATEST})")
    try:
        payload = torch.load(resolved, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for corrupt files
        raise ValueError(f"checkpoint {resolved} is unreadable: {err}") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise ValueError(f"{resolved} is not a SPIRAL checkpoint (no 'config' entry)")
    return payload

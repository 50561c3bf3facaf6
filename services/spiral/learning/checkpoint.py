"""Atomic, resumable checkpoints of a training run.

A checkpoint holds everything a run needs to continue *exactly*: model and optimiser states,
counters, the config it was trained with and the RNG states. Written as ``tmp + rename`` so a crash
mid-write never leaves a half checkpoint where a restart would look for one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LATEST = "latest.pt"


def save_checkpoint(directory: Path, payload: dict[str, Any], keep_step: int | None = None) -> Path:
    """Write ``payload`` to ``directory/latest.pt`` atomically (and a numbered copy if ``keep_step``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LATEST
    tmp = directory / f".{LATEST}.{os.getpid()}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    if keep_step is not None:
        numbered = directory / f"step-{keep_step:09d}.pt"
        tmp2 = directory / f".{numbered.name}.tmp"
        torch.save(payload, tmp2)
        os.replace(tmp2, numbered)
    log.info("checkpoint written to %s", path)
    return path


def find_checkpoint(path: Path) -> Path | None:
    """Resolve a checkpoint file, or a directory holding ``latest.pt``; None when there is none."""
    if path.is_file():
        return path
    candidate = path / LATEST
    return candidate if candidate.is_file() else None


def load_checkpoint(path: Path) -> dict[str, Any]:
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

"""Checkpoint files of a training run: safe to load, verified, layered, and written atomically.

A checkpoint is one dict (see :class:`spiral.learning.state.TrainingState` for its keys) holding
only tensors and plain containers, so it is read back with ``torch.load(weights_only=True)``: a
crafted file cannot run code (with ``weights_only=False``, ``spiral sample --checkpoint`` on one
did). On disk it is::

    SPIRAL-CHECKPOINT 2\\n
    sha256:<64 hex digits of the body>\\n
    <body: the torch.save bytes>

and the digest is verified before the body is unpickled: a file changed after it was written (bit
rot, a partial copy, an edit) is refused instead of loading silently with other weights.

Layers: every save writes ``checkpoint-<seq>.pt`` (seq counts up) and points ``latest.pt`` at it (a
hard link, else a copy); the newest ``keep`` numbered files are kept (``keep_checkpoints``). Loading
a folder tries ``latest.pt``, then the numbered files newest first, and takes the first that
verifies — so one corrupt or half-copied file costs one checkpoint interval, not the run. Writes are
atomic and durable (:func:`spiral.fsio.atomic_output`); a full disk is reported as such, naming the
folder and its free space, and temporary files left by a killed writer are removed on the next save.

Files without the header (older releases, ``examples/pretrained/*.pt`` state dicts) are still read,
with ``weights_only=True`` and without a checksum.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch

from spiral.fsio import atomic_output

log = logging.getLogger(__name__)

LATEST = "latest.pt"
MAGIC = b"SPIRAL-CHECKPOINT 2\n"
_DIGEST_PREFIX = b"sha256:"
_NUMBERED = re.compile(r"^checkpoint-(\d{8,})\.pt$")
#: Temporary files of a checkpoint write (``spiral.fsio`` names them ``.<target>.<random>.tmp``).
_TEMPORARY = re.compile(r"^\.(latest\.pt|checkpoint-\d{8,}\.pt)\..+\.tmp$")
DEFAULT_KEEP = 3


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (unreadable, corrupt, unsafe or not a SPIRAL checkpoint)."""


class DiskFullError(OSError):
    """No space left to write a checkpoint; the message names the folder, the size and the free space."""


class LoadedCheckpoint(NamedTuple):
    """A checkpoint read from disk: which file it came from, and its contents."""

    path: Path
    payload: dict[str, Any]
    verified: bool  # the file had a checksum and it matched (False: a file without the header)


# -------------------------------------------------------------------------------- writing ---


def encode_checkpoint(payload: dict[str, Any]) -> bytes:
    """The on-disk bytes of ``payload``: header, digest line, torch.save body."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    return MAGIC + _DIGEST_PREFIX + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def numbered_checkpoints(directory: Path) -> list[Path]:
    """The ``checkpoint-<seq>.pt`` files of ``directory``, newest (highest seq) first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NUMBERED.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporary files a killed writer left in ``directory``; returns how many.

    Only this folder's checkpoint temporaries: one writer owns a checkpoint folder, so none of
    them can belong to a write in progress when that writer starts its next save.
    """
    removed = 0
    if directory.is_dir():
        for path in directory.iterdir():
            if _TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary checkpoint files left in %s by an interrupted write", removed, directory)
    return removed


def _disk_full(directory: Path, size: int, err: OSError) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(directory).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        err.errno,
        f"no space left in {directory} to write a {size:,}-byte checkpoint ({free}): free some space or point output_dir "
        "elsewhere; the previous checkpoints are intact",
    )


def _write(path: Path, data: bytes) -> None:
    with atomic_output(path, durable=True) as handle:
        handle.write(data)


def save_checkpoint(directory: Path, payload: dict[str, Any], *, keep: int = DEFAULT_KEEP) -> Path:
    """Write ``payload`` as the next numbered checkpoint of ``directory``, point ``latest.pt`` at
    it, and delete all but the newest ``keep`` numbered ones; returns the ``latest.pt`` path.

    Raises:
        DiskFullError: no space left (names the folder, the size and the free space).
        OSError: the folder is not writable. Either way the previous files are untouched.
        ValueError: ``keep`` < 1.
    """
    if keep < 1:
        raise ValueError(f"keep_checkpoints must be ≥ 1, got {keep}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    data = encode_checkpoint(payload)
    existing = numbered_checkpoints(directory)
    seq = int(_NUMBERED.match(existing[0].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
    numbered = directory / f"checkpoint-{seq:08d}.pt"
    latest = directory / LATEST
    try:
        _write(numbered, data)
        _point_latest_at(latest, numbered, data)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(directory, len(data), err) from None
        raise
    for old in numbered_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    log.info("checkpoint written to %s (%s, %d bytes)", latest, numbered.name, len(data))
    return latest


def _point_latest_at(latest: Path, numbered: Path, data: bytes) -> None:
    """``latest.pt`` becomes the same file as ``numbered``, atomically: a hard link renamed into
    place (no second copy on disk), or a copy where the file system has no hard links."""
    link = latest.with_name(f".{LATEST}.{os.getpid()}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(numbered, link)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        _write(latest, data)
        return
    try:
        os.replace(link, latest)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------------- reading ---


def _decode_body(data: bytes, path: Path) -> tuple[bytes, bool]:
    """The torch body of a file's bytes, after checking its digest; ``verified`` False without header.

    Raises:
        CheckpointError: the digest line is malformed or does not match the body.
    """
    if not data.startswith(MAGIC):
        return data, False
    rest = data[len(MAGIC) :]
    line, sep, body = rest.partition(b"\n")
    if not sep or not line.startswith(_DIGEST_PREFIX) or len(line) != len(_DIGEST_PREFIX) + 64:
        raise CheckpointError(f"checkpoint {path} has a damaged header (no sha256 line): it is truncated or corrupt")
    want = line[len(_DIGEST_PREFIX) :].decode("ascii", "replace")
    got = hashlib.sha256(body).hexdigest()
    if got != want:
        raise CheckpointError(
            f"checkpoint {path} fails its checksum (sha256 {got[:12]}… ≠ {want[:12]}… written): the file changed after it was "
            "written (disk corruption, a partial copy or an edit)"
        )
    return body, True


def read_checkpoint_file(path: Path) -> LoadedCheckpoint:
    """Read and verify one checkpoint file (no fallback).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: corrupt (checksum), unsafe (needs pickle to load: an older release's
            format, or a crafted file), or not a SPIRAL checkpoint; names the file and why.
    """
    data = Path(path).read_bytes()
    body, verified = _decode_body(data, path)
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"checkpoint {path} holds objects that only pickle could rebuild (code could run while loading): refused. "
                "An older release wrote it, or it was crafted; start afresh (--no-resume) or train into a new --output-dir"
            ) from None
        raise CheckpointError(f"checkpoint {path} is unreadable: {type(err).__name__}: {text.splitlines()[0] if text else ''}") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{path} is not a SPIRAL checkpoint (no 'config' entry)")
    if isinstance(payload["config"], str):  # stored as JSON text: plain data for weights_only loading
        try:
            payload = {**payload, "config": json.loads(payload["config"])}
        except json.JSONDecodeError as err:
            raise CheckpointError(f"checkpoint {path}: its stored config is not valid JSON ({err})") from None
    if not verified:
        log.debug("checkpoint %s has no checksum header (an older release or a hand-made file)", path)
    return LoadedCheckpoint(Path(path), payload, verified)


def checkpoint_candidates(directory: Path) -> list[Path]:
    """What a folder offers, in the order a resume tries them: ``latest.pt``, then the numbered
    checkpoints newest first (the same file once, when ``latest.pt`` links to the newest)."""
    candidates: list[Path] = []
    latest = directory / LATEST
    if latest.is_file():
        candidates.append(latest)
    for path in numbered_checkpoints(directory):
        if candidates and candidates[0] == latest and _same_file(latest, path):
            continue
        candidates.append(path)
    return candidates


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_checkpoint(path: Path | str) -> Path | None:
    """Resolve a checkpoint file, or a directory's newest checkpoint file; None when there is none
    (existence only: :func:`read_checkpoint` verifies and falls back)."""
    path = Path(path)
    if path.is_file():
        return path
    candidates = checkpoint_candidates(path)
    return candidates[0] if candidates else None


def read_checkpoint(path: Path | str) -> LoadedCheckpoint:
    """Read a checkpoint file, or the newest checkpoint of a folder that verifies.

    Raises:
        FileNotFoundError: nothing at ``path`` (names the path and what was expected).
        CheckpointError: the file (or every checkpoint of the folder) is unusable; lists why.
    """
    path = Path(path)
    if path.is_file():
        return read_checkpoint_file(path)
    candidates = checkpoint_candidates(path)
    if not candidates:
        raise FileNotFoundError(f"no checkpoint at {path} (expected a .pt file or a folder with {LATEST} or checkpoint-*.pt)")
    problems = []
    for candidate in candidates:
        try:
            loaded = read_checkpoint_file(candidate)
        except (CheckpointError, OSError) as err:
            log.warning("skipping checkpoint %s: %s", candidate, err)
            problems.append(str(err))
            continue
        if problems:
            log.warning("resuming from the older checkpoint %s: %d newer one(s) failed to load", candidate, len(problems))
        return loaded
    raise CheckpointError(f"no usable checkpoint in {path}: " + "; ".join(problems))


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """The contents of :func:`read_checkpoint` (a file, or a folder's newest good checkpoint).

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError (a ValueError): unusable; the message says why.
    """
    return read_checkpoint(path).payload

"""``spiral data download NAME --dest DIR``: fetch MNIST or Omniglot from their official hosts.

Each file is streamed to a temporary file beside its target (:func:`spiral.fsio.atomic_output`), its
MD5 checked against the published value, and only then renamed into place, so an interrupted or
corrupt download never leaves a file a loader would trust.
Files already present with the right checksum are skipped. Hosts are tried in order; the base URL
can be replaced (``--base-url`` or ``$SPIRAL_DATA_BASE_URL``) for mirrors and for tests.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NamedTuple

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from spiral.cli_errors import fail
from spiral.data.base import DatasetError
from spiral.fsio import atomic_output

__all__ = ["BASE_URL_ENV", "DOWNLOADS", "Downloadable", "RemoteFile", "download_command", "download_dataset", "download_files"]

logger = logging.getLogger(__name__)

BASE_URL_ENV = "SPIRAL_DATA_BASE_URL"
_CHUNK = 1 << 16


class Downloadable(str, enum.Enum):
    MNIST = "mnist"
    OMNIGLOT = "omniglot"


class RemoteFile(NamedTuple):
    name: str
    md5: str


class _Source(NamedTuple):
    base_urls: tuple[str, ...]  # tried in order
    files: tuple[RemoteFile, ...]


DOWNLOADS: dict[Downloadable, _Source] = {
    Downloadable.MNIST: _Source(
        # The official host first; the second is the mirror torchvision uses when it is down.
        base_urls=("https://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    Downloadable.OMNIGLOT: _Source(
        # github.com/brendenlake/omniglot, python/; MD5s as published by torchvision's Omniglot loader
        # (full sets) and as measured on the byte-identical copies in /work/shared/datasets (small sets).
        base_urls=("https://github.com/brendenlake/omniglot/raw/master/python/",),
        files=(
            RemoteFile("images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
            RemoteFile("images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
            RemoteFile("images_background_small1.zip", "e704a628b5459e08445c13499850abc4"),
            RemoteFile("images_background_small2.zip", "b75a71a51d3b13f821f212756fe481fd"),
        ),
    ),
}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, expected_md5: str, timeout: float, progress: Progress) -> None:
    """Stream ``url`` into ``target`` if its MD5 matches; on any failure ``target`` is untouched."""
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_output(target) as out:  # noqa: S310 - https/http only
        length = response.headers.get("Content-Length")
        task = progress.add_task(target.name, total=int(length) if length else None)
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            progress.advance(task, len(chunk))
        # Raising inside the block discards the temporary file: a corrupt download is never renamed.
        if digest.hexdigest() != expected_md5:
            raise DatasetError(f"{url} arrived with MD5 {digest.hexdigest()}, expected {expected_md5}: corrupt or changed upstream; nothing was kept")


def download_files(
    files: Sequence[RemoteFile], dest: Path, base_urls: Sequence[str], timeout: float = 30.0, console: Console | None = None
) -> list[Path]:
    """Make sure every file sits in ``dest`` with its MD5, downloading the ones that do not.

    Returns:
        The paths of all ``files`` in ``dest``.

    Raises:
        DatasetError: a file could be fetched from none of ``base_urls`` (the message lists each URL
            and its error, and how to place the files by hand) or arrived with the wrong checksum.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create --dest {dest}: {err}") from None
    paths: list[Path] = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as progress:
        for remote in files:
            target = dest / remote.name
            paths.append(target)
            if target.is_file():
                if _md5(target) == remote.md5:
                    logger.info("%s is present with the right MD5: skipped", target)
                    continue
                logger.warning("%s is present but its MD5 differs from %s: downloading it again", target, remote.md5)
            failures: list[str] = []
            for base in base_urls:
                url = base.rstrip("/") + "/" + remote.name
                try:
                    _fetch(url, target, remote.md5, timeout, progress)
                except (urllib.error.URLError, OSError, ValueError) as err:
                    if isinstance(err, DatasetError):
                        raise
                    reason = getattr(err, "reason", None) or err
                    failures.append(f"{url}: {reason}")
                    logger.warning("download of %s failed: %s", url, reason)
                    continue
                logger.info("downloaded %s (MD5 %s)", target, remote.md5)
                break
            else:
                raise DatasetError(
                    f"could not download {remote.name}; tried:\n  " + "\n  ".join(failures) + "\n"
                    f"Without internet access, copy the original file (MD5 {remote.md5}) into {dest} yourself."
                )
    return paths


def download_dataset(
    name: Downloadable | str, dest: Path, base_url: str | None = None, only: Sequence[str] = (), timeout: float = 30.0
) -> list[Path]:
    """Download the original files of ``name`` into ``dest`` (see :func:`download_files`).

    Args:
        base_url: replaces the official hosts (falls back to ``$SPIRAL_DATA_BASE_URL``).
        only: restrict to these file names (default: all of the dataset's files).

    Raises:
        DatasetError: an unknown name or file name, or a failed download.
    """
    try:
        source = DOWNLOADS[Downloadable(name)]
    except ValueError:
        raise DatasetError(f"cannot download {name!r}: valid names are {[d.value for d in Downloadable]}") from None
    files = source.files
    if only:
        known = {f.name: f for f in files}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise DatasetError(f"{Downloadable(name).value} has no file(s) {unknown}; valid: {sorted(known)}")
        files = tuple(known[n] for n in only)
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    return download_files(files, dest, (base_url,) if base_url else source.base_urls, timeout)


def download_command(
    name: Annotated[Downloadable, typer.Argument(help="Dataset to fetch.", case_sensitive=False)],
    dest: Annotated[Path, typer.Option("--dest", "-o", help="Folder to put the original files in (created if needed).")],
    file: Annotated[
        list[str] | None, typer.Option("--file", help="Only this file (repeatable), e.g. images_background_small1.zip.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", envvar=BASE_URL_ENV, help="Replace the official host (a mirror).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for a connection or data.")] = 30.0,
) -> None:
    """Download MNIST or Omniglot in their original formats and verify their MD5 checksums."""
    try:
        paths = download_dataset(name, dest, base_url=base_url, only=file or (), timeout=timeout)
    except DatasetError as err:
        fail(str(err))
    Console(stderr=True).print(f"{len(paths)} file(s) ready in {dest}", highlight=False)

"""`spiral data download`: MD5-verified, resumable-safe downloads, tested against a real HTTP server on
loopback (serving the real Omniglot archive) and against a closed port for the offline failure."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from spiral.data.base import DatasetError
from spiral.data.download import BASE_URL_ENV, RemoteFile, download_command, download_dataset, download_files

OFFLINE = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once


class _Server:
    """A real HTTP server on a free loopback port serving ``root``; counts GET requests per path."""

    def __init__(self, root: Path) -> None:
        self.hits: dict[str, int] = {}
        hits = self.hits

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hits[self.path] = hits.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = _Server(root)
    yield root, server
    server.close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_offline_failure_is_clear_and_leaves_nothing(tmp_path):
    dest = tmp_path / "mnist"
    with pytest.raises(DatasetError) as info:
        download_dataset("mnist", dest, base_url=OFFLINE, timeout=5)
    message = str(info.value)
    assert "could not download train-images-idx3-ubyte.gz; tried:" in message
    assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz: [Errno 111] Connection refused" in message
    assert f"copy the original file (MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873) into {dest}" in message
    assert list(dest.iterdir()) == []


def test_cli_reports_offline_failure_and_reads_the_base_url_from_the_environment(tmp_path, monkeypatch):
    app = typer.Typer()
    app.command()(download_command)
    monkeypatch.setenv(BASE_URL_ENV, OFFLINE)
    result = CliRunner().invoke(app, ["omniglot", "--dest", str(tmp_path / "o"), "--timeout", "5"])
    assert result.exit_code == 1
    text = result.stdout + result.stderr
    assert "Error: " in text and "could not download images_background.zip" in text  # the one CLI error style
    assert "127.0.0.1:9/images_background.zip" in text and "Connection refused" in text
    bad = CliRunner().invoke(app, ["cifar", "--dest", str(tmp_path)])
    assert bad.exit_code == 2 and "'cifar' is not one of" in bad.stdout + bad.stderr


def test_downloads_the_real_omniglot_archive_verifies_it_and_skips_it_next_time(tmp_path, served, datasets_dir):
    root, server = served
    original = datasets_dir / "omniglot" / "images_background_small1.zip"
    shutil.copy(original, root / original.name)
    dest = tmp_path / "dest"
    paths = download_dataset("omniglot", dest, base_url=server.url, only=["images_background_small1.zip"])
    assert paths == [dest / original.name]
    assert paths[0].read_bytes() == original.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [original.name]  # no .part left behind
    download_dataset("omniglot", dest, base_url=server.url, only=["images_background_small1.zip"])
    assert server.hits == {"/images_background_small1.zip": 1}  # present with a good MD5: skipped


def test_checksum_mismatch_keeps_nothing(tmp_path, served):
    root, server = served
    (root / "a.bin").write_bytes(b"not what was published")
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match=r"a\.bin arrived with MD5 [0-9a-f]{32}, expected 0{32}: corrupt or changed upstream"):
        download_files([RemoteFile("a.bin", "0" * 32)], dest, [server.url])
    assert list(dest.iterdir()) == []


def test_a_present_file_with_a_bad_checksum_is_replaced(tmp_path, served):
    root, server = served
    good = b"published bytes" * 100
    (root / "a.bin").write_bytes(good)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.bin").write_bytes(good[:10])  # an old, truncated copy
    download_files([RemoteFile("a.bin", _md5(good))], dest, [server.url])
    assert (dest / "a.bin").read_bytes() == good


def test_hosts_are_tried_in_order_and_every_failure_is_listed(tmp_path, served):
    root, server = served
    (root / "a.bin").write_bytes(b"x")
    download_files([RemoteFile("a.bin", _md5(b"x"))], tmp_path / "d1", [OFFLINE, server.url])
    assert (tmp_path / "d1" / "a.bin").read_bytes() == b"x"
    with pytest.raises(DatasetError) as info:
        download_files([RemoteFile("missing.bin", "0" * 32)], tmp_path / "d2", [OFFLINE, server.url])
    assert "127.0.0.1:9/missing.bin: [Errno 111] Connection refused" in str(info.value)
    assert f"{server.url}missing.bin: File not found" in str(info.value)


def test_unknown_names_are_rejected_with_the_valid_ones(tmp_path):
    with pytest.raises(DatasetError, match=r"cannot download 'cifar': valid names are \['mnist', 'omniglot'\]"):
        download_dataset("cifar", tmp_path)
    with pytest.raises(DatasetError, match=r"omniglot has no file\(s\) \['x.zip'\]; valid: \['images_background.zip'"):
        download_dataset("omniglot", tmp_path, only=["x.zip"])

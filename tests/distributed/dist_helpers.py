"""Helpers shared by the distributed-training tests (imported as a plain module)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from spiral.config import TrainConfig, load_preset

T = TypeVar("T")

#: The smallest run that still exercises everything: 32×32 canvas, 8×8 grid, 2 actions per episode.
TINY: dict[str, Any] = {
    "num_envs": 8,
    "env.canvas_size": 32,
    "env.grid_size": 8,
    "env.episode_length": 3,
    "data.num_shapes": 200,
    "pretrain.updates": 0,  # the presets pretrain first; these tests exercise RL
    "num_actors": 2,
    "total_frames": None,
    "total_updates": 10,
    "services.grpc_port": 0,
    "services.metrics_port": 0,
    "services.shutdown_grace_seconds": 1.0,
}


def tiny_config(output_dir: Path, **overrides: Any) -> TrainConfig:
    return load_preset("default", {**TINY, "output_dir": str(output_dir), **overrides})


def tiny_cli_args(output_dir: Path, **overrides: Any) -> list[str]:
    """``spiral train`` arguments for the tiny run."""
    args = ["--quiet", "--output-dir", str(output_dir)]
    for key, value in {**TINY, **overrides}.items():
        if key.startswith("services."):
            continue
        args += ["--set", f"{key}={'null' if value is None else value}"]
    return args


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll until ``predicate()`` is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """All samples of a /metrics page: {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2.0) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def metric(port: int, name: str, **labels: str) -> float | None:
    try:
        samples = scrape(port)
    except OSError:
        return None
    for (n, lab), value in samples.items():
        if n == name and all(dict(lab).get(k) == v for k, v in labels.items()):
            return value
    return None


def processes_mentioning(marker: str) -> list[int]:
    """PIDs (other than ours) whose command line contains ``marker``: orphans of a run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found

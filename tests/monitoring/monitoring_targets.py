"""The scrape targets of the monitoring tests, behind one function: :func:`spiral_targets`.

The SPIRAL service targets are the REAL services: a tiny ``spiral train`` cluster started with
:class:`spiral.launch.local.LocalCluster` (replay buffer, discriminator learner, policy learner and
two actors, each a ``spiral serve`` process with its own ``/metrics`` port on loopback). Each
target carries the labels the chart's PodMonitor attaches in a cluster (``namespace``,
``spiral_job``, ``role``, ``pod``).

The operator target is still a STAND-IN (standin_exporter.py): the real operator needs a
Kubernetes API server to reconcile against, so its metric definitions are served with synthetic
values instead.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from spiral.config import TrainConfig, load_preset
from spiral.launch.local import LocalCluster
from promkit import ScrapeTarget

_EXPORTER = Path(__file__).resolve().parent / "standin_exporter.py"

#: Namespace and SpiralJob name the local targets are labelled with (`spiral serve`'s default job is "local").
LOCAL_NAMESPACE = "local"
LOCAL_JOB = "local"

#: The smallest run that exercises every service: 32×32 canvas, 8×8 grid, 2 actions per episode,
#: the discriminator reward (so replay and discriminator learner run) and an endless budget (the
#: cluster is stopped by the fixture, not by the budget).
TINY_DISCRIMINATOR_RUN: dict[str, Any] = {
    "mode": "conditional",
    "reward.kind": "discriminator",
    "num_envs": 8,
    "num_actors": 2,
    "env.canvas_size": 32,
    "env.grid_size": 8,
    "env.episode_length": 3,
    "data.num_shapes": 200,
    "pretrain.updates": 0,  # the presets pretrain first; these tests exercise RL
    "discriminator.batch_size": 16,
    "replay.min_size_to_sample": 16,
    "total_frames": None,
    "total_updates": 1_000_000,
    "checkpoint_every_updates": 1_000_000,  # no checkpoint I/O while scraped; the stop still writes one
    "eval_every_updates": 10,  # a held-out evaluation every 10 updates: the L2 panel's held-out line
    "services.grpc_port": 0,
    "services.metrics_port": 0,
    "services.shutdown_grace_seconds": 1.0,
}


class LocalRun(NamedTuple):
    """The running cluster and the scrape targets of its services (operator stand-in last)."""

    cluster: LocalCluster
    targets: list[ScrapeTarget]


def tiny_config(output_dir: Path) -> TrainConfig:
    return load_preset("default", {**TINY_DISCRIMINATOR_RUN, "output_dir": str(output_dir)})


@contextmanager
def local_cluster(output_dir: Path, *, ready_timeout_s: float = 120.0) -> Iterator[LocalCluster]:
    """Start every service of the tiny run and wait until all (actors included) serve; stop them on exit.

    Raises:
        RuntimeError: a service exited or did not serve within ``ready_timeout_s`` (names its log).
    """
    cluster = LocalCluster(tiny_config(output_dir), resume=False, threads_per_process=1)
    try:
        try:
            cluster.start()  # services first (waited for), then the actors
            cluster.wait_ready([spec.name for spec in cluster.plan.actors], timeout=ready_timeout_s)
        except RuntimeError as err:
            tails = {p.stem: p.read_text(errors="replace")[-1500:] for p in sorted(cluster.logs_dir.glob("*.log"))}
            raise RuntimeError(f"{err}\n" + "\n".join(f"--- {name}.log ends:\n{tail}" for name, tail in tails.items())) from err
        yield cluster
    finally:
        cluster.stop(grace=10.0)


def service_targets(cluster: LocalCluster) -> list[ScrapeTarget]:
    """One target per service process, labelled like the PodMonitor labels a SpiralJob's pods."""
    return [
        ScrapeTarget(
            f"127.0.0.1:{spec.metrics_port}",
            {"namespace": LOCAL_NAMESPACE, "spiral_job": LOCAL_JOB, "role": spec.role.value, "pod": f"{LOCAL_JOB}-{spec.name}"},
        )
        for spec in cluster.plan.all
    ]


@contextmanager
def _operator_standin(labels: dict[str, str]) -> Iterator[ScrapeTarget]:
    """Start the operator stand-in exporter and yield its target; stops it on exit.

    Raises:
        RuntimeError: if the exporter exits before printing its port.
    """
    process = subprocess.Popen([sys.executable, str(_EXPORTER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""  # blocks until the port is printed or the process exits
        if not line.startswith("PORT "):
            process.kill()
            raise RuntimeError(f"operator stand-in exporter failed to start: {line!r} {process.stderr.read() if process.stderr else ''}")
        yield ScrapeTarget(f"127.0.0.1:{int(line.split()[1])}", labels)
    finally:
        if process.stdin:
            process.stdin.close()  # the exporter exits when stdin closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def spiral_targets(workdir: Path) -> Iterator[LocalRun]:
    """The real SPIRAL services of a tiny local run in ``workdir`` (logs in ``workdir/run/logs``),
    plus the operator stand-in, as scrape targets."""
    with ExitStack() as stack:
        # The operator stand-in starts first: it is up long before the services finish importing torch.
        operator = stack.enter_context(_operator_standin({"namespace": "spiral-system", "pod": "spiral-operator"}))
        cluster = stack.enter_context(local_cluster(workdir / "run"))
        yield LocalRun(cluster, [*service_targets(cluster), operator])

"""Reading learner progress from real Prometheus text, and the entry points the image runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, make_server

from spiral.metrics import create_metrics
from spiral_operator.metrics import registered_operator_metric_names
from spiral_operator.progress import Progress, metrics_url, parse_progress, url_fetcher

BIN = Path(sys.executable).parent


def _learner_text() -> str:
    registry = CollectorRegistry()
    m = create_metrics(registry)
    m.learner_frames.labels("paint").inc(5000)
    m.learner_policy_version.labels("paint").set(42)
    m.learner_reward.labels("paint").set(-0.25)
    m.learner_l2.labels("paint", "train").set(0.3)
    m.learner_l2.labels("paint", "held_out").set(0.04)
    m.learner_queue_depth.labels("paint").set(6)
    m.learner_data_wait.labels("paint").inc(1.5)
    m.learner_actor_wait.labels("paint").inc(7.25)
    m.learner_frames.labels("other").inc(7)  # another job in the same process must not leak in
    return generate_latest(registry).decode()


def test_parse_progress_reads_the_learner_metrics() -> None:
    assert parse_progress(_learner_text(), "paint") == Progress(
        frames=5000, policy_version=42, episode_reward=-0.25, held_out_l2=0.04, queue_depth=6.0, learner_wait_seconds=1.5, actor_wait_seconds=7.25
    )
    assert parse_progress(_learner_text(), "absent") == Progress(None, None, None, None, None)


def test_parse_progress_rejects_non_prometheus_text() -> None:
    with pytest.raises(ValueError):
        parse_progress("<html>not metrics</html>\n", "paint")


def test_url_fetcher_reads_a_live_endpoint() -> None:
    registry = CollectorRegistry()
    create_metrics(registry).learner_frames.labels("paint").inc(11)
    server = make_server("127.0.0.1", 0, make_wsgi_app(registry), ThreadingWSGIServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        text = url_fetcher(f"http://127.0.0.1:{server.server_port}/metrics")("paint", "ns")
        assert parse_progress(text, "paint").frames == 11
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(OSError):
        url_fetcher(f"http://127.0.0.1:{server.server_port}/metrics", timeout_seconds=0.5)("paint", "ns")


def test_metrics_url_targets_the_policy_learner_service() -> None:
    assert metrics_url("paint", "research") == "http://paint-policy-learner.research.svc:9400/metrics"


def test_operator_metric_names_keep_their_prefix() -> None:
    names = registered_operator_metric_names()
    assert {"spiral_operator_reconciles_total", "spiral_operator_reconcile_errors_total", "spiral_operator_jobs"} <= names
    assert all(n.startswith("spiral_operator_") for n in names)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, env=env)


def test_operator_entry_points_print_help() -> None:
    for argv in ([sys.executable, "-m", "spiral_operator", "--help"], [str(BIN / "spiral-operator"), "--help"]):
        result = _run(*argv)
        assert result.returncode == 0, result.stderr
        assert "--all-namespaces" in result.stdout and "--liveness" in result.stdout


def test_operator_refuses_to_start_without_a_scope() -> None:
    result = _run(sys.executable, "-m", "spiral_operator")
    assert result.returncode == 2
    assert "choose the scope: --namespace NS (repeatable) or --all-namespaces" in result.stderr


@pytest.mark.skipif(shutil.which("spiral", path=str(BIN)) is None, reason="the `spiral` console script is not installed")
def test_spiral_serve_entry_point_used_by_the_pods() -> None:
    result = _run(str(BIN / "spiral"), "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "SPIRAL_JOB_NAME" in result.stdout


def test_dockerfile_runs_the_entry_points_as_non_root() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "Dockerfile").read_text()
    assert "FROM python:3.11-slim-bookworm" in text
    # torch comes from the CPU index at the version services/constraints.txt pins (tests/test_image.py checks the pins).
    assert "--no-deps -c /tmp/constraints.txt torch --index-url https://download.pytorch.org/whl/cpu" in text
    assert "torch==2.13.0" in (root / "services" / "constraints.txt").read_text().splitlines()
    assert "libmypaint-1.5-1" in text and "mypaint-brushes" in text and "libosmesa6" in text
    assert "USER 10001:10001" in text

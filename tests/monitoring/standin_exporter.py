"""STAND-IN for the operator's /metrics (the SPIRAL services are scraped for real; see monitoring_targets.py).

The real operator needs a Kubernetes API server to reconcile against, so this registers the real
metric definitions (``spiral_operator.metrics.create_operator_metrics``) on a fresh registry, gives
every metric a sample, serves them with ``prometheus_client.start_http_server`` on a free loopback
port, prints ``PORT <n>`` and keeps exercising them (so rates and quantiles have data) until stdin
closes or the process is terminated.

    python tests/monitoring/standin_exporter.py
"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from spiral_operator.metrics import create_operator_metrics

#: Label values used when exercising metrics (the values the operator's handlers use).
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "handler": ("create", "monitor"),
    "result": ("success",),
    "kind": ("temporary",),
    "namespace": ("local",),
    "phase": ("Running",),
}


def _children(metric: Counter | Gauge | Histogram) -> list[Counter | Gauge | Histogram]:
    """One child per combination of LABEL_VALUES (unknown label names get "local")."""
    # prometheus-client keeps label names private; reading them keeps this stand-in generic
    # when someone adds a label to a metric.
    names: tuple[str, ...] = metric._labelnames  # noqa: SLF001
    combos: list[dict[str, str]] = [{}]
    for name in names:
        combos = [{**c, name: v} for c in combos for v in LABEL_VALUES.get(name, ("local",))]
    return [metric.labels(**c) if names else metric for c in combos]


def exercise(children: list[Counter | Gauge | Histogram], rng: random.Random) -> None:
    """Give every child a fresh sample: counters grow, gauges move, histograms observe."""
    for child in children:
        if isinstance(child, Counter):
            child.inc(rng.uniform(0.5, 2.0))
        elif isinstance(child, Gauge):
            child.set(rng.uniform(0.0, 1.0))
        elif isinstance(child, Histogram):
            child.observe(rng.uniform(0.001, 2.0))


def main() -> None:
    registry = CollectorRegistry()
    metrics = create_operator_metrics(registry)
    children = [c for f in dataclasses.fields(metrics) for c in _children(getattr(metrics, f.name))]
    rng = random.Random(0)
    exercise(children, rng)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    sys.stdout.write(f"PORT {server.server_port}\n")
    sys.stdout.flush()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.wait(0.2):  # 5 updates per 1 s scrape: every rate() window sees movement
        exercise(children, rng)


if __name__ == "__main__":
    main()

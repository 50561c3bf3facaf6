"""STAND-IN for the real services' /metrics until `spiral train` exists (replace via monitoring_targets.py).

Registers the real metric definitions (``spiral.metrics.create_metrics`` or
``spiral_operator.metrics.create_operator_metrics``) on a fresh registry, gives every metric a
sample (label ``spiral_job="local"``), serves them with ``prometheus_client.start_http_server`` on
a free loopback port, prints ``PORT <n>`` and keeps exercising them (so rates and quantiles have
data) until stdin closes or the process is terminated.

    python tests/monitoring/standin_exporter.py services|operator
"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from spiral.config import Role
from spiral.metrics import create_metrics
from spiral_operator.metrics import create_operator_metrics

#: Label values used when exercising metrics; roles cover every service so `role` templating has choices.
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "spiral_job": ("local",),
    "role": tuple(role.value for role in Role),
    "peer": ("policy-learner",),
    "term": ("total",),
    "split": ("train", "heldout"),
    "table": ("fakes",),
    "side": ("insert", "sample"),
    "method": ("/spiral.v1.Replay/Insert",),
    "code": ("OK",),
    "handler": ("spiraljob-create",),
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


def main(kind: str) -> None:
    registry = CollectorRegistry()
    if kind == "services":
        metrics: object = create_metrics(registry)
    elif kind == "operator":
        metrics = create_operator_metrics(registry)
    else:
        raise SystemExit(f"kind must be one of services, operator (got {kind!r})")
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
    main(sys.argv[1] if len(sys.argv) > 1 else "services")

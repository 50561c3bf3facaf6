"""The scrape targets of the monitoring tests, behind one function: :func:`spiral_targets`.

For now they are STAND-IN exporters (standin_exporter.py) that serve the real metric definitions
with synthetic values. Once `spiral train` runs the services locally, swap the body of
spiral_targets() for one that starts `spiral train` with tiny sizes and yields one ScrapeTarget per
service metrics port (labels: namespace="local", spiral_job="local", role=<role>), plus the operator.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from spiral.testing.prometheus import ScrapeTarget

_EXPORTER = Path(__file__).resolve().parent / "standin_exporter.py"


@contextmanager
def _standin(kind: str, labels: dict[str, str]) -> Iterator[ScrapeTarget]:
    """Start one stand-in exporter process and yield its target; stops it on exit.

    Raises:
        RuntimeError: if the exporter exits before printing its port.
    """
    process = subprocess.Popen([sys.executable, str(_EXPORTER), kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""  # blocks until the port is printed or the process exits
        if not line.startswith("PORT "):
            process.kill()
            raise RuntimeError(f"stand-in exporter {kind!r} failed to start: {line!r} {process.stderr.read() if process.stderr else ''}")
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
def spiral_targets() -> Iterator[list[ScrapeTarget]]:
    """Loopback targets serving every SPIRAL service metric and every operator metric.

    STAND-IN: replace with `spiral train` (see the module docstring).
    """
    with ExitStack() as stack:
        # Target labels as the chart's PodMonitor/ServiceMonitor would attach them in a cluster.
        services = stack.enter_context(_standin("services", {"namespace": "local", "spiral_job": "local", "pod": "local-services"}))
        operator = stack.enter_context(_standin("operator", {"namespace": "spiral-system", "pod": "spiral-operator"}))
        yield [services, operator]

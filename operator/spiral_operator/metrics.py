"""Prometheus metrics the operator exports (names shared with the chart's dashboards and alerts)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from spiral.metrics import sample_names


@dataclass(frozen=True)
class OperatorMetrics:
    reconciles: Counter
    reconcile_errors: Counter
    reconcile_seconds: Histogram
    jobs: Gauge


def create_operator_metrics(registry: CollectorRegistry) -> OperatorMetrics:
    """Register the operator's metrics on ``registry``."""
    return OperatorMetrics(
        reconciles=Counter(
            "spiral_operator_reconciles_total",
            "SpiralJob reconciliations by handler and result (success, temporary_error, permanent_error, error).",
            ["handler", "result"],
            registry=registry,
        ),
        reconcile_errors=Counter(
            "spiral_operator_reconcile_errors_total",
            "Reconciliations that raised, by handler and error class (temporary, permanent, unexpected).",
            ["handler", "kind"],
            registry=registry,
        ),
        reconcile_seconds=Histogram(
            "spiral_operator_reconcile_seconds",
            "Wall time of one reconciliation handler call.",
            ["handler"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        ),
        jobs=Gauge("spiral_operator_jobs", "SpiralJobs known to this operator, by namespace and phase.", ["namespace", "phase"], registry=registry),
    )


def registered_operator_metric_names() -> set[str]:
    """Metric and sample names exported by the operator (for dashboard/alert checks)."""
    registry = CollectorRegistry()
    create_operator_metrics(registry)
    return sample_names(registry)

"""Prometheus metrics the operator exports (names shared with the chart's dashboards and alerts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from spiral.metrics import sample_names


@dataclass(frozen=True)
class OperatorMetrics:
    reconciles: Counter
    reconcile_errors: Counter
    reconcile_seconds: Histogram
    jobs: Gauge
    population_member_metric: Gauge
    population_member_updates: Gauge
    population_member_hyperparameter: Gauge
    population_member_exploits: Gauge
    population_member_source: Gauge
    population_best_member: Gauge


#: Labels of every per-member population series (the parent SpiralJob and the member's slot).
_MEMBER_LABELS = ["namespace", "job", "member"]


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
        population_member_metric=Gauge(
            "spiral_operator_population_member_metric",
            "A population member's ranking metric (spec.population.metric) on its current weights; absent before its first evaluation.",
            _MEMBER_LABELS,
            registry=registry,
        ),
        population_member_updates=Gauge(
            "spiral_operator_population_member_updates", "A population member's policy updates (its learner's counter).", _MEMBER_LABELS, registry=registry
        ),
        population_member_hyperparameter=Gauge(
            "spiral_operator_population_member_hyperparameter",
            "The hyperparameters a population member trains with now (explored at each exploit), by name.",
            [*_MEMBER_LABELS, "name"],
            registry=registry,
        ),
        population_member_exploits=Gauge(
            "spiral_operator_population_member_exploits",
            "How many times a population member copied a better member's weights.",
            _MEMBER_LABELS,
            registry=registry,
        ),
        population_member_source=Gauge(
            "spiral_operator_population_member_source",
            "The slot a population member last copied from (absent while it never exploited).",
            _MEMBER_LABELS,
            registry=registry,
        ),
        population_best_member=Gauge(
            "spiral_operator_population_best_member", "The slot of the population's best measured member.", ["namespace", "job"], registry=registry
        ),
    )


@dataclass(frozen=True)
class MemberFigures:
    """What the operator exports for one population member (read from its status record)."""

    slot: int
    metric: float | None
    updates: int
    hyperparameters: Mapping[str, float]
    exploits: int
    source: int | None


def _member_gauges(metrics: OperatorMetrics) -> tuple[Gauge, ...]:
    return (
        metrics.population_member_metric, metrics.population_member_updates, metrics.population_member_hyperparameter,
        metrics.population_member_exploits, metrics.population_member_source,
    )  # fmt: skip


def _remove_series(gauge: Gauge, keep: set[tuple[str, ...]], prefix: tuple[str, ...]) -> None:
    """Drop ``gauge``'s series that start with ``prefix`` (namespace, job) and are not in ``keep``."""
    # prometheus-client has no "children of" API; _metrics is its label-tuple map (stable since 0.4).
    for labels in list(gauge._metrics):
        if labels[: len(prefix)] == prefix and labels not in keep:
            gauge.remove(*labels)


def export_population(metrics: OperatorMetrics, namespace: str, job: str, members: Sequence[MemberFigures], best: int | None) -> None:
    """Set the population gauges of ``namespace/job`` to ``members``; series of members, hyperparameters
    or metrics no longer there are removed (a stale value would outlive the member on the dashboard)."""
    prefix = (namespace, job)
    kept: dict[int, set[tuple[str, ...]]] = {id(g): set() for g in _member_gauges(metrics)}

    def put(gauge: Gauge, value: float, *labels: str) -> None:
        gauge.labels(*prefix, *labels).set(value)
        kept[id(gauge)].add((*prefix, *labels))

    for member in members:
        slot = str(member.slot)
        if member.metric is not None and math.isfinite(member.metric):
            put(metrics.population_member_metric, member.metric, slot)
        put(metrics.population_member_updates, member.updates, slot)
        for name, value in member.hyperparameters.items():
            put(metrics.population_member_hyperparameter, value, slot, name)
        put(metrics.population_member_exploits, member.exploits, slot)
        if member.source is not None:
            put(metrics.population_member_source, member.source, slot)
    for gauge in _member_gauges(metrics):
        _remove_series(gauge, kept[id(gauge)], prefix)
    if best is None:
        _remove_series(metrics.population_best_member, set(), prefix)
    else:
        metrics.population_best_member.labels(*prefix).set(best)


def forget_population(metrics: OperatorMetrics, namespace: str, job: str) -> None:
    """Remove every population series of ``namespace/job`` (a deleted job, or not a population)."""
    for gauge in (*_member_gauges(metrics), metrics.population_best_member):
        _remove_series(gauge, set(), (namespace, job))


def registered_operator_metric_names() -> set[str]:
    """Metric and sample names exported by the operator (for dashboard/alert checks)."""
    registry = CollectorRegistry()
    create_operator_metrics(registry)
    return sample_names(registry)

"""Kopf handlers for SpiralJobs — thin adapters around :mod:`manifests` and :mod:`lifecycle`.

Every handler runs the same level-based pass, :func:`sync`:

1. parse the spec (an invalid one fails the job with a message and ``kopf.PermanentError``);
2. observe the children (workload status, learner/replay pods) and the learner's /metrics;
3. :func:`lifecycle.decide` the new status and actions (pure);
4. render the children and create-or-patch each one, adopted by the job (owner references);
5. delete old-generation learner/replay pods for a coordinated restart, patch the autoscaled actor
   count, post Events for every decision, patch ``status``, delete the job when its TTL expired.

A population parent (``spec.population.size`` ≥ 2) takes :func:`sync_population` instead: it
observes its member SpiralJobs, :func:`population.decide_population` (pure), applies each member
and its hyperparameters ConfigMap, creates the exploit copy Jobs, and exports the per-member gauges.
The members themselves are ordinary SpiralJobs that :func:`sync` reconciles.

``on.create``/``on.update`` (spec only)/``on.resume`` react at once; the ``monitor`` timer repeats the
pass so crashes, completion, deadlines and progress are noticed without spec changes. Handler ids are
explicit because Kopf stores progress under them. No state lives in memory: everything the next
pass needs is in ``.status`` (see ``docs/continuity`` in Kopf), so restarting the operator is safe.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from spiral.config import Role
from spiral_operator import reasons
from spiral_operator.crd import GROUP, PLURAL, VERSION
from spiral_operator.kube import KubeApi, KubeApiError
from spiral_operator.lifecycle import (
    ChildrenApplied,
    Observation,
    Plan,
    decide,
    failed_status,
    pod_observation,
    pods_to_replace,
    with_children_applied,
    workload_counts,
)
from spiral_operator.manifests import CHECKPOINTING_ROLES, JOB_NAME_LABEL, ROLE_LABEL, child_name, render_children, stateful_roles
from spiral_operator.metrics import MemberFigures, OperatorMetrics, export_population, forget_population
from spiral_operator.population import (
    POPULATION_LABEL,
    MemberObservation,
    PendingExploit,
    PopulationPlan,
    check_parent,
    copy_job_state,
    decide_population,
    member_name,
    record_from_status,
)
from spiral_operator.population_manifests import render_copy_job, render_hyperparameters_config_map, render_member
from spiral_operator.progress import MetricsFetcher, Progress, parse_progress
from spiral_operator.reasons import ConditionType, Phase
from spiral_operator.spec import SpecError, SpiralJobSpec, parse_spec, to_train_config

#: How often the monitor timer re-runs the pass (seconds): crash detection latency vs API load.
DEFAULT_MONITOR_INTERVAL = 10.0
#: Reasons after which a spec fix (new generation) starts the job over instead of staying Failed.
_FIXABLE_FAILURES = (reasons.INVALID_SPEC, reasons.CHILD_REJECTED)


@dataclass(frozen=True)
class Deps:
    """Everything the handlers touch outside the object: injected so tests can point it anywhere."""

    api: KubeApi
    fetch_metrics: MetricsFetcher
    metrics: OperatorMetrics
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


def build_settings() -> kopf.OperatorSettings:
    """Operator settings: Kopf's bookkeeping in ``spiral.dev/*`` annotations, not in ``status``."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = "spiral.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="spiral.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="spiral.dev", key="last-handled-configuration")
    # One operator replica (the chart's Deployment uses Recreate); no peering CRDs to install.
    settings.peering.standalone = True
    # Resources are discovered once at start; no cluster-wide CRD/namespace watching (less RBAC).
    settings.scanning.disabled = True
    return settings


# ------------------------------------------------------------------------------------- pass ---


def observe(
    api: KubeApi, fetch: MetricsFetcher, name: str, namespace: str, roles: Sequence[Role], logger: logging.Logger | logging.LoggerAdapter
) -> Observation:
    """Read the state of the children of the job's ``roles`` and the learner's progress (I/O only; the decisions are elsewhere).

    Raises:
        KubeApiError: the API server failed.
    """
    counts = {role: workload_counts(api.get("apps/v1", "StatefulSet", namespace, child_name(name, role))) for role in stateful_roles(roles)}
    counts[Role.ACTOR] = workload_counts(api.get("apps/v1", "Deployment", namespace, child_name(name, Role.ACTOR)))
    pods = [p for p in (pod_observation(pod) for pod in api.list("v1", "Pod", namespace, {JOB_NAME_LABEL: name})) if p is not None]
    progress: Progress | None = None
    if counts[Role.POLICY_LEARNER].ready > 0:
        try:
            progress = parse_progress(fetch(name, namespace), name)
        except (OSError, ValueError) as err:
            # Progress is informative only: a slow or restarting learner must not stall the pass.
            logger.debug("cannot read learner metrics: %s", err)
    return Observation(roles=counts, pods=pods, progress=progress)


def _status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` status into ``new`` (removed keys become None)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new and k != "kopf"}
    for key, value in new.items():
        if key == "podRestarts":
            gone = {pod: None for pod in (old.get(key) or {}) if pod not in value}
            if gone or old.get(key) != value:
                patch[key] = {**gone, **value}
        elif old.get(key) != value:
            patch[key] = value
    return patch


def _post(body: kopf.Body, warning: bool, reason: str, message: str) -> None:
    (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)


def fixable_failure(status: Mapping[str, Any]) -> str | None:
    """The reason of a Failed condition that only a spec edit can fix (:data:`_FIXABLE_FAILURES`), else None."""
    failure = next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.FAILED.value and c.get("status") == "True"), None)
    reason = failure.get("reason") if failure else None
    return reason if reason in _FIXABLE_FAILURES else None


def _reject(body: kopf.Body, patch: kopf.Patch, reason: str, message: str, now: dt.datetime, *, raise_permanent: bool) -> None:
    """Fail the job for a spec problem (status, Event), and tell Kopf not to retry when asked to.

    Raises:
        kopf.PermanentError: with ``raise_permanent``.
    """
    status: Mapping[str, Any] = body.status or {}
    new = failed_status(status, reason, message, now)
    generation = body.meta.get("generation")
    if generation is not None:
        new["observedGeneration"] = generation
    patch.status.update(_status_patch(status, new))
    _post(body, True, reason, message)
    if raise_permanent:
        raise kopf.PermanentError(message)


def apply_children(api: KubeApi, body: kopf.Body, children: Sequence[dict[str, Any]]) -> ChildrenApplied:
    """Create or patch each child, owned by the job; a ServiceMonitor without its CRD is skipped with a warning.

    Raises:
        KubeApiError: the API server rejected a child or failed.
    """
    created: list[str] = []
    patched: list[str] = []
    for child in children:
        kopf.adopt(child, owner=body)
        try:
            result = api.apply(child)
        except KubeApiError as err:
            if child["kind"] == "ServiceMonitor" and err.status == 404:
                _post(
                    body,
                    True,
                    reasons.CHILD_REJECTED,
                    "spec.monitoring.serviceMonitor is true but the ServiceMonitor CRD (prometheus-operator) is not installed; skipped",
                )
                continue
            raise
        if result != "unchanged":
            (created if result == "created" else patched).append(f"{child['kind']} {child['metadata']['name']}")
    return ChildrenApplied(tuple(created), tuple(patched))


def replace_stale_pods(api: KubeApi, name: str, namespace: str, restart_generation: int, roles: Sequence[Role]) -> None:
    """Delete the learner/replay pods (of the job's ``roles``) older than ``restart_generation``; their StatefulSets bring them back together.

    Raises:
        KubeApiError: the API server failed.
    """
    pods = [p for p in (pod_observation(pod) for pod in api.list("v1", "Pod", namespace, {JOB_NAME_LABEL: name})) if p is not None]
    for pod_name in pods_to_replace(pods, restart_generation, roles):
        api.delete("v1", "Pod", namespace, pod_name)


def carry_out(deps: Deps, body: kopf.Body, patch: kopf.Patch, plan: Plan, applied: ChildrenApplied, now: dt.datetime) -> None:
    """Post the plan's Events, patch the autoscaled actor count and the status, delete the job when its TTL expired."""
    new_status, created_event = with_children_applied(plan.status, applied, now)
    if created_event is not None:
        _post(body, created_event.warning, created_event.reason, created_event.message)
    for event in plan.events:
        _post(body, event.warning, event.reason, event.message)
    if plan.actor_replicas is not None:
        patch.spec["actor"] = {"replicas": plan.actor_replicas}
    patch.status.update(_status_patch(body.status or {}, new_status))
    if plan.delete_job:
        deps.api.delete(f"{GROUP}/{VERSION}", "SpiralJob", body.meta["namespace"], body.meta["name"])


def _api_failed(
    err: KubeApiError, body: kopf.Body, patch: kopf.Patch, rejected: str, now: dt.datetime, *, raise_permanent: bool
) -> None:  # fmt: skip
    """A 4xx other than 404/409/429 is the spec's fault: the job fails with ``rejected`` and the
    server's message. Anything else is transient: Kopf retries (soon after a conflict).

    Raises:
        kopf.PermanentError: rejected, with ``raise_permanent``.
        kopf.TemporaryError: transient.
    """
    if 400 <= err.status < 500 and err.status not in (404, 409, 429):
        _reject(body, patch, reasons.CHILD_REJECTED, f"{rejected}: {err.api_message}", now, raise_permanent=raise_permanent)
        return
    raise kopf.TemporaryError(f"Kubernetes API: {err}", delay=10 if err.status != 409 else 1) from err


def sync(deps: Deps, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | logging.LoggerAdapter, *, raise_permanent: bool) -> Plan | None:
    """One reconcile pass over a SpiralJob (see the module docstring). Returns the plan it carried out.

    Raises:
        kopf.PermanentError: the spec or a rendered child is invalid (only with ``raise_permanent``).
        kopf.TemporaryError: the API server failed or conflicted; Kopf retries after ``delay``.
    """
    name, namespace = body.meta["name"], body.meta["namespace"]
    generation = body.meta.get("generation")
    now = deps.clock()

    # 1. Start from the current status; a job failed by its spec waits for a new generation, then starts over.
    status: dict[str, Any] = dict(body.status or {})
    failure = fixable_failure(status)
    if failure is not None:
        if status.get("observedGeneration") == generation:
            return None  # still the spec that failed; wait for the user's fix
        logger.info("spec changed after %s: starting over", failure)
        status = {}
    # 2. Parse the spec (this builds its TrainConfig, so every rule is checked before anything is touched).
    try:
        spec: SpiralJobSpec = parse_spec(body.spec)
    except SpecError as err:
        _reject(body, patch, reasons.INVALID_SPEC, f"invalid spec, fix it and re-apply: {err}", now, raise_permanent=raise_permanent)
        return None
    if spec.population.enabled:
        sync_population(deps, body, patch, spec, status, logger, raise_permanent=raise_permanent)
        return None
    # 3. Observe, decide (pure), render (pure) and apply.
    try:
        roles = spec.roles()
        plan = decide(spec, name, status, observe(deps.api, deps.fetch_metrics, name, namespace, roles, logger), now, generation)
        children = render_children(spec, name, namespace, restart_generation=plan.restart_generation, stopped=plan.stopped)
        applied = apply_children(deps.api, body, children)
        if plan.restart:
            replace_stale_pods(deps.api, name, namespace, plan.restart_generation, roles)
    except KubeApiError as err:
        _api_failed(err, body, patch, "the API server rejected a child rendered from the spec; fix the spec (often a pod template override)", now,
                    raise_permanent=raise_permanent)  # fmt: skip
        return None
    # 4. Events, the autoscaled actor count, status, TTL deletion.
    carry_out(deps, body, patch, plan, applied, now)
    return plan


# ------------------------------------------------------------------------------ population ---


def observe_members(
    api: KubeApi, fetch: MetricsFetcher, name: str, namespace: str, size: int, pending: dict[int, PendingExploit],
    logger: logging.Logger | logging.LoggerAdapter,
) -> tuple[dict[int, MemberObservation], dict[int, int]]:  # fmt: skip
    """What each member of population ``name`` shows (see :class:`MemberObservation`) and the actor
    count each live member's spec holds (its autoscaler's; the parent must not undo it). I/O only.

    Raises:
        KubeApiError: the API server failed.
    """
    seen: dict[int, MemberObservation] = {}
    actors: dict[int, int] = {}
    # One list per pass, not a GET per member (only this parent's members carry its label).
    listed = api.list(f"{GROUP}/{VERSION}", "SpiralJob", namespace, {POPULATION_LABEL: name})
    by_name = {item["metadata"]["name"]: item for item in listed}
    for slot in range(size):
        member = member_name(name, slot)
        child = by_name.get(member)
        if child is None:
            seen[slot] = MemberObservation(None)
            continue
        if (replicas := ((child.get("spec") or {}).get("actor") or {}).get("replicas")) is not None:
            actors[slot] = int(replicas)
        status = child.get("status") or {}
        phase = status.get("phase")
        exploit = pending.get(slot)
        if exploit is not None:
            pods = api.list("v1", "Pod", namespace, {JOB_NAME_LABEL: member})
            checkpointing = {role.value for role in CHECKPOINTING_ROLES}
            stopped = phase == Phase.SUSPENDED.value and not any((p["metadata"].get("labels") or {}).get(ROLE_LABEL) in checkpointing for p in pods)
            job = api.get("batch/v1", "Job", namespace, exploit.job)
            seen[slot] = MemberObservation(phase, stopped=stopped, copy_job=copy_job_state(job))
            continue
        progress: Progress | None = None
        if int((status.get("policyLearner") or {}).get("ready") or 0) > 0:
            try:
                progress = parse_progress(fetch(member, namespace), member)
            except (OSError, ValueError) as err:
                logger.debug("cannot read member %s's metrics: %s", member, err)
        seen[slot] = MemberObservation(phase, progress=progress)
    return seen, actors


def population_children(spec: SpiralJobSpec, body: kopf.Body, plan: PopulationPlan, actors: dict[int, int]) -> list[dict[str, Any]]:
    """Each member's hyperparameters ConfigMap (first: its learner pods wait for it) and SpiralJob."""
    name, namespace = body.meta["name"], body.meta["namespace"]
    children: list[dict[str, Any]] = []
    for record in plan.records:
        slot = record.member.slot
        children.append(render_hyperparameters_config_map(name, namespace, record))
        suspended = spec.run_policy.suspend or slot in plan.suspended
        children.append(render_member(body.spec, name, namespace, record, suspended=suspended, actor_replicas=actors.get(slot)))
    return children


def export_population_metrics(metrics: OperatorMetrics, namespace: str, name: str, plan: PopulationPlan) -> None:
    figures = [
        MemberFigures(
            slot=r.member.slot,
            metric=r.member.metric,
            updates=r.member.updates,
            hyperparameters={k.value: v for k, v in r.member.hyperparameters.items()},
            exploits=len(r.member.lineage),
            source=r.member.lineage[-1].source if r.member.lineage else None,
        )
        for r in plan.records
    ]
    export_population(metrics, namespace, name, figures, plan.best.slot if plan.best is not None else None)


def sync_population(
    deps: Deps, body: kopf.Body, patch: kopf.Patch, spec: SpiralJobSpec, status: dict[str, Any], logger: logging.Logger | logging.LoggerAdapter,
    *, raise_permanent: bool,
) -> PopulationPlan | None:  # fmt: skip
    """One pass over a population parent (:mod:`spiral_operator.population`): observe the members,
    decide (pure), apply the members, their ConfigMaps and the copy Jobs, post Events, patch status.

    Raises:
        kopf.PermanentError: the population cannot run (only with ``raise_permanent``).
        kopf.TemporaryError: the API server failed or conflicted.
    """
    name, namespace = body.meta["name"], body.meta["namespace"]
    now = deps.clock()
    try:
        check_parent(spec, name)
        cfg = to_train_config(spec, name, namespace)
    except SpecError as err:
        _reject(body, patch, reasons.INVALID_SPEC, f"invalid spec, fix it and re-apply: {err}", now, raise_permanent=raise_permanent)
        return None
    stored = [record_from_status(m) for m in (status.get("population") or {}).get("members") or []]
    pending = {r.member.slot: r.exploit for r in stored if r.exploit is not None}
    try:
        seen, actors = observe_members(deps.api, deps.fetch_metrics, name, namespace, spec.population.size, pending, logger)
        plan = decide_population(spec, cfg, name, status, seen, now, body.meta.get("generation"))
        applied = apply_children(deps.api, body, population_children(spec, body, plan, actors))
        for target, source, job_name in plan.copy_jobs:
            job = render_copy_job(spec, name, namespace, target, source, job_name)
            kopf.adopt(job, owner=body)
            if deps.api.create_if_absent(job) == "created":
                logger.info("population: Job %s copies member %d's checkpoint over member %d's", job_name, source, target)
    except KubeApiError as err:
        _api_failed(err, body, patch, "the API server rejected a member rendered from the spec; fix the spec", now, raise_permanent=raise_permanent)
        return None
    new_status, created_event = with_children_applied(plan.status, applied, now)
    if created_event is not None:
        _post(body, created_event.warning, created_event.reason, created_event.message)
    for event in plan.events:
        _post(body, event.warning, event.reason, event.message)
        logger.info("population: %s", event.message)
    patch.status.update(_status_patch(body.status or {}, new_status))
    export_population_metrics(deps.metrics, namespace, name, plan)
    if plan.delete_job:
        deps.api.delete(f"{GROUP}/{VERSION}", "SpiralJob", namespace, name)
        forget_population(deps.metrics, namespace, name)
    return plan


# --------------------------------------------------------------------------------- registry ---


def _instrumented(deps: Deps, handler: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        result = fn()
    except kopf.TemporaryError:
        deps.metrics.reconciles.labels(handler, "temporary_error").inc()
        deps.metrics.reconcile_errors.labels(handler, "temporary").inc()
        raise
    except kopf.PermanentError:
        deps.metrics.reconciles.labels(handler, "permanent_error").inc()
        deps.metrics.reconcile_errors.labels(handler, "permanent").inc()
        raise
    except Exception:
        deps.metrics.reconciles.labels(handler, "error").inc()
        deps.metrics.reconcile_errors.labels(handler, "unexpected").inc()
        raise
    finally:
        deps.metrics.reconcile_seconds.labels(handler).observe(time.perf_counter() - started)
    deps.metrics.reconciles.labels(handler, "success").inc()
    return result


def build_registry(
    *, monitor_interval: float = DEFAULT_MONITOR_INTERVAL, login: Callable[..., Any] = kopf.login_via_client
) -> kopf.OperatorRegistry:
    """A registry with the SpiralJob handlers (no import-time registration; tests build their own).

    The handlers find their :class:`Deps` in ``memo.deps`` (pass ``memo=kopf.Memo(deps=...)``).
    ``login`` gives Kopf its credentials: by default the kubernetes client's (in-cluster service
    account, else kubeconfig), the same the handlers' :class:`KubeApi` uses.
    """
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.login(id="login", registry=registry)(login)

    def on_change(handler: str) -> Callable[..., None]:
        def fn(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, memo: kopf.Memo, **_: Any) -> None:
            deps: Deps = memo.deps
            _instrumented(deps, handler, lambda: sync(deps, body, patch, logger, raise_permanent=True))

        fn.__name__ = f"spiraljob_{handler}"
        return fn

    # Creation must end: after 10 failed attempts (API server down) Kopf gives up and logs it.
    kopf.on.create(*resource, id="create", registry=registry, retries=10, backoff=5)(on_change("create"))
    kopf.on.update(*resource, id="update", field="spec", registry=registry, retries=10, backoff=5)(on_change("update"))
    kopf.on.resume(*resource, id="resume", registry=registry, retries=10, backoff=5)(on_change("resume"))

    # Optional: no finalizer holds a deletion for it; it only drops a deleted population's gauges.
    @kopf.on.delete(*resource, id="delete", registry=registry, optional=True)
    def spiraljob_deleted(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        forget_population(memo.deps.metrics, namespace or "", name)

    @kopf.index(*resource, id="spiraljob_phases", registry=registry)
    def spiraljob_phases(namespace: str | None, status: kopf.Status, **_: Any) -> dict[tuple[str | None, str], None]:
        return {(namespace, str(status.get("phase") or Phase.CREATED.value)): None}

    # Kopf passes its indices (spiraljob_phases) as extra keyword arguments, which its TimerFn protocol cannot express.
    @kopf.timer(*resource, id="monitor", interval=monitor_interval, initial_delay=monitor_interval, registry=registry)  # type: ignore[arg-type]
    def monitor(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, memo: kopf.Memo, spiraljob_phases: kopf.Index, **_: Any) -> None:
        deps: Deps = memo.deps
        deps.metrics.jobs.clear()
        for (namespace, phase), store in spiraljob_phases.items():
            deps.metrics.jobs.labels(namespace, phase).set(len(list(store)))
        _instrumented(deps, "monitor", lambda: sync(deps, body, patch, logger, raise_permanent=False))

    return registry

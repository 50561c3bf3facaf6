"""The SpiralJob state machine as one pure function: (spec, status, observation, now) → :class:`Plan`.

The handlers observe the cluster (workload and pod status, learner metrics), call :func:`decide`,
then carry the plan out. Keeping every decision here means each rule below is unit-tested on plain
dicts, with no API server and no clock.

Rules, in order:

* **Terminal** (Succeeded/Failed) jobs only clean up (``runPolicy.cleanPodPolicy``) and, after
  ``ttlSecondsAfterFinished``, ask to be deleted.
* **Suspend** scales every workload to zero (the renderer does that from the spec) and sets
  Suspended; resuming clears it and restarts the deadline clock. Training resumes from the checkpoint
  because learners load the latest one at start.
* **Success**: the policy learner's container terminated with exit code 0 (its current state, or
  its last state after the kubelet restarted it, since a StatefulSet pod always restarts). Pods
  being deleted or still on an older restart generation are ignored, so a learner that exits 0 on
  SIGTERM during a restart is not mistaken for success; the learner must exit non-zero when stopped
  before its budget.
* **Failure of a learner or the replay** (a container restart not yet accounted for whose exit code
  is not 0, or pod phase Failed) triggers ONE coordinated restart: ``status.restartCount`` goes up by
  one, becomes the ``spiral.dev/restart-generation`` of the learner and replay pod templates, and the
  handlers delete the old pods so all three come back together from the checkpoint. Crashes of
  pods from an older generation are ignored (they are being replaced), so one incident is counted
  once — per *job*, not per pod. More than ``backoffLimit`` restarts fails the job.
* **Actor crashes** are left to the actor Deployment (only that actor restarts).
* **activeDeadlineSeconds** since the last start/resume fails the job.
* **Autoscaling** (optional): while Running, with the policy learner's queue empty and every actor
  ready, add one actor; with the queue full (``scaleDownQueueDepth``, default ``training.queueSize``:
  actors wait on back-pressure), remove one. A reading counts only when the previous pass read the
  same (``status.progress.queueDepth``), since the default one-slot queue has no depth between the
  two thresholds; never beyond [minReplicas, maxReplicas], at most one step per ``cooldownSeconds``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from spiral.config import Role
from spiral_operator import reasons
from spiral_operator.manifests import RESTART_GENERATION_ANNOTATION, ROLE_LABEL, STATEFUL_ROLES, actor_selector
from spiral_operator.progress import Progress
from spiral_operator.reasons import ConditionType, Phase
from spiral_operator.spec import CleanPodPolicy, SpiralJobSpec

#: status keys of each role's desired/ready counts (``actors`` is the scale subresource's path).
ROLE_STATUS_KEYS: dict[Role, str] = {
    Role.ACTOR: "actors",
    Role.POLICY_LEARNER: "policyLearner",
    Role.DISCRIMINATOR_LEARNER: "discriminatorLearner",
    Role.REPLAY: "replay",
}


class RoleCounts(NamedTuple):
    desired: int
    ready: int


class PodObservation(NamedTuple):
    """What failure detection needs from one learner or replay pod."""

    name: str
    uid: str
    role: Role
    phase: str
    restarts: int
    restart_generation: int
    #: Exit code of the main container's latest termination (current state, else last state); None if it never terminated.
    exit_code: int | None
    terminating: bool


class Observation(NamedTuple):
    roles: Mapping[Role, RoleCounts]
    pods: Sequence[PodObservation]
    progress: Progress | None


class Event(NamedTuple):
    warning: bool
    reason: str
    message: str


class Plan(NamedTuple):
    """What the handlers must do after one :func:`decide`."""

    status: dict[str, Any]
    #: Restart generation to stamp on learner/replay templates (== status.restartCount).
    restart_generation: int
    #: True: a coordinated restart was decided now; delete learner/replay pods of older generations.
    restart: bool
    #: Roles to scale to zero although the spec wants them (finished-job cleanup).
    stopped: frozenset[Role]
    #: New spec.actor.replicas from the autoscaler, or None.
    actor_replicas: int | None
    delete_job: bool
    events: tuple[Event, ...]


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------ observation ---


def pod_observation(pod: Mapping[str, Any]) -> PodObservation | None:
    """Summarise a pod dict; None for pods of other roles or without a role label."""
    meta = pod.get("metadata", {})
    try:
        role = Role((meta.get("labels") or {}).get(ROLE_LABEL, ""))
    except ValueError:
        return None
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    main = next((c for c in statuses if c.get("name") == role.value), statuses[0] if statuses else {})
    terminated = (main.get("state") or {}).get("terminated") or (main.get("lastState") or {}).get("terminated")
    try:
        generation = int((meta.get("annotations") or {}).get(RESTART_GENERATION_ANNOTATION, "0"))
    except ValueError:
        generation = 0
    return PodObservation(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        role=role,
        phase=status.get("phase", "Pending"),
        restarts=sum(int(c.get("restartCount", 0)) for c in statuses),
        restart_generation=generation,
        exit_code=int(terminated["exitCode"]) if terminated and "exitCode" in terminated else None,
        terminating=bool(meta.get("deletionTimestamp")),
    )


def workload_counts(workload: Mapping[str, Any] | None) -> RoleCounts:
    """Desired/ready replicas of a StatefulSet or Deployment dict (zeros when it does not exist yet)."""
    if not workload:
        return RoleCounts(0, 0)
    return RoleCounts(int((workload.get("spec") or {}).get("replicas", 0)), int((workload.get("status") or {}).get("readyReplicas", 0) or 0))


# ------------------------------------------------------------------------------- conditions ---


def set_condition(
    conditions: Sequence[Mapping[str, Any]], type_: ConditionType, status: bool, reason: str, message: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """A new condition list with ``type_`` set; lastTransitionTime changes only when the status flips."""
    value = "True" if status else "False"
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_.value:
            result.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != value
        result.append(
            {
                "type": type_.value,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": timestamp(now) if changed else cond.get("lastTransitionTime", timestamp(now)),
            }
        )
    if not found:
        result.append({"type": type_.value, "status": value, "reason": reason, "message": message, "lastTransitionTime": timestamp(now)})
    return result


def condition(conditions: Sequence[Mapping[str, Any]], type_: ConditionType) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_.value), None)


def cleanup_roles(policy: CleanPodPolicy) -> frozenset[Role]:
    """Roles scaled to zero once the job finished."""
    if policy == CleanPodPolicy.ALL:
        return frozenset(Role)
    if policy == CleanPodPolicy.RUNNING:
        # The policy learner's pod holds the final logs (and the exit code that ended the job).
        return frozenset(Role) - {Role.POLICY_LEARNER}
    return frozenset()


def failed_status(status: Mapping[str, Any], reason: str, message: str, now: dt.datetime) -> dict[str, Any]:
    """``status`` moved to Failed (used by :func:`decide` and for specs the operator cannot render)."""
    new = dict(status)
    conditions = list(new.get("conditions") or [])
    conditions = set_condition(conditions, ConditionType.FAILED, True, reason, message, now)
    if condition(conditions, ConditionType.RUNNING) is not None:
        conditions = set_condition(conditions, ConditionType.RUNNING, False, reasons.JOB_FINISHED, "the job failed", now)
    if condition(conditions, ConditionType.RESTARTING) is not None:
        conditions = set_condition(conditions, ConditionType.RESTARTING, False, reasons.JOB_FINISHED, "the job failed", now)
    new.update(phase=Phase.FAILED.value, message=message, conditions=conditions, completionTime=timestamp(now))
    return new


# ---------------------------------------------------------------------------------- decide ---


def _progress_status(progress: Progress, now: dt.datetime) -> dict[str, Any]:
    fields = {
        "frames": progress.frames,
        "policyVersion": progress.policy_version,
        "episodeReward": progress.episode_reward,
        "heldOutL2": progress.held_out_l2,
        "queueDepth": progress.queue_depth,
    }
    return {**{k: v for k, v in fields.items() if v is not None}, "updateTime": timestamp(now)}


class ScaleStep(NamedTuple):
    replicas: int
    why: str


def autoscale_step(spec: SpiralJobSpec, ready_actors: int, queue_depth: float, previous_queue_depth: float | None) -> ScaleStep | None:
    """The actor autoscaler's step for two consecutive readings of the learner's queue (None: stay).

    Thresholds are the queue's two ends, relative to ``training.queueSize``: empty (the learner
    starves) adds an actor once every actor is ready; full (``scaleDownQueueDepth``, default the
    whole queue: actors block on back-pressure) removes one. Cooldown is the caller's.
    """
    current = spec.actor.replicas
    queue_size = spec.training.queue_size
    full = spec.actor.autoscaling.scale_down_queue_depth or queue_size
    if previous_queue_depth is None:
        return None
    if max(queue_depth, previous_queue_depth) <= 0 and ready_actors >= current and current < spec.actor.max_replicas:
        return ScaleStep(current + 1, "the learner's queue was empty on two passes in a row")
    if min(queue_depth, previous_queue_depth) >= full and current > spec.actor.min_replicas:
        return ScaleStep(
            current - 1, f"the learner's queue held {queue_depth:g} of {queue_size} trajectories (full at {full}) on two passes in a row"
        )
    return None


def _not_ready(roles: Mapping[Role, RoleCounts]) -> list[str]:
    lacking = [f"{r.value} {roles[r].ready}/{roles[r].desired}" for r in STATEFUL_ROLES if roles[r].ready < roles[r].desired]
    actors = roles[Role.ACTOR]
    if actors.desired > 0 and actors.ready == 0:
        lacking.append(f"actor 0/{actors.desired}")
    return lacking


def decide(
    spec: SpiralJobSpec, name: str, status: Mapping[str, Any], observation: Observation, now: dt.datetime, generation: int | None = None
) -> Plan:
    """Decide the next status and actions of job ``name`` (see the module docstring for the rules)."""
    new: dict[str, Any] = {k: v for k, v in status.items() if k != "kopf"}
    conditions: list[dict[str, Any]] = [dict(c) for c in new.get("conditions") or []]
    events: list[Event] = []
    phase = Phase(new["phase"]) if new.get("phase") in {p.value for p in Phase} else Phase.CREATED
    restart_count = int(new.get("restartCount", 0))
    restart = False
    stopped: frozenset[Role] = frozenset()
    actor_replicas: int | None = None
    delete_job = False
    roles = {role: observation.roles.get(role, RoleCounts(0, 0)) for role in Role}
    previous_queue_depth = (status.get("progress") or {}).get("queueDepth")

    # Bookkeeping every pass: counts, selector, progress, generation.
    for role, key in ROLE_STATUS_KEYS.items():
        new[key] = {"desired": roles[role].desired, "ready": roles[role].ready}
    new["actorSelector"] = actor_selector(name)
    new["restartCount"] = restart_count
    if generation is not None:
        new["observedGeneration"] = generation
    if observation.progress is not None:
        new["progress"] = _progress_status(observation.progress, now)

    def finish(final: Phase, reason: str, message: str) -> None:
        nonlocal phase, conditions, stopped
        if final == Phase.FAILED:
            moved = failed_status({**new, "conditions": conditions}, reason, message, now)
            conditions = moved["conditions"]
            new["completionTime"] = moved["completionTime"]
        else:
            conditions = set_condition(conditions, ConditionType.SUCCEEDED, True, reason, message, now)
            conditions = set_condition(conditions, ConditionType.RUNNING, False, reasons.JOB_FINISHED, "the job succeeded", now)
            if condition(conditions, ConditionType.RESTARTING) is not None:
                conditions = set_condition(conditions, ConditionType.RESTARTING, False, reasons.JOB_FINISHED, "the job succeeded", now)
            new["completionTime"] = timestamp(now)
        phase = final
        new["message"] = message
        stopped = cleanup_roles(spec.run_policy.clean_pod_policy)
        events.append(Event(final == Phase.FAILED, reason, message))
        if stopped:
            events.append(Event(False, reasons.PODS_CLEANED, f"cleanPodPolicy {spec.run_policy.clean_pod_policy.value}: scaled {', '.join(sorted(r.value for r in stopped))} to zero"))

    def done() -> Plan:
        new["phase"] = phase.value
        new["conditions"] = conditions
        return Plan(new, restart_count, restart, stopped, actor_replicas, delete_job, tuple(events))

    # 1. Terminal: clean up, then wait for the TTL.
    if phase.terminal:
        stopped = cleanup_roles(spec.run_policy.clean_pod_policy)
        ttl = spec.run_policy.ttl_seconds_after_finished
        finished = parse_timestamp(new.get("completionTime"))
        if ttl is not None and finished is not None and now >= finished + dt.timedelta(seconds=ttl):
            delete_job = True
            events.append(Event(False, reasons.TTL_EXPIRED, f"finished at {timestamp(finished)}; ttlSecondsAfterFinished={ttl} elapsed, deleting the job"))
        return done()

    # 2. Suspend / resume.
    if spec.run_policy.suspend:
        if phase != Phase.SUSPENDED:
            message = "runPolicy.suspend is true: every workload is scaled to zero; set it to false to continue from the checkpoint"
            conditions = set_condition(conditions, ConditionType.SUSPENDED, True, reasons.SUSPENDED_BY_USER, message, now)
            conditions = set_condition(conditions, ConditionType.RUNNING, False, reasons.JOB_SUSPENDED, "suspended", now)
            events.append(Event(False, reasons.SUSPENDED_BY_USER, message))
            new["message"] = message
        phase = Phase.SUSPENDED
        return done()
    if phase == Phase.SUSPENDED:
        message = "runPolicy.suspend is false again: continuing from the latest checkpoint"
        conditions = set_condition(conditions, ConditionType.SUSPENDED, False, reasons.RESUMED, message, now)
        events.append(Event(False, reasons.RESUMED, message))
        new["message"] = message
        new["startTime"] = timestamp(now)  # the deadline counts running time since the resume
        phase = Phase.CREATED
    new.setdefault("startTime", timestamp(now))

    # 3. Success and failures of learners/replay, from the pods of the current generation.
    previous = new.get("podRestarts") or {}
    accounted: dict[str, dict[str, Any]] = {}
    crashed: list[PodObservation] = []
    succeeded: PodObservation | None = None
    for pod in observation.pods:
        if pod.role not in STATEFUL_ROLES or pod.terminating:
            continue
        before = previous.get(pod.name) or {}
        baseline = int(before.get("restarts", 0)) if before.get("uid") == pod.uid else 0
        accounted[pod.name] = {"uid": pod.uid, "restarts": pod.restarts}
        if pod.restart_generation < restart_count:
            continue  # being replaced by the coordinated restart already under way
        if pod.role == Role.POLICY_LEARNER and pod.exit_code == 0:
            succeeded = pod
        elif pod.phase == "Failed" or (pod.restarts > baseline and pod.exit_code not in (None, 0)):
            crashed.append(pod)
    new["podRestarts"] = accounted

    if succeeded is not None:
        finish(Phase.SUCCEEDED, reasons.BUDGET_REACHED, f"policy learner {succeeded.name} exited with code 0 at its training budget")
        return done()

    if crashed:
        what = ", ".join(f"{p.role.value} pod {p.name} (exit code {p.exit_code}, phase {p.phase})" for p in crashed)
        limit = spec.run_policy.backoff_limit
        if restart_count >= limit:
            finish(
                Phase.FAILED,
                reasons.BACKOFF_LIMIT_EXCEEDED,
                f"{what} crashed after {restart_count} coordinated restart(s); runPolicy.backoffLimit is {limit}: "
                "read the learner logs, fix the cause and raise backoffLimit or create a new job",
            )
            return done()
        restart_count += 1
        new["restartCount"] = restart_count
        restart = True
        message = f"{what} crashed: restarting policy-learner, discriminator-learner and replay together from the checkpoint (restart {restart_count} of backoffLimit {limit})"
        conditions = set_condition(conditions, ConditionType.RESTARTING, True, reasons.COORDINATED_RESTART, message, now)
        events.append(Event(True, reasons.COORDINATED_RESTART, message))
        new["message"] = message
        phase = Phase.RESTARTING
        return done()

    # 4. Deadline.
    deadline = spec.run_policy.active_deadline_seconds
    started = parse_timestamp(new.get("startTime"))
    if deadline is not None and started is not None and now >= started + dt.timedelta(seconds=deadline):
        finish(Phase.FAILED, reasons.DEADLINE_EXCEEDED, f"running since {timestamp(started)}, longer than runPolicy.activeDeadlineSeconds={deadline}")
        return done()

    # 5. Readiness → Running / Restarting.
    lacking = _not_ready(roles)
    stale = [p.name for p in observation.pods if p.role in STATEFUL_ROLES and p.restart_generation < restart_count]
    all_ready = not lacking and not stale and all(roles[r].desired > 0 for r in STATEFUL_ROLES)
    if phase == Phase.RESTARTING:
        if all_ready:
            conditions = set_condition(conditions, ConditionType.RESTARTING, False, reasons.RESTART_COMPLETED, f"restart {restart_count} completed", now)
            events.append(Event(False, reasons.RESTART_COMPLETED, f"learners and replay are back after restart {restart_count}"))
            phase = Phase.RUNNING
    elif all_ready:
        if phase != Phase.RUNNING:
            events.append(Event(False, reasons.ALL_ROLES_READY, "all roles are ready: training"))
        phase = Phase.RUNNING
    if phase == Phase.RUNNING or condition(conditions, ConditionType.RUNNING) is not None:
        if all_ready:
            conditions = set_condition(conditions, ConditionType.RUNNING, True, reasons.ALL_ROLES_READY, "learners, replay and actors are ready", now)
            new["message"] = "training"
        else:
            waiting = ", ".join(lacking + [f"{n} (old restart generation)" for n in stale]) or "workloads not created yet"
            conditions = set_condition(conditions, ConditionType.RUNNING, False, reasons.ROLES_NOT_READY, f"not ready: {waiting}", now)

    # 6. Autoscaling.
    autoscaling = spec.actor.autoscaling
    progress = observation.progress
    if autoscaling.enabled and phase == Phase.RUNNING and all_ready and progress is not None and progress.queue_depth is not None:
        last = parse_timestamp(new.get("lastScaleTime"))
        cooled = last is None or now >= last + dt.timedelta(seconds=autoscaling.cooldown_seconds)
        step = autoscale_step(spec, roles[Role.ACTOR].ready, progress.queue_depth, previous_queue_depth)
        if cooled and step is not None:
            actor_replicas = step.replicas
            new["lastScaleTime"] = timestamp(now)
            events.append(Event(False, reasons.ACTORS_SCALED, f"actors {spec.actor.replicas} → {step.replicas}: {step.why}"))
    return done()

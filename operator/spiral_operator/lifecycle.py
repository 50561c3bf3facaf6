"""The SpiralJob state machine as one pure function: (spec, status, observation, now) → :class:`Plan`.

The handlers observe the cluster (workload and pod status, learner metrics), call :func:`decide`,
then carry the plan out. Keeping every decision here means each rule below is unit-tested on plain
dicts, with no API server and no clock.

Each rule is a small pure function ``*_rule(observed, decision) -> decision`` (:data:`RULES`): it
reads the pass's :class:`Observed` state and returns the :class:`Decision` so far with its own
phase, conditions, status fields, events or actions added. :func:`decide` applies them in order and
stops at the first that marks the decision ``final``. The rules, in order:

Only the roles the job runs (``TrainConfig.roles()``, via :meth:`SpiralJobSpec.roles`) count: an
``l2`` job has no replay and no discriminator learner, so neither is waited for, reported missing,
restarted or written to ``status``.

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
* **Autoscaling** (optional): while Running with every role ready, on the policy learner's own wait
  counters (``status.autoscaling`` keeps each pass's reading and its rates since the pass before):
  while the learner waits for trajectories at least ``scaleUpLearnerWaitRatio`` of the time, add one
  actor (once every actor is ready); while the actors together wait at least
  ``scaleDownActorWaitRatio`` seconds per second for the learner to take their trajectories (more
  than one actor's worth of spare time), remove one. Each condition must hold over two consecutive
  intervals (hysteresis), never beyond [minReplicas, maxReplicas], at most one step per ``cooldownSeconds``
  (counted from the last step, and from when the job last became Running).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from spiral.config import Role
from spiral_operator import reasons
from spiral_operator.manifests import RESTART_GENERATION_ANNOTATION, ROLE_LABEL, actor_selector, stateful_roles
from spiral_operator.progress import Progress
from spiral_operator.reasons import ConditionType, Phase
from spiral_operator.spec import CleanPodPolicy, SpiralJobSpec

#: status keys of each role's desired/ready counts (``actors`` is the scale subresource's path);
#: only the keys of the roles a job runs are written.
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
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def cleanup_roles(policy: CleanPodPolicy, roles: Iterable[Role]) -> frozenset[Role]:
    """Which of the job's ``roles`` are scaled to zero once it finished."""
    if policy == CleanPodPolicy.ALL:
        return frozenset(roles)
    if policy == CleanPodPolicy.RUNNING:
        # The policy learner's pod holds the final logs (and the exit code that ended the job).
        return frozenset(roles) - {Role.POLICY_LEARNER}
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


# -------------------------------------------------------------------- after the children ---


class ChildrenApplied(NamedTuple):
    """``"KIND NAME"`` of each child the handlers created or patched in this pass."""

    created: tuple[str, ...] = ()
    patched: tuple[str, ...] = ()


def with_children_applied(status: Mapping[str, Any], applied: ChildrenApplied, now: dt.datetime) -> tuple[dict[str, Any], Event | None]:
    """``status`` with the Created condition for this pass's writes, and the Event to post for them (None: no writes).

    The condition is set on the first pass and whenever a child was written, so its message says
    what the last write was; passes that change nothing leave it (and its transition time) alone.
    """
    new = dict(status)
    written = bool(applied.created or applied.patched)
    if not written and condition(new.get("conditions") or [], ConditionType.CREATED) is not None:
        return new, None
    message = "; ".join(f"{verb}: {', '.join(items)}" for verb, items in (("created", applied.created), ("patched", applied.patched)) if items)
    message = message or "children up to date"
    new["conditions"] = set_condition(new.get("conditions") or [], ConditionType.CREATED, True, reasons.CHILDREN_CREATED, message, now)
    return new, Event(False, reasons.CHILDREN_CREATED, message) if written else None


def pods_to_replace(pods: Sequence[PodObservation], restart_generation: int, roles: Iterable[Role]) -> list[str]:
    """Names of the pods of the job's StatefulSet ``roles`` older than ``restart_generation``: a coordinated restart deletes them."""
    restarted = stateful_roles(roles)
    return [p.name for p in pods if p.role in restarted and p.restart_generation < restart_generation]


def _listed(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# ---------------------------------------------------------------------- one pass, observed ---


class PodOutcomes(NamedTuple):
    """What the learner and replay pods of the current restart generation say about the job."""

    #: ``status.podRestarts``: each pod's restarts now accounted for, so one crash is counted once.
    accounted: dict[str, dict[str, Any]]
    #: The policy learner's pod that exited 0 (its budget reached), if any.
    succeeded: PodObservation | None
    crashed: tuple[PodObservation, ...]


class Readiness(NamedTuple):
    #: ``"ROLE ready/desired"`` of each role short of pods.
    lacking: tuple[str, ...]
    #: Learner/replay pods of an older restart generation, still being replaced.
    stale: tuple[str, ...]
    #: Every StatefulSet wants its pod (they exist and the job is not scaled to zero).
    all_desired: bool

    @property
    def all_ready(self) -> bool:
        return not self.lacking and not self.stale and self.all_desired


class Observed(NamedTuple):
    """Everything the rules read in one pass; fixed while they run."""

    spec: SpiralJobSpec
    now: dt.datetime
    #: The roles the job runs (``TrainConfig.roles()``) and, of those, the StatefulSets restarted together.
    roles: tuple[Role, ...]
    stateful: tuple[Role, ...]
    counts: Mapping[Role, RoleCounts]
    pods: PodOutcomes
    readiness: Readiness
    progress: Progress | None
    #: The autoscaler's reading of the previous pass (``status.autoscaling``), if any.
    previous_sample: AutoscaleSample | None


class Decision(NamedTuple):
    """The plan under construction: every rule returns a new one, and ``final`` ends the pass."""

    phase: Phase
    #: The new ``status`` except ``phase`` and ``conditions``.
    status: Mapping[str, Any]
    conditions: tuple[Mapping[str, Any], ...]
    events: tuple[Event, ...]
    restart_count: int
    restart: bool = False
    stopped: frozenset[Role] = frozenset()
    actor_replicas: int | None = None
    delete_job: bool = False
    final: bool = False


def _progress_status(progress: Progress, now: dt.datetime) -> dict[str, Any]:
    fields = {
        "frames": progress.frames,
        "policyVersion": progress.policy_version,
        "episodeReward": progress.episode_reward,
        "heldOutL2": progress.held_out_l2,
        "queueDepth": progress.queue_depth,
    }
    return {**{k: v for k, v in fields.items() if v is not None}, "updateTime": timestamp(now)}


def pod_outcomes(pods: Sequence[PodObservation], previous: Mapping[str, Any], restart_count: int, stateful: Sequence[Role]) -> PodOutcomes:
    """Success and crashes among the pods of the job's ``stateful`` roles; ``previous`` is the last pass's ``status.podRestarts``.

    A crash is a restart not yet accounted for whose exit code is not 0, or pod phase Failed. Pods
    being deleted are skipped, and pods older than ``restart_count`` are only accounted for: they
    are being replaced by the coordinated restart already under way.
    """
    accounted: dict[str, dict[str, Any]] = {}
    crashed: list[PodObservation] = []
    succeeded: PodObservation | None = None
    for pod in pods:
        if pod.role not in stateful or pod.terminating:
            continue
        before = previous.get(pod.name) or {}
        baseline = int(before.get("restarts", 0)) if before.get("uid") == pod.uid else 0
        accounted[pod.name] = {"uid": pod.uid, "restarts": pod.restarts}
        if pod.restart_generation < restart_count:
            continue
        if pod.role == Role.POLICY_LEARNER and pod.exit_code == 0:
            succeeded = pod
        elif pod.phase == "Failed" or (pod.restarts > baseline and pod.exit_code not in (None, 0)):
            crashed.append(pod)
    return PodOutcomes(accounted, succeeded, tuple(crashed))


def readiness(counts: Mapping[Role, RoleCounts], pods: Sequence[PodObservation], restart_count: int, stateful: Sequence[Role]) -> Readiness:
    """Which of the job's roles lack ready pods (``stateful``: its StatefulSets); actors count as ready once one of them is."""
    lacking = [f"{r.value} {counts[r].ready}/{counts[r].desired}" for r in stateful if counts[r].ready < counts[r].desired]
    actors = counts[Role.ACTOR]
    if actors.desired > 0 and actors.ready == 0:
        lacking.append(f"actor 0/{actors.desired}")
    stale = tuple(p.name for p in pods if p.role in stateful and p.restart_generation < restart_count)
    return Readiness(tuple(lacking), stale, all(counts[r].desired > 0 for r in stateful))


def _observed(spec: SpiralJobSpec, status: Mapping[str, Any], observation: Observation, now: dt.datetime) -> Observed:
    roles = spec.roles()
    stateful = stateful_roles(roles)
    counts = {role: observation.roles.get(role, RoleCounts(0, 0)) for role in Role}
    restart_count = int(status.get("restartCount", 0))
    return Observed(
        spec=spec,
        now=now,
        roles=roles,
        stateful=stateful,
        counts=counts,
        pods=pod_outcomes(observation.pods, status.get("podRestarts") or {}, restart_count, stateful),
        readiness=readiness(counts, observation.pods, restart_count, stateful),
        progress=observation.progress,
        previous_sample=AutoscaleSample.from_status(status.get("autoscaling")),
    )


def _bookkeeping(seen: Observed, name: str, status: Mapping[str, Any], generation: int | None) -> Decision:
    """Every pass, whatever the rules decide: role counts, selector, restart count, generation, progress."""
    # Counts of roles the job does not run are dropped (the status patch removes them).
    new: dict[str, Any] = {k: v for k, v in status.items() if k != "kopf" and k not in ROLE_STATUS_KEYS.values()}
    for role in seen.roles:
        new[ROLE_STATUS_KEYS[role]] = {"desired": seen.counts[role].desired, "ready": seen.counts[role].ready}
    new["actorSelector"] = actor_selector(name)
    restart_count = int(new.get("restartCount", 0))
    new["restartCount"] = restart_count
    if generation is not None:
        new["observedGeneration"] = generation
    if seen.progress is not None:
        new["progress"] = _progress_status(seen.progress, seen.now)
        sample = autoscale_sample(seen.progress, seen.previous_sample, seen.now)
        if sample is not None:
            new["autoscaling"] = sample.as_status()
    phase = Phase(new["phase"]) if new.get("phase") in {p.value for p in Phase} else Phase.CREATED
    conditions = tuple(dict(c) for c in new.get("conditions") or [])
    return Decision(phase=phase, status=new, conditions=conditions, events=(), restart_count=restart_count)


# ------------------------------------------------------------------------- decision helpers ---


def _set(d: Decision, **status: Any) -> Decision:
    return d._replace(status={**d.status, **status})


def _condition(d: Decision, seen: Observed, type_: ConditionType, status: bool, reason: str, message: str) -> Decision:
    return d._replace(conditions=tuple(set_condition(d.conditions, type_, status, reason, message, seen.now)))


def _event(d: Decision, warning: bool, reason: str, message: str) -> Decision:
    return d._replace(events=(*d.events, Event(warning, reason, message)))


def _cleaned_up(d: Decision, seen: Observed) -> Decision:
    policy = seen.spec.run_policy.clean_pod_policy
    stopped = cleanup_roles(policy, seen.roles)
    d = d._replace(stopped=stopped)
    if stopped:
        d = _event(d, False, reasons.PODS_CLEANED, f"cleanPodPolicy {policy.value}: scaled {', '.join(sorted(r.value for r in stopped))} to zero")
    return d


def _failed(d: Decision, seen: Observed, reason: str, message: str) -> Decision:
    moved = failed_status({**d.status, "conditions": d.conditions}, reason, message, seen.now)
    d = d._replace(phase=Phase.FAILED, conditions=tuple(moved["conditions"]), final=True)
    d = _set(d, completionTime=moved["completionTime"], message=message)
    return _cleaned_up(_event(d, True, reason, message), seen)


def _succeeded(d: Decision, seen: Observed, reason: str, message: str) -> Decision:
    d = _condition(d, seen, ConditionType.SUCCEEDED, True, reason, message)
    d = _condition(d, seen, ConditionType.RUNNING, False, reasons.JOB_FINISHED, "the job succeeded")
    if condition(d.conditions, ConditionType.RESTARTING) is not None:
        d = _condition(d, seen, ConditionType.RESTARTING, False, reasons.JOB_FINISHED, "the job succeeded")
    d = _set(d._replace(phase=Phase.SUCCEEDED, final=True), completionTime=timestamp(seen.now), message=message)
    return _cleaned_up(_event(d, False, reason, message), seen)


# -------------------------------------------------------------------------------- autoscaler ---


class ScaleStep(NamedTuple):
    replicas: int
    why: str


#: Readings closer together than this are not compared (a create/update handler and the timer can
#: run back to back); the next pass measures over the longer interval instead.
MIN_SAMPLE_SECONDS = 1.0


def precise_timestamp(now: dt.datetime) -> str:
    """RFC 3339 with microseconds: rates over a few seconds need more than :func:`timestamp`'s whole seconds."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AutoscaleSample(NamedTuple):
    """One reading of the policy learner's wait counters (``status.autoscaling``) and their rates since the reading before.

    *Learner wait* is the time its update loop waited for trajectories (it starves);
    *actor wait* is the time the actors' ``SendTrajectories`` calls waited for room in its full
    queue, summed over the actors (they could send more than it learns from). Both are counters
    of the learner's ``/metrics`` (``spiral_learner_data_wait_seconds_total``,
    ``spiral_learner_actor_wait_seconds_total``), so a reading is only compared with one of the
    same learner process.
    """

    time: dt.datetime
    learner_wait_seconds: float
    actor_wait_seconds: float
    #: Seconds per second since the previous reading; None for the first reading of a learner process.
    learner_wait_ratio: float | None = None
    actor_wait_ratio: float | None = None

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "sampleTime": precise_timestamp(self.time),
            "learnerWaitSeconds": self.learner_wait_seconds,
            "actorWaitSeconds": self.actor_wait_seconds,
        }
        if self.learner_wait_ratio is not None and self.actor_wait_ratio is not None:
            status.update(learnerWaitRatio=round(self.learner_wait_ratio, 4), actorWaitRatio=round(self.actor_wait_ratio, 4))
        return status

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> AutoscaleSample | None:
        if not status or not status.get("sampleTime"):
            return None
        try:
            return cls(
                time=dt.datetime.fromisoformat(str(status["sampleTime"]).replace("Z", "+00:00")),
                learner_wait_seconds=float(status["learnerWaitSeconds"]),
                actor_wait_seconds=float(status["actorWaitSeconds"]),
                learner_wait_ratio=status.get("learnerWaitRatio"),
                actor_wait_ratio=status.get("actorWaitRatio"),
            )
        except (KeyError, TypeError, ValueError):
            return None  # written by an older operator: start over

    @property
    def has_rates(self) -> bool:
        return self.learner_wait_ratio is not None and self.actor_wait_ratio is not None


def autoscale_sample(progress: Progress, previous: AutoscaleSample | None, now: dt.datetime) -> AutoscaleSample | None:
    """This pass's reading (None: the learner exports no wait counters), with rates against ``previous``.

    A reading less than :data:`MIN_SAMPLE_SECONDS` after ``previous`` returns ``previous`` itself;
    counters lower than before (the learner restarted) start a new series without rates.
    """
    if progress.learner_wait_seconds is None or progress.actor_wait_seconds is None:
        return None
    sample = AutoscaleSample(now, progress.learner_wait_seconds, progress.actor_wait_seconds)
    if previous is None:
        return sample
    elapsed = (now - previous.time).total_seconds()
    if 0 <= elapsed < MIN_SAMPLE_SECONDS:
        return previous
    if elapsed < 0 or sample.learner_wait_seconds < previous.learner_wait_seconds or sample.actor_wait_seconds < previous.actor_wait_seconds:
        return sample
    return sample._replace(
        learner_wait_ratio=(sample.learner_wait_seconds - previous.learner_wait_seconds) / elapsed,
        actor_wait_ratio=(sample.actor_wait_seconds - previous.actor_wait_seconds) / elapsed,
    )


def autoscale_step(spec: SpiralJobSpec, ready_actors: int, current: AutoscaleSample, previous: AutoscaleSample) -> ScaleStep | None:
    """The actor autoscaler's step for two consecutive intervals (None: stay). Cooldown is the caller's.

    Why these two signals and thresholds: with ``N`` actors that each take ``P`` seconds per
    trajectory and a learner that takes ``U`` per update, the learner waits while ``N/P < 1/U``
    and then gains from one more actor; otherwise the actors together wait ``N − P/U`` seconds
    per second, and one fewer still keeps the learner busy when that is at least 1. After adding
    an actor to a waiting learner the actors wait less than 1 s/s, so the default thresholds
    (``scaleUpLearnerWaitRatio`` 0.2, ``scaleDownActorWaitRatio`` 1.2) do not undo each other.
    """
    # Both samples need their rates (``has_rates``), spelled out so that the ratios below are floats.
    current_learner, current_actor = current.learner_wait_ratio, current.actor_wait_ratio
    previous_learner, previous_actor = previous.learner_wait_ratio, previous.actor_wait_ratio
    if current_learner is None or current_actor is None or previous_learner is None or previous_actor is None or current.time == previous.time:
        return None
    autoscaling, actor = spec.actor.autoscaling, spec.actor
    replicas = actor.replicas
    learner_wait = min(current_learner, previous_learner)
    actor_wait = min(current_actor, previous_actor)
    if learner_wait >= autoscaling.scale_up_learner_wait_ratio and ready_actors >= replicas and replicas < actor.max_replicas:
        return ScaleStep(
            replicas + 1,
            f"the policy learner waited for trajectories {100 * previous_learner:.0f}% and "
            f"{100 * current_learner:.0f}% of the last two intervals "
            f"(scaleUpLearnerWaitRatio {autoscaling.scale_up_learner_wait_ratio:g})",
        )
    if actor_wait >= autoscaling.scale_down_actor_wait_ratio and replicas > actor.min_replicas:
        return ScaleStep(
            replicas - 1,
            f"the actors waited {previous_actor:.2f} and {current_actor:.2f} s/s for the policy learner "
            f"to take their trajectories over the last two intervals (scaleDownActorWaitRatio {autoscaling.scale_down_actor_wait_ratio:g}: "
            "more than one actor's worth of spare time)",
        )
    return None


# ------------------------------------------------------------------------------------ rules ---


def terminal_rule(seen: Observed, d: Decision) -> Decision:
    """A finished job only cleans up and, once ``ttlSecondsAfterFinished`` passed, asks to be deleted."""
    if not d.phase.terminal:
        return d
    d = d._replace(stopped=cleanup_roles(seen.spec.run_policy.clean_pod_policy, seen.roles), final=True)
    ttl = seen.spec.run_policy.ttl_seconds_after_finished
    finished = parse_timestamp(d.status.get("completionTime"))
    if ttl is not None and finished is not None and seen.now >= finished + dt.timedelta(seconds=ttl):
        d = _event(
            d._replace(delete_job=True),
            False,
            reasons.TTL_EXPIRED,
            f"finished at {timestamp(finished)}; ttlSecondsAfterFinished={ttl} elapsed, deleting the job",
        )
    return d


def suspend_rule(seen: Observed, d: Decision) -> Decision:
    """``runPolicy.suspend``: Suspended, and nothing else is decided (pods are going away on purpose)."""
    if not seen.spec.run_policy.suspend:
        return d
    if d.phase != Phase.SUSPENDED:
        message = "runPolicy.suspend is true: every workload is scaled to zero; set it to false to continue from the checkpoint"
        d = _condition(d, seen, ConditionType.SUSPENDED, True, reasons.SUSPENDED_BY_USER, message)
        d = _condition(d, seen, ConditionType.RUNNING, False, reasons.JOB_SUSPENDED, "suspended")
        d = _set(_event(d, False, reasons.SUSPENDED_BY_USER, message), message=message)
    return d._replace(phase=Phase.SUSPENDED, final=True)


def resume_rule(seen: Observed, d: Decision) -> Decision:
    """Suspended but no longer asked to be: Created again, with the deadline clock restarted."""
    if d.phase != Phase.SUSPENDED:
        return d
    message = "runPolicy.suspend is false again: continuing from the latest checkpoint"
    d = _condition(d, seen, ConditionType.SUSPENDED, False, reasons.RESUMED, message)
    # The deadline counts running time since the resume.
    return _set(_event(d, False, reasons.RESUMED, message)._replace(phase=Phase.CREATED), message=message, startTime=timestamp(seen.now))


def start_clock_rule(seen: Observed, d: Decision) -> Decision:
    """``status.startTime``: set once, on the first pass that runs the job."""
    return d if "startTime" in d.status else _set(d, startTime=timestamp(seen.now))


def account_pods_rule(seen: Observed, d: Decision) -> Decision:
    return _set(d, podRestarts=seen.pods.accounted)


def success_rule(seen: Observed, d: Decision) -> Decision:
    """The policy learner exited 0 at its training budget: Succeeded."""
    pod = seen.pods.succeeded
    if pod is None:
        return d
    return _succeeded(d, seen, reasons.BUDGET_REACHED, f"policy learner {pod.name} exited with code 0 at its training budget")


def crash_rule(seen: Observed, d: Decision) -> Decision:
    """A learner or the replay crashed: one coordinated restart of the job's StatefulSets, or Failed past ``backoffLimit``."""
    crashed = seen.pods.crashed
    if not crashed:
        return d
    what = ", ".join(f"{p.role.value} pod {p.name} (exit code {p.exit_code}, phase {p.phase})" for p in crashed)
    limit = seen.spec.run_policy.backoff_limit
    if d.restart_count >= limit:
        return _failed(
            d,
            seen,
            reasons.BACKOFF_LIMIT_EXCEEDED,
            f"{what} crashed after {d.restart_count} coordinated restart(s); runPolicy.backoffLimit is {limit}: "
            "read the learner logs, fix the cause and raise backoffLimit or create a new job",
        )
    count = d.restart_count + 1
    restarted = _listed([r.value for r in seen.stateful])
    together = " together" if len(seen.stateful) > 1 else ""
    message = f"{what} crashed: restarting {restarted}{together} from the checkpoint (restart {count} of backoffLimit {limit})"
    d = _condition(d, seen, ConditionType.RESTARTING, True, reasons.COORDINATED_RESTART, message)
    d = _event(d, True, reasons.COORDINATED_RESTART, message)
    return _set(d._replace(phase=Phase.RESTARTING, restart_count=count, restart=True, final=True), restartCount=count, message=message)


def deadline_rule(seen: Observed, d: Decision) -> Decision:
    """Running longer than ``activeDeadlineSeconds`` since the last start or resume: Failed."""
    deadline = seen.spec.run_policy.active_deadline_seconds
    started = parse_timestamp(d.status.get("startTime"))
    if deadline is None or started is None or seen.now < started + dt.timedelta(seconds=deadline):
        return d
    return _failed(d, seen, reasons.DEADLINE_EXCEEDED, f"running since {timestamp(started)}, longer than runPolicy.activeDeadlineSeconds={deadline}")


def readiness_rule(seen: Observed, d: Decision) -> Decision:
    """Every role ready: Running (a restart in progress completes)."""
    if not seen.readiness.all_ready:
        return d
    if d.phase == Phase.RESTARTING:
        d = _condition(d, seen, ConditionType.RESTARTING, False, reasons.RESTART_COMPLETED, f"restart {d.restart_count} completed")
        back = f"{_listed([r.value for r in seen.stateful])} {'are' if len(seen.stateful) > 1 else 'is'} back"
        d = _event(d, False, reasons.RESTART_COMPLETED, f"{back} after restart {d.restart_count}")
    elif d.phase != Phase.RUNNING:
        d = _event(d, False, reasons.ALL_ROLES_READY, "all roles are ready: training")
    return d._replace(phase=Phase.RUNNING)


def running_condition_rule(seen: Observed, d: Decision) -> Decision:
    """The Running condition, once the job ran: True while every role is ready, else which are not."""
    if d.phase != Phase.RUNNING and condition(d.conditions, ConditionType.RUNNING) is None:
        return d
    ready = seen.readiness
    if ready.all_ready:
        message = f"{_listed([*(r.value for r in seen.stateful), 'actors'])} are ready"
        return _set(_condition(d, seen, ConditionType.RUNNING, True, reasons.ALL_ROLES_READY, message), message="training")
    waiting = ", ".join([*ready.lacking, *(f"{n} (old restart generation)" for n in ready.stale)]) or "workloads not created yet"
    return _condition(d, seen, ConditionType.RUNNING, False, reasons.ROLES_NOT_READY, f"not ready: {waiting}")


def autoscale_rule(seen: Observed, d: Decision) -> Decision:
    """While Running with every role ready: :func:`autoscale_step`, at most once per ``cooldownSeconds``
    (since the last step, and since the job last became Running)."""
    autoscaling = seen.spec.actor.autoscaling
    current, previous = AutoscaleSample.from_status(d.status.get("autoscaling")), seen.previous_sample
    if not (autoscaling.enabled and d.phase == Phase.RUNNING and seen.readiness.all_ready and current is not None and previous is not None):
        return d
    # The cooldown also runs from when the job last became Running: actors that are still warming up
    # make any learner wait, and that says nothing about how many it needs.
    running = condition(d.conditions, ConditionType.RUNNING) or {}
    since = [parse_timestamp(d.status.get("lastScaleTime")), parse_timestamp(running.get("lastTransitionTime")) if running.get("status") == "True" else None]
    last = max((t for t in since if t is not None), default=None)
    if last is not None and seen.now < last + dt.timedelta(seconds=autoscaling.cooldown_seconds):
        return d
    step = autoscale_step(seen.spec, seen.counts[Role.ACTOR].ready, current, previous)
    if step is None:
        return d
    d = _event(d._replace(actor_replicas=step.replicas), False, reasons.ACTORS_SCALED, f"actors {seen.spec.actor.replicas} → {step.replicas}: {step.why}")
    return _set(d, lastScaleTime=timestamp(seen.now))


#: The rules in the order they apply; the first that returns a ``final`` decision ends the pass.
RULES: tuple[Callable[[Observed, Decision], Decision], ...] = (
    terminal_rule,
    suspend_rule,
    resume_rule,
    start_clock_rule,
    account_pods_rule,
    success_rule,
    crash_rule,
    deadline_rule,
    readiness_rule,
    running_condition_rule,
    autoscale_rule,
)


# ---------------------------------------------------------------------------------- decide ---


def decide(
    spec: SpiralJobSpec, name: str, status: Mapping[str, Any], observation: Observation, now: dt.datetime, generation: int | None = None
) -> Plan:
    """Decide the next status and actions of job ``name`` (see the module docstring for the rules)."""
    seen = _observed(spec, status, observation, now)
    decision = _bookkeeping(seen, name, status, generation)
    for rule in RULES:
        decision = rule(seen, decision)
        if decision.final:
            break
    return Plan(
        status={**decision.status, "phase": decision.phase.value, "conditions": [dict(c) for c in decision.conditions]},
        restart_generation=decision.restart_count,
        restart=decision.restart,
        stopped=decision.stopped,
        actor_replicas=decision.actor_replicas,
        delete_job=decision.delete_job,
        events=decision.events,
    )

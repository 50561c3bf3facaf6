"""A SpiralJob population as one pure function: (spec, status, what each member shows, now) → :class:`PopulationPlan`.

A SpiralJob with ``population.size`` ≥ 2 is a *parent*: it runs no workloads itself. Each slot is
a *member*, a child SpiralJob ``NAME-m<slot>`` (:func:`member_name`) with the parent's spec minus
``population``, its own seed, and a hyperparameters ConfigMap its learners apply while they run
(``spec.hyperparametersConfigMap``). Members are ordinary SpiralJobs: the same handlers reconcile
them (restarts, autoscaling, success), and ``kubectl get spiraljobs -l spiral.dev/population=NAME``
lists them. The parent's ``status.population`` is the population's memory; nothing lives in the
operator's process.

Every pass, for each member: its policy updates and metric (its policy learner's /metrics, the
same scrape a single job's progress comes from), then :func:`spiral.population.decide_round` — the
decisions ``spiral train --population N`` takes locally — on the members that are running and not
in an exploit. An exploit of member *t* by member *s* goes through stages kept in
``status.population.members[t].exploit``:

1. **Stopping**: *t* is suspended (``runPolicy.suspend``); its learners write a final checkpoint on
   SIGTERM. Only *t* stops: *s* keeps training.
2. **Copying**: once *t* is Suspended and none of its learner or replay pods remain, a batch/v1
   Job ``NAME-m<t>-exploit-<n>`` copies *s*'s newest checkpoints into *t*'s volume
   (``spiral population copy-checkpoint``, the local driver's copy).
3. **Resumed**: the Job succeeded. *t*'s ConfigMap gets the explored hyperparameters, its seed
   becomes *s*'s (a resume may not change the seed its checkpoint was trained with), it is
   unsuspended and its learners start from the copy. Its metric counts again from its first
   evaluation on the copied weights; readiness from its first observed updates. A failed Job
   resumes *t* unchanged, with a warning Event.

Events: ``PopulationExploit`` when an exploit starts (ranks, metrics and every hyperparameter's old →
new value), ``PopulationExplore`` when the target resumes with its new values,
``PopulationExploitFailed`` when the copy failed. The parent is Running while a member runs, and
Succeeded (Failed) once every member finished and one (none) succeeded.

Where the random draws come from: a Generator seeded by (the run's seed, rounds so far + 1), so a
restarted operator replays the same decisions from ``status``.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from spiral.config import Hyperparameter, PopulationMetric, TrainConfig
from spiral.population import Exploit, LineageStep, Member, decide_round, initial_members, ranked
from spiral_operator import reasons
from spiral_operator.lifecycle import Event, parse_timestamp, set_condition, timestamp
from spiral_operator.progress import Progress
from spiral_operator.reasons import ConditionType, Phase
from spiral_operator.spec import MAX_JOB_NAME_LENGTH, SpecError, SpiralJobSpec

#: Labels every member SpiralJob carries: its parent's name and its slot.
POPULATION_LABEL = "spiral.dev/population"
MEMBER_LABEL = "spiral.dev/member"
#: Member phases whose weights are training now: the only members ranked, copied from or replaced.
_TRAINING_PHASES = frozenset({Phase.RUNNING.value})
_FINISHED_PHASES = frozenset({Phase.SUCCEEDED.value, Phase.FAILED.value})


def member_name(parent: str, slot: int) -> str:
    return f"{parent}-m{slot}"


def hyperparameters_config_map_name(parent: str, slot: int) -> str:
    return f"{member_name(parent, slot)}-hyperparameters"


def copy_job_name(parent: str, slot: int, exploit_number: int) -> str:
    """The copy Job of the population's ``exploit_number``-th exploit (unique per parent, so a
    failed copy's Job, still kept for its logs, never stands in for the next attempt)."""
    return f"{member_name(parent, slot)}-exploit-{exploit_number}"


def check_parent(spec: SpiralJobSpec, name: str) -> None:
    """Refuse a population the operator cannot run, naming what is wrong and what is valid.

    Raises:
        SpecError: the member names would be too long, the members would share one volume, or
            the metric is one the operator cannot read.
    """
    population = spec.population
    longest = member_name(name, population.size - 1)
    if len(longest) > MAX_JOB_NAME_LENGTH:
        room = MAX_JOB_NAME_LENGTH - len(longest) + len(name)
        raise SpecError(
            f"metadata.name {name!r}: its members are named like {longest!r} ({len(longest)} characters, at most {MAX_JOB_NAME_LENGTH}); "
            f"with population.size {population.size} the name may have at most {room} characters"
        )
    if spec.checkpoint.existing_claim is not None:
        raise SpecError(
            f"spec.checkpoint.existingClaim ({spec.checkpoint.existing_claim}) with population.size {population.size}: every member needs "
            "its own volume (exploit copies one member's checkpoint over another's); remove existingClaim"
        )
    if spec.hyperparameters_config_map is not None:
        raise SpecError("spec.hyperparametersConfigMap with a population: the operator writes one ConfigMap per member; remove it")
    if population.metric == PopulationMetric.D_FAKE:
        raise SpecError(
            "spec.population.metric d_fake: the operator reads member metrics from the policy learner's /metrics, which does not "
            "export the critic's score; valid on Kubernetes: held_out_l2, digit_confident (`spiral train --population N` also runs d_fake)"
        )


# -------------------------------------------------------------------------------- records ---


class ExploitStage(str, enum.Enum):
    STOPPING = "Stopping"  # the target is suspended; waiting for its learners to checkpoint and exit
    COPYING = "Copying"  # the copy Job runs


class CopyJobState(str, enum.Enum):
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class PendingExploit(NamedTuple):
    """An exploit under way: what the target becomes once the copy is done."""

    stage: ExploitStage
    decision: Exploit
    seed: int  # the source's: the copied checkpoint was trained with it
    job: str  # the copy Job's name
    start_time: str


class MemberRecord(NamedTuple):
    """One member as ``status.population.members[slot]`` keeps it."""

    member: Member  # what the decisions see (spiral.population.Member)
    seed: int
    #: True after a resume until its updates are first observed: readiness then counts from them.
    awaiting_first_observation: bool = False
    phase: str | None = None  # the member SpiralJob's phase, as last seen
    lineage_times: tuple[str, ...] = ()  # when each lineage step happened, parallel to member.lineage
    exploit: PendingExploit | None = None


def _hyperparameters_status(values: Mapping[Hyperparameter, float]) -> dict[str, float]:
    return {name.value: float(value) for name, value in values.items()}


def _hyperparameters_from_status(values: Mapping[str, Any]) -> dict[Hyperparameter, float]:
    return {Hyperparameter(key): float(value) for key, value in values.items()}


def record_status(record: MemberRecord, parent: str) -> dict[str, Any]:
    """The JSON of ``record`` in ``status.population.members`` (camelCase; absent values omitted)."""
    member = record.member
    out: dict[str, Any] = {
        "slot": member.slot,
        "name": member_name(parent, member.slot),
        "seed": record.seed,
        "hyperparameters": _hyperparameters_status(member.hyperparameters),
        "updates": member.updates,
        "lineage": [
            {"source": step.source, "updates": step.updates, "sourceMetric": step.source_metric, "time": when}
            for step, when in zip(member.lineage, record.lineage_times, strict=True)
        ],
    }
    if member.metric is not None:
        # JSON has no NaN or infinity: a diverged member is kept as such and ranks last (spiral.population).
        if math.isfinite(member.metric):
            out["metric"] = member.metric
        else:
            out["metricNotFinite"] = True
    if not record.awaiting_first_observation:
        out["readySince"] = member.ready_since
    if record.phase is not None:
        out["phase"] = record.phase
    if record.exploit is not None:
        pending = record.exploit
        out["exploit"] = {
            "stage": pending.stage.value,
            "source": pending.decision.source,
            "sourceMetric": pending.decision.source_metric,
            "hyperparameters": _hyperparameters_status(pending.decision.hyperparameters),
            "seed": pending.seed,
            "job": pending.job,
            "startTime": pending.start_time,
            "reason": pending.decision.reason,
        }
    return out


def record_from_status(data: Mapping[str, Any]) -> MemberRecord:
    """Inverse of :func:`record_status`."""
    slot = int(data["slot"])
    lineage = tuple(LineageStep(int(s["source"]), int(s["updates"]), float(s["sourceMetric"])) for s in data.get("lineage") or [])
    member = Member(
        slot=slot,
        updates=int(data.get("updates", 0)),
        hyperparameters=_hyperparameters_from_status(data.get("hyperparameters") or {}),
        metric=float(data["metric"]) if data.get("metric") is not None else (math.nan if data.get("metricNotFinite") else None),
        ready_since=int(data.get("readySince", 0)),
        lineage=lineage,
    )
    exploit = None
    if (pending := data.get("exploit")) is not None:
        decision = Exploit(slot, int(pending["source"]), _hyperparameters_from_status(pending["hyperparameters"]),
                           float(pending["sourceMetric"]), str(pending.get("reason", "")))  # fmt: skip
        exploit = PendingExploit(ExploitStage(pending["stage"]), decision, int(pending["seed"]), str(pending["job"]), str(pending["startTime"]))
    return MemberRecord(
        member=member,
        seed=int(data["seed"]),
        awaiting_first_observation="readySince" not in data,
        phase=data.get("phase"),
        lineage_times=tuple(str(s.get("time", "")) for s in data.get("lineage") or []),
        exploit=exploit,
    )


def initial_records(cfg: TrainConfig) -> tuple[MemberRecord, ...]:
    """The members of a new population: :func:`spiral.population.initial_members` (member 0 trains
    with the configured values), seeds ``seed + slot``, as the local driver starts them."""
    members = initial_members(cfg, np.random.default_rng(cfg.seed))
    return tuple(MemberRecord(member=m, seed=cfg.seed + m.slot) for m in members)


# ---------------------------------------------------------------------------- observation ---


class MemberObservation(NamedTuple):
    """What one pass saw of a member."""

    phase: str | None  # its SpiralJob's status.phase; None while it does not exist
    #: Suspended, and none of its learner or replay pods remain: its checkpoints are final.
    stopped: bool = False
    progress: Progress | None = None  # its policy learner's /metrics; None when not read
    copy_job: CopyJobState | None = None  # of its exploit under way; None: no such Job (yet)


def copy_job_state(job: Mapping[str, Any] | None) -> CopyJobState | None:
    """A batch/v1 Job's outcome from its status conditions and counts; None when it does not exist."""
    if job is None:
        return None
    status = job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True" or int(status.get("succeeded") or 0) > 0:
        return CopyJobState.SUCCEEDED
    if conditions.get("Failed") == "True":
        return CopyJobState.FAILED
    return CopyJobState.ACTIVE


def metric_value(progress: Progress, metric: PopulationMetric) -> float | None:
    """The population's metric in a member's progress (``d_fake`` is refused by :func:`check_parent`)."""
    if metric == PopulationMetric.HELD_OUT_L2:
        return progress.held_out_l2
    if metric == PopulationMetric.DIGIT_CONFIDENT:
        return progress.digit_confident
    return None


# ----------------------------------------------------------------------------------- plan ---


class PopulationPlan(NamedTuple):
    """What the handlers do after one :func:`decide_population`."""

    status: dict[str, Any]
    records: tuple[MemberRecord, ...]
    #: Slots whose SpiralJob is to be suspended now (mid-exploit) on top of the parent's own suspend.
    suspended: frozenset[int]
    #: Copy Jobs to create if absent: (target slot, source slot, Job name).
    copy_jobs: tuple[tuple[int, int, str], ...]
    events: tuple[Event, ...]
    delete_job: bool
    best: Member | None


def _observe(record: MemberRecord, seen: MemberObservation, metric: PopulationMetric) -> MemberRecord:
    """``record`` with this pass's phase, updates and metric (those of a member in an exploit stay as they are)."""
    record = record._replace(phase=seen.phase)
    if record.exploit is not None or seen.progress is None:
        return record
    member = record.member
    updates = seen.progress.policy_version if seen.progress.policy_version is not None else member.updates
    value = metric_value(seen.progress, metric)
    member = member._replace(updates=updates, metric=value if value is not None else member.metric)
    if record.awaiting_first_observation:
        member = member._replace(ready_since=updates)
        record = record._replace(awaiting_first_observation=False)
    return record._replace(member=member)


def _advance_exploit(record: MemberRecord, seen: MemberObservation, source_updates: int, now: dt.datetime) -> tuple[MemberRecord, Event | None]:
    """Move an exploit under way one stage on when what it waits for happened."""
    pending = record.exploit
    if pending is None:
        return record, None
    slot = record.member.slot
    if pending.stage == ExploitStage.STOPPING:
        if seen.phase in _FINISHED_PHASES:
            # It reached its budget (or failed) before it stopped: nothing left to train with the copy.
            message = f"member {slot} finished before the exploit could stop it; no copy"
            return record._replace(exploit=None), Event(False, reasons.POPULATION_EXPLOIT_FAILED, message)
        if seen.stopped:
            return record._replace(exploit=pending._replace(stage=ExploitStage.COPYING)), None
        return record, None
    if seen.copy_job == CopyJobState.SUCCEEDED:
        decision = pending.decision
        member = record.member._replace(
            hyperparameters=decision.hyperparameters,
            metric=None,
            lineage=(*record.member.lineage, LineageStep(decision.source, source_updates, decision.source_metric)),
        )
        changes = ", ".join(f"{name.value} {value:.3g}" for name, value in decision.hyperparameters.items())
        message = f"member {slot} resumes from member {decision.source}'s checkpoint (copied by Job {pending.job}) with {changes}"
        resumed = record._replace(member=member, seed=pending.seed, awaiting_first_observation=True,
                                  lineage_times=(*record.lineage_times, timestamp(now)), exploit=None)  # fmt: skip
        return resumed, Event(False, reasons.POPULATION_EXPLORE, message)
    if seen.copy_job == CopyJobState.FAILED:
        message = (
            f"member {slot}: copying member {pending.decision.source}'s checkpoint failed (Job {pending.job}; see its pod's log); "
            "the member resumes with its own weights and hyperparameters"
        )
        return record._replace(awaiting_first_observation=True, exploit=None), Event(True, reasons.POPULATION_EXPLOIT_FAILED, message)
    return record, None


def _phase_summary(records: Sequence[MemberRecord], suspended: bool) -> tuple[Phase, str, str]:
    """The parent's phase, its Running condition's reason and a message, from its members' phases."""
    phases = [r.phase for r in records]
    running = sum(1 for p in phases if p in _TRAINING_PHASES)
    finished = [p for p in phases if p in _FINISHED_PHASES]
    counts = f"{running} of {len(records)} members running, {len(finished)} finished"
    if len(finished) == len(records):
        succeeded = Phase.SUCCEEDED.value in finished
        return (Phase.SUCCEEDED if succeeded else Phase.FAILED), reasons.MEMBERS_FINISHED, counts
    if suspended:
        return Phase.SUSPENDED, reasons.SUSPENDED_BY_USER, f"runPolicy.suspend: every member is suspended; {counts}"
    if running > 0 or any(r.exploit is not None for r in records):
        return Phase.RUNNING, reasons.MEMBERS_RUNNING, counts
    return Phase.CREATED, reasons.MEMBERS_STARTING, counts


def decide_population(
    spec: SpiralJobSpec, cfg: TrainConfig, name: str, status: Mapping[str, Any], seen: Mapping[int, MemberObservation], now: dt.datetime,
    generation: int | None = None,
) -> PopulationPlan:  # fmt: skip
    """One pass over a population parent (the module docstring tells the stages). Pure."""
    population = spec.population
    previous = status.get("population") or {}
    stored = [record_from_status(m) for m in previous.get("members") or []]
    records = list(stored) if len(stored) == population.size else list(initial_records(cfg))
    rounds, exploits_started = int(previous.get("rounds", 0)), int(previous.get("exploits", 0))
    events: list[Event] = []

    # 1. What each member shows now; exploits under way move on.
    for i, record in enumerate(records):
        observation = seen.get(record.member.slot, MemberObservation(None))
        record = _observe(record, observation, population.metric)
        source_updates = records[record.exploit.decision.source].member.updates if record.exploit is not None else 0
        record, event = _advance_exploit(record, observation, source_updates, now)
        records[i] = record
        if event is not None:
            events.append(event)

    # 2. PBT's exploit step on the members training now (the others take no part: no metric).
    def candidate(record: MemberRecord) -> Member:
        if record.exploit is None and record.phase in _TRAINING_PHASES and not spec.run_policy.suspend:
            return record.member
        return record.member._replace(metric=None)

    members = [candidate(r) for r in records]
    if sum(1 for m in members if m.metric is not None) >= 2:
        # [seed, 0] seeds the same stream as [seed] (numpy pads the entropy with zeros), which drew
        # the initial members' values: round r draws from [seed, r + 1] so no round repeats them.
        rng = np.random.default_rng([cfg.seed, rounds + 1])
        decisions, judged = decide_round(members, population, rng)
        if decisions or any(j.ready_since != m.ready_since for j, m in zip(judged, members, strict=True)):
            rounds += 1
        for i, judged_member in enumerate(judged):
            records[i] = records[i]._replace(member=records[i].member._replace(ready_since=judged_member.ready_since))
        for decision in decisions:
            exploits_started += 1
            target = records[decision.target]
            pending = PendingExploit(ExploitStage.STOPPING, decision, records[decision.source].seed,
                                     copy_job_name(name, decision.target, exploits_started), timestamp(now))  # fmt: skip
            # Its weights are about to be replaced: its metric no longer ranks it.
            records[decision.target] = target._replace(member=target.member._replace(metric=None), exploit=pending)
            events.append(Event(False, reasons.POPULATION_EXPLOIT, decision.reason))

    # 3. The parent's status: every member, the best one, phase and conditions.
    order = ranked([r.member for r in records], population.metric)
    best = order[0] if order else None
    phase, reason, message = _phase_summary(records, spec.run_policy.suspend)
    new: dict[str, Any] = {k: v for k, v in status.items() if k not in ("kopf",)}
    new["population"] = {
        "size": population.size,
        "metric": population.metric.value,
        "rounds": rounds,
        "exploits": exploits_started,
        "members": [record_status(r, name) for r in records],
        **({"bestMember": best.slot, "bestMetric": best.metric} if best is not None and best.metric is not None else {}),
    }
    if best is not None and best.metric is not None:
        message = f"{message}; best member {best.slot} ({population.metric.value} {best.metric:.4g})"
    conditions = list(new.get("conditions") or [])
    conditions = set_condition(conditions, ConditionType.RUNNING, phase == Phase.RUNNING, reason, message, now)
    if phase == Phase.SUSPENDED or any(c.get("type") == ConditionType.SUSPENDED.value for c in conditions):
        suspended_reason = reasons.SUSPENDED_BY_USER if phase == Phase.SUSPENDED else reasons.RESUMED
        conditions = set_condition(conditions, ConditionType.SUSPENDED, phase == Phase.SUSPENDED, suspended_reason, message, now)
    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        conditions = set_condition(conditions, ConditionType(phase.value), True, reason, message, now)
        new.setdefault("completionTime", timestamp(now))
    new["conditions"] = conditions
    new["phase"] = phase.value
    new["message"] = message
    new.setdefault("startTime", timestamp(now))
    if generation is not None:
        new["observedGeneration"] = generation

    delete = False
    ttl = spec.run_policy.ttl_seconds_after_finished
    finished_at = parse_timestamp(new.get("completionTime")) if phase in (Phase.SUCCEEDED, Phase.FAILED) else None
    if ttl is not None and finished_at is not None and (now - finished_at).total_seconds() >= ttl:
        delete = True
    suspended = frozenset(r.member.slot for r in records if r.exploit is not None)
    copies = tuple(
        (r.member.slot, r.exploit.decision.source, r.exploit.job) for r in records if r.exploit is not None and r.exploit.stage == ExploitStage.COPYING
    )
    return PopulationPlan(new, tuple(records), suspended, copies, tuple(events), delete, best)


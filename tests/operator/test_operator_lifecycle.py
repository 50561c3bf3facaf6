"""The SpiralJob state machine (:func:`lifecycle.decide`) on plain observations: no cluster, no clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from spiral.config import Role
from spiral_operator import reasons
from spiral_operator.lifecycle import (
    AutoscaleSample,
    ChildrenApplied,
    Event,
    Observation,
    PodObservation,
    RoleCounts,
    autoscale_sample,
    decide,
    pod_observation,
    pods_to_replace,
    set_condition,
    timestamp,
    with_children_applied,
    workload_counts,
)
from spiral_operator.progress import Progress
from spiral_operator.reasons import ConditionType
from spiral_operator.spec import SpecError, parse_spec

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
#: A discriminator-reward job, so every role (learners, replay, actors) takes part.
BASE: dict[str, Any] = {"image": "img", "reward": {"kind": "discriminator"}, "training": {"totalFrames": 1000}, "runPolicy": {"backoffLimit": 2}}
#: The l2 reward: a policy learner and actors only.
L2: dict[str, Any] = {**BASE, "reward": {"kind": "l2"}}
STATEFUL = (Role.POLICY_LEARNER, Role.DISCRIMINATOR_LEARNER, Role.REPLAY)


def spec(**run_policy: Any) -> Any:
    return parse_spec({**BASE, "runPolicy": {**BASE["runPolicy"], **run_policy}})


def ready(actors: int = 2) -> dict[Role, RoleCounts]:
    return {**{r: RoleCounts(1, 1) for r in STATEFUL}, Role.ACTOR: RoleCounts(2, actors)}


def pod(role: Role, *, restarts: int = 0, exit_code: int | None = None, generation: int = 0, uid: str = "u1",
        phase: str = "Running", terminating: bool = False) -> PodObservation:
    return PodObservation(f"job-{role.value}-0", f"{role.value}-{uid}", role, phase, restarts, generation, exit_code, terminating)


def healthy_pods(generation: int = 0, uid: str = "u1") -> list[PodObservation]:
    return [pod(r, generation=generation, uid=uid) for r in STATEFUL]


def obs(roles: dict[Role, RoleCounts] | None = None, pods: list[PodObservation] | None = None, progress: Progress | None = None) -> Observation:
    return Observation(roles if roles is not None else ready(), pods if pods is not None else healthy_pods(), progress)


def cond(status: dict[str, Any], type_: ConditionType) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_.value), None)


def test_new_job_is_created_then_running_once_ready() -> None:
    plan = decide(spec(), "job", {}, obs(roles={}, pods=[]), T0, generation=1)
    assert plan.status["phase"] == "Created"
    assert plan.status["startTime"] == timestamp(T0) and plan.status["observedGeneration"] == 1
    assert plan.status["actorSelector"] == "spiral.dev/job-name=job,spiral.dev/role=actor"
    assert not plan.restart and plan.stopped == frozenset() and plan.actor_replicas is None
    plan = decide(spec(), "job", plan.status, obs(), T0)
    assert plan.status["phase"] == "Running"
    assert cond(plan.status, ConditionType.RUNNING)["status"] == "True"
    assert [e.reason for e in plan.events] == [reasons.ALL_ROLES_READY]
    assert plan.status["actors"] == {"desired": 2, "ready": 2}


def test_running_condition_turns_false_when_a_role_is_not_ready() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    roles = {**ready(), Role.REPLAY: RoleCounts(1, 0)}
    plan = decide(spec(), "job", running, obs(roles=roles), T0 + dt.timedelta(seconds=5))
    running_cond = cond(plan.status, ConditionType.RUNNING)
    assert (running_cond["status"], running_cond["reason"]) == ("False", reasons.ROLES_NOT_READY)
    assert "replay 0/1" in running_cond["message"]


def test_learner_crash_triggers_one_coordinated_restart() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    crashed = [pod(Role.POLICY_LEARNER, restarts=1, exit_code=1), pod(Role.REPLAY, restarts=1, exit_code=2), pod(Role.DISCRIMINATOR_LEARNER)]
    plan = decide(spec(), "job", running, obs(pods=crashed), T0)
    assert plan.restart and plan.restart_generation == 1
    assert plan.status["restartCount"] == 1 and plan.status["phase"] == "Restarting"
    restarting = cond(plan.status, ConditionType.RESTARTING)
    assert (restarting["status"], restarting["reason"]) == ("True", reasons.COORDINATED_RESTART)
    assert "policy-learner pod job-policy-learner-0 (exit code 1" in restarting["message"] and "restart 1 of backoffLimit 2" in restarting["message"]
    assert [(e.warning, e.reason) for e in plan.events] == [(True, reasons.COORDINATED_RESTART)]
    # The same observation again (pods not yet replaced): nothing new is counted.
    again = decide(spec(), "job", plan.status, obs(pods=crashed), T0 + dt.timedelta(seconds=10))
    assert not again.restart and again.status["restartCount"] == 1 and again.status["phase"] == "Restarting"
    # New pods of generation 1, all ready: the restart completed.
    done = decide(spec(), "job", again.status, obs(pods=healthy_pods(generation=1, uid="u2")), T0 + dt.timedelta(seconds=20))
    assert done.status["phase"] == "Running"
    assert cond(done.status, ConditionType.RESTARTING)["reason"] == reasons.RESTART_COMPLETED


def test_old_generation_pods_and_actor_crashes_are_not_counted() -> None:
    status = {**decide(spec(), "job", {}, obs(), T0).status, "restartCount": 1}
    old = [pod(Role.REPLAY, restarts=3, exit_code=137, generation=0), *healthy_pods(generation=1, uid="u2")[:2]]
    plan = decide(spec(), "job", status, obs(pods=old), T0)
    assert not plan.restart and plan.status["restartCount"] == 1
    actor = PodObservation("job-actor-x", "a", Role.ACTOR, "Running", 5, 0, 1, False)
    plan = decide(spec(), "job", plan.status, obs(pods=[*healthy_pods(generation=1, uid="u2"), actor]), T0)
    assert not plan.restart


def test_exceeding_backoff_limit_fails_the_job_and_cleans_up() -> None:
    status = {**decide(spec(), "job", {}, obs(), T0).status, "restartCount": 2}
    crashed = [pod(Role.DISCRIMINATOR_LEARNER, restarts=1, exit_code=1, generation=2), *healthy_pods(generation=2)[::2]]
    plan = decide(spec(), "job", status, obs(pods=crashed), T0)
    assert plan.status["phase"] == "Failed" and not plan.restart
    failed = cond(plan.status, ConditionType.FAILED)
    assert failed["reason"] == reasons.BACKOFF_LIMIT_EXCEEDED and "backoffLimit is 2" in failed["message"]
    assert cond(plan.status, ConditionType.RUNNING)["status"] == "False"
    assert plan.status["completionTime"] == timestamp(T0)
    assert plan.stopped == frozenset({Role.ACTOR, Role.DISCRIMINATOR_LEARNER, Role.REPLAY})  # cleanPodPolicy Running


def test_pod_phase_failed_counts_as_a_crash() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    plan = decide(spec(), "job", running, obs(pods=[pod(Role.REPLAY, phase="Failed"), *healthy_pods()[:2]]), T0)
    assert plan.restart


@pytest.mark.parametrize(("policy", "stopped"), [("All", set(Role)), ("Running", set(Role) - {Role.POLICY_LEARNER}), ("None", set())])
def test_learner_exit_zero_succeeds_and_honours_clean_pod_policy(policy: str, stopped: set[Role]) -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    done = [pod(Role.POLICY_LEARNER, restarts=1, exit_code=0), *healthy_pods()[1:]]
    plan = decide(spec(cleanPodPolicy=policy), "job", running, obs(pods=done), T0)
    assert plan.status["phase"] == "Succeeded"
    assert cond(plan.status, ConditionType.SUCCEEDED)["reason"] == reasons.BUDGET_REACHED
    assert plan.stopped == frozenset(stopped)
    # Terminal: later passes keep cleaning up and never restart.
    later = decide(spec(cleanPodPolicy=policy), "job", plan.status, obs(pods=[pod(Role.REPLAY, restarts=9, exit_code=1)]), T0)
    assert later.status["phase"] == "Succeeded" and not later.restart and later.stopped == frozenset(stopped)


def test_exit_zero_of_a_terminating_or_stale_learner_is_not_success() -> None:
    status = {**decide(spec(), "job", {}, obs(), T0).status, "restartCount": 1}
    for learner in (pod(Role.POLICY_LEARNER, exit_code=0, terminating=True, generation=1), pod(Role.POLICY_LEARNER, exit_code=0, generation=0)):
        plan = decide(spec(), "job", status, obs(pods=[learner]), T0)
        assert plan.status["phase"] != "Succeeded"


def test_active_deadline_fails_the_job() -> None:
    status = decide(spec(activeDeadlineSeconds=60), "job", {}, obs(), T0).status
    assert decide(spec(activeDeadlineSeconds=60), "job", status, obs(), T0 + dt.timedelta(seconds=59)).status["phase"] == "Running"
    plan = decide(spec(activeDeadlineSeconds=60), "job", status, obs(), T0 + dt.timedelta(seconds=60))
    assert plan.status["phase"] == "Failed"
    assert cond(plan.status, ConditionType.FAILED)["reason"] == reasons.DEADLINE_EXCEEDED


def test_suspend_then_resume_restarts_the_deadline_clock() -> None:
    status = decide(spec(activeDeadlineSeconds=60), "job", {}, obs(), T0).status
    suspended = decide(spec(suspend=True, activeDeadlineSeconds=60), "job", status, obs(), T0 + dt.timedelta(seconds=30))
    assert suspended.status["phase"] == "Suspended"
    assert cond(suspended.status, ConditionType.SUSPENDED)["reason"] == reasons.SUSPENDED_BY_USER
    assert cond(suspended.status, ConditionType.RUNNING)["status"] == "False"
    # Crashes while suspended are not failures (pods are going away on purpose).
    quiet = decide(spec(suspend=True), "job", suspended.status, obs(pods=[pod(Role.REPLAY, restarts=2, exit_code=143)]), T0)
    assert not quiet.restart and quiet.events == ()
    resumed = decide(spec(activeDeadlineSeconds=60), "job", suspended.status, obs(roles={}, pods=[]), T0 + dt.timedelta(seconds=1000))
    assert resumed.status["phase"] == "Created" and resumed.status["startTime"] == timestamp(T0 + dt.timedelta(seconds=1000))
    suspended_cond = cond(resumed.status, ConditionType.SUSPENDED)
    assert (suspended_cond["status"], suspended_cond["reason"]) == ("False", reasons.RESUMED)


def test_ttl_after_finished_asks_for_deletion() -> None:
    finished = {"phase": "Succeeded", "completionTime": timestamp(T0)}
    assert not decide(spec(ttlSecondsAfterFinished=30), "job", finished, obs(), T0 + dt.timedelta(seconds=29)).delete_job
    plan = decide(spec(ttlSecondsAfterFinished=30), "job", finished, obs(), T0 + dt.timedelta(seconds=30))
    assert plan.delete_job and plan.events[0].reason == reasons.TTL_EXPIRED
    assert not decide(spec(), "job", finished, obs(), T0 + dt.timedelta(days=30)).delete_job


AUTOSCALE = {**BASE, "actor": {"replicas": 2, "minReplicas": 1, "maxReplicas": 3, "autoscaling": {"enabled": True, "cooldownSeconds": 15}}}


def _progress(learner_wait: float, actor_wait: float) -> Progress:
    return Progress(frames=10, policy_version=1, episode_reward=None, held_out_l2=None, queue_depth=0.0,
                    learner_wait_seconds=learner_wait, actor_wait_seconds=actor_wait)  # fmt: skip


def _passes(job: Any, roles: dict[Role, RoleCounts], rates: list[tuple[float, float]], every: float = 10.0, status: dict[str, Any] | None = None) -> Any:
    """One pass, then one every ``every`` seconds with the learner's wait counters growing at ``rates``
    ((learner, actors) seconds per second, one pair per interval); returns the last plan."""
    learner = actors = 0.0
    plan = decide(job, "job", status or {}, obs(roles=roles, progress=_progress(learner, actors)), T0)
    for i, (learner_rate, actor_rate) in enumerate(rates, start=1):
        learner, actors = learner + learner_rate * every, actors + actor_rate * every
        plan = decide(job, "job", plan.status, obs(roles=roles, progress=_progress(learner, actors)), T0 + dt.timedelta(seconds=i * every))
    return plan


@pytest.mark.parametrize(
    ("replicas", "ready_actors", "rates", "want"),
    [
        (2, 2, [(0.5, 0.0), (0.4, 0.0)], 3),  # the learner waits 40-50% of the time: one more actor
        (2, 2, [(0.0, 0.0), (0.5, 0.0)], None),  # hysteresis: one starving interval is not enough
        (2, 1, [(0.5, 0.0), (0.5, 0.0)], None),  # an actor is still starting: wait for it first
        (3, 3, [(0.5, 0.0), (0.5, 0.0)], None),  # at maxReplicas
        (2, 2, [(0.0, 1.5), (0.0, 1.3)], 1),  # the actors have more than one actor's worth of spare time: one fewer
        (2, 2, [(0.0, 0.3), (0.0, 1.5)], None),  # ... but only once: stay
        (1, 1, [(0.0, 1.5), (0.0, 1.5)], None),  # at minReplicas
        (2, 2, [(0.05, 0.6), (0.05, 0.6)], None),  # balanced: both wait a little
        (2, 2, [(0.5, 0.0)], None),  # the first rated interval only
    ],
    ids=["starving", "starved-once", "actor-starting", "at-max", "actors-wait", "waited-once", "at-min", "balanced", "first-interval"],
)
def test_autoscaler_rule(replicas: int, ready_actors: int, rates: list[tuple[float, float]], want: int | None) -> None:
    job = parse_spec({**AUTOSCALE, "actor": {**AUTOSCALE["actor"], "replicas": replicas}})
    plan = _passes(job, {**ready(), Role.ACTOR: RoleCounts(replicas, ready_actors)}, rates)
    assert plan.actor_replicas == want
    if want is not None:
        assert plan.status["lastScaleTime"] == timestamp(T0 + dt.timedelta(seconds=10 * len(rates)))
        assert any(e.reason == reasons.ACTORS_SCALED for e in plan.events)


def test_autoscaler_events_say_why() -> None:
    job = parse_spec(AUTOSCALE)
    up = _passes(job, ready(), [(0.5, 0.0), (0.25, 0.0)])
    assert [e.message for e in up.events if e.reason == reasons.ACTORS_SCALED] == [
        "actors 2 → 3: the policy learner waited for trajectories 50% and 25% of the last two intervals (scaleUpLearnerWaitRatio 0.2)"]
    down = _passes(job, ready(), [(0.0, 1.5), (0.0, 1.25)])
    assert [e.message for e in down.events if e.reason == reasons.ACTORS_SCALED] == [
        "actors 2 → 1: the actors waited 1.50 and 1.25 s/s for the policy learner to take their trajectories over the last two "
        "intervals (scaleDownActorWaitRatio 1.2: more than one actor's worth of spare time)"]
    assert down.status["autoscaling"] == {"sampleTime": "2026-01-01T12:00:20.000000Z", "learnerWaitSeconds": 0.0, "actorWaitSeconds": 27.5,
                                          "learnerWaitRatio": 0.0, "actorWaitRatio": 1.25}  # fmt: skip


def test_autoscaler_thresholds_are_the_spec_fields() -> None:
    eager = {**AUTOSCALE["actor"], "autoscaling": {"enabled": True, "cooldownSeconds": 15, "scaleUpLearnerWaitRatio": 0.05, "scaleDownActorWaitRatio": 3.0}}
    job = parse_spec({**AUTOSCALE, "actor": eager})
    assert _passes(job, ready(), [(0.1, 0.0), (0.1, 0.0)]).actor_replicas == 3
    assert _passes(job, ready(), [(0.0, 2.0), (0.0, 2.0)]).actor_replicas is None


def test_autoscaler_starts_over_when_the_learner_restarts() -> None:
    job = parse_spec(AUTOSCALE)
    before = _passes(job, ready(), [(0.0, 1.5)])
    # The new learner process counts from zero: no rate across the restart, then two new intervals are needed.
    restarted = decide(job, "job", before.status, obs(progress=_progress(0.0, 0.5)), T0 + dt.timedelta(seconds=20))
    assert "actorWaitRatio" not in restarted.status["autoscaling"] and restarted.actor_replicas is None
    again = decide(job, "job", restarted.status, obs(progress=_progress(0.0, 15.5)), T0 + dt.timedelta(seconds=30))
    assert again.status["autoscaling"]["actorWaitRatio"] == 1.5 and again.actor_replicas is None
    assert decide(job, "job", again.status, obs(progress=_progress(0.0, 30.5)), T0 + dt.timedelta(seconds=40)).actor_replicas == 1


def test_autoscaler_does_not_compare_readings_closer_than_a_second() -> None:
    job = parse_spec(AUTOSCALE)
    plan = _passes(job, ready(), [(0.0, 1.5)])
    # A create/update handler right after the timer: the same interval, not a second one.
    soon = decide(job, "job", plan.status, obs(progress=_progress(0.0, 15.2)), T0 + dt.timedelta(seconds=10.5))
    assert soon.status["autoscaling"] == plan.status["autoscaling"] and soon.actor_replicas is None


def test_autoscaler_cooldown_and_disabled() -> None:
    job = parse_spec(AUTOSCALE)  # cooldownSeconds 15; the passes below become Running at T0 and step at T0 + 20 s
    cooling = {"lastScaleTime": timestamp(T0 + dt.timedelta(seconds=20 - 14))}
    assert _passes(job, ready(), [(0.5, 0.0), (0.5, 0.0)], status=cooling).actor_replicas is None
    cooled = {"lastScaleTime": timestamp(T0 + dt.timedelta(seconds=20 - 15))}
    assert _passes(job, ready(), [(0.5, 0.0), (0.5, 0.0)], status=cooled).actor_replicas == 3
    assert _passes(spec(), ready(), [(0.5, 0.0), (0.5, 0.0)]).actor_replicas is None


def test_autoscaler_waits_a_cooldown_after_the_job_became_running() -> None:
    """Actors warming up make any learner wait: no step within cooldownSeconds of Running."""
    job = parse_spec({**AUTOSCALE, "actor": {**AUTOSCALE["actor"], "autoscaling": {"enabled": True, "cooldownSeconds": 25}}})
    assert _passes(job, ready(), [(0.9, 0.0), (0.9, 0.0)]).actor_replicas is None  # T0 + 20 s: too early
    assert _passes(job, ready(), [(0.9, 0.0), (0.9, 0.0), (0.9, 0.0)]).actor_replicas == 3  # T0 + 30 s


def test_progress_is_copied_into_status() -> None:
    plan = decide(spec(), "job", {}, obs(progress=Progress(1234, 7, -0.5, 0.02, 3.0)), T0)
    assert plan.status["progress"] == {"frames": 1234, "policyVersion": 7, "episodeReward": -0.5, "heldOutL2": 0.02,
                                       "queueDepth": 3.0, "updateTime": timestamp(T0)}


def test_set_condition_keeps_transition_time_unless_status_flips() -> None:
    first = set_condition([], ConditionType.RUNNING, True, "A", "a", T0)
    same = set_condition(first, ConditionType.RUNNING, True, "B", "b", T0 + dt.timedelta(hours=1))
    assert same[0]["lastTransitionTime"] == timestamp(T0) and same[0]["reason"] == "B"
    flipped = set_condition(same, ConditionType.RUNNING, False, "C", "c", T0 + dt.timedelta(hours=2))
    assert flipped[0]["lastTransitionTime"] == timestamp(T0 + dt.timedelta(hours=2))
    assert len(set_condition(flipped, ConditionType.FAILED, True, "D", "d", T0)) == 2


def test_pod_observation_reads_a_real_pod_shape() -> None:
    raw = {
        "metadata": {"name": "job-replay-0", "uid": "abc", "labels": {"spiral.dev/role": "replay"},
                     "annotations": {"spiral.dev/restart-generation": "3"}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "replay", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]},
    }
    assert pod_observation(raw) == PodObservation("job-replay-0", "abc", Role.REPLAY, "Running", 2, 3, 137, True)
    assert pod_observation({"metadata": {"labels": {"spiral.dev/role": "other"}}}) is None
    assert workload_counts(None) == RoleCounts(0, 0)
    assert workload_counts({"spec": {"replicas": 3}, "status": {}}) == RoleCounts(3, 0)


def test_created_condition_follows_the_children_written() -> None:
    first, event = with_children_applied({}, ChildrenApplied(created=("ConfigMap job-config", "Deployment job-actor")), T0)
    created = cond(first, ConditionType.CREATED)
    assert (created["status"], created["reason"]) == ("True", reasons.CHILDREN_CREATED)
    assert created["message"] == "created: ConfigMap job-config, Deployment job-actor"
    assert event == Event(False, reasons.CHILDREN_CREATED, created["message"])
    # A pass that writes nothing leaves the condition alone and posts nothing.
    same, event = with_children_applied(first, ChildrenApplied(), T0 + dt.timedelta(hours=1))
    assert same == first and event is None
    # ... but the first pass of a job whose children all exist already still sets it.
    fresh, event = with_children_applied({}, ChildrenApplied(), T0)
    assert cond(fresh, ConditionType.CREATED)["message"] == "children up to date" and event is None
    patched, event = with_children_applied(first, ChildrenApplied(patched=("StatefulSet job-replay",)), T0)
    assert cond(patched, ConditionType.CREATED)["message"] == "patched: StatefulSet job-replay" and event is not None


def test_pods_to_replace_are_the_older_learner_and_replay_pods() -> None:
    actor = PodObservation("job-actor-x", "a", Role.ACTOR, "Running", 0, 0, None, False)
    pods = [pod(Role.POLICY_LEARNER, generation=0), pod(Role.REPLAY, generation=0), actor]
    every_role = parse_spec(BASE).roles()
    assert pods_to_replace(pods, 1, every_role) == ["job-policy-learner-0", "job-replay-0"]
    assert pods_to_replace(pods, 0, every_role) == []
    assert pods_to_replace(pods, 1, parse_spec(L2).roles()) == ["job-policy-learner-0"]  # l2 runs no replay


# ------------------------------------------------------------------------ l2: two roles only ---


def l2_ready(actors: int = 2) -> dict[Role, RoleCounts]:
    return {Role.POLICY_LEARNER: RoleCounts(1, 1), Role.ACTOR: RoleCounts(2, actors)}


def test_l2_job_runs_without_replay_or_discriminator_learner() -> None:
    job = parse_spec(L2)
    stale_counts = {"replay": {"desired": 1, "ready": 0}, "discriminatorLearner": {"desired": 1, "ready": 0}}
    plan = decide(job, "job", stale_counts, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER)]), T0)
    assert plan.status["phase"] == "Running"
    running = cond(plan.status, ConditionType.RUNNING)
    assert (running["status"], running["message"]) == ("True", "policy-learner and actors are ready")
    # Only the job's roles are reported; counts left from other roles are dropped.
    assert {k for k in ("actors", "policyLearner", "discriminatorLearner", "replay") if k in plan.status} == {"actors", "policyLearner"}
    # A missing learner is still reported, but never a role the job does not run.
    plan = decide(job, "job", plan.status, obs(roles={**l2_ready(), Role.POLICY_LEARNER: RoleCounts(1, 0)}), T0)
    assert cond(plan.status, ConditionType.RUNNING)["message"] == "not ready: policy-learner 0/1"


def test_l2_job_restarts_only_its_policy_learner() -> None:
    job = parse_spec(L2)
    running = decide(job, "job", {}, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER)]), T0).status
    stray = pod(Role.REPLAY, restarts=4, exit_code=1)  # not a role of this job: ignored
    assert not decide(job, "job", running, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER), stray]), T0).restart
    plan = decide(job, "job", running, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER, restarts=1, exit_code=1)]), T0)
    assert plan.restart and plan.restart_generation == 1
    assert "crashed: restarting policy-learner from the checkpoint (restart 1 of backoffLimit 2)" in plan.status["message"]
    back = decide(job, "job", plan.status, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER, generation=1, uid="u2")]), T0)
    assert back.status["phase"] == "Running"
    assert [e.message for e in back.events if e.reason == reasons.RESTART_COMPLETED] == ["policy-learner is back after restart 1"]


@pytest.mark.parametrize(("policy", "stopped"), [("All", {Role.POLICY_LEARNER, Role.ACTOR}), ("Running", {Role.ACTOR}), ("None", set())])
def test_l2_job_cleans_up_only_its_own_roles(policy: str, stopped: set[Role]) -> None:
    job = parse_spec({**L2, "runPolicy": {"cleanPodPolicy": policy}})
    running = decide(job, "job", {}, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER)]), T0).status
    plan = decide(job, "job", running, obs(roles=l2_ready(), pods=[pod(Role.POLICY_LEARNER, restarts=1, exit_code=0)]), T0)
    assert plan.status["phase"] == "Succeeded" and plan.stopped == frozenset(stopped)


# ------------------------------------------------------------- conditions when the job ends ---


def _restarting_status() -> dict[str, Any]:
    running = decide(spec(), "job", {}, obs(), T0).status
    crashed = [pod(Role.REPLAY, restarts=1, exit_code=2), *healthy_pods()[:2]]
    return decide(spec(), "job", running, obs(pods=crashed), T0 + dt.timedelta(seconds=5)).status


def test_success_turns_running_and_restarting_false_and_reports_why() -> None:
    status = _restarting_status()
    assert cond(status, ConditionType.RESTARTING)["status"] == "True"
    done = [pod(Role.POLICY_LEARNER, restarts=1, exit_code=0, generation=1, uid="u2"), *healthy_pods(generation=1, uid="u2")[1:]]
    at = T0 + dt.timedelta(seconds=50)
    plan = decide(spec(), "job", status, obs(pods=done), at)
    assert plan.status["phase"] == "Succeeded" and plan.status["completionTime"] == timestamp(at)
    message = "policy learner job-policy-learner-0 exited with code 0 at its training budget"
    assert plan.status["message"] == message
    succeeded = cond(plan.status, ConditionType.SUCCEEDED)
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == ("True", reasons.BUDGET_REACHED, message)
    for type_ in (ConditionType.RUNNING, ConditionType.RESTARTING):
        closed = cond(plan.status, type_)
        assert (closed["status"], closed["reason"], closed["message"]) == ("False", reasons.JOB_FINISHED, "the job succeeded")
        assert closed["lastTransitionTime"] == timestamp(at)
    assert plan.events == (
        Event(False, reasons.BUDGET_REACHED, message),
        Event(False, reasons.PODS_CLEANED, "cleanPodPolicy Running: scaled actor, discriminator-learner, replay to zero"),
    )
    assert not plan.restart and plan.restart_generation == 1


def test_success_without_a_restart_adds_no_restarting_condition() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    plan = decide(spec(cleanPodPolicy="None"), "job", running, obs(pods=[pod(Role.POLICY_LEARNER, exit_code=0)]), T0)
    assert cond(plan.status, ConditionType.RESTARTING) is None
    assert cond(plan.status, ConditionType.RUNNING)["status"] == "False"
    assert [e.reason for e in plan.events] == [reasons.BUDGET_REACHED]  # nothing to clean up under cleanPodPolicy None


def test_failure_during_a_restart_closes_the_restarting_condition() -> None:
    status = _restarting_status()
    at = T0 + dt.timedelta(seconds=61)
    plan = decide(spec(activeDeadlineSeconds=60), "job", status, obs(pods=healthy_pods(generation=1, uid="u2")), at)
    assert plan.status["phase"] == "Failed" and plan.status["completionTime"] == timestamp(at)
    message = f"running since {timestamp(T0)}, longer than runPolicy.activeDeadlineSeconds=60"
    assert plan.status["message"] == message
    failed = cond(plan.status, ConditionType.FAILED)
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", reasons.DEADLINE_EXCEEDED, message)
    for type_ in (ConditionType.RUNNING, ConditionType.RESTARTING):
        closed = cond(plan.status, type_)
        assert (closed["status"], closed["reason"], closed["message"]) == ("False", reasons.JOB_FINISHED, "the job failed")
    assert [(e.warning, e.reason) for e in plan.events] == [(True, reasons.DEADLINE_EXCEEDED), (False, reasons.PODS_CLEANED)]


def test_failure_before_running_adds_no_running_condition() -> None:
    created = decide(spec(activeDeadlineSeconds=60), "job", {}, obs(roles={}, pods=[]), T0).status
    plan = decide(spec(activeDeadlineSeconds=60), "job", created, obs(roles={}, pods=[]), T0 + dt.timedelta(seconds=60))
    assert plan.status["phase"] == "Failed"
    assert cond(plan.status, ConditionType.RUNNING) is None and cond(plan.status, ConditionType.RESTARTING) is None


# ------------------------------------------------------------------------ missing roles ---


def test_a_missing_statefulset_keeps_a_new_job_waiting() -> None:
    roles = {r: c for r, c in ready().items() if r != Role.REPLAY}  # the replay StatefulSet does not exist yet
    plan = decide(spec(), "job", {}, obs(roles=roles, pods=healthy_pods()[:2]), T0)
    assert plan.status["phase"] == "Created" and plan.events == ()
    assert plan.status["replay"] == {"desired": 0, "ready": 0}
    assert cond(plan.status, ConditionType.RUNNING) is None  # never ran: no Running condition yet


def test_a_role_that_disappears_while_running_is_reported() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    roles = {r: c for r, c in ready().items() if r != Role.DISCRIMINATOR_LEARNER}
    plan = decide(spec(), "job", running, obs(roles=roles), T0 + dt.timedelta(seconds=5))
    assert plan.status["phase"] == "Running"  # the phase stays; the condition says what is missing
    running_cond = cond(plan.status, ConditionType.RUNNING)
    assert (running_cond["status"], running_cond["reason"]) == ("False", reasons.ROLES_NOT_READY)
    assert running_cond["message"] == "not ready: workloads not created yet"
    assert plan.status["message"] == "training"  # left from the last ready pass
    back = decide(spec(), "job", plan.status, obs(), T0 + dt.timedelta(seconds=10))
    back_cond = cond(back.status, ConditionType.RUNNING)
    assert back_cond["status"] == "True" and back_cond["message"] == "policy-learner, discriminator-learner, replay and actors are ready"
    assert back.events == ()  # still Running: no second AllRolesReady event


@pytest.mark.parametrize(
    ("actors", "ready_now", "message"),
    [
        (RoleCounts(2, 1), True, None),  # one actor is enough to train
        (RoleCounts(0, 0), True, None),  # scaled to zero actors on purpose
        (RoleCounts(2, 0), False, "not ready: actor 0/2"),
        (RoleCounts(1, 0), False, "not ready: actor 0/1"),
    ],
    ids=["one-of-two", "scaled-to-zero", "none-ready", "the-only-one-not-ready"],
)
def test_actors_count_as_ready_once_one_is(actors: RoleCounts, ready_now: bool, message: str | None) -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    plan = decide(spec(), "job", running, obs(roles={**ready(), Role.ACTOR: actors}), T0)
    running_cond = cond(plan.status, ConditionType.RUNNING)
    assert running_cond["status"] == ("True" if ready_now else "False")
    if message is not None:
        assert running_cond["message"] == message


def test_learners_short_of_pods_and_stale_pods_are_all_named() -> None:
    status = {**decide(spec(), "job", {}, obs(), T0).status, "restartCount": 1}
    roles = {**ready(), Role.POLICY_LEARNER: RoleCounts(1, 0), Role.ACTOR: RoleCounts(3, 0)}
    pods = [pod(Role.REPLAY, generation=0), *healthy_pods(generation=1, uid="u2")[:2]]
    plan = decide(spec(), "job", status, obs(roles=roles, pods=pods), T0)
    assert cond(plan.status, ConditionType.RUNNING)["message"] == (
        "not ready: policy-learner 0/1, actor 0/3, job-replay-0 (old restart generation)"
    )


# ------------------------------------------------------------------ crash accounting ---


def test_pod_restarts_are_accounted_per_pod_uid() -> None:
    status = {**decide(spec(), "job", {}, obs(), T0).status, "restartCount": 1}
    pods = [
        pod(Role.POLICY_LEARNER, restarts=2, generation=1, uid="u2"),
        pod(Role.REPLAY, restarts=4, generation=0),  # old generation: accounted, never counted as a crash
        pod(Role.DISCRIMINATOR_LEARNER, restarts=7, generation=1, terminating=True),  # going away: skipped
    ]
    plan = decide(spec(), "job", status, obs(pods=pods), T0)
    assert plan.status["podRestarts"] == {
        "job-policy-learner-0": {"uid": "policy-learner-u2", "restarts": 2},
        "job-replay-0": {"uid": "replay-u1", "restarts": 4},
    }


def test_a_replaced_pod_with_old_restarts_is_a_new_crash() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    accounted = {**running, "podRestarts": {"job-replay-0": {"uid": "replay-u1", "restarts": 1}}}
    same_pod = [pod(Role.REPLAY, restarts=1, exit_code=1), *healthy_pods()[:2]]
    assert not decide(spec(), "job", accounted, obs(pods=same_pod), T0).restart  # that restart was counted already
    new_pod = [pod(Role.REPLAY, restarts=1, exit_code=1, uid="u9"), *healthy_pods()[:2]]
    assert decide(spec(), "job", accounted, obs(pods=new_pod), T0).restart  # another pod: its restart is new


@pytest.mark.parametrize(
    ("crashing", "want"),
    [
        (pod(Role.REPLAY, restarts=0, exit_code=1), False),  # terminated but not restarted yet: the next pass decides
        (pod(Role.REPLAY, restarts=1, exit_code=None), False),  # restarted without a recorded exit code
        (pod(Role.REPLAY, restarts=1, exit_code=0), False),  # a replay that exits 0 neither crashed nor succeeded
        (pod(Role.DISCRIMINATOR_LEARNER, restarts=1, exit_code=0), False),
        (pod(Role.REPLAY, restarts=1, exit_code=137), True),
        (pod(Role.REPLAY, restarts=0, phase="Failed"), True),
    ],
    ids=["not-restarted", "no-exit-code", "replay-exit-0", "discriminator-exit-0", "oom-killed", "phase-failed"],
)
def test_what_counts_as_a_crash(crashing: PodObservation, want: bool) -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    others = [p for p in healthy_pods() if p.role != crashing.role]
    plan = decide(spec(), "job", running, obs(pods=[crashing, *others]), T0)
    assert plan.restart is want
    assert plan.status["phase"] == ("Restarting" if want else "Running")


def test_each_pass_keeps_the_bookkeeping_fields() -> None:
    status = {"kopf": {"progress": {}}, "phase": "NotAPhase", "restartCount": 3, "podRestarts": {}}
    plan = decide(spec(), "job", status, obs(pods=healthy_pods(generation=3)), T0)
    assert "kopf" not in plan.status and "observedGeneration" not in plan.status and "progress" not in plan.status
    assert plan.status["restartCount"] == 3 and plan.restart_generation == 3
    assert plan.status["phase"] == "Running"  # an unknown phase is read as Created, then every role is ready
    for key in ("policyLearner", "discriminatorLearner", "replay"):
        assert plan.status[key] == {"desired": 1, "ready": 1}


def test_workload_counts_of_partial_objects() -> None:
    assert workload_counts({}) == RoleCounts(0, 0)
    assert workload_counts({"spec": {"replicas": 2}, "status": {"readyReplicas": None}}) == RoleCounts(2, 0)
    assert workload_counts({"status": {"readyReplicas": 1}}) == RoleCounts(0, 1)


def test_pod_observation_picks_the_main_container_and_tolerates_missing_fields() -> None:
    raw = {
        "metadata": {"name": "job-policy-learner-0", "uid": "x", "labels": {"spiral.dev/role": "policy-learner"},
                     "annotations": {"spiral.dev/restart-generation": "not-a-number"}},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "sidecar", "restartCount": 1, "state": {"terminated": {"exitCode": 3}}},
            {"name": "policy-learner", "restartCount": 2, "state": {"terminated": {"exitCode": 0}},
             "lastState": {"terminated": {"exitCode": 1}}}]},
    }  # fmt: skip
    # The main container's *current* termination wins over its last one and over the sidecar's.
    assert pod_observation(raw) == PodObservation("job-policy-learner-0", "x", Role.POLICY_LEARNER, "Running", 3, 0, 0, False)
    bare = pod_observation({"metadata": {"labels": {"spiral.dev/role": "replay"}}})
    assert bare == PodObservation("", "", Role.REPLAY, "Pending", 0, 0, None, False)
    no_code = {"metadata": {"labels": {"spiral.dev/role": "replay"}},
               "status": {"containerStatuses": [{"name": "other", "state": {"terminated": {"reason": "Error"}}}]}}  # fmt: skip
    # The first container stands in when none is named after the role; a missing restartCount counts as 0.
    assert (pod_observation(no_code).exit_code, pod_observation(no_code).restarts) == (None, 0)
    assert pod_observation({"metadata": {}}) is None


# ----------------------------------------------------------- autoscaler readings and steps ---


def _reading(at: float, learner: float, actors: float, status: dict[str, Any] | None = None, job: Any = None) -> Any:
    job = job if job is not None else parse_spec(AUTOSCALE)
    return decide(job, "job", status or {}, obs(progress=_progress(learner, actors)), T0 + dt.timedelta(seconds=at))


def precise(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_autoscaler_rates_need_readings_at_least_a_second_apart() -> None:
    first = _reading(0.0, 0.0, 0.0)
    assert first.status["autoscaling"] == {"sampleTime": "2026-01-01T12:00:00.000000Z", "learnerWaitSeconds": 0.0, "actorWaitSeconds": 0.0}
    soon = _reading(0.999, 0.5, 0.5, first.status)
    assert soon.status["autoscaling"] == first.status["autoscaling"]
    second = _reading(1.0, 0.5, 0.25, first.status)  # exactly MIN_SAMPLE_SECONDS: compared
    assert second.status["autoscaling"] == {"sampleTime": "2026-01-01T12:00:01.000000Z", "learnerWaitSeconds": 0.5,
                                            "actorWaitSeconds": 0.25, "learnerWaitRatio": 0.5, "actorWaitRatio": 0.25}  # fmt: skip


def test_autoscaler_ratios_are_rounded_to_four_places() -> None:
    first = _reading(0.0, 0.0, 0.0)
    third = _reading(3.0, 1.0, 2.0, first.status)
    assert (third.status["autoscaling"]["learnerWaitRatio"], third.status["autoscaling"]["actorWaitRatio"]) == (0.3333, 0.6667)


@pytest.mark.parametrize(
    ("at", "learner", "actors"),
    [(-5.0, 9.0, 9.0), (10.0, 4.0, 9.0), (10.0, 9.0, 4.0)],
    ids=["clock-went-back", "learner-counter-dropped", "actor-counter-dropped"],
)
def test_autoscaler_starts_a_new_series_without_rates(at: float, learner: float, actors: float) -> None:
    first = _reading(0.0, 5.0, 5.0)
    plan = _reading(at, learner, actors, first.status)
    assert plan.status["autoscaling"] == {"sampleTime": precise(T0 + dt.timedelta(seconds=at)), "learnerWaitSeconds": learner,
                                          "actorWaitSeconds": actors}  # fmt: skip


@pytest.mark.parametrize(
    "stored",
    [{"sampleTime": "not a time", "learnerWaitSeconds": 1.0, "actorWaitSeconds": 1.0}, {"sampleTime": "2026-01-01T11:59:50Z"}, {}],
    ids=["bad-time", "missing-counters", "empty"],
)
def test_autoscaler_ignores_unreadable_stored_readings(stored: dict[str, Any]) -> None:
    plan = _reading(0.0, 2.0, 3.0, {"autoscaling": stored})
    assert plan.status["autoscaling"] == {"sampleTime": "2026-01-01T12:00:00.000000Z", "learnerWaitSeconds": 2.0, "actorWaitSeconds": 3.0}


def test_a_learner_without_wait_counters_leaves_the_stored_reading_alone() -> None:
    stored = {"sampleTime": "2026-01-01T11:59:50.000000Z", "learnerWaitSeconds": 1.0, "actorWaitSeconds": 1.0}
    plan = decide(parse_spec(AUTOSCALE), "job", {"autoscaling": stored}, obs(progress=Progress(5, 1, None, None, None)), T0)
    assert plan.status["autoscaling"] == stored and plan.actor_replicas is None
    assert plan.status["progress"] == {"frames": 5, "policyVersion": 1, "updateTime": timestamp(T0)}  # unknown fields are left out


@pytest.mark.parametrize(
    ("rates", "want"),
    [([(0.2, 0.0), (0.2, 0.0)], 3), ([(0.0, 1.2), (0.0, 1.2)], 1)],
    ids=["learner-wait-at-threshold", "actor-wait-at-threshold"],
)
def test_autoscaler_thresholds_are_inclusive(rates: list[tuple[float, float]], want: int) -> None:
    assert _passes(parse_spec(AUTOSCALE), ready(), rates).actor_replicas == want


def test_autoscaler_never_steps_twice_on_the_same_reading() -> None:
    job = parse_spec(AUTOSCALE)
    starting = {**ready(), Role.ACTOR: RoleCounts(2, 1)}  # the second actor is not ready: no step yet
    plan = _passes(job, starting, [(0.9, 0.0), (0.9, 0.0)])
    assert plan.actor_replicas is None and plan.status["autoscaling"]["learnerWaitRatio"] == 0.9
    # Half a second later the actor is ready, but the reading is the same one: nothing new to compare.
    again = decide(job, "job", plan.status, obs(progress=_progress(18.2, 0.0)), T0 + dt.timedelta(seconds=20.5))
    assert again.status["autoscaling"] == plan.status["autoscaling"] and again.actor_replicas is None
    later = decide(job, "job", again.status, obs(progress=_progress(27.0, 0.0)), T0 + dt.timedelta(seconds=30))
    assert later.actor_replicas == 3
    assert later.events == (Event(False, reasons.ACTORS_SCALED, "actors 2 → 3: the policy learner waited for trajectories 90% and 90% "
                                  "of the last two intervals (scaleUpLearnerWaitRatio 0.2)"),)  # fmt: skip


def test_autoscaler_only_steps_while_running_with_every_role_ready() -> None:
    job = parse_spec(AUTOSCALE)
    short = {**ready(), Role.REPLAY: RoleCounts(1, 0)}
    assert _passes(job, short, [(0.9, 0.0), (0.9, 0.0)]).actor_replicas is None


# ----------------------------------------------------------------------- messages and clocks ---


def test_coordinated_restart_message_names_every_restarted_role() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    plan = decide(spec(), "job", running, obs(pods=[pod(Role.REPLAY, restarts=1, exit_code=2), *healthy_pods()[:2]]), T0)
    assert plan.status["message"] == (
        "replay pod job-replay-0 (exit code 2, phase Running) crashed: restarting policy-learner, discriminator-learner and "
        "replay together from the checkpoint (restart 1 of backoffLimit 2)"
    )
    back = decide(spec(), "job", plan.status, obs(pods=healthy_pods(generation=1, uid="u2")), T0)
    assert back.events == (Event(False, reasons.RESTART_COMPLETED, "policy-learner, discriminator-learner and replay are back after restart 1"),)
    restarting = cond(back.status, ConditionType.RESTARTING)
    assert (restarting["status"], restarting["reason"], restarting["message"]) == ("False", reasons.RESTART_COMPLETED, "restart 1 completed")


def test_no_backoff_allowed_fails_on_the_first_crash() -> None:
    running = decide(spec(backoffLimit=0), "job", {}, obs(), T0).status
    plan = decide(spec(backoffLimit=0), "job", running, obs(pods=[pod(Role.REPLAY, restarts=1, exit_code=2), *healthy_pods()[:2]]), T0)
    assert plan.status["phase"] == "Failed" and not plan.restart
    assert plan.status["message"].startswith("replay pod job-replay-0 (exit code 2, phase Running) crashed after 0 coordinated restart(s)")


def test_start_time_is_set_once() -> None:
    first = decide(spec(), "job", {}, obs(roles={}, pods=[]), T0)
    later = decide(spec(), "job", first.status, obs(), T0 + dt.timedelta(seconds=100))
    assert later.status["startTime"] == timestamp(T0)


def test_ttl_needs_a_completion_time() -> None:
    assert not decide(spec(ttlSecondsAfterFinished=0), "job", {"phase": "Failed"}, obs(), T0).delete_job
    plan = decide(spec(ttlSecondsAfterFinished=0), "job", {"phase": "Failed", "completionTime": timestamp(T0)}, obs(), T0)
    assert plan.delete_job and plan.status["phase"] == "Failed"
    assert plan.events == (Event(False, reasons.TTL_EXPIRED, f"finished at {timestamp(T0)}; ttlSecondsAfterFinished=0 elapsed, deleting the job"),)


def test_suspending_says_how_to_continue() -> None:
    status = decide(spec(), "job", {}, obs(), T0).status
    plan = decide(spec(suspend=True), "job", status, obs(), T0)
    message = "runPolicy.suspend is true: every workload is scaled to zero; set it to false to continue from the checkpoint"
    assert plan.status["message"] == message and plan.events == (Event(False, reasons.SUSPENDED_BY_USER, message),)
    assert cond(plan.status, ConditionType.SUSPENDED)["status"] == "True"
    running = cond(plan.status, ConditionType.RUNNING)
    assert (running["status"], running["reason"], running["message"]) == ("False", reasons.JOB_SUSPENDED, "suspended")
    resumed = decide(spec(), "job", plan.status, obs(roles={}, pods=[]), T0)
    message = "runPolicy.suspend is false again: continuing from the latest checkpoint"
    assert resumed.status["message"] == message and resumed.events == (Event(False, reasons.RESUMED, message),)
    assert cond(resumed.status, ConditionType.SUSPENDED)["status"] == "False"


def test_children_created_and_patched_in_one_pass() -> None:
    status, event = with_children_applied({}, ChildrenApplied(created=("Service a",), patched=("StatefulSet b", "Deployment c")), T0)
    message = "created: Service a; patched: StatefulSet b, Deployment c"
    assert cond(status, ConditionType.CREATED)["message"] == message and event == Event(False, reasons.CHILDREN_CREATED, message)


def test_becoming_running_posts_one_normal_event() -> None:
    created = decide(spec(), "job", {}, obs(roles={}, pods=[]), T0).status
    plan = decide(spec(), "job", created, obs(), T0)
    assert plan.events == (Event(False, reasons.ALL_ROLES_READY, "all roles are ready: training"),)


def test_a_reading_at_the_same_instant_or_within_a_second_is_the_previous_one() -> None:
    previous = AutoscaleSample(T0, 1.0, 2.0, 0.5, 0.25)
    progress = _progress(3.0, 4.0)
    assert autoscale_sample(progress, previous, T0) is previous
    assert autoscale_sample(progress, previous, T0 + dt.timedelta(seconds=0.5)) is previous
    assert autoscale_sample(progress, previous, T0 + dt.timedelta(seconds=2)) == AutoscaleSample(
        T0 + dt.timedelta(seconds=2), 3.0, 4.0, 1.0, 1.0
    )


def test_a_learner_exporting_only_one_wait_counter_gets_no_reading() -> None:
    one_counter = Progress(5, 1, None, None, None, learner_wait_seconds=3.0, actor_wait_seconds=None)
    plan = decide(parse_spec(AUTOSCALE), "job", {}, obs(progress=one_counter), T0)
    assert "autoscaling" not in plan.status


def test_a_stored_reading_with_one_ratio_counts_as_unrated() -> None:
    """A hand-edited or partly written ``status.autoscaling``: never compared as if it had both rates."""
    job = parse_spec(AUTOSCALE)
    running = decide(job, "job", {}, obs(), T0).status
    partial = {"sampleTime": precise(T0 + dt.timedelta(seconds=10)), "learnerWaitSeconds": 0.0, "actorWaitSeconds": 0.0,
               "learnerWaitRatio": 0.9}  # fmt: skip
    # Within a second of it, the stored reading stays the current one and is written back without its lone ratio.
    soon = decide(job, "job", {**running, "autoscaling": partial}, obs(progress=_progress(0.1, 0.0)), T0 + dt.timedelta(seconds=10.5))
    assert soon.status["autoscaling"] == {k: v for k, v in partial.items() if k != "learnerWaitRatio"}
    # Ten seconds later the new reading has both rates, but the one before it does not: no step.
    plan = decide(job, "job", {**running, "autoscaling": partial}, obs(progress=_progress(9.0, 0.0)), T0 + dt.timedelta(seconds=20))
    assert plan.status["autoscaling"]["learnerWaitRatio"] == 0.9 and plan.actor_replicas is None


def test_an_accounted_pod_without_a_restart_count_starts_from_zero() -> None:
    running = decide(spec(), "job", {}, obs(), T0).status
    accounted = {**running, "podRestarts": {"job-replay-0": {"uid": "replay-u1"}}}
    plan = decide(spec(), "job", accounted, obs(pods=[pod(Role.REPLAY, restarts=1, exit_code=1), *healthy_pods()[:2]]), T0)
    assert plan.restart

"""spiral_operator.population (the pure population controller), its manifests and its gauges.

The KMock test (test_operator_kmock.py) runs the controller inside the real operator against an
API emulator; here each stage of an exploit is driven by hand, pass by pass, with a fixed clock.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from spiral.config import Hyperparameter
from spiral_operator.metrics import MemberFigures, create_operator_metrics, export_population, forget_population
from spiral_operator.population import (
    CopyJobState,
    MemberObservation,
    PopulationPlan,
    check_parent,
    copy_job_state,
    decide_population,
    initial_records,
    record_from_status,
    record_status,
)
from spiral_operator.population_manifests import render_copy_job, render_hyperparameters_config_map, render_member
from spiral_operator.progress import Progress
from spiral_operator.spec import SpecError, SpiralJobSpec, parse_spec, to_train_config

NAME, NS = "pbt", "ns1"
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
RAW: dict[str, Any] = {
    "image": "ghcr.io/spiral-k8s/spiral:0.1.0",
    "reward": {"kind": "l2"},
    "training": {"totalFrames": 100000, "seed": 7},
    "runPolicy": {"ttlSecondsAfterFinished": 60},
    "population": {"size": 2, "readyAfterUpdates": 10, "exploit": {"fraction": 0.5}},
}


def _spec(**overrides: Any) -> SpiralJobSpec:
    return parse_spec({**RAW, **overrides})


def _progress(updates: int, l2: float | None) -> Progress:
    return Progress(frames=None, policy_version=updates, episode_reward=None, held_out_l2=l2, queue_depth=None)


class Population:
    """Drives decide_population pass by pass, keeping status as the API server would."""

    def __init__(self, spec: SpiralJobSpec | None = None) -> None:
        self.spec = spec or _spec()
        self.cfg = to_train_config(self.spec, NAME, NS)
        self.status: dict[str, Any] = {}
        self.now = T0

    def step(self, seen: dict[int, MemberObservation], seconds: float = 10) -> PopulationPlan:
        self.now += dt.timedelta(seconds=seconds)
        plan = decide_population(self.spec, self.cfg, NAME, self.status, seen, self.now, 1)
        self.status = json.loads(json.dumps(plan.status))  # through JSON, as stored
        return plan

    def running(self, updates: int, l2: tuple[float, float]) -> PopulationPlan:
        return self.step({slot: MemberObservation("Running", progress=_progress(updates, l2[slot])) for slot in (0, 1)})


def _to_exploit(population: Population) -> PopulationPlan:
    population.running(5, (0.1, 0.3))
    return population.running(20, (0.1, 0.3))  # 20 updates since their start: ready (readyAfterUpdates 10)


def test_a_new_population_has_one_record_per_member_with_its_own_seed() -> None:
    records = initial_records(Population().cfg)
    assert [r.seed for r in records] == [7, 8]
    cfg = Population().cfg
    assert records[0].member.hyperparameters == {Hyperparameter.LEARNING_RATE: cfg.learner.learning_rate, Hyperparameter.ENTROPY_COEF: cfg.learner.entropy_coef}
    assert records[0].member.hyperparameters != records[1].member.hyperparameters


def test_no_member_is_replaced_before_ready_after_updates_on_its_own() -> None:
    population = Population()
    population.running(5, (0.1, 0.3))
    plan = population.running(9, (0.1, 0.3))  # 9 updates since their start: not ready
    assert plan.events == () and plan.suspended == frozenset()
    assert plan.status["phase"] == "Running" and plan.status["population"]["bestMember"] == 0


def test_an_exploit_stops_the_target_then_copies_then_resumes_it_with_the_source_seed() -> None:
    population = Population()
    plan = _to_exploit(population)
    assert plan.suspended == frozenset({1}) and plan.copy_jobs == ()
    assert [e.reason for e in plan.events] == ["PopulationExploit"]
    record = plan.status["population"]["members"][1]
    assert record["exploit"]["stage"] == "Stopping" and record["exploit"]["source"] == 0 and "metric" not in record

    # Suspended but its learner still checkpointing: still Stopping.
    stopping = {0: MemberObservation("Running", progress=_progress(25, 0.1)), 1: MemberObservation("Suspended", stopped=False)}
    assert population.step(stopping).copy_jobs == ()
    # Stopped: the copy Job is asked for, and again every pass until it finished (create-if-absent).
    stopped = {0: MemberObservation("Running", progress=_progress(26, 0.1)), 1: MemberObservation("Suspended", stopped=True)}
    plan = population.step(stopped)
    assert plan.copy_jobs == ((1, 0, "pbt-m1-exploit-1"),)
    copying = {**stopped, 1: MemberObservation("Suspended", stopped=True, copy_job=CopyJobState.ACTIVE)}
    assert population.step(copying).copy_jobs == ((1, 0, "pbt-m1-exploit-1"),)

    explored = population.status["population"]["members"][1]["exploit"]["hyperparameters"]
    done = {**stopped, 1: MemberObservation("Suspended", stopped=True, copy_job=CopyJobState.SUCCEEDED)}
    plan = population.step(done)
    assert plan.suspended == frozenset() and plan.copy_jobs == ()
    assert [e.reason for e in plan.events] == ["PopulationExplore"]
    member = plan.status["population"]["members"][1]
    assert member["seed"] == 7 and member["hyperparameters"] == explored
    assert [step["source"] for step in member["lineage"]] == [0] and "readySince" not in member and "exploit" not in member
    # Its first observation on the copied weights starts its readiness again; no second exploit at once.
    plan = population.running(30, (0.1, 0.3))
    assert plan.events == () and plan.status["population"]["members"][1]["readySince"] == 30


def test_a_failed_copy_resumes_the_target_unchanged_with_a_warning() -> None:
    population = Population()
    before = _to_exploit(population).status["population"]["members"][1]
    population.step({0: MemberObservation("Running", progress=_progress(21, 0.1)), 1: MemberObservation("Suspended", stopped=True)})
    plan = population.step({0: MemberObservation("Running"), 1: MemberObservation("Suspended", stopped=True, copy_job=CopyJobState.FAILED)})
    (event,) = plan.events
    assert event.warning and event.reason == "PopulationExploitFailed" and "pbt-m1-exploit-1" in event.message
    member = plan.status["population"]["members"][1]
    assert member["hyperparameters"] == before["hyperparameters"] and member["seed"] == before["seed"] and member["lineage"] == []
    assert plan.suspended == frozenset()


def test_a_member_that_finishes_while_stopping_cancels_the_exploit() -> None:
    population = Population()
    _to_exploit(population)
    plan = population.step({0: MemberObservation("Running"), 1: MemberObservation("Succeeded")})
    assert [e.reason for e in plan.events] == ["PopulationExploitFailed"] and not plan.events[0].warning
    assert plan.suspended == frozenset() and "exploit" not in plan.status["population"]["members"][1]


def test_the_parent_succeeds_when_every_member_finished_and_the_ttl_deletes_it() -> None:
    population = Population()
    population.running(5, (0.1, 0.3))
    plan = population.step({0: MemberObservation("Succeeded"), 1: MemberObservation("Failed")})
    assert plan.status["phase"] == "Succeeded" and plan.status["completionTime"] and not plan.delete_job
    assert population.step({0: MemberObservation("Succeeded"), 1: MemberObservation("Failed")}, seconds=61).delete_job
    population = Population()
    assert population.step({0: MemberObservation("Failed"), 1: MemberObservation("Failed")}).status["phase"] == "Failed"


def test_suspending_the_parent_suspends_every_member_and_decides_nothing() -> None:
    population = Population(_spec(runPolicy={"suspend": True}))
    population.running(5, (0.1, 0.3))
    plan = population.running(50, (0.1, 0.3))
    assert plan.events == () and plan.status["phase"] == "Suspended"


def test_a_status_record_round_trips_including_a_diverged_metric_and_an_exploit() -> None:
    population = Population()
    plan = _to_exploit(population)
    for record in plan.records:
        assert record_from_status(json.loads(json.dumps(record_status(record, NAME)))) == record
    diverged = plan.records[0]._replace(member=plan.records[0].member._replace(metric=math.inf))
    stored = record_status(diverged, NAME)
    assert stored["metricNotFinite"] is True and "metric" not in stored
    assert math.isnan(record_from_status(stored).member.metric)


@pytest.mark.parametrize(
    ("overrides", "name", "message"),
    [
        ({}, "a" * 39, "at most 38 characters"),
        ({"checkpoint": {"existingClaim": "shared"}}, NAME, "every member needs its own volume"),
        ({"hyperparametersConfigMap": "mine"}, NAME, "one ConfigMap per member"),
        (
            {"reward": {"kind": "discriminator"}, "population": {"size": 2, "metric": "d_fake", "exploit": {"fraction": 0.5}}},
            NAME,
            "valid on Kubernetes: held_out_l2, digit_confident",
        ),
    ],
)
def test_a_parent_the_operator_cannot_run_is_refused_by_name(overrides: dict[str, Any], name: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        check_parent(_spec(**overrides), name)


def test_a_member_is_the_parent_spec_with_its_seed_configmap_and_suspend() -> None:
    population = Population()
    record = initial_records(population.cfg)[1]
    member = render_member(RAW, NAME, NS, record, suspended=True, actor_replicas=3)
    assert member["metadata"]["name"] == "pbt-m1" and member["metadata"]["labels"]["spiral.dev/population"] == NAME
    spec = member["spec"]
    assert "population" not in spec and "ttlSecondsAfterFinished" not in spec["runPolicy"]
    assert spec["training"] == {"totalFrames": 100000, "seed": 8} and spec["runPolicy"]["suspend"] is True
    assert spec["hyperparametersConfigMap"] == "pbt-m1-hyperparameters" and spec["actor"]["replicas"] == 3
    assert parse_spec(spec).population.size == 0  # a member is an ordinary one-run SpiralJob
    config_map = render_hyperparameters_config_map(NAME, NS, record)
    assert json.loads(config_map["data"]["hyperparameters.json"]) == {k.value: v for k, v in record.member.hyperparameters.items()}


def test_the_copy_job_mounts_the_source_read_only_and_runs_on_its_node_for_read_write_once() -> None:
    job = render_copy_job(_spec(), NAME, NS, target=1, source=0, job_name="pbt-m1-exploit-3")
    pod = job["spec"]["template"]["spec"]
    assert job["apiVersion"] == "batch/v1" and pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 2
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["source"]["readOnly"] is True and "readOnly" not in mounts["target"]
    affinity = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert affinity["labelSelector"]["matchLabels"]["spiral.dev/job-name"] == "pbt-m0"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_copy_job_state_reads_the_job_conditions() -> None:
    assert copy_job_state(None) is None
    assert copy_job_state({"status": {}}) == CopyJobState.ACTIVE
    assert copy_job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == CopyJobState.SUCCEEDED
    assert copy_job_state({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == CopyJobState.FAILED


def test_population_gauges_follow_the_members_and_drop_what_is_gone() -> None:
    registry = CollectorRegistry()
    metrics = create_operator_metrics(registry)
    lr = {"learning_rate": 1e-3, "entropy_coef": 0.1}
    export_population(metrics, NS, NAME, [MemberFigures(0, 0.1, 50, lr, 0, None), MemberFigures(1, 0.3, 40, lr, 2, 0)], best=0)
    labels = {"namespace": NS, "job": NAME, "member": "1"}
    assert registry.get_sample_value("spiral_operator_population_member_metric", labels) == 0.3
    assert registry.get_sample_value("spiral_operator_population_member_source", labels) == 0
    assert registry.get_sample_value("spiral_operator_population_member_hyperparameter", {**labels, "name": "entropy_coef"}) == 0.1
    # Member 1 starts an exploit: no metric, one hyperparameter fewer; another job's series stay.
    export_population(metrics, NS, "other", [MemberFigures(0, 0.2, 5, {}, 0, None)], best=0)
    export_population(metrics, NS, NAME, [MemberFigures(0, 0.1, 60, lr, 0, None), MemberFigures(1, None, 40, {"learning_rate": 2e-3}, 2, 0)], best=0)
    assert registry.get_sample_value("spiral_operator_population_member_metric", labels) is None
    assert registry.get_sample_value("spiral_operator_population_member_hyperparameter", {**labels, "name": "entropy_coef"}) is None
    assert registry.get_sample_value("spiral_operator_population_member_source", {**labels, "member": "0"}) is None
    forget_population(metrics, NS, NAME)
    assert registry.get_sample_value("spiral_operator_population_member_updates", {**labels, "member": "0"}) is None
    assert registry.get_sample_value("spiral_operator_population_best_member", {"namespace": NS, "job": NAME}) is None
    assert registry.get_sample_value("spiral_operator_population_member_metric", {"namespace": NS, "job": "other", "member": "0"}) == 0.2

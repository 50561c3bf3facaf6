"""From creating a SpiralJob to a trained policy, with the real operator and the pods it asks for running as real processes.

What is real: the operator (``spiral_operator.handlers`` with its lifecycle rules, renderer and
status, on Kopf), and every pod exactly as rendered — the container's ``command``/``args`` and ``env``
run as ``spiral serve ROLE`` processes, with the rendered ConfigMap mounted at its ``mountPath``
(``subPath``, read-only), the checkpoint PVC as a folder that outlives pods, ``emptyDir``
scratch space, the gRPC probes on the rendered ports, and peers reaching each other only through
the rendered Services' names, ports and ``targetPort`` names. A wrong command, argument, variable,
mount or Service port therefore fails these tests: a pod that crashes, never gets ready or never
finds its peer.

What is emulated (see each module): the API server (KMock + :mod:`cluster_api`), the controllers
(:mod:`cluster_controllers`), the kubelet and kube-proxy (:mod:`kubelet`, :mod:`pod_sandbox`: one
network, mount and UTS namespace per pod, Unix sockets between them), CPU limits (the container is
paused for the rest of each 100 ms period) and time (probe periods, back-offs and grace periods ×0.1).

A population (issue #16) runs the same way: its member SpiralJobs' pods, and its exploit's copy
Job, whose one pod (``restartPolicy: Never``) runs ``spiral population copy-checkpoint`` between the
two members' volumes (the source's mounted read-only) and is Succeeded when it exits 0.

Not covered: the image (no container runtime here; the processes run from this checkout's
virtualenv with the Dockerfile's ``ENV``), security contexts and users, scheduling and affinity,
NetworkPolicy enforcement, Secret volumes (TLS) and exec probes, the chart's operator Deployment.

A job's phases are Created (its pods Pending) → Running → Succeeded; "Created" is this API's name
for a pending job.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cluster_harness import Cluster, namespaces_usable, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

_UNUSABLE = namespaces_usable()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if _UNUSABLE is not None:
        pytest.skip(f"the cluster-in-a-box needs Linux namespaces: {_UNUSABLE}")
    box = Cluster().start()
    try:
        yield box
    finally:
        box.stop()


def tiny_spec(**sections: Any) -> dict[str, Any]:
    """The default preset (without its pretraining) on 16×16 canvases, 8 environments per actor and an ample budget (tests end it)."""
    spec: dict[str, Any] = {
        "image": "ghcr.io/spiral-k8s/spiral:0.1.0",  # never pulled: the kubelet runs this checkout
        "preset": "default",
        "environment": {"canvasSize": 16, "gridSize": 8, "episodeLength": 3},
        "dataset": {"numShapes": 200},
        "pretrain": {"updates": 0},  # the preset pretrains first; these tests exercise the RL services
        "training": {"totalUpdates": 1_000_000, "evalEveryUpdates": 10, "checkpointEveryUpdates": 10, "logEveryUpdates": 10, "torchThreads": 1},
        # A CPU limit (enforced by the test kubelet) keeps the actors from taking every core of a
        # small machine; the learner then mostly waits for them, and the control plane keeps up.
        "actor": {"replicas": 1, "minReplicas": 1, "maxReplicas": 3, "environmentsPerActor": 8, "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}},
        "runPolicy": {"backoffLimit": 2},
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


class Recorder:
    """Samples a job's status every 0.1 s in the background: the phases it went through, every policy version seen."""

    def __init__(self, cluster: Cluster, job: str) -> None:
        self.cluster, self.job = cluster, job
        self.phases: list[str] = []
        self.versions: list[int] = []
        self.held_out_l2: list[float] = []
        self.pod_phases: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = self.cluster.status(self.job)
                pods = self.cluster.pods(self.job)
            except Exception:  # noqa: BLE001 - a sample missed is fine
                status, pods = {}, []
            phase = status.get("phase")
            if phase and (not self.phases or self.phases[-1] != phase):
                self.phases.append(phase)
            progress = status.get("progress") or {}
            if progress.get("policyVersion") is not None and (not self.versions or self.versions[-1] != progress["policyVersion"]):
                self.versions.append(progress["policyVersion"])
            if progress.get("heldOutL2") is not None and (not self.held_out_l2 or self.held_out_l2[-1] != progress["heldOutL2"]):
                self.held_out_l2.append(progress["heldOutL2"])
            for pod in pods:
                seen = self.pod_phases.setdefault(pod["metadata"]["uid"], [])
                pod_phase = (pod.get("status") or {}).get("phase", "Pending")
                if not seen or seen[-1] != pod_phase:
                    seen.append(pod_phase)
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def in_order(seen: list[str], wanted: list[str]) -> bool:
    """``wanted`` is a subsequence of ``seen``."""
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def job_processes(cluster: Cluster, job: str) -> list[int]:
    """PIDs of the sandboxes and containers of ``job``'s pods (running ones)."""
    pids = []
    for runtime in list(cluster.kubelet.pods.values()):  # type: ignore[union-attr]
        if runtime.name.startswith(f"{job}-") and runtime.sandbox is not None and runtime.sandbox.poll() is None:
            pids.append(runtime.sandbox.pid)
            if runtime.container_pid:
                pids.append(runtime.container_pid)
    return pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def delete_and_check_everything_stops(cluster: Cluster, job: str) -> None:
    pids = job_processes(cluster, job)
    assert pids, "the job's pods should be running before the deletion"
    cluster.delete_job(job)
    wait_for(lambda: cluster.job(job) is None, 20, f"SpiralJob {job} to be deleted")
    wait_for(lambda: not cluster.pods(job), 40, f"the garbage collector and the kubelet to remove {job}'s pods")
    wait_for(lambda: not any(alive(pid) for pid in pids), 20, f"every process of {job} to exit")
    for kind, api in (("StatefulSet", "apps/v1"), ("Deployment", "apps/v1"), ("ConfigMap", "v1")):
        name = f"{job}-policy-learner" if kind == "StatefulSet" else f"{job}-actor" if kind == "Deployment" else f"{job}-config"
        assert cluster.obj(api, kind, name) is None, f"{kind} {name} outlived its SpiralJob"


def held_out_evaluations(cluster: Cluster, job: str) -> list[float]:
    """The held-out L2 of every evaluation in the learner's run log (``metrics.jsonl`` on the checkpoint volume)."""
    log = cluster.pvc_folder(f"{job}-checkpoints") / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return [r["eval/held_out_l2"] for r in records if "eval/held_out_l2" in r]


def metric(cluster: Cluster, pod: str, name: str) -> float:
    return cluster.pod_metrics(pod).get(name, 0.0)


def test_l2_job_trains_scales_restarts_from_its_checkpoint_and_finishes(cluster: Cluster) -> None:
    job, learner = "l2", "l2-policy-learner-0"
    recorder = Recorder(cluster, job)
    try:
        cluster.create_job(job, tiny_spec())
        # An l2 job runs a policy learner and actors only.
        wait_for(lambda: cluster.obj("apps/v1", "StatefulSet", f"{job}-policy-learner"), 10, "the policy learner's StatefulSet")
        assert cluster.obj("apps/v1", "StatefulSet", f"{job}-replay") is None and cluster.obj("apps/v1", "StatefulSet", f"{job}-discriminator-learner") is None

        # Running, with progress from the learner's /metrics that grows.
        status = wait_for(lambda: (s := cluster.status(job)).get("phase") == "Running" and (s.get("progress") or {}).get("frames") and s,
                          90, "Running with progress", explain=lambda: cluster.debug_dump(job))  # fmt: skip
        first = status["progress"]
        later = wait_for(lambda: (p := cluster.status(job)["progress"])["frames"] > first["frames"] and p["policyVersion"] > first["policyVersion"] and p,
                         30, "frames and version to grow")  # fmt: skip
        assert later["heldOutL2"] > 0
        # Evaluations keep coming (every 5 updates), in the run log on the checkpoint volume.
        wait_for(lambda: len(held_out_evaluations(cluster, job)) >= 2, 30, "two held-out evaluations in the run log")

        # `kubectl scale sj l2 --replicas 2`: one more actor pod, whose process plays with the learner's weights.
        before = {p["metadata"]["name"] for p in cluster.pods(job, "actor")}
        scale = cluster.scale(job, 2)
        assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
        new_actor = wait_for(lambda: next(iter({p["metadata"]["name"] for p in cluster.pods(job, "actor")} - before), None), 20, "a new actor pod")
        wait_for(lambda: cluster.status(job)["actors"] == {"desired": 2, "ready": 2}, 60, "two ready actors", explain=lambda: cluster.debug_dump(job))
        wait_for(lambda: metric(cluster, new_actor, "spiral_actor_frames_total") > 0, 30, "the new actor to play with the learner's weights")

        # The learner process dies: one coordinated restart, counted against backoffLimit, from the checkpoint.
        old_uid = cluster.pods(job, "policy-learner")[0]["metadata"]["uid"]
        version_at_kill = cluster.status(job)["progress"]["policyVersion"]
        assert (cluster.pvc_folder(f"{job}-checkpoints") / "checkpoints" / "latest.pt").exists()
        os.kill(cluster.container_pid(learner), signal.SIGKILL)  # type: ignore[arg-type]
        wait_for(lambda: cluster.status(job).get("restartCount") == 1, 30, "the coordinated restart")
        new_pod = wait_for(lambda: next((p for p in cluster.pods(job, "policy-learner") if p["metadata"]["uid"] != old_uid), None), 30, "a new learner pod")
        assert new_pod["metadata"]["annotations"]["spiral.dev/restart-generation"] == "1"
        wait_for(lambda: cluster.status(job).get("phase") == "Running" and cluster.status(job)["progress"]["policyVersion"] > version_at_kill,
                 60, "training to resume past the version at the crash", explain=lambda: cluster.debug_dump(job))  # fmt: skip
        assert metric(cluster, learner, 'spiral_learner_restarts_total{role="policy-learner"}') >= 1  # it resumed from the checkpoint
        assert cluster.status(job)["restartCount"] == 1 and "CoordinatedRestart" in cluster.event_reasons(job)

        # A smaller budget (a config change rolls the pods): the learner resumes, reaches it and exits 0.
        updates = metric(cluster, learner, "spiral_learner_updates_total")
        cluster.patch_job(job, {"training": {"totalUpdates": int(updates) + 10}})
        wait_for(lambda: cluster.status(job).get("phase") == "Succeeded", 90, "Succeeded", explain=lambda: cluster.debug_dump(job))
        succeeded = next(c for c in cluster.status(job)["conditions"] if c["type"] == "Succeeded")
        assert succeeded["reason"] == "BudgetReached"
        wait_for(lambda: recorder.phases[-1] == "Succeeded", 5, "the recorder to see Succeeded")
        assert recorder.versions == sorted(recorder.versions), f"the policy version went backwards: {recorder.versions}"
        assert in_order(recorder.phases, ["Created", "Running", "Restarting", "Running", "Succeeded"]), recorder.phases
        assert any(in_order(seen, ["Pending", "Running"]) for seen in recorder.pod_phases.values()), recorder.pod_phases
        assert cluster.status(job)["restartCount"] == 1
        assert not cluster.errors, cluster.errors

        delete_and_check_everything_stops(cluster, job)
    finally:
        recorder.stop()


def test_discriminator_job_runs_every_role_to_its_budget(cluster: Cluster) -> None:
    job = "gan"
    recorder = Recorder(cluster, job)
    try:
        cluster.create_job(job, tiny_spec(
            reward={"kind": "discriminator"},
            discriminator={"batchSize": 8},
            replay={"buffer": {"minSizeToSample": 8}},
            training={"maxWallMinutes": 0.35},  # the budget: 21 s of training, then the learner exits 0
        ))  # fmt: skip
        status = wait_for(lambda: (s := cluster.status(job)).get("phase") == "Running" and s, 120, "Running", explain=lambda: cluster.debug_dump(job))
        assert status["replay"] == {"desired": 1, "ready": 1} and status["discriminatorLearner"] == {"desired": 1, "ready": 1}
        # The actors' final canvases reach the replay buffer, the discriminator learns from it, and
        # the policy learner scores with its weights.
        wait_for(lambda: any(v > 0 for k, v in cluster.pod_metrics(f"{job}-replay-0").items() if k.startswith("spiral_replay_inserts_total")),
                 30, "inserts into the replay buffer")  # fmt: skip
        wait_for(lambda: metric(cluster, f"{job}-discriminator-learner-0", "spiral_discriminator_updates_total") > 0, 30, "discriminator updates")
        wait_for(lambda: cluster.status(job).get("phase") == "Succeeded", 120, "Succeeded", explain=lambda: cluster.debug_dump(job))
        wait_for(lambda: recorder.phases[-1] == "Succeeded", 5, "the recorder to see Succeeded")
        assert in_order(recorder.phases, ["Created", "Running", "Succeeded"]), recorder.phases
        assert recorder.versions and recorder.versions == sorted(recorder.versions)
        assert cluster.status(job)["progress"]["frames"] > 0 and not cluster.errors, cluster.errors
        delete_and_check_everything_stops(cluster, job)
    finally:
        recorder.stop()


def scaling_events(cluster: Cluster, job: str) -> list[str]:
    return [e.get("message", "") for e in cluster.events(job) if e.get("reason") == "ActorsScaled"]


def test_autoscaler_adds_an_actor_for_a_starving_learner_and_removes_one_when_actors_wait(cluster: Cluster) -> None:
    """Starving: each actor gets 250m of CPU, so the learner waits for trajectories. Waiting actors:
    the same two actors unthrottled feed the learner faster than it learns. Each step is an Event
    with the reason, and replicas stay within [minReplicas, maxReplicas]."""
    job = "auto"
    throttled = {"limits": {"cpu": "250m", "memory": "1Gi"}}
    actor = {"replicas": 1, "minReplicas": 1, "maxReplicas": 2, "autoscaling": {"enabled": True, "cooldownSeconds": 3}, "resources": throttled}
    cluster.create_job(job, tiny_spec(actor=actor))
    wait_for(lambda: cluster.status(job).get("phase") == "Running", 120, "Running", explain=lambda: cluster.debug_dump(job))
    wait_for(lambda: cluster.job(job)["spec"]["actor"]["replicas"] == 2, 60, "the autoscaler to add an actor", explain=lambda: cluster.debug_dump(job))
    up = wait_for(lambda: scaling_events(cluster, job), 10, "the ActorsScaled event")
    assert up[0].startswith("actors 1 → 2: the policy learner waited for trajectories"), up

    # Unthrottled, two actors produce faster than the learner takes: they wait on it, one goes.
    cluster.patch_job(job, {"actor": {"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}})
    down = wait_for(lambda: [m for m in scaling_events(cluster, job) if "the actors waited" in m], 180,
                    "the autoscaler to remove an actor", explain=lambda: cluster.debug_dump(job))  # fmt: skip
    assert down[0].startswith("actors 2 → 1: the actors waited") and "s/s for the policy learner" in down[0], down
    wait_for(lambda: cluster.status(job)["actors"]["desired"] == 1, 20, "the Deployment at one actor")
    # Never beyond [minReplicas, maxReplicas]: each message reads "actors FROM → TO: why".
    assert all(1 <= int(m.split()[3].rstrip(":")) <= 2 for m in scaling_events(cluster, job)), scaling_events(cluster, job)
    assert not cluster.errors, cluster.errors
    delete_and_check_everything_stops(cluster, job)


def test_a_population_copies_the_better_members_checkpoint_in_a_job_and_the_worse_resumes_from_it(cluster: Cluster) -> None:
    """Issue #16 end to end: a parent of two members, each a SpiralJob with its own pods. When both
    are measured and ready, the worse one is suspended (its learner checkpoints on SIGTERM), a
    batch/v1 Job runs ``spiral population copy-checkpoint`` between the two real volumes, and the
    target resumes from the copy with the source's seed and its explored hyperparameters."""
    from spiral.learning.checkpoint import load_checkpoint

    job = "pbt"
    cluster.create_job(job, tiny_spec(
        # A few pretraining updates make each member's greedy policy paint (from scratch both paint
        # blank at first: equal held-out L2, a tie, and a tie never exploits).
        pretrain={"updates": 150, "batchSize": 16},
        training={"evalEveryUpdates": 5, "checkpointEveryUpdates": 5},
        population={"size": 2, "readyAfterUpdates": 10, "exploit": {"fraction": 0.5}},
    ))  # fmt: skip
    members = [f"{job}-m0", f"{job}-m1"]
    wait_for(lambda: all(cluster.status(m).get("phase") == "Running" for m in members), 150, "both members Running",
             explain=lambda: cluster.debug_dump(members[0]) + cluster.debug_dump(members[1]))  # fmt: skip
    assert cluster.obj("apps/v1", "StatefulSet", f"{job}-policy-learner") is None  # the parent runs no workloads of its own

    record = wait_for(lambda: next((m for m in cluster.status(job)["population"]["members"] if m.get("exploit")), None), 150,
                      "an exploit to start", explain=lambda: json.dumps(cluster.status(job), indent=1))  # fmt: skip
    target, source, copy_job = record["slot"], record["exploit"]["source"], record["exploit"]["job"]
    target_name = members[target]
    assert cluster.job(target_name)["spec"]["runPolicy"]["suspend"] is True
    assert cluster.job(members[source])["spec"]["runPolicy"]["suspend"] is False  # the source keeps training

    completed = wait_for(lambda: (j := cluster.obj("batch/v1", "Job", copy_job)) and (j.get("status") or {}).get("succeeded") and j, 120,
                         "the copy Job to succeed", explain=lambda: json.dumps(cluster.obj("batch/v1", "Job", copy_job), indent=1))  # fmt: skip
    assert completed["metadata"]["ownerReferences"][0]["name"] == job
    copy_pod = next(p for p in cluster.kubelet.pods.values() if p.name.startswith(f"{copy_job}-"))  # type: ignore[union-attr]
    assert "copied latest.pt from /source/checkpoints to /target/checkpoints" in copy_pod.log_path.read_text()
    copied = load_checkpoint(cluster.pvc_folder(f"{target_name}-checkpoints") / "checkpoints" / "latest.pt")
    copied_updates = int(copied["counters"]["updates"])
    assert copied_updates >= 10  # the source's weights: it was ready (10 updates) when it was chosen

    resumed = wait_for(lambda: (j := cluster.job(target_name)) and j["spec"]["runPolicy"]["suspend"] is False and j, 60, "the target to resume")
    parent = cluster.status(job)["population"]
    assert resumed["spec"]["training"]["seed"] == parent["members"][source]["seed"]
    assert [step["source"] for step in parent["members"][target]["lineage"]] == [source]
    explored = parent["members"][target]["hyperparameters"]
    assert explored == record["exploit"]["hyperparameters"] != record["hyperparameters"]  # perturbed from the source's
    config_map = cluster.obj("v1", "ConfigMap", f"{target_name}-hyperparameters")
    assert json.loads(config_map["data"]["hyperparameters.json"]) == explored
    # Its learner starts from the copy: its policy version continues from the source's counter.
    wait_for(lambda: cluster.status(target_name).get("phase") == "Running" and cluster.status(target_name)["progress"]["policyVersion"] >= copied_updates,
             120, "the target to train on from the copied checkpoint", explain=lambda: cluster.debug_dump(target_name))  # fmt: skip
    # ... and applies the explored values (read from its mounted ConfigMap, exported by name).
    learner_metrics = cluster.pod_metrics(f"{target_name}-policy-learner-0")
    for name, value in explored.items():
        assert learner_metrics[f'spiral_learner_hyperparameter{{hyperparameter="{name}"}}'] == pytest.approx(value)
    assert {"PopulationExploit", "PopulationExplore"} <= set(cluster.event_reasons(job))
    assert not cluster.errors, cluster.errors
    delete_and_check_everything_stops(cluster, job)

"""``spiral train`` on one machine: every SPIRAL service as its own process on loopback.

:func:`run_local` writes the run's config to ``<output_dir>/launch/config.yaml``, picks free ports
and starts — with the very command a Kubernetes pod runs —
``python -m spiral serve ROLE --config … --grpc-port P --metrics-port M --threads N --resume|--no-resume
[--actor-id actor-i] --set services.…_address=…`` for every role of ``TrainConfig.roles()``: the
policy learner, ``num_actors`` actors and, when ``reward.kind`` is ``discriminator``, the replay
buffer and the discriminator learner (with the ``l2`` reward nothing would read them, and a 2-core
machine has no cycles to spare). It then shows progress (:class:`spiral.progress.TrainProgress`) from
the policy learner's ``GetStatus`` and ``/metrics`` until the budget is spent, passes the children's
warnings and "resumed from" lines on to the terminal, and at the end draws ``curves.png`` and prints
the same summary as ``--single-process``.

Process hygiene: each child runs in its own session (so a terminal's Ctrl-C reaches only the
launcher, which then stops the children in order) and has ``PR_SET_PDEATHSIG = SIGTERM`` (so it
stops, checkpointing, if the launcher dies without cleaning up). Ctrl-C / SIGTERM → SIGTERM to every
child (each checkpoints), SIGKILL to any still alive after a grace period, exit 130 (printing where
the checkpoint is and how to resume). A child that crashes is restarted (like a pod's
``restartPolicy``) up to :data:`MAX_RESTARTS` times within any :data:`RESTART_WINDOW_SECONDS`
(:mod:`spiral.launch.restarts`), the reason printed; learners resume from their checkpoints. A
child that never comes up, or keeps crashing, makes the run exit 1 with its last error lines. Budget spent → the policy learner exits 0, the actors and the
discriminator learner follow, the replay buffer is stopped (checkpointing), and ``run_local``
returns. Child logs go to ``<output_dir>/logs/<name>.log``.

:class:`LocalCluster` is the process manager without the display; the fault tests drive it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import yaml

from spiral.config import Role, TrainConfig
from spiral.launch.child_logs import LogTail, last_error_lines, notable
from spiral.launch.progress import LearnerPoller, figures_from_snapshot
from spiral.launch.restarts import MAX_RESTARTS, RESTART_WINDOW_SECONDS, RestartBudget, exit_reason
from spiral.learning.budget import budget_of
from spiral.learning.plots import write_run_curves
from spiral.learning.run_log import METRICS_FILE, RunSummary
from spiral.process import StopFlag
from spiral.progress import DEFAULT_EVERY_SECONDS, RunOutput, TrainProgress

log = logging.getLogger(__name__)

#: Restarts of one crashed child before the launcher gives up on the run.
#: Seconds children get to checkpoint and exit after SIGTERM before SIGKILL (the learners' own
#: shutdown grace is 5 s; a checkpoint of the paper-size model takes about 1 s).
STOP_GRACE_SECONDS = 20.0
#: After the policy learner finished, seconds the others get to notice and exit by themselves.
FINISH_GRACE_SECONDS = 15.0
#: Seconds the servers get to come up (importing torch on a busy machine is slow).
READY_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.5


class ChildSpec(NamedTuple):
    """One service process: its name (``actor-0``…), role, ports and torch threads."""

    name: str
    role: Role
    grpc_port: int
    metrics_port: int
    threads: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


class ClusterPlan(NamedTuple):
    """Every process of a run; ``services`` are started (and awaited) before the actors."""

    services: tuple[ChildSpec, ...]
    actors: tuple[ChildSpec, ...]

    @property
    def all(self) -> tuple[ChildSpec, ...]:
        return self.services + self.actors

    def by_role(self, role: Role) -> ChildSpec | None:
        return next((c for c in self.all if c.role == role), None)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on loopback (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def plan_cluster(cfg: TrainConfig, *, threads_per_process: int = 1) -> ClusterPlan:
    """Names, roles and free ports of every process of ``cfg``'s run (pure apart from the ports)."""
    roles = [role for role in cfg.roles() if role != Role.ACTOR]  # servers first, in start order
    ports = free_ports(2 * (len(roles) + cfg.num_actors))
    services = tuple(ChildSpec(role.value, role, ports[2 * i], ports[2 * i + 1], threads_per_process) for i, role in enumerate(roles))
    offset = 2 * len(roles)
    actors = tuple(
        ChildSpec(f"actor-{i}", Role.ACTOR, ports[offset + 2 * i], ports[offset + 2 * i + 1], threads_per_process) for i in range(cfg.num_actors)
    )
    return ClusterPlan(services, actors)


def address_overrides(plan: ClusterPlan) -> list[str]:
    """``--set services.<peer>_address=…`` for every service in the plan."""
    fields = {Role.POLICY_LEARNER: "policy_learner_address", Role.DISCRIMINATOR_LEARNER: "discriminator_learner_address", Role.REPLAY: "replay_address"}
    sets = []
    for spec in plan.services:
        sets += ["--set", f"services.{fields[spec.role]}={spec.address}"]
    return sets


def child_command(spec: ChildSpec, config_path: Path, plan: ClusterPlan, ready_file: Path, *, resume: bool) -> list[str]:
    """The ``spiral serve`` command line of one child: the same entry point a pod runs."""
    actor_id = ["--actor-id", spec.name] if spec.role == Role.ACTOR else []
    return [
        sys.executable, "-m", "spiral", "serve", spec.role.value,
        "--config", str(config_path),
        "--grpc-port", str(spec.grpc_port),
        "--metrics-port", str(spec.metrics_port),
        "--ready-file", str(ready_file),
        "--parent-pid", str(os.getpid()),
        "--threads", str(spec.threads),
        "--resume" if resume else "--no-resume",
        *actor_id,
        *address_overrides(plan),
    ]  # fmt: skip


def child_env(spec: ChildSpec) -> dict[str, str]:
    """Variables for the child's OpenMP/MKL runtimes: read when torch loads, before any flag is
    parsed, so they cannot be command-line options."""
    return {"OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads)}


class Child:
    """A running (or finished) child process and its restart history. Not thread-safe."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.restart_budget = RestartBudget()  # restarts within the last RESTART_WINDOW_SECONDS
        self.stopping = False  # the launcher asked it to stop: its exit is expected
        self.exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class LocalCluster:
    """Starts, watches, restarts and stops the processes of one local run. Not thread-safe:
    drive it from the main thread (PR_SET_PDEATHSIG follows the thread that forked)."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = True, threads_per_process: int = 1, extra_env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.launch_dir = self.out / "launch"
        self.logs_dir = self.out / "logs"
        self.config_path = self.launch_dir / "config.yaml"
        self.plan = plan_cluster(cfg, threads_per_process=threads_per_process)
        self.resume = resume
        self.extra_env = dict(extra_env or {})
        self.children = {spec.name: Child(spec) for spec in self.plan.all}

    # ------------------------------------------------------------------------------ start ---

    def ready_file(self, name: str) -> Path:
        return self.launch_dir / "ready" / f"{name}.json"

    def write_config(self) -> Path:
        """The children's config: the run's own, except that pretraining (during which the actors
        only wait) may use every core of this machine unless ``pretrain.threads`` says otherwise."""
        self.launch_dir.mkdir(parents=True, exist_ok=True)
        data = self.cfg.model_dump(mode="json")
        if self.cfg.pretrain.updates and self.cfg.pretrain.threads is None:
            data["pretrain"]["threads"] = os.cpu_count() or 1
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.config_path

    def start(self, *, wait_ready: bool = True) -> None:
        """Write the config, start the services, wait until they serve, then start the actors.

        Raises:
            RuntimeError: a service exited or did not come up within the timeout (names it and
                its log file).
        """
        self.write_config()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.plan.services:
            self.spawn(spec.name)
        if wait_ready:
            self.wait_ready([s.name for s in self.plan.services])
        for spec in self.plan.actors:
            self.spawn(spec.name)

    def spawn(self, name: str) -> Child:
        """Start (or restart) child ``name``; a restarted child always resumes (from what its first
        start wrote, even under ``--no-resume``)."""
        child = self.children[name]
        spec = child.spec
        ready = self.ready_file(name)
        ready.unlink(missing_ok=True)
        env = {**os.environ, **child_env(spec), **self.extra_env, "PYTHONUNBUFFERED": "1"}
        resume = self.resume or child.process is not None
        logfile = (self.logs_dir / f"{name}.log").open("ab")
        try:
            child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                child_command(spec, self.config_path, self.plan, ready, resume=resume),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # the child arms PR_SET_PDEATHSIG itself (--parent-pid, spiral.launch.parent)
            )
        finally:
            logfile.close()
        child.stopping = False
        child.exit_code = None
        log.info("started %s (pid %d) on %s", name, child.process.pid, spec.address)
        return child

    def wait_ready(self, names: Iterable[str], timeout: float = READY_TIMEOUT_SECONDS) -> dict[str, dict]:
        """Wait for the ready files of ``names``; returns their contents.

        Raises:
            RuntimeError: one exited first or the timeout passed (names it and its log).
        """
        pending = list(names)
        found: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                path = self.ready_file(name)
                if path.exists():
                    found[name] = json.loads(path.read_text())
                    pending.remove(name)
                elif not (child := self.children[name]).alive:
                    code = None if child.process is None else child.process.returncode
                    raise RuntimeError(f"{name} exited with code {code} before serving; see {self.logs_dir / (name + '.log')}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(pending)} did not start serving within {timeout:g} s; see {self.logs_dir}")
            if pending:
                time.sleep(0.1)
        return found

    # ---------------------------------------------------------------------------- watching ---

    def reap(self) -> list[Child]:
        """Children that exited since the last call (their ``exit_code`` set)."""
        exited = []
        for child in self.children.values():
            if child.process is not None and child.exit_code is None and child.process.poll() is not None:
                child.exit_code = child.process.returncode
                exited.append(child)
        return exited

    def alive(self) -> list[Child]:
        return [c for c in self.children.values() if c.alive]

    # ----------------------------------------------------------------------------- stopping ---

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to child ``name`` (tests kill actors and learners with it)."""
        child = self.children[name]
        if child.process is not None and child.alive:
            child.process.send_signal(sig)

    def stop(self, names: Iterable[str] | None = None, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM ``names`` (default: all), wait up to ``grace`` s, SIGKILL the rest (whole group)."""
        targets = [self.children[n] for n in names] if names is not None else list(self.children.values())
        for child in targets:
            child.stopping = True
            if child.process is not None and child.alive:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in targets:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", child.spec.name, grace)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.reap()


class LaunchOptions(NamedTuple):
    """How :func:`run_local` shows the run (the ``spiral train`` flags besides the config)."""

    show_progress: bool = True  # False (--quiet): nothing on the terminal but notes and the summary
    progress_every_seconds: float = DEFAULT_EVERY_SECONDS  # plain progress lines (no terminal, train.log)
    resume_command: str | None = None  # printed after Ctrl-C: how to continue this run


def run_local(cfg: TrainConfig, resume: bool, options: LaunchOptions = LaunchOptions(), *, threads_per_process: int | None = None) -> int:
    """Train with every service in its own local process until the budget is spent; returns the
    exit code of ``spiral train``: 0 when the budget was spent, 130 after Ctrl-C/SIGTERM (children
    stopped and checkpointed), 1 when a child kept crashing or a service never came up (its last
    error lines are printed, with its log's path).

    Each process gets ``threads_per_process`` torch threads (default: ``cfg.torch_threads``, else
    1 — measured: on 2 shared cores, 2-thread OpenMP in one process is several times slower than
    one thread per process). Warnings, errors and "resumed from" lines of the children are shown
    as they appear; at the end ``curves.png`` is drawn from the run log and the summary printed.
    """
    threads = threads_per_process or cfg.torch_threads or 1
    cluster = LocalCluster(cfg, resume=resume, threads_per_process=threads)
    output = RunOutput(cluster.out / "train.log")
    wall = None if cfg.max_wall_minutes is None else 60.0 * cfg.max_wall_minutes
    progress = TrainProgress(
        budget_of(cfg), output=output, enabled=options.show_progress, every_seconds=options.progress_every_seconds, wall_limit_seconds=wall
    )
    notes = ChildNotes(cluster, progress)
    interrupt = StopFlag().install()
    try:
        code = _watch(cluster, progress, notes, interrupt)
    finally:
        progress.close()
        cluster.stop()
        interrupt.uninstall()
        notes.show_new()  # what the children said on their way out (e.g. the checkpoint they wrote)
    _finish(cluster, output, code, options)
    return code


def _watch(cluster: LocalCluster, progress: TrainProgress, notes: ChildNotes, interrupt: StopFlag) -> int:
    """Start the children and watch them until the run ends; returns the exit code."""
    expected = len(cluster.children)
    pl = cluster.plan.by_role(Role.POLICY_LEARNER)
    assert pl is not None
    try:
        cluster.start()
    except RuntimeError as err:
        notes.show_new()
        progress.note(f"Error: {err}")
        _show_failure(progress, cluster, _failed_child(cluster))
        return 1
    poller = LearnerPoller(pl.address, pl.metrics_port, cluster.cfg.services)
    evaluations = EvaluationTail(cluster.out / METRICS_FILE)
    finished_at: float | None = None
    try:
        while True:
            if interrupt.is_set():
                progress.note("stopping every process (each writes its checkpoint)…")
                return 130
            for child in cluster.reap():
                name, rc = child.spec.name, child.exit_code
                if child.spec.role == Role.POLICY_LEARNER and rc == 0:
                    finished_at = time.monotonic()
                elif finished_at is not None or (rc == 0 and child.spec.role in (Role.ACTOR, Role.DISCRIMINATOR_LEARNER)):
                    log.info("%s exited with code %s", name, rc)  # 0: it saw the learner's done
                else:
                    notes.show_new()
                    now, reason = time.monotonic(), exit_reason(rc)
                    if not child.restart_budget.allows(now):
                        progress.note(f"Error: {name} {reason}, its {MAX_RESTARTS + 1}th crash within {RESTART_WINDOW_SECONDS:.0f} s; giving up")
                        _show_failure(progress, cluster, child)
                        return 1
                    child.restart_budget.record(now)
                    child.restarts += 1
                    progress.note(
                        f"{name} {reason}; restarting ({child.restart_budget.recent(now)}/{MAX_RESTARTS} within {RESTART_WINDOW_SECONDS:.0f} s); "
                        f"log: {cluster.logs_dir / (name + '.log')}"
                    )
                    cluster.spawn(name)
            notes.show_new()
            snapshot = poller.poll()
            held_out, blank = evaluations.latest()
            alive = len(cluster.alive())
            if snapshot.ok:
                progress.show(figures_from_snapshot(snapshot, held_out, blank, alive=alive, expected=expected, pretrain_total=cluster.cfg.pretrain.updates))
            elif progress.last_figures is not None and finished_at is None:  # restarting, not finished
                progress.show(progress.last_figures._replace(alive=alive, learner_away=True))
            if finished_at is not None:
                others = [c for c in cluster.alive() if c.spec.role != Role.REPLAY]
                if not others or time.monotonic() - finished_at > FINISH_GRACE_SECONDS:
                    return 0
            time.sleep(POLL_SECONDS)
    finally:
        poller.close()


def _failed_child(cluster: LocalCluster) -> Child | None:
    """The child that died (the first one that exited non-zero), if any."""
    cluster.reap()
    return next((c for c in cluster.children.values() if c.exit_code not in (None, 0)), None)


def _show_failure(progress: TrainProgress, cluster: LocalCluster, child: Child | None) -> None:
    """A dead child's last error lines and its log's path, on the terminal."""
    if child is None:
        progress.note(f"logs: {cluster.logs_dir}")
        return
    path = cluster.logs_dir / f"{child.spec.name}.log"
    progress.note(f"last lines of {path}:")
    for line in last_error_lines(path):
        progress.note(f"  {line}")


class ChildNotes:
    """Shows the children's warnings, errors and "resumed from" lines as they appear, each
    message once (every actor loading MNIST warns alike). Not thread-safe."""

    def __init__(self, cluster: LocalCluster, progress: TrainProgress) -> None:
        self.cluster = cluster
        self.progress = progress
        self._tails = {name: LogTail(cluster.logs_dir / f"{name}.log") for name in cluster.children}
        self._seen: set[str] = set()

    def show_new(self) -> None:
        for name, tail in self._tails.items():
            for line in tail.new_lines():
                note = notable(line)
                if note is None or note.message in self._seen:
                    continue
                self._seen.add(note.message)
                level = "" if note.level == "INFO" else f"{note.level.lower()}: "
                self.progress.note(f"[{name}] {level}{note.message}")


class EvaluationTail:
    """The latest held-out L2 and blank-canvas L2 from the policy learner's run log (the blank
    figure is not exported on /metrics). Not thread-safe."""

    def __init__(self, path: Path) -> None:
        self._tail = LogTail(path)
        self._latest = (math.nan, math.nan)

    def latest(self) -> tuple[float, float]:
        for line in self._tail.new_lines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "eval/held_out_l2" in record:
                self._latest = (record["eval/held_out_l2"], record.get("eval/blank_l2", math.nan))
        return self._latest


def _finish(cluster: LocalCluster, output: RunOutput, code: int, options: LaunchOptions) -> None:
    """The final lines: curves.png (any run that logged), then the summary or how to resume."""
    summary = RunSummary.of_run(cluster.out)
    if summary.updates:
        try:
            write_run_curves(cluster.out)
        except (OSError, ValueError) as err:  # a plot must never turn a finished run into a failure
            log.warning("could not draw %s: %s", cluster.out / "curves.png", err)
    if code == 0:
        for line in summary.lines(cluster.out):
            output.echo(line)
    elif code == 130:
        for line in stopped_lines(cluster.out, summary, options.resume_command):
            output.echo(line)
    else:
        output.echo(f"logs: {cluster.logs_dir} · progress log: {output.log_path}")


def stopped_lines(out: Path, summary: RunSummary, resume_command: str | None) -> list[str]:
    """What ``spiral train`` prints after Ctrl-C (both modes): where the checkpoint is, how to go on."""
    lines = [f"stopped after {summary.updates} updates, {summary.frames} frames; checkpoint: {out / 'checkpoints'}"]
    if resume_command:
        lines.append(f"resume with: {resume_command}")
    return lines

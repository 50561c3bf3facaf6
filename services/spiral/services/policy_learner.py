"""The policy learner service (``spiral serve policy-learner``).

Actors stream trajectories in (``SendTrajectories``); a bounded batching queue holds them (a full
queue stops the handler reading, so HTTP/2 flow control pushes back on the actor); the learning
loop takes ``num_envs`` episodes per update — the batch of one single-process step — scores them
with the latest discriminator weights (or −L2), runs the unchanged
:func:`~spiral.learning.updates.policy_update` (A2C + V-trace) and publishes the new weights
(``SubscribeWeights``) under a version that only ever increases, across restarts too.

Checkpoints (``<output_dir>/checkpoints/latest.pt``, the single-process trainer's format plus
``version`` and ``restarts``) are written every ``checkpoint_every_updates`` updates, at the end and on
SIGTERM; a restarted learner resumes from the last one. Every ``eval_every_updates`` updates the greedy
policy reconstructs held-out images: a PNG grid, ``metrics.jsonl`` and
``spiral_learner_l2{split="held_out"}``. When the budget (frames or updates) is spent the learner
checkpoints, answers ``GetStatus.done = True`` for a moment so that actors and the discriminator
learner exit too, and returns (exit 0).

Also home of the helpers both learners share: :func:`configure_torch_threads`,
:class:`StopFlag`, :class:`VersionHighWater`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import NamedTuple

import grpc
import torch
from prometheus_client import CollectorRegistry

from spiral.agents import Discriminator
from spiral.config import Mode, RewardKind, Role, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.learning.budget import budget_spent
from spiral.learning.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from spiral.learning.evaluate import Evaluator
from spiral.learning.losses import make_policy_optimizer
from spiral.learning.rollout import Rollout
from spiral.learning.run_log import RunLog
from spiral.learning.trainer import build_discriminator, build_policy
from spiral.learning.updates import PolicyUpdateStats, policy_update
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.services.errors import DeadlineExceededError, check_protocol_version
from spiral.services.server import RunningServer, policy_learner_binding, serve
from spiral.services.tensor_codec import TrajectoryData, trajectory_from_proto
from spiral.services.trajectory_convert import (
    TrajectoryExpectations,
    check_trajectory,
    concat_rollouts,
    trajectory_to_rollout,
)
from spiral.services.weights import WeightsPublisher, WeightsSubscriber
from spiral.v1 import services_pb2_grpc, trajectory_pb2

logger = logging.getLogger(__name__)

#: Trajectories the batching queue holds. Each is a whole batch of an actor's episodes (one
#: update's worth). One is enough: every actor also keeps one trajectory waiting in a blocked
#: handler, so the learner never starves, and each extra slot is one more version of policy lag.
#: After the budget is spent the learner keeps answering GetStatus (done = True) this long, so
#: that actors and the discriminator learner (polling every ~0.5 s) see it and exit 0.
DONE_LINGER_SECONDS = 3.0
#: How often blocked loops re-check the stop flag.
POLL_SECONDS = 0.2
#: Environment variables: threads per process (the launcher gives each process one), and "0" in
#: SPIRAL_RESUME to ignore existing checkpoints (``spiral train --no-resume``).
THREADS_ENV = "SPIRAL_TORCH_THREADS"
RESUME_ENV = "SPIRAL_RESUME"
#: Client channel reconnect backoff: gRPC's default grows to 120 s, far too slow to notice a
#: restarted peer in a local run.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)]


# ------------------------------------------------------------------------- shared helpers ---


def configure_torch_threads(configured: int | None = None) -> None:
    """Set torch's intra-op threads: ``$SPIRAL_TORCH_THREADS`` (the launcher's per-process
    choice) wins over ``configured`` (``cfg.torch_threads``); neither → torch's default.

    Raises:
        ValueError: the variable is not a positive integer (names it and the value).
    """
    raw = os.environ.get(THREADS_ENV)
    if not raw:
        if configured is not None:
            torch.set_num_threads(configured)
        return
    try:
        threads = int(raw)
        if threads < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"${THREADS_ENV} must be a positive integer, got {raw!r}") from None
    torch.set_num_threads(threads)


def resume_allowed() -> bool:
    """False when ``$SPIRAL_RESUME`` is ``0``/``false``/``no``."""
    return os.environ.get(RESUME_ENV, "1").strip().lower() not in ("0", "false", "no")


class StopFlag:
    """Set by SIGTERM/SIGINT (once installed) or by :meth:`set`; loops poll :meth:`is_set`. Thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        self.signum: int | None = None

    def install(self) -> "StopFlag":
        """Route SIGTERM and SIGINT here (call from the main thread)."""

        def handle(signum: int, _frame: object) -> None:
            self.signal_name = signal.Signals(signum).name
            self.signum = signum
            logger.info("received %s: finishing the current step, then checkpointing", self.signal_name)
            self._event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handle)
        return self

    def set(self) -> None:
        self._event.set()

    def exit_if_signalled(self) -> None:
        """Raise ``SystemExit(128 + signum)`` when a signal stopped the work before it finished:
        the conventional code, which a pod's restart policy (and the local launcher) treat as
        "stopped, not done" — unlike 0, which means the budget was spent."""
        if self.signum is not None:
            raise SystemExit(128 + self.signum)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class VersionHighWater:
    """The highest weights version ever published, kept in a small file beside the checkpoints.

    A learner killed between checkpoints has published versions its checkpoint does not know;
    resuming from the checkpoint's version would send subscribers *older* version numbers. So every
    publish records the version here (tmp + rename: a few bytes), and a restarted learner continues
    above ``max(checkpoint version, high-water mark)``. Not thread-safe: one publisher per file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return -1

    def write(self, version: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(str(version))
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------------- learner ---


class Counters(NamedTuple):
    """The single-process trainer's counters (same checkpoint keys)."""

    frames: int = 0
    updates: int = 0
    discriminator_updates: int = 0


class _Queued(NamedTuple):
    rollout: Rollout
    episodes: int


class PolicyLearner:
    """State and learning loop of the policy learner; :class:`PolicyLearnerServicer` serves it.

    Thread-safety: :meth:`submit`, :meth:`status` and :meth:`expectations` are called from gRPC
    handler threads; everything else (the update, checkpoints, evaluation) runs in the one thread
    that calls :meth:`run`.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        job: str = "local",
        registry: CollectorRegistry | None = None,
        metrics: SpiralMetrics | None = None,
        dataset: ImageDataset | None = None,
        resume: bool = True,
        stop: StopFlag | None = None,
    ) -> None:
        self.cfg = cfg
        self.job = job
        self.out = Path(cfg.output_dir)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = metrics if metrics is not None else create_metrics(self.registry)
        self.stop = stop or StopFlag()
        torch.manual_seed(cfg.seed)
        self.env = make_env(cfg.env)
        self.dataset = dataset or load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        self.conditional = cfg.mode == Mode.CONDITIONAL
        self.train_targets = self.dataset.train if self.conditional else None
        self.policy = build_policy(cfg, self.env)
        self.optimizer = make_policy_optimizer(self.policy.parameters(), cfg.learner)
        self.uses_discriminator = cfg.reward.kind == RewardKind.DISCRIMINATOR
        self.discriminator: Discriminator | None = build_discriminator(cfg, self.env) if self.uses_discriminator else None
        self.discriminator_version = -1
        self.publisher = WeightsPublisher(cfg.services.weight_chunk_bytes, metrics=self.metrics, job=job, role=Role.POLICY_LEARNER)
        self.queue: queue.Queue[_Queued] = queue.Queue(maxsize=cfg.learner.queue_size)
        self._started = time.monotonic()
        self.counters = Counters()
        self.version = 0
        self.restarts = 0
        # A labelled counter has no series until first touched: export restarts at 0 from the
        # start so increase() (dashboard, SpiralLearnerRestarting) reads 0, not "no data".
        self.metrics.learner_restarts.labels(job, Role.POLICY_LEARNER.value)
        self.high_water = VersionHighWater(self.out / "checkpoints" / "policy-version")
        self.run_log = RunLog(self.out / "metrics.jsonl")
        self.evaluator = Evaluator(
            self.env, self.dataset.held_out if self.conditional else None, cfg.agent.noise_size, cfg.seed, self.out / "images"
        )
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._latest_reward = math.nan
        self._latest_l2 = math.nan
        self.active_streams = 0
        self._expect = TrajectoryExpectations(
            action_names=tuple(self.env.action_spec.names),
            action_sizes=tuple(self.env.action_spec.sizes),
            num_channels=self.env.num_channels,
            canvas_size=self.env.canvas_size,
            num_steps=cfg.env.episode_length - 1,
            conditional=self.conditional,
            noise_size=cfg.agent.noise_size,
            num_targets=self.dataset.num_train if self.conditional else 0,
        )
        checkpoint = find_checkpoint(self.out / "checkpoints") if resume else None
        if checkpoint is not None:
            self.restore(checkpoint)
        # Never reuse a version number a subscriber may already hold (see VersionHighWater).
        self.version = max(self.version, self.high_water.read() + 1)
        self._publish()

    # ------------------------------------------------------------------------------ budget ---

    @property
    def budget_spent(self) -> bool:
        return budget_spent(self.cfg, self.counters.frames, self.counters.updates, self._started)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # --------------------------------------------------------------------- handler threads ---

    def expectations(self) -> TrajectoryExpectations:
        return self._expect

    def submit(self, traj: TrajectoryData, num_bytes: int, is_active) -> bool:  # noqa: ANN001 - a callable
        """Validate ``traj`` and wait for room in the queue; False when done/stopping/cancelled.

        Raises:
            InvalidArgumentError, FailedPreconditionError: see :func:`check_trajectory`.
        """
        with self._lock:
            version = self.version
        check_trajectory(traj, self._expect, version)
        rollout = trajectory_to_rollout(traj, self.train_targets)
        self.metrics.trajectory_bytes.labels(self.job).inc(num_bytes)
        item = _Queued(rollout, traj.batch_size)
        # Blocking here is the back-pressure: the handler stops reading the actor's stream.
        while not (self.done or self.stop.is_set()) and is_active():
            try:
                self.queue.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            self.metrics.learner_queue_depth.labels(self.job).set(self.queue.qsize())
            return True
        return False

    def status(self) -> trajectory_pb2.LearnerStatus:
        with self._lock:
            return trajectory_pb2.LearnerStatus(
                version=self.version,
                frames=self.counters.frames,
                updates=self.counters.updates,
                latest_reward=self._latest_reward,
                latest_l2=self._latest_l2,
                done=self.done,
            )

    # ------------------------------------------------------------------------ learner loop ---

    def _publish(self) -> None:
        self.publisher.publish(self.version, self.policy.state_dict())
        self.high_water.write(self.version)
        self.metrics.learner_policy_version.labels(self.job).set(self.version)

    def _next_batch(self) -> Rollout | None:
        """``num_envs`` episodes (whole trajectories) from the queue; None when stopping."""
        rollouts: list[Rollout] = []
        episodes = 0
        while episodes < self.cfg.num_envs:
            try:
                item = self.queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self.stop.is_set():
                    return None
                continue
            rollouts.append(item.rollout)
            episodes += item.episodes
        self.metrics.learner_queue_depth.labels(self.job).set(self.queue.qsize())
        for r in rollouts:
            self.metrics.learner_policy_lag.labels(self.job).observe(max(0, self.version - r.policy_version))
        return concat_rollouts(rollouts)

    def _refresh_discriminator(self, subscriber: WeightsSubscriber | None) -> bool:
        """Load the newest discriminator weights; False when stopping before any arrived."""
        if subscriber is None or self.discriminator is None:
            return True
        while True:
            weights = subscriber.latest()
            if weights is not None:
                break
            if self.stop.is_set():
                return False
            try:
                weights = subscriber.wait_for_version(0, timeout=1.0)
                break
            except DeadlineExceededError:  # only a timeout: permanent failures propagate
                logger.info("waiting for the discriminator learner's first weights")
        if weights.version != self.discriminator_version:
            self.discriminator.load_state_dict(weights.state_dict)
            self.discriminator_version = weights.version
        return True

    def train_step(self, rollout: Rollout) -> PolicyUpdateStats:
        """One update on ``rollout``, then publish the new version and record metrics."""
        started = time.perf_counter()
        stats = policy_update(
            self.policy,
            self.optimizer,
            rollout,
            self.cfg.learner,
            self.cfg.reward,
            self.cfg.mode,
            self.discriminator,
            self.cfg.discriminator,
            learner_version=self.version,
        )
        with self._lock:
            self.version += 1
            self.counters = self.counters._replace(frames=self.counters.frames + stats.frames, updates=self.counters.updates + 1)
            self._latest_reward = stats.episode_reward
            self._latest_l2 = math.nan if stats.final_l2 is None else stats.final_l2
        self._publish()
        m, job = self.metrics, self.job
        m.learner_step_seconds.labels(job).observe(time.perf_counter() - started)
        m.learner_frames.labels(job).inc(stats.frames)
        m.learner_updates.labels(job).inc()
        for term, value in (("total", stats.total_loss), ("policy", stats.policy_loss), ("baseline", stats.baseline_loss), ("entropy", stats.entropy)):
            m.learner_loss.labels(job, term).set(value)
        m.learner_reward.labels(job).set(stats.episode_reward)
        if stats.final_l2 is not None:
            m.learner_l2.labels(job, "train").set(stats.final_l2)
        return stats

    def evaluate(self) -> dict[str, float]:
        """Held-out L2 and a PNG grid (conditional), or a grid of samples (unconditional)."""
        record = self.evaluator(self.policy, self.counters.updates)
        if "eval/held_out_l2" in record:
            self.metrics.learner_l2.labels(self.job, "held_out").set(record["eval/held_out_l2"])
        return record

    def run(self, discriminator: WeightsSubscriber | None = None) -> bool:
        """Learn until the budget is spent (returns True) or the stop flag is set (False).

        Checkpoints on the way and before returning.
        """
        self.run_log.write({"event": "start", "role": Role.POLICY_LEARNER.value, "version": self.version, "restarts": self.restarts, "config": self.cfg.model_dump(mode="json"), **self._x()})
        try:
            while not self.budget_spent and not self.stop.is_set():
                if not self._refresh_discriminator(discriminator):
                    break
                rollout = self._next_batch()
                if rollout is None:
                    break
                stats = self.train_step(rollout)
                updates = self.counters.updates
                last = self.budget_spent
                if updates % self.cfg.log_every_updates == 0 or last:
                    self.run_log.write(
                        {
                            "losses/total": stats.total_loss,
                            "losses/policy": stats.policy_loss,
                            "losses/baseline": stats.baseline_loss,
                            "losses/entropy": stats.entropy,
                            "charts/episode_reward": stats.episode_reward,
                            "charts/train_l2": stats.final_l2,
                            "charts/policy_lag": stats.policy_lag,
                            "charts/grad_norm": stats.grad_norm,
                            **self._x(),
                        }
                    )
                if updates % self.cfg.eval_every_updates == 0 or last:
                    self.run_log.write({**self.evaluate(), **self._x()})
                if updates % self.cfg.checkpoint_every_updates == 0 and not last:
                    self.checkpoint()
        finally:
            self.checkpoint()
        finished = self.budget_spent
        if finished:
            self._done.set()
            self.run_log.write({"event": "done", **self._x()})
            logger.info("budget spent: %d updates, %d frames, version %d", self.counters.updates, self.counters.frames, self.version)
        return finished

    def _x(self) -> dict[str, int]:
        return {"frames": self.counters.frames, "updates": self.counters.updates, "version": self.version}

    # ------------------------------------------------------------------------- checkpoints ---

    def checkpoint(self) -> Path:
        """The single-process trainer's checkpoint (``spiral sample`` and ``--single-process``
        resume read it), plus ``version`` and ``restarts``."""
        payload = {
            "config": self.cfg.model_dump(mode="json"),
            "counters": self.counters._asdict(),
            "policy": self.policy.state_dict(),
            "policy_optimizer": self.optimizer.state_dict(),
            "discriminator": None,
            "discriminator_optimizer": None,
            "rng": {"generator": torch.Generator().manual_seed(self.cfg.seed).get_state(), "torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": _python_state()},
            "version": self.version,
            "restarts": self.restarts,
            "role": Role.POLICY_LEARNER.value,
        }
        return save_checkpoint(self.out / "checkpoints", payload)

    def restore(self, path: Path) -> None:
        payload = load_checkpoint(path)
        self.policy.load_state_dict(payload["policy"])
        self.optimizer.load_state_dict(payload["policy_optimizer"])
        self.counters = Counters(**payload["counters"])
        self.version = int(payload.get("version", self.counters.updates))
        self.restarts = int(payload.get("restarts", 0)) + 1
        # The counter restarts at 0 in every process: add the whole history so that
        # increase(spiral_learner_restarts_total) sees this restart.
        self.metrics.learner_restarts.labels(self.job, Role.POLICY_LEARNER.value).inc(self.restarts)
        logger.info("resumed from %s: %d updates, %d frames, version %d, restart %d", path, self.counters.updates, self.counters.frames, self.version, self.restarts)


def _numpy_state():  # noqa: ANN202 - numpy's tuple
    import numpy as np

    return np.random.get_state()


def _python_state():  # noqa: ANN202
    import random

    return random.getstate()


# --------------------------------------------------------------------------------- servicer ---


class PolicyLearnerServicer(services_pb2_grpc.PolicyLearnerServicer):
    """Thin gRPC wrapper around :class:`PolicyLearner`; domain errors become statuses in ``serve``."""

    def __init__(self, learner: PolicyLearner) -> None:
        self.learner = learner
        self._lock = threading.Lock()

    def SendTrajectories(self, request_iterator, context: grpc.ServicerContext) -> trajectory_pb2.SendSummary:  # noqa: ANN001
        learner = self.learner
        accepted = frames = 0
        with self._lock:
            learner.active_streams += 1
        try:
            for message in request_iterator:
                traj = trajectory_from_proto(message)  # FAILED_PRECONDITION / INVALID_ARGUMENT
                if not learner.submit(traj, message.ByteSize(), context.is_active):
                    break
                accepted += 1
                frames += traj.num_frames
                if learner.done or learner.stop.is_set():
                    break
        finally:
            with self._lock:
                learner.active_streams -= 1
        return trajectory_pb2.SendSummary(num_trajectories=accepted, num_frames=frames, learner_version=learner.status().version)

    def SubscribeWeights(self, request, context: grpc.ServicerContext):  # noqa: ANN001, ANN201
        return self.learner.publisher.stream(request, context)

    def GetStatus(self, request, context: grpc.ServicerContext) -> trajectory_pb2.LearnerStatus:  # noqa: ANN001
        check_protocol_version(request.protocol_version, message="StatusRequest")
        return self.learner.status()


# ------------------------------------------------------------------------------ entry point ---


def start_policy_learner(
    cfg: TrainConfig,
    *,
    job: str = "local",
    ready_file: Path | None = None,
    resume: bool = True,
    stop: StopFlag | None = None,
    dataset: ImageDataset | None = None,
) -> tuple[PolicyLearner, RunningServer]:
    """Build the learner (resuming from its checkpoint), publish its weights and start serving.

    Raises:
        ConfigError, OSError: see :func:`spiral.services.server.serve`.
        DatasetError: the dataset cannot be loaded.
    """
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    learner = PolicyLearner(cfg, job=job, registry=registry, metrics=metrics, resume=resume, stop=stop, dataset=dataset)
    server = serve(
        [policy_learner_binding(PolicyLearnerServicer(learner))],
        cfg.services,
        role=Role.POLICY_LEARNER,
        job=job,
        registry=registry,
        metrics=metrics,
        before_stop=[learner.publisher.close],
        ready_file=ready_file,
    )
    return learner, server


def run(cfg: TrainConfig, *, job: str = "local", ready_file: Path | None = None) -> None:
    """``spiral serve policy-learner``: learn until the budget is spent (return: exit 0) or SIGTERM
    (checkpoint, then exit 143).

    Raises:
        SystemExit: 128 + signal number when stopped by a signal before the budget was spent.
    """
    configure_torch_threads(getattr(cfg, "torch_threads", None))
    stop = StopFlag().install()
    learner, server = start_policy_learner(cfg, job=job, ready_file=ready_file, resume=resume_allowed(), stop=stop)
    subscriber = None
    if learner.uses_discriminator:
        subscriber = WeightsSubscriber(
            cfg.services.discriminator_learner_address,
            cfg.services,
            source=Role.DISCRIMINATOR_LEARNER,
            subscriber_id=f"policy-learner-{os.getpid()}",
        ).start()
    finished = False
    try:
        finished = learner.run(subscriber)
        if finished:
            # Let actors and the discriminator learner see done = True before the port closes.
            deadline = time.monotonic() + DONE_LINGER_SECONDS
            while time.monotonic() < deadline and not stop.is_set():
                stop.wait(POLL_SECONDS)
    finally:
        if subscriber is not None:
            subscriber.stop()
        server.stop()
    if not finished:
        stop.exit_if_signalled()

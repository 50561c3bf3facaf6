"""The policy learner service (``spiral serve policy-learner``).

Actors stream trajectories in (``SendTrajectories``); a bounded batching queue holds them (a full
queue stops the handler reading, so HTTP/2 flow control pushes back on the actor); the learning
loop takes ``num_envs`` episodes per update — the batch of one single-process step — and hands them
to the same :class:`~spiral.learning.core.PolicyLearnerCore` the single-process trainer drives
(A2C + V-trace, scored with the latest discriminator weights or −L2, evaluation, run log,
checkpoints). After every update the new weights are published (``SubscribeWeights``) under a
version that only ever increases, across restarts too (:mod:`spiral.services.publishing`).

Checkpoints (``<output_dir>/checkpoints/latest.pt``, the one :class:`~spiral.learning.state.TrainingState`
format, which ``spiral sample`` and ``spiral train --single-process`` read too) are written every
``checkpoint_every_updates`` updates, at the end and on SIGTERM; a restarted learner resumes from
the last one. Every ``eval_every_updates`` updates the greedy policy reconstructs held-out images:
a PNG grid, ``metrics.jsonl`` and ``spiral_learner_l2{split="held_out"}``. When the budget (frames,
updates or minutes) is spent the learner checkpoints, answers ``GetStatus.done = True`` for a moment
so that actors and the discriminator learner exit too, and exits 0.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import grpc
from prometheus_client import CollectorRegistry

from spiral.agents import Discriminator, SpiralPolicy, build_discriminator
from spiral.config import Mode, Role, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.errors import DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, SpiralServiceError
from spiral.learning.core import PolicyLearnerCore
from spiral.learning.rollout import Rollout
from spiral.learning.state import Counters
from spiral.learning.updates import PolicyUpdateStats
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.process import StopFlag
from spiral.services.publishing import Publication, WeightsAndStatusServicer, serve_learner
from spiral.services.runtime import POLL_SECONDS, Outcome, ServeOptions, run_service
from spiral.services.server import RunningServer, policy_learner_binding
from spiral.services.tensor_codec import TrajectoryData, trajectory_from_proto
from spiral.services.trajectory_convert import RejectReason, TrajectoryExpectations, check_trajectory, concat_rollouts, trajectory_to_rollout
from spiral.services.weights import WeightsPublisher, WeightsSubscriber
from spiral.v1 import services_pb2_grpc, trajectory_pb2

logger = logging.getLogger(__name__)

#: After the budget is spent the learner keeps answering GetStatus (done = True) this long, so
#: that actors and the discriminator learner (polling every ~0.5 s) see it and exit 0.
DONE_LINGER_SECONDS = 3.0


class _Queued(NamedTuple):
    rollout: Rollout
    episodes: int


class _Status(NamedTuple):
    """What GetStatus answers; replaced as a whole after each update (handler threads read it)."""

    version: int
    counters: Counters
    latest_reward: float = math.nan
    latest_l2: float = math.nan


class PolicyLearner:
    """State and learning loop of the policy learner; :class:`PolicyLearnerServicer` serves it.

    Thread-safety: :meth:`submit` and :meth:`status` are called from gRPC handler threads;
    everything else (updates, publishing, checkpoints, evaluation) runs in the one thread that
    calls :meth:`run`.
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
        """Build the core (resuming from its checkpoint when ``resume``) and publish its weights.

        Raises:
            DatasetError: the dataset cannot be loaded.
            ValueError: the existing checkpoint is unreadable or holds no policy.
        """
        self.cfg = cfg
        self.job = job
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = metrics if metrics is not None else create_metrics(self.registry)
        self.stop = stop or StopFlag()
        self.env = make_env(cfg.env)
        self.dataset = dataset or load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        conditional = cfg.mode == Mode.CONDITIONAL
        self.train_targets = self.dataset.train if conditional else None
        # The critic is trained by the discriminator learner: here it only scores canvases, with
        # the newest weights it published. Built before the core, whose resume restores the RNG
        # states that this initialisation would otherwise consume.
        self.critic: Discriminator | None = build_discriminator(cfg, self.env) if cfg.uses_discriminator else None
        self.core = PolicyLearnerCore(
            cfg,
            self.env,
            self.dataset,
            role=Role.POLICY_LEARNER.value,
            train_discriminator=False,
            resume=resume,
            export_hyperparameter=lambda name, value: self.metrics.learner_hyperparameter.labels(job, name.value).set(value),
        )
        self.critic_version = -1
        self.queue: queue.Queue[_Queued] = queue.Queue(maxsize=cfg.learner.queue_size)
        self._expect = TrajectoryExpectations(
            action_names=tuple(self.env.action_spec.names),
            action_sizes=tuple(self.env.action_spec.sizes),
            num_channels=self.env.num_channels,
            canvas_size=self.env.canvas_size,
            num_steps=cfg.env.episode_length - 1,
            conditional=conditional,
            noise_size=cfg.agent.noise_size,
            num_targets=self.dataset.num_train if conditional else 0,
            max_episodes=cfg.num_envs,
        )
        for reason in RejectReason:  # exported at 0: a dashboard reads "none refused", not "no data"
            self.metrics.learner_rejected_trajectories.labels(job, reason.value)
        self.publication = Publication(
            self.core.state,
            self.policy,
            role=Role.POLICY_LEARNER,
            version_file=self.core.checkpoint_dir / "policy-version",
            services=cfg.services,
            metrics=self.metrics,
            job=job,
            version_gauge=self.metrics.learner_policy_version.labels(job),
            # While pretraining, actors wait for weights instead of acting: trajectories of the
            # untrained policy would be hundreds of versions stale, and their sends would time out
            # against a queue nobody drains.
            publish_now=not self.core.pretraining_due,
        )
        self.metrics.learner_skipped_updates.labels(job, Role.POLICY_LEARNER.value)  # exported at 0, not "no data"
        for autoscaler_signal in (self.metrics.learner_data_wait, self.metrics.learner_actor_wait):
            autoscaler_signal.labels(job)  # exported at 0 from the start: the operator's first reading
        self._lock = threading.Lock()
        self._status = _Status(self.core.state.version, self.core.state.counters)
        self._done = threading.Event()

    # ------------------------------------------------------------------------- properties ---

    @property
    def policy(self) -> SpiralPolicy:
        assert self.core.state.policy is not None
        return self.core.state.policy

    @property
    def version(self) -> int:
        with self._lock:
            return self._status.version

    @property
    def counters(self) -> Counters:
        with self._lock:
            return self._status.counters

    @property
    def publisher(self) -> WeightsPublisher:
        return self.publication.publisher

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # --------------------------------------------------------------------- handler threads ---

    def submit(self, traj: TrajectoryData, num_bytes: int, is_active: Callable[[], bool]) -> bool:
        """Validate ``traj`` and wait for room in the queue; False when done/stopping/cancelled.

        Raises:
            InvalidArgumentError, FailedPreconditionError: see :func:`check_trajectory`.
        """
        check_trajectory(traj, self._expect, self.version)
        rollout = trajectory_to_rollout(traj, self.train_targets)
        self.metrics.trajectory_bytes.labels(self.job).inc(num_bytes)
        item = _Queued(rollout, traj.batch_size)
        # Blocking here is the back-pressure: the handler stops reading the actor's stream. How long
        # it blocks is the actors' wait, one of the autoscaler's two signals.
        actor_wait = self.metrics.learner_actor_wait.labels(self.job)
        while not (self.done or self.stop.is_set()) and is_active():
            started = time.monotonic()
            try:
                self.queue.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                actor_wait.inc(time.monotonic() - started)
                continue
            actor_wait.inc(time.monotonic() - started)
            self.metrics.learner_queue_depth.labels(self.job).set(self.queue.qsize())
            return True
        return False

    def record_rejection(self, error: SpiralServiceError, peer: str) -> None:
        """Count and log a refused trajectory (the actor gets the error as its status)."""
        reason = getattr(error, "reason", None)
        if not isinstance(reason, RejectReason):
            reason = RejectReason.PROTOCOL if isinstance(error, FailedPreconditionError) else RejectReason.DECODE
        self.metrics.learner_rejected_trajectories.labels(self.job, reason.value).inc()
        logger.warning("refused a trajectory from %s (%s): %s", peer, reason.value, error)

    def _show_pretraining(self) -> None:
        """Let GetStatus (and so the launcher's progress line) count pretraining updates, and
        accept trajectories of the version published after them."""
        with self._lock:
            self._status = self._status._replace(version=self.core.state.version, counters=self.core.state.counters)

    def status(self) -> trajectory_pb2.LearnerStatus:
        with self._lock:
            s = self._status
        return trajectory_pb2.LearnerStatus(
            version=s.version,
            frames=s.counters.frames,
            updates=s.counters.updates,
            latest_reward=s.latest_reward,
            latest_l2=s.latest_l2,
            done=self.done,
            pretrain_updates=s.counters.pretrain_updates,
        )

    # ------------------------------------------------------------------------ learner loop ---

    def _next_batch(self) -> Rollout | None:
        """``num_envs`` episodes (whole trajectories) from the queue; None when stopping."""
        rollouts: list[Rollout] = []
        episodes = 0
        # The time spent waiting here is the learner starving, the autoscaler's other signal.
        data_wait = self.metrics.learner_data_wait.labels(self.job)
        while episodes < self.cfg.num_envs:
            started = time.monotonic()
            try:
                item = self.queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                data_wait.inc(time.monotonic() - started)
                if self.stop.is_set():
                    return None
                continue
            data_wait.inc(time.monotonic() - started)
            rollouts.append(item.rollout)
            episodes += item.episodes
        self.metrics.learner_queue_depth.labels(self.job).set(self.queue.qsize())
        version = self.core.state.version
        for r in rollouts:
            self.metrics.learner_policy_lag.labels(self.job).observe(max(0, version - r.policy_version))
        return concat_rollouts(rollouts)

    def _refresh_critic(self, subscriber: WeightsSubscriber | None) -> bool:
        """Load the newest discriminator weights; False when stopping before any arrived."""
        if subscriber is None or self.critic is None:
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
        if weights.version != self.critic_version:
            self.critic.load_state_dict(weights.state_dict)
            self.critic_version = weights.version
        return True

    def train_step(self, rollout: Rollout) -> PolicyUpdateStats:
        """One update on ``rollout``, then publish the new version and record metrics."""
        started = time.perf_counter()
        stats = self.core.update(rollout, self.critic)
        state = self.core.state
        if stats.skipped:
            # The guard kept the weights; count it so that a run of skips is visible (record + metric).
            state.counters = state.counters.plus(skipped_updates=1)
            self.metrics.learner_skipped_updates.labels(self.job, Role.POLICY_LEARNER.value).inc()
            logger.warning(
                "update %d skipped: the loss or a gradient was not finite (weights unchanged; %d skipped so far)",
                state.counters.updates, state.counters.skipped_updates,
            )  # fmt: skip
        with self._lock:
            self._status = _Status(state.version, state.counters, stats.episode_reward, math.nan if stats.final_l2 is None else stats.final_l2)
        self.publication.publish()
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

    def _export(self, evaluation: dict[str, float] | None) -> None:
        if evaluation is None:
            return
        if "eval/held_out_l2" in evaluation:
            self.metrics.learner_l2.labels(self.job, "held_out").set(evaluation["eval/held_out_l2"])
        if "eval/digit_confident" in evaluation:  # a population ranks unconditional MNIST members by it
            self.metrics.learner_digit_confident.labels(self.job).set(evaluation["eval/digit_confident"])

    def evaluate(self) -> dict[str, float]:
        """Held-out L2 and a PNG grid (conditional), or a grid of samples (unconditional)."""
        evaluation = self.core.evaluate()
        self._export(evaluation)
        return evaluation

    def checkpoint(self) -> Path:
        return self.core.checkpoint()

    def run(self, discriminator: WeightsSubscriber | None = None) -> bool:
        """Learn until the budget is spent (returns True) or the stop flag is set (False); log,
        evaluate and checkpoint on the way and on the way out (a crash still checkpoints)."""
        core = self.core
        core.start()
        try:
            if core.pretraining_due:
                # Actors wait meanwhile: the first weights are published when pretraining ends.
                core.pretrain(stopped=self.stop.is_set, on_update=lambda _: self._show_pretraining())
                core.state.version += 1
                self._show_pretraining()  # before the weights go out: their trajectories must not look newer than the learner
                self.publication.publish()
            while not core.budget_spent and not self.stop.is_set():
                if not self._refresh_critic(discriminator):
                    break
                rollout = self._next_batch()
                if rollout is None:
                    break
                stats = self.train_step(rollout)
                record = {**stats.as_record(), "charts/skipped_updates": float(core.state.counters.skipped_updates)}
                self._export(core.after_update(record, final=core.budget_spent))
        except BaseException:
            core.checkpoint()
            raise
        self._export(core.finish())
        finished = core.budget_spent
        if finished:
            self._done.set()
        return finished


# --------------------------------------------------------------------------------- servicer ---


class PolicyLearnerServicer(WeightsAndStatusServicer, services_pb2_grpc.PolicyLearnerServicer):
    """Thin gRPC wrapper around :class:`PolicyLearner`; domain errors become statuses in ``serve``."""

    learner: PolicyLearner

    def __init__(self, learner: PolicyLearner) -> None:
        super().__init__(learner)

    def SendTrajectories(self, request_iterator, context: grpc.ServicerContext) -> trajectory_pb2.SendSummary:  # noqa: ANN001
        learner = self.learner
        accepted = frames = 0
        try:
            for message in request_iterator:  # undecodable bytes raise InvalidArgumentError here (see serve)
                traj = trajectory_from_proto(message)  # FAILED_PRECONDITION / INVALID_ARGUMENT
                if not learner.submit(traj, message.ByteSize(), context.is_active):
                    break
                accepted += 1
                frames += traj.num_frames
                if learner.done or learner.stop.is_set():
                    break
        except (InvalidArgumentError, FailedPreconditionError) as err:
            learner.record_rejection(err, context.peer())
            raise
        return trajectory_pb2.SendSummary(num_trajectories=accepted, num_frames=frames, learner_version=learner.version)


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
    server = serve_learner(
        learner,
        policy_learner_binding(PolicyLearnerServicer(learner)),
        cfg.services,
        role=Role.POLICY_LEARNER,
        job=job,
        registry=registry,
        metrics=metrics,
        ready_file=ready_file,
        # Every actor holds a SubscribeWeights stream and, while the queue is full, a SendTrajectories one.
        expected_clients=cfg.num_actors,
    )
    return learner, server


def run(cfg: TrainConfig, options: ServeOptions) -> None:
    """``spiral serve policy-learner``: learn until the budget is spent (exit 0) or SIGTERM
    (checkpoint, then exit 143).

    Raises:
        SystemExit: 128 + signal number when stopped by a signal before the budget was spent.
    """

    def learn(stop: StopFlag, resources: ExitStack) -> Outcome:
        learner, server = start_policy_learner(cfg, job=options.job, ready_file=options.ready_file, resume=options.resume, stop=stop)
        resources.callback(server.stop)
        subscriber = None
        if cfg.uses_discriminator:
            subscriber = WeightsSubscriber(
                cfg.services.discriminator_learner_address,
                cfg.services,
                source=Role.DISCRIMINATOR_LEARNER,
                subscriber_id=f"policy-learner-{os.getpid()}",
            ).start()
            resources.callback(subscriber.stop)
        if not learner.run(subscriber):
            return Outcome.STOPPED
        # Let actors and the discriminator learner see done = True before the port closes.
        deadline = time.monotonic() + DONE_LINGER_SECONDS
        while time.monotonic() < deadline and not stop.is_set():
            stop.wait(POLL_SECONDS)
        return Outcome.FINISHED

    run_service(options, learn)

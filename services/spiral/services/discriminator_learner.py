"""The discriminator learner service (``spiral serve discriminator-learner``).

Real images come from the dataset, fakes are final canvases sampled from the replay buffer (with
the targets they were painting, for conditional critics); each step is the unchanged
:func:`~spiral.learning.updates.discriminator_update`, and the new weights are published
(``SubscribeWeights``) for the policy learner's rewards, under a version that never goes back
(:mod:`spiral.services.publishing`, shared with the policy learner).

It only runs when ``reward.kind`` is ``discriminator`` (``TrainConfig.roles()``: the launcher and
the operator start it then): with the ``l2`` reward nothing reads its weights.

Pacing: the single-process trainer makes one critic step per policy step. Here the critic keeps at
most :data:`MAX_LEAD` steps ahead of the policy learner's update count (polled through its
``GetStatus``), so two learners sharing few cores keep the same ratio instead of racing. The
policy learner's ``done`` ends this learner too (checkpoint, exit 0).

Checkpoints: ``<output_dir>/checkpoints/discriminator/latest.pt`` (the one
:class:`~spiral.learning.state.TrainingState` format, without a policy) every
``checkpoint_every_updates`` critic steps, at the end and on SIGTERM. Scalars go to
``<output_dir>/metrics-discriminator.jsonl`` (and ``tensorboard/discriminator-learner/``) every
``log_every_updates`` critic steps, with the policy learner's frames (from its ``GetStatus``) as
the x-axis shared with the policy learner's records.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import ExitStack
from pathlib import Path

import grpc
import torch
from prometheus_client import CollectorRegistry

from spiral.agents import Discriminator
from spiral.config import Mode, Role, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.errors import DeadlineExceededError, SpiralServiceError, UnavailableError
from spiral.learning.cadence import Cadence
from spiral.learning.hyperparameters import RuntimeHyperparameters
from spiral.learning.run_log import RunLog
from spiral.learning.state import TrainingState
from spiral.learning.tensorboard import TensorBoardWriter
from spiral.learning.updates import DiscriminatorUpdateStats, discriminator_update
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.process import StopFlag
from spiral.services.client import create_channel
from spiral.services.publishing import Publication, WeightsAndStatusServicer, serve_learner
from spiral.services.replay_client import ReplayClient
from spiral.services.runtime import CHANNEL_OPTIONS, POLL_SECONDS, Outcome, ServeOptions, run_service
from spiral.services.server import RunningServer, discriminator_learner_binding
from spiral.services.weights import WeightsPublisher
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, trajectory_pb2

logger = logging.getLogger(__name__)

#: Critic steps allowed ahead of the policy learner's updates (1 = the single-process ratio, and
#: the critic can make its first step before the policy learner's first update).
MAX_LEAD = 1
#: Seconds a replay sample may wait for enough fakes before the loop re-checks its flags.
SAMPLE_TIMEOUT_SECONDS = 1.0
#: Offset of this learner's seed from ``cfg.seed``: its real-image draws and gradient-penalty
#: interpolations must not repeat the policy learner's random stream.
SEED_OFFSET = 2


class DiscriminatorLearner:
    """State and loop of the critic learner. :meth:`run` runs in one thread; :meth:`status` is
    called from gRPC handler threads."""

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
        """Build the critic (resuming from its checkpoint when ``resume``) and publish its weights.

        Raises:
            DatasetError: the dataset cannot be loaded.
            ValueError: the existing checkpoint is unreadable.
        """
        self.cfg = cfg
        self.job = job
        self.out = Path(cfg.output_dir)
        self.checkpoint_dir = self.out / "checkpoints" / "discriminator"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = metrics if metrics is not None else create_metrics(self.registry)
        self.stop = stop or StopFlag()
        env = make_env(cfg.env)  # only for the channel count and canvas size
        self.dataset = dataset or load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        self.state = TrainingState.build(
            cfg, env, role=Role.DISCRIMINATOR_LEARNER.value, policy=False, discriminator=True, seed=cfg.seed + SEED_OFFSET
        )
        if resume:
            self.state.resume(self.checkpoint_dir)
        # After the resume, which set the optimiser back to the config's learning rate.
        self.hyperparameters = RuntimeHyperparameters(
            cfg.learner.hyperparameters_file,
            cfg.learner,
            cfg.discriminator,
            discriminator_optimizer=self.state.discriminator_optimizer,
            export=lambda name, value: self.metrics.learner_hyperparameter.labels(job, name.value).set(value),
        )
        self.cadence = Cadence.from_config(cfg)
        tensorboard = TensorBoardWriter(self.out / "tensorboard" / Role.DISCRIMINATOR_LEARNER.value)
        self.run_log = RunLog(self.out / "metrics-discriminator.jsonl", tensorboard=tensorboard)
        #: The policy learner's counters at its last GetStatus: this learner's records carry its
        #: frames, the one x-axis of every process's curves.
        self._policy_frames = 0
        self._policy_updates = 0
        self.publication = Publication(
            self.state,
            self.discriminator,
            role=Role.DISCRIMINATOR_LEARNER,
            version_file=self.checkpoint_dir / "discriminator-version",
            services=cfg.services,
            metrics=self.metrics,
            job=job,
            version_gauge=self.metrics.discriminator_version.labels(job),
        )
        self.metrics.learner_skipped_updates.labels(job, Role.DISCRIMINATOR_LEARNER.value)  # exported at 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._latest: DiscriminatorUpdateStats | None = None
        self._version = self.state.version
        self._updates = self.state.counters.discriminator_updates

    @property
    def discriminator(self) -> Discriminator:
        assert self.state.discriminator is not None
        return self.state.discriminator

    @property
    def publisher(self) -> WeightsPublisher:
        return self.publication.publisher

    @property
    def updates(self) -> int:
        """Critic steps so far (across restarts)."""
        return self.state.counters.discriminator_updates

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def status(self) -> trajectory_pb2.DiscriminatorStatus:
        with self._lock:
            s, version, updates = self._latest, self._version, self._updates
        return trajectory_pb2.DiscriminatorStatus(
            version=version,
            updates=updates,
            latest_loss=math.nan if s is None else s.total_loss,
            d_real=math.nan if s is None else s.d_real,
            d_fake=math.nan if s is None else s.d_fake,
            done=self.done,
        )

    def train_step(self, fake_canvases: torch.Tensor, fake_targets: torch.Tensor | None) -> DiscriminatorUpdateStats:
        """One critic step on replayed fakes against as many real images, then publish."""
        state = self.state
        assert state.discriminator_optimizer is not None
        self.hyperparameters.poll(state.counters.discriminator_updates)  # a changed learning rate applies to this step
        real = self.dataset.sample(int(fake_canvases.shape[0]), state.generator)
        conditional = self.cfg.mode == Mode.CONDITIONAL
        stats = discriminator_update(
            self.discriminator,
            state.discriminator_optimizer,
            real,
            fake_canvases,
            fake_targets if conditional else None,
            self.cfg.mode,
            self.cfg.discriminator,
            state.generator,
        )
        state.counters = state.counters.plus(discriminator_updates=1, skipped_discriminator_updates=int(stats.skipped))
        if stats.skipped:
            # The guard kept the weights (e.g. a NaN fake slipped through): count it, keep going.
            self.metrics.learner_skipped_updates.labels(self.job, Role.DISCRIMINATOR_LEARNER.value).inc()
            logger.warning(
                "critic update %d skipped: the loss or a gradient was not finite (weights unchanged; %d skipped so far)",
                state.counters.discriminator_updates, state.counters.skipped_discriminator_updates,
            )  # fmt: skip
        state.version += 1
        with self._lock:
            self._latest, self._version, self._updates = stats, state.version, state.counters.discriminator_updates
        self.publication.publish()
        m, job = self.metrics, self.job
        m.discriminator_updates.labels(job).inc()
        for term, value in (("total", stats.total_loss), ("adversarial", stats.adversarial), ("gradient_penalty", stats.gradient_penalty)):
            m.discriminator_loss.labels(job, term).set(value)
        m.discriminator_d_real.labels(job).set(stats.d_real)
        m.discriminator_d_fake.labels(job).set(stats.d_fake)
        return stats

    def _log(self, stats: DiscriminatorUpdateStats) -> None:
        skipped = float(self.state.counters.skipped_discriminator_updates)
        self.run_log.write(
            {
                **stats.as_record(),
                "charts/skipped_updates": skipped,
                "discriminator_updates": self.updates,
                "version": self.state.version,
                "frames": self._policy_frames,
                "updates": self._policy_updates,
            }
        )

    def checkpoint(self) -> Path:
        return self.state.save(self.checkpoint_dir)

    def run(self, replay: ReplayClient, learner: services_pb2_grpc.PolicyLearnerStub) -> bool:
        """Train until the policy learner is done (True) or the stop flag is set (False); log and
        checkpoint as the cadence says, and both on the way out."""
        request = trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION)
        batch = self.cfg.discriminator.batch_size
        self.run_log.write(
            {
                "event": "start",
                "role": Role.DISCRIMINATOR_LEARNER.value,
                "version": self.state.version,
                "restarts": self.state.restarts,
                "discriminator_updates": self.updates,
            }
        )
        stats: DiscriminatorUpdateStats | None = None
        logged = True
        try:
            while not self.stop.is_set():
                try:
                    status = learner.GetStatus(request, timeout=2.0)
                except grpc.RpcError:
                    self.stop.wait(0.5)  # the policy learner is restarting: do not race ahead
                    continue
                self._policy_frames, self._policy_updates = status.frames, status.updates
                if status.done:
                    self._done.set()
                    break
                if self.updates >= status.updates + MAX_LEAD:
                    self.stop.wait(0.02)
                    continue
                try:
                    sampled = replay.sample(batch, timeout=SAMPLE_TIMEOUT_SECONDS)
                except (DeadlineExceededError, UnavailableError) as err:
                    logger.debug("no fakes yet: %s", err)
                    self.stop.wait(POLL_SECONDS)
                    continue
                except SpiralServiceError as err:  # e.g. the replay server is shutting down
                    logger.warning("replay sample failed: %s", err)
                    self.stop.wait(POLL_SECONDS)
                    continue
                stats = self.train_step(sampled.images.canvases, sampled.images.targets)
                due = self.cadence.due(self.updates, final=False)
                logged = due.log
                if due.log:
                    self._log(stats)
                if due.checkpoint:
                    self.checkpoint()
        finally:
            # On the way out, whatever happened: the last step's scalars and a checkpoint.
            if stats is not None and not logged:
                self._log(stats)
            self.checkpoint()
            self.run_log.close()
        return self.done


class DiscriminatorLearnerServicer(WeightsAndStatusServicer, services_pb2_grpc.DiscriminatorLearnerServicer):
    """Thin gRPC wrapper around :class:`DiscriminatorLearner`: its weights and its status."""


def start_discriminator_learner(
    cfg: TrainConfig,
    *,
    job: str = "local",
    ready_file: Path | None = None,
    resume: bool = True,
    stop: StopFlag | None = None,
    dataset: ImageDataset | None = None,
) -> tuple[DiscriminatorLearner, RunningServer]:
    """Build the critic learner (resuming), publish its weights and serve.

    Raises:
        ConfigError, OSError: see :func:`spiral.services.server.serve`.
    """
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    learner = DiscriminatorLearner(cfg, job=job, registry=registry, metrics=metrics, resume=resume, stop=stop, dataset=dataset)
    server = serve_learner(
        learner,
        discriminator_learner_binding(DiscriminatorLearnerServicer(learner)),
        cfg.services,
        role=Role.DISCRIMINATOR_LEARNER,
        job=job,
        registry=registry,
        metrics=metrics,
        ready_file=ready_file,
    )
    return learner, server


def run(cfg: TrainConfig, options: ServeOptions) -> None:
    """``spiral serve discriminator-learner``: train until the policy learner is done (exit 0) or
    SIGTERM (checkpoint, exit 143).

    Raises:
        SystemExit: 128 + signal number when stopped by a signal first.
    """

    def learn(stop: StopFlag, resources: ExitStack) -> Outcome:
        learner, server = start_discriminator_learner(cfg, job=options.job, ready_file=options.ready_file, resume=options.resume, stop=stop)
        resources.callback(server.stop)
        replay = resources.enter_context(ReplayClient(cfg.services.replay_address, cfg.services))
        channel = create_channel(cfg.services.policy_learner_address, cfg.services, options=CHANNEL_OPTIONS)
        resources.callback(channel.close)
        finished = learner.run(replay, services_pb2_grpc.PolicyLearnerStub(channel))
        return Outcome.FINISHED if finished else Outcome.STOPPED

    run_service(options, learn)

"""The discriminator learner service (``spiral serve discriminator-learner``).

Real images come from the dataset, fakes are final canvases sampled from the replay buffer (with
the targets they were painting, for conditional critics); each step is the unchanged
:func:`~spiral.learning.updates.discriminator_update`, and the new weights are published
(``SubscribeWeights``) for the policy learner's rewards, under a version that never goes back
(:class:`~spiral.services.policy_learner.VersionHighWater`).

It only runs when ``reward.kind`` is ``discriminator`` (the launcher and the operator start it
then): with the ``l2`` reward nothing reads its weights.

Pacing: the single-process trainer makes one critic step per policy step. Here the critic keeps at
most :data:`MAX_LEAD` steps ahead of the policy learner's update count (polled through its
``GetStatus``), so two learners sharing few cores keep the same ratio instead of racing. The
policy learner's ``done`` ends this learner too (checkpoint, exit 0).

Checkpoints: ``<output_dir>/checkpoints/discriminator/latest.pt`` every ``checkpoint_every_updates``
critic steps, at the end and on SIGTERM. Scalars go to ``<output_dir>/metrics-discriminator.jsonl``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import grpc
import torch
from prometheus_client import CollectorRegistry

from spiral.config import Mode, Role, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.learning.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from spiral.learning.losses import make_discriminator_optimizer
from spiral.learning.run_log import RunLog
from spiral.learning.trainer import build_discriminator
from spiral.learning.updates import DiscriminatorUpdateStats, discriminator_update
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.services.client import create_channel
from spiral.services.errors import DeadlineExceededError, SpiralServiceError, UnavailableError, check_protocol_version
from spiral.services.policy_learner import CHANNEL_OPTIONS, POLL_SECONDS, StopFlag, VersionHighWater, configure_torch_threads, resume_allowed
from spiral.services.replay_service import ReplayClient
from spiral.services.server import RunningServer, discriminator_learner_binding, serve
from spiral.services.weights import WeightsPublisher
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, trajectory_pb2

logger = logging.getLogger(__name__)

#: Critic steps allowed ahead of the policy learner's updates (1 = the single-process ratio, and
#: the critic can make its first step before the policy learner's first update).
MAX_LEAD = 1
#: Seconds a replay sample may wait for enough fakes before the loop re-checks its flags.
SAMPLE_TIMEOUT_SECONDS = 1.0


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
        self.cfg = cfg
        self.job = job
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints" / "discriminator"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = metrics if metrics is not None else create_metrics(self.registry)
        self.stop = stop or StopFlag()
        torch.manual_seed(cfg.seed + 2)
        self.generator = torch.Generator().manual_seed(cfg.seed + 2)
        env = make_env(cfg.env)  # only for the channel count and canvas size
        self.dataset = dataset or load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        self.discriminator = build_discriminator(cfg, env)
        self.optimizer = make_discriminator_optimizer(self.discriminator.parameters(), cfg.discriminator)
        self.publisher = WeightsPublisher(cfg.services.weight_chunk_bytes, metrics=self.metrics, job=job, role=Role.DISCRIMINATOR_LEARNER)
        self.high_water = VersionHighWater(self.ckpt_dir / "discriminator-version")
        self.run_log = RunLog(self.out / "metrics-discriminator.jsonl")
        self.updates = 0
        self.version = 0
        self.restarts = 0
        # A labelled counter has no series until first touched: export restarts at 0 from the
        # start so increase() (dashboard, SpiralLearnerRestarting) reads 0, not "no data".
        self.metrics.learner_restarts.labels(job, Role.DISCRIMINATOR_LEARNER.value)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._latest: DiscriminatorUpdateStats | None = None
        checkpoint = find_checkpoint(self.ckpt_dir) if resume else None
        if checkpoint is not None:
            self.restore(checkpoint)
        self.version = max(self.version, self.high_water.read() + 1)
        self._publish()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def status(self) -> trajectory_pb2.DiscriminatorStatus:
        with self._lock:
            s = self._latest
            return trajectory_pb2.DiscriminatorStatus(
                version=self.version,
                updates=self.updates,
                latest_loss=math.nan if s is None else s.total_loss,
                d_real=math.nan if s is None else s.d_real,
                d_fake=math.nan if s is None else s.d_fake,
                done=self.done,
            )

    def _publish(self) -> None:
        self.publisher.publish(self.version, self.discriminator.state_dict())
        self.high_water.write(self.version)
        self.metrics.discriminator_version.labels(self.job).set(self.version)

    def train_step(self, fakes_canvases: torch.Tensor, fake_targets: torch.Tensor | None) -> DiscriminatorUpdateStats:
        """One critic step on replayed fakes against as many real images, then publish."""
        real = self.dataset.sample(int(fakes_canvases.shape[0]), self.generator)
        conditional = self.cfg.mode == Mode.CONDITIONAL
        stats = discriminator_update(
            self.discriminator,
            self.optimizer,
            real,
            fakes_canvases,
            fake_targets if conditional else None,
            self.cfg.mode,
            self.cfg.discriminator,
            self.generator,
        )
        with self._lock:
            self.updates += 1
            self.version += 1
            self._latest = stats
        self._publish()
        m, job = self.metrics, self.job
        m.discriminator_updates.labels(job).inc()
        for term, value in (("total", stats.total_loss), ("adversarial", stats.adversarial), ("gradient_penalty", stats.gradient_penalty)):
            m.discriminator_loss.labels(job, term).set(value)
        m.discriminator_d_real.labels(job).set(stats.d_real)
        m.discriminator_d_fake.labels(job).set(stats.d_fake)
        return stats

    def run(self, replay: ReplayClient, learner: services_pb2_grpc.PolicyLearnerStub) -> bool:
        """Train until the policy learner is done (True) or the stop flag is set (False)."""
        request = trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION)
        batch = self.cfg.discriminator.batch_size
        self.run_log.write({"event": "start", "role": Role.DISCRIMINATOR_LEARNER.value, "version": self.version, "restarts": self.restarts, "updates": self.updates})
        try:
            while not self.stop.is_set():
                try:
                    status = learner.GetStatus(request, timeout=2.0)
                except grpc.RpcError:
                    self.stop.wait(0.5)  # the policy learner is restarting: do not race ahead
                    continue
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
                images = sampled.images
                stats = self.train_step(images.canvases, images.targets)
                if self.updates % self.cfg.log_every_updates == 0:
                    self.run_log.write(
                        {"losses/discriminator": stats.total_loss, "charts/d_real": stats.d_real, "charts/d_fake": stats.d_fake, "discriminator_updates": self.updates, "time": time.time()}
                    )
                if self.updates % self.cfg.checkpoint_every_updates == 0:
                    self.checkpoint()
        finally:
            self.checkpoint()
        return self.done

    def checkpoint(self) -> Path:
        payload = {
            "config": self.cfg.model_dump(mode="json"),
            "discriminator": self.discriminator.state_dict(),
            "discriminator_optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "version": self.version,
            "restarts": self.restarts,
            "generator": self.generator.get_state(),
            "role": Role.DISCRIMINATOR_LEARNER.value,
        }
        return save_checkpoint(self.ckpt_dir, payload)

    def restore(self, path: Path) -> None:
        payload = load_checkpoint(path)
        self.discriminator.load_state_dict(payload["discriminator"])
        self.optimizer.load_state_dict(payload["discriminator_optimizer"])
        self.updates = int(payload["updates"])
        self.version = int(payload["version"])
        self.restarts = int(payload.get("restarts", 0)) + 1
        self.generator.set_state(payload["generator"])
        self.metrics.learner_restarts.labels(self.job, Role.DISCRIMINATOR_LEARNER.value).inc(self.restarts)
        logger.info("resumed from %s: %d critic steps, version %d, restart %d", path, self.updates, self.version, self.restarts)


class DiscriminatorLearnerServicer(services_pb2_grpc.DiscriminatorLearnerServicer):
    """Thin gRPC wrapper around :class:`DiscriminatorLearner`."""

    def __init__(self, learner: DiscriminatorLearner) -> None:
        self.learner = learner

    def SubscribeWeights(self, request, context: grpc.ServicerContext):  # noqa: ANN001, ANN201
        return self.learner.publisher.stream(request, context)

    def GetStatus(self, request, context: grpc.ServicerContext) -> trajectory_pb2.DiscriminatorStatus:  # noqa: ANN001
        check_protocol_version(request.protocol_version, message="StatusRequest")
        return self.learner.status()


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
    server = serve(
        [discriminator_learner_binding(DiscriminatorLearnerServicer(learner))],
        cfg.services,
        role=Role.DISCRIMINATOR_LEARNER,
        job=job,
        registry=registry,
        metrics=metrics,
        before_stop=[learner.publisher.close],
        ready_file=ready_file,
    )
    return learner, server


def run(cfg: TrainConfig, *, job: str = "local", ready_file: Path | None = None) -> None:
    """``spiral serve discriminator-learner``: train until the policy learner is done (exit 0) or
    SIGTERM (checkpoint, exit 143).

    Raises:
        SystemExit: 128 + signal number when stopped by a signal first.
    """
    configure_torch_threads(getattr(cfg, "torch_threads", None))
    stop = StopFlag().install()
    learner, server = start_discriminator_learner(cfg, job=job, ready_file=ready_file, resume=resume_allowed(), stop=stop)
    replay = ReplayClient(cfg.services.replay_address, cfg.services)
    channel = create_channel(cfg.services.policy_learner_address, cfg.services, options=CHANNEL_OPTIONS)
    finished = False
    try:
        finished = learner.run(replay, services_pb2_grpc.PolicyLearnerStub(channel))
    finally:
        replay.close()
        channel.close()
        server.stop()
    if not finished:
        stop.exit_if_signalled()

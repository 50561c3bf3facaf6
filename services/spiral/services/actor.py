"""The actor service (``spiral serve actor``): B = ``num_envs`` environments in lockstep.

Loop: take the newest policy weights (a :class:`WeightsSubscriber` on the policy learner), play one
episode per environment with :func:`~spiral.learning.rollout.collect_rollout` (tagged with the
weights' version), hand the trajectory to the sender thread, and — when a discriminator is trained
(``reward.kind: discriminator``) — the final canvases (+ their targets, for conditional critics) to
the replay thread. With the ``l2`` reward nothing reads the replay buffer (``TrainConfig.roles()``
has none), so it is not written.

* Sender thread: one ``SendTrajectories`` call per trajectory, answered once the learner queued it
  (see :meth:`Actor._send`). A one-slot hand-off queue makes the loop wait while the learner's
  queue is full: back-pressure reaches the environments. A failed call (learner restart) is
  retried with backoff (``spiral_actor_reconnects_total``); a refused trajectory (an error that is
  not :attr:`~spiral.errors.SpiralServiceError.retryable`: INVALID_ARGUMENT, FAILED_PRECONDITION…)
  is a bug or a mis-configuration: the actor exits 1.
* Replay thread: inserts final canvases; when the replay buffer is away it drops batches rather
  than stall the policy's data (fakes are plentiful, trajectories are not).
* Status thread: polls the learner's ``GetStatus``; ``done = True`` ends the actor with exit 0.

Conditional trajectories carry the *indices* of their targets in the train split (8 bytes per
episode) rather than the images: see :mod:`spiral.services.trajectory_convert`. With UINT8
canvases a trajectory costs about C×H×W bytes per frame (4,096 at 64×64 grayscale) plus ~30.

Also serves gRPC health and Prometheus ``/metrics`` (``spiral_actor_*``).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import zlib
from contextlib import ExitStack

import grpc
import torch
from prometheus_client import CollectorRegistry

from spiral.agents import build_policy
from spiral.config import Mode, Role, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.errors import DeadlineExceededError, ResourceExhaustedError, SpiralServiceError, UnavailableError
from spiral.learning.rewards import l2_scores
from spiral.learning.rollout import collect_rollout
from spiral.learning.search import search_candidates
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.process import StopFlag
from spiral.services.client import Backoff, create_channel, translate_rpc_error
from spiral.services.replay_client import ReplayClient
from spiral.services.runtime import CHANNEL_OPTIONS, POLL_SECONDS, Outcome, ServeOptions, run_service
from spiral.services.server import serve
from spiral.services.tensor_codec import ImageBatch, trajectory_to_proto
from spiral.services.trajectory_convert import rollout_to_trajectory
from spiral.services.weights import WeightsSubscriber
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, trajectory_pb2

logger = logging.getLogger(__name__)

#: Seconds between GetStatus polls (the learner lingers 3 s after done: several polls fit).
STATUS_POLL_SECONDS = 0.5
#: Trajectories an actor may have played but not yet had acknowledged. One: the actor waits for
#: the learner to queue its trajectory before playing the next, so each actor adds at most one
#: trajectory (one version) of policy lag. The learner is the bottleneck on a few cores anyway; a
#: waiting actor leaves it the CPU. (With 2 in flight the default preset's mean lag was ~7.)
MAX_OUTSTANDING = 1


def default_actor_id() -> str:
    """``<host>-<pid>``: unique without configuration (a pod's host name is its pod name)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def actor_seed(base_seed: int, actor_id: str) -> int:
    """A per-actor seed: stable for a given id, different between ids."""
    return (base_seed * 1_000_003 + zlib.crc32(actor_id.encode())) % (2**63)


class Actor:
    """One actor process. :meth:`run` is called from one thread; the rest are its helpers."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        actor_id: str,
        job: str = "local",
        registry: CollectorRegistry | None = None,
        metrics: SpiralMetrics | None = None,
        dataset: ImageDataset | None = None,
        stop: StopFlag | None = None,
        backoff: Backoff = Backoff(initial_seconds=0.2, max_seconds=2.0),
    ) -> None:
        self.cfg = cfg
        self.actor_id = actor_id
        self.job = job
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = metrics if metrics is not None else create_metrics(self.registry)
        self.stop = stop or StopFlag()
        self.backoff = backoff
        seed = actor_seed(cfg.seed, actor_id)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.env = make_env(cfg.env, seed=seed % (2**31))
        self.conditional = cfg.mode == Mode.CONDITIONAL
        self.dataset = dataset if dataset is not None or not self.conditional else load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        self.policy = build_policy(cfg, self.env)
        self.policy.eval()
        self.loaded_version = -1
        self.loaded_published = 0.0
        self.uses_replay = Role.REPLAY in cfg.roles()
        # A labelled counter has no series until first touched: export every peer's reconnects at
        # 0 so a healthy actor reads 0 reconnects/s on the dashboard, not "no data".
        for peer in (Role.POLICY_LEARNER, Role.REPLAY) if self.uses_replay else (Role.POLICY_LEARNER,):
            self.metrics.actor_reconnects.labels(job, peer.value)
        self.done = threading.Event()
        self.fatal: SpiralServiceError | None = None
        self._send_queue: queue.Queue[trajectory_pb2.Trajectory] = queue.Queue(maxsize=1)
        # Trajectories played but not yet acknowledged by the learner (see MAX_OUTSTANDING).
        self._outstanding = threading.BoundedSemaphore(MAX_OUTSTANDING)
        self._replay_queue: queue.Queue[ImageBatch] = queue.Queue(maxsize=2)
        self._channel = create_channel(cfg.services.policy_learner_address, cfg.services, options=CHANNEL_OPTIONS)
        self._stub = services_pb2_grpc.PolicyLearnerStub(self._channel)
        self.trajectories_sent = 0
        self.replay_dropped = 0

    # --------------------------------------------------------------------------- helpers ---

    def _finished(self) -> bool:
        return self.stop.is_set() or self.done.is_set() or self.fatal is not None

    def _fail(self, error: SpiralServiceError) -> None:
        logger.error("actor %s stops: %s", self.actor_id, error)
        self.fatal = error
        self.stop.set()

    def _reconnected(self, peer: Role, error: BaseException) -> None:
        self.metrics.actor_reconnects.labels(self.job, peer.value).inc()
        logger.warning("actor %s: stream to %s broke (%s); reconnecting", self.actor_id, peer.value, error)

    # ----------------------------------------------------------------------- status thread ---

    def _poll_status(self) -> None:
        request = trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION)
        while not self._finished():
            try:
                status = self._stub.GetStatus(request, timeout=2.0)
                if status.done:
                    logger.info("actor %s: the learner's budget is spent (version %d); exiting", self.actor_id, status.version)
                    self.done.set()
                    return
            except grpc.RpcError:
                pass  # the learner is restarting: the sender counts the reconnect
            self.stop.wait(STATUS_POLL_SECONDS)

    # ----------------------------------------------------------------------- sender thread ---

    def _send(self) -> None:
        """Send each trajectory as its own ``SendTrajectories`` call and wait for the summary.

        The summary comes back once the learner has queued the trajectory, so it is an
        acknowledgment: at most one trajectory per actor waits beyond the learner's bounded queue.
        (A long-lived stream would not bound it: HTTP/2 windows auto-tune to megabytes on loopback
        and would buffer dozens of small trajectories, i.e. policy lag.) A retryable failure (the
        learner restarting) resends the same trajectory after a backoff.
        """
        delays = self.backoff.delays()
        deadline = max(self.cfg.services.rpc_deadline_seconds, 5.0)
        while not self._finished():
            try:
                message = self._send_queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            while not self._finished():
                try:
                    summary = self._stub.SendTrajectories(iter([message]), timeout=deadline)
                except grpc.RpcError as err:
                    if self._finished():
                        return
                    error = translate_rpc_error(err, method="spiral.v1.PolicyLearner/SendTrajectories", timeout=deadline)
                    if not error.retryable:
                        self._fail(error)
                        return
                    self._reconnected(Role.POLICY_LEARNER, error)
                    self.stop.wait(next(delays))
                    continue
                delays = self.backoff.delays()
                if summary.num_trajectories:
                    self.trajectories_sent += 1
                break
            self._outstanding.release()

    # ----------------------------------------------------------------------- replay thread ---

    def _insert_replay(self) -> None:
        client = ReplayClient(self.cfg.services.replay_address, self.cfg.services)
        delays = self.backoff.delays()
        try:
            while not self._finished():
                try:
                    batch = self._replay_queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                try:
                    client.insert(batch, timeout=self.cfg.services.rpc_deadline_seconds)
                    delays = self.backoff.delays()
                except UnavailableError as err:
                    self._reconnected(Role.REPLAY, err)
                    self.stop.wait(next(delays))
                except SpiralServiceError as err:  # rate limited past the deadline, shutting down
                    logger.warning("actor %s: replay insert failed: %s", self.actor_id, err)
        finally:
            client.close()

    # ------------------------------------------------------------------------------- main ---

    def _load_newest(self, subscriber: WeightsSubscriber) -> bool:
        """Swap in the newest weights; False if none arrived before stopping."""
        weights = subscriber.latest()
        while weights is None:
            if self._finished():
                return False
            try:
                weights = subscriber.wait_for_version(0, timeout=POLL_SECONDS * 5)
            except DeadlineExceededError:
                continue  # no weights yet: check the flags, then wait again
            except SpiralServiceError as err:
                self._fail(err)
                return False
        if weights.version != self.loaded_version:
            self.policy.load_state_dict(weights.state_dict)
            self.loaded_version = weights.version
            self.loaded_published = weights.published_unix_seconds
        self.metrics.actor_weight_age_seconds.labels(self.job).set(max(0.0, time.time() - self.loaded_published))
        return True

    def _hand_over(self, message: trajectory_pb2.Trajectory) -> None:
        while not self._finished():
            try:
                self._send_queue.put(message, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _acquire_slot(self) -> bool:
        while not self._finished():
            if self._outstanding.acquire(timeout=POLL_SECONDS):
                return True
        return False

    def play_once(self) -> None:
        """One batch of episodes with the loaded weights, handed to the sender (and replay)."""
        batch = self.cfg.num_envs
        targets = indices = noise = None
        if self.conditional:
            assert self.dataset is not None
            indices = torch.randint(self.dataset.num_train, (batch,), generator=self.generator)
            targets = self.dataset.uint8("train")[indices].float().div_(255.0)
        else:
            noise = torch.randn(batch, self.cfg.agent.noise_size, generator=self.generator)
        rollout = collect_rollout(
            self.env, self.policy, targets, noise, batch, policy_version=self.loaded_version,
            search_candidates=search_candidates(self.cfg, self.generator),
            search_lookahead=self.cfg.search.lookahead,
        )
        traj = rollout_to_trajectory(rollout, tuple(self.env.action_spec.names), actor_id=self.actor_id, target_indices=indices)
        message = trajectory_to_proto(traj)
        limit = self.cfg.services.max_message_bytes
        if message.ByteSize() > limit:
            # The learner would answer RESOURCE_EXHAUSTED, which is retryable: the actor would
            # resend the same too-large trajectory forever without saying why.
            self._fail(
                ResourceExhaustedError(
                    f"a trajectory of {message.ByteSize()} bytes (num_envs {batch} × {rollout.num_frames // batch} steps) exceeds "
                    f"services.max_message_bytes ({limit}): raise services.max_message_bytes or lower num_envs"
                )
            )
            return
        self._hand_over(message)
        if self.uses_replay:
            try:
                self._replay_queue.put_nowait(ImageBatch(rollout.final_canvas, targets))
            except queue.Full:
                self.replay_dropped += 1
        m = self.metrics
        m.actor_frames.labels(self.job).inc(rollout.num_frames)
        m.actor_episodes.labels(self.job).inc(batch)
        if targets is not None:
            m.actor_episode_return.labels(self.job).set(float(l2_scores(rollout.final_canvas, targets).mean()) * self.cfg.reward.scale)

    def run(self) -> int:
        """Act until the learner is done (0), SIGTERM (0) or a permanent failure (1)."""
        subscriber = WeightsSubscriber(
            self.cfg.services.policy_learner_address,
            self.cfg.services,
            source=Role.POLICY_LEARNER,
            subscriber_id=self.actor_id,
            on_reconnect=lambda err: self._reconnected(Role.POLICY_LEARNER, err),
        ).start()
        threads = [
            threading.Thread(target=self._poll_status, name="actor-status", daemon=True),
            threading.Thread(target=self._send, name="actor-send", daemon=True),
        ]
        if self.uses_replay:
            threads.append(threading.Thread(target=self._insert_replay, name="actor-replay", daemon=True))
        for thread in threads:
            thread.start()
        logger.info("actor %s: %d envs, learner %s", self.actor_id, self.cfg.num_envs, self.cfg.services.policy_learner_address)
        try:
            while not self._finished():
                # Wait for the previous trajectory's acknowledgment *before* taking the newest
                # weights: the next batch then acts with the freshest policy.
                if not self._acquire_slot() or not self._load_newest(subscriber):
                    break
                self.play_once()
        finally:
            self.stop.set()
            subscriber.stop(timeout=2.0)
            for thread in threads:
                thread.join(timeout=3.0)
            self._channel.close()
        return 1 if self.fatal is not None else 0


def run(cfg: TrainConfig, options: ServeOptions) -> None:
    """``spiral serve actor``: act until the learner's budget is spent (exit 0) or SIGTERM (143).

    Raises:
        SystemExit: code 1 after a permanent failure (a refused trajectory, a protocol mismatch);
            128 + signal number when stopped by a signal before the learner was done.
    """

    def act(stop: StopFlag, resources: ExitStack) -> Outcome:
        registry = CollectorRegistry()
        metrics = create_metrics(registry)
        actor_id = options.actor_id or default_actor_id()
        actor = Actor(cfg, actor_id=actor_id, job=options.job, registry=registry, metrics=metrics, stop=stop)
        # Health and /metrics only: nothing calls an actor.
        server = serve([], cfg.services, role=Role.ACTOR, job=options.job, registry=registry, metrics=metrics, grace_seconds=0.5, ready_file=options.ready_file)
        resources.callback(server.stop)
        if actor.run() != 0:
            return Outcome.FAILED
        return Outcome.FINISHED if actor.done.is_set() else Outcome.STOPPED

    run_service(options, act)

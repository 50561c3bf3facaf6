"""The replay buffer service (``spiral serve replay``): ``ReplayServicer``, a thin wrapper around
:class:`~spiral.replay.Table`, and :func:`run` / :func:`start_replay_server`. Its callers use
:class:`spiral.services.replay_client.ReplayClient`.

Actors insert final canvases (with targets in conditional mode); the discriminator learner samples
them as fakes. Items are stored in the dtype they arrived in (UINT8 canvases take a quarter of the
memory) and come back the same way.

Flow control: ``Insert`` is a bidirectional stream answering each request once its items are in;
while the rate limiter blocks, the handler stops reading, so gRPC's HTTP/2 window pushes back on
the sender, and ``ReplayClient.insert_many`` keeps at most ``max_in_flight`` requests
unacknowledged.

Validation: every insert must be this job's images (:mod:`spiral.services.replay_checks`: C×H×W,
targets iff conditional, FLOAT32 values finite in [0, 1]) and every count, timeout and name is
bounded, so no request can plant a bad item or hold the table lock for long.

Durability: the buffer restores from its checkpoint (``replay.checkpoint_path``, default
``<output_dir>/replay/replay.ckpt``) on start unless ``--no-resume`` — keeping only the items this
job would accept — and writes it every ``replay.checkpoint_every_seconds`` (when anything changed),
on shutdown (SIGTERM) and on the ``Checkpoint`` RPC. A SIGKILL loses at most one interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import grpc
import torch
from prometheus_client import CollectorRegistry

from spiral.config import Role, TrainConfig
from spiral.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.process import StopFlag
from spiral.replay import CheckpointResult, Table, TableInfo, restore_tables, save_tables
from spiral.replay.table import SampledItem
from spiral.services.errors import check_protocol_version
from spiral.services.replay_checks import (
    CANVAS_FIELD,
    MAX_TABLES_PER_INFO,
    TARGET_FIELD,
    ImageExpectations,
    check_count,
    check_images,
    check_table_name,
    check_timeout,
    item_fits,
)
from spiral.services.replay_client import DEFAULT_TABLE
from spiral.services.runtime import POLL_SECONDS, Outcome, ServeOptions, run_service
from spiral.services.server import DEFAULT_GRACE_SECONDS, RunningServer, replay_binding, serve
from spiral.services.tensor_codec import ImageBatch, images_from_proto, images_to_proto
from spiral.v1 import replay_pb2, replay_pb2_grpc

logger = logging.getLogger(__name__)


def checkpoint_path_for(cfg: TrainConfig) -> Path:
    """Where the replay server of a run checkpoints: ``replay.checkpoint_path``, by default
    ``<output_dir>/replay/replay.ckpt``."""
    return Path(cfg.replay.checkpoint_path) if cfg.replay.checkpoint_path is not None else Path(cfg.output_dir) / "replay" / "replay.ckpt"


# ---------------------------------------------------------------------------------- servicer ---


class ReplayServicer(replay_pb2_grpc.ReplayBufferServicer):
    """Serves ``tables`` over gRPC; every domain error it raises becomes a status in ``serve``."""

    def __init__(
        self,
        tables: Mapping[str, Table],
        *,
        checkpoint_path: Path | None,
        max_message_bytes: int,
        default_timeout_seconds: float,
        expect: ImageExpectations | None = None,
    ) -> None:
        """
        Args:
            expect: the images this job inserts; None accepts any well-formed images (tests of
                the transport alone).
        """
        self._tables = dict(tables)
        self._expect = expect
        self._checkpoint_path = checkpoint_path
        # Sample responses stay at half the limit: protobuf framing and targets need headroom.
        self._response_budget = max(1, max_message_bytes // 2)
        self._default_timeout = default_timeout_seconds
        self._checkpoint_lock = threading.Lock()

    @property
    def tables(self) -> dict[str, Table]:
        return dict(self._tables)

    def _table(self, name: str, message: str) -> Table:
        check_table_name(name, f"{message}.table")
        table = self._tables.get(name)
        if table is None:
            raise NotFoundError(f"{message}.table {name!r} does not exist; tables: {sorted(self._tables)}")
        return table

    def _timeout(self, requested: float, message: str, context: grpc.ServicerContext) -> float:
        check_timeout(requested, f"{message}.timeout_seconds")
        timeout = requested or self._default_timeout
        remaining = context.time_remaining()
        # Never wait past the client's own deadline: it would be waiting for nobody.
        return min(timeout, remaining) if remaining is not None else timeout

    def Insert(self, request_iterator: Iterator[replay_pb2.InsertRequest], context: grpc.ServicerContext) -> Iterator[replay_pb2.InsertResponse]:
        for request in request_iterator:
            check_protocol_version(request.protocol_version, message="InsertRequest")
            table = self._table(request.table, "InsertRequest")
            if not request.HasField("images"):
                raise InvalidArgumentError("InsertRequest.images is missing (required)")
            batch = images_from_proto(request.images, field="InsertRequest.images")
            if self._expect is not None:
                check_images(batch, self._expect)
            timeout = self._timeout(request.timeout_seconds, "InsertRequest", context)
            keys = []
            for i in range(len(batch)):
                data = {CANVAS_FIELD: batch.canvases[i]}
                if batch.targets is not None:
                    data[TARGET_FIELD] = batch.targets[i]
                keys.append(table.insert(data, timeout=timeout, is_active=context.is_active))
            yield replay_pb2.InsertResponse(keys=keys, table_size=table.size)

    def Sample(self, request: replay_pb2.SampleRequest, context: grpc.ServicerContext) -> Iterator[replay_pb2.SampleResponse]:
        check_protocol_version(request.protocol_version, message="SampleRequest")
        table = self._table(request.table, "SampleRequest")
        check_count(request.num_samples, "SampleRequest.num_samples")
        timeout = self._timeout(request.timeout_seconds, "SampleRequest", context)
        items = table.sample(request.num_samples, timeout=timeout, is_active=context.is_active)
        yield from self._responses(items)

    def _responses(self, items: list[SampledItem]) -> Iterator[replay_pb2.SampleResponse]:
        """Group consecutive items of equal layout into responses of at most the byte budget."""
        group: list[SampledItem] = []
        group_bytes = 0

        def layout(item: SampledItem) -> tuple:
            return tuple((n, tuple(t.shape), t.dtype) for n, t in sorted(item.data.items()))

        for item in items:
            size = sum(t.numel() * t.element_size() for t in item.data.values())
            if group and (layout(item) != layout(group[0]) or group_bytes + size > self._response_budget):
                yield _sample_response(group)
                group, group_bytes = [], 0
            group.append(item)
            group_bytes += size
        if group:
            yield _sample_response(group)

    def Info(self, request: replay_pb2.InfoRequest, context: grpc.ServicerContext) -> replay_pb2.InfoResponse:
        check_protocol_version(request.protocol_version, message="InfoRequest")
        if len(request.tables) > MAX_TABLES_PER_INFO:
            raise InvalidArgumentError(f"InfoRequest.tables lists {len(request.tables)} names; at most {MAX_TABLES_PER_INFO}")
        names = list(request.tables) or sorted(self._tables)
        return replay_pb2.InfoResponse(tables=[table_info_to_proto(self._table(n, "InfoRequest").info()) for n in names])

    def Checkpoint(self, request: replay_pb2.CheckpointRequest, context: grpc.ServicerContext) -> replay_pb2.CheckpointResponse:
        check_protocol_version(request.protocol_version, message="CheckpointRequest")
        result = self.checkpoint()
        return replay_pb2.CheckpointResponse(path=str(result.path), num_items=result.num_items, num_bytes=result.num_bytes)

    def checkpoint(self) -> CheckpointResult:
        """Write all tables to the checkpoint path (one writer at a time).

        Raises:
            FailedPreconditionError: the server was started without a checkpoint path.
        """
        if self._checkpoint_path is None:
            raise FailedPreconditionError("this replay server has no checkpoint path (started without output_dir)")
        with self._checkpoint_lock:
            return save_tables(self._tables, self._checkpoint_path)


def _sample_response(items: list[SampledItem]) -> replay_pb2.SampleResponse:
    canvases = torch.stack([i.data[CANVAS_FIELD] for i in items])
    targets = torch.stack([i.data[TARGET_FIELD] for i in items]) if TARGET_FIELD in items[0].data else None
    return replay_pb2.SampleResponse(
        images=images_to_proto(ImageBatch(canvases, targets), encoding=None),
        keys=[i.key for i in items],
        times_sampled=[i.times_sampled for i in items],
    )


def table_info_to_proto(info: TableInfo) -> replay_pb2.TableInfo:
    rl = info.rate_limiter
    return replay_pb2.TableInfo(
        name=info.name,
        size=info.size,
        max_size=info.max_size,
        sampler=info.sampler,
        remover=info.remover,
        max_times_sampled=info.max_times_sampled,
        num_inserts=info.num_inserts,
        num_samples=info.num_samples,
        num_deletes=info.num_deletes,
        rate_limiter=replay_pb2.RateLimiterInfo(
            samples_per_insert=rl.samples_per_insert,
            min_size_to_sample=rl.min_size_to_sample,
            min_diff=rl.min_diff,
            max_diff=rl.max_diff,
            insert_blocked_seconds=rl.insert_blocked_seconds,
            sample_blocked_seconds=rl.sample_blocked_seconds,
            num_blocked_inserts=rl.num_blocked_inserts,
            num_blocked_samples=rl.num_blocked_samples,
        ),
    )


# ------------------------------------------------------------------------------------ server ---


class ReplayServer(NamedTuple):
    """A running replay server: its tables (for in-process use), servicer and gRPC server."""

    server: RunningServer
    servicer: ReplayServicer
    tables: dict[str, Table]

    @property
    def address(self) -> str:
        return self.server.address

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop serving, close the tables, write the checkpoint."""
        self.server.stop(grace_seconds)


def start_replay_server(
    cfg: TrainConfig,
    *,
    job: str = "local",
    checkpoint_path: Path | None = None,
    restore: bool = True,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ready_file: Path | None = None,
    seed: int | None = None,
) -> ReplayServer:
    """Build the table from ``cfg.replay``, restore the checkpoint if there is one, and serve.

    Args:
        checkpoint_path: defaults to :func:`checkpoint_path_for`; written on shutdown.
        restore: load ``checkpoint_path`` when it exists.

    Raises:
        ValueError: the replay config would deadlock (see :class:`Table`).
        InvalidArgumentError: the existing checkpoint is unreadable (the server does not start:
            move the file away to start empty).
        ConfigError, OSError: see :func:`spiral.services.server.serve`.
    """
    registry = CollectorRegistry()
    metrics: SpiralMetrics = create_metrics(registry)
    path = checkpoint_path if checkpoint_path is not None else checkpoint_path_for(cfg)
    expect = ImageExpectations.from_config(cfg)
    tables = {DEFAULT_TABLE: Table.from_config(DEFAULT_TABLE, cfg.replay, seed=cfg.seed if seed is None else seed, metrics=metrics, job=job)}
    if restore and path.exists():
        # Only items this job would accept: a bad item saved by an older release must not crash
        # the critic learner on every restart.
        restore_tables(tables, path, keep=lambda item: item_fits(item, expect))
    servicer = ReplayServicer(
        tables,
        checkpoint_path=path,
        max_message_bytes=cfg.services.max_message_bytes,
        default_timeout_seconds=cfg.services.rpc_deadline_seconds,
        expect=expect,
    )
    periodic = PeriodicCheckpoint(servicer, cfg.replay.checkpoint_every_seconds)

    def close_tables() -> None:
        periodic.stop()
        for table in tables.values():
            table.close()

    def final_checkpoint() -> None:
        servicer.checkpoint()

    running = serve(
        [replay_binding(servicer)],
        cfg.services,
        role=Role.REPLAY,
        job=job,
        registry=registry,
        metrics=metrics,
        grace_seconds=grace_seconds,
        # Closing first wakes rate-limited inserts and samples (they fail with FAILED_PRECONDITION)
        # instead of letting them hold the grace period; the checkpoint then sees a quiet table.
        before_stop=[close_tables],
        on_stop=[final_checkpoint],
        ready_file=ready_file,
        expected_clients=cfg.num_actors,  # an Insert stream per actor; the critic's Sample fits the margin
    )
    periodic.start()
    return ReplayServer(running, servicer, tables)


class PeriodicCheckpoint:
    """Writes the servicer's checkpoint every ``interval`` seconds when the tables changed since the
    last one, in a daemon thread; a failed write is logged and retried next interval (the buffer
    keeps serving). ``interval`` None: never. Thread-safe: ``stop`` may be called from any thread."""

    def __init__(self, servicer: ReplayServicer, interval: float | None) -> None:
        self._servicer = servicer
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-checkpoint", daemon=True)
        self._last: tuple[int, ...] | None = None
        self.num_written = 0

    def start(self) -> PeriodicCheckpoint:
        if self._interval is not None:
            self._last = self._fingerprint()
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30.0)  # a write in progress finishes (it is atomic either way)

    def _fingerprint(self) -> tuple[int, ...]:
        """Counts that change with every insert and sample (cheap: no data copied)."""
        return tuple(v for t in self._servicer.tables.values() for v in (t.info().num_inserts, t.info().num_samples))

    def _run(self) -> None:
        assert self._interval is not None
        while not self._stopped.wait(self._interval):
            now = self._fingerprint()
            if now == self._last:
                continue
            started = time.monotonic()
            try:
                self._servicer.checkpoint()
            except OSError as err:
                logger.error("periodic replay checkpoint failed (retrying in %.0f s): %s", self._interval, err)
                continue
            self._last = now
            self.num_written += 1
            logger.debug("periodic replay checkpoint took %.2f s", time.monotonic() - started)


def run(cfg: TrainConfig, options: ServeOptions) -> None:
    """``spiral serve replay``: serve until SIGTERM/SIGINT, then checkpoint and exit 0 (a replay
    buffer has no budget: being stopped is how it ends)."""

    def serve_until_stopped(stop: StopFlag, resources: ExitStack) -> Outcome:
        replay = start_replay_server(cfg, job=options.job, restore=options.resume, ready_file=options.ready_file)
        resources.callback(replay.stop)
        while not stop.wait(POLL_SECONDS):
            pass
        return Outcome.FINISHED

    run_service(options, serve_until_stopped)

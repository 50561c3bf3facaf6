"""``ReplayClient``: the typed client of the replay buffer service (:mod:`spiral.services.replay_service`).

Actors insert final canvases through it and the discriminator learner samples them as fakes; it
lives apart from the server so that those services need not import another service module.
Canvases travel as UINT8 by default (a quarter of float32) and come back as float32 in [0, 1].
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import grpc
import torch

from spiral.config import ServicesConfig
from spiral.replay import CheckpointResult, RateLimiterInfo, TableInfo
from spiral.services.client import call_unary, create_channel, translate_rpc_error, wait_for_ready
from spiral.services.tensor_codec import CanvasEncoding, ImageBatch, images_from_proto, images_to_proto
from spiral.v1 import PROTOCOL_VERSION, replay_pb2, replay_pb2_grpc

#: The table actors fill with final canvases and the discriminator learner samples as fakes
#: (the name the chart's alerts and dashboards query).
DEFAULT_TABLE = "fakes"


def table_info_from_proto(msg: replay_pb2.TableInfo) -> TableInfo:
    rl = msg.rate_limiter
    return TableInfo(
        msg.name,
        msg.size,
        msg.max_size,
        msg.sampler,
        msg.remover,
        msg.max_times_sampled,
        msg.num_inserts,
        msg.num_samples,
        msg.num_deletes,
        RateLimiterInfo(
            rl.samples_per_insert,
            rl.min_size_to_sample,
            rl.min_diff,
            rl.max_diff,
            rl.insert_blocked_seconds,
            rl.sample_blocked_seconds,
            rl.num_blocked_inserts,
            rl.num_blocked_samples,
        ),
    )



class SampledImages(NamedTuple):
    """A ``ReplayClient.sample`` result: float32 images in [0, 1], their keys and sample counts."""

    images: ImageBatch
    keys: list[int]
    times_sampled: list[int]


class ReplayClient:
    """Typed client of the ReplayBuffer service; every failure is a :class:`SpiralServiceError`.

    Thread-safe (a gRPC channel is).
    """

    _SERVICE = "spiral.v1.ReplayBuffer"

    def __init__(self, address: str, cfg: ServicesConfig, *, target_name_override: str | None = None) -> None:
        self.address = address
        self._cfg = cfg
        self._channel = create_channel(address, cfg, target_name_override=target_name_override)
        self._stub = replay_pb2_grpc.ReplayBufferStub(self._channel)

    def wait_ready(self, timeout: float = 10.0) -> ReplayClient:
        """Raises: UnavailableError: not connected within ``timeout``."""
        wait_for_ready(self._channel, timeout, address=self.address)
        return self

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ReplayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def insert(
        self, images: ImageBatch, *, table: str = DEFAULT_TABLE, encoding: CanvasEncoding = CanvasEncoding.UINT8, timeout: float | None = None
    ) -> list[int]:
        """Insert one batch (each row one item); returns the keys.

        Raises:
            DeadlineExceededError: rate limited for longer than ``timeout`` (default:
                ``rpc_deadline_seconds``); InvalidArgumentError, NotFoundError,
                ResourceExhaustedError, UnavailableError: see the status.
        """
        keys: list[int] = []
        for response in self.insert_many([images], table=table, encoding=encoding, timeout=timeout):
            keys.extend(response.keys)
        return keys

    def insert_many(
        self,
        batches: Iterable[ImageBatch],
        *,
        table: str = DEFAULT_TABLE,
        encoding: CanvasEncoding = CanvasEncoding.UINT8,
        timeout: float | None = None,
        max_in_flight: int = 4,
    ) -> Iterator[replay_pb2.InsertResponse]:
        """Stream batches over one Insert call, at most ``max_in_flight`` unacknowledged.

        ``timeout`` bounds each item's wait for the rate limiter, not the stream's length.
        Yields one response per batch, in order.

        Raises:
            SpiralServiceError: the stream failed (the subclass matches the status).
        """
        limit = timeout if timeout is not None else self._cfg.rpc_deadline_seconds
        window = threading.Semaphore(max_in_flight)
        done = threading.Event()

        def requests() -> Iterator[replay_pb2.InsertRequest]:
            for batch in batches:
                while not window.acquire(timeout=0.1):
                    if done.is_set():
                        return
                yield replay_pb2.InsertRequest(protocol_version=PROTOCOL_VERSION, table=table, images=images_to_proto(batch, encoding), timeout_seconds=limit)

        call = self._stub.Insert(requests())
        try:
            for response in call:
                window.release()
                yield response
        except grpc.RpcError as err:
            raise translate_rpc_error(err, method=f"{self._SERVICE}/Insert", timeout=limit) from None
        finally:
            done.set()
            call.cancel()

    def sample(self, num_samples: int, *, table: str = DEFAULT_TABLE, timeout: float | None = None) -> SampledImages:
        """Sample ``num_samples`` items (waiting up to ``timeout`` for the rate limiter).

        Raises:
            DeadlineExceededError: not enough items within ``timeout``; InvalidArgumentError,
                NotFoundError, UnavailableError: see the status.
        """
        limit = timeout if timeout is not None else self._cfg.rpc_deadline_seconds
        request = replay_pb2.SampleRequest(protocol_version=PROTOCOL_VERSION, table=table, num_samples=num_samples, timeout_seconds=limit)
        canvases, targets, keys, times = [], [], [], []
        try:
            # The RPC deadline leaves the server's own timeout room to answer with its message.
            for response in self._stub.Sample(request, timeout=limit + 5.0):
                batch = images_from_proto(response.images, field="SampleResponse.images").decoded()
                canvases.append(batch.canvases)
                if batch.targets is not None:
                    targets.append(batch.targets)
                keys.extend(response.keys)
                times.extend(response.times_sampled)
        except grpc.RpcError as err:
            raise translate_rpc_error(err, method=f"{self._SERVICE}/Sample", timeout=limit) from None
        images = ImageBatch(torch.cat(canvases), torch.cat(targets) if targets else None)
        return SampledImages(images, keys, times)

    def info(self, tables: Iterable[str] = ()) -> list[TableInfo]:
        """Raises: NotFoundError for an unknown table; UnavailableError."""
        request = replay_pb2.InfoRequest(protocol_version=PROTOCOL_VERSION, tables=list(tables))
        response = call_unary(self._stub.Info, request, method=f"{self._SERVICE}/Info", timeout=self._cfg.rpc_deadline_seconds)
        return [table_info_from_proto(t) for t in response.tables]

    def checkpoint(self) -> CheckpointResult:
        """Ask the server to write its checkpoint now; returns the path (on the server) and size."""
        request = replay_pb2.CheckpointRequest(protocol_version=PROTOCOL_VERSION)
        response = call_unary(self._stub.Checkpoint, request, method=f"{self._SERVICE}/Checkpoint", timeout=self._cfg.rpc_deadline_seconds)
        return CheckpointResult(Path(response.path), int(response.num_items), int(response.num_bytes))

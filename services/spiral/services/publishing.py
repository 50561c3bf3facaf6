"""Publishing a learner's weights under a version that never goes back: the part of the policy
learner and the discriminator learner services that is the same in both.

:class:`Publication` takes a resumed :class:`~spiral.learning.state.TrainingState` and the module
whose weights subscribers want (the policy, or the critic), and on construction:

1. exports the role's ``spiral_learner_restarts_total`` (at 0 on a fresh start: a labelled counter
   has no series until touched, and ``increase()`` on the dashboard and in the
   ``SpiralLearnerRestarting`` alert must read 0, not "no data"; on a resume it adds the whole
   restart history, because the counter starts at 0 in every process);
2. continues the version above ``max(checkpoint version, high-water mark)``, so subscribers never
   see a version number they already saw (:class:`~spiral.services.runtime.VersionHighWater`);
3. publishes the current weights, so subscribers have something from the start.

After each update the learner calls :meth:`Publication.publish`. Not thread-safe: the learner's
loop thread owns it (the :class:`~spiral.services.weights.WeightsPublisher` inside serves gRPC
threads safely).

:class:`WeightsAndStatusServicer` and :func:`serve_learner` are the rest the two learners share:
the two RPCs they serve alike, and how each is put behind its gRPC server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import grpc
import torch
from prometheus_client import CollectorRegistry, Gauge

from spiral.config import Role, ServicesConfig
from spiral.learning.state import TrainingState
from spiral.metrics import SpiralMetrics
from spiral.services.errors import check_protocol_version
from spiral.services.runtime import VersionHighWater
from spiral.services.server import RunningServer, ServiceBinding, serve
from spiral.services.weights import WeightsPublisher


class Publication:
    """The versioned weights of one learner (see the module docstring)."""

    def __init__(
        self,
        state: TrainingState,
        module: torch.nn.Module,
        *,
        role: Role,
        version_file: Path,
        services: ServicesConfig,
        metrics: SpiralMetrics,
        job: str,
        version_gauge: Gauge,
        publish_now: bool = True,
    ) -> None:
        """``publish_now=False`` holds the first publication back until :meth:`publish` (a
        learner that pretrains first: subscribers wait rather than act with weights about to change)."""
        self.state = state
        self.module = module
        self.publisher = WeightsPublisher(services.effective_weight_chunk_bytes, metrics=metrics, job=job, role=role)
        self.high_water = VersionHighWater(version_file)
        self._version_gauge = version_gauge
        metrics.learner_restarts.labels(job, role.value).inc(state.restarts)
        state.version = max(state.version, self.high_water.read() + 1)
        if publish_now:
            self.publish()

    def publish(self) -> None:
        """Publish the module's weights under the state's version, and record the version."""
        version = self.state.version
        self.publisher.publish(version, self.module.state_dict())
        self.high_water.write(version)
        self._version_gauge.set(version)


class PublishingLearner(Protocol):
    """What :class:`WeightsAndStatusServicer` and :func:`serve_learner` need of a learner."""

    @property
    def publisher(self) -> WeightsPublisher: ...

    def status(self) -> Any: ...


class WeightsAndStatusServicer:
    """``SubscribeWeights`` and ``GetStatus``, served alike by both learners: mixed in before each
    learner's generated servicer class, which adds its own RPCs."""

    def __init__(self, learner: PublishingLearner) -> None:
        self.learner = learner

    def SubscribeWeights(self, request, context: grpc.ServicerContext):  # noqa: ANN001, ANN201
        return self.learner.publisher.stream(request, context)

    def GetStatus(self, request, context: grpc.ServicerContext):  # noqa: ANN001, ANN201
        check_protocol_version(request.protocol_version, message="StatusRequest")
        return self.learner.status()


def serve_learner(
    learner: PublishingLearner,
    binding: ServiceBinding,
    services: ServicesConfig,
    *,
    role: Role,
    job: str,
    registry: CollectorRegistry,
    metrics: SpiralMetrics,
    ready_file: Path | None,
    expected_clients: int = 1,
) -> RunningServer:
    """Serve ``binding`` for ``learner``; its weights stream closes first when the server stops.

    Raises:
        ConfigError, OSError: see :func:`spiral.services.server.serve`.
    """
    return serve(
        [binding],
        services,
        role=role,
        job=job,
        registry=registry,
        metrics=metrics,
        before_stop=[learner.publisher.close],
        ready_file=ready_file,
        expected_clients=expected_clients,
    )

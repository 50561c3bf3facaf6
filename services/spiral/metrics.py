"""Every Prometheus metric the services export, defined once.

Names follow ``spiral_<component>_<quantity>_<unit>`` in base units with ``_total`` on counters
(SPIRAL-NOTES §6). The Grafana dashboards and alert rules in ``charts/`` may only query names
registered here; a test checks that. Metrics are created on a caller-supplied registry (no
import-time registration), so tests and several in-process services do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Seconds buckets for learner steps and RPCs: sub-millisecond gRPC up to multi-second paper-size steps.
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class SpiralMetrics:
    """The metric objects of one process. Labels: ``spiral_job`` on all (the SpiralJob name; ``local``
    for ``spiral train``), plus ``role``/``method``/``code`` on gRPC."""

    # actors
    actor_frames: Counter
    actor_episodes: Counter
    actor_episode_return: Gauge
    actor_weight_age_seconds: Gauge
    actor_reconnects: Counter
    # policy learner
    learner_frames: Counter
    learner_updates: Counter
    learner_queue_depth: Gauge
    learner_data_wait: Counter
    learner_actor_wait: Counter
    learner_policy_version: Gauge
    learner_policy_lag: Histogram
    learner_step_seconds: Histogram
    learner_loss: Gauge
    learner_reward: Gauge
    learner_l2: Gauge
    learner_digit_confident: Gauge
    learner_restarts: Counter
    learner_skipped_updates: Counter
    learner_rejected_trajectories: Counter
    learner_hyperparameter: Gauge
    # discriminator learner
    discriminator_updates: Counter
    discriminator_loss: Gauge
    discriminator_d_real: Gauge
    discriminator_d_fake: Gauge
    discriminator_version: Gauge
    # replay
    replay_size: Gauge
    replay_inserts: Counter
    replay_samples: Counter
    replay_rate_limited_seconds: Counter
    # transport
    grpc_requests: Counter
    grpc_request_seconds: Histogram
    weights_published_bytes: Counter
    trajectory_bytes: Counter


def create_metrics(registry: CollectorRegistry) -> SpiralMetrics:
    """Register all SPIRAL metrics on ``registry`` and return them."""
    # `spiral_job` (the SpiralJob name), not `job`: Prometheus owns `job` for the scrape job.
    job = ["spiral_job"]
    return SpiralMetrics(
        actor_frames=Counter("spiral_actor_frames_total", "Environment steps taken by actors (one frame = one action on one canvas).", job, registry=registry),
        actor_episodes=Counter("spiral_actor_episodes_total", "Episodes finished by actors.", job, registry=registry),
        actor_episode_return=Gauge(
            "spiral_actor_episode_return",
            "Mean undiscounted return of the last finished batch of episodes, as the actor computed it (−L2 or D).",
            job,
            registry=registry,
        ),
        actor_weight_age_seconds=Gauge(
            "spiral_actor_weight_age_seconds",
            "Seconds since the actor's policy weights were published by the learner.",
            job,
            registry=registry,
        ),
        actor_reconnects=Counter(
            "spiral_actor_reconnects_total",
            "Times an actor re-established a stream to a peer after a failure.",
            job + ["peer"],
            registry=registry,
        ),
        learner_frames=Counter("spiral_learner_frames_total", "Environment steps consumed by policy updates.", job, registry=registry),
        learner_updates=Counter("spiral_learner_updates_total", "Policy updates (optimizer steps).", job, registry=registry),
        learner_queue_depth=Gauge("spiral_learner_queue_depth", "Trajectories waiting in the policy learner's batching queue.", job, registry=registry),
        # The actor autoscaler's two signals (spiral_operator.lifecycle.autoscale_step): who waits for whom.
        learner_data_wait=Counter(
            "spiral_learner_data_wait_seconds_total",
            "Seconds the policy learner's update loop waited for trajectories from actors (it starves: more actors would feed it).",
            job,
            registry=registry,
        ),
        learner_actor_wait=Counter(
            "spiral_learner_actor_wait_seconds_total",
            "Seconds actors' SendTrajectories calls waited for room in the policy learner's full queue, summed over the calls "
            "(back-pressure: the actors could send more than the learner takes).",
            job,
            registry=registry,
        ),
        learner_policy_version=Gauge("spiral_learner_policy_version", "Version of the latest published policy weights.", job, registry=registry),
        learner_policy_lag=Histogram(
            "spiral_learner_policy_lag_versions",
            "Learner version minus the behaviour policy version of each consumed trajectory.",
            job,
            buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55),
            registry=registry,
        ),
        learner_step_seconds=Histogram(
            "spiral_learner_step_seconds",
            "Wall time of one policy update: forward, V-trace, backward, optimizer step.",
            job,
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        ),
        learner_loss=Gauge("spiral_learner_loss", "Last policy-learner loss by term (policy, baseline, entropy, total).", job + ["term"], registry=registry),
        learner_reward=Gauge(
            "spiral_learner_episode_reward",
            "Mean episode reward in the last update batch, as the learner scored it.",
            job,
            registry=registry,
        ),
        learner_l2=Gauge(
            "spiral_learner_l2",
            "Mean per-pixel squared error between final canvas and target (train batch or held-out set).",
            job + ["split"],
            registry=registry,
        ),
        learner_digit_confident=Gauge(
            "spiral_learner_digit_confident",
            "Share of the latest evaluation's unconditional samples the MNIST digit classifier names at p >= 0.9 (the digit score; "
            "MNIST runs without a target only). Unset until the first evaluation of the current weights.",
            job,
            registry=registry,
        ),
        learner_restarts=Counter("spiral_learner_restarts_total", "Learner process starts that resumed from a checkpoint.", job + ["role"], registry=registry),
        learner_skipped_updates=Counter(
            "spiral_learner_skipped_updates_total",
            "Optimiser steps skipped because the loss or a gradient was not finite (weights left unchanged), by learner role.",
            job + ["role"],
            registry=registry,
        ),
        learner_rejected_trajectories=Counter(
            "spiral_learner_rejected_trajectories_total",
            "Trajectories the policy learner refused (INVALID_ARGUMENT / FAILED_PRECONDITION), by reason: "
            "decode, protocol, shape, value, counter, size, condition.",
            job + ["reason"],
            registry=registry,
        ),
        learner_hyperparameter=Gauge(
            "spiral_learner_hyperparameter",
            "Current value of each hyperparameter a learner applies while running (learner.hyperparameters_file), by name: "
            "learning_rate and entropy_coef (policy learner), discriminator_learning_rate (discriminator learner); set at start and at every change.",
            job + ["hyperparameter"],
            registry=registry,
        ),
        discriminator_updates=Counter("spiral_discriminator_updates_total", "Discriminator optimizer steps.", job, registry=registry),
        discriminator_loss=Gauge(
            "spiral_discriminator_loss",
            "Last discriminator loss by term (adversarial, gradient_penalty, total).",
            job + ["term"],
            registry=registry,
        ),
        discriminator_d_real=Gauge("spiral_discriminator_d_real", "Mean discriminator output on real images in the last batch.", job, registry=registry),
        discriminator_d_fake=Gauge("spiral_discriminator_d_fake", "Mean discriminator output on generated canvases in the last batch.", job, registry=registry),
        discriminator_version=Gauge("spiral_discriminator_version", "Version of the latest published discriminator weights.", job, registry=registry),
        replay_size=Gauge("spiral_replay_size_items", "Items currently held by a replay table.", job + ["table"], registry=registry),
        replay_inserts=Counter("spiral_replay_inserts_total", "Items inserted into a replay table.", job + ["table"], registry=registry),
        replay_samples=Counter("spiral_replay_samples_total", "Items sampled from a replay table.", job + ["table"], registry=registry),
        replay_rate_limited_seconds=Counter(
            "spiral_replay_rate_limited_seconds_total",
            "Seconds inserters and samplers spent blocked by a table's rate limiter.",
            job + ["table", "side"],
            registry=registry,
        ),
        grpc_requests=Counter(
            "spiral_grpc_requests_total",
            "gRPC calls handled, by method and status code.",
            job + ["role", "method", "code"],
            registry=registry,
        ),
        grpc_request_seconds=Histogram(
            "spiral_grpc_request_seconds",
            "Server-side latency of unary gRPC calls and time to first message of streams.",
            job + ["role", "method"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        ),
        weights_published_bytes=Counter(
            "spiral_weights_published_bytes_total",
            "Serialized weight bytes streamed to subscribers.",
            job + ["role"],
            registry=registry,
        ),
        trajectory_bytes=Counter("spiral_trajectory_bytes_total", "Serialized trajectory bytes received by the policy learner.", job, registry=registry),
    )


def sample_names(registry: CollectorRegistry) -> set[str]:
    """Every metric family name and every sample name (``_total``, ``_bucket``, ...) a registry can export.

    Labelled metrics have no samples until ``.labels()`` is called, so the sample names are derived
    from each family's type rather than read from its (possibly empty) samples.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def registered_metric_names(registry: CollectorRegistry | None = None) -> set[str]:
    """The names every SPIRAL service can export (used by the chart tests: PromQL may only name these)."""
    registry = registry or CollectorRegistry()
    create_metrics(registry)
    return sample_names(registry)

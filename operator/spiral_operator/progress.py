"""Training progress of a SpiralJob, read from the policy learner's Prometheus ``/metrics``.

The operator never talks gRPC to the learner: it scrapes the same text Prometheus does
(``http://NAME-policy-learner.NAMESPACE.svc:9400/metrics``) and parses it with
``prometheus_client.parser``. :func:`parse_progress` is pure; the fetch is a small injectable
callable (:data:`MetricsFetcher`) so tests point it at a local HTTP server.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from spiral_operator.spec import METRICS_PORT

#: ``(job_name, namespace) -> /metrics text``; raises OSError (incl. URLError/timeouts) when unreachable.
MetricsFetcher = Callable[[str, str], str]


class Progress(NamedTuple):
    """Learner-side progress; a field is None when the learner has not exported it yet."""

    frames: int | None
    policy_version: int | None
    episode_reward: float | None
    held_out_l2: float | None
    queue_depth: float | None
    #: The autoscaler's counters: seconds the learner waited for trajectories, and the actors for room in its queue.
    learner_wait_seconds: float | None = None
    actor_wait_seconds: float | None = None
    #: The digit score of unconditional MNIST samples (a population's ``digit_confident`` metric).
    digit_confident: float | None = None


def metrics_url(name: str, namespace: str) -> str:
    """URL of the policy learner's /metrics (its headless Service, port ``metrics``)."""
    return f"http://{name}-policy-learner.{namespace}.svc:{METRICS_PORT}/metrics"


def http_fetcher(timeout_seconds: float = 3.0) -> MetricsFetcher:
    """The production fetcher: a plain HTTP GET of :func:`metrics_url`."""

    def fetch(name: str, namespace: str) -> str:
        with urllib.request.urlopen(metrics_url(name, namespace), timeout=timeout_seconds) as response:  # noqa: S310 - cluster-internal URL
            return response.read().decode("utf-8")

    return fetch


def url_fetcher(base_url: str, timeout_seconds: float = 3.0) -> MetricsFetcher:
    """A fetcher that reads ``base_url`` whatever the job (tests, port-forwards)."""

    def fetch(name: str, namespace: str) -> str:
        with urllib.request.urlopen(base_url, timeout=timeout_seconds) as response:  # noqa: S310
            return response.read().decode("utf-8")

    return fetch


def parse_progress(text: str, job_name: str | None = None) -> Progress:
    """Extract :class:`Progress` from Prometheus text exposition.

    Samples whose ``spiral_job`` label differs from ``job_name`` are ignored (None accepts all).

    Raises:
        ValueError: the text is not Prometheus exposition format.
    """
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if job_name is not None and sample.labels.get("spiral_job", job_name) != job_name:
                continue
            if sample.name == "spiral_learner_frames_total":
                values["frames"] = sample.value
            elif sample.name == "spiral_learner_policy_version":
                values["policy_version"] = sample.value
            elif sample.name == "spiral_learner_episode_reward":
                values["episode_reward"] = sample.value
            elif sample.name == "spiral_learner_l2" and sample.labels.get("split") == "held_out":
                values["held_out_l2"] = sample.value
            elif sample.name == "spiral_learner_queue_depth":
                values["queue_depth"] = sample.value
            elif sample.name == "spiral_learner_data_wait_seconds_total":
                values["learner_wait_seconds"] = sample.value
            elif sample.name == "spiral_learner_actor_wait_seconds_total":
                values["actor_wait_seconds"] = sample.value
            elif sample.name == "spiral_learner_digit_confident":
                values["digit_confident"] = sample.value

    def as_int(key: str) -> int | None:
        return int(values[key]) if key in values else None

    return Progress(
        frames=as_int("frames"),
        policy_version=as_int("policy_version"),
        episode_reward=values.get("episode_reward"),
        held_out_l2=values.get("held_out_l2"),
        queue_depth=values.get("queue_depth"),
        learner_wait_seconds=values.get("learner_wait_seconds"),
        actor_wait_seconds=values.get("actor_wait_seconds"),
        digit_confident=values.get("digit_confident"),
    )

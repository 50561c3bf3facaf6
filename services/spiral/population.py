"""Population-based training's decisions as pure functions: who copies whom, with which hyperparameters.

PBT (Jaderberg et al. 2017, "Population Based Training of Neural Networks") is how SPIRAL was
trained (Ganin et al. 2018: a population of 12). A *member* is one whole training run with its own
actors and learners. Its callers — the local launcher and the operator's population controller —
observe every member (:class:`Member`: its metric, updates and hyperparameters), call
:func:`decide`, and carry out each :class:`Exploit` it returns: copy the source's checkpoint over
the target's, restart only the target's learners from it, write the new hyperparameters where
its learners read them (``learner.hyperparameters_file``, :mod:`spiral.learning.hyperparameters`),
post an Event with :attr:`Exploit.reason`, and keep :func:`after_exploit`'s record of the target.

Where the metric comes from: the scalar ``population.metric`` names in the member's run log
(:attr:`spiral.config.PopulationMetric.record_key`: ``eval/held_out_l2``, ``eval/digit_confident``
or ``charts/d_fake``), as its latest evaluation (or critic update) wrote it. A member has no metric
until one is measured on its own weights: at its start, and again after each exploit.

Pure and deterministic: no I/O, no clock, no torch (the operator imports it); every random draw
comes from the numpy Generator passed in, so a seeded Generator replays the same decisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from spiral.config import ExploitMethod, ExploreConfig, Hyperparameter, PopulationConfig, PopulationMetric, TrainConfig

#: The values of a member's explored hyperparameters. Never mutated: a change is a new mapping.
Hyperparameters = Mapping[Hyperparameter, float]


class LineageStep(NamedTuple):
    """One exploit in a member's history: it took ``source``'s weights."""

    source: int  # the member copied from
    updates: int  # the target's policy updates once it held the copy
    source_metric: float  # the source's metric when it was chosen


class Member(NamedTuple):
    """What the decisions know of one member."""

    slot: int  # its place in the population, 0 … size − 1 (Prometheus labels and Events name it)
    updates: int  # policy updates so far (its learner's counter)
    hyperparameters: Hyperparameters
    metric: float | None = None  # measured on its current weights; None before the first evaluation since its start or last exploit
    ready_since: int = 0  # ``updates`` at its start or at its last exploit
    lineage: tuple[LineageStep, ...] = ()  # oldest first


class Exploit(NamedTuple):
    """Member ``target`` takes member ``source``'s checkpoint and continues with ``hyperparameters``
    (the source's, explored)."""

    target: int
    source: int
    hyperparameters: Hyperparameters
    source_metric: float
    reason: str  # one sentence for the Event and the log: ranks, metrics, and each hyperparameter's old → new value


def _generator(rng: np.random.Generator | int) -> np.random.Generator:
    # A seed starts a new stream: callers that decide repeatedly keep one Generator for the run.
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ------------------------------------------------------------------------------- members ---


def configured_hyperparameters(cfg: TrainConfig) -> dict[Hyperparameter, float]:
    """The values ``cfg`` trains with, of the hyperparameters this run has (no critic: no critic lr)."""
    values = {Hyperparameter.LEARNING_RATE: cfg.learner.learning_rate, Hyperparameter.ENTROPY_COEF: cfg.learner.entropy_coef}
    if cfg.uses_discriminator:
        values[Hyperparameter.DISCRIMINATOR_LEARNING_RATE] = cfg.discriminator.learning_rate
    return values


def initial_members(cfg: TrainConfig, rng: np.random.Generator | int) -> tuple[Member, ...]:
    """``population.size`` fresh members: member 0 with the configured values, so the population
    contains the run it is compared against, the others explored around them."""
    generator = _generator(rng)
    configured = configured_hyperparameters(cfg)
    return tuple(Member(slot, 0, configured if slot == 0 else explore(configured, cfg.population.explore, generator)) for slot in range(cfg.population.size))


def is_ready(member: Member, population: PopulationConfig) -> bool:
    """Trained ``ready_after_updates`` on its own since its start or its last exploit, and measured."""
    return member.metric is not None and member.updates - member.ready_since >= population.ready_after_updates


def after_exploit(member: Member, exploit: Exploit, updates: int) -> Member:
    """``member``'s record once ``exploit`` is carried out: the new hyperparameters, no metric (its
    weights are new), readiness counted from ``updates`` — its counter as the copied checkpoint left
    it — and one more lineage step."""
    return member._replace(
        updates=updates,
        hyperparameters=exploit.hyperparameters,
        metric=None,
        ready_since=updates,
        lineage=(*member.lineage, LineageStep(exploit.source, updates, exploit.source_metric)),
    )


# ------------------------------------------------------------------------------- explore ---


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # Log-uniform: a factor and its inverse are equally likely, so values do not drift up or down.
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def explore(values: Hyperparameters, settings: ExploreConfig, rng: np.random.Generator | int) -> dict[Hyperparameter, float]:
    """New values around ``values`` (``settings`` is ``population.explore``): each is multiplied by a
    factor drawn from its ``perturb`` range or — with ``resample_probability``, where it has a
    ``resample`` range — redrawn from that range; then clipped to its config field's own bounds, so
    the result is always a value the learners accept."""
    generator = _generator(rng)
    explored: dict[Hyperparameter, float] = {}
    for name in Hyperparameter:  # a fixed order: the same draws go to the same hyperparameter
        if name not in values:
            continue
        redraw_from = getattr(settings.resample, name.value)
        if redraw_from is not None and generator.random() < settings.resample_probability:
            value = _log_uniform(generator, *redraw_from)
        else:
            value = values[name] * _log_uniform(generator, *getattr(settings.perturb, name.value))
        explored[name] = name.bounds.clip(value)
    return explored


# -------------------------------------------------------------------------------- exploit ---


def _sort_key(member: Member, metric: PopulationMetric) -> tuple[float, int]:
    value = member.metric
    assert value is not None
    if not math.isfinite(value):
        return (math.inf, member.slot)  # a diverged member ranks last: the first to be replaced
    return (-value if metric.higher_is_better else value, member.slot)


def ranked(members: Sequence[Member], metric: PopulationMetric) -> list[Member]:
    """The measured members, best first (ties by slot, so the order never depends on the input's)."""
    return sorted((m for m in members if m.metric is not None), key=lambda m: _sort_key(m, metric))


def truncation_count(measured: int, fraction: float) -> int:
    """Members in the bottom (and in the top) ``fraction`` of ``measured``: none below two members,
    never more than half (``fraction`` ≤ 0.5), so the bottom and the top never overlap."""
    if measured < 2:
        return 0
    return max(1, math.floor(fraction * measured + 1e-9))  # the epsilon: 0.3 × 10 is 3.0000000000000004, 0.7 × 10 is 7.000000000000001


def _changes(old: Hyperparameters, new: Hyperparameters) -> str:
    return ", ".join(f"{name.value} {old[name]:.3g} → {new[name]:.3g}" if name in old else f"{name.value} {new[name]:.3g}" for name in new)


def decide(members: Sequence[Member], population: PopulationConfig, rng: np.random.Generator | int) -> list[Exploit]:
    """The exploits due now, by truncation selection: rank the measured members by the metric; each
    ready member in the bottom ``exploit.fraction`` copies a member drawn uniformly from the top
    ``exploit.fraction``, strictly better than itself, and explores the source's hyperparameters.

    Members without a metric are neither copied from nor replaced, and do not count in the ranking.
    Targets come worst first. Callers apply all of them before deciding again.

    Raises:
        ValueError: an exploit method without a rule here (names it and the valid ones).
    """
    if population.exploit.method != ExploitMethod.TRUNCATION:  # the only method so far; a new one must be handled here
        raise ValueError(f"population.exploit.method {population.exploit.method.value!r} has no decision rule; valid: truncation")
    generator = _generator(rng)
    metric = population.metric
    order = ranked(members, metric)
    count = truncation_count(len(order), population.exploit.fraction)
    if count == 0:
        return []
    top, bottom = order[:count], order[-count:]
    decisions = []
    for target in reversed(bottom):
        if not is_ready(target, population):
            continue
        source = top[int(generator.integers(len(top)))]
        assert source.metric is not None and target.metric is not None
        if _sort_key(source, metric)[0] >= _sort_key(target, metric)[0]:
            continue  # a tie: copying would only lose the target's own progress
        hyperparameters = explore(source.hyperparameters, population.explore, generator)
        reason = (
            f"member {target.slot} ({metric.value} {target.metric:.4g}) is in the bottom {count} of {len(order)} measured members: "
            f"it takes the checkpoint of member {source.slot} ({metric.value} {source.metric:.4g}, in the top {count}) and explores "
            f"{_changes(target.hyperparameters, hyperparameters)}"
        )
        decisions.append(Exploit(target.slot, source.slot, hyperparameters, source.metric, reason))
    return decisions


def decide_round(members: Sequence[Member], population: PopulationConfig, rng: np.random.Generator | int) -> tuple[list[Exploit], list[Member]]:
    """One round of PBT's exploit step: :func:`decide`'s exploits, and ``members`` with every ready
    member that is not replaced counting its readiness again from now.

    Jaderberg et al.: each member runs the step once per ready period. Without the reset, each
    exploit would re-rank the rest and push the next member into the bottom fraction at the next
    poll — measured before this rule: three of four members copied the same one within 30 s. The
    targets keep their record; the caller replaces it with :func:`after_exploit`'s once the copy is done.
    """
    exploits = decide(members, population, rng)
    targets = {e.target for e in exploits}
    survived = [m._replace(ready_since=m.updates) if m.slot not in targets and is_ready(m, population) else m for m in members]
    return exploits, survived

"""Population-based training: the pure decisions (spiral.population) and their config (PopulationConfig)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from spiral.config import (
    ConfigError,
    DiscriminatorConfig,
    ExploreConfig,
    Hyperparameter,
    LearnerConfig,
    PopulationConfig,
    PopulationMetric,
    load_config_dict,
)
from spiral.population import (
    Exploit,
    LineageStep,
    Member,
    after_exploit,
    configured_hyperparameters,
    decide,
    decide_round,
    explore,
    initial_members,
    is_ready,
    truncation_count,
)

LR, ENTROPY, CRITIC_LR = Hyperparameter.LEARNING_RATE, Hyperparameter.ENTROPY_COEF, Hyperparameter.DISCRIMINATOR_LEARNING_RATE
#: Perturbation off: an exploit's hyperparameters are then exactly the source's, so tests can see who was copied.
NO_PERTURB = {"perturb": {"learning_rate": [1.0, 1.0], "entropy_coef": [1.0, 1.0], "discriminator_learning_rate": [1.0, 1.0]}}


def population(**fields: Any) -> PopulationConfig:
    data: dict[str, Any] = {"size": 8, "ready_after_updates": 100, "exploit": {"fraction": 0.25}, "explore": NO_PERTURB}
    return PopulationConfig.model_validate({**data, **fields})


def members(metrics: list[float | None], *, updates: int = 500, ready_since: int = 0) -> list[Member]:
    """One member per metric, each with its own learning rate ((i + 1) × 1e-4) so a copy shows its source."""
    return [Member(i, updates, {LR: (i + 1) * 1e-4, ENTROPY: 0.1}, metric=m, ready_since=ready_since) for i, m in enumerate(metrics)]


#: Held-out L2 by member slot: best 1 (0.1) and 5 (0.2), worst 2 (0.8) and 4 (0.7).
L2 = [0.5, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.4]


# ------------------------------------------------------------------------------ truncation ---


def test_truncation_replaces_the_bottom_fraction_with_copies_of_the_top() -> None:
    """8 members, fraction 0.25: the two worst by L2 (2, then 4) each copy one of the two best (1, 5)."""
    group = members(L2)
    sources = set()
    for seed in range(40):
        decisions = decide(group, population(), np.random.default_rng(seed))
        assert [d.target for d in decisions] == [2, 4]
        for d in decisions:
            assert d.source in {1, 5}
            assert d.hyperparameters == group[d.source].hyperparameters  # no perturbation: exactly the source's
            assert d.source_metric == L2[d.source]
            sources.add(d.source)
    assert sources == {1, 5}  # the source is drawn from the whole top, not always the best


def test_the_direction_of_the_metric_is_honoured() -> None:
    """The same numbers as a digit score (higher is better): now 1 and 5 are the worst, 2 and 4 the best."""
    for seed in range(20):
        decisions = decide(members(L2), population(metric="digit_confident"), seed)
        assert [d.target for d in decisions] == [1, 5]
        assert {d.source for d in decisions} <= {2, 4}


@pytest.mark.parametrize(
    ("measured", "fraction", "want"),
    [(0, 0.5, 0), (1, 0.5, 0), (2, 0.5, 1), (3, 0.5, 1), (4, 0.25, 1), (8, 0.25, 2), (10, 0.3, 3), (10, 0.5, 5), (3, 0.1, 1)],
    ids=lambda v: str(v),
)
def test_truncation_count_is_a_floor_never_overlapping(measured: int, fraction: float, want: int) -> None:
    assert truncation_count(measured, fraction) == want
    assert 2 * truncation_count(measured, fraction) <= measured


def test_members_without_a_metric_are_neither_copied_nor_replaced() -> None:
    """Member 0 has not been measured: it is not the worst, not a source, and not counted (3 measured → 1 each side)."""
    group = members([None, 0.1, 0.9, 0.5])
    for seed in range(20):
        (decision,) = decide(group, population(size=4, exploit={"fraction": 0.5}), seed)
        assert (decision.target, decision.source) == (2, 1)
    assert decide(members([None, None, 0.3, None]), population(size=4, exploit={"fraction": 0.5}), 0) == []


def test_a_member_is_never_replaced_before_ready_after_updates() -> None:
    pop = population(size=2, exploit={"fraction": 0.5}, ready_after_updates=100)
    assert decide(members([0.1, 0.9], updates=399, ready_since=300), pop, 0) == []  # 99 updates on its own
    (decision,) = decide(members([0.1, 0.9], updates=400, ready_since=300), pop, 0)  # 100
    assert (decision.target, decision.source) == (1, 0)
    assert not is_ready(Member(0, 10_000, {LR: 1e-3}), pop)  # never measured: not ready, however long it trained


def test_after_an_exploit_the_member_waits_for_its_own_metric_and_ready_after_updates() -> None:
    pop = population(size=2, exploit={"fraction": 0.5}, ready_after_updates=100)
    group = members([0.1, 0.9], updates=400)
    (decision,) = decide(group, pop, 0)
    copied = after_exploit(group[1], decision, updates=380)  # the source's checkpoint was at update 380
    assert copied.metric is None and copied.ready_since == 380 and copied.updates == 380
    assert copied.hyperparameters == decision.hyperparameters
    assert copied.lineage == (LineageStep(source=0, updates=380, source_metric=0.1),)
    # Measured again (still worse) but only 50 updates on its own: left alone.
    assert decide([group[0], copied._replace(updates=430, metric=0.8)], pop, 0) == []
    assert [d.target for d in decide([group[0], copied._replace(updates=480, metric=0.8)], pop, 0)] == [1]


def test_ties_are_not_worth_a_copy_and_a_diverged_member_ranks_last() -> None:
    pop = population(size=4, exploit={"fraction": 0.25})
    assert decide(members([0.5, 0.5, 0.5, 0.5]), pop, 0) == []
    (decision,) = decide(members([0.5, math.nan, 0.4, 0.6]), pop, 0)
    assert (decision.target, decision.source) == (1, 2)


def test_the_reason_names_both_members_their_metrics_and_every_change() -> None:
    (decision,) = decide(members([0.1, 0.9]), population(size=2, exploit={"fraction": 0.5}), 0)
    assert decision.reason == (
        "member 1 (held_out_l2 0.9) is in the bottom 1 of 2 measured members: it takes the checkpoint of member 0 "
        "(held_out_l2 0.1, in the top 1) and explores learning_rate 0.0002 → 0.0001, entropy_coef 0.1 → 0.1"
    )


def test_decisions_are_deterministic_under_a_seed() -> None:
    pop = population(explore={})  # the default perturbation: explored values depend on the draws
    group = members(L2)
    first = decide(group, pop, np.random.default_rng(7))
    assert first == decide(group, pop, np.random.default_rng(7)) == decide(group, pop, 7)
    others = [decide(group, pop, seed) for seed in range(8, 16)]
    assert any(o != first for o in others)  # the seed matters
    assert all(isinstance(d, Exploit) for d in first)


# --------------------------------------------------------------------------------- explore ---


def test_perturbation_multiplies_by_a_factor_within_the_range() -> None:
    settings_ = ExploreConfig.model_validate({"perturb": {"learning_rate": [0.5, 2.0], "entropy_coef": [0.8, 1.25]}})
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(200):
        new = explore({LR: 1e-3, ENTROPY: 0.1}, settings_, rng)
        ratios.append(new[LR] / 1e-3)
        assert 0.8 - 1e-12 <= new[ENTROPY] / 0.1 <= 1.25 + 1e-12
    assert 0.5 - 1e-12 <= min(ratios) < 0.6 and 1.7 < max(ratios) <= 2.0 + 1e-12  # the whole range is used
    assert 0.8 < float(np.exp(np.mean(np.log(ratios)))) < 1.25  # log-uniform: no drift up or down


def test_perturbation_is_clipped_to_the_config_fields_own_bounds() -> None:
    """learning rates are (0, 1] in LearnerConfig and DiscriminatorConfig: 1 × a factor above 1 stops at 1."""
    settings_ = ExploreConfig.model_validate({"perturb": {"learning_rate": [1.0, 1.25], "discriminator_learning_rate": [1.0, 1.25]}})
    for seed in range(10):
        new = explore({LR: 1.0, CRITIC_LR: 1.0, ENTROPY: 0.0}, settings_, seed)
        assert new[LR] == 1.0 and new[CRITIC_LR] == 1.0
    unclipped = explore({LR: 0.5, CRITIC_LR: 0.5}, settings_, 0)
    assert 0.5 < unclipped[LR] <= 0.625 and 0.5 < unclipped[CRITIC_LR] <= 0.625  # the same draws below the bound are kept
    assert new[ENTROPY] == 0.0  # ≥ 0 is entropy_coef's bound; 0 × any factor stays 0
    LearnerConfig(learning_rate=new[LR], entropy_coef=new[ENTROPY])  # values the learners accept
    DiscriminatorConfig(learning_rate=new[CRITIC_LR])


@settings(max_examples=200, deadline=None)
@given(
    learning_rate=st.floats(1e-8, 1.0),
    entropy=st.floats(0.0, 10.0),
    low=st.floats(0.05, 1.0),
    high=st.floats(1.0, 20.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_explored_values_always_lie_within_the_field_bounds(learning_rate: float, entropy: float, low: float, high: float, seed: int) -> None:
    settings_ = ExploreConfig.model_validate({"perturb": {"learning_rate": [low, high], "entropy_coef": [low, high]}})
    new = explore({LR: learning_rate, ENTROPY: entropy}, settings_, seed)
    assert LR.bounds.contains(new[LR]) and ENTROPY.bounds.contains(new[ENTROPY])
    if new[LR] < 1.0:  # not clipped: the factor came from [low, high]
        assert low * (1 - 1e-9) <= new[LR] / learning_rate <= high * (1 + 1e-9)


def test_resampling_redraws_from_its_range_and_the_others_are_perturbed() -> None:
    settings_ = ExploreConfig.model_validate(
        {"perturb": {"entropy_coef": [0.5, 2.0]}, "resample": {"learning_rate": [1e-4, 1e-3]}, "resample_probability": 1.0}
    )
    rng = np.random.default_rng(3)
    for _ in range(50):
        new = explore({LR: 0.5, ENTROPY: 0.1}, settings_, rng)
        assert 1e-4 <= new[LR] <= 1e-3  # far from 0.5: redrawn, not perturbed
        assert 0.05 <= new[ENTROPY] <= 0.2


def test_only_the_hyperparameters_a_member_has_are_explored() -> None:
    assert set(explore({LR: 1e-3, ENTROPY: 0.1}, ExploreConfig(), 0)) == {LR, ENTROPY}


def test_initial_members_start_from_the_config_and_explore_around_it() -> None:
    cfg = load_config_dict({"total_updates": 1, "population": {"size": 4}})
    group = initial_members(cfg, 0)
    assert [m.slot for m in group] == [0, 1, 2, 3]
    assert group[0].hyperparameters == configured_hyperparameters(cfg) == {LR: cfg.learner.learning_rate, ENTROPY: cfg.learner.entropy_coef}
    assert all(m.hyperparameters != group[0].hyperparameters and m.metric is None for m in group[1:])
    gan = load_config_dict({"total_updates": 1, "reward": {"kind": "discriminator"}})
    assert configured_hyperparameters(gan)[CRITIC_LR] == gan.discriminator.learning_rate  # only runs with a critic have its lr


# ---------------------------------------------------------------------------------- config ---


@pytest.mark.parametrize("name", list(Hyperparameter), ids=lambda h: h.value)
@pytest.mark.parametrize("value", [-1.0, 0.0, 1e-9, 0.5, 1.0, 1.5, 100.0])
def test_hyperparameter_bounds_are_the_config_fields_own(name: Hyperparameter, value: float) -> None:
    section, key = name.field
    model = DiscriminatorConfig if section == "discriminator" else LearnerConfig
    try:
        model.model_validate({key: value})
        accepted = True
    except ValidationError:
        accepted = False
    assert name.bounds.contains(value) == accepted


def _train(population: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"total_updates": 1, **top, "population": population}


BAD_CONFIGS = [
    ("too many members", _train({"size": 65}), "population.size: Input should be less than or equal to 64 (got 65)"),
    ("fraction above one half", _train({"exploit": {"fraction": 0.6}}), "population.exploit.fraction: Input should be less than or equal to 0.5"),
    (
        "fraction selects nobody",
        _train({"size": 3, "exploit": {"fraction": 0.3}}),
        "population.exploit.fraction (0.3) × population.size (3) = 0.9 selects no member to replace: with 3 members it must be at least 1/3",
    ),
    (
        "perturb range above 1",
        _train({"explore": {"perturb": {"learning_rate": [1.5, 2.0]}}}),
        "population.explore.perturb.learning_rate [1.5, 2] must be a factor range [low, high] with 0 < low ≤ 1 ≤ high",
    ),
    ("perturb range below 1", _train({"explore": {"perturb": {"entropy_coef": [0.5, 0.9]}}}), "population.explore.perturb.entropy_coef [0.5, 0.9]"),
    (
        "perturb factor zero",
        _train({"explore": {"perturb": {"discriminator_learning_rate": [0.0, 2.0]}}}),
        "population.explore.perturb.discriminator_learning_rate [0, 2]",
    ),
    ("perturb range of one number", _train({"explore": {"perturb": {"learning_rate": [0.8]}}}), "population.explore.perturb.learning_rate"),
    (
        "resample range reversed",
        _train({"explore": {"resample": {"learning_rate": [1e-3, 1e-4]}}}),
        "population.explore.resample.learning_rate [0.001, 0.0001] must be a value range [low, high] with 0 < low ≤ high",
    ),
    (
        "resample beyond the field's bounds",
        _train({"explore": {"resample": {"discriminator_learning_rate": [0.1, 2.0]}}}),
        "inside discriminator.learning_rate's bounds (0, 1]",
    ),
    (
        "resample probability without a range",
        _train({"explore": {"resample_probability": 0.25}}),
        "population.explore.resample_probability (0.25) needs a range to redraw from",
    ),
    (
        "held-out L2 without targets",
        _train({"size": 4}, mode="unconditional", reward={"kind": "discriminator"}),
        "population.metric 'held_out_l2' ranks reconstructions of held-out targets: it needs mode 'conditional'",
    ),
    (
        "digit score outside MNIST",
        _train({"size": 4, "metric": "digit_confident"}, mode="unconditional", reward={"kind": "discriminator"}),
        "population.metric 'digit_confident' is the digit score of unconditional MNIST samples: it needs mode 'unconditional' and data.name 'mnist' "
        "(got mode 'unconditional', data.name 'shapes')",
    ),
    (
        "critic score without a critic",
        _train({"size": 4, "metric": "d_fake"}),
        "population.metric 'd_fake' is the critic's score: it needs reward.kind 'discriminator'",
    ),
    ("unknown metric", _train({"metric": "reward"}), "population.metric: Input should be 'held_out_l2', 'digit_confident' or 'd_fake'"),
]


@pytest.mark.parametrize(("data", "want"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_population_configs_name_the_field_and_the_valid_range(data: dict[str, Any], want: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_dict(data)
    assert want in str(raised.value)


@pytest.mark.parametrize(
    "data",
    [
        _train({}),  # no population: every existing config
        _train({"size": 1, "exploit": {"fraction": 0.1}}),  # one member decides nothing, so the fraction rule does not apply
        _train({"size": 4, "metric": "d_fake"}, reward={"kind": "discriminator"}),
        _train({"size": 10, "exploit": {"fraction": 0.1}, "explore": {"resample": {"entropy_coef": [0.01, 0.3]}, "resample_probability": 0.2}}),
    ],
    ids=["off", "one member", "critic score", "resampling"],
)
def test_valid_population_configs_load(data: dict[str, Any]) -> None:
    load_config_dict(data)


def test_metric_keys_are_what_evaluation_and_the_critic_write() -> None:
    from spiral.learning.digits import DigitScore
    from spiral.learning.updates import DiscriminatorUpdateStats

    assert PopulationMetric.HELD_OUT_L2.record_key == "eval/held_out_l2" and not PopulationMetric.HELD_OUT_L2.higher_is_better
    digits = DigitScore(confident_fraction=0.7, histogram=(0.07,) * 10, min_class_fraction=0.07, mean_max_probability=0.9)
    assert digits.as_record()[PopulationMetric.DIGIT_CONFIDENT.record_key] == 0.7 and PopulationMetric.DIGIT_CONFIDENT.higher_is_better
    critic = DiscriminatorUpdateStats(total_loss=0.0, adversarial=0.0, gradient_penalty=0.0, d_real=1.0, d_fake=-1.0)
    assert critic.as_record()[PopulationMetric.D_FAKE.record_key] == -1.0 and PopulationMetric.D_FAKE.higher_is_better


def test_a_round_restarts_the_readiness_of_the_ready_survivors_only() -> None:
    """decide_round: targets keep their record (the copy replaces it), ready survivors count again from now,
    members not yet ready are untouched; so the next poll cannot cascade into more exploits."""
    group = members(L2)
    group[3] = group[3]._replace(ready_since=450)  # not ready: 50 of 100 updates on its own
    exploits, after = decide_round(group, population(), 0)
    targets = {e.target for e in exploits}
    assert targets == {2, 4}
    for before, now in zip(group, after, strict=True):
        if before.slot in targets or before.slot == 3:
            assert now == before
        else:
            assert now == before._replace(ready_since=before.updates)
    copied = {e.target: e for e in exploits}
    after = [after_exploit(m, copied[m.slot], m.updates) if m.slot in copied else m for m in after]
    assert decide_round(after, population(), 0)[0] == []  # nobody is ready again until it trained 100 more updates

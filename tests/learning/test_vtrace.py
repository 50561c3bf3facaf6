"""V-trace (spiral.learning.vtrace) against hand-computed numbers, a slow reference, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.learning.vtrace import VTraceReturns, from_importance_weights


def _ground_truth_calculation(log_rhos, discounts, rewards, values, bootstrap_value, clip_rho_threshold, clip_pg_rho_threshold):
    """Slow V-trace straight from IMPALA eq. (1), in NumPy:

        v_s = V(x_s) + Σ_{t=s}^{T-1} (Π_{i=s}^{t-1} γ_i c_i) ρ_t (r_t + γ_t V(x_{t+1}) − V(x_t))
        A_s = ρ^pg_s (r_s + γ_s v_{s+1} − V(x_s)),   V(x_T) = v_T = bootstrap_value
    """
    rhos = np.exp(log_rhos)
    cs = np.minimum(rhos, 1.0)
    clipped_rhos = rhos if clip_rho_threshold is None else np.minimum(rhos, clip_rho_threshold)
    clipped_pg_rhos = rhos if clip_pg_rho_threshold is None else np.minimum(rhos, clip_pg_rho_threshold)
    values_t_plus_1 = np.concatenate([values, bootstrap_value[None]], axis=0)
    seq_len = len(discounts)
    vs = []
    for s in range(seq_len):
        v_s = np.copy(values[s])
        for t in range(s, seq_len):
            v_s += (
                np.prod(discounts[s:t], axis=0)
                * np.prod(cs[s:t], axis=0)
                * clipped_rhos[t]
                * (rewards[t] + discounts[t] * values_t_plus_1[t + 1] - values[t])
            )
        vs.append(v_s)
    vs = np.stack(vs)
    vs_t_plus_1 = np.concatenate([vs[1:], bootstrap_value[None]], axis=0)
    pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_t_plus_1 - values)
    return vs, pg_advantages


def _random_inputs(steps: int, batch: int, seed: int, log_rho_scale: float = 1.0, extra: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    shape = (steps, batch) + extra
    return dict(
        log_rhos=torch.randn(shape, generator=g, dtype=torch.float64) * log_rho_scale,
        discounts=torch.rand(shape, generator=g, dtype=torch.float64),
        rewards=torch.randn(shape, generator=g, dtype=torch.float64),
        values=torch.randn(shape, generator=g, dtype=torch.float64),
        bootstrap_value=torch.randn(shape[1:], generator=g, dtype=torch.float64),
    )


def test_hand_computed_two_step_case():
    # ρ = (2, 0.5) → clipped (1, 0.5), c = (1, 0.5), γ = 0.9, r = (1, 2), V = (0.5, 1), V(x_2) = 2.
    # δ_0 = 1·(1 + 0.9·1 − 0.5) = 1.4,  δ_1 = 0.5·(2 + 0.9·2 − 1) = 1.4
    # v_1 − V_1 = 1.4;  v_0 − V_0 = 1.4 + 0.9·1·1.4 = 2.66  → vs = (3.16, 2.4)
    # A_0 = 1·(1 + 0.9·2.4 − 0.5) = 2.66,  A_1 = 0.5·(2 + 0.9·2 − 1) = 1.4
    out = from_importance_weights(
        log_rhos=torch.tensor([[math.log(2.0)], [math.log(0.5)]]),
        discounts=torch.tensor([[0.9], [0.9]]),
        rewards=torch.tensor([[1.0], [2.0]]),
        values=torch.tensor([[0.5], [1.0]]),
        bootstrap_value=torch.tensor([2.0]),
    )
    assert isinstance(out, VTraceReturns)
    torch.testing.assert_close(out.vs, torch.tensor([[3.16], [2.4]]))
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[2.66], [1.4]]))


@pytest.mark.parametrize("batch", [1, 5], ids=["batch1", "batch5"])
@pytest.mark.parametrize(
    "clip_rho,clip_pg", [(1.0, 1.0), (None, None), (0.5, 2.0), (3.7, 0.3)], ids=["default", "unclipped", "mixed", "mixed2"]
)
def test_matches_slow_reference(batch, clip_rho, clip_pg):
    inputs = _random_inputs(steps=7, batch=batch, seed=batch, log_rho_scale=1.5)
    got = from_importance_weights(**inputs, clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg)
    want_vs, want_pg = _ground_truth_calculation(
        **{k: v.numpy() for k, v in inputs.items()}, clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg
    )
    np.testing.assert_allclose(got.vs.numpy(), want_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.pg_advantages.numpy(), want_pg, rtol=1e-10, atol=1e-10)


def test_higher_rank_inputs_match_reference():
    inputs = _random_inputs(steps=4, batch=3, seed=11, extra=(2,))
    got = from_importance_weights(**inputs)
    want_vs, want_pg = _ground_truth_calculation(**{k: v.numpy() for k, v in inputs.items()}, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0)
    np.testing.assert_allclose(got.vs.numpy(), want_vs, rtol=1e-10)
    np.testing.assert_allclose(got.pg_advantages.numpy(), want_pg, rtol=1e-10)


def _discounted_returns(rewards, discounts, bootstrap_value):
    returns = torch.empty_like(rewards)
    acc = bootstrap_value
    for t in range(rewards.shape[0] - 1, -1, -1):
        acc = rewards[t] + discounts[t] * acc
        returns[t] = acc
    return returns


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 8), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_on_policy_vs_equals_bootstrapped_discounted_return(steps, batch, seed):
    inputs = _random_inputs(steps, batch, seed)
    inputs["log_rhos"] = torch.zeros_like(inputs["log_rhos"])
    out = from_importance_weights(**inputs, clip_rho_threshold=None, clip_pg_rho_threshold=None)
    want = _discounted_returns(inputs["rewards"], inputs["discounts"], inputs["bootstrap_value"])
    torch.testing.assert_close(out.vs, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 8),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    high=st.floats(0.05, 5.0),
    factor=st.floats(0.01, 1.0),
)
def test_lowering_clip_pg_rho_never_increases_advantage_magnitude(steps, batch, seed, high, factor):
    inputs = _random_inputs(steps, batch, seed, log_rho_scale=2.0)
    loose = from_importance_weights(**inputs, clip_pg_rho_threshold=high)
    tight = from_importance_weights(**inputs, clip_pg_rho_threshold=high * factor)
    assert bool((tight.pg_advantages.abs() <= loose.pg_advantages.abs() + 1e-12).all())
    torch.testing.assert_close(tight.vs, loose.vs)  # vs does not depend on the pg threshold


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 8), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_outputs_are_finite_and_do_not_require_grad(steps, batch, seed):
    inputs = _random_inputs(steps, batch, seed, log_rho_scale=3.0)
    inputs = {k: v.float().requires_grad_(True) for k, v in inputs.items()}
    out = from_importance_weights(**inputs)
    for field in out:
        assert field.shape == (steps, batch)
        assert bool(torch.isfinite(field).all())
        assert not field.requires_grad


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(rewards=torch.zeros(3)), r"rewards must have the same number of dimensions as values \(2"),
        (dict(log_rhos=torch.zeros(3, 3)), r"log_rhos must have shape \[3, 2\]"),
        (dict(discounts=torch.zeros(2, 2)), r"discounts must have shape \[3, 2\]"),
        (dict(bootstrap_value=torch.zeros(3)), r"bootstrap_value must have shape \[2\]"),
        (dict(bootstrap_value=torch.zeros(1, 2)), r"bootstrap_value must have shape \[2\]"),
        (dict(clip_rho_threshold=0.0), r"clip_rho_threshold must be > 0 or None"),
        (dict(clip_pg_rho_threshold=-1.0), r"clip_pg_rho_threshold must be > 0 or None \(no clipping\), got -1.0"),
    ],
    ids=["rank", "log_rhos-shape", "discounts-shape", "bootstrap-rank", "bootstrap-shape", "clip-rho", "clip-pg"],
)
def test_bad_inputs_raise_with_message(change, message):
    inputs = dict(
        log_rhos=torch.zeros(3, 2), discounts=torch.ones(3, 2), rewards=torch.zeros(3, 2),
        values=torch.zeros(3, 2), bootstrap_value=torch.zeros(2),
    )
    inputs.update(change)
    with pytest.raises(ValueError, match=message):
        from_importance_weights(**inputs)


@pytest.mark.parametrize(
    "shape,message",
    [
        ((), r"values must be time-major \[T, B, \.\.\.\], got a scalar of shape \[\]"),
        ((0, 2), r"values must have at least one time step \(T ≥ 1\), got shape \[0, 2\]"),
    ],
    ids=["scalar", "no-time-steps"],
)
def test_degenerate_time_axis_raises_with_message(shape, message):
    tensors = {name: torch.zeros(shape) for name in ("log_rhos", "discounts", "rewards", "values")}
    with pytest.raises(ValueError, match=message):
        from_importance_weights(**tensors, bootstrap_value=torch.zeros(shape[1:]))


def test_time_only_inputs_match_a_batch_of_one():
    # [T] inputs (one sequence, no batch axis) are accepted: the recursion only needs the time axis.
    inputs = _random_inputs(steps=5, batch=1, seed=3, log_rho_scale=1.5)
    batched = from_importance_weights(**inputs)
    flat = from_importance_weights(**{k: v[..., 0] for k, v in inputs.items()})
    assert flat.vs.shape == (5,)
    torch.testing.assert_close(flat.vs, batched.vs[:, 0])
    torch.testing.assert_close(flat.pg_advantages, batched.pg_advantages[:, 0])

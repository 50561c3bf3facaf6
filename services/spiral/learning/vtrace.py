"""V-trace off-policy return estimation (Espeholt et al., 2018, "IMPALA", §4.1).

A port of TorchBeast ``core/vtrace.py`` ``from_importance_weights``: stateless, time-major
``[T, B]`` and computed under ``torch.no_grad`` (the returns are regression targets and
advantages, never differentiated through). The policy learner calls it through
:func:`spiral.learning.losses.a2c_vtrace_loss`; actors lag the learner, so their actions come from
an older *behaviour* policy μ while the learner improves the *target* policy π.

Notation (the paper's)::

    ρ_t = min(ρ̄, π(a_t|x_t) / μ(a_t|x_t)),   c_t = min(1, π/μ)  (c̄ = 1, as in TorchBeast)
    δ_t = ρ_t (r_t + γ_t V(x_{t+1}) − V(x_t))
    v_s = V(x_s) + Σ_{t≥s} (Π_{s≤i<t} γ_i c_i) δ_t         — computed backwards:
    v_s − V(x_s) = δ_s + γ_s c_s (v_{s+1} − V(x_{s+1}))
    pg_advantage_s = min(ρ̄_pg, π/μ) (r_s + γ_s v_{s+1} − V(x_s))

with ``V(x_T) = v_T = bootstrap_value``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class VTraceReturns(NamedTuple):
    """vs: V-trace value targets ``[T, B]``; pg_advantages: policy-gradient advantages ``[T, B]``."""

    vs: torch.Tensor
    pg_advantages: torch.Tensor


def _check_shapes(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
) -> None:
    """Raises ValueError naming the first argument whose shape disagrees with ``values``."""
    if values.dim() < 1:
        raise ValueError(f"values must be time-major [T, B, ...], got a scalar of shape {list(values.shape)}")
    if values.shape[0] == 0:
        raise ValueError(f"values must have at least one time step (T ≥ 1), got shape {list(values.shape)}")
    for name, tensor in (("log_rhos", log_rhos), ("discounts", discounts), ("rewards", rewards)):
        if tensor.dim() != values.dim():
            raise ValueError(
                f"{name} must have the same number of dimensions as values ({values.dim()}, [T, B, ...]), "
                f"got {tensor.dim()} (shape {list(tensor.shape)})"
            )
        if tensor.shape != values.shape:
            raise ValueError(f"{name} must have shape {list(values.shape)} like values, got {list(tensor.shape)}")
    if bootstrap_value.shape != values.shape[1:]:
        raise ValueError(
            f"bootstrap_value must have shape {list(values.shape[1:])} (values without the time axis), "
            f"got {list(bootstrap_value.shape)}"
        )


@torch.no_grad()
def from_importance_weights(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """V-trace targets and advantages from log importance weights.

    Args:
        log_rhos: ``[T, B]`` log π(a_t|x_t) − log μ(a_t|x_t) (target minus behaviour).
        discounts: ``[T, B]`` γ_t, zero where the episode ends after step t.
        rewards: ``[T, B]``.
        values: ``[T, B]`` V(x_t) under the target policy.
        bootstrap_value: ``[B]`` V(x_T).
        clip_rho_threshold: ρ̄ (None: no clipping).
        clip_pg_rho_threshold: ρ̄ for the policy-gradient advantages (None: no clipping).

    Returns:
        :class:`VTraceReturns` with ``[T, B]`` fields that do not require grad.
        Extra trailing dimensions ``[T, B, ...]`` are supported throughout.

    Raises:
        ValueError: mismatched ranks or shapes (names the argument and the expected shape), or a
            non-positive clipping threshold.
    """
    _check_shapes(log_rhos, discounts, rewards, values, bootstrap_value)
    for name, threshold in (("clip_rho_threshold", clip_rho_threshold), ("clip_pg_rho_threshold", clip_pg_rho_threshold)):
        if threshold is not None and not threshold > 0:
            raise ValueError(f"{name} must be > 0 or None (no clipping), got {threshold}")

    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos if clip_rho_threshold is None else torch.clamp(rhos, max=clip_rho_threshold)
    cs = torch.clamp(rhos, max=1.0)
    values_t_plus_1 = torch.cat((values[1:], bootstrap_value[None]), dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_t_plus_1 - values)

    # Backward recursion v_s − V(x_s) = δ_s + γ_s c_s (v_{s+1} − V(x_{s+1})); a Python loop over T
    # is fine (T ≈ 20) and keeps the formula readable.
    acc = torch.zeros_like(bootstrap_value)
    result = []
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        result.append(acc)
    result.reverse()
    vs = torch.stack(result) + values

    vs_t_plus_1 = torch.cat((vs[1:], bootstrap_value[None]), dim=0)
    clipped_pg_rhos = rhos if clip_pg_rho_threshold is None else torch.clamp(rhos, max=clip_pg_rho_threshold)
    pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_t_plus_1 - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)

"""``Rollout`` (what :func:`~spiral.learning.rollout.collect_rollout` returns) ⇄ ``TrajectoryData``
(what travels to the policy learner), and the learner-side checks of a received trajectory.

The actor calls :func:`rollout_to_trajectory`; the policy learner calls
:func:`check_trajectory` and :func:`trajectory_to_rollout`, then :func:`concat_rollouts` to batch
trajectories into one update. The maths (``policy_update``) sees exactly the ``Rollout`` the
single-process trainer would have built.

What a conditional trajectory carries: the dataset *indices* of its targets (8 bytes per episode)
instead of the target images (C×H×W bytes per episode as UINT8). Every process loads the same
deterministic dataset (``data`` config, ``data.seed``), so index i names the same image
everywhere; :func:`check_trajectory` refuses indices outside the train split. Target images are
accepted too (``Trajectory.targets``), e.g. from an actor with its own data source.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import torch

from spiral.errors import FailedPreconditionError, InvalidArgumentError
from spiral.learning.rollout import Rollout
from spiral.services.tensor_codec import TrajectoryData

#: Longest accepted ``Trajectory.actor_id`` in UTF-8 bytes (it is logged; a pod name has ≤ 253).
MAX_ACTOR_ID_BYTES = 256
#: Log-probabilities above this are refused: a log-probability is ≤ 0, and float32 rounding of
#: a sum of per-component log-softmaxes stays far below this slack.
MAX_LOG_PROB = 1e-3
#: And below this: a discrete action this unlikely is a corrupted number, not a sample.
MIN_LOG_PROB = -1e6
#: Largest |noise| accepted: the unconditional noise is N(0, 1); beyond 100σ it is corruption.
MAX_ABS_NOISE = 100.0


class RejectReason(str, enum.Enum):
    """Why a trajectory was refused: the bounded ``reason`` label of
    ``spiral_learner_rejected_trajectories_total``."""

    DECODE = "decode"  # the bytes are not a well-formed Trajectory (dtype, byte count, shapes)
    PROTOCOL = "protocol"  # another spiral.v1 protocol version
    SHAPE = "shape"  # well-formed, but not this job's canvas, T or action spec
    VALUE = "value"  # a non-finite or out-of-range number
    COUNTER = "counter"  # policy_version or step outside what this learner can have produced
    SIZE = "size"  # more episodes than num_envs, or an oversized string
    CONDITION = "condition"  # targets / target_indices / noise missing or wrong for the mode


class InvalidTrajectoryError(InvalidArgumentError):
    """A trajectory this learner refuses (INVALID_ARGUMENT); ``reason`` says which rule it broke."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ForeignTrajectoryError(FailedPreconditionError):
    """A trajectory acted by a policy version newer than this learner's (FAILED_PRECONDITION)."""

    reason = RejectReason.COUNTER


class TrajectoryExpectations(NamedTuple):
    """What the policy learner accepts: its action spec, canvas layout, episode length, batch and mode."""

    action_names: tuple[str, ...]
    action_sizes: tuple[int, ...]
    num_channels: int
    canvas_size: int
    num_steps: int  # T = episode_length - 1
    conditional: bool
    noise_size: int
    num_targets: int  # size of the train split that target_indices index
    max_episodes: int = 4096  # num_envs: an actor sends one trajectory of num_envs episodes per batch


def rollout_to_trajectory(
    rollout: Rollout,
    action_names: tuple[str, ...],
    *,
    actor_id: str = "",
    target_indices: torch.Tensor | None = None,
) -> TrajectoryData:
    """The trajectory an actor sends for ``rollout``.

    Args:
        target_indices: ``[B]`` train-split indices of ``rollout.targets``; when given they are sent
            instead of the images (conditional mode).

    Raises:
        ValueError: ``target_indices`` without targets, or not ``[B]``.
    """
    batch = rollout.actions.shape[1]
    condition: dict[str, torch.Tensor | None] = {}
    if target_indices is not None:
        if rollout.targets is None:
            raise ValueError("target_indices given for a rollout without targets (unconditional)")
        if tuple(target_indices.shape) != (batch,):
            raise ValueError(f"target_indices must be [B] = [{batch}], got {list(target_indices.shape)}")
        condition["target_indices"] = target_indices.long()
    elif rollout.targets is not None:
        condition["targets"] = rollout.targets
    elif rollout.noise is not None:
        condition["noise"] = rollout.noise
    return TrajectoryData(
        canvas=rollout.canvases[:-1],
        step=rollout.steps,
        action_mask=rollout.action_masks,
        actions=rollout.actions,
        behaviour_log_probs=rollout.behaviour_log_prob,
        final_canvas=rollout.canvases[-1],
        # Lockstep episodes: every row has the same length, constant over time.
        episode_length=rollout.episode_lengths[0],
        policy_version=int(rollout.policy_version),
        action_names=tuple(action_names),
        actor_id=actor_id,
        searched=rollout.searched,
        **condition,
    )


def check_trajectory(traj: TrajectoryData, expect: TrajectoryExpectations, learner_version: int) -> None:
    """Refuse a well-formed trajectory that this learner cannot (or must not) train on.

    Every number is checked here, at the boundary: one NaN or 1e30 that reached an update would
    have turned every weight NaN (the update's own guard, ``step_if_finite``, is the second line).

    Raises:
        InvalidTrajectoryError: (INVALID_ARGUMENT) the shapes do not fit this learner's config
            (action names, canvas C×H×W, T, at most ``num_envs`` episodes); a value is not finite
            or out of its range (canvases and targets in [0, 1], action_mask in {0, 1}, actions
            within their sizes, log-probabilities in [−1e6, 0], noise within ±100); a counter is
            impossible (negative policy_version, a step that is not its time index); the condition
            does not fit the mode; or actor_id is longer than 256 bytes. The message names the
            field, the value received and what is valid; ``reason`` classifies it.
        ForeignTrajectoryError: (FAILED_PRECONDITION) ``policy_version`` is newer than the
            learner's (the actor follows another learner).
    """
    _check_sizes(traj, expect)
    _check_shapes(traj, expect)
    _check_values(traj, expect)
    _check_condition(traj, expect)
    _check_counters(traj, expect, learner_version)


def _refuse(reason: RejectReason, message: str) -> InvalidTrajectoryError:
    return InvalidTrajectoryError(reason, message)


def _check_sizes(traj: TrajectoryData, expect: TrajectoryExpectations) -> None:
    actor_bytes = len(traj.actor_id.encode("utf-8", "surrogatepass"))
    if actor_bytes > MAX_ACTOR_ID_BYTES:
        raise _refuse(RejectReason.SIZE, f"Trajectory.actor_id is {actor_bytes} bytes long; at most {MAX_ACTOR_ID_BYTES} are accepted")
    if traj.batch_size < 1:
        raise _refuse(RejectReason.SIZE, "Trajectory holds no episodes (B = 0)")
    if traj.batch_size > expect.max_episodes:
        raise _refuse(
            RejectReason.SIZE,
            f"Trajectory holds B = {traj.batch_size} episodes but this learner takes at most num_envs = {expect.max_episodes} per trajectory",
        )


def _check_shapes(traj: TrajectoryData, expect: TrajectoryExpectations) -> None:
    if traj.action_names != expect.action_names:
        raise _refuse(
            RejectReason.SHAPE,
            f"Trajectory.action_names is {list(traj.action_names)} but this learner's action spec is {list(expect.action_names)}",
        )
    _, _, c, h, w = traj.canvas.shape
    if (c, h, w) != (expect.num_channels, expect.canvas_size, expect.canvas_size):
        raise _refuse(
            RejectReason.SHAPE,
            f"Trajectory.canvas has C×H×W = {c}×{h}×{w} but this learner expects "
            f"{expect.num_channels}×{expect.canvas_size}×{expect.canvas_size} (env.color, env.canvas_size)",
        )
    if traj.num_steps != expect.num_steps:
        raise _refuse(
            RejectReason.SHAPE,
            f"Trajectory has T = {traj.num_steps} actions but env.episode_length {expect.num_steps + 1} means T = {expect.num_steps}",
        )


def _outside(name: str, values: torch.Tensor, low: float, high: float) -> InvalidTrajectoryError | None:
    """The refusal for a float tensor with a non-finite value or one outside [low, high], else None."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        return _refuse(RejectReason.VALUE, f"Trajectory.{name} holds NaN or infinite values")
    bad = (values < low) | (values > high)
    if bool(bad.any()):
        got = float(values[bad].flatten()[0])
        return _refuse(RejectReason.VALUE, f"Trajectory.{name} holds {got:g}, outside [{low:g}, {high:g}]")
    return None


def _check_values(traj: TrajectoryData, expect: TrajectoryExpectations) -> None:
    checks = [
        ("canvas", traj.canvas, 0.0, 1.0),
        ("final_canvas", traj.final_canvas, 0.0, 1.0),
        ("behaviour_log_probs", traj.behaviour_log_probs, MIN_LOG_PROB, MAX_LOG_PROB),
        ("action_mask", traj.action_mask, 0.0, 1.0),
    ]
    if traj.targets is not None:
        checks.append(("targets", traj.targets, 0.0, 1.0))
    if traj.noise is not None:
        checks.append(("noise", traj.noise, -MAX_ABS_NOISE, MAX_ABS_NOISE))
    if traj.rewards is not None:
        checks.append(("rewards", traj.rewards, -1e6, 1e6))
    for name, values, low, high in checks:
        refusal = _outside(name, values, low, high)
        if refusal is not None:
            raise refusal
    if bool(((traj.action_mask != 0) & (traj.action_mask != 1)).any()):
        raise _refuse(RejectReason.VALUE, "Trajectory.action_mask must hold only 0 and 1 (the mask of the previous action)")
    lengths = traj.episode_length
    if bool((lengths != expect.num_steps + 1).any()):
        raise _refuse(RejectReason.SHAPE, f"Trajectory.episode_length must all be {expect.num_steps + 1}, got {sorted(set(lengths.tolist()))[:8]}")
    sizes = torch.tensor(expect.action_sizes)
    bad = (traj.actions < 0) | (traj.actions >= sizes)
    if bool(bad.any()):
        column = int(bad.nonzero()[0, 2])
        name = expect.action_names[column]
        raise _refuse(RejectReason.VALUE, f"Trajectory.actions column {name!r} holds values outside [0, {expect.action_sizes[column] - 1}]")


def _check_condition(traj: TrajectoryData, expect: TrajectoryExpectations) -> None:
    if expect.conditional:
        if traj.targets is None and traj.target_indices is None:
            raise _refuse(RejectReason.CONDITION, "Trajectory needs targets or target_indices: this learner trains mode 'conditional'")
        if traj.targets is not None and traj.targets.shape[1] != expect.num_channels:
            raise _refuse(RejectReason.CONDITION, f"Trajectory.targets has {traj.targets.shape[1]} channels, expected {expect.num_channels}")
        if traj.target_indices is not None:
            idx = traj.target_indices
            if bool(((idx < 0) | (idx >= expect.num_targets)).any()):
                raise _refuse(
                    RejectReason.CONDITION,
                    f"Trajectory.target_indices must lie in [0, {expect.num_targets - 1}] (the train split), "
                    f"got min {int(idx.min())} and max {int(idx.max())}",
                )
    else:
        if traj.noise is None:
            raise _refuse(RejectReason.CONDITION, "Trajectory needs noise: this learner trains mode 'unconditional'")
        if traj.noise.shape[1] != expect.noise_size:
            raise _refuse(
                RejectReason.CONDITION, f"Trajectory.noise has Z = {traj.noise.shape[1]}, expected agent.noise_size = {expect.noise_size}"
            )


def _check_counters(traj: TrajectoryData, expect: TrajectoryExpectations, learner_version: int) -> None:
    # Episodes run in lockstep from a reset: observation t of every episode is step t.
    want = torch.arange(expect.num_steps, dtype=traj.step.dtype)[:, None].expand_as(traj.step)
    if not torch.equal(traj.step, want):
        wrong = (traj.step != want).nonzero()[0]
        t = int(wrong[0])
        raise _refuse(
            RejectReason.COUNTER,
            f"Trajectory.step[{t}] holds {int(traj.step[t, int(wrong[1])])} but observation {t} of a lockstep episode is step {t} "
            f"(steps run 0..{expect.num_steps - 1})",
        )
    if traj.policy_version < 0:
        raise _refuse(RejectReason.COUNTER, f"Trajectory.policy_version must be ≥ 0 (the learner's published versions), got {traj.policy_version}")
    if traj.policy_version > learner_version:
        raise ForeignTrajectoryError(
            f"Trajectory.policy_version {traj.policy_version} is newer than this learner's version {learner_version}: "
            "the actor follows another learner; restart it against this one"
        )


def trajectory_to_rollout(traj: TrajectoryData, train_targets: torch.Tensor | None = None) -> Rollout:
    """The ``Rollout`` a received trajectory stands for.

    Args:
        train_targets: the dataset's float train split, to resolve ``target_indices``.

    Raises:
        ValueError: ``target_indices`` without ``train_targets``.
    """
    targets = traj.targets
    if traj.target_indices is not None:
        if train_targets is None:
            raise ValueError("trajectory carries target_indices but no dataset was given to resolve them")
        targets = train_targets[traj.target_indices]
    steps = traj.num_steps
    return Rollout(
        canvases=torch.cat((traj.canvas, traj.final_canvas[None])),
        steps=traj.step,
        episode_lengths=traj.episode_length[None].expand(steps, -1).contiguous(),
        action_masks=traj.action_mask,
        actions=traj.actions,
        behaviour_log_prob=traj.behaviour_log_probs,
        targets=targets,
        noise=traj.noise,
        policy_version=traj.policy_version,
        searched=traj.searched,
    )


def concat_rollouts(rollouts: list[Rollout]) -> Rollout:
    """Episodes of several rollouts (same T) side by side on the batch axis.

    ``policy_version`` becomes the oldest one (the lag the update reports is the worst case).

    Raises:
        ValueError: no rollouts, differing T, or conditional and unconditional mixed.
    """
    if not rollouts:
        raise ValueError("concat_rollouts needs at least one rollout")
    if len(rollouts) == 1:
        return rollouts[0]
    lengths = {int(r.actions.shape[0]) for r in rollouts}
    if len(lengths) != 1:
        raise ValueError(f"rollouts must share T to be batched, got T in {sorted(lengths)}")

    def cat(name: str, dim: int) -> torch.Tensor | None:
        values = [getattr(r, name) for r in rollouts]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError(f"rollouts disagree on whether they carry {name}")
        return torch.cat(values, dim=dim)

    def cat_required(name: str, dim: int) -> torch.Tensor:
        values = cat(name, dim)
        if values is None:  # unreachable for well-formed Rollouts: these fields are not optional
            raise ValueError(f"rollouts carry no {name}, which every rollout needs")
        return values

    return Rollout(
        canvases=cat_required("canvases", 1),
        steps=cat_required("steps", 1),
        episode_lengths=cat_required("episode_lengths", 1),
        action_masks=cat_required("action_masks", 1),
        actions=cat_required("actions", 1),
        behaviour_log_prob=cat_required("behaviour_log_prob", 1),
        targets=cat("targets", 0),
        noise=cat("noise", 0),
        policy_version=min(r.policy_version for r in rollouts),
        searched=_concat_searched(rollouts),
    )


def _concat_searched(rollouts: list[Rollout]) -> torch.Tensor | None:
    """The batch's ``searched`` mask; a rollout without one searched no episode."""
    if all(r.searched is None for r in rollouts):
        return None
    return torch.cat([r.searched if r.searched is not None else torch.zeros(r.actions.shape[1], dtype=torch.bool) for r in rollouts])

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

from typing import NamedTuple

import torch

from spiral.learning.rollout import Rollout
from spiral.errors import FailedPreconditionError, InvalidArgumentError
from spiral.services.tensor_codec import TrajectoryData


class TrajectoryExpectations(NamedTuple):
    """What the policy learner accepts: its action spec, canvas layout, episode length and mode."""

    action_names: tuple[str, ...]
    action_sizes: tuple[int, ...]
    num_channels: int
    canvas_size: int
    num_steps: int  # T = episode_length - 1
    conditional: bool
    noise_size: int
    num_targets: int  # size of the train split that target_indices index


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
    steps, batch = rollout.actions.shape[:2]
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
        **condition,
    )


def check_trajectory(traj: TrajectoryData, expect: TrajectoryExpectations, learner_version: int) -> None:
    """Refuse a well-formed trajectory that this learner cannot train on.

    Raises:
        InvalidArgumentError: action names, action values, canvas shape, T, episode lengths or the
            condition (targets / target_indices / noise) do not fit this learner's config; the
            message names the field, the value received and what is expected.
        FailedPreconditionError: ``policy_version`` is newer than the learner's (the actor follows
            another learner).
    """
    if traj.action_names != expect.action_names:
        raise InvalidArgumentError(
            f"Trajectory.action_names is {list(traj.action_names)} but this learner's action spec is {list(expect.action_names)}"
        )
    _, _, c, h, w = traj.canvas.shape
    if (c, h, w) != (expect.num_channels, expect.canvas_size, expect.canvas_size):
        raise InvalidArgumentError(
            f"Trajectory.canvas has C×H×W = {c}×{h}×{w} but this learner expects "
            f"{expect.num_channels}×{expect.canvas_size}×{expect.canvas_size} (env.color, env.canvas_size)"
        )
    if traj.num_steps != expect.num_steps:
        raise InvalidArgumentError(
            f"Trajectory has T = {traj.num_steps} actions but env.episode_length {expect.num_steps + 1} means T = {expect.num_steps}"
        )
    if traj.batch_size < 1:
        raise InvalidArgumentError("Trajectory holds no episodes (B = 0)")
    lengths = traj.episode_length
    if bool((lengths != expect.num_steps + 1).any()):
        raise InvalidArgumentError(f"Trajectory.episode_length must all be {expect.num_steps + 1}, got {sorted(set(lengths.tolist()))}")
    sizes = torch.tensor(expect.action_sizes)
    bad = (traj.actions < 0) | (traj.actions >= sizes)
    if bool(bad.any()):
        column = int(bad.nonzero()[0, 2])
        name = expect.action_names[column]
        raise InvalidArgumentError(
            f"Trajectory.actions column {name!r} holds values outside [0, {expect.action_sizes[column] - 1}]"
        )
    if not bool(torch.isfinite(traj.behaviour_log_probs).all()):
        raise InvalidArgumentError("Trajectory.behaviour_log_probs holds NaN or infinite values")
    if expect.conditional:
        if traj.targets is None and traj.target_indices is None:
            raise InvalidArgumentError("Trajectory needs targets or target_indices: this learner trains mode 'conditional'")
        if traj.targets is not None and traj.targets.shape[1] != expect.num_channels:
            raise InvalidArgumentError(f"Trajectory.targets has {traj.targets.shape[1]} channels, expected {expect.num_channels}")
        if traj.target_indices is not None:
            idx = traj.target_indices
            if bool(((idx < 0) | (idx >= expect.num_targets)).any()):
                raise InvalidArgumentError(
                    f"Trajectory.target_indices must lie in [0, {expect.num_targets - 1}] (the train split), "
                    f"got min {int(idx.min())} and max {int(idx.max())}"
                )
    else:
        if traj.noise is None:
            raise InvalidArgumentError("Trajectory needs noise: this learner trains mode 'unconditional'")
        if traj.noise.shape[1] != expect.noise_size:
            raise InvalidArgumentError(f"Trajectory.noise has Z = {traj.noise.shape[1]}, expected agent.noise_size = {expect.noise_size}")
    if traj.policy_version > learner_version:
        raise FailedPreconditionError(
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

    return Rollout(
        canvases=cat("canvases", 1),
        steps=cat("steps", 1),
        episode_lengths=cat("episode_lengths", 1),
        action_masks=cat("action_masks", 1),
        actions=cat("actions", 1),
        behaviour_log_prob=cat("behaviour_log_prob", 1),
        targets=cat("targets", 0),
        noise=cat("noise", 0),
        policy_version=min(r.policy_version for r in rollouts),
    )

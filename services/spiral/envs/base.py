"""The batched environment interface every renderer implements.

Environments run ``B`` episodes in lockstep: ``reset(B)`` then ``episode_length - 1`` calls to
``step``. They return observations only; rewards are the learner's business (D(canvas) or −L2).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from spiral.envs.spec import ActionSpec


class Observation(NamedTuple):
    """What the agent sees after a reset or a step.

    canvas:          float32 ``[B, C, H, W]`` in [0, 1] (C = 1 grayscale, 3 RGB).
    step:            int64 ``[B]``; 0 after reset (the reset counts as one of the episode's steps).
    episode_length:  int64 ``[B]``; the episode ends when ``step == episode_length - 1``.
    action_mask:     float32 ``[B, K]``; which components of the *previous* action mattered
                     (zeros after reset; after a move only ``flag`` and ``end``/``position``).
    """

    canvas: torch.Tensor
    step: torch.Tensor
    episode_length: torch.Tensor
    action_mask: torch.Tensor

    @property
    def done(self) -> torch.Tensor:
        """bool ``[B]``: the episode has taken its last action."""
        return self.step >= self.episode_length - 1


class BatchedEnv(Protocol):
    """What the trainer, the actor service and ``spiral paint`` rely on."""

    action_spec: ActionSpec
    num_channels: int
    canvas_size: int
    device: torch.device

    def reset(self, batch_size: int) -> Observation:
        """Start ``batch_size`` fresh episodes on blank canvases."""
        ...

    def step(self, actions: torch.Tensor) -> Observation:
        """Apply ``LongTensor[B, K]`` actions (columns follow ``action_spec.names``).

        Raises:
            ValueError: bad shape/dtype or an out-of-range component (never clipped).
            RuntimeError: stepping past the episode's end, or before ``reset``.
        """
        ...


class PreviewableEnv(BatchedEnv, Protocol):
    """An environment that can show what candidate actions would paint without taking them —
    what search (:mod:`spiral.learning.search`) needs. The ``fast`` and ``mujoco`` renderers
    are; libmypaint's stateful C surfaces cannot be branched cheaply, so it is not."""

    def preview(self, candidates: torch.Tensor) -> torch.Tensor:
        """float32 ``[B, K, C, H, W]``: the canvas after each of ``K`` candidate actions
        (``LongTensor[B, K, A]``) per episode, from the current state; the env does not change."""
        ...


def supports_preview(env: object) -> bool:
    """True when ``env`` implements :meth:`PreviewableEnv.preview`."""
    return callable(getattr(env, "preview", None))


class BranchableEnv(PreviewableEnv, Protocol):
    """A previewable environment that can also hand out a copy of some episodes one action ahead:
    what search's lookahead (:mod:`spiral.learning.search`) needs to judge an action by what can
    follow it. The ``fast`` renderer is (its whole state is two tensors)."""

    def branch(self, rows: torch.Tensor, actions: torch.Tensor) -> tuple[BranchableEnv, Observation]:
        """A new environment holding episodes ``rows`` (``LongTensor[N]``, repeats allowed) after
        ``actions`` (``LongTensor[N, A]``), and its observation; this environment does not change."""
        ...


def supports_branch(env: object) -> bool:
    """True when ``env`` implements :meth:`BranchableEnv.branch` (and can preview)."""
    return supports_preview(env) and callable(getattr(env, "branch", None))

"""The networks of a run, built from its :class:`~spiral.config.TrainConfig` and its environment.

One place decides how a config becomes a policy and a critic, so the single-process trainer, the
learner services, the actors and ``spiral sample`` build byte-for-byte the same architectures (a
checkpoint written by one loads into any other).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from spiral.agents.discriminator import Discriminator
from spiral.agents.policy import SpiralPolicy
from spiral.config import ConditioningMode, DiscriminatorConfig, Mode, TrainConfig

if TYPE_CHECKING:  # pragma: no cover - types only: agents must not import the environments
    from spiral.envs.base import BatchedEnv


def conditioning_for(mode: Mode, disc_cfg: DiscriminatorConfig) -> ConditioningMode:
    """Unconditional runs have nothing to condition on, whatever the config says."""
    return ConditioningMode.NONE if mode == Mode.UNCONDITIONAL else disc_cfg.conditioning


def build_policy(cfg: TrainConfig, env: BatchedEnv) -> SpiralPolicy:
    """The policy for ``env``'s action spec and canvas (conditional runs also see the target).

    Its convolutions keep channels-last weights: oneDNN then runs them (and their gradients) in
    NHWC, 1.37× fewer ms per update of the default preset on CPU (tests/benchmarks/bench_trainer.py
    --against); the wire and checkpoints see the same values (``tensor_to_proto`` and
    ``load_state_dict`` copy by index, whatever the strides).
    """
    policy = SpiralPolicy(env.action_spec, env.canvas_size, env.num_channels, cfg.mode == Mode.CONDITIONAL, cfg.agent)
    return policy.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to accepts it; its stubs omit it


def build_discriminator(cfg: TrainConfig, env: BatchedEnv) -> Discriminator:
    """The critic for ``env``'s canvases, conditioned as :func:`conditioning_for` says."""
    return Discriminator(env.num_channels, env.canvas_size, cfg.discriminator, conditioning_for(cfg.mode, cfg.discriminator))

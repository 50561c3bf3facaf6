"""spiral.agents: the SPIRAL policy network and the discriminator.

Public API: :class:`SpiralPolicy` (with :class:`AgentState`, :class:`PolicyOutput`),
:class:`Discriminator`, the size presets (:func:`resolve_agent_sizes`, :class:`AgentSizes`), and
the builders every trainer uses (:func:`build_policy`, :func:`build_discriminator`,
:func:`conditioning_for`).
"""

from spiral.agents.build import build_discriminator, build_policy, conditioning_for
from spiral.agents.discriminator import Discriminator, discriminator_input_channels
from spiral.agents.policy import AgentState, PolicyOutput, SpiralPolicy
from spiral.agents.presets import PRESET_SIZES, AgentSizes, resolve_agent_sizes

__all__ = [
    "PRESET_SIZES",
    "AgentSizes",
    "AgentState",
    "Discriminator",
    "PolicyOutput",
    "SpiralPolicy",
    "build_discriminator",
    "build_policy",
    "conditioning_for",
    "discriminator_input_channels",
    "resolve_agent_sizes",
]

"""spiral.agents: the SPIRAL policy network and the discriminator.

Public API: :class:`SpiralPolicy` (with :class:`AgentState`, :class:`PolicyOutput`),
:class:`Discriminator`, and the size presets (:func:`resolve_agent_sizes`, :class:`AgentSizes`).
"""

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
    "discriminator_input_channels",
    "resolve_agent_sizes",
]

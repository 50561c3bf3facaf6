"""Network size presets for the SPIRAL policy, and their resolution against an ``AgentConfig``.

``AgentConfig`` leaves every size optional; the chosen ``preset`` fills the ones left unset. The
result is a new frozen :class:`AgentSizes` — the config itself is never touched (STYLE §3).
Called by :class:`spiral.agents.policy.SpiralPolicy` and by anything that needs to know the sizes
without building a network (benchmarks, checkpoint metadata).
"""

from __future__ import annotations

from typing import NamedTuple

from spiral.config import AgentConfig, AgentPreset


class AgentSizes(NamedTuple):
    """Every size the policy network needs, all resolved.

    conv_channels:        encoder width C (every encoder conv has C output channels).
    num_residual_blocks:  residual blocks at the encoder's final resolution (8×8 for 64×64 input).
    hidden_size:          width of the post-encoder linear layer, the LSTM, and the head's state ``z``.
    embed_size:           width of each component's embedding (previous action and in the head).
    noise_size:           length of the unconditional noise vector.
    decoder_channels:     channels of the deconvolution stacks that decode spatial components.
    first_stride:         stride of the first 5×5 convolution (1 = the paper; 2 halves the
                          resolution at once, which removes most of the encoder's cost on a CPU).
    spatial_skip:         feed the first conv's feature map (pooled to grid×grid) straight into the
                          spatial decoders. **We decide** (not in the paper): without it, where the
                          target's ink lies must squeeze through the LSTM vector, which takes far
                          more experience than 30 CPU-minutes give.
    """

    conv_channels: int
    num_residual_blocks: int
    hidden_size: int
    embed_size: int
    noise_size: int
    decoder_channels: int
    first_stride: int
    spatial_skip: bool


#: Sizes that a preset supplies for every field the config leaves as ``None``.
#: ``paper`` follows SPIRAL-NOTES §2 (C=32, 8 residual blocks, 256-wide LSTM, 16-d embeddings).
#: ``small`` is sized for 2 CPU cores: half the width, one residual block, a thin spatial decoder,
#: and a stride-2 first convolution — measured here, the full-resolution 5×5 convolution was half
#: of the small network's inference time.
PRESET_SIZES: dict[AgentPreset, AgentSizes] = {
    AgentPreset.PAPER: AgentSizes(
        conv_channels=32,
        num_residual_blocks=8,
        hidden_size=256,
        embed_size=16,
        noise_size=10,
        decoder_channels=32,
        first_stride=1,
        spatial_skip=False,
    ),
    AgentPreset.SMALL: AgentSizes(
        conv_channels=16,
        num_residual_blocks=1,
        hidden_size=128,
        embed_size=16,
        noise_size=10,
        decoder_channels=8,
        first_stride=2,
        spatial_skip=True,
    ),
}


def resolve_agent_sizes(cfg: AgentConfig) -> AgentSizes:
    """Fill the sizes ``cfg`` leaves unset from its preset; explicit values always win.

    ``noise_size`` always comes from the config (it has a non-optional default there).
    ``decoder_channels`` has no config field; it follows the preset, scaled with an explicit
    ``conv_channels`` so a wider encoder also gets a wider decoder.

    Raises:
        ValueError: ``cfg.preset`` is not a known preset (names the valid ones).
    """
    try:
        base = PRESET_SIZES[AgentPreset(cfg.preset)]
    except (KeyError, ValueError):
        valid = [p.value for p in PRESET_SIZES]
        raise ValueError(f"agent.preset must be one of {valid}, got {cfg.preset!r}") from None
    conv_channels = cfg.conv_channels if cfg.conv_channels is not None else base.conv_channels
    decoder_channels = max(4, base.decoder_channels * conv_channels // base.conv_channels)
    return AgentSizes(
        conv_channels=conv_channels,
        num_residual_blocks=(
            cfg.num_residual_blocks if cfg.num_residual_blocks is not None else base.num_residual_blocks
        ),
        hidden_size=cfg.hidden_size if cfg.hidden_size is not None else base.hidden_size,
        embed_size=cfg.embed_size if cfg.embed_size is not None else base.embed_size,
        noise_size=cfg.noise_size,
        decoder_channels=decoder_channels,
        first_stride=base.first_stride,
        spatial_skip=cfg.spatial_skip if cfg.spatial_skip is not None else base.spatial_skip,
    )

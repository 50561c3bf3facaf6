"""``spiral sample``: paint with a trained checkpoint and keep the programs that did it.

The JSON holds the environment config and one list of action dicts per image, the format
``spiral paint --program`` reads, so every image can be re-rendered (or rendered with another
backend) from its program alone. The PNG shows each target beside its painting under a header
row (:func:`spiral.images.pairs_picture`); ``--gif`` animates the painting stroke by stroke and
``--svg`` writes the programs as vector strokes. ``seed`` picks which held-out targets are painted
(a seeded random subset) or the noise of an unconditional policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.config import Mode
from spiral.images import pairs_picture, save_gif, save_grid, save_picture


class SampleResult(NamedTuple):
    grid: Path
    programs: Path
    canvases: torch.Tensor  # [N, C, H, W]
    gif: Path | None = None
    svg: Path | None = None


def pick_targets(held_out: torch.Tensor, num: int, seed: int) -> torch.Tensor:
    """``num`` held-out images chosen at random by ``seed`` (all of them, shuffled, when fewer)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(held_out.shape[0], generator=generator)[:num]
    return held_out[order]


def sample_from_checkpoint(
    checkpoint: Path, out: Path, num: int, data_path: Path | None = None, seed: int = 0, *,
    gif: Path | None = None,
    svg: Path | None = None,
    search: int = 0,
) -> SampleResult:
    """Paint ``num`` images (held-out targets picked by ``seed``, or noise for unconditional
    policies) into a labelled PNG at ``out`` and their programs into ``out`` with ``.json``.
    ``search`` K > 0 paints each stroke as the best of K policy candidates (conditional agents).

    Raises:
        FileNotFoundError / ValueError: no or unreadable checkpoint; ConfigError: bad stored config.
    """
    from spiral.api import load_agent  # the public API is the one way to paint with a checkpoint

    agent = load_agent(checkpoint, data_path=data_path)
    cfg = agent.config
    targets = pick_targets(agent.dataset().held_out, num, seed) if cfg.mode == Mode.CONDITIONAL else None
    rollout = agent.rollout(targets, num=num, seed=seed, search=search)
    canvases = rollout.final_canvas

    out.parent.mkdir(parents=True, exist_ok=True)
    if targets is None:
        grid = save_grid(canvases, out, nrow=8, scale=2)
    else:
        grid = save_picture(pairs_picture(targets, canvases, pairs_per_row=8, scale=2), out)
    programs_path = out.with_suffix(".json")
    programs_path.write_text(json.dumps(agent.programs_document(rollout.actions), indent=1))
    gif_path = save_gif(rollout.canvases, gif, targets=targets) if gif is not None else None
    svg_path = agent.save_svg(rollout.actions, svg) if svg is not None else None
    return SampleResult(grid, programs_path, canvases, gif_path, svg_path)

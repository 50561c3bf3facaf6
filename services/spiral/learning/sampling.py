"""``spiral sample``: paint with a trained checkpoint and keep the programs that did it.

The JSON holds the environment config and one list of action dicts per image, the format
``spiral paint --program`` reads, so every image can be re-rendered (or rendered with another
backend) from its program alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.agents import build_policy
from spiral.config import Mode, load_config_dict
from spiral.data import load_dataset
from spiral.envs.factory import make_env
from spiral.images import save_grid
from spiral.learning.checkpoint import load_checkpoint
from spiral.learning.rollout import collect_rollout


class SampleResult(NamedTuple):
    grid: Path
    programs: Path
    canvases: torch.Tensor  # [N, C, H, W]


def sample_from_checkpoint(checkpoint: Path, out: Path, num: int, data_path: Path | None = None, seed: int = 0) -> SampleResult:
    """Paint ``num`` images (held-out targets, or noise for unconditional policies).

    Raises:
        FileNotFoundError / ValueError: no or unreadable checkpoint; ConfigError: bad stored config.
    """
    payload = load_checkpoint(checkpoint)
    raw = payload["config"]
    if data_path is not None:
        raw = {**raw, "data": {**raw["data"], "path": str(data_path)}}
    cfg = load_config_dict(raw, source=f"{checkpoint} (stored config)")
    env = make_env(cfg.env)
    policy = build_policy(cfg, env)
    policy.load_state_dict(payload["policy"])
    policy.eval()
    generator = torch.Generator().manual_seed(seed)
    targets = noise = None
    if cfg.mode == Mode.CONDITIONAL:
        dataset = load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        targets = dataset.held_out[:num]
        num = targets.shape[0]
    else:
        noise = torch.randn(num, cfg.agent.noise_size, generator=generator)
    rollout = collect_rollout(env, policy, targets, noise, num, greedy=cfg.mode == Mode.CONDITIONAL)
    canvases = rollout.final_canvas

    out.parent.mkdir(parents=True, exist_ok=True)
    images = canvases if targets is None else torch.stack((targets, canvases), 1).flatten(0, 1)
    grid = save_grid(images, out, nrow=8 if targets is None else 16, scale=2)
    spec = env.action_spec
    programs = [spec.to_dicts(rollout.actions[:, i]) for i in range(num)]
    programs_path = out.with_suffix(".json")
    programs_path.write_text(json.dumps({"config": cfg.env.model_dump(mode="json"), "programs": programs}, indent=1))
    return SampleResult(grid, programs_path, canvases)

"""MuJoCo Scenes rendering speed: frames/s at 64×64 with shadows off and on, and env steps/s.

Run: ``python tests/benchmarks/bench_mujoco.py [--seconds 3] [--grid /tmp/mujoco_scenes.png]``
(under a minute). Prints one line per setting and writes a PNG grid of random scenes rendered
with each setting, for a look at what the shadow maps buy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spiral.config import EnvConfig, MujocoSceneConfig, Renderer
from spiral.envs.mujoco_model import SHADOW_MAP_SIZE, SceneRenderer, random_scene
from spiral.envs.mujoco_scenes import MujocoScenesEnv

#: (label, shadows, shadow map side); 4096 is MuJoCo's default map.
SETTINGS = [
    ("shadows off", False, SHADOW_MAP_SIZE),
    (f"shadows on, {SHADOW_MAP_SIZE} map (ours)", True, SHADOW_MAP_SIZE),
    ("shadows on, 4096 map (MuJoCo default)", True, 4096),
]


def frames_per_second(shadows: bool, shadow_map_size: int, seconds: float, canvas: int) -> tuple[float, list[np.ndarray]]:
    layout = MujocoSceneConfig(shadows=shadows)
    scenes = [random_scene(np.random.default_rng(i), layout) for i in range(64)]
    with SceneRenderer(canvas, layout, shadow_map_size) as renderer:
        images = [renderer.render(s) for s in scenes[:16]]  # warm-up, and the picture
        frames, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            renderer.render(scenes[frames % len(scenes)])
            frames += 1
        return frames / (time.perf_counter() - start), images


def env_steps_per_second(batch: int, seconds: float) -> tuple[float, float]:
    """Batched env steps/s and rendered frames/s with uniformly random actions (about half place)."""
    env = MujocoScenesEnv(EnvConfig(renderer=Renderer.MUJOCO))
    generator = torch.Generator().manual_seed(0)
    sizes = env.action_spec.sizes
    steps, placed = 0, 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            env.reset(batch)
            for _ in range(env.episode_length - 1):
                actions = torch.stack([torch.randint(s, (batch,), generator=generator) for s in sizes], dim=1)
                before = [len(s.objects) for s in env.scenes]
                env.step(actions)
                placed += sum(len(s.objects) - b for s, b in zip(env.scenes, before))
                steps += 1
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return steps / elapsed, placed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="Measuring time per setting.")
    parser.add_argument("--canvas", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--grid", type=Path, default=Path("/tmp/mujoco_scenes_bench.png"))
    args = parser.parse_args()

    rows = []
    for label, shadows, size in SETTINGS:
        fps, images = frames_per_second(shadows, size, args.seconds, args.canvas)
        print(f"render {args.canvas}x{args.canvas}, {label:40s}: {fps:8.1f} frames/s")  # noqa: T201 - a benchmark's output
        rows.append(np.concatenate(images, axis=1))
    steps, renders = env_steps_per_second(args.batch, args.seconds)
    print(  # noqa: T201
        f"env batch {args.batch} (shadows off, random actions): {steps:8.1f} steps/s = "
        f"{steps * args.batch:8.1f} env frames/s ({renders:.1f} placements rendered/s)"
    )
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.grid)
    print(f"scene grid (rows: {' | '.join(s[0] for s in SETTINGS)}): {args.grid}")  # noqa: T201


if __name__ == "__main__":
    main()

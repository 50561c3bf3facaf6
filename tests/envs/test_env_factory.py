"""make_env dispatches on env.renderer and imports backends lazily."""

from __future__ import annotations

import subprocess
import sys

import torch

from spiral.config import EnvConfig, Renderer
from spiral.envs.factory import make_env
from spiral.envs.fast_backend import FastPaintEnv
from spiral.envs.libmypaint_backend import LibMyPaintEnv


def test_make_env_builds_each_painting_backend():
    assert isinstance(make_env(EnvConfig(renderer=Renderer.FAST)), FastPaintEnv)
    assert isinstance(make_env(EnvConfig(renderer=Renderer.LIBMYPAINT), seed=3), LibMyPaintEnv)


def test_device_argument_overrides_config():
    env = make_env(EnvConfig(renderer=Renderer.FAST, device="auto"), device="cpu")
    assert env.device == torch.device("cpu")
    assert env.reset(2).canvas.device == torch.device("cpu")


def test_make_env_builds_mujoco_scenes():
    env = make_env(EnvConfig(renderer=Renderer.MUJOCO))
    assert type(env).__name__ == "MujocoScenesEnv"
    assert "position" in env.action_spec.names


def test_choosing_fast_loads_neither_libmypaint_nor_mujoco():
    code = (
        "import sys; from spiral.config import EnvConfig; from spiral.envs.factory import make_env; "
        "make_env(EnvConfig()).reset(1); "
        "print(sorted(m for m in sys.modules if m.startswith(('mujoco', 'spiral.envs.libmypaint'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The public Python API: paint with a checkpoint in a few lines, without the internals.

    import spiral
    agent = spiral.load_agent("runs/default/checkpoints")
    canvases, programs = agent.paint(agent.load_targets(["drawing.png"]))

``spiral/__init__.py`` re-exports these names lazily (``import spiral`` loads no torch), and
``spiral sample`` paints through :func:`load_agent` too. Programs are lists of action dicts, the
format ``spiral paint --program`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from spiral.agents import SpiralPolicy, build_policy
from spiral.config import ColorMode, EnvConfig, Mode, TrainConfig, load_config_dict
from spiral.data import ImageDataset, load_dataset
from spiral.envs.base import BatchedEnv
from spiral.envs.factory import make_env as _make_env
from spiral.learning.checkpoint import load_checkpoint
from spiral.learning.rollout import Rollout, collect_rollout
from spiral.learning.search import paint_time_lookahead

Program = list[dict[str, int]]


class Painting(NamedTuple):
    """What :meth:`Agent.paint` returns."""

    canvases: torch.Tensor  # float [N, C, H, W] in [0, 1]: the finished paintings
    programs: list[Program]  # per image, its actions as dicts (``spiral paint --program`` reads them)


class Agent:
    """A trained policy with its environment, from a checkpoint. Not thread-safe."""

    def __init__(self, config: TrainConfig, policy: SpiralPolicy, env: BatchedEnv, checkpoint: Path | None = None) -> None:
        self.config = config
        self.policy = policy
        self.env = env
        self.checkpoint = checkpoint
        self._dataset: ImageDataset | None = None

    @property
    def conditional(self) -> bool:
        """True when the agent reconstructs targets; False when it paints from noise."""
        return self.config.mode == Mode.CONDITIONAL

    def dataset(self) -> ImageDataset:
        """The dataset the agent trained on (its held-out split: ``dataset().held_out``).

        Raises:
            DatasetError: the files are not where the checkpoint's config says (pass ``data_path``
                to :func:`load_agent`).
        """
        if self._dataset is None:
            cfg = self.config
            self._dataset = load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        return self._dataset

    def load_targets(self, images: Sequence[str | Path | Image.Image | np.ndarray]) -> torch.Tensor:
        """Image files (or PIL images, or arrays) as targets: float ``[N, C, H, W]`` in [0, 1],
        resized to the canvas and converted to its colour mode. They should look like the
        training data (MNIST: white strokes on black)."""
        mode = "RGB" if self.config.env.color == ColorMode.RGB else "L"
        size = self.config.env.canvas_size
        tensors = []
        for item in images:
            picture = item if isinstance(item, Image.Image) else Image.open(item) if isinstance(item, (str, Path)) else Image.fromarray(np.asarray(item))
            array = np.asarray(picture.convert(mode).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
            tensors.append(torch.from_numpy(array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0).copy()))
        if not tensors:
            raise ValueError("load_targets needs at least one image")
        return torch.stack(tensors)

    @torch.no_grad()
    def paint(
        self, targets: torch.Tensor | None = None, *, num: int | None = None, greedy: bool | None = None, seed: int = 0, search: int = 0
    ) -> Painting:
        """Paint ``targets`` (``[N, C, H, W]`` in [0, 1], conditional agents) or ``num`` images
        from seeded noise (unconditional agents).

        Args:
            greedy: each component's most likely value (default for conditional agents), or a
                sample from the policy (default for unconditional ones).
            search: K > 0 paints each stroke as the best of K policy candidates by the L2 to the
                target (search at paint time, :mod:`spiral.learning.search`; conditional agents on
                a renderer that previews strokes: ``fast`` or ``mujoco``), on ``fast`` each move
                scored by the best of K candidates after it (:func:`~spiral.learning.search.paint_time_lookahead`).
                0: the policy alone.

        Raises:
            ValueError: targets missing for a conditional agent, or of the wrong shape.
        """
        rollout = self.rollout(targets, num=num, greedy=greedy, seed=seed, search=search)
        spec = self.env.action_spec
        programs = [spec.to_dicts(rollout.actions[:, i]) for i in range(rollout.actions.shape[1])]
        return Painting(rollout.final_canvas, programs)

    @torch.no_grad()
    def paint_steps(
        self, targets: torch.Tensor | None = None, *, num: int | None = None, greedy: bool | None = None, seed: int = 0, search: int = 0
    ) -> torch.Tensor:
        """Every canvas of the episode, float ``[T + 1, N, C, H, W]`` (blank first): for GIFs
        (:func:`spiral.images.save_gif`) and stroke-by-stroke grids."""
        return self.rollout(targets, num=num, greedy=greedy, seed=seed, search=search).canvases

    def rollout(
        self, targets: torch.Tensor | None = None, *, num: int | None = None, greedy: bool | None = None, seed: int = 0, search: int = 0
    ) -> Rollout:
        """The whole episode (canvases, actions…) behind :meth:`paint`; same arguments."""
        cfg = self.config
        noise = None
        if search < 0:
            raise ValueError(f"search must be 0 (the policy alone) or a number of candidates K ≥ 1, got {search}")
        if search and not self.conditional:
            raise ValueError("search picks strokes by their L2 to a target: it needs a conditional agent (this one paints from noise)")
        if self.conditional:
            if targets is None:
                raise ValueError("this agent reconstructs targets: pass targets (e.g. agent.load_targets([...]) or agent.dataset().held_out[:8])")
            channels = self.env.num_channels
            expected = (channels, cfg.env.canvas_size, cfg.env.canvas_size)
            if targets.dim() != 4 or tuple(targets.shape[1:]) != expected:
                raise ValueError(f"targets must be [N, {', '.join(map(str, expected))}] (this agent's canvas), got {list(targets.shape)}")
            num = targets.shape[0]
        else:
            num = num if num is not None else (targets.shape[0] if targets is not None else 8)
            noise = torch.randn(num, cfg.agent.noise_size, generator=torch.Generator().manual_seed(seed))
            targets = None
        greedy = self.conditional if greedy is None else greedy
        if not greedy:
            torch.manual_seed(seed)
        self.policy.eval()
        return collect_rollout(
            self.env, self.policy, targets, noise, num, greedy=greedy, search_candidates=search, search_lookahead=paint_time_lookahead(self.env, search)
        )

    def programs_document(self, programs: list[Program] | torch.Tensor) -> dict[str, Any]:
        """``{"config": env config, "programs": [...]}``: the file ``spiral paint --program`` reads."""
        if isinstance(programs, torch.Tensor):
            spec = self.env.action_spec
            programs = [spec.to_dicts(programs[:, i]) for i in range(programs.shape[1])]
        return {"config": self.config.env.model_dump(mode="json"), "programs": programs}

    def save_svg(self, programs: list[Program] | torch.Tensor, path: str | Path) -> Path:
        """Write programs (dicts, or actions ``[T, N, K]``) as an SVG of quadratic Béziers."""
        from spiral.envs.paint_cli import programs_to_actions
        from spiral.envs.svg import programs_svg

        actions = programs if isinstance(programs, torch.Tensor) else programs_to_actions(self.env.action_spec, list(programs))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(programs_svg(actions, self.config.env))
        return path


def load_agent(checkpoint: str | Path, *, data_path: str | Path | None = None) -> Agent:
    """The policy of a checkpoint (a ``.pt`` file, or a run's ``checkpoints/`` folder), ready to paint.

    Args:
        data_path: where the dataset is now, if not where the checkpoint's config says.

    Raises:
        FileNotFoundError: no checkpoint there. ValueError: not a SPIRAL checkpoint, or one
            without a policy. ConfigError: its stored config is invalid.
    """
    path = Path(checkpoint)
    payload = load_checkpoint(path)
    raw = payload["config"]
    if data_path is not None:
        raw = {**raw, "data": {**raw["data"], "path": str(data_path)}}
    cfg = load_config_dict(raw, source=f"{path} (stored config)")
    if payload.get("policy") is None:
        raise ValueError(f"checkpoint {path} (written by {payload.get('role', 'an unknown writer')}) holds no policy: use the policy learner's checkpoints/")
    env = _make_env(cfg.env)
    policy = build_policy(cfg, env)
    policy.load_state_dict(payload["policy"])
    policy.eval()
    return Agent(cfg, policy, env, path)


def make_env(config: EnvConfig | TrainConfig | Mapping[str, Any] | None = None, *, seed: int = 0, **settings: Any) -> BatchedEnv:
    """A batched painting (or MuJoCo) environment: ``make_env(renderer="libmypaint")``,
    ``make_env(agent.config)`` or ``make_env({"canvas_size": 32})``; keywords override.

    Raises:
        pydantic.ValidationError: an unknown setting or a bad value (names it).
    """
    if isinstance(config, TrainConfig):
        config = config.env
    base = config.model_dump() if isinstance(config, EnvConfig) else dict(config or {})
    return _make_env(EnvConfig.model_validate({**base, **settings}), seed=seed)


def load_config(source: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A training config from a preset name (``"mnist"``) or a YAML file, with dotted overrides
    (``{"data.path": "datasets/mnist"}``).

    Raises:
        ConfigError: unknown preset, unreadable file or invalid values (names the key).
    """
    from spiral.config import PRESETS, load_config as _load_file, load_preset

    if isinstance(source, str) and source in PRESETS:
        return load_preset(source, dict(overrides or {}))
    return _load_file(source, dict(overrides or {}))

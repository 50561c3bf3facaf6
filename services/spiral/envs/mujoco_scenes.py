"""The MuJoCo Scenes environment: each step places one 3D primitive on a platform (SPIRAL-NOTES §5).

It implements :class:`spiral.envs.base.BatchedEnv`, so the same agent that paints also builds
scenes. The trainer and the actor service create it through ``EnvConfig.renderer = mujoco``.

Action components, in the order of :class:`spiral.envs.spec.Component` (the policy head's decoding
order):

==========  =====================  =====================================================
component   values                 meaning
==========  =====================  =====================================================
flag        2                      0 = place nothing this step, 1 = place an object
size        size_levels            characteristic radius, evenly spaced (dropped if 1 level)
red/green/  color_levels each      linspace(0, 1) per channel
blue
shape       4                      sphere, box, cylinder, capsule
position    position_grid²         a cell of a grid over the platform (spatial)
rotation    rotation_levels        yaw over [0, π/2) (dropped if 1 level)
==========  =====================  =====================================================

A separate ``flag`` (rather than a fifth "none" shape) mirrors the painting environment's
move/paint flag: the policy first decides whether to act, and after "nothing" the action mask
says that only ``flag`` mattered.

The action mask (the *previous* action's mask, SPIRAL-NOTES §1) marks the components that changed
the scene: after a placement all of them except ``rotation`` for rotation-symmetric shapes
(spheres, upright cylinders); after "nothing" only ``flag``.

**Beyond** ``max_objects``: a placement on a full scene is ignored — the canvas stays as it is and
the mask marks only ``flag``, the same as "nothing". The episode length stays fixed (as the
``BatchedEnv`` contract needs), so an agent that places greedily early learns that later
placements are wasted.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import torch

from spiral.config import EnvConfig, MujocoSceneConfig
from spiral.envs.base import Observation
from spiral.envs.mujoco_model import PlacedObject, SceneDescription, SceneObject, SceneRenderer, Shape
from spiral.envs.spec import ActionSpec, Component, ComponentSpec

log = logging.getLogger(__name__)


def mujoco_action_spec(layout: MujocoSceneConfig) -> ActionSpec:
    """The action spec of a layout: components in :class:`Component` order, single-valued ones dropped."""
    sizes: dict[Component, ComponentSpec] = {
        Component.FLAG: ComponentSpec(Component.FLAG, 2),
        Component.SIZE: ComponentSpec(Component.SIZE, layout.size_levels),
        Component.RED: ComponentSpec(Component.RED, layout.color_levels),
        Component.GREEN: ComponentSpec(Component.GREEN, layout.color_levels),
        Component.BLUE: ComponentSpec(Component.BLUE, layout.color_levels),
        Component.SHAPE: ComponentSpec(Component.SHAPE, len(Shape)),
        Component.POSITION: ComponentSpec(Component.POSITION, layout.position_grid**2, grid=layout.position_grid),
        Component.ROTATION: ComponentSpec(Component.ROTATION, layout.rotation_levels),
    }
    # Like the painting environment, a component with one value carries no choice and is dropped.
    kept = [sizes[c] for c in Component if c in sizes and sizes[c].size > 1]
    return ActionSpec(tuple(kept))


def action_to_object(spec: ActionSpec, row: list[int] | tuple[int, ...]) -> SceneObject | None:
    """The object one action row places, or None for "nothing" (``flag`` 0).

    Components the spec dropped take their only value, 0.
    """
    values = dict(zip(spec.names, row, strict=False))
    if values[Component.FLAG.value] == 0:
        return None
    return SceneObject(
        shape=list(Shape)[values[Component.SHAPE.value]],
        position=values[Component.POSITION.value],
        size=values.get(Component.SIZE.value, 0),
        red=values[Component.RED.value],
        green=values[Component.GREEN.value],
        blue=values[Component.BLUE.value],
        rotation=values.get(Component.ROTATION.value, 0),
    )


def object_to_action(spec: ActionSpec, obj: SceneObject | None) -> list[int]:
    """Inverse of :func:`action_to_object`: the action row that places ``obj`` (None → "nothing")."""
    if obj is None:
        return [0] * len(spec)
    values = {
        Component.FLAG.value: 1,
        Component.SIZE.value: obj.size,
        Component.RED.value: obj.red,
        Component.GREEN.value: obj.green,
        Component.BLUE.value: obj.blue,
        Component.SHAPE.value: obj.shape.index,
        Component.POSITION.value: obj.position,
        Component.ROTATION.value: obj.rotation,
    }
    return [values[name] for name in spec.names]


def scenes_from_actions(spec: ActionSpec, layout: MujocoSceneConfig, actions: torch.Tensor) -> list[SceneDescription]:
    """The scene each episode's actions ``[T, N, K]`` build, as :meth:`MujocoScenesEnv.step` would
    (placements beyond ``max_objects`` are ignored)."""
    scenes = []
    for episode in actions.transpose(0, 1).tolist():
        objects: list[SceneObject] = []
        for row in episode:
            obj = action_to_object(spec, row)
            if obj is not None and len(objects) < layout.max_objects:
                objects.append(obj)
        scenes.append(SceneDescription(tuple(objects), layout))
    return scenes


def _to_float(image: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` → ``float32 [3, H, W]`` in [0, 1]."""
    # A true division, as in the dataset loader, so that a perfect reconstruction has MSE exactly 0.
    return image.transpose(2, 0, 1).astype(np.float32) / np.float32(255)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class MujocoScenesEnv:
    """``B`` MuJoCo scenes built in lockstep, rendered to ``canvas_size``² RGB with one reused renderer.

    The batch is rendered one scene after another (one OpenGL context per env); only scenes whose
    content changed are re-rendered. Reads ``cfg.canvas_size``, ``cfg.episode_length``,
    ``cfg.device`` (where observations live; rendering is on the CPU) and ``cfg.mujoco``; the
    painting fields (``color``, ``grid_size``, brushes) do not apply — scenes are always RGB.
    Not thread-safe.
    """

    num_channels = 3

    def __init__(self, cfg: EnvConfig) -> None:
        """
        Raises:
            RuntimeError: no headless OpenGL backend for MuJoCo.
        """
        self.cfg = cfg
        self.layout = cfg.mujoco
        self.canvas_size = cfg.canvas_size
        self.episode_length = cfg.episode_length
        self.device = _resolve_device(cfg.device)
        self.action_spec = mujoco_action_spec(self.layout)
        self._renderer = SceneRenderer(cfg.canvas_size, self.layout)
        # Rendered once: every episode starts from the empty platform.
        self._empty = _to_float(self._renderer.render(SceneDescription((), self.layout)))
        self._objects: list[list[SceneObject]] = []
        # Kept as float [B, 3, H, W] and updated row by row: converting the whole batch from uint8
        # on every step cost more than rendering (torch's threads compete with the GL rasteriser).
        self._canvas = np.zeros((0, 3, cfg.canvas_size, cfg.canvas_size), np.float32)
        self._mask = np.zeros((0, len(self.action_spec)), np.float32)
        self._step = -1  # -1: never reset
        self._rotation_mask = self._component_mask(rotates=True)
        self._fixed_mask = self._component_mask(rotates=False)
        self._flag_mask = np.zeros(len(self.action_spec), np.float32)
        self._flag_mask[self.action_spec.index(Component.FLAG)] = 1.0

    def _component_mask(self, rotates: bool) -> np.ndarray:
        mask = np.ones(len(self.action_spec), np.float32)
        if not rotates and self.action_spec.has(Component.ROTATION):
            mask[self.action_spec.index(Component.ROTATION)] = 0.0
        return mask

    # ------------------------------------------------------------------------ protocol ---

    def reset(self, batch_size: int) -> Observation:
        """Start ``batch_size`` episodes on the empty platform.

        Raises:
            ValueError: ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self._objects = [[] for _ in range(batch_size)]
        self._canvas = np.repeat(self._empty[None], batch_size, axis=0)
        self._mask = np.zeros((batch_size, len(self.action_spec)), np.float32)
        self._step = 0
        return self._observation()

    def step(self, actions: torch.Tensor) -> Observation:
        """Place (or skip) one object per scene; see the module docstring for the conventions.

        Raises:
            ValueError: bad shape/dtype, a component out of range (named, with its valid range), or
                a batch size different from the one given to ``reset``.
            RuntimeError: stepping before ``reset`` or past the episode's end.
        """
        if self._step < 0:
            raise RuntimeError("call reset(batch_size) before step(actions)")
        if self._step >= self.episode_length - 1:
            raise RuntimeError(
                f"the episode has ended: episode_length={self.episode_length} allows "
                f"{self.episode_length - 1} actions after reset; call reset"
            )
        self.action_spec.validate(actions)
        if actions.shape[0] != len(self._objects):
            raise ValueError(
                f"actions have batch size {actions.shape[0]}, but reset started {len(self._objects)} episodes"
            )
        for b, row in enumerate(actions.cpu().tolist()):
            obj = action_to_object(self.action_spec, row)
            if obj is None or len(self._objects[b]) >= self.layout.max_objects:
                self._mask[b] = self._flag_mask
                continue
            self._objects[b].append(obj)
            self._canvas[b] = _to_float(self._renderer.render(SceneDescription(tuple(self._objects[b]), self.layout)))
            self._mask[b] = self._rotation_mask if obj.shape.rotates else self._fixed_mask
        self._step += 1
        return self._observation()

    def preview(self, candidates: torch.Tensor) -> torch.Tensor:
        """float32 ``[B, K, 3, H, W]``: the scene each of ``K`` candidate placements per episode
        would render, from the current scenes; nothing changes (search ranks, :meth:`step` commits).

        One render per candidate that places an object (~1 ms each at 64×64); a "nothing" or a
        placement on a full scene previews the current canvas.

        Raises:
            ValueError: ``candidates`` is not ``[B, K, A]`` for this batch, or a component is out of range.
            RuntimeError: before ``reset`` or past the episode's end.
        """
        if self._step < 0 or self._step >= self.episode_length - 1:
            raise RuntimeError("preview() needs an episode in progress: call reset(batch_size) first")
        batch = len(self._objects)
        if candidates.dim() != 3 or candidates.shape[0] != batch or candidates.shape[2] != len(self.action_spec):
            raise ValueError(f"candidates must have shape [B={batch}, K, A={len(self.action_spec)}], got {list(candidates.shape)}")
        k = candidates.shape[1]
        self.action_spec.validate(candidates.reshape(batch * k, -1))
        out = np.repeat(self._canvas[:, None], k, axis=1)
        for b, rows in enumerate(candidates.cpu().tolist()):
            for j, row in enumerate(rows):
                obj = action_to_object(self.action_spec, row)
                if obj is None or len(self._objects[b]) >= self.layout.max_objects:
                    continue
                scene = SceneDescription(tuple(self._objects[b]) + (obj,), self.layout)
                out[b, j] = _to_float(self._renderer.render(scene))
        return torch.from_numpy(out).to(self.device)

    # ---------------------------------------------------------------------- accessors ---

    @property
    def canvas(self) -> torch.Tensor:
        """float32 ``[B, 3, H, W]`` in [0, 1] on ``device`` (a fresh tensor)."""
        return torch.from_numpy(self._canvas.copy()).to(self.device)

    @property
    def scenes(self) -> tuple[SceneDescription, ...]:
        """The scene each episode has built so far, for scoring against a dataset's JSON."""
        return tuple(SceneDescription(tuple(objs), self.layout) for objs in self._objects)

    def render_scene(self, scene: SceneDescription) -> torch.Tensor:
        """Render any scene of this env's layout: float32 ``[3, H, W]`` in [0, 1] on ``device``.

        Raises:
            ValueError: too many objects or an index outside the layout.
        """
        return torch.from_numpy(_to_float(self._renderer.render(scene))).to(self.device)

    def close(self) -> None:
        """Release the OpenGL context."""
        self._renderer.close()

    def _observation(self) -> Observation:
        batch = len(self._objects)
        return Observation(
            canvas=self.canvas,
            step=torch.full((batch,), self._step, dtype=torch.long, device=self.device),
            episode_length=torch.full((batch,), self.episode_length, dtype=torch.long, device=self.device),
            action_mask=torch.from_numpy(self._mask.copy()).to(self.device),
        )


# ------------------------------------------------------------------------------- scoring ---


class SceneScore(NamedTuple):
    """How well a predicted scene matches the ground truth, object by object.

    Objects match when they have the same shape and their centres lie within ``match_distance``
    (world units; the platform spans [−1, 1]²). Errors are means over matched pairs (NaN if none).
    """

    precision: float  # matched / predicted (1.0 when nothing was predicted and nothing was there)
    recall: float  # matched / true
    f1: float
    num_matched: int
    num_predicted: int
    num_true: int
    position_error: float  # mean centre distance, world units
    size_error: float  # mean |radius difference|, world units
    color_error: float  # mean absolute RGB difference per channel, in [0, 1]
    rotation_error: float  # mean yaw difference in radians, over matched pairs of rotating shapes


#: Default match radius: a bit over one cell of the default 8×8 grid (0.25), so a placement one
#: cell off still counts while a neighbour two cells away does not.
DEFAULT_MATCH_DISTANCE = 0.3
_UNMATCHABLE = 1e6


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Rows-to-columns assignment of minimum total cost (Hungarian method, O(n³)).

    ``cost`` is ``[R, C]``; returns ``min(R, C)`` pairs ``(row, col)``.
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return []
    transposed = rows > cols
    a = cost.T if transposed else cost
    n, m = a.shape  # n ≤ m
    # Potentials u (rows), v (columns) and the column → row matching p, 1-based with a dummy 0.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=int)
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = np.inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = a[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:  # augment along the alternating path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


def score_scene(
    predicted: SceneDescription, truth: SceneDescription, match_distance: float = DEFAULT_MATCH_DISTANCE
) -> SceneScore:
    """Score a reconstruction against the ground-truth scene by optimal object matching.

    Scenes may use different layouts: matching works on world coordinates. The assignment first
    maximises the number of matches, then minimises the summed centre distance.

    Raises:
        ValueError: ``match_distance`` ≤ 0.
    """
    if match_distance <= 0:
        raise ValueError(f"match_distance must be > 0 (world units), got {match_distance}")
    pred, true = predicted.placed(), truth.placed()
    cost = np.full((len(pred), len(true)), _UNMATCHABLE)
    for i, p in enumerate(pred):
        for j, t in enumerate(true):
            distance = math.hypot(p.x - t.x, p.y - t.y)
            if p.shape is t.shape and distance <= match_distance:
                cost[i, j] = distance
    # Every unmatchable pair costs more than all possible matchable ones together, so the optimum
    # has the most matches first.
    pairs = [(i, j) for i, j in min_cost_assignment(cost) if cost[i, j] < _UNMATCHABLE]
    matched = len(pairs)
    precision = matched / len(pred) if pred else (1.0 if not true else 0.0)
    recall = matched / len(true) if true else (1.0 if not pred else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    rotating = [(pred[i], true[j]) for i, j in pairs if pred[i].shape.rotates]
    return SceneScore(
        precision=precision,
        recall=recall,
        f1=f1,
        num_matched=matched,
        num_predicted=len(pred),
        num_true=len(true),
        position_error=mean([float(cost[i, j]) for i, j in pairs]),
        size_error=mean([abs(pred[i].radius - true[j].radius) for i, j in pairs]),
        color_error=mean([float(np.mean(np.abs(np.subtract(pred[i].rgb, true[j].rgb)))) for i, j in pairs]),
        rotation_error=mean([_yaw_difference(p, t) for p, t in rotating]),
    )


def _yaw_difference(a: PlacedObject, b: PlacedObject) -> float:
    # Boxes repeat every quarter turn, lying capsules every half turn.
    period = math.pi / 2 if a.shape is Shape.BOX else math.pi
    d = abs(a.yaw - b.yaw) % period
    return min(d, period - d)



def pixel_mse(canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image: ``[B, C, H, W]`` × 2 → ``[B]`` (or ``[C, H, W]`` → scalar).

    Raises:
        ValueError: the shapes differ.
    """
    if canvas.shape != target.shape:
        raise ValueError(f"canvas shape {list(canvas.shape)} differs from target shape {list(target.shape)}")
    squared = (canvas.float() - target.float()).pow(2)
    if squared.dim() == 3:
        return squared.mean()
    return squared.flatten(1).mean(dim=1)

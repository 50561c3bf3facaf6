"""Random programs for pretraining: a prior over what an agent might paint (or place).

Pretraining (:mod:`spiral.learning.pretrain`) renders these programs with the run's own
environment and teaches the policy to predict each action from the canvas so far and the final
image — so the prior only has to produce *plausible* programs, not any dataset's images.

* Painting (``fast``/``libmypaint``): the first action moves to a random start; every later action
  continues the current stroke with a segment of random length and a direction that turns a
  little (a curve of a few segments, bent by the control point), or lifts and moves to a new random
  start. Two moves never follow each other (a move's ink is nothing; two in a row teach nothing),
  the last action paints, and some episodes stop painting from a random step on: their remaining
  actions move to where the brush already is, so "nothing left to paint" has one clear answer.
  Size, pressure and colour, where the action space has them, are uniform per stroke.
* MuJoCo Scenes: a uniformly random scene (:func:`spiral.envs.mujoco_model.random_scene`) placed
  object by object, then "nothing" for the remaining steps.

Pure functions of a ``torch.Generator``; ``[T, B, K]`` int64 actions in ``ActionSpec`` column order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from spiral.config import EnvConfig, ProgramPriorConfig, Renderer
from spiral.envs.painting_spec import FLAG_MOVE, FLAG_PAINT
from spiral.envs.spec import ActionSpec, Component

#: Components whose value is fixed for a whole continuous stroke (drawn when it starts).
_PER_STROKE = (Component.SIZE, Component.PRESSURE, Component.RED, Component.GREEN, Component.BLUE)


def synthetic_programs(spec: ActionSpec, env: EnvConfig, prior: ProgramPriorConfig, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` random programs of one episode each: int64 ``[T, B, K]``, T = episode_length − 1.

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if env.renderer == Renderer.MUJOCO:
        return _scene_programs(spec, env, batch_size, generator)
    return _stroke_programs(spec, env, prior, batch_size, generator)


def _uniform(size: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, size, (batch,), generator=generator)


def _stroke_programs(spec: ActionSpec, env: EnvConfig, prior: ProgramPriorConfig, batch: int, gen: torch.Generator) -> torch.Tensor:
    steps, grid = env.episode_length - 1, env.grid_size
    top = float(grid - 1)
    actions = torch.zeros(steps, batch, len(spec), dtype=torch.long)
    flag, end, control = spec.index(Component.FLAG), spec.index(Component.END), spec.index(Component.CONTROL)
    per_stroke = [(spec.index(c), spec.components[spec.index(c)].size) for c in _PER_STROKE if spec.has(c)]

    # An episode with an idle tail stops painting at a random step in [2, T).
    idle_from = torch.full((batch,), steps, dtype=torch.long)
    tail = torch.rand(batch, generator=gen) < prior.idle_tail_probability
    if steps > 2 and bool(tail.any()):
        idle_from[tail] = torch.randint(2, steps, (int(tail.sum()),), generator=gen)

    position = torch.zeros(batch, 2)  # (y, x) in grid cells
    heading = torch.zeros(batch)
    previous_move = torch.zeros(batch, dtype=torch.bool)
    appearance = torch.zeros(batch, len(spec), dtype=torch.long)

    def cells(points: torch.Tensor) -> torch.Tensor:
        q = points.round().clamp(0, top).long()
        return q[:, 0] * grid + q[:, 1]

    for t in range(steps):
        idle = idle_from <= t
        if t == 0:
            new_stroke = torch.ones(batch, dtype=torch.bool)
        elif t == steps - 1:
            new_stroke = torch.zeros(batch, dtype=torch.bool)  # the last action paints
        else:
            new_stroke = ~previous_move & (torch.rand(batch, generator=gen) < prior.new_stroke_probability)
        move = new_stroke | idle

        # A paint step: a segment from the brush, turning from the previous heading, reflected at
        # the borders so strokes stay whole on the canvas.
        length = grid * (prior.min_segment + torch.rand(batch, generator=gen) * (prior.max_segment - prior.min_segment))
        fresh = previous_move | (t == 0)
        turn = torch.randn(batch, generator=gen) * prior.turn_radians
        heading = torch.where(fresh, torch.rand(batch, generator=gen) * 2 * math.pi, heading + turn)
        stop = position + torch.stack((torch.sin(heading), torch.cos(heading)), dim=1) * length[:, None]
        stop = torch.where(stop < 0, -stop, stop)
        stop = torch.where(stop > top, 2 * top - stop, stop).clamp(0.0, top)
        heading = torch.atan2(stop[:, 0] - position[:, 0], stop[:, 1] - position[:, 1])
        chord = stop - position
        normal = torch.stack((-chord[:, 1], chord[:, 0]), dim=1)
        offset = (torch.rand(batch, 1, generator=gen) * 2 - 1) * prior.bend
        bend_point = (0.5 * (position + stop) + normal * offset).clamp(0.0, top)

        start = torch.rand(batch, 2, generator=gen) * top
        destination = torch.where(idle[:, None], position, torch.where(move[:, None], start, stop))
        actions[t, :, flag] = torch.where(move, FLAG_MOVE, FLAG_PAINT)
        actions[t, :, end] = cells(destination)
        # A move's control point changes nothing; the destination keeps the label deterministic.
        actions[t, :, control] = torch.where(move, cells(destination), cells(bend_point))
        for column, size in per_stroke:
            appearance[:, column] = torch.where(fresh, _uniform(size, batch, gen), appearance[:, column])
            actions[t, :, column] = appearance[:, column]
        position = destination.round().clamp(0.0, top)  # the brush lands on the grid
        previous_move = move
    return actions


def _scene_programs(spec: ActionSpec, env: EnvConfig, batch: int, gen: torch.Generator) -> torch.Tensor:
    from spiral.envs.mujoco_model import random_scene
    from spiral.envs.mujoco_scenes import object_to_action

    steps = env.episode_length - 1
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    nothing = object_to_action(spec, None)
    rows = []
    for _ in range(batch):
        scene = random_scene(rng, env.mujoco, min_objects=1, max_objects=min(env.mujoco.max_objects, steps))
        program = [object_to_action(spec, obj) for obj in scene.objects]
        rows.append(program + [nothing] * (steps - len(program)))
    return torch.tensor(rows, dtype=torch.long).transpose(0, 1).contiguous()

"""MuJoCo Scenes environment: action spec, placement, masks, limits, errors, determinism (real MuJoCo)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spiral.config import EnvConfig, MujocoSceneConfig, Renderer
from spiral.envs.mujoco_model import (
    SceneDescription,
    SceneObject,
    Shape,
    place_object,
    project_to_pixel,
)
from spiral.envs.mujoco_scenes import MujocoScenesEnv, action_to_object, mujoco_action_spec, object_to_action
from spiral.envs.spec import Component


def make_cfg(**mujoco: object) -> EnvConfig:
    return EnvConfig(renderer=Renderer.MUJOCO, episode_length=8, mujoco=MujocoSceneConfig(**mujoco))


@pytest.fixture(scope="module")
def env() -> MujocoScenesEnv:
    environment = MujocoScenesEnv(make_cfg())
    yield environment
    environment.close()


def place(env: MujocoScenesEnv, objects: list[SceneObject | None]) -> torch.Tensor:
    """One action row per batch entry."""
    return torch.tensor([object_to_action(env.action_spec, o) for o in objects], dtype=torch.long)


MAX_LEVEL = 3  # default colour/size levels: 4 colours, 3 sizes


# ----------------------------------------------------------------------------- the spec ---


def test_action_spec_follows_component_order_with_spatial_position():
    spec = mujoco_action_spec(MujocoSceneConfig())
    assert spec.names == ("flag", "size", "red", "green", "blue", "shape", "position", "rotation")
    assert spec.sizes == (2, 3, 4, 4, 4, 4, 64, 4)
    order = [list(Component).index(c.name) for c in spec.components]
    assert order == sorted(order)
    position = spec.components[spec.index(Component.POSITION)]
    assert position.spatial and position.grid == 8


def test_single_level_components_are_dropped():
    spec = mujoco_action_spec(MujocoSceneConfig(size_levels=1, rotation_levels=1, position_grid=4))
    assert spec.names == ("flag", "red", "green", "blue", "shape", "position")
    obj = action_to_object(spec, [1, 2, 0, 1, 3, 15])
    assert obj == SceneObject(Shape.CAPSULE, 15, 0, 2, 0, 1, 0)


def test_action_rows_round_trip_through_objects(env):
    obj = SceneObject(Shape.BOX, 37, 1, 3, 0, 2, 3)
    row = object_to_action(env.action_spec, obj)
    assert action_to_object(env.action_spec, row) == obj
    assert action_to_object(env.action_spec, object_to_action(env.action_spec, None)) is None


# ----------------------------------------------------------------------- reset and step ---


def test_reset_shows_the_empty_platform(env):
    obs = env.reset(3)
    assert obs.canvas.shape == (3, 3, 64, 64) and obs.canvas.dtype == torch.float32
    assert float(obs.canvas.min()) >= 0.0 and float(obs.canvas.max()) <= 1.0
    assert torch.equal(obs.step, torch.zeros(3, dtype=torch.long))
    assert torch.equal(obs.episode_length, torch.full((3,), 8))
    assert float(obs.action_mask.abs().sum()) == 0.0
    assert torch.equal(obs.canvas[0], obs.canvas[2])
    # The platform (light grey) fills the centre; the sky above it is dark.
    centre = obs.canvas[0, :, 32, 32]
    assert float(centre.min()) > 0.5 and float(centre.max() - centre.min()) < 0.1
    assert float(obs.canvas[0, :, 0, 32].max()) < 0.3


@pytest.mark.parametrize(
    ("obj", "channel"),
    [
        (SceneObject(Shape.SPHERE, 27, 2, MAX_LEVEL, 0, 0, 0), 0),
        (SceneObject(Shape.BOX, 9, 2, 0, MAX_LEVEL, 0, 1), 1),
        (SceneObject(Shape.CYLINDER, 52, 2, 0, 0, MAX_LEVEL, 0), 2),
        (SceneObject(Shape.CAPSULE, 44, 2, MAX_LEVEL, 0, 0, 2), 0),
    ],
    ids=["red-sphere-centre", "green-box-far-left", "blue-cylinder-near", "red-capsule"],
)
def test_placed_object_colour_lands_where_projected(env, obj, channel):
    empty = env.reset(1).canvas[0]
    canvas = env.step(place(env, [obj])).canvas[0]
    changed = (canvas - empty).abs().amax(dim=0) > 0.05
    assert int(changed.sum()) > 10, "the object must cover some pixels"
    # The changed pixels gather around the projection of the object's centre.
    placed = place_object(obj, env.layout)
    row, col = project_to_pixel((placed.x, placed.y, placed.z), 64)
    rows, cols = changed.nonzero(as_tuple=True)
    assert abs(float(rows.float().mean()) - row) < 3.0 and abs(float(cols.float().mean()) - col) < 3.0
    assert float((rows.float() - row).abs().max()) < 12 and float((cols.float() - col).abs().max()) < 12
    # Its colour dominates at the centre.
    pixel = canvas[:, int(round(row)), int(round(col))]
    others = [c for c in range(3) if c != channel]
    assert float(pixel[channel]) > 0.6 and float(pixel[others].max()) < 0.25, pixel


def test_nothing_leaves_canvas_unchanged_and_masks_only_flag(env):
    env.reset(2)
    first = env.step(place(env, [SceneObject(Shape.BOX, 20, 1, 1, 2, 3, 1), None])).canvas
    obs = env.step(place(env, [None, None]))
    assert torch.equal(obs.canvas, first)
    expected = torch.zeros(len(env.action_spec))
    expected[env.action_spec.index(Component.FLAG)] = 1.0
    assert torch.equal(obs.action_mask[0], expected) and torch.equal(obs.action_mask[1], expected)
    assert len(env.scenes[0].objects) == 1 and env.scenes[1].objects == ()


def test_mask_drops_rotation_for_symmetric_shapes(env):
    env.reset(4)
    objs = [SceneObject(s, 10 + k, 0, 1, 1, 1, 2) for k, s in enumerate(Shape)]
    mask = env.step(place(env, objs)).action_mask
    rotation = env.action_spec.index(Component.ROTATION)
    assert mask[:, rotation].tolist() == [0.0, 1.0, 0.0, 1.0]  # sphere, box, cylinder, capsule
    others = [k for k in range(len(env.action_spec)) if k != rotation]
    assert bool((mask[:, others] == 1.0).all())


def test_rotation_changes_a_box_but_not_a_sphere(env):
    env.reset(4)
    objs = [
        SceneObject(Shape.BOX, 27, 2, 3, 1, 0, 0),
        SceneObject(Shape.BOX, 27, 2, 3, 1, 0, 2),
        SceneObject(Shape.SPHERE, 27, 2, 3, 1, 0, 0),
        SceneObject(Shape.SPHERE, 27, 2, 3, 1, 0, 2),
    ]
    canvas = env.step(place(env, objs)).canvas
    assert not torch.equal(canvas[0], canvas[1])
    assert torch.equal(canvas[2], canvas[3])


def test_batch_rows_are_independent(env):
    env.reset(2)
    obj = SceneObject(Shape.SPHERE, 30, 1, 0, 3, 3, 0)
    env.step(place(env, [obj, None]))
    obs = env.step(place(env, [None, obj]))
    assert torch.equal(obs.canvas[0], obs.canvas[1])
    assert env.scenes[0].objects == env.scenes[1].objects == (obj,)


def test_placements_beyond_max_objects_are_ignored():
    env = MujocoScenesEnv(make_cfg(max_objects=2))
    try:
        env.reset(1)
        env.step(place(env, [SceneObject(Shape.SPHERE, 9, 1, 3, 0, 0, 0)]))
        full = env.step(place(env, [SceneObject(Shape.BOX, 18, 1, 0, 3, 0, 0)])).canvas
        obs = env.step(place(env, [SceneObject(Shape.CYLINDER, 45, 2, 0, 0, 3, 0)]))
        assert torch.equal(obs.canvas, full)
        assert [o.shape for o in env.scenes[0].objects] == [Shape.SPHERE, Shape.BOX]
        assert float(obs.action_mask.sum()) == 1.0  # only flag mattered
    finally:
        env.close()


def test_same_actions_give_identical_canvases_across_envs(env):
    rng = np.random.default_rng(7)
    actions = [
        torch.stack([torch.tensor([int(rng.integers(s)) for s in env.action_spec.sizes]) for _ in range(3)])
        for _ in range(4)
    ]
    env.reset(3)
    for a in actions:
        first = env.step(a).canvas
    other = MujocoScenesEnv(make_cfg())
    try:
        other.reset(3)
        for a in actions:
            second = other.step(a).canvas
        assert torch.equal(first, second)
        # The stepped canvas is the render of the scene the env reports.
        for b, scene in enumerate(env.scenes):
            assert torch.equal(other.render_scene(scene), first[b])
    finally:
        other.close()


def test_scene_description_json_round_trip(env):
    env.reset(1)
    env.step(place(env, [SceneObject(Shape.CAPSULE, 5, 2, 1, 2, 3, 3)]))
    scene = env.scenes[0]
    data = scene.to_json()
    assert SceneDescription.from_json(data) == scene
    item = data["objects"][0]
    assert item["shape"] == "capsule" and item["action"]["position"] == 5
    assert item["rgb"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert item["yaw_radians"] == pytest.approx(3 * np.pi / 8)


# -------------------------------------------------------------------------------- errors ---


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("position", 64, r"'position' of batch row 0 is 64; valid range is 0\.\.63"),
        ("shape", 4, r"'shape' of batch row 0 is 4; valid range is 0\.\.3"),
        ("red", -1, r"'red' of batch row 0 is -1; valid range is 0\.\.3"),
        ("flag", 2, r"'flag' of batch row 0 is 2; valid range is 0\.\.1"),
    ],
    ids=["position", "shape", "red", "flag"],
)
def test_out_of_range_component_names_it_and_its_range(env, column, value, message):
    env.reset(1)
    actions = place(env, [SceneObject(Shape.BOX, 0, 0, 0, 0, 0, 0)])
    actions[0, env.action_spec.index(column)] = value
    with pytest.raises(ValueError, match=message):
        env.step(actions)


def test_bad_shapes_and_order_of_calls_raise_clearly():
    env = MujocoScenesEnv(make_cfg())
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.step(torch.zeros(1, len(env.action_spec), dtype=torch.long))
        env.reset(2)
        with pytest.raises(ValueError, match=r"shape \[B, 8\] with columns \['flag', 'size'"):
            env.step(torch.zeros(2, 3, dtype=torch.long))
        with pytest.raises(ValueError, match="batch size 1, but reset started 2"):
            env.step(torch.zeros(1, len(env.action_spec), dtype=torch.long))
        with pytest.raises(ValueError, match="integer tensor"):
            env.step(torch.zeros(2, len(env.action_spec)))
        with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):
            env.reset(0)
        for _ in range(7):  # episode_length 8 → 7 actions
            env.step(torch.zeros(2, len(env.action_spec), dtype=torch.long))
        with pytest.raises(RuntimeError, match="episode has ended: episode_length=8 allows 7 actions"):
            env.step(torch.zeros(2, len(env.action_spec), dtype=torch.long))
    finally:
        env.close()


def test_renderer_rejects_scene_outside_its_layout(env):
    with pytest.raises(ValueError, match=r"scene object 0: position is 100; valid range is 0\.\.63"):
        env.render_scene(SceneDescription((SceneObject(Shape.BOX, 100, 0, 0, 0, 0, 0),), env.layout))
    too_many = tuple(SceneObject(Shape.BOX, k, 0, 0, 0, 0, 0) for k in range(6))
    with pytest.raises(ValueError, match="6 objects; this renderer holds at most max_objects=5"):
        env.render_scene(SceneDescription(too_many, env.layout))

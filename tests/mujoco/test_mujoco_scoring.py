"""Scoring reconstructions against MuJoCo scenes: object matching, the assignment solver, pixel MSE."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.config import MujocoSceneConfig
from spiral.envs.mujoco_model import SceneDescription, SceneObject, Shape, random_scene, select_gl_backend
from spiral.envs.mujoco_scenes import min_cost_assignment, pixel_mse, score_scene

LAYOUT = MujocoSceneConfig()


def scene(*objects: SceneObject, layout: MujocoSceneConfig = LAYOUT) -> SceneDescription:
    return SceneDescription(tuple(objects), layout)


TRUTH = scene(
    SceneObject(Shape.SPHERE, 9, 1, 3, 0, 0, 0),
    SceneObject(Shape.BOX, 30, 2, 0, 3, 0, 1),
    SceneObject(Shape.CAPSULE, 52, 0, 0, 0, 3, 2),
)


def test_identical_scenes_score_perfectly():
    s = score_scene(TRUTH, TRUTH)
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert (s.num_matched, s.num_predicted, s.num_true) == (3, 3, 3)
    assert s.position_error == 0.0 and s.size_error == 0.0 and s.color_error == 0.0 and s.rotation_error == 0.0


def test_placement_order_does_not_matter():
    reordered = scene(*reversed(TRUTH.objects))
    assert score_scene(reordered, TRUTH).f1 == 1.0


def test_wrong_shape_is_not_a_match():
    wrong = scene(TRUTH.objects[0]._replace(shape=Shape.CYLINDER), *TRUTH.objects[1:])
    s = score_scene(wrong, TRUTH)
    assert s.num_matched == 2 and s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)


def test_one_cell_off_matches_with_position_error_two_cells_off_does_not():
    one_off = scene(TRUTH.objects[0]._replace(position=10), *TRUTH.objects[1:])
    s = score_scene(one_off, TRUTH)
    assert s.num_matched == 3
    assert s.position_error == pytest.approx(0.25 / 3)  # one of three pairs is one 0.25 cell away
    two_off = scene(TRUTH.objects[0]._replace(position=11), *TRUTH.objects[1:])
    assert score_scene(two_off, TRUTH).num_matched == 2


def test_missing_and_extra_objects_lower_recall_and_precision():
    partial = scene(*TRUTH.objects[:1])
    s = score_scene(partial, TRUTH)
    assert (s.precision, s.recall) == (1.0, pytest.approx(1 / 3))
    extra = scene(*TRUTH.objects, SceneObject(Shape.BOX, 0, 0, 0, 0, 0, 0))
    s = score_scene(extra, TRUTH)
    assert (s.precision, s.recall) == (0.75, 1.0)
    empty = score_scene(scene(), TRUTH)
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0) and math.isnan(empty.position_error)
    assert score_scene(scene(), scene()).f1 == 1.0


def test_attribute_errors_measure_the_difference():
    recoloured = scene(TRUTH.objects[0]._replace(red=0, size=2))
    s = score_scene(recoloured, scene(TRUTH.objects[0]))
    assert s.color_error == pytest.approx(1 / 3)  # red 1 → 0 over three channels
    assert s.size_error == pytest.approx(0.045)  # size level 1 → 2 of linspace(0.09, 0.18, 3)
    rotated = scene(TRUTH.objects[1]._replace(rotation=3))
    assert score_scene(rotated, scene(TRUTH.objects[1])).rotation_error == pytest.approx(math.pi / 4)


def test_matching_works_across_layouts():
    fine = MujocoSceneConfig(position_grid=16)
    # Cell (row 2, col 2) of a 16×16 grid lies 1/16 off cell 9 (row 1, col 1) of the 8×8 grid on each axis.
    other = scene(SceneObject(Shape.SPHERE, 16 * 2 + 2, 0, 3, 0, 0, 0), layout=fine)
    s = score_scene(other, scene(TRUTH.objects[0]))
    assert s.num_matched == 1 and s.position_error == pytest.approx(math.hypot(0.0625, 0.0625))


def test_match_distance_must_be_positive():
    with pytest.raises(ValueError, match="match_distance must be > 0 .world units., got 0"):
        score_scene(TRUTH, TRUTH, match_distance=0)


def _brute_force_cost(cost: np.ndarray) -> float:
    rows, cols = cost.shape
    if rows <= cols:
        return min(sum(cost[i, p[i]] for i in range(rows)) for p in itertools.permutations(range(cols), rows))
    return _brute_force_cost(cost.T)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 5), cols=st.integers(0, 5), seed=st.integers(0, 2**31))
def test_assignment_is_optimal_against_brute_force(rows, cols, seed):
    cost = np.random.default_rng(seed).integers(0, 20, size=(rows, cols)).astype(float)
    pairs = min_cost_assignment(cost)
    assert len(pairs) == min(rows, cols)
    assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
    if pairs:
        assert sum(cost[i, j] for i, j in pairs) == pytest.approx(_brute_force_cost(cost))


@settings(max_examples=40, deadline=None)
@given(seed_a=st.integers(0, 2**31), seed_b=st.integers(0, 2**31))
def test_score_is_perfect_on_itself_and_swaps_precision_with_recall(seed_a, seed_b):
    a = random_scene(np.random.default_rng(seed_a), LAYOUT, min_objects=0)
    b = random_scene(np.random.default_rng(seed_b), LAYOUT, min_objects=0)
    assert score_scene(a, a).f1 == 1.0
    ab, ba = score_scene(a, b), score_scene(b, a)
    assert ab.precision == pytest.approx(ba.recall) and ab.recall == pytest.approx(ba.precision)
    assert ab.num_matched == ba.num_matched <= min(len(a.objects), len(b.objects))


def test_pixel_mse_per_image():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[1] = 0.5
    assert pixel_mse(a, b).tolist() == [0.0, 0.25]
    assert float(pixel_mse(a[0], b[0])) == 0.0
    with pytest.raises(ValueError, match=r"canvas shape \[2, 3, 4, 4\] differs from target shape \[2, 3, 4, 3\]"):
        pixel_mse(a, b[..., :3])


def test_user_gl_backend_is_kept(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert select_gl_backend() == "osmesa"


def test_gl_probe_rejects_a_backend_that_cannot_open_a_context():
    from spiral.envs.mujoco_model import _probe_backend

    assert _probe_backend("no-such-backend") is False


def test_choosing_a_backend_after_mujoco_was_imported_is_an_error(monkeypatch):
    import sys
    import types

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setitem(sys.modules, "mujoco", sys.modules.get("mujoco") or types.ModuleType("mujoco"))
    with pytest.raises(RuntimeError, match=r"set MUJOCO_GL to one of \['egl', 'osmesa'\] before importing mujoco"):
        select_gl_backend()

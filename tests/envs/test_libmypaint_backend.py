"""The real libmypaint through ctypes: brushes, surface clearing, tiles, seeds, the batch loop."""

from __future__ import annotations

import pytest
import torch

from spiral.config import EnvConfig
from spiral.envs import libmypaint_backend as lmp
from spiral.envs.libmypaint_backend import BrushNotFoundError, LibMyPaintEnv, MyPaintCanvas, available_brushes, brushes_dir, load_libmypaint, read_brush
from spiral.envs.painting_spec import random_actions
from spiral.envs.strokes import interpolate_pressure, quadratic_bezier


def test_brushes_folder_holds_the_default_brush():
    folder = brushes_dir()
    assert (folder / "classic" / "dry_brush.myb").is_file()
    assert "classic/dry_brush" in available_brushes()
    assert '"radius_logarithmic"' in read_brush("classic/dry_brush")


def test_brushes_folder_falls_back_without_pkg_config(monkeypatch):
    brushes_dir.cache_clear()
    monkeypatch.setattr(lmp.shutil, "which", lambda name: None)
    try:
        assert brushes_dir() == lmp.DEFAULT_BRUSHES_DIR
    finally:
        brushes_dir.cache_clear()


def test_missing_brush_names_the_folder_and_the_available_brushes():
    with pytest.raises(BrushNotFoundError) as info:
        LibMyPaintEnv(EnvConfig(renderer="libmypaint", brush="classic/no_such_brush"))
    message = str(info.value)
    assert "env.brush 'classic/no_such_brush'" in message
    assert str(brushes_dir()) in message
    assert "classic/dry_brush" in message
    assert isinstance(info.value, ValueError)


def test_fresh_surface_is_cleared_not_0xffff():
    canvas = MyPaintCanvas(load_libmypaint(), 64, read_brush("classic/dry_brush"))
    try:
        assert not canvas.read().any()
    finally:
        canvas.close()


def test_canvas_paints_premultiplied_colour_and_clear_erases():
    canvas = MyPaintCanvas(load_libmypaint(), 64, read_brush("classic/pen"))
    try:
        start, end = torch.tensor([[32.0, 10.0]]), torch.tensor([[32.0, 54.0]])
        canvas.move_to(32.0, 10.0)
        points = quadratic_bezier(start, (start + end) / 2, end, 51)[0].numpy()
        canvas.paint(points, interpolate_pressure(torch.ones(1), torch.ones(1), 51)[0].numpy(), 3.0, (1.0, 0.5, 0.0))
        rgba = canvas.read()
        inked = rgba[..., 3] > 0.9
        assert inked.sum() > 100 and inked[30:35, 15:50].all()
        assert abs(float(rgba[32, 32, 1] / rgba[32, 32, 0]) - 0.5) < 0.02 and rgba[32, 32, 2] == 0.0
        assert rgba[:, :, :3].max() <= rgba[..., 3].max() + 1e-6  # premultiplied
        canvas.clear()
        assert not canvas.read().any()
    finally:
        canvas.close()


def _render(env, programme, batch):
    env.reset(batch)
    for actions in programme:
        obs = env.step(actions)
    return obs.canvas


def test_seed_changes_brush_noise_and_fixes_it():
    cfg = EnvConfig(renderer="libmypaint", brush_sizes=(3.0,))
    generator = torch.Generator().manual_seed(0)
    programme = [random_actions(LibMyPaintEnv(cfg).action_spec, 2, generator, paint_only=True) for _ in range(3)]
    a = _render(LibMyPaintEnv(cfg, seed=1), programme, 2)
    b = _render(LibMyPaintEnv(cfg, seed=1), programme, 2)
    c = _render(LibMyPaintEnv(cfg, seed=2), programme, 2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Rows of one batch draw different noise even for the same programme.
    same = [programme[0][:1].repeat(2, 1)]
    twins = _render(LibMyPaintEnv(cfg, seed=1), same, 2)
    assert not torch.equal(twins[0], twins[1])
    assert abs(twins[0].sum() - twins[1].sum()) < 0.2 * twins[0].sum()


def test_reset_reuses_canvases_and_clears_them():
    env = LibMyPaintEnv(EnvConfig(renderer="libmypaint"))
    env.reset(2)
    env.step(torch.tensor([[1, 500, 300, 3, 9]] * 2))
    first = env._canvases
    obs = env.reset(2)
    assert env._canvases is first and not obs.canvas.any()
    env.reset(3)
    assert len(env._canvases) == 3
    env.close()

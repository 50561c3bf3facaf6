"""The fast renderer's maths and batching: ink conservation against the brush model's formula,
batch independence, determinism, devices."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.config import ColorMode, EnvConfig
from spiral.envs import fast_backend
from spiral.envs.fast_backend import DRY_BRUSH, FastPaintEnv, resolve_device, samples_per_stroke, stroke_alpha, stroke_density
from spiral.envs.painting_spec import random_actions


def _straight(length: float, radius: float, pressure: float):
    start = torch.tensor([[32.0, 32.0 - length / 2]])
    end = torch.tensor([[32.0, 32.0 + length / 2]])
    return start, (start + end) / 2, end, torch.tensor([pressure]), torch.tensor([pressure]), torch.tensor([radius])


@pytest.mark.parametrize(("length", "radius", "pressure"), [(30.0, 2.0, 0.5), (20.0, 1.0, 0.1), (24.0, 4.0, 1.0), (10.0, 3.0, 0.3)])
def test_total_ink_matches_the_dab_model(length, radius, pressure):
    """Σ density = dabs/px × length × opacity × dab mass: (12/r) · L · o(p) · 0.2π r² (r with radius_gain)."""
    density = stroke_density(*_straight(length, radius, pressure), canvas_size=64)
    r = radius * DRY_BRUSH.radius_gain
    opacity = (0.8 + 0.2 * pressure) * pressure
    expected = DRY_BRUSH.dabs_per_radius / r * length * opacity * 0.2 * math.pi * r * r
    # 3%: a Gaussian as thin as r=1's (std 0.48 px) sampled at pixel centres sums to 1 ± 2.1%.
    assert density.sum().item() == pytest.approx(expected, rel=0.03)


def test_ink_does_not_depend_on_the_number_of_path_samples(monkeypatch):
    args = _straight(40.0, 1.0, 0.7)
    coarse = stroke_density(*args, canvas_size=64)
    monkeypatch.setattr(fast_backend, "SAMPLE_QUANTUM", 64)
    fine = stroke_density(*args, canvas_size=64)
    assert samples_per_stroke(*args).item() == 64
    assert fine.sum().item() == pytest.approx(coarse.sum().item(), rel=1e-3)
    # Thin strokes do not bead: along the stroke's centre row the density is flat within 5%.
    centre = coarse[0, 32, 20:44]
    assert (centre.max() - centre.min()) / centre.mean() < 0.05


def test_sample_count_follows_stroke_length_and_width():
    long_thin = samples_per_stroke(*_straight(60.0, 1.0, 0.1))
    short_fat = samples_per_stroke(*_straight(10.0, 24.0, 1.0))
    assert long_thin.item() >= 60 and short_fat.item() == fast_backend.SAMPLE_QUANTUM


def test_alpha_is_one_minus_exp_minus_density_and_bounded():
    args = _straight(30.0, 4.0, 1.0)
    density = stroke_density(*args, canvas_size=64)
    alpha = stroke_alpha(*args, canvas_size=64)
    assert torch.allclose(alpha, 1 - torch.exp(-density), atol=1e-6)
    assert alpha.min() >= 0 and alpha.max() < 1


def test_rows_render_independently_of_their_batch():
    cfg = EnvConfig(color=ColorMode.RGB)
    env = FastPaintEnv(cfg)
    generator = torch.Generator().manual_seed(3)
    programme = [random_actions(env.action_spec, 9, generator) for _ in range(6)]
    env.reset(9)
    for actions in programme:
        batched = env.step(actions).canvas
    for row in (0, 4, 8):
        env.reset(1)
        for actions in programme:
            single = env.step(actions[row : row + 1]).canvas
        assert torch.allclose(single[0], batched[row], atol=1e-5)


def test_batches_above_the_row_chunk_render_chunk_by_chunk_into_reused_buffers(monkeypatch):
    """Large batches split into ROW_CHUNK rows; each chunk's scratch is reused, so the result must
    be copied out before the next chunk overwrites it (a view would hold the last chunk's rows)."""
    env = FastPaintEnv(EnvConfig())
    generator = torch.Generator().manual_seed(5)
    programme = [random_actions(env.action_spec, 10, generator, paint_only=True) for _ in range(3)]

    def paint() -> torch.Tensor:
        env.reset(10)
        for actions in programme:
            canvas = env.step(actions).canvas
        return canvas

    whole = paint()
    monkeypatch.setattr(fast_backend, "ROW_CHUNK", 4)  # 10 rows → chunks of 4, 4, 2
    chunked = paint()
    assert torch.allclose(chunked, whole, atol=1e-6)


def test_same_programme_same_canvas():
    env = FastPaintEnv(EnvConfig())
    programme = [random_actions(env.action_spec, 4, torch.Generator().manual_seed(s)) for s in range(5)]
    results = []
    for _ in range(2):
        env.reset(4)
        for actions in programme:
            obs = env.step(actions)
        results.append(obs.canvas)
    assert torch.equal(results[0], results[1])


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_canvas_stays_in_unit_range_and_moves_never_paint(seed, batch):
    env = FastPaintEnv(EnvConfig(episode_length=5))
    obs = env.reset(batch)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(4):
        actions = random_actions(env.action_spec, batch, generator)
        before = obs.canvas
        obs = env.step(actions)
        assert obs.canvas.min() >= 0 and obs.canvas.max() <= 1 and torch.isfinite(obs.canvas).all()
        moved = actions[:, 0] == 0
        assert torch.equal(obs.canvas[moved], before[moved])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"env.device 'gpu0' is not a torch device; use 'cpu', 'cuda' or 'auto'"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match=r"env.device 'meta': the fast renderer runs on 'cpu', 'cuda' or 'auto'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"env.device 'cuda': CUDA is not available here"):
            FastPaintEnv(EnvConfig(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cfg = EnvConfig(color=ColorMode.RGB)
    programme = [random_actions(FastPaintEnv(cfg).action_spec, 16, torch.Generator().manual_seed(s)) for s in range(8)]
    canvases = []
    for device in ("cpu", "cuda"):
        env = FastPaintEnv(cfg, device=device)
        env.reset(16)
        for actions in programme:
            obs = env.step(actions.to(device))
        assert obs.canvas.device.type == device
        canvases.append(obs.canvas.cpu())
    assert torch.allclose(canvases[0], canvases[1], atol=1e-3)

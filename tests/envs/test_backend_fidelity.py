"""The fast renderer paints what libmypaint paints: same random programmes through both backends.

Exact equality is impossible: dry_brush scatters every dab by a random offset (std 1.4·pressure
radii) and jitters its radius, while the fast renderer draws that scatter's expectation. So the
metric compares *where ink goes and how much*, not individual dabs:

* both canvases are blurred with a Gaussian of std 1.5 px, which averages away the per-dab speckle
  (dabs are 2–48 px wide, scattered by up to a few px) but keeps stroke placement and width;
* the per-image mean absolute difference of the blurred canvases is divided by the image's ink
  coverage (mean |canvas − background|), so sparse and dense paintings are judged alike.

Why the bounds are right: measured on 48 programmes per configuration, this relative error is
0.11–0.21 on average between the backends, while two *different* programmes rendered by the two
backends score 0.65–0.90. The test requires the mean under 0.3 and under a third of the
different-programme score — the backends agree at least three times better than unrelated
paintings do — and the total ink to agree within 15%. A renderer that put strokes in the wrong
place, at the wrong width or with the wrong pressure response fails these (see
``test_metric_catches_a_wrong_renderer``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spiral.config import ColorMode, EnvConfig, InkStyle, Renderer
from spiral.envs.factory import make_env
from spiral.envs.painting_spec import background_color, random_actions

BATCH = 48


def blur(images: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` with replicated borders."""
    radius = int(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def relative_error(a: torch.Tensor, b: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``[N]``: mean |blur(a) − blur(b)| over each image, divided by its ink coverage."""
    bg = background.view(1, -1, 1, 1)
    ink = torch.maximum((a - bg).abs().mean(dim=(1, 2, 3)), (b - bg).abs().mean(dim=(1, 2, 3)))
    return (blur(a) - blur(b)).abs().mean(dim=(1, 2, 3)) / ink.clamp_min(1e-3)


def render_both(cfg: EnvConfig, steps: int, seed: int = 0, fast_cfg: EnvConfig | None = None):
    fast = make_env((fast_cfg or cfg).model_copy(update={"renderer": Renderer.FAST}))
    real = make_env(cfg.model_copy(update={"renderer": Renderer.LIBMYPAINT}), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    programme = [random_actions(real.action_spec, BATCH, generator) for _ in range(steps)]
    canvases = []
    for env in (real, fast):
        env.reset(BATCH)
        for actions in programme:
            obs = env.step(actions)
        canvases.append(obs.canvas)
    return canvases


CONFIGS = [
    pytest.param({}, 6, id="default-sizes"),
    pytest.param({"brush_sizes": (1.0, 2.0, 4.0)}, 10, id="thin-brushes"),
    pytest.param({"color": ColorMode.RGB, "ink": InkStyle.BLACK_ON_WHITE}, 6, id="rgb-on-white"),
    pytest.param({"brush_sizes": (2.0,), "use_pressure": False}, 10, id="one-size-no-pressure"),
]


@pytest.mark.parametrize(("overrides", "steps"), CONFIGS)
def test_fast_renderer_matches_libmypaint(overrides, steps):
    cfg = EnvConfig(**overrides)
    real, fast = render_both(cfg, steps)
    bg = background_color(cfg)
    same = relative_error(real, fast, bg)
    different = relative_error(real, fast.roll(1, dims=0), bg)
    assert same.mean() < 0.3, f"relative blurred error {same.mean():.3f}"
    assert same.mean() < different.mean() / 3, f"{same.mean():.3f} vs unrelated {different.mean():.3f}"
    ink_real = (real - bg.view(1, -1, 1, 1)).abs().sum()
    ink_fast = (fast - bg.view(1, -1, 1, 1)).abs().sum()
    assert abs(ink_fast / ink_real - 1) < 0.15, f"ink ratio {ink_fast / ink_real:.3f}"


def test_metric_catches_a_wrong_renderer():
    """The bounds above must be able to fail: a fast renderer with doubled radii breaks them."""
    cfg = EnvConfig(brush_sizes=(1.0, 2.0, 4.0))
    real, wrong = render_both(cfg, 10, fast_cfg=cfg.model_copy(update={"brush_sizes": (2.0, 4.0, 8.0)}))
    bg = background_color(cfg)
    error = relative_error(real, wrong, bg).mean()
    ink_ratio = (wrong - bg.view(1, -1, 1, 1)).abs().sum() / (real - bg.view(1, -1, 1, 1)).abs().sum()
    # Measured: error 0.43, ink ratio 1.70 — both bounds catch it.
    assert error > 0.3 and abs(ink_ratio - 1) > 0.15

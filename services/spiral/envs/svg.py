"""Painting programs as SVG: every stroke a quadratic Bézier, so a program opens in any vector
editor (Inkscape, Illustrator, a browser) and scales without pixels.

Used by ``spiral paint --svg`` and by the Python API. The geometry is the environment's own
(:func:`spiral.envs.strokes.decode_actions` and the brush state between steps), so the SVG draws
the strokes the renderers paint: a paint step is ``M start Q control end`` from where the brush is,
a move only moves the brush. Stroke width is the brush diameter (``2 × radius``), stroke colour
the action's colour (or the ink), opacity the stroke's mean pressure; the background is the blank
canvas. The renderers' soft dry-brush texture is not reproduced: this is the program, not a
rendering of it.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import torch

from spiral.config import EnvConfig
from spiral.envs.painting_spec import background_color, painting_action_spec
from spiral.envs.strokes import decode_actions, initial_brush_state, next_brush_state, start_pressure

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
#: Pixels between programs laid out side by side in one SVG.
GAP = 4


def _rgb(color: torch.Tensor) -> str:
    r, g, b = (round(float(c) * 255) for c in color.clamp(0, 1))
    return f"#{r:02x}{g:02x}{b:02x}"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def stroke_elements(actions: torch.Tensor, cfg: EnvConfig) -> list[list[str]]:
    """The ``<path>`` elements of ``N`` programs (``actions`` int64 ``[T, N, K]``), per program.

    Raises:
        ValueError: actions outside the spec (see :func:`decode_actions`).
    """
    if actions.dim() != 3:
        raise ValueError(f"actions must be a [T, N, K] tensor, got {list(actions.shape)}")
    spec = painting_action_spec(cfg)
    n = actions.shape[1]
    state = initial_brush_state(n)
    paths: list[list[str]] = [[] for _ in range(n)]
    for step in actions:
        strokes = decode_actions(step, spec, cfg)
        pressure = 0.5 * (start_pressure(state, strokes) + strokes.pressure)
        for i in range(n):
            if not bool(strokes.paint[i]):
                continue
            (y0, x0), (cy, cx), (y1, x1) = state.position[i].tolist(), strokes.control[i].tolist(), strokes.end[i].tolist()
            d = f"M {_number(x0)} {_number(y0)} Q {_number(cx)} {_number(cy)} {_number(x1)} {_number(y1)}"
            attrs = {
                "d": d,
                "stroke": _rgb(strokes.color[i]),
                "stroke-width": _number(2.0 * float(strokes.radius[i])),
                "stroke-opacity": _number(float(pressure[i])),
            }
            paths[i].append("<path " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + "/>")
        state = next_brush_state(state, strokes)
    return paths


def programs_svg(actions: torch.Tensor, cfg: EnvConfig, columns: int = 8) -> str:
    """One SVG document of ``N`` programs (``[T, N, K]``), ``columns`` per row, each on its own
    blank canvas of ``canvas_size`` pixels (one program: exactly the canvas).

    Raises:
        ValueError: see :func:`stroke_elements`.
    """
    paths = stroke_elements(actions, cfg)
    n, size = len(paths), cfg.canvas_size
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    width = columns * size + (columns - 1) * GAP
    height = rows * size + (rows - 1) * GAP
    blank = background_color(cfg)  # [C]: one value for grayscale
    background = _rgb(blank.expand(3) if blank.numel() == 1 else blank)
    out = [
        f'<svg xmlns="{SVG_NAMESPACE}" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>SPIRAL painting program{'s' if n > 1 else ''} ({cfg.renderer.value} settings, {size}×{size} canvas)</title>",
    ]
    for i, elements in enumerate(paths):
        r, c = divmod(i, columns)
        x, y = c * (size + GAP), r * (size + GAP)
        out.append(f'<g id="program-{i}" transform="translate({x} {y})" fill="none" stroke-linecap="round" stroke-linejoin="round">')
        out.append(f'<rect x="0" y="0" width="{size}" height="{size}" fill="{background}"/>')
        out.extend(elements)
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"

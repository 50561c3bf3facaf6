"""The real painting program: Debian's libmypaint 1.6 through ctypes (SPIRAL-NOTES §1).

Two layers:

* :class:`LibMyPaint` binds the C functions (loaded on first use, never at import) and
  :class:`MyPaintCanvas` wraps one fixed tiled surface plus one brush: clear, move, paint a
  sampled stroke, read the premultiplied pixels back.
* :class:`LibMyPaintEnv` is the :class:`~spiral.envs.base.BatchedEnv`: it decodes the action batch
  with :mod:`spiral.envs.strokes` (shared with the fast renderer) and loops over its canvases.

libmypaint pitfalls handled here: a fresh fixed tiled surface is filled with 0xFFFF and must be
cleared; dabs only land at ``end_atomic``; tiles are 64 px; pixels are premultiplied fix15 RGBA
(``1 << 15`` = 1.0); a bare ``new_stroke`` still connects to the previous point, so a move resets the
brush (whose first ``stroke_to`` after a reset only positions it).

Not thread-safe: one env per thread.
"""

from __future__ import annotations

import colorsys
import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import logging
import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spiral.config import ColorMode, EnvConfig
from spiral.envs.base import Observation
from spiral.envs.painting_spec import action_mask, background_color, num_channels, painting_action_spec
from spiral.envs.strokes import (
    BEZIER_POINTS,
    BrushState,
    StrokeBatch,
    decode_actions,
    initial_brush_state,
    interpolate_pressure,
    next_brush_state,
    quadratic_bezier,
    start_pressure,
)

log = logging.getLogger(__name__)

#: Where Debian's ``mypaint-brushes`` puts its brushes when pkg-config is not installed.
DEFAULT_BRUSHES_DIR = Path("/usr/share/mypaint-data/2.0/brushes")
#: Candidate shared objects, newest ABI first (Debian names the 1.6 library ``libmypaint-1.5.so.1``).
LIBRARY_NAMES = ("libmypaint-1.5.so.1", "libmypaint.so", "libmypaint-1.6.so.1", "libmypaint-1.5.so")
#: libmypaint's tile side; fixed by the library.
TILE_SIZE = 64
#: fix15 fixed point: ``1 << 15`` is 1.0.
FIX15_ONE = float(1 << 15)
#: Distinct brush-noise streams a seed selects (libmypaint cannot seed a brush; see MyPaintCanvas).
WARMUP_STREAMS = 1021
#: Seconds between successive ``stroke_to`` events (the released environment's value).
STROKE_DTIME = 0.1


class LibMyPaintUnavailableError(RuntimeError):
    """The libmypaint shared library could not be loaded."""


class BrushNotFoundError(ValueError):
    """``env.brush`` names no ``.myb`` file in the brushes folder."""


# ------------------------------------------------------------------------------ C bindings ---


class _TileRequest(ctypes.Structure):
    """``MyPaintTileRequest`` from ``mypaint-tiled-surface.h``."""

    _fields_ = [
        ("tx", ctypes.c_int),
        ("ty", ctypes.c_int),
        ("readonly", ctypes.c_int),
        ("buffer", ctypes.POINTER(ctypes.c_uint16)),
        ("context", ctypes.c_void_p),
        ("thread_id", ctypes.c_int),
        ("mipmap_level", ctypes.c_int),
    ]


class _Rectangle(ctypes.Structure):
    """``MyPaintRectangle`` from ``mypaint-rectangle.h``."""

    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int)]


#: A ctypes function of the library, its restype and argtypes set.
_CFunction = Callable[..., Any]


class LibMyPaint:
    """The subset of the libmypaint C API the environment needs, with argument types declared.

    Signatures follow ``/usr/include/libmypaint`` (1.6): ``mypaint_brush_stroke_to(brush, surface,
    x, y, pressure, xtilt, ytilt, dtime)``.
    """

    # Bound in __init__ from ``signatures`` (the ``mypaint_`` prefix dropped); declared for the type checker.
    fixed_tiled_surface_new: _CFunction
    fixed_tiled_surface_interface: _CFunction
    surface_unref: _CFunction
    surface_begin_atomic: _CFunction
    surface_end_atomic: _CFunction
    tile_request_init: _CFunction
    tiled_surface_tile_request_start: _CFunction
    tiled_surface_tile_request_end: _CFunction
    brush_new: _CFunction
    brush_unref: _CFunction
    brush_from_defaults: _CFunction
    brush_from_string: _CFunction
    brush_reset: _CFunction
    brush_new_stroke: _CFunction
    brush_set_base_value: _CFunction
    brush_get_base_value: _CFunction
    brush_setting_from_cname: _CFunction
    brush_stroke_to: _CFunction

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        vp, c_int, c_float, c_double = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_double
        signatures = {
            "mypaint_fixed_tiled_surface_new": (vp, [c_int, c_int]),
            "mypaint_fixed_tiled_surface_interface": (vp, [vp]),
            "mypaint_surface_unref": (None, [vp]),
            "mypaint_surface_begin_atomic": (None, [vp]),
            "mypaint_surface_end_atomic": (None, [vp, ctypes.POINTER(_Rectangle)]),
            "mypaint_tile_request_init": (None, [ctypes.POINTER(_TileRequest), c_int, c_int, c_int, c_int]),
            "mypaint_tiled_surface_tile_request_start": (None, [vp, ctypes.POINTER(_TileRequest)]),
            "mypaint_tiled_surface_tile_request_end": (None, [vp, ctypes.POINTER(_TileRequest)]),
            "mypaint_brush_new": (vp, []),
            "mypaint_brush_unref": (None, [vp]),
            "mypaint_brush_from_defaults": (None, [vp]),
            "mypaint_brush_from_string": (c_int, [vp, ctypes.c_char_p]),
            "mypaint_brush_reset": (None, [vp]),
            "mypaint_brush_new_stroke": (None, [vp]),
            "mypaint_brush_set_base_value": (None, [vp, c_int, c_float]),
            "mypaint_brush_get_base_value": (c_float, [vp, c_int]),
            "mypaint_brush_setting_from_cname": (c_int, [ctypes.c_char_p]),
            "mypaint_brush_stroke_to": (c_int, [vp, vp, c_float, c_float, c_float, c_float, c_float, c_double]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name.removeprefix("mypaint_"), fn)
        self.setting_ids = {
            name: self.brush_setting_from_cname(name.encode())
            for name in ("radius_logarithmic", "color_h", "color_s", "color_v")
        }


@functools.cache
def load_libmypaint() -> LibMyPaint:
    """Load the libmypaint shared library once per process.

    Raises:
        LibMyPaintUnavailableError: none of :data:`LIBRARY_NAMES` (nor ``ctypes.util.find_library``)
            loads; the message says which package provides it.
    """
    candidates = list(LIBRARY_NAMES)
    found = ctypes.util.find_library("mypaint")
    if found:
        candidates.append(found)
    errors = []
    for name in candidates:
        try:
            return LibMyPaint(ctypes.CDLL(name))
        except OSError as err:
            errors.append(f"{name}: {err}")
    raise LibMyPaintUnavailableError(
        "cannot load libmypaint (install the Debian package libmypaint-1.5-1 / libmypaint-dev); tried "
        + "; ".join(errors)
    )


# --------------------------------------------------------------------------------- brushes ---


@functools.cache
def brushes_dir() -> Path:
    """The mypaint-brushes folder: ``pkg-config --variable=brushesdir mypaint-brushes-2.0``, else
    :data:`DEFAULT_BRUSHES_DIR` (pkg-config is a build tool and may be missing at runtime)."""
    if shutil.which("pkg-config"):
        try:
            out = subprocess.run(
                ["pkg-config", "--variable=brushesdir", "mypaint-brushes-2.0"],
                capture_output=True, text=True, timeout=10, check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError) as err:
            log.debug("pkg-config failed (%s); using %s", err, DEFAULT_BRUSHES_DIR)
    return DEFAULT_BRUSHES_DIR


def available_brushes(folder: Path | None = None) -> list[str]:
    """Every brush name (``group/name``, no ``.myb``) under ``folder`` (default :func:`brushes_dir`)."""
    folder = folder or brushes_dir()
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.myb"))


def read_brush(name: str, folder: Path | None = None) -> str:
    """The JSON text of brush ``name`` (e.g. ``classic/dry_brush``).

    Raises:
        BrushNotFoundError: no ``name.myb`` in the folder; names the folder and the brushes it has.
    """
    folder = folder or brushes_dir()
    path = folder / f"{name}.myb"
    if not path.is_file():
        brushes = available_brushes(folder) if folder.is_dir() else []
        shown = ", ".join(brushes[:40]) + (f", … ({len(brushes)} in all)" if len(brushes) > 40 else "")
        raise BrushNotFoundError(
            f"env.brush {name!r}: no file {path.name} in brushes folder {folder}; "
            f"available brushes: {shown or '(none: is mypaint-brushes installed?)'}"
        )
    return path.read_text()


# ---------------------------------------------------------------------------------- canvas ---


def _row_seed(seed: int, row: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class MyPaintCanvas:
    """One libmypaint surface and brush: the single-episode primitive the batched env loops over.

    libmypaint has no public way to seed a brush's random generator (every brush starts from the
    same fixed seed), so ``seed`` advances it instead: a seed-dependent number of tiny dabs is
    painted far outside the surface, where writes go to the library's scratch tile and are
    discarded. Canvases with equal ``seed % WARMUP_STREAMS`` share their noise.
    """

    def __init__(self, api: LibMyPaint, size: int, brush_json: str, seed: int = 0) -> None:
        self.api = api
        self.size = size
        self._tiles = math.ceil(size / TILE_SIZE)
        self._fixed = api.fixed_tiled_surface_new(size, size)
        if not self._fixed:
            raise MemoryError(f"mypaint_fixed_tiled_surface_new({size}, {size}) failed")
        self._surface = api.fixed_tiled_surface_interface(self._fixed)
        self._brush = api.brush_new()
        api.brush_from_defaults(self._brush)
        if not api.brush_from_string(self._brush, brush_json.encode()):
            self.close()
            raise ValueError("libmypaint rejected the brush JSON (mypaint_brush_from_string returned false)")
        self._roi = _Rectangle()
        self._pixels = np.zeros((self._tiles * TILE_SIZE, self._tiles * TILE_SIZE, 4), dtype=np.float32)
        self._advance_rng(seed)
        self.clear()

    def close(self) -> None:
        """Free the C objects (idempotent)."""
        if getattr(self, "_brush", None):
            self.api.brush_unref(self._brush)
            self._brush = None
        if getattr(self, "_surface", None):
            self.api.surface_unref(self._surface)
            self._surface = None

    def __del__(self) -> None:  # pragma: no cover - garbage collection timing
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.close()

    def _advance_rng(self, seed: int) -> None:
        # Tiny dabs, far off the surface: each costs little, consumes the generator like any dab,
        # and lands in the scratch tile libmypaint discards. ~3 dabs per call, so the number of
        # calls picks one of WARMUP_STREAMS different positions in the random stream.
        api, brush, radius_id = self.api, self._brush, self.api.setting_ids["radius_logarithmic"]
        radius = api.brush_get_base_value(brush, radius_id)
        api.brush_set_base_value(brush, radius_id, math.log(0.25))
        api.brush_reset(brush)
        api.surface_begin_atomic(self._surface)
        far = -10.0 * TILE_SIZE
        for i in range(seed % WARMUP_STREAMS + 1):
            api.brush_stroke_to(brush, self._surface, far + 0.06 * i, far, 0.5, 0.0, 0.0, STROKE_DTIME)
        api.surface_end_atomic(self._surface, ctypes.byref(self._roi))
        api.brush_set_base_value(brush, radius_id, radius)
        api.brush_reset(brush)

    def _tile(self, tx: int, ty: int, readonly: bool) -> tuple[_TileRequest, np.ndarray]:
        request = _TileRequest()
        self.api.tile_request_init(ctypes.byref(request), 0, tx, ty, int(readonly))
        self.api.tiled_surface_tile_request_start(self._fixed, ctypes.byref(request))
        array = np.ctypeslib.as_array(request.buffer, shape=(TILE_SIZE, TILE_SIZE, 4))
        return request, array

    def clear(self) -> None:
        """Make every pixel transparent and lift the brush to (0, 0).

        A new fixed tiled surface is filled with 0xFFFF, which is not a valid fix15 value.
        """
        for ty in range(self._tiles):
            for tx in range(self._tiles):
                request, array = self._tile(tx, ty, readonly=False)
                array.fill(0)
                self.api.tiled_surface_tile_request_end(self._fixed, ctypes.byref(request))
        self.move_to(0.0, 0.0)

    def move_to(self, y: float, x: float) -> None:
        """Lift the brush and put it at ``(y, x)`` without painting.

        After a reset request libmypaint's next ``stroke_to`` only positions the brush.
        """
        self.api.brush_reset(self._brush)
        self.api.brush_new_stroke(self._brush)
        self.api.brush_stroke_to(self._brush, self._surface, x, y, 0.0, 0.0, 0.0, STROKE_DTIME)

    def paint(self, points: np.ndarray, pressures: np.ndarray, radius: float, rgb: tuple[float, float, float]) -> None:
        """Paint through ``points`` (``[N, 2]`` ``(y, x)``; point 0 is where the brush already is).

        Size is applied as ``log(radius)`` to ``radius_logarithmic``'s base value and colour as HSV
        base values; the whole step is one atomic transaction, so its dabs land together.
        """
        api, brush, ids = self.api, self._brush, self.api.setting_ids
        api.brush_set_base_value(brush, ids["radius_logarithmic"], math.log(radius))
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        api.brush_set_base_value(brush, ids["color_h"], h)
        api.brush_set_base_value(brush, ids["color_s"], s)
        api.brush_set_base_value(brush, ids["color_v"], v)
        api.surface_begin_atomic(self._surface)
        stroke_to, surface = api.brush_stroke_to, self._surface
        for (y, x), p in zip(points[1:].tolist(), pressures[1:].tolist(), strict=True):
            stroke_to(brush, surface, x, y, p, 0.0, 0.0, STROKE_DTIME)
        api.surface_end_atomic(surface, ctypes.byref(self._roi))

    def read(self) -> np.ndarray:
        """float32 ``[H, W, 4]``: premultiplied RGBA in [0, 1] (a view reused by the next call)."""
        for ty in range(self._tiles):
            for tx in range(self._tiles):
                request, array = self._tile(tx, ty, readonly=True)
                ys, xs = ty * TILE_SIZE, tx * TILE_SIZE
                np.multiply(array, 1.0 / FIX15_ONE, out=self._pixels[ys : ys + TILE_SIZE, xs : xs + TILE_SIZE])
                self.api.tiled_surface_tile_request_end(self._fixed, ctypes.byref(request))
        return self._pixels[: self.size, : self.size]


# ------------------------------------------------------------------------------------- env ---


class LibMyPaintEnv:
    """``B`` libmypaint canvases stepped in lockstep (a Python loop over the batch).

    Implements :class:`~spiral.envs.base.BatchedEnv`. Canvases are created on the first ``reset``
    with a given batch size and reused by later ones. The canvas is composited over the background
    after every step: ``canvas = premultiplied_paint + (1 - alpha) * background``.

    Not thread-safe.
    """

    def __init__(self, cfg: EnvConfig, seed: int = 0) -> None:
        """
        Raises:
            BrushNotFoundError: ``cfg.brush`` does not exist (lists the available brushes).
            LibMyPaintUnavailableError: the shared library cannot be loaded.
        """
        self.cfg = cfg
        self.seed = seed
        self.action_spec = painting_action_spec(cfg)
        self.num_channels = num_channels(cfg)
        self.canvas_size = cfg.canvas_size
        self.device = torch.device("cpu")
        self._brush_json = read_brush(cfg.brush)
        self._api = load_libmypaint()
        self._background = background_color(cfg).numpy()
        self._canvases: list[MyPaintCanvas] = []
        self._canvas: torch.Tensor | None = None
        self._brush_state: BrushState | None = None
        self._step = 0

    @property
    def canvas(self) -> torch.Tensor:
        """float32 ``[B, C, H, W]`` in [0, 1] after the latest reset/step.

        Raises:
            RuntimeError: before the first ``reset``.
        """
        if self._canvas is None:
            raise RuntimeError("the environment has no canvas yet: call reset(batch_size) first")
        return self._canvas

    def close(self) -> None:
        for canvas in self._canvases:
            canvas.close()
        self._canvases = []

    def reset(self, batch_size: int) -> Observation:
        """Start ``batch_size`` episodes on blank canvases.

        Raises:
            ValueError: ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if len(self._canvases) != batch_size:
            self.close()
            self._canvases = [
                MyPaintCanvas(self._api, self.canvas_size, self._brush_json, seed=_row_seed(self.seed, row))
                for row in range(batch_size)
            ]
        else:
            for canvas in self._canvases:
                canvas.clear()
        self._brush_state = initial_brush_state(batch_size)
        self._step = 0
        self._canvas = self._read_canvases()
        return self._observation(torch.zeros(batch_size, len(self.action_spec)))

    def step(self, actions: torch.Tensor) -> Observation:
        """Apply one action per canvas.

        Raises:
            ValueError: wrong type, dtype or shape, or a component out of range.
            RuntimeError: before ``reset``, or past the episode's last step.
        """
        if self._brush_state is None:
            raise RuntimeError("step() called before reset(batch_size)")
        if self._step >= self.cfg.episode_length - 1:
            raise RuntimeError(
                f"episode is over: it has taken all {self.cfg.episode_length - 1} actions of "
                f"episode_length {self.cfg.episode_length} (the reset counts as a step); call reset()"
            )
        if isinstance(actions, torch.Tensor) and actions.dim() == 2 and actions.shape[0] != len(self._canvases):
            raise ValueError(f"actions have batch size {actions.shape[0]}, the environment was reset with {len(self._canvases)}")
        strokes = decode_actions(actions.cpu() if isinstance(actions, torch.Tensor) else actions, self.action_spec, self.cfg)
        self._apply(self._brush_state, strokes)
        self._brush_state = next_brush_state(self._brush_state, strokes)
        self._step += 1
        self._canvas = self._read_canvases()
        return self._observation(action_mask(self.action_spec, strokes.paint.long()))

    def _apply(self, state: BrushState, strokes: StrokeBatch) -> None:
        points = quadratic_bezier(state.position, strokes.control, strokes.end, BEZIER_POINTS).numpy()
        pressures = interpolate_pressure(start_pressure(state, strokes), strokes.pressure, BEZIER_POINTS).numpy()
        paint = strokes.paint.tolist()
        ends = strokes.end.tolist()
        radii = strokes.radius.tolist()
        colors = strokes.color.tolist()
        for row, canvas in enumerate(self._canvases):
            if paint[row]:
                canvas.paint(points[row], pressures[row], radii[row], tuple(colors[row]))
            else:
                canvas.move_to(*ends[row])

    def _read_canvases(self) -> torch.Tensor:
        size = self.canvas_size
        out = np.empty((len(self._canvases), self.num_channels, size, size), dtype=np.float32)
        bg = self._background
        for row, canvas in enumerate(self._canvases):
            rgba = canvas.read()
            alpha = rgba[..., 3]
            if self.cfg.color == ColorMode.RGB:
                out[row] = np.moveaxis(rgba[..., :3], -1, 0) + (1.0 - alpha)[None] * bg[:, None, None]
            else:
                # Grayscale ink is a single known colour, so the canvas is fixed by coverage alone.
                ink = 1.0 - bg[0]
                out[row, 0] = ink * alpha + (1.0 - alpha) * bg[0]
        return torch.from_numpy(np.clip(out, 0.0, 1.0, out=out))

    def _observation(self, mask: torch.Tensor) -> Observation:
        batch = len(self._canvases)
        return Observation(
            canvas=self.canvas,  # raises before the first reset
            step=torch.full((batch,), self._step, dtype=torch.long),
            episode_length=torch.full((batch,), self.cfg.episode_length, dtype=torch.long),
            action_mask=mask.to(torch.float32),
        )

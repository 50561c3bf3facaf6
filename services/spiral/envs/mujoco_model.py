"""MuJoCo Scenes: scene descriptions, the MJCF model and the offscreen renderer (SPIRAL-NOTES §5).

Used by the environment (:mod:`spiral.envs.mujoco_scenes`) and the dataset generator
(:mod:`spiral.data.mujoco_scenes`). This module never imports torch, so dataset worker processes
start quickly.

A *scene* is up to ``max_objects`` primitives (sphere, box, cylinder, capsule) resting on a square
platform that spans ``[-1, 1]²`` in world units. Every property is discrete — a cell of a
``position_grid × position_grid`` lattice, a size level, a level per colour channel, a yaw level —
so a scene is exactly what an agent's actions can express. :class:`SceneObject` holds those
indices; :class:`PlacedObject` holds the continuous values they stand for.

The model is compiled once with one hidden mocap body per object slot. Rendering a scene only edits
per-geom fields that MuJoCo's visualiser reads at draw time (``geom_type``, ``geom_size``,
``geom_rgba``, ``geom_group``) and the mocap poses, so no recompilation happens per scene. Hidden
slots sit in geom group 3, which the scene options switch off.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import subprocess
import sys
from typing import Any, NamedTuple

import numpy as np

from spiral.config import MujocoSceneConfig

# mujoco itself is imported lazily, in _mujoco(): it binds its OpenGL backend at import time, so
# select_gl_backend() must run first.

log = logging.getLogger(__name__)

#: Half the side of the square platform, in world units.
PLATFORM_HALF_EXTENT = 1.0
#: Characteristic object radius of the smallest and largest size level (world units). The largest
#: object (diameter 0.36) still fits a cell of the default 8×8 grid (0.25) plus its neighbours'
#: margins, so scenes on distinct cells rarely interpenetrate.
MIN_OBJECT_RADIUS = 0.09
MAX_OBJECT_RADIUS = 0.18
#: Yaw levels cover a quarter turn: a box is symmetric under it, and a quarter turn keeps the
#: config's "over [0, π/2)" promise for every shape.
YAW_RANGE = math.pi / 2
#: Shadow-map side when ``shadows`` is on. MuJoCo's default 4096 renders ~30 frames/s at 64×64 on
#: this CPU; 1024 keeps visibly soft contact shadows at 64×64 for a fraction of the cost
#: (tests/benchmarks/bench_mujoco.py measures both).
SHADOW_MAP_SIZE = 1024
#: Geom group that the scene options hide; empty object slots live there.
_HIDDEN_GROUP = 3
_VISIBLE_GROUP = 0


class Shape(str, enum.Enum):
    """The four primitives; the order is the ``shape`` action component's value order."""

    SPHERE = "sphere"
    BOX = "box"
    CYLINDER = "cylinder"
    CAPSULE = "capsule"

    # Shadows str.index on purpose: the `shape` component's value; nothing searches a Shape as a string.
    @property
    def index(self) -> int:  # type: ignore[override]
        return list(Shape).index(self)

    @property
    def rotates(self) -> bool:
        """Whether yaw changes the picture: spheres and upright cylinders look the same at any yaw."""
        return self in (Shape.BOX, Shape.CAPSULE)


class SceneObject(NamedTuple):
    """One object as discrete indices — exactly the values of the agent's action components."""

    shape: Shape
    position: int  # cell of the position grid, row-major; row 0 is the far edge (top of the image)
    size: int
    red: int
    green: int
    blue: int
    rotation: int


class PlacedObject(NamedTuple):
    """One object in world units: what :class:`SceneObject`'s indices stand for."""

    shape: Shape
    x: float
    y: float
    z: float  # height of the centre: the object rests on the platform
    radius: float  # characteristic size (sphere radius; other shapes are scaled from it)
    rgb: tuple[float, float, float]
    yaw: float  # radians about the vertical axis; 0 for shapes that do not rotate


class SceneDescription(NamedTuple):
    """A whole scene: its objects in placement order and the layout that gives indices meaning."""

    objects: tuple[SceneObject, ...]
    layout: MujocoSceneConfig

    def placed(self) -> tuple[PlacedObject, ...]:
        """The objects in world units."""
        return tuple(place_object(o, self.layout) for o in self.objects)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data with both the discrete indices and the continuous values."""
        objects = []
        for obj, placed in zip(self.objects, self.placed(), strict=True):
            objects.append(
                {
                    "shape": obj.shape.value,
                    "action": {
                        "shape": obj.shape.index,
                        "position": obj.position,
                        "size": obj.size,
                        "red": obj.red,
                        "green": obj.green,
                        "blue": obj.blue,
                        "rotation": obj.rotation,
                    },
                    "xyz": [placed.x, placed.y, placed.z],
                    "radius": placed.radius,
                    "rgb": list(placed.rgb),
                    "yaw_radians": placed.yaw,
                }
            )
        return {"format": SCENE_FORMAT, "layout": self.layout.model_dump(mode="json"), "objects": objects}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SceneDescription:
        """Inverse of :meth:`to_json` (the discrete indices are authoritative).

        Raises:
            ValueError: wrong format tag, unknown shape or an index out of the layout's range.
        """
        if data.get("format") != SCENE_FORMAT:
            raise ValueError(f"scene format must be {SCENE_FORMAT!r}, got {data.get('format')!r}")
        layout = MujocoSceneConfig.model_validate(data["layout"])
        objects = []
        for i, item in enumerate(data["objects"]):
            try:
                shape = Shape(item["shape"])
            except ValueError:
                raise ValueError(
                    f"scene object {i}: shape {item['shape']!r} is not one of {[s.value for s in Shape]}"
                ) from None
            a = item["action"]
            obj = SceneObject(shape, a["position"], a["size"], a["red"], a["green"], a["blue"], a["rotation"])
            check_object(obj, layout, where=f"scene object {i}")
            objects.append(obj)
        return cls(tuple(objects), layout)


SCENE_FORMAT = "spiral-mujoco-scene/1"


# ----------------------------------------------------------------------- indices → world ---


def cell_center(cell: int, grid: int) -> tuple[float, float]:
    """World (x, y) of a grid cell's centre. Row 0 is the far edge (+y), column 0 the left (−x)."""
    row, col = divmod(cell, grid)
    step = 2.0 * PLATFORM_HALF_EXTENT / grid
    return -PLATFORM_HALF_EXTENT + (col + 0.5) * step, PLATFORM_HALF_EXTENT - (row + 0.5) * step


def size_value(level: int, levels: int) -> float:
    """Characteristic radius of size ``level``: evenly spaced in [MIN, MAX]; one level → the middle."""
    if levels == 1:
        return 0.5 * (MIN_OBJECT_RADIUS + MAX_OBJECT_RADIUS)
    return MIN_OBJECT_RADIUS + (MAX_OBJECT_RADIUS - MIN_OBJECT_RADIUS) * level / (levels - 1)


def color_value(level: int, levels: int) -> float:
    """Colour channel value of ``level``: linspace(0, 1, levels), as in the painting environment."""
    return level / (levels - 1)


def yaw_value(level: int, levels: int) -> float:
    """Yaw in radians of ``level``: evenly spaced over [0, π/2)."""
    return YAW_RANGE * level / levels


def shape_extent(shape: Shape, radius: float) -> tuple[tuple[float, float, float], float]:
    """MuJoCo ``geom_size`` and the centre height that rests the shape on the platform.

    Boxes and cylinders are shrunk so that their volume is close to the sphere's of the same size
    level; capsules lie on their side so that their yaw shows.
    """
    if shape is Shape.SPHERE:
        return (radius, 0.0, 0.0), radius
    if shape is Shape.BOX:
        half = 0.8 * radius
        return (half, half, half), half
    if shape is Shape.CYLINDER:
        return (0.85 * radius, 0.85 * radius, 0.0), 0.85 * radius
    # capsule: radius and half-length of the cylindrical part
    return (0.6 * radius, 0.9 * radius, 0.0), 0.6 * radius


def place_object(obj: SceneObject, layout: MujocoSceneConfig) -> PlacedObject:
    """Continuous values of one object (no range check: see :func:`check_object`)."""
    x, y = cell_center(obj.position, layout.position_grid)
    radius = size_value(obj.size, layout.size_levels)
    _, z = shape_extent(obj.shape, radius)
    rgb = tuple(color_value(c, layout.color_levels) for c in (obj.red, obj.green, obj.blue))
    # Symmetric shapes are drawn unrotated: their tessellation would otherwise shift a few pixels
    # with a yaw that the action mask says does not matter.
    yaw = yaw_value(obj.rotation, layout.rotation_levels) if obj.shape.rotates else 0.0
    return PlacedObject(obj.shape, x, y, z, radius, rgb, yaw)  # type: ignore[arg-type]


def check_object(obj: SceneObject, layout: MujocoSceneConfig, where: str = "object") -> None:
    """Check every index of ``obj`` against ``layout``.

    Raises:
        ValueError: names the field, the bad value and the valid range.
    """
    limits = {
        "position": layout.position_grid**2,
        "size": layout.size_levels,
        "red": layout.color_levels,
        "green": layout.color_levels,
        "blue": layout.color_levels,
        "rotation": layout.rotation_levels,
    }
    if not isinstance(obj.shape, Shape):
        raise ValueError(f"{where}: shape {obj.shape!r} is not one of {[s.value for s in Shape]}")
    for field, limit in limits.items():
        value = getattr(obj, field)
        if not 0 <= value < limit:
            raise ValueError(f"{where}: {field} is {value}; valid range is 0..{limit - 1}")


def random_scene(
    rng: np.random.Generator, layout: MujocoSceneConfig, min_objects: int = 1, max_objects: int | None = None
) -> SceneDescription:
    """A uniformly random scene of ``min_objects..max_objects`` objects on distinct cells.

    Distinct cells keep objects from piling into each other, which no rigid scene would show.

    Raises:
        ValueError: the object-count range is empty or exceeds the layout's limits.
    """
    high = layout.max_objects if max_objects is None else max_objects
    if not 0 <= min_objects <= high <= min(layout.max_objects, layout.position_grid**2):
        raise ValueError(
            f"object count range {min_objects}..{high} must satisfy "
            f"0 ≤ min_objects ≤ max_objects ≤ {min(layout.max_objects, layout.position_grid**2)}"
        )
    count = int(rng.integers(min_objects, high + 1))
    cells = rng.choice(layout.position_grid**2, size=count, replace=False)
    shapes = list(Shape)
    objects = tuple(
        SceneObject(
            shape=shapes[int(rng.integers(len(shapes)))],
            position=int(cell),
            size=int(rng.integers(layout.size_levels)),
            red=int(rng.integers(layout.color_levels)),
            green=int(rng.integers(layout.color_levels)),
            blue=int(rng.integers(layout.color_levels)),
            rotation=int(rng.integers(layout.rotation_levels)),
        )
        for cell in cells
    )
    return SceneDescription(objects, layout)


# ------------------------------------------------------------------------------ the model ---

#: Camera pose: above and in front of the platform, looking down ~55° so that the shapes read as
#: 3D (a top-down view makes spheres, cylinders and capsules all look like discs).
CAMERA_POSITION = (0.0, -2.1, 2.9)
CAMERA_TARGET = (0.0, -0.08, 0.05)
CAMERA_FOVY_DEGREES = 37.0


def _camera_axes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera x (right), y (up) and forward unit vectors in world coordinates."""
    position = np.asarray(CAMERA_POSITION)
    forward = np.asarray(CAMERA_TARGET) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return right, up, forward


def build_scene_xml(canvas_size: int, layout: MujocoSceneConfig, shadow_map_size: int = SHADOW_MAP_SIZE) -> str:
    """The MJCF of the platform, camera, lights and ``layout.max_objects`` hidden object slots.

    ``shadowclip`` 1.5 widens the directional light's shadow frustum past the platform: at
    MuJoCo's default (1.0) the platform's near edge shows shadow acne.
    """
    right, up, _ = _camera_axes()
    xyaxes = " ".join(f"{v:.6f}" for v in (*right, *up))
    cast = "true" if layout.shadows else "false"
    materials = "\n".join(
        f'    <material name="object{k}" specular="0.15" shininess="0.3"/>' for k in range(layout.max_objects)
    )
    slots = "\n".join(
        f'    <body name="slot{k}" mocap="true" pos="0 0 -5">'
        f'<geom name="object{k}" type="sphere" size="0.1" material="object{k}" group="{_HIDDEN_GROUP}" '
        'contype="0" conaffinity="0"/></body>'
        for k in range(layout.max_objects)
    )
    return f"""<mujoco model="spiral-mujoco-scenes">
  <statistic center="0 0 0.1" extent="1.6"/>
  <visual>
    <global offwidth="{canvas_size}" offheight="{canvas_size}"/>
    <quality shadowsize="{shadow_map_size}" offsamples="4"/>
    <headlight ambient="0.4 0.4 0.4" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <map shadowclip="1.5"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.32 0.36 0.45" rgb2="0.05 0.05 0.08"
             width="32" height="32"/>
    <material name="platform" specular="0" rgba="0.72 0.71 0.68 1"/>
{materials}
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="0.6 -0.6 3" dir="-0.2 0.25 -1" diffuse="0.5 0.5 0.5"
           specular="0.2 0.2 0.2" castshadow="{cast}"/>
    <camera name="main" pos="{' '.join(map(str, CAMERA_POSITION))}" xyaxes="{xyaxes}"
            fovy="{CAMERA_FOVY_DEGREES}"/>
    <geom name="platform" type="box" size="{PLATFORM_HALF_EXTENT} {PLATFORM_HALF_EXTENT} 0.05"
          pos="0 0 -0.05" material="platform" contype="0" conaffinity="0"/>
{slots}
  </worldbody>
</mujoco>
"""


def project_to_pixel(point: tuple[float, float, float], canvas_size: int) -> tuple[float, float]:
    """(row, column) in pixels of a world point in the rendered image (pinhole model of the camera).

    Used by tests to know where an object must appear.
    """
    right, up, forward = _camera_axes()
    rel = np.asarray(point, dtype=float) - np.asarray(CAMERA_POSITION)
    depth = float(rel @ forward)
    focal = 0.5 * canvas_size / math.tan(math.radians(CAMERA_FOVY_DEGREES) / 2)
    col = 0.5 * canvas_size + focal * float(rel @ right) / depth
    row = 0.5 * canvas_size - focal * float(rel @ up) / depth
    return row, col


# ------------------------------------------------------------------------- GL and render ---


_GL_BACKENDS = ("egl", "osmesa")


def _probe_backend(backend: str) -> bool:
    """Whether MuJoCo can open an offscreen context with ``backend``, tried in a child process.

    A child is needed because MuJoCo (and PyOpenGL) bind the backend once, when first imported.
    """
    code = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()"
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if result.returncode != 0:
        log.debug("MUJOCO_GL=%s unavailable: %s", backend, result.stderr.decode(errors="replace")[-500:])
    return result.returncode == 0


def select_gl_backend() -> str:
    """Choose MuJoCo's headless OpenGL backend before ``mujoco`` is first imported.

    A value the user set in ``MUJOCO_GL`` is kept. Otherwise EGL is tried (Mesa's software device
    works on CPU-only machines), then OSMesa; the choice is written to ``MUJOCO_GL`` so that child
    processes inherit it without probing again.

    Raises:
        RuntimeError: neither backend works, or ``mujoco`` was imported before a backend was set.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if "mujoco" in sys.modules:
        raise RuntimeError(
            "mujoco was imported before MUJOCO_GL was set, so it bound no headless OpenGL backend; "
            f"set MUJOCO_GL to one of {list(_GL_BACKENDS)} before importing mujoco"
        )
    for backend in _GL_BACKENDS:
        if _probe_backend(backend):
            os.environ["MUJOCO_GL"] = backend
            log.info("MuJoCo renders with MUJOCO_GL=%s", backend)
            return backend
    raise RuntimeError(
        f"no headless OpenGL backend works for MuJoCo: tried MUJOCO_GL in {list(_GL_BACKENDS)} "
        "(EGL needs libEGL with Mesa, OSMesa needs libosmesa6); set MUJOCO_GL explicitly to override"
    )


def _mujoco() -> Any:
    """Import mujoco after choosing the GL backend."""
    select_gl_backend()
    import mujoco

    return mujoco


def _yaw_quaternion(shape: Shape, yaw: float) -> np.ndarray:
    """Mocap quaternion (w, x, y, z): yaw about z, after laying a capsule on its side."""
    q_yaw = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    if shape is not Shape.CAPSULE:
        return q_yaw
    # A capsule's axis is its local z; a quarter turn about y lays it along x.
    c = math.cos(math.pi / 4)
    w1, x1, y1, z1 = q_yaw
    w2, x2, y2, z2 = c, 0.0, c, 0.0
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


class SceneRenderer:
    """Renders :class:`SceneDescription` s to ``uint8 [H, W, 3]`` images with one reused context.

    Not thread-safe: it owns one OpenGL context, which is current on one thread at a time. Create
    one per process (dataset workers) or per environment.
    """

    def __init__(self, canvas_size: int, layout: MujocoSceneConfig, shadow_map_size: int = SHADOW_MAP_SIZE) -> None:
        """Compile the model and open the offscreen context (``shadow_map_size`` matters only with shadows).

        Raises:
            RuntimeError: no headless OpenGL backend (see :func:`select_gl_backend`).
        """
        mujoco = _mujoco()
        self.canvas_size = canvas_size
        self.layout = layout
        self._model = mujoco.MjModel.from_xml_string(build_scene_xml(canvas_size, layout, shadow_map_size))
        self._data = mujoco.MjData(self._model)
        # Cameras and lights are static: place them once (mj_forward runs mj_camlight).
        mujoco.mj_forward(self._model, self._data)
        self._renderer = mujoco.Renderer(self._model, canvas_size, canvas_size)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 0
        self._option.geomgroup[_VISIBLE_GROUP] = 1
        self._geom_types = {
            Shape.SPHERE: int(mujoco.mjtGeom.mjGEOM_SPHERE),
            Shape.BOX: int(mujoco.mjtGeom.mjGEOM_BOX),
            Shape.CYLINDER: int(mujoco.mjtGeom.mjGEOM_CYLINDER),
            Shape.CAPSULE: int(mujoco.mjtGeom.mjGEOM_CAPSULE),
        }
        self._first_slot_geom = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_GEOM, "object0")
        self._first_slot_material = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_MATERIAL, "object0")
        self._camera = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, "main")
        self._mj = mujoco

    def render(self, scene: SceneDescription) -> np.ndarray:
        """The scene as ``uint8 [canvas_size, canvas_size, 3]``.

        Raises:
            ValueError: more objects than slots, or an index outside the renderer's layout.
        """
        if len(scene.objects) > self.layout.max_objects:
            raise ValueError(
                f"scene has {len(scene.objects)} objects; this renderer holds at most "
                f"max_objects={self.layout.max_objects}"
            )
        model, data = self._model, self._data
        slots = slice(self._first_slot_geom, self._first_slot_geom + self.layout.max_objects)
        model.geom_group[slots] = _HIDDEN_GROUP
        for k, obj in enumerate(scene.objects):
            check_object(obj, self.layout, where=f"scene object {k}")
            placed = place_object(obj, self.layout)
            geom = self._first_slot_geom + k
            size, _ = shape_extent(obj.shape, placed.radius)
            rgba = (*placed.rgb, 1.0)
            model.geom_type[geom] = self._geom_types[obj.shape]
            model.geom_size[geom] = size
            model.geom_rbound[geom] = 2.0 * placed.radius
            # A geom with a material shows the material's colour when its own rgba is the default
            # (0.5, 0.5, 0.5, 1) — a valid colour level here — so both are set.
            model.geom_rgba[geom] = rgba
            model.mat_rgba[self._first_slot_material + k] = rgba
            model.geom_group[geom] = _VISIBLE_GROUP
            data.mocap_pos[k] = (placed.x, placed.y, placed.z)
            data.mocap_quat[k] = _yaw_quaternion(obj.shape, placed.yaw)
        # Geom poses follow the mocap bodies only after kinematics.
        self._mj.mj_kinematics(model, data)
        self._renderer.update_scene(data, camera=self._camera, scene_option=self._option)
        return self._renderer.render()

    def close(self) -> None:
        """Release the OpenGL context (idempotent)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

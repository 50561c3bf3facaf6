"""The MuJoCo Scenes dataset: render random scenes to PNG + JSON, and load them back.

``spiral data mujoco-scenes --n 50000 --out DIR`` writes, for each index ``i``:

* ``DIR/images/{i:06d}.png`` — the RGB render (``canvas_size`` square);
* ``DIR/scenes/{i:06d}.json`` — its :class:`~spiral.envs.mujoco_model.SceneDescription` (discrete
  action indices and continuous values);

plus ``DIR/dataset.json`` (seed, canvas size, layout) and ``DIR/preview.png`` (a grid of the first
scenes). Scene ``i`` depends only on ``(seed, i)``, so any subset of indices can be rendered by any
worker in any order. Each file is written to a temporary name and renamed, and the JSON goes last,
so an index is complete exactly when its JSON exists: an interrupted run resumes by skipping those.

The training data dispatcher calls :func:`load_mujoco_scenes`; scoring code calls
:func:`load_scene_descriptions`. This module imports torch only inside the loader so that the
rendering workers start quickly.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import numpy as np
import typer
from PIL import Image
from pydantic import ValidationError

from spiral.config import DataConfig, MujocoSceneConfig
from spiral.envs.mujoco_model import SceneDescription, SceneRenderer, random_scene, select_gl_backend
from spiral.fsio import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

DATASET_FORMAT = "spiral-mujoco-scenes/1"
#: Scenes of the preview grid (8 × 8).
PREVIEW_SCENES = 64


class DatasetSpec(NamedTuple):
    """What fixes the content of every index: changing any of it makes a different dataset."""

    seed: int
    canvas_size: int
    layout: MujocoSceneConfig
    min_objects: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "format": DATASET_FORMAT,
            "seed": self.seed,
            "canvas_size": self.canvas_size,
            "min_objects": self.min_objects,
            "layout": self.layout.model_dump(mode="json"),
        }


class GenerationReport(NamedTuple):
    rendered: int  # indices rendered by this run
    skipped: int  # indices already complete (resume)


def image_path(out: Path, index: int) -> Path:
    return out / "images" / f"{index:06d}.png"


def scene_path(out: Path, index: int) -> Path:
    return out / "scenes" / f"{index:06d}.json"


def scene_for_index(spec: DatasetSpec, index: int) -> SceneDescription:
    """The scene of ``index``: a pure function of ``(spec.seed, index)``."""
    rng = np.random.default_rng([spec.seed, index])
    return random_scene(rng, spec.layout, min_objects=spec.min_objects)


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def is_complete(out: Path, index: int) -> bool:
    """Whether ``index`` was fully written (its JSON goes last)."""
    return scene_path(out, index).exists() and image_path(out, index).exists()


# ----------------------------------------------------------------------------- workers ---

#: Per-process state of a rendering worker (its spec, folder and renderer), filled by the pool's
#: initializer: a Pool worker can only receive state this way, and the renderer must live as long
#: as the process so that its OpenGL context is opened once, not per scene.
_worker_state: dict[str, Any] = {}


def _init_worker(spec_json: dict[str, Any], out: str) -> None:
    spec = _spec_from_json(spec_json)
    _worker_state["spec"] = spec
    _worker_state["out"] = Path(out)
    _worker_state["renderer"] = SceneRenderer(spec.canvas_size, spec.layout)


def _render_index(index: int) -> int:
    spec: DatasetSpec = _worker_state["spec"]
    out: Path = _worker_state["out"]
    scene = scene_for_index(spec, index)
    image = _worker_state["renderer"].render(scene)
    atomic_write_bytes(image_path(out, index), _png_bytes(image))
    atomic_write_bytes(scene_path(out, index), json.dumps(scene.to_json(), indent=1).encode())
    return index


def _spec_from_json(data: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec(
        seed=int(data["seed"]),
        canvas_size=int(data["canvas_size"]),
        layout=MujocoSceneConfig.model_validate(data["layout"]),
        min_objects=int(data.get("min_objects", 1)),
    )


# -------------------------------------------------------------------------- generation ---


def _check_or_write_metadata(out: Path, spec: DatasetSpec) -> None:
    """Refuse to resume into a folder made with different settings (indices would mix datasets).

    Raises:
        ValueError: ``dataset.json`` exists and disagrees; names each differing key.
    """
    meta = out / "dataset.json"
    wanted = spec.to_json()
    if meta.exists():
        found = json.loads(meta.read_text())
        differing = [k for k in wanted if found.get(k) != wanted[k]]
        if differing:
            details = "; ".join(f"{k}: existing {found.get(k)!r}, requested {wanted[k]!r}" for k in differing)
            raise ValueError(
                f"{out} already holds a MuJoCo Scenes dataset made with different settings ({details}); "
                "use another --out folder or the same settings to resume"
            )
        return
    atomic_write_bytes(meta, json.dumps(wanted, indent=1).encode())


def generate_dataset(
    out: Path, num_scenes: int, spec: DatasetSpec, workers: int = 1, show_progress: bool = True
) -> GenerationReport:
    """Render scenes ``0..num_scenes-1`` into ``out``, skipping complete ones, with ``workers`` processes.

    Raises:
        ValueError: ``num_scenes`` < 1, ``workers`` < 1, or ``out`` holds a different dataset.
        RuntimeError: no headless OpenGL backend for MuJoCo.
    """
    if num_scenes < 1:
        raise ValueError(f"--n must be ≥ 1, got {num_scenes}")
    if workers < 1:
        raise ValueError(f"--workers must be ≥ 1, got {workers}")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    _check_or_write_metadata(out, spec)
    todo = [i for i in range(num_scenes) if not is_complete(out, i)]
    skipped = num_scenes - len(todo)
    if skipped:
        log.info("resuming: %d of %d scenes already complete in %s", skipped, num_scenes, out)
    if todo:
        # Choose the GL backend once here; spawned workers inherit MUJOCO_GL instead of probing.
        select_gl_backend()
        _run_workers(out, todo, spec, min(workers, len(todo)), show_progress, num_scenes, skipped)
    _write_preview(out, min(num_scenes, PREVIEW_SCENES))
    return GenerationReport(rendered=len(todo), skipped=skipped)


def _run_workers(
    out: Path, todo: list[int], spec: DatasetSpec, workers: int, show_progress: bool, total: int, done: int
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
    )
    init_args = (spec.to_json(), str(out))
    with progress:
        task = progress.add_task("rendering MuJoCo scenes", total=total, completed=done)
        if workers == 1:
            _init_worker(*init_args)
            try:
                for index in todo:
                    _render_index(index)
                    progress.advance(task)
            finally:
                _worker_state.pop("renderer").close()
            return
        # spawn: a forked child would inherit the parent's threads (torch, rich) in unknown states,
        # and every worker needs its own OpenGL context anyway.
        context = multiprocessing.get_context("spawn")
        chunksize = max(1, min(64, len(todo) // (workers * 8)))
        with context.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
            for _ in pool.imap_unordered(_render_index, todo, chunksize=chunksize):
                progress.advance(task)


def _write_preview(out: Path, count: int) -> None:
    """An 8-wide PNG grid of the first ``count`` complete scenes, for a quick look."""
    images = [np.asarray(Image.open(image_path(out, i)).convert("RGB")) for i in range(count) if is_complete(out, i)]
    if not images:
        return
    columns = min(8, len(images))
    rows = -(-len(images) // columns)
    blank = np.zeros_like(images[0])
    images += [blank] * (rows * columns - len(images))
    grid = np.concatenate([np.concatenate(images[r * columns : (r + 1) * columns], axis=1) for r in range(rows)])
    atomic_write_bytes(out / "preview.png", _png_bytes(grid))


# ------------------------------------------------------------------------------ loading ---


def _indexed_files(folder: Path, suffix: str) -> list[Path]:
    files = [p for p in folder.glob(f"*{suffix}") if p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _dataset_root(path: Path) -> Path:
    """Accept the dataset folder or its ``images`` sub-folder.

    Raises:
        FileNotFoundError: neither holds ``images/*.png``.
    """
    path = Path(path)
    if path.name == "images" and (path.parent / "scenes").is_dir():
        path = path.parent
    if not (path / "images").is_dir() or not _indexed_files(path / "images", ".png"):
        raise FileNotFoundError(
            f"{path} holds no MuJoCo Scenes images (expected {path}/images/000000.png, ...); "
            f"render them with `spiral data mujoco-scenes --n 50000 --out {path}`"
        )
    return path


def load_mujoco_scenes(path: Path, canvas_size: int) -> torch.Tensor:
    """All complete scenes' images as float32 ``[N, 3, canvas_size, canvas_size]`` in [0, 1].

    Images are ordered by index; those of a different size are resized (area averaging). An index
    whose JSON is missing (an interrupted write) is left out. For the full 50,000 scenes this is
    2.4 GB; :func:`load_mujoco_scenes_uint8` returns the same pixels in a quarter of that.

    Raises:
        FileNotFoundError: ``path`` holds no dataset.
        ValueError: ``canvas_size`` < 1.
    """
    return load_mujoco_scenes_uint8(path, canvas_size).float().div_(255.0)


def load_mujoco_scenes_uint8(path: Path, canvas_size: int) -> torch.Tensor:
    """Like :func:`load_mujoco_scenes`, as uint8 ``[N, 3, canvas_size, canvas_size]``.

    Raises:
        FileNotFoundError: ``path`` holds no dataset.
        ValueError: ``canvas_size`` < 1.
    """
    import torch

    if canvas_size < 1:
        raise ValueError(f"canvas_size must be ≥ 1, got {canvas_size}")
    root = _dataset_root(path)
    files = [p for p in _indexed_files(root / "images", ".png") if scene_path(root, int(p.stem)).exists()]
    images = np.empty((len(files), 3, canvas_size, canvas_size), np.uint8)
    for k, file in enumerate(files):
        with Image.open(file) as opened:
            img = opened.convert("RGB")
            if img.size != (canvas_size, canvas_size):
                img = img.resize((canvas_size, canvas_size), Image.Resampling.BOX)
            images[k] = np.asarray(img).transpose(2, 0, 1)
    return torch.from_numpy(images)


def held_out_scene_descriptions(cfg: DataConfig) -> list[SceneDescription]:
    """The scenes behind ``load_dataset(cfg)``'s held-out images, in the same order (the same
    seeded subset and split), for object-matching scores.

    Raises:
        DatasetError: as :func:`load_scene_descriptions`.
    """
    from spiral.data.folder import select_subset
    from spiral.data.splits import split_indices

    assert cfg.path is not None
    scenes = load_scene_descriptions(Path(cfg.path))
    kept = select_subset(list(range(len(scenes))), cfg.max_images, cfg.seed)
    split = split_indices(len(kept), cfg.held_out_fraction, cfg.seed)
    return [scenes[kept[i]] for i in split.held_out.tolist()]


def load_scene_descriptions(path: Path) -> list[SceneDescription]:
    """The ground-truth scenes, ordered by index like :func:`load_mujoco_scenes`'s images.

    Raises:
        FileNotFoundError: ``path`` holds no dataset.
    """
    root = _dataset_root(path)
    files = [p for p in _indexed_files(root / "images", ".png") if scene_path(root, int(p.stem)).exists()]
    return [SceneDescription.from_json(json.loads(scene_path(root, int(p.stem)).read_text())) for p in files]


# ---------------------------------------------------------------------------------- CLI ---


def mujoco_scenes_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (images/, scenes/, dataset.json).")],
    n: Annotated[int, typer.Option("--n", help="Number of scenes (the paper: 50,000).")] = 50_000,
    workers: Annotated[
        int, typer.Option("--workers", help="Rendering processes; 0 = the number of CPUs.")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Scene i depends only on (seed, i).")] = 0,
    canvas_size: Annotated[int, typer.Option("--canvas-size", help="Image side in pixels.")] = 64,
    max_objects: Annotated[int, typer.Option("--max-objects", help="Objects per scene at most (1..).")] = 5,
    position_grid: Annotated[int, typer.Option("--position-grid", help="Positions per platform side.")] = 8,
    size_levels: Annotated[int, typer.Option("--size-levels")] = 3,
    color_levels: Annotated[int, typer.Option("--color-levels", help="Levels per RGB channel.")] = 4,
    rotation_levels: Annotated[int, typer.Option("--rotation-levels")] = 4,
    shadows: Annotated[bool, typer.Option("--shadows/--no-shadows", help="Shadow maps (slower).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Render the MuJoCo Scenes dataset: random scenes of 1..max-objects primitives on a platform.

    Resumable: scenes already written are skipped. The layout must match the environment's
    (`env.mujoco` in the training config) for an agent to reconstruct the scenes exactly.
    """
    try:
        layout = MujocoSceneConfig(
            max_objects=max_objects,
            position_grid=position_grid,
            size_levels=size_levels,
            color_levels=color_levels,
            rotation_levels=rotation_levels,
            shadows=shadows,
        )
    except ValidationError as err:
        problems = "; ".join(
            f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
        )
        raise typer.BadParameter(problems) from None
    if canvas_size < 8:
        raise typer.BadParameter(f"--canvas-size must be ≥ 8, got {canvas_size}")
    spec = DatasetSpec(seed=seed, canvas_size=canvas_size, layout=layout)
    try:
        report = generate_dataset(out, n, spec, workers=workers or os.cpu_count() or 1, show_progress=not quiet)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    log.info("MuJoCo Scenes in %s: %d rendered, %d already complete", out, report.rendered, report.skipped)

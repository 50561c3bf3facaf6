"""`spiral data mujoco-scenes`: parallel rendering, JSON descriptions, resume, determinism, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from spiral.config import MujocoSceneConfig
from spiral.data.mujoco_scenes import (
    DatasetSpec,
    generate_dataset,
    image_path,
    load_mujoco_scenes,
    load_mujoco_scenes_uint8,
    load_scene_descriptions,
    mujoco_scenes_command,
    scene_path,
)
from spiral.envs.mujoco_model import SceneDescription, SceneRenderer

SPEC = DatasetSpec(seed=5, canvas_size=64, layout=MujocoSceneConfig())


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and the output with rich's box drawing and line wrapping flattened away."""
    # The command exactly as cli.py registers it, without importing every other sub-command.
    app = typer.Typer()
    app.command()(mujoco_scenes_command)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mujoco") / "scenes"
    code, output = run_cli("--n", "6", "--out", str(out), "--workers", "2", "--seed", "5", "--quiet")
    assert code == 0, output
    return out


def test_command_writes_n_images_and_descriptions(dataset):
    assert sorted(p.name for p in (dataset / "images").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert sorted(p.name for p in (dataset / "scenes").iterdir()) == [f"{i:06d}.json" for i in range(6)]
    assert json.loads((dataset / "dataset.json").read_text())["seed"] == 5
    assert Image.open(dataset / "preview.png").size == (6 * 64, 64)  # one row of 6
    counts = set()
    for i in range(6):
        with Image.open(image_path(dataset, i)) as img:
            assert img.size == (64, 64) and img.mode == "RGB"
        scene = SceneDescription.from_json(json.loads(scene_path(dataset, i).read_text()))
        assert 1 <= len(scene.objects) <= 5
        counts.add(len(scene.objects))
        assert len({o.position for o in scene.objects}) == len(scene.objects)  # distinct cells
    assert len(counts) > 1, "scenes should vary in object count"


def test_images_are_renders_of_their_descriptions(dataset):
    scenes = load_scene_descriptions(dataset)
    with SceneRenderer(64, MujocoSceneConfig()) as renderer:
        for i, scene in enumerate(scenes):
            assert np.array_equal(np.asarray(Image.open(image_path(dataset, i))), renderer.render(scene))


def test_scenes_are_deterministic_per_index(dataset, tmp_path):
    # Index 4 alone, in another folder, single process: the same scene and the same pixels.
    out = tmp_path / "again"
    generate_dataset(out, 6, SPEC, workers=1, show_progress=False)
    for i in (0, 4):
        assert scene_path(out, i).read_bytes() == scene_path(dataset, i).read_bytes()
        assert np.array_equal(np.asarray(Image.open(image_path(out, i))), np.asarray(Image.open(image_path(dataset, i))))
    other = generate_dataset(tmp_path / "seed6", 2, SPEC._replace(seed=6), workers=1, show_progress=False)
    assert other.rendered == 2
    assert scene_path(tmp_path / "seed6", 0).read_bytes() != scene_path(dataset, 0).read_bytes()


def test_resume_renders_only_missing_indices(tmp_path):
    out = tmp_path / "resume"
    first = generate_dataset(out, 4, SPEC, workers=1, show_progress=False)
    assert first == (4, 0)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*")}
    scene_path(out, 2).unlink()  # an interrupted write: the image exists, its JSON does not
    report = generate_dataset(out, 6, SPEC, workers=2, show_progress=False)
    assert report.rendered == 3 and report.skipped == 3  # index 2, 4 and 5
    for path, mtime in before.items():
        if path.stem != "000002":
            assert path.stat().st_mtime_ns == mtime, f"{path} was re-rendered"
    assert scene_path(out, 2).exists() and image_path(out, 5).exists()
    assert not list(out.glob("*/.*.tmp")), "temporary files must not remain"


def test_resume_refuses_different_settings(dataset):
    code, output = run_cli("--n", "6", "--out", str(dataset), "--seed", "9", "--workers", "1", "--quiet")
    assert code != 0
    assert "different settings (seed: existing 5, requested 9)" in output


def test_command_rejects_bad_layout(tmp_path):
    code, output = run_cli("--n", "2", "--out", str(tmp_path / "x"), "--color-levels", "1", "--quiet")
    assert code != 0
    assert "--color-levels: Input should be greater than or equal to 2 (got 1)" in output


def test_load_reads_images_back(dataset):
    images = load_mujoco_scenes(dataset, 64)
    assert images.shape == (6, 3, 64, 64) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    first = torch.from_numpy(np.array(Image.open(image_path(dataset, 0)))).permute(2, 0, 1).float() / 255
    assert torch.equal(images[0], first)
    assert torch.equal(load_mujoco_scenes(dataset / "images", 64), images)
    raw = load_mujoco_scenes_uint8(dataset, 64)
    assert raw.dtype == torch.uint8 and torch.equal(raw.float() / 255, images)
    small = load_mujoco_scenes(dataset, 32)
    assert small.shape == (6, 3, 32, 32)
    assert float((small[0] - torch.nn.functional.avg_pool2d(images[:1], 2)[0]).abs().max()) < 2 / 255


def test_load_reports_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no MuJoCo Scenes images .*spiral data mujoco-scenes"):
        load_mujoco_scenes(tmp_path, 64)


def test_env_rebuilding_a_dataset_scene_scores_perfectly(dataset):
    from spiral.config import EnvConfig, Renderer
    from spiral.envs.mujoco_scenes import MujocoScenesEnv, object_to_action, pixel_mse, score_scene

    truth = load_scene_descriptions(dataset)[3]
    target = load_mujoco_scenes(dataset, 64)[3:4]
    env = MujocoScenesEnv(EnvConfig(renderer=Renderer.MUJOCO, episode_length=len(truth.objects) + 1))
    try:
        env.reset(1)
        for obj in truth.objects:
            obs = env.step(torch.tensor([object_to_action(env.action_spec, obj)]))
        assert float(pixel_mse(obs.canvas, target)[0]) == 0.0
        assert score_scene(env.scenes[0], truth).f1 == 1.0
        assert float(pixel_mse(env.render_scene(truth._replace(objects=truth.objects[:-1]))[None], target)[0]) > 0.0
    finally:
        env.close()

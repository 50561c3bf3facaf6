"""Every shipped preset trains end to end through the same trainer (tiny budgets: seconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from spiral.config import PRESETS, MujocoSceneConfig, load_preset
from spiral.learning.trainer import SingleProcessTrainer

#: Shrinks any preset to a smoke run: a few environments, two updates, small canvases where allowed.
TINY = {"num_envs": 4, "total_updates": 2, "pretrain.updates": 0, "eval_every_updates": 2, "checkpoint_every_updates": 2, "log_every_updates": 1}


def _celeba_folder(root: Path) -> Path:
    """A CelebA-like `img_align_celeba/` of 178×218 JPEGs."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (178, 218), (40 * i, 200 - 30 * i, 90)).save(folder / f"{i + 1:06d}.jpg")
    return root


def _mujoco_scenes(root: Path) -> Path:
    from spiral.data.mujoco_scenes import DatasetSpec, generate_dataset

    generate_dataset(root, 6, DatasetSpec(seed=0, canvas_size=64, layout=MujocoSceneConfig()), workers=1, show_progress=False)
    return root


def data_path(preset: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | None:
    if preset == "default":
        return None
    if preset in ("mnist", "omniglot"):
        return request.getfixturevalue("datasets_dir") / preset
    if preset == "celeba":
        return _celeba_folder(tmp_path / "celeba")
    return _mujoco_scenes(tmp_path / "mujoco-scenes")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_and_evaluates(preset, tmp_path, request):
    overrides = {**TINY, "output_dir": str(tmp_path / "run")}
    path = data_path(preset, tmp_path, request)
    if path is not None:
        overrides["data.path"] = str(path)
    if preset == "celeba":
        overrides["data.held_out_fraction"] = 0.34
    cfg = load_preset(preset, overrides)
    result = SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    assert result.counters.updates == 2
    assert result.counters.frames == 2 * cfg.num_envs * (cfg.env.episode_length - 1)
    assert (result.output_dir / "checkpoints" / "latest.pt").is_file()
    assert result.final_eval_l2 is not None and 0.0 <= result.final_eval_l2 <= 1.0
    assert list((result.output_dir / "images").glob("reconstructions-*.png"))

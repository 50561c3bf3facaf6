"""PNG grids: layout of make_grid, files written by save_grid / save_sequence, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spiral.images import make_grid, save_grid, save_sequence


def test_make_grid_places_images_row_major_with_padding():
    images = torch.stack([torch.full((1, 4, 5), v) for v in (0.1, 0.2, 0.3)])
    grid = make_grid(images, nrow=2, pad=1, pad_value=0.9)
    assert grid.shape == (1, 2 * 5 + 1, 2 * 6 + 1)
    assert grid[0, 1, 1].item() == pytest.approx(0.1) and grid[0, 1, 7].item() == pytest.approx(0.2)
    assert grid[0, 6, 1].item() == pytest.approx(0.3) and grid[0, 6, 7].item() == pytest.approx(0.9)  # empty slot
    assert grid[0, 0, :].eq(0.9).all()


def test_default_grid_is_near_square():
    assert make_grid(torch.zeros(10, 3, 8, 8), pad=0).shape == (3, 3 * 8, 4 * 8)
    assert make_grid(torch.zeros(1, 1, 8, 8), pad=2).shape == (1, 12, 12)


def test_save_grid_writes_a_png_with_the_pixels(tmp_path):
    images = torch.zeros(2, 3, 6, 6)
    images[0, 0] = 1.0  # red
    images[1, 2, 2:4, 2:4] = 0.5
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=2, pad=0, scale=2)
    picture = np.asarray(Image.open(path))
    assert picture.shape == (12, 24, 3)
    assert picture[0, 0].tolist() == [255, 0, 0]
    assert picture[5, 12 + 5].tolist() == [0, 0, 128]


def test_save_grid_grayscale_is_an_l_image(tmp_path):
    path = save_grid(torch.rand(4, 1, 8, 8), tmp_path / "g.png")
    assert Image.open(path).mode == "L"


def test_save_sequence_puts_steps_in_columns(tmp_path):
    frames = torch.zeros(3, 2, 1, 4, 4)  # T=3 steps, N=2 images
    frames[2, 1] = 1.0  # last step of the second image
    picture = np.asarray(Image.open(save_sequence(frames, tmp_path / "s.png", pad=0)))
    assert picture.shape == (8, 12)
    assert picture[4:, 8:].min() == 255 and picture[:4].max() == 0 and picture[4:, :8].max() == 0


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(3, 8, 8), r"\[N, C, H, W\] tensor, got \[3, 8, 8\]"),
        (torch.zeros(2, 2, 8, 8), r"1 \(grayscale\) or 3 \(RGB\) channels, got 2"),
        (torch.zeros(0, 1, 8, 8), r"empty"),
    ],
)
def test_make_grid_rejects_bad_shapes(images, message):
    with pytest.raises(ValueError, match=message):
        make_grid(images)


def test_save_sequence_rejects_a_4d_tensor(tmp_path):
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\]"):
        save_sequence(torch.zeros(2, 1, 4, 4), tmp_path / "x.png")

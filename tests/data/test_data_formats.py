"""spiral.data loaders on tiny files built here in each original format (IDX gzip, Omniglot zip,
CelebA JPEG folder/zip, PNG folders), plus the split, the transforms and the shapes generator."""

from __future__ import annotations

import gzip
import io
import logging
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spiral.config import ColorMode, DataConfig, DatasetName, InkStyle
from spiral.data import DEFAULT_NUM_SHAPES, DatasetError, ImageDataset, Split, generate_shapes, load_dataset
from spiral.data.idx import encode_idx, read_idx
from spiral.data.splits import split_caps, split_indices

GRAY, RGB = ColorMode.GRAYSCALE, ColorMode.RGB
WOB, BOW = InkStyle.WHITE_ON_BLACK, InkStyle.BLACK_ON_WHITE


# ----------------------------------------------------------------------------- builders ---


def _digits(n: int, seed: int) -> np.ndarray:
    """MNIST-like uint8 [n, 28, 28]: a white bar on black whose position encodes the index."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        row = 4 + i % 20
        images[i, row : row + 4, 6:22] = 255
        images[i] += rng.integers(0, 3, size=(28, 28), dtype=np.uint8)  # make every image unique
    return images


def _write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(encode_idx(array)))
    return path


def _mnist_folder(folder: Path, n_test: int = 40, n_train: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", _digits(n_test, 1))
    _write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))
    if n_train is not None:
        _write_idx_gz(folder / "train-images-idx3-ubyte.gz", _digits(n_train, 2))
        _write_idx_gz(folder / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    return folder


def _glyph_png(seed: int, size: int = 105) -> bytes:
    """A 1-bit PNG like Omniglot's: white paper (True) with a black stroke."""
    rng = np.random.default_rng(seed)
    paper = np.ones((size, size), dtype=bool)
    top, left = rng.integers(10, size - 40, size=2)
    paper[top : top + 30, left : left + 8] = False
    buf = io.BytesIO()
    Image.fromarray(paper).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _omniglot_zip(path: Path, alphabets: int = 2, characters: int = 2, drawers: int = 3, seed: int = 0) -> Path:
    root = path.stem
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/", b"")
        for a in range(alphabets):
            for c in range(characters):
                for d in range(drawers):
                    name = f"{root}/Alphabet_{a}/character{c + 1:02d}/{a:02d}{c:02d}_{d + 1:02d}.png"
                    zf.writestr(name, _glyph_png(seed * 1000 + a * 100 + c * 10 + d))
    return path


def _face_jpeg(seed: int) -> bytes:
    """A 178×218 'face': red top and bottom bands (cropped away) around a blue centre square."""
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[:20] = (255, 0, 0)
    image[198:] = (255, 0, 0)
    image[20:198] = (0, 0, 200 + seed % 50)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _load(name: DatasetName, path: Path | None = None, color: ColorMode = GRAY, ink: InkStyle = WOB, size: int = 32, **kw):
    extra = {k: kw.pop(k) for k in ("max_images", "num_shapes") if k in kw}
    cfg = DataConfig(name=name, path=path, **kw)
    return load_dataset(cfg, size, color, ink, **extra)


def _assert_well_formed(ds: ImageDataset, channels: int, size: int) -> None:
    for images in (ds.train, ds.held_out):
        assert images.dtype == torch.float32
        assert images.shape[1:] == (channels, size, size)
        assert 0.0 <= images.min().item() and images.max().item() <= 1.0


def _rows(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


# ---------------------------------------------------------------------------------- IDX ---


def test_idx_round_trips_every_dtype(tmp_path):
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        path = _write_idx_gz(tmp_path / f"a_{np.dtype(dtype).name}.gz", array)
        np.testing.assert_array_equal(read_idx(path), array)


def test_idx_reads_a_decompressed_file(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    (tmp_path / "plain").write_bytes(encode_idx(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain", expected_ndim=1), array)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00\x01\x08\x03" + b"\x00" * 20, "bad IDX magic number 0x00010803"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "bad IDX magic number 0x00000701"),
        (b"\x00\x00", "too short to be an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated inside its header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01\x02", r"truncated: the header declares dimensions \[5\].*payload has 2 bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01" + b"\x01\x02", "longer than its header says"),
    ],
    ids=["bad-leading-bytes", "unknown-type", "too-short", "short-header", "short-payload", "long-payload"],
)
def test_idx_rejects_damaged_content(tmp_path, payload, message):
    path = tmp_path / "x-idx.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_rejects_truncated_gzip_and_garbage(tmp_path):
    whole = gzip.compress(encode_idx(_digits(5, 0)))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=r"cut\.gz is a truncated gzip file"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 5)
    with pytest.raises(DatasetError, match=r"bad\.gz is not a valid gzip file"):
        read_idx(tmp_path / "bad.gz")


def test_idx_checks_rank_and_type(tmp_path):
    path = _write_idx_gz(tmp_path / "labels.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError, match="declares 1 dimensions, expected 3"):
        read_idx(path, expected_ndim=3)
    path = _write_idx_gz(tmp_path / "ints.gz", np.zeros((2, 2, 2), dtype=np.int32))
    with pytest.raises(DatasetError, match="declares element type int32, expected uint8"):
        read_idx(path, expected_dtype=np.uint8)


# -------------------------------------------------------------------------------- MNIST ---


def test_mnist_without_train_images_splits_t10k_and_says_so(tmp_path, caplog):
    folder = _mnist_folder(tmp_path / "mnist", n_test=40)
    with caplog.at_level(logging.WARNING, logger="spiral.data.mnist"):
        ds = _load(DatasetName.MNIST, folder, held_out_fraction=0.25)
    assert "train-images-idx3-ubyte.gz is missing" in caplog.text
    _assert_well_formed(ds, 1, 32)
    assert (ds.num_train, ds.num_held_out) == (30, 10)
    assert not _rows(ds.train) & _rows(ds.held_out)
    # white on black natively: the background is black and the bar white
    assert ds.train[:, :, 0, 0].max().item() < 0.05 and ds.train.amax(dim=(1, 2, 3)).min().item() > 0.9


def test_mnist_with_train_images_uses_the_official_split(tmp_path):
    folder = _mnist_folder(tmp_path / "mnist", n_test=12, n_train=30)
    ds = _load(DatasetName.MNIST, folder)
    assert (ds.num_train, ds.num_held_out) == (30, 12)
    capped = _load(DatasetName.MNIST, folder, max_images=10, held_out_fraction=0.2)
    assert (capped.num_train, capped.num_held_out) == (8, 2)


def test_mnist_ink_and_colour_conversions(tmp_path):
    folder = _mnist_folder(tmp_path / "mnist")
    white = _load(DatasetName.MNIST, folder, ink=WOB)
    black = _load(DatasetName.MNIST, folder, ink=BOW)
    torch.testing.assert_close(black.train, 1.0 - white.train, atol=1e-6, rtol=0)
    rgb = _load(DatasetName.MNIST, folder, color=RGB)
    _assert_well_formed(rgb, 3, 32)
    torch.testing.assert_close(rgb.train, white.train.expand(-1, 3, -1, -1))


def test_mnist_missing_files_are_named_with_their_source(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist.*t10k-images-idx3-ubyte\.gz.*yann\.lecun\.com"):
        _load(DatasetName.MNIST, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz is missing.*train-labels-idx1-ubyte\.gz.*yann\.lecun\.com.*spiral data download mnist"):
        _load(DatasetName.MNIST, tmp_path / "empty")
    with pytest.raises(ValueError, match="data.path is required for dataset 'mnist'"):
        _load(DatasetName.MNIST, None)


def test_mnist_corrupt_and_mismatched_files_are_named(tmp_path):
    folder = _mnist_folder(tmp_path / "mnist", n_test=10)
    images = folder / "t10k-images-idx3-ubyte.gz"
    raw = encode_idx(_digits(10, 1))
    images.write_bytes(gzip.compress(b"\x50\x4b\x08\x03" + raw[4:]))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz has a bad IDX magic number 0x504b0803"):
        _load(DatasetName.MNIST, folder)
    images.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz is truncated.*payload has 7740 bytes"):
        _load(DatasetName.MNIST, folder)
    images.write_bytes(gzip.compress(raw))
    _write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(DatasetError, match="holds 9 labels but .* holds 10 images"):
        _load(DatasetName.MNIST, folder)


# ----------------------------------------------------------------------------- Omniglot ---


def test_omniglot_single_archive_is_split_and_converted(tmp_path):
    _omniglot_zip(tmp_path / "images_background_small1.zip")  # 12 glyphs
    ds = _load(DatasetName.OMNIGLOT, tmp_path, subset="images_background_small1", held_out_fraction=0.25)
    _assert_well_formed(ds, 1, 32)
    assert (ds.num_train, ds.num_held_out) == (9, 3)
    assert ds.name == "omniglot:images_background_small1"
    # native black strokes on white, converted to white on black: mostly dark, some bright
    assert ds.train.mean().item() < 0.2 and ds.train.amax(dim=(1, 2, 3)).min().item() > 0.9
    native = _load(DatasetName.OMNIGLOT, tmp_path, subset="images_background_small1.zip", ink=BOW, held_out_fraction=0.25)
    torch.testing.assert_close(native.train, 1.0 - ds.train, atol=1e-6, rtol=0)
    assert native.train[:, :, 0, 0].min().item() > 0.95  # white paper


def test_omniglot_train_and_held_out_archives(tmp_path):
    _omniglot_zip(tmp_path / "images_background_small1.zip", seed=1)
    _omniglot_zip(tmp_path / "images_background_small2.zip", alphabets=1, seed=2)
    ds = _load(DatasetName.OMNIGLOT, tmp_path, subset="images_background_small1:images_background_small2")
    assert (ds.num_train, ds.num_held_out) == (12, 6)
    one_file = _load(DatasetName.OMNIGLOT, tmp_path / "images_background_small2.zip", held_out_fraction=0.5)
    assert (one_file.num_train, one_file.num_held_out) == (3, 3)


def test_omniglot_default_is_background_vs_evaluation(tmp_path):
    _omniglot_zip(tmp_path / "images_background.zip", seed=3)
    alone = _load(DatasetName.OMNIGLOT, tmp_path, held_out_fraction=0.5)
    assert (alone.num_train, alone.num_held_out) == (6, 6)
    _omniglot_zip(tmp_path / "images_evaluation.zip", alphabets=1, characters=1, seed=4)
    official = _load(DatasetName.OMNIGLOT, tmp_path)
    assert (official.num_train, official.num_held_out) == (12, 3)


@pytest.mark.parametrize(
    ("subset", "message"),
    [
        ("images_evaluation", r"images_evaluation\.zip is missing in .*found: \['images_background_small1\.zip'\].*github\.com/brendenlake/omniglot"),
        ("a:b:c", "not an Omniglot subset: use 'ARCHIVE' or 'TRAIN_ARCHIVE:HELD_OUT_ARCHIVE'"),
        ("images_background_small1:images_background_small1", "trains and holds out the same archive"),
        (None, r"images_background\.zip is missing"),
    ],
    ids=["missing-archive", "bad-syntax", "same-archive", "no-default-archive"],
)
def test_omniglot_subset_errors(tmp_path, subset, message):
    _omniglot_zip(tmp_path / "images_background_small1.zip")
    with pytest.raises(DatasetError, match=message):
        _load(DatasetName.OMNIGLOT, tmp_path, subset=subset)


def test_omniglot_damaged_archives_name_the_file_or_member(tmp_path):
    archive = _omniglot_zip(tmp_path / "images_background_small1.zip")
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=r"images_background_small1\.zip is not a readable zip file.*truncated or damaged"):
        _load(DatasetName.OMNIGLOT, tmp_path, subset="images_background_small1")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images_background_small1/A/character01/0001_01.png", _glyph_png(0))
        zf.writestr("images_background_small1/A/character01/0001_02.png", b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match=r"cannot decode image 'images_background_small1/A/character01/0001_02\.png' in .*small1\.zip"):
        _load(DatasetName.OMNIGLOT, tmp_path, subset="images_background_small1")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", b"no images")
    with pytest.raises(DatasetError, match="holds no PNG images"):
        _load(DatasetName.OMNIGLOT, tmp_path, subset="images_background_small1")


# ------------------------------------------------------------------------------- CelebA ---


def _celeba_folder(root: Path, n: int = 10) -> Path:
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i + 1:06d}.jpg").write_bytes(_face_jpeg(i))
    return folder


def test_celeba_folder_is_centre_cropped_rgb(tmp_path):
    _celeba_folder(tmp_path)
    for path in (tmp_path, tmp_path / "img_align_celeba"):
        ds = _load(DatasetName.CELEBA, path, color=RGB, held_out_fraction=0.2)
        _assert_well_formed(ds, 3, 32)
        assert (ds.num_train, ds.num_held_out) == (8, 2)
        # the red bands above and below the 178×178 centre are cropped away: all blue, but for JPEG's
        # chroma bleeding into the edge rows (a squashed, uncropped face would keep 3 red rows each side)
        assert ds.train[:, 0, 1:-1].max().item() < 0.1 and ds.train[:, 0].mean().item() < 0.03
        assert ds.train[:, 2, 1:-1].min().item() > 0.7


def test_celeba_ink_does_not_invert_photos_and_grayscale_uses_luma(tmp_path):
    _celeba_folder(tmp_path)
    rgb = _load(DatasetName.CELEBA, tmp_path, color=RGB, ink=BOW)
    gray = _load(DatasetName.CELEBA, tmp_path, color=GRAY, ink=BOW)
    assert rgb.train[:, 2].mean().item() > 0.7  # not inverted
    expected = 0.299 * rgb.train[:, 0] + 0.587 * rgb.train[:, 1] + 0.114 * rgb.train[:, 2]
    torch.testing.assert_close(gray.train[:, 0], expected, atol=3 / 255, rtol=0)


def test_celeba_zip_and_official_partition(tmp_path):
    folder = _celeba_folder(tmp_path / "x", n=10)
    root = tmp_path / "CelebA"
    (root / "Img").mkdir(parents=True)
    (root / "Eval").mkdir()
    with zipfile.ZipFile(root / "Img" / "img_align_celeba.zip", "w") as zf:
        for jpg in sorted(folder.iterdir()):
            zf.write(jpg, f"img_align_celeba/{jpg.name}")
    ds = _load(DatasetName.CELEBA, root, color=RGB)
    assert (ds.num_train, ds.num_held_out) == (9, 1)  # no partition file: seeded split
    (root / "Eval" / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {0 if i < 6 else 1 + i % 2}\n" for i in range(10)))
    ds = _load(DatasetName.CELEBA, root, color=RGB)
    assert (ds.num_train, ds.num_held_out) == (6, 4)
    (root / "Eval" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(DatasetError, match=r"list_eval_partition\.txt line 2: expected '<image>\.jpg <0\|1\|2>'"):
        _load(DatasetName.CELEBA, root)
    (root / "Eval" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n")
    with pytest.raises(DatasetError, match="8 images in .* have no entry in list_eval_partition.txt"):
        _load(DatasetName.CELEBA, root)


def test_celeba_errors_name_the_layout_and_source(tmp_path):
    with pytest.raises(DatasetError, match=r"CelebA not found at .*img_align_celeba/ folder or img_align_celeba\.zip.*mmlab\.ie\.cuhk\.edu\.hk"):
        _load(DatasetName.CELEBA, tmp_path)
    folder = _celeba_folder(tmp_path, n=3)
    (folder / "000002.jpg").write_bytes(_face_jpeg(1)[:300])
    with pytest.raises(DatasetError, match=r"cannot decode image '000002\.jpg' in .*img_align_celeba"):
        _load(DatasetName.CELEBA, tmp_path)


# ------------------------------------------------------------------------------- folder ---


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def test_folder_is_recursive_sorted_and_resized(tmp_path):
    for i, rel in enumerate(["b/2.png", "a/1.PNG", "c/deep/3.jpeg", "0.jpg"]):
        value = 40 * (i + 1)
        image = np.full((50, 80), value, dtype=np.uint8)
        if rel.endswith(("jpg", "jpeg")):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=100)
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(buf.getvalue())
        else:
            _png(tmp_path / rel, image)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = _load(DatasetName.FOLDER, tmp_path, held_out_fraction=0.25, size=16, max_images=None)
    _assert_well_formed(ds, 1, 16)
    everything = torch.cat([ds.train, ds.held_out])
    levels = sorted(round(v * 255) for v in everything.mean(dim=(1, 2, 3)).tolist())
    assert levels == [40, 80, 120, 160]
    assert ds.name == f"folder:{tmp_path.name}"


def test_folder_ink_is_declared_by_subset(tmp_path):
    for i in range(4):
        image = np.full((20, 20), 255, dtype=np.uint8)
        image[5:15, 8 + i % 3] = 0  # black line art on white
        _png(tmp_path / f"{i}.png", image)
    natural = _load(DatasetName.FOLDER, tmp_path, ink=WOB)
    line_art = _load(DatasetName.FOLDER, tmp_path, ink=WOB, subset="black_on_white")
    assert natural.train.mean().item() > 0.8  # natural images are never inverted
    torch.testing.assert_close(line_art.train, 1.0 - natural.train, atol=1e-6, rtol=0)
    with pytest.raises(DatasetError, match=r"data.subset 'inverted' is not valid for dataset 'folder'.*\['white_on_black', 'black_on_white'\]"):
        _load(DatasetName.FOLDER, tmp_path, subset="inverted")


def test_folder_transparent_pixels_fill_with_paper(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent black
    for i in range(2):
        _png(tmp_path / f"{i}.png", rgba, "RGBA")
    assert _load(DatasetName.FOLDER, tmp_path, subset="black_on_white", ink=BOW).train.min().item() == 1.0
    assert _load(DatasetName.FOLDER, tmp_path, subset="white_on_black", ink=WOB).train.max().item() == 0.0


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="holds no images: looked recursively for .png, .jpg, .jpeg"):
        _load(DatasetName.FOLDER, tmp_path)
    with pytest.raises(DatasetError, match="does not exist or is not a directory"):
        _load(DatasetName.FOLDER, tmp_path / "missing")
    _png(tmp_path / "ok.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DatasetError, match=r"cannot decode image 'sub/bad\.png'"):
        _load(DatasetName.FOLDER, tmp_path)


# ------------------------------------------------------------------------------- shapes ---


def test_shapes_are_deterministic_and_seed_dependent():
    a, b, c = generate_shapes(50, 64, 7), generate_shapes(50, 64, 7), generate_shapes(50, 64, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == (50, 64, 64)


def test_shapes_look_like_thick_strokes():
    images = generate_shapes(300, 64, 0).astype(np.float32) / 255.0
    ink = images.mean(axis=(1, 2))
    assert ink.min() > 0.02 and ink.max() < 0.4  # never empty, never a blob
    assert np.all(images[:, :3, :].max(axis=(1, 2)) == 0) and np.all(images[:, :, -3:].max(axis=(1, 2)) == 0)  # margin
    # antialiased edges: intermediate grey levels exist, yet most ink is solid
    assert ((images > 0.05) & (images < 0.95)).mean() > 0.005 and (images > 0.95).mean() > 0.02
    assert len({img.tobytes() for img in images}) == 300 and ink.std() > 0.02  # varied, not a few templates


def test_shapes_default_dataset_is_fast_and_well_formed():
    started = time.perf_counter()
    ds = load_dataset(DataConfig(), 64, GRAY, WOB)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"shapes took {elapsed:.2f} s"  # ~0.8 s on one free core
    assert ds.num_train + ds.num_held_out == DEFAULT_NUM_SHAPES
    _assert_well_formed(ds, 1, 64)
    black = load_dataset(DataConfig(), 32, RGB, BOW, num_shapes=100)
    _assert_well_formed(black, 3, 32)
    assert black.train.mean().item() > 0.7  # black strokes on white paper


# ------------------------------------------------------------------- split and dataset ---


def test_split_is_deterministic_disjoint_and_complete():
    a = split_indices(1000, 0.1, seed=3)
    b = split_indices(1000, 0.1, seed=3)
    c = split_indices(1000, 0.1, seed=4)
    assert torch.equal(a.train, b.train) and torch.equal(a.held_out, b.held_out)
    assert not torch.equal(a.held_out, c.held_out)
    assert len(a.held_out) == 100 and len(a.train) == 900
    assert sorted(torch.cat([a.train, a.held_out]).tolist()) == list(range(1000))
    assert len(split_indices(2, 0.01, 0).held_out) == 1 and len(split_indices(2, 0.99, 0).train) == 1
    with pytest.raises(DatasetError, match="at least 2 images, got 1"):
        split_indices(1, 0.5, 0)
    assert split_caps(10, 0.25) == (8, 2) and split_caps(None, 0.1) == (None, None)


def test_loaded_split_depends_on_the_seed_only(tmp_path):
    folder = _mnist_folder(tmp_path / "mnist", n_test=40)
    a = _load(DatasetName.MNIST, folder, seed=1)
    b = _load(DatasetName.MNIST, folder, seed=1)
    c = _load(DatasetName.MNIST, folder, seed=2)
    assert torch.equal(a.held_out, b.held_out)
    assert _rows(a.held_out) != _rows(c.held_out)
    for ds in (a, c):
        assert not _rows(ds.train) & _rows(ds.held_out)


def test_sample_draws_from_the_named_split_reproducibly():
    train = torch.zeros(5, 1, 4, 4)
    held_out = torch.ones(3, 1, 4, 4)
    ds = ImageDataset("toy", train, held_out)
    batch = ds.sample(16, torch.Generator().manual_seed(0))
    assert batch.shape == (16, 1, 4, 4) and batch.dtype == torch.float32 and batch.max().item() == 0.0
    assert ds.sample(4, split=Split.HELD_OUT).min().item() == 1.0 and ds.sample(4, split="held_out").min().item() == 1.0
    first = ImageDataset("toy", torch.rand(50, 3, 4, 4), held_out.expand(-1, 3, -1, -1))
    torch.testing.assert_close(
        first.sample(8, torch.Generator().manual_seed(5)), first.sample(8, torch.Generator().manual_seed(5))
    )
    with pytest.raises(DatasetError, match="split must be one of \\['train', 'held_out'\\], got 'test'"):
        ds.sample(1, split="test")
    with pytest.raises(DatasetError, match="batch_size must be a positive integer, got 0"):
        ds.sample(0)


@pytest.mark.parametrize(
    ("train", "held_out", "message"),
    [
        (torch.zeros(2, 2, 4, 4), torch.zeros(1, 2, 4, 4), r"C = 1 \(grayscale\) or 3 \(RGB\), got shape \(2, 2, 4, 4\)"),
        (torch.full((2, 1, 4, 4), 1.5), torch.zeros(1, 1, 4, 4), "must lie in \\[0, 1\\], got min 1.5"),
        (torch.zeros(2, 1, 4, 4), torch.zeros(1, 1, 8, 8), r"train images are \(1, 4, 4\) but held-out images are \(1, 8, 8\)"),
        (torch.zeros(0, 1, 4, 4), torch.zeros(1, 1, 4, 4), "at least one train and one held-out image"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.int64), torch.zeros(1, 1, 4, 4), "uint8 or float in \\[0, 1\\], got dtype torch.int64"),
    ],
    ids=["channels", "range", "mismatch", "empty", "dtype"],
)
def test_image_dataset_validates(train, held_out, message):
    with pytest.raises(DatasetError, match=message):
        ImageDataset("toy", train, held_out)


def test_load_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="canvas_size must be ≥ 8, got 4"):
        load_dataset(DataConfig(), 4, GRAY, WOB)
    with pytest.raises(DatasetError, match="max_images must be ≥ 2"):
        load_dataset(DataConfig(), 16, GRAY, WOB, max_images=1)
    with pytest.raises(DatasetError, match="data.subset is not used by dataset 'shapes'"):
        load_dataset(DataConfig(subset="x"), 16, GRAY, WOB, num_shapes=10)

"""spiral.data: the images the agent learns to paint.

One entry point, :func:`load_dataset`, turns a :class:`~spiral.config.DataConfig` into an
:class:`ImageDataset` (float32 ``[N, C, H, W]`` train and held-out tensors in [0, 1], resized to the
canvas, in the requested colour mode and ink style). Datasets: ``shapes`` (built-in, procedural,
offline), MNIST (IDX gzip files), Omniglot (zip archives), CelebA (aligned JPEGs), any image folder,
and MuJoCo Scenes (rendered by ``spiral.data.mujoco_scenes``). ``spiral data download`` fetches MNIST
and Omniglot.
"""

from spiral.data.base import DatasetError, ImageDataset, Split
from spiral.data.registry import load_dataset
from spiral.data.shapes import DEFAULT_NUM_SHAPES, generate_shapes

__all__ = ["DEFAULT_NUM_SHAPES", "DatasetError", "ImageDataset", "Split", "generate_shapes", "load_dataset"]

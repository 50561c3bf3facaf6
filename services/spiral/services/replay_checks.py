"""What the replay server accepts: the images of *this* job, with every number in range.

The replay buffer stores what actors insert and hands it to the discriminator learner as fakes, and
its checkpoint carries the items across restarts, so one bad insert used to be permanent: 16×16
images without targets in a 32×32 conditional job crashed the critic learner on every restart (the
items were in ``replay.ckpt``), and NaN fakes turned the critic's weights into NaN. So every insert
is checked against the job (:class:`ImageExpectations`, from its config) before it becomes an item,
and a restored checkpoint keeps only the items that pass the same check.

Called by :mod:`spiral.services.replay_service`; pure (no gRPC).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from spiral.config import Mode, TrainConfig
from spiral.errors import InvalidArgumentError
from spiral.replay.table import ItemData
from spiral.services.tensor_codec import ImageBatch

#: Items one Insert request may carry, and samples one Sample request may ask for: num_envs' bound.
#: (A Sample of 2^32 − 1 items used to loop under the table lock while memory grew ~30 MB/s.)
MAX_ITEMS_PER_REQUEST = 4096
#: The longest wait a request may ask for (its ``timeout_seconds``); clients use ``rpc_deadline_seconds``.
MAX_TIMEOUT_SECONDS = 3600.0
#: Longest table name accepted in a request (and echoed in an error).
MAX_TABLE_NAME_BYTES = 256
#: Table names one Info request may list.
MAX_TABLES_PER_INFO = 64

CANVAS_FIELD = "canvas"
TARGET_FIELD = "target"


class ImageExpectations(NamedTuple):
    """The images of one job: C×H×W of a canvas, and whether items carry their target."""

    num_channels: int
    canvas_size: int
    with_targets: bool  # conditional jobs: the critic sees (target, canvas) pairs

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> ImageExpectations:
        size = cfg.env.canvas_size
        return cls(cfg.canvas_bytes // (size * size), size, cfg.mode == Mode.CONDITIONAL)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_channels, self.canvas_size, self.canvas_size)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def _check_values(field: str, images: torch.Tensor) -> None:
    # UINT8 images decode into [0, 1] by construction; FLOAT32 ones must already be there.
    if images.dtype == torch.uint8:
        return
    if not bool(torch.isfinite(images).all()):
        raise InvalidArgumentError(f"{field} holds NaN or infinite values")
    bad = (images < 0) | (images > 1)
    if bool(bad.any()):
        raise InvalidArgumentError(f"{field} holds {float(images[bad].flatten()[0]):g}, outside [0, 1]")


def check_images(batch: ImageBatch, expect: ImageExpectations, *, field: str = "InsertRequest.images") -> None:
    """Refuse images this job's critic cannot train on.

    Raises:
        InvalidArgumentError: no images or more than :data:`MAX_ITEMS_PER_REQUEST`; canvases that
            are not C×H×W of this job (env.color, env.canvas_size); targets missing in a
            conditional job, present in an unconditional one, or of another shape; a FLOAT32 value
            that is not finite or outside [0, 1]. The message names the field and what is valid.
    """
    n = len(batch)
    if n < 1:
        raise InvalidArgumentError(f"{field}.canvases holds no images (N = 0)")
    if n > MAX_ITEMS_PER_REQUEST:
        raise InvalidArgumentError(f"{field}.canvases holds N = {n} images; at most {MAX_ITEMS_PER_REQUEST} per request")
    got = tuple(batch.canvases.shape[1:])
    if got != expect.shape:
        raise InvalidArgumentError(
            f"{field}.canvases are {_shape_text(got)} but this job's canvases are {_shape_text(expect.shape)} "
            "(C×H×W: env.color, env.canvas_size)"
        )
    if expect.with_targets and batch.targets is None:
        raise InvalidArgumentError(f"{field}.targets is missing: this job trains mode 'conditional', whose critic sees (target, canvas) pairs")
    if not expect.with_targets and batch.targets is not None:
        raise InvalidArgumentError(f"{field}.targets must be unset: this job trains mode 'unconditional' (no targets)")
    if batch.targets is not None and tuple(batch.targets.shape[1:]) != expect.shape:
        raise InvalidArgumentError(f"{field}.targets are {_shape_text(tuple(batch.targets.shape[1:]))}, expected {_shape_text(expect.shape)}")
    _check_values(f"{field}.canvases", batch.canvases)
    if batch.targets is not None:
        _check_values(f"{field}.targets", batch.targets)


def item_fits(item: ItemData, expect: ImageExpectations) -> bool:
    """Whether a stored item (e.g. restored from a checkpoint) is one this job's inserts would accept."""
    canvas = item.get(CANVAS_FIELD)
    target = item.get(TARGET_FIELD)
    if not isinstance(canvas, torch.Tensor) or set(item) - {CANVAS_FIELD, TARGET_FIELD}:
        return False
    batch = ImageBatch(canvas[None], None if target is None else target[None])
    try:
        check_images(batch, expect, field="item")
    except InvalidArgumentError:
        return False
    return True


def check_count(value: int, field: str) -> None:
    """Raises: InvalidArgumentError: ``value`` outside [1, MAX_ITEMS_PER_REQUEST] (names the field)."""
    if not 1 <= value <= MAX_ITEMS_PER_REQUEST:
        raise InvalidArgumentError(f"{field} must lie in [1, {MAX_ITEMS_PER_REQUEST}], got {value}")


def check_timeout(value: float, field: str) -> None:
    """Raises: InvalidArgumentError: not finite, negative or above :data:`MAX_TIMEOUT_SECONDS`."""
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMEOUT_SECONDS:
        raise InvalidArgumentError(f"{field} must lie in [0, {MAX_TIMEOUT_SECONDS:g}] seconds (0 = server default), got {value:g}")


def check_table_name(name: str, field: str) -> None:
    """Raises: InvalidArgumentError: a name over :data:`MAX_TABLE_NAME_BYTES` bytes (not echoed back)."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_TABLE_NAME_BYTES:
        raise InvalidArgumentError(f"{field} is {size} bytes long; table names have at most {MAX_TABLE_NAME_BYTES}")

"""Tensor, canvas, trajectory, image and weights codecs: exact round trips and clear rejections."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra.numpy import array_shapes, arrays

from spiral.errors import InvalidArgumentError
from spiral.services.tensor_codec import (
    CanvasEncoding,
    ImageBatch,
    TrajectoryData,
    WeightsAssembler,
    decode_canvas,
    encode_canvas,
    images_from_proto,
    images_to_proto,
    state_dict_from_chunks,
    state_dict_to_chunks,
    tensor_from_proto,
    tensor_to_proto,
    trajectory_from_proto,
    trajectory_to_proto,
)
from spiral.v1 import tensor_pb2

ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=[str(d).removeprefix("torch.") for d in ALL_DTYPES])
def test_every_dtype_round_trips_exactly(dtype: torch.dtype) -> None:
    source = (torch.randn(3, 4, 5) * 50).to(dtype)
    back = tensor_from_proto(tensor_to_proto(source))
    assert back.dtype == dtype and back.shape == source.shape and torch.equal(back, source)


def test_non_contiguous_and_scalar_tensors_round_trip() -> None:
    t = torch.arange(24.0).reshape(4, 6).t()[1:, ::2]
    assert torch.equal(tensor_from_proto(tensor_to_proto(t)), t)
    scalar = torch.tensor(3.5)
    assert torch.equal(tensor_from_proto(tensor_to_proto(scalar)), scalar)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, array_shapes(min_dims=0, max_dims=4, max_side=6), elements=st.floats(-1e6, 1e6, width=32)))
def test_float32_arrays_round_trip(array: np.ndarray) -> None:
    t = torch.from_numpy(array.copy())
    assert torch.equal(tensor_from_proto(tensor_to_proto(t)), t)


def test_decoded_tensor_is_writable_and_independent() -> None:
    msg = tensor_to_proto(torch.zeros(4))
    t = tensor_from_proto(msg)
    t += 1
    assert torch.equal(tensor_from_proto(msg), torch.zeros(4))


@pytest.mark.parametrize(
    "msg, kwargs, want",
    [
        (tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[2, 3], data=b"\0" * 20), {}, r"x\.data has 20 bytes but dtype DTYPE_FLOAT32 with shape \[2, 3\] needs 24 bytes"),
        (tensor_pb2.Tensor(dtype=0, shape=[1], data=b"\0"), {}, r"x\.dtype is DTYPE_UNSPECIFIED; valid dtypes: DTYPE_FLOAT32"),
        (tensor_pb2.Tensor(dtype=77, shape=[1], data=b"\0"), {}, r"x\.dtype is unknown DType 77"),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_UINT8, shape=[-1], data=b""), {}, r"x\.shape \[-1\] has a negative dimension"),
        (
            tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[243587832, 102776655817, 0, 102776655817], data=b""),
            {},
            r"x\.shape \[243587832, 102776655817, 0, 102776655817\] spans more than 2147483648 elements \(zero dimensions aside\)",
        ),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_BOOL, shape=[2], data=b"\x01\x02"), {}, r"x: DTYPE_BOOL bytes must be 0 or 1"),
        (tensor_to_proto(torch.zeros(2, 3)), {"shape": [2, None, 4]}, r"x\.shape is \[2, 3\], expected \[2, \*, 4\]"),
        (tensor_to_proto(torch.zeros(2)), {"dtypes": [torch.int64]}, r"x\.dtype is DTYPE_FLOAT32; this field accepts DTYPE_INT64"),
    ],
    ids=["bytes_vs_shape", "unspecified_dtype", "unknown_dtype", "negative_dim", "huge_empty_shape", "bool_not_01", "shape", "dtype_not_accepted"],
)
def test_malformed_tensors_are_rejected_with_the_field_and_values(msg, kwargs, want) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgumentError, match=want):
        tensor_from_proto(msg, field="x", **kwargs)


def test_complex_tensors_cannot_be_sent() -> None:
    with pytest.raises(InvalidArgumentError, match=r"complex64 cannot be sent; valid dtypes: float32"):
        tensor_to_proto(torch.zeros(2, dtype=torch.complex64))


def test_uint8_canvas_quantisation_error_is_at_most_half_a_level() -> None:
    canvas = torch.rand(2, 1, 64, 64)
    wire = encode_canvas(canvas, CanvasEncoding.UINT8)
    assert wire.dtype == torch.uint8
    assert (decode_canvas(wire) - canvas).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.equal(decode_canvas(encode_canvas(canvas, CanvasEncoding.FLOAT32)), canvas)


def make_trajectory(t: int = 3, b: int = 2, k: int = 4, **extra) -> TrajectoryData:  # noqa: ANN003
    gen = torch.Generator().manual_seed(0)
    fields = dict(
        canvas=torch.rand(t, b, 1, 8, 8, generator=gen),
        step=torch.arange(t).repeat(b, 1).t().contiguous(),
        action_mask=torch.ones(t, b, k),
        actions=torch.randint(0, 10, (t, b, k), generator=gen),
        behaviour_log_probs=torch.randn(t, b, generator=gen),
        final_canvas=torch.rand(b, 1, 8, 8, generator=gen),
        episode_length=torch.full((b,), t + 1),
        policy_version=7,
        action_names=("flag", "end", "control", "pressure")[:k],
        actor_id="actor-0",
    )
    fields.update(extra)
    return TrajectoryData(**fields)


@pytest.mark.parametrize("encoding", list(CanvasEncoding), ids=[e.value for e in CanvasEncoding])
def test_trajectory_round_trip(encoding: CanvasEncoding) -> None:
    traj = make_trajectory(rewards=torch.randn(3, 2), targets=torch.rand(2, 1, 8, 8))
    back = trajectory_from_proto(trajectory_to_proto(traj, encoding))
    tol = 0.5 / 255 + 1e-6 if encoding == CanvasEncoding.UINT8 else 0.0
    for name in ("canvas", "final_canvas", "targets"):
        assert (getattr(back, name) - getattr(traj, name)).abs().max() <= tol, name
    for name in ("step", "action_mask", "actions", "behaviour_log_probs", "episode_length", "rewards"):
        assert torch.equal(getattr(back, name), getattr(traj, name)), name
    assert (back.policy_version, back.action_names, back.actor_id) == (7, traj.action_names, "actor-0")
    assert back.noise is None and back.target_indices is None
    assert (back.num_steps, back.batch_size, back.num_frames) == (3, 2, 6)


def test_trajectory_with_noise_or_indices() -> None:
    back = trajectory_from_proto(trajectory_to_proto(make_trajectory(noise=torch.randn(2, 10))))
    assert back.noise is not None and back.noise.shape == (2, 10) and back.targets is None
    back = trajectory_from_proto(trajectory_to_proto(make_trajectory(target_indices=torch.tensor([4, 9]))))
    assert back.target_indices is not None and back.target_indices.tolist() == [4, 9]


def test_trajectory_rejects_inconsistent_shapes_with_the_field() -> None:
    msg = trajectory_to_proto(make_trajectory())
    msg.final_canvas.CopyFrom(tensor_to_proto(torch.zeros(3, 1, 8, 8, dtype=torch.uint8)))
    with pytest.raises(InvalidArgumentError, match=r"Trajectory\.final_canvas\.shape is \[3, 1, 8, 8\], expected \[2, 1, 8, 8\]"):
        trajectory_from_proto(msg)
    msg = trajectory_to_proto(make_trajectory())
    del msg.action_names[:]
    with pytest.raises(InvalidArgumentError, match=r"action_names has 0 names \[\] but actions has K = 4 columns"):
        trajectory_from_proto(msg)
    msg = trajectory_to_proto(make_trajectory())
    msg.ClearField("actions")
    with pytest.raises(InvalidArgumentError, match=r"Trajectory\.actions is missing"):
        trajectory_from_proto(msg)
    with pytest.raises(InvalidArgumentError, match="at most one of targets, target_indices, noise"):
        trajectory_to_proto(make_trajectory(noise=torch.randn(2, 10), target_indices=torch.tensor([1, 2])))


def test_images_keep_the_wire_dtype_and_validate_targets() -> None:
    batch = ImageBatch(torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8))
    back = images_from_proto(images_to_proto(batch))
    assert back.canvases.dtype == torch.uint8 and back.targets is not None
    assert (back.decoded().canvases - batch.canvases).abs().max() <= 0.5 / 255 + 1e-6
    bad = images_to_proto(ImageBatch(torch.rand(5, 1, 8, 8), torch.rand(4, 1, 8, 8)))
    with pytest.raises(InvalidArgumentError, match=r"images\.targets\.shape is \[4, 1, 8, 8\], expected \[5, \*, 8, 8\]"):
        images_from_proto(bad)


def test_a_10_mb_state_dict_streams_in_chunks_and_round_trips_exactly() -> None:
    state = {
        "encoder.weight": torch.randn(1024, 1024),  # 4 MiB
        "encoder.bias": torch.randn(1024),
        "head.weight": torch.randn(1536, 1024),  # 6 MiB
        "step": torch.tensor(12, dtype=torch.int64),
        "half": torch.randn(17).to(torch.bfloat16),
    }
    chunk_bytes = 1024 * 1024
    chunks = state_dict_to_chunks(5, state, chunk_bytes)
    assert len(chunks) >= 10 and all(len(c.data) <= chunk_bytes for c in chunks)
    assert all(c.ByteSize() < 4 * 1024 * 1024 for c in chunks), "every message fits gRPC's 4 MB default"
    weights = state_dict_from_chunks(chunks)
    assert weights.version == 5 and list(weights.state_dict) == list(state)
    assert all(torch.equal(weights.state_dict[k], v) for k, v in state.items())


def test_assembler_rejects_reordered_or_corrupted_chunks() -> None:
    chunks = state_dict_to_chunks(1, {"w": torch.randn(1000)}, 1024)
    assembler = WeightsAssembler()
    assembler.add(chunks[0])
    with pytest.raises(InvalidArgumentError, match="chunk index 2 out of order \\(expected 1\\)"):
        assembler.add(chunks[2])
    corrupted = [tensor_pb2.WeightsChunk() for _ in chunks]
    for src, dst in zip(chunks, corrupted):
        dst.CopyFrom(src)
    corrupted[1].data = b"\0" * len(corrupted[1].data)
    with pytest.raises(InvalidArgumentError, match="sha256 .* does not match"):
        state_dict_from_chunks(corrupted)
    with pytest.raises(InvalidArgumentError, match="ended before the last chunk"):
        state_dict_from_chunks(chunks[:-1])


def test_trajectory_from_another_protocol_version_is_refused() -> None:
    from spiral.errors import FailedPreconditionError

    msg = trajectory_to_proto(make_trajectory())
    msg.protocol_version = 2
    with pytest.raises(FailedPreconditionError, match=r"Trajectory\.protocol_version is 2 but this server speaks"):
        trajectory_from_proto(msg)
    assert trajectory_from_proto(msg, check_version=False).num_frames == 6

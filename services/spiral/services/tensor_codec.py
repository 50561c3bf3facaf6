"""torch ⇄ ``spiral.v1`` messages: tensors, canvases, trajectories, images and chunked weights.

Pure conversion functions, shared by every service and client. Decoding validates what arrives
from the network (dtype known, byte count = prod(shape) × itemsize, shapes consistent across a
trajectory) and raises :class:`~spiral.errors.InvalidArgumentError` naming the field,
the value and what is valid — the server turns that into INVALID_ARGUMENT.

Wire conventions: bytes are row-major little-endian; canvases travel as UINT8
(``round(x × 255)``, 4× fewer bytes, quantisation error ≤ 1/510) or FLOAT32 (exact).
"""

from __future__ import annotations

import enum
import hashlib
import math
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import torch

from spiral.errors import InvalidArgumentError
from spiral.services.errors import check_protocol_version
from spiral.v1 import PROTOCOL_VERSION, replay_pb2, tensor_pb2, trajectory_pb2

# ------------------------------------------------------------------------------------ tensors ---

_DTYPES: tuple[tuple[tensor_pb2.DType, torch.dtype, np.dtype], ...] = (
    (tensor_pb2.DTYPE_FLOAT32, torch.float32, np.dtype("<f4")),
    (tensor_pb2.DTYPE_FLOAT64, torch.float64, np.dtype("<f8")),
    (tensor_pb2.DTYPE_FLOAT16, torch.float16, np.dtype("<f2")),
    # numpy has no bfloat16: the 16-bit patterns travel as int16 and are re-viewed on arrival.
    (tensor_pb2.DTYPE_BFLOAT16, torch.bfloat16, np.dtype("<i2")),
    (tensor_pb2.DTYPE_UINT8, torch.uint8, np.dtype("u1")),
    (tensor_pb2.DTYPE_INT8, torch.int8, np.dtype("i1")),
    (tensor_pb2.DTYPE_INT16, torch.int16, np.dtype("<i2")),
    (tensor_pb2.DTYPE_INT32, torch.int32, np.dtype("<i4")),
    (tensor_pb2.DTYPE_INT64, torch.int64, np.dtype("<i8")),
    (tensor_pb2.DTYPE_BOOL, torch.bool, np.dtype("?")),
)
_TORCH_TO_PROTO = {t: p for p, t, _ in _DTYPES}
_PROTO_TO_TORCH = {p: t for p, t, _ in _DTYPES}
_PROTO_TO_NUMPY = {p: n for p, _, n in _DTYPES}


def _dtype_name(code: int) -> str:
    try:
        return tensor_pb2.DType.Name(code)
    except ValueError:
        return f"unknown DType {code}"


def tensor_to_proto(tensor: torch.Tensor) -> tensor_pb2.Tensor:
    """Encode a tensor (any device, any strides) as a ``spiral.v1.Tensor``.

    Raises:
        InvalidArgumentError: the dtype has no wire encoding (the message lists those that do).
    """
    code = _TORCH_TO_PROTO.get(tensor.dtype)
    if code is None:
        valid = ", ".join(str(t).removeprefix("torch.") for t in _TORCH_TO_PROTO)
        raise InvalidArgumentError(f"tensor dtype {tensor.dtype} cannot be sent; valid dtypes: {valid}")
    t = tensor.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return tensor_pb2.Tensor(dtype=code, shape=list(t.shape), data=t.numpy().tobytes())


#: Elements a decoded shape may span, counting only its non-zero dimensions (2³¹: far above any message).
MAX_ELEMENTS = 2**31


def tensor_from_proto(
    message: tensor_pb2.Tensor,
    *,
    field: str = "tensor",
    dtypes: Iterable[torch.dtype] | None = None,
    shape: Iterable[int | None] | None = None,
) -> torch.Tensor:
    """Decode and validate a ``spiral.v1.Tensor`` into a fresh (writable, CPU) tensor.

    Args:
        field: the message field's name, used in error messages.
        dtypes: accepted dtypes (None = any known one).
        shape: expected shape, ``None`` entries matching any size (None = any shape).

    Raises:
        InvalidArgumentError: unknown or unaccepted dtype, negative dimension, a byte count that
            does not match dtype × shape, BOOL bytes other than 0/1, or an unexpected shape.
    """
    code = message.dtype
    torch_dtype = _PROTO_TO_TORCH.get(code)
    if torch_dtype is None:
        valid = ", ".join(tensor_pb2.DType.Name(p) for p in _PROTO_TO_TORCH)
        raise InvalidArgumentError(f"{field}.dtype is {_dtype_name(code)}; valid dtypes: {valid}")
    if dtypes is not None:
        accepted = tuple(dtypes)
        if torch_dtype not in accepted:
            names = ", ".join(tensor_pb2.DType.Name(_TORCH_TO_PROTO[d]) for d in accepted)
            raise InvalidArgumentError(f"{field}.dtype is {_dtype_name(code)}; this field accepts {names}")
    dims = tuple(int(d) for d in message.shape)
    if any(d < 0 for d in dims):
        raise InvalidArgumentError(f"{field}.shape {list(dims)} has a negative dimension")
    # A zero anywhere makes the byte count 0 whatever the other dimensions, but numpy still refuses
    # a shape whose non-zero dimensions multiply past what it can index (fuzzing found
    # [243587832, 102776655817, 0, …]): bound them, so such a shape is a clear INVALID_ARGUMENT.
    if math.prod(d for d in dims if d) > MAX_ELEMENTS:
        raise InvalidArgumentError(f"{field}.shape {list(dims)} spans more than {MAX_ELEMENTS} elements (zero dimensions aside)")
    np_dtype = _PROTO_TO_NUMPY[code]
    expected = math.prod(dims) * np_dtype.itemsize
    if len(message.data) != expected:
        raise InvalidArgumentError(
            f"{field}.data has {len(message.data)} bytes but dtype {_dtype_name(code)} with shape "
            f"{list(dims)} needs {expected} bytes (prod(shape) × {np_dtype.itemsize})"
        )
    if shape is not None:
        want = tuple(shape)
        if len(want) != len(dims) or any(w is not None and w != d for w, d in zip(want, dims, strict=True)):
            pretty = "[" + ", ".join("*" if w is None else str(w) for w in want) + "]"
            raise InvalidArgumentError(f"{field}.shape is {list(dims)}, expected {pretty}")
    array = np.frombuffer(message.data, dtype=np_dtype)
    if code == tensor_pb2.DTYPE_BOOL and array.size and int(array.view(np.uint8).max()) > 1:
        raise InvalidArgumentError(f"{field}: DTYPE_BOOL bytes must be 0 or 1")
    # The copy makes the tensor writable and independent of the message's buffer.
    result = torch.from_numpy(array.reshape(dims).copy())
    if torch_dtype == torch.bfloat16:
        result = result.view(torch.bfloat16)
    return result


# ----------------------------------------------------------------------------------- canvases ---


class CanvasEncoding(str, enum.Enum):
    """How canvases (values in [0, 1]) travel."""

    UINT8 = "uint8"  # round(x × 255): 4× fewer bytes, error ≤ 1/510
    FLOAT32 = "float32"  # exact


def encode_canvas(canvas: torch.Tensor, encoding: CanvasEncoding = CanvasEncoding.UINT8) -> torch.Tensor:
    """Float canvas in [0, 1] → the tensor that goes on the wire (values outside are clamped)."""
    if encoding == CanvasEncoding.UINT8:
        return (canvas.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return canvas.detach().float()


def decode_canvas(wire: torch.Tensor) -> torch.Tensor:
    """UINT8 or FLOAT32 wire canvas → float32 in [0, 1]."""
    if wire.dtype == torch.uint8:
        return wire.float().div_(255.0)
    return wire.float()


_CANVAS_DTYPES = (torch.uint8, torch.float32)


# ------------------------------------------------------------------------------- trajectories ---


class TrajectoryData(NamedTuple):
    """B episodes of T actions each, time-major; observation t is what action t was chosen from.

    canvas:               float32 ``[T, B, C, H, W]`` in [0, 1].
    step:                 int64 ``[T, B]``.
    action_mask:          float32 ``[T, B, K]`` (mask of the previous action).
    actions:              int64 ``[T, B, K]``, columns in ``action_names`` order.
    behaviour_log_probs:  float32 ``[T, B]``.
    final_canvas:         float32 ``[B, C, H, W]``: the canvas after the last action.
    episode_length:       int64 ``[B]``.
    rewards:              float32 ``[T, B]`` or None (the learner computes them).
    targets:              ``[B, C', H, W]`` float32 target images, or None.
    target_indices:       int64 ``[B]`` dataset indices of the targets, or None.
    noise:                float32 ``[B, Z]`` (unconditional), or None.
    searched:             bool ``[B]``: episodes a search played, or None (none were).
    At most one of targets / target_indices / noise is set.
    """

    canvas: torch.Tensor
    step: torch.Tensor
    action_mask: torch.Tensor
    actions: torch.Tensor
    behaviour_log_probs: torch.Tensor
    final_canvas: torch.Tensor
    episode_length: torch.Tensor
    policy_version: int
    action_names: tuple[str, ...]
    rewards: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    target_indices: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    actor_id: str = ""
    searched: torch.Tensor | None = None

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[1])

    @property
    def num_frames(self) -> int:
        """T × B: environment steps this trajectory holds."""
        return self.num_steps * self.batch_size


def trajectory_to_proto(traj: TrajectoryData, encoding: CanvasEncoding = CanvasEncoding.UINT8) -> trajectory_pb2.Trajectory:
    """Encode a trajectory; canvases (and target images) use ``encoding``.

    Raises:
        InvalidArgumentError: more than one of targets / target_indices / noise is set, or a
            tensor fails :func:`trajectory_from_proto`'s checks (validated here so that a bad
            trajectory fails at the actor, not at the learner).
    """
    conditions = [n for n in ("targets", "target_indices", "noise") if getattr(traj, n) is not None]
    if len(conditions) > 1:
        raise InvalidArgumentError(f"a trajectory carries at most one of targets, target_indices, noise; got {conditions}")
    msg = trajectory_pb2.Trajectory(
        protocol_version=PROTOCOL_VERSION,
        actor_id=traj.actor_id,
        policy_version=int(traj.policy_version),
        action_names=list(traj.action_names),
        canvas=tensor_to_proto(encode_canvas(traj.canvas, encoding)),
        step=tensor_to_proto(traj.step.long()),
        action_mask=tensor_to_proto(traj.action_mask.float()),
        actions=tensor_to_proto(traj.actions.long()),
        behaviour_log_probs=tensor_to_proto(traj.behaviour_log_probs.float()),
        final_canvas=tensor_to_proto(encode_canvas(traj.final_canvas, encoding)),
        episode_length=tensor_to_proto(traj.episode_length.long()),
    )
    if traj.rewards is not None:
        msg.rewards.CopyFrom(tensor_to_proto(traj.rewards.float()))
    if traj.targets is not None:
        msg.targets.CopyFrom(tensor_to_proto(encode_canvas(traj.targets, encoding)))
    elif traj.target_indices is not None:
        msg.target_indices.CopyFrom(tensor_to_proto(traj.target_indices.long()))
    elif traj.noise is not None:
        msg.noise.CopyFrom(tensor_to_proto(traj.noise.float()))
    if traj.searched is not None:
        msg.searched.CopyFrom(tensor_to_proto(traj.searched.bool()))
    _validate_trajectory(msg)
    return msg


def _validate_trajectory(msg: trajectory_pb2.Trajectory) -> TrajectoryData:
    for name in ("canvas", "step", "action_mask", "actions", "behaviour_log_probs", "final_canvas", "episode_length"):
        if not msg.HasField(name):
            raise InvalidArgumentError(f"Trajectory.{name} is missing (required)")
    actions = tensor_from_proto(msg.actions, field="Trajectory.actions", dtypes=[torch.int64])
    if actions.dim() != 3:
        raise InvalidArgumentError(f"Trajectory.actions must be [T, B, K], got shape {list(actions.shape)}")
    t, b, k = actions.shape
    if len(msg.action_names) != k:
        raise InvalidArgumentError(
            f"Trajectory.action_names has {len(msg.action_names)} names {list(msg.action_names)} but actions has K = {k} columns"
        )
    canvas = tensor_from_proto(msg.canvas, field="Trajectory.canvas", dtypes=_CANVAS_DTYPES, shape=[t, b, None, None, None])
    c, h, w = canvas.shape[2:]
    traj = TrajectoryData(
        canvas=decode_canvas(canvas),
        step=tensor_from_proto(msg.step, field="Trajectory.step", dtypes=[torch.int64], shape=[t, b]),
        action_mask=tensor_from_proto(msg.action_mask, field="Trajectory.action_mask", dtypes=[torch.float32], shape=[t, b, k]),
        actions=actions,
        behaviour_log_probs=tensor_from_proto(msg.behaviour_log_probs, field="Trajectory.behaviour_log_probs", dtypes=[torch.float32], shape=[t, b]),
        final_canvas=decode_canvas(tensor_from_proto(msg.final_canvas, field="Trajectory.final_canvas", dtypes=_CANVAS_DTYPES, shape=[b, c, h, w])),
        episode_length=tensor_from_proto(msg.episode_length, field="Trajectory.episode_length", dtypes=[torch.int64], shape=[b]),
        policy_version=int(msg.policy_version),
        action_names=tuple(msg.action_names),
        rewards=tensor_from_proto(msg.rewards, field="Trajectory.rewards", dtypes=[torch.float32], shape=[t, b]) if msg.HasField("rewards") else None,
        actor_id=msg.actor_id,
    )
    if msg.HasField("searched"):
        traj = traj._replace(searched=tensor_from_proto(msg.searched, field="Trajectory.searched", dtypes=[torch.bool], shape=[b]))
    which = msg.WhichOneof("condition")
    if which == "targets":
        targets = tensor_from_proto(msg.targets, field="Trajectory.targets", dtypes=_CANVAS_DTYPES, shape=[b, None, h, w])
        traj = traj._replace(targets=decode_canvas(targets))
    elif which == "target_indices":
        traj = traj._replace(target_indices=tensor_from_proto(msg.target_indices, field="Trajectory.target_indices", dtypes=[torch.int64], shape=[b]))
    elif which == "noise":
        traj = traj._replace(noise=tensor_from_proto(msg.noise, field="Trajectory.noise", dtypes=[torch.float32], shape=[b, None]))
    return traj


def trajectory_from_proto(msg: trajectory_pb2.Trajectory, *, check_version: bool = True) -> TrajectoryData:
    """Decode and validate a received trajectory (canvases come back as float32 in [0, 1]).

    Raises:
        FailedPreconditionError: ``protocol_version`` differs from this release's (when
            ``check_version``).
        InvalidArgumentError: a required tensor is missing, has the wrong dtype, bytes or shape
            (all shapes must agree on T, B, K, H, W), or action_names does not match K.
    """
    if check_version:
        check_protocol_version(msg.protocol_version, message="Trajectory")
    return _validate_trajectory(msg)


# ------------------------------------------------------------------------------------- images ---


class ImageBatch(NamedTuple):
    """N images for the replay buffer: ``canvases`` ``[N, C, H, W]``, optional ``targets`` alike.

    Tensors are float32 in [0, 1] when built by callers; :func:`images_from_proto` keeps the wire
    dtype (UINT8 or FLOAT32) so that the replay buffer stores compact bytes.
    """

    canvases: torch.Tensor
    targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.canvases.shape[0])

    def decoded(self) -> ImageBatch:
        """The same batch as float32 in [0, 1]."""
        return ImageBatch(decode_canvas(self.canvases), None if self.targets is None else decode_canvas(self.targets))


def images_to_proto(batch: ImageBatch, encoding: CanvasEncoding | None = CanvasEncoding.UINT8) -> replay_pb2.Images:
    """Encode images; ``encoding=None`` sends the tensors' dtype as it is (for already-encoded data)."""

    def enc(t: torch.Tensor) -> tensor_pb2.Tensor:
        return tensor_to_proto(t if encoding is None else encode_canvas(t, encoding))

    msg = replay_pb2.Images(canvases=enc(batch.canvases))
    if batch.targets is not None:
        msg.targets.CopyFrom(enc(batch.targets))
    return msg


def images_from_proto(msg: replay_pb2.Images, *, field: str = "images") -> ImageBatch:
    """Decode and validate images, keeping the wire dtype (see :meth:`ImageBatch.decoded`).

    Raises:
        InvalidArgumentError: canvases missing, not rank 4, not UINT8/FLOAT32, bad bytes, or
            targets with a different N, H or W.
    """
    if not msg.HasField("canvases"):
        raise InvalidArgumentError(f"{field}.canvases is missing (required)")
    canvases = tensor_from_proto(msg.canvases, field=f"{field}.canvases", dtypes=_CANVAS_DTYPES, shape=[None] * 4)
    targets = None
    if msg.HasField("targets"):
        n, _, h, w = canvases.shape
        targets = tensor_from_proto(msg.targets, field=f"{field}.targets", dtypes=_CANVAS_DTYPES, shape=[n, None, h, w])
    return ImageBatch(canvases, targets)


# ------------------------------------------------------------------------------------ weights ---


class VersionedWeights(NamedTuple):
    """One published version of a model's weights."""

    version: int
    state_dict: dict[str, torch.Tensor]
    published_unix_seconds: float


def encode_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """Serialize a state_dict as a ``spiral.v1.StateDict`` (no pickle: safe to load anywhere).

    Raises:
        InvalidArgumentError: a value is not a tensor or has no wire dtype.
    """
    msg = tensor_pb2.StateDict()
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise InvalidArgumentError(f"state_dict[{name!r}] is a {type(value).__name__}, not a tensor")
        msg.entries.add(name=name, tensor=tensor_to_proto(value))
    return msg.SerializeToString()


def decode_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode_state_dict`, key order preserved.

    Raises:
        InvalidArgumentError: the bytes are not a StateDict, or a tensor is malformed.
    """
    msg = tensor_pb2.StateDict()
    try:
        msg.ParseFromString(data)
    except Exception as err:  # protobuf's DecodeError has no stable public home across versions
        raise InvalidArgumentError(f"weights payload of {len(data)} bytes is not a spiral.v1.StateDict: {err}") from None
    return {e.name: tensor_from_proto(e.tensor, field=f"state_dict[{e.name!r}]") for e in msg.entries}


def chunk_payload(version: int, payload: bytes, chunk_bytes: int, published_unix_seconds: float | None = None) -> list[tensor_pb2.WeightsChunk]:
    """Cut a serialized StateDict into ``ceil(len / chunk_bytes)`` chunks (at least one).

    Raises:
        ValueError: ``chunk_bytes`` < 1.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be ≥ 1, got {chunk_bytes}")
    published = time.time() if published_unix_seconds is None else published_unix_seconds
    digest = hashlib.sha256(payload).digest()
    num_chunks = max(1, math.ceil(len(payload) / chunk_bytes))
    view = memoryview(payload)
    return [
        tensor_pb2.WeightsChunk(
            version=version,
            chunk_index=i,
            num_chunks=num_chunks,
            data=bytes(view[i * chunk_bytes : (i + 1) * chunk_bytes]),
            total_bytes=len(payload),
            sha256=digest,
            published_unix_seconds=published,
        )
        for i in range(num_chunks)
    ]


def state_dict_to_chunks(
    version: int, state_dict: Mapping[str, torch.Tensor], chunk_bytes: int, published_unix_seconds: float | None = None
) -> list[tensor_pb2.WeightsChunk]:
    """Encode a state_dict and cut it into :class:`WeightsChunk` messages of ≤ ``chunk_bytes`` data."""
    return chunk_payload(version, encode_state_dict(state_dict), chunk_bytes, published_unix_seconds)


class WeightsAssembler:
    """Reassembles a stream of :class:`WeightsChunk` into :class:`VersionedWeights`.

    Feed chunks in stream order; :meth:`add` returns the weights when a version is complete.
    A chunk of a new version while another is incomplete discards the incomplete one (the server
    never interleaves versions, so this only happens after a reconnect). Not thread-safe.
    """

    def __init__(self) -> None:
        self._version: int | None = None
        self._parts: list[bytes] = []
        self._first: tensor_pb2.WeightsChunk | None = None

    def add(self, chunk: tensor_pb2.WeightsChunk) -> VersionedWeights | None:
        """Add one chunk; returns the decoded weights after the last chunk of a version.

        Raises:
            InvalidArgumentError: chunks out of order, inconsistent num_chunks/total_bytes, or a
                payload whose size or sha256 does not match.
        """
        if chunk.chunk_index == 0:
            self._version, self._parts, self._first = chunk.version, [], chunk
        first = self._first
        if first is None or chunk.version != self._version:
            raise InvalidArgumentError(
                f"weights chunk {chunk.chunk_index}/{chunk.num_chunks} of version {chunk.version} arrived without its chunk 0"
            )
        if chunk.chunk_index != len(self._parts):
            raise InvalidArgumentError(f"weights chunk index {chunk.chunk_index} out of order (expected {len(self._parts)}) for version {chunk.version}")
        if chunk.num_chunks != first.num_chunks or chunk.total_bytes != first.total_bytes:
            raise InvalidArgumentError(f"weights chunk {chunk.chunk_index} of version {chunk.version} disagrees with chunk 0 on num_chunks/total_bytes")
        self._parts.append(chunk.data)
        if len(self._parts) < first.num_chunks:
            return None
        payload = b"".join(self._parts)
        self._version, self._parts, self._first = None, [], None
        if len(payload) != first.total_bytes:
            raise InvalidArgumentError(f"weights version {chunk.version}: got {len(payload)} bytes, total_bytes says {first.total_bytes}")
        if hashlib.sha256(payload).digest() != first.sha256:
            raise InvalidArgumentError(f"weights version {chunk.version}: sha256 of the {len(payload)} bytes does not match")
        return VersionedWeights(int(chunk.version), decode_state_dict(payload), float(first.published_unix_seconds))


def state_dict_from_chunks(chunks: Iterable[tensor_pb2.WeightsChunk]) -> VersionedWeights:
    """Reassemble exactly one complete version from ``chunks``.

    Raises:
        InvalidArgumentError: the chunks do not form one complete, intact version.
    """
    assembler = WeightsAssembler()
    result = None
    for chunk in chunks:
        if result is not None:
            raise InvalidArgumentError("chunks continue after a complete weights version")
        result = assembler.add(chunk)
    if result is None:
        raise InvalidArgumentError("weights stream ended before the last chunk")
    return result

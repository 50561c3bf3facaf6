from spiral.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Trajectory(_message.Message):
    __slots__ = ("protocol_version", "actor_id", "policy_version", "action_names", "canvas", "step", "action_mask", "actions", "behaviour_log_probs", "rewards", "final_canvas", "episode_length", "targets", "target_indices", "noise", "searched")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    CANVAS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ACTION_MASK_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_LOG_PROBS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    FINAL_CANVAS_FIELD_NUMBER: _ClassVar[int]
    EPISODE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_INDICES_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    SEARCHED_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    actor_id: str
    policy_version: int
    action_names: _containers.RepeatedScalarFieldContainer[str]
    canvas: _tensor_pb2.Tensor
    step: _tensor_pb2.Tensor
    action_mask: _tensor_pb2.Tensor
    actions: _tensor_pb2.Tensor
    behaviour_log_probs: _tensor_pb2.Tensor
    rewards: _tensor_pb2.Tensor
    final_canvas: _tensor_pb2.Tensor
    episode_length: _tensor_pb2.Tensor
    targets: _tensor_pb2.Tensor
    target_indices: _tensor_pb2.Tensor
    noise: _tensor_pb2.Tensor
    searched: _tensor_pb2.Tensor
    def __init__(self, protocol_version: _Optional[int] = ..., actor_id: _Optional[str] = ..., policy_version: _Optional[int] = ..., action_names: _Optional[_Iterable[str]] = ..., canvas: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., step: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., action_mask: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., actions: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., behaviour_log_probs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., rewards: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., final_canvas: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., episode_length: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., target_indices: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., noise: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., searched: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class SendSummary(_message.Message):
    __slots__ = ("num_trajectories", "num_frames", "learner_version")
    NUM_TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    LEARNER_VERSION_FIELD_NUMBER: _ClassVar[int]
    num_trajectories: int
    num_frames: int
    learner_version: int
    def __init__(self, num_trajectories: _Optional[int] = ..., num_frames: _Optional[int] = ..., learner_version: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class LearnerStatus(_message.Message):
    __slots__ = ("version", "frames", "updates", "latest_reward", "latest_l2", "done", "pretrain_updates")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    LATEST_REWARD_FIELD_NUMBER: _ClassVar[int]
    LATEST_L2_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    PRETRAIN_UPDATES_FIELD_NUMBER: _ClassVar[int]
    version: int
    frames: int
    updates: int
    latest_reward: float
    latest_l2: float
    done: bool
    pretrain_updates: int
    def __init__(self, version: _Optional[int] = ..., frames: _Optional[int] = ..., updates: _Optional[int] = ..., latest_reward: _Optional[float] = ..., latest_l2: _Optional[float] = ..., done: _Optional[bool] = ..., pretrain_updates: _Optional[int] = ...) -> None: ...

class DiscriminatorStatus(_message.Message):
    __slots__ = ("version", "updates", "latest_loss", "d_real", "d_fake", "done")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    LATEST_LOSS_FIELD_NUMBER: _ClassVar[int]
    D_REAL_FIELD_NUMBER: _ClassVar[int]
    D_FAKE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    version: int
    updates: int
    latest_loss: float
    d_real: float
    d_fake: float
    done: bool
    def __init__(self, version: _Optional[int] = ..., updates: _Optional[int] = ..., latest_loss: _Optional[float] = ..., d_real: _Optional[float] = ..., d_fake: _Optional[float] = ..., done: _Optional[bool] = ...) -> None: ...

from spiral.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Images(_message.Message):
    __slots__ = ("canvases", "targets")
    CANVASES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    canvases: _tensor_pb2.Tensor
    targets: _tensor_pb2.Tensor
    def __init__(self, canvases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class InsertRequest(_message.Message):
    __slots__ = ("protocol_version", "table", "images", "timeout_seconds")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    table: str
    images: Images
    timeout_seconds: float
    def __init__(self, protocol_version: _Optional[int] = ..., table: _Optional[str] = ..., images: _Optional[_Union[Images, _Mapping]] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class InsertResponse(_message.Message):
    __slots__ = ("keys", "table_size")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TABLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[int]
    table_size: int
    def __init__(self, keys: _Optional[_Iterable[int]] = ..., table_size: _Optional[int] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("protocol_version", "table", "num_samples", "timeout_seconds")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    table: str
    num_samples: int
    timeout_seconds: float
    def __init__(self, protocol_version: _Optional[int] = ..., table: _Optional[str] = ..., num_samples: _Optional[int] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class SampleResponse(_message.Message):
    __slots__ = ("images", "keys", "times_sampled")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TIMES_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    images: Images
    keys: _containers.RepeatedScalarFieldContainer[int]
    times_sampled: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, images: _Optional[_Union[Images, _Mapping]] = ..., keys: _Optional[_Iterable[int]] = ..., times_sampled: _Optional[_Iterable[int]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("protocol_version", "tables")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    tables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, protocol_version: _Optional[int] = ..., tables: _Optional[_Iterable[str]] = ...) -> None: ...

class RateLimiterInfo(_message.Message):
    __slots__ = ("samples_per_insert", "min_size_to_sample", "min_diff", "max_diff", "insert_blocked_seconds", "sample_blocked_seconds", "num_blocked_inserts", "num_blocked_samples")
    SAMPLES_PER_INSERT_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_TO_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    MIN_DIFF_FIELD_NUMBER: _ClassVar[int]
    MAX_DIFF_FIELD_NUMBER: _ClassVar[int]
    INSERT_BLOCKED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BLOCKED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NUM_BLOCKED_INSERTS_FIELD_NUMBER: _ClassVar[int]
    NUM_BLOCKED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples_per_insert: float
    min_size_to_sample: int
    min_diff: float
    max_diff: float
    insert_blocked_seconds: float
    sample_blocked_seconds: float
    num_blocked_inserts: int
    num_blocked_samples: int
    def __init__(self, samples_per_insert: _Optional[float] = ..., min_size_to_sample: _Optional[int] = ..., min_diff: _Optional[float] = ..., max_diff: _Optional[float] = ..., insert_blocked_seconds: _Optional[float] = ..., sample_blocked_seconds: _Optional[float] = ..., num_blocked_inserts: _Optional[int] = ..., num_blocked_samples: _Optional[int] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("name", "size", "max_size", "sampler", "remover", "max_times_sampled", "num_inserts", "num_samples", "num_deletes", "rate_limiter")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    REMOVER_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMES_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    NUM_INSERTS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_DELETES_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITER_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    max_size: int
    sampler: str
    remover: str
    max_times_sampled: int
    num_inserts: int
    num_samples: int
    num_deletes: int
    rate_limiter: RateLimiterInfo
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., max_size: _Optional[int] = ..., sampler: _Optional[str] = ..., remover: _Optional[str] = ..., max_times_sampled: _Optional[int] = ..., num_inserts: _Optional[int] = ..., num_samples: _Optional[int] = ..., num_deletes: _Optional[int] = ..., rate_limiter: _Optional[_Union[RateLimiterInfo, _Mapping]] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableInfo]
    def __init__(self, tables: _Optional[_Iterable[_Union[TableInfo, _Mapping]]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("path", "num_items", "num_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NUM_ITEMS_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    num_items: int
    num_bytes: int
    def __init__(self, path: _Optional[str] = ..., num_items: _Optional[int] = ..., num_bytes: _Optional[int] = ...) -> None: ...

"""Generated protobuf/gRPC modules of the versioned wire contract ``spiral.v1``.

Do not edit the ``*_pb2*.py``/``.pyi`` files: change ``protos/spiral/v1/*.proto`` and run
``python -m spiral.services.codegen``. A test fails when they differ from a fresh generation.

Modules: ``tensor_pb2`` (Tensor, StateDict, WeightsRequest/WeightsChunk, ProtocolVersion),
``trajectory_pb2`` (Trajectory, statuses), ``services_pb2_grpc`` (PolicyLearner,
DiscriminatorLearner), ``replay_pb2``/``replay_pb2_grpc`` (ReplayBuffer).
"""

#: The protocol version this code speaks; every request's ``protocol_version`` field must equal it.
PROTOCOL_VERSION = 1

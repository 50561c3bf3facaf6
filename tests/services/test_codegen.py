"""The committed spiral.v1 modules are exactly what `python -m spiral.services.codegen` generates."""

from __future__ import annotations

from pathlib import Path

from spiral.services import codegen


def test_committed_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    committed = codegen.committed_files()
    assert [p.name for p in fresh] == [p.name for p in committed], "generated file set differs: run `python -m spiral.services.codegen`"
    stale = [p.name for p, q in zip(fresh, committed) if p.read_bytes() != q.read_bytes()]
    assert not stale, f"{stale} differ from a fresh generation: run `python -m spiral.services.codegen`"


def test_every_proto_produces_messages_stubs_and_type_stubs(tmp_path: Path) -> None:
    names = {p.name for p in codegen.generate(tmp_path)}
    for proto in codegen.proto_files():
        stem = proto.stem
        assert {f"{stem}_pb2.py", f"{stem}_pb2_grpc.py", f"{stem}_pb2.pyi"} <= names


def test_generated_modules_import_as_spiral_v1() -> None:
    from spiral.v1 import PROTOCOL_VERSION, replay_pb2_grpc, services_pb2_grpc, tensor_pb2

    assert tensor_pb2.PROTOCOL_VERSION_CURRENT == PROTOCOL_VERSION
    assert hasattr(replay_pb2_grpc, "ReplayBufferStub")
    assert hasattr(services_pb2_grpc, "PolicyLearnerServicer") and hasattr(services_pb2_grpc, "DiscriminatorLearnerStub")

"""Regenerate the Python gRPC modules of ``spiral.v1`` from ``protos/``.

Run ``python -m spiral.services.codegen`` from anywhere inside the checkout. It calls the pinned
``grpc_tools.protoc`` with ``protos/`` as the only include root, so ``spiral/v1/x.proto`` becomes
``services/spiral/v1/x_pb2.py`` (+ ``x_pb2_grpc.py``, ``x_pb2.pyi``) importable as ``spiral.v1``.
The output depends only on the ``.proto`` files and the grpcio-tools version, so a test can
regenerate into a temporary folder and compare bytes with the committed modules.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

#: The checkout's root: services/spiral/services/codegen.py → four levels up.
REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "protos"
PACKAGE_DIR = Path("spiral") / "v1"
#: Where the committed generated modules live (``services/`` is the import root).
OUTPUT_ROOT = REPO_ROOT / "services"

GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """The ``.proto`` files of package ``spiral.v1``, sorted (relative to ``proto_root``)."""
    return sorted(p.relative_to(proto_root) for p in (proto_root / PACKAGE_DIR).glob("*.proto"))


def generate(output_root: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc for every ``spiral/v1/*.proto`` into ``output_root/spiral/v1/``.

    Returns the generated files, sorted.

    Raises:
        FileNotFoundError: ``proto_root`` has no ``spiral/v1/*.proto``.
        RuntimeError: protoc failed (its exit status is in the message; its errors go to stderr).
    """
    from grpc_tools import protoc  # heavy import; only the generator needs it

    protos = proto_files(proto_root)
    if not protos:
        raise FileNotFoundError(f"no .proto files under {proto_root / PACKAGE_DIR}")
    output_root.mkdir(parents=True, exist_ok=True)
    # grpc_tools bundles the well-known types (google/protobuf/*.proto); keep them reachable even
    # though spiral.v1 does not use them today.
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--pyi_out={output_root}",
        *[str(p) for p in protos],
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc exited with status {status} for {[str(p) for p in protos]}")
    out_dir = output_root / PACKAGE_DIR
    return sorted(p for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def committed_files(output_root: Path = OUTPUT_ROOT) -> list[Path]:
    """The generated modules currently in ``output_root/spiral/v1`` (``__init__.py`` excluded)."""
    out_dir = output_root / PACKAGE_DIR
    return sorted(p for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    """Regenerate into a temporary folder, then replace the committed modules (stale ones removed)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        target = OUTPUT_ROOT / PACKAGE_DIR
        target.mkdir(parents=True, exist_ok=True)
        fresh_names = {p.name for p in fresh}
        for stale in committed_files():
            if stale.name not in fresh_names:
                stale.unlink()
                logger.info("removed stale %s", stale.relative_to(REPO_ROOT))
        for src in fresh:
            shutil.copyfile(src, target / src.name)
            logger.info("wrote %s", (target / src.name).relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())

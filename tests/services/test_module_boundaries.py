"""The package's layering, read from the source (``ast``), so a sideways import fails a test:

* no service module imports another service module, nor the single-process trainer (what they
  share lives in helpers: runtime, publishing, clients, the learning core);
* the replay data structures know nothing of the transport (``spiral.replay`` imports nothing
  from ``spiral.services``);
* the client boundary does not import the server;
* the learner core and what it builds on (``spiral.learning``, ``agents``, ``envs``) import nothing
  from the services or the launcher: both drivers sit above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spiral

PACKAGE = Path(spiral.__file__).resolve().parent
#: The four roles of ``spiral serve``.
SERVICE_MODULES = ("actor", "discriminator_learner", "policy_learner", "replay_service")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts ``a.b`` and ``a.b.c``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_a_service_module_imports_no_other_service_module_nor_the_trainer(module: str) -> None:
    forbidden = {f"spiral.services.{other}" for other in SERVICE_MODULES if other != module} | {"spiral.learning.trainer"}
    bad = imported_modules(PACKAGE / "services" / f"{module}.py") & forbidden
    assert not bad, f"spiral.services.{module} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "replay").glob("*.py")), ids=lambda p: p.name)
def test_replay_imports_nothing_from_the_services(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m == "spiral.services" or m.startswith("spiral.services.") or m == "grpc"}
    assert not bad, f"spiral/replay/{path.name} imports {sorted(bad)}"


def test_the_client_boundary_does_not_import_the_server() -> None:
    assert "spiral.services.server" not in imported_modules(PACKAGE / "services" / "client.py")


LOWER_LAYERS = sorted(p for folder in ("learning", "agents", "envs") for p in (PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("path", LOWER_LAYERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_learner_core_imports_nothing_from_the_services_or_the_launcher(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[:2] in (["spiral", "services"], ["spiral", "launch"])}
    assert not bad, f"spiral/{path.parent.name}/{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("module", ["errors.py", "process.py", "services/runtime.py", "learning/core.py", "learning/state.py"])
def test_transport_free_modules_do_not_import_grpc(module: str) -> None:
    imported = imported_modules(PACKAGE / module)
    assert not {m for m in imported if m == "grpc" or m.startswith("grpc.") or m.startswith("spiral.v1")}, f"{module} imports gRPC"

"""The image and the tested environment cannot drift apart.

``services/constraints.txt`` pins every package of the environment the tests run in; CI's install
(``.ci/run``, the README's test command) and the image (``Dockerfile``) both install with it. These
tests check that it pins every dependency of ``pyproject.toml`` within its specifier, that this
environment runs exactly those pins, and that the image's commands are the package's entry points.
No container engine runs here, so the image itself is not built by the tests.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from spiral_operator.manifests import render_children
from spiral_operator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "services" / "constraints.txt"
DOCKERFILE = ROOT / "Dockerfile"
REGENERATE = "regenerate services/constraints.txt from a working .venv (its header says how)"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements() -> list[Requirement]:
    project = pyproject()["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt line {number}: {line!r} is not NAME==VERSION"
        found[canonicalize_name(name)] = Version(version)
    return found


def test_every_dependency_is_pinned_within_its_specifier() -> None:
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"pyproject.toml needs {requirement}, which services/constraints.txt does not pin: {REGENERATE}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"services/constraints.txt pins {name}=={pinned[name]}, outside pyproject.toml's {requirement}: {REGENERATE}"
        )
    assert pinned[canonicalize_name("torch")] == Version("2.13.0")


def test_this_environment_runs_the_pinned_versions() -> None:
    """What the tests run is what the image installs (a local label such as torch's +cpu aside)."""
    for name, version in pins().items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"services/constraints.txt pins {name}=={version}, which this environment lacks: {REGENERATE}")
        assert installed.public == version.public, f"{name}: installed {installed}, pinned {version}: {REGENERATE}"


def test_ci_and_the_image_install_from_the_constraints() -> None:
    assert "pip install -q -c services/constraints.txt -e '.[test]'" in (ROOT / ".ci" / "run").read_text()
    dockerfile = DOCKERFILE.read_text()
    assert "COPY services/constraints.txt /tmp/constraints.txt" in dockerfile
    installs = re.findall(r"^RUN .*?pip install (.+)$", dockerfile, flags=re.M)
    assert len(installs) == 2 and all("-c /tmp/constraints.txt" in line for line in installs), installs
    assert "--no-deps" in installs[0] and "--index-url https://download.pytorch.org/whl/cpu" in installs[0] and "torch" in installs[0]
    assert installs[1].startswith("-c /tmp/constraints.txt . ")  # the project itself, no extras


def _scripts() -> dict[str, str]:
    return pyproject()["project"]["scripts"]


def test_the_images_commands_are_the_packages_entry_points() -> None:
    scripts = _scripts()
    for name, target in scripts.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), f"[project.scripts] {name} = {target} does not resolve"
    dockerfile = DOCKERFILE.read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.M).group(1))
    assert json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, flags=re.M).group(1)) == []  # the pod's command picks the role
    documented = re.findall(r"^#\s{3}(\S+) ", dockerfile, flags=re.M)  # the header's "  spiral serve …", "  spiral-operator …"
    # What runs from the image: the Dockerfile's CMD and header, the chart's operator, every SpiralJob pod.
    chart = yaml.safe_load((ROOT / "charts/spiral/templates/operator/deployment.yaml").read_text().split("command: ", 1)[1].split("\n", 1)[0])
    pods = {child["spec"]["template"]["spec"]["containers"][0]["command"][0]
            for child in render_children(parse_spec({"image": "img", "reward": {"kind": "discriminator"}, "training": {"totalFrames": 1}}), "job", "ns")
            if child["kind"] in ("StatefulSet", "Deployment")}  # fmt: skip
    commands = {cmd[0], *documented, *chart, *pods}
    assert commands == {"spiral", "spiral-operator"} and commands <= set(scripts), commands

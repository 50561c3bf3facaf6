"""The shipped policies (``examples/pretrained/``, exported from README's proof runs by
``spiral export``) stay small, load with ``torch.load(weights_only=True)`` and paint better than
a blank canvas — so ``spiral sample --checkpoint examples/pretrained/mnist.pt`` works without
training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import spiral

PRETRAINED = Path(__file__).resolve().parents[1] / "examples" / "pretrained"


@pytest.mark.parametrize("name", ["shapes", "mnist"])
def test_a_shipped_policy_is_small_fp16_and_loads_without_pickled_code(name: str) -> None:
    path = PRETRAINED / f"{name}.pt"
    assert path.stat().st_size < 2_000_000
    from spiral.learning.checkpoint import load_checkpoint

    payload = load_checkpoint(path)  # weights_only=True inside; a checksum-verified container
    assert {t.dtype for t in payload["policy"].values() if t.is_floating_point()} == {torch.float16}


def _ratio_to_blank(agent: spiral.Agent, targets: torch.Tensor) -> float:
    painted = agent.paint(targets).canvases
    return float(((painted - targets) ** 2).mean() / (targets**2).mean())


def test_the_shapes_policy_paints_held_out_strokes_well() -> None:
    agent = spiral.load_agent(PRETRAINED / "shapes.pt")
    assert _ratio_to_blank(agent, agent.dataset().held_out[:64]) < 0.6  # README: 39% of blank


def test_the_mnist_policy_paints_held_out_digits_well(datasets_dir: Path) -> None:
    agent = spiral.load_agent(PRETRAINED / "mnist.pt", data_path=datasets_dir / "mnist")
    assert _ratio_to_blank(agent, agent.dataset().held_out[:64]) < 0.4  # README: 20-23% of blank

"""``spiral export``: a trained policy as a small, shareable file (``examples/pretrained/*.pt``).

Keeps what painting needs — the run's config and the policy weights (half precision by default:
the ``small`` agent is then about 0.9 MB) — and drops optimiser moments, RNG states and the critic.
The file is an ordinary verified checkpoint (:mod:`spiral.learning.checkpoint`) holding only
tensors and plain containers, so ``torch.load(weights_only=True)`` reads it and ``spiral sample``,
``spiral eval``, ``spiral.load_agent`` and ``--init-from`` all accept it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def export_policy(checkpoint: Path, out: Path, *, half: bool = True) -> Path:
    """Write ``checkpoint``'s config and policy weights to ``out``.

    Raises:
        FileNotFoundError, ValueError: no checkpoint, or one without a policy.
    """
    from spiral.fsio import atomic_write_bytes
    from spiral.learning.checkpoint import encode_checkpoint, load_checkpoint

    payload = load_checkpoint(checkpoint)
    policy = payload.get("policy")
    if policy is None:
        raise ValueError(f"checkpoint {checkpoint} holds no policy (written by {payload.get('role', 'an unknown writer')})")
    weights = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in policy.items()}
    exported: dict[str, Any] = {
        "config": payload["config"],
        "counters": payload.get("counters", {}),
        "policy": weights,
        "policy_dtype": "float16" if half else "float32",
        "role": "export",
        "source": str(checkpoint),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, encode_checkpoint(exported))
    return out


def export_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or a run's checkpoints/ folder.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="File to write, e.g. examples/pretrained/mnist.pt.")],
    half: Annotated[bool, typer.Option("--half/--full", help="Store the weights in float16 (half the size) or float32.")] = True,
) -> None:
    """Export a trained policy (config + weights only) as a small file others can paint with."""
    try:
        path = export_policy(checkpoint, out, half=half)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    size = path.stat().st_size
    typer.echo(f"wrote {path} ({size / 1e6:.2f} MB); paint with: spiral sample --checkpoint {path}")

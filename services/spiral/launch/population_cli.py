"""``spiral population copy-checkpoint``: an exploit's copy, as the operator's copy Job runs it.

The operator's population controller (``spiral_operator.population``) runs this in a one-pod
batch/v1 Job with the source member's checkpoint volume mounted read-only and the target's
writable; ``spiral train --population N`` calls the same :func:`~spiral.launch.population.copy_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spiral.cli_errors import fail


def copy_checkpoint_command(
    source: Annotated[Path, typer.Argument(help="The better member's checkpoints folder (its run's checkpoints/).")],
    target: Annotated[Path, typer.Argument(help="The checkpoints folder to replace (the worse member's; it must be stopped).")],
) -> None:
    """Replace TARGET's checkpoints with a copy of SOURCE's newest ones (every latest.pt under it)."""
    from spiral.launch.population import copy_checkpoint

    try:
        latest = copy_checkpoint(source, target)
    except OSError as err:  # FileNotFoundError: no checkpoint yet; PermissionError: a read-only target
        fail(f"cannot copy {source} over {target}: {err}")
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("latest.pt"))
    typer.echo(f"copied {', '.join(copied)} from {source} to {target} (policy: {latest})")

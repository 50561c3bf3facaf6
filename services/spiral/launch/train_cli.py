"""``spiral train`` and ``spiral sample``: the commands people run.

``spiral train`` with no arguments trains the offline built-in default (procedural strokes, fast
renderer, small agent). ``--single-process`` runs everything in this process (the baseline of the
distributed system, and what the learning tests use). Either way Ctrl-C (or SIGTERM) checkpoints
first and then exits 130 (143): "stopped, not done", like the services.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from spiral.config import PRESETS, ConfigError, TrainConfig, load_config, load_preset, parse_overrides

if TYPE_CHECKING:  # pragma: no cover - the trainer (and torch) load only when training
    from spiral.learning.trainer import TrainResult

log = logging.getLogger(__name__)


def resolve_config(config: Optional[Path], preset: str, overrides: list[str], output_dir: Optional[Path]) -> TrainConfig:
    """The run's config: a YAML file, else a named preset; then ``--set`` overrides.

    Raises:
        ConfigError: unreadable or invalid config, unknown preset.
    """
    sets = parse_overrides(overrides)
    if output_dir is not None:
        sets["output_dir"] = str(output_dir)
    if config is not None:
        return load_config(config, sets)
    return load_preset(preset, sets)


def train_command(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (see services/spiral/presets/).")] = None,
    preset: Annotated[str, typer.Option(help=f"Preset when no --config: {', '.join(PRESETS)}.")] = "default",
    set_: Annotated[list[str], typer.Option("--set", help="Override a key: --set env.grid_size=16 (repeatable).")] = [],  # noqa: B006
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Where checkpoints, PNGs and logs go.")] = None,
    single_process: Annotated[bool, typer.Option("--single-process", help="Run envs, policy and both learners in this process.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from output_dir/checkpoints if present.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Train SPIRAL. With no arguments: the offline built-in default, learning visibly within minutes."""
    _setup_logging()
    try:
        cfg = resolve_config(config, preset, set_, output_dir)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if single_process:
        from spiral.learning.trainer import SingleProcessTrainer

        result = SingleProcessTrainer(cfg, resume=resume).run(show_progress=not quiet)
        _report(result)
        if result.exit_code is not None:
            raise typer.Exit(result.exit_code)
        return
    from spiral.launch.local import run_local  # the multi-process launcher

    run_local(cfg, resume=resume, show_progress=not quiet)


def _report(result: TrainResult) -> None:
    lines = [f"trained {result.counters.updates} updates, {result.counters.frames} frames → {result.output_dir}"]
    if result.final_eval_l2 is not None and result.baselines is not None:
        b = result.baselines
        lines.append(
            f"held-out L2 {result.final_eval_l2:.4f} · blank canvas {b.blank_l2:.4f} "
            f"({100 * result.final_eval_l2 / b.blank_l2:.0f}% of blank) · random policy {b.random_l2:.4f}"
        )
    lines.append(f"curves: {result.output_dir / 'curves.png'} · images: {result.output_dir / 'images'}")
    for line in lines:
        typer.echo(line)


def sample_command(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint file or a run's checkpoints/ folder.")],
    out: Annotated[Path, typer.Option(help="PNG grid to write; the programs go beside it as .json.")] = Path("samples.png"),
    num: Annotated[int, typer.Option(min=1, max=1024, help="How many images.")] = 32,
    data_path: Annotated[Optional[Path], typer.Option(help="Override the dataset path stored in the checkpoint.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for targets/noise.")] = 0,
) -> None:
    """Paint with a trained policy: a PNG grid plus the stroke programs (JSON) that made each image.

    Feeding the JSON to ``spiral paint --program`` reproduces the images.
    """
    _setup_logging()
    from spiral.learning.sampling import sample_from_checkpoint

    try:
        result = sample_from_checkpoint(checkpoint, out, num, data_path, seed)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {result.grid} and {result.programs}")


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(process)d %(name)s:%(lineno)d %(message)s"
    )


__all__ = ["resolve_config", "sample_command", "train_command"]

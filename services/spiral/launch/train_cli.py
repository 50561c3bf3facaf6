"""``spiral train`` and ``spiral sample``: the commands people run.

``spiral train`` with no arguments trains the offline built-in default (procedural strokes, fast
renderer, small agent). ``--single-process`` runs everything in this process (the baseline of the
distributed system, and what the learning tests use). Both modes behave alike around the training:

* one ``spiral train`` per run folder (:class:`~spiral.launch.run_folder.RunFolderLock`); a run
  whose budget is already spent says so and exits 0 at once;
* the same progress display (:mod:`spiral.progress`), the same ``curves.png`` and final summary;
* exit codes: 0 budget spent, 1 the run failed (the reason is printed), 2 a usage or config error,
  130 (143) stopped by Ctrl-C (SIGTERM) after checkpointing — the resume command is printed.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spiral.cli_errors import fail, usage_error
from spiral.config import PRESETS, ConfigError, TrainConfig, load_config, load_preset, parse_overrides
from spiral.launch.run_folder import RunFolderBusy, RunFolderLock, finished_run
from spiral.learning.run_log import RunSummary
from spiral.progress import DEFAULT_EVERY_SECONDS, RunOutput

if TYPE_CHECKING:  # pragma: no cover - the trainer (and torch) load only when training
    from spiral.learning.trainer import TrainResult

log = logging.getLogger(__name__)


def resolve_config(config: Path | None, preset: str, overrides: list[str], output_dir: Path | None) -> TrainConfig:
    """The run's config: a YAML file, else a named preset; then ``--set`` overrides.

    Raises:
        ConfigError: unreadable or invalid config, unknown preset (naming the file or the
            ``--set`` argument that was wrong).
    """
    sets = parse_overrides(overrides)
    if output_dir is not None:
        sets["output_dir"] = str(output_dir)
    if config is not None:
        return load_config(config, sets)
    return load_preset(preset, sets)


def spiraljob_config(manifest: Path, overrides: list[str], output_dir: Path | None) -> TrainConfig:
    """``--file``: the config the pods of the SpiralJob in ``manifest`` would get, for a run on this
    machine (loopback services, ``runs/<job name>``; see :mod:`spiral_operator.manifest_file`), then ``--set``.

    Raises:
        ConfigError: unreadable manifest, invalid spec (the message the operator would report) or overrides.
    """
    from spiral_operator.manifest_file import SpecError, local_train_config  # the operator's own spec parser

    try:
        return local_train_config(manifest, parse_overrides(overrides), output_dir)
    except SpecError as err:
        raise ConfigError(f"SpiralJob in {manifest}: {err}") from None


def train_command_line(config: Path | None, preset: str, overrides: list[str], output_dir: Path, single_process: bool, manifest: Path | None = None) -> str:
    """The ``spiral train`` command that continues this run (printed after Ctrl-C)."""
    args = ["spiral", "train"]
    if manifest is not None:
        args += ["--file", str(manifest)]
    args += ["--config", str(config)] if config is not None else (["--preset", preset] if preset != "default" and manifest is None else [])
    for item in overrides:
        args += ["--set", item]
    args += ["-o", str(output_dir)]
    if single_process:
        args.append("--single-process")
    return shlex.join(args)


def train_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see `spiral config show`).")] = None,
    manifest: Annotated[
        Path | None, typer.Option("--file", "-f", help="A SpiralJob manifest (e.g. examples/spiraljob.yaml): train the config its pods would get, here.")
    ] = None,
    preset: Annotated[str, typer.Option("--preset", "-p", help=f"Preset when no --config: {', '.join(PRESETS)}.")] = "default",
    set_: Annotated[
        list[str], typer.Option("--set", metavar="KEY=VALUE", help="Override a key, e.g. --set env.grid_size=16 (repeatable; keys: `spiral config keys`).")
    ] = [],  # noqa: B006
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run folder: checkpoints, images, logs, TensorBoard.")] = None,
    single_process: Annotated[bool, typer.Option("--single-process", help="Run envs, policy and both learners in this process.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the run folder's checkpoints if present.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (train.log still gets it).")] = False,
    init_from: Annotated[
        Path | None,
        typer.Option("--init-from", help="Start from this checkpoint's policy weights (e.g. from `spiral pretrain`); same as --set init_from=PATH."),
    ] = None,
    population: Annotated[
        int | None,
        typer.Option(
            "--population",
            metavar="N",
            min=2,
            max=64,
            help="Train N members side by side with population-based training (same as --set population.size=N); see README.",
        ),
    ] = None,
    progress_every: Annotated[
        float,
        typer.Option(
            "--progress-every", metavar="SECONDS", min=0.1, help="Seconds between plain progress lines (when stdout is not a terminal, and in train.log)."
        ),
    ] = DEFAULT_EVERY_SECONDS,
) -> None:
    """Train SPIRAL. With no arguments: the offline built-in default, learning visibly within minutes."""
    _setup_logging()
    if manifest is not None and config is not None:
        usage_error("--file and --config both name the run's config: use one of them")
    sets = [*set_, *([f"init_from={init_from}"] if init_from is not None else []), *([f"population.size={population}"] if population else [])]
    try:
        cfg = spiraljob_config(manifest, sets, output_dir) if manifest is not None else resolve_config(config, preset, sets, output_dir)
    except ConfigError as err:
        usage_error(str(err))
    out = Path(cfg.output_dir)
    command = train_command_line(config, preset, set_, out, single_process, manifest)
    if cfg.population.enabled:
        raise typer.Exit(_train_population(cfg, resume, single_process, progress_every, command))
    if resume and (done := finished_run(cfg)) is not None:
        _report_finished(out, done)
        return
    try:
        lock = RunFolderLock(out, command).acquire()
    except (RunFolderBusy, OSError) as err:
        fail(str(err))
    try:
        code = _train(cfg, resume, single_process, quiet, progress_every, command)
    finally:
        lock.release()
    if code:
        raise typer.Exit(code)


def _train_population(cfg: TrainConfig, resume: bool, single_process: bool, progress_every: float, command: str) -> int:
    """``population.size`` members side by side (:mod:`spiral.launch.population`); returns the exit code."""
    from spiral.launch.population import POPULATION_LOG, PopulationRun

    out = Path(cfg.output_dir)
    if (out / POPULATION_LOG).exists() and resume:
        usage_error(
            f"{out} holds a population run already ({out / POPULATION_LOG}); a population does not resume: start afresh with --no-resume, or use another -o"
        )
    try:
        lock = RunFolderLock(out, command).acquire()
    except (RunFolderBusy, OSError) as err:
        fail(str(err))
    try:
        return PopulationRun(cfg, single_process=single_process, fresh=not resume).run(progress_every=progress_every)
    except RuntimeError as err:  # the shared pretraining failed: its message names its output file
        fail(str(err))
    finally:
        lock.release()


def _train(cfg: TrainConfig, resume: bool, single_process: bool, quiet: bool, progress_every: float, command: str) -> int:
    """Run the chosen trainer; returns the exit code."""
    if not single_process:
        from spiral.launch.local import LaunchOptions, run_local  # the multi-process launcher

        return run_local(cfg, resume, LaunchOptions(show_progress=not quiet, progress_every_seconds=progress_every, resume_command=command))
    from spiral.launch.local import stopped_lines
    from spiral.learning.trainer import SingleProcessTrainer
    from spiral.progress import TrainProgress

    out = Path(cfg.output_dir)
    output = RunOutput(out / "train.log")
    try:
        trainer = SingleProcessTrainer(cfg, resume=resume)
    except Exception as err:  # noqa: BLE001 - whatever stops the start (data, checkpoint) is shown, not a traceback
        log.debug("start-up failed", exc_info=True)
        resuming = resume and (out / "checkpoints").is_dir() and "--no-resume" not in str(err)  # the resume check names its own way out
        hint = f" (while resuming from {out / 'checkpoints'}: start afresh with --no-resume, or use a new -o)" if resuming else ""
        output.log(f"Error: {err}{hint}")
        fail(f"{err}{hint}")
    wall = None if cfg.max_wall_minutes is None else 60.0 * cfg.max_wall_minutes
    progress = TrainProgress(trainer.budget, output=output, enabled=not quiet, every_seconds=progress_every, wall_limit_seconds=wall)
    result = trainer.run(progress=progress)
    summary = RunSummary.of_run(out)
    if result.exit_code is not None:
        for line in stopped_lines(out, summary, command):
            output.echo(line)
        return result.exit_code
    _report(result, output)
    return 0


def _report(result: TrainResult, output: RunOutput) -> None:
    for line in RunSummary.of_run(result.output_dir).lines(result.output_dir):
        output.echo(line)


def _report_finished(out: Path, summary: RunSummary) -> None:
    typer.echo(f"{out} has already finished: its budget is spent, nothing to do.")
    for line in summary.lines(out):
        typer.echo(line)
    typer.echo("To train further raise the budget (e.g. --set total_updates=…), or start afresh with --no-resume or another -o.")


def sample_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or a run's checkpoints/ folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG grid to write; the programs go beside it as .json.")] = Path("samples.png"),
    num: Annotated[int, typer.Option("--num", "-n", min=1, max=1024, help="How many images.")] = 32,
    data_path: Annotated[Path | None, typer.Option("--data-path", help="Override the dataset path stored in the checkpoint.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Picks the held-out targets (a random subset) or the noise.")] = 0,
    gif: Annotated[Path | None, typer.Option("--gif", help="Also write an animated GIF of the painting, stroke by stroke.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the programs as an SVG (quadratic Béziers).")] = None,
    search: Annotated[
        int, typer.Option("--search", min=0, max=1024, help="Paint each stroke as the best of K policy candidates by L2 to the target (0: the policy alone).")
    ] = 0,
) -> None:
    """Paint with a trained policy: a labelled PNG grid plus the stroke programs (JSON) that made
    each image. Feeding the JSON to `spiral paint --program` reproduces the images."""
    _setup_logging()
    from spiral.learning.sampling import sample_from_checkpoint

    try:
        result = sample_from_checkpoint(checkpoint, out, num, data_path, seed, gif=gif, svg=svg, search=search)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        usage_error(str(err))
    written = [result.grid, result.programs, *(p for p in (result.gif, result.svg) if p is not None)]
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(process)d %(name)s:%(lineno)d %(message)s")


__all__ = ["resolve_config", "sample_command", "spiraljob_config", "train_command", "train_command_line"]

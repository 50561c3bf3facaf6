"""``spiral pretrain``: only the program-prior pretraining of a run (:mod:`spiral.learning.pretrain`).

Writes an ordinary checkpoint into ``<output_dir>/checkpoints``: ``spiral train -o`` the same folder
continues from it with reinforcement learning, and ``spiral train --init-from <checkpoint>`` starts
any other run from its weights. (``spiral train`` with ``pretrain.updates > 0`` does the same
pretraining itself, inside its budget.)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from spiral.config import PRESETS

log = logging.getLogger(__name__)


def pretrain_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see `spiral config show`).")] = None,
    preset: Annotated[str, typer.Option("--preset", "-p", help=f"Preset when no --config: {', '.join(PRESETS)}.")] = "default",
    set_: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE", help="Override a key, e.g. --set pretrain.batch_size=128 (repeatable).")] = [],  # noqa: B006
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run folder for the checkpoint, images and logs.")] = None,
    updates: Annotated[int | None, typer.Option("--updates", min=1, help="Pretraining updates (default: the config's pretrain.updates).")] = None,
) -> None:
    """Pretrain a policy on synthetic programs, then stop with a checkpoint."""
    from spiral.config import ConfigError
    from spiral.data import load_dataset
    from spiral.envs.factory import make_env
    from spiral.launch.train_cli import resolve_config
    from spiral.learning.core import PolicyLearnerCore
    from spiral.learning.pretrain import PretrainStats
    from spiral.process import StopFlag, configure_torch_threads

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sets = list(set_) + ([f"pretrain.updates={updates}"] if updates is not None else [])
        cfg = resolve_config(config, preset, sets, output_dir)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if cfg.pretrain.updates == 0:
        typer.echo("error: nothing to pretrain: pretrain.updates is 0 (set --updates N or --set pretrain.updates=N)", err=True)
        raise typer.Exit(2)
    configure_torch_threads(cfg.torch_threads)
    env = make_env(cfg.env)
    dataset = load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
    core = PolicyLearnerCore(cfg, env, dataset, role="pretrain", train_discriminator=False, resume=True)
    started = time.monotonic()
    every = max(1, cfg.log_every_updates)

    def show(stats: PretrainStats) -> None:
        done = core.state.counters.pretrain_updates
        if done % every == 0:
            rate = done / max(time.monotonic() - started, 1e-9)
            log.info("pretrain %d/%d · loss %.3f · confident %.2f · %.1f updates/s", done, cfg.pretrain.updates, stats.loss, stats.confident, rate)

    core.start()
    with StopFlag() as stop:
        core.pretrain(stopped=stop.is_set, on_update=show)
    evaluation = core.last_evaluation
    checkpoint = core.checkpoint_dir / "latest.pt"
    typer.echo(f"pretrained {core.state.counters.pretrain_updates} updates → {checkpoint}")
    if "eval/held_out_l2" in evaluation:
        ratio = evaluation["eval/held_out_l2"] / max(evaluation["eval/blank_l2"], 1e-12)
        typer.echo(f"held-out L2 {evaluation['eval/held_out_l2']:.4f} ({100 * ratio:.0f}% of the blank canvas's)")
    typer.echo(f"continue with RL: spiral train -o {cfg.output_dir}   (or: spiral train ... --init-from {checkpoint})")
    stop.exit_if_signalled()

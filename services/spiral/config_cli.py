"""``spiral config show`` and ``spiral config keys``: see the effective config, and every key.

``show`` resolves a config exactly as ``spiral train`` does (a file or a preset, then ``--set``)
and prints it as YAML — what ``spiral train -c`` reads back. ``keys`` lists every key with its
type, default and description, straight from the models (:mod:`spiral.config_help`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spiral.cli_errors import usage_error
from spiral.config import PRESETS, ConfigError
from spiral.config_help import config_keys, config_yaml, keys_table


def show_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config to start from.")] = None,
    preset: Annotated[str, typer.Option("--preset", "-p", help=f"Preset when no --config: {', '.join(PRESETS)}.")] = "default",
    set_: Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE", help="Override a key, as for spiral train (repeatable).")] = [],  # noqa: B006
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="The run folder, as for spiral train.")] = None,
) -> None:
    """Print the effective config of a `spiral train` with these options, as YAML."""
    from spiral.launch.train_cli import resolve_config

    try:
        cfg = resolve_config(config, preset, set_, output_dir)
    except ConfigError as err:
        usage_error(str(err))
    typer.echo(config_yaml(cfg), nl=False)


def keys_command(
    match: Annotated[str | None, typer.Argument(help="Only keys containing this text, e.g. `env.` or `learning_rate`.")] = None,
) -> None:
    """List every config key with its type, default and description."""
    keys = [k for k in config_keys() if match is None or match in k.key]
    if not keys:
        usage_error(f"no config key contains {match!r}; run `spiral config keys` for all of them")
    typer.echo(keys_table(keys), nl=False)

"""The ``spiral`` command line: one entry point for people, the local launcher and the pods.

This module only wires sub-commands together; each lives beside the code it drives. Help and
errors are plain text (no rich boxes, no ``<bool>`` placeholders), the same in a terminal and a
log; ``-h`` is ``--help`` everywhere and ``--version`` prints the version.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from spiral import __version__
from spiral.config_cli import keys_command, show_command
from spiral.data.download import download_command
from spiral.data.mujoco_scenes import mujoco_scenes_command
from spiral.envs.paint_cli import paint_command
from spiral.launch.eval_cli import eval_command
from spiral.launch.export_cli import export_command
from spiral.launch.population_cli import copy_checkpoint_command
from spiral.launch.pretrain_cli import pretrain_command
from spiral.launch.train_cli import sample_command, train_command
from spiral.services.serve_cli import serve_command

#: Shared by every (sub-)app: `-h` works everywhere, help and errors are plain text.
SETTINGS = {"help_option_names": ["-h", "--help"]}


def _app(**kwargs: Any) -> typer.Typer:
    return typer.Typer(no_args_is_help=True, rich_markup_mode=None, context_settings=SETTINGS, pretty_exceptions_enable=False, add_completion=False, **kwargs)


app = _app(name="spiral", help="SPIRAL: an agent that learns to paint through a real graphics program.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"spiral {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """SPIRAL: an agent that learns to paint through a real graphics program."""


app.command("train")(train_command)
app.command("sample")(sample_command)
app.command("eval")(eval_command)
app.command("pretrain")(pretrain_command)
app.command("export")(export_command)
app.command("paint")(paint_command)
app.command("serve")(serve_command)

config_app = _app(help="See the effective config, and every key with its description.")
config_app.command("show")(show_command)
config_app.command("keys")(keys_command)
app.add_typer(config_app, name="config")

data_app = _app(help="Download datasets and render the MuJoCo Scenes dataset.")
data_app.command("download")(download_command)
data_app.command("mujoco-scenes")(mujoco_scenes_command)
app.add_typer(data_app, name="data")

population_app = _app(help="Population-based training's parts (the operator's exploit Jobs run these).")
population_app.command("copy-checkpoint")(copy_checkpoint_command)
app.add_typer(population_app, name="population")


if __name__ == "__main__":  # pragma: no cover - `python -m spiral.cli`
    app()

"""The ``spiral`` command line: one entry point for people, the local launcher and the pods.

This module only wires sub-commands together; each lives beside the code it drives.
"""

from __future__ import annotations

import typer

from spiral.data.download import download_command
from spiral.data.mujoco_scenes import mujoco_scenes_command
from spiral.envs.paint_cli import paint_command
from spiral.launch.train_cli import sample_command, train_command
from spiral.services.serve_cli import serve_command

app = typer.Typer(
    name="spiral",
    help="SPIRAL: an agent that learns to paint through a real graphics program.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("paint")(paint_command)
app.command("train")(train_command)
app.command("sample")(sample_command)
app.command("serve")(serve_command)

data_app = typer.Typer(help="Download datasets and render the MuJoCo Scenes dataset.", no_args_is_help=True)
data_app.command("download")(download_command)
data_app.command("mujoco-scenes")(mujoco_scenes_command)
app.add_typer(data_app, name="data")


if __name__ == "__main__":  # pragma: no cover - `python -m spiral.cli`
    app()

"""``spiral paint``: render painting programs to a PNG (or an animated GIF, or an SVG) with
either painting backend.

A program is a list of actions, each a JSON object naming every component of the action spec,
e.g. ``{"flag": 1, "end": 37, "control": 5, "pressure": 9, "size": 2}``. A program file holds
either one such list, or ``{"config": {...env config...}, "programs": [[...], [...]]}`` for several
images — what ``spiral sample`` writes (:func:`programs_document` builds it). ``--random N`` paints
random programs instead.

The pure helpers (:func:`read_programs`, :func:`programs_to_actions`, :func:`render_programs`) are
used by tests and by the sampling tool; the command only wires them to files. ``--sequence``
writes every stroke's frame under step numbers, ``--gif`` animates them, ``--svg`` exports the
programs as quadratic Béziers (:mod:`spiral.envs.svg`).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import torch
import typer
from pydantic import ValidationError

from spiral.config import ConfigError, EnvConfig, Renderer, apply_overrides, parse_overrides
from spiral.envs.base import BatchedEnv
from spiral.envs.factory import make_env
from spiral.envs.painting_spec import FLAG_MOVE, painting_action_spec, random_actions
from spiral.envs.spec import ActionSpec, Component
from spiral.envs.svg import programs_svg
from spiral.images import save_gif, save_grid, save_picture, sequence_picture


class PaintRenderer(str, enum.Enum):
    """The renderers that can paint (``mujoco`` places objects instead)."""

    FAST = "fast"
    LIBMYPAINT = "libmypaint"


class ProgramFile(NamedTuple):
    """A parsed program file: env config keys it sets, and its programs (lists of actions)."""

    env: dict[str, Any]
    programs: list[list[dict[str, Any]]]


def read_programs(path: Path) -> ProgramFile:
    """Parse a program file (a list of actions, or ``{"config": ..., "programs": [...]}``).

    ``config`` may be an env config or a whole training config (its ``env`` section is used).

    Raises:
        ValueError: unreadable file, invalid JSON, or the wrong structure (says what was expected).
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"cannot read program file {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"program file {path} is not valid JSON: {err}") from None
    if isinstance(data, list):
        return ProgramFile(env={}, programs=[data])
    if not isinstance(data, dict) or "programs" not in data:
        raise ValueError(
            f"program file {path} must hold a JSON list of actions or an object "
            f'{{"config": {{...}}, "programs": [[...], ...]}}; got {type(data).__name__}'
            + (f" with keys {sorted(data)}" if isinstance(data, dict) else "")
        )
    unknown = sorted(set(data) - {"config", "programs"})
    if unknown:
        raise ValueError(f"program file {path}: unknown keys {unknown}; expected 'config' and 'programs'")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"program file {path}: 'config' must be an object, got {type(config).__name__}")
    if isinstance(config.get("env"), dict):
        config = config["env"]
    programs = data["programs"]
    if not isinstance(programs, list) or not programs:
        raise ValueError(f"program file {path}: 'programs' must be a non-empty list of programs")
    for p, program in enumerate(programs):
        if not isinstance(program, list):
            raise ValueError(f"program file {path}: program {p} must be a list of actions, got {type(program).__name__}")
    return ProgramFile(env=dict(config), programs=programs)


def _action_row(spec: ActionSpec, action: Any, where: str) -> list[int]:
    if not isinstance(action, dict):
        raise ValueError(f"{where}: an action must be an object of components {list(spec.names)}, got {action!r}")
    missing = [n for n in spec.names if n not in action]
    unknown = sorted(n for n in action if n not in spec.names)
    if missing or unknown:
        raise ValueError(
            f"{where}: missing components {missing}, unknown components {unknown}; "
            f"this configuration's actions have exactly {list(spec.names)}"
        )
    row = []
    for comp in spec.components:
        value = action[comp.name.value]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: component {comp.name.value!r} must be an integer, got {value!r}")
        if not 0 <= value < comp.size:
            raise ValueError(
                f"{where}: component {comp.name.value!r} is {value}; valid range is 0..{comp.size - 1}"
            )
        row.append(value)
    return row


def programs_to_actions(spec: ActionSpec, programs: list[list[dict[str, Any]]]) -> torch.Tensor:
    """int64 ``[T, N, K]``: ``N`` programs as action batches, ``T`` = the longest program.

    Shorter programs are padded with moves to their last end point, which paint nothing.

    Raises:
        ValueError: an action is not an object, lacks or adds a component, or has a non-integer or
            out-of-range value; the message names the program, the action index and the component.
    """
    if not programs:
        raise ValueError("no programs to render")
    steps = max(len(p) for p in programs)
    if steps == 0:
        raise ValueError("every program is empty: nothing to paint")
    end_col, flag_col = spec.index(Component.END), spec.index(Component.FLAG)
    actions = torch.zeros(steps, len(programs), len(spec), dtype=torch.long)
    for p, program in enumerate(programs):
        label = f"program {p}, " if len(programs) > 1 else ""
        rows = [_action_row(spec, a, f"{label}action {i}") for i, a in enumerate(program)]
        if rows:
            actions[: len(rows), p] = torch.tensor(rows, dtype=torch.long)
        last_end = rows[-1][end_col] if rows else 0
        actions[len(rows) :, p, flag_col] = FLAG_MOVE
        actions[len(rows) :, p, end_col] = last_end
    return actions


def programs_document(cfg: EnvConfig, actions: torch.Tensor) -> dict[str, Any]:
    """The JSON-ready ``{"config": env config, "programs": [...]}`` for ``[T, N, K]`` actions."""
    spec = painting_action_spec(cfg)
    programs = [spec.to_dicts(actions[:, n]) for n in range(actions.shape[1])]
    return {"config": cfg.model_dump(mode="json"), "programs": programs}


def render_programs(env: BatchedEnv, actions: torch.Tensor) -> torch.Tensor:
    """float32 ``[T + 1, N, C, H, W]``: the blank canvases, then the canvas after every action.

    Raises:
        ValueError: see :meth:`BatchedEnv.step`.
    """
    frames = [env.reset(actions.shape[1]).canvas.cpu()]
    for step_actions in actions:
        frames.append(env.step(step_actions).canvas.cpu())
    return torch.stack(frames)


def paint_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("paint.png"),
    program: Annotated[
        Path | None,
        typer.Option("--program", help="JSON file: a list of action objects, or {config, programs} from `spiral sample`."),
    ] = None,
    random: Annotated[
        int | None, typer.Option("--random", help="Paint random programs of N actions (default: episode_length - 1).")
    ] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="Random programs to paint (a grid).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of random programs and of libmypaint's brush noise.")] = 0,
    renderer: Annotated[
        PaintRenderer | None, typer.Option("--renderer", help="`fast` (batched torch) or `libmypaint` (the real library).")
    ] = None,
    sequence: Annotated[
        bool, typer.Option("--sequence", help="Write every stroke's frame: one row per image, one column per step (numbered).")
    ] = False,
    gif: Annotated[Path | None, typer.Option("--gif", help="Also write an animated GIF of the painting, stroke by stroke.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the programs as an SVG (quadratic Béziers: opens in any vector editor).")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="An environment setting (the env.* keys of `spiral config keys env.`, with or without `env.`), e.g. "
            "--set grid_size=16 --set brush_sizes=[1,2] --set color=rgb; repeatable; overrides the program file's config.",
        ),
    ] = None,
    scale: Annotated[int, typer.Option("--scale", help="Enlarge each canvas pixel in the PNG.")] = 1,
) -> None:
    """Render painting programs (from a file, or random) to a PNG grid with either backend; also
    as an animated GIF (--gif) or an SVG (--svg)."""
    if program is not None and random is not None:
        raise typer.BadParameter("give either --program FILE or --random N, not both")
    if num_images < 1:
        raise typer.BadParameter(f"--num-images must be ≥ 1, got {num_images}")
    if scale < 1:
        raise typer.BadParameter(f"--scale must be ≥ 1, got {scale}")
    parsed = None
    if program is not None:
        try:
            parsed = read_programs(program)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--program") from None
    # Explicit options override the program file's config, which overrides the defaults.
    settings: dict[str, Any] = dict(parsed.env) if parsed else {}
    try:
        settings = apply_overrides(settings, {key.removeprefix("env."): value for key, value in parse_overrides(sets or []).items()})
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None
    if renderer is not None:
        settings["renderer"] = Renderer(renderer.value)
    settings.setdefault("renderer", Renderer.FAST)
    try:
        cfg = EnvConfig.model_validate(settings)
    except ValidationError as err:
        problems = "; ".join(f"env.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in err.errors())
        raise typer.BadParameter(problems) from None
    if cfg.renderer == Renderer.MUJOCO:
        raise typer.BadParameter("spiral paint renders painting programs; renderer must be 'fast' or 'libmypaint'")
    spec = painting_action_spec(cfg)
    if parsed is not None:
        try:
            actions = programs_to_actions(spec, parsed.programs)
        except ValueError as err:
            raise typer.BadParameter(f"{program}: {err}", param_hint="--program") from None
    else:
        steps = random if random is not None else cfg.episode_length - 1
        if steps < 1:
            raise typer.BadParameter(f"--random must be ≥ 1 action, got {steps}")
        generator = torch.Generator().manual_seed(seed)
        actions = torch.stack([random_actions(spec, num_images, generator) for _ in range(steps)])
    if actions.shape[0] + 1 > 1000:
        raise typer.BadParameter(f"programs have {actions.shape[0]} actions; at most 999 can be painted")
    # A paint job is one episode exactly as long as its longest program.
    cfg = EnvConfig.model_validate({**cfg.model_dump(), "episode_length": max(2, actions.shape[0] + 1)})
    try:
        env = make_env(cfg, seed=seed)
        frames = render_programs(env, actions)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if sequence:
        path = save_picture(sequence_picture(frames, scale=scale), out)
    else:
        # One program is written as the bare canvas; several as a padded grid.
        path = save_grid(frames[-1], out, scale=scale, pad=0 if actions.shape[1] == 1 else 2)
    written = [path]
    if gif is not None:
        written.append(save_gif(frames, gif, scale=max(scale, 2)))
    if svg is not None:
        svg.parent.mkdir(parents=True, exist_ok=True)
        svg.write_text(programs_svg(actions, cfg))
        written.append(svg)
    typer.echo(
        f"painted {actions.shape[1]} program(s) of {actions.shape[0]} action(s) with {cfg.renderer.value} "
        f"→ {', '.join(str(p) for p in written)}"
    )

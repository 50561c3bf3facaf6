"""``spiral eval``: score a checkpoint on the whole held-out split, the way training evaluates it.

Conditional runs: greedy and sampled held-out L2 — and with ``--search K`` the L2 of search at paint
time — beside the blank-canvas and random-policy baselines, each also as a fraction of the blank
canvas's (:func:`spiral.learning.evaluate.held_out_record`, the training loop's own code path);
``--renderer libmypaint`` re-paints the programs the agent chose through libmypaint and reports
their L2 relative to the agent's own renderer (do programs learnt on ``fast`` transfer?). MuJoCo
Scenes runs add object-match precision/recall/F1 (Hungarian matching). Unconditional runs paint
``--num`` samples from noise; for MNIST they get the digit score
(:mod:`spiral.learning.digits`). Prints one JSON document and writes a labelled PNG grid.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from spiral.config import DatasetName, Mode, Renderer

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint: Path,
    *,
    data_path: Path | None = None,
    search: int = 0,
    lookahead: int | None = None,
    renderer: Renderer | None = None,
    limit: int | None = None,
    num_samples: int = 1000,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """The JSON report of ``spiral eval`` (see the module docstring).

    Raises:
        FileNotFoundError, ValueError, ConfigError, DatasetError: no usable checkpoint or dataset.
    """
    from spiral.api import load_agent
    from spiral.learning.evaluate import EVAL_BATCH, baselines, held_out_record
    from spiral.learning.search import paint_time_lookahead

    agent = load_agent(checkpoint, data_path=data_path)
    cfg, env, policy = agent.config, agent.env, agent.policy
    lookahead = paint_time_lookahead(env, search, lookahead)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "dataset": cfg.data.name.value,
        "renderer": cfg.env.renderer.value,
        "search_candidates": search,
        "search_lookahead": lookahead if search else 0,
    }
    if cfg.mode == Mode.UNCONDITIONAL:
        return {**report, **_unconditional(agent, num_samples, seed, out)}

    targets = agent.dataset().held_out
    if limit is not None:
        targets = targets[:limit]
    report["num_images"] = int(targets.shape[0])
    reference = baselines(env, targets, EVAL_BATCH, seed=seed)
    scored = held_out_record(env, policy, targets, reference, search_candidates=search, search_lookahead=lookahead, seed=seed)
    report.update({key.removeprefix("eval/").replace("held_out_", ""): value for key, value in scored.record.items()})
    greedy, searched = scored.greedy, scored.searched
    best = searched if searched is not None else greedy
    if renderer is not None and renderer != cfg.env.renderer:
        report.update(_repaint(cfg, best, renderer))
    if cfg.data.name == DatasetName.MUJOCO_SCENES:
        report.update(_scene_scores(cfg, best.actions, limit))
    if out is not None:
        _write_picture(out, targets[:32], greedy.canvases[:32], None if searched is None else searched.canvases[:32])
        report["picture"] = str(out)
    return report


def _repaint(cfg: Any, painted: Any, renderer: Renderer) -> dict[str, float]:
    """L2 of the same programs re-painted by ``renderer``, and its ratio to the agent's renderer.

    libmypaint's dry_brush scatters every dab at random, so one re-paint's L2 holds a speckle term
    that no program can remove (measured on the MNIST policy: two re-paints of the same programs
    differ by as much as the whole gap to ``fast``). Two re-paints with different seeds separate
    it: their mutual L2 is twice the speckle's variance, so the L2 of the renderer's *expected*
    canvas is the L2 of their mean minus half of that variance — what the programs themselves
    lose in transfer, beside what the brush's randomness adds.
    """
    from spiral.learning.evaluate import mean_l2, speckle_and_expected_l2

    first, second = (_render_with(cfg, painted.actions, renderer, seed) for seed in (cfg.seed, cfg.seed + 1))
    l2 = mean_l2(first, painted.targets)
    speckle, expected = speckle_and_expected_l2(first, second, painted.targets)
    name, own_l2 = f"repainted_{renderer.value}", max(painted.l2, 1e-12)  # the agent's own renderer's L2
    return {
        f"{name}_l2": l2,
        f"{name}_relative": l2 / own_l2,
        f"{name}_speckle_l2": speckle,
        f"{name}_expected_l2": expected,
        f"{name}_expected_relative": expected / own_l2,
    }


def _render_with(cfg: Any, actions: torch.Tensor, renderer: Renderer, seed: int) -> torch.Tensor:
    """Final canvases of ``actions [T, N, K]`` painted by ``renderer`` (seeded), 256 at a time."""
    from spiral.envs.factory import make_env
    from spiral.learning.pretrain import render_programs

    env = make_env(cfg.env.model_copy(update={"renderer": renderer}), seed=seed)
    return torch.cat([render_programs(env, actions[:, s : s + 256]).canvases[-1] for s in range(0, actions.shape[1], 256)])


def _scene_scores(cfg: Any, actions: torch.Tensor, limit: int | None) -> dict[str, float]:
    from spiral.data.mujoco_scenes import held_out_scene_descriptions
    from spiral.envs.mujoco_scenes import mujoco_action_spec, scenes_from_actions, score_scene

    truth = held_out_scene_descriptions(cfg.data)[: actions.shape[1] if limit is None else limit]
    predicted = scenes_from_actions(mujoco_action_spec(cfg.env.mujoco), cfg.env.mujoco, actions)
    scores = [score_scene(p, t) for p, t in zip(predicted, truth, strict=False)]
    n = max(len(scores), 1)
    return {
        "objects_precision": sum(s.precision for s in scores) / n,
        "objects_recall": sum(s.recall for s in scores) / n,
        "objects_f1": sum(s.f1 for s in scores) / n,
    }


def _unconditional(agent: Any, num: int, seed: int, out: Path | None) -> dict[str, Any]:
    from spiral.images import save_grid

    canvases = torch.cat([agent.paint(num=min(256, num - s), seed=seed + s).canvases for s in range(0, num, 256)])
    result: dict[str, Any] = {"num_samples": int(canvases.shape[0]), "sample_ink": float(canvases.mean())}
    cfg = agent.config
    if cfg.data.name == DatasetName.MNIST:
        from spiral.learning.core import digit_scorer  # the training loop's own scorer

        score = digit_scorer(cfg)(canvases)
        result.update({key.removeprefix("eval/"): value for key, value in score.as_record().items()})
        result["digit_histogram"] = [round(float(h), 4) for h in score.histogram]
    if out is not None:
        save_grid(canvases[:64], out, nrow=8, scale=2)
        result["picture"] = str(out)
    return result


def _write_picture(out: Path, targets: torch.Tensor, greedy: torch.Tensor, searched: torch.Tensor | None) -> None:
    from spiral.images import pairs_picture, save_picture

    if searched is None:
        save_picture(pairs_picture(targets, greedy, pairs_per_row=8, scale=2), out)
        return
    # Target | greedy painting | painting with search, side by side.
    top = pairs_picture(targets, greedy, pairs_per_row=8, scale=2, painting_label="greedy")
    bottom = pairs_picture(targets, searched, pairs_per_row=8, scale=2, painting_label="search")
    from PIL import Image

    both = Image.new(top.mode, (max(top.width, bottom.width), top.height + bottom.height))
    both.paste(top, (0, 0))
    both.paste(bottom, (0, top.height))
    save_picture(both, out)


def eval_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or a run's checkpoints/ folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="Where the dataset is now, if not where the checkpoint's config says.")] = None,
    search: Annotated[int, typer.Option("--search", min=0, max=256, help="Also paint with search: the best of K policy candidates per step.")] = 0,
    lookahead: Annotated[
        int | None,
        typer.Option(
            "--lookahead",
            min=0,
            max=256,
            help="With --search: score each move by the best of J candidates after it (default: K on the fast renderer, else 0).",
        ),
    ] = None,
    renderer: Annotated[Renderer | None, typer.Option("--renderer", help="Re-paint the chosen programs with this renderer and compare.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N held-out images (default: all of them).")] = None,
    num: Annotated[int, typer.Option("--num", min=1, max=100_000, help="Samples painted by an unconditional agent.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sampled painting and the random-policy baseline.")] = 0,
    out: Annotated[Path, typer.Option("--output", "-o", help="Labelled PNG grid to write.")] = Path("eval.png"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the JSON report here.")] = None,
) -> None:
    """Score a checkpoint on the whole held-out split; print JSON and write a labelled grid."""
    from spiral.config import ConfigError
    from spiral.data import DatasetError

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        report = evaluate_checkpoint(
            checkpoint, data_path=data, search=search, lookahead=lookahead, renderer=renderer, limit=limit, num_samples=num, seed=seed, out=out
        )
    except (FileNotFoundError, ValueError, ConfigError, DatasetError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    text = json.dumps(report, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    typer.echo(text)

"""Held-out evaluation: how well does the policy reconstruct images it never trained on?

Reports mean per-pixel squared error (the same L2 the reward uses) of the greedy policy, and the two
baselines every claim of learning is measured against: the blank canvas and a random policy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.agents.policy import SpiralPolicy
from spiral.envs.base import BatchedEnv
from spiral.envs.painting_spec import FLAG_PAINT
from spiral.envs.spec import ActionSpec, Component
from spiral.images import make_grid, pairs_picture, picture_tensor, save_grid, save_picture, sequence_picture
from spiral.learning.rewards import l2_scores
from spiral.learning.rollout import collect_rollout, random_rollout

#: Held-out images used for each evaluation (fixed: the first N of the held-out split).
EVAL_SIZE = 256
#: Canvases painted at once during evaluation (independent of num_envs: evaluation is batched inference).
EVAL_BATCH = 64
#: Episodes shown stroke by stroke after each evaluation (TensorBoard's painting sequence).
SEQUENCE_IMAGES = 4


class Reconstruction(NamedTuple):
    """Greedy reconstructions of held-out targets."""

    targets: torch.Tensor  # [N, C, H, W]
    canvases: torch.Tensor  # [N, C, H, W]
    actions: torch.Tensor  # [T, N, K] the programs that painted them
    l2: float  # mean per-pixel squared error


class Baselines(NamedTuple):
    blank_l2: float
    random_l2: float


def mean_l2(canvases: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean per-pixel squared error over a batch: the reward's L2 (:func:`l2_scores`), averaged."""
    return float(-l2_scores(canvases, targets).mean())


def speckle_and_expected_l2(first: torch.Tensor, second: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """From two independent renders of the same programs: the per-render noise's L2 (its variance
    under :func:`mean_l2`) and an unbiased estimate of the expected canvas's L2 to ``targets``.

    With ``r = μ + ε``: ``L2(r₁, r₂) = 2·var`` and ``L2((r₁ + r₂)/2, t) = L2(μ, t) + var/2``.
    """
    variance = mean_l2(first, second) / 2
    return variance, max(mean_l2((first + second) / 2, targets) - variance / 2, 0.0)


def stroke_statistics(actions: torch.Tensor, spec: ActionSpec) -> dict[str, float]:
    """How programs ``[T, N, K]`` use the brush: the share of episodes whose first action moves
    (lifts the brush off its start corner) and the share of actions that paint. Empty for action
    spaces without a move/paint flag (MuJoCo). A policy that never lifts the brush (first-move
    share 0, paint share 1) paints every picture as one line from the corner: a failure mode
    worth seeing during training, not only in the pictures."""
    if not spec.has(Component.FLAG):
        return {}
    paint = (actions[..., spec.index(Component.FLAG)] == FLAG_PAINT).float()
    return {"first_action_moves": float(1.0 - paint[0].mean()), "paint_fraction": float(paint.mean())}


@torch.no_grad()
def reconstruct(
    env: BatchedEnv,
    policy: SpiralPolicy,
    targets: torch.Tensor,
    batch_size: int,
    greedy: bool = True,
    seed: int = 0,
    search_candidates: int = 0,
    search_lookahead: int = 0,
) -> Reconstruction:
    """Paint every target, ``batch_size`` at a time: greedily (argmax per component), by sampling,
    or — ``search_candidates`` K > 0 — with search at paint time (the best of K policy candidates
    per step by L2, :mod:`spiral.learning.search`; each move scored by the best of
    ``search_lookahead`` candidates that could follow it, when > 0).

    Greedy and sampled are both reported: an agent whose paint probability stays under ½ never
    paints greedily, yet its sampled programs may already reconstruct well.

    Raises:
        ValueError: search with an environment that cannot preview candidates.
    """
    canvases, actions = [], []
    was_training = policy.training
    policy.eval()
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)  # sampled evaluation is reproducible and leaves the training RNG alone
    try:
        for start in range(0, targets.shape[0], batch_size):
            chunk = targets[start : start + batch_size]
            rollout = collect_rollout(
                env, policy, chunk, None, chunk.shape[0], greedy=greedy, search_candidates=search_candidates, search_lookahead=search_lookahead
            )
            canvases.append(rollout.final_canvas)
            actions.append(rollout.actions)
    finally:
        policy.train(was_training)
        torch.set_rng_state(rng_state)
    painted = torch.cat(canvases)
    return Reconstruction(targets, painted, torch.cat(actions, dim=1), mean_l2(painted, targets))


@torch.no_grad()
def baselines(env: BatchedEnv, targets: torch.Tensor, batch_size: int, seed: int = 0) -> Baselines:
    """L2 of the blank canvas and of uniformly random programs on the same targets."""
    generator = torch.Generator().manual_seed(seed)
    blank = env.reset(1).canvas
    random_canvases = torch.cat(
        [random_rollout(env, min(batch_size, targets.shape[0] - s), generator) for s in range(0, targets.shape[0], batch_size)]
    )
    return Baselines(blank_l2=mean_l2(blank.expand_as(targets), targets), random_l2=mean_l2(random_canvases, targets))


class HeldOutScores(NamedTuple):
    """What :func:`held_out_record` measured."""

    record: dict[str, float]  # ``eval/...`` scalars
    greedy: Reconstruction
    searched: Reconstruction | None  # with search at paint time, when asked


def held_out_record(
    env: BatchedEnv,
    policy: SpiralPolicy,
    targets: torch.Tensor,
    reference: Baselines,
    *,
    search_candidates: int = 0,
    search_lookahead: int = 0,
    seed: int = 0,
) -> HeldOutScores:
    """The held-out scores of ``policy`` on ``targets`` — the one code path of the training loop's
    evaluation and of ``spiral eval``: greedy and sampled L2, L2 with search at paint time when
    ``search_candidates`` > 0, the baselines, and each L2 as a fraction of the blank canvas's
    (``eval/held_out_ratio*``)."""
    greedy = reconstruct(env, policy, targets, EVAL_BATCH)
    sampled = reconstruct(env, policy, targets, EVAL_BATCH, greedy=False, seed=seed)
    record = {
        "eval/held_out_l2": greedy.l2,
        "eval/held_out_l2_sampled": sampled.l2,
        "eval/blank_l2": reference.blank_l2,
        "eval/random_l2": reference.random_l2,
    }
    searched = None
    if search_candidates > 0:
        searched = reconstruct(env, policy, targets, EVAL_BATCH, search_candidates=search_candidates, search_lookahead=search_lookahead)
        record["eval/held_out_l2_search"] = searched.l2
    record.update({f"eval/greedy_{key}": value for key, value in stroke_statistics(greedy.actions, env.action_spec).items()})
    if searched is not None:
        record.update({f"eval/search_{key}": value for key, value in stroke_statistics(searched.actions, env.action_spec).items()})
    for key in [k for k in record if k.startswith("eval/held_out_l2")]:
        record[key.replace("eval/held_out_l2", "eval/held_out_ratio")] = record[key] / max(reference.blank_l2, 1e-12)
    return HeldOutScores(record, greedy, searched)


class Evaluator:
    """Periodic evaluation shared by the single-process trainer and the policy learner service.

    Conditional runs: greedy and sampled held-out L2 on the first :data:`EVAL_SIZE` held-out images,
    beside the blank-canvas and random-policy baselines (computed once), and a PNG of targets above
    paintings (side by side, under a "target | painting" header). Unconditional runs: a PNG grid of
samples from fixed noise. Either way the pictures (and a few episodes stroke by stroke) are kept
in :attr:`last_images` for TensorBoard. Not thread-safe.
    """

    def __init__(
        self,
        env: BatchedEnv,
        held_out: torch.Tensor | None,
        noise_size: int,
        seed: int,
        images_dir: Path,
        *,
        search_candidates: int = 0,
        search_lookahead: int = 0,
        sample_score: Callable[[torch.Tensor], dict[str, float]] | None = None,
    ) -> None:
        self.env = env
        self.search_candidates = search_candidates
        self.search_lookahead = search_lookahead
        #: Scores of unconditional samples ``[N, C, H, W]`` (e.g. the MNIST digit score); None: ink only.
        self.sample_score = sample_score
        self.targets = held_out[:EVAL_SIZE] if held_out is not None else None
        self.noise_size = noise_size
        self.seed = seed
        self.images_dir = images_dir
        self.baselines: Baselines | None = None
        #: The pictures of the last evaluation that wrote images, ``{tag: [C, H, W]}`` (for TensorBoard).
        self.last_images: dict[str, torch.Tensor] = {}

    def __call__(self, policy: SpiralPolicy, step: int, write_images: bool = True) -> dict[str, float]:
        if self.targets is not None:
            if self.baselines is None:
                self.baselines = baselines(self.env, self.targets, EVAL_BATCH, seed=self.seed)
            scored = held_out_record(
                self.env,
                policy,
                self.targets,
                self.baselines,
                search_candidates=self.search_candidates,
                search_lookahead=self.search_lookahead,
                seed=self.seed,
            )
            record, greedy = scored.record, scored.greedy
            if write_images:
                self._write_pictures("reconstructions", step, greedy.targets[:32], greedy.canvases[:32], policy)
            return record
        count = EVAL_SIZE if self.sample_score is not None else EVAL_BATCH
        noise = torch.randn(count, self.noise_size, generator=torch.Generator().manual_seed(self.seed + 1))
        with torch.no_grad():
            canvases = torch.cat([collect_rollout(self.env, policy, None, chunk, chunk.shape[0]).final_canvas for chunk in noise.split(EVAL_BATCH)])
        scores = self.sample_score(canvases) if self.sample_score is not None else {}
        canvases = canvases[:EVAL_BATCH]
        if write_images:
            save_grid(canvases, self.images_dir / f"samples-{step:07d}.png", nrow=8, scale=2)
            steps = self._sequence(policy, None, noise[:SEQUENCE_IMAGES])
            self.last_images = {"eval/samples": make_grid(canvases, nrow=8), "eval/painting_sequence": picture_tensor(sequence_picture(steps))}
        return {"eval/sample_ink": float(canvases.mean()), **scores}

    def _write_pictures(self, name: str, step: int, targets: torch.Tensor, canvases: torch.Tensor, policy: SpiralPolicy) -> None:
        """The labelled target | painting grid (PNG and TensorBoard) and a stroke-by-stroke view."""
        picture = pairs_picture(targets, canvases, pairs_per_row=8, scale=2)
        save_picture(picture, self.images_dir / f"{name}-{step:07d}.png")
        steps = self._sequence(policy, targets[:SEQUENCE_IMAGES], None)
        sequence = sequence_picture(steps, targets[:SEQUENCE_IMAGES])
        self.last_images = {f"eval/{name}": picture_tensor(picture), "eval/painting_sequence": picture_tensor(sequence)}

    @torch.no_grad()
    def _sequence(self, policy: SpiralPolicy, targets: torch.Tensor | None, noise: torch.Tensor | None) -> torch.Tensor:
        """Every canvas of a few greedy (conditional) or sampled episodes, ``[T + 1, N, C, H, W]``."""
        if targets is not None:
            n = targets.shape[0]
        elif noise is not None:
            n = noise.shape[0]
        else:
            raise ValueError("painting sequences need targets (conditional) or noise (unconditional)")
        was_training = policy.training
        policy.eval()
        try:
            return collect_rollout(self.env, policy, targets, noise, n, greedy=targets is not None).canvases
        finally:
            policy.train(was_training)

"""Pretraining on synthetic programs: a program prior before reinforcement learning.

Each update draws random programs (:mod:`spiral.learning.program_prior`), renders them with the
run's own environment, and teaches the policy to predict every action of a program from the canvas
so far and the finished image — teacher forcing through the autoregressive head, a cross-entropy
per relevant component (:func:`spiral.learning.losses.imitation_loss`). The policy thus learns to
*read* strokes off an image before any reward is seen: supervised targets for every component of
every step, where RL gets one scalar per episode. Unconditional policies (no target) learn the
prior's distribution of programs itself from the noise-driven state.

Measured on MNIST (README, results): 1,000 updates bring the greedy policy to 56% of the blank
canvas's held-out L2 without seeing a digit, and RL from there improves far faster than from
scratch. Called by :class:`spiral.learning.core.PolicyLearnerCore` before its first RL update
(both drivers) and by ``spiral pretrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import torch

from spiral.agents import SpiralPolicy, build_policy
from spiral.config import Mode, TrainConfig
from spiral.data import ImageDataset
from spiral.envs.base import BatchedEnv, Observation
from spiral.envs.factory import make_env
from spiral.envs.spec import ActionSpec
from spiral.learning.losses import imitation_loss, step_if_finite
from spiral.learning.program_prior import synthetic_programs
from spiral.learning.rollout import collect_rollout


class RenderedPrograms(NamedTuple):
    """Programs played through an environment, time-major.

    canvases:  float ``[T+1, B, C, H, W]``, the blank canvas first, the finished image last.
    masks:     float ``[T+1, B, K]``: ``masks[t]`` is the mask of the action before canvas ``t``
               (zeros for the blank canvas), so ``masks[t + 1]`` says which components of action
               ``t`` mattered.
    steps, episode_lengths: int64 ``[T, B]`` as observed before each action.
    actions:   int64 ``[T, B, K]``.
    """

    canvases: torch.Tensor
    masks: torch.Tensor
    steps: torch.Tensor
    episode_lengths: torch.Tensor
    actions: torch.Tensor

    def observations(self) -> Observation:
        return Observation(self.canvases[:-1], self.steps, self.episode_lengths, self.masks[:-1])


@torch.no_grad()
def render_programs(env: BatchedEnv, actions: torch.Tensor) -> RenderedPrograms:
    """Play ``actions [T, B, K]`` from reset and record every canvas and mask.

    Raises:
        ValueError: actions the environment rejects (wrong shape, out of range).
    """
    steps, batch = actions.shape[:2]
    obs = env.reset(batch)
    canvases, masks, step_ids, lengths = [obs.canvas], [obs.action_mask], [], []
    for t in range(steps):
        step_ids.append(obs.step)
        lengths.append(obs.episode_length)
        obs = env.step(actions[t])
        canvases.append(obs.canvas)
        masks.append(obs.action_mask)
    return RenderedPrograms(torch.stack(canvases), torch.stack(masks), torch.stack(step_ids), torch.stack(lengths), actions)


class PretrainStats(NamedTuple):
    """Scalars of one pretraining update."""

    loss: float  # cross-entropy per step, summed over the relevant components
    confident: float  # share of relevant components given probability > ½ (so surely the argmax)
    frames: int  # program steps rendered
    grad_norm: float
    skipped: bool  # the loss or a gradient was not finite: no optimiser step

    def as_record(self) -> dict[str, float]:
        return {"pretrain/loss": self.loss, "pretrain/confident": self.confident, "pretrain/grad_norm": self.grad_norm}


class ProgramSource(Protocol):
    """Where pretraining's programs come from."""

    def draw(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """int64 ``[T, B, K]`` programs, one episode each."""
        ...


class SyntheticPrograms:
    """Random programs from the stroke prior (:mod:`spiral.learning.program_prior`)."""

    def __init__(self, spec: ActionSpec, cfg: TrainConfig) -> None:
        self.spec, self.cfg = spec, cfg

    def draw(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return synthetic_programs(self.spec, self.cfg.env, self.cfg.pretrain.prior, batch_size, generator)


class TeacherPrograms:
    """The programs a trained conditional policy paints for train images (with search): what the
    data looks like as strokes. Distilling them teaches an *unconditional* policy to draw digits
    rather than the prior's squiggles before any discriminator reward is seen.

    The teacher paints a bank of ``num_programs`` train images once (search costs K head passes
    and K renders per step — far too much to repeat for every update), and updates then draw
    programs from the bank.
    """

    def __init__(
        self, teacher: SpiralPolicy, env: BatchedEnv, dataset: ImageDataset, search_candidates: int, num_programs: int, generator: torch.Generator
    ) -> None:
        if not teacher.conditional:
            raise ValueError("pretrain.teacher must be a conditional checkpoint (it paints given targets)")
        self.teacher, self.env, self.dataset, self.search_candidates = teacher, env, dataset, search_candidates
        chosen = torch.randperm(dataset.num_train, generator=generator)[:num_programs]
        train = dataset.train
        with torch.no_grad():
            self.bank = torch.cat(
                [
                    collect_rollout(env, teacher, train[part], None, part.numel(), greedy=True, search_candidates=search_candidates).actions
                    for part in chosen.split(256)
                ],
                dim=1,
            )  # [T, N, K]

    @classmethod
    def from_checkpoint(cls, path: Path, cfg: TrainConfig, dataset: ImageDataset) -> TeacherPrograms:
        """Raises: FileNotFoundError, ValueError: no policy there, or another action space than ``cfg``'s."""
        from spiral.learning.checkpoint import load_checkpoint

        payload = load_checkpoint(path)
        teacher_cfg = TrainConfig.model_validate(payload["config"])
        if teacher_cfg.mode != Mode.CONDITIONAL or payload.get("policy") is None:
            raise ValueError(f"pretrain.teacher {path}: a conditional checkpoint with a policy is needed")
        env = make_env(cfg.env)
        teacher_env = make_env(teacher_cfg.env)
        if teacher_env.action_spec != env.action_spec or teacher_env.canvas_size != env.canvas_size:
            raise ValueError(
                f"pretrain.teacher {path} paints with actions {list(teacher_env.action_spec.names)} {list(teacher_env.action_spec.sizes)} "
                f"on a {teacher_env.canvas_size}-px canvas; this run has {list(env.action_spec.names)} {list(env.action_spec.sizes)} "
                f"on {env.canvas_size} px: they must match"
            )
        teacher = build_policy(teacher_cfg, env)
        teacher.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["policy"].items()})
        teacher.eval()
        return cls(teacher, env, dataset, cfg.pretrain.teacher_search, cfg.pretrain.teacher_programs, torch.Generator().manual_seed(cfg.seed))

    def draw(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        rows = torch.randint(self.bank.shape[1], (batch_size,), generator=generator)
        return self.bank[:, rows]


def program_source(cfg: TrainConfig, spec: ActionSpec, dataset: ImageDataset | None) -> ProgramSource:
    """The source ``cfg.pretrain`` asks for: a teacher checkpoint's programs, else synthetic ones.

    Raises:
        ValueError: a teacher without a dataset, or see :meth:`TeacherPrograms.from_checkpoint`.
    """
    if cfg.pretrain.teacher is None:
        return SyntheticPrograms(spec, cfg)
    if dataset is None:
        raise ValueError("pretrain.teacher paints train images: a dataset is needed")
    return TeacherPrograms.from_checkpoint(cfg.pretrain.teacher, cfg, dataset)


def pretrain_update(
    policy: SpiralPolicy,
    optimizer: torch.optim.Optimizer,
    env: BatchedEnv,
    cfg: TrainConfig,
    generator: torch.Generator,
    source: ProgramSource | None = None,
) -> PretrainStats:
    """One supervised update on ``cfg.pretrain.batch_size`` fresh programs from ``source``
    (default: synthetic programs)."""
    batch = cfg.pretrain.batch_size
    source = source or SyntheticPrograms(policy.action_spec, cfg)
    actions = source.draw(batch, generator)
    played = render_programs(env, actions)
    conditional = cfg.mode == Mode.CONDITIONAL
    targets = played.canvases[-1] if conditional else None
    noise = None if conditional else torch.randn(batch, cfg.agent.noise_size, generator=generator)

    out = policy.unroll(played.observations(), targets, noise, policy.initial_state(batch), actions)
    relevance = played.masks[1:]
    steps = actions.shape[0] * batch
    # Mean over steps (a sum would scale with T·B and so the useful learning rate).
    loss = imitation_loss(out.component_log_prob, relevance) / steps

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    step = step_if_finite(optimizer, policy.parameters(), loss, max_norm=cfg.learner.max_grad_norm)
    with torch.no_grad():
        confident = (out.component_log_prob > -0.6931471805599453).float()  # log ½
        share = float((confident * relevance).sum() / relevance.sum().clamp_min(1.0))
    return PretrainStats(float(loss.detach()), share, steps, float(step.grad_norm), step.skipped)

"""The single-process SPIRAL trainer: B vectorised environments, the policy, the discriminator and
both learners in one process, from one :class:`~spiral.config.TrainConfig`.

Used by ``spiral train --single-process``, by the learning tests and as the speed/learning baseline
of the distributed system. It is a thin driver of :class:`~spiral.learning.core.PolicyLearnerCore`
(the same core the policy learner service drives): each iteration samples targets (or noise),
plays one episode per environment, lets the core score and update the policy, then updates the
critic on real images vs the episode's final canvases. SIGINT/SIGTERM (Ctrl-C) finish the current
iteration, then log, evaluate and checkpoint before :meth:`SingleProcessTrainer.run` returns.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.agents import Discriminator, SpiralPolicy
from spiral.config import Mode, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.learning.budget import Budget, budget_of
from spiral.learning.core import PolicyLearnerCore
from spiral.learning.evaluate import Baselines
from spiral.learning.plots import write_run_curves
from spiral.learning.rollout import Rollout, collect_rollout
from spiral.learning.search import search_candidates
from spiral.learning.state import Counters, TrainingState
from spiral.learning.updates import discriminator_update
from spiral.process import StopFlag, configure_torch_threads
from spiral.progress import ProgressFigures, RunOutput, TrainProgress

log = logging.getLogger(__name__)

#: The ``role`` recorded in this trainer's checkpoints and start record.
ROLE = "single-process"


class TrainResult(NamedTuple):
    counters: Counters
    final_eval_l2: float | None
    baselines: Baselines | None
    output_dir: Path
    #: ``128 + signal`` when SIGINT/SIGTERM stopped the run before its budget (130 for Ctrl-C).
    exit_code: int | None = None


class SingleProcessTrainer:
    """Owns every piece of one run. Not thread-safe."""

    def __init__(self, cfg: TrainConfig, resume: bool = True, dataset: ImageDataset | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        configure_torch_threads(cfg.torch_threads)
        self.env = make_env(cfg.env)
        self.dataset = dataset or load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        self.core = PolicyLearnerCore(cfg, self.env, self.dataset, role=ROLE, train_discriminator=cfg.uses_discriminator, resume=resume)

    # ---------------------------------------------------------------------------- the state ---

    @property
    def state(self) -> TrainingState:
        return self.core.state

    @property
    def counters(self) -> Counters:
        return self.core.state.counters

    @property
    def policy(self) -> SpiralPolicy:
        assert self.core.state.policy is not None
        return self.core.state.policy

    @property
    def discriminator(self) -> Discriminator | None:
        return self.core.state.discriminator

    @property
    def done(self) -> bool:
        return self.core.budget_spent

    @property
    def budget(self) -> Budget:
        return budget_of(self.cfg)

    # -------------------------------------------------------------------------------- step ---

    def collect(self) -> Rollout:
        """One episode per environment with the current policy, on targets (or noise) drawn from
        the run's generator, so that a resumed run draws what it would have."""
        batch = self.cfg.num_envs
        generator = self.state.generator
        targets = noise = None
        if self.cfg.mode == Mode.CONDITIONAL:
            targets = self.dataset.sample(batch, generator)
        else:
            noise = torch.randn(batch, self.cfg.agent.noise_size, generator=generator)
        return collect_rollout(
            self.env, self.policy, targets, noise, batch, policy_version=self.state.version,
            search_candidates=search_candidates(self.cfg, generator),
            search_lookahead=self.cfg.search.lookahead,
        )

    def train_step(self) -> dict[str, float]:
        """One iteration: an episode per environment, one policy update, one critic update."""
        started = time.perf_counter()
        rollout = self.collect()
        state = self.state
        # The policy is rewarded by the critic as it was before this iteration's critic step.
        stats = self.core.update(rollout, critic=state.discriminator)
        state.counters = state.counters.plus(skipped_updates=int(stats.skipped))
        record = stats.as_record()
        if state.discriminator is not None and state.discriminator_optimizer is not None:
            real = self.dataset.sample(rollout.actions.shape[1], state.generator)
            d = discriminator_update(
                state.discriminator,
                state.discriminator_optimizer,
                real,
                rollout.final_canvas,
                rollout.targets,
                self.cfg.mode,
                self.cfg.discriminator,
                state.generator,
            )
            state.counters = state.counters.plus(discriminator_updates=1, skipped_discriminator_updates=int(d.skipped))
            record.update(d.as_record())
        # Updates the non-finite guard skipped (spiral.learning.losses.step_if_finite), so far.
        record["charts/skipped_updates"] = float(state.counters.skipped_updates + state.counters.skipped_discriminator_updates)
        record["charts/frames_per_second"] = stats.frames / max(time.perf_counter() - started, 1e-9)
        return record

    # ----------------------------------------------------------- evaluation and checkpoints ---

    def evaluate(self, write_images: bool = True) -> dict[str, float]:
        """Held-out L2 (conditional) or a sample grid (unconditional); see :class:`Evaluator`."""
        return self.core.evaluate(write_images)

    def checkpoint(self) -> Path:
        return self.core.checkpoint()

    def restore(self, path: Path) -> None:
        self.state.restore(path)

    # --------------------------------------------------------------------------------- run ---

    def run(self, show_progress: bool = True, progress: TrainProgress | None = None) -> TrainResult:
        """Train until the budget is spent or SIGINT/SIGTERM; log, evaluate and checkpoint on the
        way (every N updates) and on the way out, then draw ``curves.png``.

        Args:
            progress: the display to feed (``spiral train`` passes one); default: one on stdout,
                drawn when ``show_progress``, writing ``<output_dir>/train.log`` either way.
        """
        core = self.core
        if progress is None:
            wall = None if self.cfg.max_wall_minutes is None else 60.0 * self.cfg.max_wall_minutes
            progress = TrainProgress(self.budget, output=RunOutput(self.out / "train.log"), enabled=show_progress, wall_limit_seconds=wall)
        core.start()
        with StopFlag() as stop, progress:
            progress.show(self.figures({}))
            core.pretrain(stopped=stop.is_set, on_update=lambda _: progress.show(self.figures({})))
            while not core.budget_spent and not stop.is_set():
                record = self.train_step()
                core.after_update(record, final=core.budget_spent)
                progress.show(self.figures(record))
            core.finish()
        if stop.is_set():
            log.info("stopped at %d updates, %d frames; checkpoint written", self.counters.updates, self.counters.frames)
        self.write_curves()
        return TrainResult(self.counters, core.last_evaluation.get("eval/held_out_l2"), core.evaluator.baselines, self.out, stop.exit_code)

    def figures(self, record: dict[str, float]) -> ProgressFigures:
        """The progress display's figures: counters, this update's record, the last evaluation."""
        nan = float("nan")
        evaluation = self.core.last_evaluation
        return ProgressFigures(
            updates=self.counters.updates,
            frames=self.counters.frames,
            reward=record.get("charts/episode_reward", nan),
            train_l2=record.get("charts/train_l2", nan),
            held_out_l2=evaluation.get("eval/held_out_l2", nan),
            blank_l2=evaluation.get("eval/blank_l2", nan),
            d_real=record.get("charts/d_real", nan),
            d_fake=record.get("charts/d_fake", nan),
            pretrain_updates=self.counters.pretrain_updates,
            pretrain_total=self.cfg.pretrain.updates,
        )

    def write_curves(self) -> Path:
        """``curves.png`` from the run log: the same function the multi-process launcher uses."""
        return write_run_curves(self.out)

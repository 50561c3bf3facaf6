"""The single-process SPIRAL trainer: B vectorised environments, the policy, the discriminator and
both learners in one process, from one :class:`~spiral.config.TrainConfig`.

Used by ``spiral train --single-process``, by the learning tests and as the speed/learning baseline
of the distributed system (which runs the same :mod:`spiral.learning.updates` in services).
Each iteration: sample targets (or noise) → play one episode per environment → score and update
the policy → update the critic on real images vs the episode's final canvases.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from spiral.agents import Discriminator, SpiralPolicy
from spiral.config import Mode, RewardKind, TrainConfig
from spiral.data import ImageDataset, load_dataset
from spiral.envs.factory import make_env
from spiral.learning.budget import budget_spent
from spiral.learning.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from spiral.learning.evaluate import Baselines, Evaluator
from spiral.learning.losses import make_discriminator_optimizer, make_policy_optimizer
from spiral.learning.rollout import Rollout, collect_rollout
from spiral.learning.run_log import RunLog, plot_curves
from spiral.learning.updates import conditioning_for, discriminator_update, policy_update

log = logging.getLogger(__name__)



class Counters(NamedTuple):
    frames: int = 0
    updates: int = 0
    discriminator_updates: int = 0


class TrainResult(NamedTuple):
    counters: Counters
    final_eval_l2: float | None
    baselines: Baselines | None
    output_dir: Path


def build_policy(cfg: TrainConfig, env) -> SpiralPolicy:
    return SpiralPolicy(
        env.action_spec, env.canvas_size, env.num_channels, cfg.mode == Mode.CONDITIONAL, cfg.agent
    )


def build_discriminator(cfg: TrainConfig, env) -> Discriminator:
    return Discriminator(env.num_channels, env.canvas_size, cfg.discriminator, conditioning_for(cfg.mode, cfg.discriminator))


class SingleProcessTrainer:
    """Owns every piece of one run. Not thread-safe."""

    def __init__(self, cfg: TrainConfig, resume: bool = True, dataset: ImageDataset | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        _seed_everything(cfg.seed)
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        self.env = make_env(cfg.env)
        self.dataset = dataset or load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
        self.policy = build_policy(cfg, self.env)
        self.policy_optimizer = make_policy_optimizer(self.policy.parameters(), cfg.learner)
        self.uses_discriminator = cfg.reward.kind == RewardKind.DISCRIMINATOR
        self.discriminator = build_discriminator(cfg, self.env) if self.uses_discriminator else None
        self.discriminator_optimizer = (
            make_discriminator_optimizer(self.discriminator.parameters(), cfg.discriminator) if self.discriminator else None
        )
        # One generator for every data/noise draw, so a resumed run draws exactly what it would have.
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.counters = Counters()
        self.run_log = RunLog(self.out / "metrics.jsonl")
        held_out = self.dataset.held_out if cfg.mode == Mode.CONDITIONAL else None
        self.evaluator = Evaluator(self.env, held_out, cfg.agent.noise_size, cfg.seed, self.out / "images")
        self._started = time.monotonic()
        if resume and find_checkpoint(self.out / "checkpoints") is not None:
            self.restore(self.out / "checkpoints")

    # ------------------------------------------------------------------------------ budget ---

    @property
    def done(self) -> bool:
        return budget_spent(self.cfg, self.counters.frames, self.counters.updates, self._started)

    @property
    def budget(self) -> tuple[int, str]:
        if self.cfg.total_updates is not None:
            return self.cfg.total_updates, "updates"
        assert self.cfg.total_frames is not None
        return self.cfg.total_frames, "frames"

    # -------------------------------------------------------------------------------- step ---

    def collect(self) -> Rollout:
        batch = self.cfg.num_envs
        targets = noise = None
        if self.cfg.mode == Mode.CONDITIONAL:
            targets = self.dataset.sample(batch, self.generator)
        else:
            noise = torch.randn(batch, self.cfg.agent.noise_size, generator=self.generator)
        return collect_rollout(self.env, self.policy, targets, noise, batch, policy_version=self.counters.updates)

    def train_step(self) -> dict[str, float]:
        """One iteration: an episode per environment, one policy update, one critic update."""
        started = time.perf_counter()
        rollout = self.collect()
        stats = policy_update(
            self.policy,
            self.policy_optimizer,
            rollout,
            self.cfg.learner,
            self.cfg.reward,
            self.cfg.mode,
            self.discriminator,
            self.cfg.discriminator,
            learner_version=self.counters.updates,
        )
        record: dict[str, float] = {
            "losses/total": stats.total_loss,
            "losses/policy": stats.policy_loss,
            "losses/baseline": stats.baseline_loss,
            "losses/entropy": stats.entropy,
            "charts/episode_reward": stats.episode_reward,
            "charts/grad_norm": stats.grad_norm,
        }
        if stats.final_l2 is not None:
            record["charts/train_l2"] = stats.final_l2
        disc_updates = self.counters.discriminator_updates
        if self.discriminator is not None and self.discriminator_optimizer is not None:
            real = self.dataset.sample(rollout.actions.shape[1], self.generator)
            d = discriminator_update(
                self.discriminator,
                self.discriminator_optimizer,
                real,
                rollout.final_canvas,
                rollout.targets,
                self.cfg.mode,
                self.cfg.discriminator,
                self.generator,
            )
            disc_updates += 1
            record.update({"losses/discriminator": d.total_loss, "charts/d_real": d.d_real, "charts/d_fake": d.d_fake})
        self.counters = Counters(self.counters.frames + stats.frames, self.counters.updates + 1, disc_updates)
        record["charts/frames_per_second"] = stats.frames / max(time.perf_counter() - started, 1e-9)
        return record

    # -------------------------------------------------------------------------- evaluation ---

    def evaluate(self, write_images: bool = True) -> dict[str, float]:
        """Held-out L2 (conditional) or a sample grid (unconditional); see :class:`Evaluator`."""
        return self.evaluator(self.policy, self.counters.updates, write_images)

    # ------------------------------------------------------------------------- checkpoints ---

    def checkpoint(self) -> Path:
        payload = {
            "config": self.cfg.model_dump(mode="json"),
            "counters": self.counters._asdict(),
            "policy": self.policy.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator else None,
            "discriminator_optimizer": self.discriminator_optimizer.state_dict() if self.discriminator_optimizer else None,
            "rng": {
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        return save_checkpoint(self.out / "checkpoints", payload)

    def restore(self, path: Path) -> None:
        payload = load_checkpoint(path)
        self.policy.load_state_dict(payload["policy"])
        self.policy_optimizer.load_state_dict(payload["policy_optimizer"])
        if self.discriminator is not None and payload.get("discriminator") is not None:
            self.discriminator.load_state_dict(payload["discriminator"])
            assert self.discriminator_optimizer is not None
            self.discriminator_optimizer.load_state_dict(payload["discriminator_optimizer"])
        self.counters = Counters(**payload["counters"])
        rng = payload["rng"]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        log.info("resumed from %s at %d updates, %d frames", path, self.counters.updates, self.counters.frames)

    # --------------------------------------------------------------------------------- run ---

    def run(self, show_progress: bool = True) -> TrainResult:
        """Train until the budget is spent; checkpoint, evaluate and write images on the way."""
        total, unit = self.budget
        self.run_log.write({"event": "start", "config": self.cfg.model_dump(mode="json"), **self._x()})
        last_eval: dict[str, float] = {}
        columns = (
            TextColumn("[bold]spiral train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not show_progress, transient=False) as progress:
            task = progress.add_task("train", total=total, info="", completed=self._progress(unit))
            while not self.done:
                record = self.train_step()
                updates = self.counters.updates
                if updates % self.cfg.log_every_updates == 0 or self.done:
                    self.run_log.write({**record, **self._x()})
                if updates % self.cfg.eval_every_updates == 0 or self.done:
                    last_eval = self.evaluate()
                    self.run_log.write({**last_eval, **self._x()})
                if updates % self.cfg.checkpoint_every_updates == 0 or self.done:
                    self.checkpoint()
                progress.update(task, completed=self._progress(unit), info=_summary(record, last_eval))
        self.write_curves()
        return TrainResult(self.counters, last_eval.get("eval/held_out_l2"), self.evaluator.baselines, self.out)

    def write_curves(self) -> Path:
        keys = ("charts/episode_reward", "losses/entropy")
        if self.evaluator.targets is not None:
            keys = ("eval/held_out_l2", "eval/held_out_l2_sampled") + keys
        hlines = {}
        if self.evaluator.baselines is not None:
            b = self.evaluator.baselines
            hlines = {"blank canvas": b.blank_l2, "random policy": b.random_l2}
        return plot_curves(self.out / "metrics.jsonl", self.out / "curves.png", keys, hlines=hlines)

    def _x(self) -> dict[str, int]:
        return {"frames": self.counters.frames, "updates": self.counters.updates}

    def _progress(self, unit: str) -> int:
        return self.counters.updates if unit == "updates" else self.counters.frames


def _summary(record: dict[str, float], last_eval: dict[str, float]) -> str:
    parts = [f"reward {record.get('charts/episode_reward', float('nan')):+.4f}"]
    if "charts/train_l2" in record:
        parts.append(f"L2 {record['charts/train_l2']:.4f}")
    if "eval/held_out_l2" in last_eval:
        parts.append(f"held-out L2 {last_eval['eval/held_out_l2']:.4f} (blank {last_eval['eval/blank_l2']:.4f})")
    if "charts/d_real" in record:
        parts.append(f"D(real) {record['charts/d_real']:+.2f} D(fake) {record['charts/d_fake']:+.2f}")
    parts.append(f"{record.get('charts/frames_per_second', 0):.0f} frames/s")
    return " · ".join(parts)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

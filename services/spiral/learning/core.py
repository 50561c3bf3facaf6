"""The policy learner without a transport: what the single-process trainer and the policy learner
service both are, minus where their rollouts come from.

:class:`PolicyLearnerCore` owns a run's :class:`~spiral.learning.state.TrainingState` (resumed from
``<output_dir>/checkpoints`` when asked), its :class:`~spiral.learning.evaluate.Evaluator`, its run
log (``metrics.jsonl``, mirrored to ``tensorboard/<role>/``) and its
:class:`~spiral.learning.cadence.Cadence`. A driver feeds it
rollouts and calls, in this order::

    core.start()                                   # the start record
    while not core.budget_spent and not stopped:
        stats = core.update(rollout, critic)       # one A2C + V-trace step (spiral.learning.updates)
        core.after_update(record, final=core.budget_spent)   # log / evaluate / checkpoint when due
    core.finish()                                  # on the way out: whatever is still due

The drivers: :class:`spiral.learning.trainer.SingleProcessTrainer` (rollouts collected in-process,
plus a critic step per update) and :mod:`spiral.services.policy_learner` (rollouts from actors over
gRPC, weights published after every update). A new reward goes into
:mod:`spiral.learning.rewards` and :func:`spiral.learning.updates.canvas_scores`; both drivers pick it
up from there. Not thread-safe: one driver thread calls everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from spiral.agents import Discriminator
from spiral.config import DatasetName, Hyperparameter, Mode, TrainConfig
from spiral.data import ImageDataset
from spiral.envs.base import BatchedEnv
from spiral.learning.budget import budget_fraction, budget_spent
from spiral.learning.cadence import ALL_DUE, Cadence, Due
from spiral.learning.evaluate import Evaluator
from spiral.learning.hyperparameters import RuntimeHyperparameters

if TYPE_CHECKING:  # pragma: no cover - the digit classifier loads lazily
    from spiral.learning.digits import DigitScore
from spiral.learning.pretrain import PretrainStats, pretrain_update, program_source
from spiral.learning.rollout import Rollout
from spiral.learning.run_log import RunLog
from spiral.learning.search import paint_time_lookahead
from spiral.learning.state import TrainingState
from spiral.learning.tensorboard import TensorBoardWriter
from spiral.learning.updates import PolicyUpdateStats, policy_update

log = logging.getLogger(__name__)


def digit_scorer(cfg: TrainConfig) -> Callable[[torch.Tensor], DigitScore]:
    """The MNIST digit score of unconditional samples (:mod:`spiral.learning.digits`); the
    classifier is loaded (or trained and cached, ~2 minutes once per machine) at the first call."""
    from spiral.learning.digits import digit_score, load_or_train_digit_classifier

    classifier = None

    def score(canvases: torch.Tensor) -> DigitScore:
        nonlocal classifier
        if classifier is None:
            classifier = load_or_train_digit_classifier(cfg.data, cfg.env.canvas_size)
        return digit_score(classifier, canvases, ink=cfg.env.ink)

    return score


def _digit_record(cfg: TrainConfig) -> Callable[[torch.Tensor], dict[str, float]]:
    scorer = digit_scorer(cfg)
    return lambda canvases: scorer(canvases).as_record()


class PolicyLearnerCore:
    """Owns one run's policy learning state, evaluation, log and cadence (see the module docstring)."""

    def __init__(
        self,
        cfg: TrainConfig,
        env: BatchedEnv,
        dataset: ImageDataset,
        *,
        role: str,
        train_discriminator: bool,
        resume: bool,
        export_hyperparameter: Callable[[Hyperparameter, float], None] | None = None,
    ) -> None:
        """Build fresh networks (seeded with ``cfg.seed``), then resume from the run's checkpoint
        when ``resume`` and one exists.

        Args:
            role: written into checkpoints and the start record (which driver this is).
            train_discriminator: the state also holds a critic and its optimiser (the
                single-process trainer with the discriminator reward trains one here).
            export_hyperparameter: told every value of :attr:`hyperparameters` at start and at
                each change (the policy learner's Prometheus gauge).

        Raises:
            ValueError: the existing checkpoint is unreadable or holds no policy.
        """
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.checkpoint_dir = self.out / "checkpoints"
        self.role = role
        self.state = TrainingState.build(cfg, env, role=role, policy=True, discriminator=train_discriminator, seed=cfg.seed)
        self.cadence = Cadence.from_config(cfg)
        self.run_log = RunLog(self.out / "metrics.jsonl", tensorboard=TensorBoardWriter(self.out / "tensorboard" / role))
        held_out = dataset.held_out if cfg.mode == Mode.CONDITIONAL else None
        self.evaluator = Evaluator(
            env,
            held_out,
            cfg.agent.noise_size,
            cfg.seed,
            self.out / "images",
            search_candidates=cfg.search.eval_candidates,
            search_lookahead=paint_time_lookahead(env, cfg.search.eval_candidates),
            sample_score=_digit_record(cfg) if cfg.mode == Mode.UNCONDITIONAL and cfg.data.name == DatasetName.MNIST else None,
        )
        self.last_evaluation: dict[str, float] = {}
        self._last_record: dict[str, float] | None = None
        self._started = time.monotonic()
        self.env = env
        self.dataset = dataset
        resumed = self.state.resume(self.checkpoint_dir) if resume else None
        if resumed is None and cfg.init_from is not None:
            self.state.initialise_policy_from(cfg.init_from, pretrained_updates=cfg.pretrain.updates)
        # After the resume, which set the optimisers back to the config's learning rates.
        self.hyperparameters = RuntimeHyperparameters(
            cfg.learner.hyperparameters_file,
            cfg.learner,
            cfg.discriminator,
            policy_optimizer=self.state.policy_optimizer,
            discriminator_optimizer=self.state.discriminator_optimizer,
            export=export_hyperparameter,
        )
        # The update counts at which each action last ran: nothing new to log or evaluate right
        # after a resume, but every process checkpoints at least once (its restart count).
        updates = self.state.counters.updates
        self._logged_at: int | None = updates
        self._evaluated_at: int | None = updates
        self._checkpointed_at: int | None = None
        self._rl_started_at: float | None = None  # budget fraction at this process's first RL update

    # ------------------------------------------------------------------------------ budget ---

    @property
    def budget_spent(self) -> bool:
        """Frames, updates or wall-clock minutes (whichever are set) reached their budget."""
        counters = self.state.counters
        return budget_spent(self.cfg, counters.frames, counters.updates, self._started)

    def x_axis(self) -> dict[str, int]:
        """The counters every run-log record carries."""
        c = self.state.counters
        return {"frames": c.frames, "updates": c.updates, "version": self.state.version, "pretrain_updates": c.pretrain_updates}

    # ------------------------------------------------------------------------------ update ---

    def start(self) -> None:
        """Write the start record: role, version, restarts and the whole config (logged once)."""
        s = self.state
        self.run_log.write({"event": "start", "role": self.role, "restarts": s.restarts, "config": self.cfg.model_dump(mode="json"), **self.x_axis()})

    @property
    def pretraining_due(self) -> bool:
        """Pretraining updates remain (``pretrain.updates`` not yet done, counted across restarts)."""
        return self.state.counters.pretrain_updates < self.cfg.pretrain.updates

    def pretrain(self, stopped: Callable[[], bool] = lambda: False, on_update: Callable[[PretrainStats], None] | None = None) -> None:
        """Run the remaining pretraining updates on synthetic programs (:mod:`spiral.learning.pretrain`),
        logging, evaluating and checkpointing on the RL cadence (counted in pretraining updates),
        then once more at the end: the curve shows where RL starts from, and a restart never
        pretrains twice. Stops early when ``stopped()`` or the wall-clock budget says so.

        The policy's own optimiser does the updates (at ``pretrain.learning_rate`` when set), so a
        checkpoint taken mid-way resumes exactly. Its moments are dropped once pretraining is done
        (``pretrain.fresh_optimizer_for_rl``): RL's gradients are ~25× pretraining's, and Adam's
        second moments carried over would make RL's first hundred steps many times the learning
        rate (README: the ablation where the greedy policy then stopped lifting the brush).
        """
        if not self.pretraining_due:
            return
        s = self.state
        assert s.policy is not None and s.policy_optimizer is not None
        lr = self.cfg.pretrain.learning_rate or self.hyperparameters.learner.learning_rate
        for group in s.policy_optimizer.param_groups:
            group["lr"] = lr
        log.info(
            "pretraining on synthetic programs: %d of %d updates to go", self.cfg.pretrain.updates - s.counters.pretrain_updates, self.cfg.pretrain.updates
        )
        source = program_source(self.cfg, s.policy.action_spec, self.dataset)
        threads = torch.get_num_threads()
        if self.cfg.pretrain.threads is not None:
            torch.set_num_threads(self.cfg.pretrain.threads)
        try:
            while self.pretraining_due and not stopped() and not self.budget_spent:
                stats = pretrain_update(s.policy, s.policy_optimizer, self.env, self.cfg, s.generator, source)
                s.counters = s.counters.plus(pretrain_updates=1, pretrain_frames=stats.frames)
                if on_update is not None:
                    on_update(stats)
                done = s.counters.pretrain_updates
                if done % self.cadence.log_every == 0 or not self.pretraining_due:
                    self.run_log.write({**stats.as_record(), **self.x_axis()})
                # The same cadence as RL, counted in pretraining updates: the curve and the
                # checkpoints do not wait for RL to start.
                if done % self.cadence.checkpoint_every == 0 and self.pretraining_due:
                    self.checkpoint()
                if done % self.cadence.eval_every == 0 and self.pretraining_due:
                    self.evaluate()
        finally:
            torch.set_num_threads(threads)
            for group in s.policy_optimizer.param_groups:
                group["lr"] = self.hyperparameters.learner.learning_rate
        if self.cfg.pretrain.fresh_optimizer_for_rl and not self.pretraining_due:
            s.policy_optimizer.state.clear()  # Adam's moments and step counts: RL starts as from --init-from
        self.checkpoint()
        self.evaluate()

    def update(self, rollout: Rollout, critic: Discriminator | None) -> PolicyUpdateStats:
        """One policy update on ``rollout`` (whole episodes), rewarded by ``critic`` for the
        discriminator reward; advances the counters and the version by one update."""
        s = self.state
        assert s.policy is not None and s.policy_optimizer is not None
        cfg = self.cfg
        self._poll_hyperparameters()
        self._anneal_learning_rate()
        stats = policy_update(
            s.policy,
            s.policy_optimizer,
            rollout,
            self.hyperparameters.learner,  # cfg.learner with the learning rate and entropy applied at run time
            cfg.reward,
            cfg.mode,
            critic,
            cfg.discriminator,
            learner_version=s.version,
            imitation_coef=cfg.search.imitation_coef,
        )
        s.counters = s.counters.plus(frames=stats.frames, updates=1)
        s.version += 1
        return stats

    def _anneal_learning_rate(self) -> None:
        """Set the policy's learning rate on ``learner.learning_rate_final_fraction``'s linear schedule.

        It spans RL's share of the budget, from this run's first RL update to the budget's end, so
        pretraining's wall time does not eat into it. A process that resumes after RL began (its
        clock restarted) counts from the start of the budget. The base is the runtime value, so a
        population's explore scales the whole schedule.
        """
        final = self.hyperparameters.learner.learning_rate_final_fraction
        if final == 1.0:
            return
        s = self.state
        assert s.policy_optimizer is not None
        spent = budget_fraction(self.cfg, s.counters.frames, s.counters.updates, self._started)
        if self._rl_started_at is None:
            self._rl_started_at = spent if s.counters.updates == 0 else 0.0
        progress = min(1.0, (spent - self._rl_started_at) / max(1.0 - self._rl_started_at, 1e-9))
        lr = self.hyperparameters.learner.learning_rate * (1.0 - (1.0 - final) * progress)
        for group in s.policy_optimizer.param_groups:
            group["lr"] = lr

    @property
    def policy_learning_rate(self) -> float:
        """The learning rate the policy's optimiser steps with now (annealed, when the schedule is on)."""
        assert self.state.policy_optimizer is not None
        return float(self.state.policy_optimizer.param_groups[0]["lr"])

    def _poll_hyperparameters(self) -> None:
        """Apply a changed ``learner.hyperparameters_file``; each change also goes into the run log
        (``hyperparameters/<name>``, so TensorBoard and the curves show when a value moved)."""
        changes = self.hyperparameters.poll(self.state.counters.updates)
        if changes:
            self.run_log.write({"event": "hyperparameters", **{f"hyperparameters/{c.name.value}": c.new for c in changes}, **self.x_axis()})

    def after_update(self, record: Mapping[str, float], *, final: bool) -> dict[str, float] | None:
        """Log ``record``, evaluate and checkpoint as the cadence says (all three when ``final``).

        Returns the evaluation's record when one ran, else None.
        """
        self._last_record = dict(record)
        if self.hyperparameters.learner.learning_rate_final_fraction != 1.0:
            self._last_record["charts/learning_rate"] = self.policy_learning_rate
        return self._act(self.cadence.due(self.state.counters.updates, final=final))

    def finish(self) -> dict[str, float] | None:
        """On the way out (budget spent or stopped): log, checkpoint and evaluate whatever has not
        been at the current update, then mark a spent budget with a ``done`` record.

        Returns the evaluation's record when one ran, else None.
        """
        evaluation = self._act(ALL_DUE)
        if self.budget_spent:
            self.run_log.write({"event": "done", **self.x_axis()})
            log.info("budget spent: %d updates, %d frames, version %d", self.state.counters.updates, self.state.counters.frames, self.state.version)
        self.run_log.close()  # flushes TensorBoard's writer; a later record reopens it
        return evaluation

    def _act(self, due: Due) -> dict[str, float] | None:
        updates = self.state.counters.updates
        if due.log and self._last_record is not None and self._logged_at != updates:
            self.log(self._last_record)
        # Checkpoint before evaluating: on the way out a slow evaluation may outlast the stop's
        # grace period (SIGKILL), and evaluation changes nothing a checkpoint holds.
        if due.checkpoint and self._checkpointed_at != updates:
            self.checkpoint()
        if due.evaluate and self._evaluated_at != updates:
            return self.evaluate()
        return None

    # ------------------------------------------------------------------ log, eval, checkpoint ---

    def log(self, record: Mapping[str, float]) -> None:
        self.run_log.write({**record, **self.x_axis()})
        self._logged_at = self.state.counters.updates

    def evaluate(self, write_images: bool = True) -> dict[str, float]:
        """Held-out L2 (conditional) or a sample grid (unconditional), logged; see :class:`Evaluator`."""
        assert self.state.policy is not None
        record = self.evaluator(self.state.policy, self.state.counters.updates, write_images)
        self.run_log.write({**record, **self.x_axis()})
        if write_images:
            self.run_log.images(self.evaluator.last_images, self.state.counters.frames)
        self.last_evaluation = record
        self._evaluated_at = self.state.counters.updates
        return record

    def checkpoint(self) -> Path:
        """Save the state to ``<output_dir>/checkpoints/latest.pt``. Raises: OSError."""
        path = self.state.save(self.checkpoint_dir)
        self._checkpointed_at = self.state.counters.updates
        return path

"""Everything a training run must carry across a restart, and its one checkpoint format.

:class:`TrainingState` is what the single-process trainer, the policy learner service and the
discriminator learner service checkpoint and resume: the networks they train with their
optimisers, the :class:`Counters`, the published weights ``version``, the number of ``restarts``
and the *real* RNG states (the run's data generator, torch's global, numpy's and Python's), so that
a resumed run draws exactly what it would have drawn.

The checkpoint is one dict (written by :mod:`spiral.learning.checkpoint`) with the keys ``config``,
``counters``, ``policy``, ``policy_optimizer``, ``discriminator``, ``discriminator_optimizer``,
``rng``, ``version``, ``restarts`` and ``role`` (who wrote it). Parts a driver does not train are
``None``. Because the format is shared, a checkpoint written by the single-process trainer resumes
in the policy learner and vice versa, and ``spiral sample`` reads either.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from spiral.agents import Discriminator, SpiralPolicy, build_discriminator, build_policy
from spiral.config import TrainConfig
from spiral.envs.base import BatchedEnv
from spiral.learning.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from spiral.learning.losses import make_discriminator_optimizer, make_policy_optimizer

log = logging.getLogger(__name__)


class Counters(NamedTuple):
    """How far a run has come; the x-axes of its logs and its budget."""

    frames: int = 0  # environment steps consumed by policy updates
    updates: int = 0  # policy updates
    discriminator_updates: int = 0  # critic updates
    skipped_updates: int = 0  # policy updates whose loss or gradient was not finite (no optimiser step)
    skipped_discriminator_updates: int = 0  # the same for critic updates

    def plus(
        self,
        *,
        frames: int = 0,
        updates: int = 0,
        discriminator_updates: int = 0,
        skipped_updates: int = 0,
        skipped_discriminator_updates: int = 0,
    ) -> "Counters":
        return Counters(
            self.frames + frames,
            self.updates + updates,
            self.discriminator_updates + discriminator_updates,
            self.skipped_updates + skipped_updates,
            self.skipped_discriminator_updates + skipped_discriminator_updates,
        )


class RngStates(NamedTuple):
    """Every random number generator a run draws from, as restorable states."""

    generator: torch.Tensor  # the run's data/noise torch.Generator
    torch: torch.Tensor  # torch's global generator (network initialisation, sampling)
    numpy: Any  # numpy's legacy global state tuple
    python: Any  # random.getstate()

    @classmethod
    def capture(cls, generator: torch.Generator) -> "RngStates":
        return cls(generator.get_state(), torch.get_rng_state(), np.random.get_state(), random.getstate())

    def apply(self, generator: torch.Generator) -> None:
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch)
        np.random.set_state(self.numpy)
        random.setstate(self.python)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (networks initialise from torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(eq=False)
class TrainingState:
    """The resumable state of one trainer process. Not thread-safe: one driver thread owns it.

    ``policy`` (with ``policy_optimizer``) is None in the discriminator learner;
    ``discriminator`` (with ``discriminator_optimizer``) is None where no critic is trained here.
    """

    cfg: TrainConfig
    role: str  # written into checkpoints: which driver wrote them
    generator: torch.Generator
    policy: SpiralPolicy | None = None
    policy_optimizer: torch.optim.Optimizer | None = None
    discriminator: Discriminator | None = None
    discriminator_optimizer: torch.optim.Optimizer | None = None
    counters: Counters = Counters()
    version: int = 0  # weights version: only ever increases, also across restarts
    restarts: int = 0  # how often this run was resumed from a checkpoint

    @classmethod
    def build(cls, cfg: TrainConfig, env: BatchedEnv, *, role: str, policy: bool, discriminator: bool, seed: int) -> "TrainingState":
        """Fresh networks and optimisers for ``env``, after seeding every generator with ``seed``.

        Args:
            policy: build and train the policy (every driver but the discriminator learner).
            discriminator: build and train a critic here (the single-process trainer with the
                discriminator reward, and the discriminator learner).
        """
        seed_everything(seed)
        state = cls(cfg, role, torch.Generator().manual_seed(seed))
        if policy:
            state.policy = build_policy(cfg, env)
            state.policy_optimizer = make_policy_optimizer(state.policy.parameters(), cfg.learner)
        if discriminator:
            state.discriminator = build_discriminator(cfg, env)
            state.discriminator_optimizer = make_discriminator_optimizer(state.discriminator.parameters(), cfg.discriminator)
        return state

    # ------------------------------------------------------------------------- checkpoints ---

    def save(self, directory: Path) -> Path:
        """Write the checkpoint to ``directory/latest.pt`` atomically; returns its path.

        Raises:
            OSError: the folder is not writable or the disk is full.
        """
        payload = {
            "config": self.cfg.model_dump(mode="json"),
            "counters": self.counters._asdict(),
            "policy": _state_dict(self.policy),
            "policy_optimizer": _state_dict(self.policy_optimizer),
            "discriminator": _state_dict(self.discriminator),
            "discriminator_optimizer": _state_dict(self.discriminator_optimizer),
            "rng": RngStates.capture(self.generator)._asdict(),
            "version": self.version,
            "restarts": self.restarts,
            "role": self.role,
        }
        return save_checkpoint(directory, payload)

    def restore(self, path: Path) -> None:
        """Load a checkpoint (a file, or a folder holding ``latest.pt``) into this state.

        A critic missing from the checkpoint (written where none was trained) leaves this state's
        freshly initialised one in place, with a warning.

        Raises:
            FileNotFoundError: no checkpoint at ``path``.
            ValueError: unreadable, or lacking what this state needs (names the entry and the
                checkpoint's writer).
        """
        payload = load_checkpoint(path)
        writer = payload.get("role", "an unknown writer")
        for key in ("counters", "rng"):
            if key not in payload:
                raise ValueError(f"checkpoint {path} (written by {writer}) has no {key!r} entry: it predates this release; move it away to start afresh")
        if self.policy is not None:
            if payload.get("policy") is None:
                raise ValueError(f"checkpoint {path} (written by {writer}) holds no policy; a policy trainer cannot resume from it")
            self.policy.load_state_dict(payload["policy"])
            assert self.policy_optimizer is not None
            self.policy_optimizer.load_state_dict(payload["policy_optimizer"])
        if self.discriminator is not None:
            if payload.get("discriminator") is None:
                log.warning("checkpoint %s (written by %s) holds no discriminator: keeping a freshly initialised one", path, writer)
            else:
                self.discriminator.load_state_dict(payload["discriminator"])
                if self.discriminator_optimizer is not None and payload.get("discriminator_optimizer") is not None:
                    self.discriminator_optimizer.load_state_dict(payload["discriminator_optimizer"])
        self.counters = Counters(**payload["counters"])
        # Checkpoints of the first single-process trainer had no version: it equalled the updates.
        self.version = int(payload.get("version", self.counters.updates))
        self.restarts = int(payload.get("restarts", 0))
        RngStates(**payload["rng"]).apply(self.generator)

    def resume(self, directory: Path) -> Path | None:
        """Restore the checkpoint in ``directory`` if there is one, counting the restart.

        Returns the checkpoint's path, or None when there was none (nothing changes then).

        Raises:
            ValueError: see :meth:`restore`.
        """
        path = find_checkpoint(directory)
        if path is None:
            return None
        self.restore(path)
        self.restarts += 1
        c = self.counters
        log.info(
            "resumed from %s: %d updates, %d frames, %d critic updates, version %d, restart %d",
            path, c.updates, c.frames, c.discriminator_updates, self.version, self.restarts,
        )  # fmt: skip
        return path


def _state_dict(part: torch.nn.Module | torch.optim.Optimizer | None) -> dict[str, Any] | None:
    return None if part is None else part.state_dict()

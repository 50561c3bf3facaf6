"""Everything a training run must carry across a restart, and its one checkpoint format.

:class:`TrainingState` is what the single-process trainer, the policy learner service and the
discriminator learner service checkpoint and resume: the networks they train with their
optimisers, the :class:`Counters`, the published weights ``version``, the number of ``restarts``
and the *real* RNG states (the run's data generator, torch's global, numpy's and Python's), so that
a resumed run draws exactly what it would have drawn.

The checkpoint is one dict (written by :mod:`spiral.learning.checkpoint`) with the keys ``config``
(JSON text), ``counters``, ``policy``, ``policy_optimizer``, ``discriminator``,
``discriminator_optimizer``, ``rng`` (tensors and numbers), ``version``, ``restarts`` and ``role``
(who wrote it): tensors and plain containers only, so that it loads with
``torch.load(weights_only=True)``. Parts a driver does not train are ``None``. Because the format is
shared, a checkpoint written by the single-process trainer resumes in the policy learner and vice
versa, and ``spiral sample`` reads either.

A resume compares the stored config with the new one (:mod:`spiral.learning.resume`): learning
rates, the entropy bonus, budgets, cadence, actors, addresses and paths may change — they are
applied (the optimisers' learning rates are overwritten after their state is loaded) and logged —
any other difference is refused, naming the keys.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

# RngStates has a field named ``torch``, which shadows the module in its annotations.
from torch import Generator as TorchGenerator

from spiral.agents import Discriminator, SpiralPolicy, build_discriminator, build_policy
from spiral.config import TrainConfig
from spiral.envs.base import BatchedEnv
from spiral.learning.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from spiral.learning.losses import make_discriminator_optimizer, make_policy_optimizer
from spiral.learning.resume import compare_configs, refusal

log = logging.getLogger(__name__)


class Counters(NamedTuple):
    """How far a run has come; the x-axes of its logs and its budget."""

    frames: int = 0  # environment steps consumed by policy updates
    updates: int = 0  # policy updates
    discriminator_updates: int = 0  # critic updates
    skipped_updates: int = 0  # policy updates whose loss or gradient was not finite (no optimiser step)
    skipped_discriminator_updates: int = 0  # the same for critic updates
    pretrain_updates: int = 0  # supervised updates on synthetic programs (spiral.learning.pretrain)
    pretrain_frames: int = 0  # synthetic program steps those updates rendered (not RL frames)

    def plus(
        self,
        *,
        frames: int = 0,
        updates: int = 0,
        discriminator_updates: int = 0,
        skipped_updates: int = 0,
        skipped_discriminator_updates: int = 0,
        pretrain_updates: int = 0,
        pretrain_frames: int = 0,
    ) -> Counters:
        return Counters(
            self.frames + frames,
            self.updates + updates,
            self.discriminator_updates + discriminator_updates,
            self.skipped_updates + skipped_updates,
            self.skipped_discriminator_updates + skipped_discriminator_updates,
            self.pretrain_updates + pretrain_updates,
            self.pretrain_frames + pretrain_frames,
        )


class RngStates(NamedTuple):
    """Every random number generator a run draws from, as restorable states."""

    generator: torch.Tensor  # the run's data/noise torch.Generator
    torch: torch.Tensor  # torch's global generator (network initialisation, sampling)
    numpy: Any  # numpy's legacy global state tuple
    python: Any  # random.getstate()

    @classmethod
    def capture(cls, generator: TorchGenerator) -> RngStates:
        return cls(generator.get_state(), torch.get_rng_state(), np.random.get_state(), random.getstate())

    def apply(self, generator: TorchGenerator) -> None:
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch)
        np.random.set_state(self.numpy)
        random.setstate(self.python)

    def to_saved(self) -> dict[str, Any]:
        """As tensors and numbers only (``weights_only`` loading refuses numpy arrays and tuples of them)."""
        name, keys, pos, has_gauss, cached = self.numpy
        version, python_state, gauss_next = self.python
        return {
            "generator": self.generator,
            "torch": self.torch,
            "numpy": {
                "name": str(name),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": int(version), "state": torch.tensor(python_state, dtype=torch.int64), "gauss_next": gauss_next},
        }

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> RngStates:
        """Inverse of :meth:`to_saved`."""
        n, py = saved["numpy"], saved["python"]
        numpy_state = (n["name"], n["keys"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"]))
        python_state = (int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"])
        return cls(saved["generator"], saved["torch"], numpy_state, python_state)


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
    def build(cls, cfg: TrainConfig, env: BatchedEnv, *, role: str, policy: bool, discriminator: bool, seed: int) -> TrainingState:
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
        """Write the next checkpoint of ``directory`` (``latest.pt`` points at it; the newest
        ``keep_checkpoints`` are kept) atomically; returns the ``latest.pt`` path.

        Raises:
            DiskFullError: the disk is full (names the folder and the free space).
            OSError: the folder is not writable.
        """
        payload = {
            "config": json.dumps(self.cfg.model_dump(mode="json"), sort_keys=True),
            "counters": self.counters._asdict(),
            "policy": _state_dict(self.policy),
            "policy_optimizer": _state_dict(self.policy_optimizer),
            "discriminator": _state_dict(self.discriminator),
            "discriminator_optimizer": _state_dict(self.discriminator_optimizer),
            "rng": RngStates.capture(self.generator).to_saved(),
            "version": self.version,
            "restarts": self.restarts,
            "role": self.role,
        }
        return save_checkpoint(directory, payload, keep=self.cfg.keep_checkpoints)

    def restore(self, path: Path) -> Path:
        """Load a checkpoint (a file, or a folder's newest checkpoint that verifies) into this
        state; returns the file it came from.

        A critic missing from the checkpoint (written where none was trained) leaves this state's
        freshly initialised one in place, with a warning. Config differences a resume may apply
        are logged; the optimisers take the new config's learning rates.

        Raises:
            FileNotFoundError: no checkpoint at ``path``.
            ResumeConfigError: the new config changes settings the checkpoint depends on (names
                them, and ``--no-resume`` / a new ``-o``).
            ValueError: unreadable, corrupt, or lacking what this state needs (names the entry
                and the checkpoint's writer).
        """
        loaded = read_checkpoint(path)
        payload, source = loaded.payload, loaded.path
        writer = payload.get("role", "an unknown writer")
        for key in ("counters", "rng"):
            if key not in payload:
                raise ValueError(f"checkpoint {source} (written by {writer}) has no {key!r} entry: it predates this release; move it away to start afresh")
        changes = compare_configs(payload["config"], self.cfg)
        if changes.refused:
            raise refusal(source, changes.refused)
        if changes.applied:
            log.info("resuming %s with changed settings: %s", source, "; ".join(str(c) for c in changes.applied))
        if self.policy is not None:
            if payload.get("policy") is None:
                raise ValueError(f"checkpoint {source} (written by {writer}) holds no policy; a policy trainer cannot resume from it")
            _load_into(self.policy, payload["policy"], source, "policy")
            assert self.policy_optimizer is not None
            _load_into(self.policy_optimizer, payload["policy_optimizer"], source, "policy_optimizer")
            _set_learning_rate(self.policy_optimizer, self.cfg.learner.learning_rate)
        if self.discriminator is not None:
            if payload.get("discriminator") is None:
                log.warning("checkpoint %s (written by %s) holds no discriminator: keeping a freshly initialised one", source, writer)
            else:
                _load_into(self.discriminator, payload["discriminator"], source, "discriminator")
                if self.discriminator_optimizer is not None and payload.get("discriminator_optimizer") is not None:
                    _load_into(self.discriminator_optimizer, payload["discriminator_optimizer"], source, "discriminator_optimizer")
                    _set_learning_rate(self.discriminator_optimizer, self.cfg.discriminator.learning_rate)
        self.counters = Counters(**payload["counters"])
        # Checkpoints of the first single-process trainer had no version: it equalled the updates.
        self.version = int(payload.get("version", self.counters.updates))
        self.restarts = int(payload.get("restarts", 0))
        rng = payload["rng"]
        (RngStates.from_saved(rng) if isinstance(rng.get("numpy"), dict) else RngStates(**rng)).apply(self.generator)
        return source

    def initialise_policy_from(self, path: Path, *, pretrained_updates: int) -> None:
        """Start a fresh run from another checkpoint's policy weights (``init_from``): only the
        weights are taken — optimiser, counters and RNG states stay fresh — and the run's own
        pretraining counts as done (the weights are what it would have produced).

        Raises:
            FileNotFoundError, ValueError: no readable checkpoint with a policy at ``path``.
        """
        if self.policy is None:
            return
        payload = load_checkpoint(path)
        if payload.get("policy") is None:
            raise ValueError(f"init_from {path}: the checkpoint holds no policy")
        try:
            self.policy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["policy"].items()})
        except RuntimeError as err:
            raise ValueError(f"init_from {path}: its policy does not fit this run's env/agent settings ({err})") from None
        self.counters = self.counters._replace(pretrain_updates=max(self.counters.pretrain_updates, pretrained_updates))
        log.info("initialised the policy from %s", path)

    def resume(self, directory: Path) -> Path | None:
        """Restore the checkpoint in ``directory`` if there is one, counting the restart.

        Returns the checkpoint's path, or None when there was none (nothing changes then).

        Raises:
            ValueError: see :meth:`restore`.
        """
        if find_checkpoint(directory) is None:
            return None
        path = self.restore(directory)  # the newest checkpoint that verifies (an older one if need be)
        self.restarts += 1
        c = self.counters
        log.info(
            "resumed from %s: %d updates, %d frames, %d critic updates, version %d, restart %d",
            path, c.updates, c.frames, c.discriminator_updates, self.version, self.restarts,
        )  # fmt: skip
        return path


def _state_dict(part: torch.nn.Module | torch.optim.Optimizer | None) -> dict[str, Any] | None:
    return None if part is None else part.state_dict()


def _load_into(part: torch.nn.Module | torch.optim.Optimizer, state: Any, source: Path, entry: str) -> None:
    """``part.load_state_dict(state)``, with a shape mismatch named as such (not a raw RuntimeError).

    Raises:
        CheckpointError: the entry does not fit this run's networks.
    """
    try:
        part.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {source}: its {entry!r} does not fit this run's networks ({first}); start afresh with --no-resume "
            "or train into a new --output-dir"
        ) from None


def _set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Loading an optimiser's state also loads its old learning rate: the config's must win."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate

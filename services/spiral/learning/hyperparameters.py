"""Hyperparameters a running learner takes from a file, without a restart: how a population explores.

``learner.hyperparameters_file`` names a JSON object such as
``{"learning_rate": 0.0005, "entropy_coef": 0.12, "discriminator_learning_rate": 0.0001}`` (the keys
are :class:`spiral.config.Hyperparameter`'s; each is optional). :class:`RuntimeHyperparameters`
polls it every few updates and applies what changed: the policy optimiser's learning rate and the
entropy coefficient the policy loss uses (:meth:`RuntimeHyperparameters.learner`), or the critic
optimiser's learning rate. Each learner applies the keys it owns and leaves the others to its peer.
Every change is logged (old → new) and handed to ``export`` (the learners' Prometheus gauge).

On Kubernetes the file is a key of a ConfigMap mounted as a folder (never through ``subPath``, which
the kubelet does not update): the kubelet swaps the mounted files in place within its sync period,
so patching the ConfigMap reaches the running learners. A local writer does what the kubelet does —
:func:`write_hyperparameters` writes a temporary file and renames it over the old one — so a poll
never reads half a file.

A poll is one ``os.stat``; the file is read again only when its modification time, size or inode
changed (the kubelet's swap gives it a new inode). A file that cannot be read, is not a JSON object
of known keys, or holds a value that is not finite or outside its config field's bounds is logged
as an error and ignored as a whole: the run keeps its current values and nothing is raised.

Callers: :class:`spiral.learning.core.PolicyLearnerCore` (so the single-process trainer and the
policy learner service) and :class:`spiral.services.discriminator_learner.DiscriminatorLearner`.
Not thread-safe: the learner's update thread polls.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from spiral.config import DiscriminatorConfig, Hyperparameter, LearnerConfig
from spiral.fsio import atomic_write_bytes

log = logging.getLogger(__name__)

#: Updates between two polls. A poll is a stat() — microseconds against an update's tens of
#: milliseconds — so this only bounds how late a change arrives (the kubelet adds up to a minute).
POLL_EVERY_UPDATES = 10


class HyperparameterChange(NamedTuple):
    name: Hyperparameter
    old: float
    new: float

    def __str__(self) -> str:
        return f"{self.name.value} {self.old:.6g} → {self.new:.6g}"


class HyperparameterFileError(ValueError):
    """The hyperparameters file is unusable; the message names the file, the key and the valid values."""


def parse_hyperparameters(text: str, source: Path) -> dict[Hyperparameter, float]:
    """The values in a hyperparameters file's text.

    Raises:
        HyperparameterFileError: not JSON, not an object, an unknown key, or a value that is not a
            finite number inside its config field's bounds (each named with the file).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HyperparameterFileError(f"{source} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise HyperparameterFileError(f"{source} must hold a JSON object of hyperparameters, got {type(data).__name__}")
    valid = ", ".join(h.value for h in Hyperparameter)
    values: dict[Hyperparameter, float] = {}
    for key, value in data.items():
        try:
            name = Hyperparameter(key)
        except ValueError:
            raise HyperparameterFileError(f"{source}: unknown key {key!r}; valid keys: {valid}") from None
        section, field = name.field
        # bool is an int in Python, and json reads NaN and Infinity: neither is a learning rate.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not name.bounds.contains(value):
            raise HyperparameterFileError(f"{source}: {key} must be a finite number in {name.bounds} (the bounds of {section}.{field}), got {value!r}")
        values[name] = float(value)
    return values


def write_hyperparameters(path: Path, values: Mapping[Hyperparameter, float]) -> Path:
    """Replace the hyperparameters file at ``path`` with ``values``, atomically. Raises: OSError."""
    text = json.dumps({name.value: float(value) for name, value in values.items()}, indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


class RuntimeHyperparameters:
    """The hyperparameters one learner trains with now, updated from ``path`` while it runs.

    It owns the policy's hyperparameters (learning rate, entropy coefficient) when given
    ``policy_optimizer``, and the critic's learning rate when given ``discriminator_optimizer``.
    Not thread-safe (see the module docstring).
    """

    def __init__(
        self,
        path: Path | None,
        learner: LearnerConfig,
        discriminator: DiscriminatorConfig,
        *,
        policy_optimizer: torch.optim.Optimizer | None = None,
        discriminator_optimizer: torch.optim.Optimizer | None = None,
        poll_every_updates: int = POLL_EVERY_UPDATES,
        export: Callable[[Hyperparameter, float], None] | None = None,
    ) -> None:
        """Start from the config's values (also exported) and read ``path`` at the first :meth:`poll`.

        Build it after a resume: loading an optimiser's state sets the config's learning rate again
        (:meth:`spiral.learning.state.TrainingState.restore`), and the first poll re-applies the file.
        """
        self.path = path
        self._learner = learner
        self._discriminator = discriminator
        self._optimizers: dict[Hyperparameter, torch.optim.Optimizer | None] = {
            Hyperparameter.LEARNING_RATE: policy_optimizer,
            Hyperparameter.DISCRIMINATOR_LEARNING_RATE: discriminator_optimizer,
        }
        self._owned: list[Hyperparameter] = []
        if policy_optimizer is not None:
            self._owned += [Hyperparameter.LEARNING_RATE, Hyperparameter.ENTROPY_COEF]
        if discriminator_optimizer is not None:
            self._owned.append(Hyperparameter.DISCRIMINATOR_LEARNING_RATE)
        self.poll_every_updates = poll_every_updates
        self._export = export
        self._polled_at: int | None = None
        self._signature: tuple[int, int, int] | None = None
        self._missing_logged = False
        for name in self._owned:
            self._exported(name, self.value(name))

    @property
    def learner(self) -> LearnerConfig:
        """``learner`` with the current learning rate and entropy coefficient: what the policy loss reads."""
        return self._learner

    @property
    def discriminator(self) -> DiscriminatorConfig:
        """``discriminator`` with the current learning rate."""
        return self._discriminator

    def value(self, name: Hyperparameter) -> float:
        section, field = name.field
        return float(getattr(self._discriminator if section == "discriminator" else self._learner, field))

    def current(self) -> dict[Hyperparameter, float]:
        """The values of the hyperparameters this learner owns."""
        return {name: self.value(name) for name in self._owned}

    def poll(self, updates: int) -> tuple[HyperparameterChange, ...]:
        """Apply the file's values if ``poll_every_updates`` updates passed since the last poll and
        the file changed since it was last read; returns the changes applied (usually none)."""
        if self.path is None or (self._polled_at is not None and updates < self._polled_at + self.poll_every_updates):
            return ()
        self._polled_at = updates
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing_logged:  # once: a launcher may write it later
                log.warning("hyperparameters file %s does not exist (yet); keeping %s", self.path, self._describe())
                self._missing_logged = True
            self._signature = None
            return ()
        except OSError as err:
            log.error("cannot stat hyperparameters file %s (%s); keeping %s", self.path, err, self._describe())
            return ()
        self._missing_logged = False
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._signature:
            return ()
        self._signature = signature  # a bad file is reported once, not at every poll
        try:
            values = parse_hyperparameters(self.path.read_text(encoding="utf-8"), self.path)
        except (OSError, UnicodeDecodeError, HyperparameterFileError) as err:
            log.error("ignoring hyperparameters file: %s; keeping %s", err, self._describe())
            return ()
        return self._apply(values, updates)

    def _apply(self, values: Mapping[Hyperparameter, float], updates: int) -> tuple[HyperparameterChange, ...]:
        changes = tuple(
            HyperparameterChange(name, self.value(name), values[name]) for name in self._owned if name in values and values[name] != self.value(name)
        )
        if not changes:
            return ()
        learner: dict[str, Any] = {c.name.field[1]: c.new for c in changes if c.name.field[0] == "learner"}
        discriminator: dict[str, Any] = {c.name.field[1]: c.new for c in changes if c.name.field[0] == "discriminator"}
        # Validated through the models themselves: the running config never holds a value they refuse.
        self._learner = LearnerConfig.model_validate({**self._learner.model_dump(), **learner})
        self._discriminator = DiscriminatorConfig.model_validate({**self._discriminator.model_dump(), **discriminator})
        for change in changes:
            optimizer = self._optimizers.get(change.name)
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = change.new
            self._exported(change.name, change.new)
        log.info("hyperparameters from %s at update %d: %s", self.path, updates, "; ".join(str(c) for c in changes))
        return changes

    def _exported(self, name: Hyperparameter, value: float) -> None:
        if self._export is not None:
            self._export(name, value)

    def _describe(self) -> str:
        return ", ".join(f"{name.value}={value:.6g}" for name, value in self.current().items())

"""What may change between a checkpoint's config and the config that resumes it.

A resume used to take the new config silently — except where it did not: the optimiser state
brought back the *old* learning rates, and a changed agent, env or mode crashed in
``load_state_dict`` with a raw shape error (a crash loop under Kubernetes). Now
:func:`compare_configs` splits the differences into those a resume applies (and logs) — learning
rates and the entropy bonus, budgets and cadence, actors, service addresses and paths — and those it
refuses, because the networks, optimiser state or data split depend on them; the refusal names
every such key and the two ways out.

Called by :meth:`spiral.learning.state.TrainingState.restore`; pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from spiral.config import ConfigError, TrainConfig

#: Dotted keys (or ``prefix.`` for a whole section) a resume may change. Everything else shapes
#: what the checkpoint holds: networks (env, agent, discriminator sizes), the optimiser's other
#: hyperparameters, the reward being optimised, the mode, the dataset and its split, the seed.
MUTABLE_ON_RESUME: tuple[str, ...] = (
    "learner.learning_rate",
    "learner.entropy_coef",
    "learner.queue_size",
    "learner.learning_rate_final_fraction",
    "learner.hyperparameters_file",
    "discriminator.learning_rate",
    "total_frames",
    "total_updates",
    "max_wall_minutes",
    "checkpoint_every_updates",
    "eval_every_updates",
    "log_every_updates",
    "keep_checkpoints",
    "num_actors",
    "torch_threads",
    "output_dir",
    "data.path",
    "env.device",
    "replay.",
    "services.",
    "search.",
    "pretrain.",
    "population.",  # how members are compared and changed, not what a member's checkpoint holds
)

_ABSENT = object()


class Change(NamedTuple):
    key: str  # dotted
    stored: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} {self.stored!r} → {self.new!r}"


class ConfigChanges(NamedTuple):
    applied: tuple[Change, ...]  # allowed: the resumed run uses the new values
    refused: tuple[Change, ...]  # would not fit the checkpoint


class ResumeConfigError(ConfigError):
    """The new config changes settings the checkpoint depends on; names them and the ways out."""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def may_change(key: str) -> bool:
    return any(key == m or (m.endswith(".") and key.startswith(m)) for m in MUTABLE_ON_RESUME)


def compare_configs(stored: Mapping[str, Any], new: TrainConfig) -> ConfigChanges:
    """The differences between a checkpoint's stored config (JSON data) and ``new``.

    Keys one side lacks (a field added or removed by another release) are not differences: the
    new config's value stands.
    """
    before = _flatten(stored)
    after = _flatten(new.model_dump(mode="json"))
    applied: list[Change] = []
    refused: list[Change] = []
    for key in sorted(before.keys() & after.keys()):
        old, value = before[key], after[key]
        if _normalise(old) == _normalise(value):
            continue
        (applied if may_change(key) else refused).append(Change(key, old, value))
    return ConfigChanges(tuple(applied), tuple(refused))


def _normalise(value: Any) -> Any:
    # JSON round trips turn tuples into lists; compare them alike.
    return [_normalise(v) for v in value] if isinstance(value, (list, tuple)) else value


def refusal(path: object, refused: tuple[Change, ...]) -> ResumeConfigError:
    """The error for a resume whose config changes ``refused`` keys."""
    listed = "; ".join(str(c) for c in refused)
    return ResumeConfigError(
        f"cannot resume from {path}: the checkpoint was trained with other settings that it depends on: {listed}. "
        "Start afresh with --no-resume (the checkpoints are overwritten) or train into a new --output-dir (-o). "
        f"Only these may change on a resume: {', '.join(m.rstrip('.') + ('.*' if m.endswith('.') else '') for m in MUTABLE_ON_RESUME)}"
    )

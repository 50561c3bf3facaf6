"""Config values that used to pass validation and crash (or hang) a running job later (issue #14,
"Also"): non-finite floats, 80-bit seeds, a message limit below one trajectory, deadlocking
replay buffers. Each is refused when the config is built, naming the key and the bound."""

from __future__ import annotations

from typing import Any

import pytest

from spiral.config import ConfigError, load_config_dict

BUDGET = {"total_updates": 1}

CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("reward-scale-inf", {"reward": {"scale": float("inf")}}, r"reward\.scale: Input should be a finite number"),
    ("brush-size-nan", {"env": {"brush_sizes": [float("nan")]}}, r"env\.brush_sizes\.0: Input should be a finite number"),
    ("gp-coef-inf", {"discriminator": {"gp_coef": float("inf")}}, r"discriminator\.gp_coef: Input should be a finite number"),
    ("learning-rate-nan", {"learner": {"learning_rate": float("nan")}}, r"learner\.learning_rate: Input should be a finite number"),
    ("entropy-inf", {"learner": {"entropy_coef": float("inf")}}, r"learner\.entropy_coef: Input should be a finite number"),
    ("seed-80-bits", {"seed": 2**80}, r"seed: Input should be less than or equal to 9007199254740991"),
    ("seed-negative", {"seed": -1}, r"seed: Input should be greater than or equal to 0"),
    ("data-seed-80-bits", {"data": {"seed": 2**80}}, r"data\.seed: Input should be less than or equal to"),
    (
        "message-limit-1024",
        {"services": {"max_message_bytes": 1024}},
        r"services\.max_message_bytes \(1024\) leaves no room for a weights chunk: it must be at least 2048",
    ),
    (
        "message-limit-below-a-trajectory",
        {"services": {"max_message_bytes": 100_000}},
        r"services\.max_message_bytes \(100000\) is below one trajectory: num_envs \(32\) × env\.episode_length \(20\) canvases of "
        r"4096 bytes need at least 2622464 bytes; raise services\.max_message_bytes to at least 2622464 or lower num_envs",
    ),
    ("message-limit-fits", {"services": {"max_message_bytes": 2622464}, "num_envs": 32}, None),
    (
        "replay-min-size-above-max-size",
        {"replay": {"min_size_to_sample": 100, "max_size": 10}},
        r"replay\.min_size_to_sample \(100\) exceeds replay\.max_size \(10\): sampling would wait forever",
    ),
    (
        "replay-ratio-above-max-times-sampled",
        {"replay": {"samples_per_insert": 4.0, "max_times_sampled": 2}},
        r"replay\.samples_per_insert \(4\) exceeds replay\.max_times_sampled \(2\)",
    ),
    (
        "replay-error-buffer-too-narrow",
        {"replay": {"samples_per_insert": 4.0, "error_buffer": 1.0}},
        r"replay\.samples_per_insert / replay\.error_buffer / replay\.min_size_to_sample: error_buffer 1 gives a range of 2",
    ),
    ("replay-ratio-that-works", {"replay": {"samples_per_insert": 4.0, "error_buffer": 100.0}}, None),
]


@pytest.mark.parametrize(("overrides", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_config_refuses_values_that_would_fail_inside_a_job(overrides: dict[str, Any], want: str | None) -> None:
    if want is None:
        load_config_dict({**BUDGET, **overrides})
        return
    with pytest.raises(ConfigError, match=want):
        load_config_dict({**BUDGET, **overrides})


def test_weight_chunks_shrink_to_fit_the_message_limit() -> None:
    cfg = load_config_dict({**BUDGET, "num_envs": 1, "env": {"canvas_size": 16, "grid_size": 8, "episode_length": 2}, "services": {"max_message_bytes": 4096}})
    assert cfg.services.weight_chunk_bytes == 1024 * 1024
    assert cfg.services.effective_weight_chunk_bytes == 4096 - 1024


def test_replay_checkpoints_periodically_by_default() -> None:
    """`replay.checkpoint_every_seconds` was accepted but never used, and defaulted to never."""
    assert load_config_dict(BUDGET).replay.checkpoint_every_seconds == 60.0

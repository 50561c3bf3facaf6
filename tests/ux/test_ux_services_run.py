"""`spiral train` with its service processes, as a person sees it with stdout not a terminal
(points 1, 2, 4, 5, 7 of issue 13): plain progress lines, the same outputs as --single-process
(curves.png, the summary with % of blank, train.log, TensorBoard), children's notes on the
terminal, and failures that exit non-zero with the child's last error lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ux_helpers import set_args, spiral

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_services_run_prints_plain_progress_and_writes_what_single_process_writes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = spiral("train", "-o", str(out), "--progress-every", "0.5", *set_args(total_updates=12), timeout=150)
    text = result.stdout
    assert result.returncode == 0, text + result.stderr
    plain = [line for line in text.splitlines() if re.match(r"^\[\d+:\d\d\] \d+/12 updates \(\d+%\)", line)]
    assert len(plain) >= 3, text  # a line every 0.5 s, not one truncated line for the whole run
    assert "\r" not in text and "spir…" not in text
    assert any("frames/s" in line and "processes" in line and "ETA" in line for line in plain)
    assert "trained 12 updates, 192 frames" in text
    assert re.search(r"held-out L2 \d\.\d{4} · blank canvas \d\.\d{4} \(\d+% of blank\)", text), text
    assert (out / "curves.png").stat().st_size > 10_000
    log = (out / "train.log").read_text()
    assert "trained 12 updates" in log and sum(bool(re.match(r"^\[\d+:\d\d\] ", line)) for line in log.splitlines()) >= 3
    assert list((out / "tensorboard" / "policy-learner").glob("events.out.tfevents.*"))

    # Resuming with a bigger budget: the learner's resume line reaches this terminal.
    more = spiral("train", "-o", str(out), "-q", *set_args(total_updates=14), timeout=150)
    assert more.returncode == 0, more.stdout + more.stderr
    assert re.search(r"\[policy-learner\] resumed from .*latest\.pt: 12 updates, 192 frames", more.stdout), more.stdout


def test_a_learner_that_cannot_start_makes_train_exit_1_with_its_error_lines(tmp_path: Path) -> None:
    missing = tmp_path / "no-mnist-here"
    out = tmp_path / "run"
    result = spiral("train", "--preset", "mnist", "--set", f"data.path={missing}", "-o", str(out), "-q", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    log = out / "logs" / "policy-learner.log"
    assert f"Error: policy-learner exited with code 1 before serving; see {log}" in result.stdout
    assert f"last lines of {log}:" in result.stdout
    assert str(missing) in result.stdout  # the child's own reason, not only "see the log"


def test_resuming_after_changing_the_grid_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = spiral("train", "--single-process", "-q", "-o", str(out), *set_args(), timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    changed = spiral("train", "-q", "-o", str(out), *set_args(env__grid_size=4, total_updates=10), timeout=120)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "policy-learner" in changed.stdout and "last lines of" in changed.stdout


def test_resuming_with_a_changed_config_names_the_differing_keys(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert spiral("train", "--single-process", "-q", "-o", str(out), *set_args(), timeout=120).returncode == 0
    changed = spiral("train", "--single-process", "-q", "-o", str(out), *set_args(env__grid_size=4, total_updates=10), timeout=120)
    assert changed.returncode == 1
    message = changed.stdout + changed.stderr
    assert "env.grid_size" in message and "--no-resume" in message and "-o" in message


def test_a_childs_warning_reaches_the_terminal(tmp_path: Path, datasets_dir: Path) -> None:
    """The MNIST files on CI lack the train images: the learner warns that it splits t10k, which
    changes what the held-out figure means — the person training must see it."""
    out = tmp_path / "run"
    args = set_args(env__canvas_size=64, env__grid_size=16, env__episode_length=3, total_updates=2, num_actors=1)
    result = spiral("train", "--preset", "mnist", "--set", f"data.path={datasets_dir / 'mnist'}", "-o", str(out), "-q", *args, timeout=200)
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if "warning: MNIST:" in line and "t10k" in line]
    assert len(warnings) == 1, result.stdout  # shown once, though every process loading MNIST warns
    assert warnings[0].startswith("[")

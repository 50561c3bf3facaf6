"""Run folders (points 1 and 5 of issue 13): one `spiral train` per folder, a finished run says so
and exits at once, a failed start exits non-zero with the reason (single process here; the
multi-process launcher in test_ux_services_run.py)."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from spiral.cli import app
from spiral.launch.run_folder import RunFolderBusy, RunFolderLock, finished_run
from spiral.learning.run_log import read_log
from ux_helpers import TINY_SETS, set_args, spiral, tiny_config

runner = CliRunner()


def test_a_second_train_on_a_locked_folder_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with RunFolderLock(out, "spiral train -o run"):
        started = time.monotonic()
        result = spiral("train", "--single-process", "-o", str(out), *set_args())
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Error: {out} is in use by pid " in result.stderr and "(spiral train -o run, since " in result.stderr
    assert "or train into another folder with -o" in result.stderr
    assert not (out / "metrics.jsonl").exists() and elapsed < 30


def test_the_lock_is_exclusive_and_released(tmp_path):
    first = RunFolderLock(tmp_path).acquire()
    try:
        try:
            RunFolderLock(tmp_path).acquire()
        except RunFolderBusy as err:
            assert "is in use by pid" in str(err)
        else:  # pragma: no cover - the assertion above is the test
            raise AssertionError("a second lock was granted")
    finally:
        first.release()
    RunFolderLock(tmp_path).acquire().release()  # free again


def test_a_finished_run_says_so_and_exits_at_once_a_raised_budget_trains_on(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--single-process", "--quiet", "-o", str(out), *set_args()]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"trained {TINY_SETS['total_updates']} updates" in first.output
    records = len(read_log(out / "metrics.jsonl"))

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"{out} has already finished: its budget is spent, nothing to do." in again.output
    assert "% of blank" in again.output and "--no-resume" in again.output
    assert len(read_log(out / "metrics.jsonl")) == records  # nothing started

    more = runner.invoke(app, [*args, "--set", "total_updates=8"])
    assert more.exit_code == 0, more.output
    assert "trained 8 updates" in more.output


def test_finished_run_needs_the_done_record_a_checkpoint_and_the_budget(tmp_path):
    cfg = tiny_config(tmp_path)
    assert finished_run(cfg) is None  # nothing there
    from spiral.learning.trainer import SingleProcessTrainer

    SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    assert finished_run(cfg) is not None
    assert finished_run(cfg.model_copy(update={"total_updates": 10})) is None  # a bigger budget: more to do


def test_a_single_process_run_that_cannot_start_exits_1_with_the_reason(tmp_path):
    missing = tmp_path / "no-mnist-here"
    result = runner.invoke(app, ["train", "--single-process", "--preset", "mnist", "--set", f"data.path={missing}", "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "Error: " in result.output and str(missing) in result.output
    assert "Error: " in (tmp_path / "run" / "train.log").read_text()


def test_resuming_with_a_changed_grid_fails_with_a_hint_instead_of_a_traceback(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--single-process", "-q", "-o", str(out), *set_args()]).exit_code == 0
    result = runner.invoke(app, ["train", "--single-process", "-q", "-o", str(out), *set_args(env__grid_size=4, total_updates=10)])
    assert result.exit_code == 1, result.output
    assert "Error: " in result.output and "--no-resume" in result.output and "-o" in result.output  # the way out
    assert "Traceback" not in result.output

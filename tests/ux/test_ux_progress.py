"""The progress display (points 2 and 3 of issue 13): a fixed-width live line in a terminal, plain
lines every N seconds elsewhere, the same figures in train.log, rates over a sliding window."""

from __future__ import annotations

import io
import math

import pytest

from spiral.learning.budget import Budget
from spiral.progress import ProgressFigures, RateWindow, RunOutput, TrainProgress, compact, live_line, log_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rate_window_gives_the_true_rate_when_frames_arrive_one_update_at_a_time():
    """The old line divided one update's frames by a 0.5 s poll: 0 or ~850 frames/s while the run
    made ~320. Here: an update of 512 frames every 1.6 s (320 frames/s), polled every 0.5 s."""
    window = RateWindow(seconds=30.0)
    seen = []
    frames = 0
    for tick in range(200):
        t = 0.5 * tick
        frames = 512 * int(t / 1.6)
        window.add(t, frames, frames // 512)
        if t > 20:
            seen.append(window.frames_per_second)
    assert min(seen) > 280 and max(seen) < 360, (min(seen), max(seen))
    assert window.updates_per_second == pytest.approx(1 / 1.6, rel=0.1)


def test_rate_window_shows_nothing_before_it_has_two_seconds_of_history():
    window = RateWindow()
    window.add(0.0, 0, 0)
    window.add(1.0, 500, 1)
    assert math.isnan(window.frames_per_second)
    window.add(2.5, 800, 2)
    assert window.frames_per_second == pytest.approx(320.0)


@pytest.mark.parametrize(
    "figures",
    [
        ProgressFigures(0, 0),
        ProgressFigures(1260, 302_400, held_out_l2=0.0612, blank_l2=0.0815),
        ProgressFigures(12_345_678, 987_654_321, d_real=22.1, d_fake=-0.2),
        ProgressFigures(50, 9000, reward=-0.5, policy_lag=3.5, alive=2, expected=3, learner_away=True),
    ],
    ids=["start", "conditional", "huge-discriminator", "learner-away"],
)
@pytest.mark.parametrize("budget", [Budget(3000, "updates"), Budget(300_000_000, "frames")], ids=["updates", "frames"])
def test_live_line_has_one_width_that_fits_80_columns(figures, budget):
    widths = {len(live_line(figures, budget, fps, eta)) for fps in (math.nan, 0.0, 320.0, 12345.0) for eta in (math.nan, 5.0, 4000.0)}
    reference = len(live_line(ProgressFigures(0, 0), Budget(3000, "updates"), math.nan, math.nan))
    assert widths == {reference} and reference <= 79


def test_live_line_shows_budget_updates_frames_rate_quality_and_eta():
    line = live_line(ProgressFigures(1260, 302_400, held_out_l2=0.0612, blank_l2=0.0815), Budget(3000, "updates"), 320.0, 192.0)
    for part in ("42%", "1260/3000", "upd", "302k fr", "320 f/s", "L2 0.0612", "75% blank", "ETA 3:12"):
        assert part in line, (part, line)


def test_compact_numbers_fit_five_characters():
    assert [compact(n) for n in (0, 999, 9999, 12_345, 123_456, 1_234_567, 98_765_432_100)] == ["0", "999", "9999", "12.3k", "123k", "1.23M", "98.8G"]


def test_without_a_terminal_one_plain_line_every_n_seconds_and_the_same_in_train_log(tmp_path):
    clock, stream = FakeClock(), io.StringIO()
    output = RunOutput(tmp_path / "train.log", stream)
    progress = TrainProgress(Budget(100, "updates"), output=output, every_seconds=10.0, clock=clock)
    assert not progress.interactive
    for step in range(61):  # one show every 0.5 s for 30 s
        clock.now = 0.5 * step
        progress.show(ProgressFigures(step, 16 * step, held_out_l2=0.05, blank_l2=0.1))
    progress.note("[actor-0] warning: something worth knowing")
    progress.close()
    lines = stream.getvalue().splitlines()
    plain = [line for line in lines if "updates (" in line]
    assert len(plain) == 4, lines  # at 0, 10, 20 and 30 s
    assert "\r" not in stream.getvalue()
    assert plain[-1].startswith("[0:30] 60/100 updates (60%)") and "32 frames/s" in plain[-1] and "50% of blank" in plain[-1]
    log = (tmp_path / "train.log").read_text()
    assert "[actor-0] warning: something worth knowing" in log and log.count("updates (") == 5  # + the final line


def test_in_a_terminal_one_live_line_is_redrawn_and_notes_appear_above_it(tmp_path):
    clock, stream = FakeClock(), FakeTerminal()
    progress = TrainProgress(Budget(100, "updates"), output=RunOutput(tmp_path / "train.log", stream), clock=clock)
    assert progress.interactive
    for step in range(10):
        clock.now = float(step)
        progress.show(ProgressFigures(step, 16 * step))
    progress.note("resumed from x")
    progress.close()
    text = stream.getvalue()
    assert text.count("\n") == 2  # the note, and the end of the live line
    assert "resumed from x\n" in text and text.count("\r") >= 10
    assert (tmp_path / "train.log").read_text().count("updates (") == 2  # t=0 and the final line


def test_quiet_shows_no_progress_but_notes_and_train_log_still_get_through(tmp_path):
    stream = FakeTerminal()
    with TrainProgress(Budget(10, "frames"), output=RunOutput(tmp_path / "train.log", stream), enabled=False) as progress:
        progress.show(ProgressFigures(1, 5))
        progress.note("warning: hello")
    assert stream.getvalue() == "warning: hello\n"
    log = (tmp_path / "train.log").read_text()
    assert "warning: hello" in log and "frames (" in log


def test_eta_comes_from_the_window_rate_and_respects_the_wall_clock_budget(tmp_path):
    clock = FakeClock()
    progress = TrainProgress(Budget(1000, "frames"), output=RunOutput(None, io.StringIO()), wall_limit_seconds=60.0, clock=clock)
    for t in range(0, 11):
        clock.now = float(t)
        progress.show(ProgressFigures(t, 10 * t))
    assert progress.eta(ProgressFigures(10, 100)) == pytest.approx(50.0)  # wall clock (60 - 10) before the 90 s of frames
    plain = log_line(ProgressFigures(10, 100), Budget(1000, "frames"), 10.0, 50.0, 10.0)
    assert plain.endswith("ETA 0:50")


def test_progress_every_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="every_seconds must be > 0, got 0"):
        TrainProgress(Budget(1, "updates"), output=RunOutput(None, io.StringIO()), every_seconds=0)

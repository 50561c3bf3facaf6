"""What a training run shows while it runs: one progress display for both trainers.

``spiral train --single-process`` (:mod:`spiral.learning.trainer`) and the multi-process launcher
(:mod:`spiral.launch.local`) both feed :class:`TrainProgress` with :class:`ProgressFigures` (the
counters and the latest quality figures). It draws:

* in a terminal, one live line of fixed width (≤ 80 columns, so it never wraps or jumps): budget
  done, updates or frames, frames/s, held-out L2 against the blank canvas (or D(real)/D(fake)), ETA;
* when stdout is not a terminal (nohup, CI logs, ``kubectl logs``), one plain line every
  ``every_seconds`` with the same figures and a few more;
* always, the plain lines and every note into ``<output_dir>/train.log``.

Rates come from a sliding window (:class:`RateWindow`), not from the last poll: the learner's
frames advance one update at a time, so a rate between two 0.5 s polls alternates between 0 and
several times the truth.

Nothing here imports torch or gRPC: ``spiral train --help`` stays fast.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TextIO

from spiral.learning.budget import Budget

#: Seconds of history the frames/s and ETA are computed over.
RATE_WINDOW_SECONDS = 30.0
#: A rate over less history than this is not shown (the first seconds would mislead).
MIN_RATE_SPAN_SECONDS = 2.0
#: Default seconds between plain progress lines (no terminal, and train.log).
DEFAULT_EVERY_SECONDS = 10.0
#: The live line never gets wider than this (a classic terminal), one column short of it so the
#: cursor never wraps.
MAX_LIVE_WIDTH = 80
#: Redraws of the live line per second at most (a terminal is slow; the figures change slowly).
LIVE_REDRAWS_PER_SECOND = 4.0

NAN = math.nan


class ProgressFigures(NamedTuple):
    """The numbers one progress line shows; NaN (or None) when not known yet."""

    updates: int
    frames: int
    reward: float = NAN
    train_l2: float = NAN
    held_out_l2: float = NAN
    blank_l2: float = NAN  # the blank canvas's held-out L2, the figure held-out L2 is judged by
    d_real: float = NAN  # the critic's mean output on real images
    d_fake: float = NAN  # … and on painted canvases
    policy_lag: float = NAN  # mean versions between acting and learning (multi-process only)
    alive: int | None = None  # processes running (multi-process only)
    expected: int | None = None
    learner_away: bool = False  # the policy learner did not answer the last poll (restarting)
    pretrain_updates: int = 0  # supervised pretraining updates done (spiral.learning.pretrain)
    pretrain_total: int = 0  # … of this many (0: the run does not pretrain)

    @property
    def pretraining(self) -> bool:
        """Pretraining on synthetic programs is still running (no RL update yet)."""
        return self.pretrain_updates < self.pretrain_total


class RateWindow:
    """Frames/s and updates/s over the last ``seconds`` of samples. Not thread-safe."""

    def __init__(self, seconds: float = RATE_WINDOW_SECONDS, min_span: float = MIN_RATE_SPAN_SECONDS) -> None:
        self.seconds = seconds
        self.min_span = min_span
        self._samples: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, frames: int, updates: int) -> None:
        self._samples.append((now, frames, updates))
        # Keep one sample older than the window so the span covers the whole window.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.seconds:
            self._samples.popleft()

    def _rate(self, index: int) -> float:
        if len(self._samples) < 2:
            return NAN
        first, last = self._samples[0], self._samples[-1]
        span = last[0] - first[0]
        if span < self.min_span:
            return NAN
        return max(0, last[index] - first[index]) / span

    @property
    def frames_per_second(self) -> float:
        return self._rate(1)

    @property
    def updates_per_second(self) -> float:
        return self._rate(2)

    def per_second(self, unit: str) -> float:
        return self.updates_per_second if unit == "updates" else self.frames_per_second


def done_in_unit(figures: ProgressFigures, unit: str) -> int:
    return figures.updates if unit == "updates" else figures.frames


def eta_seconds(budget: Budget, figures: ProgressFigures, rate: float, wall_left: float | None = None) -> float:
    """Seconds until the budget is spent at ``rate`` (per second, in the budget's unit), or until
    the wall-clock limit if that comes first; NaN when not known."""
    left = max(0, budget.total - done_in_unit(figures, budget.unit))
    eta = left / rate if rate > 0 and not math.isnan(rate) else NAN
    if wall_left is not None:
        eta = max(0.0, wall_left) if math.isnan(eta) else min(eta, max(0.0, wall_left))
    return eta


# ------------------------------------------------------------------------------ formatting ---


def compact(n: float) -> str:
    """A count in at most 5 characters: 999, 1234, 12.3k, 123k, 1.23M, 12.3M."""
    n = float(n)
    if n < 10_000:
        return f"{n:.0f}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            value = n / scale
            text = f"{value:.3g}" if value < 100 else f"{value:.0f}"
            return text + suffix
    return f"{n:.0f}"  # pragma: no cover - unreachable


def clock_text(seconds: float) -> str:
    """``3:12``, ``1:03:12``; ``–`` when unknown."""
    if math.isnan(seconds) or math.isinf(seconds):
        return "–"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent_of_blank(figures: ProgressFigures) -> float:
    """Held-out L2 as a percentage of the blank canvas's (100 %: no better than painting nothing)."""
    if math.isnan(figures.held_out_l2) or math.isnan(figures.blank_l2) or figures.blank_l2 <= 0:
        return NAN
    return 100.0 * figures.held_out_l2 / figures.blank_l2


def _quality(figures: ProgressFigures, width: int) -> str:
    """The one quality figure of the live line: held-out L2 vs blank, else D(real)/D(fake), else reward."""
    if figures.pretraining:
        text = f"pretrain {compact(figures.pretrain_updates)}/{compact(figures.pretrain_total)}"
    elif not math.isnan(figures.held_out_l2):
        pct = percent_of_blank(figures)
        text = f"L2 {figures.held_out_l2:.4f}" + ("" if math.isnan(pct) else f" {pct:3.0f}% blank")
    elif not math.isnan(figures.d_real):
        text = f"D {figures.d_real:+.2f}/{figures.d_fake:+.2f}"
    elif not math.isnan(figures.reward):
        text = f"reward {figures.reward:+.4f}"
    else:
        text = "L2 –"
    return f"{text:<{width}}"[:width]


def live_line(figures: ProgressFigures, budget: Budget, frames_per_second: float, eta: float) -> str:
    """The terminal's live line: always the same width (78–79 columns), fields in fixed places.

    `` 42%   1260/3000  upd   302k fr    320 f/s  L2 0.0612  75% blank  ETA 3:12``
    """
    done = done_in_unit(figures, budget.unit)
    pct = 100.0 * done / budget.total if budget.total else 0.0
    unit = "upd" if budget.unit == "updates" else "fr"
    other = f"{compact(figures.frames):>5} fr " if budget.unit == "updates" else f"{compact(figures.updates):>5} upd"
    fps = "    –" if math.isnan(frames_per_second) else f"{frames_per_second:5.0f}"
    if figures.learner_away:
        fps = " away"
    parts = [
        f"{min(pct, 100.0):3.0f}%",
        f"{compact(done):>5}/{compact(budget.total):<5} {unit:<3}",
        other,
        f"{fps} f/s",
        _quality(figures, 20),
        f"ETA {clock_text(eta):<7}",
    ]
    return "  ".join(parts)


def log_line(figures: ProgressFigures, budget: Budget, frames_per_second: float, eta: float, elapsed: float) -> str:
    """A plain progress line for logs: the live line's figures, spelled out, plus the rest."""
    done = done_in_unit(figures, budget.unit)
    pct = 100.0 * done / budget.total if budget.total else 0.0
    parts = [f"[{clock_text(elapsed)}] {done}/{budget.total} {budget.unit} ({min(pct, 100.0):.0f}%)"]
    parts.append(f"{figures.frames} frames" if budget.unit == "updates" else f"{figures.updates} updates")
    parts.append("– frames/s" if math.isnan(frames_per_second) else f"{frames_per_second:.0f} frames/s")
    if figures.pretraining:
        parts.append(f"pretraining {figures.pretrain_updates}/{figures.pretrain_total}")
    if not math.isnan(figures.held_out_l2):
        pct_blank = percent_of_blank(figures)
        blank = "" if math.isnan(pct_blank) else f" ({pct_blank:.0f}% of blank {figures.blank_l2:.4f})"
        parts.append(f"held-out L2 {figures.held_out_l2:.4f}{blank}")
    if not math.isnan(figures.d_real):
        parts.append(f"D(real) {figures.d_real:+.2f} D(fake) {figures.d_fake:+.2f}")
    if not math.isnan(figures.reward):
        parts.append(f"reward {figures.reward:+.4f}")
    if not math.isnan(figures.train_l2):
        parts.append(f"train L2 {figures.train_l2:.4f}")
    if not math.isnan(figures.policy_lag):
        parts.append(f"lag {figures.policy_lag:.1f}")
    if figures.alive is not None:
        parts.append(f"{figures.alive}/{figures.expected} processes")
    if figures.learner_away:
        parts.append("policy learner not answering")
    parts.append(f"ETA {clock_text(eta)}")
    return " · ".join(parts)


# --------------------------------------------------------------------------------- output ---


class RunOutput:
    """Lines a run shows a person: to a stream (the terminal) and appended to the run's plain log
    (``<output_dir>/train.log``), so what scrolled by can be read later. Not thread-safe."""

    def __init__(self, log_path: Path | None, stream: TextIO | None = None) -> None:
        self.log_path = log_path
        self.stream = stream if stream is not None else sys.stdout
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, line: str) -> None:
        """Only into the log file."""
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(line.rstrip("\n") + "\n")

    def echo(self, line: str) -> None:
        """To the stream and the log file."""
        self.stream.write(line + "\n")
        self.stream.flush()
        self.log(line)


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class TrainProgress:
    """The progress display of one run (see the module docstring). Not thread-safe.

    Feed it with :meth:`show` after every update (single process) or poll (launcher); print other
    messages through :meth:`note` so they appear above the live line instead of through it.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        output: RunOutput,
        enabled: bool = True,
        interactive: bool | None = None,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        wall_limit_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            enabled: False (``--quiet``): no progress on the stream (notes still), train.log
                still gets its lines.
            interactive: draw the live line (default: when the stream is a terminal).
            every_seconds: seconds between plain lines (stream when not interactive, and log).
            wall_limit_seconds: the run's wall-clock budget, for the ETA.

        Raises:
            ValueError: ``every_seconds`` ≤ 0 (names the value).
        """
        if not every_seconds > 0:
            raise ValueError(f"progress every_seconds must be > 0, got {every_seconds}")
        self.budget = budget
        self.output = output
        self.enabled = enabled
        self.interactive = is_terminal(output.stream) if interactive is None else interactive
        self.every_seconds = every_seconds
        self.wall_limit_seconds = wall_limit_seconds
        self._clock = clock
        self._started = clock()
        self._window = RateWindow()
        self._last_plain: float | None = None
        self._last_draw = -math.inf
        self._drawn = ""  # the live line on screen now ("" when none)
        self.last_figures: ProgressFigures | None = None

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- figures ---

    @property
    def frames_per_second(self) -> float:
        return self._window.frames_per_second

    def eta(self, figures: ProgressFigures) -> float:
        wall_left = None if self.wall_limit_seconds is None else self.wall_limit_seconds - (self._clock() - self._started)
        return eta_seconds(self.budget, figures, self._window.per_second(self.budget.unit), wall_left)

    def show(self, figures: ProgressFigures) -> None:
        """Record ``figures`` (and the time) and redraw: the live line at most a few times a
        second, a plain line once every ``every_seconds``."""
        now = self._clock()
        if not figures.learner_away:
            self._window.add(now, figures.frames, figures.updates)
        self.last_figures = figures
        fps, eta = self.frames_per_second, self.eta(figures)
        if self._last_plain is None or now - self._last_plain >= self.every_seconds:
            self._last_plain = now
            line = log_line(figures, self.budget, fps, eta, now - self._started)
            self.output.log(line)
            if self.enabled and not self.interactive:
                self.output.stream.write(line + "\n")
                self.output.stream.flush()
        if self.enabled and self.interactive and now - self._last_draw >= 1.0 / LIVE_REDRAWS_PER_SECOND:
            self._last_draw = now
            self._draw(live_line(figures, self.budget, fps, eta))

    def note(self, message: str) -> None:
        """A message for the person (a child's warning, a resume line): printed above the live
        line — also when the display is off (``--quiet`` hides progress, not warnings) — and into
        train.log."""
        self.output.log(message)
        stream = self.output.stream
        if self._drawn:
            stream.write("\r" + " " * len(self._drawn) + "\r")
        stream.write(message + "\n")
        if self._drawn:
            stream.write(self._drawn)
        stream.flush()

    def close(self) -> None:
        """Leave the live line on screen (with its final figures) and end it."""
        if self.last_figures is not None:
            figures = self.last_figures
            now = self._clock()
            self.output.log(log_line(figures, self.budget, self.frames_per_second, self.eta(figures), now - self._started))
            if self.enabled and self.interactive:
                self._draw(live_line(figures, self.budget, self.frames_per_second, self.eta(figures)))
        if self._drawn:
            self.output.stream.write("\n")
            self.output.stream.flush()
            self._drawn = ""

    def _draw(self, line: str) -> None:
        width = min(MAX_LIVE_WIDTH, shutil.get_terminal_size((MAX_LIVE_WIDTH, 24)).columns) - 1
        line = line[:width]
        pad = max(0, len(self._drawn) - len(line))
        self.output.stream.write("\r" + line + " " * pad)
        self.output.stream.flush()
        self._drawn = line


__all__ = [
    "ProgressFigures",
    "RateWindow",
    "RunOutput",
    "TrainProgress",
    "compact",
    "eta_seconds",
    "live_line",
    "log_line",
    "percent_of_blank",
]

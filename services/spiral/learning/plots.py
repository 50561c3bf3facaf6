"""``curves.png``: a run's learning curves, drawn from its run logs alone.

One function, :func:`write_run_curves`, serves both ``spiral train`` modes: the single-process
trainer calls it at the end of its run, the multi-process launcher once its children are done
(everything it needs is in ``metrics.jsonl`` and ``metrics-discriminator.jsonl``). Panels:

* held-out L2 (greedy and sampled) against frames, with the blank-canvas baseline; the random
  policy's (usually far worse) is drawn only when it is near the curves, else named in the corner,
  so it does not squash the range where learning happens;
* episode reward and policy entropy;
* D(real) and D(fake) for discriminator runs.

Every series is drawn with markers, so a run with a single evaluation still shows its point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from spiral.learning.run_log import DISCRIMINATOR_METRICS_FILE, METRICS_FILE, read_log

#: A baseline more than this many times the curves' span beyond them is named, not drawn.
OFF_SCALE_SPANS = 1.0


class Series(NamedTuple):
    label: str
    xs: list[float]
    ys: list[float]


class Baseline(NamedTuple):
    label: str
    value: float
    colour: str


class Panel(NamedTuple):
    """One subplot: its series, the baselines to draw or name, and the y-axis label."""

    ylabel: str
    series: tuple[Series, ...]
    baselines: tuple[Baseline, ...] = ()


def series(records: Sequence[Mapping[str, Any]], key: str, label: str | None = None, x: str = "frames") -> Series:
    points = [(r[x], r[key]) for r in records if key in r and x in r and isinstance(r[key], (int, float))]
    return Series(label or key, [p[0] for p in points], [p[1] for p in points])


def y_limits(panel: Panel) -> tuple[float, float] | None:
    """The y-range that shows the curves and every baseline that is near them; None: matplotlib's."""
    ys = [y for s in panel.series for y in s.ys if math.isfinite(y)]
    if not ys:
        return None
    low, high = min(ys), max(ys)
    span = max(high - low, 1e-3 * max(abs(high), 1e-6))
    for b in panel.baselines:
        if not off_scale(b, low, high, span):
            low, high = min(low, b.value), max(high, b.value)
    margin = 0.08 * max(high - low, span)
    return low - margin, high + margin


def off_scale(baseline: Baseline, low: float, high: float, span: float) -> bool:
    """True when drawing ``baseline`` would shrink the curves to a small part of the panel."""
    return baseline.value > high + OFF_SCALE_SPANS * span or baseline.value < low - OFF_SCALE_SPANS * span


def panels_for(records: Sequence[Mapping[str, Any]], discriminator_records: Sequence[Mapping[str, Any]] = ()) -> list[Panel]:
    """Which panels a run's logs can fill (pure: the tests check it without drawing)."""
    panels: list[Panel] = []
    evals = [r for r in records if "eval/held_out_l2" in r]
    if evals:
        last = evals[-1]
        baselines = []
        if "eval/blank_l2" in last:
            baselines.append(Baseline("blank canvas", float(last["eval/blank_l2"]), "gray"))
        if "eval/random_l2" in last:
            baselines.append(Baseline("random policy", float(last["eval/random_l2"]), "red"))
        panels.append(
            Panel(
                "held-out L2",
                (series(evals, "eval/held_out_l2", "greedy"), series(evals, "eval/held_out_l2_sampled", "sampled")),
                tuple(baselines),
            )
        )
    for key, label in (("charts/episode_reward", "episode reward"), ("losses/entropy", "policy entropy")):
        s = series(records, key, label)
        if s.xs:
            panels.append(Panel(label, (s,)))
    critic = [r for r in (*records, *discriminator_records) if "charts/d_real" in r and "frames" in r]
    if critic:
        critic.sort(key=lambda r: r["frames"])
        panels.append(Panel("critic output", (series(critic, "charts/d_real", "D(real)"), series(critic, "charts/d_fake", "D(fake)"))))
    samples = series(records, "eval/sample_ink", "mean ink of samples")
    if samples.xs:
        panels.append(Panel("sample ink", (samples,)))
    return panels


def plot_panels(panels: Sequence[Panel], out: Path, x_label: str = "frames") -> Path:
    """Draw ``panels`` one above the other into a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    panels = list(panels) or [Panel("(nothing logged yet)", ())]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for s in panel.series:
            if s.xs:
                ax.plot(s.xs, s.ys, marker="o", markersize=3, linewidth=1.2, label=s.label)
        limits = y_limits(panel)
        named = []
        for b in panel.baselines:
            ys = [y for s in panel.series for y in s.ys]
            low, high = (min(ys), max(ys)) if ys else (b.value, b.value)
            span = max(high - low, 1e-3 * max(abs(high), 1e-6))
            if ys and off_scale(b, low, high, span):
                named.append(f"{b.label} {b.value:.4g} (off scale)")
            else:
                ax.axhline(b.value, linestyle="--", linewidth=1, color=b.colour, label=f"{b.label} {b.value:.4g}")
        if limits is not None:
            ax.set_ylim(*limits)
        if named:
            ax.text(0.99, 0.97, "\n".join(named), transform=ax.transAxes, ha="right", va="top", fontsize=8, color="red")
        ax.set_xlabel(x_label)
        ax.set_ylabel(panel.ylabel)
        if panel.series or panel.baselines:
            ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_run_curves(output_dir: Path) -> Path:
    """``<output_dir>/curves.png`` from the run's logs; returns its path.

    Raises:
        OSError: the folder is not writable.
    """
    out = Path(output_dir)
    panels = panels_for(read_log(out / METRICS_FILE), read_log(out / DISCRIMINATOR_METRICS_FILE))
    return plot_panels(panels, out / "curves.png")

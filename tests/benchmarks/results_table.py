"""Print README's learning-results table from the summaries ``bench_learning.py`` wrote.

Every row comes from one ``examples/results/<name>.json``: the run's budget and size (minutes,
frames, RL updates, pretraining updates), held-out error as a fraction of the blank canvas's
(greedy, and with search at paint time when measured) on the first 256 held-out images and on the
whole held-out split, the random-policy baseline, and the benchmark command that reproduces it
(the ``spiral train`` command it ran is in the JSON).

Usage: ``python tests/benchmarks/results_table.py [--results examples/results] [names...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def row(summary: dict) -> str:
    first = summary["evaluation"].get("first_256", {})
    full = summary["evaluation"].get("all_held_out", {})
    size = f"{summary['wall_minutes']:.0f} min · {summary['frames'] or 0:,} frames · {summary['updates'] or 0:,} updates"
    if summary.get("pretrain_updates"):
        size += f" (+{summary['pretrain_updates']:,} pretraining)"
    if "num_samples" in first:
        quality = f"digit score {100 * first.get('digit_confident', 0):.0f}% at p ≥ 0.9, rarest class {100 * first.get('digit_min_class', 0):.1f}%"
        return f"| {summary['name']} | {size} | {quality} | | | `{summary['bench_command']}` |"
    greedy = f"{_pct(first.get('ratio'))} / {_pct(full.get('ratio'))}"
    search = f"{_pct(first.get('ratio_search'))} / {_pct(full.get('ratio_search'))}" if "ratio_search" in first else "–"
    random = _pct(first["random_l2"] / first["blank_l2"]) if "random_l2" in first else "–"
    extra = []
    if "objects_f1" in full:
        extra.append(f"object F1 {full['objects_f1']:.2f}")
    for key, value in full.items():
        if key.startswith("repainted_") and key.endswith("_relative") and not key.endswith("_expected_relative"):
            renderer = key.removeprefix("repainted_").removesuffix("_relative")
            text = f"programs re-painted by {renderer}: {100 * (value - 1):+.1f}% L2"
            expected = full.get(f"repainted_{renderer}_expected_relative")
            if expected is not None:  # summaries from before spiral eval separated the brush's speckle lack it
                text += f" (its expected canvas: {100 * (expected - 1):+.1f}%)"
            extra.append(text)
    note = (" · " + ", ".join(extra)) if extra else ""
    return f"| {summary['name']} | {size} | {greedy}{note} | {search} | {random} | `{summary['bench_command']}` |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="Summaries to include (default: all, sorted by name).")
    parser.add_argument("--results", type=Path, default=ROOT / "examples" / "results")
    args = parser.parse_args()
    paths = [args.results / f"{n}.json" for n in args.names] if args.names else sorted(args.results.glob("*.json"))
    print("| run | budget (wall · frames · RL updates) | greedy held-out L2, % of blank (first 256 / all) | with search at paint time | random policy | reproduce |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        summary = json.loads(path.read_text())
        # Other benchmarks (bench_memory's memory.json) keep their figures here too; only
        # bench_learning's summaries carry an evaluation.
        if "evaluation" in summary:
            print(row(summary))


if __name__ == "__main__":
    main()

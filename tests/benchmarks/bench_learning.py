"""Benchmark: how well a preset learns in a fixed wall-clock budget — the learning results table.

Runs ``spiral train`` on PRESET for ``--minutes`` (its frame/update budget lifted, so time is the
budget; pretraining, if the preset has any, counts inside it), then ``spiral eval`` on the first 256
held-out images *and* on the whole held-out split (greedy, sampled and — with ``--search K`` — with
search at paint time, on the first 256 unless ``--search-all``; ``--repaint libmypaint`` also re-paints the chosen programs with libmypaint).
Writes into ``--results`` (default ``examples/results``): ``<name>.json`` (the summary: commands,
machine, threads, frames, updates, minutes, every score), ``<name>-curves.png`` and
``<name>-eval.png`` (labelled target / painting grid). README's results table is generated from
these summaries by ``python tests/benchmarks/results_table.py``.

Run it alone on the machine (no tests, no second run): its figures are wall-clock bound.

Usage::

    python tests/benchmarks/bench_learning.py default --minutes 10
    python tests/benchmarks/bench_learning.py mnist --minutes 30 --single-process --search 16 \\
        --set data.path=../shared/datasets/mnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def machine() -> dict[str, object]:
    """What the figures were measured on (machines of one kind differ up to 2× in speed)."""
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(), "platform": platform.platform()}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(command: list[str], log_path: Path) -> None:
    """Run ``command``, its output both on this terminal and in ``log_path``."""
    print("$", shlex.join(command), flush=True)
    with log_path.open("a") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"command failed with exit code {code}: {shlex.join(command)} (log: {log_path})")


def processes_and_threads(out: Path, single_process: bool, population: int | None = None) -> str:
    """How the run used the cores (the issue's budget is stated in core-minutes)."""
    cores = os.cpu_count()
    if population:
        member = "1 process" if single_process else "the services"
        threads = max(1, (cores or 1) // population)
        return f"{population} members side by side, each {member} with {threads} torch thread(s); pretrained once first with {cores} threads"
    if single_process:
        return f"1 process, torch's default intra-op threads ({cores} on {cores} cores)"
    services = sorted(p.stem for p in (out / "logs").glob("*.log"))
    return f"{len(services)} processes ({', '.join(services)}), 1 torch thread each; the policy learner pretrains with {cores} while the actors wait"


def last_record(metrics: Path, key: str) -> dict:
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return next((r for r in reversed(records) if key in r), {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset")
    parser.add_argument("--minutes", type=float, required=True, help="Wall-clock budget of training (pretraining included).")
    parser.add_argument("--single-process", action="store_true", help="Train in one process (else: the services, as `spiral train`).")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="Config override (repeatable).")
    parser.add_argument("--search", type=int, default=0, help="Also evaluate with search at paint time (K candidates).")
    parser.add_argument(
        "--search-all", action="store_true", help="Search on the whole held-out split too (K× the evaluation's cost; default: the first 256 only)."
    )
    parser.add_argument("--repaint", default=None, help="Also re-paint the chosen programs with this renderer (e.g. libmypaint).")
    parser.add_argument(
        "--population", type=int, default=None, metavar="N", help="Train N members with population-based training; the best member is evaluated."
    )
    parser.add_argument("--name", default=None, help="Result name (default: the preset).")
    parser.add_argument("--results", type=Path, default=ROOT / "examples" / "results", help="Where summaries and pictures go.")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="Where the run folders go.")
    args = parser.parse_args()

    name = args.name or args.preset
    out = args.runs / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    args.results.mkdir(parents=True, exist_ok=True)
    log_path = out / "bench.log"
    spiral = [sys.executable, "-m", "spiral"]
    shown_out = os.path.relpath(out, ROOT)  # commands run from the repository root
    train = [*spiral, "train", "--preset", args.preset, "-o", shown_out, "--no-resume", "--progress-every", "30"]
    for item in args.sets:
        train += ["--set", item]
    # Time is the budget: lift the preset's frame/update budget far beyond what the minutes allow.
    train += ["--set", f"max_wall_minutes={args.minutes}", "--set", "total_frames=1000000000000", "--set", "total_updates=null"]
    if args.single_process:
        train.append("--single-process")
    if args.population:
        train += ["--population", str(args.population)]
    started = time.monotonic()
    run(train, log_path)
    wall = time.monotonic() - started

    run_folder, population = out, None
    if args.population:  # the best member is the population's result; the whole population's plot goes beside it
        done_record = last_record(out / "population.jsonl", "best")
        population = {"size": args.population, "best_member": done_record["best"], "members": done_record["members"]}
        run_folder = out / "members" / str(done_record["best"])
    checkpoint = run_folder / "checkpoints"
    evals = {}
    for label, limit in (("first_256", ["--limit", "256"]), ("all_held_out", [])):
        report = out / f"eval-{label}.json"
        command = [*spiral, "eval", "--checkpoint", str(checkpoint), "--json", str(report), "-o", str(out / f"eval-{label}.png"), *limit]
        if args.search and (label == "first_256" or args.search_all):
            command += ["--search", str(args.search)]
        if args.repaint:
            command += ["--renderer", args.repaint]
        run(command, log_path)
        evals[label] = json.loads(report.read_text())
        if evals[label].get("num_samples"):  # unconditional: one evaluation of samples is all there is
            break

    metrics = run_folder / "metrics.jsonl"
    done = last_record(metrics, "updates")
    summary = {
        "name": name,
        "preset": args.preset,
        "overrides": args.sets,
        "single_process": args.single_process,
        "minutes_budget": args.minutes,
        "wall_minutes": round(wall / 60.0, 2),
        "frames": done.get("frames"),
        "updates": done.get("updates"),
        "pretrain_updates": done.get("pretrain_updates", 0),
        "search_candidates": args.search,
        "processes_and_threads": processes_and_threads(run_folder, args.single_process, args.population),
        **({"population": population} if population else {}),
        "evaluation": evals,
        "train_command": "spiral " + shlex.join(train[3:]),
        "bench_command": "python tests/benchmarks/bench_learning.py " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "commit": git_commit(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (args.results / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    pictures = (
        (run_folder / "curves.png", f"{name}-curves.png"),
        (out / "eval-first_256.png", f"{name}-eval.png"),
        (out / "population.png", f"{name}-population.png"),
    )
    for source, target in pictures:
        if source.exists():
            shutil.copyfile(source, args.results / target)
    print(json.dumps({k: summary[k] for k in ("name", "wall_minutes", "frames", "updates", "pretrain_updates")}, indent=2))
    for label, report in evals.items():
        keys = [k for k in ("ratio", "ratio_sampled", "ratio_search", "digit_confident", "objects_f1") if k in report]
        print(label, {k: round(report[k], 4) for k in keys})


if __name__ == "__main__":
    main()

"""Resident memory of the services over a long ``spiral train``: actors at rest and the learner's growth.

Run: ``python tests/benchmarks/bench_memory.py [--minutes 30] [--every 15] [--out examples/results/memory.json]``

Starts ``spiral train`` (the default preset; the frame budget lifted so ``--minutes`` binds) and
samples every service process's resident set (``VmRSS`` in ``/proc/PID/status``, with its
proportional share ``Pss`` from ``smaps_rollup``: the read-only pages of torch's libraries are
shared between processes on one node) every ``--every`` seconds, finding the processes through
the launcher's ready files. Reports:

* **actor at rest**: each actor's RSS when it has announced itself ready (connected, weights not
  yet in use) and its median while playing;
* **learner growth**: the policy learner's RSS from its first RL update to the end (pretraining
  and the first rollouts allocate the working set; what must not happen is growth after that), as
  the median of the first five minutes against the median of the last five — its RSS swings by
  ±10 % around evaluations and checkpoints, so two single samples would mostly measure the swing.

Targets (issue #15): idle actor ≤ 300 MB; the learner's growth over 30 minutes ≤ 5 %.
Memory is insensitive to CPU contention, but the run takes the cores it is given for ``--minutes``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spiral.learning.run_log import read_log

console = Console()


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) in MB of ``pid``, or None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None

    def field(text: str, name: str) -> float:
        line = next(row for row in text.splitlines() if row.startswith(name + ":"))
        return int(line.split()[1]) / 1024.0

    return field(status, "VmRSS"), field(rollup, "Pss")


def first_update_time(run: Path) -> float | None:
    """Unix time of the first logged RL update (pretraining excluded), if any yet."""
    log = run / "metrics.jsonl"
    if not log.exists():
        return None
    for record in read_log(log):
        if "losses/total" in record and "time" in record:
            return float(record["time"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=None, help="write the samples and summary as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "spiral", "train", "--quiet", "--no-resume", "--output-dir", str(run),
            "--set", f"max_wall_minutes={args.minutes}", "--set", "total_frames=1000000000",
        ]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = run / "launch" / "ready"
        samples: list[dict[str, object]] = []
        at_ready: dict[str, float] = {}
        started = time.time()
        next_sample = started
        with console.status("spiral train running") as status:
            while proc.poll() is None:
                now = time.time()
                pids = {path.stem: int(json.loads(path.read_text())["pid"]) for path in sorted(ready.glob("*.json"))} if ready.exists() else {}
                for name, pid in pids.items():  # a process's first sample as soon as it is ready
                    if name not in at_ready and (measured := memory_mb(pid)) is not None:
                        at_ready[name] = measured[0]
                if now >= next_sample:
                    next_sample += args.every
                    row: dict[str, object] = {"t": now - started}
                    for name, pid in pids.items():
                        if (measured := memory_mb(pid)) is not None:
                            row[name] = {"rss": measured[0], "pss": measured[1]}
                    samples.append(row)
                    status.update(f"spiral train running: {(now - started) / 60:.1f} of {args.minutes:.0f} min, {len(samples)} samples")
                time.sleep(0.5)
        if proc.returncode != 0:
            raise SystemExit(f"spiral train exited {proc.returncode}:\n{proc.stderr.read() if proc.stderr else ''}")
        first_update = first_update_time(run)
    learner = "policy-learner"
    offset = (first_update - started) if first_update is not None else 0.0
    learner_rows = [(float(s["t"]), s[learner]["rss"]) for s in samples if learner in s]  # type: ignore[index]
    after = [(t, rss) for t, rss in learner_rows if t >= offset]
    window = 300.0
    early = [rss for t, rss in after if t <= after[0][0] + window] if after else []
    late = [rss for t, rss in after if t >= after[-1][0] - window] if after else []
    growth = statistics.median(late) / statistics.median(early) - 1.0 if early and late else float("nan")
    actors = sorted(name for name in at_ready if name.startswith("actor"))
    table = Table(title=f"resident memory, default preset, {args.minutes:.0f} min of spiral train, a sample every {args.every:.0f} s")
    for column in ("process", "RSS when ready (MB)", "median RSS (MB)", "median PSS (MB)", "first → last 5 min after 1st update, medians (MB)"):
        table.add_column(column, justify="right")
    for name in [learner, *actors]:
        rss = [s[name]["rss"] for s in samples if name in s]  # type: ignore[index]
        pss = [s[name]["pss"] for s in samples if name in s]  # type: ignore[index]
        span = f"{statistics.median(early):.0f} → {statistics.median(late):.0f} ({100 * growth:+.1f} %)" if name == learner and early else ""
        table.add_row(name, f"{at_ready[name]:.0f}", f"{statistics.median(rss):.0f}", f"{statistics.median(pss):.0f}", span)
    console.print(table)
    idle = max(at_ready[name] for name in actors) if actors else float("nan")
    console.print(f"target actor at rest ≤ 300 MB: {idle:.0f} MB — {'met' if idle <= 300 else 'NOT met'}")
    console.print(f"target learner growth ≤ 5 %: {100 * growth:+.1f} % — {'met' if growth <= 0.05 else 'NOT met'}")
    if args.out is not None:
        summary = {
            "minutes": args.minutes, "actor_rss_at_ready_mb": at_ready, "learner_growth": growth, "first_update_s": offset,
            "learner_rss_mb_first_5_min_median": statistics.median(early) if early else None,
            "learner_rss_mb_last_5_min_median": statistics.median(late) if late else None,
        }  # fmt: skip
        args.out.write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
        console.print(f"samples → {args.out}")


if __name__ == "__main__":
    main()

"""Mutation testing of the pure core: do each module's own tests notice single-point bugs? (issue #10)

README
------
For every module in :data:`TARGETS` this script makes each single-point mutant of its source (an
operator, comparison, constant or return value changed; see ``mutants.py``) and runs *that
module's own test files* against it with pytest in a subprocess (``-x -q -p no:cacheprovider``,
one timeout per mutant). A mutant is *killed* when some test fails, *survived* when all pass, and
*timeout* when the run takes far longer than the unmutated one (counted as detected). The real
file is never rewritten: the mutant is written to a temporary file and served by an import hook
(``mutant_import_hook.py``), so an interrupted run leaves the shared checkout clean. Before the
mutants of a module, two checks run: the unmutated copy must pass through the hook, and a copy
that raises at import must fail (proof that the hook, not the editable install, supplies the module).

Score = (killed + timeout) / (mutants − equivalent). ``equivalent.txt`` lists mutants that
cannot change behaviour, one per line as ``<key>  # <reason>``, the key exactly as ``--list``
prints it (``path::function: original -> mutated``, no line numbers, so edits elsewhere in the
file keep it valid); they are still run, and one that is killed is reported as a wrong entry.
Mutants are made from the working-tree file; if someone edits it during the run, the run stops
rather than test a stale copy.

Run it from the repository root, one module at a time on a shared machine (it is CPU-heavy: each
mutant is one pytest start, 4-15 s depending on the load; ~640 mutants in all)::

    .venv/bin/python tests/mutation/mutate.py --list --module vtrace
    .venv/bin/python tests/mutation/mutate.py --module rewards --json /tmp/rewards.json
    .venv/bin/python tests/mutation/mutate.py --module rewards --match "gaussian_blur: 3 -> 4"
    .venv/bin/python tests/mutation/mutate.py --fail-under 90      # every module, one to two hours

It is not part of the test suite: no file here is named ``test_*.py``, so pytest collects none.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from mutants import Mutant, find_mutants

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EQUIVALENT_FILE = HERE / "equivalent.txt"


class Target(NamedTuple):
    """A module under mutation and the test files that are its own tests."""

    module: str
    path: str
    tests: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "vtrace": Target("spiral.learning.vtrace", "services/spiral/learning/vtrace.py", ("tests/learning/test_vtrace.py",)),
    "rewards": Target("spiral.learning.rewards", "services/spiral/learning/rewards.py", ("tests/learning/test_rewards.py",)),
    # step_if_finite's own tests live with the rest of the non-finite guard (issue #14), and those of
    # imitation_loss / relevant_components with the search (issue #11): only those two unit tests,
    # the rest of test_search.py trains and would triple the time per mutant.
    "losses": Target(
        "spiral.learning.losses",
        "services/spiral/learning/losses.py",
        (
            "tests/learning/test_losses.py",
            "tests/learning/test_nonfinite_guard.py",
            "tests/learning/test_search.py::test_imitation_loss_is_the_masked_cross_entropy",
            "tests/learning/test_search.py::test_relevant_components_shift_the_observation_masks_by_one",
        ),
    ),
    "rate_limiters": Target(
        "spiral.replay.rate_limiters", "services/spiral/replay/rate_limiters.py", ("tests/replay/test_rate_limiters.py",)
    ),
    "lifecycle": Target(
        "spiral_operator.lifecycle", "operator/spiral_operator/lifecycle.py", ("tests/operator/test_operator_lifecycle.py",)
    ),
}


class Outcome(str, enum.Enum):
    KILLED = "killed"
    SURVIVED = "survived"
    TIMEOUT = "timeout"
    #: The tests never imported the module through the hook: the verdict would mean nothing.
    ERROR = "error"


class RunResult(NamedTuple):
    outcome: Outcome
    seconds: float
    #: The first failing test (``-x`` stops there), or the tail of the output for errors.
    detail: str


class MutantResult(NamedTuple):
    mutant: Mutant
    result: RunResult
    equivalent_reason: str | None


class HookCheckError(RuntimeError):
    """The unmutated module fails its tests, or the import hook does not take effect."""


class SourceChangedError(RuntimeError):
    """Someone edited the module during the run (a shared checkout): the mutants are of a stale copy."""


# ------------------------------------------------------------------------------ equivalents ---


def load_equivalents(path: Path) -> dict[str, str]:
    """``{mutant key: reason}`` from ``equivalent.txt``; blank lines and ``#`` comment lines are skipped.

    Raises:
        ValueError: a line without a ``  # reason`` (names the line number).
    """
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, reason = line.rpartition("  # ")
        if not sep or not reason.strip():
            raise ValueError(f"{path}:{number}: an equivalent mutant needs '<key>  # <reason>', got {line!r}")
        entries[key.strip()] = reason.strip()
    return entries


# ---------------------------------------------------------------------------------- running ---


def _pytest_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # the machine is shared; torch would otherwise spawn a thread per core
    return env


_FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_tests(target: Target, source: str, workdir: Path, timeout_s: float) -> RunResult:
    """Run ``target``'s tests with ``source`` in place of its module (the real file is untouched)."""
    workdir.mkdir(parents=True)
    mutant_file = workdir / Path(target.path).name
    marker = workdir / "served"
    mutant_file.write_text(source, encoding="utf-8")
    env = _pytest_env()
    env.update(SPIRAL_MUTANT_MODULE=target.module, SPIRAL_MUTANT_PATH=str(mutant_file), SPIRAL_MUTANT_MARKER=str(marker))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "mutant_import_hook", *target.tests]
    started = time.monotonic()
    # A session of its own, so a timeout kills pytest and anything it started, and nothing else.
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return RunResult(Outcome.TIMEOUT, time.monotonic() - started, f"no result after {timeout_s:.0f} s")
    seconds = time.monotonic() - started
    if not marker.exists():
        return RunResult(Outcome.ERROR, seconds, f"{target.module} was not imported through the hook:\n{output[-2000:]}")
    if proc.returncode == 0:
        return RunResult(Outcome.SURVIVED, seconds, "")
    # 1 tests failed, 2 a collection (import) error, 3 an internal error; 4 is a usage error, which a
    # test file that fails to import causes when tests are named by node id (not found in it).
    if proc.returncode in (1, 2, 3) or (proc.returncode == 4 and "ERROR collecting" in output):
        failed = _FAILED_LINE.search(output)
        return RunResult(Outcome.KILLED, seconds, failed.group(1) if failed else output.strip().splitlines()[-1])
    return RunResult(Outcome.ERROR, seconds, f"pytest exit code {proc.returncode}:\n{output[-2000:]}")


def check_hook(target: Target, source: str, workdir: Path) -> float:
    """The unmutated copy must pass and a poisoned copy must fail; returns the passing run's seconds.

    Raises:
        HookCheckError: either check goes the wrong way (the message says which and shows the output).
    """
    clean = run_tests(target, source, workdir / "unmutated", timeout_s=600)
    if clean.outcome != Outcome.SURVIVED:
        raise HookCheckError(f"{target.module}: the unmutated module must pass {' '.join(target.tests)}, got {clean.outcome.value}: {clean.detail}")
    poison = source + "\nraise RuntimeError('mutation self-check: this copy of the module was imported')\n"
    poisoned = run_tests(target, poison, workdir / "poisoned", timeout_s=600)
    if poisoned.outcome != Outcome.KILLED:
        raise HookCheckError(
            f"{target.module}: a copy that raises at import must fail the tests, got {poisoned.outcome.value}: the import "
            f"hook does not replace the real module (an installed copy shadows it?) {poisoned.detail}"
        )
    return clean.seconds


def matching(mutants: Sequence[Mutant], texts: Sequence[str] | None) -> list[Mutant]:
    return [m for m in mutants if texts is None or any(t in m.key for t in texts)]


def select(mutants: Sequence[Mutant], max_mutants: int | None) -> list[Mutant]:
    """At most ``max_mutants``, spread evenly over the file (deterministic)."""
    if max_mutants is None or max_mutants >= len(mutants):
        return list(mutants)
    step = len(mutants) / max_mutants
    return [mutants[int(i * step)] for i in range(max_mutants)]


def mutate_module(name: str, target: Target, args: argparse.Namespace, equivalents: dict[str, str]) -> list[MutantResult]:
    source = (REPO / target.path).read_text(encoding="utf-8")
    mutants = select(matching(find_mutants(source, target.path), args.match), args.max_mutants)
    workroot = Path(tempfile.mkdtemp(prefix=f"spiral-mutation-{name}-"))
    try:
        baseline = check_hook(target, source, workroot)
        timeout_s = max(args.min_timeout, args.timeout_factor * baseline)
        print(f"[{name}] {len(mutants)} mutants; unmutated tests take {baseline:.1f} s, timeout {timeout_s:.0f} s", file=sys.stderr)

        changed = threading.Event()

        def run_one(numbered: tuple[int, Mutant]) -> MutantResult:
            i, mutant = numbered
            # Mutants of a stale copy would be "killed" by any import of a name added since.
            if changed.is_set() or (REPO / target.path).read_text(encoding="utf-8") != source:
                changed.set()  # the other workers stop too
                raise SourceChangedError(f"{target.path} changed during the run (mutant {i + 1} of {len(mutants)}): rerun --module {name}")
            result = run_tests(target, mutant.source, workroot / f"m{i:04d}", timeout_s)
            print(f"[{name}] {i + 1}/{len(mutants)} {result.outcome.value:8} {mutant.key}", file=sys.stderr, flush=True)
            return MutantResult(mutant, result, equivalents.get(mutant.key))

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            return list(pool.map(run_one, enumerate(mutants)))
    finally:
        shutil.rmtree(workroot, ignore_errors=True)


# ---------------------------------------------------------------------------------- report ---


class ModuleScore(NamedTuple):
    mutants: int
    equivalent: int
    killed: int
    timeout: int
    survived: int
    errors: int

    @property
    def score(self) -> float:
        scored = self.mutants - self.equivalent
        return 100.0 * (self.killed + self.timeout) / scored if scored else 100.0


def score(results: Sequence[MutantResult]) -> ModuleScore:
    counted = [r for r in results if r.equivalent_reason is None]
    count = lambda outcome: sum(r.result.outcome == outcome for r in counted)  # noqa: E731
    return ModuleScore(len(results), len(results) - len(counted), count(Outcome.KILLED), count(Outcome.TIMEOUT),
                       count(Outcome.SURVIVED), count(Outcome.ERROR))


def module_summary(name: str, target: Target, results: Sequence[MutantResult]) -> dict:
    s = score(results)
    as_dict = lambda r: {"key": r.mutant.key, "line": r.mutant.line, "kind": r.mutant.kind.value,  # noqa: E731
                         "original": r.mutant.original, "mutated": r.mutant.mutated, "detail": r.result.detail}
    return {
        "module": target.module, "path": target.path, "tests": list(target.tests),
        **s._asdict(), "score": round(s.score, 1),
        "survivors": [as_dict(r) for r in results if r.equivalent_reason is None and r.result.outcome == Outcome.SURVIVED],
        "error_mutants": [as_dict(r) for r in results if r.result.outcome == Outcome.ERROR],
        "equivalent_but_killed": [as_dict(r) for r in results if r.equivalent_reason is not None and r.result.outcome != Outcome.SURVIVED],
        "results": [{"key": r.mutant.key, "outcome": r.result.outcome.value, "detail": r.result.detail,
                     "seconds": round(r.result.seconds, 1)} for r in results],
    }


def print_report(summaries: dict[str, dict], stale: Sequence[str]) -> None:
    for name, summary in summaries.items():
        print(f"\n== {name} ({summary['path']}, tests: {' '.join(summary['tests'])})")
        for survivor in summary["survivors"]:
            print(f"  survived  line {survivor['line']:4}: {survivor['original']}  ->  {survivor['mutated']}")
        for wrong in summary["equivalent_but_killed"]:
            print(f"  NOT EQUIVALENT (killed by {wrong['detail']}): {wrong['key']}  -- remove it from equivalent.txt")
        for error in summary["error_mutants"]:
            print(f"  ERROR {error['key']}: {error['detail']}")
    for key in stale:
        print(f"  stale equivalent.txt entry (matches no mutant; the file changed?): {key}")
    print(f"\n{'module':15} {'mutants':>8} {'equiv':>6} {'killed':>7} {'timeout':>8} {'survived':>9} {'errors':>7} {'score':>7}")
    for name, s in summaries.items():
        print(f"{name:15} {s['mutants']:8} {s['equivalent']:6} {s['killed']:7} {s['timeout']:8} {s['survived']:9} {s['errors']:7} {s['score']:6.1f}%")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=sorted(TARGETS), help="module to mutate (repeatable; default: all)")
    parser.add_argument("--max-mutants", type=int, default=None, help="run at most this many mutants per module, spread over the file")
    parser.add_argument("--match", action="append", default=None, help="only mutants whose key contains this text (repeatable: any of them)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested in parallel (default 1: the machine is shared)")
    parser.add_argument("--list", action="store_true", help="print the mutants (with their equivalent.txt keys) and exit")
    parser.add_argument("--json", type=Path, default=None, help="write the summary to this JSON file")
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT_FILE, help="known-equivalent mutants (default: %(default)s)")
    parser.add_argument("--timeout-factor", type=float, default=4.0, help="per-mutant timeout as a multiple of the unmutated run (default 4)")
    parser.add_argument("--min-timeout", type=float, default=30.0, help="lower bound of the per-mutant timeout in seconds (default 30)")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 if a module scores below this percentage")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be ≥ 1, got {args.jobs}")
    if args.max_mutants is not None and args.max_mutants < 1:
        parser.error(f"--max-mutants must be ≥ 1, got {args.max_mutants}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.module or list(TARGETS)
    equivalents = load_equivalents(args.equivalent)
    if args.list:
        for name in names:
            target = TARGETS[name]
            found = find_mutants((REPO / target.path).read_text(encoding="utf-8"), target.path)
            for mutant in select(matching(found, args.match), args.max_mutants):
                flag = "  [equivalent]" if mutant.key in equivalents else ""
                print(f"{mutant.kind.value:10} line {mutant.line:4}  {mutant.key}{flag}")
        return 0

    summaries: dict[str, dict] = {}
    seen: set[str] = set()
    for name in names:
        try:
            results = mutate_module(name, TARGETS[name], args, equivalents)
        except (HookCheckError, SourceChangedError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        seen.update(r.mutant.key for r in results)
        summaries[name] = module_summary(name, TARGETS[name], results)
    paths = {TARGETS[n].path for n in names}
    complete = args.max_mutants is None and args.match is None
    stale = [key for key in equivalents if key.split(":", 1)[0] in paths and key not in seen and complete]
    print_report(summaries, stale)
    if args.json is not None:
        args.json.write_text(json.dumps({"modules": summaries, "stale_equivalents": stale}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.fail_under is not None and any(s["score"] < args.fail_under for s in summaries.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

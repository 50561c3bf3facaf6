"""``spiral train --population N`` on one machine: N members side by side, PBT by :func:`spiral.population.decide`.

Each *member* is a whole ``spiral train`` run in ``<output_dir>/members/<slot>/`` (the services, or
one process with ``--single-process``), started as a child process from its own config file: the
run's config with its own seed, its explored hyperparameters and ``learner.hyperparameters_file``
pointing into its folder. The driver polls every member's run log for its metric
(``population.metric``) and updates, asks :func:`~spiral.population.decide`, and carries out each
exploit as the operator's controller is to: stop only the target (SIGTERM: it checkpoints), replace
its checkpoints with a copy of the source's newest, write the explored values into its
hyperparameters file, start it again (it resumes from the copy, with the source's seed, which a
resume may not change). Nobody else stops; a running member's learning rate and entropy change
through its hyperparameters file alone (:mod:`spiral.learning.hyperparameters`).

The budget is the population's: ``max_wall_minutes`` counts from the driver's start for all members
together (a restarted member gets what is left), so N members share the machine for that time.
Pretraining, when the config has any, runs once before the members and each starts from its
checkpoint (``init_from``): N members pretraining on the same synthetic programs would spend N× its
compute on one result. Its time counts inside the budget.

Written as it runs: ``population.jsonl`` (a ``members`` record whenever a member's figures change,
an ``exploit`` record per exploit), ``population.log`` (the plain lines the terminal shows) and, at
the end, ``population.png`` (each member's metric and hyperparameters over time).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from spiral.config import Hyperparameter, PopulationMetric, TrainConfig
from spiral.learning.hyperparameters import write_hyperparameters
from spiral.learning.plots import Panel, Series, plot_panels
from spiral.learning.run_log import DISCRIMINATOR_METRICS_FILE, METRICS_FILE, read_log
from spiral.population import Exploit, Member, after_exploit, decide_round, initial_members, ranked
from spiral.process import StopFlag
from spiral.progress import RunOutput

log = logging.getLogger(__name__)

POPULATION_LOG = "population.jsonl"
#: Seconds between two looks at the members' run logs (a poll reads a few small files).
POLL_SECONDS = 2.0
#: Seconds a member may take to checkpoint and exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 120.0


#: The run logs a member's figures are in: the critic's scalars (d_fake) are in the discriminator
#: learner's own log under the services, everything else in the policy learner's.
MEMBER_LOGS = (METRICS_FILE, DISCRIMINATOR_METRICS_FILE)


class MemberRun:
    """One member's folder, child process and what the driver has read of its run logs. Not thread-safe."""

    def __init__(self, slot: int, folder: Path) -> None:
        self.slot = slot
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        #: Per run log, the records before this index measure weights the member no longer holds.
        self.stale_records = dict.fromkeys(MEMBER_LOGS, 0)
        self.ready_since = 0  # its updates when it last took part in a decision (spiral.population.Member.ready_since)
        self.exit_code: int | None = None

    @property
    def config_path(self) -> Path:
        return self.folder / "member.yaml"

    @property
    def hyperparameters_path(self) -> Path:
        return self.folder / "hyperparameters.json"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def forget_weights(self) -> None:
        """After an exploit: what its logs say so far is of the weights it just lost."""
        self.stale_records = {name: len(read_log(self.folder / name)) for name in MEMBER_LOGS}


class Observation(NamedTuple):
    updates: int
    metric: float | None


def observe(run: MemberRun, metric: PopulationMetric) -> Observation:
    """The member's latest policy updates and the latest value of ``metric`` measured on its current
    weights (records logged before its last exploit do not count)."""
    logs = {name: read_log(run.folder / name) for name in MEMBER_LOGS}  # each file read once per poll
    counted = [r for r in logs[METRICS_FILE] if isinstance(r.get("updates"), int)]
    fresh = [record for name, records in logs.items() for record in records[run.stale_records[name] :]]
    values = [float(r[metric.record_key]) for r in fresh if isinstance(r.get(metric.record_key), (int, float))]
    return Observation(int(counted[-1]["updates"]) if counted else 0, values[-1] if values else None)


def copy_checkpoint(source: Path, target: Path) -> Path:
    """Replace ``target``'s checkpoints by a copy of ``source``'s newest ones (every ``latest.pt``
    under it: the policy's, and the critic's or the replay's where the services keep their own).

    Each file is copied through an open handle of ``latest.pt``: the source keeps training and may
    write a newer one meanwhile, which only ever replaces the link, never the file being read.

    Raises:
        FileNotFoundError: ``source`` holds no ``latest.pt`` yet.
    """
    latest = sorted(source.rglob("latest.pt"))
    if not latest:
        raise FileNotFoundError(f"{source} holds no checkpoint (latest.pt) to copy")
    staging = target.with_name(target.name + ".copying")
    shutil.rmtree(staging, ignore_errors=True)
    for path in latest:
        destination = staging / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as fh, destination.open("wb") as out:
            shutil.copyfileobj(fh, out)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target / "latest.pt"


def _write_config(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _values(hyperparameters: Any) -> dict[str, float]:
    return {name.value: float(value) for name, value in hyperparameters.items()}


class PopulationRun:
    """The driver: starts the members, watches them, carries out the decisions, writes the logs."""

    def __init__(self, cfg: TrainConfig, *, single_process: bool, fresh: bool = False, poll_seconds: float = POLL_SECONDS) -> None:
        """``fresh``: clear an earlier population's folders and logs in ``cfg.output_dir`` first
        (``--no-resume``); members, pretraining and logs start over."""
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.single_process = single_process
        self.poll_seconds = poll_seconds
        self.rng = np.random.default_rng(cfg.seed)
        self.fresh = fresh
        self.members = list(initial_members(cfg, self.rng))
        self.runs = [MemberRun(m.slot, self.out / "members" / str(m.slot)) for m in self.members]
        self.seeds = [cfg.seed + m.slot for m in self.members]
        self.output = RunOutput(self.out / "population.log")
        self.started = time.monotonic()
        self.init_from = cfg.init_from
        self._last_logged: list[Any] = []

    # ---------------------------------------------------------------------------- budget ---

    @property
    def remaining_minutes(self) -> float | None:
        if self.cfg.max_wall_minutes is None:
            return None
        return self.cfg.max_wall_minutes - (time.monotonic() - self.started) / 60.0

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)

    # ----------------------------------------------------------------------------- start ---

    def pretrain_once(self) -> None:
        """Pretrain one policy for all members (see the module docstring); members start from it."""
        if not self.cfg.pretrain.updates or self.init_from is not None:
            return
        folder = self.out / "pretrain"
        data = self.cfg.model_dump(mode="json")
        data.update(output_dir=str(folder), torch_threads=os.cpu_count() or 1)
        data["population"] = {}
        config = folder / "pretrain.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        _write_config(config, data)
        self.output.echo(f"population: pretraining once for all {len(self.members)} members ({self.cfg.pretrain.updates} updates) → {folder}")
        with (folder / "pretrain.out").open("ab") as sink:
            code = subprocess.call([sys.executable, "-m", "spiral", "pretrain", "-c", str(config)], stdout=sink, stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f"pretraining failed (exit {code}); its output: {folder / 'pretrain.out'}")
        self.init_from = folder / "checkpoints" / "latest.pt"

    def write_member_config(self, member: Member) -> Path:
        run = self.runs[member.slot]
        data = self.cfg.model_dump(mode="json")
        data.update(output_dir=str(run.folder), seed=self.seeds[member.slot], population={})
        for name, value in member.hyperparameters.items():
            section, key = name.field
            data[section][key] = float(value)
        data["learner"]["hyperparameters_file"] = str(run.hyperparameters_path)
        if self.init_from is not None:
            data["init_from"] = str(self.init_from)
            data["pretrain"]["updates"] = 0  # done once, before the members
        if (remaining := self.remaining_minutes) is not None:
            data["max_wall_minutes"] = max(remaining, 0.05)
        if self.single_process and data.get("torch_threads") is None:
            data["torch_threads"] = max(1, (os.cpu_count() or 1) // len(self.members))
        run.folder.mkdir(parents=True, exist_ok=True)
        _write_config(run.config_path, data)
        write_hyperparameters(run.hyperparameters_path, member.hyperparameters)  # atomic: the member may be polling it
        return run.config_path

    def start_member(self, member: Member) -> None:
        run = self.runs[member.slot]
        config = self.write_member_config(member)
        command = [sys.executable, "-m", "spiral", "train", "-c", str(config), "--quiet", "--progress-every", "60"]
        if self.single_process:
            command.append("--single-process")
        with (run.folder / "member.out").open("ab") as sink:
            run.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        run.exit_code = None

    def stop_member(self, run: MemberRun) -> None:
        if run.process is None or run.process.poll() is not None:
            return
        run.process.send_signal(signal.SIGTERM)
        try:
            run.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("member %d did not stop within %.0f s of SIGTERM; killing it", run.slot, STOP_GRACE_SECONDS)
            run.process.kill()
            run.process.wait()

    # ------------------------------------------------------------------------------ loop ---

    def poll(self) -> None:
        """Read every member's figures; log a ``members`` record when any changed."""
        for i, run in enumerate(self.runs):
            seen = observe(run, self.cfg.population.metric)
            self.members[i] = self.members[i]._replace(updates=seen.updates, metric=seen.metric, ready_since=run.ready_since)
        state = [(m.updates, m.metric, tuple(m.hyperparameters.values())) for m in self.members]
        if state != self._last_logged:
            self._last_logged = state
            self.write({"event": "members", "seconds": self.seconds, "members": [self.member_record(m) for m in self.members]})

    def member_record(self, member: Member) -> dict[str, Any]:
        return {
            "slot": member.slot,
            "updates": member.updates,
            "metric": member.metric,
            "hyperparameters": _values(member.hyperparameters),
            "lineage": [step._asdict() for step in member.lineage],
            "running": self.runs[member.slot].running,
        }

    def decide_and_carry_out(self) -> list[Exploit]:
        """One round of PBT's exploit step (:func:`spiral.population.decide_round`): every ready
        member is judged against the same ranking; the survivors' readiness counts again from now."""
        exploits, self.members = decide_round(self.members, self.cfg.population, self.rng)
        for member in self.members:
            self.runs[member.slot].ready_since = member.ready_since
        for exploit in exploits:
            self.carry_out(exploit)
        return exploits

    def carry_out(self, exploit: Exploit) -> None:
        """Stop the target, give it the source's checkpoint and the explored values, start it again."""
        target, source = self.runs[exploit.target], self.runs[exploit.source]
        if not (source.running and target.running):
            return  # a member that finished takes no part any more
        self.stop_member(target)
        try:
            latest = copy_checkpoint(source.checkpoints, target.checkpoints)
        except FileNotFoundError as err:
            self.output.echo(f"population: exploit of member {exploit.target} skipped: {err}")
            self.start_member(self.members[exploit.target])
            return
        from spiral.learning.checkpoint import load_checkpoint  # torch: only once a copy exists

        copied_updates = int(load_checkpoint(latest)["counters"]["updates"])
        self.seeds[exploit.target] = self.seeds[exploit.source]
        target.forget_weights()
        target.ready_since = copied_updates
        self.members[exploit.target] = after_exploit(self.members[exploit.target], exploit, copied_updates)
        self.start_member(self.members[exploit.target])
        self.write({"event": "exploit", "seconds": self.seconds, **exploit._asdict(), "hyperparameters": _values(exploit.hyperparameters),
                    "copied_updates": copied_updates})  # fmt: skip
        self.output.echo(f"population: exploit: {exploit.reason}")

    def write(self, record: dict[str, Any]) -> None:
        with (self.out / POPULATION_LOG).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")

    def progress_line(self) -> str:
        key = self.cfg.population.metric.value
        parts = []
        for m in self.members:
            metric = "–" if m.metric is None else f"{m.metric:.4g}"
            hyper = " ".join(f"{name.value.split('_')[0][:4]}={value:.3g}" for name, value in m.hyperparameters.items())
            parts.append(f"[{m.slot}] {m.updates}u {key} {metric} {hyper}")
        return f"population {self.seconds:.0f}s: " + "; ".join(parts)

    def run(self, progress_every: float = 30.0) -> int:
        """Run the population until every member is done; returns 0, 130 after a stop, 1 when a member failed."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.fresh:
            for folder in ("members", "pretrain"):
                shutil.rmtree(self.out / folder, ignore_errors=True)
            for name in (POPULATION_LOG, "population.png"):
                (self.out / name).unlink(missing_ok=True)
        population = self.cfg.population
        self.write({"event": "start", "size": population.size, "metric": population.metric.value, "single_process": self.single_process,
                    "population": population.model_dump(mode="json")})  # fmt: skip
        interrupt = StopFlag().install()
        try:
            self.pretrain_once()
            for member in self.members:
                self.start_member(member)
            where = self.out / "members"
            self.output.echo(f"population: {len(self.members)} members in {where} (metric {population.metric.value}); log {self.out / POPULATION_LOG}")
            shown = 0.0
            while not interrupt.is_set():
                self.poll()
                self.decide_and_carry_out()
                if time.monotonic() - shown >= progress_every:
                    self.output.echo(self.progress_line())
                    shown = time.monotonic()
                if not any(r.running for r in self.runs):
                    break
                interrupt.wait(self.poll_seconds)
        finally:
            for run in self.runs:
                self.stop_member(run)
                run.exit_code = None if run.process is None else run.process.returncode
            interrupt.uninstall()
        self.poll()
        self.finish()
        if interrupt.is_set():
            return 130
        return 1 if any(r.exit_code not in (0, None) for r in self.runs) else 0

    def best(self) -> Member | None:
        order = ranked(self.members, self.cfg.population.metric)
        return order[0] if order else None

    def finish(self) -> None:
        write_population_plot(self.out, self.cfg.population.metric)
        best = self.best()
        self.write({"event": "done", "seconds": self.seconds, "best": None if best is None else best.slot,
                    "members": [self.member_record(m) for m in self.members]})  # fmt: skip
        for run in self.runs:
            if run.exit_code not in (0, None):
                self.output.echo(f"population: member {run.slot} exited with {run.exit_code}; its output: {run.folder / 'member.out'}")
        if best is not None:
            self.output.echo(
                f"population: best member {best.slot}, {self.cfg.population.metric.value} {best.metric:.4g} "
                f"({_values(best.hyperparameters)}); evaluate it: spiral eval --checkpoint {self.runs[best.slot].checkpoints}"
            )
        self.output.echo(f"population: wrote {self.out / POPULATION_LOG} and {self.out / 'population.png'}")


def population_panels(records: list[dict[str, Any]], metric: PopulationMetric) -> list[Panel]:
    """Each member's metric and hyperparameters against the population's seconds (pure)."""
    snapshots = [r for r in records if r.get("event") in ("members", "done")]
    slots = sorted({m["slot"] for r in snapshots for m in r["members"]})
    panels = []

    def per_member(value: Any) -> tuple[Series, ...]:
        out = []
        for slot in slots:
            points = [(r["seconds"], value(m)) for r in snapshots for m in r["members"] if m["slot"] == slot and value(m) is not None]
            out.append(Series(f"member {slot}", [p[0] for p in points], [p[1] for p in points]))
        return tuple(out)

    panels.append(Panel(f"{metric.value} ({'higher' if metric.higher_is_better else 'lower'} is better)", per_member(lambda m: m["metric"])))
    for name in Hyperparameter:
        if any(name.value in m["hyperparameters"] for r in snapshots for m in r["members"]):
            panels.append(Panel(name.value, per_member(lambda m, key=name.value: m["hyperparameters"].get(key))))
    return panels


def write_population_plot(out: Path, metric: PopulationMetric) -> Path:
    """``<out>/population.png`` from ``population.jsonl``."""
    return plot_panels(population_panels(read_log(out / POPULATION_LOG), metric), out / "population.png", x_label="seconds since the population started")

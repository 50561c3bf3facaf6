"""``spiral train --population N`` on one machine (:mod:`spiral.launch.population`): real member
processes (``spiral train --single-process``), real checkpoints copied between their folders, the
decisions of :mod:`spiral.population`. Nothing is emulated."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from spiral.cli import app
from spiral.config import PopulationMetric, load_config_dict
from spiral.launch.population import PopulationRun, copy_checkpoint, population_panels
from spiral.learning.run_log import read_log


def _config(out: Path, **extra):
    return load_config_dict({
        "env": {"renderer": "fast", "canvas_size": 32, "grid_size": 8, "episode_length": 3, "brush_sizes": [2.0], "use_pressure": False},
        "data": {"num_shapes": 64, "held_out_fraction": 0.25},
        "num_envs": 4,
        "total_updates": 400,
        "max_wall_minutes": 0.5,
        "output_dir": str(out),
        "log_every_updates": 2,
        "eval_every_updates": 3,
        "checkpoint_every_updates": 3,
        "population": {"size": 2, "ready_after_updates": 6, "exploit": {"fraction": 0.5}},
        **extra,
    })  # fmt: skip


def test_the_worse_member_takes_the_better_ones_checkpoint_and_explored_hyperparameters_and_keeps_training(tmp_path) -> None:
    out = tmp_path / "population"
    # Ranked by the critic's score of each member's paintings: it moves at every update, so the two
    # members always differ (a tiny conditional run's greedy policy paints blank at first: a tie, no exploit).
    cfg = _config(out, mode="unconditional", reward={"kind": "discriminator"}, discriminator={"batch_size": 4},
                  pretrain={"updates": 2, "batch_size": 4}, population={"size": 2, "metric": "d_fake", "ready_after_updates": 6, "exploit": {"fraction": 0.5}})  # fmt: skip
    run = PopulationRun(cfg, single_process=True, poll_seconds=0.3)
    assert run.run(progress_every=5.0) == 0
    records = read_log(out / "population.jsonl")
    exploits = [r for r in records if r.get("event") == "exploit"]
    assert exploits, f"no exploit in {len(records)} records: {records[-3:]}"
    first = exploits[0]
    target, source = first["target"], first["source"]
    assert {target, source} == {0, 1}
    # Pretrained once, before the members: both started from that checkpoint.
    assert (out / "pretrain" / "checkpoints" / "latest.pt").exists()
    # The target trained on after the copy: from the source's counters, past them, and with the
    # explored values in the file its trainer polls (and in its run log once applied).
    target_log = read_log(out / "members" / str(target) / "metrics.jsonl")
    starts = [r for r in target_log if r.get("event") == "start"]
    assert len(starts) >= 2 and starts[1]["updates"] == first["copied_updates"] > 0
    assert max(r.get("updates", 0) for r in target_log) > first["copied_updates"]
    if len(exploits) == 1:
        written = json.loads((out / "members" / str(target) / "hyperparameters.json").read_text())
        assert written == first["hyperparameters"]
    lr = first["hyperparameters"]["learning_rate"]
    assert 0.8 * 6e-4 * 0.8 <= lr <= 6e-4 * 1.25 * 1.25  # the source's value (itself explored or not) times a factor in [0.8, 1.25]
    # Lineage in the last record; every member measured; the plot drawn.
    done = records[-1]
    assert done["event"] == "done" and done["best"] in (0, 1)
    lineage = {m["slot"]: m["lineage"] for m in done["members"]}
    assert lineage[exploits[-1]["target"]][-1]["source"] == exploits[-1]["source"]
    assert (out / "population.png").stat().st_size > 0
    assert "exploit: member" in (out / "population.log").read_text()


def test_copy_checkpoint_replaces_every_latest_file_and_keeps_nothing_of_the_target(tmp_path) -> None:
    source, target = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    (source / "discriminator").mkdir(parents=True)
    (source / "latest.pt").write_bytes(b"policy")
    (source / "checkpoint-00000003.pt").write_bytes(b"old numbered")
    (source / "discriminator" / "latest.pt").write_bytes(b"critic")
    target.mkdir(parents=True)
    (target / "checkpoint-00000009.pt").write_bytes(b"the target's own, newer-numbered")
    assert copy_checkpoint(source, target) == target / "latest.pt"
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == ["discriminator/latest.pt", "latest.pt"]
    assert (target / "discriminator" / "latest.pt").read_bytes() == b"critic"


def test_the_copy_jobs_command_copies_and_names_a_missing_source(tmp_path) -> None:
    """``spiral population copy-checkpoint``: what the operator's exploit Job runs in its pod."""
    source, target = tmp_path / "source" / "checkpoints", tmp_path / "target" / "checkpoints"
    source.mkdir(parents=True)
    (source / "latest.pt").write_bytes(b"policy")
    result = CliRunner().invoke(app, ["population", "copy-checkpoint", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "latest.pt").read_bytes() == b"policy" and "copied latest.pt" in result.output
    result = CliRunner().invoke(app, ["population", "copy-checkpoint", str(tmp_path / "nothing"), str(target)])
    assert result.exit_code == 1 and "cannot copy" in result.output and "holds no checkpoint" in result.output
    assert (target / "latest.pt").read_bytes() == b"policy"  # a failed copy leaves the target as it was


def test_the_plot_has_one_series_per_member_for_the_metric_and_each_hyperparameter() -> None:
    records = [
        {"event": "members", "seconds": 1.0, "members": [{"slot": 0, "metric": None, "hyperparameters": {"learning_rate": 1e-3, "entropy_coef": 0.05}},
                                                          {"slot": 1, "metric": 0.5, "hyperparameters": {"learning_rate": 2e-3, "entropy_coef": 0.05}}]},
        {"event": "members", "seconds": 2.0, "members": [{"slot": 0, "metric": 0.4, "hyperparameters": {"learning_rate": 1e-3, "entropy_coef": 0.05}},
                                                          {"slot": 1, "metric": 0.3, "hyperparameters": {"learning_rate": 2e-3, "entropy_coef": 0.06}}]},
    ]  # fmt: skip
    metric, lr, entropy = population_panels(records, PopulationMetric.HELD_OUT_L2)
    assert metric.ylabel == "held_out_l2 (lower is better)"
    assert [(s.label, s.xs, s.ys) for s in metric.series] == [("member 0", [2.0], [0.4]), ("member 1", [1.0, 2.0], [0.5, 0.3])]
    assert lr.ylabel == "learning_rate" and entropy.series[1].ys == [0.05, 0.06]


def test_a_population_run_does_not_resume_over_an_earlier_one(tmp_path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    (out / "population.jsonl").write_text("{}\n")
    result = CliRunner().invoke(app, ["train", "--population", "2", "--set", "population.exploit.fraction=0.5", "-o", str(out)])
    assert result.exit_code == 2 and "a population does not resume: start afresh with --no-resume" in result.output


def _log_eval(folder: Path, updates: int, l2: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"eval/held_out_l2": l2, "updates": updates, "frames": 64 * updates}) + "\n")


def test_one_round_replaces_only_the_bottom_fraction_and_the_survivors_wait_a_ready_period(tmp_path) -> None:
    """Before this rule each exploit re-ranked the rest: the next poll found a new bottom member, and
    three of four members copied the same one within 30 s (the MNIST population run)."""
    cfg = _config(tmp_path / "p", population={"size": 4, "ready_after_updates": 100, "exploit": {"fraction": 0.25}})
    run = PopulationRun(cfg, single_process=True)
    for slot, l2 in enumerate([0.30, 0.20, 0.10, 0.40]):
        _log_eval(run.runs[slot].folder, 200, l2)
    run.poll()
    run.carry_out = lambda exploit: None  # no member processes here: the round's bookkeeping is what is tested
    (exploit,) = run.decide_and_carry_out()
    assert (exploit.target, exploit.source) == (3, 2)
    # Member 3 left the ranking (its copy is not measured yet): member 0 is now the bottom of three,
    # but it survived this round, so it is not replaced before another ready period.
    _log_eval(run.runs[3].folder, 200, 0.40)
    run.runs[3].forget_weights()
    run.poll()
    assert run.members[0].ready_since == 200 and run.decide_and_carry_out() == []
    for slot, l2 in enumerate([0.30, 0.20, 0.10]):
        _log_eval(run.runs[slot].folder, 300, l2)
    run.poll()
    (again,) = run.decide_and_carry_out()
    assert again.target == 0  # a ready period later it is judged again

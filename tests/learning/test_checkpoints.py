"""Safe, layered checkpoints (issue #14, findings 8 and 10): no code runs while loading, corruption
is detected and falls back to an older checkpoint, the newest N are kept, a full disk says so and
leaves no temporary files, and a resume applies or refuses each config change by name."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from spiral.config import load_config_dict
from spiral.learning import checkpoint as ckpt
from spiral.learning.checkpoint import CheckpointError, DiskFullError, load_checkpoint, numbered_checkpoints, read_checkpoint
from spiral.learning.resume import ResumeConfigError, compare_configs
from spiral.learning.state import TrainingState
from spiral.learning.trainer import SingleProcessTrainer
from test_trainer import tiny_config

FAST = {"data": {"num_shapes": 40}, "num_envs": 4, "total_updates": 2}


def config(tmp_path: Path, **extra: Any):  # noqa: ANN201
    return load_config_dict(tiny_config(tmp_path, **{**FAST, **extra}))


@pytest.fixture()
def trainer(tmp_path: Path) -> SingleProcessTrainer:
    return SingleProcessTrainer(config(tmp_path), resume=False)


class _RunsCode:
    """A pickle payload that creates a file when unpickled (what a crafted latest.pt did)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "checkpoints" / "latest.pt"
    crafted.parent.mkdir()
    torch.save({"config": {}, "policy": _RunsCode(marker)}, crafted)
    with pytest.raises(CheckpointError, match=r"holds objects that only pickle could rebuild \(code could run while loading\): refused"):
        load_checkpoint(crafted)
    assert not marker.exists()
    with open(crafted, "wb") as handle:  # also with our header: the body is still loaded weights_only
        handle.write(ckpt.MAGIC + b"sha256:" + __import__("hashlib").sha256(pickle.dumps(_RunsCode(marker))).hexdigest().encode() + b"\n" + pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(crafted)
    assert not marker.exists()


def test_the_checkpoint_holds_only_weights_only_loadable_data(trainer: SingleProcessTrainer) -> None:
    path = trainer.checkpoint()
    body = path.read_bytes().split(b"\n", 2)[2]
    import io

    payload = torch.load(io.BytesIO(body), weights_only=True)  # raises if anything needs pickle
    assert isinstance(payload["config"], str) and payload["rng"]["numpy"]["keys"].dtype == torch.int64


def test_a_corrupted_latest_checkpoint_is_detected_and_the_previous_one_is_used(trainer: SingleProcessTrainer, tmp_path: Path) -> None:
    """Before: overwriting 1 KiB inside latest.pt loaded silently with 256 changed weights."""
    directory = tmp_path / "run" / "checkpoints"
    trainer.checkpoint()
    trainer.train_step()
    latest = trainer.checkpoint()
    data = bytearray(latest.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 1024] = os.urandom(1024)
    latest.write_bytes(bytes(data))  # the same file as the newest numbered checkpoint (a hard link)
    with pytest.raises(CheckpointError, match=r"fails its checksum .* the file changed after it was written"):
        read_checkpoint(latest)
    fresh = TrainingState.build(trainer.cfg, trainer.env, role="single-process", policy=True, discriminator=False, seed=9)
    used = fresh.resume(directory)
    assert used == numbered_checkpoints(directory)[1] and fresh.counters.updates == 0


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    trainer = SingleProcessTrainer(config(tmp_path, keep_checkpoints=2), resume=False)
    for _ in range(5):
        trainer.checkpoint()
    directory = tmp_path / "run" / "checkpoints"
    assert [p.name for p in numbered_checkpoints(directory)] == ["checkpoint-00000005.pt", "checkpoint-00000004.pt"]
    assert os.path.samefile(directory / "latest.pt", directory / "checkpoint-00000005.pt")


def test_a_full_disk_is_named_and_leaves_the_old_checkpoint_and_no_temporary_files(trainer: SingleProcessTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "run" / "checkpoints"
    trainer.checkpoint()
    before = (directory / "latest.pt").read_bytes()
    real_write = ckpt._write

    def full_disk(path: Path, data: bytes) -> None:
        with ckpt.atomic_output(path, durable=True) as handle:
            handle.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write", full_disk)
    with pytest.raises(DiskFullError, match=rf"no space left in {directory} to write a [\d,]+-byte checkpoint \([\d,]+ bytes free\)"):
        trainer.checkpoint()
    monkeypatch.setattr(ckpt, "_write", real_write)
    assert (directory / "latest.pt").read_bytes() == before
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_save(trainer: SingleProcessTrainer, tmp_path: Path) -> None:
    directory = tmp_path / "run" / "checkpoints"
    directory.mkdir(parents=True)
    (directory / ".latest.pt.k3j2.tmp").write_bytes(b"half")
    (directory / ".checkpoint-00000001.pt.x.tmp").write_bytes(b"half")
    (directory / ".policy-version.zz.tmp").write_bytes(b"1")  # not a checkpoint temporary: left alone
    trainer.checkpoint()
    assert sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp")) == [".policy-version.zz.tmp"]


def test_a_plain_weights_only_file_still_loads(tmp_path: Path) -> None:
    """examples/pretrained/*.pt are plain torch files (fp16 state dicts): no header, weights_only."""
    path = tmp_path / "pretrained.pt"
    torch.save({"config": {"mode": "conditional"}, "policy": {"w": torch.ones(2, dtype=torch.float16)}}, path)
    loaded = read_checkpoint(path)
    assert not loaded.verified and loaded.payload["policy"]["w"].dtype == torch.float16


def test_a_resume_applies_new_learning_rates_to_the_optimisers(tmp_path: Path) -> None:
    """Before: the optimiser state brought back the old learning rate, silently."""
    cfg = config(tmp_path, mode="unconditional", reward={"kind": "discriminator", "temporal_credit": False, "scale": 1.0})
    trainer = SingleProcessTrainer(cfg, resume=False)
    trainer.train_step()
    trainer.checkpoint()
    changed = cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"learning_rate": 0.0123}), "discriminator": cfg.discriminator.model_copy(update={"learning_rate": 0.0045})})
    resumed = SingleProcessTrainer(changed, resume=True)
    assert [g["lr"] for g in resumed.state.policy_optimizer.param_groups] == [0.0123]
    assert [g["lr"] for g in resumed.state.discriminator_optimizer.param_groups] == [0.0045]
    assert resumed.counters.updates == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"agent": {"preset": "paper"}}, "agent.preset 'small' → 'paper'"),
        ({"env": {"canvas_size": 64}}, "env.canvas_size 32 → 64"),
        ({"mode": "unconditional", "reward": {"kind": "discriminator", "temporal_credit": False, "scale": 20.0}}, "mode 'conditional' → 'unconditional'"),
        ({"learner": {"adam_beta1": 0.9}}, "learner.adam_beta1 0.5 → 0.9"),
    ],
    ids=["agent", "env", "mode", "optimiser-betas"],
)
def test_a_resume_with_changed_networks_is_refused_naming_the_keys(tmp_path: Path, change: dict, named: str) -> None:
    """Before: a raw load_state_dict RuntimeError, and a crash loop."""
    SingleProcessTrainer(config(tmp_path), resume=False).checkpoint()
    with pytest.raises(ResumeConfigError, match=r"cannot resume from .*latest\.pt: the checkpoint was trained with other settings") as info:
        SingleProcessTrainer(config(tmp_path, **change), resume=True)
    assert named in str(info.value) and "--no-resume" in str(info.value) and "--output-dir (-o)" in str(info.value)


def test_compare_configs_splits_allowed_and_refused_changes(tmp_path: Path) -> None:
    stored = config(tmp_path).model_dump(mode="json")
    new = config(tmp_path, total_updates=99, num_actors=7, learner={"entropy_coef": 0.5}, services={"grpc_port": 0}, reward={"scale": 3.0})
    changes = compare_configs(stored, new)
    assert {c.key for c in changes.applied} == {"total_updates", "num_actors", "learner.entropy_coef", "services.grpc_port"}
    assert [str(c) for c in changes.refused] == ["reward.scale 20.0 → 3.0"]
    del stored["keep_checkpoints"]  # a key an older release did not have is not a difference
    assert "keep_checkpoints" not in {c.key for c in compare_configs(stored, new).applied + compare_configs(stored, new).refused}


def test_spiral_sample_reads_the_new_format(trainer: SingleProcessTrainer, tmp_path: Path) -> None:
    from spiral.api import load_agent

    trainer.checkpoint()
    agent = load_agent(tmp_path / "run" / "checkpoints")
    assert agent.config.env.canvas_size == 32

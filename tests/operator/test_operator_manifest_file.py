"""``spiral train -f SPIRALJOB.yaml``: the manifest read by the operator's own parser, run by the local launcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spiral.config import ConfigError, Renderer, ServicesConfig
from spiral.learning.checkpoint import load_checkpoint
from spiral_operator.manifest_file import local_train_config, read_spiraljob
from spiral_operator.spec import SpecError, to_train_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "spiraljob.yaml"


def _write(tmp_path: Path, *documents: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def _job(**spec: object) -> dict:
    return {"apiVersion": "spiral.dev/v1alpha1", "kind": "SpiralJob", "metadata": {"name": "paint"},
            "spec": {"image": "img", "training": {"totalFrames": 1000}, **spec}}  # fmt: skip


def test_local_config_is_the_pods_config_but_for_the_wiring() -> None:
    job = read_spiraljob(EXAMPLE)
    pods = to_train_config(job.spec, job.name, job.namespace).model_dump(mode="json")
    local = local_train_config(EXAMPLE).model_dump(mode="json")
    wiring = {"services", "output_dir", "num_actors"}
    assert {k: v for k, v in local.items() if k not in wiring} == {k: v for k, v in pods.items() if k not in wiring}
    assert local["services"] == ServicesConfig().model_dump(mode="json")  # loopback: the launcher picks the ports
    assert local["output_dir"] == "runs/shapes-l2" and pods["output_dir"] == "/checkpoints"
    assert local["num_actors"] == job.spec.actor.replicas  # the actors the job starts with, as the Deployment would


def test_overrides_and_output_dir_apply_on_top() -> None:
    cfg = local_train_config(EXAMPLE, {"total_updates": 2, "env.grid_size": 8}, Path("/tmp/out"))
    assert (cfg.total_updates, cfg.env.grid_size, str(cfg.output_dir)) == (2, 8, "/tmp/out")


def test_the_example_header_describes_the_config_it_makes() -> None:
    """The example's comments name what `preset: default` fills in; they stay true."""
    cfg = local_train_config(EXAMPLE)
    assert cfg.env.renderer == Renderer.FAST and cfg.env.grid_size == 16
    assert cfg.env.episode_length - 1 == 7 and len(cfg.env.brush_sizes) == 1
    assert cfg.reward.blur_sigma > 0 and cfg.reward.temporal_credit and cfg.num_envs == 64
    assert cfg.total_frames == 300_000 and cfg.checkpoint_every_updates == 100
    spec = read_spiraljob(EXAMPLE).spec
    assert spec.preset.value == "default" and spec.actor.autoscaling.enabled
    assert (spec.actor.replicas, spec.actor.min_replicas, spec.actor.max_replicas) == (2, 1, 4)
    text = EXAMPLE.read_text()
    assert "spiral train -f examples/spiraljob.yaml" in text and "kubectl scale sj shapes-l2" in text


def test_other_documents_are_skipped_and_the_namespace_defaults(tmp_path: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "spiral"}}
    job = read_spiraljob(_write(tmp_path, namespace, _job()))
    assert (job.name, job.namespace) == ("paint", "default")


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}], "must hold exactly one SpiralJob (apiVersion spiral.dev/v1alpha1); found 0 among: Namespace"),
        ([_job(), _job()], "found 2 among: SpiralJob, SpiralJob"),
        ([{**_job(), "apiVersion": "spiral.dev/v1"}], "apiVersion 'spiral.dev/v1' is not 'spiral.dev/v1alpha1'"),
        ([{**_job(), "metadata": {}}], "metadata.name is required"),
    ],
    ids=["no-job", "two-jobs", "wrong-version", "no-name"],
)
def test_manifest_problems_are_named(tmp_path: Path, documents: list[dict], message: str) -> None:
    with pytest.raises(ConfigError, match="job.yaml") as raised:
        read_spiraljob(_write(tmp_path, *documents))
    assert message in str(raised.value)


def test_an_invalid_spec_gets_the_operators_message(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"reward.kind 'l2' needs a target"):
        read_spiraljob(_write(tmp_path, _job(mode="unconditional")))


def test_train_cli_reports_a_bad_manifest_as_a_usage_error(tmp_path: Path) -> None:
    path = _write(tmp_path, _job(mode="unconditional"))
    result = subprocess.run([sys.executable, "-m", "spiral", "train", "-f", str(path), "-o", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "reward.kind 'l2' needs a target" in result.stderr and f"SpiralJob in {path}" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_spiral_train_runs_the_example_spiraljob_locally(tmp_path: Path) -> None:
    """The example manifest, unchanged but for a budget on the command line, trains with the local launcher."""
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "spiral", "train", "-f", str(EXAMPLE), "--set", "total_updates=2", "--set", "pretrain.updates=0", "-o", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=220, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "trained 2 updates" in result.stdout
    assert load_checkpoint(out / "checkpoints")["counters"]["updates"] == 2
    logs = {p.stem for p in (out / "logs").glob("*.log")}
    assert {"policy-learner", "actor-0", "actor-1"} <= logs and not {"replay", "discriminator-learner"} & logs  # an l2 job's roles

"""A SpiralJob manifest file, read with the operator's own parser — what ``spiral train -f FILE`` runs on one machine.

:func:`local_train_config` is the config the job's pods would load from their ConfigMap
(:func:`spiral_operator.spec.to_train_config`: the same preset, defaults and rules), with only the
cluster's wiring swapped for the local launcher's:

* ``services``: loopback defaults (the launcher picks free ports and addresses); in the cluster the
  peers are Service names on ``0.0.0.0`` behind a NetworkPolicy;
* ``output_dir``: ``runs/<job name>`` (or ``--output-dir``) instead of the checkpoint volume ``/checkpoints``;
* ``num_actors``: ``spec.actor.replicas``, the actors the job starts with (in the cluster the config
  carries ``maxReplicas`` as a bound, because the actor Deployment runs them).

Then ``--set`` overrides apply, in ``spiral train``'s TrainConfig keys (``total_updates=2``).
Callers: :mod:`spiral.launch.train_cli`. Reads the file; nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from spiral.config import ConfigError, ServicesConfig, TrainConfig, apply_overrides, load_config_dict
from spiral_operator.crd import API_VERSION, KIND
from spiral_operator.spec import SpecError, SpiralJobSpec, parse_spec, to_train_config

#: The namespace ``metadata.namespace`` defaults to, as with ``kubectl apply``.
DEFAULT_NAMESPACE = "default"


class SpiralJobManifest(NamedTuple):
    name: str
    namespace: str
    spec: SpiralJobSpec


def read_spiraljob(path: Path) -> SpiralJobManifest:
    """The one SpiralJob in YAML file ``path`` (other documents, e.g. a Namespace, are skipped).

    Raises:
        ConfigError: unreadable file, no SpiralJob or several, a wrong apiVersion or no name.
        SpecError: the spec is invalid (the message the operator would put in the job's status).
    """
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read SpiralJob manifest {path}: {err}") from None
    jobs = [d for d in documents if isinstance(d, Mapping) and d.get("kind") == KIND]
    if len(jobs) != 1:
        kinds = ", ".join(str(d.get("kind")) for d in documents if isinstance(d, Mapping)) or "nothing"
        raise ConfigError(f"{path} must hold exactly one {KIND} (apiVersion {API_VERSION}); found {len(jobs)} among: {kinds}")
    job = jobs[0]
    if job.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{path}: apiVersion {job.get('apiVersion')!r} is not {API_VERSION!r}")
    meta = job.get("metadata") or {}
    if not meta.get("name"):
        raise ConfigError(f"{path}: metadata.name is required (it names the run folder, as it names the job's pods)")
    return SpiralJobManifest(str(meta["name"]), str(meta.get("namespace") or DEFAULT_NAMESPACE), parse_spec(job.get("spec") or {}))


def local_train_config(path: Path, overrides: Mapping[str, Any] | None = None, output_dir: Path | None = None) -> TrainConfig:
    """The TrainConfig of the SpiralJob in ``path`` for a local run (see the module docstring).

    Raises:
        ConfigError: unreadable manifest, or invalid ``overrides`` (named in the message).
        SpecError: the spec is invalid.
    """
    job = read_spiraljob(path)
    pod_config = to_train_config(job.spec, job.name, job.namespace)
    data = pod_config.model_dump(mode="json")
    data["services"] = ServicesConfig().model_dump(mode="json")
    data["output_dir"] = str(output_dir if output_dir is not None else Path("runs") / job.name)
    data["num_actors"] = max(1, job.spec.actor.replicas)
    return load_config_dict(apply_overrides(data, dict(overrides or {})), source=f"SpiralJob {job.name} ({path})")


__all__ = ["DEFAULT_NAMESPACE", "SpecError", "SpiralJobManifest", "local_train_config", "read_spiraljob"]

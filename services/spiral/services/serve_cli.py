"""``spiral serve ROLE --config FILE``: run one SPIRAL service in this process (what each pod runs).

ROLE is one of :class:`spiral.config.Role`. ``replay`` runs :func:`run_replay_server`; the other
roles import ``spiral.services.<role module>`` lazily and call its ``run(cfg, ...)``. Flags and
``SPIRAL_*`` environment variables override the config's ``services`` section (flags win), so a
pod can take ports from its spec without editing the YAML.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from spiral.config import ConfigError, Role, TrainConfig, load_config
from spiral.launch.parent import die_with_parent_from_env

logger = logging.getLogger(__name__)

#: The module implementing each role other than replay; each exposes ``run(cfg: TrainConfig, ...)``.
ROLE_MODULES: dict[Role, str] = {
    Role.ACTOR: "spiral.services.actor",
    Role.POLICY_LEARNER: "spiral.services.policy_learner",
    Role.DISCRIMINATOR_LEARNER: "spiral.services.discriminator_learner",
}


def parse_role(value: str) -> Role:
    """Raises: typer.BadParameter: unknown role (lists the valid ones)."""
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise typer.BadParameter(f"unknown role {value!r}; valid roles: {valid}", param_hint="ROLE") from None


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a.b": 1, "c": "x"}`` (values parsed as YAML scalars).

    Raises:
        typer.BadParameter: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set expects KEY=VALUE with a dotted key, got {item!r}", param_hint="--set")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def build_config(
    config: Path,
    *,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    bind: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Load ``config`` and apply the ``--set`` overrides, then the port/bind flags.

    Raises:
        ConfigError: unreadable file or invalid values (names every key).
    """
    merged = dict(overrides or {})
    if grpc_port is not None:
        merged["services.grpc_port"] = grpc_port
    if metrics_port is not None:
        merged["services.metrics_port"] = metrics_port
    if bind is not None:
        merged["services.bind_address"] = bind
    return load_config(config, merged)


def dispatch(role: Role, cfg: TrainConfig, *, job: str, ready_file: Path | None) -> None:
    """Run ``role`` until it finishes or is signalled.

    Raises:
        typer.BadParameter: the role's module is missing or has no ``run``.
    """
    if role == Role.REPLAY:
        from spiral.services.replay_service import run_replay_server

        run_replay_server(cfg, job=job, ready_file=ready_file)
        return
    module_name = ROLE_MODULES[role]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise  # a missing dependency inside the module is a real error: show it
        raise typer.BadParameter(f"role {role.value!r} is not available in this build: module {module_name} is missing", param_hint="ROLE") from None
    run = getattr(module, "run", None)
    if run is None:
        raise typer.BadParameter(f"role {role.value!r}: {module_name} has no run(cfg) function", param_hint="ROLE")
    # Pass only the keyword arguments the role's run() declares, so each role opts in.
    params = inspect.signature(run).parameters
    extra = {k: v for k, v in {"job": job, "ready_file": ready_file}.items() if k in params}
    run(cfg, **extra)


def serve_command(
    role: str = typer.Argument(..., help="Service to run: actor, policy-learner, discriminator-learner or replay.", metavar="ROLE"),
    config: Path = typer.Option(..., "--config", "-c", envvar="SPIRAL_CONFIG", help="TrainConfig YAML file.", exists=False),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", envvar="SPIRAL_GRPC_PORT", help="Overrides services.grpc_port (0 = free port)."),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", envvar="SPIRAL_METRICS_PORT", help="Overrides services.metrics_port (0 = free port)."),
    bind: Optional[str] = typer.Option(None, "--bind", envvar="SPIRAL_BIND_ADDRESS", help="Overrides services.bind_address."),
    set_: list[str] = typer.Option([], "--set", help="Dotted override KEY=VALUE (repeatable), e.g. --set replay.max_size=5000."),
    job: str = typer.Option("local", "--job", envvar="SPIRAL_JOB_NAME", help="The `job` label on every metric (the SpiralJob name)."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", envvar="SPIRAL_READY_FILE", help="Write the bound ports as JSON here once serving."),
    log_level: str = typer.Option("INFO", "--log-level", envvar="SPIRAL_LOG_LEVEL", help="Python logging level."),
) -> None:
    """Run one SPIRAL service (ROLE) until it finishes or receives SIGTERM."""
    die_with_parent_from_env()
    parsed_role = parse_role(role)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s:%(lineno)d %(message)s",
    )
    try:
        cfg = build_config(config, grpc_port=grpc_port, metrics_port=metrics_port, bind=bind, overrides=parse_set(set_))
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None
    logger.info("spiral serve %s (job %s) with config %s", parsed_role.value, job, config)
    try:
        dispatch(parsed_role, cfg, job=job, ready_file=ready_file)
    except ConfigError as err:  # e.g. plaintext on a public address: a usage error, not a crash
        raise typer.BadParameter(str(err), param_hint="--config") from None

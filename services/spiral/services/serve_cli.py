"""``spiral serve ROLE --config FILE``: run one SPIRAL service in this process (what each pod runs).

ROLE is one of :class:`spiral.config.Role`, dispatched through :data:`ROLE_RUNNERS`. Every knob a
role reads is an option here, each with a ``SPIRAL_*`` environment variable so that a pod (or the
local launcher) can pass it either way; flags win over variables. Port and bind flags override the
config's ``services`` section, so a pod can take ports from its spec without editing the YAML; the
rest travels to the role as :class:`~spiral.services.runtime.ServeOptions`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from spiral.config import ConfigError, Role, TrainConfig, load_config, parse_overrides
from spiral.launch.parent import die_with_parent
from spiral.services import actor, discriminator_learner, policy_learner, replay_service
from spiral.services.runtime import ServeOptions

logger = logging.getLogger(__name__)

#: The entry point of each role: ``run(cfg, options)`` returns when the work is done, or raises
#: ``SystemExit`` with the process's exit code.
ROLE_RUNNERS: dict[Role, Callable[[TrainConfig, ServeOptions], None]] = {
    Role.ACTOR: actor.run,
    Role.POLICY_LEARNER: policy_learner.run,
    Role.DISCRIMINATOR_LEARNER: discriminator_learner.run,
    Role.REPLAY: replay_service.run,
}


def parse_role(value: str) -> Role:
    """Raises: typer.BadParameter: unknown role (lists the valid ones)."""
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise typer.BadParameter(f"unknown role {value!r}; valid roles: {valid}", param_hint="ROLE") from None


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


def dispatch(role: Role, cfg: TrainConfig, options: ServeOptions) -> None:
    """Run ``role`` until it finishes or is signalled."""
    ROLE_RUNNERS[role](cfg, options)


def serve_command(
    role: str = typer.Argument(..., help="Service to run: actor, policy-learner, discriminator-learner or replay.", metavar="ROLE"),
    config: Path = typer.Option(..., "--config", "-c", envvar="SPIRAL_CONFIG", help="TrainConfig YAML file.", exists=False),
    grpc_port: int | None = typer.Option(None, "--grpc-port", envvar="SPIRAL_GRPC_PORT", help="Overrides services.grpc_port (0 = free port)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", envvar="SPIRAL_METRICS_PORT", help="Overrides services.metrics_port (0 = free port)."),
    bind: str | None = typer.Option(None, "--bind", envvar="SPIRAL_BIND_ADDRESS", help="Overrides services.bind_address."),
    set_: list[str] = typer.Option([], "--set", help="Dotted override KEY=VALUE (repeatable), e.g. --set replay.max_size=5000."),
    job: str = typer.Option("local", "--job", envvar="SPIRAL_JOB_NAME", help="The `job` label on every metric (the SpiralJob name)."),
    ready_file: Path | None = typer.Option(None, "--ready-file", envvar="SPIRAL_READY_FILE", help="Write the bound ports as JSON here once serving."),
    threads: int | None = typer.Option(
        None,
        "--threads",
        envvar="SPIRAL_TORCH_THREADS",
        min=1,
        help="torch intra-op threads of this process (default: the config's torch_threads, else torch's default).",
    ),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", envvar="SPIRAL_RESUME", help="Continue from existing checkpoints (learners, replay buffer), or start afresh."
    ),
    actor_id: str | None = typer.Option(
        None, "--actor-id", envvar="SPIRAL_ACTOR_ID", help="Actor only: its name, which also seeds its targets and noise (default: host name and pid)."
    ),
    parent_pid: int | None = typer.Option(
        None, "--parent-pid", envvar="SPIRAL_PARENT_PID", help="Get SIGTERM when this process dies (the local launcher passes its own pid)."
    ),
    log_level: str = typer.Option("INFO", "--log-level", envvar="SPIRAL_LOG_LEVEL", help="Python logging level."),
) -> None:
    """Run one SPIRAL service (ROLE) until it finishes or receives SIGTERM."""
    die_with_parent(parent_pid)
    parsed_role = parse_role(role)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s:%(lineno)d %(message)s",
    )
    try:
        overrides = parse_overrides(set_)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None
    try:
        cfg = build_config(config, grpc_port=grpc_port, metrics_port=metrics_port, bind=bind, overrides=overrides)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None
    options = ServeOptions(
        job=job,
        ready_file=ready_file,
        resume=resume,
        threads=threads if threads is not None else cfg.torch_threads,
        actor_id=actor_id,
    )
    logger.info("spiral serve %s (job %s) with config %s, %s", parsed_role.value, job, config, options)
    try:
        dispatch(parsed_role, cfg, options)
    except ConfigError as err:  # e.g. plaintext on a public address: a usage error, not a crash
        raise typer.BadParameter(str(err), param_hint="--config") from None

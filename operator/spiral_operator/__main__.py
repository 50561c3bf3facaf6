"""``spiral-operator`` / ``python -m spiral_operator``: run the SpiralJob operator.

The flags mirror ``kopf run`` (``--namespace``, ``--all-namespaces``, ``--liveness``, ``--debug``,
``--quiet``, ``--log-format``) so the Helm chart can pass the same arguments. Serves Prometheus
metrics on ``--metrics-port`` (8080) and Kopf's liveness probe at ``--liveness``
(``http://0.0.0.0:8081/healthz``). Settings come from flags only (no environment variables of its own); each
SpiralJob names its image in ``spec.image``. Credentials: the pod's service account in-cluster, else
the local kubeconfig. The permissions it needs are listed in :mod:`spiral_operator.rbac`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

_LOG_FORMATS = ("plain", "full", "json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiral-operator",
        description="Kubernetes operator for SpiralJob (spiral.dev/v1alpha1): reconciles each job into actors, learners and a replay buffer.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="Namespace (or glob) to serve; repeatable.")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="Serve every namespace (needs a ClusterRole).")
    parser.add_argument("--metrics-port", type=int, default=8080, help="Port of the operator's Prometheus /metrics (0 disables).")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="Kopf liveness endpoint URL (empty disables).")
    parser.add_argument("--monitor-interval", type=float, default=10.0, help="Seconds between status/failure checks of each job.")
    parser.add_argument("--metrics-timeout", type=float, default=3.0, help="Seconds to wait for a policy learner's /metrics.")
    parser.add_argument("--log-format", choices=_LOG_FORMATS, default="full", help="One of plain, full or json.")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-d", "--debug", "-v", "--verbose", dest="debug", action="store_true", help="Debug logging.")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="Warnings and errors only.")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags as ``main`` sees them (the Helm chart's rendered args are tested against this).

    Raises:
        SystemExit: an unknown flag, a bad value, or neither ``--namespace`` nor ``--all-namespaces``
            (argparse prints the usage and the reason to stderr first).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        parser.error("choose the scope: --namespace NS (repeatable) or --all-namespaces")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the flags and run the operator until SIGTERM/SIGINT."""
    args = parse_args(argv)

    # Heavy imports only after --help and flag errors, so those stay instant.
    import kopf
    from prometheus_client import CollectorRegistry, start_http_server

    from spiral_operator.handlers import Deps, build_registry, build_settings
    from spiral_operator.kube import KubeApi
    from spiral_operator.metrics import create_operator_metrics
    from spiral_operator.progress import http_fetcher

    kopf.configure(debug=args.debug, quiet=args.quiet, log_format=kopf.LogFormat[args.log_format.upper()])
    registry = CollectorRegistry()
    deps = Deps(api=KubeApi.from_environment(), fetch_metrics=http_fetcher(args.metrics_timeout), metrics=create_operator_metrics(registry))
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=registry)
    kopf.run(
        registry=build_registry(monitor_interval=args.monitor_interval),
        settings=build_settings(),
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        standalone=True,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(deps=deps),
    )


if __name__ == "__main__":
    main()

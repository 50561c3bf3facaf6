"""``spiral-operator`` / ``python -m spiral_operator``: run the SpiralJob operator.

Serves Prometheus metrics on ``--metrics-port`` (8080) and Kopf's liveness probe on
``--liveness-port`` (8081, path ``/healthz``). Credentials: the pod's service account in-cluster,
else the local kubeconfig.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

#: Kept importable without side effects: heavy imports happen inside main().


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiral-operator",
        description="Kubernetes operator for SpiralJob (spiral.dev/v1alpha1): reconciles each job into actors, learners and a replay buffer.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="Namespace (or glob) to serve; repeatable.")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="Serve every namespace (cluster-wide RBAC needed).")
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0 disables).")
    parser.add_argument("--liveness-port", type=int, default=8081, help="Kopf liveness probe port, path /healthz (0 disables).")
    parser.add_argument("--monitor-interval", type=float, default=10.0, help="Seconds between status/failure checks of each job.")
    parser.add_argument("--metrics-timeout", type=float, default=3.0, help="Seconds to wait for a policy learner's /metrics.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        _parser().error("choose the scope: --namespace NS (repeatable) or --all-namespaces")

    import kopf
    from prometheus_client import CollectorRegistry, start_http_server

    from spiral_operator.handlers import Deps, build_registry, build_settings
    from spiral_operator.kube import KubeApi
    from spiral_operator.metrics import create_operator_metrics
    from spiral_operator.progress import http_fetcher

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(process)d %(name)s:%(lineno)d %(message)s",
    )
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
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
        memo=kopf.Memo(deps=deps),
    )


if __name__ == "__main__":
    main()

"""``python -m spiral.services.health_probe HOST:PORT``: exit 0 when the gRPC health service there
answers SERVING, 1 otherwise (the message on stderr says why).

The exec probe of pods whose services speak (m)TLS: a kubelet gRPC probe cannot present a client
certificate, so :func:`spiral.services.server.serve` also serves health in plaintext on
``127.0.0.1:services.health_port`` and the probe runs inside the pod. Imports only grpc (no torch),
so one probe costs a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def probe(address: str, service: str = "", timeout: float = 4.0) -> str | None:
    """None when ``service`` at ``address`` is SERVING, else why not."""
    try:
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as err:
        return f"{address} not serving: {err.code().name}: {err.details()}"
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address} not serving: {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiral.services.health_probe", description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the plaintext health service (127.0.0.1:services.health_port)")
    parser.add_argument("--service", default="", help="health service name (default: the server as a whole)")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (below the probe's timeoutSeconds)")
    args = parser.parse_args(argv)
    problem = probe(args.address, args.service, args.timeout)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""
Cluster throughput: issuance flows per second of one node on SQLite, one
node on Redis, and two nodes on one Redis behind the nginx load balancer,
all with the built-in CA and a policy without validation, the same client
processes (bench.issuance's) for each.

    python -m bench.cluster [--seconds S] [--rounds R] [--processes N] [--poll SECONDS]

Redis runs as production would (AOF, C{appendfsync everysec}).  Prints the
flows/s of each side and their ratios to one node on SQLite and to one node
on Redis.
"""

from __future__ import annotations

import argparse
import functools
import os

from tests.integration.appliance import Appliance
from tests.integration.test_cluster import Node
from tests.integration.world import LoadBalancer, RedisServer

from .fleet import Harness
from .issuance import Server, add_arguments, measure

SIDES = ("1 node, SQLite", "1 node, Redis", "2 nodes, Redis, nginx LB")


def _redis(harness: Harness) -> RedisServer:
    """A redis-server with the AOF synced every second."""
    redis = RedisServer(harness, os.path.join(harness.mktemp(), "redis"), appendfsync="everysec")  # type: ignore[arg-type]
    redis.start()
    return redis


def _one_node(harness: Harness, storage: str) -> tuple[str, str, list[Appliance]]:
    app = Appliance(harness, storage=storage)  # type: ignore[arg-type]
    app.start()
    return app.directory("shop"), app.tls_cert, [app]


def _two_nodes(harness: Harness, storage: str) -> tuple[str, str, list[Appliance]]:
    """Two nodes on C{storage} behind a round-robin TLS load balancer."""
    directory = os.path.abspath(harness.mktemp())
    os.makedirs(directory)
    lb = LoadBalancer(harness, directory)  # type: ignore[arg-type]
    nodes: list[Appliance] = [
        Node(harness, name=f"node-{n}", public_url=lb.url, storage=storage)  # type: ignore[arg-type]
        for n in (1, 2)
    ]
    lb.start([node.port for node in nodes])
    for node in nodes:
        node.start()
    return nodes[0].directory("shop"), lb.tls_ca, nodes


def _pids(nodes: list[Appliance]) -> list[int]:
    return [node.process.pid for node in nodes if node.process is not None]


def table(rates: dict[str, float], processes: int, seconds: float) -> list[str]:
    """The Markdown table of the sides' rates and ratios."""
    sqlite, redis = rates[SIDES[0]], rates[SIDES[1]]
    lines = [
        f"| {processes} client processes, {seconds:g} s | " + " | ".join(SIDES) + " |",
        "|---|" + "---:|" * len(SIDES),
        "| issuance flows/s | " + " | ".join(f"{rates[s]:.1f}" for s in SIDES) + " |",
        "| ratio to 1 node, SQLite | " + " | ".join(f"{rates[s] / sqlite:.2f}x" for s in SIDES) + " |",
        "| ratio to 1 node, Redis | " + " | ".join(f"{rates[s] / redis:.2f}x" for s in SIDES) + " |",
    ]
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    harness = Harness()
    try:
        redis = _redis(harness)
        started = {
            SIDES[0]: _one_node(harness, "sqlite:state.db"),
            SIDES[1]: _one_node(harness, redis.url(db=0)),
            SIDES[2]: _two_nodes(harness, redis.url(db=1)),
        }
        servers = [
            Server(label, directory, verify, functools.partial(_pids, nodes))
            for label, (directory, verify, nodes) in started.items()
        ]
        rates = {label: side.rate for label, side in measure(servers, args).items()}
        for _, _, nodes in started.values():
            for node in nodes:
                node.stop()
    finally:
        harness.close()
    print()
    print("\n".join(table(rates, args.processes, args.seconds)))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

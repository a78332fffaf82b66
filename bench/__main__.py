"""
python -m bench [NAME]: run the benchmarks (all, or the one named).
"""

from __future__ import annotations

import sys

from . import cluster, dns, fleet, issuance, latency, redis_store

BENCHMARKS = {
    "cluster": cluster.main,
    "dns": dns.main,
    "fleet": fleet.main,
    "issuance": issuance.main,
    "latency": latency.main,
    "redis_store": redis_store.main,
}


def main(argv: list[str]) -> int:
    names = argv or sorted(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"bench: unknown benchmark {', '.join(unknown)} (known: {', '.join(sorted(BENCHMARKS))})", file=sys.stderr
        )
        return 2
    for name in names:
        BENCHMARKS[name]([])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

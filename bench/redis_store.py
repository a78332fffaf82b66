"""
The Redis store as its keyspace grows: what a listing (C{scan}) of a small
prefix costs when Redis also holds a fleet's worth of other entries, what a
write costs, and Redis' memory for each entry.

    python -m bench.redis_store [--keys N,N,...] [--calls N]

A listing of a small prefix is what the hot paths ask for: the dcv DNS
server for a name its in-memory view does not hold (every NXDOMAIN), the
view's refresh every second, a token's finalize slots at every finalize,
the CA budgets at every upstream order.  For each keyspace size, a fresh
redis-server is filled with that many entries under other prefixes (a
tenth with a TTL, as nonces and leases have), then the bench prints the
median time of a scan of a prefix holding three entries, of a C{set} with
a TTL, and Redis' C{used_memory} divided by the entries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from twisted.internet import defer, task

from acme_appliance.storage import Put, RedisStore, redis_store
from tests.integration.world import RedisServer

from ._options import counts, positive
from .fleet import Harness

FILL_BATCH = 500


async def _timed(calls: int, make: Any) -> float:
    """The median seconds of C{calls} awaits of C{make(i)}."""
    times = []
    for i in range(calls):
        start = time.perf_counter()
        await make(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _fill(store: RedisStore, count: int) -> None:
    for start in range(0, count, FILL_BATCH):
        await store.write_in_order(
            [
                Put(f"other/{i:09}", b"x" * 40, ttl=3600 if i % 10 == 0 else None)
                for i in range(start, min(start + FILL_BATCH, count))
            ]
        )


async def _used_memory(store: RedisStore) -> int:
    info = await store._call("info", lambda r: r.execute_command("INFO", "memory"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("INFO memory gave no used_memory")


async def measure(reactor: Any, harness: Harness, keys: int, calls: int) -> tuple[float, float, float]:
    """Scan and set medians (ms) and Redis bytes an entry, for C{keys} entries."""
    redis = RedisServer(harness, os.path.join(harness.mktemp(), "redis"), appendfsync="everysec")  # type: ignore[arg-type]
    redis.start()
    try:
        store = redis_store(redis.url(), reactor=reactor, clock=reactor)
        try:
            empty = await _used_memory(store)
            await _fill(store, keys)
            for n in range(3):
                await store.set(f"dcv/txt/host{n}.example/{n}", b"value", ttl=600)
            per_entry = (await _used_memory(store) - empty) / max(keys, 1)
            # The first scan may build what later ones use.
            await store.scan("dcv/txt/")
            scan = await _timed(calls, lambda i: store.scan("dcv/txt/"))
            write = await _timed(calls, lambda i: store.set(f"nonce/{i}", b"", ttl=3600))
            return scan * 1000, write * 1000, per_entry
        finally:
            await store.close()
    finally:
        redis.stop()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_store", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keys",
        type=counts("keyspace sizes", "1000,100000", 0, 10_000_000),
        default=[1000, 100000],
        help="keyspace sizes, comma-separated (1000,100000)",
    )
    parser.add_argument("--calls", type=positive(int), default=20, help="timed calls of each kind (20)")
    args = parser.parse_args(argv)
    sizes = args.keys
    harness = Harness()

    async def run(reactor: Any) -> None:
        rows = [(n, *await measure(reactor, harness, n, args.calls)) for n in sizes]
        head = "scan of a 3-entry prefix | set with a TTL | Redis bytes an entry"
        print(f"| Redis store, {args.calls} calls each | {head} |")
        print("|---|---:|---:|---:|")
        for n, scan, write, per_entry in rows:
            print(f"| {n:,} other entries | {scan:.2f} ms | {write:.2f} ms | {per_entry:.0f} |")

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    finally:
        harness.close()


if __name__ == "__main__":
    main(sys.argv[1:])

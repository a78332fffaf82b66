"""
A fleet asking for one name at once: N ACME clients (each its own account
and key) straight to Pebble, each validating for itself through a DNS
provider stand-in (pebble-challtestsrv), versus the same N through the
appliance, which validates once and re-issues.

    python -m bench.fleet [N ...]        (default: 1 8 32 64)

Prints successes, upstream validations, upstream orders and wall time.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import josepy
import requests
from acme import challenges, client, messages
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.test_acme_library import new_csr
from tests.integration.test_fleet import metrics, obtain
from tests.integration.test_pebble import PebbleWorld
from tests.integration.tools import free_port, wait_listening
from tests.integration.world import Pebble, Process

from ._options import positive

NAME = "fleet.shop.test"


class Harness:
    """
    What the integration helpers want of a test case: temporary
    directories, clean-ups, skips.
    """

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="bench-fleet-")
        self._cleanups: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._count = 0

    def mktemp(self) -> str:
        self._count += 1
        return os.path.join(self.root, f"run{self._count}")

    def addCleanup(self, function: Callable[..., Any], *args: Any) -> None:
        self._cleanups.append((function, args))

    def skipTest(self, reason: str) -> None:
        raise SystemExit(f"bench.fleet: {reason}")

    def assertEqual(self, first: Any, second: Any, msg: str | None = None) -> None:
        if first != second:
            raise AssertionError(msg or f"{first!r} != {second!r}")

    def cleanup(self) -> None:
        while self._cleanups:
            function, args = self._cleanups.pop()
            try:
                function(*args)
            except Exception as e:
                print(f"bench.fleet: clean-up failed: {e}")

    def close(self) -> None:
        self.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def _pebble_counts(log: str) -> tuple[int, int]:
    lines = log.splitlines()
    validations = sum(1 for line in lines if "Pulled a task from the Tasks queue" in line)
    orders = sum(1 for line in lines if "Added order" in line)
    return validations, orders


def _parallel(n: int, job: Callable[[int], Any]) -> tuple[int, float]:
    started = time.monotonic()
    successes = 0
    failures: Counter[str] = Counter()
    with ThreadPoolExecutor(n) as pool:
        for future in [pool.submit(job, i) for i in range(n)]:
            try:
                future.result()
                successes += 1
            except Exception as e:
                failures[" ".join(f"{e.__class__.__name__}: {e}".split())[-160:]] += 1
    for message, count in failures.most_common():
        print(f"  {count} client(s) failed: ...{message}")
    return successes, time.monotonic() - started


def new_account(directory_url: str, verify: str) -> tuple[client.ClientV2, josepy.JWKEC]:
    """
    A client of the acme library with a new account (and its key) at the
    ACME server of C{directory_url}, whose TLS certificate C{verify} is.
    """
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=verify, user_agent="bench")  # type: ignore[arg-type]
    acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return acme, key


class DirectPebble:
    """
    Pebble validating through pebble-challtestsrv, the DNS provider stand-in
    that clients going straight to the CA set their TXT records at.
    """

    def __init__(self, harness: Harness) -> None:
        directory = os.path.abspath(harness.mktemp())
        os.makedirs(directory)
        dns_port = free_port()
        self.management_port = free_port()
        srv = Process(
            harness,  # type: ignore[arg-type]
            "challtestsrv",
            [
                shutil.which("pebble-challtestsrv") or "pebble-challtestsrv",
                "-dns01",
                f"127.0.0.1:{dns_port}",
                "-management",
                f"127.0.0.1:{self.management_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ],
            directory,
        )
        wait_listening(self.management_port, srv.popen, srv.log)
        self.pebble = Pebble(harness, directory, dns_server=f"127.0.0.1:{dns_port}", http_port=free_port())  # type: ignore[arg-type]
        self.pebble.start()

    def account(self) -> tuple[client.ClientV2, josepy.JWKEC]:
        """A new account straight at Pebble, and its key."""
        return new_account(self.pebble.directory_url, self.pebble.tls_ca)

    def answer_dns01(self, acme: client.ClientV2, key: josepy.JWKEC, order: messages.OrderResource) -> None:
        """Set each authorization's dns-01 TXT record and answer the challenge."""
        for authz in order.authorizations:
            for challenge in authz.body.challenges:
                if isinstance(challenge.chall, challenges.DNS01):
                    response, validation = challenge.response_and_validation(key)
                    requests.post(
                        f"http://127.0.0.1:{self.management_port}/set-txt",
                        timeout=10,
                        json={"host": f"_acme-challenge.{authz.body.identifier.value}.", "value": validation},
                    ).raise_for_status()
                    acme.answer_challenge(challenge, response)


def direct(harness: Harness, n: int) -> dict[str, Any]:
    """
    N clients straight to Pebble, each answering dns-01 through
    pebble-challtestsrv's management API.
    """
    ca = DirectPebble(harness)

    def one(_: int) -> None:
        acme, key = ca.account()
        pem, _der = new_csr([NAME])
        order = acme.new_order(pem)
        ca.answer_dns01(acme, key, order)
        acme.poll_and_finalize(order, datetime.datetime.now() + datetime.timedelta(seconds=300))

    successes, seconds = _parallel(n, one)
    validations, orders = _pebble_counts(ca.pebble.log())
    harness.cleanup()
    return {"successes": successes, "validations": validations, "orders": orders, "seconds": seconds}


def through_appliance(harness: Harness, n: int) -> dict[str, Any]:
    world = PebbleWorld(harness, order_deadline=300)  # type: ignore[arg-type]
    directory = world.appliance.directory("dns")
    successes, seconds = _parallel(n, lambda _: obtain(world, directory, [NAME], timeout=300))
    validations, _ = _pebble_counts(world.pebble.log())
    counted = metrics(world)
    orders = sum(v for (name, _), v in counted.items() if name == "acme_appliance_upstream_orders_total")
    harness.cleanup()
    return {"successes": successes, "validations": validations, "orders": int(orders), "seconds": seconds}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=positive(int), default=[1, 8, 32, 64])
    args = parser.parse_args(argv)
    harness = Harness()
    rows = []
    try:
        for n in args.sizes:
            for path, run in (("direct to Pebble", direct), ("through the appliance", through_appliance)):
                print(f"N={n}: {path} ...", flush=True)
                rows.append((n, path, run(harness, n)))
    finally:
        harness.close()
    print()
    print("| N | path | successes | upstream validations | upstream orders | wall time |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, path, r in rows:
        print(f"| {n} | {path} | {r['successes']}/{n} | {r['validations']} | {r['orders']} | {r['seconds']:.1f} s |")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

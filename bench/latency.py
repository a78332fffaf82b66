"""
One client, one name: the wall time of one certificate straight from Pebble
(the client validating dns-01 itself through pebble-challtestsrv) versus
through the appliance (dns-cname delegation, unbound, upstream Pebble).

    python -m bench.latency [--runs N] [--poll SECONDS] [--finalize-wait SECONDS]

Each path first runs once unmeasured (the appliance registers its upstream
account then), then N times, each with a new account and a name not ordered
before, the two paths taking turns.  The client (certbot's C{acme} library)
polls every C{--poll} seconds, or after the server's C{Retry-After} when it
sends one.  A run is the whole flow: account, order, (validation), finalize,
polls, certificate download.  Prints the median, min and max of each path
and the ratio appliance/direct.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import josepy
import requests
from acme import client, messages
from cryptography import x509

from tests.integration.test_acme_library import new_csr
from tests.integration.test_pebble import PebbleWorld
from tests.integration.world import DELEGATED, STALE_NAME

from .fleet import DirectPebble, Harness, new_account

#: Names with a dns-cname delegation in the Pebble world: the first warms
#: up, the others are measured (none is ordered twice, so that neither
#: Pebble nor the appliance re-uses an earlier validation).
NAMES = tuple(name for name in DELEGATED if name != STALE_NAME)
TARGET = 1.25

Answer = Callable[[client.ClientV2, josepy.JWKEC, messages.OrderResource], None]


class Path:
    """
    One way to a certificate: an ACME directory, the certificate that
    verifies its TLS, and what a client must do to validate (if anything).
    """

    def __init__(self, label: str, directory_url: str, verify: str, answer: Answer | None = None) -> None:
        self.label = label
        self.directory_url = directory_url
        self.verify = verify
        self.answer = answer
        self.seconds: list[float] = []
        self.polls: list[int] = []

    def run(self, name: str, poll: float) -> tuple[float, int]:
        """One certificate for C{name} with a new account: seconds, order polls."""
        started = time.monotonic()
        acme, key = new_account(self.directory_url, self.verify)
        pem, _ = new_csr([name])
        order = acme.new_order(pem)
        if self.answer is not None:
            self.answer(acme, key, order)
        polls = _finish(acme, order, pem, poll)
        return time.monotonic() - started, polls


def _delay(response: requests.Response, poll: float) -> float:
    """The server's C{Retry-After} (seconds) if it sent one, else C{poll}."""
    value = response.headers.get("Retry-After")
    return max(poll, float(value)) if value is not None and value.isdigit() else poll


def _check(give_up: float) -> None:
    if time.monotonic() > give_up:
        raise TimeoutError("the certificate took longer than 120 s")


def _finish(acme: client.ClientV2, order: messages.OrderResource, pem: bytes, poll: float) -> int:
    """
    Wait for the authorizations, finalize and poll the order until the
    certificate is downloaded; the number of order polls it took.
    """
    give_up = time.monotonic() + 120
    for url in order.body.authorizations:
        while acme._authzr_from_response(acme._post_as_get(url), uri=url).body.status == messages.STATUS_PENDING:
            _check(give_up)
            time.sleep(poll)
    response = acme._post(order.body.finalize, messages.CertificateRequest(csr=x509.load_pem_x509_csr(pem)))
    polls = 0
    while True:
        body = messages.Order.from_json(response.json())
        if body.status == messages.STATUS_VALID and body.certificate is not None:
            acme._post_as_get(body.certificate)
            return polls
        if body.status == messages.STATUS_INVALID:
            raise RuntimeError(f"order {order.uri} is invalid: {body.error}")
        _check(give_up)
        time.sleep(_delay(response, poll))
        response = acme._post_as_get(order.uri)
        polls += 1


def _set_finalize_wait(world: PebbleWorld, seconds: float) -> None:
    """Restart the appliance with C{[acme] finalize_wait = seconds}."""
    appliance = world.appliance
    appliance.stop()
    with open(appliance.config) as f:
        config = f.read()
    with open(appliance.config, "w") as f:
        f.write(config.replace("[acme]\n", f"[acme]\nfinalize_wait = {seconds}\n", 1))
    appliance.start()


def _paths(harness: Harness, finalize_wait: float | None) -> tuple[Path, Path]:
    ca = DirectPebble(harness)
    direct = Path("direct to Pebble", ca.pebble.directory_url, ca.pebble.tls_ca, ca.answer_dns01)
    world = PebbleWorld(harness, order_deadline=120)  # type: ignore[arg-type]
    if finalize_wait is not None:
        _set_finalize_wait(world, finalize_wait)
    appliance = Path("through the appliance", world.appliance.directory("dns"), world.appliance.tls_cert)
    return direct, appliance


def _row(path: Path) -> str:
    s = path.seconds
    return (
        f"| {path.label} | {len(s)} | {statistics.median(s):.2f} s | {min(s):.2f} s | {max(s):.2f} s "
        f"| {statistics.median(path.polls):g} |"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, choices=range(1, len(NAMES)))
    parser.add_argument("--poll", type=float, default=0.02, help="client poll interval in seconds (0.02)")
    parser.add_argument("--finalize-wait", type=float, default=None, help="the appliance's [acme] finalize_wait")
    args = parser.parse_args(argv)
    harness = Harness()
    try:
        direct, appliance = _paths(harness, args.finalize_wait)
        for index, name in enumerate(NAMES[: args.runs + 1]):
            for path in (direct, appliance):
                seconds, polls = path.run(name, args.poll)
                print(f"{path.label}: {name} in {seconds:.2f} s, {polls} poll(s)", flush=True)
                if index:
                    path.seconds.append(seconds)
                    path.polls.append(polls)
    finally:
        harness.close()
    print()
    print("| path | runs | median | min | max | order polls (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(_row(direct))
    print(_row(appliance))
    ratio = statistics.median(appliance.seconds) / statistics.median(direct.seconds)
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"\nappliance/direct: {ratio:.2f}x ({verdict} the target of {TARGET}x)")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

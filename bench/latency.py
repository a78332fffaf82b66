"""
One client, one name: the wall time of one certificate straight from Pebble
(the client validating dns-01 itself through pebble-challtestsrv) versus
through the appliance (dns-cname delegation, unbound, upstream Pebble).

    python -m bench.latency [--runs N] [--poll SECONDS] [--finalize-wait SECONDS]

Each path first runs once unmeasured (the appliance registers its upstream
account then), then N times per client, each with a new account and a name
not ordered before, the two paths taking turns.  A run is the whole flow:
account, order, (validation), finalize, polls, certificate download.  Two
clients, both certbot's C{acme} library: C{library} is its
C{poll_and_finalize} (it sleeps 1 s between authorization polls and before
the first order poll, then honours C{Retry-After}: the poll interval cannot
be set); C{tight} polls every C{--poll} seconds (after the server's
C{Retry-After} when it sends one) and takes a C{valid} answer to finalize
as it is.  Prints the median, min and max of each path and client and the
ratios appliance/direct.
"""

from __future__ import annotations

import argparse
import datetime
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

from ._options import positive
from ._report import against
from .fleet import DirectPebble, Harness, new_account

#: Names with a dns-cname delegation in the Pebble world: the first warms
#: up, the others are measured (none is ordered twice, so that neither
#: Pebble nor the appliance re-uses an earlier validation).
NAMES = tuple(name for name in DELEGATED if name != STALE_NAME)
TARGET = 1.25

Answer = Callable[[client.ClientV2, josepy.JWKEC, messages.OrderResource], None]
CLIENTS = ("library", "tight")


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
        self.seconds: dict[str, list[float]] = {c: [] for c in CLIENTS}

    def run(self, name: str, kind: str, poll: float) -> float:
        """One certificate for C{name} with a new account and client C{kind}: seconds."""
        started = time.monotonic()
        acme, key = new_account(self.directory_url, self.verify)
        pem, _ = new_csr([name])
        order = acme.new_order(pem)
        if self.answer is not None:
            self.answer(acme, key, order)
        if kind == "library":
            acme.poll_and_finalize(order, datetime.datetime.now() + datetime.timedelta(seconds=120))
        else:
            _finish(acme, order, pem, poll)
        return time.monotonic() - started


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


def _row(path: Path, kind: str) -> str:
    s = path.seconds[kind]
    return f"| {kind} | {path.label} | {len(s)} | {statistics.median(s):.2f} s | {min(s):.2f} s | {max(s):.2f} s |"


def _ratio(direct: Path, appliance: Path, kind: str) -> str:
    ratio, verdict = against(
        statistics.median(appliance.seconds[kind]) / statistics.median(direct.seconds[kind]), TARGET, at_most=True
    )
    return f"{kind} client: appliance/direct {ratio} ({verdict} the target of {TARGET}x)"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, choices=range(1, len(NAMES) // len(CLIENTS) + 1))
    parser.add_argument("--poll", type=positive(float), default=0.02, help="client poll interval in seconds (0.02)")
    parser.add_argument("--finalize-wait", type=float, default=None, help="the appliance's [acme] finalize_wait")
    args = parser.parse_args(argv)
    harness = Harness()
    try:
        direct, appliance = _paths(harness, args.finalize_wait)
        runs = [(NAMES[0], "tight")] + [
            (NAMES[1 + i * len(CLIENTS) + j], kind) for i in range(args.runs) for j, kind in enumerate(CLIENTS)
        ]
        for index, (name, kind) in enumerate(runs):
            for path in (direct, appliance):
                seconds = path.run(name, kind, args.poll)
                print(f"{kind} client, {path.label}: {name} in {seconds:.2f} s", flush=True)
                if index:
                    path.seconds[kind].append(seconds)
    finally:
        harness.close()
    print()
    print("| client | path | runs | median | min | max |")
    print("|---|---|---:|---:|---:|---:|")
    for kind in CLIENTS:
        print(_row(direct, kind))
        print(_row(appliance, kind))
    print()
    for kind in CLIENTS:
        print(_ratio(direct, appliance, kind))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

"""
One process issuing for one order key on a shared SQLite store, for
L{tests.integration.test_order_lease}.

Usage: python lease_worker.py DATABASE RECORD GO ORDER_ID

The fake CA appends a line to RECORD for every validation and re-issue; a
validation lasts until the file GO exists.  Standard output says
C{validating} when this process validates, C{waiting} when another process
holds the order key's lease, and at the end the mode and CA of the
certificate.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import deferLater, react
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from acme_appliance.ca import IssuedCertificate
from acme_appliance.issuance import OrderLocks, UpstreamOrder, UpstreamReuse
from acme_appliance.storage import SQLiteStore

KEY = "t1/lease.test"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@provider(ILogObserver)
def observe(event: dict[str, Any]) -> None:
    if "waiting_for" in event:
        say("waiting")
    elif event.get("log_failure") is not None or event["log_level"].name in ("warn", "error", "critical"):
        sys.stderr.write(formatEvent(event) + "\n")
        if event.get("log_failure") is not None:
            sys.stderr.write(event["log_failure"].getTraceback())


class FakeCA:
    def __init__(self, clock: IReactorTime, record: str, go: str, order_id: str) -> None:
        self._clock = clock
        self._record = record
        self._go = go
        self._order_id = order_id

    def _write(self, line: str) -> None:
        with open(self._record, "a") as f:
            f.write(line + "\n")

    async def validate(self) -> IssuedCertificate:
        self._write(f"validate {self._order_id}")
        say("validating")
        while not os.path.exists(self._go):
            await deferLater(self._clock, 0.05)
        return IssuedCertificate(chain_pem=b"chain", ca_name="fake")

    async def reissue(self, fresh: UpstreamOrder) -> IssuedCertificate:
        self._write(f"reissue {self._order_id} {fresh.order_id}")
        return IssuedCertificate(chain_pem=b"chain", ca_name="fake")


async def main(reactor: Any, database: str, record: str, go: str, order_id: str) -> None:
    store = await SQLiteStore.open(database, reactor=IReactorFromThreads(reactor), clock=IReactorTime(reactor))
    try:
        locks = OrderLocks(store, reactor, lease=3.0, poll=0.05)
        reuse = UpstreamReuse(store, reactor, locks, window=60.0)
        ca = FakeCA(reactor, record, go, order_id)
        issued, mode = await reuse.obtain(KEY, order_id, reissue=ca.reissue, validate=ca.validate)
        say(f"{mode.value} {issued.ca_name}")
    finally:
        await store.close()


if __name__ == "__main__":
    globalLogPublisher.addObserver(observe)
    react(lambda reactor, *argv: Deferred.fromCoroutine(main(reactor, *argv)), sys.argv[1:])

"""
The order lock across processes: two real processes on one SQLite file
issue for the same order key with one upstream validation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import acme_appliance

reactor = IReactorProcess(_reactor)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lease_worker.py")
# The workers import the very package this test imported.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(acme_appliance.__file__)))


class Worker(ProcessProtocol):
    """
    A running L{WORKER}: its output lines, and C{ended} with its exit code;
    C{on_change} is called for new lines and at the end.
    """

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.lines: list[str] = []
        self.errors = b""
        self.ended: Deferred[int | None] = Deferred()
        self._buffer = b""
        self._on_change = on_change

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self.lines.extend(line.decode() for line in lines)
        if lines:
            self._on_change()

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))
        self._on_change()


class OrderLeaseTests(TestCase):
    timeout = 60

    def spawn(self, order_id: str, on_change: Callable[[], None]) -> Worker:
        worker = Worker(on_change)
        transport = reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, WORKER, self.database, self.record, self.go, order_id],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
            },
        )

        def stop() -> Deferred[int | None]:
            if not worker.ended.called:
                transport.signalProcess("KILL")
            return worker.ended

        self.addCleanup(stop)
        return worker

    async def test_two_processes_one_validation(self) -> None:
        """
        While one process validates, the other waits for the order key's
        lease; then it re-issues against that validation.
        """
        base = self.mktemp()
        os.makedirs(base)
        self.database, self.record, self.go = (os.path.join(base, name) for name in ("state.db", "record", "go"))
        overlapping: Deferred[None] = Deferred()

        def check() -> None:
            if overlapping.called:
                return
            first = sorted(line for worker in workers for line in worker.lines[:1])
            if first == ["validating", "waiting"]:
                overlapping.callback(None)
            elif len(first) == 2 or any(worker.ended.called for worker in workers):
                overlapping.errback(AssertionError([(w.lines, w.errors) for w in workers]))

        workers: list[Worker] = []
        workers.extend(self.spawn(order_id, check) for order_id in ("a", "b"))
        await overlapping
        open(self.go, "w").close()
        codes = await gatherResults([w.ended for w in workers])
        self.assertEqual(codes, [0, 0], [w.errors for w in workers])
        with open(self.record) as f:
            record = f.read().splitlines()
        outcomes = sorted(w.lines[-1] for w in workers)
        self.assertEqual(outcomes, ["new fake", "reissue fake"])
        [validated] = [line.split()[1] for line in record if line.startswith("validate ")]
        other = "b" if validated == "a" else "a"
        self.assertEqual(record, [f"validate {validated}", f"reissue {other} {validated}"])

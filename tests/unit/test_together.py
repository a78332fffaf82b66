"""
Store calls started together: all start at once, in order, and every one
ends before the first failure is raised.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import both, together


class TogetherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, Deferred[None]] = {}

    async def call(self, name: str, fail: bool = False) -> str:
        self.started.append(name)
        gate = self.gates[name] = Deferred()
        await gate
        if fail:
            raise ValueError(name)
        return name

    def test_all_start_at_once_in_order(self) -> None:
        d = Deferred.fromCoroutine(together(self.call("a"), self.call("b"), self.call("c")))
        self.assertEqual(self.started, ["a", "b", "c"])
        for name in ("c", "a"):
            self.gates[name].callback(None)
        self.assertNoResult(d)
        self.gates["b"].callback(None)
        self.assertEqual(self.successResultOf(d), ["a", "b", "c"])

    def test_failure_raised_once_all_ended(self) -> None:
        d = Deferred.fromCoroutine(together(self.call("a"), self.call("b", fail=True), self.call("c", fail=True)))
        self.gates["c"].callback(None)
        self.gates["b"].callback(None)
        # "a" is still running: nothing is raised yet.
        self.assertNoResult(d)
        self.gates["a"].callback(None)
        self.assertEqual(str(self.failureResultOf(d, ValueError).value), "b")

    def test_both(self) -> None:
        d = Deferred.fromCoroutine(both(self.call("a"), self.call("b")))
        self.gates["a"].callback(None)
        self.gates["b"].callback(None)
        self.assertEqual(self.successResultOf(d), ("a", "b"))

    def test_nothing(self) -> None:
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(together())), [])

"""
A lock per key, dropped when nobody holds or waits for it.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import KeyedLocks


class KeyedLocksTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.locks = KeyedLocks()
        self.gates: dict[str, Deferred[None]] = {}

    def _hold(self, key: str, name: str) -> Deferred[None]:
        async def body() -> None:
            async with self.locks.hold(key):
                self.gates[name] = Deferred()
                await self.gates[name]

        return Deferred.fromCoroutine(body())

    def test_one_holder_a_key(self) -> None:
        """
        A second holder of a key waits for the first; other keys do not.
        """
        first = self._hold("a", "first")
        second = self._hold("a", "second")
        other = self._hold("b", "other")
        self.assertEqual(set(self.gates), {"first", "other"})
        self.assertTrue(self.locks.locked("a"))
        self.gates["first"].callback(None)
        self.successResultOf(first)
        self.assertIn("second", self.gates)
        self.gates["second"].callback(None)
        self.gates["other"].callback(None)
        self.successResultOf(second)
        self.successResultOf(other)
        self.assertFalse(self.locks.locked("a"))
        self.assertEqual(len(self.locks), 0)

    def test_cancelled_waiter_leaves_nothing(self) -> None:
        """
        A holder cancelled while it waits leaves nothing behind once the
        key is free, and never holds the lock.
        """
        first = self._hold("a", "first")
        waiter = self._hold("a", "waiter")
        waiter.cancel()
        self.failureResultOf(waiter, CancelledError)
        self.gates["first"].callback(None)
        self.successResultOf(first)
        self.assertNotIn("waiter", self.gates)
        self.assertEqual(len(self.locks), 0)

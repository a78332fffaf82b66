"""
Order locks and CA health with a Clock: serialisation, no leaks on error or
cancellation, down/up transitions and probing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.issuance._health import CAHealth
from acme_appliance.issuance._locks import OrderLocks, order_key
from acme_appliance.storage import MemoryStore


class OrderKeyTests(SynchronousTestCase):
    def test_set_of_names(self) -> None:
        self.assertEqual(order_key("t1", ["b.com", "a.com"]), order_key("t1", ["a.com", "b.com", "a.com"]))
        self.assertNotEqual(order_key("t1", ["a.com"]), order_key("t2", ["a.com"]))
        self.assertNotEqual(order_key("t1", ["a.com"]), order_key("t1", ["a.com", "b.com"]))


class OrderLockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.locks = OrderLocks(MemoryStore(self.clock), self.clock)
        self.log: list[str] = []

    async def job(self, key: str, name: str, seconds: float, fail: bool = False) -> None:
        async with self.locks.hold(key):
            self.log.append(f"{name} start")
            await deferLater(self.clock, seconds)
            if fail:
                raise ValueError(name)
            self.log.append(f"{name} end")

    def start(self, *args: Any, **kw: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self.job(*args, **kw))

    def test_serialises_one_key(self) -> None:
        a = self.start("k", "a", 5)
        b = self.start("k", "b", 5)
        self.assertEqual(self.log, ["a start"])
        self.assertTrue(self.locks.locked("k"))
        self.clock.advance(5)
        self.assertEqual(self.log, ["a start", "a end", "b start"])
        self.clock.advance(5)
        self.successResultOf(a)
        self.successResultOf(b)
        self.assertEqual(len(self.locks), 0)

    def test_other_keys_do_not_wait(self) -> None:
        self.start("k1", "a", 5)
        self.start("k2", "b", 5)
        self.assertEqual(self.log, ["a start", "b start"])

    def test_error_releases(self) -> None:
        a = self.start("k", "a", 1, fail=True)
        b = self.start("k", "b", 1)
        self.clock.advance(1)
        self.failureResultOf(a, ValueError)
        self.assertEqual(self.log[-1], "b start")
        self.clock.advance(1)
        self.successResultOf(b)
        self.assertEqual(len(self.locks), 0)

    def test_cancel_holder_and_waiter(self) -> None:
        a = self.start("k", "a", 10)
        b = self.start("k", "b", 10)
        c = self.start("k", "c", 10)
        b.cancel()  # waiting
        self.failureResultOf(b, CancelledError)
        a.cancel()  # holding
        self.failureResultOf(a, CancelledError)
        self.assertEqual(self.log, ["a start", "c start"])
        self.clock.advance(10)
        self.successResultOf(c)
        self.assertEqual(len(self.locks), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CAHealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.changes: list[tuple[str, bool]] = []
        self.health = CAHealth(self.clock, threshold=3, probe_interval=30,
                               on_change=lambda ca, up: self.changes.append((ca, up)))

    def test_down_after_threshold(self) -> None:
        for _ in range(2):
            self.health.failed("le")
        self.assertTrue(self.health.is_up("le"))
        self.health.failed("le")
        self.assertFalse(self.health.is_up("le"))
        self.assertEqual(self.changes, [("le", False)])
        self.health.failed("le")
        self.assertEqual(self.changes, [("le", False)])

    def test_skip_then_probe(self) -> None:
        for _ in range(3):
            self.health.failed("le")
        self.assertFalse(self.health.should_try("le"))
        self.clock.advance(29)
        self.assertFalse(self.health.should_try("le"))
        self.clock.advance(1)
        self.assertTrue(self.health.should_try("le"))  # the probe
        self.assertFalse(self.health.should_try("le"))  # only one per interval
        self.clock.advance(30)
        self.assertTrue(self.health.should_try("le"))

    def test_success_brings_it_up(self) -> None:
        for _ in range(3):
            self.health.failed("le")
        self.health.succeeded("le")
        self.assertTrue(self.health.is_up("le"))
        self.assertEqual(self.changes, [("le", False), ("le", True)])
        self.health.succeeded("le")
        self.assertEqual(len(self.changes), 2)
        self.assertEqual(self.health.snapshot()["le"], {"up": True, "failures": 0, "down_since": None})

    def test_success_resets_count(self) -> None:
        self.health.failed("le")
        self.health.failed("le")
        self.health.succeeded("le")
        self.health.failed("le")
        self.assertTrue(self.health.is_up("le"))

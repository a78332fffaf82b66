"""
Order locks and CA health with a Clock: serialisation, no leaks on error or
cancellation, down/up transitions and probing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.issuance._health import CAHealth
from acme_appliance.issuance._locks import JobLeases, OrderLocks, order_key
from acme_appliance.storage import MemoryStore, keys


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
        self.health = CAHealth(
            self.clock, threshold=3, probe_interval=30, on_change=lambda ca, up: self.changes.append((ca, up))
        )

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


class _LateStore(MemoryStore):
    """
    A store whose C{add} waits for the test; a cancelled one still writes,
    as a database thread would.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.gate: Deferred[None] = Deferred()

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        try:
            await self.gate
        except CancelledError:
            await super().add(key, value, ttl=ttl)
            raise
        return await super().add(key, value, ttl=ttl)


class JobLeaseTests(SynchronousTestCase):
    def test_release_write(self) -> None:
        """
        A job's lease given back by a write of its own (in one ordered
        write after the queue entry): renewals stop, the write deletes the
        lease, and C{release} afterwards writes nothing more.
        """
        clock = Clock()
        store = MemoryStore(clock)
        leases = JobLeases(store, clock, lease=30)
        lease = self.successResultOf(Deferred.fromCoroutine(leases.take("o1")))
        assert lease is not None
        write = lease.release_write()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(store.write_in_order([write]))), [True])
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(store.get(keys.job_lease("o1")))))
        # release() writes nothing now: not even a lease that looks like
        # this one's goes.
        self.successResultOf(Deferred.fromCoroutine(store.set(keys.job_lease("o1"), lease.token)))
        self.successResultOf(Deferred.fromCoroutine(lease.release()))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(store.get(keys.job_lease("o1")))), lease.token)


class OrderLeaseTests(SynchronousTestCase):
    """
    The lock as a lease in a store shared by two processes (two
    L{OrderLocks} on one store).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self.mine = OrderLocks(self.store, self.clock, lease=30, poll=0.5)
        self.log: list[str] = []

    def lease(self) -> bytes | None:
        return self.successResultOf(Deferred.fromCoroutine(self.store.get(keys.order_lock("k"))))

    async def job(self, locks: OrderLocks, name: str, work: Deferred[None]) -> None:
        async with locks.hold("k"):
            self.log.append(f"{name} start")
            await work
            self.log.append(f"{name} end")

    def start(self, locks: OrderLocks, name: str, work: Deferred[None]) -> Deferred[None]:
        return Deferred.fromCoroutine(self.job(locks, name, work))

    def advance(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def test_lease_held_and_released(self) -> None:
        work: Deferred[None] = Deferred()
        d = self.start(self.mine, "a", work)
        self.assertIsNotNone(self.lease())
        work.callback(None)
        self.successResultOf(d)
        self.assertIsNone(self.lease())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_renewed_while_held(self) -> None:
        """
        A holder that works for much longer than the lease keeps it: the
        other process waits until it is done.
        """
        other = OrderLocks(self.store, self.clock, lease=30, poll=0.5)
        work_a: Deferred[None] = Deferred()
        a = self.start(self.mine, "a", work_a)
        b = self.start(other, "b", succeed(None))
        token = self.lease()
        self.advance(100)
        self.assertEqual(self.log, ["a start"])
        self.assertEqual(self.lease(), token)
        work_a.callback(None)
        self.successResultOf(a)
        self.advance(0.5)
        self.successResultOf(b)
        self.assertEqual(self.log, ["a start", "a end", "b start", "b end"])
        self.assertIsNone(self.lease())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dead_holder_expires(self) -> None:
        """
        A process that stops renewing (its clock never turns again) loses
        the lease after its length; the other process takes over.
        """
        dead = OrderLocks(self.store, Clock(), lease=30, poll=0.5)
        # Kept referenced: a collected coroutine would run its finally blocks.
        self.dead = self.start(dead, "dead", Deferred())
        b = self.start(self.mine, "b", succeed(None))
        self.advance(29.5)
        self.assertEqual(self.log, ["dead start"])
        self.advance(0.5)
        self.successResultOf(b)
        self.assertEqual(self.log, ["dead start", "b start", "b end"])

    def test_cancel_while_waiting_for_the_lease(self) -> None:
        other = OrderLocks(self.store, self.clock, lease=30, poll=0.5)
        work_a: Deferred[None] = Deferred()
        a = self.start(other, "a", work_a)
        token = self.lease()
        b = self.start(self.mine, "b", succeed(None))
        self.advance(2)
        b.cancel()
        self.failureResultOf(b, CancelledError)
        self.assertEqual(len(self.mine), 0)
        self.assertEqual(self.lease(), token)
        work_a.callback(None)
        self.successResultOf(a)
        self.assertIsNone(self.lease())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled_add_is_taken_back(self) -> None:
        """
        A cancelled job whose lease write lands anyway (it was already on
        its way to the database) deletes it again.
        """
        store = _LateStore(self.clock)
        locks = OrderLocks(store, self.clock, lease=30, poll=0.5)
        d = self.start(locks, "a", succeed(None))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(store.get(keys.order_lock("k")))))
        self.assertEqual(len(locks), 0)
        self.assertEqual(self.log, [])

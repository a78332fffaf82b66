"""
Two appliances on one store (a cluster in memory, one Clock): a job runs on
one node at a time, a dead node's job is resumed by another once its lease
has run out, and CA health is shared.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.issuance import LEASE, SHARED_DOWN_TTL, CAHealth
from acme_appliance.notify import EventName
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.storage import StorageError, keys
from acme_appliance.testing import StubAcmeClient, World, make_csr

T = TypeVar("T")


class ClusterJobTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.a = World(self, issue_delay=100.0)
        self.b = World(self, store=self.a.store, clock=self.a.clock, ca_dir=self.a.ca_dir)
        self.notes = MemoryNotifier()
        for world in (self.a, self.b):
            world.issuance.events.subscribe(self.notes)

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def start(self, world: World) -> None:
        world.issuance.startService()
        self.addCleanup(world.issuance.stopService)

    def finalize(self, client: StubAcmeClient) -> str:
        self.assertEqual(client.register().code, 201)
        response = client.new_order(["example.com"])
        finalized = client.finalize(response.json(), make_csr(["example.com"])[0])
        self.assertEqual(finalized.json()["status"], "processing", finalized.body)
        return response.location.rsplit("/", 1)[-1]

    def status(self, order_id: str) -> str:
        order = self.wait(self.a.repo.order(order_id))
        assert order is not None
        return order.status.value

    def advance(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            self.a.clock.advance(1.0)

    def issued(self) -> list[str | None]:
        return [e.node for e in self.notes.events if e.name is EventName.CERTIFICATE_ISSUED]

    def test_job_runs_on_one_node(self) -> None:
        """
        While node A runs a job (its CA takes 100 s), node B's sweeps do not
        run it too: one certificate.
        """
        self.start(self.b)
        order_id = self.finalize(self.a.client())
        self.advance(60)
        self.assertEqual(self.status(order_id), "processing")
        self.assertEqual(self.b.issuance.running_jobs(), frozenset())
        self.assertEqual(list(self.wait(self.a.issuance.jobs.holders()).values()), [""])
        self.advance(60)
        self.assertEqual(self.status(order_id), "valid")
        self.assertEqual(len(self.issued()), 1)
        self.assertEqual(self.wait(self.a.issuance.jobs.holders()), {})

    def test_dead_node_job_resumed(self) -> None:
        """
        Node A queued the order and died holding its job lease: node B
        resumes it once the lease has run out, and not before.
        """
        self.a.issuance.submit = lambda order_id, domains=None: None  # type: ignore[method-assign]
        order_id = self.finalize(self.a.client())
        self.wait(self.a.store.add(keys.job_lease(order_id), b"node-a 1234", ttl=LEASE))
        self.start(self.b)
        self.advance(LEASE - 1)
        self.assertEqual(self.status(order_id), "processing")
        self.assertEqual(self.wait(self.b.issuance.jobs.holders()), {order_id: "node-a"})
        self.advance(LEASE / 3 + 2)
        self.assertEqual(self.status(order_id), "valid")
        self.assertEqual(len(self.issued()), 1)


class SharedHealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        world = World(self)
        self.clock = world.clock
        self.store = world.store
        self.changes: list[tuple[str, str, bool]] = []
        self.a = CAHealth(self.clock, store=world.store, on_change=lambda ca, up: self.changes.append(("a", ca, up)))
        self.b = CAHealth(self.clock, store=world.store, on_change=lambda ca, up: self.changes.append(("b", ca, up)))

    def refresh(self, health: CAHealth) -> None:
        self.successResultOf(Deferred.fromCoroutine(health.refresh()))

    def test_down_for_all_announced_once(self) -> None:
        for _ in range(3):
            self.a.failed("up1")
        self.assertEqual(self.changes, [("a", "up1", False)])
        self.assertTrue(self.b.is_up("up1"))
        self.refresh(self.b)
        self.assertFalse(self.b.is_up("up1"))
        for _ in range(3):
            self.b.failed("up1")
        self.assertEqual(self.changes, [("a", "up1", False)])
        self.b.succeeded("up1")
        self.a.succeeded("up1")
        self.assertEqual(self.changes, [("a", "up1", False), ("b", "up1", True)])
        self.refresh(self.a)
        self.assertTrue(self.a.is_up("up1"))

    def test_up_found_by_other_node(self) -> None:
        for _ in range(3):
            self.a.failed("up1")
        self.refresh(self.b)
        self.b.succeeded("up1")
        self.refresh(self.a)
        self.assertTrue(self.a.is_up("up1"))
        self.assertTrue(self.a.should_try("up1"))

    def test_down_not_yet_shared_survives_a_refresh(self) -> None:
        """
        This node found the CA down but the store was away: a sweep does
        not take that back, and shares it once the store is there.
        """
        away = [True]
        real_add = self.store.add

        async def flaky_add(key: str, value: bytes, *, ttl: float | None = None) -> bool:
            if away[0]:
                raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")
            return await real_add(key, value, ttl=ttl)

        self.patch(self.store, "add", flaky_add)
        for _ in range(3):
            self.a.failed("up1")
        self.refresh(self.a)
        self.assertFalse(self.a.is_up("up1"))
        away[0] = False
        self.refresh(self.a)
        self.refresh(self.b)
        self.assertFalse(self.b.is_up("up1"))
        self.assertEqual(self.changes, [("a", "up1", False)])

    def test_shared_down_expires(self) -> None:
        for _ in range(3):
            self.a.failed("gone")
        self.clock.advance(SHARED_DOWN_TTL)
        self.refresh(self.b)
        self.assertTrue(self.b.is_up("gone"))

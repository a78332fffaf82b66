"""
Issuance jobs end to end under a Clock: an order finalized through the ACME
server is issued at the policy's backup CA when the primary is down, and
becomes invalid at the order deadline when no CA can issue.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, IssuedCertificate, IssueRequest
from acme_appliance.issuance._locks import LEASE
from acme_appliance.notify import Event, EventJournal, EventName
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.orders import Order
from acme_appliance.storage import StorageError, keys
from acme_appliance.testing import ScriptedCA, StubAcmeClient, World, make_csr, self_signed_pem

DOWN = CAError("primary is down", transient=True)
DEADLINE = 600.0  # IssuanceService's default, as World builds it


class JobFixture(SynchronousTestCase):
    """A world with a scripted primary and backup CA, and its helpers."""

    primary: ScriptedCA
    backup: ScriptedCA
    notes: MemoryNotifier

    def world(self, primary: list[CAError | str], backup: list[CAError | str]) -> tuple[World, StubAcmeClient]:
        clock = Clock()
        clock.advance(1_800_000_000)
        chain = self_signed_pem("example.com")
        self.primary = ScriptedCA("primary", primary, clock, chain)
        self.backup = ScriptedCA("backup", backup, clock, chain)
        world = World(self, clock=clock, cas={"primary": self.primary, "backup": self.backup})
        world.policies["shop"] = evolve(world.policies["shop"], primary_ca="primary", backup_ca="backup")
        self.notes = MemoryNotifier()
        world.issuance.events.subscribe(self.notes)
        client = world.client()
        self.assertEqual(client.register().code, 201)
        return world, client

    def finalize(self, client: StubAcmeClient) -> str:
        """Order and finalize example.com; the order's URL."""
        response = client.new_order(["example.com"])
        self.assertEqual(response.code, 201, response.body)
        finalized = client.finalize(response.json(), make_csr(["example.com"])[0])
        self.assertEqual(finalized.json()["status"], "processing", finalized.body)
        return response.location

    def order_at(self, world: World, client: StubAcmeClient, url: str, seconds: float) -> dict[str, Any]:
        """The order, after the clock moved on to C{seconds} after now, a second at a time."""
        for _ in range(int(seconds)):
            world.clock.advance(1.0)
        order: dict[str, Any] = client.post(url, None).json()
        return order


class JobTests(JobFixture):
    def test_primary_down_backup_issues(self) -> None:
        world, client = self.world([DOWN], ["issue"])
        url = self.finalize(client)
        order = self.order_at(world, client, url, 30)
        self.assertEqual(order["status"], "valid", order)
        self.assertGreaterEqual(len(self.primary.calls), 1)
        self.assertEqual(len(self.backup.calls), 1)
        record = self.successResultOf(Deferred.fromCoroutine(world.repo.order(url.rsplit("/", 1)[-1])))
        assert record is not None
        self.assertEqual(record.ca_name, "backup")
        self.assertIn(EventName.CA_FAILOVER, [e.name for e in self.notes.events])

    def test_order_deadline(self) -> None:
        """
        No CA can issue: the order stays processing while the deadline is
        ahead, and is invalid (with C{order.failed}) once it has passed.
        """
        world, client = self.world([DOWN], [DOWN])
        url = self.finalize(client)
        finalized_at = world.clock.seconds()
        early = self.order_at(world, client, url, DEADLINE / 2)
        self.assertEqual(early["status"], "processing")
        order = self.order_at(world, client, url, DEADLINE / 2 + 1)
        self.assertEqual(order["status"], "invalid", order)
        failed = [e for e in self.notes.events if e.name is EventName.ORDER_FAILED]
        self.assertEqual(len(failed), 1)
        self.assertLessEqual(failed[0].time, finalized_at + DEADLINE)
        self.assertIn("deadline", str(getattr(failed[0], "error", "")))
        calls = self.primary.calls + self.backup.calls
        self.assertLess(max(calls), finalized_at + DEADLINE)


class StoreAwayTests(JobFixture):
    """
    The store goes away (Redis restarting) while a job runs: the job waits
    instead of failing the order, and a certificate the CA issued is not
    lost.
    """

    def test_certificate_recorded_once_the_store_is_back(self) -> None:
        world, client = self.world(["issue"], [])
        away = [False]
        real_set, real_issue = world.store.set, self.primary.issue

        async def flaky_set(*args: Any, **kwargs: Any) -> None:
            if away[0]:
                raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection was closed cleanly.")
            await real_set(*args, **kwargs)

        async def issue_then_away(request: IssueRequest) -> IssuedCertificate:
            issued = await real_issue(request)
            away[0] = True
            return issued

        self.patch(world.store, "set", flaky_set)
        self.patch(self.primary, "issue", issue_then_away)
        with capturedLogs() as logs:
            url = self.finalize(client)
            world.clock.advance(3.0)
            away[0] = False
            order = self.order_at(world, client, url, 10)
        self.assertEqual(order["status"], "valid", order)
        self.assertEqual(len(self.primary.calls), 1)
        issued = [e for e in self.notes.events if e.name is EventName.CERTIFICATE_ISSUED]
        self.assertEqual(len(issued), 1)
        self.assertFalse(any(e.get("log_failure") for e in logs))

    def test_certificate_keeps_its_slot_through_retries(self) -> None:
        """
        Recording the certificate is tried again while the store is away:
        it still takes the first renewal slot of its set of names, not one
        per try.
        """
        world, client = self.world(["issue"], [])
        real_set = world.store.set
        failures = [3]

        async def certificate_away(key: str, value: bytes, **kwargs: Any) -> None:
            if key.startswith(keys.CERTIFICATE_PREFIX) and failures[0]:
                failures[0] -= 1
                raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")
            await real_set(key, value, **kwargs)

        self.patch(world.store, "set", certificate_away)
        url = self.finalize(client)
        order = self.order_at(world, client, url, 10)
        self.assertEqual(order["status"], "valid", order)
        self.assertEqual(failures, [0])
        record = self.successResultOf(
            Deferred.fromCoroutine(world.repo.certificate(order["certificate"].split("/")[-1]))
        )
        assert record is not None
        self.assertEqual(record.slot, 0)

    def test_failure_not_recorded_is_logged(self) -> None:
        """
        The CA refused, and the store was away when the job recorded it:
        one warning line says so, rather than nothing at all.
        """
        refused = CAError("no such name", transient=False)
        world, client = self.world([refused], [])

        async def away(*args: Any, **kwargs: Any) -> None:
            raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")

        self.patch(world.repo, "dequeue", away)
        with capturedLogs() as logs:
            url = self.finalize(client)
        warned = [e for e in logs if e.get("order_id") == url.rsplit("/", 1)[1] and "Connection refused" in str(e)]
        self.assertEqual(len(warned), 1, logs)
        self.assertFalse(any(e.get("log_failure") for e in logs))

    def test_order_waits_while_the_store_is_away(self) -> None:
        """
        The job meets the store away before the CA issued: one warning, the
        order stays C{processing}, and the sweep resumes it.
        """
        world, client = self.world(["issue"], [])
        real_issue = self.primary.issue
        attempts = []

        async def store_away_once(request: IssueRequest) -> IssuedCertificate:
            attempts.append(request)
            if len(attempts) == 1:
                raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")
            return await real_issue(request)

        self.patch(self.primary, "issue", store_away_once)
        # The sweep that resumes queued jobs runs while the service runs.
        world.issuance.startService()
        self.addCleanup(world.issuance.stopService)
        with capturedLogs() as logs:
            url = self.finalize(client)
            self.assertEqual(client.post(url, None).json()["status"], "processing")
            order = self.order_at(world, client, url, 30)
        waits = [e for e in logs if "waits for the store" in e.get("log_format", "")]
        self.assertEqual(len(waits), 1)
        self.assertFalse(any(e.get("log_failure") for e in logs))
        self.assertEqual(order["status"], "valid", order)
        self.assertEqual(len(attempts), 2)

    def test_announced_when_the_store_goes_after_the_order_is_valid(self) -> None:
        """
        The order was made valid, then the store went away while the job
        tidied up: the issuance is announced all the same, once.
        """
        world, client = self.world(["issue"], [])
        real_release = world.issuance._release
        calls = []

        async def release_away_once(order: Order) -> None:
            calls.append(order.id)
            if len(calls) == 1:
                raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")
            await real_release(order)

        self.patch(world.issuance, "_release", release_away_once)
        url = self.finalize(client)
        order = self.order_at(world, client, url, 5)
        self.assertEqual(order["status"], "valid", order)
        issued = [e for e in self.notes.events if e.name is EventName.CERTIFICATE_ISSUED]
        self.assertEqual(len(issued), 1)
        self.assertEqual(len(calls), 2)


class AnnouncedOnceTests(JobFixture):
    """
    A node that made an order valid and died before it was journaled (and
    dequeued): the node that resumes the order announces it, once.
    """

    def test_resumed_valid_order_announced_once(self) -> None:
        world, client = self.world(["issue"], [])
        journal = EventJournal(world.store, clock=world.clock)
        world.issuance.events.subscribe(journal)
        world.issuance._journal = journal
        url = self.finalize(client)
        order = self.order_at(world, client, url, 2)
        self.assertEqual(order["status"], "valid", order)
        order_id = url.rstrip("/").rsplit("/", 1)[-1]

        def announced() -> list[Event]:
            history = self.successResultOf(Deferred.fromCoroutine(journal.order_history(order_id)))
            return [e for e in history if e.name is EventName.CERTIFICATE_ISSUED]

        self.assertEqual(len(announced()), 1)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(world.repo.queued())), [])
        # As if the node had died after the order became valid: no journal
        # entry, still queued.
        for key, _ in self.successResultOf(Deferred.fromCoroutine(world.store.scan(keys.order_events(order_id)))):
            self.successResultOf(Deferred.fromCoroutine(world.store.delete(key)))
        for again in range(2):
            self.successResultOf(Deferred.fromCoroutine(world.repo.enqueue(order_id)))
            world.issuance.submit(order_id)
            world.clock.advance(1)
            self.assertEqual(len(announced()), 1, again)
            self.assertEqual(self.successResultOf(Deferred.fromCoroutine(world.repo.queued())), [])
        [event] = announced()
        self.assertEqual(getattr(event, "mode", None), "new")
        self.assertEqual(len(self.primary.calls), 1)


class QueuedBeforeProcessingTests(JobFixture):
    """
    A finalize queues its order, then makes it C{processing}: a job that
    starts in between (another node's sweep, a restart) finds the order
    still C{ready} and must not drop the queue entry, or the order would
    stay C{processing} with nothing to issue it.
    """

    def ready(self, world: World, client: StubAcmeClient) -> tuple[str, dict[str, Any]]:
        response = client.new_order(["example.com"])
        self.assertEqual(response.json()["status"], "ready")
        return response.location.rsplit("/", 1)[1], response.json()

    def queued(self, world: World) -> list[str]:
        return self.successResultOf(Deferred.fromCoroutine(world.repo.queued()))

    def test_entry_of_a_finalize_under_way_kept(self) -> None:
        """
        The job leaves the entry of a ready order queued less than a lease
        ago; the finalize then goes on and the order is issued.
        """
        world, client = self.world(["issue"], [])
        order_id, body = self.ready(world, client)
        self.successResultOf(Deferred.fromCoroutine(world.repo.enqueue(order_id, world.clock.seconds())))
        world.issuance.submit(order_id)
        world.clock.advance(0)
        self.assertEqual(self.queued(world), [order_id])
        self.assertEqual(client.finalize(body, make_csr(["example.com"])[0]).json()["status"], "processing")
        url = body["finalize"].rsplit("/", 1)[0]
        self.assertEqual(self.order_at(world, client, url, 2)["status"], "valid")
        self.assertEqual(self.queued(world), [])

    def test_stale_entry_dropped(self) -> None:
        """
        An entry of a ready order older than a lease is a finalize that
        never went on (its node died in between): the job drops it.
        """
        world, client = self.world(["issue"], [])
        order_id, _ = self.ready(world, client)
        self.successResultOf(Deferred.fromCoroutine(world.repo.enqueue(order_id, world.clock.seconds())))
        world.clock.advance(LEASE + 1)
        world.issuance.submit(order_id)
        world.clock.advance(0)
        self.assertEqual(self.queued(world), [])
        self.assertEqual(self.primary.calls, [])

    def test_sweep_leaves_young_entries(self) -> None:
        """
        The sweep resumes only entries queued a lease ago or more (and
        those without a time, written before entries had one).
        """
        world, _ = self.world(["issue"], [])
        now = world.clock.seconds()
        for order_id, at in (("young", now - LEASE + 1), ("old", now - LEASE), ("untimed", 0.0)):
            self.successResultOf(Deferred.fromCoroutine(world.repo.enqueue(order_id, at)))
        self.successResultOf(Deferred.fromCoroutine(world.store.set(keys.issue_queue("garbled"), b"\xff")))
        before = self.successResultOf(Deferred.fromCoroutine(world.repo.queued(before=now - LEASE)))
        self.assertEqual(sorted(before), ["garbled", "old", "untimed"])
        submitted: list[str] = []
        self.patch(world.issuance, "submit", submitted.append)
        self.successResultOf(Deferred.fromCoroutine(world.issuance._sweep_once()))
        self.assertEqual(sorted(submitted), ["garbled", "old", "untimed"])

"""
Node identity: events name the node that emitted them (and the journal keeps
two nodes' events apart), and the admin C{/health} shows the node, the store
connection and which node holds which issuance job.
"""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.admin import AdminAPI
from acme_appliance.issuance import JobLeases
from acme_appliance.notify import Event, EventBus, EventJournal, EventName, format_rfc5424
from acme_appliance.storage import MemoryStore

KEY = "k" * 32


class EventNodeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore(self.clock)

    def test_node_field(self) -> None:
        event = EventBus(self.clock, node="acme-2").emit(Event, name=EventName.CA_DOWN, ca="up1")
        self.assertEqual(event.node, "acme-2")
        self.assertEqual(event.to_json()["node"], "acme-2")
        self.assertIn(("node", "acme-2"), event.fields())
        self.assertNotIn("node", EventBus(self.clock).emit(Event, name=EventName.CA_DOWN, ca="up1").to_json())

    def test_syslog_carries_node(self) -> None:
        event = EventBus(self.clock, node="acme-2").emit(Event, name=EventName.CA_DOWN, ca="up1")
        self.assertIn(b'node="acme-2"', format_rfc5424(event, hostname="h"))

    def test_journal_keeps_both_nodes(self) -> None:
        """
        Two nodes emitting at the same moment, each counting from 0: the
        journal keeps both events, each with its node.
        """
        journal = EventJournal(self.store)
        for node in ("acme-1", "acme-2"):
            event = EventBus(self.clock, node=node).emit(Event, name=EventName.ORDER_FAILED, order_id="o1")
            self.successResultOf(Deferred.fromCoroutine(EventJournal(self.store).record(event)))
        history = self.successResultOf(Deferred.fromCoroutine(journal.order_history("o1")))
        self.assertEqual(sorted(e.node or "" for e in history), ["acme-1", "acme-2"])


class HealthTests(SynchronousTestCase):
    def test_node_and_jobs(self) -> None:
        clock = Clock()
        store = MemoryStore(clock)
        leases = JobLeases(store, clock, node="acme-1")
        lease = self.successResultOf(Deferred.fromCoroutine(leases.take("order1")))
        assert lease is not None
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(JobLeases(store, clock).take("order1"))))
        admin = AdminAPI(api_key=KEY, store=store, clock=clock, node="acme-1", jobs=leases.holders)
        http = StubTreq(admin.resource())
        auth = {b"Authorization": [f"Bearer {KEY}".encode()]}
        d = http.request("GET", "http://admin.test/health", headers=auth)  # type: ignore[attr-defined]
        http.flush()
        body = json.loads(self.successResultOf(self.successResultOf(d).content()))
        self.assertEqual(body["node"], "acme-1")
        self.assertIs(body["store_connected"], True)
        self.assertEqual(body["jobs"], {"order1": "acme-1"})
        self.successResultOf(Deferred.fromCoroutine(lease.release()))

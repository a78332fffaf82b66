"""
The production wiring of L{ApplianceService}, built from a configuration
file on a memory reactor (nothing listens, nothing is sent).
"""

from __future__ import annotations

import gc
import os

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.config import load_config
from acme_appliance.notify import JOURNAL_WINDOW, Event, EventName
from acme_appliance.stats import FLUSH_INTERVAL
from acme_appliance.storage import MemoryStore, keys
from acme_appliance.tap import ApplianceService

CONFIG = """
[acme]
listen = "tcp:0:interface=127.0.0.1"
base_url = "https://acme.test:8443"

[storage]
url = "memory:"
state_dir = "var"

[notify]
webhooks = ["http://127.0.0.1:9/hook"]

[[ca]]
name = "builtin"
kind = "local"

[[policy]]
name = "shop"
primary_ca = "builtin"
validation = "none"
allowed_domains = ["example.com"]
"""

#: the webhook sink's queue size, as C{make_notifiers} builds it
QUEUE_SIZE = 1000
DROPPED = "acme_appliance_notifications_dropped_total"


def config_file(case: SynchronousTestCase) -> str:
    """
    L{CONFIG} in a new file of C{case}'s temporary directory.
    """
    directory = os.path.abspath(case.mktemp())
    os.makedirs(directory)
    path = os.path.join(directory, "appliance.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(CONFIG)
    return path


class _OpenStore(MemoryStore):
    """
    A L{MemoryStore} that stays readable after the service closes it.
    """

    async def close(self) -> None:
        pass


class NotifierWiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        path = config_file(self)
        self.reactor = MemoryReactorClock()
        self.service = ApplianceService(load_config(path), MemoryStore(self.reactor), self.reactor)  # type: ignore[arg-type]

    def test_webhook_drops_are_counted(self) -> None:
        """
        Events the webhook sink's full queue drops (the service is not
        running, so nothing is delivered) show in the service's metrics
        under C{sink="webhook"}.
        """
        metrics = self.service.metrics
        self.assertEqual(metrics.value(DROPPED, sink="webhook"), 0.0)
        for _ in range(QUEUE_SIZE):
            self.service.events.emit(Event, name=EventName.CA_UP, ca="builtin")
        self.assertEqual(metrics.value(DROPPED, sink="webhook"), 0.0)
        for _ in range(3):
            self.service.events.emit(Event, name=EventName.CA_UP, ca="builtin")
        self.assertEqual(metrics.value(DROPPED, sink="webhook"), 3.0)
        self.assertIn(b'acme_appliance_notifications_dropped_total{sink="webhook"} 3.0', metrics.exposition())
        self.assertEqual(self.reactor.tcpClients, [])

    def test_counter_totals_follow_the_service(self) -> None:
        """
        The metrics start and stop with the service: counter totals reach
        the store once the flush interval has passed, and at the stop.
        """
        store = _OpenStore(self.reactor)
        service = ApplianceService(self.service.config, store, self.reactor)  # type: ignore[arg-type]
        service.startService()

        def totals() -> list[tuple[str, bytes]]:
            return self.successResultOf(Deferred.fromCoroutine(service.store.scan(keys.COUNTER_PREFIX)))

        service.events.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.assertEqual(totals(), [])
        self.reactor.advance(FLUSH_INTERVAL)
        self.assertEqual([value for _, value in totals()], [b"1"])
        service.events.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o2")
        self.successResultOf(service.stopService())
        self.assertEqual([value for _, value in totals()], [b"2"])

    def test_events_journaled_a_window_at_a_time(self) -> None:
        """
        The service's journal writes the events of each
        L{JOURNAL_WINDOW} together, and what it gathered when it stops.
        """
        store = _OpenStore(self.reactor)
        service = ApplianceService(self.service.config, store, self.reactor)  # type: ignore[arg-type]
        service.startService()

        def stored() -> int:
            return len(self.successResultOf(Deferred.fromCoroutine(store.scan(keys.order_events("o1")))))

        service.events.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.assertEqual(stored(), 0)
        self.reactor.advance(JOURNAL_WINDOW)
        self.assertEqual(stored(), 1)
        service.events.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.successResultOf(service.stopService())
        self.assertEqual(stored(), 2)

    def test_start_up_objects_frozen_while_running(self) -> None:
        """
        What start-up built is moved out of the collector's way while the
        service runs (a full collection would scan it all again).
        """
        store = _OpenStore(self.reactor)
        service = ApplianceService(self.service.config, store, self.reactor)  # type: ignore[arg-type]
        self.addCleanup(gc.unfreeze)
        service.startService()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.successResultOf(service.stopService())
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_order_deadline_reaches_issuance(self) -> None:
        self.assertEqual(self.service.issuance._deadline, self.service.config.issuance.order_deadline)

    def test_finalize_wait_reaches_the_server(self) -> None:
        self.assertEqual(self.service.acme._finalize_wait, self.service.config.acme.finalize_wait)
        self.assertEqual(self.service.acme._finalize_wait, 1.0)


class PreflightWiringTests(SynchronousTestCase):
    def test_resolver_on_the_given_reactor(self) -> None:
        """
        The preflight's resolver schedules its work (re-reading resolv.conf)
        on the service's reactor, never on the global one.
        """
        from twisted.internet import reactor as global_reactor

        before = set(global_reactor.getDelayedCalls())
        reactor = MemoryReactorClock()
        with open(config_file(self), "a", encoding="utf-8") as f:
            f.write('\n[validation]\npreflight = true\ndns_zone = "dcv.test"\ndns_listen_port = 0\n')
        path = f.name
        ApplianceService(load_config(path), MemoryStore(reactor), reactor)  # type: ignore[arg-type]
        self.assertEqual(set(global_reactor.getDelayedCalls()) - before, set())
        self.assertNotEqual(reactor.getDelayedCalls(), [])

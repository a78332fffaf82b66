"""
Metrics counted from events, exposed in the Prometheus text format.
"""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.notify import (
    CaFailover,
    CertificateIssued,
    Event,
    EventBus,
    EventJournal,
    EventName,
    PolicyEvent,
    UpstreamOrdered,
    ValidationEvent,
)
from acme_appliance.stats import FLUSH_INTERVAL, Metrics, dashboard_data
from acme_appliance.storage import MemoryStore, StorageError, keys

SPEC_METRICS = {
    "acme_appliance_upstream_orders_total",
    "acme_appliance_validations_total",
    "acme_appliance_certificates_issued_total",
    "acme_appliance_ca_failovers_total",
    "acme_appliance_orders_total",
    "acme_appliance_notifications_dropped_total",
    "acme_appliance_ca_up",
}


class MetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = Metrics()
        self.bus = EventBus(Clock())
        self.bus.subscribe(self.metrics.observe)

    def test_counting(self) -> None:
        emit = self.bus.emit
        emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        emit(UpstreamOrdered, ca="le")
        emit(ValidationEvent, name=EventName.VALIDATION_SUCCEEDED, ca="le", method="dns-cname")
        emit(ValidationEvent, name=EventName.VALIDATION_FAILED, ca="le", method="file-proxy")
        emit(CertificateIssued, ca="le", mode="new")
        emit(CertificateIssued, ca="le", mode="reissue")
        emit(CertificateIssued, ca="backup", mode="reissue")
        emit(CaFailover, ca="backup", from_ca="le", to_ca="backup")
        emit(Event, name=EventName.ORDER_FAILED, order_id="o2")
        emit(Event, name=EventName.CA_DOWN, ca="le")
        value = self.metrics.value
        self.assertEqual(value("acme_appliance_upstream_orders_total", ca="le"), 1)
        self.assertEqual(value("acme_appliance_validations_total", ca="le", method="dns-cname", result="valid"), 1)
        self.assertEqual(value("acme_appliance_validations_total", ca="le", method="file-proxy", result="invalid"), 1)
        self.assertEqual(value("acme_appliance_certificates_issued_total", ca="le", mode="new"), 1)
        self.assertEqual(value("acme_appliance_certificates_issued_total", ca="le", mode="reissue"), 1)
        self.assertEqual(self.metrics.total("acme_appliance_certificates_issued_total"), 3)
        self.assertEqual(self.metrics.total("acme_appliance_validations_avoided_total"), 2)
        self.assertEqual(value("acme_appliance_ca_failovers_total", from_ca="le", to_ca="backup"), 1)
        self.assertEqual(value("acme_appliance_orders_total", status="valid"), 3)
        self.assertEqual(value("acme_appliance_orders_total", status="invalid"), 1)
        self.assertEqual(value("acme_appliance_orders_total", status="pending"), 1)
        self.assertEqual(value("acme_appliance_ca_up", ca="le"), 0)
        self.assertEqual(value("acme_appliance_orders_total", status="never"), 0)

    def test_exposition(self) -> None:
        self.bus.emit(CertificateIssued, ca="le", mode="new")
        self.bus.emit(CaFailover, ca="b", from_ca="a", to_ca="b")
        self.bus.emit(UpstreamOrdered, ca="le")
        self.bus.emit(ValidationEvent, name=EventName.VALIDATION_SUCCEEDED, ca="le", method="dns-cname")
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED)
        self.bus.emit(Event, name=EventName.CA_UP, ca="le")
        self.metrics.dropped("syslog")
        samples = {
            sample.name: sample
            for family in text_string_to_metric_families(self.metrics.exposition().decode())
            for sample in family.samples
        }
        self.assertLessEqual(SPEC_METRICS, set(samples))
        self.assertFalse([name for name in samples if name.endswith("_total_total")])
        self.assertEqual(samples["acme_appliance_ca_up"].value, 1)
        self.assertEqual(samples["acme_appliance_notifications_dropped_total"].labels, {"sink": "syslog"})
        self.assertEqual(samples["acme_appliance_certificates_issued_total"].labels, {"ca": "le", "mode": "new"})

    def test_instances_are_separate(self) -> None:
        other = Metrics()
        self.bus.emit(UpstreamOrdered, ca="le")
        self.assertEqual(other.value("acme_appliance_upstream_orders_total", ca="le"), 0)


class LatencyTests(SynchronousTestCase):
    """
    Durations reach the histograms and the dashboard as the numbers the
    events carry.
    """

    def test_latencies(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000)
        metrics = Metrics()
        journal = EventJournal(MemoryStore(clock))
        bus = EventBus(clock)
        bus.subscribe(metrics.observe)
        bus.subscribe(journal)
        bus.emit(CertificateIssued, ca="le", mode="reissue", seconds=2.0004)
        bus.emit(CertificateIssued, ca="le", seconds=4.0)
        bus.emit(ValidationEvent, name=EventName.VALIDATION_SUCCEEDED, method="dns-cname", seconds=0.5)
        bus.emit(ValidationEvent, name=EventName.VALIDATION_FAILED, method="dns-cname", seconds=9.0)
        self.assertEqual(metrics.value("acme_appliance_issuance_seconds_sum", mode="reissue"), 2.0)
        self.assertEqual(metrics.value("acme_appliance_issuance_seconds_sum", mode="new"), 4.0)
        self.assertEqual(metrics.value("acme_appliance_validation_seconds_sum", method="dns-cname"), 0.5)
        data = self.successResultOf(Deferred.fromCoroutine(dashboard_data(journal, {}, clock.seconds())))
        self.assertEqual(
            data["latency"], {"issuance_p50": 2.0, "issuance_p95": 4.0, "validation_p50": 0.5, "validation_p95": 0.5}
        )
        self.assertEqual(data["validations"], {"performed": 2, "avoided": 1})


def total_key(counter: str, **labels: str) -> str:
    """
    The store key of one counter total.
    """
    return keys.COUNTER_PREFIX + counter + "/" + json.dumps(labels, sort_keys=True, separators=(",", ":"))


PENDING = total_key("orders", status="pending")
VALID = total_key("orders", status="valid")
ISSUED = total_key("certificates_issued", ca="le", mode="new")


class CountingStore(MemoryStore):
    """
    A L{MemoryStore} that records every C{increment}, can hold them until
    C{release} (to see which are issued together) and can fail (every
    increment raises C{error}).
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.increments: list[tuple[str, int]] = []
        self.gate: Deferred[None] | None = None
        self.error: Exception | None = None

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        self.increments.append((key, amount))
        if self.gate is not None:
            await self.gate
        if self.error is not None:
            raise self.error
        return await super().increment(key, amount, ttl=ttl)

    def release(self) -> None:
        gate, self.gate = self.gate, None
        assert gate is not None
        gate.callback(None)


class WriteBehindTests(SynchronousTestCase):
    """
    Counter totals are written behind: summed in memory, added to the store
    every L{FLUSH_INTERVAL} seconds (one increment per total, issued
    together) and when the service stops.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = CountingStore(self.clock)
        self.metrics = self.started()

    def started(self) -> Metrics:
        metrics = Metrics(self.store, self.clock)
        metrics.startService()
        self.bus = EventBus(self.clock)
        self.bus.subscribe(metrics.observe)
        return metrics

    def flow(self) -> None:
        """
        The events of one certificate flow: 3 order statuses, 1 certificate.
        """
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.bus.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.bus.emit(CertificateIssued, ca="le", mode="new", order_id="o1")

    def stored(self, key: str) -> int | None:
        value = self.successResultOf(Deferred.fromCoroutine(self.store.get(key)))
        return None if value is None else int(value)

    def test_no_write_before_the_interval(self) -> None:
        """
        Increments show at once in the counters but reach the store only
        when the interval has passed: one increment per total, summed.
        """
        for _ in range(3):
            self.flow()
        self.assertEqual(self.metrics.value("acme_appliance_orders_total", status="pending"), 3)
        self.clock.advance(FLUSH_INTERVAL - 0.01)
        self.assertEqual(self.store.increments, [])
        self.clock.advance(0.01)
        self.assertEqual(
            sorted(self.store.increments),
            sorted([(PENDING, 3), (VALID, 3), (ISSUED, 3)] + [(total_key("orders", status="processing"), 3)]),
        )
        self.assertEqual(self.stored(VALID), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush_issues_every_increment_together(self) -> None:
        """
        A flush issues all its increments before any of them answers, so
        that they share one store commit.
        """
        self.flow()
        self.store.gate = Deferred()
        self.clock.advance(FLUSH_INTERVAL)
        self.assertEqual(len(self.store.increments), 4)
        # Counted meanwhile: kept for the next flush, not lost; that one
        # is scheduled once this one is written.
        self.flow()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.store.release()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.stored(PENDING), 1)
        self.clock.advance(FLUSH_INTERVAL)
        self.assertEqual(len(self.store.increments), 8)
        self.assertEqual(self.stored(PENDING), 2)

    def test_stop_flushes(self) -> None:
        """
        Stopping writes what was counted, and fires once it is written.
        """
        self.flow()
        self.store.gate = Deferred()
        stopped = self.metrics.stopService()
        self.assertNoResult(stopped)
        self.store.release()
        self.successResultOf(stopped)
        self.assertEqual(self.stored(ISSUED), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # After the stop, nothing is written on a timer; a flush writes it.
        self.flow()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.successResultOf(Deferred.fromCoroutine(self.metrics.flush()))
        self.assertEqual(self.stored(ISSUED), 2)

    def test_failing_store_keeps_the_increments(self) -> None:
        """
        A flush the store cannot take logs one warning line and keeps its
        increments: the next flush adds them, once.
        """
        self.flow()
        self.store.error = StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")
        with capturedLogs() as events:
            self.clock.advance(FLUSH_INTERVAL)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1, events)
        self.assertEqual((warnings[0]["count"], warnings[0]["kept"]), (4, 4))
        self.assertIsNone(self.stored(PENDING))
        self.flow()
        self.store.error = None
        del self.store.increments[:]
        self.clock.advance(FLUSH_INTERVAL)
        self.assertIn((PENDING, 2), self.store.increments)
        self.assertEqual(len(self.store.increments), 4)
        self.assertEqual(self.stored(PENDING), 2)
        self.assertEqual(self.metrics.value("acme_appliance_orders_total", status="pending"), 2)

    def test_bug_drops_the_increments(self) -> None:
        """
        An increment that fails for another reason than the store being
        away is logged with its traceback and not tried again.
        """
        self.flow()
        self.store.error = TypeError("a bug")
        self.clock.advance(FLUSH_INTERVAL)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.store.error = None
        del self.store.increments[:]
        self.successResultOf(Deferred.fromCoroutine(self.metrics.flush()))
        self.assertEqual(self.store.increments, [])

    def test_restart_loads_the_flushed_totals(self) -> None:
        """
        A new Metrics on the same store (a restart) loads the totals the
        stopped one wrote, and adds its own to them.
        """
        self.flow()
        self.flow()
        self.successResultOf(self.metrics.stopService())
        restarted = self.started()
        self.assertEqual(restarted.value("acme_appliance_certificates_issued_total", ca="le", mode="new"), 2)
        self.flow()
        self.assertEqual(restarted.value("acme_appliance_orders_total", status="pending"), 3)
        self.successResultOf(restarted.stopService())
        self.assertEqual(self.stored(PENDING), 3)

    def test_without_store(self) -> None:
        """
        Without a store nothing is scheduled.
        """
        metrics = Metrics(clock=self.clock)
        metrics.startService()
        metrics.dropped("syslog")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.successResultOf(metrics.stopService())

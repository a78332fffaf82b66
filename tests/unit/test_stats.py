"""
Metrics counted from events, exposed in the Prometheus text format.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
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
from acme_appliance.stats import Metrics, dashboard_data
from acme_appliance.storage import MemoryStore

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

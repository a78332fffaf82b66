"""
The appliance's counters, fed by events, exposed in the Prometheus text
format with C{prometheus_client}.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from ..notify import Event, EventName

CONTENT_TYPE = CONTENT_TYPE_LATEST

_ORDER_STATUS = {
    EventName.ORDER_CREATED: "pending",
    EventName.ORDER_PROCESSING: "processing",
    EventName.CERTIFICATE_ISSUED: "valid",
    EventName.ORDER_FAILED: "invalid",
}


class Metrics:
    """
    Counters in a registry of their own (never the process-global one, so
    that several appliances in one test process do not share them).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.upstream_orders = Counter(
            "acme_appliance_upstream_orders", "Orders placed at upstream CAs.", ["ca"], registry=r
        )
        self.validations = Counter(
            "acme_appliance_validations", "Upstream validations, by outcome.", ["ca", "method", "result"], registry=r
        )
        self.certificates_issued = Counter(
            "acme_appliance_certificates_issued",
            "Certificates issued to clients; mode is new (validated) or reissue (re-used a validation).",
            ["ca", "mode"], registry=r,
        )
        self.ca_failovers = Counter(
            "acme_appliance_ca_failovers", "Orders moved from one CA to another.", ["from_ca", "to_ca"], registry=r
        )
        self.orders = Counter("acme_appliance_orders", "Client orders reaching each status.", ["status"], registry=r)
        self.notifications_dropped = Counter(
            "acme_appliance_notifications_dropped", "Notifications a sink could not take.", ["sink"], registry=r
        )
        self.ca_up = Gauge("acme_appliance_ca_up", "1 while a CA is considered up, 0 while down.", ["ca"], registry=r)

    def observe(self, event: Event) -> None:
        """
        Count C{event}: an L{EventBus} subscriber.
        """
        name = event.name
        ca = event.ca or "unknown"
        if name in _ORDER_STATUS:
            self.orders.labels(status=_ORDER_STATUS[name]).inc()
        if name is EventName.UPSTREAM_ORDER:
            self.upstream_orders.labels(ca=ca).inc()
        elif name in (EventName.VALIDATION_SUCCEEDED, EventName.VALIDATION_FAILED):
            result = "valid" if name is EventName.VALIDATION_SUCCEEDED else "invalid"
            self.validations.labels(ca=ca, method=event.detail("method") or "unknown", result=result).inc()
        elif name is EventName.CERTIFICATE_ISSUED:
            self.certificates_issued.labels(ca=ca, mode=event.detail("mode") or "new").inc()
        elif name is EventName.CA_FAILOVER:
            self.ca_failovers.labels(
                from_ca=event.detail("from_ca") or "unknown", to_ca=event.detail("to_ca") or ca
            ).inc()
        elif name in (EventName.CA_UP, EventName.CA_DOWN):
            self.ca_up.labels(ca=ca).set(1 if name is EventName.CA_UP else 0)

    def dropped(self, sink: str) -> None:
        self.notifications_dropped.labels(sink=sink).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, metric: str, **labels: str) -> float:
        """
        One sample's value (0 when it was never counted), e.g.
        C{value("acme_appliance_certificates_issued_total", ca="le", mode="new")}.
        """
        found = self.registry.get_sample_value(metric, labels)
        return 0.0 if found is None else found

    def total(self, metric: str) -> float:
        """
        The sum of every sample named C{metric}.
        """
        return sum(
            sample.value for family in self.registry.collect() for sample in family.samples if sample.name == metric
        )

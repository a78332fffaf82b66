"""
The appliance's counters, fed by events, exposed in the Prometheus text
format with C{prometheus_client}.  Counter totals are kept in the store, so a
restart does not reset them: increments are counted in memory and added to
the totals every L{FLUSH_INTERVAL} seconds and when the service stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..core import Unavailable, report_failure, together
from ..issuance import BudgetUse
from ..notify import (
    CaBudgetExhausted,
    CaFailover,
    CertificateIssued,
    Event,
    EventName,
    UpstreamOrdered,
    ValidationEvent,
)
from ..orders import Limit
from ..storage import Store, keys

CONTENT_TYPE = CONTENT_TYPE_LATEST

_ORDER_STATUS = {
    EventName.ORDER_CREATED: "pending",
    EventName.ORDER_PROCESSING: "processing",
    EventName.CERTIFICATE_ISSUED: "valid",
    EventName.ORDER_FAILED: "invalid",
}
_VALIDATION_RESULT = {EventName.VALIDATION_SUCCEEDED: "valid", EventName.VALIDATION_FAILED: "invalid"}
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: Seconds between an increment and the store write that adds it to its total.
FLUSH_INTERVAL = 2.0


#: Counter children kept looked up at most (a bound should a label value
#: ever come from outside a closed set).
MAX_CHILDREN = 4096


class Metrics(Service):
    """
    Counters in a registry of their own (never the process-global one, so
    that several appliances in one test process do not share them).

    With a C{store}, counter increments are also added to totals in the
    store, and L{restore} loads those totals at start-up; events observed
    before L{restore} finished are counted after it, so none is counted
    twice.  The increments are written behind: summed in memory per total
    and written by L{flush} (one C{increment} per total, issued together),
    which runs L{FLUSH_INTERVAL} seconds after an increment while the
    service runs (with a C{clock}) and when it stops.  A flush the store
    cannot take keeps its increments for the next one.
    """

    _log = Logger()

    def __init__(self, store: Store | None = None, clock: IReactorTime | None = None) -> None:
        self._store = store
        self._clock = clock
        self._restored = store is None
        self._pending: list[Event] = []
        #: Increments not in the store yet, by total key.
        self._deltas: dict[str, int] = {}
        self._flush_call: IDelayedCall | None = None
        self._flushing = DeferredLock()
        self.registry = CollectorRegistry()
        r = self.registry
        self._counters: dict[str, Counter] = {}
        #: Each counter's children by labels, with their totals' store keys.
        self._children: dict[tuple[object, ...], tuple[Any, str]] = {}
        self.upstream_orders = self._counter("upstream_orders", "Orders placed at upstream CAs.", ["ca"])
        self.validations = self._counter("validations", "Upstream validations, by outcome.", ["ca", "method", "result"])
        self.certificates_issued = self._counter(
            "certificates_issued",
            "Certificates issued to clients; mode is new (validated) or reissue (re-used a validation).",
            ["ca", "mode"],
        )
        self.validations_avoided = self._counter(
            "validations_avoided", "Certificates re-issued on an earlier validation instead of a new one.", ["ca"]
        )
        self.renewals = self._counter(
            "renewals", "Certificates issued to replace an earlier one (RFC 9773 replaces).", ["ca"]
        )
        self.ca_failovers = self._counter("ca_failovers", "Orders moved from one CA to another.", ["from_ca", "to_ca"])
        self.ca_budget_exhausted = self._counter(
            "ca_budget_exhausted", "Orders a CA had no rate-limit budget left for, by CA and limit.", ["ca", "limit"]
        )
        self.orders = self._counter("orders", "Client orders reaching each status.", ["status"])
        self.notifications_dropped = self._counter(
            "notifications_dropped", "Notifications a sink could not take.", ["sink"]
        )
        self.requests = self._counter(
            "http_requests", "HTTP requests by listener, endpoint and status.", ["listener", "endpoint", "status"]
        )
        self.upstream_requests = Counter(
            "acme_appliance_upstream_requests",
            "HTTP requests to upstream CAs, by result.",
            ["ca", "result"],
            registry=r,
        )
        self.rate_limited = Counter(
            "acme_appliance_rate_limited",
            "Requests refused by a rate limit (429 rateLimited), by limit.",
            ["limit"],
            registry=r,
        )
        self.ca_budget_used, self.ca_budget_max = self._budget_gauges()
        self._budget_rows: dict[tuple[str, str], dict[str, object]] = {}
        self.ca_up = Gauge("acme_appliance_ca_up", "1 while a CA is considered up, 0 while down.", ["ca"], registry=r)
        self.issuance_seconds, self.validation_seconds = self._histograms()

    def _histograms(self) -> tuple[Histogram, Histogram]:
        issuance = Histogram(
            "acme_appliance_issuance_seconds",
            "Finalize to valid, per issued certificate.",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        validation = Histogram(
            "acme_appliance_validation_seconds",
            "Upstream validation time, by method.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        return issuance, validation

    def _budget_gauges(self) -> tuple[Gauge, Gauge]:
        used = Gauge(
            "acme_appliance_ca_budget_used",
            "Use of each CA rate limit in its window (per name set or domain: the most used one; full while the CA "
            "refuses).",
            ["ca", "limit"],
            registry=self.registry,
        )
        limit = Gauge(
            "acme_appliance_ca_budget_max",
            "Each CA rate limit's maximum per window.",
            ["ca", "limit"],
            registry=self.registry,
        )
        return used, limit

    def _counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        counter = Counter(f"acme_appliance_{name}", documentation, labels, registry=self.registry)
        self._counters[name] = counter
        return counter

    # counting

    def _increments(self, event: Event) -> Iterator[tuple[str, dict[str, str]]]:
        name = event.name
        ca = event.ca or "unknown"
        if name in _ORDER_STATUS:
            yield "orders", {"status": _ORDER_STATUS[name]}
        if isinstance(event, UpstreamOrdered):
            yield "upstream_orders", {"ca": ca}
        elif isinstance(event, ValidationEvent) and name in _VALIDATION_RESULT:
            yield "validations", {"ca": ca, "method": event.method or "unknown", "result": _VALIDATION_RESULT[name]}
        elif isinstance(event, CertificateIssued):
            mode = event.mode or "new"
            yield "certificates_issued", {"ca": ca, "mode": mode}
            if mode == "reissue":
                yield "validations_avoided", {"ca": ca}
            if event.replaces is not None:
                yield "renewals", {"ca": ca}
        elif isinstance(event, CaFailover):
            yield "ca_failovers", {"from_ca": event.from_ca or "unknown", "to_ca": event.to_ca or ca}
        elif isinstance(event, CaBudgetExhausted):
            yield "ca_budget_exhausted", {"ca": ca, "limit": event.limit or "unknown"}

    def observe(self, event: Event) -> None:
        """
        Count C{event}: an L{EventBus} subscriber.
        """
        if event.name in (EventName.CA_UP, EventName.CA_DOWN):
            self.ca_up.labels(ca=event.ca or "unknown").set(1 if event.name is EventName.CA_UP else 0)
        if isinstance(event, CertificateIssued) and event.seconds is not None:
            self.issuance_seconds.labels(mode=event.mode or "new").observe(event.seconds)
        elif (
            isinstance(event, ValidationEvent)
            and event.name is EventName.VALIDATION_SUCCEEDED
            and event.seconds is not None
        ):
            self.validation_seconds.labels(method=event.method or "unknown").observe(event.seconds)
        if not self._restored:
            self._pending.append(event)
            return
        for counter, labels in self._increments(event):
            self._count(counter, labels)

    def dropped(self, sink: str) -> None:
        self._count("notifications_dropped", {"sink": sink})

    def request(self, listener: str, endpoint: str, status: int) -> None:
        # Not persisted: a busy ACME listener would write on every request.
        self._child("http_requests", {"listener": listener, "endpoint": endpoint, "status": str(status)})[0].inc()

    def upstream_request(self, ca: str, result: str) -> None:
        # Not persisted, like the request counts.
        self.upstream_requests.labels(ca=ca, result=result).inc()

    def limited(self, limit: Limit) -> None:
        # Not persisted: a flood of refusals must not become a flood of writes.
        self.rate_limited.labels(limit=limit.value).inc()

    def budgets(self, uses: Sequence[BudgetUse]) -> None:
        """
        Show each CA limit's use (a L{BudgetLedger} C{on_change} hook).
        """
        for use in uses:
            self.ca_budget_used.labels(ca=use.ca, limit=use.limit).set(use.used)
            self.ca_budget_max.labels(ca=use.ca, limit=use.limit).set(use.max)
            self._budget_rows[use.ca, use.limit] = {"ca": use.ca, "limit": use.limit, "used": use.used, "max": use.max}

    def budget_rows(self) -> list[dict[str, object]]:
        """
        The CA budgets last shown, for the dashboard.
        """
        return [row for _, row in sorted(self._budget_rows.items())]

    def _count(self, counter: str, labels: dict[str, str]) -> None:
        child, key = self._child(counter, labels)
        child.inc()
        if self._store is not None:
            self._deltas[key] = self._deltas.get(key, 0) + 1
            self._schedule_flush()

    def _child(self, counter: str, labels: dict[str, str]) -> tuple[Any, str]:
        """
        C{counter}'s child for C{labels} and the store key of its total,
        looked up once (label values come from closed sets: listeners,
        endpoints, statuses, event fields, configured CAs).
        """
        memo = (counter, *labels.items())
        found = self._children.get(memo)
        if found is None:
            if len(self._children) >= MAX_CHILDREN:
                self._children.clear()
            key = keys.COUNTER_PREFIX + counter + "/" + json.dumps(labels, sort_keys=True, separators=(",", ":"))
            found = self._children[memo] = (self._counters[counter].labels(**labels), key)
        return found

    # writing the totals

    def _schedule_flush(self) -> None:
        # While a flush writes, the next is scheduled when it is done.
        idle = self._flush_call is None and not self._flushing.locked
        if self.running and self._clock is not None and idle and self._deltas:
            self._flush_call = self._clock.callLater(FLUSH_INTERVAL, self._flush_due)

    def _flush_due(self) -> None:
        self._flush_call = None
        Deferred.fromCoroutine(self.flush())

    async def flush(self) -> None:
        """
        Add the increments counted since the last flush to the totals in the
        store: one C{increment} per total, issued together (one commit).

        An increment the store refused (it is away: L{Unavailable}) is kept
        for the next flush, like any write that raised elsewhere: it is
        taken as not done.  One warning line says how many were kept.
        """
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        await self._flushing.run(lambda: Deferred.fromCoroutine(self._write_deltas()))
        self._schedule_flush()

    async def _write_deltas(self) -> None:
        deltas, self._deltas = self._deltas, {}
        if self._store is None or not deltas:
            return
        store = self._store
        outcomes = await together(*(self._add(store, k, d) for k, d in deltas.items()))
        failures = [failure for failure in outcomes if failure is not None]
        if failures:
            report_failure(
                self._log,
                "cannot add to {count} counter total(s); kept for the next flush: {kept}",
                # A bug's traceback before a store away.
                Failure(next((f for f in failures if not isinstance(f, Unavailable)), failures[0])),
                count=len(failures),
                kept=sum(1 for failure in failures if isinstance(failure, Unavailable)),
            )

    async def _add(self, store: Store, key: str, delta: int) -> Exception | None:
        try:
            await store.increment(key, delta)
        except Unavailable as e:
            # Taken as not done, like any store write that raised: added
            # again by the next flush.
            self._deltas[key] = self._deltas.get(key, 0) + delta
            return e
        except Exception as e:
            return e
        return None

    def startService(self) -> None:
        """
        Load the totals, then flush L{FLUSH_INTERVAL} seconds after each
        first increment.
        """
        super().startService()
        Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        try:
            await self.restore()
        except Exception:
            report_failure(self._log, "cannot load the counter totals kept in the store")

    def stopService(self) -> Deferred[None]:
        """
        Stop flushing on a timer; write what was counted (the returned
        L{Deferred} fires once it is written, or kept after a failure).
        """
        super().stopService()
        return Deferred.fromCoroutine(self.flush())

    async def restore(self) -> None:
        """
        Load the totals kept in the store, then count what was observed
        meanwhile.
        """
        if self._store is None or self._restored:
            return
        try:
            for key, value in await self._store.scan(keys.COUNTER_PREFIX):
                counter, _, labels = key[len(keys.COUNTER_PREFIX) :].partition("/")
                if counter in self._counters:
                    try:
                        self._counters[counter].labels(**json.loads(labels)).inc(int(value))
                    except (ValueError, TypeError):
                        self._log.warn("ignoring unreadable counter total {key}", key=key)
        finally:
            self._restored = True
            pending, self._pending = self._pending, []
            for event in pending:
                for name, values in self._increments(event):
                    self._count(name, values)

    # reading

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

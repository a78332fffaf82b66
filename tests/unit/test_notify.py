"""
Events, their RFC 5424 form, and the syslog sinks over real loopback
sockets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from acme_appliance.core import UNAVAILABLE_RETRY
from acme_appliance.notify import (
    EVENT_TYPES,
    CaFailover,
    CertificateIssued,
    Event,
    EventBus,
    EventJournal,
    EventName,
    PolicyEvent,
    SyslogNotifier,
    SyslogTarget,
    SyslogTransport,
    ValidationEvent,
    _journal,
    format_rfc5424,
    parse_syslog_target,
)
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.stats import Metrics
from acme_appliance.storage import MemoryStore, StorageError, Write

reactor: Any = _reactor

RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<sd>\[[^ \]]+(?: [^ =\]\"]+=\"(?:[^\"\\\]]|\\.)*\")*\]) (?P<msg>.*)",
    re.DOTALL,
)


class EventBusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.bus = EventBus(self.clock)

    def test_emit(self) -> None:
        seen = MemoryNotifier()
        self.bus.subscribe(seen)
        event = self.bus.emit(
            CertificateIssued, order_id="o", token_id="t", names=["a.test", "b.test"], ca="le", mode="new"
        )
        self.assertEqual(seen.events, [event])
        self.assertEqual(event.time, 1_800_000_000)
        self.assertEqual(event.names, ("a.test", "b.test"))
        self.assertEqual(event.mode, "new")
        self.assertIsNone(event.serial)
        self.assertEqual(event.to_json()["event"], "certificate.issued")
        self.assertEqual(event.to_json()["time"], "2027-01-15T08:00:00.000000Z")

    def test_failing_subscriber(self) -> None:
        """
        A subscriber that raises is logged; the others still get the event
        and the emitter never sees the error.
        """
        seen = MemoryNotifier()

        def broken(event: Any) -> None:
            raise RuntimeError("sink on fire")

        self.bus.subscribe(broken)
        self.bus.subscribe(seen)
        with capturedLogs() as logs:
            self.bus.emit(Event, name=EventName.CA_DOWN, ca="le")
        self.assertEqual(seen.names(), ["ca.down"])
        self.assertTrue(any("sink on fire" in str(e.get("log_failure")) for e in logs))
        self.flushLoggedErrors(RuntimeError)

    def test_memory_notifier(self) -> None:
        seen = MemoryNotifier()
        self.bus.subscribe(seen)
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.bus.emit(Event, name=EventName.CA_DOWN, ca="le")
        self.bus.emit(Event, name=EventName.ORDER_FAILED, order_id="o1")
        self.assertEqual(seen.names(), ["order.created", "ca.down", "order.failed"])
        self.assertEqual([e.order_id for e in seen.of(EventName.ORDER_FAILED)], ["o1"])
        self.assertEqual(seen.of(EventName.CA_UP), [])

    def test_unsubscribe(self) -> None:
        seen = MemoryNotifier()
        unsubscribe = self.bus.subscribe(seen)
        unsubscribe()
        unsubscribe()
        self.bus.emit(Event, name=EventName.CA_UP, ca="le")
        self.assertEqual(seen.events, [])

    def test_every_name_has_a_kind(self) -> None:
        """
        Each event name has its class; a class refuses a name it does not
        carry the data of.
        """
        self.assertEqual(set(EVENT_TYPES), set(EventName))
        self.assertIs(EVENT_TYPES[EventName.CA_FAILOVER], CaFailover)
        self.assertIs(EVENT_TYPES[EventName.VALIDATION_SUCCEEDED], ValidationEvent)
        with self.assertRaises(ValueError):
            self.bus.emit(Event, name=EventName.CERTIFICATE_ISSUED)
        with self.assertRaises(ValueError):
            self.bus.emit(PolicyEvent, name=EventName.CA_UP)

    def test_typed_data(self) -> None:
        """
        Durations are numbers, kept to the millisecond the wire shows.
        """
        event = self.bus.emit(ValidationEvent, name=EventName.VALIDATION_SUCCEEDED, method="dns-cname", seconds=1.23449)
        self.assertEqual((event.method, event.seconds), ("dns-cname", 1.234))
        self.assertEqual(event.data(), {"method": "dns-cname", "seconds": 1.234})
        self.assertEqual(CertificateIssued.data_fields(), ("mode", "serial", "seconds", "replaces"))
        self.assertEqual(self.bus.emit(CaFailover).data(), {})


class FormatTests(SynchronousTestCase):
    def event(self, name: EventName = EventName.CA_FAILOVER, **kw: Any) -> Any:
        clock = Clock()
        clock.advance(1_800_000_000.25)
        return EventBus(clock).emit(EVENT_TYPES[name], name=name, **kw)

    def test_structure(self) -> None:
        event = self.event(order_id="o1", token_id="t1", names=("a.test",), ca="backup", from_ca="le", to_ca="backup")
        message = format_rfc5424(event, hostname="box", procid="42").decode()
        match = RFC5424.fullmatch(message)
        assert match is not None, message
        self.assertEqual(match["pri"], str(16 * 8 + 4))
        self.assertEqual(match["ts"], "2027-01-15T08:00:00.250000Z")
        self.assertEqual(
            (match["host"], match["app"], match["procid"], match["msgid"]),
            ("box", "acme-appliance", "42", "ca.failover"),
        )
        self.assertIn('event="ca.failover"', match["sd"])
        self.assertIn('from_ca="le"', match["sd"])
        self.assertTrue(match["msg"].startswith("event=ca.failover order_id=o1 token_id=t1 names=a.test ca=backup"))
        self.assertIn("from_ca=le to_ca=backup", match["msg"])

    def test_info_severity(self) -> None:
        message = format_rfc5424(self.event(EventName.CERTIFICATE_ISSUED), hostname="box").decode()
        self.assertTrue(message.startswith(f"<{16 * 8 + 6}>1 "))

    def test_details_text(self) -> None:
        """
        The kind's data follow the common fields, in their order, as text
        (seconds with three decimals); the error comes last.
        """
        event = self.event(
            EventName.CERTIFICATE_ISSUED, order_id="o1", ca="le", error="late", mode="new", serial="0a1b", seconds=2.5
        )
        self.assertEqual(
            event.fields(),
            [
                ("order_id", "o1"),
                ("ca", "le"),
                ("mode", "new"),
                ("serial", "0a1b"),
                ("seconds", "2.500"),
                ("error", "late"),
            ],
        )
        self.assertEqual(event.to_json()["details"], {"mode": "new", "serial": "0a1b", "seconds": "2.500"})
        message = format_rfc5424(event, hostname="box").decode()
        self.assertIn('ca="le" mode="new" serial="0a1b" seconds="2.500" error="late"]', message)
        self.assertTrue(message.endswith("ca=le mode=new serial=0a1b seconds=2.500 error=late"))
        self.assertNotIn("details", self.event(EventName.CA_FAILOVER).to_json())

    def test_escaping(self) -> None:
        """
        C{"}, C{\\} and C{]} are escaped in structured data (RFC 5424
        section 6.3.3); the message quotes values with spaces.
        """
        event = self.event(EventName.ORDER_FAILED, error='bad "thing" ] \\ here')
        message = format_rfc5424(event, hostname="box").decode()
        match = RFC5424.fullmatch(message)
        assert match is not None, message
        self.assertIn(r'error="bad \"thing\" \] \\ here"', match["sd"])
        self.assertIn(r'error="bad \"thing\" ] \\ here"', match["msg"])


class TargetTests(SynchronousTestCase):
    def test_good(self) -> None:
        self.assertEqual(parse_syslog_target("udp:127.0.0.1:514"), SyslogTarget(SyslogTransport.UDP, "127.0.0.1", 514))
        self.assertEqual(
            parse_syslog_target("tcp:logs.example.net:6514"),
            SyslogTarget(SyslogTransport.TCP, "logs.example.net", 6514),
        )
        self.assertEqual(parse_syslog_target("udp:[::1]:514"), SyslogTarget(SyslogTransport.UDP, "::1", 514))
        self.assertEqual(parse_syslog_target("unix:/dev/log"), SyslogTarget(SyslogTransport.UNIX, path="/dev/log"))
        self.assertEqual(str(parse_syslog_target("udp:[::1]:514")), "udp:[::1]:514")

    def test_bad(self) -> None:
        for bad in (
            "",
            "udp",
            "udp:",
            "http://x",
            "udp:host",
            "udp:host:0",
            "udp:host:99999",
            "unix:dev/log",
            "tcp:[::1:514",
        ):
            with self.assertRaises(ValueError, msg=bad) as caught:
                parse_syslog_target(bad)
            self.assertIn(repr(bad), str(caught.exception))

    def test_wording(self) -> None:
        """
        The problems are worded as the configuration reports them.
        """
        for bad, problem in [
            ("smtp:a:25", "use udp:HOST:PORT, tcp:HOST:PORT or unix:/path"),
            ("udp::514", "use udp:HOST:PORT, tcp:HOST:PORT or unix:/path"),
            ("udp:a:b:514", "use udp:HOST:PORT, tcp:HOST:PORT or unix:/path"),
            ("udp:host:0", "port '0' is not a number from 1 to 65535"),
            ("unix:dev/log", "the socket path must be absolute"),
        ]:
            with self.assertRaises(ValueError, msg=bad) as caught:
                parse_syslog_target(bad)
            self.assertEqual(str(caught.exception), f"{bad!r}: {problem}")


class _Collector(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


class _StreamCollector(Protocol):
    def __init__(self, received: list[bytes]) -> None:
        self.received = received

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("condition not met in time")


def octet_frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    return frames


class SyslogSinkTests(TestCase):
    def notifier(self, target: str, **kw: Any) -> SyslogNotifier:
        sink = SyslogNotifier(reactor, parse_syslog_target(target), hostname="box", **kw)
        sink.startService()
        self.addCleanup(sink.stopService)
        return sink

    def emit(self, sink: SyslogNotifier, *names: EventName) -> None:
        bus = EventBus(reactor)
        bus.subscribe(sink)
        for name in names:
            bus.emit(EVENT_TYPES[name], name=name, order_id="o1", ca="le")

    def test_udp(self) -> Deferred[None]:
        collector = _Collector()
        port = reactor.listenUDP(0, collector, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sink = self.notifier(f"udp:127.0.0.1:{port.getHost().port}")
        self.emit(sink, EventName.ORDER_FAILED)

        async def check() -> None:
            await eventually(lambda: collector.received)
            self.assertIn(b"event=order.failed order_id=o1 ca=le", collector.received[0])
            self.assertIsNotNone(RFC5424.fullmatch(collector.received[0].decode()))

        return Deferred.fromCoroutine(check())

    def test_tcp_queues_until_connected_and_drops_oldest(self) -> Deferred[None]:
        """
        With no server, messages wait in the bounded queue (the oldest
        dropped and counted); once a server listens they arrive, octet
        counted.
        """
        probe = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        port_number = probe.getHost().port
        dropped: list[Any] = []
        metrics = Metrics()

        def on_drop(event: Any) -> None:
            dropped.append(event)
            metrics.dropped("syslog")

        async def check() -> None:
            await probe.stopListening()
            sink = self.notifier(f"tcp:127.0.0.1:{port_number}", queue_size=2, on_drop=on_drop, reconnect_delay=0.05)
            self.emit(sink, EventName.ORDER_CREATED, EventName.ORDER_PROCESSING, EventName.CERTIFICATE_ISSUED)
            self.assertEqual(sink.pending(), 2)
            self.assertEqual([e.name for e in dropped], [EventName.ORDER_CREATED])
            self.assertEqual(metrics.value("acme_appliance_notifications_dropped_total", sink="syslog"), 1)
            received: list[bytes] = []
            server = reactor.listenTCP(
                port_number, Factory.forProtocol(lambda: _StreamCollector(received)), interface="127.0.0.1"
            )
            self.addCleanup(server.stopListening)
            await eventually(lambda: len(octet_frames(b"".join(received))) == 2, timeout=10)
            frames = octet_frames(b"".join(received))
            self.assertIn(b"event=order.processing", frames[0])
            self.assertIn(b"event=certificate.issued", frames[1])
            self.assertEqual(sink.pending(), 0)
            # Connected: sent at once.
            self.emit(sink, EventName.CA_UP)
            await eventually(lambda: len(octet_frames(b"".join(received))) == 3)

        return Deferred.fromCoroutine(check())

    def test_filtered_events(self) -> Deferred[None]:
        collector = _Collector()
        port = reactor.listenUDP(0, collector, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sink = self.notifier(f"udp:127.0.0.1:{port.getHost().port}", events=frozenset({EventName.CA_DOWN}))
        self.emit(sink, EventName.ORDER_CREATED, EventName.CA_DOWN)

        async def check() -> None:
            await eventually(lambda: collector.received)
            await deferLater(reactor, 0.05)
            self.assertEqual(len(collector.received), 1)
            self.assertIn(b"event=ca.down", collector.received[0])

        return Deferred.fromCoroutine(check())

    def test_missing_unix_socket(self) -> None:
        """
        A local socket that does not exist: events are dropped and counted,
        startup does not fail.
        """
        dropped: list[Any] = []
        with capturedLogs() as logs:
            sink = self.notifier("unix:/nonexistent/acme-appliance-log", on_drop=dropped.append)
        self.emit(sink, EventName.CA_DOWN)
        self.assertEqual(len(dropped), 1)
        self.assertTrue(any("cannot open syslog target" in str(e.get("log_format")) for e in logs))

    def test_unix(self) -> Deferred[None]:
        """
        Datagrams reach a local socket, and still do after the daemon
        restarts with a new socket at the same path.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "log")
        collector = _Collector()
        server = reactor.listenUNIXDatagram(path, collector)
        dropped: list[Any] = []
        sink = self.notifier(f"unix:{path}", on_drop=dropped.append)
        self.emit(sink, EventName.CA_DOWN)

        async def check() -> None:
            nonlocal server
            await eventually(lambda: collector.received)
            self.assertIsNotNone(RFC5424.fullmatch(collector.received[0].decode()))
            await server.stopListening()
            os.unlink(path)
            restarted = _Collector()
            server = reactor.listenUNIXDatagram(path, restarted)
            self.addCleanup(server.stopListening)
            self.emit(sink, EventName.CA_UP)
            await eventually(lambda: restarted.received)
            self.assertIn(b"event=ca.up", restarted.received[0])
            self.assertEqual(dropped, [])

        return Deferred.fromCoroutine(check())

    def test_unix_daemon_starts_later(self) -> Deferred[None]:
        """
        Until the local socket exists events are dropped, logged once; the
        first event after it appears is delivered.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "log")
        dropped: list[Any] = []
        with capturedLogs() as logs:
            sink = self.notifier(f"unix:{path}", on_drop=dropped.append)
            self.emit(sink, EventName.ORDER_CREATED, EventName.ORDER_PROCESSING)
        self.assertEqual(len(dropped), 2)
        self.assertEqual(
            [e["log_format"] for e in logs if "syslog target" in e["log_format"]],
            ["cannot open syslog target {target}: {error}"],
        )
        collector = _Collector()
        server = reactor.listenUNIXDatagram(path, collector)
        self.addCleanup(server.stopListening)
        with capturedLogs() as logs:
            self.emit(sink, EventName.CERTIFICATE_ISSUED)
        self.assertEqual(len(dropped), 2)
        self.assertTrue(any("reachable again" in e["log_format"] for e in logs))

        async def check() -> None:
            await eventually(lambda: collector.received)
            self.assertIn(b"event=certificate.issued", collector.received[0])

        return Deferred.fromCoroutine(check())

    def test_udp_host_name(self) -> Deferred[None]:
        """
        A host name is resolved once, without blocking; messages sent
        meanwhile wait and then go.
        """
        collector = _Collector()
        port = reactor.listenUDP(0, collector, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sink = self.notifier(f"udp:localhost:{port.getHost().port}")
        self.emit(sink, EventName.ORDER_CREATED, EventName.CA_UP)

        async def check() -> None:
            await eventually(lambda: len(collector.received) == 2)
            self.assertIn(b"event=order.created", collector.received[0])

        return Deferred.fromCoroutine(check())


class _UDPPort:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, address: Any) -> None:
        self.sent.append((data, address))

    def stopListening(self) -> None:
        pass


class _ResolvingReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.resolving: dict[str, Deferred[str]] = {}
        self.port = _UDPPort()

    def resolve(self, name: str) -> Deferred[str]:
        return self.resolving.setdefault(name, Deferred())

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> _UDPPort:
        return self.port


class ResolutionTests(SynchronousTestCase):
    def sink(self, **kw: Any) -> tuple[_ResolvingReactor, SyslogNotifier]:
        fake = _ResolvingReactor()
        sink = SyslogNotifier(fake, parse_syslog_target("udp:logs.test:514"), hostname="box", **kw)
        sink.startService()
        self.addCleanup(sink.stopService)
        return fake, sink

    def test_queue_while_resolving(self) -> None:
        dropped: list[Any] = []
        fake, sink = self.sink(queue_size=2, on_drop=dropped.append)
        bus = EventBus(fake)
        bus.subscribe(sink)
        for name in (EventName.ORDER_CREATED, EventName.ORDER_PROCESSING, EventName.CERTIFICATE_ISSUED):
            bus.emit(EVENT_TYPES[name], name=name)
        self.assertEqual([e.name for e in dropped], [EventName.ORDER_CREATED])
        fake.resolving["logs.test"].callback("192.0.2.7")
        self.assertEqual([address for _, address in fake.port.sent], [("192.0.2.7", 514)] * 2)
        self.assertIn(b"event=order.processing", fake.port.sent[0][0])
        bus.emit(Event, name=EventName.CA_UP)
        self.assertEqual(len(fake.port.sent), 3)

    def test_unresolvable(self) -> None:
        """
        A name that does not resolve: logged, queued and later events are
        dropped, nothing raises (C{on_drop} may be left out).
        """
        fake, sink = self.sink()
        bus = EventBus(fake)
        bus.subscribe(sink)
        bus.emit(Event, name=EventName.CA_DOWN)
        with capturedLogs() as logs:
            fake.resolving["logs.test"].errback(OSError("no such host"))
        bus.emit(Event, name=EventName.CA_UP)
        self.assertEqual(fake.port.sent, [])
        self.assertTrue(any("cannot open syslog target" in str(e.get("log_format")) for e in logs))


class JournalTests(SynchronousTestCase):
    def test_history_and_time_range(self) -> None:
        from acme_appliance.notify import EventJournal
        from acme_appliance.storage import MemoryStore

        clock = Clock()
        clock.advance(1_800_000_000)
        store = MemoryStore(clock)
        journal = EventJournal(store, retention=7200)
        bus = EventBus(clock)
        bus.subscribe(journal)
        bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1", names=["a.test"])
        clock.advance(3600)
        bus.emit(CertificateIssued, order_id="o1", ca="le", mode="new")
        bus.emit(Event, name=EventName.CA_DOWN, ca="le")

        def run(coroutine: Any) -> Any:
            return self.successResultOf(Deferred.fromCoroutine(coroutine))

        history = run(journal.order_history("o1"))
        self.assertEqual([e.name for e in history], [EventName.ORDER_CREATED, EventName.CERTIFICATE_ISSUED])
        self.assertEqual(history[1].mode, "new")
        self.assertEqual(history[0].names, ("a.test",))
        recent = run(journal.between(clock.seconds() - 60, clock.seconds()))
        self.assertEqual([e.name for e in recent], [EventName.CERTIFICATE_ISSUED, EventName.CA_DOWN])
        self.assertEqual(len(run(journal.between(0, clock.seconds()))), 3)
        # Entries expire after the retention period.
        clock.advance(7201)
        self.assertEqual(run(journal.order_history("o1")), [])

    def test_store_away_then_back(self) -> None:
        """
        An event emitted while the store is away is written once it is
        back (the same entry, once); without a clock it is lost as before.
        """
        from acme_appliance.notify import EventJournal
        from acme_appliance.storage import MemoryStore, StorageError

        clock = Clock()
        clock.advance(1_800_000_000)
        store = MemoryStore(clock)
        away = [True]
        real_set = store.set

        async def flaky_set(key: str, value: bytes, *, ttl: float | None = None) -> None:
            if away[0]:
                raise StorageError("redis at 127.0.0.1:6379 is unavailable: connection refused")
            await real_set(key, value, ttl=ttl)

        self.patch(store, "set", flaky_set)
        journal = EventJournal(store, clock=clock)
        lost = EventJournal(store)
        with capturedLogs() as logs:
            for sink in (journal, lost):
                bus = EventBus(clock)
                bus.subscribe(sink)
                bus.emit(CertificateIssued, order_id="o1", ca="le", mode="new")
            clock.advance(0.5)
            clock.advance(1.0)
            self.assertEqual(journal.pending, 1)
            away[0] = False
            clock.advance(2.0)
        self.assertEqual(journal.pending, 0)
        history = self.successResultOf(Deferred.fromCoroutine(journal.order_history("o1")))
        self.assertEqual([e.name for e in history], [EventName.CERTIFICATE_ISSUED])
        # The journal without a clock lost it, in one warning line.
        lost_lines = [e for e in logs if e.get("log_format", "").startswith("cannot journal event")]
        self.assertEqual([e["log_level"] for e in lost_lines], [LogLevel.warn])
        self.assertFalse(any(e.get("log_failure") for e in logs))

    def test_typed_records(self) -> None:
        """
        A record keeps the text details of the wire and the typed data
        read back.
        """
        from acme_appliance.notify import EventJournal
        from acme_appliance.storage import MemoryStore, keys

        clock = Clock()
        store = MemoryStore(clock)
        bus = EventBus(clock)
        bus.subscribe(EventJournal(store))
        issued = bus.emit(CertificateIssued, order_id="o1", ca="le", mode="reissue", serial="ab", seconds=0.1234)
        [(_, raw)] = self.successResultOf(Deferred.fromCoroutine(store.scan(keys.order_events("o1"))))
        stored = json.loads(raw)
        self.assertEqual(stored["details"], {"mode": "reissue", "serial": "ab", "seconds": "0.123"})
        self.assertEqual(stored["data"], {"mode": "reissue", "serial": "ab", "seconds": 0.123})
        history = self.successResultOf(Deferred.fromCoroutine(EventJournal(store).order_history("o1")))
        self.assertEqual(history, [issued])

    def test_records_of_before_typed_events(self) -> None:
        """
        Records written when events carried text details still load, with
        typed data; an unreadable duration is left out.
        """
        from acme_appliance.notify import EventJournal
        from acme_appliance.storage import MemoryStore, keys

        store = MemoryStore(Clock())
        old = [
            {
                "event": "certificate.issued",
                "time": "1970-01-01T00:00:10.000000Z",
                "t": 10.0,
                "order_id": "o1",
                "ca": "le",
                "outcome": "valid",
                "names": ["a.test"],
                "details": {"mode": "new", "serial": "ab", "seconds": "1.234"},
            },
            {
                "event": "validation.succeeded",
                "time": "1970-01-01T00:00:11.000000Z",
                "t": 11.0,
                "order_id": "o1",
                "names": [],
                "details": {"method": "dns-cname", "seconds": "soon"},
            },
            {
                "event": "ca.failover",
                "time": "1970-01-01T00:00:12.000000Z",
                "t": 12.0,
                "order_id": "o1",
                "names": [],
                "details": {"from_ca": "le", "to_ca": "backup"},
            },
            {
                "event": "order.processing",
                "time": "1970-01-01T00:00:13.000000Z",
                "t": 13.0,
                "order_id": "o1",
                "names": [],
            },
        ]
        for i, record in enumerate(old):
            key = keys.order_events("o1") + f"{i:020d}-000000"
            self.successResultOf(Deferred.fromCoroutine(store.set(key, json.dumps(record).encode())))
        issued, validated, failover, processing = self.successResultOf(
            Deferred.fromCoroutine(EventJournal(store).order_history("o1"))
        )
        assert isinstance(issued, CertificateIssued)
        assert isinstance(validated, ValidationEvent)
        assert isinstance(failover, CaFailover)
        self.assertEqual(
            (issued.time, issued.names, issued.mode, issued.serial, issued.seconds),
            (10.0, ("a.test",), "new", "ab", 1.234),
        )
        self.assertEqual(issued.to_json(), {k: v for k, v in old[0].items() if k != "t"})
        self.assertEqual((validated.method, validated.seconds), ("dns-cname", None))
        self.assertEqual((failover.from_ca, failover.to_ca), ("le", "backup"))
        self.assertEqual((type(processing), processing.name), (Event, EventName.ORDER_PROCESSING))


class _WriteLog(MemoryStore):
    """
    A memory store that records the keys of each ordered write, away
    while C{away} is set, and refusing (as a bug would) a write with a
    key containing C{refused}.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.writes: list[list[str]] = []
        self.away = False
        self.refused: str | None = None

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        if self.away:
            raise StorageError("the store is away")
        if self.refused is not None and any(self.refused in w.key for w in writes):
            raise ValueError("refused")
        self.writes.append([w.key for w in writes])
        return await super().write_in_order(writes)


class JournalGatheringTests(SynchronousTestCase):
    """
    A journal with a window writes the events of each window together.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = _WriteLog(self.clock)
        self.journal = EventJournal(self.store, clock=self.clock, window=0.02)
        self.bus = EventBus(self.clock)
        self.bus.subscribe(self.journal)

    def history(self, order_id: str) -> list[EventName]:
        return [e.name for e in self.successResultOf(Deferred.fromCoroutine(self.journal.order_history(order_id)))]

    def test_one_write_a_window(self) -> None:
        """
        The events of one window are written in one store write when it
        ends, in the order they came; waiting for an order's events lasts
        until then.
        """
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.clock.advance(0.01)
        self.bus.emit(Event, name=EventName.CA_DOWN, ca="le")
        self.bus.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        written = Deferred.fromCoroutine(self.journal.written("o1"))
        self.assertEqual(self.store.writes, [])
        self.assertNoResult(written)
        self.clock.advance(0.01)
        self.successResultOf(written)
        [write] = self.store.writes
        self.assertEqual(
            [key.split("/")[0] for key in write], ["event", "order-event", "event", "event", "order-event"]
        )
        self.assertEqual(self.history("o1"), [EventName.ORDER_CREATED, EventName.ORDER_PROCESSING])
        # The next event opens the next window.
        self.bus.emit(Event, name=EventName.CA_UP, ca="le")
        self.clock.advance(0.02)
        self.assertEqual(len(self.store.writes), 2)

    def test_full_window_written_at_once(self) -> None:
        """
        Once L{MAX_GATHERED} events are gathered they are written without
        waiting for the window to end.
        """
        self.patch(_journal, "MAX_GATHERED", 3)
        for _ in range(4):
            self.bus.emit(Event, name=EventName.CA_UP, ca="le")
        self.assertEqual([len(w) for w in self.store.writes], [3])
        self.clock.advance(0.02)
        self.assertEqual([len(w) for w in self.store.writes], [3, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_store_away(self) -> None:
        """
        A window's events wait together for a store that is away, counted
        one by one, and are written together once it is back.
        """
        self.store.away = True
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.bus.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.clock.advance(0.02)
        self.assertEqual(self.journal.pending, 2)
        self.store.away = False
        self.clock.advance(UNAVAILABLE_RETRY.delay(0))
        self.assertEqual(self.journal.pending, 0)
        self.assertEqual(len(self.store.writes), 1)
        self.assertEqual(self.history("o1"), [EventName.ORDER_CREATED, EventName.ORDER_PROCESSING])

    def test_one_bad_event_loses_only_itself(self) -> None:
        """
        When a window's write fails for another reason than the store
        being away, each event is written on its own: the one that cannot
        be is reported, once, and the others are kept.
        """
        self.store.refused = "bad"
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="bad")
        self.bus.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        with capturedLogs() as logs:
            self.clock.advance(0.02)
        self.assertEqual(self.history("o1"), [EventName.ORDER_CREATED, EventName.ORDER_PROCESSING])
        self.assertEqual(self.history("bad"), [])
        reported = [e for e in logs if e.get("log_format", "").startswith("cannot journal event")]
        self.assertEqual([(e["event"], e["log_level"]) for e in reported], [("order.created", LogLevel.critical)])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.journal.pending, 0)

    def test_flush(self) -> None:
        """
        L{EventJournal.flush} (at a stop) writes the gathered events at
        once; a store that is away then is not waited for.
        """
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.successResultOf(Deferred.fromCoroutine(self.journal.flush()))
        self.assertEqual(self.history("o1"), [EventName.ORDER_CREATED])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.store.away = True
        self.bus.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.bus.emit(Event, name=EventName.CA_DOWN, ca="le")
        with capturedLogs() as logs:
            self.successResultOf(Deferred.fromCoroutine(self.journal.flush()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.journal.pending, 0)
        # Each event lost is reported, once.
        lost = [(e["event"], e["log_level"]) for e in logs if "cannot journal" in e.get("log_format", "")]
        self.assertEqual(lost, [("order.processing", LogLevel.warn), ("ca.down", LogLevel.warn)])
        self.store.away = False
        self.assertEqual(self.history("o1"), [EventName.ORDER_CREATED])

    def test_readers_see_unwritten_events(self) -> None:
        """
        An order's history and the events of a time range include the
        events handed to the journal and not written yet, once each.
        """
        self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id="o1")
        self.clock.advance(0.02)
        self.store.away = True
        self.bus.emit(Event, name=EventName.ORDER_PROCESSING, order_id="o1")
        self.bus.emit(Event, name=EventName.CA_DOWN, ca="le")
        now = self.clock.seconds()

        def between() -> list[EventName]:
            found = self.successResultOf(Deferred.fromCoroutine(self.journal.between(now - 60, now)))
            return [e.name for e in found]

        everything = [EventName.ORDER_CREATED, EventName.ORDER_PROCESSING, EventName.CA_DOWN]
        self.assertEqual(self.history("o1"), everything[:2])
        self.assertEqual(between(), everything)
        self.clock.advance(0.02)
        self.assertEqual(self.journal.pending, 2)
        self.assertEqual(between(), everything)
        self.store.away = False
        self.clock.advance(UNAVAILABLE_RETRY.delay(0))
        self.assertEqual(len(self.store.writes), 2)
        self.assertEqual(self.history("o1"), everything[:2])
        self.assertEqual(between(), everything)

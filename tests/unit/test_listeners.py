"""
Every listener is bounded: a total deadline for a request's head and body,
limits on the request line, header lines and body, a cap on connections
(HTTP and DNS over TCP), metric labels from a closed set, and the
C{[listeners]} configuration.
"""

from __future__ import annotations

import json
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, Logger, LoggingFile, LogLevel
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from acme_appliance._appliance import StartupError
from acme_appliance._listeners import BoundedSite, ConnectionLimit, ListenerLimits, default_max_connections
from acme_appliance._logs import ClassicLogFormat
from acme_appliance._workers import ListeningSockets
from acme_appliance.acme import endpoint_of
from acme_appliance.acme._paths import ACME_RESOURCES, OTHER_ENDPOINT, ROOT_ENDPOINT, TOP_SEGMENTS
from acme_appliance.stats import Metrics
from acme_appliance.stats import _metrics as stats_metrics
from acme_appliance.storage import MemoryStore
from acme_appliance.tap import ApplianceService, redacting_log_formatter, site
from acme_appliance.validation import DcvAuthority, DcvDNSServerFactory, ValidationValues

from .test_config import ConfigTestCase
from .test_log_format import use_time_zone

PEER = IPv4Address("TCP", "192.0.2.7", 40000)
GET = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"


class _Ok(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"fine"

    def render_POST(self, request: Any) -> bytes:
        return b"posted %d args %r" % (len(request.content.read()), sorted(request.args))


class HttpCase(SynchronousTestCase):
    limits: ListenerLimits | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.site = site(_Ok(), limits=self.limits)
        self.site.reactor = self.clock

    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        return protocol, transport

    def send(self, data: bytes) -> StringTransport:
        protocol, transport = self.connect()
        protocol.dataReceived(data)
        return transport

    def assertRefused(self, transport: StringTransport, status: bytes) -> None:
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 " + status + b" "), transport.value()[:80])
        self.assertTrue(transport.disconnecting)


class AccessLogTests(HttpCase):
    """
    The access log: one line a request, the event twisted.web's write to the
    global log file would make, and the text twistd writes for it.
    """

    LINE = '"192.0.2.7" - - [01/Jan/1970:00:00:00 +0000] "GET /ok HTTP/1.1" 200 4 "-" "-"'

    def setUp(self) -> None:
        super().setUp()
        use_time_zone(self, "UTC")
        self.events: list[LogEvent] = []
        self.log_file = LoggingFile(
            Logger(namespace="twisted.python.log", observer=cast(ILogObserver, self.events.append))
        )
        self.patch(legacy_log, "logfile", self.log_file)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def test_event_as_the_log_file_makes_it(self) -> None:
        self.clock.advance(0.5)
        self.send(GET)
        self.log_file.write(self.LINE + "\n")
        direct, written = self.events
        self.assertEqual(direct["log_time"], 0.5)
        self.assertEqual({**direct, "log_time": 0}, {**written, "log_time": 0})
        self.assertEqual(direct["log_io"], self.LINE)
        self.assertEqual(direct["log_level"], LogLevel.info)

    def test_twistd_line(self) -> None:
        self.send(GET)
        [event] = self.events
        self.assertEqual(
            ClassicLogFormat()(event), "1970-01-01T00:00:00+0000 [twisted.python.log#info] " + self.LINE + "\n"
        )

    def test_own_log_file(self) -> None:
        path = self.mktemp()
        own = BoundedSite(_Ok(), ListenerLimits(), logFormatter=redacting_log_formatter, logPath=path)
        own.reactor = self.clock
        own.startFactory()
        self.addCleanup(own.stopFactory)
        protocol = own.buildProtocol(PEER)
        protocol.makeConnection(StringTransport(peerAddress=PEER))
        protocol.dataReceived(GET)
        with open(path) as f:
            self.assertEqual(f.read(), self.LINE + "\n")
        self.assertEqual(self.events, [])


class DeadlineTests(HttpCase):
    def test_trickled_header_closed_at_total_deadline(self) -> None:
        """
        A request head dripped one byte every 5 seconds is answered 408 and
        closed once the default 30 s have passed, though no gap reached the
        idle timeout.
        """
        protocol, transport = self.connect()
        head = b"GET /ok HTTP/1.1\r\nX-Slow: " + b"a" * 100
        sent = 0
        while not transport.disconnecting and sent < len(head):
            protocol.dataReceived(head[sent : sent + 1])
            sent += 1
            self.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        self.assertLessEqual(sent * 5, ListenerLimits().request_timeout)
        self.assertIn(b" 408 ", transport.value())

    def test_trickled_body_closed_at_total_deadline(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(10):
            protocol.dataReceived(b"x")
            self.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        self.assertIn(b" 408 ", transport.value())

    def test_idle_connection_closed_silently(self) -> None:
        protocol, transport = self.connect()
        self.clock.advance(ListenerLimits().request_timeout)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_served_request_and_next_deadline(self) -> None:
        """
        A request that arrives in time is served; the deadline then starts
        again for the next request on the connection.
        """
        protocol, transport = self.connect()
        self.clock.advance(20)
        protocol.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        self.assertFalse(transport.disconnecting)
        self.clock.advance(20)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)

    def test_abandoned_connection_aborted(self) -> None:
        """
        A peer that reads nothing after the deadline is aborted.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET")
        self.clock.advance(30)
        self.assertTrue(transport.disconnecting)
        self.clock.advance(15)
        self.assertTrue(transport.disconnected)
        protocol.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SizeTests(HttpCase):
    limits = ListenerLimits(max_body_bytes=1000)

    def test_long_request_line(self) -> None:
        self.assertRefused(self.send(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n"), b"414")

    def test_long_header_line(self) -> None:
        self.assertRefused(self.send(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"), b"431")

    def test_too_many_headers(self) -> None:
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
        self.assertRefused(self.send(b"GET / HTTP/1.1\r\n" + headers + b"\r\n"), b"431")

    def test_headers_too_large_in_total(self) -> None:
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 7000) for i in range(3))
        self.assertRefused(self.send(b"GET / HTTP/1.1\r\n" + headers + b"\r\n"), b"431")

    def test_declared_body_too_large(self) -> None:
        """
        A declared body over the limit is answered 413 at once with a
        problem document; what the client still sends (up to its declared
        length) is read and dropped, so that it sees the answer, and then
        the connection is closed.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /ok HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"a" * 100)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "))
        self.assertIn(b"Content-Type: application/problem+json", head)
        self.assertEqual(
            json.loads(body),
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": "request body larger than 1000 bytes",
            },
        )
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"a" * 4899)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"a")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value().count(b"HTTP/1.1"), 1)

    def test_refused_body_still_within_deadline(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /ok HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
        self.clock.advance(ListenerLimits().request_timeout)
        self.assertTrue(transport.disconnecting)

    def test_chunked_body_too_large(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /ok HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            protocol.dataReceived(b"3e8\r\n" + b"a" * 1000 + b"\r\n")
        self.assertRefused(transport, b"413")

    def test_within_limits(self) -> None:
        transport = self.send(b"POST /ok HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000)
        self.assertIn(b"posted 1000", transport.value())
        self.assertFalse(transport.disconnecting)

    def test_server_names_no_version(self) -> None:
        """
        Every response names the appliance as its server, without a version
        for a scanner to match (twisted.web would send its own name and
        version).
        """
        head = self.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").value().split(b"\r\n\r\n")[0]
        self.assertIn(b"\r\nServer: acme-appliance\r\n", head + b"\r\n")
        self.assertNotIn(b"Twisted", head)

    def test_form_body_not_parsed(self) -> None:
        """
        A form body stays the body: only the query becomes C{args}.
        """
        body = b"a=1&b=2"
        transport = self.send(
            b"POST /ok?q=3 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertIn(b"posted 7 args [b'q']", transport.value())

    @settings(max_examples=50, deadline=None)
    @given(st.binary(max_size=20000))
    def test_garbage_never_5xx(self, data: bytes) -> None:
        transport = self.send(data + b"\r\n\r\n")
        self.assertNotRegex(transport.value()[:12], rb"^HTTP/1\.1 5")


class _Written(Resource):
    """
    Writes its body as Klein does, with C{write} and C{finish}: the parts
    in the query (C{?part=a&part=b}), with status C{?code=}.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> object:
        request.setResponseCode(int(request.args.get(b"code", [b"200"])[0]))
        for part in request.args.get(b"part", []):
            request.write(part)
        request.finish()
        return NOT_DONE_YET


class ResponseFramingTests(HttpCase):
    """
    A body written at once goes with its length, not in chunks, and no
    response gets a C{Content-Type} the app did not set.
    """

    def setUp(self) -> None:
        super().setUp()
        self.site = site(_Written())
        self.site.reactor = self.clock

    def framed(self, request_line: bytes, *, status: int = 200, length: int | None, body: bytes) -> bytes:
        """
        Send C{request_line}; check the answer's status, its
        C{Content-Length} (C{None}: none) and its body, and that it has no
        C{Content-Type}.  Returns its lower-cased head.
        """
        head, _, got = self.send(request_line + b"\r\nHost: a\r\n\r\n").value().partition(b"\r\n\r\n")
        head = head.lower() + b"\r\n"
        self.assertTrue(head.startswith(b"http/1.1 %d " % status), head)
        if length is None:
            self.assertNotIn(b"content-length", head)
        else:
            self.assertIn(b"\r\ncontent-length: %d\r\n" % length, head)
        self.assertNotIn(b"content-type", head)
        self.assertEqual(got, body)
        return head

    def test_one_write_has_a_length(self) -> None:
        head = self.framed(b"GET /?part=hello HTTP/1.1", length=5, body=b"hello")
        self.assertNotIn(b"transfer-encoding", head)

    def test_empty_body_has_length_zero(self) -> None:
        self.framed(b"GET / HTTP/1.1", length=0, body=b"")

    def test_head_has_the_length_of_get(self) -> None:
        self.framed(b"HEAD /?part=hello HTTP/1.1", length=5, body=b"")

    def test_no_content_has_no_length(self) -> None:
        self.framed(b"GET /?code=204 HTTP/1.1", status=204, length=None, body=b"")

    def test_several_writes_are_chunked(self) -> None:
        head = self.framed(b"GET /?part=ab&part=cde HTTP/1.1", length=None, body=b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
        self.assertIn(b"\r\ntransfer-encoding: chunked\r\n", head)


class AcmeProblemTests(SynchronousTestCase):
    def test_problem_type(self) -> None:
        """
        The ACME listener refuses with ACME C{malformed} problems.
        """
        factory = site(_Ok(), problem_type="urn:ietf:params:acme:error:malformed")
        factory.reactor = Clock()
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /" + b"a" * 9000)
        body = transport.value().partition(b"\r\n\r\n")[2]
        self.assertEqual(json.loads(body)["type"], "urn:ietf:params:acme:error:malformed")
        self.assertEqual(json.loads(body)["status"], 414)


class ConnectionLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.site = site(_Ok())
        self.site.reactor = Clock()
        self.factory = ConnectionLimit(self.site, 3, "test")

    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_cap(self) -> None:
        """
        While N connections are open the N+1th is closed at once; when one
        goes, a new one is served again.
        """
        held = [self.connect() for _ in range(3)]
        self.assertFalse(any(t.disconnecting for _, t in held))
        _, refused = self.connect()
        self.assertTrue(refused.disconnecting)
        self.assertEqual((self.factory.open, self.factory.refused), (3, 1))
        held[0][0].connectionLost(Failure(Exception("gone")))
        protocol, transport = self.connect()
        protocol.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())

    def test_alpn(self) -> None:
        """
        Under TLS the wrapper offers the site's protocols: with none, a
        client offering ALPN gets a handshake failure.
        """
        self.assertIn(b"http/1.1", IProtocolNegotiationFactory(self.factory).acceptableProtocols())

    def test_default_leaves_room(self) -> None:
        """
        Derived from an open-files limit of 1024, four listeners together
        leave at least a quarter of it free.
        """
        each = default_max_connections(4, 1024)
        self.assertGreater(each, 100)
        self.assertLessEqual(4 * each, 1024 - 256)
        self.assertEqual(default_max_connections(4, 100), 8)


class DnsConnectionLimitTests(SynchronousTestCase):
    def test_cap(self) -> None:
        clock = Clock()
        values = ValidationValues(MemoryStore(clock))
        authority = DcvAuthority("dcv.example.net", ("ns1.dcv.example.net",), values, clock=clock)
        factory = DcvDNSServerFactory(authority, clock=clock, max_tcp_connections=2)
        held = [factory.buildProtocol(PEER) for _ in range(2)]
        for protocol in held:
            assert protocol is not None
            protocol.makeConnection(StringTransport())
        self.assertIsNone(factory.buildProtocol(PEER))
        assert held[0] is not None
        held[0].connectionLost(Failure(Exception("gone")))
        self.assertIsNotNone(factory.buildProtocol(PEER))


LABELS = ACME_RESOURCES | TOP_SEGMENTS | {OTHER_ENDPOINT, ROOT_ENDPOINT}
segment = st.one_of(st.sampled_from(sorted(LABELS)), st.text(max_size=12), st.from_regex(r"[a-z][a-z0-9.-]{0,31}"))


class EndpointLabelTests(SynchronousTestCase):
    @given(st.lists(segment, max_size=6), st.booleans())
    def test_closed_set(self, segments: list[str], acme: bool) -> None:
        path = "/" + "/".join((["acme", "tok"] if acme else []) + segments)
        self.assertIn(endpoint_of(path.encode("utf-8", "surrogatepass")), LABELS)

    def test_known(self) -> None:
        self.assertEqual(endpoint_of(b"/acme/tok/new-order"), "new-order")
        self.assertEqual(endpoint_of(b"/health"), "health")
        self.assertEqual(endpoint_of(b"/.well-known/acme-challenge/x"), ".well-known")
        self.assertEqual(endpoint_of(b"/"), "/")
        self.assertEqual(endpoint_of(b"/random123"), "other")
        self.assertEqual(endpoint_of(b"/acme/tok/made-up"), "other")

    @settings(max_examples=20, deadline=None)
    @given(st.lists(st.from_regex(r"/[a-z][a-z0-9.-]{0,31}", fullmatch=True), min_size=50, max_size=200))
    def test_series_bounded(self, paths: list[str]) -> None:
        """
        However many different paths clients ask for, the request counter
        has at most one series per closed label value.
        """
        metrics = Metrics()
        for path in paths:
            metrics.request("validation.fileproxy", endpoint_of(path.encode()), 404)
        series = [
            line
            for line in metrics.exposition().splitlines()
            if line.startswith(b"acme_appliance_http_requests_total{")
        ]
        self.assertLessEqual(len(series), len(LABELS))

    def test_counts_beyond_the_kept_children(self) -> None:
        """
        Counting stays right when more label sets were counted than the
        children kept looked up.
        """
        self.patch(stats_metrics, "MAX_CHILDREN", 2)
        metrics = Metrics()
        for status in (200, 201, 404, 200, 404, 200):
            metrics.request("acme", "new-order", status)
        counts = {
            line.split(b'status="')[1][:3]: float(line.rsplit(b" ", 1)[1])
            for line in metrics.exposition().splitlines()
            if line.startswith(b"acme_appliance_http_requests_total{")
        }
        self.assertEqual(counts, {b"200": 3.0, b"201": 1.0, b"404": 2.0})
        self.assertLessEqual(len(metrics._children), 2)


class ListenersConfigTests(ConfigTestCase):
    def test_defaults(self) -> None:
        listeners = self.load().listeners
        self.assertEqual((listeners.request_timeout, listeners.max_connections), (30.0, 0))

    def test_values(self) -> None:
        listeners = self.load(lambda d: d.update(listeners={"request_timeout": 5, "max_connections": 100})).listeners
        self.assertEqual((listeners.request_timeout, listeners.max_connections), (5.0, 100))

    def test_bad(self) -> None:
        self.assertProblem(lambda d: d.update(listeners={"request_timeout": 0}), "listeners.request_timeout", "greater")
        self.assertProblem(lambda d: d.update(listeners={"max_connections": -1}), "listeners.max_connections", "range")
        self.assertProblem(lambda d: d.update(listeners={"max_conns": 1}), "listeners.max_conns")


class WiringTests(ConfigTestCase):
    def test_every_listener_capped(self) -> None:
        """
        The ACME, admin and file-proxy listeners are capped and bounded, and
        DNS over TCP capped, at C{[listeners] max_connections}.
        """

        def change(data: dict[str, Any]) -> None:
            data["admin"] = {"listen": "tcp:0:interface=127.0.0.1", "api_key_file": "admin.key"}
            data["storage"]["url"] = "memory:"
            data["validation"]["preflight"] = False
            data["listeners"] = {"max_connections": 77, "request_timeout": 9}

        reactor = MemoryReactorClock()
        service = ApplianceService(self.load(change), MemoryStore(reactor), reactor)  # type: ignore[arg-type]
        for name in ("acme", "admin", "validation.fileproxy"):
            factory = cast(Any, service.getServiceNamed(name)).factory
            self.assertIsInstance(factory, ConnectionLimit)
            self.assertEqual(factory.limit, 77)
            self.assertEqual(factory.wrappedFactory.limits.request_timeout, 9)
        acme = cast(Any, service.getServiceNamed("acme")).factory.wrappedFactory
        self.assertEqual(acme.problem_type, "urn:ietf:params:acme:error:malformed")
        dns_tcp = cast(Any, service.getServiceNamed("dns-tcp")).factory
        self.assertEqual(dns_tcp.max_tcp_connections, 77)

    def test_default_from_open_files(self) -> None:
        reactor = MemoryReactorClock()

        def change(data: dict[str, Any]) -> None:
            data["storage"]["url"] = "memory:"
            data["validation"]["preflight"] = False

        config = self.load(change)
        service = ApplianceService(config, MemoryStore(reactor), reactor)  # type: ignore[arg-type]
        factory = cast(Any, service.getServiceNamed("acme")).factory
        self.assertEqual(factory.limit, default_max_connections(3))


class NonceWiringTests(ConfigTestCase):
    """
    Nonces go through the store only where another node may redeem them
    (a Redis store); worker processes share a table in memory.
    """

    def service(
        self, url: str, workers: int = 1, worker: int = 0, fds: dict[str, int] | None = None
    ) -> ApplianceService:
        def change(data: dict[str, Any]) -> None:
            data["storage"]["url"] = url
            data["validation"]["preflight"] = False
            data["acme"]["workers"] = workers

        reactor = MemoryReactorClock()
        sockets = None if fds is None else ListeningSockets(fds, processes=workers, process=worker)
        return ApplianceService(
            self.load(change),
            MemoryStore(reactor),
            reactor,  # type: ignore[arg-type]
            worker=worker,
            sockets=sockets,
        )

    def redeemed_in_store(self, url: str, workers: int = 1) -> bool:
        service = self.service(url, workers)
        nonce = service.nonces.new()
        self.assertTrue(self.successResultOf(Deferred.fromCoroutine(service.nonces.redeem(nonce))))
        self.assertFalse(self.successResultOf(Deferred.fromCoroutine(service.nonces.redeem(nonce))))
        return bool(self.successResultOf(Deferred.fromCoroutine(service.store.scan("nonce/"))))

    def test_one_process_on_a_local_store(self) -> None:
        self.assertFalse(self.redeemed_in_store("memory:"))
        self.assertFalse(self.redeemed_in_store("sqlite:state.db"))

    def test_workers(self) -> None:
        """
        The worker processes of one box share a nonce table, not the store:
        a nonce the main worker gave is redeemed once, by a worker.
        """
        self.assertFalse(self.redeemed_in_store("sqlite:state.db", workers=2))
        main = self.service("sqlite:state.db", workers=2)
        worker = self.service("sqlite:state.db", workers=2, worker=1, fds={"nonces": main.sockets.fds()["nonces"]})
        nonce = main.nonces.new()
        self.assertTrue(self.successResultOf(Deferred.fromCoroutine(worker.nonces.redeem(nonce))))
        self.assertFalse(self.successResultOf(Deferred.fromCoroutine(main.nonces.redeem(nonce))))

    def test_worker_without_table(self) -> None:
        """
        A worker not handed the nonce table does not start.
        """
        e = self.assertRaises(StartupError, self.service, "sqlite:state.db", 2, 1, {})
        self.assertEqual(str(e), "no inherited descriptor for nonces")

    def test_redis(self) -> None:
        self.assertTrue(self.redeemed_in_store("redis://127.0.0.1:6379/0"))

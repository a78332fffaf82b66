"""
The preflight fetch is bounded (body size, no decoding, total time, no
private targets), hostile tenant DNS and web servers give precise problems,
the order deadline cancels a running attempt, and syslog escapes control
characters.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from acme_appliance.ca import CAError, ChallengeType, IssuedCertificate, IssueRequest, PendingChallenge
from acme_appliance.core import ProblemType
from acme_appliance.issuance._failover import FailoverIssuer
from acme_appliance.issuance._health import CAHealth
from acme_appliance.notify import EVENT_TYPES, EventBus, EventName, format_rfc5424
from acme_appliance.storage import MemoryStore
from acme_appliance.validation import FileProxy, Preflight, ValidationValues
from acme_appliance.validation._fetch import non_global

from .test_config import ConfigTestCase, setting
from .test_responder import PUBLIC, ZONE, FakeResolver, FlushingAgent, failure, run

NAME = "www.example.com"
HTTP = PendingChallenge(ChallengeType.HTTP_01, NAME, "t", "t.x")


class Body(Resource):
    """
    Answers every path with 200 and C{body}, with C{headers}.
    """

    isLeaf = True

    def __init__(self, body: bytes, headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.body = body
        self.headers = headers or {}
        self.seen: list[Request] = []

    def render_GET(self, request: Request) -> bytes:
        self.seen.append(request)
        for key, value in self.headers.items():
            request.setHeader(key, value)
        return self.body


class Trickle(Resource):
    """
    Sends a long body one byte every C{interval} seconds, until the client
    goes away.
    """

    isLeaf = True

    def __init__(self, clock: Clock, interval: float = 5.0) -> None:
        super().__init__()
        self.clock = clock
        self.interval = interval
        self.gone = False
        self.sent = 0

    def render_GET(self, request: Request) -> object:
        request.setHeader(b"content-length", b"100000")
        call = self.clock.callLater(self.interval, self._drip, request)

        def lost(_: object) -> None:
            self.gone = True
            if self._call.active():
                self._call.cancel()

        self._call = call
        request.notifyFinish().addBoth(lost)
        return NOT_DONE_YET

    def _drip(self, request: Request) -> None:
        request.write(b"x")
        self.sent += 1
        self._call = self.clock.callLater(self.interval, self._drip, request)


class CutShort(Resource):
    """
    Promises 100 bytes, sends 10, and closes the connection.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> object:
        request.setHeader(b"content-length", b"100")
        request.write(b"0123456789")
        assert request.channel is not None and request.channel.transport is not None
        request.channel.transport.loseConnection()
        return NOT_DONE_YET


class RawCnameResolver(FakeResolver):
    """
    Answers C{lookupCanonicalName} with a CNAME to raw wire bytes.
    """

    def __init__(self, target: bytes) -> None:
        super().__init__({}, {})
        self.target = target

    def lookupCanonicalName(self, name: str, timeout: Any = None) -> Deferred[Any]:
        record = dns.RRHeader(name, dns.CNAME, payload=dns.Record_CNAME(self.target))
        return succeed(([record], [], []))


class PreflightLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.values = ValidationValues(MemoryStore(self.clock))

    def preflight(
        self, web: IResource, *, address: str = PUBLIC, allow_private: bool = False, resolver: Any = None
    ) -> tuple[Preflight, FlushingAgent]:
        agent = FlushingAgent(web)
        check = Preflight(
            resolver=resolver or FakeResolver({}, {NAME: address}),  # type: ignore[arg-type]
            agent=agent,
            clock=self.clock,
            values=self.values,
            dns_zone=ZONE,
            allow_private=allow_private,
        )
        return check, agent

    def test_huge_body(self) -> None:
        """
        A body past 64 KiB fails the check; reading stops there.
        """
        check, _ = self.preflight(Body(b"x" * (10 * 1024 * 1024)))
        error = failure(self, check.check(HTTP))
        self.assertIs(error.problem_type, ProblemType.UNAUTHORIZED)
        self.assertIn(f"http://{NAME}/.well-known/acme-challenge/", error.detail)
        self.assertIn("more than 65536 bytes", error.detail)
        self.assertEqual(run(self, self.values._store.scan("dcv/http/")), [])

    def test_no_decoding(self) -> None:
        """
        Preflight asks for no content encoding, and a gzip body sent anyway
        is opaque bytes: a small bomb is neither inflated nor taken for the
        probe.
        """
        bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
        self.assertLess(len(bomb), 65536)
        web = Body(bomb, {b"content-encoding": b"gzip"})
        check, agent = self.preflight(web)
        error = failure(self, check.check(HTTP))
        self.assertIs(error.problem_type, ProblemType.UNAUTHORIZED)
        self.assertIn("answered 200 without the appliance's probe", error.detail)
        [(method, uri, headers)] = agent.requests
        assert headers is not None
        self.assertIsNone(headers.getRawHeaders(b"accept-encoding"))
        self.assertEqual(web.seen[0].getHeader(b"accept-encoding"), None)

    def test_connects_to_the_checked_address(self) -> None:
        """
        The name is resolved once; the fetch goes to that address with the
        name in the Host header, and follows no redirect.
        """
        check, agent = self.preflight(FileProxy(self.values).resource())
        run(self, check.check(HTTP))
        [(method, uri, headers)] = agent.requests
        self.assertTrue(uri.startswith(f"http://{PUBLIC}:80/.well-known/acme-challenge/".encode()))
        assert headers is not None
        self.assertEqual(headers.getRawHeaders(b"host"), [NAME.encode()])

    def test_trickled_body(self) -> None:
        """
        A body trickled a byte every 5 seconds is cut at the 10 second total
        limit; nothing is left scheduled.
        """
        web = Trickle(self.clock)
        check, agent = self.preflight(web)
        d = Deferred.fromCoroutine(check.check(HTTP))
        for _ in range(9):
            self.clock.advance(1)
            agent.flush()
            self.assertNoResult(d)
        self.clock.advance(1)
        agent.flush()
        error = self.failureResultOf(d, CAError).value
        assert isinstance(error, CAError)
        self.assertIs(error.problem_type, ProblemType.CONNECTION)
        self.assertIn("did not answer in full within 10 seconds", error.detail)
        self.assertTrue(web.gone)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(run(self, self.values._store.scan("dcv/http/")), [])

    def test_private_targets_refused(self) -> None:
        for address, kind in [
            ("127.0.0.1", "a loopback address"),
            ("10.0.0.5", "a private address"),
            ("192.168.1.1", "a private address"),
            ("::1", "a loopback address"),
            ("fe80::1", "a link-local address"),
            ("169.254.169.254", "a link-local address"),
            ("100.64.0.1", "a shared (CGNAT) address"),
            ("0.0.0.0", "an unspecified address"),
            ("224.0.0.1", "a multicast address"),
            ("fd00::1", "a private address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("240.0.0.1", "a reserved address"),
        ]:
            check, agent = self.preflight(FileProxy(self.values).resource(), address=address)
            error = failure(self, check.check(HTTP))
            self.assertIs(error.problem_type, ProblemType.DNS)
            self.assertEqual(
                error.detail,
                f"{NAME} resolves to {address}, {kind}; preflight does not fetch non-global addresses "
                "(set [validation] preflight_allow_private = true to allow)",
            )
            self.assertEqual(agent.requests, [])

    def test_private_targets_allowed(self) -> None:
        check, agent = self.preflight(FileProxy(self.values).resource(), address="10.0.0.5", allow_private=True)
        run(self, check.check(HTTP))
        self.assertEqual(len(agent.requests), 1)

    def test_non_global(self) -> None:
        self.assertIsNone(non_global(PUBLIC))
        self.assertIsNone(non_global("2606:4700::1"))
        self.assertEqual(non_global("100.127.255.255"), "a shared (CGNAT) address")
        self.assertEqual(non_global("::ffff:10.1.2.3"), "a private address")
        self.assertEqual(non_global("example.com"), "not an IP address")


class HostileAnswerTests(SynchronousTestCase):
    """
    What a tenant's DNS or web server sends becomes a precise problem, never
    an unhandled error.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.values = ValidationValues(MemoryStore(self.clock))

    def check(self, challenge: PendingChallenge, resolver: Any, web: IResource) -> CAError:
        preflight = Preflight(
            resolver=resolver, agent=FlushingAgent(web), clock=self.clock, values=self.values, dns_zone=ZONE
        )
        with capturedLogs() as events:
            error = failure(self, preflight.check(challenge))
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])
        return error

    def test_cname_not_text(self) -> None:
        challenge = PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")
        error = self.check(challenge, RawCnameResolver(b"\x80\x81.example."), Resource())
        self.assertIs(error.problem_type, ProblemType.DNS)
        self.assertIn("_acme-challenge.example.com is a CNAME to \\x80\\x81.example, not example.com.", error.detail)

    def test_cname_control_character(self) -> None:
        challenge = PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")
        error = self.check(challenge, RawCnameResolver(b"a\x08\n.example."), Resource())
        self.assertIn("is a CNAME to a\\x08\\x0a.example,", error.detail)
        self.assertIsNone(re.search(r"[\x00-\x1f]", error.detail))

    def test_body_cut_short(self) -> None:
        error = self.check(HTTP, FakeResolver({}, {NAME: PUBLIC}), CutShort())
        self.assertIs(error.problem_type, ProblemType.CONNECTION)
        self.assertIn(f"the answer of http://{NAME}/.well-known/acme-challenge/", error.detail)
        self.assertIn(f"({PUBLIC}) was cut short after 10 bytes", error.detail)


class HangingCA:
    """
    A CA whose C{issue} never returns until cancelled.
    """

    name = "hanging"

    def __init__(self) -> None:
        self.cancelled = 0

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        def cancel(d: Deferred[IssuedCertificate]) -> None:
            self.cancelled += 1

        never: Deferred[IssuedCertificate] = Deferred(cancel)
        return await never

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        """Never asked."""

    async def supports_profile(self, name: str) -> bool:
        """Every profile."""
        return True


class DeadlineTests(SynchronousTestCase):
    def test_deadline_cancels_a_running_attempt(self) -> None:
        clock = Clock()
        ca = HangingCA()
        issuer = FailoverIssuer(
            cas={ca.name: ca},
            health=CAHealth(clock, threshold=3, probe_interval=60),
            clock=clock,
            events=EventBus(clock),
        )
        request = IssueRequest(csr_der=b"", names=("a.test",), order_id="o1")
        d = Deferred.fromCoroutine(issuer.issue(request, order_id="o1", token_id="t1", cas=[ca.name], deadline=120.0))
        clock.advance(119.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        error = self.failureResultOf(d, CAError).value
        assert isinstance(error, CAError)
        self.assertFalse(error.transient)
        self.assertIn("no CA could issue before the order's deadline (hanging)", error.detail)
        self.assertIn("CA hanging was still working on it", error.detail)
        self.assertEqual(ca.cancelled, 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class SyslogEscapeTests(SynchronousTestCase):
    def test_control_characters_escaped(self) -> None:
        """
        Control characters in the message text and in SD-PARAM values are
        written as C{\\xNN}; C{"}, C{\\} and C{]} are escaped per RFC 5424.
        """
        clock = Clock()
        name = EventName.VALIDATION_FAILED
        event = EventBus(clock).emit(
            EVENT_TYPES[name], name=name, error='CNAME to a\x08b\n.example "q" \\ ]', ca="le\x1b"
        )
        message = format_rfc5424(event, hostname="box").decode()
        self.assertIsNone(re.search(r"[\x00-\x1f\x7f-\x9f]", message), repr(message))
        self.assertIn('error="CNAME to a\\x08b\\x0a.example \\"q\\" \\\\ \\]"', message)
        self.assertIn('ca="le\\x1b"', message)
        self.assertIn('ca="le\\x1b"', message.split("] ", 1)[1])
        self.assertIn('error="CNAME to a\\x08b\\x0a.example \\"q\\" \\\\ ]"', message.split("] ", 1)[1])


class AllowPrivateConfigTests(ConfigTestCase):
    def test_preflight_allow_private(self) -> None:
        self.assertFalse(self.load().validation.preflight_allow_private)
        config = self.load(setting("validation", "preflight_allow_private", True))
        self.assertTrue(config.validation.preflight_allow_private)
        self.assertProblem(
            setting("validation", "preflight_allow_private", "yes"),
            "validation.preflight_allow_private",
            "expected true or false",
        )

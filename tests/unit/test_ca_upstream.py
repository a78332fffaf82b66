"""
The parts of the upstream ACME client on their own: the transport (nonces,
account re-registration, the agent wrappers) against the appliance's ACME
server in memory, and the protocol's L{ValidationObserver} calls against a
scripted transport.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import RequestNotSent
from twisted.web.client import RequestTransmissionFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse
from zope.interface import implementer

from acme_appliance.ca import CAError, ChallengeType, IssueRequest
from acme_appliance.ca.upstream import AcmeTransport, UpstreamAcmeCA, upstream_agent
from acme_appliance.ca.upstream._replies import Reply
from acme_appliance.ca.upstream._transport import Directory
from acme_appliance.core import ProblemType
from acme_appliance.issuance._failover import OrderEvents
from acme_appliance.notify import EventBus, EventName
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.storage import MemoryStore
from acme_appliance.testing import BytesProducer, RecordingResponder, RecordingUpstream, World, http_over

BAD_NONCE = b'{"type": "urn:ietf:params:acme:error:badNonce", "detail": "stale"}'


class OnceUpstream(RecordingUpstream):
    """
    A L{RecordingUpstream} whose C{fail_once} answers are given only the first time.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.fail_once: dict[str, tuple[int, bytes, bytes]] = {}
        self.user_agents: list[bytes | None] = []

    def render(self, request: Any) -> Any:
        self.user_agents.append(request.getHeader(b"user-agent"))
        path = request.path.decode()
        for suffix in list(self.fail_once):
            if path.endswith(suffix):
                code, content_type, body = self.fail_once.pop(suffix)
                self.paths.append((self.clock.seconds(), path))
                request.setResponseCode(code)
                request.setHeader("Content-Type", content_type)
                return body
        return super().render(request)


@implementer(IAgent)
class Refused:
    """
    An agent for a CA nobody answers at: every request fails with
    C{error} (by default, the connection is refused).
    """

    def __init__(self, error: Exception | None = None) -> None:
        self._error = error

    def request(
        self, method: bytes, uri: bytes, headers: Headers | None = None, bodyProducer: Any = None
    ) -> Deferred[IResponse]:
        return fail(self._error or ConnectionRefusedError("nobody home"))


class TransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.upstream = OnceUpstream(self.world.server.resource(), self.world.clock)
        self.agent = RequestTraversalAgent(self.upstream)
        self.calls: list[tuple[str, str]] = []
        self.store = MemoryStore(self.world.clock)
        self.transport = AcmeTransport(
            ca="upstream",
            directory_url=self.world.directory(),
            http=http_over(self.agent, self.calls),
            clock=self.world.clock,
            store=self.store,
        )

    def drive(self, d: Deferred[Any]) -> None:
        for _ in range(50):
            self.agent.flush()
            if d.called:
                return
            self.world.clock.advance(0.5)

    def new_order(self) -> Deferred[Reply]:
        async def go() -> Reply:
            directory = await self.transport.directory()
            return await self.transport.post(
                directory.new_order, {"identifiers": [{"type": "dns", "value": "a.example.com"}]}
            )

        d = Deferred.fromCoroutine(go())
        self.drive(d)
        return d

    def test_bad_nonce_retried_once(self) -> None:
        """
        A C{badNonce} answer is retried once, with the nonce it carried.
        """
        self.successResultOf(self.new_order())
        self.upstream.fail_once["/new-order"] = (400, b"application/problem+json", BAD_NONCE)
        reply = self.successResultOf(self.new_order())
        self.assertEqual(reply.code, 201)
        self.assertEqual(self.upstream.count("/new-order"), 3)

    def test_bad_nonce_twice_fails(self) -> None:
        """
        A second C{badNonce} in a row is not retried: a transient error.
        """
        self.successResultOf(self.new_order())
        self.upstream.fail["/new-order"] = (400, b"application/problem+json", BAD_NONCE)
        error = self.failureResultOf(self.new_order(), CAError).value
        self.assertEqual(error.problem_type, ProblemType.BAD_NONCE)
        self.assertTrue(error.transient)
        self.assertEqual(self.upstream.count("/new-order"), 3)

    def test_forgotten_account_registered_again(self) -> None:
        """
        When the CA no longer knows the account, the transport registers
        again (with the same key) and retries; the store learns the new URL.
        """
        self.successResultOf(self.new_order())
        first = self.transport._kid
        assert first is not None
        self.transport._kid = first.rsplit("/", 1)[0] + "/unknown"
        self.successResultOf(self.new_order())
        self.assertEqual(self.upstream.count("/new-account"), 2)
        self.assertEqual(self.upstream.count("/new-order"), 3)
        self.assertEqual(self.transport._kid, first)

    def test_user_agent_and_counts(self) -> None:
        """
        Every request names the appliance and is counted by its result.
        """
        self.successResultOf(self.new_order())
        self.assertEqual(set(self.upstream.user_agents), {b"acme-appliance/0.1 (treq)"})
        self.assertEqual(len(self.calls), len(self.upstream.paths))
        self.assertEqual({result for _, result in self.calls}, {"2xx"})

    def test_network_error(self) -> None:
        """
        A CA that cannot be reached is a transient error, counted as a
        C{network-error}.
        """
        calls: list[tuple[str, str]] = []
        error = self.failureResultOf(Deferred.fromCoroutine(self.down(Refused(), calls).directory()), CAError).value
        self.assertTrue(error.transient)
        self.assertIn("ConnectionRefusedError", error.detail)
        self.assertEqual(calls, [("down", "network-error")])

    def test_lost_while_sending(self) -> None:
        """
        A CA that goes away while a request is sent (it stops), or whose
        connection was gone before, is a transient error too: the request
        fails over like any other to a CA that cannot be reached.
        """
        for lost in [RequestTransmissionFailed([Failure(ConnectionLost())]), RequestNotSent()]:
            calls: list[tuple[str, str]] = []
            transport = self.down(Refused(lost), calls)
            error = self.failureResultOf(Deferred.fromCoroutine(transport.directory()), CAError).value
            self.assertTrue(error.transient)
            self.assertIn(type(lost).__name__, error.detail)
            self.assertEqual(calls, [("down", "network-error")])

    @staticmethod
    def down(agent: IAgent, calls: list[tuple[str, str]]) -> AcmeTransport:
        """A transport to a CA called C{down} through C{agent}, its requests counted in C{calls}."""
        http = HTTPClient(
            upstream_agent(agent, ca="down", on_request=lambda ca, r: calls.append((ca, r))),
            data_to_body_producer=BytesProducer,
        )
        return AcmeTransport(
            ca="down", directory_url="https://ca.test/dir", http=http, clock=Clock(), store=MemoryStore(Clock())
        )


def _chain() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "a.test")])
    now = datetime.datetime(2024, 1, 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class ScriptedTransport:
    """
    Stands in for L{AcmeTransport}: answers each URL with the next of its
    scripted JSON bodies (the last one repeats).
    """

    def __init__(self, script: dict[str, list[tuple[int, Any]]]) -> None:
        self.script = script
        self.posted: list[str] = []

    async def directory(self) -> Directory:
        return Directory(
            new_nonce="n", new_account="a", new_order="new-order", revoke_cert=None, external_account_required=False
        )

    async def key_authorization(self, token: str) -> str:
        return f"{token}.thumb"

    async def post(self, url: str, payload: Any, *, accept: bytes | None = None) -> Reply:
        self.posted.append(url)
        answers = self.script[url]
        code, body = answers.pop(0) if len(answers) > 1 else answers[0]
        headers = Headers({b"location": [b"order"]} if url == "new-order" else {})
        if code >= 400:
            raise CAError(f"CA scripted: {code}", transient=True)
        return Reply(
            code=code, headers=headers, body=body if isinstance(body, bytes) else json.dumps(body).encode(), url=url
        )


class RecordingObserver:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def ordered(self, ca: str, names: tuple[str, ...], url: str) -> None:
        self.calls.append(("ordered", ca, names, url))

    def started(self, ca: str, names: tuple[str, ...], challenge: ChallengeType) -> None:
        self.calls.append(("started", ca, names, challenge))

    def succeeded(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, seconds: float) -> None:
        self.calls.append(("succeeded", ca, names, challenge, seconds))

    def failed(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, error: str) -> None:
        self.calls.append(("failed", ca, names, challenge, error))


PENDING_ORDER = {"status": "pending", "authorizations": ["authz"], "finalize": "finalize"}
PENDING_AUTHZ = {
    "status": "pending",
    "identifier": {"type": "dns", "value": "a.test"},
    "challenges": [{"type": "http-01", "url": "chall", "token": "tok", "status": "pending"}],
}


class ObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.responder = RecordingResponder()
        self.observer = RecordingObserver()
        self.ca = UpstreamAcmeCA(
            name="up",
            directory_url="https://ca.test/dir",
            http=HTTPClient(Refused()),
            clock=self.clock,
            store=MemoryStore(self.clock),
            responder=self.responder,
            poll_delays=(1.0,),
        )

    def issue(self, authz_after: dict[str, Any], observer: Any = None) -> Deferred[Any]:
        self.ca.transport = ScriptedTransport(
            {  # type: ignore[assignment]
                "new-order": [(201, PENDING_ORDER)],
                "authz": [(200, PENDING_AUTHZ), (200, PENDING_AUTHZ), (200, authz_after)],
                "chall": [(200, {})],
                "order": [
                    (200, {"status": "ready", "finalize": "finalize"}),
                    (200, {"status": "valid", "certificate": "cert"}),
                ],
                "finalize": [(200, {"status": "processing"})],
                "cert": [(200, _chain())],
            }
        )
        request = IssueRequest(
            csr_der=b"csr",
            names=("a.test",),
            order_id="o1",
            challenge_type=ChallengeType.HTTP_01,
            observer=observer or self.observer,
        )
        d = Deferred.fromCoroutine(self.ca.issue(request))
        for _ in range(20):
            self.clock.advance(1.0)
        return d

    def test_validation_succeeded(self) -> None:
        """
        The observer hears of the order, the start of the validation and
        its success with the time it took; the challenge is withdrawn.
        """
        valid = dict(PENDING_AUTHZ, status="valid")
        self.successResultOf(self.issue(valid))
        self.assertEqual(
            self.observer.calls,
            [
                ("ordered", "up", ("a.test",), "order"),
                ("started", "up", ("a.test",), ChallengeType.HTTP_01),
                ("succeeded", "up", ("a.test",), ChallengeType.HTTP_01, 1.0),
            ],
        )
        self.assertEqual(self.responder.withdrawn, self.responder.published)
        self.assertEqual(self.responder.published[0].key_authorization, "tok.thumb")

    def test_validation_failed(self) -> None:
        """
        A failed validation is reported with the CA's error, and fails the
        issue for good.
        """
        problem = {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "no file"}
        invalid = dict(
            PENDING_AUTHZ,
            status="invalid",
            challenges=[{"type": "http-01", "url": "chall", "token": "tok", "status": "invalid", "error": problem}],
        )
        error = self.failureResultOf(self.issue(invalid), CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.detail, "a.test: CA up: no file")
        self.assertEqual(
            self.observer.calls[1:],
            [
                ("started", "up", ("a.test",), ChallengeType.HTTP_01),
                ("failed", "up", ("a.test",), ChallengeType.HTTP_01, "a.test: CA up: no file"),
            ],
        )
        self.assertEqual(self.responder.withdrawn, self.responder.published)

    def test_order_events(self) -> None:
        """
        The issuance layer's observer turns the calls into the appliance's
        events, with the order's and token's ids.
        """
        bus = EventBus(self.clock)
        notes = MemoryNotifier()
        bus.subscribe(notes)
        self.successResultOf(self.issue(dict(PENDING_AUTHZ, status="valid"), OrderEvents(bus, "o1", "t1")))
        self.assertEqual(
            [e.name for e in notes.events],
            [EventName.UPSTREAM_ORDER, EventName.VALIDATION_STARTED, EventName.VALIDATION_SUCCEEDED],
        )
        for event in notes.events:
            self.assertEqual((event.order_id, event.token_id, event.names, event.ca), ("o1", "t1", ("a.test",), "up"))
        ordered, started, succeeded = notes.events
        self.assertEqual(ordered.details, (("upstream_order", "order"),))
        self.assertEqual(started.details, (("method", "file-proxy"),))
        self.assertEqual(
            (succeeded.outcome, succeeded.details), ("valid", (("method", "file-proxy"), ("seconds", "1.000")))
        )

    def test_failed_events(self) -> None:
        bus = EventBus(self.clock)
        notes = MemoryNotifier()
        bus.subscribe(notes)
        invalid = dict(PENDING_AUTHZ, status="invalid")
        self.failureResultOf(self.issue(invalid, OrderEvents(bus, "o1", "t1")), CAError)
        failed = notes.events[-1]
        self.assertEqual(
            (failed.name, failed.outcome, failed.error, failed.details),
            (EventName.VALIDATION_FAILED, "invalid", "CA up could not validate a.test", (("method", "file-proxy"),)),
        )

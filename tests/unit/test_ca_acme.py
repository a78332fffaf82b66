"""
The upstream ACME client (L{UpstreamAcmeCA}) against the appliance's own ACME server
in memory: Klein resource through a RequestTraversalAgent, with a Clock.
"""

from __future__ import annotations

import tempfile
from collections.abc import Coroutine
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, ChallengeType, IssueRequest, PendingChallenge
from acme_appliance.ca.upstream import AccountRecord, UpstreamAcmeCA, http_client_for
from acme_appliance.core import ProblemType
from acme_appliance.issuance._failover import OrderEvents
from acme_appliance.notify import EventBus, EventName
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.storage import MemoryStore, get_record
from acme_appliance.testing import RecordingResponder, RecordingUpstream, World, http_over, make_csr

T = TypeVar("T")


class AcmeCATests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self, issue_delay=5.0)
        self.upstream = RecordingUpstream(self.world.server.resource(), self.world.clock)
        self.agent = RequestTraversalAgent(self.upstream)
        self.directory = self.world.directory()
        self.store = MemoryStore(self.world.clock)
        self.events = EventBus(self.world.clock)
        self.notes = MemoryNotifier()
        self.events.subscribe(self.notes)
        self.responder = RecordingResponder()
        self.calls: list[tuple[str, str]] = []
        self.http = http_over(self.agent, self.calls)
        self.ca = self.make_ca()

    def make_ca(self, **kw: Any) -> UpstreamAcmeCA:
        return UpstreamAcmeCA(
            name="upstream",
            directory_url=self.directory,
            http=self.http,
            clock=self.world.clock,
            store=self.store,
            responder=self.responder,
            contact=("mailto:ops@example.net",),
            **kw,
        )

    def drive(self, coroutine: Coroutine[Any, Any, T], *, fails: bool = False) -> Any:
        """
        Drive C{coroutine}: deliver requests, move the clock half a second
        at a time.
        """
        d: Deferred[T] = Deferred.fromCoroutine(coroutine)
        for _ in range(400):
            self.agent.flush()
            if d.called:
                break
            self.world.clock.advance(0.5)
        if fails:
            return self.failureResultOf(d, CAError).value
        return self.successResultOf(d)

    def request(self, names: tuple[str, ...] = ("www.example.com",)) -> IssueRequest:
        csr, _ = make_csr(list(names))
        return IssueRequest(
            csr_der=csr,
            names=names,
            order_id="o1",
            challenge_type=None,
            observer=OrderEvents(self.events, order_id="o1", token_id="t1"),
        )

    def test_issue(self) -> None:
        """
        A certificate for the CSR's names comes back with its chain; the
        account is registered once and remembered in the store.
        """
        issued = self.drive(self.ca.issue(self.request(("example.com", "www.example.com"))))
        chain = x509.load_pem_x509_certificates(issued.chain_pem)
        self.assertEqual(len(chain), 2)
        sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(sorted(sans.get_values_for_type(x509.DNSName)), ["example.com", "www.example.com"])
        self.assertEqual(issued.ca_name, "upstream")
        record = self.successResultOf(
            Deferred.fromCoroutine(get_record(self.store, AccountRecord, "ca-account/upstream"))
        )
        assert record is not None
        self.assertEqual(record.directory, self.directory)
        self.assertIn("/acct/", record.url)
        self.assertEqual([e.name for e in self.notes.events], [EventName.UPSTREAM_ORDER])
        self.assertEqual(self.notes.events[0].order_id, "o1")
        self.assertEqual(self.notes.events[0].token_id, "t1")
        self.assertIn(("upstream", "2xx"), self.calls)
        self.assertNotIn(("upstream", "network-error"), self.calls)
        # Every authorization was valid already: nothing to validate.
        self.assertEqual(self.responder.published, [])

    def test_account_reused(self) -> None:
        """
        A second order, and a second client on the same store, use the
        account registered first.
        """
        self.drive(self.ca.issue(self.request()))
        self.drive(self.make_ca().issue(self.request()))
        self.assertEqual(self.upstream.count("/new-account"), 1)
        self.assertEqual(self.upstream.count("/new-order"), 2)

    def test_retry_after(self) -> None:
        """
        While the order is C{processing}, it is polled at the server's
        C{Retry-After} (2 s), not faster.
        """
        self.drive(self.ca.issue(self.request()))
        times = [t for t, p in self.upstream.paths if "/order/" in p and not p.endswith("/finalize")]
        self.assertGreaterEqual(len(times), 3)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertTrue(all(g >= 2.0 for g in gaps), gaps)

    def test_bad_nonce_retried(self) -> None:
        """
        A stale nonce costs one retry with the fresh nonce the error
        carries, not the order.
        """
        self.ca.transport._nonces.append("c3RhbGUtbm9uY2UtZnJvbS1iZWZvcmU")
        self.drive(self.ca.issue(self.request()))
        self.assertEqual(self.upstream.count("/new-account"), 2)

    def test_server_error_is_transient(self) -> None:
        self.upstream.fail["/new-order"] = (503, b"text/html", b"<h1>down</h1>")
        error = self.drive(self.ca.issue(self.request()), fails=True)
        self.assertTrue(error.transient)
        self.assertIn("503", error.detail)

    def test_rate_limited_is_transient(self) -> None:
        problem = b'{"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down"}'
        self.upstream.fail["/new-order"] = (429, b"application/problem+json", problem)
        error = self.drive(self.ca.issue(self.request()), fails=True)
        self.assertTrue(error.transient)
        self.assertEqual(error.problem_type, ProblemType.RATE_LIMITED)
        self.assertIn("slow down", error.detail)

    def test_client_error_is_passed_on(self) -> None:
        """
        A name the CA refuses fails for good, with the CA's problem type.
        """
        error = self.drive(self.ca.issue(self.request(("www.not-allowed.org",))), fails=True)
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.REJECTED_IDENTIFIER)

    def test_garbage_is_transient(self) -> None:
        """
        A CA that answers nonsense counts as unexpected behaviour: retry it
        later or fail over.
        """
        self.upstream.fail["/directory"] = (200, b"application/json", b"[1, 2")
        error = self.drive(self.ca.issue(self.request()), fails=True)
        self.assertTrue(error.transient)

    def test_forgotten_account_registers_again(self) -> None:
        self.drive(self.ca.issue(self.request()))
        kid = self.ca.transport._kid
        assert kid is not None
        self.ca.transport._kid = kid.rsplit("/", 1)[0] + "/unknown"
        self.drive(self.ca.issue(self.request()))
        self.assertEqual(self.upstream.count("/new-account"), 2)

    def test_revoke(self) -> None:
        issued = self.drive(self.ca.issue(self.request()))
        leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
        self.drive(self.ca.revoke(leaf.public_bytes(Encoding.DER), 4))
        self.assertEqual(self.upstream.count("/revoke-cert"), 1)
        error = self.drive(self.ca.revoke(leaf.public_bytes(Encoding.DER), 4), fails=True)
        self.assertEqual(error.problem_type, ProblemType.ALREADY_REVOKED)


class ChallengeTests(SynchronousTestCase):
    def test_dns_txt_value(self) -> None:
        """
        The dns-01 value is base64url(SHA-256(key authorization)) (RFC 8555
        section 8.4).
        """
        challenge = PendingChallenge(
            type=ChallengeType.DNS_01, name="a.test", token="tok", key_authorization="tok.thumb"
        )
        self.assertEqual(challenge.dns_txt_value, "sYAwVrqDtVOuJZvAHurSAYPoEt5fFV_C4bdSOOW-o5Y")


class HTTPClientTests(SynchronousTestCase):
    def test_bundle_without_certificates(self) -> None:
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
            f.write(b"not a certificate\n")
        with self.assertRaises(ValueError) as caught:
            http_client_for(MemoryReactorClock(), f.name)  # type: ignore[arg-type]
        self.assertIn("no PEM certificate", str(caught.exception))

    def test_missing_bundle(self) -> None:
        self.assertRaises(OSError, http_client_for, MemoryReactorClock(), "/nonexistent/bundle.pem")

"""
The challenge path of L{UpstreamAcmeCA} against a L{ScriptedAcmeServer}
whose authorizations stay pending, become valid or become invalid: publish
through the responder, answer, poll (at the CA's C{Retry-After}), withdraw
whatever happens, and tell the observer.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, ChallengeType, IssuedCertificate, IssueRequest
from acme_appliance.ca.upstream import POLL_DELAYS, UNANSWERED_RETRY_DELAYS, UpstreamAcmeCA
from acme_appliance.core import ProblemType
from acme_appliance.issuance._failover import OrderEvents
from acme_appliance.notify import EventBus, EventName
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.storage import MemoryStore
from acme_appliance.testing import RecordingResponder, ScriptedAcmeServer, http_over, make_csr

NAME = "www.example.com"
NO_TXT = {"type": "urn:ietf:params:acme:error:incorrectResponse", "detail": "no TXT record with the value found"}
# As Pebble says it when its resolver does not answer in time.
NO_ANSWER = {
    "type": "urn:ietf:params:acme:error:unauthorized",
    "detail": 'Error retrieving TXT records for DNS challenge ("read udp 127.0.0.1:1->127.0.0.1:2: i/o timeout")',
}
SERVFAIL = {"type": "urn:ietf:params:acme:error:dns", "detail": "DNS problem: SERVFAIL looking up TXT"}


class ValidationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.events = EventBus(self.clock)
        self.notes = MemoryNotifier()
        self.events.subscribe(self.notes)
        self.responder = RecordingResponder()

    def upstream(
        self, outcome: str | dict[str, Any], pending_polls: int = 0, retry_after: float | None = None, **kw: Any
    ) -> UpstreamAcmeCA:
        kw.setdefault("poll_delays", (1.0,))
        self.server = ScriptedAcmeServer(
            self.clock, {NAME: outcome}, pending_polls=pending_polls, retry_after=retry_after
        )
        self.agent = RequestTraversalAgent(self.server)
        return UpstreamAcmeCA(
            name="upstream",
            directory_url=self.server.directory_url,
            http=http_over(self.agent, []),
            clock=self.clock,
            store=MemoryStore(self.clock),
            responder=self.responder,
            validation_timeout=60.0,
            **kw,
        )

    def issue(
        self, ca: UpstreamAcmeCA, step: float = 0.25, names: tuple[str, ...] = (NAME,)
    ) -> Deferred[IssuedCertificate]:
        """Issue for C{names}, the clock moving C{step} seconds at a time."""
        csr, _ = make_csr(list(names))
        request = IssueRequest(
            csr_der=csr,
            names=names,
            order_id="o1",
            challenge_type=ChallengeType.DNS_01,
            observer=OrderEvents(self.events, order_id="o1", token_id="t1"),
        )
        coroutine: Coroutine[Any, Any, IssuedCertificate] = ca.issue(request)
        d = Deferred.fromCoroutine(coroutine)
        steps = 0
        while not d.called and steps < 1000:
            self.agent.flush()
            self.clock.advance(step)
            steps += 1
        return d

    def event_names(self) -> list[EventName]:
        return [e.name for e in self.notes.events]

    def assertPublishedAndWithdrawn(self) -> None:
        self.assertEqual([c.name for c in self.responder.published], [NAME])
        challenge = self.responder.published[0]
        self.assertEqual(challenge.type, ChallengeType.DNS_01)
        self.assertEqual(challenge.token, f"token-{NAME}")
        self.assertTrue(challenge.key_authorization.startswith(f"token-{NAME}."))
        self.assertEqual(self.responder.withdrawn, self.responder.published)
        self.assertIn(NAME, self.server.answered)

    def test_valid(self) -> None:
        """
        The challenge is published before it is answered, the authorization
        polled at the CA's C{Retry-After} until it is valid, the challenge
        withdrawn, and the certificate downloaded.
        """
        ca = self.upstream("valid", pending_polls=2, retry_after=3)
        issued = self.successResultOf(self.issue(ca))
        self.assertIn(b"BEGIN CERTIFICATE", issued.chain_pem)
        self.assertEqual(issued.ca_name, "upstream")
        self.assertPublishedAndWithdrawn()
        self.assertTrue(self.server.finalized)
        # the first poll, before the answer, finds the challenge to answer
        after = [t for t, _ in self.server.polls[1:]]
        self.assertEqual(len(after), 3)
        self.assertEqual([b - a for a, b in zip(after, after[1:])], [3.0, 3.0])
        self.assertEqual(
            self.event_names(), [EventName.UPSTREAM_ORDER, EventName.VALIDATION_STARTED, EventName.VALIDATION_SUCCEEDED]
        )
        succeeded = self.notes.events[-1]
        self.assertEqual(succeeded.names, (NAME,))
        self.assertEqual(getattr(succeeded, "seconds", None), 6.0)

    def test_published_by_name(self) -> None:
        """
        The challenges are published in the order of their names (turns at
        names across processes are then never waited for in a cycle).
        """
        ca = self.upstream("valid")
        self.successResultOf(self.issue(ca, names=("z.example.com", NAME, "a.example.com")))
        self.assertEqual([c.name for c in self.responder.published], ["a.example.com", NAME, "z.example.com"])

    def test_default_polls_start_fast(self) -> None:
        """
        Without a C{Retry-After}, the first polls after the answer come
        10 and 20 milliseconds apart and then back off: a CA that validates
        at once is seen at once, a slow one is not hammered.
        """
        ca = self.upstream("valid", pending_polls=4, poll_delays=POLL_DELAYS)
        self.successResultOf(self.issue(ca, step=0.005))
        polls = [t for t, _ in self.server.polls]
        gaps = [round(b - a, 3) for a, b in zip(polls, polls[1:])]
        # each poll comes on the first clock step after its delay
        self.assertEqual(gaps[-4:], [0.01, 0.02, 0.05, 0.1])

    def test_invalid_with_a_problem(self) -> None:
        """
        The CA looked and did not find the value: a permanent error with the
        CA's problem, the challenge withdrawn, C{validation.failed}.
        """
        ca = self.upstream(NO_TXT, pending_polls=1)
        error = self.failureResultOf(self.issue(ca), CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.INCORRECT_RESPONSE)
        self.assertIn(NAME, error.detail)
        self.assertIn("no TXT record with the value found", error.detail)
        self.assertPublishedAndWithdrawn()
        self.assertFalse(self.server.finalized)
        self.assertEqual(
            self.event_names(), [EventName.UPSTREAM_ORDER, EventName.VALIDATION_STARTED, EventName.VALIDATION_FAILED]
        )

    def test_no_answer_validated_again(self) -> None:
        """
        A validation in which the CA got no answer (a timeout, SERVFAIL) is
        tried again with a new upstream order, after the first of
        L{UNANSWERED_RETRY_DELAYS}.
        """
        ca = self.upstream("valid")
        self.server.queued[NAME] = [NO_ANSWER, SERVFAIL, "valid"]
        issued = self.successResultOf(self.issue(ca))
        self.assertIn(b"BEGIN CERTIFICATE", issued.chain_pem)
        tries = [EventName.UPSTREAM_ORDER, EventName.VALIDATION_STARTED]
        self.assertEqual(
            self.event_names(),
            [*tries, EventName.VALIDATION_FAILED, *tries, EventName.VALIDATION_FAILED, *tries]
            + [EventName.VALIDATION_SUCCEEDED],
        )
        self.assertEqual(len(self.responder.published), 3)
        self.assertEqual(self.responder.withdrawn, self.responder.published)
        failed, started = self.notes.events[2], self.notes.events[4]
        self.assertGreaterEqual(started.time - failed.time, UNANSWERED_RETRY_DELAYS[0])

    def test_no_answer_every_time(self) -> None:
        """
        After the last retry, the CA's error fails the order as any other
        validation error.
        """
        ca = self.upstream("valid", unanswered_retry_delays=(1.0,))
        self.server.queued[NAME] = [NO_ANSWER, NO_ANSWER]
        error = self.failureResultOf(self.issue(ca), CAError).value
        self.assertFalse(error.transient)
        self.assertIn("i/o timeout", error.detail)
        self.assertEqual(self.event_names().count(EventName.VALIDATION_FAILED), 2)

    def test_invalid_without_a_problem(self) -> None:
        ca = self.upstream("invalid")
        error = self.failureResultOf(self.issue(ca), CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.UNAUTHORIZED)
        self.assertIn(NAME, error.detail)
        self.assertPublishedAndWithdrawn()
        self.assertEqual(self.event_names()[-1], EventName.VALIDATION_FAILED)

    def test_pending_for_ever(self) -> None:
        """
        A CA that never decides: a transient error after the validation
        timeout, and the challenge withdrawn all the same.
        """
        ca = self.upstream("pending")
        error = self.failureResultOf(self.issue(ca), CAError).value
        self.assertTrue(error.transient)
        self.assertIn("still 'pending'", error.detail)
        self.assertPublishedAndWithdrawn()
        polls = [t for t, _ in self.server.polls[1:]]
        self.assertLessEqual(polls[-1] - polls[0], 60.0)
        self.assertGreaterEqual(polls[-1] - polls[0], 58.0)
        self.assertEqual(self.event_names()[-1], EventName.VALIDATION_FAILED)

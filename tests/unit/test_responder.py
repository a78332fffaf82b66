"""
Publishing challenge answers, and the preflight checks that fail an order
early with the record or rule the customer has to add.
"""

from __future__ import annotations

from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import IResource, NoResource
from zope.interface import implementer

from acme_appliance.ca import CAError, ChallengeType, PendingChallenge
from acme_appliance.core import ProblemType
from acme_appliance.storage import MemoryStore, keys
from acme_appliance.validation import TURN_LEASE, FileProxy, NameTurns, Preflight, ValidationResponder, ValidationValues

ZONE = "dcv.example.net"


class FakeResolver:
    """
    Answers C{lookupCanonicalName} and C{getHostByName} from dicts.
    """

    def __init__(self, cnames: dict[str, str], addresses: dict[str, str]) -> None:
        self.cnames = cnames
        self.addresses = addresses

    def lookupCanonicalName(self, name: str, timeout: Any = None) -> Deferred[Any]:
        if name not in self.cnames:
            return fail(DNSNameError(name))
        record = dns.RRHeader(name, dns.CNAME, payload=dns.Record_CNAME(self.cnames[name]))
        return succeed(([record], [], []))

    def getHostByName(self, name: str, timeout: Any = None) -> Deferred[str]:
        if name not in self.addresses:
            return fail(DNSNameError(name))
        return succeed(self.addresses[name])


#: An address on the public internet, which preflight may fetch.
PUBLIC = "93.184.215.14"


@implementer(IAgent)
class FlushingAgent:
    """
    An in-memory agent over a resource (treq's L{RequestTraversalAgent})
    that delivers what the resource wrote at once; C{flush()} delivers what
    it writes later.
    """

    def __init__(self, resource: IResource) -> None:
        self._agent = RequestTraversalAgent(resource)
        self.requests: list[tuple[bytes, bytes, Headers | None]] = []

    def request(
        self, method: bytes, uri: bytes, headers: Headers | None = None, bodyProducer: IBodyProducer | None = None
    ) -> Deferred[IResponse]:
        self.requests.append((method, uri, headers))
        d: Deferred[IResponse] = self._agent.request(method, uri, headers, bodyProducer)
        self._agent.flush()
        return d

    def flush(self) -> None:
        self._agent.flush()


def run(case: SynchronousTestCase, coroutine: Any) -> Any:
    return case.successResultOf(Deferred.fromCoroutine(coroutine))


def failure(case: SynchronousTestCase, coroutine: Any) -> CAError:
    error = case.failureResultOf(Deferred.fromCoroutine(coroutine), CAError).value
    assert isinstance(error, CAError)
    return error


class NameTurnsTests(SynchronousTestCase):
    """
    Two processes on one store publish dns-01 values for one name one after
    the other; within a process, a name's values share the turn.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self.one, self.other = self.process(), self.process()

    def process(self, clock: Clock | None = None) -> ValidationResponder:
        turns = NameTurns(self.store, clock or self.clock)
        return ValidationResponder(ValidationValues(self.store), ttl=600, turns=turns)

    def challenge(self, token: str, name: str = "example.com") -> PendingChallenge:
        return PendingChallenge(ChallengeType.DNS_01, name, token, f"{token}.thumb")

    def turn(self) -> Any:
        return run(self, self.store.get(keys.dcv_turn("example.com")))

    def test_one_process_at_a_time(self) -> None:
        wildcard, base = self.challenge("t1"), self.challenge("t2")
        run(self, self.one.publish(wildcard))
        run(self, self.one.publish(base))
        waiting = Deferred.fromCoroutine(self.other.publish(self.challenge("t3")))
        # Another name does not wait.
        run(self, self.other.publish(self.challenge("t4", "example.org")))
        self.clock.pump([0.25] * 8)
        self.assertNoResult(waiting)
        run(self, self.one.withdraw(wildcard))
        run(self, self.one.withdraw(wildcard))  # again: the turn is given back once
        self.clock.pump([0.25] * 8)
        self.assertNoResult(waiting)
        run(self, self.one.withdraw(base))
        self.clock.advance(0.25)
        self.successResultOf(waiting)
        values = run(self, ValidationValues(self.store).txt_values("example.com"))
        self.assertEqual(values, [self.challenge("t3").dns_txt_value])
        run(self, self.other.withdraw(self.challenge("t3")))
        self.assertIsNone(self.turn())

    def test_a_held_turn_outlasts_its_lease(self) -> None:
        # A slow CA: the values stay published four leases long.
        run(self, self.one.publish(self.challenge("t1")))
        waiting = Deferred.fromCoroutine(self.other.publish(self.challenge("t2")))
        self.clock.pump([0.25] * int(TURN_LEASE * 4 * 4))
        self.assertNoResult(waiting)
        run(self, self.one.withdraw(self.challenge("t1")))
        self.clock.advance(0.25)
        self.successResultOf(waiting)

    def test_a_dead_process_turn_runs_out(self) -> None:
        # Its reactor stopped (killed): it renews nothing from then on.
        dead = self.process(Clock())
        run(self, dead.publish(self.challenge("t1")))
        waiting = Deferred.fromCoroutine(self.other.publish(self.challenge("t2")))
        self.clock.pump([0.25] * int(TURN_LEASE * 4 - 1))
        self.assertNoResult(waiting)
        self.clock.advance(0.25)
        self.successResultOf(waiting)


class ResponderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.values = ValidationValues(MemoryStore(self.clock))
        self.responder = ValidationResponder(self.values, ttl=600)

    def test_dns_values_share_a_name(self) -> None:
        wildcard = PendingChallenge(ChallengeType.DNS_01, "example.com", "t1", "t1.thumb")
        base = PendingChallenge(ChallengeType.DNS_01, "example.com", "t2", "t2.thumb")
        run(self, self.responder.publish(wildcard))
        run(self, self.responder.publish(base))
        self.assertEqual(
            sorted(run(self, self.values.txt_values("example.com"))),
            sorted([wildcard.dns_txt_value, base.dns_txt_value]),
        )
        run(self, self.responder.withdraw(wildcard))
        self.assertEqual(run(self, self.values.txt_values("example.com")), [base.dns_txt_value])
        run(self, self.responder.withdraw(wildcard))  # already gone: fine
        run(self, self.responder.withdraw(base))
        self.assertEqual(run(self, self.values.txt_values("example.com")), [])

    def test_http_file(self) -> None:
        challenge = PendingChallenge(ChallengeType.HTTP_01, "www.example.com", "tok-1", "tok-1.thumb")
        run(self, self.responder.publish(challenge))
        body = run(self, self.values.http_body("www.example.com", "/.well-known/acme-challenge/tok-1"))
        self.assertEqual(body, b"tok-1.thumb")
        run(self, self.responder.withdraw(challenge))
        self.assertIsNone(run(self, self.values.http_body("www.example.com", "/.well-known/acme-challenge/tok-1")))

    def test_values_expire_if_never_withdrawn(self) -> None:
        run(self, self.responder.publish(PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")))
        self.clock.advance(601)
        self.assertEqual(run(self, self.values.txt_values("example.com")), [])

    def test_txt_value_is_rfc8555(self) -> None:
        # RFC 8555 section 8.4: base64url(SHA-256(key authorization)), no padding.
        challenge = PendingChallenge(
            ChallengeType.DNS_01,
            "example.com",
            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ",
        )
        self.assertEqual(len(challenge.dns_txt_value), 43)
        self.assertNotIn("=", challenge.dns_txt_value)


class PreflightTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.values = ValidationValues(MemoryStore(self.clock))

    def preflight(
        self, *, cnames: dict[str, str] | None = None, addresses: dict[str, str] | None = None, forwarding: bool = True
    ) -> Preflight:
        web = FileProxy(self.values).resource() if forwarding else NoResource()
        return Preflight(
            resolver=FakeResolver(cnames or {}, addresses or {}),  # type: ignore[arg-type]
            agent=FlushingAgent(web),
            clock=self.clock,
            values=self.values,
            dns_zone=ZONE,
        )

    def test_cname_in_place(self) -> None:
        check = self.preflight(cnames={"_acme-challenge.example.com": f"example.com.{ZONE}"})
        run(self, check.check(PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")))

    def test_cname_missing(self) -> None:
        error = failure(self, self.preflight().check(PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")))
        self.assertFalse(error.transient)
        self.assertIs(error.problem_type, ProblemType.DNS)
        self.assertIn(f"_acme-challenge.example.com. CNAME example.com.{ZONE}.", error.detail)

    def test_cname_elsewhere(self) -> None:
        check = self.preflight(cnames={"_acme-challenge.example.com": "example.com.other-provider.net"})
        error = failure(self, check.check(PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")))
        self.assertIn("is a CNAME to example.com.other-provider.net", error.detail)

    def test_forwarding_in_place(self) -> None:
        check = self.preflight(addresses={"www.example.com": PUBLIC})
        run(self, check.check(PendingChallenge(ChallengeType.HTTP_01, "www.example.com", "t", "t.x")))
        # the probe file is gone again
        self.assertEqual(run(self, self.values._store.scan("dcv/http/")), [])

    def test_forwarding_missing(self) -> None:
        check = self.preflight(addresses={"www.example.com": PUBLIC}, forwarding=False)
        error = failure(self, check.check(PendingChallenge(ChallengeType.HTTP_01, "www.example.com", "t", "t.x")))
        self.assertFalse(error.transient)
        self.assertIn("http://www.example.com/.well-known/acme-challenge/", error.detail)
        self.assertIn("answered 404", error.detail)
        self.assertEqual(run(self, self.values._store.scan("dcv/http/")), [])

    def test_name_does_not_resolve(self) -> None:
        error = failure(
            self, self.preflight().check(PendingChallenge(ChallengeType.HTTP_01, "www.example.com", "t", "t.x"))
        )
        self.assertIn("does not resolve", error.detail)

    def test_responder_runs_preflight_first(self) -> None:
        responder = ValidationResponder(self.values, ttl=600, preflight=self.preflight())
        failure(self, responder.publish(PendingChallenge(ChallengeType.DNS_01, "example.com", "t", "t.x")))
        self.assertEqual(run(self, self.values.txt_values("example.com")), [])

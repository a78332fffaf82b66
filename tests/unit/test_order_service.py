"""
Tests for L{acme_appliance.orders.OrderService} used directly, without HTTP.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import josepy
from attrs import evolve
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import AcmeProblem, ProblemType
from acme_appliance.notify import Event, EventBus, EventName
from acme_appliance.orders import Account, AcmeRepository, CertificateRecord, OrderService, OrderStatus
from acme_appliance.policy import Token, TokenRegistry, ValidationMethod
from acme_appliance.storage import MemoryStore
from acme_appliance.testing import add_account, b64, ec_key, make_csr, sample_policy, self_signed
from acme_appliance.wire import jwk_thumbprint, jwk_to_json
from acme_appliance.wire import messages as m

T = TypeVar("T")


class Queue:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, order_id: str, domains: tuple[str, ...] | None = None) -> None:
        self.submitted.append(order_id)


class FakeRevoker:
    def __init__(self) -> None:
        self.revoked: list[tuple[CertificateRecord, int | None]] = []

    async def revoke(self, record: CertificateRecord, reason: int | None) -> None:
        self.revoked.append((record, reason))


def identifiers(*names: str, type: str = "dns") -> tuple[m.Identifier, ...]:
    return tuple(m.Identifier(type=type, value=n) for n in names)


class OrderServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore(self.clock)
        self.repo = AcmeRepository(self.store)
        self.queue = Queue()
        self.revoker = FakeRevoker()
        events = EventBus(self.clock)
        self.events: list[Event] = []
        events.subscribe(self.events.append)
        policies = {
            p.name: p
            for p in (
                sample_policy(),
                sample_policy("files", ("files.net", "*.files.net"), validation=ValidationMethod.FILE_PROXY),
            )
        }
        self.service = OrderService(
            repository=self.repo,
            policies=policies,
            issuance=self.queue,
            revoker=self.revoker,
            clock=self.clock,
            events=events,
            order_lifetime=3600,
        )
        self.token = self.new_token("shop")
        self.account = self.new_account("acct1")

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def problem(self, coroutine: Coroutine[Any, Any, object]) -> AcmeProblem:
        failure = self.failureResultOf(Deferred.fromCoroutine(coroutine), AcmeProblem)
        assert isinstance(failure.value, AcmeProblem)
        return failure.value

    def new_token(self, policy_name: str, domains: tuple[str, ...] = ()) -> Token:
        token, _ = self.wait(TokenRegistry(self.store, self.clock).create(policy_name, domains))
        return token

    def new_account(self, account_id: str) -> Account:
        return self.wait(add_account(self.repo, self.token.id, account_id, self.clock))

    def order(self, *names: str) -> Any:
        return self.wait(self.service.new_order(self.token, self.account, m.NewOrder(identifiers=identifiers(*names))))

    # new orders

    def test_new_order(self) -> None:
        order = self.order("Example.COM.", "*.example.com", "example.com")
        self.assertEqual((order.status, order.names), (OrderStatus.READY, ("example.com", "*.example.com")))
        self.assertEqual((order.token_id, order.account_id, order.policy), (self.token.id, "acct1", "shop"))
        self.assertEqual(order.expires, self.clock.seconds() + 3600)
        self.assertEqual(self.wait(self.repo.order(order.id)), order)
        authzs = [self.wait(self.repo.authorization(a)) for a in order.authz_ids]
        self.assertEqual([(a.name, a.wildcard) for a in authzs if a], [("example.com", False), ("example.com", True)])
        self.assertEqual(
            [(e.name, e.order_id, e.details) for e in self.events],
            [(EventName.ORDER_CREATED, order.id, (("policy", "shop"),))],
        )

    def test_rejected_identifiers(self) -> None:
        problem = self.problem(
            self.service.new_order(
                self.token,
                self.account,
                m.NewOrder(identifiers=identifiers("example.com", "evil.org", "bad..name.com")),
            )
        )
        self.assertIs(problem.type, ProblemType.REJECTED_IDENTIFIER)
        self.assertEqual([s["identifier"]["value"] for s in problem.subproblems or ()], ["evil.org", "bad..name.com"])
        self.assertIn("policy 'shop' does not allow evil.org", problem.detail)
        self.assertEqual(self.events, [])

    def test_unsupported_identifier(self) -> None:
        problem = self.problem(
            self.service.new_order(self.token, self.account, m.NewOrder(identifiers=identifiers("10.0.0.1", type="ip")))
        )
        self.assertIs(problem.type, ProblemType.UNSUPPORTED_IDENTIFIER)
        self.assertEqual(
            problem.subproblems,
            [
                {
                    "type": ProblemType.UNSUPPORTED_IDENTIFIER.urn,
                    "detail": "identifier type 'ip' is not supported",
                    "identifier": {"type": "ip", "value": "10.0.0.1"},
                }
            ],
        )

    def test_token_domains_and_wildcards(self) -> None:
        narrow = self.new_token("shop", ("www.example.com",))
        problem = self.problem(
            self.service.new_order(narrow, self.account, m.NewOrder(identifiers=identifiers("api.example.com")))
        )
        self.assertIn("not among this directory's names", problem.detail)
        files = self.new_token("files")
        problem = self.problem(
            self.service.new_order(files, self.account, m.NewOrder(identifiers=identifiers("*.files.net")))
        )
        self.assertIn("file-proxy", problem.detail)

    def test_too_many_names(self) -> None:
        names = [f"n{i}.example.com" for i in range(101)]
        problem = self.problem(
            self.service.new_order(self.token, self.account, m.NewOrder(identifiers=identifiers(*names)))
        )
        self.assertEqual((problem.type, problem.subproblems), (ProblemType.REJECTED_IDENTIFIER, None))

    def test_validity_period_refused(self) -> None:
        request = m.NewOrder(identifiers=identifiers("example.com"), not_after="2030-01-01T00:00:00Z")
        self.assertIs(
            self.problem(self.service.new_order(self.token, self.account, request)).type, ProblemType.MALFORMED
        )

    # finalize

    def test_finalize(self) -> None:
        order = self.order("example.com")
        ready = self.wait(self.service.ready_order(self.token, self.account, order.id))
        csr = b64(make_csr(["example.com"])[0])
        updated = self.wait(self.service.finalize(self.token, self.account, ready, csr))
        self.assertEqual(
            (updated.status, updated.csr, updated.processing_since), (OrderStatus.PROCESSING, csr, self.clock.seconds())
        )
        self.assertEqual(self.queue.submitted, [order.id])
        self.assertEqual(self.wait(self.repo.queued()), [order.id])
        self.assertEqual([e.name for e in self.events], [EventName.ORDER_CREATED, EventName.ORDER_PROCESSING])
        again = self.problem(self.service.ready_order(self.token, self.account, order.id))
        self.assertIs(again.type, ProblemType.ORDER_NOT_READY)

    def test_finalize_bad_csr(self) -> None:
        order = self.order("example.com")
        csr = b64(make_csr(["example.com", "www.example.com"])[0])
        problem = self.problem(self.service.finalize(self.token, self.account, order, csr))
        self.assertIs(problem.type, ProblemType.BAD_CSR)
        self.assertEqual((self.queue.submitted, self.wait(self.repo.queued())), ([], []))

    def test_finalize_after_key_rollover(self) -> None:
        """
        The account key finalize keeps parsed follows a key rollover: a CSR
        with the new account key is refused, one with the old key is not.
        """
        old_csr, old_key = make_csr(["example.com"])
        self.wait(self.service.finalize(self.token, self.account, self.order("example.com"), b64(old_csr)))
        new_key = josepy.JWKEC(key=old_key)
        public = new_key.public_key()
        rolled = evolve(self.account, key=jwk_to_json(public), thumbprint=jwk_thumbprint(public))
        problem = self.problem(self.service.finalize(self.token, rolled, self.order("example.com"), b64(old_csr)))
        self.assertIs(problem.type, ProblemType.BAD_CSR)
        self.assertIn("the CSR's public key is the account key", problem.detail)
        csr = b64(make_csr(["example.com"])[0])
        self.assertIsNotNone(self.wait(self.service.finalize(self.token, rolled, self.order("example.com"), csr)))

    def test_expired_order_is_not_ready(self) -> None:
        order = self.order("example.com")
        self.clock.advance(3600)
        self.assertIs(self.wait(self.service.order(self.token, self.account, order.id)).status, OrderStatus.INVALID)
        problem = self.problem(self.service.ready_order(self.token, self.account, order.id))
        self.assertIs(problem.type, ProblemType.ORDER_NOT_READY)

    def test_someone_elses_order(self) -> None:
        order = self.order("example.com")
        other = self.new_account("acct2")
        self.assertIs(self.problem(self.service.order(self.token, other, order.id)).type, ProblemType.UNAUTHORIZED)
        missing = self.problem(self.service.order(self.token, self.account, "nope"))
        self.assertEqual((missing.type, missing.status), (ProblemType.MALFORMED, 404))

    # revocation

    def issued(self, account: Account) -> tuple[CertificateRecord, x509.Certificate, ec.EllipticCurvePrivateKey]:
        certificate, key = self_signed("example.com")
        record = CertificateRecord(
            id="cert1",
            order_id="order1",
            token_id=self.token.id,
            account_id=account.id,
            names=("example.com",),
            chain_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
            serial=format(certificate.serial_number, "x"),
            ca_name="builtin",
            issued=self.clock.seconds(),
        )
        record = self.wait(self.repo.put_certificate(record))
        return record, certificate, key

    def revocation(self, certificate: x509.Certificate, reason: int | None = None) -> m.Revocation:
        return m.Revocation(certificate=b64(certificate.public_bytes(serialization.Encoding.DER)), reason=reason)

    def test_revoke_by_account(self) -> None:
        record, certificate, _ = self.issued(self.account)
        self.wait(self.service.revoke(self.token, self.account, None, self.revocation(certificate, 4)))
        self.assertEqual(self.revoker.revoked, [(record, 4)])

    def test_revoke_by_certificate_key(self) -> None:
        record, certificate, key = self.issued(self.new_account("acct2"))
        jwk = josepy.JWKEC(key=key.public_key())
        self.wait(self.service.revoke(self.token, None, jwk, self.revocation(certificate)))
        self.assertEqual(self.revoker.revoked, [(record, None)])

    def test_revoke_refused(self) -> None:
        _, certificate, _ = self.issued(self.account)
        other = self.new_account("acct2")
        cases = [
            (self.account, None, self.revocation(certificate, 2), ProblemType.BAD_REVOCATION_REASON),
            (other, None, self.revocation(certificate), ProblemType.UNAUTHORIZED),
            (None, ec_key().public_key(), self.revocation(certificate), ProblemType.UNAUTHORIZED),
            (self.account, None, self.revocation(self_signed("example.com")[0]), ProblemType.UNAUTHORIZED),
            (self.account, None, m.Revocation(certificate=b64(b"junk")), ProblemType.MALFORMED),
        ]
        for account, jwk, request, kind in cases:
            self.assertIs(self.problem(self.service.revoke(self.token, account, jwk, request)).type, kind)
        self.assertEqual(self.revoker.revoked, [])

    def test_already_revoked(self) -> None:
        record, certificate, _ = self.issued(self.account)
        self.wait(self.repo.put_certificate(evolve(record, revoked_at=self.clock.seconds())))
        problem = self.problem(self.service.revoke(self.token, self.account, None, self.revocation(certificate)))
        self.assertIs(problem.type, ProblemType.ALREADY_REVOKED)

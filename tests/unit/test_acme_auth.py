"""
Tests for L{acme_appliance.acme.Authenticator}, without HTTP: every way a
request is refused gives the problem the server has always answered with.
"""

from __future__ import annotations

from collections.abc import Coroutine
from io import BytesIO
from typing import Any, TypeVar, cast

import josepy
from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest

from acme_appliance.acme import AuthenticatedRequest, Authenticator, NonceSource, SignedBy
from acme_appliance.core import AcmeProblem
from acme_appliance.orders import AccountStatus, AcmeRepository
from acme_appliance.policy import TokenRegistry
from acme_appliance.storage import MemoryStore
from acme_appliance.testing import BASE_URL, add_account, ec_key, sign

T = TypeVar("T")


def post(
    body: bytes, path: str, content_type: bytes = b"application/jose+json", length: bytes | None = None
) -> IRequest:
    request = DummyRequest([])
    request.method = b"POST"
    request.uri = request.path = path.encode()  # type: ignore[attr-defined]
    request.content = BytesIO(body)  # type: ignore[attr-defined]
    request.requestHeaders.setRawHeaders(b"content-type", [content_type])
    if length is not None:
        request.requestHeaders.setRawHeaders(b"content-length", [length])
    return cast(IRequest, request)


class AuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        store = MemoryStore(self.clock)
        self.tokens = TokenRegistry(store, self.clock)
        self.repo = AcmeRepository(store)
        self.nonces = NonceSource(self.clock)
        self.auth = Authenticator(
            tokens=self.tokens, repository=self.repo, nonces=self.nonces, base_url=BASE_URL + "/", max_body_bytes=2048
        )
        self.token, self.secret = self.wait(self.tokens.create("shop"))
        self.key = ec_key()
        self.account = self.wait(add_account(self.repo, self.token.id, "acct1", self.clock, self.key))
        self.kid = f"{BASE_URL}/acme/{self.secret}/acct/acct1"

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def url(self, resource: str = "new-order") -> str:
        return f"{BASE_URL}/acme/{self.secret}/{resource}"

    def signed(
        self, key: josepy.JWK | None = None, *, kid: str | None = "", url: str | None = None, nonce: str | None = ""
    ) -> bytes:
        return sign(
            key or self.key,
            {},
            url=url or self.url(),
            nonce=self.nonces.new() if nonce == "" else nonce,
            kid=self.kid if kid == "" else kid,
        )

    def authenticate(self, body: bytes, signed_by: SignedBy = SignedBy.ACCOUNT, **kw: Any) -> AuthenticatedRequest:
        path = kw.pop("path", f"/acme/{self.secret}/new-order")
        return self.wait(self.auth.authenticate(post(body, path, **kw), self.secret, signed_by))

    def refused(self, body: bytes, signed_by: SignedBy = SignedBy.ACCOUNT, **kw: Any) -> tuple[int, str]:
        path = kw.pop("path", f"/acme/{self.secret}/new-order")
        secret = kw.pop("secret", self.secret)
        failure = self.failureResultOf(
            Deferred.fromCoroutine(self.auth.authenticate(post(body, path, **kw), secret, signed_by)), AcmeProblem
        )
        problem = failure.value
        assert isinstance(problem, AcmeProblem)
        return problem.status, problem.type.value

    def test_account(self) -> None:
        auth = self.authenticate(self.signed())
        self.assertEqual((auth.secret, auth.token, auth.account), (self.secret, self.token, self.account))
        self.assertEqual(auth.signer, self.account)
        self.assertEqual(auth.jws.payload_json(), {})

    def test_jwk(self) -> None:
        for signed_by in (SignedBy.JWK, SignedBy.EITHER):
            auth = self.authenticate(self.signed(ec_key(), kid=None), signed_by)
            self.assertIsNone(auth.account)
            self.assertIsNotNone(auth.jws.jwk)

    def test_either_takes_an_account(self) -> None:
        self.assertEqual(self.authenticate(self.signed(), SignedBy.EITHER).account, self.account)

    def test_unknown_token(self) -> None:
        self.assertEqual(self.refused(self.signed(), secret="nope"), (404, "malformed"))

    def test_revoked_token(self) -> None:
        self.wait(self.tokens.revoke(self.secret))
        self.assertEqual(self.refused(self.signed()), (404, "malformed"))

    def test_content_type(self) -> None:
        self.assertEqual(self.refused(self.signed(), content_type=b"application/json"), (415, "malformed"))

    def test_content_type_parameters(self) -> None:
        self.authenticate(self.signed(), content_type=b"Application/JOSE+JSON; charset=utf-8")

    def test_body_too_large(self) -> None:
        self.assertEqual(self.refused(b"{" + b" " * 4096 + b"}"), (413, "malformed"))

    def test_declared_length_too_large(self) -> None:
        self.assertEqual(self.refused(self.signed(), length=b"4096"), (413, "malformed"))
        self.assertEqual(self.refused(self.signed(), length=b"-1"), (413, "malformed"))

    def test_garbage(self) -> None:
        self.assertEqual(self.refused(b"not json"), (400, "malformed"))

    def test_wrong_url(self) -> None:
        self.assertEqual(self.refused(self.signed(url=self.url("new-account"))), (403, "unauthorized"))

    def test_unknown_nonce(self) -> None:
        self.assertEqual(self.refused(self.signed(nonce="bm9wZQ")), (400, "badNonce"))

    def test_replayed_nonce(self) -> None:
        body = self.signed()
        self.authenticate(body)
        self.assertEqual(self.refused(body), (400, "badNonce"))

    def test_expired_nonce(self) -> None:
        body = self.signed()
        self.clock.advance(3601)
        self.assertEqual(self.refused(body), (400, "badNonce"))

    def test_jwk_where_kid_needed(self) -> None:
        self.assertEqual(self.refused(self.signed(kid=None)), (400, "malformed"))

    def test_kid_where_jwk_needed(self) -> None:
        self.assertEqual(self.refused(self.signed(), SignedBy.JWK), (400, "malformed"))

    def test_unknown_kid(self) -> None:
        for kid in (self.kid + "x", self.kid + "/orders", f"{BASE_URL}/acme/other/acct/acct1", "acct1"):
            self.assertEqual(self.refused(self.signed(kid=kid)), (400, "accountDoesNotExist"), kid)

    def test_account_of_another_token(self) -> None:
        other, secret = self.wait(self.tokens.create("shop"))
        kid = f"{BASE_URL}/acme/{secret}/acct/acct1"
        body = sign(self.key, {}, url=f"{BASE_URL}/acme/{secret}/new-order", nonce=self.nonces.new(), kid=kid)
        self.assertEqual(
            self.refused(body, path=f"/acme/{secret}/new-order", secret=secret), (400, "accountDoesNotExist")
        )

    def test_deactivated_account(self) -> None:
        self.wait(self.repo.put_account(evolve(self.account, status=AccountStatus.DEACTIVATED)))
        self.assertEqual(self.refused(self.signed()), (403, "unauthorized"))

    def test_bad_signature(self) -> None:
        self.assertEqual(self.refused(self.signed(ec_key())), (400, "malformed"))

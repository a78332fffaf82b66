"""
Who is asking: the one place an ACME request is authenticated, from the
directory token in its URL to the account whose key signed it (Boulder's
C{validPOSTForAccount}).
"""

from __future__ import annotations

from enum import Enum

from attrs import frozen
from twisted.web.iweb import IRequest

from ..core import AcmeProblem, ProblemType, malformed
from ..orders import Account, AccountStatus, AcmeRepository
from ..policy import Token, TokenRegistry, UnknownToken
from ..wire import AcmeJWS, jwk_from_json, parse_jws
from ._nonces import NonceSource
from ._paths import account_id_of

JOSE_JSON = "application/jose+json"


class UnknownDirectory(AcmeProblem):
    """
    No active token has the secret in the URL.  The answer carries no
    nonce: nonces are for a directory's clients, and a stranger asking
    must not be able to drain or flood the pool.
    """

    def __init__(self) -> None:
        super().__init__(ProblemType.MALFORMED, "unknown or revoked directory", status=404)


class SignedBy(Enum):
    """
    Which key a request must be signed with.
    """

    #: an account of the token, named by C{kid}
    ACCOUNT = "kid"
    #: the key embedded as C{jwk} (newAccount)
    JWK = "jwk"
    #: either (revokeCert)
    EITHER = "either"


@frozen
class AuthenticatedRequest:
    """
    A JWS POST whose signature, nonce and URL have been checked.

    @ivar secret: the directory token's secret, as in the URL.
    @ivar token: the directory token.
    @ivar jws: the verified JWS.
    @ivar account: the signing account; C{None} when an embedded C{jwk}
        signed.
    """

    secret: str
    token: Token
    jws: AcmeJWS
    account: Account | None

    @property
    def signer(self) -> Account:
        """
        The signing account, for requests only an account may sign.
        """
        assert self.account is not None
        return self.account


class Authenticator:
    """
    Checks the directory token, body, JWS, nonce and signing account of
    ACME requests; every failure is an L{AcmeProblem}.
    """

    def __init__(
        self,
        *,
        tokens: TokenRegistry,
        repository: AcmeRepository,
        nonces: NonceSource,
        base_url: str,
        max_body_bytes: int,
    ) -> None:
        self._tokens = tokens
        self._repo = repository
        self._nonces = nonces
        self._base_url = base_url.rstrip("/")
        self._max_body = max_body_bytes

    async def token(self, secret: str) -> Token:
        """
        The active token with this secret.

        @raise UnknownDirectory: for an unknown or revoked one.
        """
        try:
            return await self._tokens.lookup(secret)
        except UnknownToken:
            raise UnknownDirectory() from None

    async def authenticate(
        self, request: IRequest, secret: str, signed_by: SignedBy = SignedBy.ACCOUNT
    ) -> AuthenticatedRequest:
        """
        Parse and authenticate a JWS POST to a token's directory.
        """
        token = await self.token(secret)
        jws = parse_jws(self._read_body(request))
        expected = self._base_url + request.uri.decode("ascii", "replace")
        if jws.url != expected:
            raise AcmeProblem(
                ProblemType.UNAUTHORIZED, f"JWS url {jws.url!r} does not match the request URL {expected!r}"
            )
        if not await self._nonces.redeem(jws.nonce):
            raise AcmeProblem(
                ProblemType.BAD_NONCE, "unknown, used or expired nonce; use the fresh one in Replay-Nonce"
            )
        if jws.jwk is not None:
            if signed_by is SignedBy.ACCOUNT:
                raise malformed("this request must be signed by an account (kid), not a jwk")
            jws.verify(jws.jwk)
            return AuthenticatedRequest(secret, token, jws, None)
        if signed_by is SignedBy.JWK:
            raise malformed("this request must carry the account's public key (jwk), not a kid")
        account = await self._account_for_kid(secret, token, jws.kid or "")
        jws.verify(jwk_from_json(account.key))
        return AuthenticatedRequest(secret, token, jws, account)

    def _read_body(self, request: IRequest) -> bytes:
        content_type = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if content_type != JOSE_JSON:
            raise malformed(f"Content-Type must be {JOSE_JSON}", status=415)
        length = request.getHeader("content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            raise self._too_large()
        body: bytes = request.content.read(self._max_body + 1)
        if len(body) > self._max_body:
            raise self._too_large()
        return body

    def _too_large(self) -> AcmeProblem:
        return malformed(f"request body larger than {self._max_body} bytes", status=413)

    async def _account_for_kid(self, secret: str, token: Token, kid: str) -> Account:
        account_id = account_id_of(self._base_url, secret, kid)
        account = None if account_id is None else await self._repo.account(account_id)
        if account is None or account.token_id != token.id:
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account with this kid under this directory")
        if account.status is not AccountStatus.VALID:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, f"account is {account.status.value}")
        return account

"""
Talking to one upstream ACME CA (RFC 8555 sections 6 and 7.3): requests,
nonces, JWS-signed POSTs and the account they are signed for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import josepy
from attrs import frozen
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ...core import ProblemType
from ...storage import Store, dump_record, get_record, keys, put_record
from ...wire import jwk_thumbprint, messages, sign_flattened
from .._interface import CAError
from ._http import NETWORK_ERRORS
from ._replies import Reply, problem_error

JOSE_JSON = b"application/jose+json"


@frozen
class AccountRecord:
    """
    The appliance's account at one CA.

    @ivar key_pem: the account's private key (P-256), PKCS#8 PEM.
    @ivar directory: the directory URL the account was registered at.
    @ivar url: the account URL (the C{kid}); C{""} until registered.
    """

    key_pem: str
    directory: str = ""
    url: str = ""


@frozen
class Directory:
    """
    The URLs of a CA's directory that the client uses.
    """

    new_nonce: str
    new_account: str
    new_order: str
    revoke_cert: str | None
    external_account_required: bool
    profiles: frozenset[str] = frozenset()
    renewal_info: str | None = None


@frozen
class Registration:
    """
    What the appliance registers its account with.

    @ivar eab_kid: the external account binding's key id, if the CA wants one.
    @ivar eab_key: the binding's HMAC key, decoded.
    """

    contact: tuple[str, ...] = ()
    eab_kid: str | None = None
    eab_key: bytes | None = None

    @classmethod
    def of(cls, contact: Sequence[str], eab_kid: str | None, eab_hmac_key: str | None) -> Registration:
        return cls(tuple(contact), eab_kid, josepy.decode_b64jose(eab_hmac_key) if eab_hmac_key else None)


def _new_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode("ascii")


class AcmeTransport:
    """
    The network side of an upstream CA client: sends requests, keeps a pool
    of nonces, signs POSTs with the account key (registering the account
    when needed) and turns error answers into L{CAError}s.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        ca: str,
        directory_url: str,
        http: HTTPClient,
        clock: IReactorTime,
        store: Store,
        registration: Registration = Registration(),
        request_timeout: float = 30.0,
    ) -> None:
        self._ca = ca
        self._directory_url = directory_url
        self._directory: Directory | None = None
        self._http = http
        self._clock = clock
        self._timeout = request_timeout
        self._nonces: list[str] = []
        self._store = store
        self._registration = registration
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._kid: str | None = None

    async def send(self, method: str, url: str, *, data: bytes | None = None, accept: bytes | None = None) -> Reply:
        """
        One request, its body read, its nonce kept.

        @raise CAError: (transient) the CA could not be talked to.
        """
        headers = Headers()
        if data is not None:
            headers.setRawHeaders(b"Content-Type", [JOSE_JSON])
        if accept is not None:
            headers.setRawHeaders(b"Accept", [accept])
        try:
            d = self._http.request(method, url, data=data, headers=headers)
            timeout = self._clock.callLater(self._timeout, d.cancel)
            try:
                response = await d
            finally:
                if timeout.active():
                    timeout.cancel()
            body = await response.content()
        except NETWORK_ERRORS as e:
            raise CAError(
                f"CA {self._ca}: {method} {url} failed: {e.__class__.__name__}: {e}", transient=True
            ) from None
        reply = Reply(code=response.code, headers=response.headers, body=body, url=url)
        nonce = reply.header("replay-nonce")
        if nonce:
            self._nonces.append(nonce)
            del self._nonces[:-8]
        return reply

    async def directory(self) -> Directory:
        """
        The CA's directory, fetched once.
        """
        if self._directory is None:
            reply = await self.send("GET", self._directory_url)
            if reply.code != 200:
                raise problem_error(self._ca, reply)
            answer = reply.decode(messages.DirectoryAnswer)
            if answer.new_nonce is None or answer.new_account is None or answer.new_order is None:
                wanted = {"newNonce": answer.new_nonce, "newAccount": answer.new_account, "newOrder": answer.new_order}
                missing = [k for k, v in wanted.items() if v is None]
                raise CAError(f"CA {self._ca}: the directory lacks {', '.join(missing)}", transient=True)
            self._directory = Directory(
                new_nonce=answer.new_nonce,
                new_account=answer.new_account,
                new_order=answer.new_order,
                revoke_cert=answer.revoke_cert,
                external_account_required=answer.external_account_required,
                profiles=answer.profiles,
                renewal_info=answer.renewal_info,
            )
        return self._directory

    async def _nonce(self) -> str:
        if self._nonces:
            return self._nonces.pop()
        directory = await self.directory()
        reply = await self.send("HEAD", directory.new_nonce)
        nonce = reply.header("replay-nonce")
        if reply.code not in (200, 204) or not nonce:
            raise CAError(f"CA {self._ca}: newNonce gave no nonce ({reply.code})", transient=True)
        self._nonces.clear()
        return nonce

    async def post(self, url: str, payload: Mapping[str, Any] | None, *, accept: bytes | None = None) -> Reply:
        """
        A POST signed for the account (C{payload=None}: POST-as-GET),
        retried once with a fresh nonce on C{badNonce}, and once after
        registering again when the CA forgot the account.

        @raise CAError: for an error response.
        """
        return await self._post(url, payload, accept=accept, use_jwk=False)

    async def _post(self, url: str, payload: Mapping[str, Any] | None, *, accept: bytes | None, use_jwk: bool) -> Reply:
        key = await self.account_key()
        body = b"" if payload is None else json.dumps(payload).encode()
        retried = False
        while True:
            protected: dict[str, Any] = {"alg": "ES256", "nonce": await self._nonce(), "url": url}
            if use_jwk:
                protected["jwk"] = josepy.JWKEC(key=key).public_key().to_partial_json()
            else:
                protected["kid"] = await self._account_url()
            reply = await self.send("POST", url, data=sign_flattened(key, josepy.ES256, protected, body), accept=accept)
            if reply.code < 400:
                return reply
            failure = problem_error(self._ca, reply)
            if retried or not await self._recoverable(failure, use_jwk):
                raise failure
            retried = True

    async def _recoverable(self, failure: CAError, use_jwk: bool) -> bool:
        if failure.problem_type is ProblemType.BAD_NONCE:
            self._log.debug("CA {ca}: badNonce, retrying with a fresh nonce", ca=self._ca)
            return True
        if failure.problem_type is ProblemType.ACCOUNT_DOES_NOT_EXIST and not use_jwk:
            # The CA forgot the account (a test CA restarted, a purge):
            # register again and retry.
            self._log.warn("CA {ca} no longer knows account {kid}; registering again", ca=self._ca, kid=self._kid)
            self._kid = None
            await self._store.delete(keys.ca_account(self._ca))
            return True
        return False

    # -- the account -----------------------------------------------------------

    async def account_key(self) -> ec.EllipticCurvePrivateKey:
        """
        The account key, loaded from the store or created there.
        """
        if self._key is None:
            record = await self._account_record()
            key = serialization.load_pem_private_key(record.key_pem.encode("ascii"), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CAError(f"CA {self._ca}: the stored account key is not an EC key", transient=False)
            self._key = key
            if record.directory == self._directory_url and record.url:
                self._kid = record.url
        return self._key

    async def key_authorization(self, token: str) -> str:
        """
        C{token} joined with the account key's thumbprint (RFC 8555 section 8.1).
        """
        return f"{token}.{jwk_thumbprint(josepy.JWKEC(key=await self.account_key()))}"

    async def _account_record(self) -> AccountRecord:
        store_key = keys.ca_account(self._ca)
        record = await get_record(self._store, AccountRecord, store_key)
        if record is None:
            # add, not set: of two processes creating it, one key wins.
            await self._store.add(store_key, dump_record(AccountRecord(key_pem=_new_key_pem())))
            record = await get_record(self._store, AccountRecord, store_key)
            assert record is not None
        return record

    async def _account_url(self) -> str:
        if self._kid is None:
            await self._register()
        assert self._kid is not None
        return self._kid

    async def _register(self) -> None:
        directory = await self.directory()
        url = directory.new_account
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if self._registration.contact:
            payload["contact"] = list(self._registration.contact)
        binding = await self._external_account_binding(url)
        if binding is not None:
            payload["externalAccountBinding"] = binding
        elif directory.external_account_required:
            raise CAError(
                f"CA {self._ca} requires external account binding: set eab_kid and eab_hmac_key in its [[ca]] table",
                transient=False,
                problem_type=ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
            )
        reply = await self._post(url, payload, accept=None, use_jwk=True)
        kid = reply.header("location")
        if not kid:
            raise CAError(f"CA {self._ca}: newAccount gave no account URL", transient=True)
        self._kid = kid
        store_key = keys.ca_account(self._ca)
        record = await get_record(self._store, AccountRecord, store_key)
        if record is not None:
            await put_record(
                self._store, store_key, AccountRecord(key_pem=record.key_pem, directory=self._directory_url, url=kid)
            )
        self._log.info("CA {ca}: using account {kid}", ca=self._ca, kid=kid)

    async def _external_account_binding(self, url: str) -> dict[str, Any] | None:
        eab_kid, eab_key = self._registration.eab_kid, self._registration.eab_key
        if eab_kid is None or eab_key is None:
            return None
        jwk_json = josepy.JWKEC(key=await self.account_key()).public_key().to_partial_json()
        signed = sign_flattened(
            eab_key, josepy.HS256, {"alg": "HS256", "kid": eab_kid, "url": url}, json.dumps(jwk_json).encode()
        )
        result: dict[str, Any] = json.loads(signed)
        return result

"""
Upstream ACME CAs (C{kind = "acme"}): an RFC 8555 client on treq and josepy.

One account per configured CA, its key kept in the store; orders are
validated through the appliance's own L{ChallengeResponder} (the dcv zone or
the file proxy), so the edge clients never see a challenge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import josepy
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from treq.client import HTTPClient
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.internet.ssl import Certificate, trustRootFromCertificates

from ..wire import jwk_thumbprint, sign_flattened
from ..core import ProblemType
from ..notify import EventBus, EventName
from ..storage import Store, keys, dump_record, get_record, put_record
from ._interface import (
    CAError,
    ChallengeResponder,
    ChallengeType,
    IssuedCertificate,
    IssueRequest,
    PendingChallenge,
    ValidationRequired,
)

JOSE_JSON = b"application/jose+json"
PEM_CHAIN = b"application/pem-certificate-chain"
USER_AGENT = b"acme-appliance/0.1 (treq)"

# Problem types that another try (later, or at another CA) may get past.
TRANSIENT_PROBLEMS = frozenset({ProblemType.SERVER_INTERNAL, ProblemType.RATE_LIMITED, ProblemType.BAD_NONCE})

_NETWORK_ERRORS = (
    net_error.ConnectError,
    net_error.DNSLookupError,
    net_error.TimeoutError,
    net_error.ConnectionLost,
    net_error.ConnectionClosed,
    ResponseFailed,
    CancelledError,
)
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.DOTALL)


def http_client_for(reactor: Any, ca_bundle: str | None) -> HTTPClient:
    """
    A treq client for one CA: TLS verified against the system roots, or
    only against the certificates in C{ca_bundle}; service-identity checks
    the host name either way.

    @raise OSError: C{ca_bundle} cannot be read.
    @raise ValueError: C{ca_bundle} holds no certificate.
    """
    policy = BrowserLikePolicyForHTTPS()
    if ca_bundle is not None:
        with open(ca_bundle, "rb") as f:
            pems = _PEM_CERT.findall(f.read())
        if not pems:
            raise ValueError(f"{ca_bundle}: no PEM certificate in it")
        policy = BrowserLikePolicyForHTTPS(trustRootFromCertificates([Certificate.loadPEM(p) for p in pems]))
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    return HTTPClient(Agent(reactor, contextFactory=policy, pool=pool, connectTimeout=10))


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
class _Reply:
    code: int
    headers: Headers
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def links(self, rel: str) -> list[str]:
        found = []
        for value in self.headers.getRawHeaders("link", []):
            for url, relation in _LINK.findall(value):
                if relation == rel:
                    found.append(url)
        return found

    def json_object(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def json(self) -> dict[str, Any]:
        value = self.json_object()
        if value is None:
            raise CAError(f"{self.url} answered {self.code} with something that is not a JSON object", transient=True)
        return value


def _problem_error(ca: str, reply: _Reply) -> CAError:
    """
    The L{CAError} for an error response: transient for 5xx and for
    C{serverInternal}/C{rateLimited}/C{badNonce}, with the CA's type and
    detail passed on.
    """
    problem = reply.json_object()
    if problem is None:
        return CAError(f"CA {ca} answered {reply.code} for {reply.url}", transient=True)
    return _problem(ca, problem, server_error=reply.code >= 500)


def _problem(ca: str, problem: Mapping[str, Any], *, server_error: bool = False) -> CAError:
    """
    The L{CAError} for an RFC 7807 problem document, from a response or
    from an order's or challenge's C{error}.
    """
    problem_type = ProblemType.from_urn(str(problem.get("type", "")))
    detail = str(problem.get("detail") or problem.get("type") or "no detail")
    for sub in problem.get("subproblems") or ():
        if isinstance(sub, dict) and sub.get("detail"):
            detail += f"; {sub.get('identifier', {}).get('value', '?')}: {sub['detail']}"
    transient = server_error or problem_type is None or problem_type in TRANSIENT_PROBLEMS
    return CAError(
        f"CA {ca}: {detail}",
        transient=transient,
        problem_type=problem_type or ProblemType.SERVER_INTERNAL,
    )


def _retry_after(reply: _Reply, default: float, cap: float) -> float:
    value = reply.header("retry-after")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        # An HTTP-date: not worth parsing for the waits of a validation.
        return default
    return min(max(seconds, 0.0), cap)


class AcmeCA:
    """
    An upstream ACME CA behind the L{CertificateAuthority} interface.

    @param poll_delays: waits between polls of an authorization or order,
        the last repeated; a C{Retry-After} from the CA replaces them (up to
        C{max_retry_after}).
    @param validation_timeout: how long the CA may take to validate and to
        issue, each.
    @param on_request: told C{(ca, result)} after each HTTP request, with
        C{"2xx"}...C{"5xx"} or C{"network-error"} (for the metrics).
    """

    _log = Logger()

    def __init__(
        self,
        *,
        name: str,
        directory_url: str,
        http: HTTPClient,
        clock: IReactorTime,
        store: Store,
        responder: ChallengeResponder,
        contact: Sequence[str] = (),
        eab_kid: str | None = None,
        eab_hmac_key: str | None = None,
        events: EventBus | None = None,
        on_request: Callable[[str, str], object] = lambda ca, result: None,
        request_timeout: float = 30.0,
        poll_delays: Sequence[float] = (0.5, 1.0, 2.0, 3.0, 5.0),
        max_retry_after: float = 30.0,
        validation_timeout: float = 300.0,
    ) -> None:
        self._name = name
        self._directory_url = directory_url
        self._http = http
        self._clock = clock
        self._store = store
        self._responder = responder
        self._contact = tuple(contact)
        self._eab_kid = eab_kid
        self._eab_key = josepy.decode_b64jose(eab_hmac_key) if eab_hmac_key else None
        self._events = events
        self._on_request = on_request
        self._timeout = request_timeout
        self._poll_delays = tuple(poll_delays)
        self._max_retry_after = max_retry_after
        self._validation_timeout = validation_timeout
        self._directory: dict[str, Any] | None = None
        self._nonces: list[str] = []
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._kid: str | None = None

    @property
    def name(self) -> str:
        return self._name

    def _emit(self, event: EventName, request: IssueRequest, **fields: Any) -> None:
        if self._events is not None:
            self._events.emit(
                event, order_id=request.order_id, token_id=request.token_id, names=request.names, ca=self._name, **fields
            )

    # -- HTTP ---------------------------------------------------------------

    async def _send(self, method: str, url: str, *, data: bytes | None = None, accept: bytes | None = None) -> _Reply:
        headers = Headers({b"User-Agent": [USER_AGENT]})
        if data is not None:
            headers.setRawHeaders(b"Content-Type", [JOSE_JSON])
        if accept is not None:
            headers.setRawHeaders(b"Accept", [accept])
        try:
            response = await self._http.request(
                method, url, data=data, headers=headers, timeout=self._timeout, reactor=cast(Any, self._clock)
            )
            body = await response.content()
        except _NETWORK_ERRORS as e:
            self._on_request(self._name, "network-error")
            raise CAError(f"CA {self._name}: {method} {url} failed: {e.__class__.__name__}: {e}", transient=True) from None
        reply = _Reply(code=response.code, headers=response.headers, body=body, url=url)
        self._on_request(self._name, f"{response.code // 100}xx")
        nonce = reply.header("replay-nonce")
        if nonce:
            self._nonces.append(nonce)
            del self._nonces[:-8]
        return reply

    async def _get_directory(self) -> dict[str, Any]:
        if self._directory is None:
            reply = await self._send("GET", self._directory_url)
            if reply.code != 200:
                raise _problem_error(self._name, reply)
            directory = reply.json()
            missing = [k for k in ("newNonce", "newAccount", "newOrder") if not isinstance(directory.get(k), str)]
            if missing:
                raise CAError(f"CA {self._name}: the directory lacks {', '.join(missing)}", transient=True)
            self._directory = directory
        return self._directory

    async def _nonce(self) -> str:
        if self._nonces:
            return self._nonces.pop()
        directory = await self._get_directory()
        reply = await self._send("HEAD", directory["newNonce"])
        nonce = reply.header("replay-nonce")
        if reply.code not in (200, 204) or not nonce:
            raise CAError(f"CA {self._name}: newNonce gave no nonce ({reply.code})", transient=True)
        self._nonces.clear()
        return nonce

    async def _post(self, url: str, payload: Mapping[str, Any] | None, *, accept: bytes | None = None,
                    use_jwk: bool = False, extra: Mapping[str, Any] | None = None) -> _Reply:
        """
        A signed POST (C{payload=None}: POST-as-GET), retried once with a
        fresh nonce on C{badNonce}.

        @raise CAError: for an error response.
        """
        key = await self._account_key()
        jwk = josepy.JWKEC(key=key)
        body = b"" if payload is None else json.dumps(payload).encode()
        attempt = 0
        while True:
            attempt += 1
            protected: dict[str, Any] = {"alg": "ES256", "nonce": await self._nonce(), "url": url}
            if use_jwk:
                protected["jwk"] = jwk.public_key().to_partial_json()
            else:
                protected["kid"] = await self._account_url()
            protected.update(extra or {})
            reply = await self._send("POST", url, data=sign_flattened(key, josepy.ES256, protected, body), accept=accept)
            if reply.code < 400:
                return reply
            failure = _problem_error(self._name, reply)
            if failure.problem_type is ProblemType.BAD_NONCE and attempt == 1:
                self._log.debug("CA {ca}: badNonce, retrying with a fresh nonce", ca=self._name)
                continue
            if failure.problem_type is ProblemType.ACCOUNT_DOES_NOT_EXIST and not use_jwk and attempt == 1:
                # The CA forgot the account (a test CA restarted, a purge):
                # register again and retry.
                self._log.warn("CA {ca} no longer knows account {kid}; registering again", ca=self._name, kid=self._kid)
                self._kid = None
                await self._store.delete(self._account_store_key)
                continue
            raise failure

    # -- the account ----------------------------------------------------------

    @property
    def _account_store_key(self) -> str:
        return keys.ca_account(self._name)

    async def _account_key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            record = await get_record(self._store, AccountRecord, self._account_store_key)
            if record is None:
                fresh = ec.generate_private_key(ec.SECP256R1())
                pem = fresh.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode("ascii")
                # add, not set: of two processes creating it, one key wins.
                await self._store.add(self._account_store_key, dump_record(AccountRecord(key_pem=pem)))
                record = await get_record(self._store, AccountRecord, self._account_store_key)
                assert record is not None
            key = serialization.load_pem_private_key(record.key_pem.encode("ascii"), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CAError(f"CA {self._name}: the stored account key is not an EC key", transient=False)
            self._key = key
            if record.directory == self._directory_url and record.url:
                self._kid = record.url
        return self._key

    async def _account_url(self) -> str:
        if self._kid is None:
            await self._register()
        assert self._kid is not None
        return self._kid

    async def _register(self) -> None:
        directory = await self._get_directory()
        key = await self._account_key()
        url = directory["newAccount"]
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if self._contact:
            payload["contact"] = list(self._contact)
        if self._eab_kid is not None and self._eab_key is not None:
            jwk_json = josepy.JWKEC(key=key).public_key().to_partial_json()
            payload["externalAccountBinding"] = json.loads(
                sign_flattened(
                    self._eab_key, josepy.HS256, {"alg": "HS256", "kid": self._eab_kid, "url": url},
                    json.dumps(jwk_json).encode(),
                )
            )
        elif directory.get("meta", {}).get("externalAccountRequired"):
            raise CAError(
                f"CA {self._name} requires external account binding: set eab_kid and eab_hmac_key in its [[ca]] table",
                transient=False, problem_type=ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
            )
        reply = await self._post(url, payload, use_jwk=True)
        kid = reply.header("location")
        if not kid:
            raise CAError(f"CA {self._name}: newAccount gave no account URL", transient=True)
        self._kid = kid
        record = await get_record(self._store, AccountRecord, self._account_store_key)
        if record is not None:
            await put_record(
                self._store, self._account_store_key,
                AccountRecord(key_pem=record.key_pem, directory=self._directory_url, url=kid),
            )
        self._log.info("CA {ca}: using account {kid}", ca=self._name, kid=kid)

    # -- orders -----------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        await deferLater(self._clock, seconds)

    async def _poll(self, url: str, *, until: Iterable[str], what: str) -> dict[str, Any]:
        """
        POST-as-GET C{url} until its C{status} is one of C{until} (or
        C{invalid}), honouring C{Retry-After}, for at most the validation
        timeout.
        """
        wanted = frozenset(until) | {"invalid"}
        deadline = self._clock.seconds() + self._validation_timeout
        attempt = 0
        while True:
            reply = await self._post(url, None)
            resource = reply.json()
            if resource.get("status") in wanted:
                return resource
            delay = _retry_after(reply, self._poll_delays[min(attempt, len(self._poll_delays) - 1)], self._max_retry_after)
            attempt += 1
            if self._clock.seconds() + delay > deadline:
                raise CAError(
                    f"CA {self._name}: {what} still {resource.get('status')!r} after {self._validation_timeout:g}s",
                    transient=True,
                )
            await self._sleep(delay)

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        directory = await self._get_directory()
        reply = await self._post(
            directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in request.names]}
        )
        order_url = reply.header("location")
        order = reply.json()
        if not order_url:
            raise CAError(f"CA {self._name}: newOrder gave no order URL", transient=True)
        self._emit(EventName.UPSTREAM_ORDER, request, details=(("upstream_order", order_url),))
        self._log.info("order {order_id}: upstream order {url} at CA {ca}", order_id=request.order_id, url=order_url,
                       ca=self._name)
        if order.get("status") == "pending":
            await self._authorize(request, [str(u) for u in order.get("authorizations", [])])
            order = await self._poll(order_url, until=("ready", "valid"), what="the order")
        if order.get("status") == "ready":
            await self._post(str(order.get("finalize")), {"csr": josepy.encode_b64jose(request.csr_der)})
            order = await self._poll(order_url, until=("valid",), what="the order")
        if order.get("status") != "valid" or not order.get("certificate"):
            raise self._order_error(order)
        return await self._download(str(order["certificate"]))

    def _order_error(self, resource: Mapping[str, Any]) -> CAError:
        problem = resource.get("error")
        if isinstance(problem, dict):
            return _problem(self._name, problem)
        return CAError(f"CA {self._name}: the order became {resource.get('status')!r}", transient=True)

    async def _authorize(self, request: IssueRequest, urls: list[str]) -> None:
        pending: list[tuple[str, PendingChallenge, str]] = []
        for url in urls:
            authz = (await self._post(url, None)).json()
            if authz.get("status") == "valid":
                continue
            name = str(authz.get("identifier", {}).get("value", "?"))
            if authz.get("status") != "pending":
                raise CAError(f"CA {self._name}: the authorization for {name} is {authz.get('status')!r}",
                              transient=False, problem_type=ProblemType.UNAUTHORIZED)
            if not request.allow_validation:
                raise ValidationRequired(f"CA {self._name} wants {name} validated again")
            if request.challenge_type is None:
                raise CAError(f"CA {self._name} wants {name} validated, but the policy validates nothing",
                              transient=False, problem_type=ProblemType.UNAUTHORIZED)
            wanted = request.challenge_type.value
            offered = [c for c in authz.get("challenges", []) if isinstance(c, dict) and c.get("type") == wanted]
            if not offered:
                kinds = ", ".join(str(c.get("type")) for c in authz.get("challenges", []) if isinstance(c, dict))
                raise CAError(f"CA {self._name} offers no {wanted} challenge for {name} (only {kinds or 'none'})",
                              transient=False, problem_type=ProblemType.UNAUTHORIZED)
            token = str(offered[0].get("token", ""))
            key_authorization = f"{token}.{jwk_thumbprint(josepy.JWKEC(key=await self._account_key()))}"
            pending.append((url, PendingChallenge(type=request.challenge_type, name=name, token=token,
                                                  key_authorization=key_authorization), str(offered[0].get("url"))))
        if not pending:
            return
        method = "dns-cname" if request.challenge_type is ChallengeType.DNS_01 else "file-proxy"
        published: list[PendingChallenge] = []
        started = self._clock.seconds()
        try:
            for _, challenge, _ in pending:
                await self._responder.publish(challenge)
                published.append(challenge)
            self._emit(EventName.VALIDATION_STARTED, request, details=(("method", method),))
            for _, _, challenge_url in pending:
                await self._post(challenge_url, {})
            for authz_url, challenge, _ in pending:
                authz = await self._poll(authz_url, until=("valid",), what=f"the authorization for {challenge.name}")
                if authz.get("status") != "valid":
                    raise self._validation_error(challenge.name, authz)
        except CAError as e:
            if published:
                self._emit(EventName.VALIDATION_FAILED, request, error=e.detail, outcome="invalid",
                           details=(("method", method),))
            raise
        finally:
            for challenge in published:
                await self._responder.withdraw(challenge)
        self._emit(EventName.VALIDATION_SUCCEEDED, request, outcome="valid",
                   details=(("method", method), ("seconds", f"{self._clock.seconds() - started:.3f}")))

    def _validation_error(self, name: str, authz: Mapping[str, Any]) -> CAError:
        for challenge in authz.get("challenges", []):
            if isinstance(challenge, dict) and isinstance(challenge.get("error"), dict):
                error = self._order_error({"error": challenge["error"]})
                # The CA looked and did not find the value: another CA would
                # not either, so this is the customer's to fix.
                return CAError(f"{name}: {error.detail}", transient=False, problem_type=error.problem_type)
        return CAError(f"CA {self._name} could not validate {name}", transient=False,
                       problem_type=ProblemType.UNAUTHORIZED)

    async def _download(self, url: str) -> IssuedCertificate:
        reply = await self._post(url, None, accept=PEM_CHAIN)
        chain = self._check_chain(reply)
        alternates = []
        for alternate in reply.links("alternate"):
            try:
                alternates.append(self._check_chain(await self._post(alternate, None, accept=PEM_CHAIN)))
            except CAError as e:
                self._log.warn("CA {ca}: alternate chain {url} unusable: {error}", ca=self._name, url=alternate,
                               error=e.detail)
        return IssuedCertificate(chain_pem=chain, ca_name=self._name, alternates=tuple(alternates))

    def _check_chain(self, reply: _Reply) -> bytes:
        try:
            certificates = x509.load_pem_x509_certificates(reply.body)
        except ValueError:
            certificates = []
        if not certificates:
            raise CAError(f"CA {self._name}: {reply.url} gave no PEM certificate chain", transient=True)
        return reply.body

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        directory = await self._get_directory()
        url = directory.get("revokeCert")
        if not isinstance(url, str):
            raise CAError(f"CA {self._name} does not offer revocation", transient=False,
                          problem_type=ProblemType.SERVER_INTERNAL)
        payload: dict[str, Any] = {"certificate": josepy.encode_b64jose(certificate_der)}
        if reason is not None:
            payload["reason"] = reason
        await self._post(url, payload)
        self._log.info("CA {ca}: certificate revoked", ca=self._name)

"""
The RFC 8555 server the edge boxes talk to: one directory per token.

This is the web side only (Boulder's WFE): each route authenticates with
L{Authenticator}, calls the L{OrderService} (or the account rules here)
and renders the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

from attrs import evolve
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from ..core import AcmeProblem, ProblemType, RouteError, Unavailable, malformed, route_errors
from ..notify import EventBus
from ..orders import (
    Account,
    AccountStatus,
    AcmeRepository,
    BadCertId,
    CertificateRecord,
    CertificateRevoker,
    IssuanceProgress,
    Order,
    OrderService,
    OrderStatus,
    RateLimiter,
    RenewalReason,
    RenewalWindows,
    new_id,
    retry_after,
)
from ..policy import Policy, Token, TokenRegistry
from ..wire import jwk_from_json, jwk_thumbprint, jwk_to_json, parse_inner_keychange_jws
from ..wire import messages as m
from . import _resources as r
from ._auth import AuthenticatedRequest, Authenticator, SignedBy, UnknownDirectory
from ._nonces import NonceSource
from ._paths import DirectoryUrls, redact_token, resource_url, secret_of

PEM_CHAIN = "application/pem-certificate-chain"


class AcmeServer:
    """
    The ACME offload server.

    Every URL lives under C{<base_url>/acme/<token>/}; the token selects the
    policy and isolates accounts.  Authorizations are valid from the start,
    and issuance runs as a background job after finalize.
    """

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        *,
        repository: AcmeRepository,
        tokens: TokenRegistry,
        policies: Mapping[str, Policy],
        issuance: IssuanceProgress,
        revoker: CertificateRevoker,
        clock: IReactorTime,
        base_url: str,
        nonces: NonceSource | None = None,
        max_body_bytes: int = 65536,
        terms_of_service: str | None = None,
        order_lifetime: float = 7 * 86400,
        retry_after: int = 2,
        finalize_wait: float = 0.0,
        events: EventBus | None = None,
        limiter: RateLimiter | None = None,
        renewals: RenewalWindows | None = None,
    ) -> None:
        self._repo = repository
        self._renewals = renewals if renewals is not None else RenewalWindows(repository, clock)
        self._limiter = limiter
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._nonces = nonces if nonces is not None else NonceSource(clock)
        self._tos = terms_of_service
        self._retry_after = retry_after
        self._issuance = issuance
        self._finalize_wait = finalize_wait
        self._auth = Authenticator(
            tokens=tokens, repository=repository, nonces=self._nonces, base_url=base_url, max_body_bytes=max_body_bytes
        )
        self._orders = OrderService(
            repository=repository,
            policies=policies,
            issuance=issuance,
            revoker=revoker,
            clock=clock,
            events=events if events is not None else EventBus(clock),
            order_lifetime=order_lifetime,
            limiter=limiter,
            renewals=self._renewals,
        )

    def resource(self) -> IResource:
        """
        The Twisted Web resource to serve (at the root of a site).
        """
        return self.app.resource()

    # URLs and responses

    def url(self, secret: str, *parts: str) -> str:
        """
        The URL of a resource under the directory of C{secret}.
        """
        return resource_url(self._base_url, secret, *parts)

    def _headers(self, request: IRequest, secret: str) -> None:
        request.setHeader("Replay-Nonce", self._nonces.new())
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("Link", f'<{self.url(secret, "directory")}>;rel="index"')

    def _json(self, request: IRequest, body: r.JSONObject, *, status: int = 200, location: str | None = None) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        if location is not None:
            request.setHeader("Location", location)
        return _dumps(body)

    def _send_account(self, request: IRequest, secret: str, account: Account, *, status: int = 200) -> bytes:
        urls = DirectoryUrls(self._base_url, secret)
        return self._json(request, r.account(urls, account), status=status, location=urls("acct", account.id))

    def _send_order(self, request: IRequest, secret: str, order: Order, *, status: int = 200) -> bytes:
        if order.status is OrderStatus.PROCESSING:
            expected = self._issuance.expected_seconds(order.policy)
            seconds = r.retry_after(order, self._clock.seconds(), expected, self._retry_after)
            request.setHeader("Retry-After", str(seconds))
        urls = DirectoryUrls(self._base_url, secret)
        return self._json(request, r.order(urls, order), status=status, location=urls("order", order.id))

    # errors: the one place exceptions become responses

    def _problem(self, request: IRequest, problem: AcmeProblem, *, nonce: bool = True) -> bytes:
        # A nonce only for a directory the request was checked against:
        # an unknown token or an unrouted path gets none.
        secret = secret_of(request.path)
        if nonce and secret is not None and not isinstance(problem, UnknownDirectory):
            self._headers(request, secret)
        request.setHeader("Cache-Control", "no-store")
        request.setResponseCode(problem.status)
        request.setHeader("Content-Type", "application/problem+json")
        for name, value in problem.headers.items():
            request.setHeader(name, value)
        return _dumps(problem.to_json())

    @app.handle_errors(AcmeProblem)
    def handle_problem(self, request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, AcmeProblem)
        return self._problem(request, failure.value)

    @route_errors(app)
    def handle_route_error(self, request: IRequest, error: RouteError) -> bytes:
        if error.status is HTTPStatus.NOT_FOUND:
            return self._problem(request, malformed("no such resource", status=404), nonce=False)
        if error.status is HTTPStatus.METHOD_NOT_ALLOWED:
            allowed = ", ".join(error.allowed)
            problem = malformed(f"method not allowed here; use {allowed}", status=405, headers={"Allow": allowed})
            return self._problem(request, problem, nonce=False)
        if error.status is HTTPStatus.SERVICE_UNAVAILABLE:
            detail = "the appliance's storage is unavailable; retry later"
            return self._problem(request, AcmeProblem(ProblemType.SERVER_INTERNAL, detail, status=503), nonce=False)
        self._log.failure(
            "internal error answering {method} {path}",
            error.failure,
            method=request.method.decode(errors="replace"),
            path=redact_token(request.path).decode("ascii", "replace"),
        )
        return self._problem(
            request,
            AcmeProblem(ProblemType.SERVER_INTERNAL, "internal error; the operator has the details"),
            nonce=False,
        )

    # request authentication

    async def _token(self, request: IRequest, secret: str) -> Token:
        token = await self._auth.token(secret)
        self._headers(request, secret)
        return token

    async def _authenticated(
        self, request: IRequest, secret: str, signed_by: SignedBy = SignedBy.ACCOUNT
    ) -> AuthenticatedRequest:
        auth = await self._auth.authenticate(request, secret, signed_by)
        self._headers(request, secret)
        return auth

    # directory and nonces

    @app.route("/acme/<secret>/directory", methods=["GET"])
    async def directory(self, request: IRequest, secret: str) -> bytes:
        token = await self._token(request, secret)
        urls = DirectoryUrls(self._base_url, secret)
        return self._json(request, r.directory(urls, self._tos, self._orders.profiles(token)))

    @app.route("/acme/<secret>/new-nonce", methods=["GET", "HEAD"])
    async def new_nonce(self, request: IRequest, secret: str) -> bytes:
        await self._token(request, secret)
        request.setResponseCode(200 if request.method == b"HEAD" else 204)
        return b""

    # accounts

    @app.route("/acme/<secret>/new-account", methods=["POST"])
    async def new_account(self, request: IRequest, secret: str) -> bytes:
        auth = await self._authenticated(request, secret, SignedBy.JWK)
        jwk = auth.jws.jwk
        assert jwk is not None
        payload = m.decode(m.NewAccount, auth.jws.payload_json())
        thumbprint = jwk_thumbprint(jwk)
        existing = await self._repo.account_by_thumbprint(auth.token.id, thumbprint)
        if existing is not None:
            return self._send_account(request, secret, existing)
        if payload.only_return_existing:
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account exists for this key")
        if self._tos is not None and not payload.terms_of_service_agreed:
            raise malformed(f"you must agree to the terms of service at {self._tos}")
        if self._limiter is not None:
            await self._limiter.new_account(auth.token.id)
        account = await self._repo.add_account(
            Account(
                id=new_id(),
                token_id=auth.token.id,
                key=jwk_to_json(jwk),
                thumbprint=thumbprint,
                status=AccountStatus.VALID,
                contact=_check_contacts(payload.contact or ()),
                created=self._clock.seconds(),
                terms_agreed=bool(payload.terms_of_service_agreed),
            )
        )
        self._log.info(
            "account {account_id} created under token {token_id}", account_id=account.id, token_id=auth.token.id
        )
        return self._send_account(request, secret, account, status=201)

    @app.route("/acme/<secret>/acct/<account_id>", methods=["POST"])
    async def account(self, request: IRequest, secret: str, account_id: str) -> bytes:
        auth = await self._authenticated(request, secret)
        if auth.signer.id != account_id:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, "an account can only be read or changed by its own key")
        account = auth.signer
        if auth.jws.payload:
            account = _updated_account(account, m.decode(m.AccountUpdate, auth.jws.payload_json()))
            if account.status is not auth.signer.status:
                self._log.info("account {account_id} deactivated", account_id=account.id)
            if account != auth.signer:
                await self._repo.put_account(account)
        return self._send_account(request, secret, account)

    @app.route("/acme/<secret>/acct/<account_id>/orders", methods=["POST"])
    async def account_orders(self, request: IRequest, secret: str, account_id: str) -> bytes:
        auth = await self._authenticated(request, secret)
        if auth.signer.id != account_id:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, "an account's orders can only be listed by its own key")
        ids = await self._repo.account_order_ids(account_id)
        return self._json(request, r.orders_list(DirectoryUrls(self._base_url, secret), ids))

    @app.route("/acme/<secret>/key-change", methods=["POST"])
    async def key_change(self, request: IRequest, secret: str) -> bytes:
        auth = await self._authenticated(request, secret)
        account, outer = auth.signer, auth.jws
        inner = parse_inner_keychange_jws(outer.payload, outer)
        assert inner.jwk is not None
        change = m.decode(m.KeyChange, inner.payload_json())
        if change.account != outer.kid:
            raise malformed("keyChange 'account' must be the kid of the outer JWS")
        if jwk_thumbprint(jwk_from_json(change.old_key)) != account.thumbprint:
            raise malformed("keyChange 'oldKey' is not the account's current key")
        thumbprint = jwk_thumbprint(inner.jwk)
        if not await self._repo.rekey_account(account, jwk_to_json(inner.jwk), thumbprint):
            other = await self._repo.account_by_thumbprint(auth.token.id, thumbprint)
            raise malformed(
                "the new key already belongs to an account",
                status=409,
                headers={"Location": self.url(secret, "acct", other.id)} if other else {},
            )
        self._log.info("account {account_id} changed its key", account_id=account.id)
        updated = await self._repo.account(account.id)
        assert updated is not None
        return self._send_account(request, secret, updated)

    # orders

    @app.route("/acme/<secret>/new-order", methods=["POST"])
    async def new_order(self, request: IRequest, secret: str) -> bytes:
        auth = await self._authenticated(request, secret)
        payload = m.decode(m.NewOrder, auth.jws.payload_json())
        order = await self._orders.new_order(auth.token, auth.signer, payload)
        return self._send_order(request, secret, order, status=201)

    @app.route("/acme/<secret>/order/<order_id>", methods=["POST"])
    async def order(self, request: IRequest, secret: str, order_id: str) -> bytes:
        auth = await self._authenticated(request, secret)
        return self._send_order(request, secret, await self._orders.order(auth.token, auth.signer, order_id))

    @app.route("/acme/<secret>/order/<order_id>/finalize", methods=["POST"])
    async def finalize(self, request: IRequest, secret: str, order_id: str) -> bytes:
        auth = await self._authenticated(request, secret)
        order = await self._orders.ready_order(auth.token, auth.signer, order_id)
        payload = m.decode(m.Finalize, auth.jws.payload_json())
        updated = await self._orders.finalize(auth.token, auth.signer, order, payload.csr)
        ended, outcome = await self._issued_within(order_id, self._finalize_wait)
        if outcome is not None:
            # The job's outcome for the order this request finalized, as
            # stored: no need to read it again.
            updated = outcome
        elif ended:
            try:
                updated = await self._orders.order(auth.token, auth.signer, order_id)
            except Unavailable:
                # Finalize was accepted: the client polls for the outcome.
                pass
        return self._send_order(request, secret, updated)

    async def _issued_within(self, order_id: str, seconds: float) -> tuple[bool, Order | None]:
        """
        Wait (at most C{seconds}, on the clock) for the issuance job of
        C{order_id} to store its outcome or end; whether it did, and the
        order as it stored it (if it says).  C{0} does not wait at all.
        """
        if seconds <= 0:
            return False, None
        try:
            outcome = await self._issuance.when_done(order_id).addTimeout(seconds, self._clock)
        except defer.TimeoutError:
            return False, None
        return True, outcome

    # authorizations and challenges: valid from the start

    @app.route("/acme/<secret>/authz/<authz_id>", methods=["POST"])
    async def authorization(self, request: IRequest, secret: str, authz_id: str) -> bytes:
        auth = await self._authenticated(request, secret)
        authz = await self._orders.authorization(auth.token, auth.signer, authz_id)
        if auth.jws.payload:
            update = m.decode(m.AccountUpdate, auth.jws.payload_json())
            if update.status == "deactivated":
                raise malformed("authorizations of this server cannot be deactivated")
        return self._json(request, r.authorization(DirectoryUrls(self._base_url, secret), authz))

    @app.route("/acme/<secret>/chall/<authz_id>/<kind>", methods=["POST"])
    async def challenge(self, request: IRequest, secret: str, authz_id: str, kind: str) -> bytes:
        auth = await self._authenticated(request, secret)
        authz = await self._orders.authorization(auth.token, auth.signer, authz_id, "challenge")
        if kind not in r.challenge_kinds(authz):
            raise malformed("no such challenge", status=404)
        request.setHeader("Link", f'<{self.url(secret, "authz", authz.id)}>;rel="up"')
        return self._json(request, r.challenge(DirectoryUrls(self._base_url, secret), authz, kind))

    # certificates

    @app.route("/acme/<secret>/cert/<certificate_id>", methods=["POST"])
    async def certificate(self, request: IRequest, secret: str, certificate_id: str) -> bytes:
        auth = await self._authenticated(request, secret)
        record = await self._orders.certificate(auth.token, auth.signer, certificate_id)
        request.setHeader("Content-Type", PEM_CHAIN)
        request.setHeader("Link", f'<{self.url(secret, "issuer", record.id)}>;rel="up"')
        self._link_alternates(request, secret, record, shown=None)
        return record.chain_pem.encode()

    def _link_alternates(self, request: IRequest, secret: str, record: CertificateRecord, shown: int | None) -> None:
        """
        RFC 8555 section 7.4.2: C{Link: rel="alternate"} to the other chains
        the upstream CA offered for the same certificate.
        """
        if shown is not None:
            link = f'<{self.url(secret, "cert", record.id)}>;rel="alternate"'
            request.responseHeaders.addRawHeader(b"Link", link.encode())
        for index in range(len(record.alternates)):
            if index != shown:
                link = f'<{self.url(secret, "cert", record.id, "alt", str(index))}>;rel="alternate"'
                request.responseHeaders.addRawHeader(b"Link", link.encode())

    @app.route("/acme/<secret>/cert/<certificate_id>/alt/<int:index>", methods=["POST"])
    async def alternate_certificate(self, request: IRequest, secret: str, certificate_id: str, index: int) -> bytes:
        auth = await self._authenticated(request, secret)
        record = await self._orders.certificate(auth.token, auth.signer, certificate_id)
        if not 0 <= index < len(record.alternates):
            raise malformed("no such alternate chain", status=404)
        request.setHeader("Content-Type", PEM_CHAIN)
        self._link_alternates(request, secret, record, shown=index)
        return record.alternates[index].encode()

    @app.route("/acme/<secret>/issuer/<certificate_id>", methods=["GET", "POST"])
    async def issuer(self, request: IRequest, secret: str, certificate_id: str) -> bytes:
        token = await self._token(request, secret)
        record = await self._repo.certificate(certificate_id)
        if record is None or record.token_id != token.id:
            raise malformed("no such certificate", status=404)
        pems = x509.load_pem_x509_certificates(record.chain_pem.encode())
        request.setHeader("Content-Type", PEM_CHAIN)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pems[1:])

    # renewal information (RFC 9773): GET, no JWS

    @app.route(f"/acme/<secret>/{r.RENEWAL_INFO}/<cert_id>", methods=["GET"])
    async def renewal_info(self, request: IRequest, secret: str, cert_id: str) -> bytes:
        token = await self._token(request, secret)
        try:
            record = await self._repo.certificate_by_cert_id(cert_id)
        except BadCertId as e:
            raise malformed(f"not a certID: {e}") from None
        if record is None or token.id != record.token_id:
            raise malformed("no certificate with that certID was issued here", status=404)
        window = await self._renewals.window(record)
        request.setHeader("Retry-After", str(retry_after(window, self._clock.seconds())))
        urls = DirectoryUrls(self._base_url, secret)
        reason = record.window_reason if record.window_moved is not None else None
        return self._json(request, r.renewal_info(urls, window, reason))

    @app.route(f"/acme/<secret>/{r.RENEWAL_EXPLANATION}/<reason>", methods=["GET"])
    async def renewal_explanation(self, request: IRequest, secret: str, reason: str) -> bytes:
        await self._token(request, secret)
        try:
            text = RenewalReason(reason).explanation
        except ValueError:
            raise malformed("no such explanation", status=404) from None
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        return (text + "\n").encode()

    @app.route("/acme/<secret>/revoke-cert", methods=["POST"])
    async def revoke_cert(self, request: IRequest, secret: str) -> bytes:
        auth = await self._authenticated(request, secret, SignedBy.EITHER)
        payload = m.decode(m.Revocation, auth.jws.payload_json())
        await self._orders.revoke(auth.token, auth.account, auth.jws.jwk, payload)
        request.setResponseCode(200)
        return b""


def _updated_account(account: Account, update: m.AccountUpdate) -> Account:
    """
    C{account} with the changes a client may make: deactivation, contacts
    and agreeing to the terms.
    """
    if update.status is not None:
        if update.status != AccountStatus.DEACTIVATED.value:
            raise malformed("the only status a client may set is 'deactivated'")
        account = evolve(account, status=AccountStatus.DEACTIVATED)
    if update.contact is not None:
        account = evolve(account, contact=_check_contacts(update.contact))
    if update.terms_of_service_agreed:
        account = evolve(account, terms_agreed=True)
    return account


def _check_contacts(contacts: tuple[str, ...]) -> tuple[str, ...]:
    for contact in contacts:
        if not contact.startswith("mailto:"):
            raise AcmeProblem(ProblemType.UNSUPPORTED_CONTACT, f"only mailto: contacts are supported, not {contact!r}")
        address = contact[len("mailto:") :]
        local, at, domain = address.partition("@")
        if not local or not at or "." not in domain or any(c in address for c in " ,<>?;"):
            raise AcmeProblem(ProblemType.INVALID_CONTACT, f"{contact!r} is not a valid email contact")
    return contacts


def _dumps(body: r.JSONObject) -> bytes:
    """
    A response body: compact JSON, which the C encoder writes (C{indent}
    would take the pure-Python one).
    """
    return json.dumps(body, separators=(",", ":")).encode()

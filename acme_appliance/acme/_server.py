"""
The RFC 8555 server the edge boxes talk to: one directory per token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import josepy
from attrs import evolve
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..core import AcmeProblem, InvalidName, ProblemType, malformed, name_allowed, normalise_name
from ..core import rfc3339 as _rfc3339
from ..policy import Policy, Token, TokenRegistry, UnknownToken, ValidationMethod
from ..notify import EventBus, EventName
from ..wire import messages as m
from ._csr import KeyRules, check_csr
from ..wire import (
    AcmeJWS,
    b64decode,
    jwk_from_json,
    jwk_thumbprint,
    jwk_to_json,
    parse_inner_keychange_jws,
    parse_jws,
    public_key_of,
)
from ._nonces import NonceSource
from ..orders import (
    Account,
    AccountStatus,
    AcmeRepository,
    Authorization,
    CertificateRecord,
    Order,
    OrderStatus,
    new_id,
)

JOSE_JSON = "application/jose+json"
MAX_IDENTIFIERS = 100
# RFC 5280 reason codes a subscriber may ask for (RFC 8555 section 7.6).
REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5, 9})


class IssuanceQueue(Protocol):
    """
    Where accepted finalize requests go to be issued in the background.
    """

    def submit(self, order_id: str) -> None:
        """
        Start (or resume) issuance of a C{processing} order.
        """


class CertificateRevoker(Protocol):
    async def revoke(self, record: CertificateRecord, reason: int | None) -> None:
        """
        Revoke at the CA that issued C{record}; raise L{AcmeProblem}.
        """


def directory_url(base_url: str, secret: str) -> str:
    """
    The directory URL a token's clients are configured with.
    """
    return f"{base_url.rstrip('/')}/acme/{secret}/directory"


def rfc3339(seconds: float) -> str:
    return _rfc3339(seconds, fraction=False)


def _serial_hex(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


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
        issuance: IssuanceQueue,
        revoker: CertificateRevoker,
        clock: IReactorTime,
        base_url: str,
        nonces: NonceSource | None = None,
        max_body_bytes: int = 65536,
        terms_of_service: str | None = None,
        order_lifetime: float = 7 * 86400,
        retry_after: int = 2,
        events: EventBus | None = None,
    ) -> None:
        self._repo = repository
        self._events = events if events is not None else EventBus(clock)
        self._tokens = tokens
        self._policies = policies
        self._issuance = issuance
        self._revoker = revoker
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._nonces = nonces if nonces is not None else NonceSource(clock)
        self._max_body = max_body_bytes
        self._tos = terms_of_service
        self._order_lifetime = order_lifetime
        self._retry_after = retry_after

    def resource(self) -> IResource:
        return self.app.resource()

    # URLs and responses

    def url(self, secret: str, *parts: str) -> str:
        return "/".join((self._base_url, "acme", secret, *parts))

    def _headers(self, request: IRequest, secret: str) -> None:
        request.setHeader("Replay-Nonce", self._nonces.new())
        request.setHeader("Cache-Control", "no-store")
        request.setHeader("Link", f'<{self.url(secret, "directory")}>;rel="index"')

    def _json(
        self,
        request: IRequest,
        body: josepy.JSONObjectWithFields | dict[str, Any],
        *,
        status: int = 200,
        location: str | None = None,
    ) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        if location is not None:
            request.setHeader("Location", location)
        obj = body.to_json() if isinstance(body, josepy.JSONObjectWithFields) else body
        return json.dumps(obj, default=_jsonable, indent=2).encode()

    # errors: the one place exceptions become responses

    def _problem(self, request: IRequest, problem: AcmeProblem) -> bytes:
        secret = _secret_of(request)
        if secret is not None:
            self._headers(request, secret)
        request.setResponseCode(problem.status)
        request.setHeader("Content-Type", "application/problem+json")
        for name, value in problem.headers.items():
            request.setHeader(name, value)
        return json.dumps(problem.to_json(), indent=2).encode()

    @app.handle_errors(AcmeProblem)
    def handle_problem(self, request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, AcmeProblem)
        return self._problem(request, failure.value)

    @app.handle_errors(NotFound)
    def handle_not_found(self, request: IRequest, failure: Failure) -> bytes:
        return self._problem(request, malformed("no such resource", status=404))

    @app.handle_errors(MethodNotAllowed)
    def handle_bad_method(self, request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, MethodNotAllowed)
        allowed = ", ".join(failure.value.valid_methods or ())
        return self._problem(
            request,
            malformed(f"method not allowed here; use {allowed}", status=405, headers={"Allow": allowed}),
        )

    @app.handle_errors(Exception)
    def handle_internal(self, request: IRequest, failure: Failure) -> bytes:
        self._log.failure("internal error answering {method} {path}", failure,
                          method=request.method.decode(errors="replace"), path=_redacted(request))
        return self._problem(
            request, AcmeProblem(ProblemType.SERVER_INTERNAL, "internal error; the operator has the details")
        )

    # request authentication

    async def _token(self, secret: str) -> Token:
        try:
            return await self._tokens.lookup(secret)
        except UnknownToken:
            raise malformed("unknown or revoked directory", status=404) from None

    async def _read_body(self, request: IRequest) -> bytes:
        content_type = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if content_type != JOSE_JSON:
            raise malformed(f"Content-Type must be {JOSE_JSON}", status=415)
        length = request.getHeader("content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            raise malformed(f"request body larger than {self._max_body} bytes", status=413)
        body = request.content.read(self._max_body + 1)
        if len(body) > self._max_body:
            raise malformed(f"request body larger than {self._max_body} bytes", status=413)
        return body

    async def _verified(
        self, request: IRequest, secret: str, token: Token, *, key_mode: str = "kid"
    ) -> tuple[AcmeJWS, Account | None]:
        """
        Parse and authenticate a JWS POST.

        @param key_mode: C{"kid"} (an account of this token signs),
            C{"jwk"} (an embedded key signs: newAccount) or C{"either"}
            (revokeCert).
        @return: the JWS and the signing account (C{None} when a C{jwk}
            signed).
        """
        jws = parse_jws(await self._read_body(request))
        expected = self._base_url + request.uri.decode("ascii", "replace")
        if jws.url != expected:
            raise AcmeProblem(
                ProblemType.UNAUTHORIZED, f"JWS url {jws.url!r} does not match the request URL {expected!r}"
            )
        if not self._nonces.redeem(jws.nonce):
            raise AcmeProblem(ProblemType.BAD_NONCE, "unknown, used or expired nonce; use the fresh one in Replay-Nonce")
        if jws.jwk is not None:
            if key_mode == "kid":
                raise malformed("this request must be signed by an account (kid), not a jwk")
            jws.verify(jws.jwk)
            return jws, None
        if key_mode == "jwk":
            raise malformed("this request must carry the account's public key (jwk), not a kid")
        account = await self._account_for_kid(secret, token, jws.kid or "")
        jws.verify(jwk_from_json(account.key))
        return jws, account

    async def _account_for_kid(self, secret: str, token: Token, kid: str) -> Account:
        prefix = self.url(secret, "acct") + "/"
        account = None
        if kid.startswith(prefix) and "/" not in kid[len(prefix) :]:
            account = await self._repo.account(kid[len(prefix) :])
        if account is None or account.token_id != token.id:
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account with this kid under this directory")
        if account.status is not AccountStatus.VALID:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, f"account is {account.status.value}")
        return account

    # directory and nonces

    @app.route("/acme/<secret>/directory", methods=["GET"])
    async def directory(self, request: IRequest, secret: str) -> bytes:
        await self._token(secret)
        self._headers(request, secret)
        return self._json(
            request,
            m.Directory(
                new_nonce=self.url(secret, "new-nonce"),
                new_account=self.url(secret, "new-account"),
                new_order=self.url(secret, "new-order"),
                revoke_cert=self.url(secret, "revoke-cert"),
                key_change=self.url(secret, "key-change"),
                meta=m.DirectoryMeta(terms_of_service=self._tos, external_account_required=False),
            ),
        )

    @app.route("/acme/<secret>/new-nonce", methods=["GET", "HEAD"])
    async def new_nonce(self, request: IRequest, secret: str) -> bytes:
        await self._token(secret)
        self._headers(request, secret)
        request.setResponseCode(200 if request.method == b"HEAD" else 204)
        return b""

    # accounts

    def _account_resource(self, secret: str, account: Account) -> m.AccountResource:
        return m.AccountResource(
            status=account.status.value,
            contact=account.contact,
            terms_of_service_agreed=account.terms_agreed or None,
            orders=self.url(secret, "acct", account.id, "orders"),
            key=account.key,
        )

    @app.route("/acme/<secret>/new-account", methods=["POST"])
    async def new_account(self, request: IRequest, secret: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        jws, _ = await self._verified(request, secret, token, key_mode="jwk")
        assert jws.jwk is not None
        payload = m.decode(m.NewAccount, jws.payload_json())
        thumbprint = jwk_thumbprint(jws.jwk)
        existing = await self._repo.account_by_thumbprint(token.id, thumbprint)
        if existing is not None:
            return self._json(
                request,
                self._account_resource(secret, existing),
                location=self.url(secret, "acct", existing.id),
            )
        if payload.only_return_existing:
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account exists for this key")
        if self._tos is not None and not payload.terms_of_service_agreed:
            raise malformed(f"you must agree to the terms of service at {self._tos}")
        account = await self._repo.add_account(
            Account(
                id=new_id(),
                token_id=token.id,
                key=jwk_to_json(jws.jwk),
                thumbprint=thumbprint,
                status=AccountStatus.VALID,
                contact=_check_contacts(payload.contact or ()),
                created=self._clock.seconds(),
                terms_agreed=bool(payload.terms_of_service_agreed),
            )
        )
        self._log.info("account {account_id} created under token {token_id}", account_id=account.id, token_id=token.id)
        return self._json(
            request, self._account_resource(secret, account), status=201, location=self.url(secret, "acct", account.id)
        )

    @app.route("/acme/<secret>/acct/<account_id>", methods=["POST"])
    async def account(self, request: IRequest, secret: str, account_id: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        jws, signer = await self._verified(request, secret, token)
        assert signer is not None
        if signer.id != account_id:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, "an account can only be read or changed by its own key")
        account = signer
        if jws.payload:
            update = m.decode(m.AccountUpdate, jws.payload_json())
            if update.status is not None:
                if update.status != AccountStatus.DEACTIVATED.value:
                    raise malformed("the only status a client may set is 'deactivated'")
                account = evolve(account, status=AccountStatus.DEACTIVATED)
                self._log.info("account {account_id} deactivated", account_id=account.id)
            if update.contact is not None:
                account = evolve(account, contact=_check_contacts(update.contact))
            if update.terms_of_service_agreed:
                account = evolve(account, terms_agreed=True)
            if account != signer:
                await self._repo.put_account(account)
        return self._json(request, self._account_resource(secret, account), location=self.url(secret, "acct", account.id))

    @app.route("/acme/<secret>/acct/<account_id>/orders", methods=["POST"])
    async def account_orders(self, request: IRequest, secret: str, account_id: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        _, signer = await self._verified(request, secret, token)
        assert signer is not None
        if signer.id != account_id:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, "an account's orders can only be listed by its own key")
        ids = await self._repo.account_order_ids(account_id)
        return self._json(request, m.OrdersList(orders=tuple(self.url(secret, "order", i) for i in ids)))

    @app.route("/acme/<secret>/key-change", methods=["POST"])
    async def key_change(self, request: IRequest, secret: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        outer, account = await self._verified(request, secret, token)
        assert account is not None
        inner = parse_inner_keychange_jws(outer.payload, outer)
        assert inner.jwk is not None
        change = m.decode(m.KeyChange, inner.payload_json())
        if change.account != outer.kid:
            raise malformed("keyChange 'account' must be the kid of the outer JWS")
        if jwk_thumbprint(jwk_from_json(change.old_key)) != account.thumbprint:
            raise malformed("keyChange 'oldKey' is not the account's current key")
        thumbprint = jwk_thumbprint(inner.jwk)
        if not await self._repo.rekey_account(account, jwk_to_json(inner.jwk), thumbprint):
            other = await self._repo.account_by_thumbprint(token.id, thumbprint)
            raise malformed(
                "the new key already belongs to an account",
                status=409,
                headers={"Location": self.url(secret, "acct", other.id)} if other else {},
            )
        self._log.info("account {account_id} changed its key", account_id=account.id)
        updated = await self._repo.account(account.id)
        assert updated is not None
        return self._json(request, self._account_resource(secret, updated), location=self.url(secret, "acct", account.id))

    # orders

    def _policy(self, token: Token) -> Policy:
        policy = self._policies.get(token.policy)
        if policy is None:
            raise AcmeProblem(
                ProblemType.SERVER_INTERNAL, f"this directory's policy {token.policy!r} is no longer configured"
            )
        return policy

    def _check_names(self, token: Token, policy: Policy, identifiers: tuple[m.Identifier, ...]) -> tuple[str, ...]:
        if len(identifiers) > MAX_IDENTIFIERS:
            raise AcmeProblem(ProblemType.REJECTED_IDENTIFIER, f"at most {MAX_IDENTIFIERS} names per order")
        names: list[str] = []
        subproblems: list[dict[str, Any]] = []

        def reject(kind: ProblemType, ident: m.Identifier, detail: str) -> None:
            subproblems.append(
                {"type": kind.urn, "detail": detail, "identifier": {"type": ident.type, "value": ident.value}}
            )

        for ident in identifiers:
            if ident.type != "dns":
                reject(ProblemType.UNSUPPORTED_IDENTIFIER, ident, f"identifier type {ident.type!r} is not supported")
                continue
            try:
                name = normalise_name(ident.value)
            except InvalidName as e:
                reject(ProblemType.REJECTED_IDENTIFIER, ident, str(e))
                continue
            if token.domains and not name_allowed(name, token.domains):
                reject(ProblemType.REJECTED_IDENTIFIER, ident, f"{name} is not among this directory's names")
            elif not name_allowed(name, policy.allowed_domains):
                reject(ProblemType.REJECTED_IDENTIFIER, ident, f"policy {policy.name!r} does not allow {name}")
            elif name.startswith("*.") and policy.validation is ValidationMethod.FILE_PROXY:
                reject(
                    ProblemType.REJECTED_IDENTIFIER,
                    ident,
                    f"{name}: wildcards need DNS validation, and policy {policy.name!r} uses file-proxy",
                )
            elif name not in names:
                names.append(name)
        if subproblems:
            kinds = {s["type"] for s in subproblems}
            top = ProblemType.UNSUPPORTED_IDENTIFIER if kinds == {ProblemType.UNSUPPORTED_IDENTIFIER.urn} else ProblemType.REJECTED_IDENTIFIER
            detail = "; ".join(s["detail"] for s in subproblems)
            raise AcmeProblem(top, detail, subproblems=subproblems)
        return tuple(names)

    def _order_resource(self, secret: str, order: Order) -> m.OrderResource:
        return m.OrderResource(
            status=order.status.value,
            expires=rfc3339(order.expires),
            identifiers=tuple(m.Identifier(type="dns", value=n) for n in order.names),
            authorizations=tuple(self.url(secret, "authz", a) for a in order.authz_ids),
            finalize=self.url(secret, "order", order.id, "finalize"),
            certificate=self.url(secret, "cert", order.certificate_id) if order.certificate_id else None,
            error=order.error,
        )

    def _send_order(self, request: IRequest, secret: str, order: Order, *, status: int = 200) -> bytes:
        if order.status is OrderStatus.PROCESSING:
            request.setHeader("Retry-After", str(self._retry_after))
        return self._json(
            request, self._order_resource(secret, order), status=status, location=self.url(secret, "order", order.id)
        )

    @app.route("/acme/<secret>/new-order", methods=["POST"])
    async def new_order(self, request: IRequest, secret: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        jws, account = await self._verified(request, secret, token)
        assert account is not None
        payload = m.decode(m.NewOrder, jws.payload_json())
        if payload.not_before is not None or payload.not_after is not None:
            raise malformed("notBefore and notAfter are not supported; leave them out")
        policy = self._policy(token)
        names = self._check_names(token, policy, payload.identifiers)
        now = self._clock.seconds()
        order_id = new_id()
        authorizations = [
            Authorization(
                id=new_id(),
                order_id=order_id,
                token_id=token.id,
                account_id=account.id,
                name=name[2:] if name.startswith("*.") else name,
                wildcard=name.startswith("*."),
                expires=now + self._order_lifetime,
                validated=now,
                challenge_token=new_id(),
            )
            for name in names
        ]
        order = Order(
            id=order_id,
            token_id=token.id,
            account_id=account.id,
            policy=policy.name,
            names=names,
            status=OrderStatus.READY,
            created=now,
            expires=now + self._order_lifetime,
            authz_ids=tuple(a.id for a in authorizations),
        )
        await self._repo.add_order(order, authorizations)
        self._log.info(
            "order {order_id} created under token {token_id} for {names}", order_id=order.id, token_id=token.id,
            names=",".join(names),
        )
        self._events.emit(EventName.ORDER_CREATED, order_id=order.id, token_id=token.id, names=names,
                          outcome=order.status.value, details=(("policy", policy.name),))
        return self._send_order(request, secret, order, status=201)

    async def _owned(self, record: Order | Authorization | CertificateRecord | None, token: Token, account: Account, what: str) -> Any:
        if record is None or record.token_id != token.id:
            raise malformed(f"no such {what}", status=404)
        if record.account_id != account.id:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, f"this {what} belongs to another account")
        return record

    def _current(self, order: Order) -> Order:
        if order.status in (OrderStatus.PENDING, OrderStatus.READY) and order.expires <= self._clock.seconds():
            return evolve(order, status=OrderStatus.INVALID, error=AcmeProblem(ProblemType.MALFORMED, "order expired").to_json())
        return order

    @app.route("/acme/<secret>/order/<order_id>", methods=["POST"])
    async def order(self, request: IRequest, secret: str, order_id: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        _, account = await self._verified(request, secret, token)
        assert account is not None
        order = await self._owned(await self._repo.order(order_id), token, account, "order")
        return self._send_order(request, secret, self._current(order))

    @app.route("/acme/<secret>/order/<order_id>/finalize", methods=["POST"])
    async def finalize(self, request: IRequest, secret: str, order_id: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        jws, account = await self._verified(request, secret, token)
        assert account is not None
        order = self._current(await self._owned(await self._repo.order(order_id), token, account, "order"))
        if order.status is not OrderStatus.READY:
            raise AcmeProblem(ProblemType.ORDER_NOT_READY, f"order is {order.status.value}, not ready")
        payload = m.decode(m.Finalize, jws.payload_json())
        policy = self._policy(token)
        check_csr(
            b64decode(payload.csr, "csr"),
            order_names=order.names,
            account_key=public_key_of(jwk_from_json(account.key)),
            key_rules=KeyRules(key_types=frozenset(policy.key_types), rsa_min_bits=policy.rsa_min_bits),
        )
        now = self._clock.seconds()
        # Queued before the state change so that a crash in between cannot
        # leave a processing order that nothing will ever issue.
        await self._repo.enqueue(order.id)
        updated = await self._repo.update_order(
            order.id,
            lambda o: evolve(o, status=OrderStatus.PROCESSING, csr=payload.csr, processing_since=now)
            if o.status is OrderStatus.READY
            else None,
        )
        if updated is None or updated.processing_since != now or updated.csr != payload.csr:
            raise AcmeProblem(ProblemType.ORDER_NOT_READY, "order was finalized by another request")
        self._log.info("order {order_id} is processing", order_id=order.id)
        self._events.emit(EventName.ORDER_PROCESSING, order_id=order.id, token_id=token.id, names=order.names,
                          outcome=OrderStatus.PROCESSING.value)
        self._issuance.submit(order.id)
        return self._send_order(request, secret, updated)

    # authorizations and challenges: valid from the start

    def _challenges(self, secret: str, authz: Authorization) -> tuple[m.ChallengeResource, ...]:
        kinds = ("dns-01",) if authz.wildcard else ("http-01", "dns-01")
        return tuple(self._challenge(secret, authz, kind) for kind in kinds)

    def _challenge(self, secret: str, authz: Authorization, kind: str) -> m.ChallengeResource:
        return m.ChallengeResource(
            type=kind,
            url=self.url(secret, "chall", authz.id, kind),
            status="valid",
            token=authz.challenge_token,
            validated=rfc3339(authz.validated),
        )

    @app.route("/acme/<secret>/authz/<authz_id>", methods=["POST"])
    async def authorization(self, request: IRequest, secret: str, authz_id: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        jws, account = await self._verified(request, secret, token)
        assert account is not None
        authz: Authorization = await self._owned(await self._repo.authorization(authz_id), token, account, "authorization")
        if jws.payload:
            update = m.decode(m.AccountUpdate, jws.payload_json())
            if update.status == "deactivated":
                raise malformed("authorizations of this server cannot be deactivated")
        return self._json(
            request,
            m.AuthorizationResource(
                identifier=m.Identifier(type="dns", value=authz.name),
                status="valid",
                expires=rfc3339(authz.expires),
                challenges=self._challenges(secret, authz),
                wildcard=True if authz.wildcard else None,
            ),
        )

    @app.route("/acme/<secret>/chall/<authz_id>/<kind>", methods=["POST"])
    async def challenge(self, request: IRequest, secret: str, authz_id: str, kind: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        _, account = await self._verified(request, secret, token)
        assert account is not None
        authz: Authorization = await self._owned(await self._repo.authorization(authz_id), token, account, "challenge")
        if kind not in {c.type for c in self._challenges(secret, authz)}:
            raise malformed("no such challenge", status=404)
        request.setHeader("Link", f'<{self.url(secret, "authz", authz.id)}>;rel="up"')
        return self._json(request, self._challenge(secret, authz, kind))

    # certificates

    @app.route("/acme/<secret>/cert/<certificate_id>", methods=["POST"])
    async def certificate(self, request: IRequest, secret: str, certificate_id: str) -> bytes:
        record = await self._account_certificate(request, secret, certificate_id)
        request.setHeader("Content-Type", "application/pem-certificate-chain")
        request.setHeader("Link", f'<{self.url(secret, "issuer", record.id)}>;rel="up"')
        self._link_alternates(request, secret, record, shown=None)
        return record.chain_pem.encode()

    async def _account_certificate(self, request: IRequest, secret: str, certificate_id: str) -> CertificateRecord:
        """
        The certificate a POST-as-GET asks for, if it belongs to the signing
        account.
        """
        token = await self._token(secret)
        self._headers(request, secret)
        _, account = await self._verified(request, secret, token)
        assert account is not None
        record: CertificateRecord = await self._owned(
            await self._repo.certificate(certificate_id), token, account, "certificate"
        )
        return record

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
        record = await self._account_certificate(request, secret, certificate_id)
        if not 0 <= index < len(record.alternates):
            raise malformed("no such alternate chain", status=404)
        request.setHeader("Content-Type", "application/pem-certificate-chain")
        self._link_alternates(request, secret, record, shown=index)
        return record.alternates[index].encode()

    @app.route("/acme/<secret>/issuer/<certificate_id>", methods=["GET", "POST"])
    async def issuer(self, request: IRequest, secret: str, certificate_id: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        record = await self._repo.certificate(certificate_id)
        if record is None or record.token_id != token.id:
            raise malformed("no such certificate", status=404)
        pems = x509.load_pem_x509_certificates(record.chain_pem.encode())
        request.setHeader("Content-Type", "application/pem-certificate-chain")
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pems[1:])

    @app.route("/acme/<secret>/revoke-cert", methods=["POST"])
    async def revoke_cert(self, request: IRequest, secret: str) -> bytes:
        token = await self._token(secret)
        self._headers(request, secret)
        jws, account = await self._verified(request, secret, token, key_mode="either")
        payload = m.decode(m.Revocation, jws.payload_json())
        if payload.reason is not None and payload.reason not in REVOCATION_REASONS:
            raise AcmeProblem(
                ProblemType.BAD_REVOCATION_REASON,
                f"reason {payload.reason} is not allowed; use one of {sorted(REVOCATION_REASONS)}",
            )
        try:
            certificate = x509.load_der_x509_certificate(b64decode(payload.certificate, "certificate"))
        except ValueError:
            raise malformed("certificate is not a DER X.509 certificate") from None
        record = await self._repo.certificate_by_serial(_serial_hex(certificate))
        if record is None or record.token_id != token.id or record.chain_pem.encode().find(
            certificate.public_bytes(serialization.Encoding.PEM)
        ) != 0:
            raise AcmeProblem(ProblemType.UNAUTHORIZED, "this directory did not issue that certificate")
        if account is not None:
            if record.account_id != account.id:
                raise AcmeProblem(ProblemType.UNAUTHORIZED, "the certificate belongs to another account")
        else:
            assert jws.jwk is not None
            if public_key_of(jws.jwk) != certificate.public_key():
                raise AcmeProblem(ProblemType.UNAUTHORIZED, "the jwk is not the certificate's key")
        if record.revoked_at is not None:
            raise AcmeProblem(ProblemType.ALREADY_REVOKED, "the certificate is already revoked")
        await self._revoker.revoke(record, payload.reason)
        self._log.info("certificate {serial} of order {order_id} revoked", serial=record.serial, order_id=record.order_id)
        request.setResponseCode(200)
        return b""


def _check_contacts(contacts: tuple[str, ...]) -> tuple[str, ...]:
    for contact in contacts:
        if not contact.startswith("mailto:"):
            raise AcmeProblem(ProblemType.UNSUPPORTED_CONTACT, f"only mailto: contacts are supported, not {contact!r}")
        address = contact[len("mailto:") :]
        local, at, domain = address.partition("@")
        if not local or not at or "." not in domain or any(c in address for c in " ,<>?;"):
            raise AcmeProblem(ProblemType.INVALID_CONTACT, f"{contact!r} is not a valid email contact")
    return contacts


def _secret_of(request: IRequest) -> str | None:
    parts = request.path.split(b"/")
    if len(parts) > 2 and parts[1] == b"acme" and parts[2]:
        return parts[2].decode("ascii", "replace")
    return None


def _redacted(request: IRequest) -> str:
    """
    The request path with the directory token hidden, for logs.
    """
    parts = request.path.decode("ascii", "replace").split("/")
    if len(parts) > 2 and parts[1] == "acme":
        parts[2] = "<token>"
    return "/".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")

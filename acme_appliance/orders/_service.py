"""
What the ACME server may do with orders, authorizations and certificates,
apart from HTTP: the rules for new orders, finalize and revocation (the
part Boulder calls the registration authority).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, TypeVar

import josepy
from attrs import evolve, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..core import AcmeProblem, InvalidName, ProblemType, malformed, name_allowed, normalise_name
from ..notify import Event, EventBus, EventName, PolicyEvent
from ..policy import Policy, Profile, Token, ValidationMethod
from ..wire import b64decode, jwk_from_json, public_key_of
from ..wire import messages as m
from ._certid import BadCertId
from ._csr import KeyRules, check_csr
from ._limits import RateLimiter
from ._records import Account, AcmeRepository, Authorization, CertificateRecord, Order, OrderStatus, new_id
from ._renewal import RenewalReason, RenewalWindows

MAX_IDENTIFIERS = 100
# RFC 5280 reason codes a subscriber may ask for (RFC 8555 section 7.6).
REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5, 9})

Owned = TypeVar("Owned", Order, Authorization, CertificateRecord)


class IssuanceQueue(Protocol):
    """
    Where accepted finalize requests go to be issued in the background.
    """

    def submit(self, order_id: str, domains: tuple[str, ...] | None = None) -> None:
        """
        Start (or resume) issuance of a C{processing} order; C{domains}: its
        token's names, as finalize just checked the order against them
        (C{None}: the job reads the token).
        """


class IssuanceProgress(IssuanceQueue, Protocol):
    """
    An issuance queue that can also say when a job ends and how long jobs
    take, so that finalize may wait for a moment and C{Retry-After} fit.
    """

    def when_done(self, order_id: str) -> Deferred[Order | None]:
        """
        Fires when the job of C{order_id} running here has stored the
        order's outcome (with the order as stored) or ended without (with
        C{None}; at once when none runs here); cancelling it forgets it.
        """

    def expected_seconds(self, policy: str) -> float | None:
        """
        How long a job of C{policy} is expected to take; C{None}: unknown.
        """


class CertificateRevoker(Protocol):
    """
    Revokes issued certificates at their CA.
    """

    async def revoke(self, record: CertificateRecord, reason: int | None) -> None:
        """
        Revoke at the CA that issued C{record}; raise L{AcmeProblem}.
        """


def owned(record: Owned | None, token: Token, account: Account, what: str) -> Owned:
    """
    C{record} if it exists under C{token} and belongs to C{account}.

    @raise AcmeProblem: C{malformed} 404 when it does not exist (here),
        C{unauthorized} when another account owns it.
    """
    if record is None or record.token_id != token.id:
        raise malformed(f"no such {what}", status=404)
    if record.account_id != account.id:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, f"this {what} belongs to another account")
    return record


def _subproblem(kind: ProblemType, ident: m.Identifier, detail: str) -> dict[str, Any]:
    return {"type": kind.urn, "detail": detail, "identifier": {"type": ident.type, "value": ident.value}}


def _name_problem(
    domains: tuple[str, ...], policy: Policy, ident: m.Identifier
) -> tuple[str | None, dict[str, Any] | None]:
    """
    The normalised name of C{ident}, or the subproblem that refuses it.
    """
    if ident.type != "dns":
        return None, _subproblem(
            ProblemType.UNSUPPORTED_IDENTIFIER, ident, f"identifier type {ident.type!r} is not supported"
        )
    try:
        name = normalise_name(ident.value)
    except InvalidName as e:
        return None, _subproblem(ProblemType.REJECTED_IDENTIFIER, ident, str(e))
    if domains and not name_allowed(name, domains):
        detail = f"{name} is not among this directory's names"
    elif not name_allowed(name, policy.allowed_domains):
        detail = f"policy {policy.name!r} does not allow {name}"
    elif name.startswith("*.") and policy.validation is ValidationMethod.FILE_PROXY:
        detail = f"{name}: wildcards need DNS validation, and policy {policy.name!r} uses file-proxy"
    else:
        return name, None
    return None, _subproblem(ProblemType.REJECTED_IDENTIFIER, ident, detail)


def check_names(token: Token, policy: Policy, identifiers: tuple[m.Identifier, ...]) -> tuple[str, ...]:
    """
    The names a new order asks for, normalised and without duplicates.

    @raise AcmeProblem: see L{_checked_names}.
    """
    return _checked_names(token.domains, policy, identifiers)


def recheck_names(domains: tuple[str, ...], policy: Policy, names: tuple[str, ...]) -> None:
    """
    Check the names of an existing order against a token's C{domains} and
    its C{policy} as they are now (either may have been narrowed since the
    order was made).

    @raise AcmeProblem: C{rejectedIdentifier} naming what is no longer
        allowed.
    """
    _checked_names(domains, policy, tuple(m.Identifier(type="dns", value=name) for name in names))


def _checked_names(domains: tuple[str, ...], policy: Policy, identifiers: tuple[m.Identifier, ...]) -> tuple[str, ...]:
    """
    The normalised names of C{identifiers}, if the token's C{domains} and
    C{policy} allow them all.

    @raise AcmeProblem: C{rejectedIdentifier} (or C{unsupportedIdentifier}
        when that is all that is wrong) with one subproblem per refused
        identifier.
    """
    if len(identifiers) > MAX_IDENTIFIERS:
        raise AcmeProblem(ProblemType.REJECTED_IDENTIFIER, f"at most {MAX_IDENTIFIERS} names per order")
    names: list[str] = []
    subproblems: list[dict[str, Any]] = []
    for ident in identifiers:
        name, problem = _name_problem(domains, policy, ident)
        if problem is not None:
            subproblems.append(problem)
        elif name is not None and name not in names:
            names.append(name)
    if subproblems:
        kinds = {s["type"] for s in subproblems}
        only_type = kinds == {ProblemType.UNSUPPORTED_IDENTIFIER.urn}
        top = ProblemType.UNSUPPORTED_IDENTIFIER if only_type else ProblemType.REJECTED_IDENTIFIER
        raise AcmeProblem(top, "; ".join(s["detail"] for s in subproblems), subproblems=subproblems)
    return tuple(names)


def choose_profile(policy: Policy, requested: str | None) -> str | None:
    """
    The profile of a new order: C{requested} if C{policy} offers it, the
    policy's default when the order names none.

    @raise AcmeProblem: C{invalidProfile} for a profile the policy does not
        offer.
    """
    if requested is None:
        return policy.default_profile
    if policy.profile(requested) is None:
        offered = ", ".join(p.name for p in policy.profiles)
        raise AcmeProblem(
            ProblemType.INVALID_PROFILE,
            f"profile {requested!r} is not offered here; "
            + (f"choose one of: {offered}" if offered else "this directory offers no profiles"),
        )
    return requested


@frozen(kw_only=True)
class OrderService:
    """
    Orders for accounts of a token: creating them, finalizing them into the
    issuance queue and revoking what they issued.  Authorizations are valid
    from the start.

    Constructed with C{repository}, C{policies} (by name), C{issuance},
    C{revoker}, C{clock}, C{events}, C{order_lifetime} (seconds) and
    C{limiter} (the rate limits; C{None}: none) and C{renewals} (the
    renewal windows revocation moves; C{None}: none).
    """

    _log: ClassVar[Logger] = Logger()

    _repo: AcmeRepository = field(alias="repository")
    _policies: Mapping[str, Policy]
    _issuance: IssuanceQueue
    _revoker: CertificateRevoker
    _clock: IReactorTime
    _events: EventBus
    _order_lifetime: float = 7 * 86400
    _limiter: RateLimiter | None = None
    _renewals: RenewalWindows | None = None

    def policy(self, token: Token) -> Policy:
        """
        The policy C{token} is issued under.

        @raise AcmeProblem: C{serverInternal} when it is no longer configured.
        """
        policy = self._policies.get(token.policy)
        if policy is None:
            raise AcmeProblem(
                ProblemType.SERVER_INTERNAL, f"this directory's policy {token.policy!r} is no longer configured"
            )
        return policy

    def profiles(self, token: Token) -> tuple[Profile, ...]:
        """
        The profiles C{token}'s clients may ask for (none when its policy is
        no longer configured: the directory still answers).
        """
        policy = self._policies.get(token.policy)
        return policy.profiles if policy is not None else ()

    # new orders

    async def new_order(self, token: Token, account: Account, request: m.NewOrder) -> Order:
        """
        Check and store a new, C{ready} order with its authorizations.
        """
        if request.not_before is not None or request.not_after is not None:
            raise malformed("notBefore and notAfter are not supported; leave them out")
        policy = self.policy(token)
        names = check_names(token, policy, request.identifiers)
        profile = choose_profile(policy, request.profile)
        if self._limiter is not None:
            await self._limiter.new_order(token.id, account.id)
        order, authorizations = self._build_order(token, account, policy, names)
        order = evolve(order, profile=profile)
        if request.replaces is not None:
            order = evolve(order, replaces=request.replaces)
            await self._replace(account, order)
        await self._repo.add_order(order, authorizations)
        await self._repo.account_active(account, order.created)
        self._log.info(
            "order {order_id} created under token {token_id} for {names}",
            order_id=order.id,
            token_id=token.id,
            names=",".join(names),
        )
        self._events.emit(
            PolicyEvent,
            name=EventName.ORDER_CREATED,
            order_id=order.id,
            token_id=token.id,
            names=names,
            outcome=order.status.value,
            policy=policy.name,
        )
        return order

    async def _replace(self, account: Account, order: Order) -> None:
        """
        RFC 9773 section 5: mark the certificate C{order} replaces, which
        must be one of C{account}'s sharing a name with the order and not
        already replaced by another order (one that failed or expired does
        not count).

        @raise AcmeProblem: C{malformed} (400) for a bad or unknown certID,
            C{alreadyReplaced} (409).
        """
        assert order.replaces is not None
        try:
            record = await self._repo.certificate_by_cert_id(order.replaces)
        except BadCertId as e:
            raise malformed(f"replaces: {e}") from None
        if record is None or record.account_id != account.id:
            raise malformed("replaces: no certificate with that certID was issued to this account")
        if not set(record.names) & set(order.names):
            raise malformed("replaces: the certificate shares no name with this order")
        earlier = record.replaced_by
        if earlier is not None and not await self._replacement_failed(earlier):
            raise AcmeProblem(ProblemType.ALREADY_REPLACED, "that certificate was already replaced by another order")
        marked = await self._repo.update_certificate(
            record.id, lambda c: evolve(c, replaced_by=order.id) if c.replaced_by == earlier else None
        )
        if marked is None or marked.replaced_by != order.id:
            raise AcmeProblem(ProblemType.ALREADY_REPLACED, "that certificate was already replaced by another order")

    async def _replacement_failed(self, order_id: str) -> bool:
        replacing = await self._repo.order(order_id)
        return replacing is None or self._current(replacing).status is OrderStatus.INVALID

    def _build_order(
        self, token: Token, account: Account, policy: Policy, names: tuple[str, ...]
    ) -> tuple[Order, list[Authorization]]:
        now = self._clock.seconds()
        expires = now + self._order_lifetime
        order_id = new_id()
        authorizations = [
            Authorization(
                id=new_id(),
                order_id=order_id,
                token_id=token.id,
                account_id=account.id,
                name=name[2:] if name.startswith("*.") else name,
                wildcard=name.startswith("*."),
                expires=expires,
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
            expires=expires,
            authz_ids=tuple(a.id for a in authorizations),
        )
        return order, authorizations

    # reading

    def _current(self, order: Order) -> Order:
        if order.status in (OrderStatus.PENDING, OrderStatus.READY) and order.expires <= self._clock.seconds():
            return evolve(
                order, status=OrderStatus.INVALID, error=AcmeProblem(ProblemType.MALFORMED, "order expired").to_json()
            )
        return order

    async def order(self, token: Token, account: Account, order_id: str) -> Order:
        """
        C{account}'s order, as it is now (an expired one is C{invalid}).
        """
        return self._current(owned(await self._repo.order(order_id), token, account, "order"))

    async def authorization(
        self, token: Token, account: Account, authz_id: str, what: str = "authorization"
    ) -> Authorization:
        """
        C{account}'s authorization; C{what} names it in problems.
        """
        return owned(await self._repo.authorization(authz_id), token, account, what)

    async def certificate(self, token: Token, account: Account, certificate_id: str) -> CertificateRecord:
        """
        C{account}'s certificate.
        """
        return owned(await self._repo.certificate(certificate_id), token, account, "certificate")

    # finalize

    async def ready_order(self, token: Token, account: Account, order_id: str) -> Order:
        """
        C{account}'s order, which must be C{ready} to finalize.

        @raise AcmeProblem: C{orderNotReady} otherwise.
        """
        order = await self.order(token, account, order_id)
        if order.status is not OrderStatus.READY:
            raise AcmeProblem(ProblemType.ORDER_NOT_READY, f"order is {order.status.value}, not ready")
        return order

    async def finalize(self, token: Token, account: Account, order: Order, csr: str) -> Order:
        """
        Check C{csr} (base64url DER) against a L{ready_order} and its policy,
        move the order to C{processing} and hand it to the issuance queue.
        """
        policy = self.policy(token)
        recheck_names(token.domains, policy, order.names)
        check_csr(
            b64decode(csr, "csr"),
            order_names=order.names,
            account_key=public_key_of(jwk_from_json(account.key)),
            key_rules=KeyRules(key_types=frozenset(policy.key_types), rsa_min_bits=policy.rsa_min_bits),
        )
        now = self._clock.seconds()
        # Queued before the state change (in the same write, see
        # Store.write_in_order) so that a crash cannot leave a processing
        # order that nothing will ever issue.
        updated = await self._repo.update_order(
            order.id,
            lambda o: (
                evolve(o, status=OrderStatus.PROCESSING, csr=csr, processing_since=now)
                if o.status is OrderStatus.READY
                else None
            ),
            known=order,
            before=[self._repo.enqueue_write(order.id, now)],
        )
        if updated is None or updated.processing_since != now or updated.csr != csr:
            raise AcmeProblem(ProblemType.ORDER_NOT_READY, "order was finalized by another request")
        self._log.info("order {order_id} is processing", order_id=order.id)
        self._events.emit(
            Event,
            name=EventName.ORDER_PROCESSING,
            order_id=order.id,
            token_id=token.id,
            names=order.names,
            outcome=OrderStatus.PROCESSING.value,
        )
        self._issuance.submit(order.id, token.domains)
        return updated

    # revocation

    async def revoke(
        self, token: Token, account: Account | None, jwk: josepy.JWK | None, request: m.Revocation
    ) -> CertificateRecord:
        """
        Revoke a certificate this token issued, asked for by the account
        that ordered it or (C{account} C{None}) by a JWS its key signed.
        """
        if request.reason is not None and request.reason not in REVOCATION_REASONS:
            raise AcmeProblem(
                ProblemType.BAD_REVOCATION_REASON,
                f"reason {request.reason} is not allowed; use one of {sorted(REVOCATION_REASONS)}",
            )
        try:
            certificate = x509.load_der_x509_certificate(b64decode(request.certificate, "certificate"))
        except ValueError:
            raise malformed("certificate is not a DER X.509 certificate") from None
        record = await self._issued_here(token, certificate)
        if account is not None:
            if record.account_id != account.id:
                raise AcmeProblem(ProblemType.UNAUTHORIZED, "the certificate belongs to another account")
        else:
            assert jwk is not None
            if public_key_of(jwk) != certificate.public_key():
                raise AcmeProblem(ProblemType.UNAUTHORIZED, "the jwk is not the certificate's key")
        if record.revoked_at is not None:
            raise AcmeProblem(ProblemType.ALREADY_REVOKED, "the certificate is already revoked")
        await self._revoker.revoke(record, request.reason)
        if self._renewals is not None:
            await self._renewals.move(record.id, RenewalReason.REVOKED)
        self._log.info(
            "certificate {serial} of order {order_id} revoked", serial=record.serial, order_id=record.order_id
        )
        return record

    async def _issued_here(self, token: Token, certificate: x509.Certificate) -> CertificateRecord:
        record = await self._repo.certificate_by_serial(format(certificate.serial_number, "x"))
        if (
            record is None
            or record.token_id != token.id
            or record.chain_pem.encode().find(certificate.public_bytes(serialization.Encoding.PEM)) != 0
        ):
            raise AcmeProblem(ProblemType.UNAUTHORIZED, "this directory did not issue that certificate")
        return record

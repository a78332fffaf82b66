"""
The RFC 8555 resources the server answers with, built from the stored
records.
"""

from __future__ import annotations

import math

from ..core import rfc3339 as _rfc3339
from ..orders import Account, Authorization, Order, RenewalReason, Window
from ..policy import Profile
from ..wire import messages as m
from ._paths import DirectoryUrls

RENEWAL_INFO = "renewal-info"
RENEWAL_EXPLANATION = "renewal-explanation"


def rfc3339(seconds: float) -> str:
    """
    A timestamp as RFC 8555 resources carry it: whole seconds.
    """
    return _rfc3339(seconds, fraction=False)


#: The longest C{Retry-After} a C{processing} order is answered with.
MAX_RETRY_AFTER = 30


def retry_after(record: Order, now: float, expected: float | None, default: int) -> int:
    """
    The C{Retry-After} seconds of a C{processing} order: the time issuance
    is C{expected} to take (C{None}: unknown, then C{default}) minus what
    has passed since the order went C{processing}, at least 1 and at most
    L{MAX_RETRY_AFTER}.
    """
    if expected is None:
        return default
    elapsed = now - (record.processing_since if record.processing_since is not None else now)
    return min(MAX_RETRY_AFTER, math.ceil(max(1.0, expected - elapsed)))


def directory(urls: DirectoryUrls, terms_of_service: str | None, profiles: tuple[Profile, ...] = ()) -> m.Directory:
    """
    The directory object of a token; C{profiles} (its policy's) appear in
    C{meta.profiles} as name to description (draft-ietf-acme-profiles).
    """
    return m.Directory(
        new_nonce=urls("new-nonce"),
        new_account=urls("new-account"),
        new_order=urls("new-order"),
        revoke_cert=urls("revoke-cert"),
        key_change=urls("key-change"),
        meta=m.DirectoryMeta(
            terms_of_service=terms_of_service,
            external_account_required=False,
            profiles={p.name: p.description for p in profiles} or None,
        ),
        renewal_info=urls(RENEWAL_INFO),
    )


def account(urls: DirectoryUrls, record: Account) -> m.AccountResource:
    """
    An account object.
    """
    return m.AccountResource(
        status=record.status.value,
        contact=record.contact,
        terms_of_service_agreed=record.terms_agreed or None,
        orders=urls("acct", record.id, "orders"),
        key=record.key,
    )


def order(urls: DirectoryUrls, record: Order) -> m.OrderResource:
    """
    An order object.
    """
    return m.OrderResource(
        status=record.status.value,
        expires=rfc3339(record.expires),
        identifiers=tuple(m.Identifier(type="dns", value=n) for n in record.names),
        authorizations=tuple(urls("authz", a) for a in record.authz_ids),
        finalize=urls("order", record.id, "finalize"),
        certificate=urls("cert", record.certificate_id) if record.certificate_id else None,
        error=record.error,
        profile=record.profile,
        replaces=record.replaces,
    )


def challenge_kinds(authz: Authorization) -> tuple[str, ...]:
    """
    The challenges an authorization offers: no C{http-01} for wildcards.
    """
    return ("dns-01",) if authz.wildcard else ("http-01", "dns-01")


def challenge(urls: DirectoryUrls, authz: Authorization, kind: str) -> m.ChallengeResource:
    """
    A challenge of C{authz}, already valid.
    """
    return m.ChallengeResource(
        type=kind,
        url=urls("chall", authz.id, kind),
        status="valid",
        token=authz.challenge_token,
        validated=rfc3339(authz.validated),
    )


def authorization(urls: DirectoryUrls, authz: Authorization) -> m.AuthorizationResource:
    """
    An authorization: valid from the start, like its challenges.
    """
    return m.AuthorizationResource(
        identifier=m.Identifier(type="dns", value=authz.name),
        status="valid",
        expires=rfc3339(authz.expires),
        challenges=tuple(challenge(urls, authz, kind) for kind in challenge_kinds(authz)),
        wildcard=True if authz.wildcard else None,
    )


def renewal_info(urls: DirectoryUrls, window: Window, reason: str | None) -> dict[str, object]:
    """
    An RFC 9773 renewal-info object; moved windows link their explanation.
    """
    body: dict[str, object] = {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}
    if reason is not None and reason in {r.value for r in RenewalReason}:
        body["explanationURL"] = urls(RENEWAL_EXPLANATION, reason)
    return body

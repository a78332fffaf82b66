"""
The RFC 8555 resources the server answers with, built from the stored
records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from ..core import rfc3339 as _rfc3339
from ..orders import Account, Authorization, Order, RenewalReason, Window
from ..policy import Profile
from ._paths import DirectoryUrls

RENEWAL_INFO = "renewal-info"
RENEWAL_EXPLANATION = "renewal-explanation"

#: A JSON object as the server answers it.
JSONObject = dict[str, Any]


@lru_cache(maxsize=4096)
def rfc3339(seconds: float) -> str:
    """
    A timestamp as RFC 8555 resources carry it: whole seconds.  Remembered:
    a resource is read again and again (polls) with the same times.
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


def directory(urls: DirectoryUrls, terms_of_service: str | None, profiles: tuple[Profile, ...] = ()) -> JSONObject:
    """
    The directory object of a token; C{profiles} (its policy's) appear in
    C{meta.profiles} as name to description (draft-ietf-acme-profiles).
    """
    meta: JSONObject = {}
    if terms_of_service:
        meta["termsOfService"] = terms_of_service
    meta["externalAccountRequired"] = False
    if profiles:
        meta["profiles"] = {p.name: p.description for p in profiles}
    return {
        "newNonce": urls("new-nonce"),
        "newAccount": urls("new-account"),
        "newOrder": urls("new-order"),
        "revokeCert": urls("revoke-cert"),
        "keyChange": urls("key-change"),
        "meta": meta,
        "renewalInfo": urls(RENEWAL_INFO),
    }


def account(urls: DirectoryUrls, record: Account) -> JSONObject:
    """
    An account object.
    """
    body: JSONObject = {"status": record.status.value}
    if record.contact:
        body["contact"] = list(record.contact)
    if record.terms_agreed:
        body["termsOfServiceAgreed"] = True
    body["orders"] = urls("acct", record.id, "orders")
    body["key"] = record.key
    return body


def order(urls: DirectoryUrls, record: Order) -> JSONObject:
    """
    An order object.
    """
    body: JSONObject = {
        "status": record.status.value,
        "expires": rfc3339(record.expires),
        "identifiers": [{"type": "dns", "value": n} for n in record.names],
        "authorizations": [urls("authz", a) for a in record.authz_ids],
        "finalize": urls("order", record.id, "finalize"),
    }
    if record.certificate_id:
        body["certificate"] = urls("cert", record.certificate_id)
    if record.error:
        body["error"] = record.error
    if record.profile:
        body["profile"] = record.profile
    if record.replaces:
        body["replaces"] = record.replaces
    return body


def orders_list(urls: DirectoryUrls, order_ids: Iterable[str]) -> JSONObject:
    """
    An account's orders list.
    """
    return {"orders": [urls("order", i) for i in order_ids]}


def challenge_kinds(authz: Authorization) -> tuple[str, ...]:
    """
    The challenges an authorization offers: no C{http-01} for wildcards.
    """
    return ("dns-01",) if authz.wildcard else ("http-01", "dns-01")


def challenge(urls: DirectoryUrls, authz: Authorization, kind: str) -> JSONObject:
    """
    A challenge of C{authz}, already valid.
    """
    return {
        "type": kind,
        "url": urls("chall", authz.id, kind),
        "status": "valid",
        "token": authz.challenge_token,
        "validated": rfc3339(authz.validated),
    }


def authorization(urls: DirectoryUrls, authz: Authorization) -> JSONObject:
    """
    An authorization: valid from the start, like its challenges.
    """
    body: JSONObject = {
        "identifier": {"type": "dns", "value": authz.name},
        "status": "valid",
        "expires": rfc3339(authz.expires),
        "challenges": [challenge(urls, authz, kind) for kind in challenge_kinds(authz)],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


def renewal_info(urls: DirectoryUrls, window: Window, reason: str | None) -> dict[str, object]:
    """
    An RFC 9773 renewal-info object; moved windows link their explanation.
    """
    body: dict[str, object] = {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}
    if reason is not None and reason in {r.value for r in RenewalReason}:
        body["explanationURL"] = urls(RENEWAL_EXPLANATION, reason)
    return body

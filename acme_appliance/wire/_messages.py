"""
ACME wire objects (RFC 8555 section 7) as josepy JSON objects.

Request objects decode and type-check what clients send; answer objects
decode, leniently, what an upstream server returns.  (The server's own
responses are plain dicts, built in C{acme._resources}.)
"""

from __future__ import annotations

from typing import Any, TypeVar

import josepy
from josepy.errors import DeserializationError

from ..core import malformed

_J = TypeVar("_J", bound=josepy.JSONObjectWithFields)


def _typed(kind: type, what: str) -> Any:
    def decode(value: Any) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DeserializationError(f"{what} must be a {kind.__name__}")
        return value

    return decode


def _strings(what: str) -> Any:
    def decode(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DeserializationError(f"{what} must be a list of strings")
        return tuple(value)

    return decode


class Identifier(josepy.JSONObjectWithFields):
    type: str = josepy.field("type", decoder=_typed(str, "identifier type"))
    value: str = josepy.field("value", decoder=_typed(str, "identifier value"))


def _identifiers(value: Any) -> tuple[Identifier, ...]:
    if not isinstance(value, list) or not value:
        raise DeserializationError("identifiers must be a non-empty list")
    result = []
    for item in value:
        if not isinstance(item, dict):
            raise DeserializationError("each identifier must be an object")
        result.append(Identifier.from_json(item))
    return tuple(result)


class NewAccount(josepy.JSONObjectWithFields):
    contact: tuple[str, ...] | None = josepy.field("contact", omitempty=True, decoder=_strings("contact"))
    terms_of_service_agreed: bool | None = josepy.field(
        "termsOfServiceAgreed", omitempty=True, decoder=_typed(bool, "termsOfServiceAgreed")
    )
    only_return_existing: bool | None = josepy.field(
        "onlyReturnExisting", omitempty=True, decoder=_typed(bool, "onlyReturnExisting")
    )
    external_account_binding: dict[str, Any] | None = josepy.field(
        "externalAccountBinding", omitempty=True, decoder=_typed(dict, "externalAccountBinding")
    )


class AccountUpdate(josepy.JSONObjectWithFields):
    contact: tuple[str, ...] | None = josepy.field("contact", omitempty=True, decoder=_strings("contact"))
    status: str | None = josepy.field("status", omitempty=True, decoder=_typed(str, "status"))
    terms_of_service_agreed: bool | None = josepy.field(
        "termsOfServiceAgreed", omitempty=True, decoder=_typed(bool, "termsOfServiceAgreed")
    )


class NewOrder(josepy.JSONObjectWithFields):
    identifiers: tuple[Identifier, ...] = josepy.field("identifiers", decoder=_identifiers)
    not_before: str | None = josepy.field("notBefore", omitempty=True)
    not_after: str | None = josepy.field("notAfter", omitempty=True)
    profile: str | None = josepy.field("profile", omitempty=True, decoder=_typed(str, "profile"))
    replaces: str | None = josepy.field("replaces", omitempty=True, decoder=_typed(str, "replaces"))


class Finalize(josepy.JSONObjectWithFields):
    csr: str = josepy.field("csr", decoder=_typed(str, "csr"))


class Revocation(josepy.JSONObjectWithFields):
    certificate: str = josepy.field("certificate", decoder=_typed(str, "certificate"))
    reason: int | None = josepy.field("reason", omitempty=True, decoder=_typed(int, "reason"))


class KeyChange(josepy.JSONObjectWithFields):
    account: str = josepy.field("account", decoder=_typed(str, "account"))
    old_key: dict[str, Any] = josepy.field("oldKey", decoder=_typed(dict, "oldKey"))


def decode(cls: type[_J], payload: dict[str, Any]) -> _J:
    """
    Decode a request payload, turning every decoding error into C{malformed}.
    """
    try:
        return cls.from_json(payload)
    except (DeserializationError, TypeError, ValueError) as e:
        raise malformed(f"invalid {cls.__name__} payload: {e}") from None


# answers of an upstream server, decoded leniently: RFC 8555 lets servers add
# fields, and only what the client acts on is required.


def _optional(kind: type, what: str) -> Any:
    strict = _typed(kind, what)

    def decode(value: Any) -> Any:
        return None if value is None else strict(value)

    return decode


def _objects(cls: type[_J], what: str) -> Any:
    """
    A decoder for a list of C{cls} objects that skips entries which are not
    JSON objects (a server's extension of the list is none of our business).
    """

    def decode(value: Any) -> tuple[_J, ...]:
        if not isinstance(value, list):
            raise DeserializationError(f"{what} must be a list")
        return tuple(cls.from_json(item) for item in value if isinstance(item, dict))

    return decode


def _identifier(value: Any) -> Identifier | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DeserializationError("identifier must be an object")
    return Identifier.from_json(value)


class Subproblem(josepy.JSONObjectWithFields):
    type: str | None = josepy.field("type", omitempty=True, decoder=_optional(str, "type"))
    detail: str | None = josepy.field("detail", omitempty=True, decoder=_optional(str, "detail"))
    identifier: Identifier | None = josepy.field("identifier", omitempty=True, decoder=_identifier)


class Problem(josepy.JSONObjectWithFields):
    """
    An RFC 7807 problem document as an upstream server sends it.
    """

    type: str = josepy.field("type", omitempty=True, default="", decoder=_typed(str, "type"))
    detail: str | None = josepy.field("detail", omitempty=True, decoder=_optional(str, "detail"))
    subproblems: tuple[Subproblem, ...] = josepy.field(
        "subproblems", omitempty=True, default=(), decoder=_objects(Subproblem, "subproblems")
    )


def _problem(value: Any) -> Problem | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DeserializationError("error must be a problem document")
    return Problem.from_json(value)


class DirectoryAnswer(josepy.JSONObjectWithFields):
    """
    An upstream directory; the URLs a client cannot do without are checked
    by the client, so that it can name the missing ones.
    """

    new_nonce: str | None = josepy.field("newNonce", omitempty=True, decoder=_optional(str, "newNonce"))
    new_account: str | None = josepy.field("newAccount", omitempty=True, decoder=_optional(str, "newAccount"))
    new_order: str | None = josepy.field("newOrder", omitempty=True, decoder=_optional(str, "newOrder"))
    revoke_cert: str | None = josepy.field("revokeCert", omitempty=True, decoder=_optional(str, "revokeCert"))
    meta: dict[str, Any] | None = josepy.field("meta", omitempty=True, decoder=_optional(dict, "meta"))
    renewal_info: str | None = josepy.field("renewalInfo", omitempty=True, decoder=_optional(str, "renewalInfo"))

    @property
    def external_account_required(self) -> bool:
        return bool(self.meta and self.meta.get("externalAccountRequired"))

    @property
    def profiles(self) -> frozenset[str]:
        """
        The names of the profiles C{meta.profiles} offers (draft-ietf-acme-profiles).
        """
        offered = self.meta.get("profiles") if self.meta else None
        return (
            frozenset(name for name in offered if isinstance(name, str)) if isinstance(offered, dict) else frozenset()
        )


class OrderAnswer(josepy.JSONObjectWithFields):
    status: str = josepy.field("status", decoder=_typed(str, "status"))
    authorizations: tuple[str, ...] = josepy.field(
        "authorizations", omitempty=True, default=(), decoder=_strings("authorizations")
    )
    finalize: str | None = josepy.field("finalize", omitempty=True, decoder=_optional(str, "finalize"))
    certificate: str | None = josepy.field("certificate", omitempty=True, decoder=_optional(str, "certificate"))
    error: Problem | None = josepy.field("error", omitempty=True, decoder=_problem)


class ChallengeAnswer(josepy.JSONObjectWithFields):
    type: str = josepy.field("type", decoder=_typed(str, "challenge type"))
    url: str = josepy.field("url", decoder=_typed(str, "challenge url"))
    status: str | None = josepy.field("status", omitempty=True, decoder=_optional(str, "challenge status"))
    token: str = josepy.field("token", omitempty=True, default="", decoder=_typed(str, "token"))
    error: Problem | None = josepy.field("error", omitempty=True, decoder=_problem)


class AuthorizationAnswer(josepy.JSONObjectWithFields):
    identifier: Identifier | None = josepy.field("identifier", omitempty=True, decoder=_identifier)
    status: str = josepy.field("status", decoder=_typed(str, "status"))
    challenges: tuple[ChallengeAnswer, ...] = josepy.field(
        "challenges", omitempty=True, default=(), decoder=_objects(ChallengeAnswer, "challenges")
    )

    @property
    def name(self) -> str:
        return self.identifier.value if self.identifier is not None else "?"


class SuggestedWindow(josepy.JSONObjectWithFields):
    start: str = josepy.field("start", decoder=_typed(str, "start"))
    end: str = josepy.field("end", decoder=_typed(str, "end"))


class RenewalInfo(josepy.JSONObjectWithFields):
    """
    RFC 9773 section 4.2: a certificate's suggested renewal window.
    """

    suggested_window: SuggestedWindow = josepy.field("suggestedWindow", decoder=SuggestedWindow.from_json)
    explanation_url: str | None = josepy.field(
        "explanationURL", omitempty=True, decoder=_optional(str, "explanationURL")
    )


def answer(cls: type[_J], value: Any) -> _J | None:
    """
    Decode an upstream answer, or C{None} when it is not a C{cls}.
    """
    if not isinstance(value, dict):
        return None
    try:
        return cls.from_json(value)
    except (DeserializationError, TypeError, ValueError):
        return None

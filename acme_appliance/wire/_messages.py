"""
ACME wire objects (RFC 8555 section 7) as josepy JSON objects.

Request objects decode and type-check what clients send; response objects
encode what the server returns.
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


# responses


class DirectoryMeta(josepy.JSONObjectWithFields):
    terms_of_service: str | None = josepy.field("termsOfService", omitempty=True)
    website: str | None = josepy.field("website", omitempty=True)
    external_account_required: bool = josepy.field("externalAccountRequired", default=False)


class Directory(josepy.JSONObjectWithFields):
    new_nonce: str = josepy.field("newNonce")
    new_account: str = josepy.field("newAccount")
    new_order: str = josepy.field("newOrder")
    revoke_cert: str = josepy.field("revokeCert")
    key_change: str = josepy.field("keyChange")
    meta: DirectoryMeta = josepy.field("meta")


class AccountResource(josepy.JSONObjectWithFields):
    status: str = josepy.field("status")
    contact: tuple[str, ...] = josepy.field("contact", omitempty=True)
    terms_of_service_agreed: bool | None = josepy.field("termsOfServiceAgreed", omitempty=True)
    orders: str = josepy.field("orders")
    key: dict[str, Any] = josepy.field("key")


class OrderResource(josepy.JSONObjectWithFields):
    status: str = josepy.field("status")
    expires: str = josepy.field("expires")
    identifiers: tuple[Identifier, ...] = josepy.field("identifiers")
    authorizations: tuple[str, ...] = josepy.field("authorizations")
    finalize: str = josepy.field("finalize")
    certificate: str | None = josepy.field("certificate", omitempty=True)
    error: dict[str, Any] | None = josepy.field("error", omitempty=True)


class ChallengeResource(josepy.JSONObjectWithFields):
    type: str = josepy.field("type")
    url: str = josepy.field("url")
    status: str = josepy.field("status")
    token: str = josepy.field("token")
    validated: str = josepy.field("validated")


class AuthorizationResource(josepy.JSONObjectWithFields):
    identifier: Identifier = josepy.field("identifier")
    status: str = josepy.field("status")
    expires: str = josepy.field("expires")
    challenges: tuple[ChallengeResource, ...] = josepy.field("challenges")
    wildcard: bool | None = josepy.field("wildcard", omitempty=True)


class OrdersList(josepy.JSONObjectWithFields):
    orders: tuple[str, ...] = josepy.field("orders")

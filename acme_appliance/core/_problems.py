"""
ACME problem documents (RFC 7807 with the RFC 8555 error types).

Handlers raise L{AcmeProblem}; one place in the server turns it into a
response.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

ACME_ERROR_NS = "urn:ietf:params:acme:error:"


class ProblemType(Enum):
    """
    The RFC 8555 section 6.7 error types the appliance uses.
    """

    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    ALREADY_REPLACED = "alreadyReplaced"
    ALREADY_REVOKED = "alreadyRevoked"
    BAD_CSR = "badCSR"
    BAD_NONCE = "badNonce"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_REVOCATION_REASON = "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    CAA = "caa"
    CONNECTION = "connection"
    DNS = "dns"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    INCORRECT_RESPONSE = "incorrectResponse"
    INVALID_CONTACT = "invalidContact"
    #: draft-ietf-acme-profiles: the order asks for a profile not offered.
    INVALID_PROFILE = "invalidProfile"
    MALFORMED = "malformed"
    ORDER_NOT_READY = "orderNotReady"
    RATE_LIMITED = "rateLimited"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    SERVER_INTERNAL = "serverInternal"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    USER_ACTION_REQUIRED = "userActionRequired"

    @property
    def urn(self) -> str:
        return ACME_ERROR_NS + self.value

    @classmethod
    def from_urn(cls, urn: str) -> ProblemType | None:
        if not urn.startswith(ACME_ERROR_NS):
            return None
        try:
            return cls(urn[len(ACME_ERROR_NS) :])
        except ValueError:
            return None


_DEFAULT_STATUS = {
    ProblemType.ACCOUNT_DOES_NOT_EXIST: 400,
    ProblemType.ALREADY_REPLACED: 409,
    ProblemType.ALREADY_REVOKED: 400,
    ProblemType.BAD_CSR: 400,
    ProblemType.BAD_NONCE: 400,
    ProblemType.BAD_PUBLIC_KEY: 400,
    ProblemType.BAD_REVOCATION_REASON: 400,
    ProblemType.BAD_SIGNATURE_ALGORITHM: 400,
    ProblemType.INVALID_PROFILE: 400,
    ProblemType.MALFORMED: 400,
    ProblemType.ORDER_NOT_READY: 403,
    ProblemType.RATE_LIMITED: 429,
    ProblemType.REJECTED_IDENTIFIER: 400,
    ProblemType.SERVER_INTERNAL: 500,
    ProblemType.UNAUTHORIZED: 403,
    ProblemType.EXTERNAL_ACCOUNT_REQUIRED: 403,
    ProblemType.USER_ACTION_REQUIRED: 403,
}


class AcmeProblem(Exception):
    """
    A request failed with an ACME problem document.

    @ivar type: the RFC 8555 error type.
    @ivar detail: a human-readable sentence for the client's operator.
    @ivar status: the HTTP status code of the response.
    @ivar headers: extra response headers (e.g. C{Location}, C{Allow}).
    """

    def __init__(
        self,
        type: ProblemType,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        subproblems: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.type = type
        self.detail = detail
        self.status = status if status is not None else _DEFAULT_STATUS.get(type, 400)
        self.headers = headers or {}
        self.subproblems = subproblems

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type.urn, "detail": self.detail, "status": self.status}
        if self.subproblems:
            doc["subproblems"] = self.subproblems
        return doc

    def __repr__(self) -> str:
        return f"AcmeProblem({self.type.value!r}, {self.detail!r}, status={self.status})"


def malformed(detail: str, status: int = 400, **kw: Any) -> AcmeProblem:
    """
    Shorthand for the commonest problem.
    """
    return AcmeProblem(ProblemType.MALFORMED, detail, status=status, **kw)

"""
The certificate-authority contract shared by the built-in CA and upstream
ACME CAs.
"""

from __future__ import annotations

import base64
import hashlib
from enum import Enum
from typing import Protocol, runtime_checkable

from attrs import field, frozen
from cryptography import x509

from ..core import ProblemType
from ._observer import SilentObserver, ValidationObserver


class ChallengeType(Enum):
    """
    The upstream challenge the appliance answers, chosen by the policy.
    """

    HTTP_01 = "http-01"
    DNS_01 = "dns-01"


@frozen
class IssueRequest:
    """
    What a CA needs to issue: the client's CSR and the names it covers.

    @ivar csr_der: the DER PKCS#10 request, already checked by the server.
    @ivar names: the order's DNS names, lower-case, wildcards as C{*.x}.
    @ivar order_id: the appliance's order id, for logs.
    @ivar challenge_type: the challenge an upstream CA should be answered
        with (the policy's method); C{None} for CAs that do not validate.
    @ivar allow_validation: C{False} for a re-issue that expects the CA to
        re-use valid authorizations: a CA that wants a new validation raises
        L{ValidationRequired} instead, so that the caller can validate once,
        under the order's lock.
    @ivar observer: told how the upstream order and its validation go.
    @ivar profile: the certificate profile (draft-ietf-acme-profiles) the
        order asks for; C{None}: the CA's default.
    """

    csr_der: bytes
    names: tuple[str, ...]
    order_id: str
    challenge_type: ChallengeType | None = None
    allow_validation: bool = True
    observer: ValidationObserver = field(factory=SilentObserver, eq=False)
    profile: str | None = None


@frozen
class IssuedCertificate:
    """
    A certificate and its chain.

    @ivar chain_pem: PEM leaf first, then the intermediates, as served to the
        client (C{application/pem-certificate-chain}).
    @ivar ca_name: the configured name of the CA that issued it.
    @ivar alternates: other chains the CA offered for the same leaf.
    @ivar leaf: the leaf of C{chain_pem} already parsed, when the CA has it
        (the built-in CA built it): nobody parses the PEM again.
    """

    chain_pem: bytes
    ca_name: str
    alternates: tuple[bytes, ...] = ()
    leaf: x509.Certificate | None = field(default=None, eq=False, repr=False)


class CAError(Exception):
    """
    A CA could not do what was asked.

    @ivar transient: C{True} when retrying (later, or at another CA) may
        succeed: network errors, timeouts, 5xx, C{serverInternal},
        C{rateLimited}.  C{False} for client errors (C{badCSR},
        C{rejectedIdentifier}, C{caa}) that no retry fixes.
    @ivar problem_type: the ACME error type to pass on to the client.
    @ivar ca: the name of the CA that failed last, when known.
    @ivar retry_after: the seconds of the CA's C{Retry-After}, when it gave
        one (what a C{rateLimited} answer blocks for).
    """

    def __init__(
        self,
        detail: str,
        *,
        transient: bool,
        problem_type: ProblemType = ProblemType.SERVER_INTERNAL,
        ca: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.problem_type = problem_type
        self.ca = ca
        self.retry_after = retry_after


class ValidationRequired(CAError):
    """
    A re-issue (C{allow_validation=False}) found authorizations the CA wants
    validated again.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, transient=False)


@runtime_checkable
class CertificateAuthority(Protocol):
    """
    Something that turns a checked CSR into a certificate chain.
    """

    @property
    def name(self) -> str:
        """
        The configured name of this CA (C{[[ca]] name}).
        """

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """
        Issue a certificate for C{request}; raise L{CAError} on failure.
        """

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        """
        Revoke a certificate this CA issued; raise L{CAError} on failure.
        """

    async def supports_profile(self, name: str) -> bool:
        """
        Whether this CA can issue with the certificate profile C{name}; raise
        L{CAError} when it cannot tell (an upstream CA that cannot be reached).
        """


@frozen
class PendingChallenge:
    """
    A challenge an upstream CA is about to check.

    @ivar name: the DNS name being validated, without any C{*.} (a wildcard
        and its base name are both validated at the base name).
    @ivar token: the challenge token (the http-01 file name).
    @ivar key_authorization: C{token + "." + thumbprint(account key)}; the
        http-01 file body.  The dns-01 TXT value is L{dns_txt_value}.
    """

    type: ChallengeType
    name: str
    token: str
    key_authorization: str

    @property
    def dns_txt_value(self) -> str:
        digest = hashlib.sha256(self.key_authorization.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ChallengeResponder(Protocol):
    """
    Puts validation values where an upstream CA will look for them (the dcv
    DNS zone, the HTTP file proxy) and takes them away afterwards.
    """

    async def publish(self, challenge: PendingChallenge) -> None:
        """
        Make C{challenge} answerable; raise L{CAError} (not transient) with a
        detail naming the missing customer set-up when a preflight check
        shows the CA cannot reach it.
        """

    async def withdraw(self, challenge: PendingChallenge) -> None:
        """
        Remove what L{publish} added.  Never raises for a value that is
        already gone.
        """

"""
The certificate-authority contract shared by the built-in CA and upstream
ACME CAs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from attrs import frozen

from ..acme._problems import ProblemType


@frozen
class IssueRequest:
    """
    What a CA needs to issue: the client's CSR and the names it covers.

    @ivar csr_der: the DER PKCS#10 request, already checked by the server.
    @ivar names: the order's DNS names, lower-case, wildcards as C{*.x}.
    @ivar order_id: the appliance's order id, for logs and notifications.
    """

    csr_der: bytes
    names: tuple[str, ...]
    order_id: str


@frozen
class IssuedCertificate:
    """
    A certificate and its chain.

    @ivar chain_pem: PEM leaf first, then the intermediates, as served to the
        client (C{application/pem-certificate-chain}).
    @ivar ca_name: the configured name of the CA that issued it.
    """

    chain_pem: bytes
    ca_name: str


class CAError(Exception):
    """
    A CA could not do what was asked.

    @ivar transient: C{True} when retrying (later, or at another CA) may
        succeed: network errors, timeouts, 5xx, C{serverInternal},
        C{rateLimited}.  C{False} for client errors (C{badCSR},
        C{rejectedIdentifier}, C{caa}) that no retry fixes.
    @ivar problem_type: the ACME error type to pass on to the client.
    """

    def __init__(
        self,
        detail: str,
        *,
        transient: bool,
        problem_type: ProblemType = ProblemType.SERVER_INTERNAL,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.problem_type = problem_type


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

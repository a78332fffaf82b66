"""
The CA client layer: the interface, the built-in local CA, upstream ACME CAs.
"""

from ._interface import (
    CAError,
    CertificateAuthority,
    ChallengeResponder,
    ChallengeType,
    IssuedCertificate,
    IssueRequest,
    PendingChallenge,
    ValidationRequired,
)
from ._observer import SilentObserver, ValidationObserver

__all__ = [
    "CAError",
    "CertificateAuthority",
    "ChallengeResponder",
    "ChallengeType",
    "IssueRequest",
    "IssuedCertificate",
    "PendingChallenge",
    "SilentObserver",
    "ValidationObserver",
    "ValidationRequired",
]

"""
The CA client layer: the interface, the built-in local CA, upstream ACME CAs.
"""

from ._interface import CAError, CertificateAuthority, IssuedCertificate, IssueRequest

__all__ = ["CAError", "CertificateAuthority", "IssuedCertificate", "IssueRequest"]

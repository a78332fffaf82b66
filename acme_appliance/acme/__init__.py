"""
ACME offload: the RFC 8555 server the clients talk to.
"""

from ._auth import AuthenticatedRequest, Authenticator, SignedBy, UnknownDirectory
from ._nonce_table import NonceTable
from ._nonces import NonceSource
from ._paths import DirectoryUrls, directory_url, endpoint_of, redact_token, redact_uri, resource_url, secret_of
from ._server import AcmeServer

__all__ = [
    "AcmeServer",
    "AuthenticatedRequest",
    "Authenticator",
    "DirectoryUrls",
    "NonceSource",
    "NonceTable",
    "SignedBy",
    "UnknownDirectory",
    "directory_url",
    "endpoint_of",
    "redact_token",
    "redact_uri",
    "resource_url",
    "secret_of",
]

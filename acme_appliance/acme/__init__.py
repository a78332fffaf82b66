"""
ACME offload: the RFC 8555 server the clients talk to.
"""

from ._server import AcmeServer, directory_url

__all__ = ["AcmeServer", "directory_url"]

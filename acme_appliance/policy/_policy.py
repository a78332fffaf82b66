"""
Policies: what the clients of a token may get, and how it is validated.
"""

from __future__ import annotations

from enum import Enum

from attrs import frozen


class ValidationMethod(Enum):
    """
    How an upstream CA checks control of a policy's names.
    """

    DNS_CNAME = "dns-cname"
    FILE_PROXY = "file-proxy"
    NONE = "none"


class KeyType(Enum):
    """
    The key algorithms a policy may allow in CSRs.
    """

    RSA = "rsa"
    ECDSA = "ecdsa"


@frozen
class Policy:
    """
    What a directory token bound to it may do (one C{[[policy]]}).

    @ivar allowed_domains: Normalised names and C{*.} patterns.
    """

    name: str
    primary_ca: str
    backup_ca: str | None
    validation: ValidationMethod
    allowed_domains: tuple[str, ...]
    key_types: frozenset[KeyType] = frozenset(KeyType)
    rsa_min_bits: int = 2048

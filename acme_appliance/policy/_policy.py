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
class Profile:
    """
    A certificate profile (draft-ietf-acme-profiles) clients may ask for:
    its name and the description the directory shows.
    """

    name: str
    description: str


@frozen
class Policy:
    """
    What a directory token bound to it may do (one C{[[policy]]}).

    @ivar allowed_domains: Normalised names and C{*.} patterns.
    @ivar profiles: The profiles clients may ask for, the default first;
        empty: none (the directory lists none, and asking for one is an
        C{invalidProfile}).
    """

    name: str
    primary_ca: str
    backup_ca: str | None
    validation: ValidationMethod
    allowed_domains: tuple[str, ...]
    key_types: frozenset[KeyType] = frozenset(KeyType)
    rsa_min_bits: int = 2048
    profiles: tuple[Profile, ...] = ()

    @property
    def cas(self) -> list[str]:
        """
        The CAs to ask, in order: the primary, then the backup if any.
        """
        return [self.primary_ca] + ([self.backup_ca] if self.backup_ca is not None else [])

    @property
    def default_profile(self) -> str | None:
        """
        The profile of an order that asks for none: the first listed.
        """
        return self.profiles[0].name if self.profiles else None

    def profile(self, name: str) -> Profile | None:
        """
        The profile called C{name}, if this policy offers it.
        """
        return next((p for p in self.profiles if p.name == name), None)

"""
Policy: what a directory token may do.
"""

from ._policy import KeyType, Policy, Profile, ValidationMethod
from ._tokens import BadTokenRequest, Token, TokenRegistry, UnknownToken, hash_secret, token_domains

__all__ = [
    "BadTokenRequest",
    "KeyType",
    "Policy",
    "Profile",
    "Token",
    "TokenRegistry",
    "UnknownToken",
    "ValidationMethod",
    "hash_secret",
    "token_domains",
]

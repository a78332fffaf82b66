"""
Policy: what a directory token may do.
"""

from ._policy import KeyType, Policy, ValidationMethod
from ._tokens import BadTokenRequest, Token, TokenRegistry, UnknownToken, hash_secret, token_domains

__all__ = [
    "BadTokenRequest",
    "KeyType",
    "Policy",
    "Token",
    "TokenRegistry",
    "UnknownToken",
    "ValidationMethod",
    "hash_secret",
    "token_domains",
]

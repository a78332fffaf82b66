"""
Policy: what a directory token may do.
"""

from ._names import InvalidName, name_allowed, name_matches, normalise_name
from ._tokens import BadTokenRequest, Token, TokenRegistry, UnknownToken, hash_secret, token_domains

__all__ = [
    "BadTokenRequest",
    "InvalidName",
    "Token",
    "TokenRegistry",
    "UnknownToken",
    "hash_secret",
    "name_allowed",
    "name_matches",
    "normalise_name",
    "token_domains",
]

"""
Policy: what a directory token may do.
"""

from ._names import InvalidName, name_allowed, name_matches, normalise_name
from ._tokens import Token, TokenRegistry, UnknownToken, hash_secret

__all__ = [
    "InvalidName",
    "Token",
    "TokenRegistry",
    "UnknownToken",
    "hash_secret",
    "name_allowed",
    "name_matches",
    "normalise_name",
]

"""
DNS names as the appliance compares them: normalisation and pattern matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidName(ValueError):
    """
    A string is not a DNS name the appliance can issue for.
    """


def normalise_name(name: str, *, allow_wildcard: bool = True) -> str:
    """
    Lower-case C{name}, strip one trailing dot and check its syntax.

    IDNs must be given as A-labels (C{xn--...}); a wildcard is allowed only as
    the whole leftmost label.

    @raise InvalidName: with a sentence saying what is wrong.
    """
    if not isinstance(name, str):
        raise InvalidName("a name must be a string")
    if not name.isascii():
        raise InvalidName(f"{name!r} is not ASCII: give IDNs as A-labels (xn--...)")
    value = name.lower()
    if value.endswith("."):
        value = value[:-1]
    if not value:
        raise InvalidName("empty name")
    if len(value) > 253:
        raise InvalidName(f"{value!r} is longer than 253 characters")
    labels = value.split(".")
    if labels[0] == "*" and allow_wildcard:
        labels = labels[1:]
        if len(labels) < 2:
            raise InvalidName(f"{value!r}: a wildcard needs at least two labels under it")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidName(f"{value!r}: label {label!r} is not a valid DNS label")
    if len(labels) < 2:
        raise InvalidName(f"{value!r} is not a fully qualified name")
    return value


def name_matches(name: str, pattern: str) -> bool:
    """
    Whether the normalised C{name} is permitted by the normalised C{pattern}.

    An exact pattern permits that name only.  C{*.example.com} permits the
    wildcard name C{*.example.com} itself and every name ending in
    C{.example.com} at any depth, but not C{example.com}.
    """
    if pattern.startswith("*."):
        return name == pattern or name.endswith(pattern[1:])
    return name == pattern


def name_allowed(name: str, patterns: Iterable[str]) -> bool:
    """
    Whether any of C{patterns} permits C{name}.
    """
    return any(name_matches(name, p) for p in patterns)

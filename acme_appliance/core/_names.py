"""
DNS names as the appliance compares them: normalisation and pattern matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class NameProblem(Enum):
    """
    Why a string is not a DNS name, for callers that word it their own way.
    """

    NOT_STRING = "not-string"
    NOT_ASCII = "not-ascii"
    EMPTY = "empty"
    TOO_LONG = "too-long"
    SHORT_WILDCARD = "short-wildcard"
    BAD_LABEL = "bad-label"
    NOT_QUALIFIED = "not-qualified"


class InvalidName(ValueError):
    """
    A string is not a DNS name the appliance can issue for.

    @ivar problem: which rule the name breaks, if known.
    """

    def __init__(self, message: str, problem: NameProblem | None = None) -> None:
        super().__init__(message)
        self.problem = problem


def is_label(label: str) -> bool:
    """
    Whether C{label} is a lower-case LDH DNS label, 1 to 63 characters.
    """
    return _LABEL.match(label) is not None


def comparable_name(name: str) -> str:
    """
    The form names are compared in, without any syntax check: lower case,
    one trailing dot stripped.
    """
    value = name.lower()
    return value[:-1] if value.endswith(".") else value


def prepare_name(name: str) -> str:
    """
    The first steps of L{normalise_name}: lower-case C{name}, strip one
    trailing dot, and check that it is ASCII, not empty and not too long.

    @raise InvalidName: with a sentence saying what is wrong.
    """
    if not isinstance(name, str):
        raise InvalidName("a name must be a string", NameProblem.NOT_STRING)
    if not name.isascii():
        raise InvalidName(f"{name!r} is not ASCII: give IDNs as A-labels (xn--...)", NameProblem.NOT_ASCII)
    value = comparable_name(name)
    if not value:
        raise InvalidName("empty name", NameProblem.EMPTY)
    if len(value) > 253:
        raise InvalidName(f"{value!r} is longer than 253 characters", NameProblem.TOO_LONG)
    return value


def normalise_name(name: str, *, allow_wildcard: bool = True) -> str:
    """
    Lower-case C{name}, strip one trailing dot and check its syntax.

    IDNs must be given as A-labels (C{xn--...}); a wildcard is allowed only as
    the whole leftmost label.

    @raise InvalidName: with a sentence saying what is wrong.
    """
    value = prepare_name(name)
    labels = value.split(".")
    if labels[0] == "*" and allow_wildcard:
        labels = labels[1:]
        if len(labels) < 2:
            raise InvalidName(f"{value!r}: a wildcard needs at least two labels under it", NameProblem.SHORT_WILDCARD)
    for label in labels:
        if not is_label(label):
            raise InvalidName(f"{value!r}: label {label!r} is not a valid DNS label", NameProblem.BAD_LABEL)
    if len(labels) < 2:
        raise InvalidName(f"{value!r} is not a fully qualified name", NameProblem.NOT_QUALIFIED)
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

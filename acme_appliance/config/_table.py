"""
Reading TOML tables: typed getters that name the dotted key in every
problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from typing import Any, NoReturn

#: The default of a required key.
MISSING: Any = object()


class Problem(Exception):
    """
    A key's value is wrong; L{load_config} makes it a L{ConfigError}.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


# bool before int: True is an int too.
_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    (str, "a string"),
    (int, "an integer"),
    (float, "a float"),
    (list, "an array"),
    (dict, "a table"),
    ((datetime, date, time), "a date/time"),
)


def kind_of(value: object) -> str:
    """
    What TOML calls C{value}'s type, with an article: C{"an integer"}.
    """
    for types, kind in _KINDS:
        if isinstance(value, types):
            return kind
    return type(value).__name__


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """
    A hint for an unknown C{name}: the closest known one, or all of them.
    """
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"


def unknown(key: str, name: str, known: Iterable[str]) -> NoReturn:
    """
    @raise Problem: C{name} is not one of C{known}.
    """
    raise Problem(key, f"unknown key{did_you_mean(name, known)}")


class Table:
    """
    One TOML table being read: typed getters that name the dotted key in
    every problem.  Unknown keys are refused up front, so that a typo is
    reported as such rather than as a missing key.
    """

    def __init__(self, data: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        self._data = data
        self.where = where
        for name in data:
            if name not in known:
                unknown(self.key(name), name, known)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}"

    def has(self, name: str) -> bool:
        return name in self._data

    def fail(self, name: str, problem: str) -> NoReturn:
        raise Problem(self.key(name), problem)

    def get(self, name: str, types: tuple[type, ...], expected: str, default: Any) -> Any:
        """
        The value of C{name} if it is one of C{types} (described as
        C{expected}); C{default} when missing, unless that is L{MISSING}.
        """
        if name not in self._data:
            if default is MISSING:
                self.fail(name, "missing (required)")
            return default
        value = self._data[name]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            self.fail(name, f"expected {expected}, got {kind_of(value)}")
        return value

    def text(self, name: str, default: Any = MISSING) -> Any:
        value = self.get(name, (str,), "a string", default)
        if isinstance(value, str) and not value.strip():
            self.fail(name, "must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value: bool = self.get(name, (bool,), "true or false", default)
        return value

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        value: int = self.get(name, (int,), "an integer", default)
        if value < low or (high is not None and value > high):
            if high is None:
                self.fail(name, f"must be at least {low}, got {value}")
            self.fail(name, f"{value} is out of range ({low} to {high})")
        return value

    def number(self, name: str, default: float, *, positive: bool) -> float:
        value = float(self.get(name, (int, float), "a number", default))
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(name, "must be a finite number")
        if positive and value <= 0:
            self.fail(name, f"must be greater than 0, got {value:g}")
        if value < 0:
            self.fail(name, f"must not be negative, got {value:g}")
        return value

    def texts(self, name: str, each: Callable[[str, str], str] | None = None) -> tuple[str, ...]:
        values = self.get(name, (list,), "an array of strings", [])
        result = []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(name, f"entry {i + 1}: expected a string, got {kind_of(value)}")
            if not value.strip():
                self.fail(name, f"entry {i + 1}: must not be empty")
            result.append(each(self.key(name), value) if each is not None else value)
        return tuple(result)

    def choice(self, name: str, enum: type[Any], default: Any = MISSING) -> Any:
        value = self.text(name, default)
        if value is default and default is not MISSING:
            return value
        allowed = [m.value for m in enum]
        if value not in allowed:
            self.fail(name, f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return enum(value)

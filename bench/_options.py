"""
Parsers of the benches' command-line options: a bad value is a one-line
usage error, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """A number of C{kind} (C{int}, C{float}) above 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
        return value

    return parse


def counts(what: str, example: str, low: int, high: int) -> Callable[[str], list[int]]:
    """Comma-separated whole numbers from C{low} to C{high}, such as C{example}."""

    def parse(text: str) -> list[int]:
        try:
            found = [int(n) for n in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} like {example}, got {text!r}") from None
        if not found or any(n < low or n > high for n in found):
            raise argparse.ArgumentTypeError(f"{what} are {low} to {high}, got {text!r}")
        return found

    return parse

"""
Delays between retries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from attrs import field, frozen


def _delays(value: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(d) for d in value)


@frozen
class Backoff:
    """
    The delays, in seconds, before each retry: C{delays[0]} before the
    first.  Iterating gives each delay once (a bounded number of retries);
    L{delay} keeps the last delay for any later attempt (retries until some
    deadline).
    """

    delays: tuple[float, ...] = field(converter=_delays)

    @delays.validator
    def _check(self, attribute: object, value: tuple[float, ...]) -> None:
        if any(d < 0 for d in value):
            raise ValueError(f"delays must not be negative: {value}")

    def delay(self, attempt: int) -> float:
        """
        The delay before retry C{attempt} (0 for the first); the last delay
        for every attempt after the last.

        @raise IndexError: there are no delays.
        """
        if not self.delays:
            raise IndexError("no delays")
        return self.delays[min(attempt, len(self.delays) - 1)]

    def __iter__(self) -> Iterator[float]:
        return iter(self.delays)

    def __len__(self) -> int:
        return len(self.delays)

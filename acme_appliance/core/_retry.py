"""
Waiting out a backend that is away for now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._backoff import Backoff
from ._web import Unavailable

T = TypeVar("T")

#: Waits before trying again while a backend is away.
UNAVAILABLE_RETRY = Backoff((0.5, 1.0, 2.0, 5.0, 10.0))


async def while_unavailable(
    clock: IReactorTime, operation: Callable[[], Awaitable[T]], *, patience: float, retry: Backoff = UNAVAILABLE_RETRY
) -> T:
    """
    C{operation()}; again after each of C{retry}'s delays while it raises
    L{Unavailable}, for up to C{patience} seconds (on C{clock}).

    @raise Unavailable: still away when C{patience} ran out.
    """
    give_up = clock.seconds() + patience
    attempt = 0
    while True:
        try:
            return await operation()
        except Unavailable:
            delay = retry.delay(attempt)
            if clock.seconds() + delay > give_up:
                raise
        await deferLater(clock, delay)
        attempt += 1


def report_failure(log: Logger, format: str, failure: Failure | None = None, **fields: Any) -> None:
    """
    Log C{failure} (by default, the exception being handled) under
    C{format}: with its traceback, or, when a backend is only away for now
    (L{Unavailable}), as one warning line that ends with the reason.
    """
    if failure is None:
        failure = Failure()
    if failure.check(Unavailable):
        log.warn(format + ": {error}", error=failure.getErrorMessage(), **fields)
    else:
        log.failure(format, failure, **fields)

"""
Starting store calls together: a store may answer them in one round trip
(SQLite commits the writes of one reactor turn in one transaction).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, DeferredList

T = TypeVar("T")
U = TypeVar("U")


async def together(*calls: Coroutine[Any, Any, Any]) -> list[Any]:
    """
    Start C{calls} at once, in this order, and wait for all of them.

    @return: Their results, in order.
    @raise Exception: The first failure, in this order, once every call
        has ended (none is left running).
    """
    ended = await DeferredList([Deferred.fromCoroutine(c) for c in calls], consumeErrors=True)
    for succeeded, value in ended:
        if not succeeded:
            value.raiseException()
    return [value for _, value in ended]


async def both(first: Coroutine[Any, Any, T], second: Coroutine[Any, Any, U]) -> tuple[T, U]:
    """
    L{together} of two calls, with their results' types.
    """
    a, b = await together(first, second)
    return cast(T, a), cast(U, b)

"""
One lock per order key, so that only one job at a time validates a given
set of names for a given token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from twisted.internet.defer import DeferredLock


def order_key(token_id: str, names: Iterable[str]) -> str:
    """
    The key clients of the same order share: the token and the set of names
    (order and case do not matter; names are already normalised).
    """
    return token_id + "/" + ",".join(sorted(set(names)))


class OrderLocks:
    """
    C{DeferredLock}s created on first use and dropped when nobody holds or
    waits for them, so that the table does not grow with every order.
    """

    def __init__(self) -> None:
        self._locks: dict[str, DeferredLock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """
        Hold the lock for C{key} for the body of an C{async with}; released on
        return, error or cancellation (also while still waiting for it).
        """
        lock = self._locks.setdefault(key, DeferredLock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await lock.acquire()
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    def locked(self, key: str) -> bool:
        lock = self._locks.get(key)
        return lock is not None and lock.locked

    def __len__(self) -> int:
        return len(self._locks)

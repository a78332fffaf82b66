"""
A lock per key, for the jobs of one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from twisted.internet.defer import DeferredLock


class KeyedLocks:
    """
    A C{DeferredLock} per key, created on first use and dropped when nobody
    holds or waits for it (so that the keys of a long-running process do
    not pile up).
    """

    def __init__(self) -> None:
        self._locks: dict[str, DeferredLock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """
        Hold the lock of C{key} for the body of an C{async with}; released
        on return, error or cancellation (also while still waiting for it).
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
        """
        Whether somebody holds the lock of C{key}.
        """
        lock = self._locks.get(key)
        return lock is not None and lock.locked

    def __len__(self) -> int:
        return len(self._locks)

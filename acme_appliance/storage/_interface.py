"""
The storage contract: a small key-value store with the atomic operations the
appliance needs, shaped so that SQLite, memory and Redis can all provide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from attrs import frozen

from ..core import Unavailable


class StorageError(Unavailable):
    """
    The backend failed (I/O, corrupt database, lost connection): a web
    request that meets one is answered 503 with C{Retry-After}.
    """


#: A stored value, or C{None} for none (absent, or delete).
Entry = bytes | None


@frozen
class Put:
    """
    A write of L{Store.write_in_order}: store C{value} at C{key}
    (C{None}: delete it), expiring after C{ttl} seconds.
    """

    key: str
    value: Entry
    ttl: float | None = None


@frozen
class Swap:
    """
    A write of L{Store.write_in_order}: L{Store.compare_and_set}.
    """

    key: str
    expected: Entry
    value: Entry
    ttl: float | None = None


#: One write of L{Store.write_in_order}.
Write = Put | Swap


@runtime_checkable
class Store(Protocol):
    """
    An asynchronous key-value store.

    Keys are ``str`` made of path-like segments (``"order/abc"``); values are
    ``bytes``.  A ``ttl`` (seconds) makes an entry expire on its own; expired
    entries are never returned.  Every method is atomic with respect to the
    others on the same key.
    """

    async def get(self, key: str) -> bytes | None:
        """
        The value at ``key``, or ``None``.
        """

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """
        Store ``value`` at ``key`` unconditionally.
        """

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """
        Store ``value`` only if ``key`` holds nothing; ``True`` when stored.
        """

    async def compare_and_set(self, key: str, expected: Entry, value: Entry, *, ttl: float | None = None) -> bool:
        """
        Replace the value at ``key`` by ``value`` only if it is currently
        ``expected`` (``None``: absent).  ``value=None`` deletes.  ``True``
        when the swap happened.
        """

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """
        Add ``amount`` to the integer at ``key`` (absent counts as 0) and
        return the new value.  Values written by ``increment`` are ASCII
        decimal integers.  ``ttl`` applies only when the counter is created
        (absent: it becomes ``amount``, expiring after ``ttl``); an existing
        counter keeps the expiry it has, like Redis ``INCR``.
        """

    async def delete(self, key: str) -> bool:
        """
        Remove ``key``; ``True`` if it held something.
        """

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """
        Every live ``(key, value)`` whose key starts with ``prefix``, sorted
        by key.
        """

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        """
        Apply ``writes`` one after the other, a later one never without the
        earlier ones, whatever fails or dies (a record before the index
        that points to it): SQLite applies them in one transaction, Redis
        in one script, memory at once.  Each result is ``True`` for a
        L{Put}, and whether the swap happened for a L{Swap} (one that does
        not happen does not stop the writes after it).
        """

    async def close(self) -> None:
        """
        Release connections and threads.  The store is unusable afterwards.
        """

"""
An in-process L{Store}: the twin of the durable backends for unit tests and
for C{memory:} configurations.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

from ._interface import Entry, StorageError, Swap, Write

# How often (in clock seconds) a write sweeps out every expired entry, so that
# keys nobody reads again (unused nonces, say) do not pile up forever.
PURGE_INTERVAL = 60.0


def expires_at(clock: IReactorTime, ttl: float | None) -> float | None:
    """
    The absolute expiry time of an entry written now with C{ttl}.

    @raise ValueError: C{ttl} is not a positive number of seconds.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return clock.seconds() + ttl


def check_entry(key: str, value: bytes | None) -> None:
    """
    Reject keys and values of the wrong type before they reach a backend.

    @raise TypeError: C{key} is not C{str} or C{value} is not C{bytes}.
    @raise ValueError: C{key} cannot be encoded as UTF-8 (lone surrogates).
    """
    if not isinstance(key, str):
        raise TypeError(f"store keys are str, not {type(key).__name__}: {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"store keys must be valid Unicode text, not {key!r}") from None
    if value is not None and not isinstance(value, bytes):
        raise TypeError(f"store values are bytes, not {type(value).__name__} (key {key!r})")


def check_writes(clock: IReactorTime, writes: Sequence[Write]) -> list[float | None]:
    """
    L{check_entry} and the TTL of every write of a
    L{Store.write_in_order}, before any of them is applied.

    @return: Each write's absolute expiry (L{expires_at}).
    """
    for write in writes:
        check_entry(write.key, write.value)
        if isinstance(write, Swap):
            check_entry(write.key, write.expected)
    return [expires_at(clock, write.ttl) for write in writes]


def incremented(key: str, current: bytes | None, amount: int) -> int:
    """
    The integer C{current} (absent: 0) plus C{amount}.

    @raise StorageError: C{current} is not an ASCII decimal integer.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"increment amount must be an int, not {amount!r}")
    if current is None:
        return amount
    try:
        return int(current.decode("ascii")) + amount
    except (UnicodeDecodeError, ValueError):
        raise StorageError(f"cannot increment {key!r}: its value {current[:40]!r} is not an integer") from None


@attrs.frozen
class _Entry:
    value: bytes
    expires_at: float | None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


class MemoryStore:
    """
    A L{Store} kept in a C{dict}.  Every method completes synchronously (the
    coroutines never wait), so it suits C{SynchronousTestCase}.  Expired
    entries are invisible and removed when next touched, and by a sweep every
    L{PURGE_INTERVAL} seconds of writes.
    """

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: Source of the current time for TTL expiry.
        """
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._closed = False
        self._last_purge = clock.seconds()

    def _now(self) -> float:
        if self._closed:
            raise StorageError("memory store is closed")
        return self._clock.seconds()

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not entry.live(now):
            del self._entries[key]
            return None
        return entry

    def _write(self, key: str, value: bytes | None, ttl: float | None) -> None:
        now = self._now()
        if now - self._last_purge >= PURGE_INTERVAL:
            self._purge(now)
        if value is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = _Entry(value, expires_at(self._clock, ttl))

    async def purge_expired(self) -> int:
        """
        Remove every expired entry now.

        @return: How many entries were removed.
        """
        return self._purge(self._now())

    def _purge(self, now: float) -> int:
        self._last_purge = now
        dead = [k for k, e in self._entries.items() if not e.live(now)]
        for k in dead:
            del self._entries[k]
        return len(dead)

    async def get(self, key: str) -> bytes | None:
        check_entry(key, None)
        entry = self._live(key, self._now())
        return None if entry is None else entry.value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_entry(key, value)
        expires_at(self._clock, ttl)
        self._write(key, value, ttl)

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        check_entry(key, value)
        expires_at(self._clock, ttl)
        if self._live(key, self._now()) is not None:
            return False
        self._write(key, value, ttl)
        return True

    async def compare_and_set(self, key: str, expected: Entry, value: Entry, *, ttl: float | None = None) -> bool:
        check_entry(key, expected)
        check_entry(key, value)
        expires_at(self._clock, ttl)
        entry = self._live(key, self._now())
        if (None if entry is None else entry.value) != expected:
            return False
        self._write(key, value, ttl)
        return True

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        check_entry(key, None)
        created_expiry = expires_at(self._clock, ttl)
        entry = self._live(key, self._now())
        result = incremented(key, None if entry is None else entry.value, amount)
        # Like Redis INCR: the counter keeps the expiry it already had; a new
        # one gets C{ttl}'s.
        self._entries[key] = _Entry(str(result).encode("ascii"), created_expiry if entry is None else entry.expires_at)
        return result

    async def delete(self, key: str) -> bool:
        check_entry(key, None)
        found = self._live(key, self._now()) is not None
        self._entries.pop(key, None)
        return found

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        check_entry(prefix, None)
        now = self._now()
        found = []
        for key in [k for k in self._entries if k.startswith(prefix)]:
            entry = self._live(key, now)
            if entry is not None:
                found.append((key, entry.value))
        return sorted(found)

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        # By the single writes (which a test's subclass may slow down or
        # break), each awaited before the next; here each completes at once,
        # so nothing runs in between.
        check_writes(self._clock, writes)
        done: list[bool] = []
        for write in writes:
            if isinstance(write, Swap):
                done.append(await self.compare_and_set(write.key, write.expected, write.value, ttl=write.ttl))
            elif write.value is None:
                await self.delete(write.key)
                done.append(True)
            else:
                await self.set(write.key, write.value, ttl=write.ttl)
                done.append(True)
        return done

    async def close(self) -> None:
        self._closed = True
        self._entries.clear()

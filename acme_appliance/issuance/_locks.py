"""
One lock per order key, so that only one job at a time validates a given
set of names for a given token: in this process and in every other process
that shares the store (the CLI, other appliances).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import ClassVar

from attrs import define, field
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..core import report_failure
from ..storage import Store, Swap, drop_lease, keys, lease_token, wait_for_lease

_log = Logger()


#: Seconds an order key's lease lasts unless renewed (every third of it).  A
#: job cut off by a crash is taken over, or resumed after a restart, once
#: its lease has run out.
LEASE = 15.0


def order_key(token_id: str, names: Iterable[str]) -> str:
    """
    The key clients of the same order share: the token and the set of names
    (order and case do not matter; names are already normalised).
    """
    return token_id + "/" + ",".join(sorted(set(names)))


@define
class Lease:
    """
    A lease held in the store under C{key} with the owner's C{token}: renewed
    every third of its C{length} until released, so that it outlives slow
    work but not a dead process.
    """

    _store: Store
    _clock: IReactorTime
    key: str
    token: bytes
    _length: float
    _held: bool = field(default=True, init=False)
    _call: IDelayedCall | None = field(default=None, init=False)
    _written_off: bool = field(default=False, init=False)

    _log: ClassVar[Logger] = Logger()

    def __attrs_post_init__(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        self._call = self._clock.callLater(self._length / 3, self._renew)

    def _renew(self) -> None:
        self._call = None
        Deferred.fromCoroutine(self._renew_once())

    async def _renew_once(self) -> None:
        try:
            kept = await self._store.compare_and_set(self.key, self.token, self.token, ttl=self._length)
        except Exception:
            # The lease may well still be there: try again at the next turn.
            report_failure(self._log, "cannot renew the lease {lease}", lease=self.key)
            kept = True
        if not self._held:
            return
        if kept:
            self._schedule()
        else:
            self._log.warn("lost the lease {lease}: it expired and another process may hold it", lease=self.key)

    async def release(self) -> None:
        """
        Stop renewing and delete the lease if it is still this one's.
        """
        self._stop()
        if self._written_off:
            return
        # A renewal still under way was queued before this delete on the
        # same key, so it cannot bring the lease back.
        await drop_lease(self._store, self.key, self.token)

    def release_write(self) -> Swap:
        """
        Stop renewing; the write that deletes the lease if it is still this
        one's, for a L{Store.write_in_order} after the writes it guarded.
        L{release} then writes nothing: if that write fails, the lease
        expires on its own.
        """
        self._stop()
        self._written_off = True
        return Swap(self.key, self.token, None)

    def _stop(self) -> None:
        self._held = False
        if self._call is not None:
            self._call.cancel()
            self._call = None


class JobLeases:
    """
    One lease per issuance job, so that a job runs on one node of a cluster
    at a time: the node that takes it runs the job (renewing the lease); a
    node that dies loses it after C{lease} seconds and any node may resume
    the job then.
    """

    def __init__(self, store: Store, clock: IReactorTime, *, node: str = "", lease: float = LEASE) -> None:
        self._store = store
        self._clock = clock
        self._node = node
        self._lease = lease

    async def take(self, order_id: str) -> Lease | None:
        """
        The job lease of C{order_id}, or C{None} while another holds it.
        """
        key = keys.job_lease(order_id)
        token = lease_token(self._node)
        if not await self._store.add(key, token, ttl=self._lease):
            return None
        return Lease(self._store, self._clock, key, token, self._lease)

    async def holders(self) -> dict[str, str]:
        """
        Which node holds the job of which order: C{{order_id: node}}.
        """
        found = await self._store.scan(keys.JOB_LEASE_PREFIX)
        return {key[len(keys.JOB_LEASE_PREFIX) :]: value.decode(errors="replace").split(" ")[0] for key, value in found}


class OrderLocks:
    """
    Order-key locks that hold across processes sharing the store.

    Jobs of this process queue in a C{DeferredLock} per key (created on
    first use and dropped when nobody holds or waits for it); only the job at
    the head competes for the key's lease in the store, polling every
    C{poll} seconds while another process holds it.  A held lease is renewed
    every third of C{lease} seconds; one that is not (its process died)
    expires after C{lease} seconds and another process takes over.
    """

    _log = Logger()

    def __init__(
        self, store: Store, clock: IReactorTime, *, lease: float = LEASE, poll: float = 0.25, node: str = ""
    ) -> None:
        self._store = store
        self._clock = clock
        self._node = node
        self._lease = lease
        self._poll = poll
        self._locks: dict[str, DeferredLock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """
        Hold the lock for order key C{key} for the body of an C{async with};
        released on return, error or cancellation (also while still waiting
        for it).
        """
        async with self._local(key):
            lease = await self._take(keys.order_lock(key))
            try:
                yield
            finally:
                await lease.release()

    @asynccontextmanager
    async def _local(self, key: str) -> AsyncIterator[None]:
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

    async def _take(self, key: str) -> Lease:
        token = lease_token(self._node)
        await wait_for_lease(self._store, self._clock, key, token, ttl=self._lease, poll=self._poll)
        return Lease(self._store, self._clock, key, token, self._lease)

    def locked(self, key: str) -> bool:
        """
        Whether a job of this process holds or is taking the lock of C{key}.
        """
        lock = self._locks.get(key)
        return lock is not None and lock.locked

    def __len__(self) -> int:
        return len(self._locks)

"""
One lock per order key, so that only one job at a time validates a given
set of names for a given token: in this process and in every other process
that shares the store (the CLI, other appliances).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from twisted.internet.interfaces import IReactorTime

from ..core import KeyedLocks
from ..storage import Lease, Store, keys, try_lease, wait_for_lease

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
        return await try_lease(self._store, self._clock, key, length=self._lease, node=self._node)

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

    def __init__(
        self, store: Store, clock: IReactorTime, *, lease: float = LEASE, poll: float = 0.25, node: str = ""
    ) -> None:
        self._store = store
        self._clock = clock
        self._node = node
        self._lease = lease
        self._poll = poll
        self._locks = KeyedLocks()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """
        Hold the lock for order key C{key} for the body of an C{async with};
        released on return, error or cancellation (also while still waiting
        for it).
        """
        async with self._locks.hold(key):
            lease = await self._take(keys.order_lock(key))
            try:
                yield
            finally:
                await lease.release()

    async def _take(self, key: str) -> Lease:
        return await wait_for_lease(self._store, self._clock, key, length=self._lease, poll=self._poll, node=self._node)

    def locked(self, key: str) -> bool:
        """
        Whether a job of this process holds or is taking the lock of C{key}.
        """
        return self._locks.locked(key)

    def __len__(self) -> int:
        return len(self._locks)

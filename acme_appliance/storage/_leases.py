"""
Leases in a L{Store}: an entry with a TTL that one holder at a time adds
under a key, with a token of its own, renews while it works and deletes
when it is done.  A holder that dies loses it when the TTL runs out.
"""

from __future__ import annotations

import secrets
from typing import ClassVar

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..core import report_failure
from ._interface import Store, Swap

_log = Logger()


def _token(node: str) -> bytes:
    """
    A lease's value: the holding node's name, then a random part that makes
    it this holder's alone.
    """
    return f"{node} {secrets.token_hex(16)}".encode()


async def try_lease(store: Store, clock: IReactorTime, key: str, *, length: float, node: str = "") -> Lease | None:
    """
    The lease at C{key} for C{node}, renewed every third of C{length}
    seconds until released; C{None} while another holder has it.

    @raise StorageError: The store failed; no lease is held.
    """
    token = _token(node)
    if not await _add(store, key, token, length):
        return None
    return Lease(store, clock, key, token, length)


async def wait_for_lease(
    store: Store, clock: IReactorTime, key: str, *, length: float, poll: float, node: str = ""
) -> Lease:
    """
    L{try_lease}, again every C{poll} seconds while another holder has it.

    @raise StorageError: The store failed; no lease is held.
    """
    waited = False
    while (lease := await try_lease(store, clock, key, length=length, node=node)) is None:
        if not waited:
            _log.info("{waiting_for} is held by another process; waiting for it", waiting_for=key)
            waited = True
        await deferLater(clock, poll)
    return lease


async def _add(store: Store, key: str, token: bytes, ttl: float) -> bool:
    try:
        return await store.add(key, token, ttl=ttl)
    except CancelledError:
        # Only the wait was cancelled: the write may still land, and nobody
        # would release it.
        Deferred.fromCoroutine(_drop(store, key, token))
        raise


async def _drop(store: Store, key: str, token: bytes) -> None:
    """
    Delete the lease at C{key} if C{token} holds it.  Never fails: a lease
    that cannot be deleted expires on its own.
    """
    try:
        await store.compare_and_set(key, token, None)
    except Exception:
        report_failure(_log, "cannot release the lease {lease}; it will expire", lease=key)


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
        await _drop(self._store, self.key, self.token)

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

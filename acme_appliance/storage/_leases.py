"""
Leases in a L{Store}: an entry with a TTL that one holder at a time adds
under a key, with a token of its own, and deletes when it is done.  A
holder that dies loses it when the TTL runs out.
"""

from __future__ import annotations

import secrets

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..core import report_failure
from ._interface import Store

_log = Logger()


def lease_token(node: str) -> bytes:
    """
    A lease's value: the holding node's name, then a random part that makes
    it this holder's alone.
    """
    return f"{node} {secrets.token_hex(16)}".encode()


async def wait_for_lease(store: Store, clock: IReactorTime, key: str, token: bytes, *, ttl: float, poll: float) -> None:
    """
    Add the lease at C{key} for C{token}, for C{ttl} seconds, trying every
    C{poll} seconds while another holder has it.

    @raise StorageError: The store failed; no lease is held.
    """
    waited = False
    while not await _add(store, key, token, ttl):
        if not waited:
            _log.info("{waiting_for} is held by another process; waiting for it", waiting_for=key)
            waited = True
        await deferLater(clock, poll)


async def _add(store: Store, key: str, token: bytes, ttl: float) -> bool:
    try:
        return await store.add(key, token, ttl=ttl)
    except CancelledError:
        # Only the wait was cancelled: the write may still land, and nobody
        # would release it.
        Deferred.fromCoroutine(drop_lease(store, key, token))
        raise


async def drop_lease(store: Store, key: str, token: bytes) -> None:
    """
    Delete the lease at C{key} if C{token} holds it.  Never fails: a lease
    that cannot be deleted expires on its own.
    """
    try:
        await store.compare_and_set(key, token, None)
    except Exception:
        report_failure(_log, "cannot release the lease {lease}; it will expire", lease=key)

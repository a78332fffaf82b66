"""
Anti-replay nonces (RFC 8555 section 6.5).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..storage import Store, keys
from ._nonce_table import NonceTable, nonce_bytes, signed_body, signed_nonce

_BODY = 12 + 8


class NonceSource:
    """
    Hands out single-use nonces and redeems them.

    Without a store, nonces live in memory: after a restart clients get
    C{badNonce} once and retry with a fresh one, which every ACME client
    does.  The number held is bounded; the oldest are forgotten first.

    With a C{table} (shared by the worker processes of one box), nonces
    are numbered and signed by the table, and redeeming one sets its bit
    there: any process accepts it once, and no store write is made.

    With a C{store} (shared by the nodes of a cluster), a nonce carries its
    expiry and a MAC under a secret the nodes share through the store
    (L{share}), and redeeming it records it there: a nonce from any node is
    accepted once by any node, and never twice.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        lifetime: float = 3600.0,
        limit: int = 100_000,
        store: Store | None = None,
        table: NonceTable | None = None,
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._limit = limit
        self._issued: OrderedDict[str, float] = OrderedDict()
        self._store = store
        self._table = table
        # Until the shared secret is known, this node's own (still accepted after).
        self._secrets = [secrets.token_bytes(32)]

    async def share(self) -> None:
        """
        Sign with the cluster's shared secret from now on (made by the first
        node that asks); nonces made before stay valid on this node.
        """
        if self._store is None or len(self._secrets) > 1:
            return
        await self._store.add(keys.NONCE_SECRET, secrets.token_bytes(32))
        shared = await self._store.get(keys.NONCE_SECRET)
        if shared is not None and len(self._secrets) == 1:
            self._secrets.insert(0, shared)

    def new(self) -> str:
        if self._table is not None:
            return self._table.new(self._clock.seconds() + self._lifetime)
        if self._store is not None:
            body = secrets.token_bytes(12) + int(self._clock.seconds() + self._lifetime).to_bytes(8, "big")
            return signed_nonce(self._secrets[0], body)
        nonce = secrets.token_urlsafe(16)
        self._issued[nonce] = self._clock.seconds() + self._lifetime
        while len(self._issued) > self._limit:
            self._issued.popitem(last=False)
        return nonce

    async def redeem(self, nonce: str) -> bool:
        """
        C{True} exactly once for a nonce this source (or, with a store,
        another node of the cluster) issued and that has not expired.
        """
        if self._table is not None:
            return self._table.redeem(nonce, self._clock.seconds())
        if self._store is None:
            expires = self._issued.pop(nonce, None)
            return expires is not None and expires > self._clock.seconds()
        raw = nonce_bytes(nonce)
        if raw is None:
            return False
        body = signed_body(raw, _BODY, self._secrets)
        if body is None:
            if len(self._secrets) == 1:
                # Perhaps another node's, signed with the shared secret this node has not read yet.
                await self.share()
                return len(self._secrets) > 1 and await self.redeem(nonce)
            return False
        left = int.from_bytes(body[12:], "big") - self._clock.seconds()
        return left > 0 and await self._store.add(keys.nonce_used(nonce), b"", ttl=left)

"""
Anti-replay nonces (RFC 8555 section 6.5).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime


class NonceSource:
    """
    Hands out single-use nonces and redeems them.

    Nonces live in memory: after a restart clients get C{badNonce} once and
    retry with a fresh one, which every ACME client does.  The number held is
    bounded; the oldest are forgotten first.
    """

    def __init__(self, clock: IReactorTime, *, lifetime: float = 3600.0, limit: int = 100_000) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._limit = limit
        self._issued: OrderedDict[str, float] = OrderedDict()

    def new(self) -> str:
        nonce = secrets.token_urlsafe(16)
        self._issued[nonce] = self._clock.seconds() + self._lifetime
        while len(self._issued) > self._limit:
            self._issued.popitem(last=False)
        return nonce

    def redeem(self, nonce: str) -> bool:
        """
        C{True} exactly once for a nonce this source issued and that has not
        expired.
        """
        expires = self._issued.pop(nonce, None)
        return expires is not None and expires > self._clock.seconds()

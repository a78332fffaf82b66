"""
Nonces the worker processes of one box share without the store: a table
in shared memory (a C{memfd} the main worker makes and hands to its
workers) holds the next sequence number, the secret the nonces are signed
with, and one bit per recent sequence number, set when its nonce is
redeemed.  Redeeming is a test-and-set under an C{fcntl} lock on the
table, so a nonce is accepted once by whichever process sees it first.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import mmap
import os
import secrets
import struct
from base64 import urlsafe_b64encode
from collections.abc import Iterable

from ..core import AcmeProblem
from ..wire import b64decode

#: Sequence numbers whose bits the table keeps: a nonce older than this
#: many newer ones is refused (C{badNonce}; the client retries).  At 400
#: nonces a second that is more than 5 hours.
RING = 1 << 23

#: Sequence numbers a process takes from the table at a time.
BLOCK = 256

_HEADER = struct.Struct("=Q32s")
_BODY = struct.Struct(">QI")
_MAC = 16
_SIZE = _HEADER.size + RING // 8


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()[:_MAC]


def signed_nonce(secret: bytes, body: bytes) -> str:
    """
    The nonce carrying C{body} and its MAC under C{secret} (base64url, no
    padding).
    """
    return urlsafe_b64encode(body + _mac(secret, body)).decode("ascii").rstrip("=")


def nonce_bytes(nonce: str) -> bytes | None:
    """
    What a nonce decodes to, or C{None} when it is not base64url.
    """
    try:
        return b64decode(nonce, "nonce")
    except AcmeProblem:
        return None


def signed_body(raw: bytes, size: int, secret_keys: Iterable[bytes]) -> bytes | None:
    """
    The C{size}-byte body of a decoded L{signed_nonce} whose MAC is under
    one of C{secret_keys}, or C{None}.
    """
    body, mac = raw[:size], raw[size:]
    if len(raw) != size + _MAC or not any(hmac.compare_digest(mac, _mac(s, body)) for s in secret_keys):
        return None
    return body


class NonceTable:
    """
    The shared table, seen from one process.

    @param fd: The table's descriptor (L{create} makes one).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._map = mmap.mmap(fd, _SIZE)
        self._secret: bytes = _HEADER.unpack_from(self._map, 0)[1]
        self._next = 0
        self._end = 0

    @classmethod
    def create(cls) -> NonceTable:
        """A new table, with a new secret; no nonce issued yet."""
        fd = os.memfd_create("acme-appliance-nonces", os.MFD_CLOEXEC)
        os.ftruncate(fd, _SIZE)
        table = cls(fd)
        table._secret = secrets.token_bytes(32)
        _HEADER.pack_into(table._map, 0, 0, table._secret)
        return table

    def fileno(self) -> int:
        return self._fd

    def _lock(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _sequence(self) -> int:
        if self._next == self._end:
            self._lock()
            try:
                start = _HEADER.unpack_from(self._map, 0)[0]
                _HEADER.pack_into(self._map, 0, start + BLOCK, self._secret)
                # The bits of the block's numbers were those of numbers
                # RING older, now out of the window.
                offset = _HEADER.size + (start % RING) // 8
                self._map[offset : offset + BLOCK // 8] = bytes(BLOCK // 8)
            finally:
                self._unlock()
            self._next, self._end = start, start + BLOCK
        sequence = self._next
        self._next += 1
        return sequence

    def new(self, expires: float) -> str:
        """A nonce that expires at C{expires} (seconds since the epoch)."""
        return signed_nonce(self._secret, _BODY.pack(self._sequence(), int(expires)))

    def redeem(self, nonce: str, now: float) -> bool:
        """
        C{True} exactly once for a nonce of this table that has not
        expired by C{now} and is among the last L{RING} issued.
        """
        raw = nonce_bytes(nonce)
        body = None if raw is None else signed_body(raw, _BODY.size, [self._secret])
        if body is None:
            return False
        sequence, expires = _BODY.unpack(body)
        if expires <= now:
            return False
        offset, bit = _HEADER.size + (sequence % RING) // 8, 1 << (sequence % 8)
        self._lock()
        try:
            issued = _HEADER.unpack_from(self._map, 0)[0]
            if not issued - RING <= sequence < issued or self._map[offset] & bit:
                return False
            self._map[offset] |= bit
            return True
        finally:
            self._unlock()

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

"""
The dashboard's browser session: a signed, expiring cookie value, so the
admin key itself never sits in a browser's cookie jar.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: How long a browser stays logged in.
SESSION_LIFETIME = 12 * 3600

_CONTEXT = b"acme-appliance admin session v1"


class Sessions:
    """
    Issues and checks session values C{<expires>.<nonce>.<mac>}: the MAC is
    an HMAC-SHA256 under a key derived from the admin key, so replacing
    the admin key ends every session, and a restart ends none.
    """

    def __init__(self, api_key: bytes, lifetime: int = SESSION_LIFETIME) -> None:
        self._key = hmac.new(api_key, _CONTEXT, hashlib.sha256).digest()
        self.lifetime = lifetime

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest().encode()

    def issue(self, now: float) -> bytes:
        """
        A new session value, valid for L{lifetime} seconds from C{now}.
        """
        payload = b"%d.%s" % (int(now) + self.lifetime, secrets.token_urlsafe(12).encode())
        return payload + b"." + self._mac(payload)

    def valid(self, value: bytes, now: float) -> bool:
        """
        Whether C{value} is a session this key issued that has not expired.
        """
        payload, _, mac = value.rpartition(b".")
        expires, _, _ = payload.partition(b".")
        if not (mac and expires.isdigit() and hmac.compare_digest(mac, self._mac(payload))):
            return False
        return int(expires) > now

"""
The bounded pieces of the preflight fetch: which addresses it may connect
to, and reading a response body up to a limit, as opaque bytes.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

#: The most of a response body preflight reads: its probe is 32 bytes.
MAX_BODY = 64 * 1024

_SHARED = ipaddress.ip_network("100.64.0.0/10")


def non_global(address: str) -> str | None:
    """
    What kind of address C{address} is, if it is not one on the public
    internet (C{"a private address"}, C{"a loopback address"}, ...); C{None}
    for a global one.  An IPv4-mapped IPv6 address is judged as its IPv4
    address.  Something that is not an address at all is C{"not an IP
    address"}.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "a shared (CGNAT) address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "a non-global address"),
    )
    return next((kind for matches, kind in checks if matches), None)


class BodyTooLarge(Exception):
    """
    The body went past the limit; reading stopped there.
    """


class BodyCutShort(Exception):
    """
    The connection ended before the body did.
    """


class _LimitedBody(Protocol):
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self.finished: Deferred[bytes] = Deferred(lambda d: self._stop())

    def _stop(self) -> None:
        # A response body's transport is a producer (IPushProducer).
        stop = getattr(self.transport, "stopProducing", None)
        if stop is not None:
            stop()

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._stop()
            self.finished.errback(BodyTooLarge(f"more than {self._limit} bytes"))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.finished.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(BodyCutShort(f"after {self._size} bytes: {reason.getErrorMessage()}"))


def read_body(response: IResponse, limit: int = MAX_BODY) -> Deferred[bytes]:
    """
    The body of C{response} as it came (no content decoding), or a
    L{BodyTooLarge} failure as soon as more than C{limit} bytes arrive, or a
    L{BodyCutShort} one.  Cancelling stops the transfer.
    """
    body = _LimitedBody(limit)
    response.deliverBody(body)
    return body.finished

"""
Bounded HTTP listeners: every HTTP listener of the appliance (ACME, admin,
file proxy) caps its open connections, the time a request's head and body
may take to arrive (in total, not per byte), the request line, the number
and size of header lines, and the body.

A refused request is answered with a short C{4xx} and the connection is
closed; a connection beyond the cap is closed as soon as it is accepted, so
that a flood against one listener leaves file descriptors for the others,
the store, DNS and the CAs.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LoggingFile
from twisted.protocols.policies import WrappingFactory
from twisted.python import log as legacy_log
from twisted.web.http import NO_BODY_CODES, HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

# Chunked framing on top of the body limit: a chunk-size line per chunk.
_CHUNK_SLACK = 16384
# The most of a refused body read (and dropped) so that the client sees the
# answer rather than a reset.
_MAX_DISCARD = 4 * 1024 * 1024
# File descriptors kept out of the listeners' share: the store, logs, DNS
# resolution, outgoing CA and webhook connections.
_RESERVED_FDS = 128
#: The C{Server} header of every response: the product, without a version
#: (twisted.web would name itself and its version).
SERVER = b"acme-appliance"


@frozen
class ListenerLimits:
    """
    What one HTTP listener accepts.

    @ivar request_timeout: Seconds a request's line, headers and body may
        take to arrive, counted from the connection (or the end of the
        previous request), whatever trickles in meanwhile.
    @ivar max_connections: Open connections at once; more are closed as
        soon as they are accepted.
    @ivar max_body_bytes: The largest request body (C{413} beyond).
    @ivar max_line_bytes: The longest request line or header line.
    @ivar max_header_bytes: The request line and headers together (C{431}).
    @ivar max_headers: How many header lines (C{431} beyond).
    @ivar idle_timeout: Seconds a connection may stay silent otherwise.
    """

    request_timeout: float = 30.0
    max_connections: int = 256
    max_body_bytes: int = 65536
    max_line_bytes: int = 8192
    max_header_bytes: int = 16384
    max_headers: int = 100
    idle_timeout: float = 60.0


def default_max_connections(listeners: int, nofile: int | None = None) -> int:
    """
    The connections each of C{listeners} listeners may hold when they share
    the process's open-files limit: a quarter of it (at least
    L{_RESERVED_FDS}) stays free for everything else.

    @param nofile: The open-files limit (the soft C{RLIMIT_NOFILE} when
        C{None}).
    """
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = 65536
    spare = nofile - max(_RESERVED_FDS, nofile // 4)
    return max(8, spare // max(1, listeners))


class _Refuse(Protocol):
    """
    Closes a connection beyond the cap as soon as it is made.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


@implementer(IProtocolNegotiationFactory)
class ConnectionLimit(WrappingFactory):
    """
    Wraps a server factory so that at most C{limit} of its connections are
    open at once; the ones beyond are closed at once (also under TLS, where
    a factory cannot refuse by returning C{None}).  Under TLS, it offers
    the wrapped factory's ALPN protocols.
    """

    _log = Logger()

    def __init__(self, wrapped: Factory[Any], limit: int, name: str) -> None:
        super().__init__(wrapped)
        self.limit = limit
        self.name = name
        self.refused = 0

    @property
    def open(self) -> int:
        return len(self.protocols)

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if len(self.protocols) >= self.limit:
            self.refused += 1
            if self.refused % 1000 == 1:
                self._log.warn(
                    "{name}: {limit} connections open, closing new ones ({refused} so far)",
                    name=self.name,
                    limit=self.limit,
                    refused=self.refused,
                )
            return _Refuse()
        return super().buildProtocol(addr)

    def logPrefix(self) -> str:
        return self.name

    def acceptableProtocols(self) -> list[bytes]:
        negotiation = IProtocolNegotiationFactory(self.wrappedFactory, None)
        return list(negotiation.acceptableProtocols()) if negotiation is not None else []


_REASONS = {
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}


class _BoundedChannel(HTTPChannel):
    """
    An L{HTTPChannel} enforcing L{ListenerLimits}.
    """

    _log = Logger()

    def __init__(self, limits: ListenerLimits, problem_type: str) -> None:
        super().__init__()
        self._limits = limits
        self._problem_type = problem_type
        self._discard: int | None = None
        self.MAX_LENGTH = limits.max_line_bytes
        self.maxHeaders = limits.max_headers
        self.totalHeadersSize = limits.max_header_bytes
        self._deadline: IDelayedCall | None = None
        self._partial = False
        self._body_bytes = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def _start_deadline(self) -> None:
        self._cancel_deadline()
        self._partial = bool(self._dataBuffer)
        self._deadline = self.callLater(self._limits.request_timeout, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    @property
    def _tcp(self) -> Any:
        return self.transport

    def _too_slow(self) -> None:
        self._deadline = None
        if self._partial:
            self._log.info("closing a request that took too long to arrive from {peer}", peer=self._tcp.getPeer())
            self._tcp.write(self._answer(408))
        self.timeoutConnection()

    def _answer(self, code: int) -> bytes:
        limits = self._limits
        detail = {
            408: f"the request did not arrive within {limits.request_timeout:g} seconds",
            413: f"request body larger than {limits.max_body_bytes} bytes",
            414: f"request line longer than {limits.max_line_bytes} bytes",
            431: f"request headers over {limits.max_header_bytes} bytes, {limits.max_line_bytes} bytes a line "
            f"or {limits.max_headers} lines",
        }[code]
        return _problem(code, self._problem_type, detail)

    def _refuse(self, code: int, discard: int = 0) -> None:
        """
        Answer C{code} and close; first read and drop up to C{discard}
        more bytes (within the request's deadline), so that a client still
        sending its body reads the answer rather than a reset.
        """
        self._tcp.write(self._answer(code))
        if discard > 0:
            self._discard = min(discard, _MAX_DISCARD)
            return
        self._close()

    def _close(self) -> None:
        self._discard = None
        self._cancel_deadline()
        self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._tcp.disconnecting:
            return
        if not self._handlingRequest:
            self._partial = True
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(431)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        # No request yet: the request line is the long one.
        self._refuse(431 if self.requests else 414)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self._refuse(431)
            return False
        ok: bool = super().headerReceived(line)
        return ok

    def allHeadersReceived(self) -> None:
        if self.length is not None and self.length > self._limits.max_body_bytes:
            self._refuse(413, discard=self.length)
            return
        self._body_bytes = 0
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._discard is not None:
            self._discard -= len(data)
            if self._discard <= 0:
                self._close()
            return
        if not self._handlingRequest:
            self._body_bytes += len(data)
            if self._body_bytes > self._limits.max_body_bytes + _CHUNK_SLACK:
                self._refuse(413)
                return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        if self.persistent:
            # Before the buffered next request, if any, is parsed.
            self._start_deadline()
        super().requestDone(request)

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)


def _problem(code: int, problem_type: str, detail: str) -> bytes:
    """
    A whole C{Connection: close} response with an RFC 9457 problem body.
    """
    body = json.dumps({"type": problem_type, "title": _REASONS[code], "status": code, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {code} {_REASONS[code]}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Request(Request):
    """
    twisted.web's request, whose C{Server} header names no version, that
    adds no C{Content-Type} of its own (twisted.web would call a response
    without one, even an empty one, C{text/html}), and whose body, written
    at once (every response of the appliance is), goes with its
    C{Content-Length} instead of in chunks.
    """

    defaultContentType = None
    # The first write waits for the next one or for finish(), which then
    # knows the whole body.
    _held: bytes | None = None

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        if name == b"Server":
            value = SERVER
        super().setHeader(name, value)

    def write(self, data: bytes) -> None:
        if not self.startedWriting and self._held is None and not self.finished:
            self._held = data
            return
        if self._held is not None:
            held, self._held = self._held, None
            super().write(held)
        super().write(data)

    def finish(self) -> None:
        if not self.startedWriting and not self.finished and not self._disconnected:
            body, self._held = self._held or b"", None
            if self.code not in NO_BODY_CODES and not self.responseHeaders.hasHeader(b"Content-Length"):
                self.setHeader(b"Content-Length", b"%d" % len(body))
            super().write(body)
        super().finish()


class BoundedSite(Site):
    """
    A L{Site} whose connections are L{_BoundedChannel}s; C{on_request}
    sees every finished request (for the request metrics).  A request over
    a limit is answered with a problem document of C{problem_type}.
    """

    def __init__(
        self,
        resource: IResource,
        limits: ListenerLimits,
        on_request: Callable[[Any], None] | None = None,
        *,
        problem_type: str = "about:blank",
        **kw: Any,
    ) -> None:
        # The appliance's bodies are JSON: twisted.web does not parse them as
        # forms into C{args} (its check of the Content-Type, through the
        # C{email} package, costs a fraction of a millisecond a POST).
        kw.setdefault("parsePOSTFormSubmission", False)
        kw.setdefault("requestFactory", _Request)
        super().__init__(resource, timeout=limits.idle_timeout, **kw)
        self.limits = limits
        self.problem_type = problem_type
        self._on_request = on_request
        self.displayTracebacks = False

    def protocol(self) -> _GenericHTTPChannelProtocol:
        return _GenericHTTPChannelProtocol(_BoundedChannel(self.limits, self.problem_type))

    def log(self, request: Any) -> None:
        """
        Log C{request}: the line twisted.web writes to the global
        C{twisted.python.log.logfile} goes to that file's logger as the
        file would send it (one event, C{{log_io}}), without the file's
        line splitting and the logger's checks.
        """
        log_file = self._logFile
        if log_file is legacy_log.logfile and isinstance(log_file, LoggingFile):
            logger = log_file.log
            logger.observer(
                {
                    "log_io": self._logFormatter(self._logDateTime, request),
                    "log_logger": logger,
                    "log_level": log_file.level,
                    "log_namespace": logger.namespace,
                    "log_source": logger.source,
                    "log_format": "{log_io}",
                    "log_time": self.reactor.seconds(),
                }
            )
        else:
            super().log(request)
        if self._on_request is not None:
            self._on_request(request)

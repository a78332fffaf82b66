"""
Events as RFC 5424 syslog messages, sent over UDP, TCP (RFC 6587 octet
counting) or a local datagram socket such as C{/dev/log}.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from enum import Enum
from typing import Any

from attrs import frozen
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import ConnectedDatagramProtocol, DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..core import rfc3339
from ._events import WARNINGS, Event, EventName
from ._queue import BoundedQueue

#: The structured-data ID: a name with a private enterprise number (RFC 5424
#: section 7.2.2; 32473 is the one reserved for documentation).
SD_ID = "acme-appliance@32473"
FACILITY_LOCAL0 = 16
SEVERITY_WARNING = 4
SEVERITY_INFO = 6

_SD_NAME_UNSAFE = re.compile(r'[^!-~]|[= \]"]')
#: Control characters (C0, DEL, C1) and the Unicode line and paragraph
#: separators: never written raw, so one event is one line.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_SD_VALUE_ESCAPE = re.compile(f'["\\\\\\]{_CONTROL}]')
_MSG_QUOTE = re.compile(f'[\\s"\\\\{_CONTROL}]')
_MSG_ESCAPE = re.compile(f'["\\\\{_CONTROL}]')


class SyslogTransport(Enum):
    UDP = "udp"
    TCP = "tcp"
    UNIX = "unix"


@frozen
class SyslogTarget:
    """
    Where syslog messages go: C{host}/C{port} for UDP and TCP, C{path} for
    a local datagram socket.
    """

    transport: SyslogTransport
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.transport is SyslogTransport.UNIX:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.value}:{host}:{self.port}"


_FORMS = "use udp:HOST:PORT, tcp:HOST:PORT or unix:/path"
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[^:\[\]]+")


def parse_syslog_target(description: str) -> SyslogTarget:
    """
    Parse C{udp:HOST:PORT}, C{tcp:HOST:PORT} (IPv6 hosts in brackets) or
    C{unix:/absolute/path}.

    @raise ValueError: with what is wrong, in one line, starting with the
        quoted C{description}.
    """
    kind, sep, rest = description.partition(":")
    if not sep or not rest or kind not in {t.value for t in SyslogTransport}:
        raise ValueError(f"{description!r}: {_FORMS}")
    transport = SyslogTransport(kind)
    if transport is SyslogTransport.UNIX:
        if not rest.startswith("/"):
            raise ValueError(f"{description!r}: the socket path must be absolute")
        return SyslogTarget(transport, path=rest)
    host, colon, port = rest.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not bare or not port:
        raise ValueError(f"{description!r}: {_FORMS}")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
        raise ValueError(f"{description!r}: port {port!r} is not a number from 1 to 65535")
    if not _HOST.fullmatch(host):
        raise ValueError(f"{description!r}: {_FORMS}")
    return SyslogTarget(transport, host=bare, port=int(port))


def _sd_name(key: str) -> str:
    return _SD_NAME_UNSAFE.sub("_", key)[:32] or "_"


def _escape(match: re.Match[str]) -> str:
    """
    C{"}, C{\\} and C{]} get a backslash (RFC 5424 section 6.3.3); a
    control character becomes C{\\xNN} (C{\\uNNNN} above U+00FF), which
    no real backslash can be confused with since those are doubled.
    """
    char = match.group()
    if char in '"\\]':
        return "\\" + char
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _sd_value(value: str) -> str:
    return _SD_VALUE_ESCAPE.sub(_escape, value)


def _msg_value(value: str) -> str:
    """
    C{value} as is if it is one plain word, else quoted with C{"} and C{\\}
    escaped and control characters as C{\\xNN}.
    """
    if value and not _MSG_QUOTE.search(value):
        return value
    return '"' + _MSG_ESCAPE.sub(_escape, value) + '"'


def format_rfc5424(
    event: Event, *, hostname: str, app_name: str = "acme-appliance", procid: str = "-", facility: int = FACILITY_LOCAL0
) -> bytes:
    """
    One RFC 5424 message: the event's fields as structured data, and again
    as C{key=value} text (C{event=<name>} first) for readers that only show
    the message.
    """
    severity = SEVERITY_WARNING if event.name in WARNINGS else SEVERITY_INFO
    fields = [("event", event.name.value)] + event.fields()
    params = " ".join(f'{_sd_name(k)}="{_sd_value(v)}"' for k, v in fields)
    text = " ".join(f"{k}={_msg_value(v)}" for k, v in fields)
    header = (
        f"<{facility * 8 + severity}>1 {rfc3339(event.time)} {hostname or '-'} {app_name} {procid} "
        f"{event.name.value[:32]}"
    )
    return f"{header} [{SD_ID} {params}] {text}".encode()


class _Connection(Protocol):
    def __init__(self, notifier: SyslogNotifier) -> None:
        self._notifier = notifier

    def connectionMade(self) -> None:
        self._notifier._connected(self)

    def connectionLost(self, reason: Any = None) -> None:
        self._notifier._disconnected(self)


class _LocalSocket(ConnectedDatagramProtocol):
    """
    Notes what the connected datagram port reports through its protocol:
    a socket that could not be connected, or a datagram the daemon refused
    (it went away, e.g. restarted and made a new socket).
    """

    failure: Failure | None = None
    refused = False

    def connectionFailed(self, failure: Failure) -> None:
        self.failure = failure

    def connectionRefused(self) -> None:
        self.refused = True


class SyslogNotifier(MultiService):
    """
    An L{EventBus} subscriber sending each event to a syslog server.

    Sending never blocks issuance: messages wait in a bounded queue while a
    TCP connection is (re)established, or while a UDP host name is resolved
    (once, at start); when it is full the oldest is dropped and C{on_drop}
    is told.  UDP datagrams are sent at once (a lost one is not noticed:
    that is UDP).  A local socket refused or gone (the daemon restarted) is
    reopened on the next message.

    @param events: which events to send; C{None} for all.
    @param on_drop: told of every event not sent.
    @param reconnect_delay: the first delay before a TCP reconnection
        (backing off to 30 seconds).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        target: SyslogTarget,
        *,
        hostname: str | None = None,
        queue_size: int = 1000,
        on_drop: Callable[[Event], object] | None = None,
        events: frozenset[EventName] | None = None,
        reconnect_delay: float = 1.0,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self.target = target
        self._hostname = hostname or socket.gethostname()
        self._procid = str(os.getpid())
        self._on_drop: Callable[[Event], object] = on_drop if on_drop is not None else (lambda event: None)
        self._queue: BoundedQueue[tuple[Event, bytes]] = BoundedQueue(queue_size, lambda item: self._on_drop(item[0]))
        self._events = events
        self._datagram: Any = None
        self._address: tuple[str, int] | None = None
        self._resolving = False
        self._local: _LocalSocket | None = None
        self._local_down = False
        self._stream: Protocol | None = None
        if target.transport is SyslogTransport.TCP:
            endpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=10)
            ClientService(
                endpoint,
                Factory.forProtocol(lambda: _Connection(self)),
                retryPolicy=backoffPolicy(initialDelay=reconnect_delay, maxDelay=30.0),
                clock=reactor,
            ).setServiceParent(self)

    def __call__(self, event: Event) -> None:
        if self._events is not None and event.name not in self._events:
            return
        message = format_rfc5424(event, hostname=self._hostname, procid=self._procid)
        if self.target.transport is SyslogTransport.TCP:
            self._queue.append((event, b"%d %s" % (len(message), message)))
            self._pump()
        else:
            self._send_datagram(event, message)

    # datagrams

    def startService(self) -> None:
        super().startService()
        if self.target.transport is SyslogTransport.UDP:
            host = self.target.host
            if isIPAddress(host) or isIPv6Address(host):
                self._listen_udp(host)
            else:
                self._resolving = True
                d = self._reactor.resolve(host)
                d.addCallbacks(self._listen_udp, self._unresolved)
        elif self.target.transport is SyslogTransport.UNIX:
            self._local_reachable(self._open_local())

    def _listen_udp(self, address: str) -> None:
        self._resolving = False
        if not self.running:
            return
        try:
            self._datagram = self._reactor.listenUDP(0, DatagramProtocol(), interface="::" if ":" in address else "")
        except Exception as e:
            self._cannot_open(e)
            return
        self._address = (address, self.target.port)
        while self._queue:
            event, message = self._queue.popleft()
            self._send_udp(event, message)

    def _unresolved(self, failure: Failure) -> None:
        self._resolving = False
        if self.running:
            self._cannot_open(failure.value or OSError(failure.getErrorMessage()))

    def _cannot_open(self, error: BaseException) -> None:
        # Syslog is never in the way: without it, events are dropped (and
        # counted), not fatal.
        self._log.error("cannot open syslog target {target}: {error}", target=str(self.target), error=repr(error))
        self._queue.drop_all()

    def _send_datagram(self, event: Event, message: bytes) -> None:
        if self.target.transport is SyslogTransport.UNIX:
            self._send_local(event, message)
        elif self._resolving:
            self._queue.append((event, message))
        else:
            self._send_udp(event, message)

    def _send_udp(self, event: Event, message: bytes) -> None:
        if self._datagram is None or self._address is None:
            self._on_drop(event)
            return
        try:
            self._datagram.write(message, self._address)
        except Exception as e:
            self._log.warn("syslog message dropped: {error}", error=repr(e))
            self._on_drop(event)

    def _open_local(self) -> BaseException | None:
        local = _LocalSocket()
        try:
            port = self._reactor.connectUNIXDatagram(self.target.path, local)
        except Exception as e:
            return e
        if local.failure is not None:
            # The port has already closed itself.
            return local.failure.value or OSError(local.failure.getErrorMessage())
        self._datagram, self._local = port, local
        return None

    def _close_local(self) -> None:
        if self._datagram is not None:
            self._datagram.stopListening()
        self._datagram = self._local = None

    def _write_local(self, message: bytes) -> BaseException | None:
        if self._datagram is None or self._local is None:
            return OSError("not open")
        self._local.refused = False
        try:
            self._datagram.write(message)
        except Exception as e:
            return e
        return ConnectionRefusedError("message refused") if self._local.refused else None

    def _send_local(self, event: Event, message: bytes) -> None:
        if not self.running:
            self._on_drop(event)
            return
        if self._write_local(message) is None:
            return
        # Refused or never opened: the daemon may have restarted with a new
        # socket, so reopen and try once more; a restart loses nothing.
        self._close_local()
        error = self._open_local() or self._write_local(message)
        self._local_reachable(error)
        if error is not None:
            self._close_local()
            self._on_drop(event)

    def _local_reachable(self, error: BaseException | None) -> None:
        # Logged when it changes, not for every message.
        if error is None and self._local_down:
            self._log.info("syslog target {target} reachable again", target=str(self.target))
        elif error is not None and not self._local_down:
            self._log.error("cannot open syslog target {target}: {error}", target=str(self.target), error=repr(error))
        self._local_down = error is not None

    # streams

    def _pump(self) -> None:
        stream = self._stream
        if stream is None or stream.transport is None:
            return
        while self._queue:
            _, frame = self._queue.popleft()
            stream.transport.write(frame)

    def _connected(self, stream: _Connection) -> None:
        self._stream = stream
        self._pump()

    def _disconnected(self, stream: _Connection) -> None:
        if self._stream is stream:
            self._stream = None

    def pending(self) -> int:
        """
        Messages waiting for a connection.
        """
        return len(self._queue)

    def stopService(self) -> Any:
        d = super().stopService()
        if self._datagram is not None:
            self._datagram.stopListening()
        self._datagram = self._local = None
        return d

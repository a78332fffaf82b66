"""
Events as RFC 5424 syslog messages, sent over UDP, TCP (RFC 6587 octet
counting) or a local datagram socket such as C{/dev/log}.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from attrs import frozen
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

from ._events import WARNINGS, Event, EventName, rfc3339

#: The structured-data ID: a name with a private enterprise number (RFC 5424
#: section 7.2.2; 32473 is the one reserved for documentation).
SD_ID = "acme-appliance@32473"
FACILITY_LOCAL0 = 16
SEVERITY_WARNING = 4
SEVERITY_INFO = 6

_SD_NAME_UNSAFE = re.compile(r'[^!-~]|[= \]"]')
_SD_VALUE_ESCAPE = re.compile(r'(["\\\]])')


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


def parse_syslog_target(description: str) -> SyslogTarget:
    """
    Parse C{udp:HOST:PORT}, C{tcp:HOST:PORT} (IPv6 hosts in brackets) or
    C{unix:/absolute/path}.

    @raise ValueError: with what is wrong, in one line.
    """
    kind, sep, rest = description.partition(":")
    try:
        transport = SyslogTransport(kind.lower())
    except ValueError:
        raise ValueError(f"{description!r}: expected udp:HOST:PORT, tcp:HOST:PORT or unix:/path") from None
    if not sep or not rest:
        raise ValueError(f"{description!r}: nothing after {kind!r}:")
    if transport is SyslogTransport.UNIX:
        if not rest.startswith("/"):
            raise ValueError(f"{description!r}: the socket path must be absolute")
        return SyslogTarget(transport, path=rest)
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", rest)
    if match is None:
        raise ValueError(f"{description!r}: expected {kind}:HOST:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"{description!r}: port {port} is out of range")
    return SyslogTarget(transport, host=host, port=port)


def _sd_name(key: str) -> str:
    return _SD_NAME_UNSAFE.sub("_", key)[:32] or "_"


def _sd_value(value: str) -> str:
    return _SD_VALUE_ESCAPE.sub(r"\\\1", value)


def _msg_value(value: str) -> str:
    if value and not re.search(r'[\s"]', value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_rfc5424(
    event: Event,
    *,
    hostname: str,
    app_name: str = "acme-appliance",
    procid: str = "-",
    facility: int = FACILITY_LOCAL0,
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
    return f"{header} [{SD_ID} {params}] {text}".encode("utf-8")


class _Connection(Protocol):
    def __init__(self, notifier: SyslogNotifier) -> None:
        self._notifier = notifier

    def connectionMade(self) -> None:
        self._notifier._connected(self)

    def connectionLost(self, reason: Any = None) -> None:
        self._notifier._disconnected(self)


class SyslogNotifier(MultiService):
    """
    An L{EventBus} subscriber sending each event to a syslog server.

    Sending never blocks issuance: messages wait in a bounded queue while a
    TCP connection is (re)established; when it is full the oldest is
    dropped and C{on_drop} is told.  UDP and local datagrams are sent at
    once (a lost datagram is not noticed: that is UDP).

    @param events: which events to send; C{None} for all.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        target: SyslogTarget,
        *,
        hostname: str | None = None,
        queue_size: int = 1000,
        on_drop: Callable[[Event], object] = lambda event: None,
        events: frozenset[EventName] | None = None,
        reconnect_delay: float = 1.0,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self.target = target
        self._hostname = hostname or socket.gethostname()
        self._procid = str(os.getpid())
        self._queue: deque[tuple[Event, bytes]] = deque()
        self._queue_size = queue_size
        self._on_drop = on_drop
        self._events = events
        self._datagram: Any = None
        self._stream: Protocol | None = None
        if target.transport is SyslogTransport.TCP:
            endpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=10)
            ClientService(
                endpoint, Factory.forProtocol(lambda: _Connection(self)),
                retryPolicy=backoffPolicy(initialDelay=reconnect_delay, maxDelay=30.0), clock=reactor,
            ).setServiceParent(self)

    def __call__(self, event: Event) -> None:
        if self._events is not None and event.name not in self._events:
            return
        message = format_rfc5424(event, hostname=self._hostname, procid=self._procid)
        if self.target.transport is SyslogTransport.TCP:
            self._enqueue(event, b"%d %s" % (len(message), message))
            self._pump()
        else:
            self._send_datagram(event, message)

    # datagrams

    def startService(self) -> None:
        super().startService()
        try:
            if self.target.transport is SyslogTransport.UDP:
                self._address = self._udp_address()
                self._datagram = self._reactor.listenUDP(0, DatagramProtocol(), interface=self._udp_interface())
            elif self.target.transport is SyslogTransport.UNIX:
                self._datagram = self._reactor.connectUNIXDatagram(self.target.path, DatagramProtocol())
        except Exception as e:
            # Syslog is never in the way: without it, events are dropped
            # (and counted), not fatal.
            self._log.error("cannot open syslog target {target}: {error}", target=str(self.target), error=str(e))

    def _udp_address(self) -> tuple[str, int]:
        try:
            ipaddress.ip_address(self.target.host)
            host = self.target.host
        except ValueError:
            # A name is resolved once, at start-up.
            host = socket.gethostbyname(self.target.host)
        return host, self.target.port

    def _udp_interface(self) -> str:
        return "::" if ":" in self._address[0] else ""

    def _send_datagram(self, event: Event, message: bytes) -> None:
        if self._datagram is None:
            self._on_drop(event)
            return
        try:
            if self.target.transport is SyslogTransport.UDP:
                self._datagram.write(message, self._address)
            else:
                self._datagram.write(message)
        except Exception as e:
            self._log.warn("syslog message dropped: {error}", error=str(e))
            self._on_drop(event)

    # streams

    def _enqueue(self, event: Event, frame: bytes) -> None:
        self._queue.append((event, frame))
        while len(self._queue) > self._queue_size:
            dropped, _ = self._queue.popleft()
            self._on_drop(dropped)

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
            self._datagram = None
        return d

"""
Syslog collectors for integration tests: UDP datagrams and TCP octet-counted
frames, received in threads on loopback.
"""

from __future__ import annotations

import socket
import threading

from twisted.trial.unittest import SynchronousTestCase


class SyslogCollector:
    """
    A UDP syslog receiver on loopback, in a thread.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.messages: list[str] = []
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()
        case.addCleanup(self.close)

    def _receive(self) -> None:
        while self._running:
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode("utf-8", "replace"))

    def events(self) -> list[str]:
        return [m for m in self.messages if "event=" in m]

    def close(self) -> None:
        self._running = False
        self._thread.join(2)
        self.socket.close()


class TCPSyslog:
    """
    A TCP syslog collector (RFC 6587 octet counting) in a thread.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.data = b""
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        case.addCleanup(self.close)

    def _serve(self) -> None:
        while self._running:
            try:
                connection, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            # One thread per connection: the appliance keeps its connection
            # open while the CLI opens its own.
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        connection.settimeout(0.2)
        buffer = b""
        while self._running:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            # Keep whole frames only, so that two connections never interleave
            # inside a frame.
            while True:
                length, space, rest = buffer.partition(b" ")
                if not space or not length.isdigit() or len(rest) < int(length):
                    break
                with self._lock:
                    self.data += buffer[: len(length) + 1 + int(length)]
                buffer = rest[int(length) :]
        connection.close()

    def messages(self) -> list[bytes]:
        frames, data = [], self.data
        while data:
            length, _, rest = data.partition(b" ")
            if not length.isdigit() or len(rest) < int(length):
                break
            frames.append(rest[: int(length)])
            data = rest[int(length) :]
        return frames

    def close(self) -> None:
        self._running = False
        self._thread.join(2)
        self.server.close()

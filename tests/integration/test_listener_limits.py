"""
The real appliance under hostile connection counts, and twistd's daemon
mode on a taken port.
"""

from __future__ import annotations

import errno
import functools
import os
import resource
import select
import socket
import struct
import subprocess

import requests
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance._listeners import default_max_connections

from .appliance import BIN, Appliance
from .tools import free_port, wait_for

FLOOD = 1500
NOFILE = 1024
BATCH = 40
REQUEST_TIMEOUT = 3


def _dns_query(port: int, tcp: bool) -> int:
    """
    Ask the dcv zone's SOA over TCP or UDP; the answer's rcode.
    """
    query = dns.Message(id=7)
    query.queries = [dns.Query(b"dcv.test", dns.SOA)]
    wire = query.toStr()
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        if tcp:
            s.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", _read(s, 2))
            data = _read(s, length)
        else:
            s.send(wire)
            data = s.recv(4096)
    answer = dns.Message()
    answer.fromStr(data)
    return int(answer.rCode)


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _closed(s: socket.socket) -> bool:
    """
    Whether the server has closed C{s} (an answer, if any, read away).
    """
    try:
        while True:
            data = s.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError as e:
        return e.errno in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE)


def _sockets(port: int, state: str) -> list[list[str]]:
    """
    The rows of C{/proc/net/tcp} in C{state} whose local end is loopback
    C{port}.
    """
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [row for row in rows if row[1] == local and row[3] == state]


def _server_connections(port: int) -> int:
    """
    The established connections the server at loopback C{port} holds.
    """
    return len(_sockets(port, "01"))


def _writable(sockets: list[socket.socket]) -> bool:
    """
    Whether every one of C{sockets} has finished connecting.
    """
    poll = select.poll()
    for s in sockets:
        poll.register(s, select.POLLOUT)
    return len(poll.poll(0)) == len(sockets)


def _accept_queue(port: int) -> int:
    """
    The connections waiting to be accepted by the listener at C{port}.
    """
    return sum(int(row[4].split(":")[1], 16) for row in _sockets(port, "0A"))


class FloodTests(SynchronousTestCase):
    def setUp(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = FLOOD + 500
        if soft < wanted:
            if hard != resource.RLIM_INFINITY and hard < wanted:
                self.skipTest(f"the open-files hard limit {hard} is below {wanted}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def appliance(self) -> Appliance:
        def extra() -> str:
            self.fileproxy_port, self.dns_port = free_port(), free_port()
            return f"""
[validation]
fileproxy_listen = "tcp:{self.fileproxy_port}:interface=127.0.0.1"
dns_zone = "dcv.test"
dns_listen_port = {self.dns_port}
dns_listen_interface = "127.0.0.1"
preflight = false

[listeners]
request_timeout = {REQUEST_TIMEOUT}
"""

        appliance = Appliance(self, extra=extra, nofile=NOFILE)
        appliance.start()
        return appliance

    def flood(self, port: int) -> list[socket.socket]:
        """
        C{FLOOD} connections to C{port}, opened in batches the listen
        backlog holds, each batch accepted by the server before the next:
        every other one sends half a request and then nothing, the rest
        send nothing at all.
        """
        sockets: list[socket.socket] = []
        while len(sockets) < FLOOD:
            batch = []
            for _ in range(min(BATCH, FLOOD - len(sockets))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.addCleanup(s.close)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                batch.append(s)
            wait_for(functools.partial(_writable, batch), 10, "a batch of connections")
            wait_for(lambda: _accept_queue(port) == 0, 10, "the server to accept a batch")
            sockets += batch
        for s in sockets[1::2]:
            try:
                s.send(b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            except OSError:
                pass  # already closed by the server: beyond its cap
        return sockets

    def test_flood_on_one_listener(self) -> None:
        """
        While 1,500 idle and slow connections hold the file proxy of a
        process limited to 1,024 open files, the ACME directory, the admin
        health check and DNS (UDP and TCP) keep answering; the server closes
        every flooding connection within about a minute.
        """
        appliance = self.appliance()
        directory = appliance.directory("shop")
        key = appliance.admin_key()
        sockets = self.flood(self.fileproxy_port)
        # The listener holds no more than its share of the 1,024 files.
        self.assertLessEqual(_server_connections(self.fileproxy_port), default_max_connections(4, NOFILE))
        for _ in range(3):
            response = requests.get(directory, verify=appliance.tls_cert, timeout=10)
            self.assertEqual(response.status_code, 200)
            health = requests.get(
                f"http://127.0.0.1:{appliance.admin_port}/health",
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            self.assertEqual(health.status_code, 200)
            self.assertEqual(_dns_query(self.dns_port, tcp=True), 0)
            self.assertEqual(_dns_query(self.dns_port, tcp=False), 0)
            # A few more slow bytes on the flood: it must not extend it.
            for s in sockets[1::2][:100]:
                try:
                    s.send(b"a")
                except OSError:
                    pass
        wait_for(lambda: all(_closed(s) for s in sockets), 60, "the server to close every flooding connection")
        self.assertNotIn("Too many open files", appliance.log())
        # And the file proxy answers again.
        proxied = requests.get(f"http://127.0.0.1:{self.fileproxy_port}/.well-known/acme-challenge/x", timeout=10)
        self.assertEqual(proxied.status_code, 404)


class DaemonTests(SynchronousTestCase):
    def test_taken_port(self) -> None:
        """
        C{twistd} without C{-n} on a port held by someone else exits
        non-zero with the one-line reason on stderr, instead of waiting
        forever on its daemon's status pipe.
        """
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        appliance = Appliance(self, extra=f'[validation]\nfileproxy_listen = "tcp:{port}:interface=127.0.0.1"\n')
        result, pidfile = self.daemon(appliance)
        self.assertNotEqual(result.returncode, 0)
        reason = f"acme-appliance: cannot listen on 127.0.0.1:{port}: "
        self.assertIn(reason, result.stderr)
        line = next(line for line in result.stderr.splitlines() if reason in line)
        self.assertIn("already in use", line)
        self.assertFalse(os.path.exists(pidfile))

    def test_daemon_serves(self) -> None:
        """
        Bound before twistd forks, the listeners serve in the daemon.
        """
        appliance = Appliance(self)
        result, pidfile = self.daemon(appliance)
        self.assertEqual(result.returncode, 0, result.stderr)
        health = requests.get(
            f"http://127.0.0.1:{appliance.admin_port}/health",
            headers={"Authorization": f"Bearer {appliance.admin_key()}"},
            timeout=10,
        )
        self.assertEqual(health.status_code, 200)
        directory = appliance.directory("shop")
        self.assertEqual(requests.get(directory, verify=appliance.tls_cert, timeout=10).status_code, 200)

    def daemon(self, appliance: Appliance) -> tuple[subprocess.CompletedProcess[str], str]:
        """
        Run C{twistd} daemonized (the test stops the daemon, if any).
        """
        pidfile = os.path.join(appliance.dir, "twistd.pid")
        self.addCleanup(self._kill_daemon, pidfile)
        result = subprocess.run(
            [
                os.path.join(BIN, "twistd"),
                f"--pidfile={pidfile}",
                f"--logfile={appliance.log_path}",
                "acme-appliance",
                "--config",
                appliance.config,
            ],
            cwd=appliance.dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result, pidfile

    def _kill_daemon(self, pidfile: str) -> None:
        # Only if the test failed with a daemon left running.
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass

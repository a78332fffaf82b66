"""
Worker processes (C{[acme] workers}): the config key, the listening sockets
the main worker records and a worker adopts, the supervisor (on a memory
reactor: nothing is spawned) and the wiring of a worker's appliance.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated, ReactorNotRunning
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from acme_appliance._workers import (
    FIRST_FD,
    AdoptionError,
    ListeningSockets,
    WorkerSupervisor,
    exit_reason,
    worker_command,
)
from acme_appliance.acme import NonceTable
from acme_appliance.config import load_config
from acme_appliance.core import Backoff
from acme_appliance.storage import MemoryStore
from acme_appliance.tap import ApplianceService
from acme_appliance.worker import ParentWatch, line_observer, parse_args, stop

from .test_config import ConfigTestCase, setting
from .test_tap_wiring import CONFIG as TAP_CONFIG


class WorkersConfigTests(ConfigTestCase):
    def test_default_and_range(self) -> None:
        """
        C{[acme] workers}: 1 by default, 1 to 64.
        """
        self.assertEqual(self.load().acme.workers, 1)
        self.assertEqual(self.load(setting("acme", "workers", 4)).acme.workers, 4)
        self.assertEqual(self.load(setting("acme", "workers", 64)).acme.workers, 64)

    def test_bad(self) -> None:
        key = "acme.workers"
        self.assertProblem(setting("acme", "workers", 0), key, "0 is out of range (1 to 64)")
        self.assertProblem(setting("acme", "workers", 65), key, "65 is out of range (1 to 64)")
        self.assertProblem(setting("acme", "workers", "2"), key, "expected an integer, got a string")
        self.assertProblem(setting("acme", "workers", 1.5), key, "expected an integer")

    def test_memory_store(self) -> None:
        """
        Worker processes need a store they share.
        """

        def change(data: dict[str, Any]) -> None:
            data["acme"]["workers"] = 2
            data["storage"]["url"] = "memory:"

        self.assertProblem(change, "acme.workers", "needs a store the processes share", "not memory:")

        def one(data: dict[str, Any]) -> None:
            data["storage"]["url"] = "memory:"

        self.assertEqual(self.load(one).acme.workers, 1)

    def test_unix_listener(self) -> None:
        """
        Worker processes share TCP listeners only.
        """

        def change(data: dict[str, Any]) -> None:
            data["acme"]["workers"] = 2
            data["acme"]["listen"] = "unix:acme.sock"
            data["acme"]["self_signed_tls"] = False

        self.assertProblem(change, "acme.workers", "share tcp:, tcp6: and ssl: listeners only", "acme.listen")


def listening_socket(case: SynchronousTestCase, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    """
    A file descriptor of a new socket bound on loopback, closed at cleanup
    unless the code under test closed it.
    """
    sock = socket.socket(family, kind)
    sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    fd = sock.detach()

    def close() -> None:
        try:
            os.close(fd)
        except OSError:
            pass

    case.addCleanup(close)
    return fd


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class _Port:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class _BindingReactor:
    """
    Listens on a made-up descriptor per call.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _port(self, name: str, *args: Any) -> _Port:
        self.calls.append((name, args))
        return _Port(100 + len(self.calls))

    def listenTCP(self, *args: Any) -> _Port:
        return self._port("tcp", *args)

    def listenSSL(self, *args: Any) -> _Port:
        return self._port("ssl", *args)

    def listenUDP(self, *args: Any) -> _Port:
        return self._port("udp", *args)


class ListeningSocketsTests(SynchronousTestCase):
    def test_main_binds_and_records(self) -> None:
        """
        In the main worker, each listen binds as the reactor does and its
        descriptor is recorded under the listener's name (C{/udp} for a
        datagram socket).
        """
        sockets = ListeningSockets()
        reactor = _BindingReactor()
        factory = Factory.forProtocol(Protocol)
        sockets.reactor_for("acme", reactor).listenSSL(8443, factory, "context", 50, "127.0.0.1")
        dns = sockets.reactor_for("dns", reactor)
        dns.listenTCP(53, factory, 50, "")
        dns.listenUDP(53, "protocol", "", 512)
        self.assertEqual(
            reactor.calls,
            [
                ("ssl", (8443, factory, "context", 50, "127.0.0.1")),
                ("tcp", (53, factory, 50, "")),
                ("udp", (53, "protocol", "", 512)),
            ],
        )
        self.assertEqual(sockets.fds(), {"acme": 101, "dns": 102, "dns/udp": 103})
        self.assertIsNone(sockets.adopted)

    def test_worker_adopts(self) -> None:
        """
        In a worker, listening adopts the inherited descriptor of the
        listener (with its address family), wraps a TLS listener's factory
        as C{listenSSL} does, and closes the inherited descriptor (the
        port keeps a duplicate).
        """
        acme, tcp = listening_socket(self), listening_socket(self, socket.AF_INET6)
        udp = listening_socket(self, kind=socket.SOCK_DGRAM)
        reactor: Any = MemoryReactorClock()
        sockets = ListeningSockets({"acme": acme, "dns": tcp, "dns/udp": udp})
        factory = Factory.forProtocol(Protocol)
        context = CertificateOptions()
        sockets.reactor_for("acme", reactor).listenSSL(8443, factory, context, 50, "127.0.0.1")
        sockets.reactor_for("dns", reactor).listenTCP(53, factory, 50, "")
        sockets.reactor_for("dns", reactor).listenUDP(53, "protocol", "", 512)
        (fd1, family1, tls), (fd2, family2, plain), (fd3, family3, protocol, size) = reactor.adoptedPorts
        self.assertEqual((fd1, family1), (acme, socket.AF_INET))
        self.assertIsInstance(tls, TLSMemoryBIOFactory)
        self.assertIs(tls.wrappedFactory, factory)
        self.assertEqual((fd2, family2, plain), (tcp, socket.AF_INET6, factory))
        self.assertEqual((fd3, family3, protocol, size), (udp, socket.AF_INET, "protocol", 512))
        self.assertEqual(reactor.tcpServers, [])
        self.assertEqual(sorted(sockets.ports), ["acme", "dns", "dns/udp"])
        self.assertFalse(any(is_open(fd) for fd in (acme, tcp, udp)))

    def test_worker_without_socket(self) -> None:
        """
        A worker not given a listener's socket cannot listen for it.
        """
        sockets = ListeningSockets({"acme": listening_socket(self)})
        reactor: Any = MemoryReactorClock()
        e = self.assertRaises(AdoptionError, sockets.reactor_for("dns", reactor).listenUDP, 53, "protocol", "", 512)
        self.assertEqual(str(e), "no inherited socket for the dns/udp listener")

    def test_worker_bad_socket(self) -> None:
        """
        A descriptor that is not an open socket is named in the error.
        """
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        reactor: Any = MemoryReactorClock()
        for fd in (read, 1000):
            sockets = ListeningSockets({"acme": fd})
            e = self.assertRaises(AdoptionError, sockets.reactor_for("acme", reactor).listenTCP, 443, None)
            self.assertTrue(str(e).startswith(f"cannot adopt the socket of the acme listener (fd {fd}): "), str(e))

    def test_other_reactor_methods(self) -> None:
        """
        Everything else is the reactor's own.
        """
        reactor = MemoryReactorClock()
        proxy = ListeningSockets().reactor_for("acme", reactor)
        self.assertEqual(proxy.seconds(), reactor.seconds())


class _Process:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)


@implementer(IReactorProcess)
class _ProcessReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, str, list[str], dict[int, int | str], _Process]] = []

    def spawnProcess(
        self,
        processProtocol: Any,
        executable: Any,
        args: Any,
        env: Any = None,
        path: Any = None,
        uid: Any = None,
        gid: Any = None,
        usePTY: bool = False,
        childFDs: Any = None,
    ) -> IProcessTransport:
        process = _Process(1000 + len(self.spawned))
        self.spawned.append((processProtocol, executable, list(args), dict(childFDs), process))
        return process  # type: ignore[return-value]

    def end(self, index: int, reason: Exception | None = None) -> None:
        # As Twisted's process transports, once reaped.
        self.spawned[index][4].pid = None  # type: ignore[assignment]
        self.spawned[index][0].processEnded(Failure(reason if reason is not None else ProcessDone(0)))


FDS = {"acme": 7, "dns": 9, "dns/udp": 8}


class SupervisorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _ProcessReactor()
        self.supervisor = WorkerSupervisor(
            self.reactor,
            self.reactor,
            count=3,
            config="/etc/a.toml",
            fds=lambda: FDS,
            executable="/venv/python",
            backoff=Backoff((0.5, 1.0, 2.0)),
            stable=60.0,
            stop_timeout=10.0,
        )

    def test_command(self) -> None:
        """
        A worker's command line names its config, number and each
        listener's descriptor in the child, from L{FIRST_FD} on; stdin,
        stdout and stderr are pipes.
        """
        args, fds = worker_command("/venv/python", "/etc/a.toml", 2, FDS)
        self.assertEqual(
            args,
            [
                "/venv/python",
                "-m",
                "acme_appliance.worker",
                "--config",
                "/etc/a.toml",
                "--worker",
                "2",
                "--listener",
                f"acme={FIRST_FD}",
                "--listener",
                f"dns={FIRST_FD + 1}",
                "--listener",
                f"dns/udp={FIRST_FD + 2}",
            ],
        )
        self.assertEqual(fds, {0: "w", 1: "r", 2: "r", FIRST_FD: 7, FIRST_FD + 1: 9, FIRST_FD + 2: 8})
        parsed = parse_args(args[3:])
        self.assertEqual((parsed.config, parsed.worker), ("/etc/a.toml", 2))
        self.assertEqual(dict(parsed.listener), {"acme": 3, "dns": 4, "dns/udp": 5})

    def test_spawns_count_minus_one(self) -> None:
        """
        Starting spawns workers 1 to N - 1 (the main worker is the first).
        """
        self.assertEqual(self.reactor.spawned, [])
        self.supervisor.startService()
        self.assertEqual([s[2][6] for s in self.reactor.spawned], ["1", "2"])
        self.assertEqual({s[1] for s in self.reactor.spawned}, {"/venv/python"})
        self.assertEqual(self.supervisor.pids(), {1: 1000, 2: 1001})

    def test_restart_with_backoff(self) -> None:
        """
        A worker that ends is started again after the next delay of the
        backoff for each quick death; one that ran C{stable} seconds
        starts again after the first delay.
        """
        self.supervisor.startService()
        self.reactor.end(0, ProcessTerminated(signal=9))
        self.assertEqual(self.supervisor.pids(), {2: 1001})
        self.reactor.advance(0.4)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.reactor.spawned[2][2][6], "1")
        self.assertEqual(self.supervisor.pids(), {1: 1002, 2: 1001})
        self.reactor.end(2, ProcessTerminated(exitCode=1))
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.reactor.advance(60)
        self.reactor.end(3)
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.spawned), 5)

    def test_restart_is_logged(self) -> None:
        self.supervisor.startService()
        with capturedLogs() as logs:
            self.reactor.end(1, ProcessTerminated(signal=9))
        self.assertEqual(
            [(e["worker"], e["pid"], e["reason"], e["delay"]) for e in logs], [(2, 1001, "killed by signal 9", 0.5)]
        )

    def test_stop(self) -> None:
        """
        Stopping sends each worker C{SIGTERM} and fires once all ended;
        none starts again.
        """
        self.supervisor.startService()
        self.reactor.end(0)
        stopped = self.supervisor.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(self.reactor.spawned[1][4].signals, ["TERM"])
        self.reactor.end(1)
        self.successResultOf(stopped)
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_kills_late_workers(self) -> None:
        """
        A worker still running C{stop_timeout} seconds after C{SIGTERM}
        gets C{SIGKILL}.
        """
        self.supervisor.startService()
        stopped = self.supervisor.stopService()
        self.reactor.end(0)
        self.reactor.advance(9.9)
        self.assertEqual(self.reactor.spawned[1][4].signals, ["TERM"])
        self.reactor.advance(0.1)
        self.assertEqual(self.reactor.spawned[1][4].signals, ["TERM", "KILL"])
        self.assertNoResult(stopped)
        self.reactor.end(1, ProcessTerminated(signal=9))
        self.successResultOf(stopped)

    def test_output_is_logged(self) -> None:
        """
        Each line a worker writes (stdout or stderr) is logged with its
        number, also a last line without a newline.
        """
        self.supervisor.startService()
        protocol = self.reactor.spawned[1][0]
        with capturedLogs() as logs:
            protocol.childDataReceived(1, b"one\ntw")
            protocol.childDataReceived(2, b"err\n")
            protocol.childDataReceived(1, b"o\n\nthr")
            self.supervisor.stopService()
            protocol.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(
            [(e["worker"], e["line"]) for e in logs if "line" in e], [(2, "one"), (2, "err"), (2, "two"), (2, "thr")]
        )

    def test_exit_reason(self) -> None:
        self.assertEqual(exit_reason(Failure(ProcessDone(0))), "exit code 0")
        self.assertEqual(exit_reason(Failure(ProcessTerminated(exitCode=3))), "exit code 3")
        self.assertEqual(exit_reason(Failure(ProcessTerminated(signal=15))), "killed by signal 15")
        self.assertEqual(exit_reason(Failure(ValueError("odd"))), "odd")


class LineObserverTests(SynchronousTestCase):
    def test_lines_without_timestamp(self) -> None:
        """
        A worker logs plain lines: the main worker's log adds the time.
        """
        import io

        out = io.StringIO()
        observe = line_observer(out)
        observe({"log_format": "hello {who}", "who": "there", "log_namespace": "ns", "log_time": 0.0})
        self.assertEqual(out.getvalue(), "[ns#-] hello there\n")


class ParentWatchTests(SynchronousTestCase):
    def test_end_of_stdin(self) -> None:
        """
        Data on the pipe from the main worker is ignored; its end stops the
        worker's reactor.
        """
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        os.set_blocking(read, False)
        gone: list[bool] = []
        watch = ParentWatch(lambda: gone.append(True), read)
        self.assertEqual(watch.fileno(), read)
        self.assertIsNone(watch.doRead())
        os.write(write, b"x")
        self.assertIsNone(watch.doRead())
        os.close(write)
        reason = watch.doRead()
        assert reason is not None
        self.assertIsInstance(reason.value, ConnectionDone)
        watch.connectionLost(reason)
        self.assertEqual(gone, [True])

    def test_stop_once(self) -> None:
        """
        Stopping a reactor that stops already is no error.
        """
        reactor: Any = MemoryReactorClock()
        reactor.running = True
        stop(reactor)
        self.assertTrue(reactor.hasStopped)

        def stopping() -> None:
            raise ReactorNotRunning("Can't stop reactor that isn't running.")

        reactor.stop = stopping
        stop(reactor)


#: The wiring tests' configuration, on SQLite, with an admin listener.
CONFIG = TAP_CONFIG.replace('url = "memory:"', 'url = "sqlite:state.db"').replace(
    "[storage]", '[admin]\nlisten = "tcp:0:interface=127.0.0.1"\napi_key_file = "admin.key"\n\n[storage]'
)


class WiringTests(SynchronousTestCase):
    def service(self, workers: int, worker: int = 0, sockets: ListeningSockets | None = None) -> ApplianceService:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "appliance.toml")
        with open(path, "w") as f:
            f.write(CONFIG.replace("[acme]\n", f"[acme]\nworkers = {workers}\n"))
        self.reactor = MemoryReactorClock()
        return ApplianceService(
            load_config(path),
            MemoryStore(self.reactor),
            self.reactor,  # type: ignore[arg-type]
            worker=worker,
            sockets=sockets,
        )

    def names(self, service: ApplianceService) -> set[str]:
        return {type(s).__name__ for s in service} | {s.name for s in service if s.name}

    def test_main_worker_supervises(self) -> None:
        """
        With C{workers = 2}, the main worker runs a supervisor for one
        worker (its last service); its admin listener is its own.
        """
        service = self.service(2)
        self.assertIsInstance(list(service)[-1], WorkerSupervisor)
        self.assertEqual([w.number for w in service.supervisor.workers], [1])
        self.assertIn("admin", self.names(service))
        self.assertIn("UpstreamRenewalMirror", self.names(service))
        service.privilegedStartService()
        self.assertEqual(sorted(service.sockets.ports), ["acme"])
        self.assertEqual(len(self.reactor.tcpServers), 2)

    def test_one_process(self) -> None:
        self.assertNotIn("WorkerSupervisor", self.names(self.service(1)))

    def test_worker(self) -> None:
        """
        A worker adopts its listeners and runs neither the admin listener,
        the renewal mirror nor a supervisor.
        """
        fd = listening_socket(self)
        nonces = NonceTable.create()
        self.addCleanup(nonces.close)
        service = self.service(2, worker=1, sockets=ListeningSockets({"acme": fd, "nonces": nonces.fileno()}))
        names = self.names(service)
        for main_only in ("admin", "UpstreamRenewalMirror", "WorkerSupervisor"):
            self.assertNotIn(main_only, names)
        service.privilegedStartService()
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertEqual([p[0] for p in self.reactor.adoptedPorts], [fd])

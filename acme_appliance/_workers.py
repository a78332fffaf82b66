"""
Worker processes (C{[acme] workers = N}): the twistd process, the main
worker, binds every listener as usual, then runs C{N - 1} copies of the
appliance (C{python -m acme_appliance.worker}) that adopt its listening
sockets instead of binding them; the kernel hands each accepted connection
and each DNS datagram to one of the processes.  They share the store
(SQLite in WAL mode, or Redis) and its leases.

L{ListeningSockets} records the main worker's sockets and adopts them in a
worker; L{WorkerSupervisor} runs the workers, restarts one that dies (with
a backoff) and stops them with the main worker.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from ._balance import BalancedPort, ConnectionShares
from .core import Backoff

#: Delays before restarting a worker that died, after each quick death in a row.
RESTART_BACKOFF = Backoff((0.5, 1.0, 2.0, 5.0, 10.0, 30.0))
#: A worker that ran this long (seconds) before dying is restarted at the first delay again.
STABLE_SECONDS = 60.0
#: Seconds stopping workers may take after C{SIGTERM}; then C{SIGKILL}.
STOP_TIMEOUT = 10.0
#: The first file descriptor of a worker's listening sockets.
FIRST_FD = 3
#: The name under which a worker inherits the L{ConnectionShares} table.
SHARES = "connection-shares"

R = TypeVar("R")


class AdoptionError(Exception):
    """
    A worker was not given the socket of one of its listeners, or cannot
    use it.
    """


class ListeningSockets:
    """
    The listening sockets of one appliance process, by listener name (a
    datagram socket's name ends with C{/udp}).

    In the main worker (no C{adopted}), the reactors of L{reactor_for} bind
    as usual and L{fds} tells the file descriptors; in a worker, they adopt
    the inherited descriptors of C{adopted} instead of binding.
    """

    def __init__(self, adopted: Mapping[str, int] | None = None, *, processes: int = 1, process: int = 0) -> None:
        """
        @param adopted: In a worker, the inherited descriptors by name (the
            listeners', and those handed down: L{SHARES}, the connection
            shares table, and the nonce table).
        @param processes: How many processes serve the listeners; with
            more than one, their TCP connections are shared out evenly
            (L{BalancedPort}).
        @param process: This process's number (C{0}: the main worker).
        """
        self.adopted = dict(adopted) if adopted is not None else None
        self.ports: dict[str, IListeningPort] = {}
        self._handed_down: dict[str, int] = {}
        self.shares: ConnectionShares | None = None
        if processes > 1:
            if self.adopted is None:
                self.shares = ConnectionShares.create(processes)
                self.hand_down(SHARES, self.shares.fileno())
            elif SHARES in self.adopted:
                self.shares = ConnectionShares(self.adopted[SHARES], processes, process)

    def reactor_for(self, name: str, reactor: R) -> R:
        """
        C{reactor}, whose C{listen*} methods listen for the listener C{name}.
        """
        return cast(R, _ListeningReactor(reactor, name, self))

    def fds(self) -> dict[str, int]:
        """
        The file descriptor of each listener's socket, and of what else
        the workers are handed down.
        """
        fds = {name: port.fileno() for name, port in self.ports.items()}  # type: ignore[attr-defined]
        return fds | self._handed_down

    def hand_down(self, name: str, fd: int) -> None:
        """
        In the main worker: give the workers descriptor C{fd} too, as C{name}.
        """
        self._handed_down[name] = fd

    def handed_down(self, name: str) -> int:
        """
        In a worker: the descriptor the main worker handed down as C{name}.

        @raise AdoptionError: it handed down none.
        """
        if self.adopted is None or name not in self.adopted:
            raise AdoptionError(f"no inherited descriptor for {name}")
        return self.adopted[name]

    def listen(self, name: str, bind: Callable[[], IListeningPort], adopt: Callable[[int], IListeningPort]) -> Any:
        """
        Bind (in the main worker) or adopt (in a worker) the socket of C{name}.
        """
        if self.adopted is None:
            port = bind()
        else:
            if name not in self.adopted:
                raise AdoptionError(f"no inherited socket for the {name} listener")
            fd = self.adopted[name]
            try:
                port = adopt(fd)
            except OSError as e:
                raise AdoptionError(f"cannot adopt the socket of the {name} listener (fd {fd}): {e.strerror}") from None
            # The port listens on its own duplicate.
            os.close(fd)
        self.ports[name] = port
        return port


def family_of(fd: int) -> int:
    """
    The address family of socket C{fd}.
    """
    sock = socket.socket(fileno=fd)
    try:
        return int(sock.family)
    finally:
        sock.detach()


class _ListeningReactor:
    """
    A reactor whose TCP, TLS and UDP listeners go through L{ListeningSockets}.
    """

    def __init__(self, reactor: Any, name: str, sockets: ListeningSockets) -> None:
        self._reactor = reactor
        self._name = name
        self._sockets = sockets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if self._balancing() and isinstance(factory, WrappingFactory):
            return self._balanced(port, factory, backlog, interface)
        return self._sockets.listen(
            self._name,
            lambda: self._reactor.listenTCP(port, factory, backlog, interface),
            lambda fd: self._reactor.adoptStreamPort(fd, family_of(fd), factory),
        )

    def listenSSL(self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = "") -> Any:
        # What the reactor's listenSSL does on top of listenTCP.
        if self._balancing():
            tls = TLSMemoryBIOFactory(contextFactory, False, factory)
            return self._balanced(port, tls, backlog, interface)
        return self._sockets.listen(
            self._name,
            lambda: self._reactor.listenSSL(port, factory, contextFactory, backlog, interface),
            lambda fd: self._reactor.adoptStreamPort(
                fd, family_of(fd), TLSMemoryBIOFactory(contextFactory, False, factory)
            ),
        )

    def _balancing(self) -> bool:
        # A BalancedPort is a POSIX reactor's own TCP port.
        return self._sockets.shares is not None and isinstance(self._reactor, PosixReactorBase)

    def _balanced(self, port: int, factory: Factory[Any], backlog: int, interface: str) -> BalancedPort:
        """
        Listen (or adopt) as the reactor does, with a L{BalancedPort}.
        """
        shares = self._sockets.shares
        assert shares is not None

        def started(listening: BalancedPort) -> BalancedPort:
            listening.startListening()
            listening.balance(shares, self._name)
            return listening

        return cast(
            BalancedPort,
            self._sockets.listen(
                self._name,
                lambda: started(BalancedPort(port, factory, backlog, interface, self._reactor)),
                lambda fd: started(BalancedPort._fromListeningDescriptor(self._reactor, fd, family_of(fd), factory)),
            ),
        )

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        return self._sockets.listen(
            self._name + "/udp",
            lambda: self._reactor.listenUDP(port, protocol, interface, maxPacketSize),
            lambda fd: self._reactor.adoptDatagramPort(fd, family_of(fd), protocol, maxPacketSize),
        )


def worker_command(
    executable: str, config: str, number: int, fds: Mapping[str, int]
) -> tuple[list[str], dict[int, int | str]]:
    """
    The command line of worker C{number} and its file descriptors: stdin
    a pipe (its end tells the worker that the main worker is gone), stdout
    and stderr pipes to the main worker's log, then the listening sockets
    and the shared tables (connection shares, nonces) from L{FIRST_FD} on.
    """
    args = [executable, "-m", "acme_appliance.worker", "--config", config, "--worker", str(number)]
    child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
    for child_fd, (name, fd) in enumerate(sorted(fds.items()), start=FIRST_FD):
        child_fds[child_fd] = fd
        args += ["--listener", f"{name}={child_fd}"]
    return args, child_fds


class _Worker:
    """
    One worker slot: its running process, if any, and its restarts.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: IProcessTransport | None = None
        #: The running process's id (the transport forgets it once it ended).
        self.pid: int | None = None
        self.started = 0.0
        self.quick_deaths = 0
        self.restart: IDelayedCall | None = None
        self.ended: list[Deferred[None]] = []


class _WorkerProtocol(ProcessProtocol):
    """
    Relays a worker's output to the log, line by line, and tells the
    supervisor when it ends.
    """

    _log = Logger()

    def __init__(self, supervisor: WorkerSupervisor, worker: _Worker) -> None:
        self._supervisor = supervisor
        self._worker = worker
        self._buffers: dict[int, bytes] = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        *lines, self._buffers[childFD] = (self._buffers.get(childFD, b"") + data).split(b"\n")
        for line in lines:
            self._relay(line)

    def _relay(self, line: bytes) -> None:
        if line.strip():
            text = line.decode("utf-8", "replace").rstrip()
            self._log.info("[worker {worker}] {line}", worker=self._worker.number, line=text)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._buffers.items():
            self._buffers[fd] = b""
            self._relay(rest)
        self._supervisor.ended(self._worker, reason)


def exit_reason(reason: Failure) -> str:
    """
    How a process ended, in words.
    """
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        return f"killed by signal {value.signal}"
    if isinstance(value, (ProcessDone, ProcessTerminated)):
        return f"exit code {value.exitCode}"
    return str(value)


class WorkerSupervisor(Service):
    """
    Runs workers C{1} to C{count - 1} (the main worker is number 0): a
    worker that ends while the service runs is started again after a delay
    from C{backoff} (the next one for each death within C{stable} seconds
    of its start); stopping the service sends each worker C{SIGTERM}, and
    C{SIGKILL} after C{stop_timeout} seconds, and fires once all ended.

    @param fds: the listening sockets to hand to a new worker, by name.
    """

    _log = Logger()

    def __init__(
        self,
        processes: IReactorProcess,
        clock: IReactorTime,
        *,
        count: int,
        config: str,
        fds: Callable[[], Mapping[str, int]],
        executable: str = sys.executable,
        backoff: Backoff = RESTART_BACKOFF,
        stable: float = STABLE_SECONDS,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self._processes = processes
        self._clock = clock
        self._config = config
        self._fds = fds
        self._executable = executable
        self._backoff = backoff
        self._stable = stable
        self._stop_timeout = stop_timeout
        self.workers = [_Worker(number) for number in range(1, count)]

    def pids(self) -> dict[int, int]:
        """
        The process id of each running worker, by number.
        """
        return {w.number: w.pid for w in self.workers if w.process is not None and w.pid is not None}

    def startService(self) -> None:
        super().startService()
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        worker.restart = None
        args, child_fds = worker_command(self._executable, self._config, worker.number, self._fds())
        worker.started = self._clock.seconds()
        worker.process = self._processes.spawnProcess(
            _WorkerProtocol(self, worker), self._executable, args, env=dict(os.environ), childFDs=child_fds
        )
        worker.pid = worker.process.pid
        self._log.info("started worker {worker} (pid {pid})", worker=worker.number, pid=worker.pid)

    def ended(self, worker: _Worker, reason: Failure) -> None:
        """
        Worker C{worker}'s process ended: start it again unless stopping.
        """
        pid, worker.process, worker.pid = worker.pid, None, None
        waiters, worker.ended = worker.ended, []
        for waiter in waiters:
            waiter.callback(None)
        if not self.running:
            return
        if self._clock.seconds() - worker.started >= self._stable:
            worker.quick_deaths = 0
        delay = self._backoff.delay(worker.quick_deaths)
        worker.quick_deaths += 1
        self._log.warn(
            "worker {worker} (pid {pid}) ended ({reason}); starting it again in {delay:g} s",
            worker=worker.number,
            pid=pid,
            reason=exit_reason(reason),
            delay=delay,
        )
        worker.restart = self._clock.callLater(delay, self._spawn, worker)

    def stopService(self) -> Deferred[object]:
        super().stopService()
        waiting: list[Deferred[None]] = []
        for worker in self.workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
            if worker.process is not None:
                ended: Deferred[None] = Deferred()
                worker.ended.append(ended)
                waiting.append(ended)
                self._signal(worker, "TERM")
        kill = self._clock.callLater(self._stop_timeout, self._kill_all)
        done: Deferred[object] = DeferredList(waiting)  # type: ignore[assignment]

        def stopped(result: object) -> object:
            if kill.active():
                kill.cancel()
            return result

        return done.addBoth(stopped)

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.process is not None:
                self._log.warn("worker {worker} did not stop in time: killing it", worker=worker.number)
                self._signal(worker, "KILL")

    def _signal(self, worker: _Worker, signal: str) -> None:
        assert worker.process is not None
        try:
            worker.process.signalProcess(signal)
        except ProcessExitedAlready:
            # Its processEnded is on its way.
            pass

"""
One worker process of C{[acme] workers = N}, started by the main worker
(the twistd process) with its listening sockets:

    python -m acme_appliance.worker --config FILE --worker K --listener NAME=FD ...

It builds the same appliance from the configuration, adopts the sockets
instead of binding, logs to stdout (the main worker relays each line to
its log) and stops on C{SIGTERM} or when its stdin (a pipe from the main
worker) closes: the main worker is gone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import IO, cast

from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import ILogObserver, LogEvent, globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import implementer

from ._appliance import IApplianceReactor, StartupError, open_store_now
from ._logs import ClassicLogFormat
from ._workers import AdoptionError, ListeningSockets
from .config import ConfigError, load_config
from .tap import ApplianceService


def _listener(text: str) -> tuple[str, int]:
    name, sep, fd = text.rpartition("=")
    if not sep or not name or not fd.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=FD, got {text!r}")
    return name, int(fd)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """
    The worker's command line.
    """
    parser = argparse.ArgumentParser(prog="python -m acme_appliance.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the appliance's TOML configuration file")
    parser.add_argument("--worker", type=int, required=True, help="this worker's number (1 and up)")
    parser.add_argument(
        "--listener",
        type=_listener,
        action="append",
        default=[],
        help="NAME=FD: an inherited listening socket (or shared table)",
    )
    return parser.parse_args(argv)


def line_observer(stream: IO[str]) -> ILogObserver:
    """
    Log events as lines without a timestamp (the main worker's log adds it).
    """

    line = ClassicLogFormat().untimed

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        text = line(event)
        if text:
            stream.write(text.rstrip("\n") + "\n")
            stream.flush()

    return cast(ILogObserver, observe)


@implementer(IReadDescriptor)
class ParentWatch:
    """
    Reads the worker's stdin (C{fd}), a pipe from the main worker: its end
    means the main worker is gone, and calls C{on_gone}.
    """

    def __init__(self, on_gone: Callable[[], object], fd: int = 0) -> None:
        self._on_gone = on_gone
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Failure | None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return None
        return None if data else Failure(CONNECTION_DONE)

    def connectionLost(self, reason: Failure) -> None:
        self._on_gone()

    def logPrefix(self) -> str:
        return "main-worker-watch"


def build(argv: list[str], reactor: IApplianceReactor) -> ApplianceService:
    """
    The worker's appliance, its listeners adopted; exits with one line
    when it cannot start.
    """
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        store = open_store_now(config, reactor)
        service = ApplianceService(
            config,
            store,
            reactor,
            worker=args.worker,
            sockets=ListeningSockets(dict(args.listener), processes=config.acme.workers, process=args.worker),
        )
        service.privilegedStartService()
    except (ConfigError, StartupError, AdoptionError, OSError) as e:
        sys.exit(f"acme-appliance worker {args.worker}: {e}")
    return service


def stop(reactor: IApplianceReactor) -> None:
    """
    Stop C{reactor} unless it is stopping already.
    """
    try:
        reactor.stop()
    except ReactorNotRunning:
        # Shutting down already (the reactor lets go of its stdin).
        pass


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor as global_reactor

    reactor = cast(IApplianceReactor, global_reactor)
    globalLogBeginner.beginLoggingTo([line_observer(sys.stdout)], redirectStandardIO=False)
    service = build(sys.argv[1:] if argv is None else argv, reactor)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    os.set_blocking(0, False)
    cast(IReactorFDSet, reactor).addReader(ParentWatch(lambda: stop(reactor)))
    reactor.run()


if __name__ == "__main__":
    main()

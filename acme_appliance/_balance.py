"""
Even shares of a listener's connections among worker processes.

The processes of C{[acme] workers = N} accept from the same listening
socket, and the kernel wakes all of them for a new connection: whichever
calls C{accept} first gets it.  With few long-lived connections (a handful
of busy clients keeping theirs alive) one process may end up serving most
of them while the other idles.  So each process publishes how many
connections of each listener it has open in a table of shared memory, and
one that has more than another lets a new connection wait up to
L{ACCEPT_DEFER} for a less busy process to take it, then takes it itself
(the other may be busy, stopped or dead).
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any, cast

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.protocols.policies import WrappingFactory

#: How long a process with more connections than another leaves a new one
#: to the others before accepting it itself.
ACCEPT_DEFER = 0.002

#: Listeners a table has room for.
MAX_LISTENERS = 8

#: What a slot holds until its process tells: never fewer than anyone.
UNKNOWN = 2**62

_SLOT = struct.Struct("=q")


def _table_size(processes: int) -> int:
    return _SLOT.size * processes * MAX_LISTENERS


class ConnectionShares:
    """
    The open connections of each process on each listener, in memory that
    the processes share (a file descriptor the main process makes and hands
    to its workers).

    @param fd: The table's file descriptor (L{create} makes one).
    @param processes: How many processes share it.
    @param process: This process's number, C{0} for the main one.
    """

    def __init__(self, fd: int, processes: int, process: int) -> None:
        self._fd = fd
        self._processes = processes
        self._process = process
        self._table = mmap.mmap(fd, _table_size(processes))
        self._listeners: list[str] = []

    @classmethod
    def create(cls, processes: int) -> ConnectionShares:
        """
        A new table for C{processes} processes, seen from the main one;
        every slot unknown until its process publishes.
        """
        fd = os.memfd_create("acme-appliance-connection-shares", os.MFD_CLOEXEC)
        os.ftruncate(fd, _table_size(processes))
        shares = cls(fd, processes, 0)
        for offset in range(0, _table_size(processes), _SLOT.size):
            _SLOT.pack_into(shares._table, offset, UNKNOWN)
        return shares

    def fileno(self) -> int:
        return self._fd

    def listener(self, name: str) -> int:
        """
        The table row of listener C{name}: every process listens in the
        same order, so the rows agree.

        @raise ValueError: more than L{MAX_LISTENERS} listeners.
        """
        if name not in self._listeners:
            if len(self._listeners) >= MAX_LISTENERS:
                raise ValueError(f"at most {MAX_LISTENERS} listeners share their connections")
            self._listeners.append(name)
        return self._listeners.index(name)

    def _offset(self, row: int, process: int) -> int:
        return _SLOT.size * (row * self._processes + process)

    def publish(self, row: int, count: int) -> None:
        """
        This process has C{count} connections of listener C{row} open.
        """
        _SLOT.pack_into(self._table, self._offset(row, self._process), count)

    def fewest_elsewhere(self, row: int) -> int:
        """
        The fewest connections of listener C{row} another process has open.
        """
        counts = (
            _SLOT.unpack_from(self._table, self._offset(row, p))[0]
            for p in range(self._processes)
            if p != self._process
        )
        return min(counts, default=UNKNOWN)

    def close(self) -> None:
        self._table.close()
        os.close(self._fd)


def _open_connections(factory: object) -> int:
    return len(factory.protocols) if isinstance(factory, WrappingFactory) else 0


class BalancedPort(tcp.Port):
    """
    A TCP port that leaves a new connection to a process with fewer open
    connections of the same listener (for up to L{ACCEPT_DEFER} seconds)
    and publishes its own count in L{ConnectionShares}.  Connections are
    counted by the factory (a L{WrappingFactory}, as the TLS one is).
    """

    shares: ConnectionShares
    row: int
    _deferred: IDelayedCall | None = None

    def balance(self, shares: ConnectionShares, name: str) -> None:
        """Share the connections of listener C{name} through C{shares}."""
        self.shares = shares
        self.row = shares.listener(name)
        self._publish()

    def _publish(self) -> int:
        """Publish this process's open connections; how many."""
        mine = _open_connections(self.factory)
        self.shares.publish(self.row, mine)
        return mine

    def doRead(self) -> Any:
        if self._publish() > self.shares.fewest_elsewhere(self.row):
            self.stopReading()
            self._deferred = cast(IReactorTime, self.reactor).callLater(ACCEPT_DEFER, self._take_left_over)
            return None
        return self._accept()

    def _accept(self) -> Any:
        # One at a time: the next is weighed again (the reactor calls again
        # at once while more wait).
        self.numberAccepts = 1
        result = super().doRead()
        self._publish()
        return result

    def _take_left_over(self) -> None:
        """
        The wait is over: accept what no other process took (if none is
        left, C{accept} finds nothing), then go on listening.
        """
        self._deferred = None
        self._accept()
        self.startReading()

    def connectionLost(self, reason: Any) -> None:
        if self._deferred is not None and self._deferred.active():
            self._deferred.cancel()
        self._deferred = None
        super().connectionLost(reason)

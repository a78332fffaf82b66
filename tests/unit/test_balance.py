"""
Even shares of a listener's connections among worker processes: the shared
table of open connections, and the port that leaves a new connection to a
less busy process for a moment.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from acme_appliance import _balance
from acme_appliance._balance import UNKNOWN, BalancedPort, ConnectionShares


class ConnectionSharesTests(SynchronousTestCase):
    def test_seen_by_every_process(self) -> None:
        """
        What one process publishes, the others see through the same
        descriptor; a slot nobody published is unknown, so never the
        fewest.
        """
        main = ConnectionShares.create(3)
        self.addCleanup(main.close)
        worker = ConnectionShares(main.fileno(), 3, 1)
        row = main.listener("acme")
        self.assertEqual(worker.listener("acme"), row)
        self.assertEqual(main.fewest_elsewhere(row), UNKNOWN)
        worker.publish(row, 4)
        self.assertEqual(main.fewest_elsewhere(row), 4)
        main.publish(row, 1)
        self.assertEqual(worker.fewest_elsewhere(row), 1)
        other = main.listener("http")
        self.assertNotEqual(other, row)
        self.assertEqual(worker.fewest_elsewhere(other), UNKNOWN)

    def test_listeners_bounded(self) -> None:
        """
        A table has room for L{MAX_LISTENERS} listeners.
        """
        shares = ConnectionShares.create(2)
        self.addCleanup(shares.close)
        for i in range(_balance.MAX_LISTENERS):
            shares.listener(f"l{i}")
        self.assertRaises(ValueError, shares.listener, "one-too-many")


class _Accepted(WrappingFactory):
    """Counts its connections; fires C{accepted} with each."""

    def __init__(self) -> None:
        super().__init__(Factory.forProtocol(Protocol))
        self.accepted: Deferred[None] = Deferred()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        accepted, self.accepted = self.accepted, Deferred()
        global_reactor.callLater(0, accepted.callback, None)
        return protocol


class BalancedPortTests(TestCase):
    """
    Two ports on one listening socket, as two processes would have, with
    their own views of one table.
    """

    def setUp(self) -> None:
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        listening.setblocking(False)
        self.addCleanup(listening.close)
        self.address = listening.getsockname()
        shares = ConnectionShares.create(2)
        self.addCleanup(shares.close)
        self.ports: list[BalancedPort] = []
        self.factories: list[_Accepted] = []
        for process in (0, 1):
            factory = _Accepted()
            port = BalancedPort._fromListeningDescriptor(global_reactor, listening.fileno(), socket.AF_INET, factory)
            port.startListening()
            port.balance(ConnectionShares(shares.fileno(), 2, process) if process else shares, "acme")
            self.addCleanup(port.stopListening)
            self.ports.append(port)
            self.factories.append(factory)

    def connect(self) -> None:
        client = socket.create_connection(self.address)
        self.addCleanup(client.close)

    async def accept_one(self) -> None:
        """Connect, and wait until one of the ports accepted."""
        waiting = [f.accepted for f in self.factories]
        self.connect()
        await DeferredList(waiting, fireOnOneCallback=True)

    def open(self) -> list[int]:
        return [len(f.protocols) for f in self.factories]

    async def test_fewer_connections_take_the_next(self) -> None:
        """
        Connections made one after another alternate between the ports
        (without the table, the port the reactor asks first takes all).
        """
        for _ in range(4):
            await self.accept_one()
        self.assertEqual(self.open(), [2, 2])

    async def test_busy_port_takes_it_after_a_while(self) -> None:
        """
        A port with more connections still accepts, after L{ACCEPT_DEFER},
        what the other does not take (it is busy, stopped or dead).
        """
        self.ports[1].stopReading()
        await self.accept_one()
        await self.accept_one()
        self.assertEqual(self.open(), [2, 0])

    def test_stopped_while_waiting(self) -> None:
        """
        A port stopped while it lets a connection wait forgets the wait.
        """
        port = self.ports[0]
        port.factory.protocols[object()] = 1  # type: ignore[union-attr]
        self.ports[1].shares.publish(port.row, 0)
        port.doRead()
        deferred = port._deferred
        assert deferred is not None
        self.assertTrue(deferred.active())
        port.connectionLost(None)
        self.assertFalse(deferred.active())

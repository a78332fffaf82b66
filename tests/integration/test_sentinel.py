"""
A Sentinel failover under the appliance: a Redis master, one replica and
three Sentinels (quorum 2), the appliance on C{redis+sentinel://} with
C{wait_replicas = 1}.  The master is killed (-9) while clients are in
flight: requests get a 503 C{serverInternal} with C{Retry-After} until the
store is back, a write the (promoted, replica-less) master cannot replicate
is refused rather than acknowledged, every order completes on the promoted
replica, and what was acknowledged before (the token, the accounts, the
certificates) is all there.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import requests
from acme import messages
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.storage.redis import _SentinelMasterProtocol

from .appliance import Appliance
from .test_acme_library import Client, new_csr
from .test_cluster import ClusterWorld, obtain
from .tools import wait_for
from .world import RedisServer, Sentinels

CLIENTS = 4
SERVER_INTERNAL = "urn:ietf:params:acme:error:serverInternal"
# What the appliance logs as it answers a request whose write no replica
# confirmed.
REFUSED = re.compile(r"answered 503, retry after \d+ s: .*: the write to '.*' reached 0 of 1 replicas in time")


class SentinelProtocolTests(SynchronousTestCase):
    def test_lost_before_role(self) -> None:
        """
        A connection to the master that Sentinel names, lost before Redis
        answers C{ROLE} (say, as the appliance stops), is only reported as
        lost: no unhandled error (a traceback in the log).
        """
        lost: list[str] = []
        protocol = _SentinelMasterProtocol(charset=None)
        protocol.factory = SimpleNamespace(is_master=True, on_lost=lost.append)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertIn(b"ROLE", transport.value())
        protocol.connectionLost(Failure(ConnectionDone()))
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(lost, ["Connection was closed cleanly."])


class ReplicatedAppliance(Appliance):
    """
    An appliance whose writes wait for one replica (C{wait_replicas = 1}).
    """

    def _configure(self) -> None:
        super()._configure()
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace('state_dir = "state"', 'state_dir = "state"\nwait_replicas = 1', 1))


class SentinelWorld(ClusterWorld):
    """
    A master, its replica, three Sentinels and one node on them, with the
    built-in CA; the cluster test's clients use it as they use a cluster.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        directory = os.path.abspath(case.mktemp())
        self.master = RedisServer(case, os.path.join(directory, "master"))
        self.master.start()
        self.replica = RedisServer(case, os.path.join(directory, "replica"), replica_of=self.master)
        self.replica.start()
        wait_for(lambda: "master_link_status:up" in self.replica.cli("INFO", "replication"), 30, "the replica to sync")
        self.sentinels = Sentinels(self.master, "mymaster")
        wait_for(lambda: self.sentinels.ready(replicas=1), 30, "the Sentinels to know each other and the replica")
        self.node = ReplicatedAppliance(case, storage=self.sentinels.url())
        self.node.start()

    def client(self, directory: str) -> Client:
        return Client(self.node, directory)


class SentinelFailoverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = SentinelWorld(self)
        self.directory = self.world.node.directory("shop")
        self.finished: list[str] = []
        self.stop = threading.Event()
        self.addCleanup(self.stop.set)

    def certify(self, account: Client, name: str) -> messages.OrderResource:
        """
        A certificate for C{name}, ordered by C{account}.
        """
        pem, _ = new_csr([name])
        order = account.acme.new_order(pem)
        return account.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=30))

    def keep_ordering(self, index: int) -> list[tuple[str, str]]:
        """
        One client's certificates, one after the other, until told to stop.
        """
        got: list[tuple[str, str]] = []
        while not self.stop.is_set():
            got.append(obtain(self.world, self.directory, f"c{index}-{len(got)}.example.com"))
            self.finished.append(got[-1][0])
        return got

    def test_master_killed(self) -> None:
        world = self.world
        accounts = [world.client(self.directory) for _ in range(3)]
        before = [self.certify(account, f"before-{i}.example.com") for i, account in enumerate(accounts)]
        pool = ThreadPoolExecutor(CLIENTS)
        self.addCleanup(pool.shutdown, wait=False, cancel_futures=True)
        futures = [pool.submit(self.keep_ordering, i) for i in range(CLIENTS)]
        wait_for(lambda: len(self.finished) >= CLIENTS, 60, "the clients to get certificates")

        world.master.kill()
        # While the master is gone, a request that needs the store gets a
        # clean 503 that tells the client to come back.
        response = requests.get(self.directory, verify=world.node.tls_cert, timeout=10)
        self.assertEqual(response.status_code, 503, response.text)
        self.assertEqual(response.json()["type"], SERVER_INTERNAL)
        self.assertTrue(response.headers["Retry-After"].isdigit())

        wait_for(lambda: world.sentinels.master_ports() == {world.replica.port}, 60, "the replica's promotion")
        # The store follows the promoted replica, which has no replica of its
        # own yet: a write is refused (503), not acknowledged unreplicated.
        wait_for(lambda: REFUSED.search(world.node.log()), 30, "a write to the promoted replica refused")

        # The old master comes back as the new one's replica.
        world.master.replica_of = world.replica.port
        world.master.start()
        count = len(self.finished)
        wait_for(lambda: len(self.finished) >= count + CLIENTS, 120, "orders to complete after the failover")
        self.stop.set()
        for future in futures:
            for _, chain in future.result(timeout=120):
                self.assertIn("BEGIN CERTIFICATE", chain)
        self.assertEqual((world.replica.role(), world.master.role()), ("master", "slave"))

        # What was acknowledged before the failover is all there.
        for account, order in zip(accounts, before, strict=True):
            self.assertEqual(account.acme.query_registration(account.regr).body.status, "valid")
            stored = account.raw(order.uri, None)
            self.assertEqual((stored.status_code, stored.json()["status"]), (200, "valid"), stored.text)
            certificate = account.raw(stored.json()["certificate"], None)
            self.assertEqual(certificate.text, order.fullchain_pem)
        self.assertIn("BEGIN CERTIFICATE", obtain(world, self.directory, "after.example.com")[1])
        assert world.node.process is not None
        self.assertIsNone(world.node.process.poll())
        self.assertNotIn("Traceback", world.node.log())

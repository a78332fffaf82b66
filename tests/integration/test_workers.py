"""
The real twistd with C{[acme] workers = 2} and SQLite: certificates issue
through it, the connections spread over both processes, a killed worker
is started again, and no worker outlives twistd.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
from typing import Any

import requests
from acme import messages
from twisted.trial.unittest import SynchronousTestCase

from .appliance import Appliance
from .test_acme_library import Client, new_csr
from .tools import wait_for

_STARTED = re.compile(r"started worker (\d+) \(pid (\d+)\)")


class WorkersAppliance(Appliance):
    """
    An L{Appliance} with C{[acme] workers}.
    """

    def __init__(self, case: SynchronousTestCase, *, workers: int, **kw: Any) -> None:
        self.workers = workers
        super().__init__(case, **kw)

    def _configure(self) -> None:
        super()._configure()
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace("[acme]\n", f"[acme]\nworkers = {self.workers}\n", 1))

    def worker_pids(self) -> dict[int, int]:
        """
        The last process id the log gives each worker.
        """
        return {int(n): int(pid) for n, pid in _STARTED.findall(self.log())}

    def wait_workers(self) -> dict[int, int]:
        """
        Wait until every worker started and listens (it logs its ACME
        listener starting), and return their process ids.
        """
        wait_for(lambda: len(self.worker_pids()) == self.workers - 1, 30, "the workers to start", interval=0.1)
        wait_for(
            lambda: all(f"[worker {n}] [-] acme (TLS) starting" in self.log() for n in self.worker_pids()),
            30,
            "the workers to listen",
            interval=0.1,
        )
        return self.worker_pids()


def alive(pid: int) -> bool:
    """
    Whether process C{pid} runs (a zombie does not).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def issue(client: Client, name: str) -> str:
    """
    One certificate for C{name} through the acme library: its chain (PEM).
    """
    order = client.acme.new_order(new_csr([name])[0])
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    done = client.acme.poll_and_finalize(order, deadline=deadline)
    assert done.body.status == messages.STATUS_VALID, done.body
    return str(done.fullchain_pem)


class WorkersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.appliance = WorkersAppliance(self, workers=2)
        self.appliance.start()
        self.pids = self.appliance.wait_workers()
        self.addCleanup(self._no_worker_left)
        self.directory = self.appliance.directory("shop")

    def _no_worker_left(self) -> None:
        self.appliance.stop()
        for pid in self.appliance.worker_pids().values():
            self.assertFalse(alive(pid), f"worker {pid} outlived twistd")

    def served_by(self, request: str) -> set[str]:
        """
        Which processes logged C{request} (e.g. C{"GET /acme/<token>/directory"}):
        C{"main"} and C{"worker N"}.
        """
        seen = set()
        for line in self.appliance.log().splitlines():
            if f'"{request} HTTP/1.1" 20' in line:
                found = re.search(r"\[(worker \d+)\]", line)
                seen.add(found.group(1) if found else "main")
        return seen

    def spread(self) -> None:
        """
        New connections (one request each) until both processes served one.
        """

        def both() -> bool:
            requests.get(self.directory, verify=self.appliance.tls_cert, timeout=10).raise_for_status()
            return self.served_by("GET /acme/<token>/directory") == {"main", "worker 1"}

        wait_for(both, 60, "requests served by both processes", interval=0.01)

    def test_issue_and_spread(self) -> None:
        """
        Certificates issue through both processes (each client its own
        connection) and the worker's lines are in the log with its number.
        """
        names = iter(range(1000))

        def both() -> bool:
            client = Client(self.appliance, self.directory)
            self.assertIn("BEGIN CERTIFICATE", issue(client, f"w{next(names)}.example.com"))
            return self.served_by("POST /acme/<token>/new-order") == {"main", "worker 1"}

        wait_for(both, 120, "orders served by both processes")
        self.spread()
        self.assertNotIn("Traceback", self.appliance.log())

    def test_killed_worker_restarts(self) -> None:
        """
        A worker killed with C{SIGKILL} is started again and serves.
        """
        old = self.pids[1]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: self.appliance.worker_pids()[1] != old, 30, "the worker to start again")
        self.assertIn("ended (killed by signal 9); starting it again", self.appliance.log())
        self.appliance.wait_workers()
        self.assertFalse(alive(old))
        client = Client(self.appliance, self.directory)
        self.assertIn("BEGIN CERTIFICATE", issue(client, "again.example.com"))
        self.spread()

    def test_main_killed(self) -> None:
        """
        A worker whose main worker was killed stops too.
        """
        self.appliance.kill()
        wait_for(lambda: not alive(self.pids[1]), 30, "the worker to stop")

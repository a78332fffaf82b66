"""
The benches still run: a short C{bench.issuance}, C{bench.cluster} and
C{bench.redis_store} print their tables (their figures are for the README, not
for tests).
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from .tools import require

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run C{python -m bench.NAME ARGS} from the checkout."""
    return subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def bench(name: str, *args: str) -> str:
    """Run C{python -m bench.NAME ARGS}; its output."""
    done = run(name, *args)
    if done.returncode != 0:
        raise AssertionError(f"bench.{name} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class BenchesTests(SynchronousTestCase):
    def test_issuance(self) -> None:
        """
        Two workers counts and Pebble, in alternating rounds: a figure and a
        ratio for each.
        """
        require("pebble")
        out = bench("issuance", "--seconds", "2", "--rounds", "2", "--processes", "2", "--workers", "1,2")
        for workers in (1, 2):
            self.assertIn(f"| issuance flows/s, workers = {workers} (2 processes, 2 s in 2 rounds) |", out)
            self.assertIn(f"| appliance VmRSS after the run, workers = {workers} (all processes) |", out)
        self.assertIn("Pebble (always-valid): ", out)
        self.assertIn("| client CPU a flow, workers = 2 |", out)
        self.assertIn("| machine CPU idle, workers = 2 |", out)

    def test_cluster(self) -> None:
        """
        One node on SQLite, one on Redis, two behind nginx: their rates and
        ratios.
        """
        require("redis-server")
        require("nginx")
        out = bench("cluster", "--seconds", "1", "--rounds", "1", "--processes", "2")
        self.assertIn("| issuance flows/s |", out)
        self.assertIn("| ratio to 1 node, Redis |", out)

    def test_bad_options(self) -> None:
        """
        Counts and times must be positive: a one-line usage error, before
        anything starts.
        """
        for name, option, value in (
            ("issuance", "--rounds", "0"),
            ("cluster", "--seconds", "-1"),
            ("redis_store", "--calls", "0"),
            ("dns", "--seconds", "0"),
            ("latency", "--poll", "-1"),
        ):
            done = run(name, option, value)
            self.assertEqual(done.returncode, 2)
            self.assertIn(f"argument {option}: must be more than 0, got '{value}'", done.stderr)
            self.assertNotIn("Traceback", done.stderr)
        done = run("fleet", "8", "0")
        self.assertEqual(done.returncode, 2)
        self.assertIn("argument sizes: must be more than 0, got '0'", done.stderr)
        done = run("redis_store", "--keys", "1000,lots")
        self.assertEqual(done.returncode, 2)
        self.assertIn("argument --keys: expected keyspace sizes like 1000,100000, got '1000,lots'", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        # Both appliances of the default --workers 1,2 would write one file.
        done = run("issuance", "--profile", "profile.stats")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--profile profiles one appliance: give one --workers count", done.stderr)

    def test_redis_store(self) -> None:
        """
        A listing, a write and the memory an entry, for each keyspace size.
        """
        require("redis-server")
        out = bench("redis_store", "--keys", "10,200", "--calls", "3")
        self.assertIn("| Redis store, 3 calls each |", out)
        self.assertIn("| 200 other entries |", out)

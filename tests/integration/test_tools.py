"""
The shared helpers of the integration tests: a missing binary fails under
CI and skips elsewhere; waits and port retries are bounded.
"""

from __future__ import annotations

import socket
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from .tools import AddressInUse, closed_port, require, start_retrying, wait_for, wait_listening

MISSING = "no-such-binary-for-the-tests"


class RequireTests(SynchronousTestCase):
    def test_missing_under_ci_fails_naming_it(self) -> None:
        with self.assertRaises(AssertionError) as caught:
            require("dig", "/nonexistent/dig", environ={"CI": "true", "PATH": "/nonexistent"})
        self.assertIn("dig is not installed", str(caught.exception))
        self.assertIn("Debian package dnsutils", str(caught.exception))

    def test_missing_outside_ci_skips(self) -> None:
        with self.assertRaises(SkipTest) as caught:
            require(MISSING, environ={})
        self.assertIn(f"{MISSING} is not installed", str(caught.exception))

    def test_missing_with_ci_empty_skips(self) -> None:
        self.assertRaises(SkipTest, require, MISSING, environ={"CI": ""})

    def test_found_on_path(self) -> None:
        self.assertEqual(require("python", sys.executable, environ={"CI": "true"}), sys.executable)

    def test_every_binary_names_its_package(self) -> None:
        for name in ("pebble", "pebble-challtestsrv", "unbound", "nginx", "redis-server", "chromium", "certbot"):
            with self.assertRaises(AssertionError) as caught:
                require(f"{name}", "/nonexistent", environ={"CI": "1", "PATH": "/nonexistent"})
            self.assertIn("Debian package", str(caught.exception))


class WaitForTests(SynchronousTestCase):
    def test_returns_the_value(self) -> None:
        values = iter([0, [], [1]])
        self.assertEqual(wait_for(lambda: next(values), 5, "a list", interval=0), [1])

    def test_deadline_names_what(self) -> None:
        with self.assertRaises(AssertionError) as caught:
            wait_for(lambda: False, 0, "godot")
        self.assertIn("godot", str(caught.exception))


class PortTests(SynchronousTestCase):
    def test_retried_on_address_in_use_only(self) -> None:
        calls: list[int] = []

        def start() -> int:
            calls.append(1)
            if len(calls) < 3:
                raise AddressInUse("taken")
            return len(calls)

        self.assertEqual(start_retrying(start, "x"), 3)

    def test_gives_up(self) -> None:
        def start() -> None:
            raise AddressInUse("taken")

        with self.assertRaises(AssertionError) as caught:
            start_retrying(start, "the thing", attempts=2)
        self.assertIn("the thing", str(caught.exception))

    def test_closed_port_refuses_and_stays_taken(self) -> None:
        port = closed_port(self)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as other, self.assertRaises(OSError):
            other.bind(("127.0.0.1", port))

    def test_exit_on_address_in_use_is_recognised(self) -> None:
        process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(1)"])
        process.wait()
        with self.assertRaises(AddressInUse):
            wait_listening(closed_port(self), process, lambda: "bind: Address already in use", timeout=5)
        with self.assertRaises(AssertionError):
            wait_listening(closed_port(self), process, lambda: "some other failure", timeout=5)

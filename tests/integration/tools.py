"""
What every integration test shares for finding binaries, waiting and ports:

  - L{require}: the path of a binary, or a skip — a failure when C{CI} is
    set, so that a CI run missing a binary never passes by skipping;
  - L{wait_for}: a condition, polled until a deadline (never a bare sleep);
  - L{start_retrying}: a start that picks its ports, retried with fresh ones
    when the port it chose was taken between the choice and the bind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from twisted.trial.unittest import SkipTest

T = TypeVar("T")

# The Debian package each binary the tests run comes from
# (scripts/install-system-deps installs them).
PACKAGES = {
    "pebble": "pebble",
    "pebble-challtestsrv": "pebble",
    "unbound": "unbound",
    "unbound-checkconf": "unbound",
    "nginx": "nginx-light",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools (with redis-server)",
    "chromium": "chromium",
    "certbot": "certbot (or pip install certbot in the venv)",
    "dig": "dnsutils",
    "openssl": "openssl",
    "promtool": "prometheus",
    "rsyslogd": "rsyslog",
    "systemd-analyze": "systemd",
    "named-checkzone": "bind9-utils",
}


def require(name: str, path: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """
    The binary C{name} (at C{path} if that exists, else on C{environ}'s
    C{PATH}).

    @raise SkipTest: it is missing and C{CI} is not set.
    @raise AssertionError: it is missing and C{CI} is set.
    """
    found = path if path and os.path.exists(path) else shutil.which(name, path=environ.get("PATH"))
    if found:
        return found
    message = f"{name} is not installed (Debian package {PACKAGES.get(name, name)}; run ./scripts/install-system-deps)"
    if environ.get("CI"):
        raise AssertionError(f"CI: {message}")
    raise SkipTest(message)


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """
    Poll C{condition} until it returns something true, and return that.

    @raise AssertionError: naming C{what}, if C{timeout} seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """
    A loopback port that is free for both TCP and UDP right now (DNS
    servers want both).  Another process may take it before the caller
    binds it: start the process with L{start_retrying}.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as o:
                    o.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for both TCP and UDP")


def closed_port(case: object) -> int:
    """
    A loopback TCP port where connections are refused, for as long as the
    test runs: a socket is bound to it (so nobody else can listen there)
    but never listens.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    case.addCleanup(s.close)  # type: ignore[attr-defined]
    return int(s.getsockname()[1])


class AddressInUse(Exception):
    """
    A process could not bind the port it was given.
    """


IN_USE = ("address already in use", "cannot listen on")


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Callable[[], str], timeout: float = 20) -> None:
    """
    Wait until C{process} listens on C{port}.

    @raise AddressInUse: the process exited because the port was taken.
    @raise AssertionError: it exited otherwise, or never listened.
    """

    def listening() -> bool:
        if process.poll() is not None:
            text = log()
            if any(marker in text.lower() for marker in IN_USE):
                raise AddressInUse(text[-2000:])
            raise AssertionError(f"process exited with {process.returncode} before listening on {port}:\n{text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(listening, timeout, f"a listener on 127.0.0.1:{port}")
    if process.poll() is not None:
        listening()


def start_retrying(start: Callable[[], T], what: str, attempts: int = 5) -> T:
    """
    Call C{start} (which chooses fresh ports each time) until it does not
    raise L{AddressInUse}, at most C{attempts} times.
    """
    for _ in range(attempts - 1):
        try:
            return start()
        except AddressInUse:
            continue
    try:
        return start()
    except AddressInUse as e:
        raise AssertionError(f"{what}: the port was taken {attempts} times in a row:\n{e}") from None

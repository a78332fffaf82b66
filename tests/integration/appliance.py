"""
Runs the real appliance (C{twistd -n acme-appliance}) and its CLI as
subprocesses for integration tests, on loopback ports.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .tools import AddressInUse, free_port, require, start_retrying, wait_listening

BIN = os.path.dirname(sys.executable)

LOCAL_CA = """
[[ca]]
name = "builtin"
kind = "local"
"""

POLICIES = """
[[policy]]
name = "shop"
primary_ca = "builtin"
validation = "none"
allowed_domains = ["example.com", "*.example.com"]

[[policy]]
name = "other"
primary_ca = "builtin"
validation = "none"
allowed_domains = ["other.org"]
"""


def require_binary(case: SynchronousTestCase, name: str, path: str | None = None) -> str:
    """
    L{require} for a test case (kept for the callers that pass one).
    """
    return require(name, path)


class Appliance:
    """
    One appliance process with its own config and state directory.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        *,
        policies: str | None = None,
        cas: str | None = None,
        extra: str | Callable[[], str] = "",
        nofile: int | None = None,
        storage: str = "sqlite:state.db",
    ) -> None:
        """
        @param extra: more configuration; a callable is asked again for
            each new choice of ports (it may choose ports of its own).
        @param nofile: The process's open-files limit (soft and hard), if
            not inherited.
        @param storage: The C{[storage] url}.
        """
        self.case = case
        self.dir = os.path.abspath(case.mktemp())
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "appliance.toml")
        self.log_path = os.path.join(self.dir, "twistd.log")
        self._policies, self._cas, self._extra = policies, cas, extra
        self._nofile = nofile
        self._storage = storage
        self._configure()
        self.tls_cert = os.path.join(self.dir, "tls.pem")
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False
        #: More twistd options, before the plugin name (e.g. C{--profile}).
        self.twistd_options: list[str] = []

    def _configure(self) -> None:
        """
        Choose fresh ports and write the configuration.
        """
        self.port = free_port()
        self.admin_port = free_port()
        self.base_url = f"https://127.0.0.1:{self.port}"
        extra = self._extra() if callable(self._extra) else self._extra
        with open(self.config, "w") as f:
            f.write(f"""
[acme]
listen = "ssl:{self.port}:interface=127.0.0.1:privateKey=tls.key:certKey=tls.pem"
base_url = "{self.base_url}"
self_signed_tls = true

[admin]
listen = "tcp:{self.admin_port}:interface=127.0.0.1"
api_key_file = "admin.key"

[storage]
url = "{self._storage}"
state_dir = "state"

{extra}

{LOCAL_CA if self._cas is None else self._cas}

{POLICIES if self._policies is None else self._policies}
""")

    def start(self) -> None:
        """
        Start the process.  The first start retries with fresh ports when
        one was taken meanwhile; a restart keeps the ports (URLs handed out
        name them).
        """
        if self._started:
            self.start_once()
            return

        def attempt() -> None:
            try:
                self.start_once()
            except AddressInUse:
                self._configure()
                raise

        start_retrying(attempt, "appliance")

    def start_once(self) -> None:
        """
        Start the process on the configured ports.

        @raise AddressInUse: one of them was taken.
        """
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                os.path.join(BIN, "twistd"),
                "-n",
                "--pidfile=",
                *self.twistd_options,
                "acme-appliance",
                "--config",
                self.config,
            ],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limit if self._nofile is not None else None,
        )
        log.close()
        self.case.addCleanup(self.stop)
        try:
            wait_listening(self.port, self.process, self.log)
            wait_listening(self.admin_port, self.process, self.log)
        except AddressInUse:
            self.stop()
            raise
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- appliance log ---\n{self.log()}") from None
        self._started = True

    def _limit(self) -> None:
        assert self._nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self._nofile, self._nofile))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [os.path.join(BIN, "acme-appliance"), *args, "--config", self.config],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"acme-appliance {' '.join(args)} failed: {result.stderr}")
        return result

    def directory(self, policy: str = "shop", *domains: str) -> str:
        args = ["token", "create", "--policy", policy]
        for d in domains:
            args += ["--domain", d]
        return self.cli(*args).stdout.strip().splitlines()[-1]

    def admin_key(self) -> str:
        with open(os.path.join(self.dir, "admin.key")) as f:
            return f.read().strip()

    def root_pem(self, ca: str = "builtin") -> str:
        return self.cli("ca", "root", ca).stdout

    def env(self) -> dict[str, Any]:
        return {**os.environ, "REQUESTS_CA_BUNDLE": self.tls_cert}

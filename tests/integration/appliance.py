"""
Runs the real appliance (C{twistd -n acme-appliance}) and its CLI as
subprocesses for integration tests, on loopback ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

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


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """
    A loopback port that is free for both TCP and UDP right now (DNS
    servers want both).  Another process may still take it before the
    caller binds it: callers that can, retry.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            try:
                with socket.socket(socket.AF_INET, other) as o:
                    o.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for both TCP and UDP")


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def require_binary(case: SynchronousTestCase, name: str, path: str | None = None) -> str:
    found = path if path and os.path.exists(path) else shutil.which(name)
    if not found:
        case.skipTest(f"{name} is not installed (run ./scripts/install-system-deps)")
    return found or ""


class Appliance:
    """
    One appliance process with its own config and state directory.
    """

    def __init__(
        self, case: SynchronousTestCase, *, policies: str | None = None, cas: str | None = None, extra: str = ""
    ) -> None:
        self.case = case
        self.dir = os.path.abspath(case.mktemp())
        os.makedirs(self.dir)
        self.port = free_port()
        self.admin_port = free_port()
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.config = os.path.join(self.dir, "appliance.toml")
        self.log_path = os.path.join(self.dir, "twistd.log")
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
url = "sqlite:state.db"
state_dir = "state"

{extra}

{LOCAL_CA if cas is None else cas}

{POLICIES if policies is None else policies}
""")
        self.tls_cert = os.path.join(self.dir, "tls.pem")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "acme-appliance", "--config", self.config],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.case.addCleanup(self.stop)
        try:
            wait_for_port(self.port, process=self.process)
        except RuntimeError as e:
            raise AssertionError(f"{e}\n--- appliance log ---\n{self.log()}") from None

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

    def root_pem(self, ca: str = "builtin") -> str:
        return self.cli("ca", "root", ca).stdout

    def env(self) -> dict[str, Any]:
        return {**os.environ, "REQUESTS_CA_BUNDLE": self.tls_cert}

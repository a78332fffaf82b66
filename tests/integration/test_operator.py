"""
What an operator meets first: the installed plugin and command, the CLI, and
start-up errors that are one line with a non-zero exit.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import requests
from twisted.trial.unittest import SynchronousTestCase

from .appliance import BIN, Appliance
from .tools import free_port, start_retrying, wait_for, wait_listening

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


class InstalledPackageTests(SynchronousTestCase):
    def test_plugin_found_from_installed_copy(self) -> None:
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        where = run(sys.executable, "-c", "import acme_appliance; print(acme_appliance.__file__)", cwd=outside)
        self.assertEqual(where.returncode, 0, where.stderr)
        if where.stdout.strip().startswith(os.path.join(REPO, "acme_appliance") + os.sep):
            self.skipTest(
                "acme_appliance is installed in editable mode here; `make test` installs it with `pip install .`"
            )
        help_text = run(os.path.join(BIN, "twistd"), "--help", cwd=outside)
        self.assertIn("acme-appliance", help_text.stdout)
        plugin = run(os.path.join(BIN, "twistd"), "acme-appliance", "--help", cwd=outside)
        self.assertIn("--config", plugin.stdout)
        command = run(os.path.join(BIN, "acme-appliance"), "--help", cwd=outside)
        self.assertEqual(command.returncode, 0)
        self.assertIn("token", command.stdout)


class CLITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.appliance = Appliance(self)

    def test_token_lifecycle(self) -> None:
        created = self.appliance.cli("token", "create", "--policy", "shop", "--domain", "WWW.example.com.")
        url = created.stdout.strip().splitlines()[-1]
        self.assertRegex(url, r"^https://127\.0\.0\.1:\d+/acme/[A-Za-z0-9_-]{32}/directory$")
        token_id = re.search(r"token (\w+)", created.stdout).group(1)  # type: ignore[union-attr]
        listed = self.appliance.cli("token", "list").stdout
        self.assertIn(token_id, listed)
        self.assertIn("www.example.com", listed)
        self.assertNotIn(url.split("/")[-2], listed)
        self.assertIn(f"revoked token {token_id}", self.appliance.cli("token", "revoke", token_id).stdout)
        again = self.appliance.cli("token", "revoke", token_id, check=False)
        self.assertEqual(again.returncode, 1)
        self.assertEqual(again.stderr.count("\n"), 1, again.stderr)
        self.assertIn("revoked", self.appliance.cli("token", "list").stdout)
        second = self.appliance.directory("shop").split("/")[-2]
        self.assertIn("revoked token", self.appliance.cli("token", "revoke", second).stdout)

    def test_token_revoked_while_running(self) -> None:
        self.appliance.start()
        url = self.appliance.directory("shop")
        self.assertEqual(requests.get(url, verify=self.appliance.tls_cert, timeout=10).status_code, 200)
        self.appliance.cli("token", "revoke", url.split("/")[-2])
        gone = requests.get(url, verify=self.appliance.tls_cert, timeout=10)
        self.assertEqual(gone.status_code, 404)
        self.assertEqual(gone.json()["type"], "urn:ietf:params:acme:error:malformed")
        self.assertNotIn(url.split("/")[-2], self.appliance.log())

    def test_errors_are_one_line(self) -> None:
        cases = [
            (("token", "create", "--policy", "nope"), 1, "no policy named 'nope'"),
            (("token", "create", "--policy", "shop", "--domain", "evil.org"), 1, "outside policy 'shop'"),
            (("token", "create", "--policy", "shop", "--domain", "bad..name"), 1, "--domain"),
            (("token", "revoke", "no-such-token"), 1, "no active token"),
            (("ca", "root", "nope"), 1, "no [[ca]] named 'nope'"),
            (("token", "frobnicate"), 2, "invalid choice"),
        ]
        for args, code, message in cases:
            result = self.appliance.cli(*args, check=False)
            self.assertEqual(result.returncode, code, (args, result.stderr))
            self.assertEqual(result.stderr.count("\n"), 1, (args, result.stderr))
            self.assertIn(message, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
        missing = run(os.path.join(BIN, "acme-appliance"), "token", "list")
        self.assertEqual(missing.returncode, 2)
        self.assertIn("--config", missing.stderr)
        bad_config = run(os.path.join(BIN, "acme-appliance"), "token", "list", "--config", "/nonexistent.toml")
        self.assertEqual((bad_config.returncode, bad_config.stderr.count("\n")), (1, 1), bad_config.stderr)
        self.assertIn("/nonexistent.toml", bad_config.stderr)

    def test_ca_root(self) -> None:
        pem = self.appliance.root_pem()
        self.assertTrue(pem.startswith("-----BEGIN CERTIFICATE-----"))
        self.assertEqual(pem, self.appliance.root_pem())


class StartupErrorTests(SynchronousTestCase):
    def twistd(self, config: str) -> subprocess.CompletedProcess[str]:
        return run(
            os.path.join(BIN, "twistd"),
            "-n",
            "--pidfile=",
            "acme-appliance",
            "--config",
            config,
            cwd=os.path.dirname(config),
        )

    def test_bad_config(self) -> None:
        appliance = Appliance(
            self,
            policies='[[policy]]\nname = "shop"\nprimary_ca = "le"\nvalidation = "none"\n'
            'allowed_domains = ["example.com"]\n',
        )
        result = self.twistd(appliance.config)
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertIn(appliance.config, result.stderr)
        self.assertIn('policy "shop".primary_ca', result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_port_in_use(self) -> None:
        appliance = Appliance(self)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", appliance.port))
            busy.listen()
            result = self.twistd(appliance.config)
        self.assertEqual(result.returncode, 1)
        # By then twistd's log (stdout with -n) has taken over stderr.
        self.assertIn(f"acme-appliance: cannot listen on 127.0.0.1:{appliance.port}: ", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)


class QuickStartConfigTests(SynchronousTestCase):
    def test_embedded_defaults_start(self) -> None:
        """
        etc/acme-appliance.toml (ports moved to free ones) starts, and its
        default policy issues through the built-in CA.
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        with open(os.path.join(REPO, "etc", "acme-appliance.toml")) as f:
            example = f.read()
        config = os.path.join(work, "acme-appliance.toml")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

        def start() -> dict[str, int]:
            ports = {p: free_port() for p in ("18443", "18081", "18080")}
            text = example
            for old, new in ports.items():
                text = text.replace(old, str(new))
            text = text.replace("dns_listen_port = 15353", f"dns_listen_port = {free_port()}")
            with open(config, "w") as f:
                f.write(text)
            log_path = os.path.join(work, "twistd.log")
            log = open(log_path, "wb")
            process = subprocess.Popen(
                [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "acme-appliance", "--config", config],
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            log.close()
            self.addCleanup(process.wait, 10)
            self.addCleanup(process.terminate)

            def read_log() -> str:
                with open(log_path, errors="replace") as f:
                    return f.read()

            wait_listening(ports["18443"], process, read_log)
            wait_listening(ports["18081"], process, read_log)
            return ports

        ports = start_retrying(start, "the quick-start appliance")

        def greeting() -> bool:
            with open(os.path.join(work, "twistd.log"), errors="replace") as f:
                return "token create --config" in f.read()

        # The greeting follows the listeners, once the store has been read.
        wait_for(greeting, 30, "the log line telling how to create a token")
        created = run(os.path.join(BIN, "acme-appliance"), "token", "create", "--config", config, "--policy", "default")
        url = created.stdout.strip().splitlines()[-1]
        tls = os.path.join(work, "var", "tls.pem")
        directory = requests.get(url, verify=tls, timeout=10)
        self.assertEqual(directory.status_code, 200)
        self.assertTrue(os.path.exists(os.path.join(work, "var", "admin.key")))
        self.assertEqual(os.stat(os.path.join(work, "var", "admin.key")).st_mode & 0o777, 0o600)
        health = requests.get(f"http://127.0.0.1:{ports['18081']}/health", timeout=10)
        self.assertEqual(health.status_code, 401)
        with open(os.path.join(work, "var", "admin.key")) as f:
            key = f.read().strip()
        health = requests.get(
            f"http://127.0.0.1:{ports['18081']}/health", timeout=10, headers={"Authorization": f"Bearer {key}"}
        )
        self.assertEqual(health.json()["status"], "ok")

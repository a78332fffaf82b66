"""
The running appliance keeps its secrets: the files holding keys are its
owner's only, and no spelling of a directory token or of the admin key in a
request reaches the log.
"""

from __future__ import annotations

import os
import stat

import requests
from twisted.trial.unittest import SynchronousTestCase

from .appliance import Appliance


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class SecretsAtRestTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        self.appliance = Appliance(self)
        self.appliance.start()

    def test_files_are_private(self) -> None:
        directory = self.appliance.directory("shop")
        response = requests.get(directory, verify=self.appliance.tls_cert, timeout=10)
        self.assertEqual(response.status_code, 200)
        self.appliance.stop()
        base = self.appliance.dir
        for name in ("state.db", "admin.key", "tls.key"):
            self.assertEqual(_mode(os.path.join(base, name)), 0o600, name)
        for name in ("state.db-wal", "state.db-shm"):
            path = os.path.join(base, name)
            if os.path.exists(path):
                self.assertEqual(_mode(path), 0o600, name)
        ca = os.path.join(base, "state", "ca")
        self.assertEqual(_mode(ca), 0o700)
        for root, _dirs, files in os.walk(ca):
            for name in files:
                if "key" in name:
                    self.assertEqual(_mode(os.path.join(root, name)), 0o600, name)

    def test_log_never_shows_token_or_key(self) -> None:
        directory = self.appliance.directory("shop")
        secret = directory.split("/")[-2]
        with open(os.path.join(self.appliance.dir, "admin.key")) as f:
            key = f.read().strip()
        base = self.appliance.base_url
        for path in (f"//acme/{secret}/directory", f"/%61cme/{secret}/directory", f"/acme/{secret}/directory"):
            response = requests.get(base + path, verify=self.appliance.tls_cert, timeout=10, allow_redirects=False)
            self.assertLess(response.status_code, 500, path)
        admin = f"http://127.0.0.1:{self.appliance.admin_port}"
        for query in (f"?%6bey={key}", f"?k%65y={key}", f"?key={key}"):
            response = requests.get(admin + "/" + query, timeout=10, allow_redirects=False)
            self.assertEqual(response.status_code, 302, query)
            self.assertNotIn(key, response.headers.get("set-cookie", ""))
        self.appliance.stop()
        log = self.appliance.log()
        self.assertIn("/acme/<token>/directory", log)
        self.assertNotIn(secret, log)
        self.assertNotIn(key, log)

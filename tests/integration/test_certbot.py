"""
certbot from PyPI against the real appliance (built-in CA): it never sees a
challenge, gets ECDSA and RSA certificates, renews (also when renewal
information, RFC 9773, says so) and revokes.
"""

from __future__ import annotations

import os
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.trial.unittest import SynchronousTestCase

from .appliance import BIN, Appliance, require_binary


class CertbotTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.certbot = require_binary(self, "certbot", os.path.join(BIN, "certbot"))
        self.openssl = require_binary(self, "openssl")
        self.appliance = Appliance(self)
        self.appliance.start()
        self.directory = self.appliance.directory("shop")
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        # certbot's manual plugin refuses --non-interactive without an auth
        # hook, so it gets one that records being called and fails: the
        # appliance must never make certbot solve a challenge.
        self.hook_called = os.path.join(self.work, "hook-called")
        self.hook = os.path.join(self.work, "auth-hook")
        with open(self.hook, "w") as f:
            f.write(f'#!/bin/sh\necho "$CERTBOT_DOMAIN" >> {self.hook_called}\nexit 1\n')
        os.chmod(self.hook, 0o755)

    def run_certbot(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                self.certbot,
                *args,
                "--non-interactive",
                "--config-dir",
                os.path.join(self.work, "config"),
                "--work-dir",
                os.path.join(self.work, "work"),
                "--logs-dir",
                os.path.join(self.work, "logs"),
            ],
            env=self.appliance.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def certonly(self, name: str, key_type: str, *domains: str) -> subprocess.CompletedProcess[str]:
        args = [
            "certonly",
            "--manual",
            "--manual-auth-hook",
            self.hook,
            "--agree-tos",
            "--register-unsafely-without-email",
            "--server",
            self.directory,
            "--cert-name",
            name,
            "--key-type",
            key_type,
        ]
        for d in domains:
            args += ["-d", d]
        return self.run_certbot(*args)

    def certbot_log(self) -> str:
        with open(os.path.join(self.work, "logs", "letsencrypt.log"), errors="replace") as f:
            return f.read()

    def live(self, name: str, what: str) -> str:
        return os.path.join(self.work, "config", "live", name, what)

    def verify_chain(self, name: str) -> x509.Certificate:
        root = os.path.join(self.work, "root.pem")
        with open(root, "w") as f:
            f.write(self.appliance.root_pem())
        result = subprocess.run(
            [
                self.openssl,
                "verify",
                "-CAfile",
                root,
                "-untrusted",
                self.live(name, "chain.pem"),
                self.live(name, "cert.pem"),
            ],
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(self.live(name, "cert.pem"), "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def sans(self, cert: x509.Certificate) -> list[str]:
        return sorted(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        )

    def test_ecdsa_and_rsa_renew_revoke(self) -> None:
        ecdsa = self.certonly("ec", "ecdsa", "example.com", "www.example.com")
        self.assertEqual(ecdsa.returncode, 0, ecdsa.stdout + ecdsa.stderr)
        cert = self.verify_chain("ec")
        self.assertEqual(self.sans(cert), ["example.com", "www.example.com"])
        self.assertIsInstance(cert.public_key(), ec.EllipticCurvePublicKey)

        result = self.certonly("rsa", "rsa", "example.com", "api.example.com")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        rsa_cert = self.verify_chain("rsa")
        self.assertEqual(self.sans(rsa_cert), ["api.example.com", "example.com"])
        self.assertIsInstance(rsa_cert.public_key(), rsa.RSAPublicKey)

        renewed = self.run_certbot("renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "ec")
        self.assertEqual(renewed.returncode, 0, renewed.stdout + renewed.stderr)
        new_cert = self.verify_chain("ec")
        self.assertNotEqual(new_cert.serial_number, cert.serial_number)

        revoked = self.run_certbot(
            "revoke", "--cert-name", "rsa", "--server", self.directory, "--no-delete-after-revoke"
        )
        self.assertEqual(revoked.returncode, 0, revoked.stdout + revoked.stderr)
        again = self.run_certbot("revoke", "--cert-name", "rsa", "--server", self.directory, "--no-delete-after-revoke")
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("already revoked", again.stdout + again.stderr)
        self.assertIn(":alreadyRevoked", self.certbot_log())
        self.assertNotIn("Traceback", self.appliance.log())
        self.assertFalse(os.path.exists(self.hook_called), "certbot was asked to solve a challenge")

    def test_renews_when_renewal_info_says(self) -> None:
        """
        certbot asks renewalInfo and renews the certificate whose window
        renew-now moved, and only that one.
        """
        for name, domain in (("moved", "example.com"), ("kept", "www.example.com")):
            result = self.certonly(name, "ecdsa", domain)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        before = {name: self.verify_chain(name).serial_number for name in ("moved", "kept")}
        self.assertIn("1 certificate(s)", self.appliance.cli("renew-now", "example.com").stdout)
        renewed = self.run_certbot("renew", "--no-random-sleep-on-renew")
        self.assertEqual(renewed.returncode, 0, renewed.stdout + renewed.stderr)
        self.assertIn("/renewal-info/", self.certbot_log())
        self.assertNotEqual(self.verify_chain("moved").serial_number, before["moved"])
        self.assertEqual(self.verify_chain("kept").serial_number, before["kept"])
        self.assertFalse(os.path.exists(self.hook_called), "certbot was asked to solve a challenge")

    def test_name_outside_token(self) -> None:
        result = self.certonly("evil", "ecdsa", "example.com", "evil.org")
        self.assertNotEqual(result.returncode, 0)
        # certbot prints the problem's detail; its log has the whole document.
        self.assertIn("does not allow evil.org", result.stdout + result.stderr)
        self.assertIn("urn:ietf:params:acme:error:rejectedIdentifier", self.certbot_log())

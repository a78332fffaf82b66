"""
Tests for L{acme_appliance.tls.ensure_self_signed}.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import subprocess
import time
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.tls import TLSSetupError, ensure_self_signed


def real_clock() -> Clock:
    # The handshake tests check validity against the wall clock, so the
    # generated certificate must be current.
    clock = Clock()
    clock.advance(time.time())
    return clock


def handshake(cert_path: str, key_path: str, server_hostname: str) -> None:
    """
    Run a TLS handshake in memory: a server with the generated pair and a
    default (verifying) client that trusts only the certificate file.

    @raise ssl.SSLCertVerificationError: the client does not accept it.
    """
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    client_context = ssl.create_default_context(cafile=cert_path)
    # Python 3.13 turns this on by default; the certificate must pass it.
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT

    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


class EnsureSelfSignedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.cert_path = os.path.join(self.directory, "tls.pem")
        self.key_path = os.path.join(self.directory, "tls.key")

    def generate(self, hostnames: list[str] | None = None, clock: Clock | None = None) -> bool:
        return ensure_self_signed(
            self.cert_path,
            self.key_path,
            hostnames if hostnames is not None else ["acme.test", "localhost", "127.0.0.1", "::1"],
            clock=clock or real_clock(),
        )

    def load(self) -> x509.Certificate:
        with open(self.cert_path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def test_creates(self) -> None:
        """
        The first call creates a P-256 certificate for the hostnames, valid
        for about two years, a CA so that the file can be a trust anchor, and
        a key only the owner can read.
        """
        clock = real_clock()
        self.assertTrue(self.generate(clock=clock))
        self.assertEqual(stat.S_IMODE(os.stat(self.key_path).st_mode), 0o600)
        certificate = self.load()
        with open(self.key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(key.curve.name, "secp256r1")
        self.assertEqual(
            certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        certificate.verify_directly_issued_by(certificate)

        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["acme.test", "localhost"])
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        )
        self.assertEqual(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "acme.test")
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertTrue(constraints.value.ca)
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        self.assertApproximates(lifetime.days / 365.25, 2, 0.1)
        self.assertEqual(certificate.not_valid_before_utc.timestamp(), int(clock.seconds()) - 3600)
        # No temporary files are left behind.
        self.assertEqual(sorted(os.listdir(self.directory)), ["tls.key", "tls.pem"])

    def test_time_from_clock(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000)
        self.generate(clock=clock)
        certificate = self.load()
        self.assertEqual(certificate.not_valid_before_utc.timestamp(), 1_800_000_000 - 3600)
        self.assertEqual(
            certificate.not_valid_after_utc - certificate.not_valid_before_utc, timedelta(days=730, hours=1)
        )

    def test_existing_pair_untouched(self) -> None:
        self.generate()
        with open(self.cert_path, "rb") as f:
            before = f.read()
        self.assertFalse(self.generate(["other.test"]))
        with open(self.cert_path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_only_certificate(self) -> None:
        self.generate()
        os.unlink(self.key_path)
        error = self.assertRaises(TLSSetupError, self.generate)
        self.assertIn(f"{self.cert_path} exists but {self.key_path} does not", str(error))
        self.assertFalse(os.path.exists(self.key_path))

    def test_only_key(self) -> None:
        self.generate()
        os.unlink(self.cert_path)
        error = self.assertRaises(TLSSetupError, self.generate)
        self.assertIn(f"{self.key_path} exists but {self.cert_path} does not", str(error))

    def test_one_file(self) -> None:
        """
        When the certificate and key paths are the same, the one file holds
        both, readable only by the owner.
        """
        self.key_path = self.cert_path
        self.assertTrue(self.generate())
        self.assertEqual(stat.S_IMODE(os.stat(self.cert_path).st_mode), 0o600)
        with open(self.cert_path, "rb") as f:
            data = f.read()
        self.assertIn(b"-----BEGIN PRIVATE KEY-----", data)
        self.load()
        handshake(self.cert_path, self.cert_path, "acme.test")
        self.assertEqual(os.listdir(self.directory), ["tls.pem"])
        self.assertFalse(self.generate())

    def test_no_hostnames(self) -> None:
        self.assertRaises(TLSSetupError, self.generate, [])
        self.assertFalse(os.path.exists(self.cert_path))

    def test_bad_hostname(self) -> None:
        error = self.assertRaises(TLSSetupError, self.generate, ["acme.test", "a..b"])
        self.assertIn("'a..b' is not a valid hostname", str(error))
        self.assertFalse(os.path.exists(self.key_path))

    def test_duplicates_and_idn(self) -> None:
        """
        Repeated names appear once; a Unicode name is stored as its A-label.
        """
        self.generate(["localhost", "LocalHost.", "bücher.test", "127.0.0.1", "127.0.0.1"])
        san = self.load().extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost", "xn--bcher-kva.test"])
        self.assertEqual(san.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("127.0.0.1")])

    def test_unwritable(self) -> None:
        """
        A directory that cannot be made is reported as L{TLSSetupError}.
        """
        with open(self.directory, "w") as f:
            f.write("a file where the directory should be")
        error = self.assertRaises(TLSSetupError, self.generate)
        self.assertIn("cannot write the self-signed certificate", str(error))

    def test_key_mode_from_creation(self) -> None:
        """
        The key is never written to a file that others could read.
        """
        modes: list[int] = []
        real_fchmod = os.fchmod

        def recording_fchmod(fd: int, mode: int) -> None:
            modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
            real_fchmod(fd, mode)

        self.patch(os, "fchmod", recording_fchmod)
        self.generate()
        # mkstemp creates files 0600; the key keeps that mode.
        self.assertEqual(modes[0], 0o600)

    def test_python_client_trusts_file(self) -> None:
        """
        A default Python client given the certificate file as its CA file
        verifies the server by DNS name and by IP address, and still refuses
        names that are not in it.
        """
        self.generate()
        handshake(self.cert_path, self.key_path, "acme.test")
        handshake(self.cert_path, self.key_path, "127.0.0.1")
        handshake(self.cert_path, self.key_path, "::1")
        self.assertRaises(ssl.SSLCertVerificationError, handshake, self.cert_path, self.key_path, "other.test")

    def test_openssl_verify(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000)
        self.generate(clock=clock)
        result = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-attime", "1800000000",
             "-CAfile", self.cert_path, self.cert_path],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr.decode() + result.stdout.decode())
        self.assertIn(b": OK", result.stdout)

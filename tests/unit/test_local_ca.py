"""
Tests for L{acme_appliance.ca.local}: creating and loading the built-in CA's
files, issuing leaves and accepting revocations.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, CertificateAuthority, IssuedCertificate, IssueRequest, local
from acme_appliance.ca.local import CA_FILES, LocalCA, LocalCAError
from acme_appliance.core import ProblemType

NOW = 1_800_000_000  # 2027-01-15


def clock_at(seconds: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def csr_for(names: list[str], key: Any = None, cn: str | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def split_chain(chain_pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(chain_pem)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class LocalCATestsMixin:
    def make_ca(self, directory: str | None = None, **kw: Any) -> tuple[LocalCA, str]:
        directory = directory or os.path.join(self.mktemp(), "ca", "builtin")  # type: ignore[attr-defined]
        kw.setdefault("clock", clock_at())
        return LocalCA.load_or_create("builtin", directory, **kw), directory

    def issue(self, ca: LocalCA, names: list[str], csr: bytes | None = None) -> IssuedCertificate:
        deferred = Deferred.fromCoroutine(ca.issue(IssueRequest(csr or csr_for(names), tuple(names), "order-1")))
        return self.successResultOf(deferred)  # type: ignore[attr-defined]


class CreateTests(LocalCATestsMixin, SynchronousTestCase):
    """
    L{LocalCA.load_or_create} on a directory without a CA.
    """

    def test_files_and_modes(self) -> None:
        """
        The four files are created in a directory only the owner can enter,
        and the keys only the owner can read.
        """
        _, directory = self.make_ca()
        self.assertEqual(sorted(os.listdir(directory)), sorted(CA_FILES))
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        for key in ("root.key", "intermediate.key"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, key)).st_mode), 0o600)
        # No staging directories are left next to it.
        self.assertEqual(os.listdir(os.path.dirname(directory)), ["builtin"])

    def test_key_written_without_world_readable_window(self) -> None:
        """
        Keys are created with mode 0600 in the same call that creates them.
        """
        calls: list[tuple[str, int, int]] = []
        real_open = os.open

        def recording_open(path: str, flags: int, mode: int = 0o777, *a: Any, **kw: Any) -> int:
            calls.append((os.path.basename(path), flags, mode))
            return real_open(path, flags, mode, *a, **kw)

        self.patch(os, "open", recording_open)
        self.make_ca()
        keys = [c for c in calls if c[0].endswith(".key")]
        self.assertEqual(len(keys), 2)
        for _, flags, mode in keys:
            self.assertTrue(flags & os.O_EXCL)
            self.assertTrue(flags & os.O_CREAT)
            self.assertEqual(mode, 0o600)

    def test_root_and_intermediate(self) -> None:
        """
        The root is a P-384 CA named after the CA, valid for about ten years;
        the intermediate a P-256 CA with pathlen 0 issued by the root, valid
        for about five.
        """
        ca, directory = self.make_ca()
        root = x509.load_pem_x509_certificate(ca.root_pem())
        with open(os.path.join(directory, "root.pem"), "rb") as f:
            self.assertEqual(f.read(), ca.root_pem())
        with open(os.path.join(directory, "intermediate.pem"), "rb") as f:
            intermediate = x509.load_pem_x509_certificate(f.read())

        self.assertEqual(
            root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "acme-appliance builtin Root"
        )
        self.assertEqual(root.issuer, root.subject)
        root_key = root.public_key()
        assert isinstance(root_key, ec.EllipticCurvePublicKey)
        self.assertEqual(root_key.curve.name, "secp384r1")
        root.verify_directly_issued_by(root)
        self.assertTrue(root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertApproximates((root.not_valid_after_utc - utc(NOW)).days / 365.25, 10, 0.1)

        intermediate_key = intermediate.public_key()
        assert isinstance(intermediate_key, ec.EllipticCurvePublicKey)
        self.assertEqual(intermediate_key.curve.name, "secp256r1")
        intermediate.verify_directly_issued_by(root)
        constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertEqual((constraints.value.ca, constraints.value.path_length), (True, 0))
        usage = intermediate.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.key_cert_sign)
        self.assertApproximates((intermediate.not_valid_after_utc - utc(NOW)).days / 365.25, 5, 0.1)

    def test_long_name(self) -> None:
        """
        A CA name too long for a common name is shortened, not refused.
        """
        ca = LocalCA.load_or_create("x" * 100, self.mktemp(), clock=clock_at())
        cn = x509.load_pem_x509_certificate(ca.root_pem()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertLessEqual(len(str(cn[0].value)), 64)
        self.assertTrue(str(cn[0].value).endswith(" Root"))

    def test_existing_empty_directory(self) -> None:
        """
        An empty directory (made by the operator) is filled and left at 0700.
        """
        directory = self.mktemp()
        os.makedirs(directory, mode=0o755)
        self.make_ca(directory)
        self.assertEqual(sorted(os.listdir(directory)), sorted(CA_FILES))
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)

    def test_directory_with_other_files(self) -> None:
        """
        A non-empty directory without CA files is not overwritten.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "notes.txt"), "w") as f:
            f.write("mine")
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn("missing root.pem, root.key, intermediate.pem, intermediate.key", str(error))
        self.assertEqual(os.listdir(directory), ["notes.txt"])

    def test_unwritable_parent(self) -> None:
        """
        A directory that cannot be created gives a L{LocalCAError}.
        """
        blocker = self.mktemp()
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        error = self.assertRaises(LocalCAError, self.make_ca, os.path.join(blocker, "ca"))
        self.assertIn("cannot create the local CA", str(error))

    def test_race_loser_loads_winner(self) -> None:
        """
        When another process finishes creating the CA while this one is
        generating keys, this one loads the other's CA and discards its own.
        """
        directory = os.path.join(self.mktemp(), "ca")
        real_create_certificate = local._ca_certificate
        winner: list[LocalCA] = []

        def racing(**kw: Any) -> x509.Certificate:
            if not winner:
                self.patch(local, "_ca_certificate", real_create_certificate)
                winner.append(LocalCA.load_or_create("builtin", directory, clock=clock_at()))
            return real_create_certificate(**kw)

        self.patch(local, "_ca_certificate", racing)
        loser = LocalCA.load_or_create("builtin", directory, clock=clock_at())
        self.assertEqual(len(winner), 1)
        self.assertEqual(loser.root_pem(), winner[0].root_pem())
        self.assertEqual(sorted(os.listdir(directory)), sorted(CA_FILES))
        self.assertEqual(os.listdir(os.path.dirname(directory)), ["ca"])

    def test_concurrent_processes(self) -> None:
        """
        Several processes creating the same CA at once all end up with the
        same root.
        """
        directory = os.path.abspath(os.path.join(self.mktemp(), "ca"))
        script = (
            "import sys, hashlib\n"
            "from twisted.internet.task import Clock\n"
            "from acme_appliance.ca.local import LocalCA\n"
            "ca = LocalCA.load_or_create('builtin', sys.argv[1], clock=Clock())\n"
            "print(hashlib.sha256(ca.root_pem()).hexdigest())\n"
        )
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, directory],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=here,
                env=env,
            )
            for _ in range(6)
        ]
        outputs = [p.communicate(timeout=60) for p in processes]
        for process, (_, err) in zip(processes, outputs):
            self.assertEqual(process.returncode, 0, err.decode())
        self.assertEqual(len({out for out, _ in outputs}), 1)
        self.assertEqual(sorted(os.listdir(directory)), sorted(CA_FILES))


class LoadTests(LocalCATestsMixin, SynchronousTestCase):
    """
    L{LocalCA.load_or_create} on a directory that already has a CA.
    """

    def test_loads_existing(self) -> None:
        """
        The second call loads the first call's CA, and issues under it.
        """
        first, directory = self.make_ca()
        second, _ = self.make_ca(directory)
        self.assertEqual(first.root_pem(), second.root_pem())
        leaf, intermediate = split_chain(self.issue(second, ["example.com"]).chain_pem)
        intermediate.verify_directly_issued_by(x509.load_pem_x509_certificate(first.root_pem()))

    def test_partial(self) -> None:
        """
        A directory with some of the files names the missing ones.
        """
        _, directory = self.make_ca()
        os.unlink(os.path.join(directory, "intermediate.key"))
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn("missing intermediate.key", str(error))
        self.assertIn(directory, str(error))
        # Nothing was generated over the remaining files.
        self.assertNotIn("intermediate.key", os.listdir(directory))

    def test_unparseable_certificate(self) -> None:
        _, directory = self.make_ca()
        with open(os.path.join(directory, "root.pem"), "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n")
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn(os.path.join(directory, "root.pem"), str(error))
        self.assertIn("not a PEM certificate", str(error))

    def test_unparseable_key(self) -> None:
        _, directory = self.make_ca()
        with open(os.path.join(directory, "intermediate.key"), "wb") as f:
            f.write(b"garbage")
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn(os.path.join(directory, "intermediate.key"), str(error))
        self.assertIn("not a PEM private key", str(error))

    def test_encrypted_key(self) -> None:
        _, directory = self.make_ca()
        path = os.path.join(directory, "root.key")
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        with open(path, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            )
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn("root.key: the key is encrypted", str(error))

    def test_mismatched_key(self) -> None:
        """
        A key that does not belong to its certificate is named.
        """
        _, directory = self.make_ca()
        _, other = self.make_ca()
        shutil.copy(os.path.join(other, "intermediate.key"), os.path.join(directory, "intermediate.key"))
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn(os.path.join(directory, "intermediate.key"), str(error))
        self.assertIn("does not match the certificate in intermediate.pem", str(error))

    def test_intermediate_from_another_root(self) -> None:
        """
        An intermediate and key from another CA, matching each other but not
        the root, are refused.
        """
        _, directory = self.make_ca()
        _, other = self.make_ca()
        for name in ("intermediate.pem", "intermediate.key"):
            shutil.copy(os.path.join(other, name), os.path.join(directory, name))
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn("intermediate.pem: not issued by the root in root.pem", str(error))

    def test_unreadable(self) -> None:
        """
        A file that cannot be read is named.
        """
        _, directory = self.make_ca()
        path = os.path.join(directory, "root.pem")
        os.unlink(path)
        os.mkdir(path)
        error = self.assertRaises(LocalCAError, self.make_ca, directory)
        self.assertIn(f"{path}: cannot read", str(error))

    def test_readable_key_warns(self) -> None:
        """
        A key others can read is loaded, with a warning naming it.
        """
        _, directory = self.make_ca()
        path = os.path.join(directory, "intermediate.key")
        os.chmod(path, 0o644)
        with capturedLogs() as events:
            self.make_ca(directory)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], os.path.abspath(path))
        self.assertIn("mode 0600", formatEvent(warnings[0]))

    def test_bad_settings(self) -> None:
        _, directory = self.make_ca()
        self.assertRaises(LocalCAError, self.make_ca, directory, validity_days=0)
        self.assertRaises(LocalCAError, self.make_ca, directory, issue_delay=-1)


class IssueTests(LocalCATestsMixin, SynchronousTestCase):
    """
    L{LocalCA.issue}.
    """

    def test_protocol(self) -> None:
        ca, _ = self.make_ca()
        self.assertIsInstance(ca, CertificateAuthority)
        self.assertEqual(ca.name, "builtin")

    def test_chain_verifies(self) -> None:
        """
        The chain is the leaf then the intermediate, and verifies up to the
        root.
        """
        ca, _ = self.make_ca()
        issued = self.issue(ca, ["example.com", "*.example.com"])
        self.assertEqual(issued.ca_name, "builtin")
        self.assertTrue(issued.chain_pem.startswith(b"-----BEGIN CERTIFICATE-----"))
        leaf, intermediate = split_chain(issued.chain_pem)
        root = x509.load_pem_x509_certificate(ca.root_pem())
        leaf.verify_directly_issued_by(intermediate)
        intermediate.verify_directly_issued_by(root)

    def test_openssl_verify(self) -> None:
        """
        C{openssl verify} accepts the chain for TLS server use.
        """
        ca, directory = self.make_ca()
        issued = self.issue(ca, ["example.com", "www.example.com"])
        leaf, intermediate = split_chain(issued.chain_pem)
        leaf_path = self.mktemp()
        with open(leaf_path, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        command = [
            "openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-attime", str(NOW),
            "-CAfile", os.path.join(directory, "root.pem"),
            "-untrusted", os.path.join(directory, "intermediate.pem"),
        ]  # fmt: skip
        result = subprocess.run([*command, leaf_path], capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr.decode() + result.stdout.decode())
        self.assertIn(b": OK", result.stdout)
        # And it really checks: without the intermediate the chain is broken.
        command.remove("-untrusted")
        command.remove(os.path.join(directory, "intermediate.pem"))
        result = subprocess.run([*command, leaf_path], capture_output=True, timeout=30)
        self.assertNotEqual(result.returncode, 0)

    def test_leaf_fields(self) -> None:
        """
        The leaf names the order's names, carries the CSR's key and the
        usual TLS server extensions, and is valid from an hour ago for
        C{validity_days}.
        """
        ca, _ = self.make_ca(validity_days=30)
        key = ec.generate_private_key(ec.SECP256R1())
        names = ["example.com", "www.example.com"]
        leaf, intermediate = split_chain(self.issue(ca, names, csr_for(names, key, cn="ignored.example")).chain_pem)

        self.assertEqual(leaf.subject, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")]))
        self.assertEqual(leaf.issuer, intermediate.subject)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertFalse(san.critical)
        self.assertEqual(san.value.get_values_for_type(x509.DNSName), names)
        self.assertEqual(
            leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        self.assertGreater(leaf.serial_number, 0)
        self.assertLess(leaf.serial_number.bit_length(), 160)
        self.assertEqual(leaf.not_valid_before_utc, utc(NOW) - timedelta(hours=1))
        self.assertEqual(leaf.not_valid_after_utc, utc(NOW) + timedelta(days=30))

        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertFalse(constraints.value.ca)
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertTrue(usage.value.digital_signature)
        self.assertFalse(usage.value.key_encipherment)
        self.assertFalse(usage.value.key_cert_sign)
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(ski, x509.SubjectKeyIdentifier.from_public_key(key.public_key()))
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        intermediate_ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(aki.key_identifier, intermediate_ski.digest)

    def test_leaf_handed_over(self) -> None:
        """
        The issued certificate carries the leaf it built, the first
        certificate of its chain: nobody needs to parse the PEM again.
        """
        ca, _ = self.make_ca()
        issued = self.issue(ca, ["example.com"])
        assert issued.leaf is not None
        self.assertEqual(issued.leaf, split_chain(issued.chain_pem)[0])

    def test_serials_differ(self) -> None:
        ca, _ = self.make_ca()
        serials = {split_chain(self.issue(ca, ["example.com"]).chain_pem)[0].serial_number for _ in range(5)}
        self.assertEqual(len(serials), 5)

    def test_rsa_key_encipherment(self) -> None:
        """
        An RSA leaf may also be used for key encipherment.
        """
        ca, _ = self.make_ca()
        csr = csr_for(["example.com"], rsa.generate_private_key(65537, 2048))
        leaf, _ = split_chain(self.issue(ca, ["example.com"], csr).chain_pem)
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertTrue(usage.key_encipherment)

    def test_long_first_name(self) -> None:
        """
        A first name too long for a common name gives an empty subject and
        a critical SAN (RFC 5280 section 4.2.1.6).
        """
        ca, _ = self.make_ca()
        long_name = ".".join(["a" * 30] * 3) + ".example.com"
        leaf, _ = split_chain(self.issue(ca, [long_name, "example.com"]).chain_pem)
        self.assertEqual(leaf.subject, x509.Name([]))
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertTrue(san.critical)
        self.assertEqual(san.value.get_values_for_type(x509.DNSName), [long_name, "example.com"])

    def test_time_from_clock(self) -> None:
        """
        Validity follows the injected clock, not the wall clock.
        """
        clock = clock_at()
        ca, _ = self.make_ca(clock=clock)
        clock.advance(86400 * 100)
        leaf, _ = split_chain(self.issue(ca, ["example.com"]).chain_pem)
        self.assertEqual(leaf.not_valid_before_utc, utc(NOW + 86400 * 100) - timedelta(hours=1))

    def test_capped_at_intermediate_expiry(self) -> None:
        """
        Near the end of the intermediate's life, leaves end with it; after
        it, issuing fails with a transient error.
        """
        clock = clock_at()
        ca, directory = self.make_ca(clock=clock)
        with open(os.path.join(directory, "intermediate.pem"), "rb") as f:
            expires = x509.load_pem_x509_certificate(f.read()).not_valid_after_utc
        clock.advance(expires.timestamp() - clock.seconds() - 10 * 86400)
        leaf, _ = split_chain(self.issue(ca, ["example.com"]).chain_pem)
        self.assertEqual(leaf.not_valid_after_utc, expires)

        clock.advance(20 * 86400)
        failure = self.failureResultOf(
            Deferred.fromCoroutine(ca.issue(IssueRequest(csr_for(["example.com"]), ("example.com",), "o"))), CAError
        )
        self.assertTrue(failure.value.transient)
        self.assertIn("expired", failure.value.detail)

    def test_issue_delay(self) -> None:
        """
        With C{issue_delay}, nothing is issued until the clock has moved on
        that far.
        """
        clock = clock_at()
        ca, _ = self.make_ca(clock=clock, issue_delay=5.0)
        deferred = Deferred.fromCoroutine(ca.issue(IssueRequest(csr_for(["example.com"]), ("example.com",), "o")))
        self.assertNoResult(deferred)
        clock.advance(4.9)
        self.assertNoResult(deferred)
        clock.advance(0.1)
        leaf, _ = split_chain(self.successResultOf(deferred).chain_pem)
        self.assertEqual(leaf.not_valid_before_utc, utc(NOW + 5) - timedelta(hours=1))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_bad_csr(self) -> None:
        """
        A CSR that does not parse fails with a permanent C{badCSR}.
        """
        ca, _ = self.make_ca()
        deferred = Deferred.fromCoroutine(ca.issue(IssueRequest(b"junk", ("example.com",), "o")))
        error = self.failureResultOf(deferred, CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.BAD_CSR)

    def test_no_names(self) -> None:
        ca, _ = self.make_ca()
        deferred = Deferred.fromCoroutine(ca.issue(IssueRequest(csr_for(["example.com"]), (), "o")))
        self.assertFalse(self.failureResultOf(deferred, CAError).value.transient)

    def test_unencodable_name(self) -> None:
        ca, _ = self.make_ca()
        deferred = Deferred.fromCoroutine(ca.issue(IssueRequest(csr_for(["example.com"]), ("bücher.example",), "o")))
        error = self.failureResultOf(deferred, CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.REJECTED_IDENTIFIER)


class RevokeTests(LocalCATestsMixin, SynchronousTestCase):
    """
    L{LocalCA.revoke}.
    """

    def leaf_der(self, ca: LocalCA) -> bytes:
        leaf, _ = split_chain(self.issue(ca, ["example.com"]).chain_pem)
        return leaf.public_bytes(serialization.Encoding.DER)

    def test_own_certificate(self) -> None:
        ca, _ = self.make_ca()
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(ca.revoke(self.leaf_der(ca), 1))))
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(ca.revoke(self.leaf_der(ca), None))))

    def test_other_ca(self) -> None:
        """
        A certificate from another CA, even one with the same names, is
        refused as unauthorized.
        """
        ca, _ = self.make_ca()
        other, _ = self.make_ca()
        deferred = Deferred.fromCoroutine(ca.revoke(self.leaf_der(other), None))
        error = self.failureResultOf(deferred, CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.UNAUTHORIZED)
        self.assertIn("not issued by local CA 'builtin'", error.detail)

    def test_not_a_certificate(self) -> None:
        ca, _ = self.make_ca()
        error = self.failureResultOf(Deferred.fromCoroutine(ca.revoke(b"junk", None)), CAError).value
        self.assertFalse(error.transient)
        self.assertEqual(error.problem_type, ProblemType.MALFORMED)

"""
Tests for L{acme_appliance.orders._csr}: the finalize-time CSR checks.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import AcmeProblem, ProblemType
from acme_appliance.orders import KeyRules, check_csr, check_key, csr_names
from acme_appliance.policy import KeyType

P256 = ec.generate_private_key(ec.SECP256R1())
ACCOUNT = ec.generate_private_key(ec.SECP256R1())
RSA_2048 = rsa.generate_private_key(65537, 2048)
MUTABLE_CSR = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")]))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.com"), x509.DNSName("www.example.com")]), False)
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .sign(P256, hashes.SHA256())
    .public_bytes(serialization.Encoding.DER)
)
BOTH = KeyRules(key_types=frozenset({KeyType.RSA, KeyType.ECDSA}))


def build_csr(
    names: list[str] | None = None,
    *,
    cn: str | None = None,
    key: Any = P256,
    others: list[x509.GeneralName] | None = None,
    algorithm: Any = "default",
) -> bytes:
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names or []] + (others or [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if algorithm == "default":
        algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


class CheckCSRTests(SynchronousTestCase):
    """
    L{check_csr}.
    """

    def check(self, der: bytes, order_names: list[str], *, rules: KeyRules = BOTH, account: Any = ACCOUNT) -> Any:
        return check_csr(
            der,
            order_names=order_names,
            account_key=account.public_key() if account is not None else None,
            key_rules=rules,
        )

    def assertBadCSR(self, der: bytes, order_names: list[str], *details: str, **kw: Any) -> str:
        problem = self.assertRaises(AcmeProblem, self.check, der, order_names, **kw)
        self.assertEqual(problem.type, ProblemType.BAD_CSR)
        self.assertEqual(problem.status, 400)
        for detail in details:
            self.assertIn(detail, problem.detail)
        return problem.detail

    def test_good(self) -> None:
        """
        A CSR naming exactly the order's names is returned parsed.
        """
        der = build_csr(["example.com", "www.example.com"], cn="example.com")
        csr = self.check(der, ["www.example.com", "example.com"])
        self.assertIsInstance(csr, x509.CertificateSigningRequest)
        self.assertEqual(csr.public_bytes(serialization.Encoding.DER), der)

    def test_case_and_trailing_dot(self) -> None:
        der = build_csr(["Example.COM.", "*.example.com"], cn="EXAMPLE.com")
        self.check(der, ["example.com", "*.Example.com."])

    def test_cn_only(self) -> None:
        """
        The common name counts as a requested name, even without a SAN.
        """
        self.check(build_csr(cn="example.com"), ["example.com"])

    def test_cn_not_in_san_but_in_order(self) -> None:
        self.check(build_csr(["www.example.com"], cn="example.com"), ["example.com", "www.example.com"])

    def test_no_account_key(self) -> None:
        self.check(build_csr(["example.com"]), ["example.com"], account=None)

    def test_rsa_and_p384(self) -> None:
        self.check(build_csr(["example.com"], key=RSA_2048), ["example.com"])
        self.check(build_csr(["example.com"], key=ec.generate_private_key(ec.SECP384R1())), ["example.com"])

    # undecodable

    def test_garbage(self) -> None:
        for junk in (b"", b"not a csr", b"\x30\x03\x02\x01\x00"):
            self.assertBadCSR(junk, ["example.com"], "not a DER-encoded PKCS#10 request")

    def test_pem_instead_of_der(self) -> None:
        pem = x509.load_der_x509_csr(build_csr(["example.com"])).public_bytes(serialization.Encoding.PEM)
        self.assertBadCSR(pem, ["example.com"], "not a DER-encoded PKCS#10 request")

    def test_truncated(self) -> None:
        der = build_csr(["example.com"])
        self.assertBadCSR(der[:-10], ["example.com"], "not a DER-encoded PKCS#10 request")

    def test_bad_version(self) -> None:
        der = build_csr(["example.com"])
        at = der.index(b"\x02\x01\x00")
        self.assertBadCSR(der[:at] + b"\x02\x01\x05" + der[at + 3 :], ["example.com"], "not a valid CSR version")

    @given(st.binary(max_size=300))
    @settings(max_examples=200)
    def test_random_bytes(self, data: bytes) -> None:
        """
        Any bytes give either a parsed request or C{badCSR}, never another
        exception.
        """
        try:
            self.check(data, ["example.com"])
        except AcmeProblem as problem:
            self.assertEqual(problem.type, ProblemType.BAD_CSR)

    @given(st.data())
    @settings(max_examples=300, deadline=None)
    def test_mutated(self, data: st.DataObject) -> None:
        """
        A valid CSR with a byte changed gives a parsed request or C{badCSR},
        never another exception.
        """
        der = bytearray(MUTABLE_CSR)
        for _ in range(data.draw(st.integers(1, 3))):
            der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
        try:
            self.check(bytes(der), ["example.com", "www.example.com"])
        except AcmeProblem as problem:
            self.assertEqual(problem.type, ProblemType.BAD_CSR)

    # signature

    def test_bad_signature(self) -> None:
        """
        A CSR whose signature does not verify is refused.
        """
        der = bytearray(build_csr(["example.com"], key=RSA_2048))
        der[-1] ^= 0x01
        self.assertBadCSR(bytes(der), ["example.com"], "signature is not valid")

    # names

    def test_extra_name(self) -> None:
        detail = self.assertBadCSR(
            build_csr(["example.com", "www.example.com"]), ["example.com"], "not in the order: www.example.com"
        )
        self.assertNotIn("missing", detail)

    def test_missing_name(self) -> None:
        detail = self.assertBadCSR(
            build_csr(["example.com"]), ["example.com", "b.example.com", "a.example.com"],
            "missing from the CSR: a.example.com, b.example.com",
        )  # fmt: skip
        self.assertNotIn("not in the order", detail)

    def test_extra_and_missing(self) -> None:
        self.assertBadCSR(
            build_csr(["example.com", "evil.example"]), ["example.com", "www.example.com"],
            "not in the order: evil.example", "missing from the CSR: www.example.com",
        )  # fmt: skip

    def test_cn_not_in_order(self) -> None:
        """
        A common name outside the order is an extra name, even when the SAN
        is right.
        """
        self.assertBadCSR(
            build_csr(["example.com"], cn="other.example"), ["example.com"], "not in the order: other.example"
        )

    def test_no_names(self) -> None:
        self.assertBadCSR(build_csr(), ["example.com"], "missing from the CSR: example.com")

    def test_wildcard_is_its_own_name(self) -> None:
        self.assertBadCSR(
            build_csr(["example.com"]), ["*.example.com"],
            "not in the order: example.com", "missing from the CSR: *.example.com",
        )  # fmt: skip

    def test_non_dns_names(self) -> None:
        """
        IP addresses, email addresses and URIs are refused by kind.
        """
        for other, detail in (
            (x509.IPAddress(ipaddress.ip_address("192.0.2.1")), "IP address 192.0.2.1"),
            (x509.IPAddress(ipaddress.ip_address("2001:db8::1")), "IP address 2001:db8::1"),
            (x509.RFC822Name("a@example.com"), "email address a@example.com"),
            (x509.UniformResourceIdentifier("https://example.com/"), "URI https://example.com/"),
            (x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")), "registered ID 1.2.3.4"),
        ):
            self.assertBadCSR(
                build_csr(["example.com"], others=[other]), ["example.com"], "may only name DNS names", detail
            )

    # keys

    def test_account_key(self) -> None:
        self.assertBadCSR(build_csr(["example.com"], key=ACCOUNT), ["example.com"], "is the account key")

    def test_rsa_too_small(self) -> None:
        key = rsa.generate_private_key(65537, 1024)
        self.assertBadCSR(build_csr(["example.com"], key=key), ["example.com"], "1024 bits; at least 2048")

    def test_rsa_min_bits_from_rules(self) -> None:
        rules = KeyRules(key_types=frozenset({KeyType.RSA}), rsa_min_bits=3072)
        self.assertBadCSR(build_csr(["example.com"], key=RSA_2048), ["example.com"], "at least 3072", rules=rules)

    def test_rsa_not_allowed(self) -> None:
        rules = KeyRules(key_types=frozenset({KeyType.ECDSA}))
        self.assertBadCSR(
            build_csr(["example.com"], key=RSA_2048), ["example.com"], "key type RSA is not allowed", rules=rules
        )
        self.check(build_csr(["example.com"]), ["example.com"], rules=rules)

    def test_ecdsa_not_allowed(self) -> None:
        rules = KeyRules(key_types=frozenset({KeyType.RSA}))
        self.assertBadCSR(build_csr(["example.com"]), ["example.com"], "key type ECDSA is not allowed", rules=rules)

    def test_curve_not_allowed(self) -> None:
        for curve in (ec.SECP521R1(), ec.SECP256K1()):
            self.assertBadCSR(
                build_csr(["example.com"], key=ec.generate_private_key(curve)), ["example.com"],
                f"curve {curve.name} is not allowed",
            )  # fmt: skip

    def test_ed25519(self) -> None:
        self.assertBadCSR(
            build_csr(["example.com"], key=ed25519.Ed25519PrivateKey.generate()), ["example.com"],
            "key type Ed25519 is not allowed",
        )  # fmt: skip

    def test_dsa(self) -> None:
        self.assertBadCSR(
            build_csr(["example.com"], key=dsa.generate_private_key(2048)), ["example.com"],
            "key type DSA is not allowed",
        )  # fmt: skip

    def test_key_checked_before_signature(self) -> None:
        """
        A disallowed key is reported as such even if the signature is also
        bad, so a huge key is refused without verifying with it.
        """
        der = bytearray(build_csr(["example.com"], key=rsa.generate_private_key(65537, 1024)))
        der[-1] ^= 0x01
        self.assertBadCSR(bytes(der), ["example.com"], "at least 2048")

    # hypothesis: name comparison

    @given(
        st.lists(
            st.from_regex(r"\A(\*\.)?[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}\Z"), min_size=1, max_size=5, unique=True
        ),
        st.data(),
    )
    @settings(max_examples=50, deadline=None)
    def test_names_normalised(self, names: list[str], data: st.DataObject) -> None:
        """
        Any mix of case and trailing dots in the CSR matches the order.
        """
        variants = [
            "".join(c.upper() if data.draw(st.booleans()) else c for c in n) + ("." if data.draw(st.booleans()) else "")
            for n in names
        ]
        ordered = data.draw(st.permutations(variants))
        self.check(build_csr(ordered), names)

    @given(st.lists(st.from_regex(r"\A[a-z]{1,8}\.example\Z"), min_size=2, max_size=5, unique=True), st.data())
    @settings(max_examples=50, deadline=None)
    def test_names_differ(self, names: list[str], data: st.DataObject) -> None:
        """
        Dropping a name from the CSR is always reported as that name missing.
        """
        dropped = data.draw(st.sampled_from(names))
        kept = [n for n in names if n != dropped]
        self.assertBadCSR(build_csr(kept), names, f"missing from the CSR: {dropped}")


class CheckKeyTests(SynchronousTestCase):
    """
    L{check_key}, for keys too costly to put in a CSR in a unit test.
    """

    def test_rsa_too_large(self) -> None:
        # A public key needs no primes: any odd modulus of the right size.
        key = rsa.RSAPublicNumbers(65537, (1 << 8199) | 1).public_key()
        problem = self.assertRaises(AcmeProblem, check_key, key, BOTH)
        self.assertEqual(problem.type, ProblemType.BAD_CSR)
        self.assertIn("8200 bits; at most 8192", problem.detail)

    def test_rsa_largest(self) -> None:
        check_key(rsa.RSAPublicNumbers(65537, (1 << 8191) | 1).public_key(), BOTH)


class KeyRulesTests(SynchronousTestCase):
    def test_validation(self) -> None:
        self.assertRaises(TypeError, KeyRules, key_types=frozenset({"rsa"}))
        self.assertRaises(ValueError, KeyRules, key_types=frozenset({KeyType.RSA}), rsa_min_bits=16384)
        self.assertEqual(KeyRules(key_types=frozenset({KeyType.RSA})).rsa_min_bits, 2048)


class CSRNamesTests(SynchronousTestCase):
    def test_names(self) -> None:
        """
        The common name comes first, then the SAN dNSNames, normalised and
        without duplicates; other SAN types are left out.
        """
        csr = x509.load_der_x509_csr(
            build_csr(
                ["www.example.com", "Example.com.", "a.example"],
                cn="EXAMPLE.COM",
                others=[x509.IPAddress(ipaddress.ip_address("192.0.2.1"))],
            )
        )
        self.assertEqual(csr_names(csr), ("example.com", "www.example.com", "a.example"))

    def test_none(self) -> None:
        self.assertEqual(csr_names(x509.load_der_x509_csr(build_csr())), ())

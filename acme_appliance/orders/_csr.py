"""
Finalize-time checks of a client's CSR (RFC 8555 section 7.4): it must be
well-formed, self-signed, name exactly the order's identifiers, and carry a
key the policy allows that is not the account key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from attrs import field, frozen, validators
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from ..core import AcmeProblem, ProblemType, comparable_name
from ..policy import KeyType

RSA_MAX_BITS = 8192
ALLOWED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


@frozen
class KeyRules:
    """
    Which CSR keys a policy accepts.

    @ivar key_types: the allowed algorithms; ECDSA means the P-256 and P-384
        curves.
    @ivar rsa_min_bits: the smallest RSA modulus accepted; the largest is
        C{RSA_MAX_BITS}.
    """

    key_types: frozenset[KeyType] = field(
        validator=validators.deep_iterable(validators.instance_of(KeyType), validators.instance_of(frozenset))
    )
    rsa_min_bits: int = field(
        default=2048, validator=[validators.instance_of(int), validators.ge(1), validators.le(RSA_MAX_BITS)]
    )


def _bad(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.BAD_CSR, detail)


_NAME_DESCRIPTIONS: tuple[tuple[type, Callable[[Any], str]], ...] = (
    (x509.IPAddress, lambda n: f"IP address {n.value}"),
    (x509.RFC822Name, lambda n: f"email address {n.value}"),
    (x509.UniformResourceIdentifier, lambda n: f"URI {n.value}"),
    (x509.DirectoryName, lambda n: f"directory name {n.value.rfc4514_string()}"),
    (x509.RegisteredID, lambda n: f"registered ID {n.value.dotted_string}"),
    (x509.OtherName, lambda n: f"otherName {n.type_id.dotted_string}"),
)


def _describe_name(name: x509.GeneralName) -> str:
    for kind, describe in _NAME_DESCRIPTIONS:
        if isinstance(name, kind):
            return describe(name)
    return type(name).__name__


def _alt_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as e:
        raise _bad(f"the CSR's extensions cannot be parsed: {e}") from None
    return list(extension.value)


def _common_names(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        attributes = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as e:
        raise _bad(f"the CSR's subject cannot be parsed: {e}") from None
    names = []
    for attribute in attributes:
        value = attribute.value
        names.append(value if isinstance(value, str) else value.decode("latin-1"))
    return names


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[str, ...]:
    """
    The DNS names C{csr} asks for: its subject common name(s) and its SAN
    dNSNames, normalised, without duplicates, common name first.  Other SAN
    types are left out (L{check_csr} refuses them).

    @raise AcmeProblem: C{badCSR} when the subject or extensions do not parse.
    """
    found = _common_names(csr) + [n.value for n in _alt_names(csr) if isinstance(n, x509.DNSName)]
    return tuple(dict.fromkeys(comparable_name(n) for n in found))


def _describe_key(key: PublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA"
    return type(key).__name__


def check_key(key: PublicKeyTypes, rules: KeyRules) -> None:
    """
    Check a CSR's public key against C{rules}.

    @raise AcmeProblem: C{badCSR} naming what is wrong with the key.
    """
    allowed = ", ".join(sorted(t.name for t in rules.key_types)) or "none"
    if isinstance(key, rsa.RSAPublicKey):
        if KeyType.RSA not in rules.key_types:
            raise _bad(f"key type RSA is not allowed (allowed: {allowed})")
        if key.key_size < rules.rsa_min_bits:
            raise _bad(f"the RSA key has {key.key_size} bits; at least {rules.rsa_min_bits} are required")
        if key.key_size > RSA_MAX_BITS:
            raise _bad(f"the RSA key has {key.key_size} bits; at most {RSA_MAX_BITS} are allowed")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if KeyType.ECDSA not in rules.key_types:
            raise _bad(f"key type ECDSA is not allowed (allowed: {allowed})")
        if key.curve.name not in ALLOWED_CURVES:
            raise _bad(f"the ECDSA curve {key.curve.name} is not allowed; use P-256 or P-384")
    else:
        raise _bad(f"key type {_describe_key(key)} is not allowed (allowed: {allowed})")


def _list(names: set[str]) -> str:
    return ", ".join(n or '""' for n in sorted(names))


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_csr(
    csr_der: bytes, *, order_names: Iterable[str], account_key: PublicKeyTypes | None, key_rules: KeyRules
) -> x509.CertificateSigningRequest:
    """
    Check a finalize request's CSR against its order.

    The names the CSR asks for are its SAN dNSNames plus its subject common
    name; they must be exactly C{order_names}, compared case-insensitively
    and ignoring a trailing dot.

    @param csr_der: the DER PKCS#10 request from the finalize payload.
    @param order_names: the order's DNS names.
    @param account_key: the ACME account's public key, which the CSR must not
        reuse; C{None} skips that check.
    @param key_rules: the key algorithms and sizes the policy allows.
    @return: the parsed request.
    @raise AcmeProblem: C{badCSR} with a detail naming the first problem.
    """
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except (ValueError, x509.InvalidVersion) as e:
        raise _bad(f"the CSR is not a DER-encoded PKCS#10 request: {e}") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise _bad(f"the CSR's public key cannot be read: {e}") from None

    # The key is checked before the signature so that an oversized key costs
    # nothing to refuse.
    check_key(public_key, key_rules)
    try:
        signed = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise _bad(f"the CSR's signature cannot be checked: {e}") from None
    if not signed:
        raise _bad("the CSR's signature is not valid; it must be signed with its own key")

    others = [_describe_name(n) for n in _alt_names(csr) if not isinstance(n, x509.DNSName)]
    if others:
        raise _bad(f"the CSR may only name DNS names, but it has {', '.join(others)}")

    requested = set(csr_names(csr))
    wanted = {comparable_name(n) for n in order_names}
    if requested != wanted:
        problems = []
        if extra := requested - wanted:
            problems.append(f"not in the order: {_list(extra)}")
        if missing := wanted - requested:
            problems.append(f"missing from the CSR: {_list(missing)}")
        raise _bad(f"the CSR's names must be exactly the order's names; {'; '.join(problems)}")

    if account_key is not None and _spki(public_key) == _spki(account_key):
        raise _bad("the CSR's public key is the account key; use a separate key for the certificate")
    return csr

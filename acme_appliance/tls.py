"""
A self-signed certificate for the ACME listener, so that a fresh install
serves HTTPS before the operator has a real certificate.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .core import write_private_files

SELF_SIGNED_VALIDITY = timedelta(days=730)
BACKDATE = timedelta(hours=1)

_log = Logger()


class TLSSetupError(ValueError):
    """
    The TLS files cannot be generated; the message is one line naming the
    file or hostname.
    """


def _alt_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    name = hostname.lower().rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise TLSSetupError(f"{hostname!r} is not a valid hostname") from None
    if not name or any(not label for label in name.split(".")):
        raise TLSSetupError(f"{hostname!r} is not a valid hostname")
    return x509.DNSName(name)


def _check_pair(cert_path: str, key_path: str) -> bool:
    """
    C{True} if both files exist; C{False} if neither does.

    @raise TLSSetupError: only one of them exists.
    """
    cert_exists = os.path.exists(cert_path)
    key_exists = os.path.exists(key_path)
    if cert_exists and key_exists:
        return True
    if cert_exists or key_exists:
        there, missing = (cert_path, key_path) if cert_exists else (key_path, cert_path)
        raise TLSSetupError(
            f"{there} exists but {missing} does not; restore it or remove {there} to generate a new pair"
        )
    return False


def _subject(hostnames: Sequence[str]) -> x509.Name:
    first = hostnames[0].rstrip(".")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme-appliance self-signed"),
            *([x509.NameAttribute(NameOID.COMMON_NAME, first)] if 0 < len(first) <= 64 and first.isascii() else []),
        ]
    )


_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _certificate(key: ec.EllipticCurvePrivateKey, hostnames: Sequence[str], now: datetime) -> x509.Certificate:
    alt_names = list(dict.fromkeys(_alt_name(h) for h in hostnames))
    subject = _subject(hostnames)
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_pair(cert_path: str, key_path: str, cert_pem: bytes, key_pem: bytes) -> None:
    if os.path.abspath(cert_path) == os.path.abspath(key_path):
        files = [(key_path, key_pem + cert_pem, 0o600)]
    else:
        # The key goes in first: a crash in between leaves a key without a
        # certificate, which the next start reports instead of serving it.
        files = [(key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)]
    try:
        write_private_files(files)
    except OSError as e:
        raise TLSSetupError(
            f"cannot write the self-signed certificate: {e.filename or cert_path}: {e.strerror}"
        ) from None


def ensure_self_signed(cert_path: str, key_path: str, hostnames: Sequence[str], *, clock: IReactorTime) -> bool:
    """
    Create a self-signed ECDSA P-256 certificate and its key unless both
    files already exist.

    The certificate is valid for about two years, names every hostname (IP
    addresses as IP SANs) and is marked as a CA, so that clients can trust
    the file itself (C{REQUESTS_CA_BUNDLE}, C{cafile}).

    @param cert_path: where the PEM certificate goes.
    @param key_path: where the PEM key goes (mode 0600); if it is
        C{cert_path}, that one file holds the key and then the certificate.
    @param hostnames: the names clients connect to; the first is the
        subject's common name.
    @return: C{True} if the files were created, C{False} if both existed.
    @raise TLSSetupError: only one of the files exists, a hostname is not
        valid, or the files cannot be written.
    """
    if _check_pair(cert_path, key_path):
        return False
    if not hostnames:
        raise TLSSetupError("a self-signed certificate needs at least one hostname")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.fromtimestamp(clock.seconds(), tz=UTC)
    certificate = _certificate(key, hostnames, now)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_pair(cert_path, key_path, certificate.public_bytes(serialization.Encoding.PEM), key_pem)
    _log.info(
        "generated a self-signed certificate for {hostnames} in {cert_path}",
        hostnames=", ".join(hostnames),
        cert_path=cert_path,
    )
    return True

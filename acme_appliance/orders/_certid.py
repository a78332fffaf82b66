"""
RFC 9773 certificate identifiers: C{base64url(AKI keyIdentifier) "."
base64url(serial DER bytes)}, unpadded.
"""

from __future__ import annotations

import base64
import hashlib
import re

from attrs import frozen
from cryptography import x509

_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class BadCertId(ValueError):
    """
    Not an RFC 9773 certID; the message says why, in one line.
    """


@frozen
class CertId:
    """
    A parsed certID: the issuer's key identifier and the serial number.
    """

    key_identifier: bytes
    serial: int

    @property
    def serial_hex(self) -> str:
        """
        The serial as the certificate records keep it (lower-case hex).
        """
        return format(self.serial, "x")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise BadCertId(f"the {what} part of a certID must be unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cert_id_of(certificate: x509.Certificate) -> str:
    """
    The certID of C{certificate}.

    @raise BadCertId: it has no Authority Key Identifier with a key id.
    """
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise BadCertId("the certificate has no Authority Key Identifier") from None
    if not aki.key_identifier:
        raise BadCertId("the certificate's Authority Key Identifier has no key identifier")
    serial = certificate.serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{_b64(aki.key_identifier)}.{_b64(serial_der)}"


def cert_id_of_pem(chain_pem: str) -> str:
    """
    The certID of the first certificate of a PEM chain.
    """
    return cert_id_of(x509.load_pem_x509_certificate(chain_pem.encode()))


def parse_cert_id(text: str) -> CertId:
    """
    Parse a certID as a client sends it.

    @raise BadCertId: it is not one.
    """
    aki_text, dot, serial_text = text.partition(".")
    if not dot or not aki_text or not serial_text or "." in serial_text:
        raise BadCertId("a certID is two base64url parts joined by '.': keyIdentifier.serial")
    key_identifier = _unb64(aki_text, "keyIdentifier")
    serial_der = _unb64(serial_text, "serial")
    serial = int.from_bytes(serial_der, "big", signed=True)
    if serial <= 0:
        raise BadCertId("the serial of a certID must be a positive integer")
    return CertId(key_identifier=key_identifier, serial=serial)


def names_digest(names: tuple[str, ...]) -> str:
    """
    A short digest of a certificate's set of names (order and case ignored):
    certificates with the same digest are the same order key.
    """
    joined = "\n".join(sorted({n.lower() for n in names}))
    return hashlib.sha256(joined.encode()).hexdigest()[:32]

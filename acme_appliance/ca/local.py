"""
The built-in CA (C{kind = "local"}): a root and an intermediate kept in the
state directory, issuing leaves for checked CSRs.  For labs, internal names
and tests; it has no CRL or OCSP.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..core import ProblemType, fsync_directory, write_private_files
from ._interface import CAError, IssuedCertificate, IssueRequest

ROOT_CERT = "root.pem"
ROOT_KEY = "root.key"
INTERMEDIATE_CERT = "intermediate.pem"
INTERMEDIATE_KEY = "intermediate.key"
CA_FILES = (ROOT_CERT, ROOT_KEY, INTERMEDIATE_CERT, INTERMEDIATE_KEY)

ROOT_VALIDITY = timedelta(days=3652)
INTERMEDIATE_VALIDITY = timedelta(days=1826)
# Leaves start an hour early so that clients with a slow clock accept them.
BACKDATE = timedelta(hours=1)

# The key types this module can sign with.
_SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_LeafKey: TypeAlias = CertificatePublicKeyTypes


class LocalCAError(ValueError):
    """
    The local CA's files are missing, unreadable or do not belong together;
    the message names the file.
    """


class LocalCA:
    """
    A two-level CA whose keys live in a directory.

    Use L{LocalCA.load_or_create}; the constructor takes already-checked parts.
    """

    _log = Logger()

    def __init__(
        self,
        name: str,
        *,
        root: x509.Certificate,
        intermediate: x509.Certificate,
        intermediate_key: _SigningKey,
        clock: IReactorTime,
        validity_days: int = 90,
        issue_delay: float = 0.0,
        profiles: Mapping[str, int] | None = None,
    ) -> None:
        if validity_days < 1:
            raise LocalCAError(f"validity_days must be at least 1, not {validity_days}")
        for profile, days in (profiles or {}).items():
            if days < 1:
                raise LocalCAError(f"profile {profile!r}: validity must be at least 1 day, not {days}")
        if issue_delay < 0:
            raise LocalCAError(f"issue_delay must not be negative, not {issue_delay}")
        self._name = name
        self._root = root
        self._intermediate = intermediate
        self._intermediate_key = intermediate_key
        # What every leaf repeats of the intermediate, made once.
        self._intermediate_pem = intermediate.public_bytes(serialization.Encoding.PEM)
        self._authority_key_id = x509.Extension(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, _authority_key_id(intermediate)
        )
        self._clock = clock
        self._validity = timedelta(days=validity_days)
        self._profiles = {name: timedelta(days=days) for name, days in (profiles or {}).items()}
        self._issue_delay = issue_delay

    @classmethod
    def load_or_create(
        cls,
        name: str,
        directory: str,
        *,
        clock: IReactorTime,
        validity_days: int = 90,
        issue_delay: float = 0.0,
        profiles: Mapping[str, int] | None = None,
    ) -> LocalCA:
        """
        Load the CA kept in C{directory}, creating it (mode 0700, keys 0600)
        when the directory is missing or empty.

        Safe against another process creating the same CA at the same time:
        the files are written to a fresh directory that is renamed into place,
        and the loser of the rename loads what the winner wrote.

        @param name: the CA's configured name, used in the root's subject.
        @param clock: the time source for validity periods.
        @param validity_days: how long issued leaves are valid.
        @param issue_delay: seconds L{issue} waits before signing.
        @param profiles: the validity in days of the profiles issued with
            another lifetime than C{validity_days}.
        @raise LocalCAError: the directory holds some but not all of the
            files, or they do not parse or do not belong together.
        """
        directory = os.path.abspath(directory)
        if not _present(directory) and _create(name, directory, _now(clock)):
            cls._log.info("created local CA {name} in {directory}", name=name, directory=directory)
        root, intermediate, key = _load(directory)
        return cls(
            name,
            root=root,
            intermediate=intermediate,
            intermediate_key=key,
            clock=clock,
            validity_days=validity_days,
            issue_delay=issue_delay,
            profiles=profiles,
        )

    @property
    def name(self) -> str:
        """
        The configured name of this CA.
        """
        return self._name

    def root_pem(self) -> bytes:
        """
        The root certificate in PEM: the trust anchor clients install.
        """
        return self._root.public_bytes(serialization.Encoding.PEM)

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """
        Sign a leaf for C{request.names} with the key of C{request.csr_der},
        after waiting C{issue_delay} seconds.

        @raise CAError: not transient for a CSR or names that cannot be
            used; transient when the intermediate has expired (another CA
            may still issue).
        """
        if self._issue_delay > 0:
            await deferLater(self._clock, self._issue_delay, lambda: None)
        if not request.names:
            raise CAError("the request has no names", transient=False, problem_type=ProblemType.BAD_CSR)
        public_key = _csr_public_key(request.csr_der)
        now = _now(self._clock)
        # Not logged here: the issuance job logs the order issued, with the
        # CA and the serial.
        leaf = self._sign(self._leaf(request.names, public_key, now, self._profiles.get(request.profile or "")))
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self._intermediate_pem
        return IssuedCertificate(chain_pem=chain, ca_name=self._name, leaf=leaf)

    async def supports_profile(self, name: str) -> bool:
        """
        Every profile: those not configured get C{validity_days}.
        """
        return True

    def _not_after(self, now: datetime, validity: timedelta | None = None) -> datetime:
        ca_expires = self._intermediate.not_valid_after_utc
        if now >= ca_expires:
            raise CAError(
                f"the intermediate of local CA {self._name!r} expired on {ca_expires:%Y-%m-%d}", transient=True
            )
        # A leaf must not outlive the certificate that vouches for it.
        return min(now + (validity or self._validity), ca_expires)

    def _leaf(
        self, names: Sequence[str], public_key: _LeafKey, now: datetime, validity: timedelta | None = None
    ) -> x509.CertificateBuilder:
        not_after = self._not_after(now, validity)
        empty_subject = len(names[0]) > 64
        subject = x509.Name([] if empty_subject else [x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        # Built in one go (each builder step copies the builder), the
        # extensions every leaf shares made once.
        return x509.CertificateBuilder(
            issuer_name=self._intermediate.subject,
            subject_name=subject,
            public_key=public_key,
            serial_number=x509.random_serial_number(),
            not_valid_before=now - BACKDATE,
            not_valid_after=not_after,
            extensions=[
                # RFC 5280 4.2.1.6: with an empty subject the SAN must be critical.
                x509.Extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, empty_subject, _subject_alt_name(names)),
                _LEAF_CONSTRAINTS,
                _RSA_LEAF_USAGE if isinstance(public_key, rsa.RSAPublicKey) else _LEAF_USAGE,
                _LEAF_PURPOSES,
                x509.Extension(
                    ExtensionOID.SUBJECT_KEY_IDENTIFIER, False, x509.SubjectKeyIdentifier.from_public_key(public_key)
                ),
                self._authority_key_id,
            ],
        )

    def _sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        try:
            return builder.sign(self._intermediate_key, _hash_for(self._intermediate_key))
        except (TypeError, ValueError) as e:
            raise CAError(
                f"cannot sign a certificate for this CSR's key: {e}", transient=False, problem_type=ProblemType.BAD_CSR
            ) from None

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        """
        Accept the revocation of a certificate this CA issued.

        The built-in CA publishes no CRL or OCSP, so there is nothing to
        record here; the server keeps the revocation state.

        @raise CAError: C{certificate_der} is not a certificate, or not one
            signed by this CA's intermediate.
        """
        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
        except (ValueError, x509.InvalidVersion) as e:
            raise CAError(f"not a DER certificate: {e}", transient=False, problem_type=ProblemType.MALFORMED) from None
        try:
            certificate.verify_directly_issued_by(self._intermediate)
        except (ValueError, TypeError, InvalidSignature):
            raise CAError(
                f"the certificate was not issued by local CA {self._name!r}",
                transient=False,
                problem_type=ProblemType.UNAUTHORIZED,
            ) from None
        self._log.info(
            "local CA {ca} revoked serial {serial:x} (reason {reason})",
            ca=self._name,
            serial=certificate.serial_number,
            reason=reason,
        )


def _now(clock: IReactorTime) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), tz=UTC)


def _csr_public_key(csr_der: bytes) -> _LeafKey:
    try:
        return x509.load_der_x509_csr(csr_der).public_key()
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm) as e:
        raise CAError(f"cannot read the CSR: {e}", transient=False, problem_type=ProblemType.BAD_CSR) from None


def _subject_alt_name(names: Sequence[str]) -> x509.SubjectAlternativeName:
    try:
        return x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    except ValueError as e:
        raise CAError(
            f"cannot put the names in a certificate: {e}", transient=False, problem_type=ProblemType.REJECTED_IDENTIFIER
        ) from None


def _present(directory: str) -> list[str]:
    return [f for f in CA_FILES if os.path.lexists(os.path.join(directory, f))]


def _hash_for(key: _SigningKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size > 384:
            return hashes.SHA512()
        if key.curve.key_size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(*, digital_signature: bool = False, key_encipherment: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


# The extensions every leaf has alike.
_LEAF_CONSTRAINTS = x509.Extension(
    ExtensionOID.BASIC_CONSTRAINTS, True, x509.BasicConstraints(ca=False, path_length=None)
)
_LEAF_USAGE = x509.Extension(ExtensionOID.KEY_USAGE, True, _key_usage(digital_signature=True))
_RSA_LEAF_USAGE = x509.Extension(
    ExtensionOID.KEY_USAGE, True, _key_usage(digital_signature=True, key_encipherment=True)
)
_LEAF_PURPOSES = x509.Extension(
    ExtensionOID.EXTENDED_KEY_USAGE,
    False,
    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
)


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(_issuer_public_key(issuer))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _issuer_public_key(issuer: x509.Certificate) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    key = issuer.public_key()
    assert isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey))
    return key


def _ca_name(name: str, role: str) -> x509.Name:
    # A common name is at most 64 characters; a long CA name is cut, not refused.
    common_name = f"acme-appliance {name} {role}"
    if len(common_name) > 64:
        common_name = f"acme-appliance {name[: 64 - len(role) - 20]}... {role}"
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme-appliance"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    validity: timedelta,
    path_length: int | None,
) -> x509.Certificate:
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(digital_signature=True, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, _hash_for(issuer_key))
    )


def _create(name: str, directory: str, now: datetime) -> bool:
    """
    Create the CA in C{directory}; C{False} if another process got there
    first.
    """
    return _install(_new_ca_files(name, now), directory)


def _new_ca_files(name: str, now: datetime) -> dict[str, tuple[bytes, int]]:
    """
    A new root and intermediate: each file's contents and mode.
    """
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = _ca_name(name, "Root")
    root = _ca_certificate(
        subject=root_name,
        key=root_key,
        issuer=root_name,
        issuer_key=root_key,
        now=now,
        validity=ROOT_VALIDITY,
        path_length=None,
    )
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _ca_certificate(
        subject=_ca_name(name, "Intermediate"),
        key=intermediate_key,
        issuer=root_name,
        issuer_key=root_key,
        now=now,
        validity=INTERMEDIATE_VALIDITY,
        path_length=0,
    )
    return {
        ROOT_CERT: (root.public_bytes(serialization.Encoding.PEM), 0o644),
        ROOT_KEY: (_key_pem(root_key), 0o600),
        INTERMEDIATE_CERT: (intermediate.public_bytes(serialization.Encoding.PEM), 0o644),
        INTERMEDIATE_KEY: (_key_pem(intermediate_key), 0o600),
    }


def _install(contents: dict[str, tuple[bytes, int]], directory: str) -> bool:
    """
    Write C{contents} to a fresh directory renamed to C{directory}; C{False}
    if C{directory} exists and is not empty by then.
    """
    parent, base = os.path.split(directory)
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{base}.", suffix=".new", dir=parent)  # mode 0700
    except OSError as e:
        raise LocalCAError(f"cannot create the local CA in {directory}: {e.strerror}") from None
    try:
        write_private_files([(os.path.join(staging, file), data, mode) for file, (data, mode) in contents.items()])
        try:
            # Replaces a missing or empty directory, never a non-empty one.
            os.rename(staging, directory)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return False
        fsync_directory(parent)
        return True
    except OSError as e:
        raise LocalCAError(f"cannot create the local CA in {directory}: {e.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LocalCAError(f"{path}: cannot read: {e.strerror}") from None


def _load_certificate(path: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except (ValueError, x509.InvalidVersion) as e:
        raise LocalCAError(f"{path}: not a PEM certificate ({e})") from None


def _load_key(path: str) -> _SigningKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except TypeError:
        raise LocalCAError(f"{path}: the key is encrypted; the local CA needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise LocalCAError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise LocalCAError(f"{path}: only ECDSA and RSA keys are supported")
    return key


def _public_der(key: object) -> bytes | None:
    if isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return None


def _load(directory: str) -> tuple[x509.Certificate, x509.Certificate, _SigningKey]:
    present = _present(directory)
    missing = [f for f in CA_FILES if f not in present]
    if missing:
        raise LocalCAError(
            f"{directory}: incomplete local CA: missing {', '.join(missing)}"
            + (f" (found {', '.join(present)})" if present else "")
            + "; restore the files or remove the directory to create a new CA"
        )
    path = {f: os.path.join(directory, f) for f in CA_FILES}
    root = _load_certificate(path[ROOT_CERT])
    root_key = _load_key(path[ROOT_KEY])
    intermediate = _load_certificate(path[INTERMEDIATE_CERT])
    intermediate_key = _load_key(path[INTERMEDIATE_KEY])

    for cert_file, key_file, cert, key in (
        (ROOT_CERT, ROOT_KEY, root, root_key),
        (INTERMEDIATE_CERT, INTERMEDIATE_KEY, intermediate, intermediate_key),
    ):
        if _public_der(cert.public_key()) != _public_der(key.public_key()):
            raise LocalCAError(f"{path[key_file]}: the key does not match the certificate in {cert_file}")
    try:
        constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        constraints = None
    if constraints is None or not constraints.ca:
        raise LocalCAError(f"{path[INTERMEDIATE_CERT]}: not a CA certificate (no basicConstraints CA:TRUE)")
    try:
        intermediate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise LocalCAError(f"{path[INTERMEDIATE_CERT]}: not issued by the root in {ROOT_CERT}") from None
    for key_file in (ROOT_KEY, INTERMEDIATE_KEY):
        if os.stat(path[key_file]).st_mode & 0o077:
            LocalCA._log.warn("{path} is readable by other users; it should be mode 0600", path=path[key_file])
    return root, intermediate, intermediate_key

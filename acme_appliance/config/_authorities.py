"""
The C{[[ca]]} and C{[[policy]]} tables.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from typing import Any

from attrs import evolve
from cryptography import x509

from ..issuance import BudgetKind, CALimit
from ..policy import KeyType, Policy, Profile, ValidationMethod
from ._model import CAConfig, CAKind, ValidationConfig
from ._table import MISSING, Problem, Table, kind_of
from ._values import dns_name, duration, readable, url

CA_KEYS = (
    "name",
    "kind",
    "directory",
    "ca_bundle",
    "contact",
    "eab_kid",
    "eab_hmac_key",
    "validity_days",
    "issue_delay",
    "profiles",
    "limits",
)
LIMIT_KEYS = ("what", "max", "window")
POLICY_KEYS = (
    "name",
    "primary_ca",
    "backup_ca",
    "validation",
    "allowed_domains",
    "key_types",
    "rsa_min_bits",
    "profiles",
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_NOT_B64URL = "is not base64url: give the key exactly as the CA shows it (A-Z a-z 0-9 - _)"


def _named_tables(tables: list[dict[str, Any]], array: str, what: str, known: tuple[str, ...]) -> Iterator[Table]:
    """
    Each table of C{[[array]]}, named by its unique C{name}; lazily, so
    that the problems are found in the order of the file.
    """
    names: set[str] = set()
    for i, data in enumerate(tables):
        name = _name(Table(data, f"{array}[{i + 1}]", tuple(data)))
        t = Table(data, f'{array} "{name}"', known)
        if name in names:
            t.fail("name", f"duplicate {what} name {name!r}")
        names.add(name)
        yield t


def _name(t: Table) -> str:
    name: str = t.text("name")
    if not _NAME.match(name):
        t.fail("name", f"{name!r} is not a valid name (lower-case letters, digits, '_', '.', '-'; up to 63)")
    return name


def cas(tables: list[dict[str, Any]], resolve: Callable[[str], str]) -> tuple[CAConfig, ...]:
    """
    Every C{[[ca]]}.
    """
    return tuple(_ca(t, t.text("name"), resolve) for t in _named_tables(tables, "ca", "CA", CA_KEYS))


def _ca(t: Table, name: str, resolve: Callable[[str], str]) -> CAConfig:
    kind: CAKind = t.choice("kind", CAKind)
    limits = _limits(t)
    if kind is CAKind.LOCAL:
        for option in ("directory", "ca_bundle", "contact", "eab_kid", "eab_hmac_key"):
            if t.has(option):
                t.fail(option, 'only for kind = "acme"; a local CA has no upstream')
        return CAConfig(
            name=name,
            kind=kind,
            validity_days=t.integer("validity_days", 90, 1, 825),
            issue_delay=t.number("issue_delay", 0.0, positive=False),
            profiles=_ca_profiles(t),
            limits=limits,
        )
    for option in ("validity_days", "issue_delay"):
        if t.has(option):
            t.fail(option, 'only for kind = "local"')
    if t.has("profiles"):
        t.fail("profiles", 'only for kind = "local"; an acme CA offers the profiles its directory lists')
    directory: str = t.text("directory")
    parts = url(t.key("directory"), directory)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        t.fail("directory", f"{directory!r}: http:// is only allowed for localhost; use https://")
    bundle = ca_bundle(t, resolve)
    contact = t.texts("contact", _mailto)
    kid, hmac_key = _eab(t)
    return CAConfig(
        name=name,
        kind=kind,
        directory=directory,
        ca_bundle=bundle,
        contact=contact,
        eab_kid=kid,
        eab_hmac_key=hmac_key,
        limits=limits,
    )


def _limits(t: Table) -> tuple[CALimit, ...]:
    """
    C{limits}: an array of C{{ what, max, window }} tables, at most one per
    C{what}.
    """
    entries = t.get("limits", (list,), 'an array of tables such as [{ what = "orders", max = 300, window = "3h" }]', [])
    limits: dict[BudgetKind, CALimit] = {}
    for i, entry in enumerate(entries):
        where = f"{t.key('limits')}[{i + 1}]"
        if not isinstance(entry, dict):
            raise Problem(where, f"expected a table {{ what, max, window }}, got {kind_of(entry)}")
        e = Table(entry, where, LIMIT_KEYS)
        what: BudgetKind = e.choice("what", BudgetKind)
        if what in limits:
            e.fail("what", f"{what.value!r} is limited twice")
        limit = e.integer("max", MISSING, 1)
        limits[what] = CALimit(what, limit, duration(e.key("window"), e.text("window")))
    return tuple(limits.values())


def profile_name(key: str, value: str) -> str:
    """
    A profile name: a short token, as CAs name them (C{shortlived}).

    @raise Problem: naming C{key}.
    """
    if not _NAME.match(value):
        raise Problem(
            key, f"{value!r} is not a valid profile name (lower-case letters, digits, '_', '.', '-'; up to 63)"
        )
    return value


def _ca_profiles(t: Table) -> tuple[tuple[str, int], ...]:
    """
    A local CA's C{profiles}: the validity in days of each profile it
    issues differently from C{validity_days}.
    """
    table = t.get("profiles", (dict,), "a table such as { shortlived = 6 }", {})
    result = []
    for name, days in table.items():
        profile_name(t.key("profiles"), name)
        if isinstance(days, bool) or not isinstance(days, int):
            t.fail("profiles", f"{name}: expected an integer (days), got {kind_of(days)}")
        if not 1 <= days <= 825:
            t.fail("profiles", f"{name}: {days} is out of range (1 to 825 days)")
        result.append((name, days))
    return tuple(result)


def profile_descriptions(data: object) -> dict[str, str]:
    """
    C{[profiles]}: the description the directory shows for each profile
    name (C{shortlived = "6-day certificates"}).
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Problem("profiles", f'expected a table [profiles] of name = "description", got {kind_of(data)}')
    descriptions = {}
    for name, description in data.items():
        key = f"profiles.{name}"
        profile_name(key, name)
        if not isinstance(description, str):
            raise Problem(key, f"expected a string (the description clients see), got {kind_of(description)}")
        if not description.strip():
            raise Problem(key, "must not be empty")
        descriptions[name] = " ".join(description.split())
    return descriptions


def ca_bundle(t: Table, resolve: Callable[[str], str]) -> str | None:
    bundle: str | None = t.text("ca_bundle", None)
    if bundle is None:
        return None
    bundle = resolve(bundle)
    readable(t.key("ca_bundle"), bundle, "file")
    try:
        with open(bundle, "rb") as f:
            x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError):
        t.fail("ca_bundle", f"{bundle!r} holds no PEM certificate")
    return bundle


def _mailto(key: str, value: str) -> str:
    if not value.startswith("mailto:") or "@" not in value:
        raise Problem(key, f"{value!r} is not a mailto: URL such as 'mailto:ops@example.net'")
    return value


def _eab(t: Table) -> tuple[str | None, str | None]:
    kid: str | None = t.text("eab_kid", None)
    hmac_key: str | None = t.text("eab_hmac_key", None)
    if (kid is None) != (hmac_key is None):
        missing = "eab_hmac_key" if hmac_key is None else "eab_kid"
        t.fail(missing, "missing: eab_kid and eab_hmac_key go together")
    if hmac_key is not None:
        _check_hmac_key(t, hmac_key)
    return kid, hmac_key


def _check_hmac_key(t: Table, value: str) -> None:
    # The key is a secret: problems describe it, never quote it.
    if not _B64URL.match(value) or len(value.rstrip("=")) % 4 == 1:
        t.fail("eab_hmac_key", _NOT_B64URL)
    try:
        decoded = base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        t.fail("eab_hmac_key", _NOT_B64URL)
    if len(decoded) < 16:
        t.fail("eab_hmac_key", f"decodes to only {len(decoded)} bytes; an EAB HMAC key is at least 16")


def policies(
    tables: list[dict[str, Any]],
    cas: tuple[CAConfig, ...],
    validation: ValidationConfig,
    descriptions: dict[str, str] | None = None,
) -> tuple[Policy, ...]:
    """
    Every C{[[policy]]}, checked against the CAs and C{[validation]};
    C{descriptions} are those of C{[profiles]}.
    """
    by_name = {ca.name: ca for ca in cas}
    return tuple(
        evolve(_policy(t, t.text("name"), by_name, validation), profiles=_profiles(t, descriptions or {}))
        for t in _named_tables(tables, "policy", "policy", POLICY_KEYS)
    )


def _profiles(t: Table, descriptions: dict[str, str]) -> tuple[Profile, ...]:
    names = t.texts("profiles", profile_name)
    if t.has("profiles") and not names:
        t.fail("profiles", "must not be empty: leave it out for a policy without profiles")
    for i, name in enumerate(names):
        if name in names[:i]:
            t.fail("profiles", f"lists {name!r} twice")
    # Without a description in [profiles], the name describes itself.
    return tuple(Profile(name=name, description=descriptions.get(name, name)) for name in names)


def _policy(t: Table, name: str, cas: dict[str, CAConfig], validation: ValidationConfig) -> Policy:
    def known_ca(option: str, ca: str) -> CAConfig:
        if ca not in cas:
            t.fail(option, f"unknown CA {ca!r} (configured: {', '.join(cas)})")
        return cas[ca]

    primary = known_ca("primary_ca", t.text("primary_ca"))
    backup_name: str | None = t.text("backup_ca", None)
    backup = known_ca("backup_ca", backup_name) if backup_name is not None else None
    if backup is primary:
        t.fail("backup_ca", f"is the same CA as primary_ca ({primary.name!r})")
    method = _method(t, (primary, backup), validation)
    domains = t.texts("allowed_domains", lambda key, value: dns_name(key, value, wildcard=True))
    if not domains:
        t.fail("allowed_domains", "missing or empty: list the names and *.patterns this policy may issue for")
    return Policy(
        name=name,
        primary_ca=primary.name,
        backup_ca=backup.name if backup is not None else None,
        validation=method,
        allowed_domains=tuple(dict.fromkeys(domains)),
        key_types=_key_types(t),
        rsa_min_bits=t.integer("rsa_min_bits", 2048, 2048, 8192),
    )


def _method(t: Table, cas: tuple[CAConfig, CAConfig | None], validation: ValidationConfig) -> ValidationMethod:
    method: ValidationMethod = t.choice("validation", ValidationMethod)
    if method is ValidationMethod.NONE:
        for ca in cas:
            if ca is not None and ca.kind is not CAKind.LOCAL:
                t.fail("validation", f'"none" is only for local CAs, and CA {ca.name!r} is kind "acme"')
    elif method is ValidationMethod.DNS_CNAME and validation.dns_zone is None:
        t.fail("validation", '"dns-cname" needs [validation] dns_zone')
    elif method is ValidationMethod.FILE_PROXY and validation.fileproxy_listen is None:
        t.fail("validation", '"file-proxy" needs [validation] fileproxy_listen')
    return method


def _key_types(t: Table) -> frozenset[KeyType]:
    names = t.texts("key_types") if t.has("key_types") else ("rsa", "ecdsa")
    key_types = set()
    for value in names:
        if value not in ("rsa", "ecdsa"):
            t.fail("key_types", f"{value!r} is not one of 'rsa', 'ecdsa'")
        key_types.add(KeyType(value))
    if not key_types:
        t.fail("key_types", "must name at least one of 'rsa', 'ecdsa'")
    return frozenset(key_types)

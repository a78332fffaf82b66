"""
The appliance's configuration: a TOML file read into frozen values.

L{load_config} checks everything it can without starting anything, so that
a bad file stops start-up with one L{ConfigError} line naming the file, the
key and the problem.  Every path in a L{Config} is absolute; a relative path
in the file is relative to the file's directory.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from enum import Enum
from typing import Any, NoReturn
from urllib.parse import SplitResult, urlsplit

from attrs import frozen
from cryptography import x509
# Twisted's own tokenizer for endpoint descriptions (private, but it is the
# grammar serverFromString uses, '\' escapes included): ssl: paths must be
# taken apart and rewritten without loading the files.
from twisted.internet.endpoints import _parse as _parse_endpoint
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from .policy import KeyType, Policy, ValidationMethod
from .storage import check_store_url

__all__ = [
    "AcmeServerConfig",
    "AdminConfig",
    "CAConfig",
    "CAKind",
    "Config",
    "ConfigError",
    "IssuanceConfig",
    "NotifyConfig",
    "WebhookConfig",
    "StorageConfig",
    "ValidationConfig",
    "load_config",
    "state_path",
]


class CAKind(Enum):
    """
    How the appliance gets certificates from a C{[[ca]]}.
    """

    ACME = "acme"
    LOCAL = "local"


class ConfigError(Exception):
    """
    The configuration file is unusable.

    C{str()} is one line: C{"<file>: <key>: <problem>"}, or
    C{"<file>: <problem>"} when the problem is the file itself.

    @ivar file: The configuration file as it was named.
    @ivar key: The dotted key, such as C{acme.listen} or
        C{ca "le".directory}, or C{None}.
    @ivar problem: What is wrong.
    """

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = " ".join(problem.split())
        super().__init__(f"{file}: {key}: {self.problem}" if key else f"{file}: {self.problem}")


@frozen
class AcmeServerConfig:
    """
    C{[acme]}: the RFC 8555 server the clients see.

    @ivar listen: A Twisted server endpoint description; the paths of an
        C{ssl:} description are absolute.
    @ivar base_url: The external URL, without a trailing slash.
    @ivar tls_cert: The absolute C{certKey} path of an C{ssl:} C{listen}.
    @ivar tls_key: The absolute C{privateKey} path of an C{ssl:} C{listen}.
    """

    listen: str
    base_url: str
    self_signed_tls: bool = False
    terms_of_service: str | None = None
    max_body_bytes: int = 65536
    tls_cert: str | None = None
    tls_key: str | None = None


@frozen
class AdminConfig:
    """
    C{[admin]}: the admin API and dashboard.
    """

    listen: str
    api_key_file: str


@frozen
class StorageConfig:
    """
    C{[storage]}: C{url} is C{memory:}, C{sqlite:/absolute/path} or
    C{redis://host[:port][/db]}.
    """

    url: str
    state_dir: str


@frozen
class ValidationConfig:
    """
    C{[validation]}: the HTTP file proxy and the dcv DNS authority.

    @ivar value_ttl: Seconds a validation value lives at most.
    @ivar preflight: Check a name's delegation/forwarding before asking the CA.
    @ivar resolver: C{(address, port)} of the recursive resolver preflight
        checks use, ideally the one the CA sees the world through; C{None}:
        the system's (C{/etc/resolv.conf}).
    @ivar preflight_http_port: The port the file-proxy preflight fetches
        customer names on (80 in production; CAs fetch http-01 there).
    """

    fileproxy_listen: str | None = None
    dns_zone: str | None = None
    dns_listen_port: int = 53
    dns_listen_interface: str = "0.0.0.0"
    dns_nameservers: tuple[str, ...] = ()
    value_ttl: int = 600
    preflight: bool = True
    resolver: tuple[str, int] | None = None
    preflight_http_port: int = 80


@frozen
class WebhookConfig:
    """
    One C{[[notify.webhook]]}: a URL and the secret that signs its bodies.
    """

    url: str
    secret: str | None = None


@frozen
class NotifyConfig:
    """
    C{[notify]}: where events go.

    @ivar syslog: C{udp:HOST:PORT}, C{tcp:HOST:PORT} or C{unix:/absolute/path}.
    """

    syslog: str | None = None
    webhooks: tuple[str, ...] = ()
    webhook_secret: str | None = None
    hooks: tuple[WebhookConfig, ...] = ()

    def all_webhooks(self) -> tuple[WebhookConfig, ...]:
        """
        Every webhook: the C{webhooks} URLs (signed with C{webhook_secret})
        and the C{[[notify.webhook]]} tables (each with its own secret).
        """
        return tuple(WebhookConfig(url, self.webhook_secret) for url in self.webhooks) + self.hooks


@frozen
class IssuanceConfig:
    """
    C{[issuance]}: timings of orders, in seconds.

    @ivar order_deadline: How long an upstream order may take.
    @ivar reuse_window: How long a finished upstream order may be re-used.
    @ivar retry_after: The C{Retry-After} of a C{processing} order.
    @ivar order_lifetime: How long an ACME order lives before it expires.
    """

    order_deadline: float = 600.0
    reuse_window: float = 3600.0
    retry_after: int = 2
    order_lifetime: float = 7 * 86400.0


@frozen
class CAConfig:
    """
    One C{[[ca]]}: an upstream ACME CA or the built-in local CA.

    @ivar validity_days: Certificate lifetime (local CAs only).
    @ivar issue_delay: Seconds before a local CA issues (tests and demos).
    """

    name: str
    kind: CAKind
    directory: str | None = None
    ca_bundle: str | None = None
    contact: tuple[str, ...] = ()
    eab_kid: str | None = None
    eab_hmac_key: str | None = None
    validity_days: int = 90
    issue_delay: float = 0.0


@frozen
class Config:
    """
    A whole, checked configuration file.

    @ivar path: The file's absolute path.
    """

    path: str
    acme: AcmeServerConfig
    admin: AdminConfig | None
    storage: StorageConfig
    validation: ValidationConfig
    notify: NotifyConfig
    issuance: IssuanceConfig
    cas: tuple[CAConfig, ...]
    policies: tuple[Policy, ...]

    def ca(self, name: str) -> CAConfig:
        """
        @raise KeyError: No C{[[ca]]} is called C{name}.
        """
        for ca in self.cas:
            if ca.name == name:
                return ca
        raise KeyError(name)

    def policy(self, name: str) -> Policy:
        """
        @raise KeyError: No C{[[policy]]} is called C{name}.
        """
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(name)


def state_path(config: Config, *parts: str) -> str:
    """
    A path under C{[storage] state_dir}.
    """
    return os.path.join(config.storage.state_dir, *parts)


def load_config(path: str) -> Config:
    """
    Read and check the TOML configuration file at C{path}.

    @raise ConfigError: The file cannot be read, is not TOML, or a key is
        missing, unknown or wrong.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, f"not UTF-8 text (byte {e.start}): TOML files must be UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from None
    absolute = os.path.abspath(path)
    try:
        return _Parser(absolute).config(data)
    except _Problem as p:
        raise ConfigError(path, p.key, p.problem) from None


# -- internals ----------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_MISSING: Any = object()
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

_SECTIONS: dict[str, tuple[str, ...]] = {
    "acme": ("listen", "base_url", "self_signed_tls", "terms_of_service", "max_body_bytes"),
    "admin": ("listen", "api_key_file"),
    "storage": ("url", "state_dir"),
    "validation": (
        "fileproxy_listen",
        "dns_zone",
        "dns_listen_port",
        "dns_listen_interface",
        "dns_nameservers",
        "value_ttl",
        "preflight",
        "resolver",
        "preflight_http_port",
    ),
    "notify": ("syslog", "webhooks", "webhook_secret", "webhook"),
    "issuance": ("order_deadline", "reuse_window", "retry_after", "order_lifetime"),
}
_ARRAYS: dict[str, tuple[str, ...]] = {
    "ca": (
        "name",
        "kind",
        "directory",
        "ca_bundle",
        "contact",
        "eab_kid",
        "eab_hmac_key",
        "validity_days",
        "issue_delay",
    ),
    "policy": ("name", "primary_ca", "backup_ca", "validation", "allowed_domains", "key_types", "rsa_min_bits"),
}


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime, date, time)):
        return "a date/time"
    return type(value).__name__


def _unknown(key: str, name: str, known: Iterable[str]) -> NoReturn:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
    raise _Problem(key, f"unknown key{hint}")


class _Table:
    """
    One TOML table being read: typed getters that name the dotted key in
    every problem.  Unknown keys are refused up front, so that a typo is
    reported as such rather than as a missing key.
    """

    def __init__(self, data: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        self._data = data
        self.where = where
        for name in data:
            if name not in known:
                _unknown(self.key(name), name, known)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}"

    def has(self, name: str) -> bool:
        return name in self._data

    def fail(self, name: str, problem: str) -> NoReturn:
        raise _Problem(self.key(name), problem)

    def _get(self, name: str, types: tuple[type, ...], expected: str, default: Any) -> Any:
        if name not in self._data:
            if default is _MISSING:
                self.fail(name, "missing (required)")
            return default
        value = self._data[name]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            self.fail(name, f"expected {expected}, got {_kind(value)}")
        return value

    def text(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, (str,), "a string", default)
        if isinstance(value, str) and not value.strip():
            self.fail(name, "must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, (bool,), "true or false", default)
        return value

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        value: int = self._get(name, (int,), "an integer", default)
        if value < low or high is not None and value > high:
            if high is None:
                self.fail(name, f"must be at least {low}, got {value}")
            self.fail(name, f"{value} is out of range ({low} to {high})")
        return value

    def number(self, name: str, default: float, *, positive: bool) -> float:
        value = float(self._get(name, (int, float), "a number", default))
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(name, "must be a finite number")
        if positive and value <= 0:
            self.fail(name, f"must be greater than 0, got {value:g}")
        if value < 0:
            self.fail(name, f"must not be negative, got {value:g}")
        return value

    def texts(self, name: str, each: Callable[[str, str], str] | None = None) -> tuple[str, ...]:
        values = self._get(name, (list,), "an array of strings", [])
        result = []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(name, f"entry {i + 1}: expected a string, got {_kind(value)}")
            if not value.strip():
                self.fail(name, f"entry {i + 1}: must not be empty")
            result.append(each(self.key(name), value) if each is not None else value)
        return tuple(result)

    def choice(self, name: str, enum: type[Any], default: Any = _MISSING) -> Any:
        value = self.text(name, default)
        if value is default and default is not _MISSING:
            return value
        allowed = [m.value for m in enum]
        if value not in allowed:
            self.fail(name, f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return enum(value)


def _dns_name(key: str, value: str, *, wildcard: bool = False) -> str:
    """
    Normalise a DNS name (lower case, no trailing dot); with C{wildcard}, a
    leading C{*.} is allowed.
    """
    if not value.isascii():
        raise _Problem(key, f"{value!r} is not ASCII: give internationalised names as A-labels (xn--...)")
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise _Problem(key, "empty DNS name")
    if len(name) > 253:
        raise _Problem(key, f"{name!r} is longer than 253 characters")
    labels = name.split(".")
    is_wildcard = wildcard and labels[0] == "*" and len(labels) > 1
    rest = labels[1:] if is_wildcard else labels
    if "*" in ".".join(rest):
        where = "only as the whole leftmost label, as in '*.example.com'" if wildcard else "nowhere in this name"
        raise _Problem(key, f"{name!r}: '*' is allowed {where}")
    for label in rest:
        if not _LABEL.match(label):
            raise _Problem(key, f"{name!r}: {label!r} is not a valid DNS label (letters, digits and '-', 1-63 long)")
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise _Problem(key, f"{name!r}: {label!r} is not a valid A-label") from None
    if not is_wildcard and len(labels) < 2:
        raise _Problem(key, f"{name!r} is not a fully qualified name (it needs a dot)")
    return name


def _url(key: str, value: str, what: str = "URL") -> SplitResult:
    try:
        parts = urlsplit(value)
        parts.port
    except ValueError as e:
        raise _Problem(key, f"{value!r} is not a valid {what}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise _Problem(key, f"{value!r} must start with https:// or http://")
    if not parts.hostname:
        raise _Problem(key, f"{value!r} has no host")
    if any(c.isspace() for c in value):
        raise _Problem(key, f"{value!r} contains whitespace")
    return parts


def _escape(value: str) -> str:
    # Twisted's endpoint grammar: ':' and '=' separate, '\' escapes.
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


@frozen
class _Endpoint:
    description: str
    cert: str | None = None
    key: str | None = None


_TCP_ARGS = ("port", "interface", "backlog")
_SSL_ARGS = ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog", "extraCertChain", "dhParameters")
_UNIX_ARGS = ("address", "mode", "backlog", "lockfile")
_ENDPOINT_ARGS = {"tcp": _TCP_ARGS, "tcp6": _TCP_ARGS, "ssl": _SSL_ARGS, "unix": _UNIX_ARGS}


def _readable(key: str, path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise _Problem(key, f"{what} {path!r} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise _Problem(key, f"{what} {path!r} is not readable")


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(path)

    def resolve(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.base, path))

    def config(self, data: dict[str, Any]) -> Config:
        for name in data:
            if name not in _SECTIONS and name not in _ARRAYS:
                _unknown(name, name, [*_SECTIONS, *_ARRAYS])
        acme = self.acme(self.section(data, "acme", required=True))
        admin = self.admin(self.section(data, "admin", required=True)) if "admin" in data else None
        storage = self.storage(self.section(data, "storage", required=True))
        validation = self.validation(self.section(data, "validation", required=False))
        notify = self.notify(self.section(data, "notify", required=False))
        issuance = self.issuance(self.section(data, "issuance", required=False))
        cas = self.cas(self.array(data, "ca"))
        policies = self.policies(self.array(data, "policy"), cas, validation)
        return Config(
            path=self.path,
            acme=acme,
            admin=admin,
            storage=storage,
            validation=validation,
            notify=notify,
            issuance=issuance,
            cas=cas,
            policies=policies,
        )

    def section(self, data: dict[str, Any], name: str, *, required: bool) -> _Table:
        if name not in data:
            if required:
                raise _Problem(name, f"missing required section [{name}]")
            return _Table({}, name, _SECTIONS[name])
        value = data[name]
        if not isinstance(value, dict):
            raise _Problem(name, f"expected a table [{name}], got {_kind(value)}")
        return _Table(value, name, _SECTIONS[name])

    def array(self, data: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = data.get(name)
        if value is None:
            raise _Problem(name, f"at least one [[{name}]] table is required")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _Problem(name, f"expected an array of tables [[{name}]], got {_kind(value)}")
        if not value:
            raise _Problem(name, f"at least one [[{name}]] table is required")
        return value

    # -- sections --

    def acme(self, t: _Table) -> AcmeServerConfig:
        self_signed = t.flag("self_signed_tls", False)
        endpoint = self.endpoint(t, "listen", t.text("listen"), tls_may_be_missing=self_signed)
        if self_signed and endpoint.cert is None:
            t.fail("self_signed_tls", "only applies to an ssl: listen endpoint")
        base_url = t.text("base_url")
        parts = _url(t.key("base_url"), base_url)
        if parts.query or parts.fragment:
            t.fail("base_url", f"{base_url!r} must not have a query or fragment")
        tos = t.text("terms_of_service", None)
        if tos is not None:
            _url(t.key("terms_of_service"), tos)
        return AcmeServerConfig(
            listen=endpoint.description,
            base_url=base_url.rstrip("/"),
            self_signed_tls=self_signed,
            terms_of_service=tos,
            max_body_bytes=t.integer("max_body_bytes", 65536, 1024, 64 * 1024 * 1024),
            tls_cert=endpoint.cert,
            tls_key=endpoint.key,
        )

    def admin(self, t: _Table) -> AdminConfig:
        endpoint = self.endpoint(t, "listen", t.text("listen"), tls_may_be_missing=False)
        return AdminConfig(listen=endpoint.description, api_key_file=self.resolve(t.text("api_key_file")))

    def storage(self, t: _Table) -> StorageConfig:
        url: str = t.text("url")
        problem = check_store_url(url)
        if problem is not None:
            t.fail("url", problem)
        scheme, _, rest = url.partition(":")
        if scheme.lower() == "sqlite":
            if rest.startswith("///"):
                rest = rest[2:]
            url = "sqlite:" + self.resolve(rest)
        return StorageConfig(url=url, state_dir=self.resolve(t.text("state_dir")))

    def validation(self, t: _Table) -> ValidationConfig:
        fileproxy: str | None = t.text("fileproxy_listen", None)
        if fileproxy is not None:
            fileproxy = self.endpoint(t, "fileproxy_listen", fileproxy, tls_may_be_missing=False).description
        zone: str | None = t.text("dns_zone", None)
        if zone is not None:
            zone = _dns_name(t.key("dns_zone"), zone)
        interface: str = t.text("dns_listen_interface", "0.0.0.0")
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            t.fail("dns_listen_interface", f"{interface!r} is not an IP address")
        return ValidationConfig(
            fileproxy_listen=fileproxy,
            dns_zone=zone,
            dns_listen_port=t.integer("dns_listen_port", 53, 0, 65535),
            dns_listen_interface=interface,
            dns_nameservers=t.texts("dns_nameservers", _dns_name),
            value_ttl=t.integer("value_ttl", 600, 1, 86400),
            preflight=t.flag("preflight", True),
            resolver=self.resolver(t),
            preflight_http_port=t.integer("preflight_http_port", 80, 1, 65535),
        )

    def resolver(self, t: _Table) -> tuple[str, int] | None:
        value: str | None = t.text("resolver", None)
        if value is None:
            return None
        host, colon, port = value.rpartition(":")
        if not colon or _is_ip(value.strip("[]")):
            host, port = value, "53"
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            t.fail("resolver", f"{value!r}: give an IP address, optionally with :PORT (e.g. 127.0.0.1:53)")
        if not port.isdigit() or not 0 < int(port) < 65536:
            t.fail("resolver", f"{value!r}: the port must be 1 to 65535")
        return host, int(port)

    def notify(self, t: _Table) -> NotifyConfig:
        syslog: str | None = t.text("syslog", None)
        if syslog is not None:
            syslog = self.syslog(t.key("syslog"), syslog)

        def webhook(key: str, value: str) -> str:
            _url(key, value)
            return value

        hooks = []
        tables = t._get("webhook", (list,), "an array of tables [[notify.webhook]]", [])
        for i, data in enumerate(tables):
            if not isinstance(data, dict):
                t.fail("webhook", f"entry {i + 1}: expected a table with url and secret, got {_kind(data)}")
            hook = _Table(data, f"notify.webhook[{i + 1}]", ("url", "secret"))
            hooks.append(WebhookConfig(url=webhook(hook.key("url"), hook.text("url")), secret=hook.text("secret", None)))
        return NotifyConfig(
            syslog=syslog, webhooks=t.texts("webhooks", webhook), webhook_secret=t.text("webhook_secret", None),
            hooks=tuple(hooks),
        )

    def syslog(self, key: str, value: str) -> str:
        forms = "use udp:HOST:PORT, tcp:HOST:PORT or unix:/path"
        scheme, colon, rest = value.partition(":")
        if not colon or scheme not in ("udp", "tcp", "unix") or not rest:
            raise _Problem(key, f"{value!r}: {forms}")
        if scheme == "unix":
            return "unix:" + self.resolve(rest)
        host, colon, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port:
            raise _Problem(key, f"{value!r}: {forms}")
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
            raise _Problem(key, f"{value!r}: port {port!r} is not a number from 1 to 65535")
        return value

    def issuance(self, t: _Table) -> IssuanceConfig:
        return IssuanceConfig(
            order_deadline=t.number("order_deadline", 600.0, positive=True),
            reuse_window=t.number("reuse_window", 3600.0, positive=True),
            retry_after=t.integer("retry_after", 2, 1),
            order_lifetime=t.number("order_lifetime", 7 * 86400.0, positive=True),
        )

    # -- endpoints --

    def endpoint(self, t: _Table, name: str, description: str, *, tls_may_be_missing: bool) -> _Endpoint:
        key = t.key(name)
        try:
            args, kwargs = _parse_endpoint(description)
        except (ValueError, RuntimeError):
            # A trailing backslash has nothing to escape.
            raise _Problem(key, f"{description!r} is not a valid endpoint description") from None
        kind = args[0]
        names = _ENDPOINT_ARGS.get(kind)
        if names is None:
            return self.other_endpoint(key, description)
        options: dict[str, str] = {}
        if len(args) - 1 > len(names):
            raise _Problem(key, f"{description!r}: too many ':'-separated values for a {kind} endpoint")
        for option, value in zip(names, args[1:]):
            options[option] = value
        for option, value in kwargs.items():
            if option not in names:
                close = difflib.get_close_matches(option, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(names)})"
                raise _Problem(key, f"{description!r}: unknown option {option!r} for a {kind} endpoint{hint}")
            if option in options:
                raise _Problem(key, f"{description!r}: {option} is given twice")
            options[option] = value
        if kind == "unix":
            if not options.get("address"):
                raise _Problem(key, f"{description!r}: a unix endpoint needs a socket path")
            options["address"] = self.resolve(options["address"])
            mode = options.get("mode")
            if mode is not None and not re.fullmatch("[0-7]{1,4}", mode):
                raise _Problem(key, f"{description!r}: mode {mode!r} is not an octal permission such as 660")
            if options.get("lockfile", "1") not in ("0", "1"):
                raise _Problem(key, f"{description!r}: lockfile must be 0 or 1")
        else:
            port = options.get("port", "")
            if not (port.isascii() and port.isdigit()) or int(port) > 65535:
                raise _Problem(key, f"{description!r}: port {port!r} is not a number from 0 to 65535")
        interface = options.get("interface")
        if interface:
            try:
                ipaddress.ip_address(interface)
            except ValueError:
                raise _Problem(key, f"{description!r}: interface {interface!r} is not an IP address") from None
        backlog = options.get("backlog")
        if backlog is not None and not (backlog.isascii() and backlog.isdigit() and int(backlog) > 0):
            raise _Problem(key, f"{description!r}: backlog {backlog!r} is not a positive number")
        cert = private = None
        if kind == "ssl":
            if "privateKey" not in options:
                raise _Problem(key, f"{description!r}: an ssl endpoint needs privateKey=FILE (and certKey=FILE)")
            for option in ("privateKey", "certKey", "extraCertChain", "dhParameters"):
                if option in options:
                    options[option] = self.resolve(options[option])
            private = options["privateKey"]
            cert = options.setdefault("certKey", private)
            for option in ("extraCertChain", "dhParameters"):
                if option in options:
                    _readable(key, options[option], option)
        if kind in ("ssl", "unix"):
            first = names[0]
            rewritten = ":".join(
                [kind, _escape(options[first])]
                + [f"{option}={_escape(value)}" for option, value in options.items() if option != first]
            )
        else:
            rewritten = description
        if kind == "ssl" and tls_may_be_missing:
            # The TLS files are generated at start-up; nothing to load yet.
            for path, option in ((private, "privateKey"), (cert, "certKey")):
                if path is not None and os.path.isdir(path):
                    raise _Problem(key, f"{option} {path!r} is a directory")
        else:
            if kind == "ssl":
                _readable(key, private or "", "privateKey")
                _readable(key, cert or "", "certKey")
            try:
                serverFromString(MemoryReactor(), rewritten)
            except Exception as e:
                what = "cannot set up TLS" if kind == "ssl" else "invalid endpoint"
                raise _Problem(key, f"{description!r}: {what}: {e or type(e).__name__}") from None
        return _Endpoint(rewritten, cert, private)

    def other_endpoint(self, key: str, description: str) -> _Endpoint:
        # A plugin endpoint type: let Twisted check it, on a reactor that
        # cannot listen.
        try:
            serverFromString(MemoryReactor(), description)
        except ValueError as e:
            if str(e).startswith("Unknown endpoint type"):
                forms = "tcp:PORT, ssl:PORT:privateKey=...:certKey=... or unix:PATH"
                raise _Problem(key, f"{description!r}: unknown endpoint type (use {forms})") from None
            raise _Problem(key, f"{description!r}: {e}") from None
        except Exception as e:
            raise _Problem(key, f"{description!r}: invalid endpoint: {e or type(e).__name__}") from None
        return _Endpoint(description)

    # -- CAs and policies --

    def cas(self, tables: list[dict[str, Any]]) -> tuple[CAConfig, ...]:
        result: list[CAConfig] = []
        for i, data in enumerate(tables):
            name = self.name(_Table(data, f"ca[{i + 1}]", tuple(data)))
            t = _Table(data, f'ca "{name}"', _ARRAYS["ca"])
            if any(ca.name == name for ca in result):
                t.fail("name", f"duplicate CA name {name!r}")
            result.append(self.ca(t, name))
        return tuple(result)

    def name(self, t: _Table) -> str:
        name: str = t.text("name")
        if not _NAME.match(name):
            t.fail("name", f"{name!r} is not a valid name (lower-case letters, digits, '_', '.', '-'; up to 63)")
        return name

    def ca(self, t: _Table, name: str) -> CAConfig:
        kind: CAKind = t.choice("kind", CAKind)
        if kind is CAKind.LOCAL:
            for option in ("directory", "ca_bundle", "contact", "eab_kid", "eab_hmac_key"):
                if t.has(option):
                    t.fail(option, 'only for kind = "acme"; a local CA has no upstream')
            return CAConfig(
                name=name,
                kind=kind,
                validity_days=t.integer("validity_days", 90, 1, 825),
                issue_delay=t.number("issue_delay", 0.0, positive=False),
            )
        for option in ("validity_days", "issue_delay"):
            if t.has(option):
                t.fail(option, 'only for kind = "local"')
        directory: str = t.text("directory")
        parts = _url(t.key("directory"), directory)
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            t.fail("directory", f"{directory!r}: http:// is only allowed for localhost; use https://")
        bundle: str | None = t.text("ca_bundle", None)
        if bundle is not None:
            bundle = self.resolve(bundle)
            _readable(t.key("ca_bundle"), bundle, "file")
            try:
                with open(bundle, "rb") as f:
                    x509.load_pem_x509_certificates(f.read())
            except (OSError, ValueError):
                t.fail("ca_bundle", f"{bundle!r} holds no PEM certificate")

        def mailto(key: str, value: str) -> str:
            if not value.startswith("mailto:") or "@" not in value:
                raise _Problem(key, f"{value!r} is not a mailto: URL such as 'mailto:ops@example.net'")
            return value

        contact = t.texts("contact", mailto)
        kid: str | None = t.text("eab_kid", None)
        hmac_key: str | None = t.text("eab_hmac_key", None)
        if (kid is None) != (hmac_key is None):
            missing = "eab_hmac_key" if hmac_key is None else "eab_kid"
            t.fail(missing, "missing: eab_kid and eab_hmac_key go together")
        if hmac_key is not None:
            self.check_hmac_key(t, hmac_key)
        return CAConfig(
            name=name,
            kind=kind,
            directory=directory,
            ca_bundle=bundle,
            contact=contact,
            eab_kid=kid,
            eab_hmac_key=hmac_key,
        )

    def check_hmac_key(self, t: _Table, value: str) -> None:
        # The key is a secret: problems describe it, never quote it.
        if not _B64URL.match(value) or len(value.rstrip("=")) % 4 == 1:
            t.fail("eab_hmac_key", "is not base64url: give the key exactly as the CA shows it (A-Z a-z 0-9 - _)")
        try:
            decoded = base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
        except (binascii.Error, ValueError):
            t.fail("eab_hmac_key", "is not base64url: give the key exactly as the CA shows it (A-Z a-z 0-9 - _)")
        if len(decoded) < 16:
            t.fail("eab_hmac_key", f"decodes to only {len(decoded)} bytes; an EAB HMAC key is at least 16")

    def policies(
        self, tables: list[dict[str, Any]], cas: tuple[CAConfig, ...], validation: ValidationConfig
    ) -> tuple[Policy, ...]:
        result: list[Policy] = []
        for i, data in enumerate(tables):
            name = self.name(_Table(data, f"policy[{i + 1}]", tuple(data)))
            t = _Table(data, f'policy "{name}"', _ARRAYS["policy"])
            if any(p.name == name for p in result):
                t.fail("name", f"duplicate policy name {name!r}")
            result.append(self.policy(t, name, {ca.name: ca for ca in cas}, validation))
        return tuple(result)

    def policy(
        self, t: _Table, name: str, cas: dict[str, CAConfig], validation: ValidationConfig
    ) -> Policy:
        def known_ca(option: str, ca: str) -> CAConfig:
            if ca not in cas:
                t.fail(option, f"unknown CA {ca!r} (configured: {', '.join(cas)})")
            return cas[ca]

        primary = known_ca("primary_ca", t.text("primary_ca"))
        backup_name: str | None = t.text("backup_ca", None)
        backup = known_ca("backup_ca", backup_name) if backup_name is not None else None
        if backup is primary:
            t.fail("backup_ca", f"is the same CA as primary_ca ({primary.name!r})")
        method: ValidationMethod = t.choice("validation", ValidationMethod)
        if method is ValidationMethod.NONE:
            for ca in (primary, backup):
                if ca is not None and ca.kind is not CAKind.LOCAL:
                    t.fail("validation", f'"none" is only for local CAs, and CA {ca.name!r} is kind "acme"')
        elif method is ValidationMethod.DNS_CNAME and validation.dns_zone is None:
            t.fail("validation", '"dns-cname" needs [validation] dns_zone')
        elif method is ValidationMethod.FILE_PROXY and validation.fileproxy_listen is None:
            t.fail("validation", '"file-proxy" needs [validation] fileproxy_listen')
        domains = t.texts("allowed_domains", lambda key, value: _dns_name(key, value, wildcard=True))
        if not domains:
            t.fail("allowed_domains", "missing or empty: list the names and *.patterns this policy may issue for")
        key_type_names = t.texts("key_types") if t.has("key_types") else ("rsa", "ecdsa")
        key_types = set()
        for value in key_type_names:
            if value not in ("rsa", "ecdsa"):
                t.fail("key_types", f"{value!r} is not one of 'rsa', 'ecdsa'")
            key_types.add(KeyType(value))
        if not key_types:
            t.fail("key_types", "must name at least one of 'rsa', 'ecdsa'")
        return Policy(
            name=name,
            primary_ca=primary.name,
            backup_ca=backup.name if backup is not None else None,
            validation=method,
            allowed_domains=tuple(dict.fromkeys(domains)),
            key_types=frozenset(key_types),
            rsa_min_bits=t.integer("rsa_min_bits", 2048, 2048, 8192),
        )

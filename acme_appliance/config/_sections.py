"""
The single tables: C{[acme]}, C{[admin]}, C{[storage]}, C{[validation]},
C{[notify]} and C{[issuance]}.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from ..notify import parse_syslog_target
from ..storage import Fsync, check_store_url, is_redis_url
from ._authorities import ca_bundle
from ._endpoints import check_endpoint
from ._limits import LIMITS_KEYS, RETENTION_KEYS
from ._model import (
    AcmeServerConfig,
    AdminConfig,
    ClusterConfig,
    IssuanceConfig,
    ListenersConfig,
    NotifyConfig,
    StorageConfig,
    ValidationConfig,
    WebhookConfig,
)
from ._table import Problem, Table, kind_of
from ._values import dns_name, is_ip, url

Resolve = Callable[[str], str]

#: The longest C{[acme] finalize_wait}: finalize never holds a request longer.
MAX_FINALIZE_WAIT = 10.0

#: The most C{[acme] workers}.
MAX_WORKERS = 64

#: The keys of each single table.
SECTIONS: dict[str, tuple[str, ...]] = {
    "acme": ("listen", "base_url", "self_signed_tls", "terms_of_service", "max_body_bytes", "finalize_wait", "workers"),
    "admin": ("listen", "api_key_file"),
    "storage": ("url", "state_dir", "ca_bundle", "wait_replicas", "fsync"),
    "validation": (
        "fileproxy_listen",
        "dns_zone",
        "dns_listen_port",
        "dns_listen_interface",
        "dns_nameservers",
        "dns_view_refresh",
        "value_ttl",
        "preflight",
        "resolver",
        "preflight_http_port",
        "preflight_allow_private",
    ),
    "notify": ("syslog", "webhooks", "webhook_secret", "webhook"),
    "issuance": ("order_deadline", "reuse_window", "retry_after", "order_lifetime"),
    "limits": LIMITS_KEYS,
    "retention": RETENTION_KEYS,
    "listeners": ("request_timeout", "max_connections"),
    "cluster": ("node_name",),
}


def acme(t: Table, resolve: Resolve) -> AcmeServerConfig:
    """
    C{[acme]}.
    """
    self_signed = t.flag("self_signed_tls", False)
    endpoint = check_endpoint(t.key("listen"), t.text("listen"), resolve, tls_may_be_missing=self_signed)
    if self_signed and endpoint.cert is None:
        t.fail("self_signed_tls", "only applies to an ssl: listen endpoint")
    base_url = t.text("base_url")
    parts = url(t.key("base_url"), base_url)
    if parts.query or parts.fragment:
        t.fail("base_url", f"{base_url!r} must not have a query or fragment")
    tos = t.text("terms_of_service", None)
    if tos is not None:
        url(t.key("terms_of_service"), tos)
    finalize_wait = t.number("finalize_wait", 1.0, positive=False)
    if finalize_wait > MAX_FINALIZE_WAIT:
        t.fail("finalize_wait", f"{finalize_wait:g} is out of range (0 to {MAX_FINALIZE_WAIT:g})")
    return AcmeServerConfig(
        listen=endpoint.description,
        base_url=base_url.rstrip("/"),
        self_signed_tls=self_signed,
        terms_of_service=tos,
        max_body_bytes=t.integer("max_body_bytes", 65536, 1024, 64 * 1024 * 1024),
        finalize_wait=finalize_wait,
        workers=t.integer("workers", 1, 1, MAX_WORKERS),
        tls_cert=endpoint.cert,
        tls_key=endpoint.key,
    )


def admin(t: Table, resolve: Resolve) -> AdminConfig:
    """
    C{[admin]}.
    """
    endpoint = check_endpoint(t.key("listen"), t.text("listen"), resolve, tls_may_be_missing=False)
    return AdminConfig(listen=endpoint.description, api_key_file=resolve(t.text("api_key_file")))


def storage(t: Table, resolve: Resolve) -> StorageConfig:
    """
    C{[storage]}.
    """
    store_url: str = t.text("url")
    problem = check_store_url(store_url)
    if problem is not None:
        t.fail("url", problem)
    scheme, _, rest = store_url.partition(":")
    if scheme.lower() == "sqlite":
        if rest.startswith("///"):
            rest = rest[2:]
        store_url = "sqlite:" + resolve(rest)
    bundle = ca_bundle(t, resolve)
    if bundle is not None and scheme.lower() != "rediss":
        t.fail("ca_bundle", "only applies to a rediss:// url")
    replicas = t.integer("wait_replicas", 0, 0, 100)
    if replicas and not is_redis_url(store_url):
        t.fail("wait_replicas", "only applies to a redis url")
    fsync = t.choice("fsync", Fsync, Fsync.EVERYSEC)
    if t.has("fsync") and scheme.lower() != "sqlite":
        t.fail("fsync", "only applies to a sqlite: url")
    return StorageConfig(
        url=store_url, state_dir=resolve(t.text("state_dir")), ca_bundle=bundle, wait_replicas=replicas, fsync=fsync
    )


def cluster(t: Table) -> ClusterConfig:
    """
    C{[cluster]}.
    """
    name = t.text("node_name", None)
    if name is None:
        return ClusterConfig(node_name=socket.gethostname())
    if not 1 <= len(name) <= 64 or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        t.fail("node_name", f"{name!r} must be 1-64 characters of letters, digits, '-', '_' and '.'")
    return ClusterConfig(node_name=name)


def validation(t: Table, resolve: Resolve) -> ValidationConfig:
    """
    C{[validation]}.
    """
    fileproxy: str | None = t.text("fileproxy_listen", None)
    if fileproxy is not None:
        fileproxy = check_endpoint(t.key("fileproxy_listen"), fileproxy, resolve, tls_may_be_missing=False).description
    zone: str | None = t.text("dns_zone", None)
    if zone is not None:
        zone = dns_name(t.key("dns_zone"), zone)
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
        dns_nameservers=t.texts("dns_nameservers", dns_name),
        dns_view_refresh=_view_refresh(t),
        value_ttl=t.integer("value_ttl", 600, 1, 86400),
        preflight=t.flag("preflight", True),
        resolver=_resolver(t),
        preflight_http_port=t.integer("preflight_http_port", 80, 1, 65535),
        preflight_allow_private=t.flag("preflight_allow_private", False),
    )


def _view_refresh(t: Table) -> float:
    seconds = t.number("dns_view_refresh", 1.0, positive=True)
    if seconds > 60:
        t.fail("dns_view_refresh", f"must be at most 60 seconds, got {seconds:g}")
    return seconds


def _resolver(t: Table) -> tuple[str, int] | None:
    value: str | None = t.text("resolver", None)
    if value is None:
        return None
    host, colon, port = value.rpartition(":")
    if not colon or is_ip(value.strip("[]")):
        host, port = value, "53"
    host = host.strip("[]")
    if not is_ip(host):
        t.fail("resolver", f"{value!r}: give an IP address, optionally with :PORT (e.g. 127.0.0.1:53)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        t.fail("resolver", f"{value!r}: the port must be 1 to 65535")
    return host, int(port)


def notify(t: Table, resolve: Resolve) -> NotifyConfig:
    """
    C{[notify]} and its C{[[notify.webhook]]} tables.
    """
    syslog: str | None = t.text("syslog", None)
    if syslog is not None:
        syslog = _syslog(t.key("syslog"), syslog, resolve)

    def webhook(key: str, value: str) -> str:
        url(key, value)
        return value

    hooks = []
    tables = t.get("webhook", (list,), "an array of tables [[notify.webhook]]", [])
    for i, data in enumerate(tables):
        if not isinstance(data, dict):
            t.fail("webhook", f"entry {i + 1}: expected a table with url and secret, got {kind_of(data)}")
        hook = Table(data, f"notify.webhook[{i + 1}]", ("url", "secret"))
        hooks.append(WebhookConfig(url=webhook(hook.key("url"), hook.text("url")), secret=hook.text("secret", None)))
    return NotifyConfig(
        syslog=syslog,
        webhooks=t.texts("webhooks", webhook),
        webhook_secret=t.text("webhook_secret", None),
        hooks=tuple(hooks),
    )


def _syslog(key: str, value: str, resolve: Resolve) -> str:
    # A relative unix: path is relative to the file, like every other path.
    scheme, _, rest = value.partition(":")
    if scheme == "unix" and rest:
        value = "unix:" + resolve(rest)
    try:
        parse_syslog_target(value)
    except ValueError as e:
        raise Problem(key, str(e)) from None
    return value


def issuance(t: Table, resolve: Resolve) -> IssuanceConfig:
    """
    C{[issuance]}.
    """
    return IssuanceConfig(
        order_deadline=t.number("order_deadline", 600.0, positive=True),
        reuse_window=t.number("reuse_window", 3600.0, positive=True),
        retry_after=t.integer("retry_after", 2, 1),
        order_lifetime=t.number("order_lifetime", 7 * 86400.0, positive=True),
    )


def listeners(t: Table, resolve: Resolve) -> ListenersConfig:
    """
    C{[listeners]}.
    """
    return ListenersConfig(
        request_timeout=t.number("request_timeout", 30.0, positive=True),
        max_connections=t.integer("max_connections", 0, 0, 1_000_000),
    )

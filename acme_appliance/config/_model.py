"""
The checked configuration: frozen values, every path absolute.
"""

from __future__ import annotations

import os
import socket
from enum import Enum

from attrs import field, frozen

from ..issuance import CALimit
from ..orders import Limits, Retention
from ..policy import Policy
from ..storage import Fsync


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
    @ivar finalize_wait: Seconds finalize may wait for the certificate
        before it answers C{processing} (C{0}: it does not wait).
    @ivar workers: Processes serving the listeners (C{1}: the twistd
        process alone; more: it starts C{workers - 1} worker processes
        sharing its listening sockets).
    """

    listen: str
    base_url: str
    self_signed_tls: bool = False
    terms_of_service: str | None = None
    max_body_bytes: int = 65536
    finalize_wait: float = 1.0
    workers: int = 1
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
    C{[storage]}: C{url} is C{memory:}, C{sqlite:/absolute/path} or a
    Redis URL (C{redis://}, C{rediss://}, C{redis+sentinel://}).

    @ivar ca_bundle: For C{rediss://}: the CA certificates Redis' own is
        verified by (C{None}: the system's).
    @ivar wait_replicas: For Redis: how many replicas each write that
        carries a promise waits for (C{WAIT}); 0: none.
    @ivar fsync: For SQLite: when commits reach the disk.
    """

    url: str
    state_dir: str
    ca_bundle: str | None = None
    wait_replicas: int = 0
    fsync: Fsync = Fsync.EVERYSEC


@frozen
class ClusterConfig:
    """
    C{[cluster]}: C{node_name} names this node in logs, events and
    C{/health} (default: the host name).
    """

    node_name: str


@frozen
class ValidationConfig:
    """
    C{[validation]}: the HTTP file proxy and the dcv DNS authority.

    @ivar value_ttl: Seconds a validation value lives at most.
    @ivar preflight: Check a name's delegation/forwarding before asking the CA.
    @ivar resolver: C{(address, port)} of the recursive resolver preflight
        checks use, ideally the one the CA sees the world through; C{None}:
        the system's (C{/etc/resolv.conf}).
    @ivar dns_view_refresh: Seconds between checks that the TXT values the
        DNS server keeps in memory (this process's) are still in the store
        (one another process or node withdrew may be served this long).
    @ivar preflight_http_port: The port the file-proxy preflight fetches
        customer names on (80 in production; CAs fetch http-01 there).
    @ivar preflight_allow_private: Let the file-proxy preflight fetch
        names that resolve to private, loopback, link-local and other
        non-global addresses (off: a tenant's DNS could point it at
        internal hosts).
    """

    fileproxy_listen: str | None = None
    dns_zone: str | None = None
    dns_listen_port: int = 53
    dns_listen_interface: str = "0.0.0.0"
    dns_nameservers: tuple[str, ...] = ()
    dns_view_refresh: float = 1.0
    value_ttl: int = 600
    preflight: bool = True
    resolver: tuple[str, int] | None = None
    preflight_http_port: int = 80
    preflight_allow_private: bool = False


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
class ListenersConfig:
    """
    C{[listeners]}: what every HTTP listener (and DNS over TCP) accepts.

    @ivar request_timeout: Seconds a request's line, headers and body may
        take to arrive in total.
    @ivar max_connections: Open connections per listener; C{0}: derived
        from the open-files limit.
    """

    request_timeout: float = 30.0
    max_connections: int = 0


@frozen
class CAConfig:
    """
    One C{[[ca]]}: an upstream ACME CA or the built-in local CA.

    @ivar validity_days: Certificate lifetime (local CAs only).
    @ivar issue_delay: Seconds before a local CA issues (tests and demos).
    @ivar profiles: C{(profile, validity days)} of the profiles a local CA
        issues with another lifetime than C{validity_days}.
    @ivar limits: The CA's own rate limits, kept as budgets
        (C{[[ca]] limits}).
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
    profiles: tuple[tuple[str, int], ...] = ()
    limits: tuple[CALimit, ...] = ()


@frozen
class Config:
    """
    A whole, checked configuration file.

    @ivar path: The file's absolute path.
    @ivar limits: C{[limits]}, the rate limits.
    @ivar retention: C{[retention]}, how long records are kept.
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
    limits: Limits = field(factory=Limits)
    retention: Retention = field(factory=Retention)
    listeners: ListenersConfig = ListenersConfig()
    cluster: ClusterConfig = field(factory=lambda: ClusterConfig(node_name=socket.gethostname()))

    def ca(self, name: str) -> CAConfig:
        """
        @raise KeyError: No C{[[ca]]} is called C{name}.
        """
        return {ca.name: ca for ca in self.cas}[name]

    def ca_limits(self) -> dict[str, tuple[CALimit, ...]]:
        """
        Each CA's C{limits}, by name.
        """
        return {ca.name: ca.limits for ca in self.cas}

    def policy(self, name: str) -> Policy:
        """
        @raise KeyError: No C{[[policy]]} is called C{name}.
        """
        return {policy.name: policy for policy in self.policies}[name]


def state_path(config: Config, *parts: str) -> str:
    """
    A path under C{[storage] state_dir}.
    """
    return os.path.join(config.storage.state_dir, *parts)

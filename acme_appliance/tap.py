"""
The twistd plugin's options and service: C{twistd -n acme-appliance --config FILE}.
"""

from __future__ import annotations

import gc
import re
import sys
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from attrs import evolve
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import IResource

from ._appliance import (
    IApplianceReactor,
    StartupError,
    build_cas,
    make_notifiers,
    make_responder,
    open_store_now,
    renewal_mirror,
)
from ._heap import HeapTrimService, malloc_trim
from ._listeners import BoundedSite, ConnectionLimit, ListenerLimits, default_max_connections
from ._logs import install_log_observer, log_target_of
from ._workers import AdoptionError, ListeningSockets, WorkerSupervisor
from .acme import AcmeServer, NonceSource, NonceTable, endpoint_of, redact_token, redact_uri
from .admin import AdminAPI, ensure_api_key
from .config import Config, ConfigError, load_config
from .core import ProblemType
from .issuance import BudgetLedger, BudgetPacer, IssuanceService, Revoker
from .notify import JOURNAL_WINDOW, EventBus, EventJournal
from .orders import AcmeRepository, RateLimiter, RenewalWindows
from .policy import TokenRegistry
from .stats import Metrics
from .storage import Store
from .tls import TLSSetupError, ensure_self_signed
from .validation import DcvAuthority, DcvDNSServerFactory, FileProxy, ValidationValues, make_dns_services

#: The name the nonce table of the worker processes is handed down under.
NONCE_TABLE = "nonces"


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = "Run the ACME appliance described by a TOML config file."
    optParameters = [["config", "c", None, "Path to the TOML configuration file."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")


def _redacted_referer(value: bytes | str) -> bytes:
    """
    A Referer fit for the access log: its path's directory token and its
    query's C{key} hidden, as in the request URI; bytes beyond ASCII are
    kept (and escaped in the line).
    """
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    parts = urlsplit(raw.decode("latin-1"))
    path = redact_token(parts.path.encode("latin-1")).decode("latin-1")
    query = redact_uri(b"?" + parts.query.encode("latin-1"))[1:].decode("latin-1")
    return urlunsplit(parts._replace(path=path, query=query)).encode("latin-1")


# The bytes repr() shows as they are, quotes and backslash aside: a value of
# only these is its own escape in the access log.
_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b"\\\"'")


def _escape(value: bytes | str) -> str:
    """
    twisted.web's access-log escaping (C{repr} as if between double
    quotes), without its work for the usual value that needs none.
    """
    raw = value if isinstance(value, bytes) else value.encode("ascii")
    if not raw.translate(None, _PLAIN):
        return raw.decode("ascii")
    shown = repr(raw)[1:]
    if shown.startswith("'"):
        return shown[1:-1].replace('"', '\\"').replace("\\'", "'")
    return shown[1:-1]


# A request URI as ACME clients send it, C{/acme/<token>/<resource>/<id>}:
# nothing encoded, no empty or dot segment, no query.  Its token is hidden
# in one match, as L{redact_uri} hides it.
_PLAIN_ACME_URI = re.compile(rb"/acme/[A-Za-z0-9_-]+((?:/[A-Za-z0-9_-]+)*)")
_REDACTED_ACME = redact_token(b"/acme/token")


def _redacted_uri(uri: bytes) -> bytes:
    """
    L{redact_uri}C{(uri)}, at once for a plain ACME URI.
    """
    plain = _PLAIN_ACME_URI.fullmatch(uri)
    return _REDACTED_ACME + plain[1] if plain else redact_uri(uri)


def redacting_log_formatter(timestamp: str, request: Any) -> str:
    """
    The access-log line twisted.web's C{combinedLogFormatter} writes, with
    the request's secrets hidden, however the client spelled them: the
    directory token in the path and the dashboard's log-in C{key} in the
    query, in the request URI and in the Referer.
    """
    address = request.getClientAddress()
    ip = address.host if isinstance(address, (IPv4Address, IPv6Address)) else b"-"
    referer = request.getHeader(b"referer")
    shown_referer = b"" if referer is None else _redacted_referer(referer)
    ip_text, method, uri = _escape(ip), _escape(request.method), _escape(_redacted_uri(request.uri))
    protocol, referer_text = _escape(request.clientproto), _escape(shown_referer or b"-")
    agent, length = _escape(request.getHeader(b"user-agent") or b"-"), request.sentLength or "-"
    return (
        f'"{ip_text}" - - {timestamp} "{method} {uri} {protocol}" {request.code:d} {length} "{referer_text}" "{agent}"'
    )


def site(
    resource: IResource,
    on_request: Callable[[Any], None] | None = None,
    limits: ListenerLimits | None = None,
    problem_type: str = "about:blank",
) -> BoundedSite:
    """
    A bounded Site with the token-redacting access log; C{on_request} sees
    every finished request (for the request metrics); a request over a
    limit gets a problem document of C{problem_type}.
    """
    return BoundedSite(
        resource,
        limits or ListenerLimits(),
        on_request,
        problem_type=problem_type,
        logFormatter=redacting_log_formatter,
    )


def listener_count(config: Config) -> int:
    """
    How many listeners share the open-files limit: ACME, admin, file proxy
    and DNS over TCP, as configured.
    """
    validation = config.validation
    return sum(
        (True, config.admin is not None, validation.fileproxy_listen is not None, validation.dns_zone is not None)
    )


def listener_limits(config: Config) -> ListenerLimits:
    """
    The limits of each listener, from C{[listeners]}.
    """
    listeners = config.listeners
    return ListenerLimits(
        request_timeout=listeners.request_timeout,
        max_connections=listeners.max_connections or default_max_connections(listener_count(config)),
    )


class ApplianceService(MultiService):
    """
    Every listener and worker of one appliance, sharing one store.

    @ivar worker: C{0} in the twistd process (the main worker); the number
        of a worker process (C{[acme] workers}) otherwise, which adopts the
        main worker's C{sockets} instead of binding, and leaves the admin
        listener and the renewal-information polling to the main worker.
    """

    _log = Logger()

    def __init__(
        self,
        config: Config,
        store: Store,
        reactor: IApplianceReactor,
        *,
        worker: int = 0,
        sockets: ListeningSockets | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.worker = worker
        self.sockets = sockets if sockets is not None else ListeningSockets(processes=config.acme.workers)
        #: The file twistd logs to (C{"-"}: stdout), bounded by L{install_log_observer}.
        self.log_file: str | None = None
        self.limits = listener_limits(config)
        self._bound = False
        self.store = store
        clock = reactor
        self.tokens = TokenRegistry(store, clock)
        self.repository = repository = AcmeRepository(store, clock=clock, retention=config.retention)
        policies = {p.name: p for p in config.policies}
        self.events = EventBus(clock, node=self.node)
        self.metrics = Metrics(store, clock)
        self.metrics.setServiceParent(self)
        self.events.subscribe(self.metrics.observe)
        limiter = RateLimiter(store=store, clock=clock, limits=config.limits, on_limited=self.metrics.limited)
        self._notifiers(config, reactor)
        self.values = ValidationValues(store)
        self._validation_listeners(config, reactor)
        cas = build_cas(
            config,
            reactor,
            responder=make_responder(config, self.values, reactor),
            store=store,
            on_request=self.metrics.upstream_request,
        )
        self.issuance = IssuanceService(
            repository=repository,
            cas=cas,
            policies=policies,
            clock=clock,
            events=self.events,
            deadline=config.issuance.order_deadline,
            reuse_window=config.issuance.reuse_window,
            tokens=self.tokens,
            limiter=limiter,
            node=self.node,
            budgets=BudgetLedger(store, clock, config.ca_limits(), on_change=self.metrics.budgets),
            journal=self.journal,
        )
        self.issuance.setServiceParent(self)
        # Renewal windows keep the pace of the CA budgets.
        pacer = BudgetPacer(self.issuance.budgets.limits, config.policies)
        self.renewals = RenewalWindows(repository, clock, pacer)
        self._acme(config, reactor, revoker=Revoker(repository, cas, clock), limiter=limiter)
        self._trim_heap(clock)
        if worker == 0:
            renewal_mirror(cas, repository=repository, clock=clock, events=self.events, pacer=pacer).setServiceParent(
                self
            )
            self._main_only(config, reactor)

    def _trim_heap(self, clock: IReactorTime) -> None:
        """
        Every process hands its C heap's free pages back now and then,
        where the C library can.
        """
        trim = malloc_trim()
        if trim is not None:
            HeapTrimService(trim, clock).setServiceParent(self)

    def _main_only(self, config: Config, reactor: IApplianceReactor) -> None:
        """
        The admin listener, and the worker processes, if any (last: they
        start once every listener is bound, and stop first).
        """
        if config.admin is not None:
            admin = self._admin(config, self.repository, reactor).resource()
            self._listen("admin", config.admin.listen, admin, reactor, self.limits, shared=False)
        if config.acme.workers > 1:
            self.supervisor = WorkerSupervisor(
                reactor, reactor, count=config.acme.workers, config=config.path, fds=self.sockets.fds
            )
            self.supervisor.setServiceParent(self)

    def _nonce_table(self) -> NonceTable:
        """
        The nonce table of the worker processes: made by the main worker,
        handed down to the others.
        """
        if self.worker == 0:
            table = NonceTable.create()
            self.sockets.hand_down(NONCE_TABLE, table.fileno())
            return table
        try:
            return NonceTable(self.sockets.handed_down(NONCE_TABLE))
        except AdoptionError as e:
            raise StartupError(str(e)) from None

    def _acme(self, config: Config, reactor: IApplianceReactor, *, revoker: Revoker, limiter: RateLimiter) -> None:
        # Nonces go through the store only where another node may redeem
        # them; the processes of one box share a table in memory instead:
        # redeeming a nonce costs no store write.
        if not config.storage.url.startswith(("memory:", "sqlite:")):
            self.nonces = NonceSource(reactor, store=self.store)
        elif config.acme.workers > 1:
            self.nonces = NonceSource(reactor, table=self._nonce_table())
        else:
            self.nonces = NonceSource(reactor)
        self.acme = AcmeServer(
            repository=self.repository,
            tokens=self.tokens,
            policies={p.name: p for p in config.policies},
            issuance=self.issuance,
            revoker=revoker,
            clock=reactor,
            base_url=config.acme.base_url,
            max_body_bytes=config.acme.max_body_bytes,
            terms_of_service=config.acme.terms_of_service,
            order_lifetime=config.issuance.order_lifetime,
            retry_after=config.issuance.retry_after,
            finalize_wait=config.acme.finalize_wait,
            events=self.events,
            limiter=limiter,
            nonces=self.nonces,
            renewals=self.renewals,
        )
        # Twice the ACME body limit reaches the server, which answers the
        # ones over it with a problem document.
        acme_limits = evolve(self.limits, max_body_bytes=2 * config.acme.max_body_bytes)
        self._listen("acme", config.acme.listen, self.acme.resource(), reactor, acme_limits, ProblemType.MALFORMED.urn)

    def _admin(self, config: Config, repository: AcmeRepository, clock: IReactorTime) -> AdminAPI:
        assert config.admin is not None
        try:
            api_key = ensure_api_key(config.admin.api_key_file)
        except (OSError, ValueError) as e:
            raise StartupError(f"admin.api_key_file: {e}") from None
        return AdminAPI(
            api_key=api_key,
            store=self.store,
            metrics=self.metrics,
            ca_health=self.issuance.health.snapshot,
            tokens=self.tokens,
            repository=repository,
            journal=self.journal,
            policies=config.policies,
            cas={ca.name: ca.kind.value for ca in config.cas},
            base_url=config.acme.base_url,
            events=self.events,
            clock=clock,
            node=self.node,
            jobs=self.issuance.jobs.holders,
        )

    @property
    def node(self) -> str:
        """
        This node's name in the cluster (C{[cluster] node_name}).
        """
        return self.config.cluster.node_name

    def _notifiers(self, config: Config, reactor: IApplianceReactor) -> None:
        self.journal = EventJournal(self.store, clock=reactor, window=JOURNAL_WINDOW)
        self.events.subscribe(self.journal)
        for sink in make_notifiers(config, reactor, on_drop=self.metrics.dropped):
            sink.setServiceParent(self)
            self.events.subscribe(sink)

    def _validation_listeners(self, config: Config, reactor: IApplianceReactor) -> None:
        validation = config.validation
        if validation.fileproxy_listen is not None:
            proxy = FileProxy(self.values).resource()
            self._listen("validation.fileproxy", validation.fileproxy_listen, proxy, reactor, self.limits)
        if validation.dns_zone is not None:
            view = self.values.txt_view(reactor, refresh_interval=validation.dns_view_refresh)
            view.setServiceParent(self)
            authority = DcvAuthority(
                validation.dns_zone,
                validation.dns_nameservers or (f"ns1.{validation.dns_zone}",),
                self.values,
                clock=reactor,
                view=view,
            )
            factory = DcvDNSServerFactory(authority, clock=reactor, max_tcp_connections=self.limits.max_connections)
            for service in make_dns_services(
                factory,
                port=validation.dns_listen_port,
                interface=validation.dns_listen_interface,
                reactor=self.sockets.reactor_for("dns", reactor),
            ):
                service.setServiceParent(self)

    def _listen(
        self,
        name: str,
        description: str,
        resource: IResource,
        reactor: IApplianceReactor,
        limits: ListenerLimits,
        problem_type: str = "about:blank",
        *,
        shared: bool = True,
    ) -> None:
        """
        Listen on C{description}; a C{shared} listener is served by every
        worker process too.
        """
        try:
            endpoint = serverFromString(self.sockets.reactor_for(name, reactor) if shared else reactor, description)
        except (ValueError, OSError) as e:
            raise StartupError(f"{name}.listen {description!r}: {e}") from None
        factory = site(
            resource,
            lambda request: self.metrics.request(name, endpoint_of(request.path), request.code),
            limits,
            problem_type,
        )
        service = StreamServerEndpointService(endpoint, ConnectionLimit(factory, limits.max_connections, name))
        service._raiseSynchronously = True
        service.setName(name)
        service.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        # twistd makes the service, then the application, then the logger.
        install_log_observer(parent, self.log_file)

    def privilegedStartService(self) -> None:
        """
        Bind every listener (once: L{makeService} binds before twistd
        daemonizes); a port that cannot be bound exits with the reason.
        """
        if self._bound:
            return
        self._bound = True
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            sys.exit(f"acme-appliance: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}")

    def startService(self) -> None:
        super().startService()
        # What start-up built lives as long as the process: the collector
        # need not scan it again (a full collection of everything stalls the
        # reactor for tens of milliseconds).
        gc.freeze()
        if self.worker == 0:
            Deferred.fromCoroutine(self._index_stored_orders())
            Deferred.fromCoroutine(self._greet())
        Deferred.fromCoroutine(self._share_nonces())

    async def _share_nonces(self) -> None:
        try:
            await self.nonces.share()
        except Exception:
            # Until then, nonces are this node's own; the first nonce of
            # another node it meets tries again.
            self._log.failure("cannot read the nonce secret the cluster shares")

    async def _index_stored_orders(self) -> None:
        try:
            count = await self.repository.index_stored_orders()
            certificates = await self.repository.index_stored_certificates()
        except Exception:
            self._log.failure("cannot index the orders stored by an earlier version")
            return
        if count:
            self._log.info("indexed {count} order(s) stored by an earlier version", count=count)
        if certificates:
            self._log.info("indexed {count} certificate(s) for renewal information", count=certificates)

    async def _greet(self) -> None:
        tokens = await self.tokens.list()
        active = [t for t in tokens if t.active]
        self._log.info(
            "acme-appliance {node} ready: ACME at {base_url}, {count} active token(s)",
            node=self.node,
            base_url=self.config.acme.base_url,
            count=len(active),
        )
        if not active:
            self._log.info(
                "create a directory URL with: acme-appliance token create --config {config} --policy {policy}",
                config=self.config.path,
                policy=self.config.policies[0].name,
            )

    def stopService(self) -> Deferred[None]:
        d: Deferred[Any] = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        gc.unfreeze()
        await super().stopService()
        # What the stopping services counted and told after the metrics
        # and the journal's gathering stopped.
        await self.metrics.flush()
        await self.journal.flush()
        await self.store.close()


def makeService(options: Options) -> IService:
    from twisted.internet import reactor as global_reactor

    # The one place that names the global reactor, which provides all of it.
    reactor = cast(IApplianceReactor, global_reactor)
    try:
        config = load_config(options["config"])
        if config.acme.self_signed_tls and config.acme.tls_cert and config.acme.tls_key:
            host = urlsplit(config.acme.base_url).hostname or "localhost"
            names = list(dict.fromkeys([host, "localhost", "127.0.0.1"]))
            ensure_self_signed(config.acme.tls_cert, config.acme.tls_key, names, clock=reactor)
        store = open_store_now(config, reactor)
        service = ApplianceService(config, store, reactor)
        service.log_file = log_target_of(getattr(options, "parent", None))
    except (ConfigError, StartupError) as e:
        sys.exit(f"acme-appliance: {e}")
    except TLSSetupError as e:
        sys.exit(f"acme-appliance: acme.self_signed_tls: {e}")
    if _daemonizes(options):
        # Bind before twistd forks: its parent only learns of failures that
        # are Exceptions (and cuts their message), so a taken port would
        # leave it waiting on its status pipe.  Exits with the reason, as
        # with -n.
        service.privilegedStartService()
    return service


def _daemonizes(options: Options) -> bool:
    twistd = options.parent
    return twistd is not None and not twistd.get("nodaemon", True)

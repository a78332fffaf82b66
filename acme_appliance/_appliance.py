"""
Wiring: builds the appliance's parts from a L{Config}.  Used by C{tap.py}
(the daemon) and C{cli.py} (operator commands), so both see the same store
and the same CAs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from treq.client import HTTPClient
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorProcess,
    IReactorSSL,
    IReactorTime,
    IReactorUNIX,
    IReactorUNIXDatagram,
    IResolver,
)
from twisted.internet.task import deferLater
from twisted.names import cache, hosts, resolve
from twisted.names import client as names_client
from twisted.web.client import Agent, HTTPConnectionPool

from . import storage
from .ca import CertificateAuthority, ChallengeResponder
from .ca.local import LocalCA, LocalCAError
from .ca.upstream import IUpstreamReactor, UpstreamAcmeCA, http_client_for
from .config import CAKind, Config, state_path
from .notify import Event, EventBus, EventJournal, SyslogNotifier, Webhook, WebhookNotifier, parse_syslog_target
from .orders import AcmeRepository, RenewalWindows, UpstreamRenewalMirror, WindowPacer
from .storage import Store
from .validation import IDNSReactor, NameTurns, Preflight, ValidationResponder, ValidationValues


class IApplianceReactor(
    IUpstreamReactor,
    IDNSReactor,
    IReactorCore,
    IReactorSSL,
    IReactorUNIX,
    IReactorUNIXDatagram,
    IReactorFromThreads,
    IReactorProcess,
):
    """
    What the appliance needs of its reactor: listeners of every kind, UDP
    and unix datagrams (DNS, syslog), threads (SQLite), name resolution,
    processes (worker processes) and time.  The global reactor provides it; only C{tap} and the CLI
    name that.
    """


P = ParamSpec("P")


class StartupError(Exception):
    """
    The appliance cannot start; the message is one line for the operator.
    """


def local_ca(config: Config, name: str, clock: IReactorTime) -> LocalCA:
    """
    The built-in CA C{name}, created under the state directory on first use.
    """
    try:
        ca = config.ca(name)
    except KeyError:
        raise StartupError(f"{config.path}: no [[ca]] named {name!r}") from None
    if ca.kind is not CAKind.LOCAL:
        raise StartupError(f"{config.path}: ca {name!r} is kind {ca.kind.value!r}, not 'local'")
    try:
        return LocalCA.load_or_create(
            name,
            state_path(config, "ca", name),
            clock=clock,
            validity_days=ca.validity_days,
            issue_delay=ca.issue_delay,
            profiles=dict(ca.profiles),
        )
    except (LocalCAError, OSError) as e:
        raise StartupError(f"ca {name!r}: {e}") from None


def preflight_resolver(servers: list[tuple[str, int]] | None, reactor: IApplianceReactor) -> IResolver:
    """
    What C{names.client.createResolver} builds (hosts file, cache, the
    resolv.conf or given servers) on C{reactor}, not the global one.
    """
    return resolve.ResolverChain(
        [
            hosts.Resolver(b"/etc/hosts"),
            cache.CacheResolver(reactor=reactor),
            names_client.Resolver(b"/etc/resolv.conf", servers, reactor=reactor),
        ]
    )


def make_responder(config: Config, values: ValidationValues, reactor: IApplianceReactor) -> ValidationResponder:
    """
    What answers upstream challenges: the dcv zone and the file proxy, with
    preflight checks through the configured resolver.
    """
    validation = config.validation
    preflight = None
    if validation.preflight:
        servers = [validation.resolver] if validation.resolver else None
        resolver = preflight_resolver(servers, reactor)
        preflight = Preflight(
            resolver=resolver,
            # A plain Agent: no redirects, no Accept-Encoding, no decoding.
            agent=Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False), connectTimeout=10),
            clock=reactor,
            values=values,
            dns_zone=validation.dns_zone,
            http_port=validation.preflight_http_port,
            allow_private=validation.preflight_allow_private,
        )
    turns = NameTurns(values.store, reactor)
    return ValidationResponder(values, ttl=validation.value_ttl, preflight=preflight, turns=turns)


def build_cas(
    config: Config,
    reactor: IApplianceReactor,
    *,
    responder: ChallengeResponder,
    store: Store,
    on_request: Callable[[str, str], object] = lambda ca, result: None,
) -> dict[str, CertificateAuthority]:
    """
    Every configured CA: built-in ones loaded (or created) from the state
    directory, upstream ACME ones as clients sharing the store (for their
    account keys) and the challenge responder.  C{on_request} is told
    C{(ca, result)} after each request to an upstream CA.
    """
    cas: dict[str, CertificateAuthority] = {}
    for ca in config.cas:
        if ca.kind is CAKind.LOCAL:
            cas[ca.name] = local_ca(config, ca.name, reactor)
            continue
        assert ca.directory is not None
        try:
            http = http_client_for(reactor, ca.ca_bundle, ca=ca.name, on_request=on_request)
        except (OSError, ValueError) as e:
            raise StartupError(f"ca {ca.name!r}.ca_bundle: {e}") from None
        cas[ca.name] = UpstreamAcmeCA(
            name=ca.name,
            directory_url=ca.directory,
            http=http,
            clock=reactor,
            store=store,
            responder=responder,
            contact=ca.contact,
            eab_kid=ca.eab_kid,
            eab_hmac_key=ca.eab_hmac_key,
        )
    return cas


def renewal_mirror(
    cas: dict[str, CertificateAuthority],
    *,
    repository: AcmeRepository,
    clock: IReactorTime,
    events: EventBus,
    pacer: WindowPacer | None = None,
) -> UpstreamRenewalMirror:
    """
    The service that mirrors the upstream ACME CAs' renewal information
    (RFC 9773) onto the certificates they issued (whose windows C{pacer}
    paces).
    """
    sources = {name: ca for name, ca in cas.items() if isinstance(ca, UpstreamAcmeCA)}
    windows = RenewalWindows(repository, clock, pacer)
    return UpstreamRenewalMirror(repository=repository, windows=windows, sources=sources, clock=clock, events=events)


async def open_store(config: Config, reactor: IApplianceReactor) -> Store:
    """
    Open the configured store (for the CLI, inside a running reactor).
    """
    return await storage.open_store(
        config.storage.url,
        reactor=reactor,
        clock=reactor,
        base_dir=os.path.dirname(config.path),
        ca_bundle=config.storage.ca_bundle,
        wait_replicas=config.storage.wait_replicas,
        fsync=config.storage.fsync,
    )


def open_store_now(config: Config, reactor: IApplianceReactor) -> Store:
    """
    Open the configured store before the reactor runs (for C{twistd}), so
    that a bad database path stops start-up with one line.  A Redis store
    connects once the reactor runs (and keeps reconnecting).
    """
    problem = storage.check_store_url(config.storage.url)
    if problem is not None:
        raise StartupError(f"storage.url: {problem}")
    if config.storage.url == "memory:":
        return storage.MemoryStore(reactor)
    if config.storage.url.startswith("sqlite:"):
        path = config.storage.url[len("sqlite:") :]  # made absolute by load_config
        try:
            return storage.SQLiteStore.open_now(path, reactor=reactor, clock=reactor, fsync=config.storage.fsync)
        except storage.StorageError as e:
            raise StartupError(f"storage.url: {e}") from None
    try:
        return storage.redis_store(
            config.storage.url,
            reactor=reactor,
            clock=reactor,
            ca_bundle=config.storage.ca_bundle,
            wait_replicas=config.storage.wait_replicas,
        )
    except storage.StorageError as e:
        raise StartupError(f"storage: {e}") from None


def make_notifiers(
    config: Config, reactor: IApplianceReactor, *, on_drop: Callable[[str], object] = lambda sink: None
) -> list[SyslogNotifier | WebhookNotifier]:
    """
    The configured notification sinks (services to start, and L{EventBus}
    subscribers); C{on_drop} is told the sink's name for each event a sink
    drops.
    """
    sinks: list[SyslogNotifier | WebhookNotifier] = []
    if config.notify.syslog is not None:
        try:
            target = parse_syslog_target(config.notify.syslog)
        except ValueError as e:
            raise StartupError(f"notify.syslog: {e}") from None
        sinks.append(SyslogNotifier(reactor, target, on_drop=lambda event: on_drop("syslog")))
    hooks = [Webhook(hook.url, hook.secret) for hook in config.notify.all_webhooks()]
    if hooks:
        pool = HTTPConnectionPool(reactor, persistent=True)
        sinks.append(
            WebhookNotifier(
                hooks,
                http=HTTPClient(Agent(reactor, pool=pool, connectTimeout=10)),
                clock=reactor,
                on_drop=lambda event: on_drop("webhook"),
            )
        )
    return sinks


#: How long L{announce} waits for the sinks to deliver its event.
ANNOUNCE_WAIT = 5.0


async def announce(
    config: Config,
    store: Store,
    reactor: IApplianceReactor,
    kind: Callable[Concatenate[float, P], Event],
    /,
    *args: P.args,
    **fields: P.kwargs,
) -> None:
    """
    Emit one C{kind} event from a short-lived process (the CLI): journal it
    in the store and hand it to the configured sinks, waiting up to
    L{ANNOUNCE_WAIT} seconds for them to deliver.
    """
    events = EventBus(reactor)
    sinks = make_notifiers(config, reactor)
    for sink in sinks:
        sink.startService()
        events.subscribe(sink)
    event = events.emit(kind, *args, **fields)
    await EventJournal(store).record(event)
    deadline = reactor.seconds() + ANNOUNCE_WAIT
    while any(sink.pending() for sink in sinks) and reactor.seconds() < deadline:
        await deferLater(reactor, 0.05)
    for sink in sinks:
        await maybeDeferred(sink.stopService)

"""
Wiring: builds the appliance's parts from a L{Config}.  Used by C{tap.py}
(the daemon) and C{cli.py} (operator commands), so both see the same store
and the same CAs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.names import client as names_client
from twisted.web.client import Agent, HTTPConnectionPool

from . import storage
from .ca import CertificateAuthority, ChallengeResponder
from .ca.acme import AcmeCA, http_client_for
from .ca.local import LocalCA, LocalCAError
from .config import CAKind, Config, state_path
from .notify import EventBus
from .storage import Store
from .validation import Preflight, ValidationResponder, ValidationValues


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
        )
    except (LocalCAError, OSError) as e:
        raise StartupError(f"ca {name!r}: {e}") from None


def make_responder(config: Config, values: ValidationValues, reactor: Any) -> ValidationResponder:
    """
    What answers upstream challenges: the dcv zone and the file proxy, with
    preflight checks through the configured resolver.
    """
    validation = config.validation
    preflight = None
    if validation.preflight:
        servers = [validation.resolver] if validation.resolver else None
        resolver = names_client.createResolver(servers=servers)
        preflight = Preflight(
            resolver=resolver,
            http=HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))),
            values=values,
            dns_zone=validation.dns_zone,
            http_port=validation.preflight_http_port,
        )
    return ValidationResponder(values, ttl=validation.value_ttl, preflight=preflight)


def build_cas(
    config: Config,
    reactor: Any,
    *,
    responder: ChallengeResponder,
    store: Store,
    events: EventBus | None = None,
    on_request: Callable[[str, str], object] = lambda ca, result: None,
) -> dict[str, CertificateAuthority]:
    """
    Every configured CA: built-in ones loaded (or created) from the state
    directory, upstream ACME ones as clients sharing the store (for their
    account keys) and the challenge responder.
    """
    cas: dict[str, CertificateAuthority] = {}
    for ca in config.cas:
        if ca.kind is CAKind.LOCAL:
            cas[ca.name] = local_ca(config, ca.name, reactor)
            continue
        assert ca.directory is not None
        try:
            http = http_client_for(reactor, ca.ca_bundle)
        except (OSError, ValueError) as e:
            raise StartupError(f"ca {ca.name!r}.ca_bundle: {e}") from None
        cas[ca.name] = AcmeCA(
            name=ca.name,
            directory_url=ca.directory,
            http=http,
            clock=reactor,
            store=store,
            responder=responder,
            contact=ca.contact,
            eab_kid=ca.eab_kid,
            eab_hmac_key=ca.eab_hmac_key,
            events=events,
            on_request=on_request,
        )
    return cas


async def open_store(config: Config, reactor: Any) -> Store:
    """
    Open the configured store (for the CLI, inside a running reactor).
    """
    return await storage.open_store(
        config.storage.url, reactor=reactor, clock=reactor, base_dir=os.path.dirname(config.path)
    )


def open_store_now(config: Config, reactor: Any) -> Store:
    """
    Open the configured store before the reactor runs (for C{twistd}), so
    that a bad database path stops start-up with one line.
    """
    problem = storage.check_store_url(config.storage.url)
    if problem is not None:
        raise StartupError(f"storage.url: {problem}")
    if config.storage.url == "memory:":
        return storage.MemoryStore(reactor)
    if config.storage.url.startswith("sqlite:"):
        path = config.storage.url[len("sqlite:") :]  # made absolute by load_config
        try:
            return storage.SQLiteStore.open_now(path, reactor=reactor, clock=reactor)
        except storage.StorageError as e:
            raise StartupError(f"storage.url: {e}") from None
    raise StartupError(f"storage.url: {config.storage.url!r} is not available in this version yet")

"""
Wiring: builds the appliance's parts from a L{Config}.  Used by C{tap.py}
(the daemon) and C{cli.py} (operator commands), so both see the same store
and the same CAs.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.interfaces import IReactorTime

from . import storage
from .ca import CertificateAuthority
from .ca.local import LocalCA, LocalCAError
from .config import CAKind, Config, state_path
from .storage import Store


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


def build_cas(config: Config, clock: IReactorTime, **kw: Any) -> dict[str, CertificateAuthority]:
    cas: dict[str, CertificateAuthority] = {}
    for ca in config.cas:
        if ca.kind is CAKind.LOCAL:
            cas[ca.name] = local_ca(config, ca.name, clock)
        else:
            raise StartupError(
                f"{config.path}: ca {ca.name!r}: kind 'acme' (upstream CAs) is not available in this version yet"
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

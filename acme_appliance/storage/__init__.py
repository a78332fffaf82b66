"""
The appliance's key-value storage: the L{Store} interface, its backends and
the C{[storage] url} that picks one.
"""

from __future__ import annotations

import os
from enum import Enum
from urllib.parse import urlsplit

import attrs
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime

from . import keys
from ._interface import StorageError, Store
from ._records import dump_record, get_record, load_record, put_record
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
    "SQLiteStore",
    "StorageError",
    "Store",
    "check_store_url",
    "dump_record",
    "get_record",
    "keys",
    "load_record",
    "open_store",
    "put_record",
]

_FORMS = "memory:, sqlite:PATH or redis://host[:port][/db]"


class _Backend(Enum):
    MEMORY = "memory"
    SQLITE = "sqlite"
    REDIS = "redis"


@attrs.frozen
class _StoreURL:
    backend: _Backend
    path: str = ""
    host: str = ""
    port: int = 6379
    db: int = 0


def _parse_store_url(url: str) -> _StoreURL:
    """
    @raise StorageError: C{url} is not one of the supported forms; the
        message is one line for the operator.
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage URL is empty; use {_FORMS}")
    scheme, colon, rest = url.partition(":")
    if not colon or not scheme:
        raise StorageError(f"storage URL {url!r} has no scheme; use {_FORMS}")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise StorageError(f"storage URL {url!r}: memory: takes nothing after the colon")
        return _StoreURL(_Backend.MEMORY)
    if scheme == "sqlite":
        path = rest
        if path.startswith("//"):
            # The URL form sqlite:///abs/path has an empty host; any other
            # host is a mistake (sqlite://state.db would mean /state.db).
            if not path.startswith("///"):
                raise StorageError(
                    f"storage URL {url!r}: sqlite takes a file path, not a host; "
                    "use sqlite:state.db or sqlite:/absolute/path"
                )
            path = path[2:]
        if not path:
            raise StorageError(f"storage URL {url!r}: sqlite needs a file path, e.g. sqlite:state.db")
        if "\0" in path:
            raise StorageError(f"storage URL {url!r}: the sqlite path contains a NUL character")
        if path.endswith(("/", os.sep)):
            raise StorageError(f"storage URL {url!r}: the sqlite path names a directory, not a file")
        return _StoreURL(_Backend.SQLITE, path=path)
    if scheme == "redis":
        return _parse_redis(url)
    raise StorageError(f"unsupported storage URL scheme {scheme!r}; use {_FORMS}")


def _parse_redis(url: str) -> _StoreURL:
    # The URL may hold a password: messages name the part, not the URL.
    if not url[len("redis") :].startswith("://"):
        raise StorageError("redis storage URL must look like redis://host[:port][/db]")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise StorageError("redis storage URL: unexpected '?' or '#' part; use redis://host[:port][/db]")
    host = parts.hostname
    if not host:
        raise StorageError("redis storage URL has no host; use redis://host[:port][/db]")
    try:
        port = parts.port
    except ValueError:
        raise StorageError(f"redis storage URL for host {host!r}: the port is not a number from 0 to 65535") from None
    if port == 0:
        raise StorageError(f"redis storage URL for host {host!r}: port 0 is not valid")
    db_text = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not db_text:
        db = 0
    elif db_text.isascii() and db_text.isdigit():
        db = int(db_text)
    else:
        raise StorageError(f"redis storage URL for host {host!r}: the database {db_text!r} is not a number")
    return _StoreURL(_Backend.REDIS, host=host, port=6379 if port is None else port, db=db)


def check_store_url(url: str) -> str | None:
    """
    Check a C{[storage] url} without opening anything.

    @return: A one-line description of what is wrong with C{url}, or
        C{None} when it is one of C{memory:}, C{sqlite:PATH} or
        C{redis://host[:port][/db]}.
    """
    try:
        _parse_store_url(url)
    except StorageError as e:
        return str(e)
    return None


async def open_store(url: str, *, reactor: IReactorFromThreads, clock: IReactorTime, base_dir: str) -> Store:
    """
    Open the store that C{url} names.

    @param url: C{memory:}, C{sqlite:PATH} or C{redis://host[:port][/db]}.
    @param reactor: Runs the backend's I/O (threads, connections).
    @param clock: Source of the current time for TTL expiry.
    @param base_dir: What a relative C{sqlite:} path is relative to (the
        configuration file's directory).
    @raise StorageError: C{url} is malformed, names an unavailable backend,
        or the store cannot be opened.
    """
    parsed = _parse_store_url(url)
    if parsed.backend is _Backend.MEMORY:
        return MemoryStore(clock)
    if parsed.backend is _Backend.SQLITE:
        return await SQLiteStore.open(os.path.join(base_dir, parsed.path), reactor=reactor, clock=clock)
    raise StorageError("redis storage is not available yet")

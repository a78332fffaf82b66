"""
The appliance's key-value storage: the L{Store} interface, its backends and
the C{[storage] url} that picks one.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import cast
from urllib.parse import unquote, urlsplit

import attrs
from twisted.internet.interfaces import IReactorFromThreads, IReactorTCP, IReactorTime

from . import keys, redis
from ._interface import Put, StorageError, Store, Swap, Write
from ._leases import Lease, try_lease, wait_for_lease
from ._records import dump_record, get_record, load_record, put_record, record_bytes
from .memory import MemoryStore
from .redis import RedisAddress, RedisStore
from .sqlite import Fsync, SQLiteStore

__all__ = [
    "Fsync",
    "Lease",
    "MemoryStore",
    "Put",
    "RedisAddress",
    "RedisStore",
    "SQLiteStore",
    "StorageError",
    "Store",
    "Swap",
    "Write",
    "check_store_url",
    "dump_record",
    "get_record",
    "is_redis_url",
    "keys",
    "load_record",
    "open_store",
    "put_record",
    "record_bytes",
    "redis_store",
    "try_lease",
    "wait_for_lease",
]

_FORMS = "memory:, sqlite:PATH, redis://host[:port][/db], rediss://... or redis+sentinel://..."
_REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel")


class _Backend(Enum):
    MEMORY = "memory"
    SQLITE = "sqlite"
    REDIS = "redis"


@attrs.frozen
class _StoreURL:
    backend: _Backend
    path: str = ""
    redis: RedisAddress | None = None


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
    if scheme in _REDIS_SCHEMES:
        return _StoreURL(_Backend.REDIS, redis=_parse_redis(url))
    raise StorageError(f"unsupported storage URL scheme {scheme!r}; use {_FORMS}")


_REDIS_FORMS = (
    "redis://[:password@]host[:port][/db], rediss://[:password@]host[:port][/db] "
    "or redis+sentinel://[:password@]host[:port][,host[:port]...]/master[/db]"
)


def _redis_netloc(url: str) -> tuple[str, str, str | None, str | None]:
    """
    Split a Redis URL into its scheme, host part, user name and password,
    and the path; messages never show the password.
    """
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "?" in rest or "#" in rest:
        raise StorageError(f"{scheme} storage URL: unexpected '?' or '#' part; use {_REDIS_FORMS}")
    userinfo, at, hosts = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if not colon:
            raise StorageError(f"{scheme} storage URL: the part before '@' must be :password or user:password")
        username = unquote(user) or None
        password = unquote(secret)
    return hosts, slash + path, username, password


def _redis_host(scheme: str, text: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(f"//{text}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise StorageError(f"{scheme} storage URL: the port in {text!r} is not a number from 1 to 65535") from None
    if not host:
        raise StorageError(f"{scheme} storage URL has no host; use {_REDIS_FORMS}")
    if port == 0:
        raise StorageError(f"{scheme} storage URL for host {host!r}: port 0 is not valid")
    return host, default_port if port is None else port


def _redis_db(scheme: str, text: str) -> int:
    if not text:
        return 0
    if text.isascii() and text.isdigit():
        return int(text)
    raise StorageError(f"{scheme} storage URL: the database {text!r} is not a number")


def _parse_redis(url: str) -> RedisAddress:
    # The URL may hold a password: messages name the part, not the URL.
    scheme = url.partition(":")[0].lower()
    if not url[len(scheme) :].startswith("://"):
        raise StorageError(f"{scheme} storage URL must look like {_REDIS_FORMS}")
    hosts, path, username, password = _redis_netloc(url)
    if scheme == "redis+sentinel":
        sentinels = tuple(_redis_host(scheme, h, 26379) for h in hosts.split(","))
        master, _, db = path[1:].partition("/")
        if not master:
            raise StorageError(f"{scheme} storage URL names no master; use {_REDIS_FORMS}")
        return RedisAddress(
            db=_redis_db(scheme, db), username=username, password=password, sentinels=sentinels, master=master
        )
    if "," in hosts:
        raise StorageError(f"{scheme} storage URL: one host only; several are for redis+sentinel://")
    host, port = _redis_host(scheme, hosts, 6379)
    return RedisAddress(
        host=host,
        port=port,
        db=_redis_db(scheme, path[1:]),
        username=username,
        password=password,
        tls=scheme == "rediss",
    )


def check_store_url(url: str) -> str | None:
    """
    Check a C{[storage] url} without opening anything.

    @return: A one-line description of what is wrong with C{url} (never
        showing a password), or C{None} when it is one of C{memory:},
        C{sqlite:PATH}, C{redis://}, C{rediss://} or C{redis+sentinel://}.
    """
    try:
        _parse_store_url(url)
    except StorageError as e:
        return str(e)
    return None


def is_redis_url(url: str) -> bool:
    """
    Whether C{url} names a Redis store (of any of its forms).
    """
    return url.partition(":")[0].lower() in _REDIS_SCHEMES


def redis_store(
    url: str,
    *,
    reactor: IReactorTCP,
    clock: IReactorTime,
    ca_bundle: str | None = None,
    wait_replicas: int = 0,
    timeout: float = redis.TIMEOUT,
) -> RedisStore:
    """
    The L{RedisStore} that C{url} names, not yet connected (it connects on
    first use).

    @param reactor: Makes the connections: an C{IReactorTCP} and
        C{IReactorTime}.
    @raise StorageError: C{url} is not a Redis URL, or C{ca_bundle} cannot
        be used.
    """
    parsed = _parse_store_url(url)
    if parsed.redis is None:
        raise StorageError("not a redis storage URL")
    return RedisStore(
        parsed.redis, reactor=reactor, clock=clock, ca_bundle=ca_bundle, wait_replicas=wait_replicas, timeout=timeout
    )


async def open_store(
    url: str,
    *,
    reactor: IReactorFromThreads,
    clock: IReactorTime,
    base_dir: str,
    ca_bundle: str | None = None,
    wait_replicas: int = 0,
    fsync: Fsync = Fsync.EVERYSEC,
) -> Store:
    """
    Open the store that C{url} names.

    @param url: C{memory:}, C{sqlite:PATH} or a Redis URL.
    @param reactor: Runs the backend's I/O (threads, connections).
    @param clock: Source of the current time for TTL expiry.
    @param base_dir: What a relative C{sqlite:} path is relative to (the
        configuration file's directory).
    @param ca_bundle: For C{rediss://}: the CA certificates Redis' is
        verified by.
    @param wait_replicas: For Redis: how many replicas each promised write
        waits for.
    @param fsync: For SQLite: when commits reach the disk.
    @raise StorageError: C{url} is malformed, or the store cannot be
        opened (for Redis: does not answer).
    """
    parsed = _parse_store_url(url)
    if parsed.backend is _Backend.MEMORY:
        return MemoryStore(clock)
    if parsed.backend is _Backend.SQLITE:
        return await SQLiteStore.open(os.path.join(base_dir, parsed.path), reactor=reactor, clock=clock, fsync=fsync)
    store = redis_store(
        url, reactor=cast(IReactorTCP, reactor), clock=clock, ca_bundle=ca_bundle, wait_replicas=wait_replicas
    )
    try:
        await store.get(keys.HEALTH_PROBE)
    except BaseException:
        await store.close()
        raise
    return store

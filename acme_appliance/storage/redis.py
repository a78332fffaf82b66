"""
The shared L{Store}: Redis, through txredisapi, for appliances that run as
several nodes (or that want their state outside the process's disk).

Every atomic operation is one Lua script, so Redis runs it alone.  An entry is
a hash: its value in field C{v} and, when it has a TTL, its expiry (seconds,
from the store's clock) in field C{e}.  The scripts compare C{e} with the
C{now} they are given, as the SQLite store compares its C{expires_at}
column: the injected clock decides what has expired.  Redis' own expiry
(C{PEXPIRE}, the TTL plus L{GC_MARGIN}) only collects the garbage.

Listings (L{RedisStore.scan}) read a lexicographic index of every key, a
sorted set that the scripts keep with each write, so that listing a prefix
costs what the prefix holds, not the whole keyspace.  A second sorted set
holds each entry with a TTL by the time it may be collected, so that each
write also deletes a few collected entries from the index.  Both, and the
mark that says the index is complete, are under keys that begin with a NUL
byte, which the store refuses for its entries.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.logger import Logger
from zope.interface import implementer

from ._interface import Entry, StorageError, Swap, Write
from .memory import check_entry, check_writes, expires_at, incremented

#: Seconds a call waits for Redis (a connection, then the answer) at most.
TIMEOUT = 5.0

#: Seconds Redis keeps an entry past its expiry before deleting it itself.
GC_MARGIN = 3600.0

#: How many keys one C{SCAN} step (and one value lookup) covers.
SCAN_COUNT = 500

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.DOTALL)

#: The index's keys: every entry's key (all scored 0, so ordered by their
#: bytes), the entries with a TTL (scored by when they may be collected),
#: and the mark that the index holds every entry.
INDEX_KEY = b"\x00index"
EXPIRY_KEY = b"\x00expiry"
INDEX_READY_KEY = b"\x00index-ready"

#: How many collected entries a write takes out of the index at most.
SWEEP_BATCH = 16


def _lua_string(data: bytes) -> str:
    """
    C{data} as a Lua string literal (three-digit decimal escapes for all
    but plain printable characters, so that a digit after one is not read
    into it).
    """
    plain = (chr(b) if 32 <= b < 127 and chr(b) not in "'\\" else f"\\{b:03d}" for b in data)
    return "'" + "".join(plain) + "'"


_HELPERS = f"""
local IDX, EXP, READY = {_lua_string(INDEX_KEY)}, {_lua_string(EXPIRY_KEY)}, {_lua_string(INDEX_READY_KEY)}
local MARGIN = {GC_MARGIN!r}
local function indexed(key, expires)
  redis.call('ZADD', IDX, 0, key)
  if expires == '' then
    redis.call('ZREM', EXP, key)
  else
    redis.call('ZADD', EXP, tonumber(expires) + MARGIN, key)
  end
end
local function remove(key)
  redis.call('DEL', key)
  redis.call('ZREM', IDX, key)
  redis.call('ZREM', EXP, key)
end
local function sweep(now)
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', EXP, '-inf', now, 'LIMIT', 0, {SWEEP_BATCH})) do
    remove(key)
  end
end
local function live(key, now)
  local r = redis.call('HMGET', key, 'v', 'e')
  if not r[1] then return nil end
  if r[2] and tonumber(r[2]) <= tonumber(now) then return nil end
  return r
end
local function put(key, value, expires, gc_ms)
  redis.call('DEL', key)
  if expires == '' then
    redis.call('HSET', key, 'v', value)
  else
    redis.call('HSET', key, 'v', value, 'e', expires)
    redis.call('PEXPIRE', key, gc_ms)
  end
  indexed(key, expires)
end
local function write(key, value, expires, gc_ms, has_value)
  if has_value == '0' then remove(key) else put(key, value, expires, gc_ms) end
end
local function swap(key, now, value, expires, gc_ms, has_expected, expected, has_value)
  local r = live(key, now)
  if has_expected == '0' then
    if r then return 0 end
  elseif not r or r[1] ~= expected then
    return 0
  end
  write(key, value, expires, gc_ms, has_value)
  return 1
end
"""


@attrs.frozen
class _Script:
    source: bytes
    sha: str

    @classmethod
    def of(cls, body: str) -> _Script:
        source = (_HELPERS + body).encode()
        return cls(source, hashlib.sha1(source).hexdigest())


# ARGV for writes: now, value, expires ('' for none), gc_ms.  Every write
# then takes up to SWEEP_BATCH collected entries out of the index.
_GET = _Script.of("local r = live(KEYS[1], ARGV[1]) if r then return r[1] end return false")
_SET = _Script.of("put(KEYS[1], ARGV[2], ARGV[3], ARGV[4]) sweep(ARGV[1]) return 1")
_ADD = _Script.of("""
if live(KEYS[1], ARGV[1]) then return 0 end
put(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
sweep(ARGV[1])
return 1
""")
# ARGV: now, value ('' when deleting), expires, gc_ms, has_expected, expected, has_value.
_CAS = _Script.of("""
local done = swap(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
sweep(ARGV[1])
return done
""")
# ARGV: now, amount, expires ('' for none), gc_ms.  Like Redis INCR, a live
# counter keeps its expiry (field e and the PEXPIRE); a new one gets ARGV[3],
# set after HINCRBY so that a refused amount writes nothing.
_INCREMENT = _Script.of("""
local created = not live(KEYS[1], ARGV[1])
if created then redis.call('DEL', KEYS[1]) end
local n = redis.call('HINCRBY', KEYS[1], 'v', ARGV[2])
if created then
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], 'e', ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
  indexed(KEYS[1], ARGV[3])
end
sweep(ARGV[1])
return n
""")
_DELETE = _Script.of("local r = live(KEYS[1], ARGV[1]) remove(KEYS[1]) if r then return 1 end return 0")
# One ordered write, atomic: ARGV[1] is now, then 7 for each key: is_swap,
# then the last six of _CAS's (a put ignores has_expected and expected).
_IN_ORDER = _Script.of("""
local out = {}
for i, key in ipairs(KEYS) do
  local a = 2 + (i - 1) * 7
  if ARGV[a] == '0' then
    write(key, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 6])
    out[i] = 1
  else
    out[i] = swap(key, ARGV[1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  end
end
sweep(ARGV[1])
return out
""")
# ARGV: now, the lowest and highest key (ZRANGEBYLEX bounds), how many.  The
# keys in that range and their live values (false for an expired one);
# nil while the index is not complete.
_RANGE = _Script.of("""
if redis.call('EXISTS', READY) == 0 then return false end
local keys = redis.call('ZRANGEBYLEX', IDX, ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
local values = {}
for i, key in ipairs(keys) do
  local r = live(key, ARGV[1])
  if r then values[i] = r[1] else values[i] = false end
end
return {keys, values}
""")
# KEYS: what one SCAN step found; each entry among them goes into the index.
_INDEX = _Script.of("""
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key)['ok'] == 'hash' then
    indexed(key, redis.call('HGET', key, 'e') or '')
  end
end
return 1
""")
# ARGV: the latest collection time to delete (now + MARGIN: expired now), how
# many at most.  How many it deleted.
_PURGE = _Script.of("""
local keys = redis.call('ZRANGEBYSCORE', EXP, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(keys) do remove(key) end
return #keys
""")


@attrs.frozen
class RedisAddress:
    """
    Where a Redis store is, from a C{redis://}, C{rediss://} or
    C{redis+sentinel://} URL.

    @ivar host: The server (unused with Sentinel).
    @ivar sentinels: C{(host, port)} of each Sentinel; empty for a direct
        connection.
    @ivar master: The name Sentinel knows the master by.
    @ivar tls: Connect with TLS (C{rediss://}).
    """

    host: str = ""
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""

    def describe(self) -> str:
        """
        The store's name in messages: never the password.
        """
        if self.sentinels:
            where = ",".join(f"{_host(h)}:{p}" for h, p in self.sentinels)
            return f"redis sentinel {where} master {self.master!r} db {self.db}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme} {_host(self.host)}:{self.port}/{self.db}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _trust(ca_bundle: str) -> Any:
    try:
        with open(ca_bundle, "rb") as f:
            pems = _PEM_CERT.findall(f.read())
    except OSError as e:
        raise StorageError(f"cannot read storage.ca_bundle {ca_bundle}: {e.strerror or e}") from None
    if not pems:
        raise StorageError(f"storage.ca_bundle {ca_bundle} holds no PEM certificate")
    return trustRootFromCertificates([Certificate.loadPEM(p) for p in pems])


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """
    An endpoint that remembers why its last connection attempt failed
    (C{None} once one succeeds) and tells C{on_failure}.
    """

    def __init__(self, endpoint: Any, on_failure: Callable[[str], object]) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure
        self.failure: str | None = None

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def connected(protocol: Any) -> Any:
            self.failure = None
            return protocol

        def failed(failure: Any) -> Any:
            self.failure = failure.getErrorMessage() or failure.type.__name__
            self._on_failure(self.failure)
            return failure

        d: defer.Deferred[Any] = defer.maybeDeferred(self._endpoint.connect, factory)
        return d.addCallbacks(connected, failed)


class _Reporting:
    """
    A protocol mixin that tells its factory's C{on_lost} why its connection
    ended (a refused TLS handshake, say), which txredisapi reports only as
    "Lost connection".
    """

    factory: Any

    def connectionLost(self, why: Any) -> None:
        on_lost = getattr(self.factory, "on_lost", None)
        if on_lost is not None:
            on_lost(why.getErrorMessage() or why.type.__name__)
        super().connectionLost(why)  # type: ignore[misc]


class _Protocol(_Reporting, txredisapi.RedisProtocol):  # type: ignore[misc]
    pass


def _lost_anyway(failure: Any) -> None:
    # A connection lost during the handshake: connectionLost reports it.
    failure.trap(txredisapi.ConnectionError)


class _SentinelMasterProtocol(_Reporting, txredisapi.SentinelRedisProtocol):  # type: ignore[misc]
    def connectionMade(self) -> defer.Deferred[Any]:
        # Nobody waits for the handshake (ROLE, then AUTH and SELECT): a
        # connection lost before Redis answers must not leave an unhandled
        # error (a traceback in the log).
        d: defer.Deferred[Any] = super().connectionMade()
        return d.addErrback(_lost_anyway)

    # With charset=None (values are bytes) ROLE answers b"master", which
    # txredisapi compares with "master": decode the role first.
    def role(self) -> defer.Deferred[Any]:
        def decoded(role: list[Any]) -> list[Any]:
            first = role[0].decode() if isinstance(role[0], bytes) else role[0]
            return [first, *role[1:]]

        d: defer.Deferred[Any] = super().role()
        return d.addCallback(decoded)


class _SentinelMasterFactory(txredisapi.SentinelConnectionFactory):  # type: ignore[misc]
    protocol = _SentinelMasterProtocol


class _NoScript(Exception):
    pass


def _entry_key(key: str) -> bytes:
    """
    C{key} (checked by L{check_entry}) as Redis wants it.

    @raise ValueError: it begins with a NUL byte, as only the index's keys do.
    """
    if key.startswith("\x00"):
        raise ValueError(f"store keys that begin with a NUL byte are the Redis store's own: {key!r}")
    return key.encode()


def _command(*args: object) -> Callable[[Any], defer.Deferred[Any]]:
    """
    Send C{args} as one Redis command on the connection it is given.
    """
    return lambda redis: redis.execute_command(*args)


class RedisStore:
    """
    A L{Store} in a Redis database (one server, or the master that Sentinel
    names).

    One connection, made on first use and re-made with backoff whenever it
    is lost.  While Redis cannot be reached every call fails within
    C{timeout} seconds (at once when the last attempt to connect failed)
    with a L{StorageError} saying the store is unavailable, and works
    again once Redis is back.  With C{wait_replicas}, each write that
    carries a promise (C{set}, and C{add}, C{compare_and_set} and C{delete}
    when they change something) returns only once that many replicas have
    it, and fails otherwise.
    """

    _log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        *,
        reactor: IReactorTCP,
        clock: IReactorTime,
        ca_bundle: str | None = None,
        timeout: float = TIMEOUT,
        wait_replicas: int = 0,
    ) -> None:
        """
        @param reactor: Makes the connection and times out calls; also an
            L{IReactorTime}.
        @param clock: Source of the current time for TTL expiry.
        @param ca_bundle: For C{rediss://}: the CA certificates to verify
            Redis' certificate by (default: the system's).
        @raise StorageError: C{ca_bundle} cannot be used.
        """
        self.address = address
        self.name = address.describe()
        self._reactor = reactor
        self._time: IReactorTime = reactor  # type: ignore[assignment]
        self._clock = clock
        self._timeout = timeout
        self._wait_replicas = wait_replicas
        self._trust = _trust(ca_bundle) if address.tls and ca_bundle is not None else None
        self._factory: Any = None
        self._sentinel: Any = None
        self._endpoint: _WatchedEndpoint | None = None
        self._fatal: str | None = None
        self._lost_reason: str | None = None
        self._closed = False
        self._pending: set[defer.Deferred[Any]] = set()
        self._indexing = defer.DeferredLock()

    # -- the connection ---------------------------------------------------

    def _connect(self) -> None:
        a = self.address
        self._log.info("connecting to {store}", store=self.name)
        options: dict[str, Any] = {
            "dbid": a.db or None,
            "poolsize": 1,
            "isLazy": True,
            "charset": None,
            "password": a.password,
            "username": a.username,
            "replyTimeout": self._timeout,
            "convertNumbers": False,
        }
        if a.sentinels:
            self._sentinel = txredisapi.Sentinel(list(a.sentinels), replyTimeout=self._timeout)
            self._sentinel.discovery_timeout = self._timeout
            factory = _SentinelMasterFactory(
                sentinel_manager=self._sentinel, service_name=a.master, is_master=True, uuid=None, **options
            )
            endpoint: Any = txredisapi._SentinelEndpoint(factory)
        else:
            factory = txredisapi.RedisFactory(uuid=f"{a.host}:{a.port}", **options)
            factory.protocol = _Protocol
            endpoint = HostnameEndpoint(self._reactor, a.host, a.port, timeout=self._timeout)
            if a.tls:
                endpoint = wrapClientTLS(optionsForClientTLS(a.host, trustRoot=self._trust), endpoint)
        # Come back quickly once Redis does: retry after 0.1 s, then up to
        # every 2 s.
        factory.initialDelay = 0.1
        factory.maxDelay = 2.0
        factory.deferred.addCallbacks(lambda handler: None, self._broken)
        factory.on_lost = self._lost
        self._endpoint = _WatchedEndpoint(endpoint, self._unreachable)
        self._factory = factory
        factory.startConnecting(self._endpoint)

    def _broken(self, failure: Any) -> None:
        # Authentication or SELECT failed: txredisapi stops for good.
        message = failure.getErrorMessage().removeprefix("Redis error: ")
        self._fatal = message
        self._log.error("{store} unusable: {error}", store=self.name, error=message)
        self._cancel_pending()

    def _unreachable(self, reason: str) -> None:
        self._cancel_pending()

    def _lost(self, reason: str) -> None:
        # Calls waiting for a connection fail now, not after the timeout.
        self._lost_reason = reason
        self._cancel_pending()

    def _cancel_pending(self) -> None:
        for d in list(self._pending):
            d.cancel()

    def _unavailable(self, reason: str) -> StorageError:
        return StorageError(f"{self.name} unavailable: {reason}")

    async def _call(self, what: str, command: Callable[[Any], defer.Deferred[Any]]) -> Any:
        if self._closed:
            raise StorageError(f"{self.name} is closed")
        if self._factory is None:
            self._connect()
        if self._fatal is not None:
            raise self._unavailable(self._fatal)
        assert self._endpoint is not None
        down = self._endpoint.failure or self._lost_reason
        if not self._factory.size and down is not None:
            raise self._unavailable(down)
        d: defer.Deferred[Any] = defer.maybeDeferred(command, self._factory.handler)
        d.addTimeout(self._timeout, self._time)
        self._pending.add(d)
        try:
            return await d
        except defer.TimeoutError:
            raise self._unavailable(f"no answer within {self._timeout:g} s") from None
        except defer.CancelledError:
            raise self._unavailable(self._fatal or self._endpoint.failure or self._lost_reason or "cancelled") from None
        except txredisapi.ScriptDoesNotExist:
            raise _NoScript() from None
        except txredisapi.ResponseError as e:
            if str(e).startswith("NOSCRIPT"):
                raise _NoScript() from None
            raise StorageError(f"{self.name}: {what} failed: {e}") from None
        except (txredisapi.ConnectionError, ConnectionError) as e:
            raise self._unavailable(self._lost_reason or str(e) or type(e).__name__) from None
        finally:
            self._pending.discard(d)

    async def _run(self, what: str, script: _Script, keys: list[bytes], args: Iterable[object]) -> Any:
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        n = str(len(keys))
        try:
            return await self._call(what, _command("EVALSHA", script.sha, n, *keys, *argv))
        except _NoScript:
            # Not in this server's script cache (yet, or since a restart).
            return await self._call(what, _command("EVAL", script.source, n, *keys, *argv))

    async def _replicated(self, key: str) -> None:
        if not self._wait_replicas:
            return
        ms = str(max(1, int(self._timeout * 500)))
        acked = await self._call(f"wait {key!r}", _command("WAIT", str(self._wait_replicas), ms))
        if int(acked) < self._wait_replicas:
            raise StorageError(
                f"{self.name}: the write to {key!r} reached {acked} of {self._wait_replicas} replicas in time"
            )

    # -- the store ---------------------------------------------------------

    def _now(self) -> bytes:
        return repr(self._clock.seconds()).encode()

    def _expiry(self, ttl: float | None) -> tuple[bytes, bytes]:
        expires = expires_at(self._clock, ttl)
        if expires is None:
            return b"", b"0"
        gc_ms = math.ceil((expires - self._clock.seconds() + GC_MARGIN) * 1000)
        return repr(expires).encode(), str(gc_ms).encode()

    def _swap_args(self, expected: Entry, value: Entry, ttl: float | None) -> list[bytes]:
        """
        The arguments of C{swap} (the scripts' helper) after C{now}:
        value, expires, gc_ms, has_expected, expected, has_value.
        """
        expires, gc_ms = self._expiry(ttl)
        return [
            b"" if value is None else value,
            expires,
            gc_ms,
            b"0" if expected is None else b"1",
            b"" if expected is None else expected,
            b"0" if value is None else b"1",
        ]

    async def get(self, key: str) -> bytes | None:
        check_entry(key, None)
        value = await self._run(f"get {key!r}", _GET, [_entry_key(key)], [self._now()])
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_entry(key, value)
        expires, gc_ms = self._expiry(ttl)
        await self._run(f"set {key!r}", _SET, [_entry_key(key)], [self._now(), value, expires, gc_ms])
        await self._replicated(key)

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        check_entry(key, value)
        expires, gc_ms = self._expiry(ttl)
        added = await self._run(f"add {key!r}", _ADD, [_entry_key(key)], [self._now(), value, expires, gc_ms])
        if added:
            await self._replicated(key)
        return bool(added)

    async def compare_and_set(self, key: str, expected: Entry, value: Entry, *, ttl: float | None = None) -> bool:
        check_entry(key, expected)
        check_entry(key, value)
        args = [self._now(), *self._swap_args(expected, value, ttl)]
        swapped = await self._run(f"compare_and_set {key!r}", _CAS, [_entry_key(key)], args)
        if swapped:
            await self._replicated(key)
        return bool(swapped)

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        check_entry(key, None)
        incremented(key, None, amount)
        expires, gc_ms = self._expiry(ttl)
        args = [self._now(), amount, expires, gc_ms]
        try:
            return int(await self._run(f"increment {key!r}", _INCREMENT, [_entry_key(key)], args))
        except StorageError as e:
            if "not an integer" in str(e) or "overflow" in str(e):
                raise StorageError(f"cannot increment {key!r}: its value is not an integer in range") from None
            raise

    async def delete(self, key: str) -> bool:
        check_entry(key, None)
        found = await self._run(f"delete {key!r}", _DELETE, [_entry_key(key)], [self._now()])
        if found:
            await self._replicated(key)
        return bool(found)

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        # One script: Redis runs it whole, with nothing in between.
        check_writes(self._clock, writes)
        if not writes:
            return []
        args: list[object] = [self._now()]
        for write in writes:
            if isinstance(write, Swap):
                args += [b"1", *self._swap_args(write.expected, write.value, write.ttl)]
            else:
                args += [b"0", *self._swap_args(None, write.value, write.ttl)]
        keys = [_entry_key(write.key) for write in writes]
        done = [bool(n) for n in await self._run(f"{len(writes)} writes in order", _IN_ORDER, keys, args)]
        if any(done):
            await self._replicated(writes[0].key)
        return done

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        check_entry(prefix, None)
        raw = prefix.encode()
        # UTF-8 never has the byte 0xFF: every key under the prefix sorts
        # below the prefix followed by it.  Bytes sort as code points do.
        low, high = b"[" + raw, b"(" + raw + b"\xff"
        found = []
        while True:
            keys, values = await self._range(f"scan {prefix!r}", low, high)
            found += [(k.decode(), v) for k, v in zip(keys, values, strict=True) if v is not None]
            if len(keys) < SCAN_COUNT:
                return found
            low = b"(" + keys[-1]

    async def _range(self, what: str, low: bytes, high: bytes) -> tuple[list[bytes], list[bytes | None]]:
        """
        The first L{SCAN_COUNT} keys of the index from C{low} to C{high}
        (C{ZRANGEBYLEX} bounds), and their live values; the index is
        built first if it is not complete.
        """
        args = [self._now(), low, high, SCAN_COUNT]
        step = await self._run(what, _RANGE, [], args)
        if step is None:
            await self._ensure_index()
            step = await self._run(what, _RANGE, [], args)
            if step is None:
                raise StorageError(f"{self.name}: {what} failed: the key index was removed while it was built")
        keys, values = step
        return [bytes(k) for k in keys], [None if v is None else bytes(v) for v in values]

    async def _ensure_index(self) -> None:
        """
        Index every entry unless the index is complete (its first use on a
        database written before it existed, or after a C{FLUSHDB}): once,
        however many calls wait for it.
        """
        await self._indexing.acquire()
        try:
            if int(await self._call("index", _command("EXISTS", INDEX_READY_KEY))):
                return
            self._log.info("indexing the keys of {store} (once, on a database without the index)", store=self.name)
            cursor, seen = b"0", 0
            while True:
                step = await self._call("index", _command("SCAN", cursor, b"COUNT", str(SCAN_COUNT).encode()))
                cursor = bytes(step[0])
                batch = [bytes(k) for k in step[1] if not bytes(k).startswith(b"\x00")]
                if batch:
                    await self._run("index", _INDEX, batch, [])
                    seen += len(batch)
                if cursor == b"0":
                    break
            await self._call("index", _command("SET", INDEX_READY_KEY, b"1"))
            self._log.info("indexed the {count} keys of {store}", count=seen, store=self.name)
        finally:
            self._indexing.release()

    async def purge_expired(self) -> int:
        """
        Delete every expired entry now (Redis also does so, L{GC_MARGIN}
        seconds later).

        @return: How many entries were deleted.
        """
        await self._ensure_index()
        # An entry may be collected GC_MARGIN after it expires.
        latest = repr(self._clock.seconds() + GC_MARGIN).encode()
        purged = 0
        while True:
            deleted = int(await self._run("purge", _PURGE, [], [latest, SCAN_COUNT]))
            purged += deleted
            if deleted < SCAN_COUNT:
                return purged

    async def close(self) -> None:
        """
        Close the connection and stop reconnecting.
        """
        if self._closed:
            return
        self._closed = True
        self._cancel_pending()
        if self._factory is not None:
            await self._factory.disconnect()
        if self._sentinel is not None:
            await self._sentinel.disconnect()

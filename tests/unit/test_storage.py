"""
The storage contract, run against every backend, plus what is particular to
SQLite (durability, sharing the file between processes) and the storage URL.
"""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from attrs import frozen
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from acme_appliance.storage import (
    Fsync,
    MemoryStore,
    Put,
    RedisAddress,
    SQLiteStore,
    StorageError,
    Store,
    Swap,
    check_store_url,
    dump_record,
    load_record,
    open_store,
    record_bytes,
    redis_store,
)
from acme_appliance.storage import _records as records_module
from acme_appliance.storage.memory import PURGE_INTERVAL
from acme_appliance.storage.sqlite import _prefix_end

# The real reactor runs the SQLite threads; time comes from a Clock.
reactor = IReactorFromThreads(_reactor)

AsyncTest = Callable[[Any], Coroutine[Any, Any, None]]


def _run_synchronously(test: AsyncTest) -> Callable[[Any], None]:
    @functools.wraps(test)
    def run(self: SynchronousTestCase) -> None:
        outcome: list[Any] = []
        Deferred.fromCoroutine(test(self)).addBoth(outcome.append)
        if not outcome:
            self.fail(f"{test.__name__} did not complete synchronously")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()

    return run


def synchronous(cls: type[SynchronousTestCase]) -> type[SynchronousTestCase]:
    """
    Make the C{async def} tests of C{cls} runnable by C{SynchronousTestCase}:
    each must finish without the reactor running.
    """
    for name in dir(cls):
        if name.startswith("test_") and inspect.iscoroutinefunction(test := getattr(cls, name)):
            setattr(cls, name, _run_synchronously(test))
    return cls


def gather(*coroutines: Coroutine[Any, Any, Any]) -> Deferred[list[Any]]:
    return gatherResults([Deferred.fromCoroutine(c) for c in coroutines])


if TYPE_CHECKING:
    _ContractBase = SynchronousTestCase
else:
    _ContractBase = object


class StoreContract(_ContractBase):
    """
    What every L{Store} must do.  Subclasses set C{self.clock} (a L{Clock}
    the store expires entries by) and C{self.store} in C{setUp}.
    """

    clock: Clock
    store: Any  # a Store, plus purge_expired()

    # -- get / set -------------------------------------------------------

    async def test_get_missing(self) -> None:
        self.assertIsNone(await self.store.get("nothing/here"))

    async def test_set_then_get(self) -> None:
        await self.store.set("order/a", b"one")
        await self.store.set("order/b", b"\x00\xff binary\n")
        await self.store.set("order/c", b"")
        self.assertEqual(await self.store.get("order/a"), b"one")
        self.assertEqual(await self.store.get("order/b"), b"\x00\xff binary\n")
        self.assertEqual(await self.store.get("order/c"), b"")

    async def test_set_overwrites(self) -> None:
        await self.store.set("k", b"one")
        await self.store.set("k", b"two")
        self.assertEqual(await self.store.get("k"), b"two")

    async def test_keys_are_case_sensitive_unicode(self) -> None:
        await self.store.set("Key/é", b"upper")
        await self.store.set("key/é", b"lower")
        await self.store.set("key/\U0001f512", b"lock")
        self.assertEqual(await self.store.get("Key/é"), b"upper")
        self.assertEqual(await self.store.get("key/é"), b"lower")
        self.assertEqual(await self.store.get("key/\U0001f512"), b"lock")

    async def test_wrong_types_rejected(self) -> None:
        with self.assertRaises(TypeError):
            await self.store.set("k", "not bytes")
        with self.assertRaises(TypeError):
            await self.store.get(b"not str")
        with self.assertRaises(ValueError):
            await self.store.set("lone/\ud800", b"v")
        with self.assertRaises(TypeError):
            await self.store.compare_and_set("k", "old", b"v")
        self.assertIsNone(await self.store.get("k"))

    # -- TTL -------------------------------------------------------------

    async def test_ttl_expiry(self) -> None:
        await self.store.set("nonce/x", b"1", ttl=10)
        self.clock.advance(9.5)
        self.assertEqual(await self.store.get("nonce/x"), b"1")
        self.clock.advance(0.5)
        self.assertIsNone(await self.store.get("nonce/x"))

    async def test_set_without_ttl_makes_permanent(self) -> None:
        await self.store.set("k", b"short", ttl=5)
        await self.store.set("k", b"forever")
        self.clock.advance(3600)
        self.assertEqual(await self.store.get("k"), b"forever")

    async def test_set_with_ttl_replaces_permanent(self) -> None:
        await self.store.set("k", b"forever")
        await self.store.set("k", b"short", ttl=5)
        self.clock.advance(5)
        self.assertIsNone(await self.store.get("k"))

    async def test_ttl_must_be_positive(self) -> None:
        for ttl in (0, -1, float("nan")):
            with self.assertRaises(ValueError) as caught:
                await self.store.set("k", b"v", ttl=ttl)
            self.assertIn("ttl must be a positive number", str(caught.exception))
        with self.assertRaises(ValueError):
            await self.store.add("k", b"v", ttl=0)
        with self.assertRaises(ValueError):
            await self.store.compare_and_set("k", None, b"v", ttl=-5)
        self.assertIsNone(await self.store.get("k"))

    async def test_purge_expired(self) -> None:
        await self.store.set("a", b"1", ttl=5)
        await self.store.set("b", b"2", ttl=5)
        await self.store.set("c", b"3", ttl=50)
        await self.store.set("d", b"4")
        self.clock.advance(10)
        self.assertEqual(await self.store.purge_expired(), 2)
        self.assertEqual(await self.store.purge_expired(), 0)
        self.assertEqual(await self.store.scan(""), [("c", b"3"), ("d", b"4")])

    # -- add ---------------------------------------------------------------

    async def test_add_when_absent(self) -> None:
        self.assertTrue(await self.store.add("lock/o1", b"a"))
        self.assertEqual(await self.store.get("lock/o1"), b"a")

    async def test_add_when_present(self) -> None:
        await self.store.set("lock/o1", b"a")
        self.assertFalse(await self.store.add("lock/o1", b"b"))
        self.assertEqual(await self.store.get("lock/o1"), b"a")

    async def test_add_over_expired(self) -> None:
        await self.store.add("lock/o1", b"a", ttl=30)
        self.assertFalse(await self.store.add("lock/o1", b"b", ttl=30))
        self.clock.advance(30)
        self.assertTrue(await self.store.add("lock/o1", b"c", ttl=30))
        self.assertEqual(await self.store.get("lock/o1"), b"c")
        self.clock.advance(30)
        self.assertIsNone(await self.store.get("lock/o1"))

    async def test_concurrent_adds_one_wins(self) -> None:
        results = await gather(*(self.store.add("lock/race", str(i).encode()) for i in range(10)))
        self.assertEqual(results.count(True), 1)
        winner = results.index(True)
        self.assertEqual(await self.store.get("lock/race"), str(winner).encode())

    # -- compare_and_set ------------------------------------------------

    async def test_cas_create_when_absent(self) -> None:
        self.assertTrue(await self.store.compare_and_set("k", None, b"new"))
        self.assertEqual(await self.store.get("k"), b"new")

    async def test_cas_absent_expected_but_present(self) -> None:
        await self.store.set("k", b"old")
        self.assertFalse(await self.store.compare_and_set("k", None, b"new"))
        self.assertEqual(await self.store.get("k"), b"old")

    async def test_cas_mismatch(self) -> None:
        await self.store.set("k", b"old")
        self.assertFalse(await self.store.compare_and_set("k", b"other", b"new"))
        self.assertEqual(await self.store.get("k"), b"old")

    async def test_cas_expected_but_absent(self) -> None:
        self.assertFalse(await self.store.compare_and_set("k", b"old", b"new"))
        self.assertIsNone(await self.store.get("k"))

    async def test_cas_match_replaces(self) -> None:
        await self.store.set("k", b"old")
        self.assertTrue(await self.store.compare_and_set("k", b"old", b"new"))
        self.assertEqual(await self.store.get("k"), b"new")
        self.assertFalse(await self.store.compare_and_set("k", b"old", b"newer"))

    async def test_cas_none_deletes(self) -> None:
        await self.store.set("k", b"old")
        self.assertFalse(await self.store.compare_and_set("k", b"other", None))
        self.assertEqual(await self.store.get("k"), b"old")
        self.assertTrue(await self.store.compare_and_set("k", b"old", None))
        self.assertIsNone(await self.store.get("k"))
        self.assertEqual(await self.store.scan("k"), [])

    async def test_cas_absent_to_absent(self) -> None:
        self.assertTrue(await self.store.compare_and_set("k", None, None))
        self.assertIsNone(await self.store.get("k"))

    async def test_cas_expired_counts_as_absent(self) -> None:
        await self.store.set("k", b"old", ttl=1)
        self.clock.advance(1)
        self.assertFalse(await self.store.compare_and_set("k", b"old", b"new"))
        self.assertTrue(await self.store.compare_and_set("k", None, b"new", ttl=10))
        self.clock.advance(10)
        self.assertIsNone(await self.store.get("k"))

    async def test_cas_same_value_renews_ttl(self) -> None:
        """
        Swapping a value for itself with a C{ttl} extends its life: how a
        lease is renewed.
        """
        await self.store.add("lock/o1", b"token", ttl=30)
        self.clock.advance(20)
        self.assertTrue(await self.store.compare_and_set("lock/o1", b"token", b"token", ttl=30))
        self.clock.advance(20)
        self.assertEqual(await self.store.get("lock/o1"), b"token")
        self.assertFalse(await self.store.add("lock/o1", b"other", ttl=30))
        self.clock.advance(10)
        self.assertIsNone(await self.store.get("lock/o1"))

    async def test_concurrent_cas_one_wins(self) -> None:
        await self.store.set("state", b"processing")
        results = await gather(
            *(self.store.compare_and_set("state", b"processing", f"valid-{i}".encode()) for i in range(10))
        )
        self.assertEqual(results.count(True), 1)
        self.assertEqual(await self.store.get("state"), f"valid-{results.index(True)}".encode())

    # -- increment --------------------------------------------------------

    async def test_increment(self) -> None:
        self.assertEqual(await self.store.increment("count/a"), 1)
        self.assertEqual(await self.store.increment("count/a"), 2)
        self.assertEqual(await self.store.increment("count/a", 10), 12)
        self.assertEqual(await self.store.increment("count/a", -20), -8)
        self.assertEqual(await self.store.get("count/a"), b"-8")

    async def test_increment_existing_decimal(self) -> None:
        await self.store.set("count/a", b"41")
        self.assertEqual(await self.store.increment("count/a"), 42)

    async def test_increment_not_an_integer(self) -> None:
        await self.store.set("count/a", b"forty")
        with self.assertRaises(StorageError) as caught:
            await self.store.increment("count/a")
        self.assertIn("'count/a'", str(caught.exception))
        self.assertIn("not an integer", str(caught.exception))
        self.assertEqual(await self.store.get("count/a"), b"forty")

    async def test_increment_keeps_ttl(self) -> None:
        await self.store.set("rate/x", b"0", ttl=60)
        self.assertEqual(await self.store.increment("rate/x"), 1)
        self.clock.advance(60)
        self.assertIsNone(await self.store.get("rate/x"))
        self.assertEqual(await self.store.increment("rate/x"), 1)
        self.clock.advance(3600)
        self.assertEqual(await self.store.get("rate/x"), b"1")

    async def test_increment_with_ttl_creates_an_expiring_counter(self) -> None:
        self.assertEqual(await self.store.increment("rate/y", 3, ttl=60), 3)
        self.clock.advance(59)
        self.assertEqual(await self.store.get("rate/y"), b"3")
        self.clock.advance(1)
        self.assertIsNone(await self.store.get("rate/y"))

    async def test_increment_ttl_ignored_for_a_live_counter(self) -> None:
        # The live counter keeps its own expiry, however far off the ttl.
        self.assertEqual(await self.store.increment("rate/y", ttl=60), 1)
        self.clock.advance(30)
        self.assertEqual(await self.store.increment("rate/y", ttl=600), 2)
        self.clock.advance(30)
        self.assertIsNone(await self.store.get("rate/y"))
        # Expired: created afresh, with the new ttl.
        self.assertEqual(await self.store.increment("rate/y", ttl=600), 1)
        self.clock.advance(599)
        self.assertEqual(await self.store.get("rate/y"), b"1")
        # A counter without expiry keeps none.
        await self.store.set("count/n", b"5")
        self.assertEqual(await self.store.increment("count/n", ttl=1), 6)
        self.clock.advance(3600)
        self.assertEqual(await self.store.get("count/n"), b"6")

    async def test_increment_bad_ttl_rejected(self) -> None:
        for ttl in (0, -1, "60", True):
            with self.assertRaises(ValueError):
                await self.store.increment("rate/z", ttl=ttl)
        self.assertIsNone(await self.store.get("rate/z"))

    async def test_concurrent_increments(self) -> None:
        results = await gather(*(self.store.increment("count/c") for _ in range(50)))
        self.assertEqual(sorted(results), list(range(1, 51)))
        self.assertEqual(await self.store.get("count/c"), b"50")

    # -- write_in_order ---------------------------------------------------

    async def test_write_in_order(self) -> None:
        await self.store.set("queue/o", b"old")
        await self.store.set("order/o", b"ready")
        done = await self.store.write_in_order(
            [
                Put("queue/o", b"queued", ttl=60),
                Swap("order/o", b"ready", b"processing"),
                Swap("order/o", b"ready", b"again"),
                Put("index/o", b""),
                Put("gone/o", None),
                Swap("new/o", None, b"created"),
            ]
        )
        self.assertEqual(done, [True, True, False, True, True, True])
        self.assertEqual(await self.store.get("queue/o"), b"queued")
        self.assertEqual(await self.store.get("order/o"), b"processing")
        self.assertEqual(await self.store.get("index/o"), b"")
        self.assertEqual(await self.store.get("new/o"), b"created")
        self.clock.advance(61)
        self.assertIsNone(await self.store.get("queue/o"))
        self.assertEqual(await self.store.write_in_order([]), [])

    async def test_write_in_order_checked_first(self) -> None:
        """
        A write of the wrong type or with a bad TTL refuses the whole
        ordered write: none of it is applied.
        """
        put: Any = Put
        swap: Any = Swap
        bad_writes = [put("k", "not bytes"), put(b"not str", b"v"), put("k", b"v", ttl=0), swap("k", "x", b"v")]
        for bad in bad_writes:
            with self.assertRaises((TypeError, ValueError)):
                await self.store.write_in_order([Put("first", b"1"), bad])
            self.assertIsNone(await self.store.get("first"))

    # -- delete -----------------------------------------------------------

    async def test_delete(self) -> None:
        await self.store.set("k", b"v")
        self.assertTrue(await self.store.delete("k"))
        self.assertIsNone(await self.store.get("k"))
        self.assertFalse(await self.store.delete("k"))

    async def test_delete_expired(self) -> None:
        await self.store.set("k", b"v", ttl=1)
        self.clock.advance(2)
        self.assertFalse(await self.store.delete("k"))

    # -- scan -------------------------------------------------------------

    async def test_scan_sorted_by_key(self) -> None:
        for key in ("order/c", "order/a", "order/b", "orders", "other/a"):
            await self.store.set(key, key.encode())
        self.assertEqual(
            await self.store.scan("order/"), [("order/a", b"order/a"), ("order/b", b"order/b"), ("order/c", b"order/c")]
        )
        self.assertEqual(
            [k for k, _ in await self.store.scan("")], ["order/a", "order/b", "order/c", "orders", "other/a"]
        )
        self.assertEqual(await self.store.scan("nothing/"), [])

    async def test_scan_prefix_is_literal(self) -> None:
        for key in ("a%/1", "ab/1", "a_/1", "aX/1", "A%/1", "a%", "a\\/1"):
            await self.store.set(key, b"v")
        self.assertEqual([k for k, _ in await self.store.scan("a%")], ["a%", "a%/1"])
        self.assertEqual([k for k, _ in await self.store.scan("a_")], ["a_/1"])
        self.assertEqual([k for k, _ in await self.store.scan("a\\")], ["a\\/1"])
        self.assertEqual([k for k, _ in await self.store.scan("A")], ["A%/1"])

    async def test_scan_unicode_boundaries(self) -> None:
        keys = ["p/\uffff", "p/\uffff\U0001f512", "p/\U0001f512", "p/\U0010ffff", "p0", "p/", "p/\x7f"]
        for key in keys:
            await self.store.set(key, b"v")
        self.assertEqual([k for k, _ in await self.store.scan("p/")], sorted(k for k in keys if k.startswith("p/")))
        self.assertEqual([k for k, _ in await self.store.scan("p/\uffff")], ["p/\uffff", "p/\uffff\U0001f512"])
        self.assertEqual([k for k, _ in await self.store.scan("p/\U0010ffff")], ["p/\U0010ffff"])

    async def test_scan_excludes_expired(self) -> None:
        await self.store.set("v/a", b"1", ttl=5)
        await self.store.set("v/b", b"2")
        await self.store.set("v/c", b"3", ttl=50)
        self.clock.advance(5)
        self.assertEqual(await self.store.scan("v/"), [("v/b", b"2"), ("v/c", b"3")])

    # -- lifecycle --------------------------------------------------------

    async def test_is_a_store(self) -> None:
        self.assertIsInstance(self.store, Store)

    async def test_closed_store_refuses(self) -> None:
        await self.store.set("k", b"v")
        await self.store.close()
        await self.store.close()
        with self.assertRaises(StorageError) as caught:
            await self.store.get("k")
        self.assertIn("closed", str(caught.exception))


@synchronous
class MemoryStoreTests(StoreContract, SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)

    async def test_writes_sweep_expired_entries(self) -> None:
        await self.store.set("a", b"1", ttl=1)
        await self.store.set("b", b"2", ttl=1)
        self.clock.advance(PURGE_INTERVAL)
        await self.store.set("c", b"3")
        self.assertEqual(sorted(self.store._entries), ["c"])


class SQLiteStoreTests(StoreContract, TestCase):
    fsync = Fsync.EVERYSEC

    async def _open(self, path: str | None = None) -> SQLiteStore:
        store = await SQLiteStore.open(path or self.path, reactor=reactor, clock=self.clock, fsync=self.fsync)
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        return store

    async def _setUp(self) -> None:
        self.clock = Clock()
        self.path = os.path.join(self.mktemp(), "state.db")
        self.store = await self._open()

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    def _rows(self) -> list[tuple[str, bytes, float | None]]:
        conn = sqlite3.connect(self.path)
        try:
            return [(k, bytes(v), e) for k, v, e in conn.execute("SELECT key, value, expires_at FROM kv ORDER BY key")]
        finally:
            conn.close()

    async def test_schema_and_wal(self) -> None:
        await self.store.set("k", b"v", ttl=7)
        conn = sqlite3.connect(self.path)
        try:
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            columns = {row[1]: (row[2], row[3], row[5]) for row in conn.execute("PRAGMA table_info(kv)")}
        finally:
            conn.close()
        self.assertEqual(columns, {"key": ("TEXT", 0, 1), "value": ("BLOB", 1, 0), "expires_at": ("REAL", 0, 0)})
        self.assertEqual(self._rows(), [("k", b"v", 7.0)])

    async def test_writes_acknowledged_after_the_turn(self) -> None:
        # Committed on the reactor's next turn (with what else the turn
        # issues), or on the store's thread: the call does not block.
        # (Where each runs: tests/unit/test_sqlite_fast.py.)
        pending = Deferred.fromCoroutine(self.store.set("k", b"v"))
        self.assertNoResult(pending)
        self.assertIsNone(await pending)

    async def test_durable_across_reopen(self) -> None:
        await self.store.set("order/a", b"one")
        await self.store.set("nonce/x", b"n", ttl=10)
        await self.store.increment("count")
        await self.store.close()
        again = await self._open()
        self.assertEqual(await again.get("order/a"), b"one")
        self.assertEqual(await again.get("nonce/x"), b"n")
        self.assertEqual(await again.get("count"), b"1")
        self.clock.advance(10)
        self.assertIsNone(await again.get("nonce/x"))

    async def test_two_stores_share_the_file(self) -> None:
        cli = await self._open()
        await cli.set("token/t1", b"created by the CLI")
        self.assertEqual(await self.store.get("token/t1"), b"created by the CLI")
        await self.store.delete("token/t1")
        self.assertIsNone(await cli.get("token/t1"))
        self.assertTrue(await cli.add("lock/o", b"cli"))
        self.assertFalse(await self.store.add("lock/o", b"daemon"))

    async def test_two_stores_increment_atomically(self) -> None:
        other = await self._open()
        results = await gather(*(s.increment("count/shared") for _ in range(25) for s in (self.store, other)))
        self.assertEqual(sorted(results), list(range(1, 51)))
        self.assertEqual(await other.get("count/shared"), b"50")

    async def test_writes_purge_expired_rows(self) -> None:
        await self.store.set("a", b"1", ttl=1)
        await self.store.set("b", b"2", ttl=1)
        self.clock.advance(2)
        await self.store.set("c", b"3")
        self.assertEqual([r[0] for r in self._rows()], ["a", "b", "c"])
        self.clock.advance(PURGE_INTERVAL)
        await self.store.set("d", b"4")
        self.assertEqual([r[0] for r in self._rows()], ["c", "d"])

    async def test_creates_parent_directory(self) -> None:
        path = os.path.join(self.mktemp(), "deep", "er", "state.db")
        store = await self._open(path)
        await store.set("k", b"v")
        self.assertTrue(os.path.isfile(path))

    async def test_parent_is_a_file(self) -> None:
        parent = self.mktemp()
        with open(parent, "w") as f:
            f.write("not a directory")
        with self.assertRaises(StorageError) as caught:
            await SQLiteStore.open(os.path.join(parent, "state.db"), reactor=reactor, clock=self.clock)
        self.assertEqual(str(caught.exception), f"cannot open database {parent}/state.db: {parent} is not a directory")

    async def test_path_is_a_directory(self) -> None:
        path = self.mktemp()
        os.makedirs(path)
        with self.assertRaises(StorageError) as caught:
            await SQLiteStore.open(path, reactor=reactor, clock=self.clock)
        self.assertIn(f"cannot open database {path}: ", str(caught.exception))

    async def test_not_a_database(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"this is not an SQLite file, just some text " * 100)
        with self.assertRaises(StorageError) as caught:
            await SQLiteStore.open(path, reactor=reactor, clock=self.clock)
        self.assertEqual(str(caught.exception), f"cannot open database {path}: file is not a database")

    async def test_constructor_opens_lazily(self) -> None:
        path = os.path.join(self.mktemp(), "lazy.db")
        store = SQLiteStore(path, reactor=reactor, clock=self.clock)
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        self.assertFalse(os.path.exists(path))
        await store.set("k", b"v")
        self.assertEqual(await store.get("k"), b"v")

    async def test_close_after_reactor_shutdown_stopped_the_thread(self) -> None:
        store = await self._open(os.path.join(self.mktemp(), "late.db"))
        await store.set("k", b"v")
        store._stop_pool()  # what the "during shutdown" trigger does
        with self.assertRaises(StorageError):
            await store.get("k")
        await store.close()
        self.assertIsNone(store._conn)

    async def test_close_unopened_creates_nothing(self) -> None:
        path = os.path.join(self.mktemp(), "never.db")
        await SQLiteStore(path, reactor=reactor, clock=self.clock).close()
        self.assertFalse(os.path.exists(os.path.dirname(path)))


class SQLiteAlwaysFsyncStoreTests(SQLiteStoreTests):
    """
    The contract again, every commit fsynced on the store's thread.
    """

    fsync = Fsync.ALWAYS


class PrefixEndTests(SynchronousTestCase):
    """
    The range C{prefix <= key < _prefix_end(prefix)} is exactly the keys
    starting with C{prefix} (in code point order, which is SQLite's order
    for UTF-8 TEXT).
    """

    def test_examples(self) -> None:
        self.assertIsNone(_prefix_end(""))
        self.assertEqual(_prefix_end("order/"), "order0")
        self.assertEqual(_prefix_end("a\U0010ffff"), "b")
        self.assertIsNone(_prefix_end("\U0010ffff\U0010ffff"))
        self.assertEqual(_prefix_end("a\ud7ff"), "a\ue000")

    @given(
        st.text(st.sampled_from("ab%_\uffff\U0010ffff\ud7ff\ue000"), max_size=4),
        st.text(st.sampled_from("ab%_\uffff\U0010ffff\ud7ff\ue000"), max_size=6),
    )
    def test_range_is_the_prefix(self, prefix: str, key: str) -> None:
        end = _prefix_end(prefix)
        in_range = prefix <= key and (end is None or key < end)
        self.assertEqual(in_range, key.startswith(prefix))
        self.assertEqual(key.encode() >= prefix.encode() and (end is None or key.encode() < end.encode()), in_range)


class OpenStoreTests(TestCase):
    def setUp(self) -> None:
        self.base = self.mktemp()
        os.makedirs(self.base)
        self.clock = Clock()

    async def _open(self, url: str) -> Store:
        store = await open_store(url, reactor=reactor, clock=self.clock, base_dir=self.base)
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        return store

    async def test_memory(self) -> None:
        store = await self._open("memory:")
        self.assertIsInstance(store, MemoryStore)
        await store.set("k", b"v", ttl=1)
        self.clock.advance(1)
        self.assertIsNone(await store.get("k"))

    async def test_sqlite_relative_to_base_dir(self) -> None:
        store = await self._open("sqlite:var/state.db")
        self.assertIsInstance(store, SQLiteStore)
        await store.set("k", b"v")
        self.assertTrue(os.path.isfile(os.path.join(self.base, "var", "state.db")))

    async def test_sqlite_absolute(self) -> None:
        path = os.path.abspath(os.path.join(self.mktemp(), "abs.db"))
        for url in (f"sqlite:{path}", f"sqlite://{path}"):
            store = await self._open(url)
            self.assertIsInstance(store, SQLiteStore)
            self.assertEqual(store.path, path)  # type: ignore[attr-defined]
        self.assertTrue(os.path.isfile(path))
        self.assertEqual(os.listdir(self.base), [])

    async def test_bad_urls(self) -> None:
        for url, expected in [
            ("postgres://db/x", "unsupported storage URL scheme 'postgres'"),
            ("state.db", "has no scheme"),
            ("sqlite:", "sqlite needs a file path"),
            ("redis://:6379", "redis storage URL has no host"),
        ]:
            with self.assertRaises(StorageError) as caught:
                await self._open(url)
            self.assertIn(expected, str(caught.exception))

    async def test_unopenable_sqlite(self) -> None:
        with open(os.path.join(self.base, "file"), "w") as f:
            f.write("x")
        with self.assertRaises(StorageError) as caught:
            await self._open("sqlite:file/state.db")
        self.assertIn(f"cannot open database {self.base}/file/state.db", str(caught.exception))


class CheckStoreURLTests(SynchronousTestCase):
    def test_valid(self) -> None:
        for url in [
            "memory:",
            "sqlite:state.db",
            "sqlite:var/state.db",
            "sqlite:/var/lib/acme/state.db",
            "sqlite:///var/lib/acme/state.db",
            "SQLite:state.db",
            "redis://localhost",
            "redis://localhost:6379",
            "redis://localhost:6379/0",
            "redis://10.0.0.5/3",
            "redis://[::1]:6380/1",
            "redis://:secret@cache.internal:6379/2",
            "redis://app:secret@cache.internal/2",
            "REDIS://cache",
            "rediss://cache.internal:6380/1",
            "rediss://:p%40ss@cache.internal",
            "redis+sentinel://s1:26379,s2:26379,[::1]/mymaster",
            "redis+sentinel://:pw@s1/mymaster/3",
        ]:
            self.assertIsNone(check_store_url(url), url)

    def test_problems(self) -> None:
        for url, expected in [
            ("", "storage URL is empty; use memory:, sqlite:PATH, redis://host[:port][/db], rediss://... or redis+"),
            ("   ", "storage URL is empty"),
            ("state.db", "storage URL 'state.db' has no scheme"),
            (":state.db", "has no scheme"),
            ("memory:x", "memory: takes nothing after the colon"),
            ("sqlite:", "sqlite needs a file path"),
            ("sqlite:///", "names a directory"),
            ("sqlite://state.db", "sqlite takes a file path, not a host"),
            ("sqlite:var/", "names a directory"),
            ("sqlite:a\0b", "NUL"),
            ("mysql://db/x", "unsupported storage URL scheme 'mysql'"),
            ("redis:cache", "must look like redis://[:password@]host[:port][/db]"),
            ("redis://", "has no host"),
            ("redis://cache:port/0", "the port in 'cache:port' is not a number"),
            ("redis://cache:99999", "is not a number from 1 to 65535"),
            ("rediss://", "rediss storage URL has no host"),
            ("rediss://cache/x", "the database 'x' is not a number"),
            ("redis://a,b/0", "one host only; several are for redis+sentinel://"),
            ("redis://secret@cache/0", "the part before '@' must be :password or user:password"),
            ("redis+sentinel://s1,s2", "names no master"),
            ("redis+sentinel://s1,s2/", "names no master"),
            ("redis+sentinel://s1,/m", "has no host"),
            ("redis+sentinel://s1:x/m", "is not a number"),
            ("redis+sentinel://s1/m/zero", "the database 'zero' is not a number"),
            ("redis+sentinel:s1/m", "must look like"),
            ("redis://cache:0", "port 0 is not valid"),
            ("redis://cache/zero", "the database 'zero' is not a number"),
            ("redis://cache/0/1", "the database '0/1' is not a number"),
            ("redis://cache/0?timeout=1", "unexpected '?' or '#' part"),
        ]:
            problem = check_store_url(url)
            self.assertIsNotNone(problem, url)
            assert problem is not None
            self.assertIn(expected, problem)
            self.assertNotIn("\n", problem)

    def test_password_not_echoed(self) -> None:
        for url in [
            "redis://:hunter2@cache:nope/0",
            "redis://:hunter2@/0",
            "redis://:hunter2@cache/x",
            "redis://:hunter2@cache/0?x=1",
            "redis://hunter2@cache/0",
            "rediss://:hunter2@cache:0",
            "redis+sentinel://:hunter2@s1:nope/m",
            "redis+sentinel://:hunter2@s1",
            "redis:hunter2@cache",
        ]:
            problem = check_store_url(url)
            assert problem is not None, url
            self.assertNotIn("hunter2", problem)


class RedisURLTests(SynchronousTestCase):
    def address(self, url: str) -> RedisAddress:
        return redis_store(url, reactor=reactor, clock=Clock()).address  # type: ignore[arg-type]

    def test_forms(self) -> None:
        self.assertEqual(self.address("redis://cache"), RedisAddress(host="cache", port=6379, db=0))
        self.assertEqual(
            self.address("rediss://app:p%40ss@[::1]:6380/2"),
            RedisAddress(host="::1", port=6380, db=2, username="app", password="p@ss", tls=True),
        )
        self.assertEqual(
            self.address("redis+sentinel://:pw@s1,s2:26380/mymaster/4"),
            RedisAddress(db=4, password="pw", sentinels=(("s1", 26379), ("s2", 26380)), master="mymaster"),
        )

    def test_described_without_password(self) -> None:
        for url, name in [
            ("redis://:hunter2@cache", "redis cache:6379/0"),
            ("rediss://:hunter2@[::1]:7000/3", "rediss [::1]:7000/3"),
            ("redis+sentinel://:hunter2@s1,[::1]:1/m/2", "redis sentinel s1:26379,[::1]:1 master 'm' db 2"),
        ]:
            address = self.address(url)
            self.assertEqual(address.describe(), name)
            self.assertNotIn("hunter2", repr(address))

    def test_not_redis(self) -> None:
        with self.assertRaises(StorageError):
            redis_store("memory:", reactor=reactor, clock=Clock())  # type: ignore[arg-type]

    def test_ca_bundle_problems(self) -> None:
        missing = os.path.join(self.mktemp(), "ca.pem")
        with self.assertRaises(StorageError) as caught:
            redis_store("rediss://cache", reactor=reactor, clock=Clock(), ca_bundle=missing)  # type: ignore[arg-type]
        self.assertEqual(str(caught.exception), f"cannot read storage.ca_bundle {missing}: No such file or directory")
        empty = self.mktemp()
        with open(empty, "w") as f:
            f.write("nothing\n")
        with self.assertRaises(StorageError) as caught:
            redis_store("rediss://cache", reactor=reactor, clock=Clock(), ca_bundle=empty)  # type: ignore[arg-type]
        self.assertEqual(str(caught.exception), f"storage.ca_bundle {empty} holds no PEM certificate")

    def test_closed_store_refuses_without_connecting(self) -> None:
        store = redis_store("redis://cache", reactor=reactor, clock=Clock())  # type: ignore[arg-type]
        self.successResultOf(Deferred.fromCoroutine(store.close()))
        failure = self.failureResultOf(Deferred.fromCoroutine(store.get("k")), StorageError)
        self.assertEqual(str(failure.value), "redis cache:6379/0 is closed")


@frozen
class _Sample:
    name: str
    size: int = 0


@frozen
class _Other:
    name: str
    size: int = 0


class RecordBytesTests(SynchronousTestCase):
    """
    L{record_bytes}: the bytes a record was loaded from, without
    serialising it again.
    """

    def test_loaded_record(self) -> None:
        """
        A record just loaded gives back the very bytes it was read from,
        even in another form than L{dump_record}'s; an equal record that
        was not loaded gives its serialisation.
        """
        data = b'{ "name": "a",  "size": 1 }'
        loaded = load_record(_Sample, data)
        self.assertIs(record_bytes(loaded), data)
        self.assertEqual(record_bytes(_Sample("a", 1)), dump_record(loaded))
        self.assertNotEqual(dump_record(loaded), data)

    def test_decoded_once(self) -> None:
        """
        The same bytes load as the same (frozen) record, decoded once;
        other bytes, or another record type, decode afresh.
        """
        data = b'{"name": "once", "size": 2}'
        first = load_record(_Sample, data)
        self.assertIs(load_record(_Sample, bytes(bytearray(data))), first)
        self.assertIsNot(load_record(_Sample, b'{"name": "once", "size": 3}'), first)
        self.assertIsNot(load_record(_Other, data), first)
        self.assertEqual(load_record(_Other, data), _Other("once", 2))

    def test_decoded_bounded(self) -> None:
        """
        At most L{DECODED_KEPT} decoded records are kept; a forgotten one is
        decoded again, equal.
        """
        data = b'{"name": "early"}'
        early = load_record(_Sample, data)
        for i in range(records_module.DECODED_KEPT):
            load_record(_Sample, b'{"name": "d%d"}' % i)
        self.assertLessEqual(len(records_module._decoded), records_module.DECODED_KEPT)
        again = load_record(_Sample, data)
        self.assertIsNot(again, early)
        self.assertEqual(again, early)

    def test_bounded(self) -> None:
        """
        Only the last L{LOADED_KEPT} loaded records are remembered: an older
        one is serialised again.
        """
        first = load_record(_Sample, b'{"name": "first"}')
        for i in range(records_module.LOADED_KEPT):
            load_record(_Sample, b'{"name": "%d"}' % i)
        self.assertLessEqual(len(records_module._loaded), records_module.LOADED_KEPT)
        self.assertEqual(record_bytes(first), b'{"name":"first","size":0}')

"""
The SQLite store's fast paths: reads on the reactor thread through a
read-only connection, and queued writes committed together in one
transaction (acknowledged after the commit; savepoints only when a write
fails, so that it fails alone).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from acme_appliance.storage import StorageError
from acme_appliance.storage import sqlite as sqlite_module
from acme_appliance.storage.sqlite import SQLiteStore, commit_batch

from .test_storage import gather

reactor = IReactorFromThreads(_reactor)


class _StoreCase(TestCase):
    """A case with C{self.store}, an open L{SQLiteStore} in a new file."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.clock = Clock()
        self.path = os.path.join(self.mktemp(), "state.db")
        return Deferred.fromCoroutine(self._opened())

    async def _opened(self) -> None:
        self.store = await self.open_store()

    async def open_store(self) -> SQLiteStore:
        """Another store on the same file, closed at clean-up."""
        opened = await SQLiteStore.open(self.path, reactor=reactor, clock=self.clock)
        self.addCleanup(lambda: Deferred.fromCoroutine(opened.close()))
        return opened


class ReaderOnReactorTests(_StoreCase):
    async def test_reads_complete_at_once(self) -> None:
        await self.store.set("k", b"v")
        await self.store.set("p/a", b"1")
        got = Deferred.fromCoroutine(self.store.get("k"))
        scanned = Deferred.fromCoroutine(self.store.scan("p/"))
        self.assertEqual(self.successResultOf(got), b"v")
        self.assertEqual(self.successResultOf(scanned), [("p/a", b"1")])

    async def test_reads_see_other_connections_commits(self) -> None:
        other = await self.open_store()
        self.assertIsNone(await self.store.get("k"))
        await other.set("k", b"from the other")
        self.assertEqual(await self.store.get("k"), b"from the other")

    async def test_reader_cannot_write(self) -> None:
        await self.store.get("k")
        assert self.store._reader is not None
        with self.assertRaises(sqlite3.OperationalError):
            self.store._reader.execute("DELETE FROM kv")

    async def test_locked_file_is_read_off_the_reactor(self) -> None:
        """
        Another process holds the file (the reader's short busy timeout ran
        out): the read waits on the writer thread instead of stalling the
        reactor, and still answers.
        """
        await self.store.set("k", b"v")

        class Locked:
            def execute(self, *args: object) -> object:
                error = sqlite3.OperationalError("database is locked")
                error.sqlite_errorcode = sqlite3.SQLITE_BUSY
                raise error

            def close(self) -> None:
                pass

        self.store._reader = Locked()  # type: ignore[assignment]
        got = Deferred.fromCoroutine(self.store.get("k"))
        self.assertNoResult(got)
        self.assertEqual(await got, b"v")

    async def test_reader_waits_briefly(self) -> None:
        await self.store.get("k")
        assert self.store._reader is not None
        self.assertEqual(self.store._reader.execute("PRAGMA busy_timeout").fetchone()[0], 50)

    async def test_closed_reader(self) -> None:
        await self.store.get("k")
        await self.store.close()
        self.assertIsNone(self.store._reader)
        with self.assertRaises(StorageError):
            await self.store.scan("")


class WriteBatchTests(_StoreCase):
    async def _opened(self) -> None:
        await super()._opened()
        self.batches: list[int] = []
        real = sqlite_module.commit_batch

        def counting(conn: sqlite3.Connection, path: str, writes: list[Any]) -> Any:
            self.batches.append(len(writes))
            return real(conn, path, writes)

        self.patch(sqlite_module, "commit_batch", counting)

    async def test_writes_issued_together_share_a_commit(self) -> None:
        # Issued in one reactor turn: one commit, in the order issued.
        results = await gather(
            *(self.store.set(f"k/{i}", b"v") for i in range(10)),
            self.store.add("k/0", b"late"),
            self.store.increment("n"),
            self.store.increment("n"),
        )
        self.assertEqual(results[10:], [False, 1, 2])
        self.assertEqual(self.batches, [13])
        self.assertEqual(len(await self.store.scan("k/")), 10)

    async def test_one_failure_fails_alone(self) -> None:
        await self.store.set("text", b"not a number")
        self.batches.clear()
        first = Deferred.fromCoroutine(self.store.set("a", b"1"))
        bad = Deferred.fromCoroutine(self.store.increment("text"))
        good = Deferred.fromCoroutine(self.store.set("b", b"2"))
        await first
        await good
        self.failureResultOf(bad, StorageError)
        self.assertEqual(self.batches, [3])
        self.assertEqual(await self.store.get("b"), b"2")

    async def test_batch_without_failure_runs_no_savepoint(self) -> None:
        await self.store.set("text", b"not a number")
        statements: list[str] = []
        assert self.store._conn is not None
        self.store._conn.set_trace_callback(statements.append)
        await gather(self.store.set("a", b"1"), self.store.increment("n", ttl=60), self.store.add("a", b"2"))
        self.assertEqual(self.batches[-1], 3)
        self.assertEqual([s for s in statements if "SAVEPOINT" in s or "ROLLBACK" in s], [])
        self.assertEqual((statements[0], statements[-1]), ("BEGIN IMMEDIATE", "COMMIT"))
        statements.clear()
        bad = Deferred.fromCoroutine(self.store.increment("text"))
        await gather(self.store.set("b", b"2"))
        self.failureResultOf(bad, StorageError)
        self.assertIn("ROLLBACK", statements)
        self.assertEqual(statements.count("SAVEPOINT w"), 2)

    async def test_close_waits_for_queued_writes(self) -> None:
        pending = [Deferred.fromCoroutine(self.store.set(f"k/{i}", b"v")) for i in range(5)]
        await self.store.close()
        for d in pending:
            self.assertIsNone(self.successResultOf(d))
        again = await self.open_store()
        self.assertEqual(len(await again.scan("k/")), 5)

    async def test_writes_after_the_pool_stopped_fail(self) -> None:
        self.store._stop_pool()
        self.store._closed = False
        self.store._queued.append(("set 'k'", lambda conn: None, done := Deferred[Any]()))
        self.store._flush()
        self.failureResultOf(done, StorageError)


def _put(key: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (key, b"v"))
        if fail:
            raise ValueError(f"{key} refused")
        return key

    return work


class CommitBatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NULL)")
        self.addCleanup(self.conn.close)
        self.statements: list[str] = []
        self.conn.set_trace_callback(self.statements.append)

    def test_no_failure_no_savepoint(self) -> None:
        """
        A batch whose writes all succeed runs them plainly in one
        transaction: no savepoint statements.
        """
        outcomes = commit_batch(self.conn, "db", [("a", _put("a")), ("b", _put("b"))])
        self.assertEqual(outcomes, [(True, "a"), (True, "b")])
        self.assertEqual([s.split()[0] for s in self.statements], ["BEGIN", "INSERT", "INSERT", "COMMIT"])
        self.assertEqual(self.keys(), ["a", "b"])

    def test_failure_reruns_the_batch_in_savepoints(self) -> None:
        """
        A write that raises rolls the plain run back; the batch runs again,
        each write in its own savepoint, and only the second run counts.
        """
        runs: list[str] = []

        def counted(key: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
            work = _put(key, fail)

            def run(conn: sqlite3.Connection) -> str:
                runs.append(key)
                return work(conn)

            return run

        writes = [("a", counted("a")), ("b", counted("b", fail=True)), ("c", counted("c"))]
        outcomes = commit_batch(self.conn, "db", writes)
        self.assertEqual([(ok, str(v)) for ok, v in outcomes], [(True, "a"), (False, "b refused"), (True, "c")])
        self.assertEqual(runs, ["a", "b", "a", "b", "c"])
        self.assertEqual(self.statements.count("BEGIN IMMEDIATE"), 2)
        self.assertEqual(self.statements.count("ROLLBACK"), 1)
        self.assertEqual(self.statements.count("SAVEPOINT w"), 3)
        self.assertEqual(self.statements.count("ROLLBACK TO w"), 1)
        self.assertEqual(self.statements[-1], "COMMIT")
        self.assertEqual(self.keys(), ["a", "c"])

    def keys(self) -> list[str]:
        return [k for (k,) in self.conn.execute("SELECT key FROM kv ORDER BY key")]

    def test_failed_write_rolled_back_alone(self) -> None:
        outcomes = commit_batch(self.conn, "db", [("a", _put("a")), ("b", _put("b", fail=True)), ("c", _put("c"))])
        self.assertEqual([(ok, str(v)) for ok, v in outcomes], [(True, "a"), (False, "b refused"), (True, "c")])
        self.assertEqual(self.keys(), ["a", "c"])
        self.assertFalse(self.conn.in_transaction)

    def test_sqlite_error_named(self) -> None:
        outcomes = commit_batch(self.conn, "db", [("set 'a'", _put("a")), ("set 'a' again", _put("a"))])
        self.assertEqual(outcomes[0], (True, "a"))
        self.assertFalse(outcomes[1][0])
        self.assertIsInstance(outcomes[1][1], StorageError)
        self.assertIn("SQLite store db: set 'a' again failed: UNIQUE constraint failed", str(outcomes[1][1]))
        self.assertEqual(self.keys(), ["a"])

    def test_failed_commit_keeps_nothing(self) -> None:
        def breaks(conn: sqlite3.Connection) -> None:
            conn.execute("RELEASE w")  # ends the savepoint early: the batch's RELEASE fails

        with self.assertRaises(sqlite3.OperationalError):
            commit_batch(self.conn, "db", [("a", _put("a")), ("x", breaks)])
        self.assertFalse(self.conn.in_transaction)
        self.assertEqual(self.keys(), [])

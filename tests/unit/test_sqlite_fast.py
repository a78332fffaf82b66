"""
The SQLite store's fast paths: reads, and with C{fsync = everysec} commits,
on the reactor thread through a connection that never waits for a lock
(what finds the file locked goes to the store's thread); checkpoints that
fsync those commits; and queued writes committed together in one
transaction (acknowledged after the commit; savepoints only when a write
fails, so that it fails alone).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from acme_appliance.storage import Fsync, StorageError
from acme_appliance.storage import sqlite as sqlite_module
from acme_appliance.storage.sqlite import BUSY_TIMEOUT, CHECKPOINT_INTERVAL, SQLiteStore, commit_batch

from .test_storage import gather

reactor = IReactorFromThreads(_reactor)


@implementer(IReactorFromThreads)
class _FromThreadsOnly:
    """The global reactor as an L{IReactorFromThreads} and nothing more."""

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        _reactor.callFromThread(callable, *args, **kwargs)  # type: ignore[attr-defined]


class _StoreCase(TestCase):
    """A case with C{self.store}, an open L{SQLiteStore} in a new file."""

    fsync = Fsync.EVERYSEC

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.clock = Clock()
        self.path = os.path.join(self.mktemp(), "state.db")
        return Deferred.fromCoroutine(self._opened())

    async def _opened(self) -> None:
        self.store = await self.open_store()

    async def open_store(self) -> SQLiteStore:
        """Another store on the same file, closed at clean-up."""
        opened = await SQLiteStore.open(self.path, reactor=reactor, clock=self.clock, fsync=self.fsync)
        self.addCleanup(lambda: Deferred.fromCoroutine(opened.close()))
        return opened

    def commit_threads(self, off_reactor: Deferred[None] | None = None) -> list[int]:
        """
        The thread of every batch committed from now on, in order.

        @param off_reactor: Fired when a commit starts on another thread.
        """
        threads: list[int] = []
        real = sqlite_module.commit_batch
        reactor_thread = threading.get_ident()

        def recording(conn: sqlite3.Connection, path: str, writes: list[Any]) -> Any:
            threads.append(threading.get_ident())
            if off_reactor is not None and threads[-1] != reactor_thread:
                reactor.callFromThread(off_reactor.callback, None)
            return real(conn, path, writes)

        self.patch(sqlite_module, "commit_batch", recording)
        return threads

    def in_database_file(self, key: str) -> bool:
        """
        Whether the database file alone, without its WAL (what a checkpoint
        copied and fsynced), holds C{key}.
        """
        copy = self.mktemp()
        shutil.copyfile(self.path, copy)
        conn = sqlite3.connect(copy)
        try:
            return bool(conn.execute("SELECT count(*) FROM kv WHERE key = ?", (key,)).fetchone()[0])
        except sqlite3.DatabaseError:  # not even the table yet
            return False
        finally:
            conn.close()

    async def thread_done(self) -> None:
        """Wait until the store's thread has done all it was given."""
        await self.store._run("wait", lambda conn: None)


class _Locked:
    """A connection that finds the file locked by another process."""

    def execute(self, *args: object) -> object:
        error = sqlite3.OperationalError("database is locked")
        error.sqlite_errorcode = sqlite3.SQLITE_BUSY
        raise error

    def close(self) -> None:
        pass


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

    async def test_locked_file_is_read_off_the_reactor(self) -> None:
        """
        Another process holds the file: the read waits on the store's
        thread instead of stalling the reactor, and still answers.
        """
        await self.store.set("k", b"v")
        self.store._local = _Locked()  # type: ignore[assignment]
        got = Deferred.fromCoroutine(self.store.get("k"))
        self.assertNoResult(got)
        self.assertEqual(await got, b"v")

    async def test_reactor_connection_never_waits(self) -> None:
        await self.store.get("k")
        assert self.store._local is not None
        self.assertEqual(self.store._local.execute("PRAGMA busy_timeout").fetchone()[0], 0)

    async def test_closed_reader(self) -> None:
        await self.store.get("k")
        await self.store.close()
        self.assertIsNone(self.store._local)
        with self.assertRaises(StorageError):
            await self.store.scan("")


class CommitOnReactorTests(_StoreCase):
    """
    C{fsync = everysec}: commits on the reactor thread, without an fsync;
    a checkpoint on the store's thread fsyncs them.
    """

    async def test_commits_on_the_reactor_thread(self) -> None:
        threads = self.commit_threads()
        await gather(self.store.set("a", b"1"), self.store.increment("n"))
        self.assertEqual(threads, [threading.get_ident()])
        assert self.store._local is not None
        self.assertEqual(self.store._local.execute("PRAGMA synchronous").fetchone()[0], 1)  # NORMAL

    async def test_locked_file_commits_on_the_thread(self) -> None:
        """
        Another process holds the write lock: the commit waits for it on
        the store's thread, and the reactor goes on meanwhile.
        """
        off_reactor: Deferred[None] = Deferred()
        threads = self.commit_threads(off_reactor)
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")
        written = Deferred.fromCoroutine(self.store.set("k", b"v"))
        await off_reactor
        self.assertEqual(threads[0], threading.get_ident())  # tried here first
        self.assertNoResult(written)
        self.assertEqual(await self.store.get("k"), None)
        other.execute("COMMIT")
        await written
        self.assertEqual(await self.store.get("k"), b"v")
        self.assertEqual(len(threads), 2)
        # Not fsynced there either: the checkpoint does it.
        assert self.store._conn is not None
        self.assertEqual(self.store._conn.execute("PRAGMA synchronous").fetchone()[0], 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    async def test_failed_commit_fails_its_writes(self) -> None:
        def broken(conn: sqlite3.Connection, path: str, writes: list[Any]) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(sqlite_module, "commit_batch", broken)
        with self.assertRaises(StorageError) as caught:
            await self.store.set("k", b"v")
        self.assertEqual(str(caught.exception), f"SQLite store {self.path}: set 'k' failed: disk I/O error")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_checkpoint_fsyncs_within_the_interval(self) -> None:
        await self.store.set("k", b"v")
        self.assertFalse(self.in_database_file("k"))
        self.clock.advance(CHECKPOINT_INTERVAL - 0.1)
        await self.thread_done()
        self.assertFalse(self.in_database_file("k"))
        self.clock.advance(0.1)
        await self.thread_done()
        self.assertTrue(self.in_database_file("k"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_one_checkpoint_for_many_commits(self) -> None:
        for i in range(5):
            await self.store.set(f"k/{i}", b"v")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    async def test_incomplete_checkpoint_tried_again(self) -> None:
        results = [False, True]
        calls: list[bool] = []

        def checkpoint(conn: sqlite3.Connection) -> bool:
            calls.append(True)
            return results.pop(0)

        self.patch(sqlite_module, "checkpoint_wal", checkpoint)
        await self.store.set("k", b"v")
        self.clock.advance(CHECKPOINT_INTERVAL)
        await self.thread_done()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(CHECKPOINT_INTERVAL)
        await self.thread_done()
        self.assertEqual((len(calls), self.clock.getDelayedCalls()), (2, []))

    async def test_failed_checkpoint_logged_and_tried_again(self) -> None:
        def checkpoint(conn: sqlite3.Connection) -> bool:
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(sqlite_module, "checkpoint_wal", checkpoint)
        await self.store.set("k", b"v")
        with capturedLogs() as logs:
            self.clock.advance(CHECKPOINT_INTERVAL)
            await self.thread_done()
        self.assertEqual(
            [e["error"] for e in logs if "error" in e], [f"SQLite store {self.path}: checkpoint failed: disk I/O error"]
        )
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    async def test_checkpoint_empties_the_wal(self) -> None:
        """
        A checkpoint leaves the WAL empty: the next writes start it over,
        even when writes never pause long enough for a checkpoint to find
        nothing new (its file would grow without end).
        """
        for i in range(20):
            await self.store.set(f"k/{i}", b"x" * 2000)
        self.assertGreater(os.path.getsize(self.path + "-wal"), 20 * 2000)
        self.clock.advance(CHECKPOINT_INTERVAL)
        await self.thread_done()
        self.assertEqual(os.path.getsize(self.path + "-wal"), 0)
        self.assertTrue(self.in_database_file("k/19"))

    async def test_checkpoint_waits_briefly_for_readers(self) -> None:
        """
        A reader of the WAL that stays longer than the checkpoint's
        patience: the checkpoint gives up until the next one (it does not
        hold the writes queued behind it for the reader's whole read, nor
        for the store's lock timeout, which would outlast this test's).
        """
        await self.store.set("k", b"v")
        reader = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(reader.close)
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM kv").fetchall()
        self.clock.advance(CHECKPOINT_INTERVAL)
        await self.thread_done()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # tried again later
        reader.execute("COMMIT")
        self.clock.advance(CHECKPOINT_INTERVAL)
        await self.thread_done()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(os.path.getsize(self.path + "-wal"), 0)

    test_checkpoint_waits_briefly_for_readers.timeout = BUSY_TIMEOUT / 2  # type: ignore[attr-defined]

    async def test_checkpoint_under_way_at_close(self) -> None:
        """
        A checkpoint that could not copy everything ends after close began:
        close checkpoints again, and nothing is left scheduled.
        """
        results = [False, True]

        def checkpoint(conn: sqlite3.Connection) -> bool:
            return results.pop(0)

        self.patch(sqlite_module, "checkpoint_wal", checkpoint)
        await self.store.set("k", b"v")
        self.clock.advance(CHECKPOINT_INTERVAL)
        await self.store.close()
        self.assertEqual((results, self.clock.getDelayedCalls()), ([], []))

    async def test_close_fsyncs(self) -> None:
        # Another connection stays open: closing is not the last one, which
        # SQLite would checkpoint anyway.
        other = sqlite3.connect(self.path)
        self.addCleanup(other.close)
        other.execute("SELECT 1 FROM kv").fetchall()
        await self.store.set("k", b"v")
        await self.store.close()
        self.assertTrue(self.in_database_file("k"))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AlwaysFsyncTests(_StoreCase):
    """
    C{fsync = always}: every commit on the store's thread, fsynced.
    """

    fsync = Fsync.ALWAYS

    async def test_commits_on_the_thread_with_fsync(self) -> None:
        threads = self.commit_threads()
        await self.store.set("k", b"v")
        self.assertEqual(len(threads), 1)
        self.assertNotEqual(threads[0], threading.get_ident())
        assert self.store._conn is not None
        self.assertEqual(self.store._conn.execute("PRAGMA synchronous").fetchone()[0], 2)  # FULL
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_reactor_connection_cannot_write(self) -> None:
        await self.store.get("k")
        assert self.store._local is not None
        with self.assertRaises(sqlite3.OperationalError):
            self.store._local.execute("DELETE FROM kv")


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

    async def test_commits_do_not_wake_the_reactor(self) -> None:
        # callFromThread, from the reactor thread, would write to the
        # reactor's waker pipe for every commit.
        wakes: list[None] = []
        real = _reactor.wakeUp  # type: ignore[attr-defined]

        def wake_up() -> None:
            wakes.append(None)
            real()

        self.patch(_reactor, "wakeUp", wake_up)
        await self.store.set("a", b"1")
        # Issued by a waiter of the first commit: the second one.
        await gather(self.store.set("b", b"2"), self.store.set("c", b"3"))
        self.assertEqual(self.batches, [1, 2])
        self.assertEqual(wakes, [])

    async def test_reactor_without_timed_calls(self) -> None:
        """
        A reactor that only calls from threads still gets every batch
        flushed (the store then asks it with C{callFromThread}).
        """
        store = await SQLiteStore.open(self.path, reactor=_FromThreadsOnly(), clock=self.clock)
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        self.batches.clear()
        await store.set("a", b"1")
        await gather(store.set("b", b"2"), store.increment("n"))
        self.assertEqual(self.batches, [1, 2])
        self.assertEqual(await store.get("b"), b"2")

    # A batch never flushed would leave the test waiting.
    test_reactor_without_timed_calls.timeout = 10  # type: ignore[attr-defined]

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
        assert self.store._local is not None
        self.store._local.set_trace_callback(statements.append)
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

"""
The durable embedded L{Store}: one SQLite file in WAL mode.  The writes
issued in one reactor turn are committed together in one transaction.  With
L{Fsync.EVERYSEC} (the default) that commit runs on the reactor thread and
does not wait for the disk (it takes tens of microseconds), and a checkpoint
on a private thread fsyncs it at most L{CHECKPOINT_INTERVAL} later (and
empties the WAL, so that it stays short under sustained writes); with
L{Fsync.ALWAYS} every commit is fsynced on that thread before it is
acknowledged.  Reads (point lookups and prefix scans that take
microseconds) run on the reactor thread.  Whatever finds the file locked by
another process (the CLI, a worker) goes to the thread, which waits for the
lock: the reactor never does.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ._interface import Entry, StorageError, Swap, Write
from .memory import PURGE_INTERVAL, check_entry, check_writes, expires_at, incremented

T = TypeVar("T")

# How long a statement waits for another connection's write lock (the CLI and
# the daemon share the file) before giving up with "database is locked".
BUSY_TIMEOUT = 10.0

#: With L{Fsync.EVERYSEC}: how long after a commit the checkpoint that
#: fsyncs it starts.
CHECKPOINT_INTERVAL = 1.0

#: How long a checkpoint waits for other connections' writes and reads
#: before giving up until the next one.
CHECKPOINT_PATIENCE = 0.1


class Fsync(Enum):
    """
    When the SQLite store's commits reach the disk (C{[storage] fsync}; the
    names are Redis' C{appendfsync} ones).
    """

    #: Each commit is fsynced before the write is acknowledged.
    ALWAYS = "always"
    #: Commits are acknowledged once written to the file (a process crash
    #: loses nothing) and fsynced within L{CHECKPOINT_INTERVAL} (a power cut
    #: may lose the last second).
    EVERYSEC = "everysec"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL NULL
);
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def _prefix_end(prefix: str) -> str | None:
    """
    The smallest string greater than every string that starts with
    C{prefix}, or C{None} when there is none.  SQLite compares TEXT by its
    UTF-8 bytes, which orders like code points, so C{prefix <= key < end}
    selects exactly the keys with that prefix; unlike C{LIKE} it has no
    wildcards and is case-sensitive.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            last += 1
            if 0xD800 <= last < 0xE000:
                # Surrogates cannot be encoded to UTF-8; none sort between.
                last = 0xE000
            return "".join(chars) + chr(last)
    return None


def _live_value(conn: sqlite3.Connection, key: str, now: float) -> tuple[bytes, float | None] | None:
    row = conn.execute(f"SELECT value, expires_at FROM kv WHERE key = ? AND {_LIVE}", (key, now)).fetchone()
    return None if row is None else (bytes(row[0]), row[1])


def _put(conn: sqlite3.Connection, key: str, value: bytes | None, expires: float | None) -> None:
    if value is None:
        conn.execute("DELETE FROM kv WHERE key = ?", (key,))
    else:
        conn.execute("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)", (key, value, expires))


def _swap(conn: sqlite3.Connection, now: float, key: str, expected: Entry, value: Entry, expires: float | None) -> bool:
    current = _live_value(conn, key, now)
    if (None if current is None else current[0]) != expected:
        return False
    _put(conn, key, value, expires)
    return True


def _purge(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)).rowcount


def checkpoint_wal(conn: sqlite3.Connection) -> bool:
    """
    Copy the WAL's committed pages into the database file, fsyncing the WAL
    first and the database file after, then empty the WAL (a C{TRUNCATE}
    checkpoint).  It holds off writers while it runs, and waits up to
    L{CHECKPOINT_PATIENCE} seconds for a write under way and for readers of
    the WAL.  A checkpoint that let writers go on (C{PASSIVE}) would, under
    writes that never pause, end each time with newer pages it had not
    copied: the WAL would never start over and its file would grow with
    everything ever written.

    @return: Whether it completed; if not (another connection kept it
        waiting too long, and it copied what it could without waiting
        more), the WAL may not have been fsynced.
    """
    busy_timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_PATIENCE * 1000)}")
    try:
        busy, logged, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout}")
    return not busy and copied >= logged


def _is_busy(error: sqlite3.Error) -> bool:
    """
    Whether C{error} is another connection's lock on the file.
    """
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


#: One queued write: what it is (for errors), its work, its waiter.
_Write = tuple[str, Callable[[sqlite3.Connection], Any], Deferred[Any]]
#: A write's outcome in a batch: succeeded, and its result or exception.
_Outcome = tuple[bool, Any]


def _run_plain(
    writes: list[tuple[str, Callable[[sqlite3.Connection], Any]]], conn: sqlite3.Connection
) -> list[_Outcome]:
    """
    Run C{writes} one after the other, with no savepoints; the first to
    raise stops them (the caller rolls the transaction back).
    """
    return [(True, work(conn)) for _, work in writes]


def _run_isolated(
    writes: list[tuple[str, Callable[[sqlite3.Connection], Any]]], conn: sqlite3.Connection, path: str
) -> list[_Outcome]:
    """
    Run C{writes} each in its own savepoint, so that one failing is rolled
    back alone.
    """
    outcomes: list[_Outcome] = []
    for what, work in writes:
        conn.execute("SAVEPOINT w")
        try:
            outcomes.append((True, work(conn)))
        except Exception as e:
            conn.execute("ROLLBACK TO w")
            if isinstance(e, sqlite3.Error):
                e = StorageError(f"SQLite store {path}: {what} failed: {e}")
            outcomes.append((False, e))
        conn.execute("RELEASE w")
    return outcomes


def commit_batch(
    conn: sqlite3.Connection, path: str, writes: list[tuple[str, Callable[[sqlite3.Connection], Any]]]
) -> list[_Outcome]:
    """
    Run C{writes} in one C{BEGIN IMMEDIATE} transaction and commit, with the
    outcomes of running each in its own savepoint: one failing write is
    rolled back alone and the others commit.  The common case pays for no
    savepoint: the writes run plainly, and only if one raises is the
    transaction rolled back and the batch run again, each write in its own
    savepoint.

    Running a write twice is safe: every write the store queues (C{set},
    C{add}, C{compare_and_set}, C{increment}, C{delete}, and the purge that
    may precede one) is a pure function of the connection's state and of
    arguments captured when it was issued (the key, the value, the expiry
    and C{now}), with no other effect; a rolled back first run leaves no
    trace.

    @return: Each write's outcome, in order; an outcome counts only once
        this returns (the commit succeeded).
    @raise sqlite3.Error: The transaction could not begin or commit;
        none of the writes happened.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            outcomes = _run_plain(writes, conn)
        except Exception:
            # Another process may write between this rollback and the next
            # BEGIN: as if this batch had come after it.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            outcomes = _run_isolated(writes, conn, path)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return outcomes


class SQLiteStore:
    """
    A L{Store} in an SQLite database file.

    The atomic operations are C{BEGIN IMMEDIATE} transactions, so they are
    atomic against other processes using the same file too.  The writes
    issued in one reactor turn, and those queued while a commit is under
    way, are committed together in the next transaction (a write that fails
    fails alone: see L{commit_batch}); a write is acknowledged only after
    its commit.  Two connections: the reactor thread's, which never waits
    for a lock, runs the reads and, with L{Fsync.EVERYSEC}, the commits; a
    dedicated thread's (busy timeout L{BUSY_TIMEOUT} seconds) creates the
    file, runs the checkpoints, the commits with L{Fsync.ALWAYS}, and
    whatever found the file locked.  Expired rows are invisible, and
    deleted by a write every L{PURGE_INTERVAL} seconds or by
    L{purge_expired}.

    The constructor does no I/O: the file is opened and the schema created
    by the first operation.  L{open} does that at once, so that a bad path is
    reported up front.
    """

    _log = Logger()

    def __init__(
        self, path: str, *, reactor: IReactorFromThreads, clock: IReactorTime, fsync: Fsync = Fsync.EVERYSEC
    ) -> None:
        """
        @param path: The database file; its directory is created if missing.
        @param reactor: Delivers results from the database thread.  If it
            also provides L{IReactorCore}, the thread is stopped at reactor
            shutdown even when L{close} was never called.
        @param clock: Source of the current time for TTL expiry, and runs
            the checkpoints.
        @param fsync: When commits reach the disk.
        """
        self.path = path
        self._reactor = reactor
        self._clock = clock
        self._fsync = fsync
        self._conn: sqlite3.Connection | None = None
        self._local: sqlite3.Connection | None = None
        self._checkpoint_call: IDelayedCall | None = None
        self._queued: list[_Write] = []
        self._writing = False
        self._idle: list[Deferred[None]] = []
        self._closed = False
        self._last_purge = clock.seconds()
        # Started on first use, not here: twistd may fork (daemonise) after
        # building the service, and threads do not survive a fork.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"sqlite {path}")
        self._core = cast(IReactorCore, reactor) if IReactorCore.providedBy(reactor) else None
        self._timed = cast(IReactorTime, reactor) if IReactorTime.providedBy(reactor) else None
        self._shutdown_trigger: Any = None
        if self._core is not None:
            self._shutdown_trigger = self._core.addSystemEventTrigger("during", "shutdown", self._stop_pool)

    @classmethod
    async def open(
        cls, path: str, *, reactor: IReactorFromThreads, clock: IReactorTime, fsync: Fsync = Fsync.EVERYSEC
    ) -> SQLiteStore:
        """
        Open (creating if need be) the database at C{path}.

        @raise StorageError: The file cannot be created or is not a usable
            SQLite database.
        """
        store = cls(path, reactor=reactor, clock=clock, fsync=fsync)
        try:
            await store._run("open", lambda conn: None)
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    def open_now(
        cls, path: str, *, reactor: IReactorFromThreads, clock: IReactorTime, fsync: Fsync = Fsync.EVERYSEC
    ) -> SQLiteStore:
        """
        Like L{open}, but synchronously, for start-up before the reactor
        runs (the connection is made on this thread, then used only by the
        store's own thread).

        @raise StorageError: as L{open}.
        """
        store = cls(path, reactor=reactor, clock=clock, fsync=fsync)
        try:
            store._conn = store._connect()
        except BaseException:
            store._stop_pool()
            raise
        return store

    # -- the database thread --------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        parent = os.path.dirname(self.path)
        try:
            if parent:
                # The database holds the upstream CA account keys: a
                # directory made for it is its owner's only.
                os.makedirs(parent, mode=0o700, exist_ok=True)
        except FileExistsError:
            raise StorageError(f"cannot open database {self.path}: {parent} is not a directory") from None
        except OSError as e:
            raise StorageError(f"cannot open database {self.path}: cannot create {parent}: {e.strerror or e}") from None
        self._make_private()
        conn = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if self._fsync is Fsync.EVERYSEC:
                # Its commits too are fsynced by the checkpoints: one that
                # waited for a lock does not hold it through an fsync.
                conn.execute("PRAGMA synchronous = NORMAL")
            # Changing the mode takes a lock; skip it when another process
            # already did so (the mode is stored in the file).
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode!r})")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise StorageError(f"cannot open database {self.path}: {e}") from None
        self._log.info("opened SQLite store {path}", path=self.path)
        return conn

    def _make_private(self) -> None:
        """
        Create the database file readable by its owner only, before SQLite
        opens it, and take group and other access from an existing one.
        SQLite creates the C{-wal} and C{-shm} files with the database
        file's mode, so they are never readable by others either.
        """
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as e:
            raise StorageError(f"cannot open database {self.path}: {e.strerror or e}") from None
        for path in (self.path, self.path + "-wal", self.path + "-shm"):
            try:
                if os.stat(path).st_mode & 0o077:
                    os.chmod(path, 0o600)
            except FileNotFoundError:
                pass
            except OSError as e:
                self._log.warn("cannot make {path} private: {error}", path=path, error=e.strerror or str(e))

    def _in_thread(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        try:
            return work(self._conn)
        except sqlite3.Error as e:
            raise StorageError(f"SQLite store {self.path}: {what} failed: {e}") from None

    @staticmethod
    def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        # IMMEDIATE takes the write lock up front: a deferred transaction
        # that reads and then writes can fail outright (SQLITE_BUSY_SNAPSHOT)
        # when another process wrote in between, busy timeout or not.
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        return result

    def _connect_local(self) -> sqlite3.Connection:
        """
        The reactor thread's connection: it never waits for a lock (busy
        timeout 0), and with L{Fsync.EVERYSEC} commits without an fsync and
        leaves the checkpoints to the thread.
        """
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            if self._fsync is Fsync.EVERYSEC:
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            else:
                conn.execute("PRAGMA query_only = 1")
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_connection(self, checkpoint: bool) -> None:
        if self._conn is not None:
            try:
                if checkpoint:
                    checkpoint_wal(self._conn)
            finally:
                self._conn.close()
                self._conn = None

    def _stop_pool(self) -> None:
        if self._pool.started:
            self._pool.stop()

    # -- the reactor thread ---------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._pool.joined:
            raise StorageError(f"SQLite store {self.path} is closed")

    async def _run(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        if not self._pool.started:
            self._pool.start()
        return await deferToThreadPool(self._reactor, self._pool, self._in_thread, what, work)

    def _here(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T | None:
        """
        Run C{work} on this thread with the reactor thread's connection,
        once the thread has opened the database (it creates the file and
        its schema).

        @return: C{work}'s result, or C{None} when the database is not open
            yet or another connection holds a lock that C{work} needs: run
            it on the thread.
        @raise StorageError: C{work} failed.
        """
        if self._conn is None:
            return None
        try:
            if self._local is None:
                self._local = self._connect_local()
            return work(self._local)
        except sqlite3.Error as e:
            if _is_busy(e):
                return None
            raise StorageError(f"SQLite store {self.path}: {what} failed: {e}") from None

    async def _read(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """
        Run the read-only C{work} on this thread, or on the database thread
        when L{_here} cannot.
        """
        self._check_open()
        found = self._here(what, lambda conn: (work(conn),))
        return await self._run(what, work) if found is None else found[0]

    def _flush(self) -> None:
        """
        Commit every queued write in one transaction: here with
        L{Fsync.EVERYSEC} unless the file is locked, else on the thread.
        Called only while no commit is under way (its completion flushes
        again).
        """
        batch, self._queued = self._queued, []
        self._writing = bool(batch)
        if not batch:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
            return
        if self._pool.joined:
            self._committed(Failure(StorageError(f"SQLite store {self.path} is closed")), batch)
            return
        writes = [(what, work) for what, work, _ in batch]
        what = writes[0][0] if len(writes) == 1 else f"commit of {len(writes)} writes"
        if self._fsync is Fsync.EVERYSEC:
            try:
                outcomes = self._here(what, lambda conn: commit_batch(conn, self.path, writes))
            except Exception:
                self._committed(Failure(), batch)
                return
            if outcomes is not None:
                self._committed(outcomes, batch)
                return
        if not self._pool.started:
            self._pool.start()
        done = deferToThreadPool(
            self._reactor, self._pool, self._in_thread, what, lambda conn: commit_batch(conn, self.path, writes)
        )
        done.addBoth(self._committed, batch)

    def _committed(self, outcomes: list[_Outcome] | Failure, batch: list[_Write]) -> None:
        if not isinstance(outcomes, Failure):
            self._due_checkpoint()
        for index, (_, _, waiter) in enumerate(batch):
            if isinstance(outcomes, Failure):
                waiter.errback(outcomes)
            elif outcomes[index][0]:
                waiter.callback(outcomes[index][1])
            else:
                waiter.errback(outcomes[index][1])
        if self._queued:
            # The writes the waiters just issued: on the next turn, with
            # whatever else that turn issues (and no recursion).
            self._next_turn()
        else:
            self._flush()

    def _next_turn(self) -> None:
        """
        Have the reactor call L{_flush} on its next turn.  From the reactor
        thread, C{callLater(0)} does that without C{callFromThread}'s wake-up
        of the reactor through its waker pipe: two system calls and a turn
        of the reactor of their own, for every commit.
        """
        if self._timed is not None:
            self._timed.callLater(0, self._flush)
        else:
            self._reactor.callFromThread(self._flush)

    def _due_checkpoint(self) -> None:
        """
        A commit was made: with L{Fsync.EVERYSEC} it was not fsynced, so
        have a checkpoint do it (L{close} does one anyway).
        """
        if self._fsync is Fsync.EVERYSEC and self._checkpoint_call is None and not self._closed:
            self._checkpoint_call = self._clock.callLater(CHECKPOINT_INTERVAL, self._checkpoint)

    def _checkpoint(self) -> None:
        self._checkpoint_call = None
        if self._closed or self._pool.joined:
            return  # close() checkpoints
        if not self._pool.started:
            self._pool.start()
        done = deferToThreadPool(self._reactor, self._pool, self._in_thread, "checkpoint", checkpoint_wal)
        done.addCallbacks(self._checkpointed, self._checkpoint_failed)

    def _checkpointed(self, complete: bool) -> None:
        if not complete:
            self._due_checkpoint()

    def _checkpoint_failed(self, failure: Failure) -> None:
        self._log.warn("SQLite store {path}: {error}; trying again", path=self.path, error=failure.getErrorMessage())
        self._due_checkpoint()

    async def _write(self, what: str, work: Callable[[sqlite3.Connection, float], T]) -> T:
        now = self._clock.seconds()
        purge = now - self._last_purge >= PURGE_INTERVAL
        if purge:
            self._last_purge = now

        # commit_batch may run this twice (the first run rolled back): it
        # must stay a pure function of the connection and what it captures.
        def transaction(conn: sqlite3.Connection) -> T:
            if purge:
                _purge(conn, now)
            return work(conn, now)

        self._check_open()
        done: Deferred[T] = Deferred()
        self._queued.append((what, transaction, done))
        if not self._writing:
            # Flushed on the reactor's next turn, so that the writes issued
            # together (by one request, or by requests handled in the same
            # turn) share one commit.
            self._writing = True
            self._next_turn()
        return await done

    async def purge_expired(self) -> int:
        """
        Delete every expired row now.

        @return: How many rows were deleted.
        """
        now = self._clock.seconds()
        self._last_purge = now
        purged = await self._run("purge", lambda conn: self._transaction(conn, lambda c: _purge(c, now)))
        self._due_checkpoint()
        return purged

    async def get(self, key: str) -> bytes | None:
        check_entry(key, None)
        now = self._clock.seconds()
        found = await self._read(f"get {key!r}", lambda conn: _live_value(conn, key, now))
        return None if found is None else found[0]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_entry(key, value)
        expires = expires_at(self._clock, ttl)
        await self._write(f"set {key!r}", lambda conn, now: _put(conn, key, value, expires))

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        check_entry(key, value)
        expires = expires_at(self._clock, ttl)

        def add(conn: sqlite3.Connection, now: float) -> bool:
            if _live_value(conn, key, now) is not None:
                return False
            _put(conn, key, value, expires)
            return True

        return await self._write(f"add {key!r}", add)

    async def compare_and_set(self, key: str, expected: Entry, value: Entry, *, ttl: float | None = None) -> bool:
        check_entry(key, expected)
        check_entry(key, value)
        expires = expires_at(self._clock, ttl)
        return await self._write(
            f"compare_and_set {key!r}", lambda conn, now: _swap(conn, now, key, expected, value, expires)
        )

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        check_entry(key, None)
        incremented(key, None, amount)
        created_expiry = expires_at(self._clock, ttl)

        def increment(conn: sqlite3.Connection, now: float) -> int:
            current = _live_value(conn, key, now)
            result = incremented(key, None if current is None else current[0], amount)
            # Like Redis INCR: the counter keeps the expiry it already had; a
            # new one gets C{ttl}'s.
            _put(conn, key, str(result).encode("ascii"), created_expiry if current is None else current[1])
            return result

        return await self._write(f"increment {key!r}", increment)

    async def delete(self, key: str) -> bool:
        check_entry(key, None)

        def delete(conn: sqlite3.Connection, now: float) -> bool:
            found = _live_value(conn, key, now) is not None
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            return found

        return await self._write(f"delete {key!r}", delete)

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        expiries = check_writes(self._clock, writes)

        def apply(conn: sqlite3.Connection, now: float) -> list[bool]:
            done = []
            for write, expires in zip(writes, expiries, strict=True):
                if isinstance(write, Swap):
                    done.append(_swap(conn, now, write.key, write.expected, write.value, expires))
                else:
                    _put(conn, write.key, write.value, expires)
                    done.append(True)
            return done

        # One queued write: its writes commit together or not at all.
        return await self._write(f"{len(writes)} writes in order", apply)

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        check_entry(prefix, None)
        now = self._clock.seconds()
        end = _prefix_end(prefix)
        if end is None:
            query = f"SELECT key, value FROM kv WHERE key >= ? AND {_LIVE} ORDER BY key"
            args: tuple[object, ...] = (prefix, now)
        else:
            query = f"SELECT key, value FROM kv WHERE key >= ? AND key < ? AND {_LIVE} ORDER BY key"
            args = (prefix, end, now)

        def scan(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            return [(k, bytes(v)) for k, v in conn.execute(query, args)]

        return await self._read(f"scan {prefix!r}", scan)

    async def close(self) -> None:
        """
        Close the connection and stop the database thread, after any
        operation already under way.
        """
        if self._closed:
            return
        self._closed = True
        if self._writing:
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            await idle
        if self._local is not None:
            self._local.close()
            self._local = None
        if self._checkpoint_call is not None:
            self._checkpoint_call.cancel()
            self._checkpoint_call = None
        # A checkpoint may be under way, and find it could not copy all.
        checkpoint = self._fsync is Fsync.EVERYSEC
        try:
            if self._pool.started:
                await deferToThreadPool(self._reactor, self._pool, self._close_connection, checkpoint)
            else:
                # Reactor shutdown already stopped the thread.
                self._close_connection(checkpoint)
        finally:
            self._stop_pool()
            if self._core is not None and self._shutdown_trigger is not None:
                self._core.removeSystemEventTrigger(self._shutdown_trigger)
                self._shutdown_trigger = None

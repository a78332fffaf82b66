"""
Every file the appliance writes that holds a secret is its owner's only
(0600), in a directory its owner's only (0700), from the moment it exists.
"""

from __future__ import annotations

import os
import sqlite3
import stat

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from acme_appliance.admin import ensure_api_key
from acme_appliance.core import write_private_file
from acme_appliance.storage import SQLiteStore

reactor: IReactorFromThreads = _reactor  # type: ignore[assignment]


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class _Umask:
    """
    Run with the permissive umask a careless service manager leaves.
    """

    def _loose_umask(self, case: SynchronousTestCase) -> None:
        previous = os.umask(0o022)
        case.addCleanup(os.umask, previous)


class SQLiteModeTests(_Umask, TestCase):
    async def _open(self, path: str) -> SQLiteStore:
        store = await SQLiteStore.open(path, reactor=reactor, clock=Clock())
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        return store

    def _files(self, path: str) -> dict[str, int]:
        return {
            name: _mode(os.path.join(os.path.dirname(path), name)) for name in sorted(os.listdir(os.path.dirname(path)))
        }

    async def test_database_wal_shm_and_directory(self) -> None:
        self._loose_umask(self)
        path = os.path.join(self.mktemp(), "var", "state.db")
        store = await self._open(path)
        self.assertEqual(_mode(os.path.dirname(path)), 0o700)
        self.assertEqual(_mode(path), 0o600)
        await store.set("ca/account-key", b"-----BEGIN PRIVATE KEY-----")
        self.assertEqual(self._files(path), {"state.db": 0o600, "state.db-shm": 0o600, "state.db-wal": 0o600})

    async def test_open_now(self) -> None:
        self._loose_umask(self)
        path = os.path.join(self.mktemp(), "state.db")
        store = SQLiteStore.open_now(path, reactor=reactor, clock=Clock())
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        await store.set("k", b"v")
        self.assertEqual(set(self._files(path).values()), {0o600})

    async def test_existing_readable_files_are_tightened(self) -> None:
        # A database an older version left world-readable, with its WAL.
        self._loose_umask(self)
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "state.db")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
        self.assertEqual(_mode(path), 0o644)
        store = await self._open(path)
        await store.set("k", b"v")
        conn.close()
        self.assertEqual(set(self._files(path).values()), {0o600})

    async def test_existing_directory_is_left_alone(self) -> None:
        # The operator chose this directory's mode; only what the store
        # creates is made private.
        directory = self.mktemp()
        os.makedirs(directory)
        os.chmod(directory, 0o750)
        await self._open(os.path.join(directory, "state.db"))
        self.assertEqual(_mode(directory), 0o750)


class PrivateFileDirectoryTests(_Umask, SynchronousTestCase):
    def test_key_directory_is_private(self) -> None:
        self._loose_umask(self)
        path = os.path.join(self.mktemp(), "tls", "key.pem")
        write_private_file(path, b"secret")
        self.assertEqual((_mode(os.path.dirname(path)), _mode(path)), (0o700, 0o600))

    def test_admin_key(self) -> None:
        self._loose_umask(self)
        path = os.path.join(self.mktemp(), "admin", "api.key")
        ensure_api_key(path)
        self.assertEqual((_mode(os.path.dirname(path)), _mode(path)), (0o700, 0o600))


class SystemdUnitTests(SynchronousTestCase):
    def test_state_directory_private(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "etc", "acme-appliance.service"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertIn("StateDirectoryMode=0700", lines)
        self.assertIn("UMask=0077", lines)

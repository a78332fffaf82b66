"""
Tests for L{acme_appliance.core.write_private_file} and
L{acme_appliance.core.write_private_files}.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.admin import ensure_api_key
from acme_appliance.core import write_private_file, write_private_files


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class WritePrivateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.directory, "sub", "secret.key")

    def test_mode_0600(self) -> None:
        """
        By default the file is readable by its owner only, whatever the
        umask, and its directory is made.
        """
        old = os.umask(0)
        try:
            write_private_file(self.path, b"secret")
        finally:
            os.umask(old)
        self.assertEqual(mode(self.path), 0o600)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"secret")

    def test_given_mode(self) -> None:
        write_private_file(self.path, b"public", 0o644)
        self.assertEqual(mode(self.path), 0o644)

    def test_never_readable_by_others(self) -> None:
        """
        The data is written to a file that is 0600 from its creation, before
        it gets its final mode.
        """
        modes: list[int] = []
        real_fchmod = os.fchmod

        def recording_fchmod(fd: int, new_mode: int) -> None:
            modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
            real_fchmod(fd, new_mode)

        self.patch(os, "fchmod", recording_fchmod)
        write_private_file(self.path, b"public", 0o644)
        self.assertEqual(modes, [0o600])

    def test_atomic_replace(self) -> None:
        """
        An existing file is replaced by a new inode in one rename: a reader
        holding the old file keeps reading the old contents, and no
        temporary file is left behind.
        """
        write_private_file(self.path, b"old")
        with open(self.path, "rb") as reader:
            write_private_file(self.path, b"new")
            self.assertEqual(reader.read(), b"old")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["secret.key"])

    def test_fsynced(self) -> None:
        """
        The data and the directory entry are fsync-ed.
        """
        synced: list[bool] = []
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
            real_fsync(fd)

        self.patch(os, "fsync", recording_fsync)
        write_private_file(self.path, b"secret")
        self.assertEqual(synced, [False, True])

    def test_exclusive(self) -> None:
        """
        With C{exclusive}, an existing file is kept and L{FileExistsError}
        raised; nothing is left behind.
        """
        write_private_file(self.path, b"first", exclusive=True)
        self.assertRaises(FileExistsError, write_private_file, self.path, b"second", exclusive=True)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"first")
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["secret.key"])

    def test_all_or_nothing(self) -> None:
        """
        When one file cannot be written, none is, and no temporary file is
        left behind.
        """
        os.makedirs(self.directory)
        blocker = os.path.join(self.directory, "blocker")
        with open(blocker, "w") as f:
            f.write("a file where a directory should be")
        first = os.path.join(self.directory, "first.key")
        self.assertRaises(
            OSError, write_private_files, [(first, b"key", 0o600), (os.path.join(blocker, "cert.pem"), b"c", 0o644)]
        )
        self.assertEqual(os.listdir(self.directory), ["blocker"])


class ApiKeyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "admin.key")

    def test_created_once(self) -> None:
        """
        The key is created 0600 on first use and read back afterwards.
        """
        key = ensure_api_key(self.path)
        self.assertGreaterEqual(len(key), 16)
        self.assertEqual(mode(self.path), 0o600)
        self.assertEqual(ensure_api_key(self.path), key)

    def test_short_key(self) -> None:
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w") as f:
            f.write("short\n")
        error = self.assertRaises(ValueError, ensure_api_key, self.path)
        self.assertEqual(str(error), f"{self.path}: the admin key must be at least 16 characters")

"""
Files that appear whole and are never readable by others: keys, secrets and
the certificates written next to them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence


def write_private_files(files: Sequence[tuple[str, bytes, int]], *, exclusive: bool = False) -> None:
    """
    Write each C{(path, data, mode)} so that it appears complete, in order,
    and only after all of them could be written.

    Each is first written, fsync-ed, to a temporary file next to its target
    that is created readable by its owner only (then given C{mode}), so a
    key is never readable by others, not even for a moment.

    @param exclusive: never replace an existing file: raise
        L{FileExistsError} instead (for a file that must be created once;
        the files before the existing one are already in place).
    @raise OSError: a directory cannot be made or a file cannot be written;
        no temporary file is left behind.
    """
    staged: list[str] = []
    try:
        for path, data, mode in files:
            staged.append(_stage(path, data, mode))
        for temporary, (path, _, _) in zip(staged, files):
            if exclusive:
                os.link(temporary, path)
            else:
                os.rename(temporary, path)
    finally:
        for temporary in staged:
            if os.path.lexists(temporary):
                os.unlink(temporary)
    for directory in dict.fromkeys(os.path.dirname(path) or "." for path, _, _ in files):
        fsync_directory(directory)


def write_private_file(path: str, data: bytes, mode: int = 0o600, *, exclusive: bool = False) -> None:
    """
    Write one file as L{write_private_files} does: atomically, fsync-ed,
    never readable beyond C{mode}.
    """
    write_private_files([(path, data, mode)], exclusive=exclusive)


def fsync_directory(path: str) -> None:
    """
    Make the names created in the directory C{path} durable.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(path: str, data: bytes, mode: int) -> str:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # mkstemp creates the file 0600 (O_EXCL); the name ends like the target's.
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{os.path.basename(path)}", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary

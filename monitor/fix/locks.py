"""One fixer per table: the dialect's named lock (PostgreSQL `pg_try_advisory_lock`, MySQL/MariaDB `GET_LOCK`), or
a file lock where it has none (SQLite).

The lock is taken without waiting; a second dupewatch process gets `FixRefused` with a clear message.
It is keyed by the resolved table (two checks on one table, say `parent` and `public.parent`, must not fix
it at the same time) and held on its own
connection for as long as the fix (or undo) runs. A killed process loses it with its connection or file
descriptor, so a crash never leaves a stale lock behind; a file lock's file is removed when the lock is released.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256
from pathlib import Path

import sqlalchemy as sa

from monitor.db import Database, DatabaseError
from monitor.fix.errors import FixRefused


def _lock_name(table: str) -> str:
    return "dupewatch_fix_" + sha256(table.encode()).hexdigest()[:32]


def _refusal(table: str, what: str) -> FixRefused:
    return FixRefused(f"table {table!r} is already being fixed (or undone) by another dupewatch process "
                      f"({what} is held); wait for it to finish, then run again")


@contextmanager
def fix_lock(db: Database, key: str, table: str) -> Iterator[None]:
    """Hold the fix lock keyed by `key` (the resolved table's identity, see `Catalog.table_identity`) or raise
    `FixRefused` naming `table` (as configured, e.g. `auth.login_source`)."""
    named = db.rules.named_lock(key)
    if named is None:
        with _file_lock(db, key, table):
            yield
        return
    with db.connect(db.writer) as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(named.acquire).scalar()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None
        if not got:
            raise _refusal(table, named.what)
        try:
            yield
        finally:
            try:
                conn.execute(named.release)
            except sa.exc.DBAPIError:
                conn.invalidate()  # closing the session releases a session-level lock


@contextmanager
def _file_lock(db: Database, key: str, table: str) -> Iterator[None]:
    """An exclusive `flock` on a file beside the database, removed when released, so that no empty lock file
    is left behind after a fix. Removing a lock file races with a process that opened it just before: that
    process would lock a file no longer at the path. So a lock counts only if, once taken, the path still names
    the locked file; otherwise it is taken again on the file now there.

    The lock is named by the database file itself, not by the URL's spelling of it: its real path (symlinks and
    a relative path resolved, where the lock file is made) and its device and inode, so that every config reaching
    the file (`sqlite:///app.db` from its directory, `sqlite:////srv/app.db`, a symlink to it) takes one lock."""
    database = db.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database cannot be shared with another process
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: SQLite's own write lock still serialises batches
        yield
        return
    real = os.path.realpath(database)
    try:
        found = os.stat(real)
        key = f"{found.st_dev}:{found.st_ino}:{key}"
    except OSError:
        pass  # (no file yet: SQLite makes it on connecting; the real path names it alone)
    path = Path(f"{real}.dupewatch-{_lock_name(key)}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(table, f"file lock {path}") from None
        if _names(path, fd):
            break
        os.close(fd)  # removed by the holder that just released it: lock the file now at the path
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked: no other process holds a lock on this file
        os.close(fd)  # releases the lock


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the open file `fd`."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

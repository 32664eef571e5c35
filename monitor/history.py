"""The local state store: every run of every check, in an SQLite file shared by the dashboard and the daemon.

Bounded by a retention period (older runs are pruned as new ones arrive). WAL mode and a busy timeout let
a dashboard and a daemon write to the same file. Safe to call from any thread.

Runs and incremental state are keyed by the **subject** of a check: a digest of what it measures (the server
as it identifies itself and the database, or the SQLite file's device and inode: `Database.server_place`; the
table or query; the key and every option that decides its groups; what it finds), never by the names a config
gives the check or the database, nor by the spelling of its URL. Two projects whose configs both say `app` and
`users-email` keep apart; two URLs naming one server (`localhost`, `127.0.0.1`) share history; a renamed check
keeps its history only if it still measures the same thing. The place a URL's address was last found to name is
kept (`places`), so that a server that does not answer is still known by what it said before. Runs stored before
subjects existed (no subject) are ignored and pruned by the retention; incremental state stored by check name is
not read again (the next run is a full pass).
Incremental state is keyed by the subject and the check's watermark column (`monitor.incremental.state_key`), so
two checks of one table with other `incremental` columns never share a watermark; `table_changes` notes what a fix
or an undo changed, for the incremental checks of that table to learn at their next run. A check's known groups are
`subject_groups` with the changes of its last runs applied in order (`subject_group_changes`, one row per run,
folded into `subject_groups` every JOURNAL_RUNS runs: see there). `live_positions` keeps,
per database (by its place), where live mode's change stream was read and counted up to (monitor/live/reader.py);
`live_group_sets`/`live_groups` the duplicate groups a daemon's live mode knew last (their identities as the database
computes them), by subject, so that a restarted daemon counts the groups formed while it was down as new; each set
with the daemon that saved it (`owner`: its config file and shard) and the database and check it saved it for, so
that a daemon loading a config without that check deletes it (`forget_live_groups`), and a check whose definition
changed (another subject) keeps one set, not one per definition.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import platformdirs

from monitor.config import CheckConfig
from monitor.detect import CheckResult

# Who saves a check's live groups: (owner: a daemon's config file and shard, database, check), as config names them.
LiveSaver = tuple[str, str, str]

# The known groups an incremental run changed are journaled (`subject_group_changes`: one row per run, the groups
# as JSON) and folded into `subject_groups` once a check has this many journaled runs, or at once for a run that
# changed more groups than JOURNAL_GROUPS: a run's 100 new groups inserted among 20,000 dirtied some 90 pages of
# the B-tree for its commit to write to the WAL (1.0 ms a save, median of 300; mean 2.7 ms with the checkpoints),
# one journal row 0.19 ms (mean 0.45 ms).
JOURNAL_RUNS = 50
JOURNAL_GROUPS = 2_000
PRUNE_EVERY = 200  # runs recorded between two prunes
PRUNE_STEP = 1000  # runs deleted per step; the lock is released between steps, so writers never wait long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    database TEXT NOT NULL,
    finished_at REAL NOT NULL,
    status TEXT NOT NULL,
    groups INTEGER,
    excess_rows INTEGER,
    duration_ms REAL NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS subject_state (
    subject TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    watermark TEXT,
    seen TEXT NOT NULL,
    last_full_at REAL,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS subject_groups (
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    rows INTEGER NOT NULL,
    first_seen_at REAL NOT NULL,
    first_seen_generation INTEGER NOT NULL,
    PRIMARY KEY (subject, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subject_group_changes (
    subject TEXT NOT NULL,
    generation INTEGER NOT NULL,
    changed TEXT NOT NULL,
    removed TEXT NOT NULL,
    PRIMARY KEY (subject, generation)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (finished_at);
CREATE TABLE IF NOT EXISTS places (
    address TEXT PRIMARY KEY,
    place TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS table_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    table_key TEXT NOT NULL,
    at REAL NOT NULL,
    why TEXT NOT NULL,
    restored INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS table_changes_by_table ON table_changes (table_key, id);
CREATE TABLE IF NOT EXISTS live_positions (
    place TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS live_group_sets (
    subject TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS live_groups (
    subject TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (subject, identity)
) WITHOUT ROWID;
"""
# Runs recorded before subjects existed have none: no query by subject reads them (see the module docstring).
_SUBJECT_COLUMN = """
ALTER TABLE runs ADD COLUMN subject TEXT;
"""
# Columns added to the incremental state after the first release: (table, column, definition).
_STATE_COLUMNS = [("subject_state", "changes_seen", "INTEGER NOT NULL DEFAULT 0"),
                  ("subject_state", "recount_position", "INTEGER NOT NULL DEFAULT 0"),
                  ("subject_state", "pending_since", "TEXT"),
                  ("subject_state", "removals_seen", "INTEGER"),
                  ("subject_state", "recount_left", "INTEGER NOT NULL DEFAULT -1"),
                  ("subject_state", "snapshot", "TEXT"),
                  ("subject_state", "last_run_at", "REAL"),
                  ("subject_state", "window_digest", "TEXT"),
                  ("subject_state", "storage", "TEXT"),
                  ("subject_state", "positions", "TEXT"),
                  ("subject_groups", "spelling", "TEXT"),
                  ("live_group_sets", "owner", "TEXT"),
                  ("live_group_sets", "database", "TEXT"),
                  ("live_group_sets", "check_name", "TEXT")]
_SUBJECT_INDEX = "CREATE INDEX IF NOT EXISTS runs_by_subject ON runs (subject, finished_at)"
_RUN_COLUMNS = "check_name, database, finished_at, status, groups, excess_rows, duration_ms, error"


def subject(place: list[str], check: CheckConfig, sql: str | None = None) -> str:
    """The digest of what `check` measures on the database at `place` (`monitor.db.Database.server_place`); `sql`
    is a custom check's query text. Everything that decides the figures, nothing that merely names them."""
    if check.is_custom:
        return _subject_digest((*place, check.finds, "query", " ".join((sql or "").split())))
    return _subject_digest((*place, check.finds, "table", check.table,
                            None if check.key is None else tuple(check.key),
                            check.where and " ".join(check.where.split()), check.nulls, check.case_insensitive,
                            check.trim_whitespace))


@functools.lru_cache(maxsize=4096)
def _subject_digest(parts: tuple[Any, ...]) -> str:
    """`subject`'s digest of its parts (a tuple is the JSON array its list was), kept: a run asks for it twice
    (its state's key and its result), and the JSON text and its SHA-256 cost 0.05 ms each time in a run."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


PRUNE_STATEMENT = ("DELETE FROM runs WHERE id IN (SELECT id FROM runs INDEXED BY runs_by_time WHERE finished_at < ? "
                   "ORDER BY finished_at LIMIT ?)")


def default_state_path() -> Path:
    return Path(platformdirs.user_state_dir("dupewatch", appauthor=False)) / "history.sqlite"


def make_private(path: Path) -> None:
    """Create `path`'s directories (0700) and the file itself (0600) before SQLite opens it, so that run
    history (check names, error lines) is readable by its owner only; SQLite gives its -wal and -shm files
    the database file's mode. An existing file is narrowed to 0600; existing directories are left alone
    (they may be shared, such as /var/lib)."""
    missing = [parent for parent in path.parents if not parent.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        pass  # not the owner: the file's owner decides
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Run:
    """One stored run (a `CheckResult` as it came back from the store)."""

    check: str  # the names the check and its database had in the config that recorded the run
    database: str
    finished_at: float
    status: str
    groups: int | None
    excess_rows: int | None
    duration_ms: float
    error: str | None

    @property
    def finished(self) -> datetime:
        return datetime.fromtimestamp(self.finished_at).astimezone()


@dataclass(frozen=True)
class KnownGroup:
    """A duplicate group an incremental check knows of: its key (the encoded group identity: the key as the
    database compares it), rows at the last count, when (UNIX time) and in which saved generation of the check's
    state dupewatch first saw it, and its `spelling` (encoded key values) where that differs from its key."""

    key: str
    rows: int
    first_seen_at: float
    first_seen_generation: int
    spelling: str | None = None


@dataclass(frozen=True)
class TableChange:
    """A fix or an undo changed rows of a table (`table_key`, see `monitor.incremental.table_key`): `restored`
    when rows came back below any watermark."""

    id: int
    why: str
    restored: bool


@dataclass
class IncrementalState:
    """What an incremental check carries from one run to the next (see `monitor/incremental/`).

    `key` is what it is stored by (`monitor.incremental.state_key`: what the check measures, see `subject`, and
    its watermark column); `fingerprint` names the
    database (as the server tells it), table and check definition the state belongs to; `watermark` is the
    encoded highest value of the incremental column read; `seen` the encoded identities of rows read inside
    the overlap window (identity and key digest); `generation` counts saves (optimistic concurrency between
    processes); `changes_seen` the last table change (`TableChange.id`) the state accounts for;
    `recount_position` which slice of the known groups the next run re-counts; `pending_since` the encoded start of
    the oldest transaction running at the last run (the next run reads from there at the latest);
    `removals_seen` the database's count of rows deleted or updated in the table at the last run (None: it keeps
    none) and `recount_left` the slices of known groups still to re-count since that count last moved (-1: always);
    `snapshot` what the database said of the transactions running when the last run read (`Dialect.snapshot_mark`:
    on PostgreSQL its snapshot's xmin), so that the next run re-reads below the watermark only the rows committed
    since (None: the whole overlap window); `last_run_at` when the last run ran (the next re-counts the share of the
    known groups the time since calls for, `recount_every`); `window_digest` what the database said of the
    rows of the overlap window the next run re-reads, as the last run read (`Dialect.window_digest`: their count
    and a sum of a hash of each row's identity and key, with the window's bounds; None: none taken), so that the
    next run skips re-reading the window when the database gives the same digest; `storage` what the database
    said of the table's storage at the last run that read it (`Dialect.storage_identity_column`,
    `storage_identity_every`; None: nothing), so that a run
    after a TRUNCATE or a rewrite (rows below the watermark no run read) is a full pass; `positions` the
    (database clock, position) of recent runs of an id watermark (`monitor.incremental.window.next_positions`), so
    that a run reads from the position of the last run before the oldest writing transaction began.
    """

    key: str
    fingerprint: str
    watermark: str | None
    seen: list[str]
    last_full_at: float | None
    generation: int = 0
    groups: dict[str, KnownGroup] = field(default_factory=dict)
    # What changed since the state the run started from, when the run knows (saves rewriting every group).
    updated: list[str] | None = None
    removed: list[str] | None = None
    changes_seen: int = 0
    recount_position: int = 0
    pending_since: str | None = None
    removals_seen: int | None = None
    recount_left: int = -1
    snapshot: str | None = None
    last_run_at: float | None = None
    window_digest: str | None = None
    storage: str | None = None
    positions: str | None = None


def _earlier_mark(a: str | None, b: str | None) -> str | None:
    """The earlier of two snapshot marks (integers as text; None, "re-read the whole window", wins)."""
    if a is None or b is None:
        return None
    try:
        return a if int(a) <= int(b) else b
    except ValueError:
        return None


class History:
    def __init__(self, path: Path | None = None, retention_seconds: float = 30 * 86400.0) -> None:
        self.path = path or default_state_path()
        self.retention = retention_seconds
        make_private(self.path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(runs)")}
        if "subject" not in columns:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                self._conn.executescript(_SUBJECT_COLUMN)
        self._conn.execute(_SUBJECT_INDEX)
        for table, column, definition in _STATE_COLUMNS:
            if column not in {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        self._since_prune = 0
        self._closed = False
        self.prune()  # a store reopened after a long pause (or with a shorter retention) starts trimmed

    def record(self, result: CheckResult) -> None:
        """Store one run under its subject; a no-op once closed (a run abandoned at shutdown may finish
        afterwards) or for a result without a subject (nothing could say what it measured)."""
        with self._lock:
            if self._closed or result.subject is None:
                return
            self._conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (result.name, result.database, result.finished_at.timestamp(), result.status, result.groups,
                 result.excess_rows, result.duration_ms, result.error, result.subject),
            )
            self._since_prune += 1
            due = self._since_prune >= PRUNE_EVERY
        if due:
            self.prune()

    def remember_place(self, address: list[str], place: list[str]) -> None:
        """Keep the place (`Database.server_place`) a URL's address (`Database.address`) was found to name."""
        with self._lock:
            if not self._closed:
                self._conn.execute("INSERT OR REPLACE INTO places (address, place, seen_at) VALUES (?, ?, ?)",
                                   (json.dumps(address), json.dumps(place), time.time()))

    def known_place(self, address: list[str]) -> list[str] | None:
        """The place this address was last found to name, or None."""
        with self._lock:
            if self._closed:
                return None
            row = self._conn.execute("SELECT place FROM places WHERE address = ?", (json.dumps(address),)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    # -- live mode's stream positions -------------------------------------------------------------

    def save_live_position(self, place: list[str], position: str) -> None:
        """Where the change stream of the database at `place` (`Database.server_place`) was read and counted up
        to (`ChangeStream.position`), for a daemon started later to resume from it or report the gap."""
        with self._lock:
            if not self._closed:
                self._conn.execute("INSERT OR REPLACE INTO live_positions (place, position, saved_at) VALUES (?, ?, ?)",
                                   (json.dumps(place), position, time.time()))

    def live_position(self, place: list[str]) -> tuple[str, float] | None:
        """The position saved for the database at `place` and when it was saved, or None."""
        with self._lock:
            if self._closed:
                return None
            row = self._conn.execute("SELECT position, saved_at FROM live_positions WHERE place = ?",
                                     (json.dumps(place),)).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def save_live_groups(self, subject: str, fingerprint: str, present: Iterable[str], gone: Iterable[str], *,
                         replace: bool, saver: LiveSaver | None = None) -> bool:
        """The duplicate groups live mode knows of a check (`subject`), by identity (`encode_key` of what the
        database computes: `TableCheck.group_identities`): `present` added and `gone` removed since the last save,
        or (`replace`) `present` is all of them. `fingerprint`: what decides the identities (collation versions).

        False, and nothing written, when only changes are given (not `replace`) but the set stored is not the one
        they change (none stored, or under another fingerprint: another process sharing this state file, or the
        set deleted meanwhile): storing them alone would store a partial set as complete, and a restart would count
        every group left out as new. The caller saves all of them next time (`LiveGroups.resave`).

        `saver`: who saves them, for which database and check; saving all of them (`replace`) deletes the sets the
        same saver saved for that check under another subject (its definition changed)."""
        with self._lock:
            if self._closed:
                return True
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = conn.execute("SELECT fingerprint FROM live_group_sets WHERE subject = ?",
                                      (subject,)).fetchone()
                if not replace and (stored is None or stored[0] != fingerprint):
                    conn.execute("ROLLBACK")
                    return False
                if replace:
                    conn.execute("DELETE FROM live_groups WHERE subject = ?", (subject,))
                    if saver is not None:
                        self._delete_live_sets(conn, [row[0] for row in conn.execute(
                            "SELECT subject FROM live_group_sets WHERE owner = ? AND database = ? AND check_name = ?"
                            " AND subject <> ?", (*saver, subject))])
                else:
                    conn.executemany("DELETE FROM live_groups WHERE subject = ? AND identity = ?",
                                     ((subject, identity) for identity in gone))
                conn.executemany("INSERT OR IGNORE INTO live_groups (subject, identity) VALUES (?, ?)",
                                 ((subject, identity) for identity in present))
                owner, database, check = saver if saver is not None else (None, None, None)
                conn.execute("INSERT OR REPLACE INTO live_group_sets (subject, fingerprint, saved_at, owner, database,"
                             " check_name) VALUES (?, ?, ?, ?, ?, ?)",
                             (subject, fingerprint, time.time(), owner, database, check))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return True

    def forget_live_groups(self, owner: str, kept: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Delete the groups `owner` saved (`LiveSaver`) for a check not in `kept` ((database, check) pairs: the
        checks its config now follows live); returns the (database, check) pairs deleted. A set saved by another
        owner (another config sharing the state file, another shard) or before owners were kept is left alone."""
        keep = set(kept)
        with self._lock:
            if self._closed:
                return []
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                gone = [(str(subject), (str(database), str(check))) for subject, database, check in conn.execute(
                    "SELECT subject, database, check_name FROM live_group_sets WHERE owner = ?", (owner,))
                    if (database, check) not in keep]
                self._delete_live_sets(conn, [subject for subject, _ in gone])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return sorted({named for _, named in gone})

    @staticmethod
    def _delete_live_sets(conn: sqlite3.Connection, subjects: list[str]) -> None:
        conn.executemany("DELETE FROM live_groups WHERE subject = ?", ((s,) for s in subjects))
        conn.executemany("DELETE FROM live_group_sets WHERE subject = ?", ((s,) for s in subjects))

    def live_groups(self, subject: str) -> tuple[str, set[str]] | None:
        """The fingerprint and the identities of the groups live mode last saved for `subject`, or None."""
        with self._lock:
            if self._closed:
                return None
            self._conn.execute("BEGIN")  # one snapshot for the set and its groups
            try:
                row = self._conn.execute("SELECT fingerprint FROM live_group_sets WHERE subject = ?",
                                         (subject,)).fetchone()
                identities = {str(r[0]) for r in self._conn.execute(
                    "SELECT identity FROM live_groups WHERE subject = ?", (subject,))} if row else set()
            finally:
                self._conn.execute("COMMIT")
        return None if row is None else (str(row[0]), identities)

    def prune(self) -> int:
        """Delete the runs older than the retention, `PRUNE_STEP` at a time through the `runs_by_time` index
        (never a scan of the table under the lock); returns how many."""
        cutoff, deleted = time.time() - self.retention, 0
        while True:
            with self._lock:
                if self._closed:
                    return deleted
                self._since_prune = 0
                step = self._conn.execute(PRUNE_STATEMENT, (cutoff, PRUNE_STEP)).rowcount
            deleted += step
            if step < PRUNE_STEP:
                return deleted

    def recent(self, subject: str, limit: int = 60) -> list[Run]:
        """The last `limit` runs of a subject (see `subject`), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE subject = ? ORDER BY finished_at DESC LIMIT ?",
                (subject, limit)).fetchall()
        return [Run(*row) for row in reversed(rows)]

    def since(self, subject: str, since: float) -> list[Run]:
        """Every run of a subject since a UNIX time, oldest first (for trend charts)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE subject = ? AND finished_at >= ? ORDER BY finished_at",
                (subject, since)).fetchall()
        return [Run(*row) for row in rows]

    def last_success(self, subject: str) -> Run | None:
        """The subject's last successful run, whichever config recorded it."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE subject = ? AND status != 'error'"
                " ORDER BY finished_at DESC LIMIT 1", (subject,)).fetchone()
        return Run(*row) if row else None

    # -- incremental state ---------------------------------------------------------------------

    def load_incremental(self, key: str) -> IncrementalState | None:
        """The saved state of an incremental check, with its known groups; None when there is none."""
        with self._lock:
            if self._closed:
                return None
            self._conn.execute("BEGIN")  # one snapshot for the state row and its groups
            try:
                row = self._conn.execute(
                    "SELECT fingerprint, watermark, seen, last_full_at, generation, changes_seen, recount_position,"
                    " pending_since, removals_seen, recount_left, snapshot, last_run_at, window_digest, storage,"
                    " positions FROM subject_state WHERE subject = ?",
                    (key,)).fetchone()
                known = self._known_groups(key) if row else {}
            finally:
                self._conn.execute("COMMIT")
        if row is None:
            return None
        return IncrementalState(key, row[0], row[1], json.loads(row[2]), row[3], row[4],
                                known, changes_seen=row[5], recount_position=row[6],
                                pending_since=row[7], removals_seen=row[8], recount_left=row[9],
                                snapshot=row[10], last_run_at=row[11], window_digest=row[12],
                                storage=row[13], positions=row[14])

    def _known_groups(self, subject: str) -> dict[str, KnownGroup]:
        """The known groups of a check as saved: `subject_groups` with the journaled runs' changes applied, in
        their order (inside the caller's transaction)."""
        groups = {g[0]: KnownGroup(*g) for g in self._conn.execute(
            "SELECT key, rows, first_seen_at, first_seen_generation, spelling FROM subject_groups WHERE subject = ?",
            (subject,))}
        for changed, removed in self._conn.execute(
                "SELECT changed, removed FROM subject_group_changes WHERE subject = ? ORDER BY generation",
                (subject,)):
            for key in json.loads(removed):
                groups.pop(key, None)
            for g in json.loads(changed):
                groups[g[0]] = KnownGroup(*g)
        return groups

    def incremental_version(self, key: str) -> tuple[str, int] | None:
        """(fingerprint, generation) of the check's saved state: whether a copy in memory is still current."""
        with self._lock:
            if self._closed:
                return None
            row = self._conn.execute("SELECT fingerprint, generation FROM subject_state WHERE subject = ?",
                                     (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def save_incremental(self, new: IncrementalState, loaded: IncrementalState | None) -> IncrementalState:
        """Store a run's state; returns what was stored (with its generation).

        Atomic (one IMMEDIATE transaction), so two processes sharing the file never leave a half-written
        state. When another process saved this check since `loaded` was read, the two are merged so that
        neither loses a duplicate: the lower watermark, the union of seen rows and known groups (a group one
        of them no longer counts is re-counted by the next run), the later full pass. A state of another
        fingerprint (another database or check definition) is replaced.
        """
        with self._lock:
            if self._closed:
                return new
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = conn.execute("SELECT fingerprint, watermark, seen, last_full_at, generation"
                                      " FROM subject_state WHERE subject = ?", (new.key,)).fetchone()
                generation = (stored[4] if stored else 0) + 1
                expected = loaded.generation if loaded is not None else 0
                concurrent = stored is not None and stored[4] != expected and stored[0] == new.fingerprint
                if concurrent:
                    saved = self._merged(new, stored, generation)
                else:
                    saved = IncrementalState(new.key, new.fingerprint, new.watermark, new.seen, new.last_full_at,
                                             generation, new.groups, new.updated, new.removed, new.changes_seen,
                                             new.recount_position, new.pending_since, new.removals_seen,
                                             new.recount_left, new.snapshot, new.last_run_at, new.window_digest,
                                             new.storage, new.positions)
                    same_base = stored is not None and loaded is not None and stored[0] == loaded.fingerprint \
                        and stored[4] == expected
                    self._write_groups(saved, loaded.groups if same_base and loaded else None)
                conn.execute(
                    "INSERT OR REPLACE INTO subject_state (subject, fingerprint, watermark, seen,"
                    " last_full_at, generation, changes_seen, recount_position, pending_since, removals_seen,"
                    " recount_left, snapshot, last_run_at, window_digest, storage, positions)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (saved.key, saved.fingerprint, saved.watermark, json.dumps(saved.seen), saved.last_full_at,
                     saved.generation, saved.changes_seen, saved.recount_position, saved.pending_since,
                     saved.removals_seen, saved.recount_left, saved.snapshot, saved.last_run_at,
                     saved.window_digest, saved.storage, saved.positions))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return saved

    def _merged(self, new: IncrementalState, stored: tuple[Any, ...], generation: int) -> IncrementalState:
        """`new` merged into another process's concurrent save (same fingerprint); writes the groups. The
        earlier of the two table changes seen, so that neither misses one; a window digest only where both took
        the same (else the next run re-reads the window)."""
        from monitor.incremental import lower_watermark
        from monitor.incremental.window import merged_positions

        watermark = lower_watermark(new.watermark, stored[1])
        seen = sorted(set(new.seen) | set(json.loads(stored[2])))
        fulls = [t for t in (new.last_full_at, stored[3]) if t is not None]
        theirs_seen = self._conn.execute("SELECT changes_seen, recount_position, pending_since, snapshot, last_run_at,"
                                         " window_digest, storage, positions"
                                         " FROM subject_state"
                                         " WHERE subject = ?", (new.key,)).fetchone()
        groups = self._known_groups(new.key)
        for key, group in new.groups.items():
            theirs = groups.get(key)
            first = min(group.first_seen_at, theirs.first_seen_at) if theirs else group.first_seen_at
            groups[key] = KnownGroup(key, group.rows, first, group.first_seen_generation, group.spelling)
        self._replace_groups(new.key, groups.values())
        return IncrementalState(new.key, new.fingerprint, watermark, seen, max(fulls) if fulls else None,
                                generation, groups, changes_seen=min(new.changes_seen, theirs_seen[0]),
                                recount_position=max(new.recount_position, theirs_seen[1]),
                                pending_since=lower_watermark(new.pending_since, theirs_seen[2])
                                if new.pending_since and theirs_seen[2] else new.pending_since or theirs_seen[2],
                                snapshot=_earlier_mark(new.snapshot, theirs_seen[3]),
                                last_run_at=min([t for t in (new.last_run_at, theirs_seen[4]) if t is not None],
                                                default=None),
                                window_digest=new.window_digest if new.window_digest == theirs_seen[5] else None,
                                # two processes that read other storage: the next run is a full pass ("" is none)
                                storage=new.storage if new.storage == theirs_seen[6] else
                                None if new.storage is None and theirs_seen[6] is None else "",
                                positions=merged_positions(new.positions, theirs_seen[7]))

    def _write_groups(self, saved: IncrementalState, before: dict[str, KnownGroup] | None) -> None:
        """Write the known groups: only what changed since `before` (the state this run started from)."""
        if before is None:
            self._replace_groups(saved.key, saved.groups.values())
            return
        if saved.updated is not None and saved.removed is not None:
            gone = list(saved.removed)
            changed = [saved.groups[key] for key in saved.updated]
        else:
            gone = [key for key in before if key not in saved.groups]
            changed = [g for key, g in saved.groups.items() if before.get(key) != g]
        if not gone and not changed:
            return
        journaled = self._conn.execute("SELECT count(*) FROM subject_group_changes WHERE subject = ?",
                                       (saved.key,)).fetchone()[0]
        if len(gone) + len(changed) > JOURNAL_GROUPS or journaled + 1 >= JOURNAL_RUNS:
            self._fold_journal(saved.key)
            self._conn.executemany("DELETE FROM subject_groups WHERE subject = ? AND key = ?",
                                   [(saved.key, key) for key in gone])
            self._insert_groups(saved.key, changed)
            return
        self._conn.execute(
            "INSERT OR REPLACE INTO subject_group_changes (subject, generation, changed, removed) VALUES (?, ?, ?, ?)",
            (saved.key, saved.generation, json.dumps([[g.key, g.rows, g.first_seen_at, g.first_seen_generation,
                                                       g.spelling] for g in changed]), json.dumps(gone)))

    def _fold_journal(self, subject: str) -> None:
        """Apply the journaled runs' changes of a check to `subject_groups`, in their order, and drop them."""
        for changed, removed in self._conn.execute(
                "SELECT changed, removed FROM subject_group_changes WHERE subject = ? ORDER BY generation",
                (subject,)).fetchall():
            self._conn.executemany("DELETE FROM subject_groups WHERE subject = ? AND key = ?",
                                   [(subject, key) for key in json.loads(removed)])
            self._insert_groups(subject, [KnownGroup(*g) for g in json.loads(changed)])
        self._conn.execute("DELETE FROM subject_group_changes WHERE subject = ?", (subject,))

    def _replace_groups(self, subject: str, groups: Iterable[KnownGroup]) -> None:
        self._conn.execute("DELETE FROM subject_group_changes WHERE subject = ?", (subject,))
        self._conn.execute("DELETE FROM subject_groups WHERE subject = ?", (subject,))
        self._insert_groups(subject, groups)

    def _insert_groups(self, subject: str, groups: Iterable[KnownGroup]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO subject_groups (subject, key, rows, first_seen_at,"
            " first_seen_generation, spelling) VALUES (?, ?, ?, ?, ?, ?)",
            ((subject, g.key, g.rows, g.first_seen_at, g.first_seen_generation, g.spelling) for g in groups))

    def forget_incremental(self, key: str) -> None:
        """Drop an incremental check's state: its next run is a full pass."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM subject_state WHERE subject = ?", (key,))
            self._conn.execute("DELETE FROM subject_groups WHERE subject = ?", (key,))
            self._conn.execute("DELETE FROM subject_group_changes WHERE subject = ?", (key,))
            self._conn.execute("COMMIT")

    def record_table_change(self, table_key: str, why: str, *, restored: bool) -> int:
        """Note that a fix or an undo changed rows of a table, for every incremental check of that table to
        learn at its next run (`table_changes`); returns the change's id."""
        with self._lock:
            if self._closed:
                return 0
            cursor = self._conn.execute("INSERT INTO table_changes (table_key, at, why, restored) VALUES (?, ?, ?, ?)",
                                        (table_key, time.time(), why, int(restored)))
            self._conn.execute("DELETE FROM table_changes WHERE at < ?", (time.time() - self.retention,))
            return int(cursor.lastrowid or 0)

    def table_changes(self, table_key: str, after: int) -> list[TableChange]:
        """The changes of a table noted after change `after`, oldest first."""
        with self._lock:
            if self._closed:
                return []
            rows = self._conn.execute("SELECT id, why, restored FROM table_changes WHERE table_key = ? AND id > ?"
                                      " ORDER BY id", (table_key, after)).fetchall()
        return [TableChange(int(r[0]), str(r[1]), bool(r[2])) for r in rows]

    def last_table_change(self) -> int:
        """The id of the latest change noted of any table (0: none): a full pass accounts for all before it."""
        with self._lock:
            if self._closed:
                return 0
            row = self._conn.execute("SELECT max(id) FROM table_changes").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

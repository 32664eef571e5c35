"""The local state store: every run of every check, in an SQLite file shared by the dashboard and the daemon.

Bounded by a retention period (older runs are pruned as new ones arrive). WAL mode and a busy timeout let
a dashboard and a daemon write to the same file. Safe to call from any thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import platformdirs

from monitor.detect import CheckResult

PRUNE_EVERY = 200  # runs recorded between two prunes

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
CREATE INDEX IF NOT EXISTS runs_by_check ON runs (check_name, finished_at);
"""


def default_state_path() -> Path:
    return Path(platformdirs.user_state_dir("dupewatch", appauthor=False)) / "history.sqlite"


@dataclass(frozen=True)
class Run:
    """One stored run (a `CheckResult` as it came back from the store)."""

    check: str
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


class History:
    def __init__(self, path: Path | None = None, retention_seconds: float = 30 * 86400.0) -> None:
        self.path = path or default_state_path()
        self.retention = retention_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)
        self._since_prune = 0
        self._closed = False
        self._prune()  # a store reopened after a long pause (or with a shorter retention) starts trimmed

    def record(self, result: CheckResult) -> None:
        """Store one run; a no-op once closed (a run abandoned at shutdown may finish afterwards)."""
        with self._lock:
            if self._closed:
                return
            self._conn.execute(
                "INSERT INTO runs (check_name, database, finished_at, status, groups, excess_rows,"
                " duration_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (result.name, result.database, result.finished_at.timestamp(), result.status, result.groups,
                 result.excess_rows, result.duration_ms, result.error),
            )
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self._prune()

    def prune(self) -> int:
        with self._lock:
            return self._prune()

    def _prune(self) -> int:
        self._since_prune = 0
        cursor = self._conn.execute("DELETE FROM runs WHERE finished_at < ?", (time.time() - self.retention,))
        return cursor.rowcount

    def recent(self, check: str, limit: int = 60) -> list[Run]:
        """The last `limit` runs of a check, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT check_name, database, finished_at, status, groups, excess_rows, duration_ms, error"
                " FROM runs WHERE check_name = ? ORDER BY finished_at DESC LIMIT ?", (check, limit)).fetchall()
        return [Run(*row) for row in reversed(rows)]

    def since(self, check: str, since: float) -> list[Run]:
        """Every run of a check since a UNIX time, oldest first (for trend charts)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT check_name, database, finished_at, status, groups, excess_rows, duration_ms, error"
                " FROM runs WHERE check_name = ? AND finished_at >= ? ORDER BY finished_at", (check, since)
            ).fetchall()
        return [Run(*row) for row in rows]

    def last_success(self, check: str) -> Run | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT check_name, database, finished_at, status, groups, excess_rows, duration_ms, error"
                " FROM runs WHERE check_name = ? AND status != 'error' ORDER BY finished_at DESC LIMIT 1",
                (check,)).fetchone()
        return Run(*row) if row else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

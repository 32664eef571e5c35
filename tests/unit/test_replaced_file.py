"""A SQLite database file replaced on disk (restored, rebuilt by `dupewatch demo`, swapped by a deploy) is
reopened: the next run reads the new file, never the deleted one its pooled connections still hold."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from monitor.config import config_from_dict
from monitor.engine import Monitor


def make_file(path: Path, emails: list[str]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    conn.executemany("INSERT INTO users (email) VALUES (?)", [(e,) for e in emails])
    conn.commit()
    conn.close()


def open_fds_to(path: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return [t for t in targets if t.startswith(str(path))]


def test_a_replaced_file_is_reopened_and_the_deleted_one_released(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    make_file(path, ["a", "a", "b", "b"])
    monitor = Monitor(config_from_dict({
        "databases": {"app": {"url": f"sqlite:///{path}"}},
        "checks": [{"name": "users-email", "database": "app", "table": "users", "key": ["email"]}],
    }))
    try:
        first = monitor.run("users-email")
        assert (first.status, first.groups, first.excess_rows) == ("duplicates", 2, 2)

        replacement = tmp_path / "new.sqlite"
        make_file(replacement, ["x", "x", "x", "y"])
        os.replace(replacement, path)  # what a restore or a rebuild does: a new file (inode) under the same name

        second = monitor.run("users-email")

        assert (second.status, second.groups, second.excess_rows) == ("duplicates", 1, 2)
        assert not any(t.endswith("(deleted)") for t in open_fds_to(path))
    finally:
        monitor.close()


def test_a_deleted_file_reports_the_check_down(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    make_file(path, ["a", "a"])
    monitor = Monitor(config_from_dict({
        "databases": {"app": {"url": f"sqlite:///{path}"}},
        "checks": [{"name": "users-email", "database": "app", "table": "users", "key": ["email"]}],
    }))
    try:
        assert monitor.run("users-email").status == "duplicates"
        path.unlink()

        gone = monitor.run("users-email")

        assert gone.status == "error" and "file not found" in (gone.error or "")
    finally:
        monitor.close()

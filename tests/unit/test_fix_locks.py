"""The fix lock of a database without named locks (SQLite): a file beside the database, gone once released."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from monitor.config import DatabaseConfig
from monitor.db import Database
from monitor.fix.errors import FixRefused
from monitor.fix.locks import fix_lock


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Database:
    path = tmp_path / "app.sqlite"
    sqlite3.connect(path).close()
    db = Database("app", DatabaseConfig(url=f"sqlite:///{path}"))
    yield db
    db.dispose()


def lock_files(db: Database) -> list[str]:
    folder = Path(db.url.database or "").parent
    return sorted(name for name in os.listdir(folder) if name.endswith(".lock"))


def test_a_released_file_lock_leaves_no_file_beside_the_database(sqlite_file):
    with fix_lock(sqlite_file, "main.t", "t"):
        assert len(lock_files(sqlite_file)) == 1  # held: the file is there
    assert lock_files(sqlite_file) == []


def test_a_second_fixer_is_refused_while_the_lock_is_held_and_admitted_after(sqlite_file):
    refused = pytest.raises(FixRefused, match="'t' is already being fixed")
    with fix_lock(sqlite_file, "main.t", "t"), refused, fix_lock(sqlite_file, "main.t", "t"):
        pass
    with fix_lock(sqlite_file, "main.t", "t"):
        pass
    assert lock_files(sqlite_file) == []


def test_a_lock_on_a_file_its_holder_removed_is_not_a_lock(sqlite_file, monkeypatch):
    """A process that opened the lock file just before its holder removed it locks a file no longer at the
    path: it must take the lock again on the file now there, or two fixers would both hold "the" lock."""
    import monitor.fix.locks as locks

    real_open = os.open
    swapped: list[str] = []

    def open_then_lose_the_race(path, flags, mode=0o777):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, mode)
        if not swapped:  # the holder releases and removes the file between our open and our flock
            swapped.append(str(path))
            os.unlink(path)
        return fd

    monkeypatch.setattr(locks.os, "open", open_then_lose_the_race)
    with fix_lock(sqlite_file, "main.t", "t"):
        monkeypatch.setattr(locks.os, "open", real_open)
        held = lock_files(sqlite_file)
        assert len(held) == 1 and swapped  # the lock is on the file at the path, not on the removed one
        with pytest.raises(FixRefused), fix_lock(sqlite_file, "main.t", "t"):
            pass
    assert lock_files(sqlite_file) == []


def test_a_fix_on_sqlite_leaves_no_lock_file_and_no_legacy_repoint_table(tmp_path):
    """After the first fix of a database: its rows fixed, the fix's own tables there, and nothing else left
    (no `*.dupewatch-*.lock` beside the file, no `dupewatch_fix_repoint` of dupewatch 0.1)."""
    from click.testing import CliRunner

    from monitor.cli import main

    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, email TEXT NOT NULL)")
        conn.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id))")
        conn.execute("INSERT INTO parent VALUES (1, 'a'), (2, 'a'), (3, 'b')")
        conn.execute("INSERT INTO child VALUES (1, 2)")
    config = tmp_path / "dupewatch.toml"
    config.write_text(f'[databases.app]\nurl = "sqlite:///{path}"\n\n[[checks]]\nname = "emails"\n'
                      'database = "app"\ntable = "parent"\nkey = ["email"]\n')
    result = CliRunner().invoke(main, ["--config", str(config), "fix", "emails", "--yes"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM parent ORDER BY id").fetchall() == [(1,), (3,)]
        assert conn.execute("SELECT parent_id FROM child").fetchall() == [(1,)]  # repointed to the keeper
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"dupewatch_fix", "dupewatch_fix_reference"} <= tables
    assert "dupewatch_fix_repoint" not in tables
    assert sorted(os.listdir(tmp_path)) == ["app.sqlite", "dupewatch.toml"]

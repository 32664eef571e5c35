"""A fix made by dupewatch 0.1 logged its repoints in `dupewatch_fix_repoint`: no fix creates that table now, but
undo still reads it where an old fix left it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main


def _legacy_fix(tmp_path: Path, key: int | str = 7) -> tuple[Path, Path, str]:
    """A fix of `parent` by e-mail that repointed `child` row `key` (its primary key) from parent 2 to 1, its
    repoint then moved into the old log as dupewatch 0.1 kept it."""
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, email TEXT NOT NULL)")
        conn.execute(f"CREATE TABLE child (id {'INTEGER' if isinstance(key, int) else 'TEXT'} PRIMARY KEY, "
                     "parent_id INTEGER REFERENCES parent (id))")
        conn.execute("INSERT INTO parent VALUES (1, 'a'), (2, 'a')")
        conn.execute("INSERT INTO child VALUES (?, 2)", (key,))
    config = tmp_path / "dupewatch.toml"
    config.write_text(f'[databases.app]\nurl = "sqlite:///{path}"\n\n[[checks]]\nname = "emails"\n'
                      'database = "app"\ntable = "parent"\nkey = ["email"]\n')
    fixed = CliRunner().invoke(main, ["--config", str(config), "fix", "emails", "--yes", "--json"])
    assert fixed.exit_code == 0, fixed.output
    fix_id = json.loads(fixed.stdout)["fix_id"]
    with sqlite3.connect(path) as conn:  # the same fix as dupewatch 0.1 recorded it: its repoints in the old log
        assert conn.execute("SELECT parent_id FROM child").fetchall() == [(1,)]
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dupewatch_fix_repoint'").fetchall()
        conn.execute("DELETE FROM dupewatch_fix_reference WHERE fix_id = ?", (fix_id,))
        conn.execute("CREATE TABLE dupewatch_fix_repoint (id INTEGER PRIMARY KEY, fix_id VARCHAR(40) NOT NULL, "
                     "child_schema VARCHAR(128), child_table VARCHAR(128) NOT NULL, fk_columns TEXT NOT NULL, "
                     "child_key TEXT NOT NULL, old_value TEXT NOT NULL, new_value TEXT NOT NULL)")
        conn.execute("INSERT INTO dupewatch_fix_repoint (fix_id, child_table, fk_columns, child_key, old_value, "
                     "new_value) VALUES (?, 'child', '[\"parent_id\"]', ?, '[2]', '[1]')", (fix_id, json.dumps([key])))
    return path, config, fix_id


def test_undo_points_back_the_repoints_a_legacy_fix_logged(tmp_path: Path) -> None:
    path, config, fix_id = _legacy_fix(tmp_path)
    undone = CliRunner().invoke(main, ["--config", str(config), "undo", fix_id, "--yes"])
    assert undone.exit_code == 0, undone.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, email FROM parent ORDER BY id").fetchall() == [(1, "a"), (2, "a")]
        assert conn.execute("SELECT id, parent_id FROM child").fetchall() == [(7, 2)]


@pytest.mark.parametrize("key", [7, "secret.person@example.com"])
def test_a_legacy_repointed_row_changed_since_is_refused_naming_the_log_row_not_its_key(
        tmp_path: Path, key: int | str) -> None:
    """A row the legacy log repointed was changed since: undo refuses, nothing changed, naming the table, the
    reference and the log row that holds the key, never the key itself (values never in messages; here also an
    e-mail address as a natural key)."""
    path, config, fix_id = _legacy_fix(tmp_path, key)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE child SET parent_id = NULL")  # the application moved it since the fix
        before = conn.execute("SELECT * FROM parent UNION ALL SELECT * FROM child").fetchall()
    undone = CliRunner().invoke(main, ["--config", str(config), "undo", fix_id, "--yes"])
    assert undone.exit_code == 2, undone.output
    said = " ".join(undone.stderr.split())
    assert "a row of child(parent_id) it repointed is no longer as it left it" in said, said
    assert "the row of dupewatch_fix_repoint with id 1 holds its primary key (child_key)" in said, said
    assert str(key) not in said.replace(fix_id, ""), said
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM parent UNION ALL SELECT * FROM child").fetchall() == before

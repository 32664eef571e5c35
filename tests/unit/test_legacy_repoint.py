"""A fix made by dupewatch 0.1 logged its repoints in `dupewatch_fix_repoint`: no fix creates that table now, but
undo still reads it where an old fix left it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import main


def _legacy_fix(tmp_path: Path) -> tuple[Path, Path, str]:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, email TEXT NOT NULL)")
        conn.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id))")
        conn.execute("INSERT INTO parent VALUES (1, 'a'), (2, 'a')")
        conn.execute("INSERT INTO child VALUES (7, 2)")
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
                     "new_value) VALUES (?, 'child', '[\"parent_id\"]', '[7]', '[2]', '[1]')", (fix_id,))
    return path, config, fix_id


def test_undo_points_back_the_repoints_a_legacy_fix_logged(tmp_path: Path) -> None:
    path, config, fix_id = _legacy_fix(tmp_path)
    undone = CliRunner().invoke(main, ["--config", str(config), "undo", fix_id, "--yes"])
    assert undone.exit_code == 0, undone.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, email FROM parent ORDER BY id").fetchall() == [(1, "a"), (2, "a")]
        assert conn.execute("SELECT id, parent_id FROM child").fetchall() == [(7, 2)]


def test_undo_refusal_for_a_changed_legacy_repoint_names_no_value(tmp_path: Path) -> None:
    """A row the legacy log repointed was changed since: undo refuses, nothing changed, naming the table, the key's
    columns and the log row that holds the key, never the key itself (here an e-mail address)."""
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, email TEXT NOT NULL)")
        conn.execute("CREATE TABLE child (mail TEXT PRIMARY KEY, parent_id INTEGER REFERENCES parent (id))")
        conn.execute("INSERT INTO parent VALUES (1, 'a'), (2, 'a'), (3, 'b')")
        conn.execute("INSERT INTO child VALUES ('secret.person@example.com', 2)")
    config = tmp_path / "dupewatch.toml"
    config.write_text(f'[databases.app]\nurl = "sqlite:///{path}"\n\n[[checks]]\nname = "emails"\n'
                      'database = "app"\ntable = "parent"\nkey = ["email"]\n')
    fixed = CliRunner().invoke(main, ["--config", str(config), "fix", "emails", "--yes", "--json"])
    assert fixed.exit_code == 0, fixed.output
    fix_id = json.loads(fixed.stdout)["fix_id"]
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM dupewatch_fix_reference WHERE fix_id = ?", (fix_id,))
        conn.execute("CREATE TABLE dupewatch_fix_repoint (id INTEGER PRIMARY KEY, fix_id VARCHAR(40) NOT NULL, "
                     "child_schema VARCHAR(128), child_table VARCHAR(128) NOT NULL, fk_columns TEXT NOT NULL, "
                     "child_key TEXT NOT NULL, old_value TEXT NOT NULL, new_value TEXT NOT NULL)")
        conn.execute("INSERT INTO dupewatch_fix_repoint (fix_id, child_table, fk_columns, child_key, old_value, "
                     "new_value) VALUES (?, 'child', '[\"parent_id\"]', '[\"secret.person@example.com\"]', '[2]', "
                     "'[1]')", (fix_id,))
        conn.execute("UPDATE child SET parent_id = 3")  # the application moved it since the fix
        before = conn.execute("SELECT * FROM parent UNION ALL SELECT * FROM child").fetchall()
    undone = CliRunner().invoke(main, ["--config", str(config), "undo", fix_id, "--yes"])
    assert undone.exit_code == 2
    assert "example.com" not in undone.stderr
    said = " ".join(undone.stderr.split())
    assert "a row of child(parent_id) it repointed is no longer as it left it" in said, said
    assert "the row of dupewatch_fix_repoint with id 1 holds its primary key (child_key)" in said, said
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM parent UNION ALL SELECT * FROM child").fetchall() == before


def test_a_legacy_repointed_row_changed_since_is_refused_without_its_key_value(tmp_path: Path) -> None:
    """The refusal names the table and the reference, not the row's key (values never in messages)."""
    path, config, fix_id = _legacy_fix(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE child SET parent_id = NULL")
    undone = CliRunner().invoke(main, ["--config", str(config), "undo", fix_id, "--yes"])
    assert undone.exit_code == 2, undone.output
    said = " ".join(undone.stderr.split())
    assert "a row of child(parent_id) it repointed is no longer as it left it" in said, said
    assert "the row of dupewatch_fix_repoint with id 1 holds its primary key (child_key)" in said, said
    assert "7" not in said.replace(fix_id, ""), said

"""Issue 16, item 7: undo refusals name the constraint the database reports, say whether dupewatch added it,
and never advise dropping one it did not; the `undo with:` line after `fix --add-constraint` works as printed."""

from __future__ import annotations

import shlex

from dbtest import TestDatabase
from fix_support import config_file, contents, json_out, run_cli

CHECK = {"name": "users-by-name", "table": "users", "key": ["name"]}


def seed(db: TestDatabase) -> None:
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT users_email_key UNIQUE (email))",
               "INSERT INTO users VALUES (1, 'ann', NULL), (2, 'ann', 'ann2@example.org'), (3, 'bob', NULL)")


def _email_key(db: TestDatabase) -> str:
    if db.dialect != "sqlite":
        return "users_email_key"
    # SQLite names a table constraint's index itself and reports only the columns of a violation
    return db.scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'")


def test_undo_names_the_applications_constraint_and_never_advises_dropping_it(db, tmp_path):
    seed(db)
    path = config_file(tmp_path, db, [CHECK])
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    db.execute("INSERT INTO users VALUES (4, 'cid', 'ann2@example.org')")  # the email is registered again
    before = contents(db, "users")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 2
    message = undone.stderr
    assert _email_key(db) in message and "dupewatch did not add" in message and "nothing changed" in message
    assert "drop" not in message.lower()
    assert contents(db, "users") == before


def test_the_printed_undo_command_after_add_constraint_is_not_refused(db, tmp_path):
    seed(db)
    path = config_file(tmp_path, db, [CHECK])
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--add-constraint")
    assert fixed.exit_code == 0, fixed.output
    fix_id = db.scalar("SELECT fix_id FROM dupewatch_fix")
    printed = next(line for line in fixed.stdout.splitlines() if "undo with:" in line)
    command = shlex.split(printed.split("undo with:", 1)[1].split("(", 1)[0])
    assert command[:3] == ["dupewatch", "undo", fix_id]
    plain = run_cli("undo", fix_id, "--config", str(path), "--yes")  # without the flag: refused, named
    assert plain.exit_code == 2
    assert "uq_dupewatch_users_by_name" in plain.stderr and "this fix added it" in plain.stderr
    assert "--drop-constraint" in plain.stderr
    assert db.scalar("SELECT count(*) FROM users") == 2
    undone = run_cli(*command[1:], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert "uq_dupewatch_users_by_name dropped" in undone.stdout
    assert db.rows("SELECT id, name, email FROM users ORDER BY id") == [
        (1, "ann", None), (2, "ann", "ann2@example.org"), (3, "bob", None)]


def test_undo_refusal_for_a_taken_natural_key_names_no_value(db, tmp_path):
    """A natural primary key (an e-mail address) taken again by a row written after the fix: undo refuses,
    nothing changed, naming the table, the key's columns and how many rows, and printing the query that lists
    them; the key itself (personal data) is never printed."""
    secret = "secret.person@example.com"
    db.execute("CREATE TABLE member (id VARCHAR(40) PRIMARY KEY, name VARCHAR(20) NOT NULL)",
               f"INSERT INTO member VALUES ('alice@example.com', 'a'), ('{secret}', 'a'), ('x@example.com', 'a'), "
               "('c@example.com', 'b')")
    path = config_file(tmp_path, db, [{"name": "c", "table": "member", "key": ["name"]}])
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = json_out(fixed)["fix_id"]
    db.execute(f"INSERT INTO member VALUES ('{secret}', 'z'), ('x@example.com', 'y')")  # registered again
    before = contents(db, "member")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2
    message = undone.stderr
    assert "example.com" not in message
    assert "nothing changed" in message and "2 archived row(s) have a primary key (id)" in message
    assert "'member'" in message
    assert contents(db, "member") == before
    query = message.split("list them with: ", 1)[1].split("; give those rows", 1)[0]
    assert sorted(db.rows(query)) == [(secret,), ("x@example.com",)]

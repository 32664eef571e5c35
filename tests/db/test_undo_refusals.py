"""Issue 16, item 7: undo refusals name the constraint the database reports, say whether dupewatch added it,
and never advise dropping one it did not; the `undo with:` line after `fix --add-constraint` works as printed."""

from __future__ import annotations

import shlex

import sqlalchemy as sa

from dbtest import TestDatabase
from fix_support import config_file, contents, json_out, run_cli
from monitor.words import command_naming

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


# -- a repointed row changed since the fix (break16b finding 6): who changed it, and what to do ---------------


def _repointing(db: TestDatabase) -> None:
    """u 1 and 2 share an email; o 11 and 12 point at 2 (a fix of check "a" repoints them to 1); o 10 at 1 with
    o 11's x, so that check "b" on o(u_id, x) then finds o 10 and o 11 duplicates."""
    db.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL)",
               "INSERT INTO u VALUES (1, 'a'), (2, 'a'), (3, 'b')",
               "CREATE TABLE o (id INTEGER PRIMARY KEY, u_id INTEGER REFERENCES u (id), x INTEGER)",
               "INSERT INTO o VALUES (10, 1, 7), (11, 2, 7), (12, 2, 8), (13, 3, 7)")


def test_undo_refused_by_a_row_another_fix_deleted_names_that_fix_and_the_undo_to_run_first(db, tmp_path):
    _repointing(db)
    before = contents(db, "u", "o")
    path = config_file(tmp_path, db, [{"name": "a", "table": "u", "key": ["email"]},
                                      {"name": "b", "table": "o", "key": ["u_id", "x"]}])
    fixed_a = run_cli("fix", "a", "--config", str(path), "--yes", "--json")
    assert fixed_a.exit_code == 0, fixed_a.output
    fixed_b = run_cli("fix", "b", "--config", str(path), "--yes", "--json")
    assert fixed_b.exit_code == 0 and json_out(fixed_b)["deleted"] == 1, fixed_b.output  # o 11, repointed by a
    a, b = json_out(fixed_a)["fix_id"], json_out(fixed_b)["fix_id"]
    after = contents(db, "u", "o")
    refused = run_cli("undo", a, "--config", str(path), "--yes")
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2 and "nothing changed" in said, refused.output
    assert "1 of the 2 row(s) of o(u_id) it repointed are no longer as it left them" in said, said
    assert f"1 deleted by fix {b}, which archived them in dupewatch_archive_o" in said, said
    assert f"(`{command_naming(path.resolve(), 'undo', b)}`), then undo this fix again" in said, said
    assert "something else" not in said and "11" not in said.replace(a, "").replace(b, ""), said  # no key value
    assert contents(db, "u", "o") == after
    # as told: b first, then a, and everything is back
    assert run_cli("undo", b, "--config", str(path), "--yes").exit_code == 0
    assert run_cli("undo", a, "--config", str(path), "--yes").exit_code == 0
    assert contents(db, "u", "o") == before


def test_undo_refused_by_rows_the_application_changed_names_the_reference_counts_and_the_log(db, tmp_path):
    _repointing(db)
    path = config_file(tmp_path, db, [{"name": "a", "table": "u", "key": ["email"]}])
    fixed = run_cli("fix", "a", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = json_out(fixed)["fix_id"]
    db.execute("UPDATE o SET u_id = 3 WHERE id = 11", "DELETE FROM o WHERE id = 12")  # the application
    after = contents(db, "u", "o")
    refused = run_cli("undo", fix_id, "--config", str(path), "--yes")
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2 and "nothing changed" in said, refused.output
    assert "2 of the 2 row(s) of o(u_id) it repointed are no longer as it left them" in said, said
    assert "1 changed and 1 deleted since by something else than a dupewatch fix" in said, said
    log = "dupewatch_repoint_" + fix_id.replace("-", "_") + "_0"
    assert f"the fix's log {log} lists the rows it repointed by primary key" in said, said
    assert not any(f" {value}" in said.replace(fix_id, "") for value in ("11", "12", "3 ", "2)")), said
    assert contents(db, "u", "o") == after
    db.execute("UPDATE o SET u_id = 1 WHERE id = 11", "INSERT INTO o VALUES (12, 1, 8)")  # as told
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert db.rows("SELECT id, u_id FROM o ORDER BY id") == [(10, 1), (11, 2), (12, 2), (13, 3)]


def test_undo_refused_by_rows_another_fix_repointed_again_names_that_fix(db, tmp_path):
    _repointing(db)
    before = contents(db, "u", "o")
    path = config_file(tmp_path, db, [{"name": "a", "table": "u", "key": ["email"]}])
    first = run_cli("fix", "a", "--config", str(path), "--yes", "--json")
    assert first.exit_code == 0, first.output
    db.execute("INSERT INTO u VALUES (0, 'a')")  # a duplicate of the kept row 1, which the next fix keeps
    second = run_cli("fix", "a", "--config", str(path), "--yes", "--json")
    assert second.exit_code == 0 and json_out(second)["repointed"] == 3, second.output  # o 10, 11, 12 -> 0
    a, c = json_out(first)["fix_id"], json_out(second)["fix_id"]
    refused = run_cli("undo", a, "--config", str(path), "--yes")
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2 and "nothing changed" in said, refused.output
    assert "2 of the 2 row(s) of o(u_id) it repointed are no longer as it left them" in said, said
    assert f"2 repointed again by fix {c} (its log dupewatch_repoint_" in said, said
    assert f"(`{command_naming(path.resolve(), 'undo', c)}`), then undo this fix again" in said, said
    assert "something else" not in said, said
    assert run_cli("undo", c, "--config", str(path), "--yes").exit_code == 0
    assert run_cli("undo", a, "--config", str(path), "--yes").exit_code == 0
    db.execute("DELETE FROM u WHERE id = 0")
    assert contents(db, "u", "o") == before


def test_undo_drop_constraint_refused_by_the_applications_constraint_says_what_was_dropped(db, tmp_path):
    """`undo --drop-constraint` after `fix --add-constraint`, refused by the application's own unique constraint (the
    email registered again): where DDL is transactional (PostgreSQL, SQLite) the guard's drop is rolled back with
    undo, and the refusal says nothing changed; before, it said the guard "was dropped already (MySQL/MariaDB commit
    DDL at once)" while the index stood. On MySQL/MariaDB the drop did commit, and the refusal says so."""
    seed(db)
    path = config_file(tmp_path, db, [CHECK])
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--add-constraint")
    assert fixed.exit_code == 0, fixed.output
    fix_id = db.scalar("SELECT fix_id FROM dupewatch_fix")
    db.execute("INSERT INTO users VALUES (4, 'cid', 'ann2@example.org')")  # the email is registered again
    before = contents(db, "users")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--drop-constraint")
    assert undone.exit_code == 2
    message = undone.stderr
    assert _email_key(db) in message and "dupewatch did not add" in message
    assert contents(db, "users") == before
    guard = "uq_dupewatch_users_by_name"
    standing = guard in {i["name"] for i in sa.inspect(db.engine).get_indexes("users", schema=db.schema)}
    if db.dialect == "mysql":
        assert not standing and f"{guard} was dropped already" in message and "nothing else changed" in message
    else:
        assert standing and "nothing changed" in message and "dropped" not in message


def test_undo_refused_by_another_checks_guard_says_dupewatch_added_it(db, tmp_path):
    """Two checks on one table, the second's key a part of the first's: the first's fix deleted rows that are
    duplicates under the second's key too, and the second's guard (`dupewatch guard`) refuses their return. The
    refusal names that check's guard as dupewatch's, never as an application constraint to keep."""
    db.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL, name VARCHAR(64) NOT NULL)",
               "INSERT INTO person VALUES (1, 'ann@example.org', 'ann'), (2, 'ann@example.org', 'ann'), "
               "(3, 'bob@example.org', 'bob')")
    checks = [{"name": "by-email-name", "table": "person", "key": ["email", "name"]},
              {"name": "by-email", "table": "person", "key": ["email"]}]
    path = config_file(tmp_path, db, checks)
    fixed = run_cli("fix", "by-email-name", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    guarded = run_cli("guard", "by-email", "--config", str(path))
    assert guarded.exit_code == 0, guarded.output
    before = contents(db, "person")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes", "--drop-constraint")
    assert undone.exit_code == 2
    message = " ".join(undone.stderr.split())
    assert "uq_dupewatch_by_email, the guard of another check, 'by-email' (dupewatch added it)" in message
    assert "did not add" not in message and "keep the constraint" not in message
    assert contents(db, "person") == before

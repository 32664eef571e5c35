"""Every refusal of `dupewatch fix`: one line, exit 2, and nothing changed (full table contents compared)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtest import write_config
from fix_support import (
    CHECKINS,
    config_file,
    contents,
    json_out,
    make_config,
    run_cli,
    seed_checkins,
    seed_memberships,
)
from monitor.engine import Monitor
from monitor.fix import FixRefused, make_plan, run_fix
from monitor.fix.execute import table_lock
from monitor.fix.target import target


def _user_tables(db):
    return sorted(t for t in sa.inspect(db.engine).get_table_names() if not t.startswith("dupewatch"))


def test_no_terminal_and_no_yes_refuses_and_changes_nothing(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    before = contents(db, "checkin", "checkin_credit")
    result = run_cli("fix", "daily-checkins", "--config", str(path))
    assert result.exit_code == 2
    assert "refusing to fix 'daily-checkins' without confirmation" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert contents(db, "checkin", "checkin_credit") == before
    assert not sa.inspect(db.engine).has_table("dupewatch_fix")


def test_terminal_confirmation_needs_the_check_name(db, tmp_path, monkeypatch):
    monkeypatch.setattr("monitor.cli.interactive", lambda: True)
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    before = contents(db, "checkin", "checkin_credit")
    wrong = run_cli("fix", "daily-checkins", "--config", str(path), input="daily\n")
    assert wrong.exit_code == 2 and "not confirmed; nothing changed" in wrong.stderr
    assert "keep    id=1" in wrong.stderr  # the preview was shown before asking
    assert contents(db, "checkin", "checkin_credit") == before
    assert db.rows("SELECT state FROM dupewatch_fix") == [("discarded",)]
    right = run_cli("fix", "daily-checkins", "--config", str(path), "--json", input="daily-checkins\n")
    assert right.exit_code == 0, right.output
    assert json_out(right)["deleted"] == 4


def test_custom_query_check_cannot_be_fixed(db, tmp_path):
    path = config_file(tmp_path, db, [{"name": "drift", "sql": "SELECT 1 AS x"}])
    for args in (["--yes"], ["--dry-run"]):
        result = run_cli("fix", "drift", "--config", str(path), *args)
        assert result.exit_code == 2
        assert "check 'drift' is a custom query check" in result.stderr
    guard = run_cli("guard", "drift", "--config", str(path))
    assert guard.exit_code == 2 and "custom query check" in guard.stderr


def test_unknown_check_is_a_one_line_error(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    result = run_cli("fix", "nope", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "no check named 'nope'" in result.stderr


def test_repoint_violating_unique_constraint_blocks_fix(db, tmp_path):
    seed_checkins(db, unique_credit=True)
    path = config_file(tmp_path, db, [CHECKINS])
    before = contents(db, "checkin", "checkin_credit")
    plan = run_cli("fix", "daily-checkins", "--config", str(path), "--dry-run", "--json")
    assert plan.exit_code == 2
    blockers = json_out(plan)["blockers"]
    assert len(blockers) == 1 and "checkin_credit(checkin_id)" in blockers[0] and "unique constraint" in blockers[0]
    result = run_cli("fix", "daily-checkins", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "cannot be fixed" in result.stderr and "unique constraint" in result.stderr
    assert contents(db, "checkin", "checkin_credit") == before


def test_cascade_that_cannot_be_repointed_blocks_fix(db, tmp_path):
    db.execute("CREATE TABLE node (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, "
               "parent_id INTEGER REFERENCES node (id) ON DELETE CASCADE)")
    db.execute("INSERT INTO node VALUES (1, 7, NULL), (2, 7, NULL), (3, 8, 2)")
    path = config_file(tmp_path, db, [{"name": "node", "table": "node", "key": ["k"]}])
    before = contents(db, "node")
    plan = json_out(run_cli("fix", "node", "--config", str(path), "--dry-run", "--json"))
    assert any("ON DELETE CASCADE would fire" in b for b in plan["blockers"]), plan["blockers"]
    result = run_cli("fix", "node", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "ON DELETE CASCADE would fire" in result.stderr
    assert contents(db, "node") == before


def _refused_for_want_of_a_key(db, tmp_path, check: dict, blocker: str) -> None:
    """The dry run names the one blocker; the fix exits 2 and the table is unchanged."""
    path = config_file(tmp_path, db, [check])
    before = contents(db, check["table"])
    plan = json_out(run_cli("fix", check["name"], "--config", str(path), "--dry-run", "--json"))
    assert len(plan["blockers"]) == 1 and blocker in plan["blockers"][0], plan["blockers"]
    result = run_cli("fix", check["name"], "--config", str(path), "--yes")
    assert result.exit_code == 2 and "no primary key" in result.stderr
    assert contents(db, check["table"]) == before


def test_no_key_and_differing_rows_is_refused_on_mysql(mysql, tmp_path):
    """Every group's rows differ: nothing is left to fix, the fix refuses as a whole."""
    mysql.execute("CREATE TABLE link (a INTEGER NOT NULL, b INTEGER NOT NULL, note VARCHAR(20))")
    mysql.execute("INSERT INTO link VALUES (1, 1, 'x'), (1, 1, 'y'), (2, 2, NULL)")
    _refused_for_want_of_a_key(mysql, tmp_path, {"name": "link", "table": "link", "key": ["a", "b"]},
                               "has no primary key and 1 group(s) hold rows that differ (in note;")


def test_no_key_and_differing_rows_leave_only_their_group_out_on_mysql(mysql, tmp_path):
    """A group whose rows differ is left out (nothing tells its rows apart); the identical copies of the other
    groups are fixed, and the exit code says not everything was."""
    mysql.execute("CREATE TABLE link (a INTEGER NOT NULL, b INTEGER NOT NULL, note VARCHAR(20))")
    mysql.execute("INSERT INTO link VALUES (1, 1, 'x'), (1, 1, 'y'), (2, 2, NULL), (2, 2, NULL), (3, 3, 'z'), "
                  "(3, 3, 'z'), (3, 3, 'z')")
    path = config_file(tmp_path, mysql, [{"name": "link", "table": "link", "key": ["a", "b"]}])
    plan = json_out(run_cli("fix", "link", "--config", str(path), "--dry-run", "--json"))
    assert plan["blockers"] == [] and plan["rows_to_delete"] == 3
    assert plan["left_out"] == [{"reason": "rows that differ", "groups": 1, "keys": [[1, 1]]}]
    result = run_cli("fix", "link", "--config", str(path), "--yes")
    assert result.exit_code == 1, result.output
    assert "left out: 1 group(s) whose rows differ" in result.stdout and "keys (1, 1)" in result.stdout
    assert mysql.rows("SELECT a, b, note FROM link ORDER BY a, note") == [
        (1, 1, "x"), (1, 1, "y"), (2, 2, None), (3, 3, "z")]


def test_no_key_and_rows_equal_only_by_collation_is_refused_on_mysql(mysql, tmp_path):
    """`a` and `A ` are one key to MySQL's collation, but not identical rows: which one stays matters."""
    mysql.execute("CREATE TABLE `Order Items` (`key` VARCHAR(20), `Group` INTEGER, note VARCHAR(5))")
    mysql.execute("INSERT INTO `Order Items` VALUES ('a', 1, 'x'), ('a', 1, 'x'), ('A ', 1, 'x')")
    _refused_for_want_of_a_key(mysql, tmp_path, {"name": "items", "table": "Order Items", "key": ["key", "Group"]},
                               "has no primary key and 1 group(s) hold rows that differ (in key; text compared "
                               "as stored")


def test_second_fixer_of_the_same_table_is_refused(db, tmp_path):
    seed_memberships(db)
    checks = [{"name": "role-membership", "table": "role_membership", "key": ["group_id", "member_id"]}]
    path = config_file(tmp_path, db, checks)
    monitor = Monitor(make_config(db, checks))
    before = contents(db, "role_membership")
    try:
        with table_lock(target(monitor, "role-membership")):
            result = run_cli("fix", "role-membership", "--config", str(path), "--yes")
            with pytest.raises(FixRefused, match="already being fixed"):
                run_fix(monitor, "role-membership")
    finally:
        monitor.close()
    assert result.exit_code == 2
    assert "table 'role_membership' is already being fixed" in result.stderr
    assert contents(db, "role_membership") == before


def test_sqlite_a_second_fixer_reaching_the_file_by_another_path_is_refused(sqlite_db, tmp_path, monkeypatch):
    """SQLite's fix lock is a file beside the database, named from the URL's path: a second process whose config
    reached the same file through a symlink or a relative path took a lock of its own, resumed the running fix
    and ran its batches beside the first (both then stopped on `statement_timeout`). The lock is now named by the
    file itself (its real path and inode), so every spelling of it is refused while another process holds it."""
    seed_memberships(sqlite_db)
    checks = [{"name": "role-membership", "table": "role_membership", "key": ["group_id", "member_id"]}]
    database = Path(str(sqlite_db.engine.url.database))
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "app.sqlite"
    link.symlink_to(database)
    monkeypatch.chdir(database.parent)
    before = contents(sqlite_db, "role_membership")
    monitor = Monitor(make_config(sqlite_db, checks))
    try:
        with table_lock(target(monitor, "role-membership")):
            for url in (f"sqlite:///{link}", f"sqlite:///{database.name}"):
                path = write_config(tmp_path / "other.toml", {"app": {"url": url}},
                                    [{"database": "app", **c} for c in checks])
                result = run_cli("fix", "role-membership", "--config", str(path), "--yes")
                assert result.exit_code == 2, (url, result.output)
                assert "table 'role_membership' is already being fixed" in result.stderr
    finally:
        monitor.close()
    assert contents(sqlite_db, "role_membership") == before
    assert not list(link.parent.glob("*.lock")) and not list(database.parent.glob("*.lock"))


def test_dry_run_api_uses_the_read_only_connection(db):
    seed_memberships(db)
    checks = [{"name": "m", "table": "role_membership", "key": ["group_id", "member_id"]}]
    monitor = Monitor(make_config(db, checks))
    try:
        plan = make_plan(monitor, "m")
    finally:
        monitor.close()
    assert (plan.groups, plan.rows_to_delete, plan.fix_id) == (2, 3, None)
    assert _user_tables(db) == ["role_membership"]
    assert not sa.inspect(db.engine).has_table("dupewatch_fix")


@pytest.mark.parametrize("parent", ["u (email TEXT NOT NULL, n INTEGER)",
                                    "u (id INTEGER PRIMARY KEY, email TEXT NOT NULL, n INTEGER)"],
                         ids=["no-pk", "integer-pk"])
@pytest.mark.parametrize("reference", ["REFERENCES u (rowid)", "REFERENCES u (_ROWID_)"], ids=["rowid", "_rowid_"])
def test_sqlite_foreign_key_on_the_rowid_is_refused_naming_it(sqlite_db, tmp_path, parent, reference):
    """SQLite lets `REFERENCES u(rowid)` be declared, and calls it a foreign key mismatch when it enforces it
    (the parent key must be a declared PRIMARY KEY or UNIQUE column; even an INTEGER PRIMARY KEY, the rowid's
    alias, must be named as itself). The dry run and the fix crashed with `unexpected KeyError: 'rowid'`: now one
    line naming the reference, exit 2, nothing changed."""
    sqlite_db.execute(f"CREATE TABLE {parent}", "INSERT INTO u (email, n) VALUES ('a', 1), ('a', 2), ('b', 3)",
                      f"CREATE TABLE o (id INTEGER PRIMARY KEY, u_rowid INTEGER {reference})",
                      "INSERT INTO o VALUES (10, 2)")
    path = config_file(tmp_path, sqlite_db, [{"name": "c", "table": "u", "key": ["email"]}])
    before = contents(sqlite_db, "u", "o")
    for args in (["--dry-run"], ["--yes"]):
        result = run_cli("fix", "c", "--config", str(path), *args)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "foreign key o(u_rowid) refers to u(" in result.stderr
        assert "foreign key mismatch" in result.stderr and "unexpected" not in result.stderr
        assert contents(sqlite_db, "u", "o") == before
        assert _user_tables(sqlite_db) == ["o", "u"]
    assert not sa.inspect(sqlite_db.engine).has_table("dupewatch_fix")



@pytest.mark.parametrize("written", ["ÉMAIL", "Émail"])
def test_sqlite_foreign_key_naming_a_column_in_another_non_ascii_case_is_refused_naming_it(sqlite_db, tmp_path,
                                                                                           written):
    """SQLite folds only the 26 ASCII capitals in names: `REFERENCES u(ÉMAIL)` to the column `émail` is a foreign
    key mismatch (writes to either table fail while foreign keys are enforced). The catalog matched it by Python's
    `str.lower`, and the dry run crashed: `unexpected NoReferencedColumnError`. Refused as the rowid is."""
    sqlite_db.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, émail TEXT NOT NULL UNIQUE, k TEXT NOT NULL)",
                      "INSERT INTO u VALUES (1, 'a', 'x'), (2, 'b', 'x')",
                      f"CREATE TABLE o (id INTEGER PRIMARY KEY, u_email TEXT REFERENCES u ({written}))",
                      "INSERT INTO o VALUES (10, 'b')")
    path = config_file(tmp_path, sqlite_db, [{"name": "c", "table": "u", "key": ["k"], "merge_distinct": True}])
    before = contents(sqlite_db, "u", "o")
    for args in (["--dry-run"], ["--yes"]):
        result = run_cli("fix", "c", "--config", str(path), *args)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"foreign key o(u_email) refers to u({written}), which is not a declared column" in result.stderr
        assert "foreign key mismatch" in result.stderr and "unexpected" not in result.stderr
        assert contents(sqlite_db, "u", "o") == before


@pytest.mark.parametrize("where", ["fixed", "archived"])
def test_a_column_taking_the_archives_fix_id_name_blocks_the_dry_run_and_the_fix_changes_nothing(db, tmp_path, where):
    """A table whose rows the fix archives (the fixed table, or a referencing table with on_reference = archive)
    holding a column named like the archive's own `dupewatch_fix_id` (in another case where the database takes the
    two for one column: MariaDB, SQLite): the dry run exited 0 without a word, then `fix --yes` failed after its
    snapshot: PostgreSQL "has a column named ..." leaving a planned fix behind, MariaDB `Duplicate column name`,
    SQLite made an archive of the wrong columns and said it "no longer matches ... changed since an earlier fix".
    Now both refuse up front, naming the table and the column, exit 2, nothing changed."""
    column = "dupewatch_fix_id" if db.dialect == "postgresql" else "DupeWatch_Fix_ID"
    user_column, child_column = (column, "note") if where == "fixed" else ("note", column)
    db.execute(f"CREATE TABLE acct (id INTEGER PRIMARY KEY, email VARCHAR(32), {db.q(user_column)} VARCHAR(32))",
               f"CREATE TABLE sess (id INTEGER PRIMARY KEY, acct_id INTEGER REFERENCES acct (id), "
               f"{db.q(child_column)} VARCHAR(32))",
               "INSERT INTO acct VALUES (1, 'a@x', 'k'), (2, 'a@x', 'd'), (3, 'b@x', NULL)",
               "INSERT INTO sess VALUES (10, 2, 's')")
    before = contents(db, "acct", "sess")
    check = {"name": "acct", "table": "acct", "key": ["email"], "on_reference": {"sess.acct_id": "archive"}}
    path = config_file(tmp_path, db, [check])
    named = f"table '{'acct' if where == 'fixed' else 'sess'}' has a column named '{column}'"
    dry = run_cli("fix", "acct", "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    assert [line for line in dry.stdout.splitlines() if "BLOCKED" in line and named in line]
    fixed = run_cli("fix", "acct", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and named in fixed.stderr, fixed.output
    assert contents(db, "acct", "sess") == before
    archives = [t for t in sa.inspect(db.engine).get_table_names() if t.startswith("dupewatch_archive")]
    assert archives == ([] if where == "fixed" else ["dupewatch_archive_acct"])  # (made by the snapshot)
    assert all(db.scalar(f"SELECT count(*) FROM {db.q(t)}") == 0 for t in archives)
    assert not [f for f in json_out(run_cli("fixes", "--config", str(path), "--json"))["fixes"]
                if f["state"] not in ("discarded", "done", "undone")]

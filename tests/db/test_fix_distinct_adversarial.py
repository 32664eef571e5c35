"""Adversarial shapes of issue 16 item 4 (groups the schema says are distinct are left out, or merged when asked):
each outcome read back from the database, with a full before/after snapshot, fix and undo."""

from __future__ import annotations

from fix_support import config_file, contents, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import prepare_fix, run_fix
from monitor.fix.render import report_lines

ACCOUNTS = {"name": "accounts", "table": "accounts", "key": ["login"]}


def test_sqlite_expression_unique_index_keeps_distinct_rows(sqlite_db, tmp_path):
    """SQLite keeps an expression index only as its CREATE INDEX text: rows that differ in any column it may
    cover are left out, never merged."""
    sqlite_db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login TEXT NOT NULL, email TEXT)",
                      "CREATE UNIQUE INDEX accounts_email_lower ON accounts (lower(email))",
                      "INSERT INTO accounts VALUES (1, 'ann', 'a@x'), (2, 'ann', 'a@x2'), (3, 'bob', NULL), "
                      "(4, 'bob', NULL)")
    path = config_file(tmp_path, sqlite_db, [ACCOUNTS])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes")
    assert sqlite_db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (2,), (3,)], result.output
    assert result.exit_code == 1 and "accounts_email_lower (an expression)" in result.output


def test_nulls_not_distinct_unique_tells_null_from_a_value(pg, tmp_path):
    """PostgreSQL 15 `UNIQUE NULLS NOT DISTINCT`: NULL is a value of the key that one row only may hold, so a row
    holding NULL and one holding 'a@x' are two entities (every group of such a key is; nothing is merged)."""
    pg.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login TEXT NOT NULL, email TEXT, "
               "CONSTRAINT accounts_email_key UNIQUE NULLS NOT DISTINCT (email))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL), (2, 'ann', 'a@x'), (3, 'bob', 'b@x'), (4, 'bob', 'b2@x')")
    before = contents(pg, "accounts")
    path = config_file(tmp_path, pg, [ACCOUNTS])
    plan = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    assert plan["rows_to_delete"] == 0 and plan["left_out_groups"] == 2, plan
    result = run_cli("fix", "accounts", "--config", str(path), "--yes")
    assert result.exit_code != 0 and "accounts_email_key" in result.output
    assert contents(pg, "accounts") == before


def test_deferrable_unique_constraint_tells_rows_apart(pg, tmp_path):
    pg.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login TEXT NOT NULL, email TEXT, "
               "CONSTRAINT accounts_email_key UNIQUE (email) DEFERRABLE INITIALLY DEFERRED)",
               "INSERT INTO accounts VALUES (1, 'ann', 'a1'), (2, 'ann', 'a2'), (3, 'bob', 'b'), (4, 'bob', NULL)")
    path = config_file(tmp_path, pg, [ACCOUNTS])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes")
    assert result.exit_code == 1, result.output
    assert pg.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (2,), (3,)]


def test_expression_unique_index_case_variants_are_one_entity(pg, tmp_path):
    """lower(email): 'A@x' and 'a@X' cannot both exist; 'a@x' and 'b@x' differ: left out; undo restores all."""
    pg.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login TEXT NOT NULL, email TEXT)",
               "CREATE UNIQUE INDEX accounts_lower ON accounts (lower(email)) WHERE id > 0",
               "INSERT INTO accounts VALUES (1, 'ann', 'A@x'), (2, 'ann', NULL), (3, 'bob', 'b@x'), (4, 'bob', 'c@x')")
    before = contents(pg, "accounts")
    path = config_file(tmp_path, pg, [ACCOUNTS])
    dry = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 1, result.output
    report = json_out(result)
    assert (dry["rows_to_delete"], dry["left_out_groups"]) == (1, 1)
    assert report["deleted"] == dry["rows_to_delete"] and report["skipped"] == 1
    assert pg.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (4,)]
    undo = run_cli("undo", report["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(pg, "accounts") == before


def test_identical_mode_left_out_groups_on_ci_collation(mysql, tmp_path):
    """MariaDB without a primary key: case variants and trailing spaces fall in one group of a `_ci` key; they
    are not identical rows, so the group is left out; NULL keys form their own group."""
    mysql.execute("CREATE TABLE accounts (login VARCHAR(32) COLLATE utf8mb4_general_ci, note VARCHAR(8)) "
               "CHARACTER SET utf8mb4",
               "INSERT INTO accounts VALUES ('bob', 'x'), ('Bob', 'x'), ('bob ', 'x'), "
               "(NULL, 'n'), (NULL, 'n'), ('cid', 'y'), ('cid', 'y'), ('dan', 'é'), ('dan', 'é')")
    before = contents(mysql, "accounts")
    path = config_file(tmp_path, mysql, [ACCOUNTS])
    dry = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    report = json_out(result)
    after = mysql.rows("SELECT login, note FROM accounts")
    assert dry["rows_to_delete"] == report["deleted"], (dry, report)
    assert sorted(map(repr, after)) == sorted(map(repr, [('bob', 'x'), ('Bob', 'x'), ('bob ', 'x'),
                                                        (None, 'n'), ('cid', 'y'), ('dan', 'é')])), after
    undo = run_cli("undo", report["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(mysql, "accounts") == before


def test_case_insensitive_check_merges_case_variants_its_own_unique_key_allows(db, tmp_path):
    """The check's key columns aside, folded or not: a check folding case and trimming on `login UNIQUE` groups
    'Ann' and 'ann ' to merge them, as the operator asked; the key's own constraint does not leave them out.
    The dry run's figures are the fix's; undo restores every row."""
    binary = " COLLATE utf8mb4_bin" if db.dialect == "mysql" else ""  # MariaDB's default would refuse the rows
    db.execute(f"CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32){binary}, team INTEGER NOT NULL, "
               "CONSTRAINT accounts_login_key UNIQUE (login))",
               "INSERT INTO accounts VALUES (1, 'Ann', 1), (2, 'ann ', 1), (3, NULL, 2), (4, NULL, 2)")
    before = contents(db, "accounts")
    check = {"name": "accounts", "table": "accounts", "key": ["login"], "case_insensitive": True,
             "trim_whitespace": True}
    path = config_file(tmp_path, db, [check])
    dry = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    assert dry["left_out_groups"] == 0, dry
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert report["deleted"] == dry["rows_to_delete"] == 2
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,)]
    undo = run_cli("undo", report["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(db, "accounts") == before


def test_merge_distinct_with_references_is_undone_to_the_last_row(db, tmp_path):
    """--merge-distinct merges the group the schema says are two entities, repointing their notes; the dry run's
    figures are the fix's; undo brings every row and every reference back."""
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "CREATE TABLE notes (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts (id))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL), (2, 'ann', NULL), (7, 'dan', 'd1@x'), "
               "(8, 'dan', 'd2@x'), (9, 'dan', NULL)")
    db.execute("INSERT INTO notes VALUES (:id, :a)", params=[{"id": 100 + a, "a": a} for a in (1, 2, 7, 8, 9)])
    before = contents(db, "accounts", "notes")
    path = config_file(tmp_path, db, [ACCOUNTS])
    dry = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json", "--merge-distinct"))
    assert (dry["rows_to_delete"], dry["rows_to_repoint"], dry["left_out_groups"]) == (3, 3, 0), dry
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json", "--merge-distinct")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert (report["deleted"], report["repointed"], report["left_out"]) == (3, 3, [])
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (7,)]
    undo = run_cli("undo", report["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(db, "accounts", "notes") == before


def test_mariadb_unique_virtual_column_tells_rows_apart(mysql, tmp_path):
    """MariaDB's way to a functional unique key: a unique index on a virtual column; left out, undo exact."""
    mysql.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
                  "email_lower VARCHAR(64) AS (lower(email)) VIRTUAL, UNIQUE KEY accounts_email_lower (email_lower))",
                  "INSERT INTO accounts (id, login, email) VALUES (1, 'ann', 'A@x'), (2, 'ann', 'b@x'), "
                  "(3, 'bob', NULL), (4, 'bob', NULL)")
    before = contents(mysql, "accounts")
    path = config_file(tmp_path, mysql, [ACCOUNTS])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 1, result.output
    assert mysql.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (2,), (3,)]
    undo = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(mysql, "accounts") == before


def test_a_group_distinct_on_two_keys_is_one_group_left_out_and_changes_are_still_reported(db, tmp_path):
    """dan's rows differ on email and on phone: one group left out (listed under both keys), not two; bob's rows
    change after the plan, and the summary still says a group changed since the plan."""
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "phone VARCHAR(16), CONSTRAINT accounts_email_key UNIQUE (email), "
               "CONSTRAINT accounts_phone_key UNIQUE (phone))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL, NULL), (2, 'ann', NULL, NULL), (3, 'bob', NULL, NULL), "
               "(4, 'bob', NULL, NULL), (7, 'dan', 'd1@x', '1'), (8, 'dan', 'd2@x', '2')")
    monitor = Monitor(make_config(db, [ACCOUNTS]))
    try:
        plan = prepare_fix(monitor, "accounts")
        assert (plan.groups, plan.left_out_groups, plan.rows_to_delete) == (3, 1, 2)
        assert plan.as_json()["left_out_groups"] == 1 and len(plan.left_out) == 2
        db.execute("DELETE FROM accounts WHERE id = 4")  # bob's duplicate is gone: its group changed
        report = run_fix(monitor, "accounts", plan)
    finally:
        monitor.close()
    assert (report.groups, report.skipped, report.deleted) == (1, 2, 1)
    assert report.as_json()["left_out_groups"] == 1
    lines = report_lines(report)
    assert any("1 group(s) changed since the plan" in line for line in lines), lines
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (7,), (8,)]


def test_identical_rows_of_a_latin1_table_without_primary_key_are_fixed(mysql, tmp_path):
    """MariaDB without a primary key compares each row with the plan's copy as bytes: the copy must hold the
    table's own bytes (latin1 'é' is one byte, utf8mb4's two)."""
    mysql.execute("CREATE TABLE accounts (login VARCHAR(32), note VARCHAR(8)) CHARACTER SET latin1",
                  "INSERT INTO accounts VALUES ('dan', 'é'), ('dan', 'é'), ('eve', 'ü '), ('eve', 'ü ')")
    before = contents(mysql, "accounts")
    path = config_file(tmp_path, mysql, [ACCOUNTS])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(mysql.rows("SELECT login, note FROM accounts")) == [("dan", "é"), ("eve", "ü ")]
    undo = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(mysql, "accounts") == before


def test_table_collation_other_than_the_databases_is_fixed_and_undone(mysql, tmp_path):
    """MariaDB: a table whose collation (utf8mb4_bin, declared on the table, not its columns) is not the
    database's: the plan's key copies compare with the live keys without an illegal mix of collations."""
    mysql.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, note VARCHAR(8)) "
                  "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                  "INSERT INTO accounts VALUES (1, 'ann', 'a'), (2, 'ann', 'b'), (3, 'Ann', 'c'), (4, 'é', 'd'), "
                  "(5, 'é', 'e')")
    before = contents(mysql, "accounts")
    path = config_file(tmp_path, mysql, [ACCOUNTS])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert mysql.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (4,)]
    undo = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(mysql, "accounts") == before


def test_left_out_groups_of_a_table_without_primary_key_but_a_unique_key(db, tmp_path):
    """No primary key (PostgreSQL ctid, SQLite rowid; MariaDB: identical rows only), a nullable UNIQUE (email):
    the group of two emails is left out, the group without emails fixed; undo restores every row."""
    db.execute("CREATE TABLE accounts (login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "INSERT INTO accounts VALUES ('ann', NULL), ('ann', NULL), ('dan', 'd1@x'), ('dan', 'd2@x')")
    before = contents(db, "accounts")
    path = config_file(tmp_path, db, [ACCOUNTS])
    dry = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    assert (dry["rows_to_delete"], dry["left_out_groups"]) == (1, 1), dry
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 1, result.output
    assert sorted(db.rows("SELECT login, email FROM accounts"), key=repr) == sorted(
        [("ann", None), ("dan", "d1@x"), ("dan", "d2@x")], key=repr)
    undo = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(db, "accounts") == before


def test_partial_expression_index_is_evaluated_only_where_its_predicate_holds(pg, tmp_path):
    """PostgreSQL evaluates a partial index's expression only on the rows its predicate admits: `(payload::int)`
    WHERE kind = 'num' holds 'abc' in text rows. Telling a group's rows apart must not evaluate it elsewhere (an
    invalid integer would stop the plan, every time)."""
    pg.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT)",
               "CREATE UNIQUE INDEX accounts_num ON accounts ((payload::int)) WHERE kind = 'num'",
               "INSERT INTO accounts VALUES (1, 'ann', 'text', 'abc'), (2, 'ann', 'text', 'abc'), "
               "(3, 'bob', 'num', '1'), (4, 'bob', 'num', '2'), (5, 'cid', 'num', '3'), (6, 'cid', 'text', 'x')")
    before = contents(pg, "accounts")
    path = config_file(tmp_path, pg, [ACCOUNTS])
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert (plan["rows_to_delete"], plan["left_out_groups"]) == (2, 1), plan
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 1, result.output
    assert pg.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (4,), (5,)]
    undo = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(pg, "accounts") == before


def test_add_constraint_after_a_fix_that_left_a_group_out(db, tmp_path):
    """`fix --add-constraint` with a group left out: the left-out rows still share the key, so the unique index
    cannot be added; the fix stands (exit 1), one line says why, nothing crashes, and the undo line works."""
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL), (2, 'ann', NULL), (7, 'dan', 'd1@x'), (8, 'dan', 'd2@x')")
    before = contents(db, "accounts")
    path = config_file(tmp_path, db, [ACCOUNTS])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--add-constraint")
    assert result.exit_code == 1, result.output
    assert "unexpected" not in result.output and "please report" not in result.output, result.output
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (7,), (8,)]
    undo_line = [line for line in result.stdout.splitlines() if "undo with:" in line]
    assert undo_line, result.output
    undo = run_cli(*undo_line[0].split("undo with: dupewatch ")[1].split(), "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    assert contents(db, "accounts") == before

"""Issue 16, item 5: generated columns and MariaDB's system-versioned tables. The archive keeps every column;
undo lets the database compute generated ones again (it refuses to be given them), so the fix can be undone;
the guard adds its index to a system-versioned table and says how."""

from __future__ import annotations

import pytest

from dbtest import TestDatabase
from fix_support import config_file, json_out, run_cli

CHECK = {"name": "accounts", "table": "acct", "key": ["name"]}


def _generated(db: TestDatabase) -> str:
    return {"postgresql": "g INTEGER GENERATED ALWAYS AS (k + 1) STORED",
            "mysql": "g INTEGER AS (k + 1) VIRTUAL, s INTEGER AS (k * 2) STORED",
            "sqlite": "g INTEGER GENERATED ALWAYS AS (k + 1) VIRTUAL, s INTEGER GENERATED ALWAYS AS (k * 2) STORED"
            }[db.dialect]


def _fix_and_undo(db: TestDatabase, tmp_path, *, guard: bool = False) -> None:
    path = config_file(tmp_path, db, [CHECK])
    before = db.rows("SELECT id, name, k FROM acct ORDER BY id")
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json",
                    *(["--add-constraint"] if guard else []))
    assert fixed.exit_code == 0, fixed.output
    assert db.rows("SELECT id FROM acct ORDER BY id") == [(1,), (3,)]
    if guard:
        again = run_cli("guard", CHECK["name"], "--config", str(path))
        assert again.exit_code == 0 and "already present" in again.stdout, again.output
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes",
                     *(["--drop-constraint"] if guard else []))
    assert undone.exit_code == 0, undone.output
    assert db.rows("SELECT id, name, k FROM acct ORDER BY id") == before


def test_a_fix_of_a_table_with_generated_columns_can_be_undone(db, tmp_path):
    db.execute(f"CREATE TABLE acct (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, k INTEGER, {_generated(db)})",
               "INSERT INTO acct (id, name, k) VALUES (1, 'a', 10), (2, 'a', 20), (3, 'b', 30)")
    _fix_and_undo(db, tmp_path)
    assert db.rows("SELECT id, g FROM acct ORDER BY id") == [(1, 11), (2, 21), (3, 31)]  # computed again


@pytest.mark.parametrize("columns", ["named", "hidden"])
def test_system_versioned_table_is_fixed_undone_and_guarded(mysql, tmp_path, columns):
    if "mariadb" not in str(mysql.scalar("SELECT VERSION()")).lower():
        pytest.skip("system versioning is MariaDB's")
    period = ("row_start TIMESTAMP(6) GENERATED ALWAYS AS ROW START, "
              "row_end TIMESTAMP(6) GENERATED ALWAYS AS ROW END, PERIOD FOR SYSTEM_TIME (row_start, row_end), "
              if columns == "named" else "")
    mysql.execute(f"CREATE TABLE acct (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, k INTEGER, {period}"
                  "CONSTRAINT acct_k UNIQUE (k)) WITH SYSTEM VERSIONING",
                  "INSERT INTO acct (id, name, k) VALUES (1, 'a', NULL), (2, 'a', 20), (3, 'b', 30)")
    _fix_and_undo(mysql, tmp_path, guard=True)
    # the deleted row is in the table's history as well: versioning saw the delete and the restore
    assert mysql.scalar("SELECT count(*) FROM acct FOR SYSTEM_TIME ALL WHERE id = 2") == 2


@pytest.mark.parametrize("columns", ["named", "invisible", "hidden"])
def test_a_system_versioned_table_with_a_child_is_fixed_repointed_and_undone(mysql, tmp_path, columns):
    """With explicit period columns MariaDB lists the primary key as (id, row_end): a child's foreign key to acct(id)
    was refused as "refers to acct(id), which is not unique". Among the current rows, the key without the row end
    column is the identity."""
    if "mariadb" not in str(mysql.scalar("SELECT VERSION()")).lower():
        pytest.skip("system versioning is MariaDB's")
    hide = " INVISIBLE" if columns == "invisible" else ""
    period = (f"rs TIMESTAMP(6) GENERATED ALWAYS AS ROW START{hide}, re TIMESTAMP(6) GENERATED ALWAYS AS ROW "
              f"END{hide}, PERIOD FOR SYSTEM_TIME (rs, re), " if columns != "hidden" else "")
    mysql.execute(f"CREATE TABLE acct (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, k INTEGER, {period}"
                  "CONSTRAINT acct_k UNIQUE (k)) WITH SYSTEM VERSIONING",
                  "CREATE TABLE ses (id INTEGER PRIMARY KEY, acct_id INTEGER NOT NULL, "
                  "FOREIGN KEY (acct_id) REFERENCES acct (id))",
                  "INSERT INTO acct (id, name, k) VALUES (1, 'a', NULL), (2, 'a', 20), (3, 'b', 30)",
                  "INSERT INTO ses VALUES (10, 2), (11, 3)")
    path = config_file(tmp_path, mysql, [CHECK])
    dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [r["rows"] for r in json_out(dry)["references"]] == [1]
    before = mysql.rows("SELECT id, acct_id FROM ses ORDER BY id")
    _fix_and_undo(mysql, tmp_path)
    assert mysql.rows("SELECT id, acct_id FROM ses ORDER BY id") == before

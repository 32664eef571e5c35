"""A multi-tenant schema's `UNIQUE (tenant_id, id)` (which a composite foreign key `(tenant_id, account_id)`
needs): it holds the primary key, so any two rows differ on it, as on the primary key. It was taken for evidence
that every group's rows are different entities, and the fix refused every group of such a table."""

from __future__ import annotations

from fix_support import config_file, contents, json_out, run_cli


def test_a_unique_key_holding_the_primary_key_does_not_make_rows_distinct_entities(db, tmp_path):
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, email VARCHAR(20), "
               "UNIQUE (tenant_id, id))",
               "CREATE TABLE document (id INTEGER PRIMARY KEY, tenant_id INTEGER, account_id INTEGER, "
               "FOREIGN KEY (tenant_id, account_id) REFERENCES account (tenant_id, id))",
               "INSERT INTO account VALUES (1, 1, 'a'), (2, 1, 'a'), (3, 2, 'b'), (4, 2, 'b'), (5, 2, 'c')",
               "INSERT INTO document VALUES (1, 1, 2), (2, 2, 4), (3, 1, 1)")
    path = config_file(tmp_path, db, [{"name": "c", "table": "account", "key": ["tenant_id", "email"]}])
    before = contents(db, "account", "document")
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json_out(dry)["blockers"] == []
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"], json_out(fixed)["left_out_groups"]) == (2, 2, 0)
    assert db.rows("SELECT id, tenant_id, account_id FROM document ORDER BY id") == [(1, 1, 1), (2, 2, 3), (3, 1, 1)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "account", "document") == before


def test_a_unique_key_beside_the_primary_key_still_tells_rows_apart(db, tmp_path):
    """`UNIQUE (tenant_id, code)` does not hold the primary key: rows differing on it stay distinct entities."""
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, code VARCHAR(5), "
               "email VARCHAR(20), UNIQUE (tenant_id, id), UNIQUE (tenant_id, code))",
               "INSERT INTO account VALUES (1, 1, 'x', 'a'), (2, 1, 'y', 'a')")
    path = config_file(tmp_path, db, [{"name": "c", "table": "account", "key": ["email"]}])
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    blockers = json_out(dry)["blockers"]
    assert len(blockers) == 1 and "(tenant_id, code)" in blockers[0] and "(tenant_id, id)" not in blockers[0]

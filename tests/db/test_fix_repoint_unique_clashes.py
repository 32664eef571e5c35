"""Unique constraints a repoint would break, which the dry run must see as the database does: one over two foreign
keys to the fixed table (Mastodon's `follows(account_id, target_account_id)`, a Django self-referential
many-to-many's through table), where both ends of a row may be repointed and the dry run must see the rows as the
two repoints together leave them; and PostgreSQL 15's `UNIQUE NULLS NOT DISTINCT`, where a NULL beside the
repointed column is a value."""

from __future__ import annotations

import pytest

from fix_support import config_file, contents, json_out, run_cli

ACCOUNTS = [{"name": "accounts", "table": "account", "key": ["username"]}]


def _seed_follows(db, follows: str) -> None:
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, username VARCHAR(30) NOT NULL)")
    db.execute("CREATE TABLE follows (id INTEGER PRIMARY KEY, "
               "account_id INTEGER NOT NULL REFERENCES account (id), "
               "target_account_id INTEGER NOT NULL REFERENCES account (id), "
               "CONSTRAINT follows_pair UNIQUE (account_id, target_account_id))")
    db.execute("INSERT INTO account VALUES (1, 'alice'), (2, 'alice'), (3, 'bob'), (4, 'bob'), (5, 'carol')")
    db.execute(f"INSERT INTO follows VALUES {follows}")


def test_repoint_of_both_ends_onto_one_pair_is_refused_by_the_dry_run(db, tmp_path):
    """alice#2 follows bob#3 and alice#1 follows bob#4: each reference alone moves one row to a pair no row holds,
    both together make two `(1, 3)`. The dry run said exit 0 with no blocker; the fix then stopped at the batch
    on `follows_pair`, and every run again stopped there."""
    _seed_follows(db, "(10, 2, 3), (11, 1, 4)")
    path = config_file(tmp_path, db, ACCOUNTS)
    before = contents(db, "account", "follows")
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    clash = [b for b in json_out(dry)["blockers"] if "would violate its unique constraint" in b]
    assert len(clash) == 1 and "follows(account_id)" in clash[0] and "follows(target_account_id)" in clash[0], clash
    assert "not only those that clash" in clash[0], clash  # what setting it to archive would do
    if db.dialect != "sqlite":  # SQLite names its inline constraint sqlite_autoindex_follows_1
        assert "follows_pair" in clash[0]
    fixed = run_cli("fix", "accounts", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "cannot be fixed" in fixed.stderr, fixed.output
    assert "Traceback" not in fixed.output and len(fixed.stderr.strip().splitlines()) == 1
    assert contents(db, "account", "follows") == before


def test_repoint_of_both_ends_onto_distinct_pairs_is_fixed_and_undone(db, tmp_path):
    """Both ends moved, no two rows end on one pair: no refusal, and undo puts every row back."""
    _seed_follows(db, "(10, 2, 4), (11, 1, 5), (12, 5, 2), (13, 4, 1)")
    path = config_file(tmp_path, db, ACCOUNTS)
    before = contents(db, "account", "follows")
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0 and json_out(dry)["blockers"] == [], dry.output
    fixed = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (2, 4)  # row 10 moved by both references
    assert db.rows("SELECT id, account_id, target_account_id FROM follows ORDER BY id") == [
        (10, 1, 3), (11, 1, 5), (12, 5, 1), (13, 3, 1)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "account", "follows") == before


@pytest.mark.parametrize("unique", [
    "ALTER TABLE perm ADD CONSTRAINT perm_u UNIQUE NULLS NOT DISTINCT (group_id, codename)",
    "CREATE UNIQUE INDEX perm_u ON perm (group_id, codename) NULLS NOT DISTINCT"])
def test_postgres_repoint_onto_a_nulls_not_distinct_pair_is_refused_by_the_dry_run(pg, tmp_path, unique):
    """Both groups named `staff` hold a permission with no codename: under NULLS NOT DISTINCT two `(1, NULL)` are
    one value. The dry run left NULLs out as a plain unique constraint does (exit 0, no blocker); the fix then
    stopped at the batch on `perm_u`, on every run."""
    pg.execute("CREATE TABLE grp (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
               "CREATE TABLE perm (id INTEGER PRIMARY KEY, group_id INTEGER REFERENCES grp (id), codename TEXT)",
               unique,
               "INSERT INTO grp VALUES (1, 'staff'), (2, 'staff'), (3, 'ops'), (4, 'ops')",
               "INSERT INTO perm VALUES (1, 1, NULL), (2, 2, NULL), (3, 3, 'view'), (4, 4, NULL)")
    path = config_file(tmp_path, pg, [{"name": "groups", "table": "grp", "key": ["name"]}])
    before = contents(pg, "grp", "perm")
    dry = run_cli("fix", "groups", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    assert [b for b in json_out(dry)["blockers"] if "unique constraint perm_u in 1 group(s)" in b], dry.output
    fixed = run_cli("fix", "groups", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "cannot be fixed" in fixed.stderr, fixed.output
    assert contents(pg, "grp", "perm") == before

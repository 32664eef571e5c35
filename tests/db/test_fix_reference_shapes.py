"""The fix and its undo on reference shapes taken from real applications' schemas: a link table whose primary
key holds the foreign key it repoints."""

from __future__ import annotations

from fix_support import config_file, contents, json_out, run_cli


def test_undo_points_back_a_link_row_whose_primary_key_holds_the_repointed_column(db, tmp_path):
    """`membership(user_id, group_id)` keyed by both columns (a Rails/Django link table): the repoint changes
    the row's primary key, so undo must find it by the key the repoint gave it, not the one it had."""
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(50) NOT NULL)")
    db.execute("CREATE TABLE membership (user_id INTEGER NOT NULL REFERENCES account (id), "
               "group_id INTEGER NOT NULL, PRIMARY KEY (user_id, group_id))")
    db.execute("INSERT INTO account VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    db.execute("INSERT INTO membership VALUES (1, 10), (2, 20), (3, 10)")
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    before = contents(db, "account", "membership")

    fixed = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (1, 1)
    assert db.rows("SELECT user_id, group_id FROM membership ORDER BY 1, 2") == [(1, 10), (1, 20), (3, 10)]

    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["repointed"] == 1
    assert contents(db, "account", "membership") == before

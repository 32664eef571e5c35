"""A BEFORE UPDATE trigger of a referencing table that rewrites other columns of the row the repoint updates
(`NEW.updated_at := now()`, `NEW.version := OLD.version + 1`, as PostgreSQL's moddatetime or a hand-written
"touch" trigger does). It writes no other row, so no count of the batch's account differs: the fix repointed
`item.tag_id` and also changed `updated_at` and `version`, which undo (firing the trigger again) could not put
back, and said nothing. The preview's note promised that a trigger which changes the fix's own write rolls the
batch back; now the database's digest of each repointed row's other columns, before and after the UPDATE, says
whether it did. (SQLite's BEFORE triggers cannot change NEW: an UPDATE in a trigger body is counted already.)"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import config_file, contents, json_out, run_cli


def _seed(db) -> None:
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), note VARCHAR(20),"
               " version INTEGER NOT NULL DEFAULT 1)",
               "INSERT INTO tag VALUES (1, 'x'), (2, 'x'), (3, 'y')",
               "INSERT INTO item (id, tag_id, note) VALUES (10, 1, 'a'), (11, 2, 'b'), (12, 3, 'c')")
    if db.dialect == "postgresql":
        db.execute("CREATE FUNCTION item_touch() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$",
                   "CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW EXECUTE FUNCTION item_touch()")
    else:
        db.execute("CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW SET NEW.version = OLD.version + 1")


@pytest.mark.parametrize("server", ["pg", "mysql"])
def test_a_trigger_rewriting_the_repointed_row_stops_the_fix_with_nothing_changed(server, request, tmp_path):
    db = request.getfixturevalue(server)
    _seed(db)
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    before = contents(db, "tag", "item")

    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 2, fixed.output
    assert "item_touch" in fixed.stderr and "item" in fixed.stderr, fixed.stderr
    assert contents(db, "tag", "item") == before


@pytest.mark.parametrize("server", ["pg", "mysql"])
def test_a_trigger_changing_nothing_else_lets_the_fix_and_undo_run(server, request, tmp_path):
    """A BEFORE UPDATE trigger that only validates (or sets a column to the value it has) changes no other column:
    the fix runs and undo restores the starting contents exactly."""
    db = request.getfixturevalue(server)
    _seed(db)
    if db.dialect == "postgresql":
        db.execute("CREATE OR REPLACE FUNCTION item_touch() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN NEW.version := OLD.version; RETURN NEW; END $$")
    else:
        db.execute("DROP TRIGGER item_touch",
                   "CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW SET NEW.version = OLD.version")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    before = contents(db, "tag", "item")

    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert json_out(fixed)["repointed"] == 1
    assert db.rows("SELECT tag_id, note, version FROM item WHERE id = 11") == [(1, "b", 1)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "tag", "item") == before


@pytest.mark.parametrize("server", ["pg", "mysql"])
def test_undo_refuses_when_a_trigger_enabled_since_the_fix_would_rewrite_the_rows_it_points_back(server, request,
                                                                                                  tmp_path):
    """Disabled for the fix as the preview advised, then enabled again: undo's point back fired it, and the
    rows came back with `version` bumped. Undo now compares the digest of the rest of each row that was as the fix
    logged it, before and after, and refuses with nothing changed; without the trigger it restores exactly."""
    db = request.getfixturevalue(server)
    _seed(db)
    db.execute("DROP TRIGGER item_touch ON item" if db.dialect == "postgresql" else "DROP TRIGGER item_touch")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    before = contents(db, "tag", "item")
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = json_out(fixed)["fix_id"]
    after_fix = contents(db, "tag", "item")
    if db.dialect == "postgresql":
        db.execute("CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW EXECUTE FUNCTION item_touch()")
    else:
        db.execute("CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW SET NEW.version = OLD.version + 1")

    refused = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert refused.exit_code == 2, refused.output
    assert "item_touch" in refused.stderr and "nothing changed" in refused.stderr, refused.stderr
    assert contents(db, "tag", "item") == after_fix

    db.execute("DROP TRIGGER item_touch ON item" if db.dialect == "postgresql" else "DROP TRIGGER item_touch")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "tag", "item") == before


def test_undo_reads_the_rows_digests_itself_whatever_its_sessions_time_zone(pg, tmp_path, monkeypatch):
    """A row's digest is of its values' text, which a session's settings shape (a timestamptz in its TimeZone):
    compared with the digest the fix's session logged, an undo in another time zone found no row as logged,
    before or after, and a rewriting trigger passed unseen. Undo reads each row's digest itself, before and after
    it points the rows back."""
    _seed(pg)
    pg.execute("ALTER TABLE item ADD COLUMN seen_at timestamptz NOT NULL DEFAULT '2026-01-01 12:00:00+00'",
               "DROP TRIGGER item_touch ON item")
    path = config_file(tmp_path, pg, [{"name": "tags", "table": "tag", "key": ["label"]}])
    monkeypatch.setenv("PGTZ", "UTC")
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    after_fix = contents(pg, "tag", "item")
    pg.execute("CREATE TRIGGER item_touch BEFORE UPDATE ON item FOR EACH ROW EXECUTE FUNCTION item_touch()")

    monkeypatch.setenv("PGTZ", "Europe/Berlin")
    refused = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert refused.exit_code == 2, refused.output
    assert "item_touch" in refused.stderr and "nothing changed" in refused.stderr, refused.stderr
    assert contents(pg, "tag", "item") == after_fix


def test_the_rows_digest_needs_no_md5_which_a_fips_build_refuses(own_pg, tmp_path):
    """A FIPS-mode PostgreSQL build refuses md5(), and the digest was md5 of the row's text: every fix and undo
    with a repointed row stopped on it. Here md5() is refused the fix role as FIPS refuses it everyone (EXECUTE
    revoked, in a database of the test's own): the rewriting trigger is still seen, and without it the fix and
    undo run."""
    _seed(own_pg)
    own_pg.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.md5(text), pg_catalog.md5(bytea) FROM PUBLIC")
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS", prefix="dw_fips",
                      password="pw") as role:
        try:
            own_pg.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"',
                           f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
            as_role = make_url(own_pg.url).set(username=role, password="pw").render_as_string(hide_password=False)
            path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": own_pg.url, "fix_url": as_role}},
                                [{"database": "app", "name": "tags", "table": "tag", "key": ["label"]}])
            before = contents(own_pg, "tag", "item")

            refused = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
            assert refused.exit_code == 2, refused.output
            assert "item_touch" in refused.stderr and "md5" not in refused.stderr, refused.stderr
            assert contents(own_pg, "tag", "item") == before

            own_pg.execute("DROP TRIGGER item_touch ON item")
            fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
            assert fixed.exit_code == 0, fixed.output
            assert json_out(fixed)["repointed"] == 1
            undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
            assert undone.exit_code == 0, undone.output
            assert contents(own_pg, "tag", "item") == before
        finally:
            own_pg.execute(f'DROP OWNED BY "{role}" CASCADE')

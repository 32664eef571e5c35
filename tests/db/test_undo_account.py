"""Issue 16: undo gets the fix batch's account. What the database counts undo's transaction changing (inserts
into the fixed table and archived referencing tables, the updates pointing references back, the fix record's
update) must be what undo planned; a trigger or a rule writing beyond that rolls undo back, and undo refuses in one
line naming the table (PostgreSQL counts per table) and the trigger the catalog names, exit 2, nothing changed.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import TestDatabase, server_login, write_config
from fix_support import audit_trigger, config_file, contents, json_out, run_cli

TAGS = {"name": "tags", "table": "tag", "key": ["name"]}


def _welcome_trigger(db: TestDatabase, timing: str = "AFTER") -> None:
    """The repro: `tag_welcome` AFTER INSERT ON tag writes a row into `welcome`."""
    audit_trigger(db, "tag_welcome", "INSERT", "tag", timing=timing, into="welcome")


def _fixed(db: TestDatabase, tmp_path, checks=(TAGS,)) -> tuple[str, str]:
    path = str(config_file(tmp_path, db, list(checks)))
    fixed = run_cli("fix", checks[0]["name"], "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    return path, json_out(fixed)["fix_id"]


def _refused(db: TestDatabase, path: str, fix_id: str, *tables: str) -> str:
    before = contents(db, *tables, "dupewatch_fix")
    undone = run_cli("undo", fix_id, "--config", path, "--yes")
    assert undone.exit_code == 2, undone.output
    assert contents(db, *tables, "dupewatch_fix") == before
    assert db.scalar("SELECT state FROM dupewatch_fix") == "done"
    message = undone.stderr.strip()
    assert "\n" not in message and "nothing changed" in message, message
    return message


def test_an_after_insert_trigger_writing_another_table_makes_undo_refuse(db, tmp_path):
    """The repro: undo said "1 row restored", exit 0, and `welcome` had a row the fix's starting contents had not."""
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red'), (3, 'blue')")
    _welcome_trigger(db)
    path, fix_id = _fixed(db, tmp_path)
    message = _refused(db, path, fix_id, "tag", "welcome")
    assert "AFTER INSERT trigger tag_welcome on tag" in message, message
    if db.dialect == "postgresql":  # counted per table: the table the trigger wrote is named
        assert "1 row(s) inserted in welcome, the plan 0" in message, message
    else:  # counted for the session: what undo wrote, and what may have written the rest
        assert "in this undo" in message, message
    assert db.rows("SELECT id FROM tag ORDER BY id") == [(1,), (3,)]
    # what is named, disabled for the undo, lets it through
    db.execute("DROP TRIGGER tag_welcome ON tag" if db.dialect == "postgresql" else "DROP TRIGGER tag_welcome")
    assert run_cli("undo", fix_id, "--config", path, "--yes").exit_code == 0
    assert db.rows("SELECT id, name FROM tag ORDER BY id") == [(1, "red"), (2, "red"), (3, "blue")]
    assert db.scalar("SELECT COUNT(*) FROM welcome") == 0


def test_a_trigger_on_a_pointed_back_table_writing_elsewhere_makes_undo_refuse(db, tmp_path):
    """An AFTER UPDATE trigger added to a referencing table since the fix: undo's repoint back fires it."""
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id))",
               "INSERT INTO item VALUES (10, 2), (11, 1)")
    path, fix_id = _fixed(db, tmp_path)
    audit_trigger(db, "item_moved", "UPDATE", "item")
    message = _refused(db, path, fix_id, "tag", "item", "audit")
    assert "AFTER UPDATE trigger item_moved on item" in message, message
    assert db.dialect != "postgresql" or "1 row(s) inserted in audit" in message, message


def test_postgres_a_deferred_constraint_trigger_is_counted_before_undo_commits(pg, tmp_path):
    """A constraint trigger AFTER INSERT `DEFERRABLE INITIALLY DEFERRED` fires at COMMIT, after the account:
    undo fires deferred work first (SET CONSTRAINTS ALL IMMEDIATE), so its write is counted and undo refuses."""
    pg.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
               "CREATE TABLE welcome (tag_id INTEGER, msg VARCHAR(40))",
               "CREATE FUNCTION welcome() RETURNS trigger LANGUAGE plpgsql AS "
               "'BEGIN INSERT INTO welcome VALUES (NEW.id, ''later''); RETURN NULL; END'",
               "CREATE CONSTRAINT TRIGGER tag_welcome AFTER INSERT ON tag DEFERRABLE INITIALLY DEFERRED "
               "FOR EACH ROW EXECUTE FUNCTION welcome()")
    path, fix_id = _fixed(pg, tmp_path)
    message = _refused(pg, path, fix_id, "tag", "welcome")
    assert "inserted in welcome" in message and "tag_welcome" in message, message


def test_a_plain_undo_restores_the_starting_contents_under_its_account(db, tmp_path):
    """Repointed and archived references, a BEFORE INSERT trigger that changes nothing, two groups: the account
    holds what undo planned (the restored rows, the archived children, the pointed-back rows, the record) and
    the starting contents come back exactly."""
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red'), (3, 'red'), (4, 'blue'), (5, 'blue')",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id))",
               "INSERT INTO item VALUES (10, 2), (11, 3), (12, 5), (13, 1)",
               "CREATE TABLE note (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id))",
               "INSERT INTO note VALUES (20, 3), (21, 4)")
    if db.dialect == "postgresql":
        db.execute("CREATE FUNCTION same() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
                   "CREATE TRIGGER tag_same BEFORE INSERT ON tag FOR EACH ROW EXECUTE FUNCTION same()")
    elif db.dialect == "mysql":
        db.execute("CREATE TRIGGER tag_same BEFORE INSERT ON tag FOR EACH ROW SET NEW.name = NEW.name")
    before = contents(db, "tag", "item", "note")
    check = {**TAGS, "on_reference": {"note.tag_id": "archive"}}
    path, fix_id = _fixed(db, tmp_path, [check])
    assert db.rows("SELECT id FROM tag ORDER BY id") == [(1,), (4,)]
    undone = run_cli("undo", fix_id, "--config", path, "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert (json_out(undone)["restored"], json_out(undone)["repointed"]) == (3, 3)
    assert contents(db, "tag", "item", "note") == before
    assert db.scalar("SELECT state FROM dupewatch_fix") == "undone"


def test_mysql_a_fix_role_without_the_trigger_privilege_sees_the_trigger_and_its_rows_are_counted(mysql, tmp_path):
    """The fix role has no TRIGGER privilege: MariaDB (10.11, measured) still lists the table's triggers in
    information_schema.TRIGGERS to a role with a privilege on the table, and the session's Handler_write counts
    the row the trigger's body (run as its definer) writes: undo refuses, naming the trigger."""
    mysql.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
                  "INSERT INTO tag VALUES (1, 'red'), (2, 'red')")
    _welcome_trigger(mysql)
    password = uuid.uuid4().hex
    grant = f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON `{mysql.schema}`.* TO {{user}}"
    with server_login("mysql", grant, "GRANT PROCESS ON *.* TO {user}", prefix="dw_undo", password=password) as user:
        fix_url = make_url(mysql.url).set(username=user, password=password).render_as_string(hide_password=False)
        path = str(write_config(tmp_path / "dupewatch.toml", {"app": {"url": mysql.url, "fix_url": fix_url}},
                                [{"database": "app", **TAGS}]))
        fixed = run_cli("fix", TAGS["name"], "--config", path, "--yes", "--json")
        assert fixed.exit_code == 0, fixed.output
        message = _refused(mysql, path, json_out(fixed)["fix_id"], "tag", "welcome")
    assert "counted 2 row(s) inserted in this undo, the plan 1" in message, message
    assert "AFTER INSERT trigger tag_welcome on tag" in message, message


def test_an_undo_into_a_partitioned_table_is_counted_as_planned(pg, mysql, tmp_path):
    """PostgreSQL counts the restored rows on the partitions (the account adds them up under the partitioned
    table); MariaDB's partition handler and the partition's own count each row, a system-versioned table
    partitioned BY SYSTEM_TIME too: undo plans as the database counts, and restores."""
    pg.execute("CREATE TABLE tag (id INTEGER, day INTEGER, name VARCHAR(20), PRIMARY KEY (id, day)) "
               "PARTITION BY RANGE (day)",
               "CREATE TABLE tag_1 PARTITION OF tag FOR VALUES FROM (0) TO (10)",
               "CREATE TABLE tag_2 PARTITION OF tag FOR VALUES FROM (10) TO (20)",
               "INSERT INTO tag VALUES (1, 1, 'red'), (2, 11, 'red'), (3, 12, 'red'), (4, 2, 'blue')")
    mysql.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20)) PARTITION BY HASH (id) PARTITIONS 3",
                  "INSERT INTO tag VALUES (1, 'red'), (2, 'red'), (3, 'red'), (4, 'blue')",
                  "CREATE TABLE vtag (id INTEGER PRIMARY KEY, name VARCHAR(20)) WITH SYSTEM VERSIONING "
                  "PARTITION BY SYSTEM_TIME (PARTITION p_hist HISTORY, PARTITION p_cur CURRENT)",
                  "INSERT INTO vtag VALUES (1, 'red'), (2, 'red'), (3, 'blue')")
    for db, check in ((pg, TAGS), (mysql, TAGS), (mysql, {"name": "vtags", "table": "vtag", "key": ["name"]})):
        before = contents(db, check["table"])
        path, fix_id = _fixed(db, tmp_path, [check])
        assert contents(db, check["table"]) != before
        undone = run_cli("undo", fix_id, "--config", path, "--yes")
        assert undone.exit_code == 0, undone.output
        assert contents(db, check["table"]) == before


def test_postgres_an_insert_rule_writing_another_table_makes_undo_refuse_and_is_named(pg, tmp_path):
    """`CREATE RULE ... AS ON INSERT TO tag DO ALSO INSERT INTO welcome`: the catalog's pg_rewrite names it."""
    pg.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
               "CREATE TABLE welcome (tag_id INTEGER, msg VARCHAR(40))",
               "CREATE RULE tag_greets AS ON INSERT TO tag DO ALSO INSERT INTO welcome VALUES (NEW.id, 'hi')")
    path, fix_id = _fixed(pg, tmp_path)
    message = _refused(pg, path, fix_id, "tag", "welcome")
    assert "1 row(s) inserted in welcome, the plan 0" in message and "rule tag_greets ON INSERT on tag" in message, \
        message


def test_postgres_track_counts_off_refuses_the_fix_and_undo_up_front(pg, tmp_path):
    """With track_counts off pg_stat_xact_user_tables reads 0, so every batch's and undo's account failed with a
    misleading "the database counted 0 rows"; the dry run, the fix and undo now refuse in one line naming the
    setting, exit 2, nothing changed."""
    pg.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red'), (3, 'blue')")
    url = make_url(pg.url)
    off = url.update_query_dict({"options": f"{url.query['options']} -ctrack_counts=off"})
    off_path = str(write_config(tmp_path / "off.toml", {"app": {"url": off.render_as_string(hide_password=False)}},
                                [{"database": "app", **TAGS}]))
    before = contents(pg, "tag")
    for args in (["--dry-run"], ["--yes"]):
        refused = run_cli("fix", "tags", "--config", off_path, *args)
        assert refused.exit_code == 2, refused.output
        assert "track_counts is off" in refused.output and "ALTER ROLE" in refused.output, refused.output
    assert contents(pg, "tag") == before
    _path, fix_id = _fixed(pg, tmp_path)
    after = contents(pg, "tag")
    undone = run_cli("undo", fix_id, "--config", off_path, "--yes")
    assert undone.exit_code == 2 and "track_counts is off" in undone.output, undone.output
    assert contents(pg, "tag") == after and pg.scalar("SELECT state FROM dupewatch_fix") != "undone"


def _label_of_a_repointed_item_refuses_undo(db: TestDatabase, tmp_path, action: str) -> str:
    """`item(tag_id)` repointed by a fix from tag 2 onto tag 1, then a `label(tag_id, item_id)` referring to the
    repointed item by a foreign key `label_item` ON UPDATE `action`: undo refused, nothing changed; its message."""
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), "
               "CONSTRAINT item_tag_id UNIQUE (tag_id, id))",
               "INSERT INTO item VALUES (10, 2), (11, 1)",
               "CREATE TABLE label (id INTEGER PRIMARY KEY, tag_id INTEGER, item_id INTEGER, CONSTRAINT label_item "
               f"FOREIGN KEY (tag_id, item_id) REFERENCES item (tag_id, id) ON UPDATE {action})")
    path, fix_id = _fixed(db, tmp_path)
    db.execute("INSERT INTO label VALUES (100, 1, 10)")
    return _refused(db, path, fix_id, "tag", "item", "label")


@pytest.mark.parametrize("action", ["CASCADE", "SET NULL"])
def test_a_row_referring_to_a_pointed_back_row_by_an_on_update_key_makes_undo_refuse(db, tmp_path, action):
    """`label(tag_id, item_id)` refers to `item(tag_id, id)` ON UPDATE CASCADE / SET NULL; a label of the repointed
    item, written since the fix, would follow (or lose) its tag when undo points the item back. MariaDB runs
    InnoDB's foreign key actions where no Handler_* counter sees them (10.11, measured: an UPDATE cascading to 3
    rows adds 1 to Handler_update): undo said nothing and changed the label. Now undo refuses up front on every
    database, naming the referring table and the foreign key, nothing changed."""
    message = _label_of_a_repointed_item_refuses_undo(db, tmp_path, action)
    assert "1 row(s) of label(tag_id, item_id) refer to rows of 'item' undo would point back" in message, message
    assert "label_item" in message, message


@pytest.fixture
def sqlite_enforces_foreign_keys() -> Iterator[None]:
    """Every SQLite connection opened during the test enforces foreign keys (`PRAGMA foreign_keys = ON`, which
    dupewatch leaves as the application has it: off by default)."""
    def enforce(dbapi: Any, _record: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            dbapi.execute("PRAGMA foreign_keys = ON")

    sa.event.listen(sa.engine.Engine, "connect", enforce)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "connect", enforce)


@pytest.mark.parametrize("action", ["NO ACTION", "RESTRICT"])
def test_a_row_held_by_a_no_action_key_is_left_to_the_database_which_refuses_undo_naming_it(
        db, tmp_path, action, sqlite_enforces_foreign_keys):
    """`label(tag_id, item_id)` refers to `item(tag_id, id)` ON UPDATE NO ACTION / RESTRICT: pointing item 10 back
    changes nothing else, the database only refuses while label 100 refers to the old value. Undo used to refuse
    up front with "its ON UPDATE would change them or refuse"; now the database decides, and its refusal rolls
    undo back in one line naming the foreign key and the rows it holds, nothing changed."""
    message = _label_of_a_repointed_item_refuses_undo(db, tmp_path, action)
    assert "the database refused to point rows back" in message, message
    assert (f"1 row(s) of label(tag_id, item_id) refer to rows of 'item' undo would point back, by foreign key "
            f"label_item ON UPDATE {action}") in message, message
    assert "would change them" not in message, message


@pytest.mark.parametrize("action", ["NO ACTION", "RESTRICT"])
def test_sqlite_a_no_action_key_it_does_not_check_still_refuses_undo_up_front(sqlite_db, tmp_path, action):
    """As above, on SQLite with `PRAGMA foreign_keys` off (its default, which dupewatch leaves as it is): the
    database would not refuse, so pointing item 10 back would leave label 100 referring to a value no row of item
    has. Undo refuses up front, naming the key and that the database does not check it, nothing changed."""
    message = _label_of_a_repointed_item_refuses_undo(sqlite_db, tmp_path, action)
    assert (f"1 row(s) of label(tag_id, item_id) refer to rows of 'item' undo would point back (by foreign key "
            f"label_item ON UPDATE {action}), and the database does not check foreign keys") in message, message


def test_postgres_a_no_action_key_a_replica_session_does_not_check_still_refuses_undo_up_front(pg, tmp_path):
    """As above, on PostgreSQL with the fix role's session in `session_replication_role = replica` (set by its
    URL's `options`, as replication tools' roles are): foreign keys are internal triggers, which do not fire
    there, so undo used to point item 10 back, exit 0, and leave label 100 referring to (1, 10), a value no row of
    item has. Undo refuses up front, naming the key, nothing changed."""
    pg.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), "
               "CONSTRAINT item_tag_id UNIQUE (tag_id, id))",
               "INSERT INTO item VALUES (10, 2), (11, 1)",
               "CREATE TABLE label (id INTEGER PRIMARY KEY, tag_id INTEGER, item_id INTEGER, CONSTRAINT label_item "
               "FOREIGN KEY (tag_id, item_id) REFERENCES item (tag_id, id) ON UPDATE NO ACTION)")
    url = make_url(pg.url)
    replica = url.update_query_dict({"options": f"{url.query['options']} -csession_replication_role=replica"})
    path = str(write_config(tmp_path / "dupewatch.toml",
                            {"app": {"url": pg.url, "fix_url": replica.render_as_string(hide_password=False)}},
                            [{"database": "app", **TAGS}]))
    fixed = run_cli("fix", "tags", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    pg.execute("INSERT INTO label VALUES (100, 1, 10)")
    message = _refused(pg, path, json_out(fixed)["fix_id"], "tag", "item", "label")
    assert ("1 row(s) of label(tag_id, item_id) refer to rows of 'item' undo would point back (by foreign key "
            "label_item ON UPDATE NO ACTION), and the database does not check foreign keys") in message, message


def test_postgres_a_deferred_no_action_key_lets_undo_point_both_sides_back(pg, tmp_path):
    """A key added since the fix, `label(tag_id, item_id) -> item(tag_id, id)` ON UPDATE NO ACTION DEFERRABLE
    INITIALLY DEFERRED, over two rows the fix repointed together (item 10 and label 100, both from tag 2 to 1):
    undo points both back and the key holds at commit. Undo used to count label 100 as referring to a row it
    points back and refuse; now the database decides, and accepts."""
    pg.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), UNIQUE (tag_id, id))",
               "INSERT INTO item VALUES (10, 2), (11, 1)",
               "CREATE TABLE label (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), item_id INTEGER)",
               "INSERT INTO label VALUES (100, 2, 10)")
    before = contents(pg, "tag", "item", "label")
    path, fix_id = _fixed(pg, tmp_path)
    assert pg.rows("SELECT tag_id FROM item WHERE id = 10") == pg.rows("SELECT tag_id FROM label") == [(1,)]
    pg.execute("ALTER TABLE label ADD CONSTRAINT label_item FOREIGN KEY (tag_id, item_id) REFERENCES item (tag_id, id) "
               "ON UPDATE NO ACTION DEFERRABLE INITIALLY DEFERRED")
    undone = run_cli("undo", fix_id, "--config", path, "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, "tag", "item", "label") == before


def _unchecked_fix_url(db: TestDatabase) -> str:
    """`db`'s URL for a session that does not check foreign keys: SQLite as it is (`PRAGMA foreign_keys` off),
    MySQL/MariaDB `foreign_key_checks = 0` by `init_command`, PostgreSQL `session_replication_role = replica`."""
    url = make_url(db.url)
    if db.dialect == "postgresql":
        url = url.update_query_dict({"options": f"{url.query['options']} -csession_replication_role=replica"})
    elif db.dialect == "mysql":
        url = url.update_query_dict({"init_command": "SET foreign_key_checks = 0"})
    return url.render_as_string(hide_password=False)


def test_undo_refuses_a_restored_row_whose_own_parent_was_deleted_where_keys_are_not_checked(db, tmp_path):
    """`tag.grp_id REFERENCES grp (id)`; the fix deletes tag 2 (of grp 2), then the application deletes grp 2. On a
    fix session that does not check foreign keys, undo put tag 2 back, exit 0, referring to grp 2, which no row
    holds. Undo refuses, naming the key, nothing changed; with grp 2 back, it restores tag 2."""
    db.execute("CREATE TABLE grp (id INTEGER PRIMARY KEY)", "INSERT INTO grp VALUES (1), (2)",
               "CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20), grp_id INTEGER, "
               "CONSTRAINT tag_grp FOREIGN KEY (grp_id) REFERENCES grp (id))",
               "INSERT INTO tag VALUES (1, 'red', 1), (2, 'red', 2)")
    path = str(write_config(tmp_path / "dupewatch.toml", {"app": {"url": db.url, "fix_url": _unchecked_fix_url(db)}},
                            [{"database": "app", **TAGS}]))
    fixed = run_cli("fix", "tags", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    db.execute("DELETE FROM grp WHERE id = 2")
    message = _refused(db, path, json_out(fixed)["fix_id"], "grp", "tag")
    assert "1 archived row(s) of 'tag' refer, by foreign key tag_grp (grp_id) to grp" in message, message
    db.execute("INSERT INTO grp VALUES (2)")
    assert run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes").exit_code == 0
    assert db.rows("SELECT id, grp_id FROM tag ORDER BY id") == [(1, 1), (2, 2)]


def test_sqlite_undo_refused_by_a_foreign_key_it_checks_names_the_key_and_the_rows(
        sqlite_db, tmp_path, sqlite_enforces_foreign_keys):
    """`tag.grp_id REFERENCES grp (id)`, foreign keys enforced (`PRAGMA foreign_keys = ON`); the fix deletes tag 2,
    then the application deletes grp 2, so the database refuses to restore tag 2. SQLite's own words are "FOREIGN
    KEY constraint failed", naming no key, and undo said only that restoring would violate a constraint. Now it
    asks SQLite which rows violate which key (the undo run again with deferred keys, `PRAGMA foreign_key_check`,
    rolled back) and names them, nothing changed; with grp 2 back, undo restores tag 2."""
    sqlite_db.execute("CREATE TABLE grp (id INTEGER PRIMARY KEY)", "INSERT INTO grp VALUES (1), (2)",
                      "CREATE TABLE tag (id INTEGER PRIMARY KEY, name VARCHAR(20), grp_id INTEGER, "
                      "CONSTRAINT tag_grp FOREIGN KEY (grp_id) REFERENCES grp (id))",
                      "INSERT INTO tag VALUES (1, 'red', 1), (2, 'red', 2)")
    path, fix_id = _fixed(sqlite_db, tmp_path)
    sqlite_db.execute("DELETE FROM grp WHERE id = 2")
    # a row that referred to no row before undo (written by a session not checking keys) is not undo's doing
    with sqlite3.connect(make_url(sqlite_db.url).database) as unchecked:
        unchecked.execute("INSERT INTO tag VALUES (3, 'blue', 9)")
    message = _refused(sqlite_db, path, fix_id, "grp", "tag")
    assert "the database refused it (" in message, message
    assert ("FOREIGN KEY constraint failed): 1 row(s) of tag(grp_id) (rowid 2) would refer, by foreign key tag_grp, "
            "to no row of grp; put back the rows they refer to") in message, message
    sqlite_db.execute("INSERT INTO grp VALUES (2)")
    assert run_cli("undo", fix_id, "--config", path, "--yes").exit_code == 0
    assert sqlite_db.rows("SELECT id, grp_id FROM tag ORDER BY id") == [(1, 1), (2, 2), (3, 9)]

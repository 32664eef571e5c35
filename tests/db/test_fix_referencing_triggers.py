"""A trigger on a referencing table that the fix's own write fires: a repoint's UPDATE (an audit trigger on
`item`, as django-simple-history or a hand-written audit log has), an archive's DELETE. The batch's account
rolls such a batch back (the trigger wrote rows the plan does not hold), but the dry run said nothing and
exited 0, and on SQLite the stop message named only tables the plan expected. The preview now names the
trigger per reference, and so does the stop message."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from fix_support import (
    audit_trigger,
    config_file,
    contents,
    deadlock_config,
    fix_in_a_deadlock,
    json_out,
    make_config,
    run_cli,
)
from monitor.dialects import for_backend
from monitor.engine import Monitor
from monitor.fix import execute, prepare_fix, run_fix
from monitor.fix.catalog import DeleteHooks, catalog_for
from monitor.fix.errors import FixError


def _fixed_naming_no_trigger(db, tmp_path) -> None:
    """The check on `tag`: its dry run names no trigger, and the fix runs."""
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert not [n for n in json_out(dry)["notes"] if "trigger" in n], json_out(dry)["notes"]
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output


def _seed(db) -> None:
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), note VARCHAR(20))",
               "CREATE TABLE change_log (id INTEGER)",
               "INSERT INTO tag VALUES (1, 'x'), (2, 'x'), (3, 'y')",
               "INSERT INTO item VALUES (10, 1, 'a'), (11, 2, 'b'), (12, 3, 'c')")


@pytest.mark.parametrize("action, event, write", [("repoint", "UPDATE", "repointed"),
                                                  ("archive", "DELETE", "archived and deleted")])
def test_a_trigger_the_fix_fires_on_a_referencing_table_is_named_before_and_when_it_stops(db, tmp_path, action,
                                                                                          event, write):
    _seed(db)
    audit_trigger(db, "item_audit", event, "item", into="change_log")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"],
                                       "on_reference": {"item.tag_id": action}}])
    before = contents(db, "tag", "item", "change_log")

    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    named = [n for n in json_out(dry)["notes"] if "item_audit" in n]
    assert named == [f"the 1 {write} row(s) of item(tag_id) fire AFTER {event} trigger item_audit (a row trigger "
                     "once per row, a statement trigger once per statement): if it "
                     "writes any other row (an audit or history table), or changes or cancels the fix's own write, "
                     "the batch is rolled back and the fix stops at its first batch; disable it on item for the "
                     "fix (undo fires it too)"]

    fixed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert f"AFTER {event} trigger item_audit" in fixed.stderr, fixed.stderr
    assert contents(db, "tag", "item", "change_log") == before


def test_a_trigger_of_other_columns_or_events_is_not_named(db, tmp_path):
    """An AFTER INSERT trigger, and (PostgreSQL, SQLite) an `UPDATE OF note` trigger, do not fire on the
    repoint's UPDATE of tag_id: the preview names none, and the fix runs."""
    _seed(db)
    audit_trigger(db, "item_insert", "INSERT", "item", into="change_log")
    if db.dialect != "mysql":  # MySQL/MariaDB have no UPDATE OF
        audit_trigger(db, "item_note", "UPDATE OF note", "item", into="change_log")
    _fixed_naming_no_trigger(db, tmp_path)
    assert db.rows("SELECT count(*) FROM change_log") == [(0,)]


def test_postgres_names_an_update_rule_of_a_referencing_table(pg, tmp_path):
    """`CREATE RULE ... AS ON UPDATE TO item DO INSTEAD NOTHING` cancels the repoint (the batch stops, rolled back,
    as it should); the dry run now names the rule beforehand."""
    _seed(pg)
    pg.execute("CREATE RULE item_frozen AS ON UPDATE TO item DO INSTEAD NOTHING")
    path = config_file(tmp_path, pg, [{"name": "tags", "table": "tag", "key": ["label"]}])
    before = contents(pg, "tag", "item", "change_log")
    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert any("fire rule item_frozen ON UPDATE" in n for n in json_out(dry)["notes"]), json_out(dry)["notes"]
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "item_frozen" in fixed.stderr, fixed.output
    assert contents(pg, "tag", "item", "change_log") == before


# -- issue 16: only the triggers and rules that fire for the fix's session ----------------------------------------

# Each state (tgenabled/ev_enabled 'O', 'R', 'A', 'D'), by the suffix of the test's names and its ALTER TABLE.
_STATES = {"o": "ENABLE", "r": "ENABLE REPLICA", "a": "ENABLE ALWAYS", "d": "DISABLE"}


@pytest.mark.parametrize("role, fire", [("origin", "ao"), ("local", "ao"), ("replica", "ar")])
def test_postgres_names_the_triggers_and_rules_that_fire_under_the_sessions_replication_role(pg, role, fire):
    """pg_trigger.tgenabled and pg_rewrite.ev_enabled: 'O' fires when session_replication_role is origin or local,
    'R' only under replica, 'A' always, 'D' never. One trigger and one rule per state, for UPDATE and DELETE."""
    _seed(pg)
    pg.execute("CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
    for state, enable in _STATES.items():
        pg.execute(f"CREATE TRIGGER item_{state} AFTER UPDATE OR DELETE ON item FOR EACH ROW "
                   "EXECUTE FUNCTION log_change()",
                   f"CREATE RULE item_u{state} AS ON UPDATE TO item DO ALSO NOTHING",
                   f"CREATE RULE item_d{state} AS ON DELETE TO item DO ALSO NOTHING",
                   f"ALTER TABLE item {enable} TRIGGER item_{state}",
                   f"ALTER TABLE item {enable} RULE item_u{state}", f"ALTER TABLE item {enable} RULE item_d{state}")
    with pg.engine.connect() as conn:
        conn.execute(sa.text("SELECT set_config('session_replication_role', :r, false)"), {"r": role})
        catalog = catalog_for(conn)
        updates = catalog.write_triggers(None, "item", "UPDATE", ("tag_id",))
        deletes = catalog.write_triggers(None, "item", "DELETE", ("tag_id",))
        hooks = catalog.delete_hooks(sa.Table("item", sa.MetaData()))
        conn.rollback()
    assert updates == (*(f"AFTER UPDATE trigger item_{s}" for s in sorted(fire)),
                       *(f"rule item_u{s} ON UPDATE" for s in sorted(fire)))
    assert deletes == (*(f"AFTER DELETE trigger item_{s}" for s in sorted(fire)),
                       *(f"rule item_d{s} ON DELETE" for s in sorted(fire)))
    assert hooks == DeleteHooks(tuple(f"rule item_d{s} ON DELETE" for s in sorted(fire)),
                                tuple(f"AFTER DELETE trigger item_{s}" for s in sorted(fire)))


@pytest.mark.parametrize("enable, role", [("ENABLE REPLICA", "origin"), ("ENABLE", "replica")])
def test_postgres_a_trigger_that_does_not_fire_for_the_fix_session_is_not_named_and_the_fix_runs(pg, tmp_path,
                                                                                                  enable, role):
    """A replica trigger in an ordinary session, an ordinary one in a replica session (the fix's URL sets
    session_replication_role): it does not fire on the repoint, so the preview names nothing and the fix runs."""
    _seed(pg)
    audit_trigger(pg, "item_audit", "UPDATE", "item", into="change_log")
    pg.execute(f"ALTER TABLE item {enable} TRIGGER item_audit")
    url = make_url(pg.url)
    url = url.update_query_dict({"options": f"{url.query['options']} -csession_replication_role={role}"})
    db = dataclasses.replace(pg, url=url.render_as_string(hide_password=False))
    _fixed_naming_no_trigger(db, tmp_path)
    assert pg.rows("SELECT id, tag_id FROM item ORDER BY id") == [(10, 1), (11, 1), (12, 3)]
    assert pg.rows("SELECT count(*) FROM change_log") == [(0,)]


# -- issue 16: one read of a table's triggers for its delete hooks and its writes ---------------------------------

@pytest.fixture(params=["mysql", "sqlite"])
def trigger_catalog_db(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue({"mysql": "mysql", "sqlite": "sqlite_db"}[request.param])


def test_a_tables_triggers_are_read_once_for_its_delete_hooks_and_the_writes_it_fires(trigger_catalog_db):
    db = trigger_catalog_db
    _seed(db)
    for name, event in [("item_del", "DELETE"), ("item_upd", "UPDATE"), ("item_ins", "INSERT")]:
        audit_trigger(db, name, event, "item", into="change_log")
    if db.dialect == "sqlite":
        db.execute("CREATE TRIGGER item_guard BEFORE DELETE ON item BEGIN SELECT 1; END",
                   "CREATE TRIGGER item_note AFTER UPDATE OF note ON item BEGIN SELECT 1; END")
    else:
        db.execute("CREATE TRIGGER item_guard BEFORE DELETE ON item FOR EACH ROW SET @x = 1")
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "TRIGGERS" in statement or "sqlite_master" in statement:
            reads.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.engine.connect() as conn:
            catalog = catalog_for(conn)
            hooks = catalog.delete_hooks(sa.Table("item", sa.MetaData()))
            updates = catalog.write_triggers(None, "item", "UPDATE", ("tag_id",))
            inserts = catalog.write_triggers(None, "item", "INSERT", ())
            deletes = catalog.write_triggers(None, "item", "DELETE", ())
            fired = catalog.fired_on(sa.Table("item", sa.MetaData()), "UPDATE", ("note",))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert hooks == DeleteHooks(("BEFORE DELETE trigger item_guard",), ("AFTER DELETE trigger item_del",))
    assert updates == ("AFTER UPDATE trigger item_upd",)
    assert inserts == ("AFTER INSERT trigger item_ins",)
    assert deletes == ("AFTER DELETE trigger item_del", "BEFORE DELETE trigger item_guard")
    assert fired == [*(["AFTER UPDATE trigger item_note on item"] if db.dialect == "sqlite" else []),
                     "AFTER UPDATE trigger item_upd on item"]
    assert len(reads) == 1, reads


# -- issue 16: a database error names the trigger that raised it, as far as the database says ----------------------

_RAISE = {
    "postgresql": ["CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'item is frozen'; END $$",
                   "CREATE TRIGGER item_check AFTER UPDATE ON item FOR EACH ROW EXECUTE FUNCTION refuse_change()"],
    "mysql": ["CREATE TRIGGER item_check AFTER UPDATE ON item FOR EACH ROW "
              "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'item is frozen'"],
    "sqlite": ["CREATE TRIGGER item_check AFTER UPDATE ON item BEGIN SELECT RAISE(ABORT, 'item is frozen'); END"],
}


def test_an_error_a_trigger_raised_names_it_where_the_database_says_so_else_the_fired_triggers_as_suspects(
        db, tmp_path):
    """Two triggers on item fire on the repoint, item_audit (it only writes) then item_check (it raises). PostgreSQL's
    CONTEXT names the function that raised (refuse_change()): its trigger alone is named. MariaDB and SQLite
    say nothing of where: the triggers the write fires are named as what may have raised it."""
    _seed(db)
    audit_trigger(db, "item_audit", "UPDATE", "item", into="change_log")
    db.execute(*_RAISE[db.dialect])
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    before = contents(db, "tag", "item", "change_log")
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "item is frozen" in fixed.stderr, fixed.stderr
    if db.dialect == "postgresql":
        assert "(raised by trigger item_check on item)" in fixed.stderr, fixed.stderr
        assert "item_audit" not in fixed.stderr, fixed.stderr
    else:
        assert ("the write fires AFTER UPDATE trigger item_audit on item, AFTER UPDATE trigger item_check on item "
                "(which may have raised it)") in fixed.stderr, fixed.stderr
    assert contents(db, "tag", "item", "change_log") == before


def test_postgres_a_raising_function_shared_with_another_tables_trigger_names_the_written_tables(pg, tmp_path):
    """refuse_change() also serves a trigger of a table the fix does not write (`aaa`, first by name): the error's
    CONTEXT names only the function, so the trigger of the table the batch writes is the one named."""
    _seed(pg)
    pg.execute(*_RAISE["postgresql"], "CREATE TABLE aaa (id INTEGER)",
               "CREATE TRIGGER aaa_check BEFORE INSERT ON aaa FOR EACH ROW EXECUTE FUNCTION refuse_change()")
    path = config_file(tmp_path, pg, [{"name": "tags", "table": "tag", "key": ["label"]}])
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "(raised by trigger item_check on item)" in fixed.stderr, fixed.stderr
    assert "aaa_check" not in fixed.stderr, fixed.stderr


def test_a_deadlock_never_blames_a_trigger(server, monkeypatch):
    """A batch chosen as deadlock victim, with no try left: the stop names the deadlock, and no trigger, though
    the referencing table has one the batch's repoint would fire."""
    db = server
    monkeypatch.setattr(execute, "ATTEMPTS", 1)
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)",
               "CREATE TABLE visit_note (id INTEGER PRIMARY KEY, visit_id INTEGER REFERENCES visit (id))",
               "CREATE TABLE change_log (what VARCHAR(20))", "CREATE TABLE ballast (n INTEGER)")
    audit_trigger(db, "note_audit", "UPDATE", "visit_note", into="change_log")
    db.execute("INSERT INTO visit VALUES (:id, :k)", params=[{"id": i, "k": (i - 1) // 2} for i in range(1, 9)])
    monitor = Monitor(deadlock_config(db, [{"name": "visits", "table": "visit", "key": ["k"]}]))
    try:
        thread = fix_in_a_deadlock(db, monitor, "visits")
    finally:
        monitor.close()
    assert isinstance(thread.error, FixError), thread.error
    assert "deadlock" in str(thread.error).lower(), thread.error
    assert "trigger" not in str(thread.error), thread.error
    assert [r[0] for r in db.rows("SELECT id FROM visit ORDER BY id")] == list(range(1, 9))


def test_an_error_no_trigger_raised_names_none_on_postgres_and_the_fired_triggers_as_suspects_elsewhere(db, tmp_path):
    """A CHECK constraint of item refuses the repoint while item has an audit trigger: PostgreSQL's error names no
    function, so no trigger is blamed; MariaDB and SQLite cannot tell, and name the trigger only as a suspect. (The
    dry run names such rows up front where the database gives the constraint's expression: here the application
    writes the refused row after the plan, so only the batch meets it.)"""
    _seed(db)
    db.execute("UPDATE item SET note = 'x' WHERE id = 11")
    audit_trigger(db, "item_audit", "UPDATE", "item", into="change_log")
    if db.dialect == "sqlite":  # no ALTER TABLE ... ADD CHECK: the table again, with it
        db.execute("DROP TABLE item",
                   "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), note VARCHAR(20), "
                   "CONSTRAINT item_b_apart CHECK (note <> 'b' OR tag_id <> 1))",
                   "INSERT INTO item VALUES (10, 1, 'a'), (11, 2, 'x'), (12, 3, 'c')")
        audit_trigger(db, "item_audit", "UPDATE", "item", into="change_log")
    else:
        db.execute("ALTER TABLE item ADD CONSTRAINT item_b_apart CHECK (note <> 'b' OR tag_id <> 1)")
    monitor = Monitor(make_config(db, [{"name": "tags", "table": "tag", "key": ["label"]}]))
    try:
        plan = prepare_fix(monitor, "tags")
        assert not plan.blockers, plan.blockers
        db.execute("UPDATE item SET note = 'b' WHERE id = 11")  # the application, after the plan
        before = contents(db, "tag", "item", "change_log")
        with pytest.raises(FixError) as stopped:
            run_fix(monitor, "tags", plan)
    finally:
        monitor.close()
    message = str(stopped.value)
    assert "item_b_apart" in message or "CHECK" in message, message
    if db.dialect == "postgresql":
        assert "trigger" not in message, message
    else:
        assert "the write fires AFTER UPDATE trigger item_audit on item (which may have raised it)" in message, message
    assert contents(db, "tag", "item", "change_log") == before


def test_sqlite_a_busy_database_is_a_conflict_between_transactions(sqlite_db):
    """SQLITE_BUSY, as the database answers a second writer: no trigger raised it (nor any on SQLite's side)."""
    sqlite_db.execute("CREATE TABLE t (x INTEGER)")
    path = sqlite_db.url.removeprefix("sqlite:///")
    holder, other = sqlite3.connect(path, timeout=0), sqlite3.connect(path, timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            other.execute("BEGIN IMMEDIATE")
        rules = for_backend("sqlite")
        assert rules.between_transactions(busy.value)
        with pytest.raises(sqlite3.IntegrityError) as refused:
            holder.execute("CREATE TABLE u (x INTEGER NOT NULL)")
            holder.execute("INSERT INTO u VALUES (NULL)")
        assert not rules.between_transactions(refused.value)
    finally:
        holder.close()
        other.close()

"""An archive or repoint log changed since dupewatch created it must not alter what a fix copies there (issue 16):
every run of a fix (new and resumed) asks the catalog, before its first batch, for each copying column's type and
for triggers and rules on those tables, and refuses naming the table, the column or trigger, and what to do."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import config_file, make_config, run_cli, stopped_after_one_batch
from monitor.engine import Monitor
from monitor.fix import FixRefused, prepare_fix, run_fix

ARCHIVE = "dupewatch_archive_pay"
CHECK = {"name": "pays", "table": "pay", "key": ["k"]}


def _seed(db, *, child: bool = False) -> None:
    db.execute("CREATE TABLE pay (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, amount NUMERIC(10,2), "
               "note VARCHAR(20))")
    db.execute("INSERT INTO pay VALUES (1, 1, 12.34, 'a'), (2, 1, 12.34, 'b'), (3, 2, 5.67, 'c'), "
               "(4, 2, 5.67, 'd'), (5, 3, 1.25, 'e'), (6, 3, 1.25, 'f')")
    if child:
        db.execute("CREATE TABLE line (id INTEGER PRIMARY KEY, pay_id INTEGER REFERENCES pay (id))")
        db.execute("INSERT INTO line VALUES (10, 2), (11, 4), (12, 6)")


def _retype(db, table: str, column: str, new: str) -> None:
    """Give `table.column` the type `new` (SQLite, which cannot: the table made again, rows copied)."""
    q = db.q
    if db.dialect == "postgresql":
        db.execute(f"ALTER TABLE {q(table)} ALTER COLUMN {q(column)} TYPE {new}")
    elif db.dialect == "mysql":
        db.execute(f"ALTER TABLE {q(table)} MODIFY {q(column)} {new}")
    else:
        with db.engine.begin() as conn:
            shape = conn.exec_driver_sql(f"PRAGMA table_info({q(table)})").all()
            spelled = ", ".join(f"{q(r[1])} {new if r[1] == column else r[2]}" for r in shape)
            conn.exec_driver_sql(f"ALTER TABLE {q(table)} RENAME TO {q(table + '_old')}")
            conn.exec_driver_sql(f"CREATE TABLE {q(table)} ({spelled})")
            conn.exec_driver_sql(f"INSERT INTO {q(table)} SELECT * FROM {q(table + '_old')}")
            conn.exec_driver_sql(f"DROP TABLE {q(table + '_old')}")


def _null_note_trigger(db, table: str) -> str:
    """A trigger on `table` that stores every inserted row's `note` as NULL; returns the statement dropping it."""
    if db.dialect == "postgresql":
        db.execute("CREATE FUNCTION null_note() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN NEW.note := NULL; RETURN NEW; END $$")
        db.execute(f"CREATE TRIGGER null_note BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION null_note()")
        return f"DROP TRIGGER null_note ON {table}"
    if db.dialect == "mysql":
        db.execute(f"CREATE TRIGGER null_note BEFORE INSERT ON {table} FOR EACH ROW SET NEW.note = NULL")
        return "DROP TRIGGER null_note"
    db.execute(f"CREATE TRIGGER null_note AFTER INSERT ON {table} BEGIN "
               f"UPDATE {table} SET note = NULL WHERE rowid = NEW.rowid; END")
    return "DROP TRIGGER null_note"


@dataclass(frozen=True)
class Altered:
    """A way an archive is altered after dupewatch made it, the words of the refusal every run of the fix (and the
    plan) gives it, and what puts it right as the refusal says."""

    alter: Callable[[Any], object]
    refusal: str
    put_right: Callable[[Any], object]


def _drop_null_note(db) -> None:
    db.execute("DROP TRIGGER null_note" + (f" ON {ARCHIVE}" if db.dialect == "postgresql" else ""))


ALTERED = {
    # numeric(10,2) retyped integer would archive 12 for 12.34
    "retyped": Altered(lambda db: _retype(db, ARCHIVE, "amount", "INTEGER"),
                       rf"(?i)archive table '{ARCHIVE}': its column 'amount' is .*int.*, but pay\.amount is "
                       r".*(numeric|decimal).*give the column the type",
                       lambda db: _retype(db, ARCHIVE, "amount", "NUMERIC(10,2)")),
    # a trigger storing every archived row's note as NULL
    "trigger": Altered(lambda db: _null_note_trigger(db, ARCHIVE),
                       rf"archive table '{ARCHIVE}' has trigger null_note.*drop it", _drop_null_note),
}


def _archived_as_they_are(db) -> list[tuple[int, Decimal, str]]:
    """The archived rows but the first one (a test's own ALTER of the archive may have cut its amount)."""
    return [(r[0], Decimal(str(r[1])), r[2])
            for r in db.rows(f"SELECT id, amount, note FROM {ARCHIVE} WHERE id <> 2 ORDER BY id")]


@contextmanager
def _after_a_done_fix(db, *, child: bool = False) -> Iterator[Monitor]:
    """The archive of an earlier fix of `pays` (done), and one new duplicate of group 1 (id 7) for the next fix."""
    _seed(db, child=child)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        assert run_fix(monitor, "pays").state == "done"
        db.execute("INSERT INTO pay VALUES (7, 1, 12.34, 'g')")
        yield monitor
    finally:
        monitor.close()


@pytest.mark.parametrize("altered", sorted(ALTERED))
def test_resumed_fix_refuses_an_archive_altered_since(db, altered):
    """The resumed fix refuses, naming the archive and the column with both types, or the trigger, and changes
    nothing; put right as the refusal says, it resumes and archives values as they are."""
    case = ALTERED[altered]
    _seed(db)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        plan = stopped_after_one_batch(monitor, "pays")
        case.alter(db)
        with pytest.raises(FixRefused, match=case.refusal):
            run_fix(monitor, "pays")
        assert db.scalar("SELECT count(*) FROM pay") == 5
        assert db.scalar(f"SELECT count(*) FROM {ARCHIVE}") == 1
        assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": plan.fix_id}) == "stopped"
        case.put_right(db)
        assert run_fix(monitor, "pays").state == "done"
        assert _archived_as_they_are(db) == [(4, Decimal("5.67"), "d"), (6, Decimal("1.25"), "f")]
    finally:
        monitor.close()


@pytest.mark.parametrize("altered", sorted(ALTERED))
def test_new_fix_refuses_an_existing_archive_altered_since(db, altered):
    """An archive an earlier fix made, altered since: a new fix refuses before its first batch; put right, it
    runs."""
    case = ALTERED[altered]
    with _after_a_done_fix(db) as monitor:
        case.alter(db)
        with pytest.raises(FixRefused, match=case.refusal):
            run_fix(monitor, "pays")
        assert db.scalar("SELECT count(*) FROM pay") == 4
        case.put_right(db)
        assert run_fix(monitor, "pays").state == "done"
        assert db.scalar("SELECT count(*) FROM pay") == 3


@pytest.mark.parametrize("altered", sorted(ALTERED))
def test_the_dry_run_names_the_refusal_of_an_archive_altered_since(db, altered, tmp_path):
    """The plan of a fix whose archive was altered lists the refusal `fix --yes` then meets, in its words, and
    exits 2 as for every blocker, rather than showing a plan the fix refuses."""
    case = ALTERED[altered]
    _seed(db)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        stopped_after_one_batch(monitor, "pays")
    finally:
        monitor.close()
    case.alter(db)
    path = config_file(tmp_path, db, [CHECK])
    planned = run_cli("fix", "pays", "--config", str(path), "--dry-run")
    assert planned.exit_code == 2, planned.output
    blocked = [line.split("BLOCKED: ", 1)[1] for line in planned.stdout.splitlines() if "BLOCKED: " in line]
    assert len(blocked) == 1 and re.search(case.refusal, blocked[0]), planned.output
    fixed = run_cli("fix", "pays", "--config", str(path), "--yes")  # resumes the stopped fix: refused alike
    assert fixed.exit_code == 2 and blocked[0] in fixed.stderr, fixed.output
    assert db.scalar("SELECT count(*) FROM pay") == 5
    case.put_right(db)
    assert run_cli("fix", "pays", "--config", str(path), "--dry-run").exit_code == 0


def test_resumed_fix_refuses_a_rule_on_its_archive(pg):
    _seed(pg)
    monitor = Monitor(make_config(pg, [CHECK]))
    try:
        stopped_after_one_batch(monitor, "pays")
        pg.execute(f"CREATE RULE keep_quiet AS ON INSERT TO {ARCHIVE} DO INSTEAD NOTHING")
        with pytest.raises(FixRefused, match=rf"archive table '{ARCHIVE}' has rule keep_quiet"):
            run_fix(monitor, "pays")
        assert pg.scalar("SELECT count(*) FROM pay") == 5
    finally:
        monitor.close()


def test_resumed_fix_refuses_a_repoint_log_column_retyped_since(db):
    """The repoint log copies the child's key and foreign key values: one retyped since is refused alike, and a
    trigger on the log too."""
    _seed(db, child=True)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        plan = stopped_after_one_batch(monitor, "pays")
        log = db.scalar("SELECT log_table FROM dupewatch_fix_reference WHERE fix_id = :f", {"f": plan.fix_id})
        _retype(db, log, "old_0", "BIGINT" if db.dialect != "sqlite" else "TEXT")
        with pytest.raises(FixRefused, match=rf"repoint log table '{log}': its column 'old_0' is .*line\.pay_id"):
            run_fix(monitor, "pays")
        _retype(db, log, "old_0", "INTEGER")
        if db.dialect == "mysql":  # a trigger on the log (the archive's are tested above on every database)
            db.execute(f"CREATE TRIGGER log_audit AFTER INSERT ON {log} FOR EACH ROW SET @seen = 1")
            with pytest.raises(FixRefused, match=rf"repoint log table '{log}' has trigger log_audit"):
                run_fix(monitor, "pays")
            db.execute("DROP TRIGGER log_audit")
        assert db.scalar("SELECT count(*) FROM pay") == 5
        assert run_fix(monitor, "pays").state == "done"
        assert db.rows("SELECT id, pay_id FROM line ORDER BY id") == [(10, 1), (11, 3), (12, 5)]
    finally:
        monitor.close()


def test_mariadb_fix_role_without_the_trigger_privilege_still_fixes(mysql, tmp_path):
    """information_schema.TRIGGERS lists a table's triggers only to a role with TRIGGER on it (directly or by a role,
    which the privilege views do not list): a role without it fixes as before, the triggers it cannot see unchecked
    (the README says so), rather than refusing every role that holds TRIGGER by a MariaDB role or a wildcard."""
    _seed(mysql)
    grant = f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON `{mysql.schema}`.* TO {{user}}"
    with server_login("mysql", grant, "GRANT PROCESS ON *.* TO {user}", prefix="dw_trg", password="pw") as role:
        as_role = make_url(mysql.url).set(username=role, password="pw").render_as_string(hide_password=False)
        path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": mysql.url, "fix_url": as_role}},
                            [{"database": "app", **CHECK}])
        fix = run_cli("fix", "pays", "--config", str(path), "--yes")
    assert fix.exit_code == 0, fix.output
    assert mysql.scalar("SELECT count(*) FROM pay") == 3


def test_a_first_run_refused_after_creating_its_repoint_logs_runs_once_the_archive_is_put_right(db):
    """MySQL/MariaDB commit the repoint logs' CREATE TABLE at once, and the refusal rolls back only the rows that
    record them: the next run adopts its own empty log instead of failing on a table that already exists."""
    with _after_a_done_fix(db, child=True) as monitor:
        db.execute("INSERT INTO line VALUES (13, 7)")
        plan = prepare_fix(monitor, "pays")
        # (after the plan, which would list it as a blocker: the run meets it)
        _retype(db, ARCHIVE, "note", "CHAR(30)" if db.dialect != "sqlite" else "BLOB")
        with pytest.raises(FixRefused, match=rf"archive table '{ARCHIVE}': its column 'note'"):
            run_fix(monitor, "pays", plan)
        assert db.scalar("SELECT count(*) FROM pay") == 4
        _retype(db, ARCHIVE, "note", "VARCHAR(20)")
        assert run_fix(monitor, "pays", plan).state == "done"
        assert db.scalar("SELECT count(*) FROM pay") == 3
        assert db.rows("SELECT id, pay_id FROM line ORDER BY id") == [(10, 1), (11, 3), (12, 5), (13, 1)]


def test_postgres_an_event_trigger_adding_a_trigger_to_every_new_table_is_refused_on_the_new_archive(own_pg,
                                                                                                      tmp_path):
    """A real-world way to get a trigger on the archive: an event trigger that adds an audit trigger to every table
    created. The new fix's archive gets one as it is created (while planning); the plan lists it as a blocker, and
    the fix refuses in one line (exit 2) naming it, before its first batch, its plan discarded: nothing deleted.
    With the event trigger disabled and the trigger dropped, the fix runs."""
    pg = own_pg
    _seed(pg)
    pg.execute("CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
               "CREATE FUNCTION add_audit() RETURNS event_trigger LANGUAGE plpgsql AS $$ DECLARE c record; BEGIN "
               "FOR c IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE object_type = 'table' LOOP "
               "EXECUTE format('CREATE TRIGGER audit BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION audit_row()', "
               "c.object_identity); END LOOP; END $$",
               "CREATE EVENT TRIGGER add_audit ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', "
               "'SELECT INTO') EXECUTE FUNCTION add_audit()")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **CHECK}])
    fixed = run_cli("fix", "pays", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    message = fixed.stderr
    assert message.count("\n") == 1 and "rolled back" not in message, message
    assert f"archive table '{ARCHIVE}' has trigger audit" in message and "event trigger" in message, message
    assert pg.scalar("SELECT count(*) FROM pay") == 6
    assert pg.scalar(f"SELECT count(*) FROM {ARCHIVE}") == 0  # created while planning, as the plan table
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "discarded"  # as for every blocker of the plan
    pg.execute("ALTER EVENT TRIGGER add_audit DISABLE", f"DROP TRIGGER audit ON {ARCHIVE}")  # as the message says
    again = run_cli("fix", "pays", "--config", str(path), "--yes")
    assert again.exit_code == 0, again.output
    assert pg.scalar("SELECT count(*) FROM pay") == 3 and pg.scalar(f"SELECT count(*) FROM {ARCHIVE}") == 3


def test_postgres_a_disabled_trigger_and_a_collation_change_are_no_refusal(pg):
    """What cannot change what the fix copies: a trigger disabled on the archive never fires, and a collation of
    the source column changed since the archive was made stores the same values (it only compares them)."""
    with _after_a_done_fix(pg) as monitor:
        _null_note_trigger(pg, ARCHIVE)
        pg.execute(f"ALTER TABLE {ARCHIVE} DISABLE TRIGGER null_note",
                   'ALTER TABLE pay ALTER COLUMN note TYPE VARCHAR(20) COLLATE "C"')
        assert run_fix(monitor, "pays").state == "done"
        assert pg.scalar(f"SELECT count(*) FROM {ARCHIVE} WHERE id = 7 AND note = 'g'") == 1


def test_sqlite_a_strict_tables_any_column_is_no_refusal(sqlite_db):
    """A STRICT table's ANY column, copied by CREATE TABLE AS into a column of no declared type: both keep values
    as given."""
    sqlite_db.execute("CREATE TABLE pay (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, meta ANY) STRICT",
                      "INSERT INTO pay VALUES (1, 1, 'x'), (2, 1, 2.5), (3, 2, X'00'), (4, 2, 7)")
    monitor = Monitor(make_config(sqlite_db, [CHECK]))
    try:
        assert run_fix(monitor, "pays").state == "done"
        assert sqlite_db.scalar("SELECT count(*) FROM pay") == 2
    finally:
        monitor.close()

"""An archive or repoint log changed since dupewatch created it must not alter what a fix copies there (issue 16):
every run of a fix (new and resumed) asks the catalog, before its first batch, for each copying column's type and
for triggers and rules on those tables, and refuses naming the table, the column or trigger, and what to do."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import make_config, run_cli, stopped_after_one_batch
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


def test_resumed_fix_refuses_an_archive_column_retyped_since(db):
    """numeric(10,2) retyped integer would archive 12 for 12.34: the resumed fix refuses, naming the archive, the
    column and both types, and changes nothing; with the type given back it resumes and archives values as they
    are."""
    _seed(db)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        plan = stopped_after_one_batch(monitor, "pays")
        _retype(db, ARCHIVE, "amount", "INTEGER")
        with pytest.raises(FixRefused, match=rf"(?i)archive table '{ARCHIVE}': its column 'amount' is .*int.*, but "
                                             r"pay\.amount is .*(numeric|decimal).*give the column the type"):
            run_fix(monitor, "pays")
        assert db.scalar("SELECT count(*) FROM pay") == 5
        assert db.scalar(f"SELECT count(*) FROM {ARCHIVE}") == 1
        assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": plan.fix_id}) == "stopped"
        _retype(db, ARCHIVE, "amount", "NUMERIC(10,2)")
        assert run_fix(monitor, "pays").state == "done"
        # (the first batch's row, archived before the retype, was cut by the test's own ALTER)
        assert sorted(Decimal(str(r[0])) for r in db.rows(f"SELECT amount FROM {ARCHIVE} WHERE id <> 2")) == [
            Decimal("1.25"), Decimal("5.67")]
    finally:
        monitor.close()


def test_new_fix_refuses_an_existing_archive_retyped_since(db):
    """An archive an earlier fix made, retyped since (varchar(20) to a shorter or other type): a new fix refuses
    before its first batch."""
    _seed(db)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        assert run_fix(monitor, "pays").state == "done"
        db.execute("INSERT INTO pay VALUES (7, 1, 12.34, 'g')")
        _retype(db, ARCHIVE, "note", "CHAR(30)" if db.dialect != "sqlite" else "BLOB")
        with pytest.raises(FixRefused, match=rf"archive table '{ARCHIVE}': its column 'note'"):
            run_fix(monitor, "pays")
        assert db.scalar("SELECT count(*) FROM pay") == 4
    finally:
        monitor.close()


def test_resumed_fix_refuses_a_trigger_on_its_archive(db):
    """A trigger on the archive setting `note` to NULL: the resumed fix refuses naming it; dropped, the fix resumes
    and archives every note as it was."""
    _seed(db)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        stopped_after_one_batch(monitor, "pays")
        drop = _null_note_trigger(db, ARCHIVE)
        with pytest.raises(FixRefused, match=rf"archive table '{ARCHIVE}' has trigger null_note.*drop it"):
            run_fix(monitor, "pays")
        assert db.scalar("SELECT count(*) FROM pay") == 5
        db.execute(drop)
        assert run_fix(monitor, "pays").state == "done"
        assert sorted(r[0] for r in db.rows(f"SELECT note FROM {ARCHIVE}")) == ["b", "d", "f"]
    finally:
        monitor.close()


def test_new_fix_refuses_a_trigger_on_an_existing_archive(db):
    _seed(db)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        assert run_fix(monitor, "pays").state == "done"
        db.execute("INSERT INTO pay VALUES (7, 1, 12.34, 'g')")
        _null_note_trigger(db, ARCHIVE)
        with pytest.raises(FixRefused, match=rf"archive table '{ARCHIVE}' has trigger null_note"):
            run_fix(monitor, "pays")
        assert db.scalar("SELECT count(*) FROM pay") == 4
    finally:
        monitor.close()


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
    _seed(db, child=True)
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        assert run_fix(monitor, "pays").state == "done"  # an archive from an earlier fix
        db.execute("INSERT INTO pay VALUES (7, 1, 12.34, 'g')", "INSERT INTO line VALUES (13, 7)")
        _retype(db, ARCHIVE, "note", "CHAR(30)" if db.dialect != "sqlite" else "BLOB")
        plan = prepare_fix(monitor, "pays")
        with pytest.raises(FixRefused, match=rf"archive table '{ARCHIVE}': its column 'note'"):
            run_fix(monitor, "pays", plan)
        assert db.scalar("SELECT count(*) FROM pay") == 4
        _retype(db, ARCHIVE, "note", "VARCHAR(20)")
        assert run_fix(monitor, "pays", plan).state == "done"
        assert db.scalar("SELECT count(*) FROM pay") == 3
        assert db.rows("SELECT id, pay_id FROM line ORDER BY id") == [(10, 1), (11, 3), (12, 5), (13, 1)]
    finally:
        monitor.close()


def test_postgres_an_event_trigger_adding_a_trigger_to_every_new_table_is_refused_on_the_new_archive(own_pg,
                                                                                                      tmp_path):
    """A real-world way to get a trigger on the archive: an event trigger that adds an audit trigger to every table
    created. The new fix's archive gets one as it is created (while planning); the fix refuses in one line (exit 2)
    naming it, before its first batch: nothing deleted. With the event trigger disabled and the trigger dropped,
    the fix runs."""
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
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "planned"
    pg.execute("ALTER EVENT TRIGGER add_audit DISABLE", f"DROP TRIGGER audit ON {ARCHIVE}")  # as the message says
    again = run_cli("fix", "pays", "--config", str(path), "--yes")
    assert again.exit_code == 0, again.output
    assert pg.scalar("SELECT count(*) FROM pay") == 3 and pg.scalar(f"SELECT count(*) FROM {ARCHIVE}") == 3


def test_postgres_a_disabled_trigger_and_a_collation_change_are_no_refusal(pg):
    """What cannot change what the fix copies: a trigger disabled on the archive never fires, and a collation of
    the source column changed since the archive was made stores the same values (it only compares them)."""
    _seed(pg)
    monitor = Monitor(make_config(pg, [CHECK]))
    try:
        assert run_fix(monitor, "pays").state == "done"
        pg.execute("INSERT INTO pay VALUES (7, 1, 12.34, 'g')")
        _null_note_trigger(pg, ARCHIVE)
        pg.execute(f"ALTER TABLE {ARCHIVE} DISABLE TRIGGER null_note",
                   'ALTER TABLE pay ALTER COLUMN note TYPE VARCHAR(20) COLLATE "C"')
        assert run_fix(monitor, "pays").state == "done"
        assert pg.scalar(f"SELECT count(*) FROM {ARCHIVE} WHERE id = 7 AND note = 'g'") == 1
    finally:
        monitor.close()


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

"""MariaDB: a table without a primary key whose AUTO_INCREMENT column leads a plain (not unique) index,
`id INT AUTO_INCREMENT, KEY (id)`. Its rows were told apart by nothing (every group's rows differ in id: the fix
refused). Now the fix tells them apart by the AUTO_INCREMENT value with the group's key, which is no unique key:
an explicit insert may repeat a value, so a group where one repeats is left out, and a row written during a batch
with a planned value and key rolls the batch back instead of being deleted unarchived."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from fix_support import config_file, contents, fix_json, make_config, run_cli, undo_restores
from monitor.engine import Monitor
from monitor.fix import FixError, prepare_fix, run_fix

CHECK = [{"name": "roles", "table": "membership", "key": ["group_id", "user_id"]}]


def _membership(db, *rows: tuple[int, int, int, str]) -> None:
    db.execute("CREATE TABLE membership (id INTEGER NOT NULL AUTO_INCREMENT, group_id INTEGER NOT NULL, "
               "user_id INTEGER NOT NULL, role VARCHAR(20) NOT NULL, KEY (id), KEY (group_id, user_id)) "
               "ENGINE=InnoDB")
    db.execute("INSERT INTO membership (id, group_id, user_id, role) VALUES (:i, :g, :u, :r)",
               params=[{"i": i, "g": g, "u": u, "r": r} for i, g, u, r in rows])


def _rows(db, table: str = "membership") -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in db.rows(f"SELECT id, group_id, user_id, role FROM {table}"))


def test_rows_told_apart_by_a_non_unique_auto_increment_are_fixed_and_undone(mysql, tmp_path):
    """Groups whose rows differ (in id and role) are fixed: the first by id is kept, the others archived exactly
    as deleted, and undo gives the table back as it was."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"), (3, 2, 8, "member"), (4, 2, 8, "member"),
                (5, 2, 8, "owner"), (6, 3, 9, "member"))
    path = config_file(tmp_path, mysql, CHECK)
    before = contents(mysql, "membership")
    dry = run_cli("fix", "roles", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "told apart by their AUTO_INCREMENT value" in dry.output and "BLOCKED" not in dry.output
    report = fix_json("roles", path)
    assert (report["deleted"], report["archived"], report["skipped"]) == (3, 3, 0), report
    assert _rows(mysql) == [(1, 1, 7, "member"), (3, 2, 8, "member"), (6, 3, 9, "member")]
    assert _rows(mysql, "dupewatch_archive_membership") == [
        (2, 1, 7, "admin"), (4, 2, 8, "member"), (5, 2, 8, "owner")]
    undo_restores(mysql, path, report["fix_id"], before)


def test_a_repeated_auto_increment_value_leaves_its_group_out(mysql, tmp_path):
    """An explicit insert repeated id 2 inside group (1, 7): that value names no single row, so the group is left
    out, named. Id 4 also names a row of another key (a single row): the group holding the other 4 is fixed and
    the other row stays."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"), (2, 1, 7, "owner"),
                (3, 2, 8, "member"), (4, 2, 8, "admin"), (4, 5, 5, "single"))
    path = config_file(tmp_path, mysql, CHECK)
    dry = run_cli("fix", "roles", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "1 group(s) in which two rows hold the same value of id" in dry.output, dry.output
    fixed = run_cli("fix", "roles", "--config", str(path), "--yes")
    assert fixed.exit_code == 1, fixed.output  # done, a group left out
    assert _rows(mysql) == [(1, 1, 7, "member"), (2, 1, 7, "admin"), (2, 1, 7, "owner"), (3, 2, 8, "member"),
                            (4, 5, 5, "single")]
    assert _rows(mysql, "dupewatch_archive_membership") == [(4, 2, 8, "admin")]


def test_every_group_repeating_a_value_refuses_the_fix(mysql, tmp_path):
    _membership(mysql, (1, 1, 7, "member"), (1, 1, 7, "admin"))
    path = config_file(tmp_path, mysql, CHECK)
    fixed = run_cli("fix", "roles", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "same value of id" in fixed.stderr, fixed.output
    assert _rows(mysql) == [(1, 1, 7, "admin"), (1, 1, 7, "member")]


def _fix_with_writes_before_deletes(db, *inserts: str, batch_size: int = 10) -> Any:
    """`run_fix` in batches of `batch_size`, the application committing the next of `inserts` on its own connection
    right before each DELETE of membership (after the batch locked and counted its rows, and archived them), until
    none is left: the report, or the `FixError` the fix stopped with."""
    monitor = Monitor(make_config(db, CHECK))
    pending = list(inserts)
    app = sa.create_engine(db.url)

    def write_before_a_delete(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.upper().startswith("DELETE") and "membership" in statement and pending:
            with app.begin() as conn:
                conn.execute(sa.text(pending.pop(0)))

    try:
        plan = prepare_fix(monitor, "roles")
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", write_before_a_delete)
        try:
            return run_fix(monitor, "roles", plan, batch_size=batch_size)
        except FixError as exc:
            return exc
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", write_before_a_delete)
            assert not pending, f"the batches never deleted before {pending}"
    finally:
        monitor.close()
        app.dispose()


def test_a_row_inserted_during_the_batch_with_a_planned_value_and_key_is_neither_deleted_nor_lost(mysql):
    """The application inserts (2, 1, 7, 'intruder') with id 2, a row the batch planned to delete, after the batch
    locked its rows and before its DELETE (READ COMMITTED: no gap lock keeps it out). The DELETE matched both rows
    with id 2 and the archive one: the counts differ, the batch is rolled back whole and runs again, and its
    re-check leaves that group out. Every row is still there; the other group of the batch is fixed."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"), (3, 2, 8, "member"), (4, 2, 8, "admin"))
    report = _fix_with_writes_before_deletes(
        mysql, "INSERT INTO membership (id, group_id, user_id, role) VALUES (2, 1, 7, 'intruder')")
    assert (report.deleted, report.archived, report.skipped) == (1, 1, 1), report
    assert _rows(mysql) == [(1, 1, 7, "member"), (2, 1, 7, "admin"), (2, 1, 7, "intruder"), (3, 2, 8, "member")]
    assert _rows(mysql, "dupewatch_archive_membership") == [(4, 2, 8, "admin")]


def test_a_new_row_inserted_into_a_group_during_the_batch_survives(mysql):
    """The seed incident's shape: a new row of the group (its own AUTO_INCREMENT value) arrives before the DELETE:
    it is neither deleted nor archived, and exactly the planned row is."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "member"))
    report = _fix_with_writes_before_deletes(
        mysql, "INSERT INTO membership (group_id, user_id, role) VALUES (1, 7, 'admin')")
    assert (report.deleted, report.archived, report.skipped) == (1, 1, 0), report
    assert _rows(mysql) == [(1, 1, 7, "member"), (3, 1, 7, "admin")]
    assert _rows(mysql, "dupewatch_archive_membership") == [(2, 1, 7, "member")]


def test_a_table_another_table_refers_to_keeps_the_whole_row_mode(mysql, tmp_path):
    """A foreign key may refer to the AUTO_INCREMENT column's plain index (InnoDB allows it); such a reference
    cannot be repointed by a value that is not unique, so the table keeps the mode without a row identity: rows
    that differ are left out, identical ones fixed."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"))
    mysql.execute("CREATE TABLE grant_log (id INTEGER PRIMARY KEY, membership_id INTEGER, "
                  "FOREIGN KEY (membership_id) REFERENCES membership (id)) ENGINE=InnoDB")
    path = config_file(tmp_path, mysql, CHECK)
    fixed = run_cli("fix", "roles", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "nothing tells those rows apart" in fixed.stderr, fixed.output
    assert _rows(mysql) == [(1, 1, 7, "member"), (2, 1, 7, "admin")]


def test_a_check_keyed_on_the_auto_increment_column_fixes_exact_copies(mysql, tmp_path):
    """A check for repeated ids (a dump loaded twice): its groups are rows repeating the value, so the value tells
    nothing apart there; the whole-row mode deletes all but one of exact copies and leaves differing rows."""
    _membership(mysql, (1, 1, 7, "member"), (1, 1, 7, "member"), (2, 2, 8, "member"), (2, 2, 8, "admin"))
    path = config_file(tmp_path, mysql, [{"name": "ids", "table": "membership", "key": ["id"]}])
    fixed = run_cli("fix", "ids", "--config", str(path), "--yes")
    assert fixed.exit_code == 1, fixed.output  # done, the differing group left out
    assert _rows(mysql) == [(1, 1, 7, "member"), (2, 2, 8, "admin"), (2, 2, 8, "member")]
    assert _rows(mysql, "dupewatch_archive_membership") == [(1, 1, 7, "member")]


def test_the_plan_names_a_column_holding_the_auto_increment_value_of_a_row_to_delete(mysql, tmp_path):
    """`audit_entry.membership_id` holds id 2 without a foreign key: the dry run says the fix leaves it pointing
    at no row, as it does for a primary key."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"))
    mysql.execute("CREATE TABLE audit_entry (id INTEGER PRIMARY KEY, membership_id INTEGER, KEY (membership_id)) "
                  "ENGINE=InnoDB", "INSERT INTO audit_entry VALUES (1, 2)")
    path = config_file(tmp_path, mysql, CHECK)
    dry = run_cli("fix", "roles", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "audit_entry(membership_id) is named like a reference and no foreign key declares it" in dry.output, \
        dry.output
    assert "1 of its row(s) hold the id of a row to delete" in dry.output, dry.output


def test_a_unique_key_holding_the_auto_increment_column_is_no_evidence_of_different_entities(mysql, tmp_path):
    """`UNIQUE (id)` in place of a primary key (and `UNIQUE (id, role)`) differs between any two rows of a group,
    as a primary key does: the plan said "rows that differ on unique constraint id: the schema says they are
    different entities" for every group, blocked the fix, and advised `--merge-distinct`."""
    mysql.execute("CREATE TABLE membership (id INTEGER NOT NULL AUTO_INCREMENT, group_id INTEGER NOT NULL, "
                  "user_id INTEGER NOT NULL, role VARCHAR(20) NOT NULL, UNIQUE KEY (id), UNIQUE KEY (id, role), "
                  "KEY (group_id, user_id)) ENGINE=InnoDB",
                  "INSERT INTO membership VALUES (1, 1, 7, 'member'), (2, 1, 7, 'admin'), (3, 2, 8, 'member')")
    path = config_file(tmp_path, mysql, CHECK)
    before = contents(mysql, "membership")
    dry = run_cli("fix", "roles", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0 and "different entities" not in dry.output, dry.output
    report = fix_json("roles", path)
    assert (report["deleted"], report["archived"], report["skipped"]) == (1, 1, 0), report
    assert _rows(mysql) == [(1, 1, 7, "member"), (3, 2, 8, "member")]
    assert _rows(mysql, "dupewatch_archive_membership") == [(2, 1, 7, "admin")]
    undo_restores(mysql, path, report["fix_id"], before)


def test_a_second_batch_meeting_a_row_written_meanwhile_runs_again_as_the_first_did(mysql):
    """The first batch (one group) meets a row the application wrote with a planned value and key: rolled back, run
    again, its group left out, nothing of that batch deleted. The second batch meets another such row: it is run
    again as well and its group left out, not stopped as a second difference of the same range (the flag that says
    "this range differed once" outlived the range)."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"), (3, 2, 8, "member"), (4, 2, 8, "admin"),
                (5, 3, 9, "member"), (6, 3, 9, "admin"))
    report = _fix_with_writes_before_deletes(mysql, "INSERT INTO membership VALUES (2, 1, 7, 'intruder')",
                                             "INSERT INTO membership VALUES (4, 2, 8, 'intruder')", batch_size=1)
    assert (report.state, report.deleted, report.archived, report.skipped) == ("done", 1, 1, 2), report
    assert _rows(mysql) == [(1, 1, 7, "member"), (2, 1, 7, "admin"), (2, 1, 7, "intruder"), (3, 2, 8, "member"),
                            (4, 2, 8, "admin"), (4, 2, 8, "intruder"), (5, 3, 9, "member")]
    assert _rows(mysql, "dupewatch_archive_membership") == [(6, 3, 9, "admin")]


def test_a_range_meeting_rows_written_meanwhile_twice_stops_saying_why_and_resumes(mysql, tmp_path):
    """The batch meets a row written with a planned value and key, runs again (leaving that group out), and meets
    another in its other group: the fix stops with nothing of the batch done, saying what happened (it said only
    "deleted 2 rows, expected 1"); resumed, it leaves both groups out and deletes nothing the application wrote."""
    _membership(mysql, (1, 1, 7, "member"), (2, 1, 7, "admin"), (3, 2, 8, "member"), (4, 2, 8, "admin"))
    stopped = _fix_with_writes_before_deletes(mysql, "INSERT INTO membership VALUES (2, 1, 7, 'intruder')",
                                              "INSERT INTO membership VALUES (4, 2, 8, 'intruder')")
    assert isinstance(stopped, FixError), f"the fix did not stop: {stopped}"
    assert "the application wrote rows with a value of id and a key the batch deletes" in str(stopped), stopped
    written = [(1, 1, 7, "member"), (2, 1, 7, "admin"), (2, 1, 7, "intruder"), (3, 2, 8, "member"),
               (4, 2, 8, "admin"), (4, 2, 8, "intruder")]
    assert _rows(mysql) == written
    path = config_file(tmp_path, mysql, CHECK)
    resumed = run_cli("fix", "roles", "--config", str(path), "--yes")
    assert resumed.exit_code == 1, resumed.output
    assert _rows(mysql) == written

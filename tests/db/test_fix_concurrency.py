"""The fix against a live application: concurrent inserts, groups changed under it, and a kill -9 mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import sqlalchemy as sa

from fix_support import FixThread, config_file, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import FixProgress, prepare_fix, run_fix

DEADLINE = 30.0


def _seed(db, keys: int, copies: int) -> None:
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, note VARCHAR(20))")
    rows = [{"id": k * copies + c + 1, "k": k, "n": f"seed-{c}"} for k in range(keys) for c in range(copies)]
    db.execute("INSERT INTO visit VALUES (:id, :k, :n)", params=rows)


CHECK = [{"name": "visits", "table": "visit", "key": ["k"]}]


def _wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a condition with a deadline, not a synchronisation sleep


def test_fix_while_app_keeps_inserting_duplicates(db):
    keys, copies = 30, 3
    _seed(db, keys, copies)
    monitor = Monitor(make_config(db, CHECK))
    inserted: list[int] = []
    progress = threading.Condition()
    stop = threading.Event()
    errors: list[BaseException] = []

    def app() -> None:  # the application: more duplicates of existing keys, and new keys, all the time
        next_id = 10_000
        engine = sa.create_engine(db.url)
        try:
            while not stop.is_set():
                with engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO visit VALUES (:id, :k, 'app')"),
                                 {"id": next_id, "k": next_id % (keys + 5)})
                with progress:
                    inserted.append(next_id)
                    progress.notify_all()
                next_id += 1
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)
        finally:
            engine.dispose()

    def between_batches(_p: FixProgress) -> None:
        seen = len(inserted)
        with progress:  # let the application write between every two batches
            assert progress.wait_for(lambda: len(inserted) >= seen + 2 or bool(errors), timeout=DEADLINE)

    try:
        plan = prepare_fix(monitor, "visits")
        thread = threading.Thread(target=app, daemon=True)
        thread.start()
        report = run_fix(monitor, "visits", plan, batch_size=4, progress=between_batches)
    finally:
        stop.set()
        monitor.close()
    thread.join(DEADLINE)
    assert not errors, errors
    assert (report.groups, report.deleted, report.archived, report.skipped) == (keys, keys * 2, keys * 2, 0)
    ids = {r[0] for r in db.rows("SELECT id FROM visit")}
    keepers = {k * copies + 1 for k in range(keys)}
    assert keepers <= ids, "a keeper was deleted"
    assert set(inserted) <= ids, "a row inserted after the plan was deleted"
    assert {r[0] for r in db.rows("SELECT k FROM visit")} >= set(range(keys)), "a key lost its last row"
    archived = sorted(r[0] for r in db.rows("SELECT id FROM dupewatch_archive_visit"))
    assert archived == sorted({k * copies + c + 1 for k in range(keys) for c in (1, 2)})
    assert len(inserted) > 2


def test_groups_changed_after_the_plan_are_skipped(db, tmp_path):
    _seed(db, 4, 2)  # keys 0..3: ids (1,2) (3,4) (5,6) (7,8)
    monitor = Monitor(make_config(db, CHECK))
    try:
        plan = prepare_fix(monitor, "visits")
        db.execute("DELETE FROM visit WHERE id = 1")       # key 0 lost its keeper
        db.execute("UPDATE visit SET k = 99 WHERE id = 4")  # key 1 lost a row to another key
        report = run_fix(monitor, "visits", plan)
    finally:
        monitor.close()
    assert (report.groups, report.deleted, report.skipped) == (2, 2, 2)
    assert sorted(r[0] for r in db.rows("SELECT id FROM visit")) == [2, 3, 4, 5, 7]



def test_a_row_changed_while_the_batch_waits_for_it_is_not_deleted_and_its_group_is_skipped(pg):
    """PostgreSQL, a table nothing references: a batch locks the keepers, and its DELETE re-checks each row it
    deletes under the row lock it takes. The application holds an update moving a row to delete to another key;
    the batch waits for it, and once the application commits the row is no longer the planned one: it stays (the
    only row of its new key), its group is skipped, the other groups are fixed."""
    db = pg
    _seed(db, 4, 2)  # keys 0..3: ids (1,2) (3,4) (5,6) (7,8)
    monitor = Monitor(make_config(db, CHECK))
    app = db.engine.connect()
    try:
        fixing = FixThread(monitor, "visits", prepare_fix(monitor, "visits"), batch_size=10)
        with app.begin():
            blocker = app.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            app.execute(sa.text("UPDATE visit SET k = 99 WHERE id = 4"))
            fixing.start()
            _wait_until(lambda: bool(db.scalar("SELECT count(*) FROM pg_stat_activity "
                                               "WHERE :b = ANY(pg_blocking_pids(pid))", {"b": blocker})),
                        "the batch to wait for the row the application updates")
        fixing.join(DEADLINE)
    finally:
        app.close()
        monitor.close()
    assert fixing.error is None and fixing.report is not None, fixing.error
    report = fixing.report
    assert (report.groups, report.deleted, report.skipped) == (3, 3, 1)
    assert sorted(r[0] for r in db.rows("SELECT id FROM visit")) == [1, 3, 4, 5, 7]
    assert db.scalar("SELECT k FROM visit WHERE id = 4") == 99
    assert sorted(r[0] for r in db.rows("SELECT id FROM dupewatch_archive_visit")) == [2, 6, 8]


def test_a_keeper_changed_while_the_batch_waits_for_it_undoes_the_batchs_deletes_and_skips_its_group(pg):
    """PostgreSQL, a table nothing references: one statement locks the keepers and deletes the other planned
    rows. The application holds an update moving a keeper to another key; the statement waits for it, and once
    the application commits the keeper is no longer the planned one, while its group's other row still is and
    was deleted by the same statement: the batch undoes that delete, skips the group (both rows stay, each now
    the only row of its key) and fixes the others; the database's account of the batch still holds."""
    db = pg
    _seed(db, 4, 2)  # keys 0..3: ids (1,2) (3,4) (5,6) (7,8); keepers 1, 3, 5, 7
    monitor = Monitor(make_config(db, CHECK))
    report = _fix_behind_an_update(db, monitor, "UPDATE visit SET k = 99 WHERE id = 3")
    assert (report.groups, report.deleted, report.archived, report.skipped) == (3, 3, 3, 1)
    assert sorted(r[0] for r in db.rows("SELECT id FROM visit")) == [1, 3, 4, 5, 7]
    assert db.scalar("SELECT k FROM visit WHERE id = 3") == 99
    assert sorted(r[0] for r in db.rows("SELECT id FROM dupewatch_archive_visit")) == [2, 6, 8]


def _fix_behind_an_update(db, monitor, update):
    """A fix of `visits` started while the application's open transaction holds `update`, which it commits once
    the fix's batch waits for it (PostgreSQL: `pg_blocking_pids`); the fix's report."""
    app = db.engine.connect()
    try:
        fixing = FixThread(monitor, "visits", prepare_fix(monitor, "visits"), batch_size=10)
        with app.begin():
            blocker = app.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            app.execute(sa.text(update))
            fixing.start()
            _wait_until(lambda: bool(db.scalar("SELECT count(*) FROM pg_stat_activity "
                                               "WHERE :b = ANY(pg_blocking_pids(pid))", {"b": blocker})),
                        "the batch to wait for the rows the application updates")
        fixing.join(DEADLINE)
    finally:
        app.close()
        monitor.close()
    assert fixing.error is None and fixing.report is not None, fixing.error
    return fixing.report


def test_rows_moved_by_an_update_since_the_plan_are_still_fixed(pg):
    """PostgreSQL: a batch reaches the planned rows by the physical address the snapshot read (a TID scan), and
    matches each by primary key and key. An update of another column after the plan moves a keeper and a row to
    delete to new addresses: nothing is at the planned ones, so the batch fixes its groups by primary key, and
    the archive holds the moved row as it was deleted."""
    db = pg
    _seed(db, 4, 2)  # keys 0..3: ids (1,2) (3,4) (5,6) (7,8); keepers 1, 3, 5, 7
    monitor = Monitor(make_config(db, CHECK))
    try:
        plan = prepare_fix(monitor, "visits")
        moved = "SELECT id, ctid::text FROM visit WHERE id IN (1, 4) ORDER BY id"
        before = db.rows(moved)
        db.execute("UPDATE visit SET note = 'moved' WHERE id IN (1, 4)")
        assert db.rows(moved) != before  # the planned addresses no longer hold these rows
        report = run_fix(monitor, "visits", plan, batch_size=10)
    finally:
        monitor.close()
    assert (report.groups, report.deleted, report.archived, report.skipped) == (4, 4, 4, 0)
    assert db.rows("SELECT id, note FROM visit ORDER BY id") == [(1, "moved"), (3, "seed-0"), (5, "seed-0"),
                                                                 (7, "seed-0")]
    assert db.rows("SELECT id, note FROM dupewatch_archive_visit ORDER BY id") == [
        (2, "seed-1"), (4, "moved"), (6, "seed-1"), (8, "seed-1")]


def test_rows_updated_while_the_batch_waits_for_them_are_followed_to_their_new_version(pg):
    """PostgreSQL: the application holds an update of another column of a keeper and of a row to delete; the
    batch, which reached them by their planned addresses, waits, then locks and deletes their new versions (the
    database follows an updated row, and the batch matches it by primary key and key again): every group is
    fixed, and the archive holds the row as the application left it."""
    db = pg
    _seed(db, 4, 2)
    monitor = Monitor(make_config(db, CHECK))
    report = _fix_behind_an_update(db, monitor, "UPDATE visit SET note = 'app' WHERE id IN (3, 4)")
    assert (report.groups, report.deleted, report.archived, report.skipped) == (4, 4, 4, 0)
    assert db.rows("SELECT id, note FROM visit ORDER BY id") == [(1, "seed-0"), (3, "app"), (5, "seed-0"),
                                                                 (7, "seed-0")]
    assert db.rows("SELECT id, note FROM dupewatch_archive_visit ORDER BY id") == [
        (2, "seed-1"), (4, "app"), (6, "seed-1"), (8, "seed-1")]


CHILD = textwrap.dedent("""
    import sys
    from monitor.config import load_config
    from monitor.engine import Monitor
    from monitor.fix import run_fix

    def park(progress):
        print("batch", progress.groups_done, flush=True)
        sys.stdin.read()  # parked after the first committed batch until the parent kills us

    run_fix(Monitor(load_config(sys.argv[1])), "visits", batch_size=3, progress=park)
""")


def test_fix_killed_after_first_batch_then_resumed(db, tmp_path):
    keys, copies = 12, 3
    _seed(db, keys, copies)
    path = config_file(tmp_path, db, CHECK)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        def first_batch_committed() -> bool:
            if child.poll() is not None:
                raise AssertionError(child.stderr.read().decode() if child.stderr else "child died")
            try:
                done = db.rows("SELECT done_through, state FROM dupewatch_fix")
            except sa.exc.DBAPIError:
                return False  # bookkeeping not created yet
            return bool(done) and done[0][0] > 0

        _wait_until(first_batch_committed, "the first batch to commit")
        child.send_signal(signal.SIGKILL)
        child.wait(DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
    state, deleted, archived = db.rows("SELECT state, deleted, archived FROM dupewatch_fix")[0]
    assert state == "running" and deleted == archived == 3 * 2  # exactly one batch of 3 groups, whole
    assert db.scalar("SELECT count(*) FROM visit") == keys * copies - 6
    assert db.scalar("SELECT count(*) FROM dupewatch_archive_visit") == 6

    listed = json_out(run_cli("fixes", "--config", str(path), "--json"))["fixes"]
    assert listed[0]["state"] == "running"
    result = run_cli("fix", "visits", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert report["fix_id"] == listed[0]["fix_id"]
    assert (report["groups"], report["deleted"], report["archived"], report["skipped"]) == (keys, 24, 24, 0)
    assert sorted(r[0] for r in db.rows("SELECT id FROM visit")) == [k * copies + 1 for k in range(keys)]
    assert db.scalar("SELECT count(*) FROM dupewatch_archive_visit") == 24
    assert db.rows("SELECT state FROM dupewatch_fix") == [("done",)]

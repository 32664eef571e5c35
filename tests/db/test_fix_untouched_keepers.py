"""PostgreSQL, a table nothing references: an application transaction that reaches a keeper after the batch's last
statement and before its commit. A lock on the keeper makes it wait for the commit, and what it does next it
decides after that, on the rows the batch left; a keeper the batch did not lock it takes at once, while the rows the
batch deleted still look present to it (the batch has not committed), and it may delete the keeper for a duplicate
that is about to be gone: the key loses its last row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from fix_support import FixThread, make_config
from monitor.engine import Monitor
from monitor.fix import execute, prepare_fix

DEADLINE = 30.0
CHECK = [{"name": "visits", "table": "visit", "key": ["k"]}]


def _seed(db) -> None:
    """Keys 0..3, ids (1, 2) (3, 4) (5, 6) (7, 8): the fix keeps 1, 3, 5, 7 and deletes 2, 4, 6, 8."""
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, note VARCHAR(20))")
    db.execute("INSERT INTO visit VALUES (:id, :k, 'seed')",
               params=[{"id": k * 2 + c + 1, "k": k} for k in range(4) for c in range(2)])


def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a condition with a deadline, not a synchronisation sleep


def _fix_with(db, monkeypatch, before_commit: Callable[[int], None]) -> FixThread:
    """The fix of `visits` in one batch, `before_commit(batch's backend pid)` run once the batch's keepers-only
    statements returned and before its account and commit (the window a real batch spends on its round trips and
    its COMMIT). The thread, joined."""
    original = execute._Batch._keepers_locked

    def keepers_locked(self: Any, conn: sa.Connection, *args: Any) -> Any:
        outcome = original(self, conn, *args)
        before_commit(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        return outcome

    monkeypatch.setattr(execute._Batch, "_keepers_locked", keepers_locked)
    monitor = Monitor(make_config(db, CHECK))
    try:
        fixing = FixThread(monitor, "visits", prepare_fix(monitor, "visits"), batch_size=10)
        fixing.start()
        fixing.join(DEADLINE)
    finally:
        monitor.close()
    assert not fixing.is_alive(), "the fix did not finish"
    assert fixing.error is None and fixing.report is not None, fixing.error
    return fixing


def test_an_application_that_locks_a_keeper_then_looks_at_its_key_sees_the_batch_committed_first(pg,
                                                                                                monkeypatch):
    """The application (READ COMMITTED) locks the row it works on, keeper 1, then counts its key's rows and deletes
    its row when the key has another. Reaching the keeper between the batch's statements and its commit, it must
    wait for the commit and then count one row: key 0 keeps row 1. (A batch that leaves an untouched keeper
    unlocked, `xmax = 0`, lets it count row 2, deleted but not yet committed, and delete row 1: key 0 has no row.)"""
    db = pg
    _seed(db)
    errors: list[BaseException] = []
    finished = threading.Event()

    def application() -> None:
        try:
            with db.engine.begin() as app:
                app.execute(sa.text("SELECT id FROM visit WHERE id = 1 FOR UPDATE"))
                if app.execute(sa.text("SELECT count(*) FROM visit WHERE k = 0")).scalar_one() > 1:
                    app.execute(sa.text("DELETE FROM visit WHERE id = 1"))
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)
        finally:
            finished.set()

    app_thread = threading.Thread(target=application, daemon=True)

    def before_commit(batch_pid: int) -> None:
        app_thread.start()
        _wait_until(lambda: finished.is_set() or bool(db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE :b = ANY(pg_blocking_pids(pid))", {"b": batch_pid})),
                    "the application to finish or to wait for the batch")

    report = _fix_with(db, monkeypatch, before_commit).report
    app_thread.join(DEADLINE)
    assert not app_thread.is_alive() and not errors, errors
    assert report is not None and (report.groups, report.deleted, report.skipped) == (4, 4, 0)
    assert sorted(r[0] for r in db.rows("SELECT k FROM visit")) == [0, 1, 2, 3], "a key lost its last row"
    assert sorted(r[0] for r in db.rows("SELECT id FROM visit")) == [1, 3, 5, 7]


def test_an_application_deduping_with_skip_locked_leaves_the_batchs_keepers_alone(pg, monkeypatch):
    """The application dedupes by itself, keeping each key's newest row, in one statement that skips rows another
    transaction holds (`FOR UPDATE SKIP LOCKED`, so that several of its workers never wait on each other). Run
    between the batch's statements and its commit, it must find the batch's keepers held and skip them: every key
    keeps its keeper. (A batch that leaves untouched keepers unlocked, `xmax = 0`, lets it delete all four, each for
    a newer row the batch deleted but has not committed: no key keeps a row.)"""
    db = pg
    _seed(db)

    def before_commit(_batch_pid: int) -> None:
        with db.engine.begin() as app:
            app.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            app.execute(sa.text(
                "DELETE FROM visit WHERE id IN (SELECT a.id FROM visit a WHERE EXISTS "
                "(SELECT 1 FROM visit b WHERE b.k = a.k AND b.id > a.id) FOR UPDATE OF a SKIP LOCKED)"))

    report = _fix_with(db, monkeypatch, before_commit).report
    assert report is not None and (report.groups, report.deleted, report.skipped) == (4, 4, 0)
    assert sorted(r[0] for r in db.rows("SELECT k FROM visit")) == [0, 1, 2, 3], "a key lost its last row"
    assert sorted(r[0] for r in db.rows("SELECT id FROM visit")) == [1, 3, 5, 7]

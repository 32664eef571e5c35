"""Issue 16 items 2, 3 and 8: what a batch deletes is exactly what it archives, even while the application
inserts into the group (the seed incident's shape); a deadlock victim batch is retried; batches are sized to a
target time; the plan names the referencing column that lacks an index."""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from fix_support import config_file, deadlock_config, fix_in_a_deadlock, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import FixProgress, prepare_fix, run_fix
from monitor.fix.pace import FIRST_BATCH

DEADLINE = 30.0
BATCH = 4
WRITES_PER_BATCH = 3  # rows each application thread writes per batch of the fix
MEMBERSHIP = [{"name": "roles", "table": "role_membership", "key": ["group_id", "user_id"]}]


def _wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a condition with a deadline, not a synchronisation sleep


def _role_membership(db) -> None:
    """No primary key; on MariaDB an index whose order puts a later 'admin' row before the 'member' copies."""
    index = ", KEY (group_id, user_id, role)" if db.dialect == "mysql" else ""
    db.execute(f"CREATE TABLE role_membership (group_id INTEGER NOT NULL, user_id INTEGER NOT NULL, "
               f"role VARCHAR(20) NOT NULL{index})")
    if db.dialect != "mysql":
        db.execute("CREATE INDEX role_membership_k ON role_membership (group_id, user_id, role)")


def _multiset(db, sql: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in db.rows(sql))


# -- item 2: a row inserted into a group while its batch runs -----------------------------------------------


@pytest.fixture(params=["postgresql", "mysql"])
def server_db(request: pytest.FixtureRequest) -> Any:
    """PostgreSQL or MariaDB: on SQLite a batch holds the database's write lock, so no row can arrive between
    its statements (the concurrency test below covers SQLite)."""
    return request.getfixturevalue({"postgresql": "pg", "mysql": "mysql"}[request.param])


def test_a_row_inserted_between_the_batchs_statements_is_neither_deleted_nor_archived(server_db):
    """The seed incident: (1, 7, 'admin') arrives after the batch locked and counted the group, right before
    its DELETE. It survives, and the archive holds exactly the row that was deleted."""
    db = server_db
    _role_membership(db)
    db.execute("INSERT INTO role_membership VALUES (1, 7, 'member'), (1, 7, 'member'), (2, 8, 'member')")
    monitor = Monitor(make_config(db, MEMBERSHIP))
    inserted: list[str] = []
    app = sa.create_engine(db.url)

    def insert_before_the_delete(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "DELETE FROM" in statement.upper() and "role_membership" in statement and not inserted:
            inserted.append(statement)
            with app.begin() as conn:  # the application, on its own connection, commits before the DELETE runs
                conn.execute(sa.text("INSERT INTO role_membership VALUES (1, 7, 'admin')"))

    try:
        plan = prepare_fix(monitor, "roles")
        assert (plan.groups, plan.rows_to_delete) == (1, 1)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", insert_before_the_delete)
        try:
            report = run_fix(monitor, "roles", plan, batch_size=1)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", insert_before_the_delete)
    finally:
        monitor.close()
        app.dispose()
    assert inserted, "the batch never deleted"
    assert (report.deleted, report.archived, report.skipped) == (1, 1, 0)
    assert _multiset(db, "SELECT group_id, user_id, role FROM role_membership") == [
        (1, 7, "admin"), (1, 7, "member"), (2, 8, "member")]
    assert _multiset(db, "SELECT group_id, user_id, role FROM dupewatch_archive_role_membership") == [
        (1, 7, "member")]


def test_no_row_inserted_during_a_fix_is_lost_across_many_groups(db):
    """An application inserts rows into the groups (new roles and more copies) all through a fix. Oracle: live
    rows + archive == the rows before + every row the application inserted, each archived row a planned copy,
    and every inserted row that differs from the copies still live. Each application thread writes up to
    WRITES_PER_BATCH rows into the groups of the batch about to run (at least one before it starts, the others
    racing it), then waits for the next batch: unpaced, the two writers starve SQLite's fix of its write lock for
    thousands of rows (half a minute) without reaching a group the paced ones miss."""
    groups = 120
    _role_membership(db)
    seeded = [{"g": g, "u": g % 17, "r": "member"} for g in range(groups) for _ in range(2 + g % 2)]
    db.execute("INSERT INTO role_membership VALUES (:g, :u, :r)", params=seeded)
    monitor = Monitor(make_config(db, MEMBERSHIP))
    inserted: list[tuple[int, int, str]] = []
    stop = threading.Event()
    errors: list[BaseException] = []
    progress = threading.Condition()

    focus = [0]  # the first group_id of the batch running now: the application writes into its groups
    batch = [0]  # how many batches have finished: each one renews the writers' allowance

    def app(seed: int) -> None:
        rng = random.Random(seed)
        engine = sa.create_engine(db.url)
        written, written_in = 0, 0
        try:
            while not stop.is_set():
                with progress:
                    if written >= WRITES_PER_BATCH:
                        progress.wait_for(lambda w=written_in: batch[0] != w or stop.is_set(), timeout=DEADLINE)
                    if batch[0] != written_in:
                        written, written_in = 0, batch[0]
                    if stop.is_set() or written >= WRITES_PER_BATCH:
                        continue
                g = min(groups - 1, focus[0] + rng.randrange(BATCH))
                row = (g, g % 17, rng.choice(["admin", "owner", "member"]))
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.text("INSERT INTO role_membership VALUES (:g, :u, :r)"),
                                     {"g": row[0], "u": row[1], "r": row[2]})
                except sa.exc.OperationalError as exc:
                    if "database is locked" not in str(exc):  # SQLite refuses a deferred writer at once
                        raise  # while the fix commits: the application tries again, as applications do
                    continue
                written += 1
                with progress:
                    inserted.append(row)
                    progress.notify_all()
        except BaseException as exc:  # surfaced by the assertions below
            with progress:
                errors.append(exc)
                progress.notify_all()
        finally:
            engine.dispose()

    def between_batches(p: FixProgress) -> None:
        with progress:
            focus[0] = p.groups_done  # groups are numbered in key order from 1: group_id g is group g + 1
            batch[0] += 1
            seen = len(inserted)
            progress.notify_all()
            assert progress.wait_for(lambda: len(inserted) >= seen + 1 or bool(errors), timeout=DEADLINE)

    threads = [threading.Thread(target=app, args=(seed,), daemon=True) for seed in (16, 17)]
    try:
        plan = prepare_fix(monitor, "roles")
        for thread in threads:
            thread.start()
        report = run_fix(monitor, "roles", plan, batch_size=BATCH, progress=between_batches)
    finally:
        with progress:
            stop.set()
            progress.notify_all()
        for thread in threads:
            thread.join(DEADLINE)
        monitor.close()
    assert not errors, errors
    assert len(inserted) > 10
    before = sorted((r["g"], r["u"], r["r"]) for r in seeded)
    live = _multiset(db, "SELECT group_id, user_id, role FROM role_membership")
    archived = _multiset(db, "SELECT group_id, user_id, role FROM dupewatch_archive_role_membership")
    assert sorted(live + archived) == sorted(before + inserted), "a row was lost, or archived but not deleted"
    assert {r[2] for r in archived} <= {"member"}, "a row inserted after the plan was deleted"
    assert report.deleted == report.archived == len(archived)
    for row in {r for r in inserted if r[2] != "member"}:
        assert live.count(row) == inserted.count(row), f"{row} was inserted during the fix and deleted"
    assert {(g, u) for g, u, _r in live} == {(g, u) for g, u, _r in before + inserted}, "a key lost every row"


# -- item 8: a deadlock victim batch is run again --------------------------------------------------------------


def test_a_batch_chosen_as_deadlock_victim_is_run_again_and_the_fix_completes(server_db):
    """The application locks the batch's last row, the batch waits for it while holding the first, then the
    application asks for the first: a deadlock, in which the database rolls the batch back (the application's
    transaction has written more, so it is the one kept). The batch is run again and the fix finishes whole."""
    db = server_db
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, note VARCHAR(20))",
               "CREATE TABLE ballast (n INTEGER)")
    db.execute("INSERT INTO visit VALUES (:id, :k, 'seed')", params=[{"id": i, "k": (i - 1) // 2} for i in range(1, 9)])
    monitor = Monitor(deadlock_config(db, [{"name": "visits", "table": "visit", "key": ["k"]}]))
    try:
        thread = fix_in_a_deadlock(db, monitor, "visits", timeout=DEADLINE)
    finally:
        monitor.close()
    assert thread.error is None and thread.report is not None, thread.error
    report = thread.report
    assert (report.state, report.groups, report.deleted, report.archived) == ("done", 4, 4, 4)
    assert any("deadlock" in note for note in report.notes), report.notes
    assert [r[0] for r in db.rows("SELECT id FROM visit ORDER BY id")] == [1, 3, 5, 7]
    assert sorted(r[0] for r in db.rows("SELECT id FROM dupewatch_archive_visit")) == [2, 4, 6, 8]


# -- item 3: batches sized by time ------------------------------------------------------------------------------

SLOW_TRIGGER = {
    "postgresql": [
        "CREATE FUNCTION visit_slow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF OLD.note = 'slow' THEN PERFORM pg_sleep(0.1); END IF; RETURN OLD; END $$",
        "CREATE TRIGGER visit_slow AFTER DELETE ON visit FOR EACH ROW EXECUTE FUNCTION visit_slow()",
    ],
    "mysql": ["CREATE TRIGGER visit_slow AFTER DELETE ON visit FOR EACH ROW "
              "BEGIN IF OLD.note = 'slow' THEN DO SLEEP(0.1); END IF; END"],
}


def test_a_slow_batch_makes_the_next_one_smaller(server_db):
    """Groups 61-100 are slow to delete (an AFTER DELETE trigger waits 100 ms per row, so six of them outlast the
    0.5 s target however fast the machine): batches grow from the first small one while fast, and a batch among the
    slow groups is followed by a smaller one. Wall-clock driven: the assertions hold whichever batch a busy machine
    happens to slow down (the sizer's arithmetic is tested exactly, on a fake clock, in
    tests/unit/test_fix_pace.py)."""
    db = server_db
    keys, slow = 300, range(60, 100)
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, note VARCHAR(20))")
    rows = [{"id": k * 2 + c + 1, "k": k, "n": "slow" if c and k in slow else "seed"}
            for k in range(keys) for c in (0, 1)]
    db.execute("INSERT INTO visit VALUES (:id, :k, :n)", params=rows)
    db.execute(*SLOW_TRIGGER[db.dialect])
    monitor = Monitor(make_config(db, [{"name": "visits", "table": "visit", "key": ["k"]}]))
    done = [0]
    try:
        run_fix(monitor, "visits", batch_time=0.5, progress=lambda p: done.append(p.groups_done))
    finally:
        monitor.close()
    sizes = [b - a for a, b in itertools.pairwise(done)]
    assert done[-1] == keys and db.scalar("SELECT count(*) FROM visit") == keys
    first_slow = next(j for j, end in enumerate(done[1:]) if end > slow.start)
    assert sizes[0] == FIRST_BATCH and any(b > a for a, b in itertools.pairwise(sizes[:first_slow])), sizes
    shrunk = [j for j in range(first_slow, len(sizes) - 1) if done[j] < slow.stop and sizes[j + 1] < sizes[j]]
    assert shrunk, sizes


def _accounts(db, *, indexed: bool) -> None:
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(40) NOT NULL)",
               "CREATE TABLE login (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id))",
               "INSERT INTO account VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')",
               "INSERT INTO login VALUES (10, 2), (11, 3)")
    if indexed:
        db.execute("CREATE INDEX login_by_account ON login (account_id)")


@pytest.mark.parametrize("indexed", [False, True], ids=["unindexed", "indexed"])
def test_the_plan_names_the_referencing_column_without_an_index_and_the_index_to_build(db, tmp_path, indexed):
    _accounts(db, indexed=indexed)
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    advice = [line for line in dry.stdout.splitlines() if line.startswith("  advice:")]
    as_json = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    if indexed or db.dialect == "mysql":  # InnoDB creates an index for every foreign key that lacks one
        assert advice == [] and as_json["advice"] == [] and as_json["references"][0]["missing_index"] is None
        return
    ddl = {"postgresql": "CREATE INDEX CONCURRENTLY login_account_id_idx ON login (account_id)",
           "sqlite": "CREATE INDEX login_account_id_idx ON login (account_id)"}[db.dialect]
    assert len(advice) == 1 and "login(account_id) has no index on (account_id)" in advice[0], dry.stdout
    assert advice[0].endswith(f"run: {ddl}")
    assert as_json["references"][0]["missing_index"] == ddl and as_json["advice"] == [advice[0][len("  advice: "):]]
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(ddl))  # the advice, followed: the plan no longer gives it
    again = run_cli("fix", "accounts", "--config", str(path), "--dry-run")
    assert "advice:" not in again.stdout


def test_batch_options_on_the_command_line(db, tmp_path):
    _accounts(db, indexed=True)
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    bad = run_cli("fix", "accounts", "--config", str(path), "--yes", "--batch-time", "soon")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "--batch-time" in bad.stderr
    done = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json", "--batch-time", "200ms",
                   "--batch-size", "1")
    assert done.exit_code == 0, done.output
    assert (json_out(done)["deleted"], json_out(done)["repointed"]) == (1, 1)


def test_a_keepers_only_batch_whose_keeper_changed_is_rolled_back_and_run_again_locking_every_row(pg, monkeypatch):
    """PostgreSQL, a table with a primary key that nothing references: each batch locks only its keepers and lets
    its DELETE re-check the rows it deletes (`_Batch._keepers_locked`). Batch 2's keeper changed after the plan:
    that batch's transaction is rolled back, the same range runs again locking and re-checking every row
    (`_fix_groups`, which skips the changed group), and the batch after it is keepers-only again."""
    from monitor.fix import execute

    pg.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT)")
    pg.execute("INSERT INTO item SELECT g, g / 2, 'x' FROM generate_series(2, 33) AS g")  # 16 groups of 2
    monitor = Monitor(make_config(pg, [{"name": "items", "table": "item", "key": ["k"], "order_by": ["id"]}]))
    calls: list[tuple[str, int, int, str]] = []
    current: list[int] = []
    run, keepers, full = execute._Batch.run, execute._Batch._keepers_locked, execute._Batch._fix_groups

    def spy_run(self, conn, lower, upper):
        current[:] = [lower, upper]
        return run(self, conn, lower, upper)

    def spy_keepers(self, conn, in_batch, groups):
        try:
            outcome = keepers(self, conn, in_batch, groups)
        except execute._NotAsPlanned:
            calls.append(("keepers", *current, "rolled back"))
            raise
        calls.append(("keepers", *current, "ran"))
        return outcome

    def spy_full(self, conn, in_batch, groups, planned):
        outcome = full(self, conn, in_batch, groups, planned)
        calls.append(("full lock", *current, "ran"))
        return outcome

    monkeypatch.setattr(execute._Batch, "run", spy_run)
    monkeypatch.setattr(execute._Batch, "_keepers_locked", spy_keepers)
    monkeypatch.setattr(execute._Batch, "_fix_groups", spy_full)
    committed: list[tuple[int, int]] = []
    try:
        plan = prepare_fix(monitor, "items")
        assert plan.groups == 16
        pg.execute("UPDATE item SET k = 1000 WHERE id = 10")  # the keeper of group 5 (k = 5: ids 10, 11)
        report = run_fix(monitor, "items", plan, batch_size=4,
                         progress=lambda p: committed.append((p.groups_done, p.skipped)))
    finally:
        monitor.close()
    assert calls == [("keepers", 0, 4, "ran"), ("keepers", 4, 8, "rolled back"), ("full lock", 4, 8, "ran"),
                     ("keepers", 8, 12, "ran"), ("keepers", 12, 16, "ran")]
    assert committed == [(4, 0), (8, 1), (12, 1), (16, 1)]
    assert (report.state, report.groups, report.skipped, report.deleted) == ("done", 15, 1, 15)
    assert pg.scalar("SELECT done_through FROM dupewatch_fix") == 16
    assert pg.rows("SELECT id, k FROM item WHERE id IN (10, 11) ORDER BY id") == [(10, 1000), (11, 5)]
    assert pg.scalar("SELECT count(*) FROM item") == 17

"""Incremental runs on PostgreSQL whose keys are counted by the database in the statement that reads them (integer
keys no row leaves NULL: `IncrementalCheck.counted_on_server`), and whose overlap window re-reads only the rows
committed since the last run read (the `xmin` of each row against the snapshot the last run read with).

On a cluster of their own: a snapshot's xmin is the oldest transaction running anywhere in the cluster, so another
test's (or process's) open transaction on the shared server would make a run re-read rows these tests count."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pgcluster import Cluster, started_cluster
from test_incremental import NOW, Runner

from dbtest import TestDatabase, make_test_database
from fix_support import ts
from monitor.dialects.mysql_polling import MySQLPolling
from monitor.dialects.postgresql_polling import PostgreSQLPolling

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from started_cluster("the xmin overlap tests", max_prepared_transactions="2")


@pytest.fixture
def pg(cluster: Cluster) -> Iterator[TestDatabase]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = str(sa.make_url(cluster.url).set(database=name).render_as_string(hide_password=False))
    engine = sa.create_engine(url)
    try:
        yield TestDatabase("postgresql", url, engine, None)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def with_numbers(db: TestDatabase) -> TestDatabase:
    """`logins` with an integer key and explicit ids (no sequence: the overlap window is the 1,000-id floor)."""
    stamp = "TIMESTAMP(6)" if db.dialect == "postgresql" else "DATETIME(6)"
    db.execute("CREATE TABLE logins (id BIGINT PRIMARY KEY, user_id INTEGER NOT NULL, device SMALLINT NOT NULL,"
               f" created_at {stamp} NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    add(db, [(1, 1, 1), (2, 1, 1), (3, 2, 1), (4, 3, 1), (5, 4, 2)])
    return db


@pytest.fixture
def numbers(pg: TestDatabase) -> TestDatabase:
    return with_numbers(pg)


@pytest.fixture(params=["postgresql", "mysql"])
def any_numbers(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[TestDatabase]:
    """`logins` on PostgreSQL (its own cluster) or MariaDB/MySQL (the shared server: it reads no transaction id)."""
    if request.param == "postgresql":
        yield with_numbers(request.getfixturevalue("pg"))
        return
    made = make_test_database("mysql", tmp_path)
    yield with_numbers(next(made))
    made.close()


def add(db: TestDatabase, rows: list[tuple[int, int, int]], conn: sa.Connection | None = None) -> None:
    statement = sa.text("INSERT INTO logins (id, user_id, device, created_at) VALUES (:id, :u, :d, :t)")
    params = [dict(id=i, u=u, d=d, t=ts(db, NOW)) for i, u, d in rows]
    if conn is not None:
        conn.execute(statement, params)
        return
    with db.engine.begin() as own:
        own.execute(statement, params)


def runners(db: TestDatabase, tmp_path: Any) -> Iterator[Any]:
    made: list[Runner] = []

    def make(**check: Any) -> Runner:
        made.append(Runner(db, tmp_path / "state.sqlite",
                           **{"table": "logins", "key": ["user_id", "device"], "incremental": "id", **check}))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def runner(numbers: TestDatabase, tmp_path: Any) -> Iterator[Any]:
    yield from runners(numbers, tmp_path)


@pytest.fixture
def any_runner(any_numbers: TestDatabase, tmp_path: Any) -> Iterator[Any]:
    yield from runners(any_numbers, tmp_path)


class Prepared:
    """A transaction prepared for two-phase commit (`PREPARE TRANSACTION`): it has left its session, so
    `pg_stat_activity` shows it no more. Leaving the `with` rolls it back unless `commit()` ran (a prepared
    transaction would keep the test's database from being dropped)."""

    def __init__(self, db: TestDatabase, gid: str) -> None:
        self.engine = sa.create_engine(db.url, isolation_level="AUTOCOMMIT")
        self.gid, self.open = gid, False

    def __enter__(self) -> Prepared:
        return self

    def run(self, statement: str, params: dict[str, Any] | None = None) -> Any:
        """`statement` in a transaction then prepared; what its first row's first column holds, if any."""
        with self.engine.connect() as coordinator:
            coordinator.exec_driver_sql("BEGIN")
            result = coordinator.execute(sa.text(statement), params or {})
            value = result.scalar() if result.returns_rows else None
            coordinator.exec_driver_sql(f"PREPARE TRANSACTION '{self.gid}'")
            self.open = True
        return value

    def commit(self) -> None:
        with self.engine.connect() as coordinator:
            coordinator.exec_driver_sql(f"COMMIT PREPARED '{self.gid}'")
        self.open = False

    def __exit__(self, *exc: Any) -> None:
        if self.open:
            with self.engine.connect() as coordinator:
                coordinator.exec_driver_sql(f"ROLLBACK PREPARED '{self.gid}'")
        self.engine.dispose()


def test_a_prepared_transaction_holding_an_id_far_below_the_watermark_is_read(pg, tmp_path):
    """A prepared (two-phase) transaction has left its session, so `pg_stat_activity` does not show it; it took a
    low id and commits after 1,500 later rows were read: the run after its `COMMIT PREPARED` reads it (the window
    counts it from when it was prepared), where the 1,000-id overlap alone would not."""
    pg.execute("CREATE TABLE logins (id BIGSERIAL PRIMARY KEY, user_id INTEGER NOT NULL, device SMALLINT NOT NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    insert = "INSERT INTO logins (user_id, device, created_at) VALUES (:u, 1, now())"
    pg.execute(insert, params={"u": 1})
    made = runners(pg, tmp_path)
    r = next(made)(key=["user_id", "device"])
    assert r.run().mode == "full"
    try:
        with Prepared(pg, "dw_late") as late:
            late.run(insert, {"u": 7})  # id 2, committed last
            pg.execute(insert, params={"u": 7})
            pg.execute("INSERT INTO logins (user_id, device, created_at)"
                       " SELECT g, 1, now() FROM generate_series(100, 1599) AS g")
            polled = r.run()
            assert (polled.mode, polled.groups) == ("incremental", 0)
            late.commit()
        after = r.run()
        assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 1)
        r.assert_matches_full_pass(after)
    finally:
        made.close()


def test_a_prepared_transaction_is_covered_by_a_timestamp_watermarks_overlap(pg, tmp_path, monkeypatch):
    """The same for a timestamp watermark (no fixed floor here): a row dated when its transaction began, prepared,
    then committed after later rows were read, is read by the run after `COMMIT PREPARED`."""
    import monitor.incremental.window as window

    monkeypatch.setattr(window, "TIMESTAMP_OVERLAP", timedelta(0))
    pg.execute("CREATE TABLE logins (id BIGSERIAL PRIMARY KEY, user_id INTEGER NOT NULL, device SMALLINT NOT NULL,"
               " created_at TIMESTAMP(6) NOT NULL DEFAULT clock_timestamp())",
               "CREATE INDEX logins_key ON logins (user_id, device)",
               "INSERT INTO logins (user_id, device) VALUES (40, 1)")
    made = runners(pg, tmp_path)
    r = next(made)(incremental="created_at")
    assert r.run().mode == "full"
    try:
        with Prepared(pg, "dw_late_ts") as late:
            started = late.run("INSERT INTO logins (user_id, device) VALUES (40, 1) RETURNING created_at")
            deadline = time.monotonic() + 30
            while pg.scalar("SELECT localtimestamp") < started + timedelta(seconds=2):  # await the clock
                assert time.monotonic() < deadline
            pg.execute("INSERT INTO logins (user_id, device) VALUES (41, 1)")
            polled = r.run()
            assert (polled.mode, polled.groups) == ("incremental", 0)
            late.commit()
        after = r.run()
        assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 1)
        r.assert_matches_full_pass(after)
    finally:
        made.close()


def counted_on_server(r: Runner) -> bool:
    return bool(r.monitor._incremental["inc"].counted_on_server)


@pytest.mark.parametrize("where", [None, "device <> 1"], ids=["all rows", "where"])
def test_random_changes_counted_by_the_database_match_a_full_pass(any_numbers, any_runner, where):
    """Inserts of old and new keys, deletes, a row deleted and inserted again with its id and another key: after
    each, the run's figures equal a full pass's. With a `where` (text naming the table's columns, which the
    statement cannot qualify: the rows are counted by a subquery), and without one (MariaDB/MySQL count them by
    a join)."""
    numbers, r = any_numbers, any_runner(**({"where": where} if where else {}))
    assert r.run().mode == "full"
    assert counted_on_server(r)
    rng = random.Random(19)
    next_id = 6
    for _ in range(40):
        ids = [row[0] for row in numbers.rows("SELECT id FROM logins ORDER BY id")]
        kind = rng.choice(["insert", "insert", "delete", "replace"])
        if kind == "insert":
            add(numbers, [(next_id + i, rng.randrange(8), rng.randrange(2)) for i in range(rng.randrange(1, 4))])
            next_id += 4
        elif kind == "delete" and ids:
            numbers.execute("DELETE FROM logins WHERE id = :i", params={"i": rng.choice(ids)})
        elif kind == "replace" and ids:
            victim = rng.choice(ids)
            numbers.execute("DELETE FROM logins WHERE id = :i", params={"i": victim})
            add(numbers, [(victim, rng.randrange(8), rng.randrange(2))])
        result = r.run()
        assert result.mode == "incremental"
        r.assert_matches_full_pass(result)


def test_a_known_group_whose_key_is_read_dissolves_at_that_run_without_a_recount(any_numbers, any_runner,
                                                                                  monkeypatch):
    """The statement returns every key it read with its count, so a known group whose rows fell below two is seen
    by the run that reads its key, with no known group re-counted besides."""
    from monitor.incremental.check import IncrementalCheck

    monkeypatch.setattr(IncrementalCheck, "_to_recount", lambda self, *args: ({}, 0, 0))
    numbers, r = any_numbers, any_runner()
    assert r.run().groups == 1  # (1, 1): rows 1 and 2
    numbers.execute("DELETE FROM logins WHERE id IN (1, 2)")
    add(numbers, [(6, 1, 1), (7, 9, 9), (8, 9, 9)])  # (1, 1) has one row again; (9, 9) is new
    after = r.run()
    assert (after.mode, after.groups, after.new_groups, after.excess_rows) == ("incremental", 1, 1, 1)
    r.assert_matches_full_pass(after)


def test_the_window_rereads_only_rows_committed_since_the_last_run(numbers, runner):
    """Every row below the watermark committed before the last run read is left out of the overlap window, also
    after a restart (the mark is in the state file) and after VACUUM FREEZE (a frozen row keeps its xmin)."""
    r = runner()
    r.run()
    add(numbers, [(6, 5, 5), (7, 5, 5)])
    first = r.run()
    assert (first.rows_scanned, first.new_groups, first.groups) == (2, 1, 2)
    again = r.run()  # rows 1-7 lie inside the 1,000-id overlap window; none committed since the last run
    assert (again.mode, again.rows_scanned, again.new_groups, again.groups) == ("incremental", 0, 0, 2)
    r.restart()
    assert r.run().rows_scanned == 0
    with numbers.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (FREEZE) logins")
    frozen = r.run()
    assert (frozen.rows_scanned, frozen.groups) == (0, 2)
    add(numbers, [(8, 2, 1)])  # joins (2, 1), row 3
    after = r.run()
    assert (after.rows_scanned, after.new_groups, after.groups) == (1, 1, 3)
    r.assert_matches_full_pass(after)


@pytest.mark.parametrize("savepoint", [False, True], ids=["transaction", "subtransaction"])
def test_a_transaction_begun_before_a_run_and_committed_after_the_next_is_read(numbers, runner, savepoint):
    """The late transaction writes its row (below the watermark) before a run reads, so its id is older than the
    ids that run hands out next, and commits only after the following run: the mark is the snapshot's xmin (the
    oldest transaction still running), not its xmax, so the row is read (a filter by the transactions begun since
    the last run would miss it). In a subtransaction (a savepoint) the row's xmin is the subtransaction's id."""
    r = runner()
    assert r.run().groups == 1
    late_engine = sa.create_engine(numbers.url)
    try:
        with late_engine.connect() as late:
            transaction = late.begin()
            if savepoint:
                late.exec_driver_sql("SAVEPOINT s")
            add(numbers, [(50, 4, 2)], conn=late)  # joins row 5's key (4, 2)
            if savepoint:
                late.exec_driver_sql("RELEASE SAVEPOINT s")
            during = r.run()  # not committed: not seen
            assert (during.mode, during.groups) == ("incremental", 1)
            add(numbers, [(100, 7, 7), (101, 8, 8)])  # the watermark passes 50
            before = r.run()
            assert (before.rows_scanned, before.groups) == (2, 1)
            transaction.commit()
    finally:
        late_engine.dispose()
    after = r.run()
    # Rows 100 and 101 are read again with it: they committed while the late transaction, older, still ran.
    assert (after.mode, after.rows_scanned, after.new_groups, after.groups) == ("incremental", 3, 1, 2)
    r.assert_matches_full_pass(after)
    assert r.run().rows_scanned == 0  # once no older transaction runs, none is read again


def test_marks_too_far_apart_or_backwards_reread_the_whole_window():
    """Transaction ids compare modulo 2^32: marks 2^30 or more apart (or going backwards: another cluster, a
    restored backup) bind no mark, and the run re-reads its whole overlap window."""
    rules = PostgreSQLPolling()
    assert rules.committed_since("1000", "1000") == "1000"
    assert rules.committed_since(str(2 ** 32 + 7), str(2 ** 32 + 900)) == "7"  # the 32-bit xid of an epoch's id
    assert rules.committed_since("1000", str(1000 + 2 ** 30)) is None
    assert rules.committed_since("5000", "4000") is None
    assert rules.committed_since("not a mark", "4000") is None


# -- MariaDB/MySQL: the overlap window's digest (`Dialect.window_digest`) ----------------------------------------


@pytest.fixture
def mysql_numbers(tmp_path: Any) -> Iterator[TestDatabase]:
    """`logins` on the shared MariaDB/MySQL server: no row shows its transaction, so each run takes a digest of
    the window the next run re-reads."""
    made = make_test_database("mysql", tmp_path)
    yield with_numbers(next(made))
    made.close()


@pytest.fixture
def mysql_runner(mysql_numbers: TestDatabase, tmp_path: Any) -> Iterator[Any]:
    yield from runners(mysql_numbers, tmp_path)


def window_rows(db: TestDatabase, r: Runner) -> int:
    """The rows the next run's overlap window holds (the whole table: its ids lie within 1,000 of the top)."""
    return int(db.rows("SELECT count(*) FROM logins")[0][0])


def test_an_unchanged_overlap_window_is_not_read_again(mysql_numbers, mysql_runner):
    """Only the rows past the watermark are read while nothing in the window changed, also after a restart (the
    digest is in the state file)."""
    r = mysql_runner()
    assert r.run().mode == "full"
    assert r.monitor._incremental["inc"].digest is not None
    quiet = r.run()  # rows 1-5 lie inside the 1,000-id overlap window, unchanged since the full pass
    assert (quiet.mode, quiet.rows_scanned, quiet.groups) == ("incremental", 0, 1)
    add(mysql_numbers, [(6, 5, 5), (7, 5, 5)])
    first = r.run()
    assert (first.rows_scanned, first.new_groups, first.groups) == (2, 1, 2)
    r.restart()
    again = r.run()
    assert (again.mode, again.rows_scanned, again.groups) == ("incremental", 0, 2)
    r.assert_matches_full_pass(again)


def test_a_run_reads_the_window_only_where_its_digest_changed(mysql_numbers, mysql_runner):
    """A run of one statement (`_folded_pass`) reads the rows from the watermark where the window's digest is the one
    the last run took, and from the window's start where it differs: the statement's own read of the table
    (`dupewatch_read` in MariaDB's ANALYZE of the statement the run sent, with its values) is a range over the new
    rows only, or over the window and them. (Bounded by `:watermark OR the digest differs`, the range MariaDB planned
    covered the window either way, and its rows were read and dropped, once the digest's read was more than
    `expensive_subquery_limit` rows, 100 by default: below it MariaDB computes the digest while it plans.)"""
    if "mariadb" not in str(mysql_numbers.scalar("SELECT VERSION()")).lower():
        pytest.skip("ANALYZE FORMAT=JSON is MariaDB's")
    r = mysql_runner()
    r.run()
    add(mysql_numbers, [(100 + i, 1000 + i, 1) for i in range(300)])  # the window the next runs take a digest of
    r.run()
    sent: list[tuple[str, Any]] = []

    def heard(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("SELECT group_concat"):
            sent.append((statement, parameters))

    sa.event.listen(r.monitor.database("d").engine, "before_cursor_execute", heard)

    def rows_read(statement: str, parameters: Any) -> int:
        with mysql_numbers.engine.connect() as conn:
            plan = json.loads(conn.exec_driver_sql("ANALYZE FORMAT=JSON " + statement, parameters).scalar())
        found: list[int] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("table_name") == "dupewatch_read":
                    found.append(int(node["r_rows"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(plan)
        assert len(found) == 1
        return found[0]

    add(mysql_numbers, [(400, 2, 1), (401, 9, 9), (402, 9, 9)])  # row 400 joins row 3's key (2, 1)
    quiet = r.run()
    assert (quiet.rows_scanned, quiet.new_groups) == (3, 2)
    assert rows_read(*sent[-1]) == 3  # the new rows: the window's 305 are not read
    r.assert_matches_full_pass(quiet)
    add(mysql_numbers, [(50, 4, 2), (403, 20, 1)])  # row 50 commits late inside the window: joins row 5's key
    late = r.run()
    assert late.new_groups == 1
    assert rows_read(*sent[-1]) == window_rows(mysql_numbers, r) == 310  # the window's 309 rows and row 403
    r.assert_matches_full_pass(late)


def test_a_row_committed_late_inside_the_window_is_counted(mysql_numbers, mysql_runner):
    """A row with an id below the watermark, committed after the run that read past it: the window's digest
    differs, the window is read again and the row's key counted (a run trusting the old digest would miss it)."""
    r = mysql_runner()
    r.run()
    add(mysql_numbers, [(10, 6, 1), (11, 7, 1)])  # the watermark moves to 11, above the late row's id
    assert r.run().rows_scanned == 2
    add(mysql_numbers, [(8, 2, 1)])  # joins row 3's key (2, 1)
    late = r.run()
    assert (late.mode, late.new_groups, late.groups) == ("incremental", 1, 2)
    assert late.rows_scanned == window_rows(mysql_numbers, r)
    r.assert_matches_full_pass(late)
    assert r.run().rows_scanned == 0


def test_a_replace_into_with_a_new_key_inside_the_window_is_counted(mysql_numbers, mysql_runner):
    """`REPLACE INTO` gives row 4 (key (3, 1)) row 3's key (2, 1) with the same id and incremental value."""
    r = mysql_runner()
    r.run()
    assert r.run().rows_scanned == 0
    mysql_numbers.execute("REPLACE INTO logins (id, user_id, device, created_at) VALUES (4, 2, 1, :t)",
                          params={"t": ts(mysql_numbers, NOW)})
    replaced = r.run()
    assert (replaced.mode, replaced.new_groups, replaced.groups) == ("incremental", 1, 2)
    assert replaced.rows_scanned == window_rows(mysql_numbers, r)
    r.assert_matches_full_pass(replaced)


def test_a_key_update_inside_the_window_is_counted(mysql_numbers, mysql_runner):
    r = mysql_runner()
    r.run()
    assert r.run().rows_scanned == 0
    mysql_numbers.execute("UPDATE logins SET user_id = 4, device = 2 WHERE id = 4")  # joins row 5's key
    updated = r.run()
    assert (updated.new_groups, updated.groups) == (1, 2)
    assert updated.rows_scanned == window_rows(mysql_numbers, r)
    r.assert_matches_full_pass(updated)


def test_a_delete_inside_the_window_rereads_it(mysql_numbers, mysql_runner, monkeypatch):
    """A row deleted inside the window changes its digest: the window is read again (and, with no known group
    re-counted besides, its keys say that the group of the deleted row dissolved)."""
    from monitor.incremental.check import IncrementalCheck

    monkeypatch.setattr(IncrementalCheck, "_to_recount", lambda self, *args: ({}, 0, 0))
    r = mysql_runner()
    assert r.run().groups == 1  # (1, 1): rows 1 and 2
    assert r.run().rows_scanned == 0
    mysql_numbers.execute("DELETE FROM logins WHERE id = 2")
    deleted = r.run()
    assert deleted.rows_scanned == window_rows(mysql_numbers, r) == 4
    assert (deleted.groups, deleted.excess_rows) == (0, 0)
    r.assert_matches_full_pass(deleted)


def test_a_null_key_part_given_a_value_inside_the_window_is_counted(tmp_path):
    """With `nulls = "distinct"` a row with a NULL key part is none of the check's rows (nor of the digest's);
    row 4's (2, NULL) becoming (2, 1) joins row 3's group: the window's digest differs and the window is read
    again. A row moving its NULL to the other key part stays out of the check's rows: nothing to read."""
    made = make_test_database("mysql", tmp_path)
    db = next(made)
    try:
        db.execute("CREATE TABLE logins (id BIGINT PRIMARY KEY, user_id INTEGER NULL, device SMALLINT NULL,"
                   " created_at DATETIME(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
        add(db, [(1, 1, 1), (2, 1, 1), (3, 2, 1), (5, 4, 2)])
        db.execute("INSERT INTO logins (id, user_id, device, created_at) VALUES (4, 2, NULL, :t)",
                   params={"t": ts(db, NOW)})
        for r in runners(db, tmp_path):
            inc = r(nulls="distinct")
            inc.run()
            assert inc.monitor._incremental["inc"].digest is not None
            assert inc.run().rows_scanned == 0
            db.execute("UPDATE logins SET user_id = NULL, device = 2 WHERE id = 4")
            assert inc.run().rows_scanned == 0
            db.execute("UPDATE logins SET user_id = 2, device = 1 WHERE id = 4")
            valued = inc.run()
            assert (valued.rows_scanned, valued.new_groups, valued.groups) == (5, 1, 2)
            inc.assert_matches_full_pass(valued)
            assert inc.run().rows_scanned == 0
    finally:
        made.close()


def test_a_run_of_one_statement_counts_a_row_committed_before_it_and_the_next_run_one_committed_after(
        mysql_numbers, mysql_runner, monkeypatch):
    """Without a sequence to read (explicit ids), a run reads the highest id, the window digests and the new rows
    in one statement, in one snapshot: a row committed inside the window as the run starts is counted by that
    run; one committed right after the statement is in neither its rows nor the digest it keeps, so the next run's
    digest differs and reads the window again."""
    import monitor.incremental.check as check_module

    r = mysql_runner()
    r.run()
    add(mysql_numbers, [(10, 6, 1), (11, 7, 1)])  # the watermark moves to 11
    r.run()
    original_window, original_pass = check_module.window_for, check_module.IncrementalCheck._counted_pass
    committed: list[int] = []

    def commit_before(conn: Any, check: Any) -> Any:
        if not committed:
            add(mysql_numbers, [(8, 2, 1)])  # joins row 3's key (2, 1), below the watermark 11
            committed.append(8)
        return original_window(conn, check)

    monkeypatch.setattr(check_module, "window_for", commit_before)
    before = r.run()
    assert committed == [8]
    assert (before.new_groups, before.groups) == (1, 2)  # the window's digest differed within the statement
    assert before.rows_scanned == window_rows(mysql_numbers, r)
    r.assert_matches_full_pass(before)
    monkeypatch.setattr(check_module, "window_for", original_window)
    assert r.run().rows_scanned == 0

    def commit_after(self: Any, *args: Any) -> Any:
        if len(committed) == 1:
            add(mysql_numbers, [(9, 4, 2)])  # joins row 5's key (4, 2), below the watermark 11
            committed.append(9)
        return original_pass(self, *args)

    monkeypatch.setattr(check_module.IncrementalCheck, "_counted_pass", commit_after)
    during = r.run()
    assert committed == [8, 9] and during.rows_scanned == 0  # read before the commit: the window had not changed
    after = r.run()
    assert (after.new_groups, after.groups) == (1, 3)
    assert after.rows_scanned == window_rows(mysql_numbers, r)
    r.assert_matches_full_pass(after)


def test_a_row_committed_between_the_digests_and_the_read_is_counted_by_the_next_run(tmp_path, monkeypatch):
    """With an AUTO_INCREMENT id (whose position is read after the highest id, so that no row of the statement's
    snapshot lies ahead of it) the digests are taken in the run's first statement, before its rows are read: a row
    committed inside the window after that statement is not in the digest the run keeps, so the next run's
    differs and reads it."""
    import monitor.incremental.check as check_module

    made = make_test_database("mysql", tmp_path)
    db = next(made)
    try:
        db.execute("CREATE TABLE logins (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id INTEGER NOT NULL,"
                   " device SMALLINT NOT NULL, created_at DATETIME(6) NOT NULL)",
                   "CREATE INDEX logins_key ON logins (user_id, device)")
        add(db, [(1, 1, 1), (2, 1, 1), (3, 2, 1), (4, 3, 1), (5, 4, 2)])
        make = runners(db, tmp_path)
        r = next(make)()
        r.run()
        assert r.monitor._incremental["inc"].digest is not None
        add(db, [(10, 6, 1), (11, 7, 1)])
        r.run()
        original = check_module.window_for
        committed = []

        def late_commit(conn: Any, check: Any, *rest: Any) -> Any:
            if not committed:
                add(db, [(8, 2, 1)])  # joins row 3's key (2, 1), below the watermark 11
                committed.append(8)
            return original(conn, check, *rest)

        monkeypatch.setattr(check_module, "window_for", late_commit)
        during = r.run()
        # the window's digest, taken before the commit, had not changed
        assert committed and during.rows_scanned == 0, (during.mode, during.notes)
        after = r.run()
        assert (after.new_groups, after.groups) == (1, 2)
        assert after.rows_scanned == window_rows(db, r)
        r.assert_matches_full_pass(after)
        next(make, None)  # closes the runner
    finally:
        made.close()


def test_a_group_found_by_an_incremental_run_is_seen_gone_among_the_keys_of_one_row(mysql_numbers, mysql_runner):
    """A group an incremental run found (not the full pass), whose rows are then deleted but for a new one: the
    next run of the same process reads that key among the keys of one row and drops the group (the set of known
    identities they are looked up in follows the groups each run adds and removes), and the one after it, with
    the group gone, still finds it again once the key has two rows."""
    r = mysql_runner()
    r.run()
    add(mysql_numbers, [(10, 6, 1), (11, 6, 1)])
    found = r.run()
    assert (found.mode, found.new_groups, found.groups) == ("incremental", 1, 2)
    mysql_numbers.execute("DELETE FROM logins WHERE id IN (10, 11)")
    add(mysql_numbers, [(12, 6, 1)])  # the key (6, 1) has one row: the group is gone
    gone = r.run()
    assert (gone.mode, gone.groups) == ("incremental", 1)
    r.assert_matches_full_pass(gone)
    add(mysql_numbers, [(13, 6, 1)])
    back = r.run()
    assert (back.new_groups, back.groups) == (1, 2)
    r.assert_matches_full_pass(back)


def test_two_checks_of_one_subject_see_a_group_the_other_found_gone_among_the_keys_of_one_row(mysql_numbers,
                                                                                                 tmp_path):
    """Two checks of one table, key and watermark share one state, whose known groups each run changes in place:
    a group check `b`'s run found, then left with one new row, is dropped by check `a`'s next run (whose set of
    known identities, kept from its own last run, does not hold it)."""
    from monitor.config import config_from_dict
    from monitor.engine import Monitor
    from monitor.history import History

    config = config_from_dict({"databases": {"d": {"url": mysql_numbers.url}}, "checks": [
        {"name": name, "database": "d", "table": "logins", "key": ["user_id", "device"], "incremental": "id"}
        for name in ("a", "b")]})
    history = History(tmp_path / "shared.sqlite")
    monitor = Monitor(config, state=history)
    oracle = Runner(mysql_numbers, tmp_path / "oracle.sqlite", table="logins", key=["user_id", "device"])
    try:
        assert monitor.state_key("a") == monitor.state_key("b")
        assert monitor.run("a").mode == "full"
        add(mysql_numbers, [(10, 7, 7)])
        assert monitor.run("a").mode == "incremental"  # `a` keeps the known identities of this state
        add(mysql_numbers, [(11, 6, 1), (12, 6, 1)])
        found = monitor.run("b")
        assert (found.mode, found.new_groups, found.groups) == ("incremental", 1, 2)
        mysql_numbers.execute("DELETE FROM logins WHERE id IN (11, 12)")
        add(mysql_numbers, [(13, 6, 1)])  # the key (6, 1) has one row: the group `b` found is gone
        gone = monitor.run("a")
        assert (gone.mode, gone.error) == ("incremental", None)
        assert (gone.groups, gone.excess_rows) == oracle.oracle() == (1, 1)
    finally:
        oracle.close()
        monitor.close()
        history.close()


def test_keys_of_one_row_cut_short_by_group_concat_re_count_every_known_group(mysql_numbers, mysql_runner,
                                                                              monkeypatch):
    """The keys of one row come back as one GROUP_CONCAT text, which MariaDB cuts at `group_concat_max_len`: a
    known group of one row left among the keys cut off would be missed, so the run re-counts every known group."""
    from monitor.incremental.check import IncrementalCheck

    asked: list[bool] = []

    def to_recount(self: IncrementalCheck, state: Any, removals: Any, recount_all: bool, now: float) -> Any:
        asked.append(recount_all)
        return (dict(state.groups) if recount_all else {}), 0, 0

    monkeypatch.setattr(IncrementalCheck, "_to_recount", to_recount)
    with mysql_numbers.engine.connect() as conn:
        limit = int(conn.exec_driver_sql("SELECT @@group_concat_max_len").scalar() or 0)
    if limit > 4_000_000:
        pytest.skip(f"group_concat_max_len is {limit:,}: cutting it short takes too many rows")
    r = mysql_runner()
    assert r.run().groups == 1  # (1, 1): rows 1 and 2
    mysql_numbers.execute("DELETE FROM logins WHERE id = 2")  # (1, 1) keeps one row, inside the overlap window
    many = limit // 20 + 2_000  # keys of one row of 19 characters and a space each: more than the text holds
    mysql_numbers.execute(
        "INSERT INTO logins (id, user_id, device, created_at) "
        f"SELECT 10000 + seq, 2000000000 + seq, -30000, NOW(6) FROM seq_1_to_{many}")
    cut = r.run()
    assert cut.mode == "incremental"
    assert asked[-1] is True
    assert (cut.groups, cut.excess_rows) == (0, 0)
    r.assert_matches_full_pass(cut)


def test_keys_of_more_than_one_row_cut_short_by_group_concat_make_the_run_a_full_pass(mysql_numbers, mysql_runner):
    """The keys of more than one row come back with their counts as one GROUP_CONCAT text too: a new group among
    the keys MariaDB cut off at `group_concat_max_len` would be missed, so the run is a full pass and says why."""
    with mysql_numbers.engine.connect() as conn:
        limit = int(conn.exec_driver_sql("SELECT @@group_concat_max_len").scalar() or 0)
    if limit > 4_000_000:
        pytest.skip(f"group_concat_max_len is {limit:,}: cutting it short takes too many rows")
    r = mysql_runner()
    assert r.run().groups == 1  # (1, 1): rows 1 and 2
    keys = limit // 40 + 1_000  # two rows each, each row's key and count 22 characters: more than the text holds
    mysql_numbers.execute(
        "INSERT INTO logins (id, user_id, device, created_at) "
        f"SELECT 10000 + seq, 2000000000 + seq DIV 2, -30000, NOW(6) FROM seq_2_to_{2 * keys + 1}")
    cut = r.run()
    assert cut.mode == "full"
    assert any("did not fit in one text (group_concat_max_len)" in note for note in cut.notes), cut.notes
    assert (cut.groups, cut.excess_rows) == (keys + 1, keys + 1)
    r.assert_matches_full_pass(cut)


def test_a_run_of_one_statement_sees_a_truncate_and_reload_and_is_a_full_pass(mysql_numbers, mysql_runner,
                                                                              monkeypatch):
    """TRUNCATE and a reload with the same ids, beyond the overlap window, between two runs of one statement each
    (`_folded_pass`): the InnoDB table id the statement reads with the rows changed, so the run is a full pass; the
    statement stays the run's only one against the table. (Read at each run here: `storage_identity_every`.)"""
    monkeypatch.setattr(MySQLPolling, "storage_identity_every", None)
    r = mysql_runner()
    add(mysql_numbers, [(i, i, 1) for i in range(100, 1600)])
    r.run()
    mysql_numbers.execute("TRUNCATE logins")
    add(mysql_numbers, [(i, i // 2, 1) for i in range(100, 1600)])  # 750 groups, most below the window
    statements: list[str] = []
    sa.event.listen(r.monitor.database("d").engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    after = r.run()
    assert after.mode == "full" and any("truncated" in n for n in after.notes), after.notes
    r.assert_matches_full_pass(after)
    statements.clear()
    assert r.run().mode == "incremental"
    # (a run may also re-count a slice of the known groups, by their keys sent as JSON: a statement of its own)
    reads = [s for s in statements if "logins" in s and "JSON_TABLE" not in s]
    assert len(reads) == 1 and "INNODB_SYS_TABLES" in reads[0], reads


def test_the_window_digest_spells_null_out_only_for_nullable_columns(tmp_path):
    """The digest's texts give a NULL an `N` only in a column that may hold one (a NOT NULL column's part is never
    left out by CONCAT_WS: a COALESCE per column and row was a fifth of the digest's cost); a NULL moving to another
    key part still changes the digest (`test_a_null_key_part_given_a_value_inside_the_window_is_counted`)."""
    made = make_test_database("mysql", tmp_path)
    db = next(made)
    try:
        db.execute("CREATE TABLE logins (id BIGINT PRIMARY KEY, user_id INTEGER NOT NULL, device SMALLINT NULL,"
                   " created_at DATETIME(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
        add(db, [(1, 1, 1), (2, 1, 1), (3, 2, 1)])
        for r in runners(db, tmp_path):
            inc = r(nulls="distinct")
            inc.run()
            digest = inc.monitor._incremental["inc"].digest
            assert digest is not None
            text = str(digest.compile(dialect=db.engine.dialect)).lower()
            assert "coalesce(logins.device" in text and "coalesce(hex(logins.device)" in text
            assert "coalesce(logins.id" not in text and "coalesce(logins.user_id" not in text
            assert "coalesce(hex(logins.id)" not in text and "coalesce(hex(logins.user_id)" not in text
            db.execute("UPDATE logins SET device = NULL WHERE id = 3")
            add(db, [(4, 2, 1)])
            moved = inc.run()
            inc.assert_matches_full_pass(moved)
    finally:
        made.close()


def test_a_key_part_swapped_between_two_rows_of_the_window_is_counted(tmp_path):
    """Rows 5 (user 3, device 1) and 6 (user 9, device 2) swap their user ids: row 5 becomes (9, 1), a duplicate
    of row 7. The window digest must differ. A sum over rows of an XOR of per-column terms is unchanged by such a
    swap whenever the two rows' other terms differ in no bit where the swapped terms differ (probability
    (3/4)**n over the n bits both span: about 6e-6 a swap for small ids and user ids, 1e-8 for full-width
    well-mixed row hashes such as the CRC32s kept here); this pair is one of them for the terms `value * K` of an
    arithmetic digest tried and not kept (benchmarks/HISTORY.md, incremental detection)."""
    made = make_test_database("mysql", tmp_path)
    db = next(made)
    try:
        db.execute("CREATE TABLE logins (id BIGINT PRIMARY KEY, user_id INTEGER NOT NULL, device SMALLINT NOT NULL,"
                   " created_at DATETIME(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
        add(db, [(1, 1, 1), (2, 1, 1), (5, 3, 1), (6, 9, 2), (7, 9, 1)])
        for r in runners(db, tmp_path):
            inc = r()
            inc.run()
            assert inc.monitor._incremental["inc"].digest is not None
            assert inc.run().rows_scanned == 0
            db.execute("UPDATE logins SET user_id = CASE id WHEN 5 THEN 9 ELSE 3 END WHERE id IN (5, 6)")
            swapped = inc.run()
            inc.assert_matches_full_pass(swapped)
            assert swapped.groups == 2
    finally:
        made.close()


def test_a_run_of_one_statement_sends_four_commands_and_its_statement_is_watched(mysql_numbers, mysql_runner,
                                                                                  monkeypatch):
    """A run without a sequence to read, on MariaDB/MySQL: COM_PING, its one statement (on the driver's cursor,
    after the engine's `before_cursor_execute` listeners, which re-arm the client-side deadline; then the known
    groups' re-count where one is due), the release of named locks and one ROLLBACK, last. A driver's error in
    that statement is reported as the database's (one line), not as an internal error."""
    import pymysql.connections
    from pymysql.constants import COMMAND

    r = mysql_runner()
    r.run()
    add(mysql_numbers, [(10, 6, 1), (11, 7, 1)])
    r.run()  # the statements built and compiled
    add(mysql_numbers, [(12, 8, 1), (13, 2, 1)])  # joins row 3's key (2, 1)
    sent: list[str] = []
    heard: list[str] = []
    original = pymysql.connections.Connection._execute_command

    def recording(self: Any, command: int, sql: Any) -> Any:
        text = sql if isinstance(sql, str) else bytes(sql).decode()
        sent.append("ping" if command == COMMAND.COM_PING else text.split("(", 1)[0].strip())
        return original(self, command, sql)

    engine = r.monitor.database("d").engine
    listener = lambda _conn, _cursor, statement, *_: heard.append(statement.split("(", 1)[0].strip())  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", recording)
    result = r.run()
    monkeypatch.undo()
    # (the known groups, fewer than RECOUNT_BUDGET, are re-counted at every run: a statement of their own)
    assert heard[0] == "SELECT group_concat" and all(h.startswith("SELECT counted.ord") for h in heard[1:])
    assert sent == ["ping", *heard, "DO RELEASE_ALL_LOCKS", "ROLLBACK"]
    assert (result.mode, result.new_groups, result.rows_scanned) == ("incremental", 1, 2)
    r.assert_matches_full_pass(result)
    mysql_numbers.execute("ALTER TABLE logins DROP COLUMN device")
    failed = r.monitor.run("inc")
    assert failed.error is not None and "Unknown column" in failed.error and "internal error" not in failed.error
    assert "\n" not in failed.error

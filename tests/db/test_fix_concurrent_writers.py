"""The fix of an unreferenced table against writers that delete and update keepers and duplicates while it runs
(threads): an oracle of its own, from what each writer committed, not from the fix's report.

Each row belongs to one writer, so its committed history is that writer's log, in order. After the fix: the rows
archived, left and deleted by writers are the rows seeded, each once; an archived row is exactly the row as the
writers last left it, still holding its planned key; no planned keeper was archived; every group the fix touched
kept its keeper (alive, or deleted by a writer); and undo brings back exactly what was archived.
"""

from __future__ import annotations

import random
import threading

import sqlalchemy as sa

from fix_support import FixThread, make_config
from monitor.engine import Monitor
from monitor.fix import prepare_fix
from monitor.fix.undo import undo_fix

GROUPS, WRITERS = 240, 3
CHECK = [{"name": "visits", "table": "visit", "key": ["k"]}]
MOVE = sa.text("UPDATE visit SET k = :k WHERE id = :i")
TOUCH = sa.text("UPDATE visit SET v = :v WHERE id = :i")


def _seed(db, partitioned: bool = False) -> dict[int, tuple[int, int]]:
    if partitioned:  # a writer moving a row to another key moves it to another partition under the fix
        db.execute("CREATE TABLE visit (id INTEGER, k INTEGER NOT NULL, v INTEGER NOT NULL, PRIMARY KEY (id, k)) "
                   "PARTITION BY RANGE (k)",
                   f"CREATE TABLE visit_low PARTITION OF visit FOR VALUES FROM (0) TO ({GROUPS // 2})",
                   f"CREATE TABLE visit_high PARTITION OF visit FOR VALUES FROM ({GROUPS // 2}) TO (MAXVALUE)")
    else:
        db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v INTEGER NOT NULL)")
    rng = random.Random(16)
    rows: dict[int, tuple[int, int]] = {}
    next_id = 1
    for k in range(GROUPS):
        for _ in range(rng.choice((2, 2, 3))):
            rows[next_id] = (k, 0)
            next_id += 1
    db.execute("INSERT INTO visit VALUES (:id, :k, :v)",
               params=[{"id": i, "k": k, "v": v} for i, (k, v) in rows.items()])
    return rows


def test_writers_deleting_and_updating_keepers_and_duplicates_during_the_fix(pg):
    _writers_during_the_fix(pg)


def test_writers_moving_rows_out_of_the_checks_where_during_the_fix(pg):
    """The check counts rows with v < 2 only: a writer's update takes a keeper or a duplicate out of it while the
    fix runs; a row is archived only as a row inside the check's `where`."""
    _writers_during_the_fix(pg, where="v < 2")


def test_writers_moving_rows_between_partitions_during_the_fix(pg):
    """PostgreSQL, a partitioned table: a writer's key update moves the row to another partition, which a waiting
    DELETE meets as a serialization failure (the batch is rolled back and run again)."""
    _writers_during_the_fix(pg, partitioned=True)


def test_writers_during_the_fix_mariadb(mysql):
    """The same writers against MariaDB's path (locks every planned row, READ COMMITTED)."""
    _writers_during_the_fix(mysql)


def _writers_during_the_fix(pg, partitioned: bool = False, where: str | None = None) -> None:
    seeded = _seed(pg, partitioned)
    keeper = {}
    for i, (k, _v) in sorted(seeded.items()):
        keeper.setdefault(k, i)  # keep = first, ordered by the primary key
    state = dict(seeded)  # each row's last committed (k, v), by its one writer
    deleted: set[int] = set()
    monitor = Monitor(make_config(pg, [{**CHECK[0], "where": where}] if where else CHECK))
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        rng = random.Random(n)
        mine = [i for i in seeded if i % WRITERS == n]
        engine = sa.create_engine(pg.url)
        try:
            while not stop.is_set():
                i = rng.choice(mine)
                if i in deleted:
                    continue
                op = rng.random()
                with engine.begin() as conn:
                    if op < 0.15:
                        if conn.execute(sa.text("DELETE FROM visit WHERE id = :i"), {"i": i}).rowcount:
                            deleted.add(i)
                    elif op < 0.3:  # moves the row to a key of its own, or into another group
                        new = (100_000 + i if op < 0.22 else rng.randrange(GROUPS), state[i][1])
                        if conn.execute(MOVE, {"k": new[0], "i": i}).rowcount:
                            state[i] = new
                    else:
                        new = (state[i][0], state[i][1] + 1)
                        if conn.execute(TOUCH, {"v": new[1], "i": i}).rowcount:
                            state[i] = new
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    try:
        plan = prepare_fix(monitor, "visits")
        threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(WRITERS)]
        fix = FixThread(monitor, "visits", plan, batch_size=4)
        for t in threads:
            t.start()
        fix.start()
        fix.join(120)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert fix.error is None and fix.report is not None, fix.error
        report = fix.report
        archive = pg.scalar("SELECT archive_table FROM dupewatch_fix WHERE fix_id = :f", {"f": report.fix_id})
        archived = {i: (k, v) for i, k, v in pg.rows(f"SELECT id, k, v FROM {pg.q(archive)}")}
        live = {i: (k, v) for i, k, v in pg.rows("SELECT id, k, v FROM visit")}
        assert len(archived) == report.deleted == report.archived
        assert not set(archived) & set(live) and not set(archived) & deleted and not set(live) & deleted
        assert set(archived) | set(live) | deleted == set(seeded)
        assert {i: state[i] for i in live} == live
        assert {i: state[i] for i in archived} == archived  # the row as the writers last left it
        assert all(k == seeded[i][0] for i, (k, _v) in archived.items())  # still its planned key
        assert where is None or all(v < 2 for _k, v in archived.values())  # still inside the check's where
        assert not set(keeper.values()) & set(archived)
        touched = {seeded[i][0] for i in archived}
        assert all(keeper[k] in live or keeper[k] in deleted for k in touched)
        assert report.groups + report.skipped == GROUPS and report.skipped > 0, report

        undo_fix(monitor, report.fix_id)
        restored = {i: (k, v) for i, k, v in pg.rows("SELECT id, k, v FROM visit")}
        assert restored == {**live, **archived}
    finally:
        stop.set()
        monitor.close()


def test_writers_inserting_and_deleting_in_groups_without_primary_key_mariadb(mysql):
    """MariaDB without a primary key (the seed incident's shape): writers insert rows into the groups (identical
    copies and other roles) and delete copies while the fix runs. Counted per row content, as multisets:
    live + archived + deleted by writers = seeded + inserted; every archived row is a seeded content, never one
    only a writer wrote; a content the fix archived keeps a live copy unless a writer deleted one."""
    from collections import Counter

    mysql.execute("CREATE TABLE membership (g INTEGER NOT NULL, u INTEGER NOT NULL, role VARCHAR(8) NOT NULL, "
                  "KEY (g, u, role))")
    seeded = Counter({(g, 7, "member"): 2 + g % 2 for g in range(GROUPS)})
    mysql.execute("INSERT INTO membership VALUES (:g, :u, :r)",
                  params=[{"g": g, "u": u, "r": r} for (g, u, r), n in seeded.items() for _ in range(n)])
    inserted: Counter = Counter()
    deleted: Counter = Counter()
    errors: list[BaseException] = []
    stop = threading.Event()
    monitor = Monitor(make_config(mysql, [{"name": "members", "table": "membership", "key": ["g", "u"]}]))

    def writer(n: int) -> None:
        rng = random.Random(100 + n)
        engine = sa.create_engine(mysql.url)
        try:
            while not stop.is_set():
                row = (rng.randrange(GROUPS) // WRITERS * WRITERS + n, 7, rng.choice(("member", "admin")))
                if row[0] >= GROUPS:
                    continue
                with engine.begin() as conn:
                    if rng.random() < 0.5:
                        conn.execute(sa.text("INSERT INTO membership VALUES (:g, :u, :r)"),
                                     {"g": row[0], "u": row[1], "r": row[2]})
                        inserted[row] += 1
                    elif conn.execute(sa.text("DELETE FROM membership WHERE g = :g AND u = :u AND role = :r LIMIT 1"),
                                      {"g": row[0], "u": row[1], "r": row[2]}).rowcount:
                        deleted[row] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    try:
        plan = prepare_fix(monitor, "members")
        threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(WRITERS)]
        fix = FixThread(monitor, "members", plan, batch_size=4)
        for t in threads:
            t.start()
        fix.start()
        fix.join(120)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert fix.error is None and fix.report is not None, fix.error
        archive = mysql.scalar("SELECT archive_table FROM dupewatch_fix WHERE fix_id = :f", {"f": fix.report.fix_id})
        archived = Counter(tuple(r) for r in mysql.rows(f"SELECT g, u, role FROM {mysql.q(archive)}"))
        live = Counter(tuple(r) for r in mysql.rows("SELECT g, u, role FROM membership"))
        assert 0 < sum(archived.values()) == fix.report.deleted == fix.report.archived
        assert live + archived + deleted == seeded + inserted
        assert set(archived) <= set(seeded)
        assert all(live[c] + deleted[c] >= 1 for c in archived)
        undo_fix(monitor, fix.report.fix_id)
        assert Counter(tuple(r) for r in mysql.rows("SELECT g, u, role FROM membership")) == live + archived
    finally:
        stop.set()
        monitor.close()

"""Benchmark: an incremental run against a full pass of the same check, measured in the same run.

Builds `login_source` in its own PostgreSQL schema (10,000,000 rows) and MariaDB database (2,000,000 rows),
each in one INSERT ... SELECT (generate_series / MariaDB's seq_1_to_N), with 1% duplicated keys (every 100th
row repeats the key of the row before it; `--dup-every N` for every Nth) and an index on the key. Then,
through the engine (`Monitor.run`,
whose `duration_ms` is what `check --json` reports), with the state in a temporary state file:

- full passes (`--full`), median of `--repeat`;
- `--runs` incremental runs, each after inserting 1,000 new rows of which 100 repeat old keys; after every
  run its figures are compared with a bare `GROUP BY ... HAVING count(*) > 1` over the whole table.

Prints both durations and the incremental/full ratio (target <= 1/100, goal 1/300) per database, and fails
when any figure differs from the bare GROUP BY's. The schema and database are dropped at the end. The key is
integers, so each run reads its rows and counts their keys in one statement (`IncrementalCheck.counted_on_server`):
the 1,000 new rows, and the rows of the 1,000-id overlap window committed since the last run read (PostgreSQL: by
`xmin`; a write transaction running elsewhere in the cluster when a run reads makes the next one read the window
again) or, on MariaDB, the whole window where its digest differs from the one the last run took (nothing below
the watermark changes in this benchmark, so none is read). An incremental run also re-counts the share of the known
groups its time since the last run calls for (a rotation of `monitor.incremental.RECOUNT_ROUNDS` slices, all of
them within `recount_every`, 5 minutes: a slice of 200 groups per 3 s on MariaDB, where the runs here come about a
second apart, so most re-count none); none on PostgreSQL, whose statistics count no deleted or updated row in this
insert-only table. The table's ids are explicit (no sequence), so each run also notes that late rows beyond the
1,000-value overlap wait for the full pass.

    .venv/bin/python benchmarks/bench_incremental.py [--pg-rows 10000000] [--mysql-rows 2000000]
        [--runs 5] [--repeat 3] [--only postgresql|mysql] [--dup-every 100]

Servers: DUPEWATCH_BENCH_PG_URL / DUPEWATCH_BENCH_MYSQL_URL, else the test URLs, else the local defaults.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from monitor.config import config_from_dict
from monitor.engine import Monitor
from monitor.history import History

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
KEY = ["user_id", "agent_type", "device_type", "os_type"]
NEW_ROWS, NEW_DUPLICATES = 1000, 100


@dataclass
class Bench:
    dialect: str
    url: str  # of the benchmark's own schema/database
    table: str
    rows: int
    build: Callable[[sa.Engine], None]
    drop: Callable[[], None]


def pg_bench(rows: int, dup_every: int = 100) -> Bench:
    base = make_url(os.environ.get("DUPEWATCH_BENCH_PG_URL") or os.environ.get("DUPEWATCH_TEST_PG_URL") or PG_URL)
    schema = f"dw_bench_inc_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")

    def build(engine: sa.Engine) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            conn.exec_driver_sql(
                f'CREATE TABLE "{schema}".login_source (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, '
                "agent_type SMALLINT NOT NULL, device_type SMALLINT NOT NULL, os_type SMALLINT NOT NULL, "
                "created_at TIMESTAMPTZ NOT NULL)")
            conn.exec_driver_sql(
                f'INSERT INTO "{schema}".login_source '
                "SELECT g, k, mod(k, 7), mod(k, 5), mod(k, 3), now() - (%d - g) * interval '10 ms' "
                "FROM (SELECT g, CASE WHEN mod(g, %d) = 0 THEN g - 1 ELSE g END AS k "
                "FROM generate_series(1, %d) AS g) AS s" % (rows, dup_every, rows))
            conn.exec_driver_sql(f'CREATE INDEX ON "{schema}".login_source ({", ".join(KEY)})')
            conn.exec_driver_sql(f'VACUUM ANALYZE "{schema}".login_source')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    return Bench("postgresql", url, "login_source", rows, build, drop)


def mysql_bench(rows: int, dup_every: int = 100) -> Bench:
    base = make_url(os.environ.get("DUPEWATCH_BENCH_MYSQL_URL") or os.environ.get("DUPEWATCH_TEST_MYSQL_URL")
                    or MYSQL_URL)
    name = f"dw_bench_inc_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")

    def build(engine: sa.Engine) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
            conn.exec_driver_sql(
                f"CREATE TABLE `{name}`.login_source (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, "
                "agent_type SMALLINT NOT NULL, device_type SMALLINT NOT NULL, os_type SMALLINT NOT NULL, "
                "created_at DATETIME(6) NOT NULL)")
            conn.exec_driver_sql(
                f"INSERT INTO `{name}`.login_source "
                "SELECT seq, k, MOD(k, 7), MOD(k, 5), MOD(k, 3), NOW(6) - INTERVAL (%d - seq) * 10000 MICROSECOND "
                "FROM (SELECT seq, CASE WHEN MOD(seq, %d) = 0 THEN seq - 1 ELSE seq END AS k "
                "FROM seq_1_to_%d) AS s" % (rows, dup_every, rows))
            conn.exec_driver_sql(f"CREATE INDEX login_source_key ON `{name}`.login_source ({', '.join(KEY)})")
            conn.exec_driver_sql(f"ANALYZE TABLE `{name}`.login_source")

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()

    url = base.set(database=name).render_as_string(hide_password=False)
    return Bench("mysql", url, "login_source", rows, build, drop)


def bare_group_by(engine: sa.Engine, table: str) -> tuple[int, int]:
    """(groups, excess rows) by the plain SQL an operator would write."""
    key = ", ".join(KEY)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            f"SELECT count(*), coalesce(sum(n - 1), 0) FROM (SELECT {key}, count(*) AS n FROM {table} "
            f"GROUP BY {key} HAVING count(*) > 1) AS g").one()
    return int(row[0]), int(row[1])


def insert_new_rows(engine: sa.Engine, table: str, next_id: int, rows: int, rng: random.Random) -> int:
    """NEW_ROWS rows past the end of the table; NEW_DUPLICATES of them repeat the key of a random old row."""
    olds = [rng.randrange(1, rows) for _ in range(NEW_DUPLICATES)]
    values = []
    for i in range(NEW_ROWS):
        k = olds[i] if i < NEW_DUPLICATES else next_id + i + 10**9
        values.append({"id": next_id + i, "u": k, "a": k % 7, "d": k % 5, "o": k % 3})
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} (id, user_id, agent_type, device_type, os_type, created_at) "
                             "VALUES (:id, :u, :a, :d, :o, CURRENT_TIMESTAMP)"), values)
    return next_id + NEW_ROWS


def measure(bench: Bench, runs: int, repeat: int) -> bool:
    engine = sa.create_engine(bench.url)
    started = time.perf_counter()
    bench.build(engine)
    print(f"\n{bench.dialect}: built {bench.rows:,} rows in {time.perf_counter() - started:.0f} s")
    state_dir = Path(tempfile.mkdtemp(prefix="dw_bench_inc_"))
    history = History(state_dir / "state.sqlite")
    config = config_from_dict({"databases": {"b": {"url": bench.url, "statement_timeout": "10m"}}, "checks": [
        {"name": "logins", "database": "b", "table": bench.table, "key": KEY, "incremental": "id"}]})
    monitor = Monitor(config, state=history)
    ok = True
    try:
        monitor.run("logins", full=True)  # warm the cache: every pass below reads from memory
        fulls = [monitor.run("logins", full=True) for _ in range(repeat)]
        if any(r.error for r in fulls):
            raise SystemExit(f"full pass failed: {fulls[0].error}")
        full_ms = statistics.median(r.duration_ms for r in fulls)
        bare_times = []
        for _ in range(repeat):
            started = time.perf_counter()
            bare = bare_group_by(engine, bench.table)
            bare_times.append((time.perf_counter() - started) * 1000)
        bare_ms = statistics.median(bare_times)
        print(f"  full pass        {full_ms:9.1f} ms  groups {fulls[-1].groups:,} excess {fulls[-1].excess_rows:,}"
              f"  (bare GROUP BY: {bare[0]:,} / {bare[1]:,} in {bare_ms:.1f} ms)")
        ok &= (fulls[-1].groups, fulls[-1].excess_rows) == bare
        rng = random.Random(10)
        next_id = bench.rows + 1
        incremental_ms = []
        for run in range(runs):
            next_id = insert_new_rows(engine, bench.table, next_id, bench.rows, rng)
            result = monitor.run("logins")
            if result.error or result.mode != "incremental":
                raise SystemExit(f"incremental run {run + 1} failed: {result.mode} {result.error}")
            bare = bare_group_by(engine, bench.table)
            same = (result.groups, result.excess_rows) == bare
            ok &= same
            incremental_ms.append(result.duration_ms)
            print(f"  incremental #{run + 1}   {result.duration_ms:9.1f} ms  rows scanned {result.rows_scanned:,}"
                  f"  new groups {result.new_groups}  groups {result.groups:,} excess {result.excess_rows:,}"
                  f"  {'= bare GROUP BY' if same else f'!= bare GROUP BY {bare}'}")
        for note in result.notes:
            print(f"  note: {note}")
        inc_ms = statistics.median(incremental_ms)
        ratio = inc_ms / full_ms
        verdict = "ok" if ratio <= 1 / 100 else "MISSED"
        goal = "goal met" if ratio <= 1 / 300 else "goal 1/300 not met"
        spread = f"{min(incremental_ms):.0f}-{max(incremental_ms):.0f} ms"
        print(f"  incremental runs: median {inc_ms:.1f} ms ({spread}) on {bench.rows:,} rows")
        print(f"  incremental/full  {inc_ms:.1f} / {full_ms:.1f} ms = 1/{1 / ratio:.0f}  "
              f"(target <= 1/100: {verdict}; {goal})")
        print(f"  incremental/bare GROUP BY  {inc_ms:.1f} / {bare_ms:.1f} ms = 1/{bare_ms / inc_ms:.0f}  "
              "(a full pass also keeps every group it finds, so it costs more than the bare query)")
        print(f"  figures equal a bare GROUP BY after every run: {'yes' if ok else 'NO'}")
        ok &= ratio <= 1 / 100
    finally:
        monitor.close()
        history.close()
        engine.dispose()
        bench.drop()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-rows", type=int, default=10_000_000)
    parser.add_argument("--mysql-rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["postgresql", "mysql"])
    parser.add_argument("--dup-every", type=int, default=100,
                        help="every Nth row repeats the key before it (100: 1%% duplicated keys, the issue's case)")
    args = parser.parse_args()
    print(f"1 row in {args.dup_every} duplicates a key ({100 / args.dup_every:g}% duplicated keys)")
    benches = []
    if args.only in (None, "postgresql"):
        benches.append(pg_bench(args.pg_rows, args.dup_every))
    if args.only in (None, "mysql"):
        benches.append(mysql_bench(args.mysql_rows, args.dup_every))
    results = [measure(b, args.runs, args.repeat) for b in benches]
    if not all(results):
        raise SystemExit("a target was missed or a figure differed from the bare GROUP BY")


if __name__ == "__main__":
    main()

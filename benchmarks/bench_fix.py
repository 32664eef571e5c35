"""Benchmark: `dupewatch fix` (plan snapshot, locked batches, archive) vs a hand-written archiving DELETE.

Builds a PostgreSQL table of ROWS rows of which EXCESS are extra copies of existing keys (pairs), then in the
same run times:
  * baseline: WITH d AS (DELETE ... USING (row_number() > 1) RETURNING *) INSERT INTO archive SELECT * FROM d
  * dupewatch: `dupewatch fix CHECK --yes --json` as a subprocess (start-up included), archive included
rebuilding the table in between, and prints the ratio (target <= 1.3x). It repeats the dupewatch run at a
quarter of the size to show that peak RSS does not grow with the number of groups.

    .venv/bin/python benchmarks/bench_fix.py [--rows 2000000] [--excess 100000]

Uses DUPEWATCH_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) and a scratch schema.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("DUPEWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SCHEMA = "dupewatch_bench_fix"


def build(engine: sa.Engine, rows: int, excess: int) -> None:
    distinct = rows - excess
    step = distinct // excess
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
        conn.exec_driver_sql(f"SET search_path = {SCHEMA}")
        conn.exec_driver_sql("CREATE TABLE login_source (id BIGSERIAL PRIMARY KEY, user_id INTEGER NOT NULL, "
                             "device TEXT NOT NULL, last_seen TIMESTAMPTZ NOT NULL, payload TEXT)")
        conn.exec_driver_sql(
            "INSERT INTO login_source (user_id, device, last_seen, payload) "
            "SELECT g, 'dev-' || mod(g, 7), timestamptz '2024-01-01' + g * interval '1 second', md5(g::text) "
            f"FROM generate_series(1, {distinct}) g")
        conn.exec_driver_sql(  # the race: a second row for every step-th key, 5 ms later
            "INSERT INTO login_source (user_id, device, last_seen, payload) "
            f"SELECT g * {step}, 'dev-' || mod(g * {step}, 7), "
            f"timestamptz '2024-01-01' + (g * {step}) * interval '1 second' + interval '5 ms', md5('dup' || g) "
            f"FROM generate_series(1, {excess}) g")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM ANALYZE {SCHEMA}.login_source")


def baseline(engine: sa.Engine) -> tuple[float, int]:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET search_path = {SCHEMA}")
        conn.exec_driver_sql("CREATE TABLE archive_by_hand AS SELECT * FROM login_source WHERE false")
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET search_path = {SCHEMA}")
        result = conn.exec_driver_sql(
            "WITH d AS (DELETE FROM login_source s USING ("
            "  SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY user_id, device ORDER BY id) AS rn"
            "  FROM login_source) x WHERE rn > 1) x WHERE s.id = x.id RETURNING s.*) "
            "INSERT INTO archive_by_hand SELECT * FROM d")
        moved = result.rowcount
    return time.perf_counter() - started, moved


def dupewatch_fix(config: Path) -> tuple[float, dict, int]:
    """Wall time, JSON report and peak RSS (KiB) of `dupewatch fix` run as its own process."""
    command = [sys.executable, "-m", "monitor.cli", "fix", "logins", "--config", str(config), "--yes", "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"dupewatch fix failed: {err.decode()}")
    return elapsed, json.loads(out), usage.ru_maxrss


def startup() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "monitor.cli", "--version"], check=True, capture_output=True)
    return time.perf_counter() - started


def write_config(directory: Path) -> Path:
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    path = directory / "bench.toml"
    path.write_text(
        f'[databases.bench]\nurl = "{url.render_as_string(hide_password=False)}"\nstatement_timeout = "30m"\n\n'
        '[[checks]]\nname = "logins"\ndatabase = "bench"\ntable = "login_source"\nkey = ["user_id", "device"]\n',
        encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--excess", type=int, default=100_000)
    args = parser.parse_args()
    engine = sa.create_engine(PG_URL)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp))
        try:
            print(f"building {args.rows:,} rows with {args.excess:,} excess rows ...", flush=True)
            build(engine, args.rows, args.excess)
            base_s, moved = baseline(engine)
            print(f"hand-written DELETE ... USING + archive: {base_s:7.2f} s ({moved:,} rows)", flush=True)
            build(engine, args.rows, args.excess)
            fix_s, report, rss = dupewatch_fix(config)
            assert report["deleted"] == report["archived"] == moved, report
            boot = startup()
            print(f"dupewatch fix (archive included):        {fix_s:7.2f} s ({report['deleted']:,} rows, "
                  f"{report['groups']:,} groups; process start-up {boot:.2f} s)")
            print(f"ratio: {fix_s / base_s:.2f}x  (without start-up {(fix_s - boot) / base_s:.2f}x; target <= 1.3x)")
            small_rows, small_excess = args.rows // 4, args.excess // 4
            build(engine, small_rows, small_excess)
            _s, small_report, small_rss = dupewatch_fix(config)
            print(f"peak RSS: {small_rss / 1024:6.1f} MiB at {small_report['groups']:,} groups, "
                  f"{rss / 1024:6.1f} MiB at {report['groups']:,} groups")
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            engine.dispose()


if __name__ == "__main__":
    main()

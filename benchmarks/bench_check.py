"""Benchmark: `dupewatch check` against the bare GROUP BY run by psql, on the same 3-million-row table.

Builds `events` (3,000,000 rows, 1% of them duplicating another row's key) in its own PostgreSQL schema,
then measures in the same run, as subprocesses, taking the median of several repetitions:

- psql start-up (`SELECT 1`) and the bare `SELECT key, count(*) ... GROUP BY key HAVING count(*) > 1`;
- a "Soda-style" baseline: the two queries Soda Core's duplicate_count issues (the count of duplicate
  groups, then a failed-rows sample), run by psql in one session;
- `dupewatch check` on a tiny table (start-up cost) and on the big table, with its peak RSS.

Prints detection time beyond start-up / bare query (target <= 1.10), peak memory (target < 150 MB), the
tiny-table wall time (target < 0.8 s), and checks that Textual & co. are not imported on the check path.
The schema is dropped at the end.

    .venv/bin/python benchmarks/bench_check.py [--rows 3000000] [--repeat 5]

The server comes from DUPEWATCH_BENCH_PG_URL, else DUPEWATCH_TEST_PG_URL, else postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HEAVY = ("textual", "apscheduler", "prometheus_client")
KEY = "account_id, email"


@dataclass
class Timed:
    seconds: float
    max_rss_mb: float
    code: int
    stdout: str


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> Timed:
    """Wall time and peak RSS of one child process (os.wait4 reports that child alone)."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Timed(elapsed, usage.ru_maxrss / 1024, proc.returncode, out.read())


def median_of(repeat: int, cmd: list[str], env: dict[str, str] | None = None,
              expect: tuple[int, ...] = (0,)) -> tuple[float, list[Timed]]:
    runs = []
    for _ in range(repeat):
        timed = run_timed(cmd, env)
        if timed.code not in expect:
            raise SystemExit(f"{cmd[0]} exited {timed.code}:\n{timed.stdout}")
        runs.append(timed)
    return statistics.median(r.seconds for r in runs), runs


def psql(libpq_url: str, *queries: str) -> list[str]:
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", libpq_url]
    for query in queries:
        cmd += ["-c", query]
    return cmd


def dupewatch_cmd() -> list[str]:
    script = Path(sys.executable).parent / "dupewatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "monitor.cli"]


def build(engine: sa.Engine, schema: str, rows: int) -> None:
    """`events`: every 100th row repeats the key of the row before it (1% duplicated keys)."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".events (id BIGINT PRIMARY KEY, account_id BIGINT NOT NULL, '
            "email TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL)")
        conn.exec_driver_sql(
            f'INSERT INTO "{schema}".events '
            "SELECT g, k, 'user' || k || '@example.com', now() - g * interval '1 second' "
            "FROM (SELECT g, CASE WHEN mod(g, 100) = 0 THEN g - 1 ELSE g END AS k "
            f"FROM generate_series(1, {rows}) AS g) AS s")
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".tiny (id INTEGER PRIMARY KEY, email TEXT)')
        conn.exec_driver_sql(f"INSERT INTO \"{schema}\".tiny SELECT g, 'u' || mod(g, 8) FROM generate_series(1, 10) g")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'VACUUM ANALYZE "{schema}".events')
    print(f"built {rows:,} rows in {time.perf_counter() - started:.1f} s")


def write_config(path: Path, url: str, schema: str) -> None:
    path.write_text(
        f'[databases.bench]\nurl_env = "DUPEWATCH_BENCH_URL"\nstatement_timeout = "10m"\n\n'
        f'[[checks]]\nname = "events"\ndatabase = "bench"\ntable = "{schema}.events"\nkey = ["account_id", "email"]\n\n'
        f'[[checks]]\nname = "tiny"\ndatabase = "bench"\ntable = "{schema}.tiny"\nkey = ["email"]\n',
        encoding="utf-8")


def imported_heavy_modules(config: Path, env: dict[str, str]) -> list[str]:
    """Modules of Textual & co. that `python -X importtime ... check` imported (should be none)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "monitor.cli", "check", "--config",
                           str(config), "tiny"], capture_output=True, text=True, env=env, check=False)
    names = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return sorted({n for n in names if n.split(".")[0] in HEAVY})


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("psql") is None:
        raise SystemExit("psql is not installed")

    url = make_url(os.environ.get("DUPEWATCH_BENCH_PG_URL") or os.environ.get("DUPEWATCH_TEST_PG_URL")
                   or DEFAULT_URL)
    url_text = url.render_as_string(hide_password=False)
    libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"dw_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    workdir = Path(tempfile.mkdtemp(prefix="dw_bench_"))
    config = workdir / "bench.toml"
    write_config(config, url_text, schema)
    env = {**os.environ, "DUPEWATCH_BENCH_URL": url_text, "NO_COLOR": "1"}
    table = f'"{schema}".events'
    bare = f"SELECT {KEY}, count(*) FROM {table} GROUP BY {KEY} HAVING count(*) > 1"
    soda_count = f"SELECT COUNT(*) FROM (SELECT {KEY}, COUNT(*) FROM {table} GROUP BY {KEY} HAVING COUNT(*) > 1) AS d"
    soda_failed = (f"WITH frequencies AS (SELECT {KEY} FROM {table} GROUP BY {KEY} HAVING COUNT(*) > 1) "
                   f"SELECT main.* FROM {table} main JOIN frequencies USING ({KEY}) LIMIT 100")
    try:
        build(engine, schema, args.rows)
        dw = dupewatch_cmd()
        # warm the cache once so every contender reads the table from shared buffers / page cache
        run_timed(psql(libpq_url, bare))
        psql_start, _ = median_of(args.repeat, psql(libpq_url, "SELECT 1"))
        bare_s, _ = median_of(args.repeat, psql(libpq_url, bare))
        soda_s, _ = median_of(args.repeat, psql(libpq_url, soda_count, soda_failed))
        tiny_s, _ = median_of(args.repeat, [*dw, "check", "--config", str(config), "tiny"], env, expect=(1,))
        big_s, big_runs = median_of(args.repeat, [*dw, "check", "--config", str(config), "events"], env, expect=(1,))
        figures = json.loads(run_timed([*dw, "check", "--json", "--config", str(config), "events"], env).stdout)
        heavy = imported_heavy_modules(config, env)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)

    check = figures["checks"][0]
    expected_groups = args.rows // 100
    peak = max(r.max_rss_mb for r in big_runs)
    detection = big_s - tiny_s
    bare_query = bare_s - psql_start
    soda_query = soda_s - psql_start
    ratio, soda_ratio = detection / bare_query, detection / soda_query
    print(f"\nrows {args.rows:,}; duplicate groups found {check['groups']:,} (expected {expected_groups:,}), "
          f"excess rows {check['excess_rows']:,}; median of {args.repeat} runs each")
    print(f"psql start-up (SELECT 1)             {psql_start * 1000:8.0f} ms")
    print(f"bare GROUP BY via psql               {bare_s * 1000:8.0f} ms  (query {bare_query * 1000:.0f} ms)")
    print(f"Soda-style count + failed rows       {soda_s * 1000:8.0f} ms  (queries {soda_query * 1000:.0f} ms)")
    print(f"dupewatch check, tiny table          {tiny_s * 1000:8.0f} ms  (start-up)")
    print(f"dupewatch check, {args.rows / 1e6:g}M rows          {big_s * 1000:8.0f} ms  "
          f"(beyond start-up {detection * 1000:.0f} ms)")
    print()
    print(f"detection beyond start-up / bare query   {ratio:5.2f}x  (target <= 1.10)   {verdict(ratio <= 1.10)}")
    print(f"detection beyond start-up / Soda-style   {soda_ratio:5.2f}x")
    print(f"peak RSS of dupewatch                    {peak:5.0f} MB  (target < 150)    {verdict(peak < 150)}")
    print(f"dupewatch check on a tiny table          {tiny_s:5.2f} s   (target < 0.8)    {verdict(tiny_s < 0.8)}")
    print(f"heavy modules imported by check          {', '.join(heavy) or 'none'}"
          f"                {verdict(not heavy)}")
    if check["groups"] != expected_groups:
        raise SystemExit("dupewatch found the wrong number of groups")


if __name__ == "__main__":
    main()

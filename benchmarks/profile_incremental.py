"""Where one MariaDB/MySQL incremental run's time goes, by counts and CPU time rather than wall-clock alone.

The machine the benchmarks run on is often shared, and wall-clock under load says little: this reports, per
incremental run of `bench_incremental.py`'s MariaDB check (same table, same inserts, each run's figures compared
with a bare GROUP BY), what does not depend on the load:

- round trips: the PyMySQL commands the run sent (COM_PING, each statement, ROLLBACKs), counted on the client;
- the server's time and CPU time per statement (`SHOW PROFILES` and `information_schema.PROFILING`, with profiling
  switched on for the monitor's connections);
- the client's CPU time (`time.thread_time`) for the whole run and its parts: the statements' execution
  (`execute`: through SQLAlchemy; `one-row`: `StatementCache.one`, on PyMySQL's cursor, the run's one statement),
  the Python work on what came back (`_counted_pass`, of it `_applied`), the state store
  (`Monitor._save_state`: the SQLite transaction of the run).

    .venv/bin/python benchmarks/profile_incremental.py [--mysql-rows 2000000] [--runs 12]

Prints one line per run and the medians. Server: DUPEWATCH_BENCH_MYSQL_URL, else the test URL, else the local
default; the database is its own and is dropped at the end.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql.connections
import sqlalchemy as sa
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_incremental import KEY, bare_group_by, insert_new_rows, mysql_bench

from monitor.config import config_from_dict
from monitor.dialects.polling import StatementCache
from monitor.engine import Monitor
from monitor.history import History
from monitor.incremental.check import IncrementalCheck

COMMANDS = {3: "statement", 14: "ping"}


def patch_cpu(owner: Any, name: str, spent: dict[str, float]) -> None:
    """Add the CPU time (ms) of each call of `owner.name` to `spent[name]`."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + (time.thread_time() - started) * 1000

    setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mysql-rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()

    sent: list[str] = []
    execute_command = pymysql.connections.Connection._execute_command

    def counted(self: Any, command: int, sql: Any) -> Any:
        text = sql if isinstance(sql, str) else bytes(sql).decode(errors="replace")
        sent.append(f"{COMMANDS.get(command, command)}: {text.split(None, 1)[0] if text else ''}")
        return execute_command(self, command, sql)

    pymysql.connections.Connection._execute_command = counted  # type: ignore[method-assign]
    spent: dict[str, float] = {}
    patch_cpu(StatementCache, "run", spent)
    patch_cpu(StatementCache, "one", spent)  # a statement of one row, on the driver's cursor where the dialect says so
    for name in ("_counted_pass", "_applied"):
        patch_cpu(IncrementalCheck, name, spent)
    patch_cpu(Monitor, "_save_state", spent)

    bench = mysql_bench(args.mysql_rows)
    engine = sa.create_engine(bench.url)
    started = time.perf_counter()
    bench.build(engine)
    print(f"built {bench.rows:,} rows in {time.perf_counter() - started:.0f} s")
    history = History(Path(tempfile.mkdtemp(prefix="dw_profile_inc_")) / "state.sqlite")
    config = config_from_dict({"databases": {"b": {"url": bench.url, "statement_timeout": "10m"}}, "checks": [
        {"name": "logins", "database": "b", "table": bench.table, "key": KEY, "incremental": "id"}]})
    monitor = Monitor(config, state=history)
    checked = monitor.database("b").engine
    event.listen(checked, "connect", lambda dbapi, _record: dbapi.query("SET profiling = 1, "
                                                                      "profiling_history_size = 100"))
    rows: list[dict[str, float]] = []
    try:
        monitor.run("logins", full=True)
        rng = random.Random(10)
        next_id = bench.rows + 1
        for run in range(args.runs):
            next_id = insert_new_rows(engine, bench.table, next_id, bench.rows, rng)
            with checked.connect() as conn:  # the pool's one connection: what it ran before this run
                floor = max([r[0] for r in conn.exec_driver_sql("SHOW PROFILES")], default=0)
            sent.clear()
            spent.clear()
            cpu, wall = time.thread_time(), time.perf_counter()
            result = monitor.run("logins")
            cpu, wall = (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000
            trips = list(sent)
            if result.error or result.mode != "incremental":
                raise SystemExit(f"run {run + 1}: {result.mode} {result.error}")
            if (result.groups, result.excess_rows) != bare_group_by(engine, bench.table):
                raise SystemExit(f"run {run + 1}: figures differ from the bare GROUP BY")
            with checked.connect() as conn:
                server = conn.exec_driver_sql(
                    "SELECT QUERY_ID, sum(DURATION) * 1000, sum(CPU_USER + CPU_SYSTEM) * 1000 "
                    "FROM information_schema.PROFILING WHERE QUERY_ID > %s GROUP BY QUERY_ID ORDER BY QUERY_ID",
                    (floor,)).all()
                texts = {r[0]: r[2] for r in conn.exec_driver_sql("SHOW PROFILES")}
            # The statements of the run, not the profiler's own (SHOW PROFILES itself is not profiled).
            ran = [(texts.get(q, ""), float(d), float(c)) for q, d, c in server
                   if not str(texts.get(q, "")).startswith("SELECT QUERY_ID")]
            main_statements = [r for r in ran if r[0].startswith("SELECT group_concat")]
            row = {"duration": result.duration_ms, "wall": wall, "client cpu": cpu, "trips": len(trips),
                   "server ms": sum(r[1] for r in ran), "server cpu": sum(r[2] for r in ran),
                   "main statement cpu": sum(r[2] for r in main_statements),
                   "other statements cpu": sum(r[2] for r in ran if r not in main_statements),
                   "execute cpu": spent.get("run", 0.0), "one-row cpu": spent.get("one", 0.0),
                   "counted_pass cpu": spent.get("_counted_pass", 0.0),
                   "applied cpu": spent.get("_applied", 0.0), "state store cpu": spent.get("_save_state", 0.0)}
            rows.append(row)
            print(f"run {run + 1:2d}: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items())
                  + f"  [{', '.join(trips)}]")
        print("medians (ms; trips: round trips; 'cpu': CPU time, of the client's thread or the server's):")
        for name in rows[0]:
            print(f"  {name:22s} {statistics.median(r[name] for r in rows):8.2f}")
    finally:
        monitor.close()
        history.close()
        engine.dispose()
        bench.drop()


if __name__ == "__main__":
    main()

"""Benchmark of `dupewatch audit` on a 200-table PostgreSQL schema with two 5,000,000-row tables.

Builds the schema in its own PostgreSQL schema (dropped at the end): 198 small tables of application
shapes (link tables, profiles, natural keys, orders, logs; 1,000-5,000 rows each) and two big ones (a
5M-row link table without a unique constraint and a 5M-row event table with a non-unique natural key,
both with one row in a thousand duplicated next to its original, as racing inserts leave them). Then, in the same run:

- `run_audit` with the default 60 s budget: total time, catalog time, measurement time (the queries'
  share of the total), and the time spent on the two big tables (against the budget);
- the baseline: the exact `GROUP BY ... HAVING count(*) > 1` over the two big tables' keys, i.e. what
  measuring them without sampling would cost.

    DUPEWATCH_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/bench_audit.py
"""

from __future__ import annotations

import os
import statistics
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from monitor.audit import DEFAULT_BUDGET_SECONDS, run_audit

PG_URL = os.environ.get("DUPEWATCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SCHEMA = "dw_bench_audit"
BIG_ROWS = 5_000_000
SMALL_TABLES = 198
RUNS = 3


def build(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        run = conn.exec_driver_sql
        run(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        run(f'CREATE SCHEMA "{SCHEMA}"')
        run(f'SET search_path = "{SCHEMA}"')
        run("CREATE TABLE app_user (id serial PRIMARY KEY, email text NOT NULL UNIQUE)")
        run("INSERT INTO app_user (email) SELECT 'u' || n FROM generate_series(1, 100000) n")
        for i in range(SMALL_TABLES - 1):
            _small_table(run, i)
        run("CREATE TABLE team_member (team_id int NOT NULL REFERENCES app_user (id), "
            "user_id int NOT NULL REFERENCES app_user (id), role text)")
        # one row in a thousand written twice by racing requests: the copies land next to each other
        twice = "CROSS JOIN LATERAL generate_series(1, CASE WHEN mod(n, 1000) = 0 THEN 2 ELSE 1 END) AS copy"
        run(f"INSERT INTO team_member SELECT 1 + mod(n, 1000), 1 + mod(n, 99991), 'member' "
            f"FROM generate_series(1, {BIG_ROWS - BIG_ROWS // 1000}) n {twice}")
        run("CREATE TABLE event (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES app_user (id), "
            "kind text NOT NULL, payload text, created_at timestamptz DEFAULT now())")
        run(f"INSERT INTO event (user_id, kind, payload) SELECT 1 + mod(n, 100000), 'k' || (n / 100000), 'x' "
            f"FROM generate_series(1, {BIG_ROWS - BIG_ROWS // 1000}) n {twice}")
        run("CREATE INDEX event_user_kind ON event (user_id, kind)")
        run(f'ANALYZE "{SCHEMA}".team_member')
        run(f'ANALYZE "{SCHEMA}".event')


def _small_table(run: object, i: int) -> None:
    execute = run  # type: ignore[assignment]
    shape = i % 6
    name = f"t{i:03d}"
    if shape == 0:  # link table, unique: clean
        execute(f"CREATE TABLE {name}_link (a_id int REFERENCES app_user (id), b_id int REFERENCES app_user (id), "
                "PRIMARY KEY (a_id, b_id))")
        execute(f"INSERT INTO {name}_link SELECT n, n + 1 FROM generate_series(1, 2000) n")
    elif shape == 1:  # profile, one-to-one by design, with a race duplicate
        execute(f"CREATE TABLE {name}_profile (id serial PRIMARY KEY, user_id int REFERENCES app_user (id), bio text)")
        execute(f"CREATE INDEX ON {name}_profile (user_id)")
        execute(f"INSERT INTO {name}_profile (user_id, bio) SELECT n, 'b' FROM generate_series(1, 3000) n")
        execute(f"INSERT INTO {name}_profile (user_id, bio) VALUES (7, 'race')")
    elif shape == 2:  # orders per customer: many by design
        execute(f"CREATE TABLE {name}_order (id serial PRIMARY KEY, customer_id int REFERENCES app_user (id), "
                "status text, created_at timestamptz DEFAULT now())")
        execute(f"CREATE INDEX ON {name}_order (customer_id, status)")
        execute(f"INSERT INTO {name}_order (customer_id, status) SELECT 1 + mod(n, 300), 'paid' "
                "FROM generate_series(1, 5000) n")
    elif shape == 3:  # login source with a nullable unique column
        execute(f"CREATE TABLE {name}_login (id serial PRIMARY KEY, user_id int REFERENCES app_user (id), "
                f"agent text NOT NULL, device text, UNIQUE (user_id, agent, device))")
        execute(f"INSERT INTO {name}_login (user_id, agent, device) SELECT n, 'ff', NULL "
                "FROM generate_series(1, 1000) n")
    elif shape == 4:  # plain lookup table
        execute(f"CREATE TABLE {name}_kind (id serial PRIMARY KEY, code text UNIQUE, label text)")
        execute(f"INSERT INTO {name}_kind (code, label) SELECT 'c' || n, 'l' FROM generate_series(1, 1000) n")
    else:  # log without a key
        execute(f"CREATE TABLE {name}_log (at timestamptz DEFAULT now(), message text)")
        execute(f"INSERT INTO {name}_log (message) SELECT 'm' FROM generate_series(1, 1000) n")


BIG_KEYS = {"team_member": ("team_id", "user_id"), "event": ("user_id", "kind")}


def baseline(engine: sa.Engine) -> tuple[float, dict[str, int]]:
    """Seconds for the exact duplicate GROUP BY over both big tables' keys, and each table's exact groups."""
    exact: dict[str, int] = {}
    with engine.connect() as conn:
        conn.exec_driver_sql(f'SET search_path = "{SCHEMA}"')
        began = time.perf_counter()
        for table, key in BIG_KEYS.items():
            columns = ", ".join(key)
            exact[table] = conn.exec_driver_sql(f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {columns} "
                                                "HAVING count(*) > 1) s").scalar()
        return time.perf_counter() - began, exact


def main() -> None:
    engine = sa.create_engine(PG_URL)
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={SCHEMA}"}).render_as_string(False)
    began = time.perf_counter()
    build(engine)
    print(f"built 200 tables (two of {BIG_ROWS:,} rows) in {time.perf_counter() - began:.1f} s")
    try:
        runs = []
        for _ in range(RUNS):
            report = run_audit(url, [SCHEMA])
            big = sum(v for k, v in report.timings.items() if k.endswith((".team_member", ".event")))
            runs.append((report.duration_ms / 1000, report.timings["catalog"], report.timings["measure"], big,
                         report))
        baselines = [baseline(engine) for _ in range(RUNS)]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        engine.dispose()
    total = statistics.median(r[0] for r in runs)
    catalog = statistics.median(r[1] for r in runs)
    measure = statistics.median(r[2] for r in runs)
    big = statistics.median(r[3] for r in runs)
    base = statistics.median(b[0] for b in baselines)
    exact = baselines[-1][1]
    last = runs[-1][4]
    print(f"audit: {last.tables} tables, {last.candidates} candidates, {len(last.findings)} findings "
          f"({sum(f.severity == 'high' for f in last.findings)} high, "
          f"{sum(f.estimated for f in last.findings)} estimated)")
    print(f"audit total (median of {RUNS}): {total:.2f} s; budget {DEFAULT_BUDGET_SECONDS:.0f} s "
          f"(ratio {total / DEFAULT_BUDGET_SECONDS:.3f}) -> {'met' if total <= DEFAULT_BUDGET_SECONDS else 'NOT met'}")
    print(f"  catalog: {catalog:.2f} s ({catalog / total:.0%}); measurement queries: {measure:.2f} s "
          f"({measure / total:.0%} of the total)")
    print(f"  the two {BIG_ROWS:,}-row tables: {big:.2f} s ({big / DEFAULT_BUDGET_SECONDS:.1%} of the budget, "
          f"{big / total:.0%} of the total)")
    for table, groups in exact.items():
        estimate = next((f.duplicate_groups for f in last.findings if f.table.endswith(f".{table}")
                         and set(BIG_KEYS[table]) <= set(f.columns)), None)
        if estimate is None:
            print(f"  {table}: NOT FOUND by the audit, exact {groups:,} duplicate groups")
        else:
            print(f"  {table}: estimated {estimate:,} duplicate groups, exact {groups:,} "
                  f"({estimate / groups:.2f}x)" if groups else f"  {table}: estimated {estimate}, exact 0")
    print(f"baseline, exact GROUP BY over both big tables (median of {RUNS}): {base:.2f} s; "
          f"audit total / baseline = {total / base:.2f}x; big tables sampled / exact = {big / base:.2f}x")


if __name__ == "__main__":
    main()

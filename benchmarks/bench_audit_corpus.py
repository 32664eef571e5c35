"""Precision and recall of `dupewatch audit` on the application corpus (tests/db/audit_corpus.py), per application,
on PostgreSQL and MariaDB, without and with `--source` (the application's code). REAL_APPS (the schemas the
applications' own migrations made, dumped into tests/db/corpus/) are measured on each database they were migrated
into (`App.dialects`: both for django-cms, PostgreSQL only for Tryton).

Each application is built in its own PostgreSQL schema / MariaDB database (dropped at the end) from the corpus's
schema and data generator; its findings are scored against the corpus's written ground truth:
precision = true medium/high findings / all medium/high findings; false high = high findings on anything that is
not a true risk; recall = true risks found (at medium or high) / true risks.

    .venv/bin/python benchmarks/bench_audit_corpus.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "db"))

from audit_corpus import APPS, REAL_APPS, App, build, score

from monitor.audit import run_audit

PG_URL = os.environ.get("DUPEWATCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("DUPEWATCH_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def pg_database(name: str) -> tuple[str, sa.Engine, Any]:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"})

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()
    return url.render_as_string(hide_password=False), sa.create_engine(url), drop


def mysql_database(name: str) -> tuple[str, sa.Engine, Any]:
    admin = sa.create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    url = make_url(MYSQL_URL).set(database=name)

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
    return url.render_as_string(hide_password=False), sa.create_engine(url), drop


def measure(app: App, make: Any, source_root: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    url, engine, drop = make(f"dw_corpus_{app.name}")
    try:
        build(app, engine)
        began = time.perf_counter()
        plain = run_audit(url)
        seconds = time.perf_counter() - began
        for name, text in app.sources.items():
            (source_root / name).parent.mkdir(parents=True, exist_ok=True)
            (source_root / name).write_text(text)
        with_code = run_audit(url, sources=[source_root]) if app.sources else plain
    finally:
        engine.dispose()
        drop()
    return (score(app, [f.as_json() for f in plain.findings]), score(app, [f.as_json() for f in with_code.findings]),
            seconds)


def total(label: str, totals: dict[str, int]) -> None:
    precision = f"{totals['true'] / totals['serious']:.0%}" if totals["serious"] else "—"
    print(f"  {label:<10} {totals['risks']:>5} {totals['serious']:>8} {precision:>9} {totals['false_high']:>10} "
          f"{totals['found'] / totals['risks']:>6.0%} {totals['found_src'] / totals['risks']:>15.0%}")


def main() -> None:
    for label, make, dialect in (("PostgreSQL", pg_database, "postgresql"), ("MariaDB", mysql_database, "mysql")):
        print(f"{label}:")
        print(f"  {'application':<10} {'risks':>5} {'med/high':>8} {'precision':>9} {'false high':>10} "
              f"{'recall':>6} {'recall --source':>15} {'audit s':>7}")
        for group, apps in (("reduced", APPS), ("real", REAL_APPS)):
            totals = {"serious": 0, "true": 0, "false_high": 0, "risks": 0, "found": 0, "found_src": 0}
            for app in [a for a in apps if dialect in a.dialects]:
                with tempfile.TemporaryDirectory() as root:
                    plain, coded, seconds = measure(app, make, Path(root))
                precision = f"{coded['true'] / coded['serious']:.0%}" if coded["serious"] else "—"
                print(f"  {app.name:<10} {len(app.truth):>5} {coded['serious']:>8} {precision:>9} "
                      f"{coded['false_high']:>10} {plain['recall']:>6.0%} {coded['recall']:>15.0%} {seconds:>7.2f}")
                for false in coded["false"]:
                    print(f"    false: {false}")
                for missed in coded["missed"]:
                    print(f"    missed with --source: {missed}")
                totals["serious"] += coded["serious"]
                totals["true"] += coded["true"]
                totals["false_high"] += coded["false_high"]
                totals["risks"] += len(app.truth)
                totals["found"] += round(plain["recall"] * len(app.truth))
                totals["found_src"] += round(coded["recall"] * len(app.truth))
            if totals["risks"]:
                total(f"all {group}", totals)


if __name__ == "__main__":
    main()

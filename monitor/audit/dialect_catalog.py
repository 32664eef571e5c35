"""What the audit asks each database directly, where SQLAlchemy reflection falls short: row estimates,
the definitions of invalid unique indexes, per-query timeouts, sampled scans, and query statistics.

One function per dialect and question (`postgresql_*`, `mysql_*`, `sqlite_*`) so each can move into
`monitor/dialects/` as it is; the small dispatchers below pick the right one. Every query here reads the
catalog with bound parameters; table names reach SQL only through SQLAlchemy's quoting.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from monitor.db import first_line


@dataclass
class CatalogExtras:
    row_estimates: dict[str, int] = field(default_factory=dict)  # table -> rows, from statistics
    invalid_unique_indexes: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {index: DDL}


def catalog_extras(conn: Connection, dialect: str, schema: str) -> CatalogExtras:
    if dialect == "postgresql":
        return postgresql_catalog_extras(conn, schema)
    if dialect == "mysql":
        return mysql_catalog_extras(conn, schema)
    return sqlite_catalog_extras(conn, schema)


def postgresql_catalog_extras(conn: Connection, schema: str) -> CatalogExtras:
    """`pg_class.reltuples` (-1 until the table is first analyzed: no estimate) and the unique indexes with
    `pg_index.indisvalid = false` with their `pg_get_indexdef()` (PostgreSQL docs, "pg_index" and
    "CREATE INDEX ... Building Indexes Concurrently": a failed concurrent build leaves an invalid index)."""
    extras = CatalogExtras()
    rows = conn.execute(sa.text(
        "SELECT c.relname, c.reltuples FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')"), {"schema": schema})
    extras.row_estimates = {name: int(tuples) for name, tuples in rows if tuples is not None and tuples >= 0}
    invalid = conn.execute(sa.text(
        "SELECT t.relname, i.relname, pg_catalog.pg_get_indexdef(x.indexrelid) FROM pg_catalog.pg_index x "
        "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = :schema AND x.indisunique AND NOT x.indisvalid"), {"schema": schema})
    for table, index, definition in invalid:
        extras.invalid_unique_indexes.setdefault(table, {})[index] = definition
    return extras


def mysql_catalog_extras(conn: Connection, schema: str) -> CatalogExtras:
    """`information_schema.TABLES.TABLE_ROWS`: InnoDB's estimate (MariaDB/MySQL docs say it may be off by
    40-50%); it only decides exact count versus bounded scan, and a bounded count confirms small tables."""
    rows = conn.execute(sa.text(
        "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = :schema AND TABLE_TYPE = 'BASE TABLE'"), {"schema": schema})
    return CatalogExtras(row_estimates={name: int(n) for name, n in rows if n is not None})


def sqlite_catalog_extras(conn: Connection, schema: str) -> CatalogExtras:
    """SQLite keeps row counts only in `sqlite_stat1` after `ANALYZE` (SQLite docs, "The sqlite_stat1 table");
    without it every table gets a bounded count."""
    stat = sa.table("sqlite_stat1", sa.column("tbl"), sa.column("idx"), sa.column("stat"), schema=schema)
    master = sa.table("sqlite_master", sa.column("name"), sa.column("type"), schema=schema)
    exists = conn.execute(sa.select(sa.func.count()).select_from(master).where(
        master.c.name == "sqlite_stat1", master.c.type == "table")).scalar()
    if not exists:
        return CatalogExtras()
    estimates: dict[str, int] = {}
    for table, text in conn.execute(sa.select(stat.c.tbl, stat.c.stat)):
        first = str(text or "").split(" ")[0]
        if first.isdigit():
            estimates[table] = max(estimates.get(table, 0), int(first))
    return CatalogExtras(row_estimates=estimates)


# -- per-query timeouts -------------------------------------------------------------------------------

def set_query_timeout(conn: Connection, dialect: str, seconds: float) -> None:
    """Bound the next statements of this transaction to `seconds` (at least 1 ms)."""
    seconds = max(seconds, 0.001)
    if dialect == "postgresql":
        postgresql_set_timeout(conn, seconds)
    elif dialect == "mysql":
        mysql_set_timeout(conn, seconds)
    else:
        sqlite_set_timeout(conn, seconds)


def postgresql_set_timeout(conn: Connection, seconds: float) -> None:
    """`set_config('statement_timeout', ..., true)`: `SET LOCAL`, undone when the transaction ends."""
    conn.execute(sa.text("SELECT pg_catalog.set_config('statement_timeout', :ms, true)"),
                 {"ms": str(max(1, int(seconds * 1000)))})


def mysql_set_timeout(conn: Connection, seconds: float) -> None:
    """MariaDB `max_statement_time` (seconds), MySQL `max_execution_time` (ms, SELECT only)."""
    if getattr(conn.dialect, "is_mariadb", False):
        conn.execute(sa.text("SET SESSION max_statement_time = :s"), {"s": round(seconds, 3)})
    else:
        conn.execute(sa.text("SET SESSION max_execution_time = :ms"), {"ms": max(1, int(seconds * 1000))})


def sqlite_set_timeout(conn: Connection, seconds: float) -> None:
    """SQLite has no statement timeout: interrupt from the progress handler (as `monitor.db` does)."""
    raw = conn.connection.dbapi_connection
    if isinstance(raw, sqlite3.Connection):
        deadline = time.monotonic() + seconds
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 20_000)


# -- sampled scans ------------------------------------------------------------------------------------

def sampled_source(table: sa.TableClause, columns: list[str], dialect: str, rows: int,
                   sample_rows: int) -> tuple[FromClause, float]:
    """A FROM clause reading about `sample_rows` of the table's `rows`, and the factor that scales counts
    found in it up to the whole table."""
    if dialect == "postgresql":
        return postgresql_sample(table, rows, sample_rows)
    return bounded_scan(table, columns, rows, sample_rows)


def postgresql_sample(table: sa.TableClause, rows: int, sample_rows: int) -> tuple[FromClause, float]:
    """`TABLESAMPLE SYSTEM (p)`: whole pages chosen at random (PostgreSQL docs, "SELECT ... TABLESAMPLE"),
    so rows inserted together, as racing duplicates are, tend to be sampled together."""
    percent = min(100.0, max(0.01, 100.0 * sample_rows / max(rows, 1)))
    return table.tablesample(sa.func.system(percent)), 100.0 / percent


def bounded_scan(table: sa.TableClause, columns: list[str], rows: int, sample_rows: int) -> tuple[FromClause, float]:
    """The first `sample_rows` rows the server returns (InnoDB and SQLite: primary key / rowid order)."""
    inner = sa.select(*(table.c[c] for c in columns)).select_from(table).limit(sample_rows).subquery("dw_scan")
    return inner, max(1.0, rows / sample_rows)


# -- query statistics -----------------------------------------------------------------------------------

@dataclass
class StatementStats:
    statements: list[tuple[str, int]]  # (normalised query text, calls)
    unavailable: str | None = None  # why there are none


def statement_stats(conn: Connection, dialect: str) -> StatementStats:
    if dialect == "postgresql":
        return postgresql_statement_stats(conn)
    return StatementStats([], "check_then_insert needs PostgreSQL's pg_stat_statements; not available on "
                              f"{'MySQL/MariaDB' if dialect == 'mysql' else 'SQLite'}")


def postgresql_statement_stats(conn: Connection, limit: int = 20_000) -> StatementStats:
    """The current database's statements from `pg_stat_statements` (PostgreSQL docs, "pg_stat_statements"):
    the extension must be created in the database and preloaded (`shared_preload_libraries`)."""
    schema = conn.execute(sa.text(
        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'")).scalar()
    if schema is None:
        return StatementStats([], "pg_stat_statements is not installed in this database "
                                  "(CREATE EXTENSION pg_stat_statements, with it in shared_preload_libraries)")
    view = sa.table("pg_stat_statements", sa.column("query"), sa.column("calls"), sa.column("dbid"), schema=schema)
    databases = sa.table("pg_database", sa.column("oid"), sa.column("datname"), schema="pg_catalog")
    current = sa.select(databases.c.oid).where(databases.c.datname == sa.func.current_database()).scalar_subquery()
    stmt = (sa.select(view.c.query, view.c.calls).where(view.c.dbid == current)
            .order_by(view.c.calls.desc()).limit(limit))
    savepoint = conn.begin_nested()
    try:
        rows = [(str(q), int(c)) for q, c in conn.execute(stmt) if q and not str(q).startswith("<insufficient")]
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        return StatementStats([], f"pg_stat_statements is not readable: {first_line(exc)}")
    savepoint.commit()
    return StatementStats(rows)

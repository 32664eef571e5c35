"""The audit's questions to SQLite: `sqlite_stat1` row counts and an interrupt as the statement timeout."""

from __future__ import annotations

import sqlite3
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit.dialect_catalog import AuditQueries, CatalogExtras


class SQLiteQueries(AuditQueries):
    product = "SQLite"

    def catalog_extras(self, conn: Connection, schema: str) -> CatalogExtras:
        """SQLite keeps row counts only in `sqlite_stat1` after `ANALYZE` (SQLite docs, "The sqlite_stat1
        table"); without it every table gets a bounded count."""
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

    def set_timeout(self, conn: Connection, seconds: float) -> None:
        """SQLite has no statement timeout: interrupt from the progress handler (as `monitor.db` does)."""
        raw = conn.connection.dbapi_connection
        if isinstance(raw, sqlite3.Connection):
            deadline = time.monotonic() + seconds
            raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 20_000)

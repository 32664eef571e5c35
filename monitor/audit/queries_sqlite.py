"""The audit's questions to SQLite: `sqlite_stat1` row counts and an interrupt as the statement timeout."""

from __future__ import annotations

import sqlite3
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit.dialect_catalog import AuditQueries, CatalogExtras, constant_default_text


class SQLiteQueries(AuditQueries):
    product = "SQLite"

    def catalog_extras(self, conn: Connection, schema: str) -> CatalogExtras:
        """SQLite keeps row counts only in `sqlite_stat1` after `ANALYZE` (SQLite docs, "The sqlite_stat1
        table"); without it every table gets a bounded count."""
        stat = sa.table("sqlite_stat1", sa.column("tbl"), sa.column("idx"), sa.column("stat"), schema=schema)
        master = sa.table("sqlite_master", sa.column("name"), sa.column("type"), schema=schema)
        exists = conn.execute(sa.select(sa.func.count()).select_from(master).where(
            master.c.name == "sqlite_stat1", master.c.type == "table")).scalar()
        constants = self._constant_defaults(conn, schema)
        if not exists:
            return CatalogExtras(constant_defaults=constants)
        estimates: dict[str, int] = {}
        for table, text in conn.execute(sa.select(stat.c.tbl, stat.c.stat)):
            first = str(text or "").split(" ")[0]
            if first.isdigit():
                estimates[table] = max(estimates.get(table, 0), int(first))
        return CatalogExtras(row_estimates=estimates, constant_defaults=constants)

    def _constant_defaults(self, conn: Connection, schema: str) -> dict[str, dict[str, str]]:
        """`PRAGMA table_info`'s `dflt_value`: the default's text as written (SQLite docs, "PRAGMA table_info"); a
        quoted string literal (no backslash escapes in SQLite) or a plain integer is a constant, anything else
        (`CURRENT_TIMESTAMP`, `(datetime('now'))`) is not. Generated columns are not listed by table_info."""
        master = sa.table("sqlite_master", sa.column("name"), sa.column("type"), schema=schema)
        info = sa.func.pragma_table_info(master.c.name, schema).table_valued("name", "dflt_value").alias("dw_info")
        rows = conn.execute(sa.select(master.c.name, info.c.name, info.c.dflt_value).select_from(master).join(
            info, sa.true()).where(master.c.type == "table", info.c.dflt_value.is_not(None)))
        found: dict[str, dict[str, str]] = {}
        for table, column, rendered in rows:
            text = constant_default_text(str(rendered), backslash_escapes=False)
            if text is not None:
                found.setdefault(table, {})[column] = text
        return found

    def set_timeout(self, conn: Connection, seconds: float) -> None:
        """SQLite has no statement timeout: interrupt from the progress handler (as `monitor.db` does)."""
        raw = conn.connection.dbapi_connection
        if isinstance(raw, sqlite3.Connection):
            deadline = time.monotonic() + seconds
            raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 20_000)

"""The audit's questions to MariaDB/MySQL: InnoDB's row estimates and per-session statement timeouts."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit.dialect_catalog import AuditQueries, CatalogExtras


class MySQLQueries(AuditQueries):
    product = "MySQL/MariaDB"

    def catalog_extras(self, conn: Connection, schema: str) -> CatalogExtras:
        """`information_schema.TABLES.TABLE_ROWS`: InnoDB's estimate (MariaDB/MySQL docs say it may be off by
        40-50%); it only decides exact count versus bounded scan, and a bounded count confirms small tables."""
        rows = conn.execute(sa.text(
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = :schema AND TABLE_TYPE = 'BASE TABLE'"), {"schema": schema})
        return CatalogExtras(row_estimates={name: int(n) for name, n in rows if n is not None})

    def set_timeout(self, conn: Connection, seconds: float) -> None:
        """MariaDB `max_statement_time` (seconds), MySQL `max_execution_time` (ms, SELECT only)."""
        if getattr(conn.dialect, "is_mariadb", False):
            conn.execute(sa.text("SET SESSION max_statement_time = :s"), {"s": round(seconds, 3)})
        else:
            conn.execute(sa.text("SET SESSION max_execution_time = :ms"), {"ms": max(1, int(seconds * 1000))})

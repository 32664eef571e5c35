"""The audit's questions to MariaDB/MySQL: InnoDB's row estimates and per-session statement timeouts."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit.dialect_catalog import AuditQueries, CatalogExtras, constant_default_text


class MySQLQueries(AuditQueries):
    product = "MySQL/MariaDB"

    def catalog_extras(self, conn: Connection, schema: str) -> CatalogExtras:
        """`information_schema.TABLES.TABLE_ROWS`: InnoDB's estimate (MariaDB/MySQL docs say it may be off by
        40-50%); it only decides exact count versus bounded scan, and a bounded count confirms small tables."""
        rows = conn.execute(sa.text(
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = :schema AND TABLE_TYPE = 'BASE TABLE'"), {"schema": schema})
        return CatalogExtras(row_estimates={name: int(n) for name, n in rows if n is not None},
                             constant_defaults=self._constant_defaults(conn, schema))

    def _constant_defaults(self, conn: Connection, schema: str) -> dict[str, dict[str, str]]:
        """MariaDB >= 10.2.7 renders `information_schema.COLUMNS.COLUMN_DEFAULT` as SQL: a string literal quoted
        (`''`, `'x''y'`), a number plain, an expression as itself (`current_timestamp()`, `uuid()`, `nextval(...)`)
        (MariaDB docs, "Information Schema COLUMNS Table"): only a quoted literal or a plain integer is a constant.
        MySQL renders a literal unquoted, indistinguishable from an expression's text without more: none."""
        version = tuple(getattr(conn.dialect, "server_version_info", None) or ())
        if not getattr(conn.dialect, "is_mariadb", False) or version < (10, 2, 7):
            return {}
        rows = conn.execute(sa.text(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = :schema AND COLUMN_DEFAULT IS NOT NULL AND EXTRA NOT LIKE '%GENERATED%'"),
            {"schema": schema})
        found: dict[str, dict[str, str]] = {}
        for table, column, rendered in rows:
            text = constant_default_text(str(rendered))
            if text is not None:
                found.setdefault(table, {})[column] = text
        return found

    def set_timeout(self, conn: Connection, seconds: float) -> None:
        """MariaDB `max_statement_time` (seconds), MySQL `max_execution_time` (ms, SELECT only)."""
        if getattr(conn.dialect, "is_mariadb", False):
            conn.execute(sa.text("SET SESSION max_statement_time = :s"), {"s": round(seconds, 3)})
        else:
            conn.execute(sa.text("SET SESSION max_execution_time = :ms"), {"ms": max(1, int(seconds * 1000))})

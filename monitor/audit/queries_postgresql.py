"""The audit's questions to PostgreSQL: `pg_class` estimates, invalid unique indexes, `SET LOCAL`-style
timeouts, `TABLESAMPLE SYSTEM` samples, and `pg_stat_statements`."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from monitor.audit.dialect_catalog import AuditQueries, CatalogExtras, StatementStats, constant_default_text
from monitor.db import first_line


class PostgreSQLQueries(AuditQueries):
    product = "PostgreSQL"

    def catalog_extras(self, conn: Connection, schema: str) -> CatalogExtras:
        """`pg_class.reltuples` (-1 until the table is first analyzed: no estimate), the unique indexes with
        `pg_index.indisvalid = false` with their `pg_get_indexdef()` (PostgreSQL docs, "pg_index" and "CREATE
        INDEX ... Building Indexes Concurrently": a failed concurrent build leaves an invalid index), and the
        exclusion constraints whose every operator is `=` (`pg_constraint.conexclop`): those reject a second row
        equal in all their elements, as a unique constraint does (Tryton declares its keys this way)."""
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
        exclusions = conn.execute(sa.text(
            "SELECT t.relname, c.conname FROM pg_catalog.pg_constraint c "
            "JOIN pg_catalog.pg_class t ON t.oid = c.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = :schema AND c.contype = 'x' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_operator o "
            "WHERE o.oid = ANY (c.conexclop) AND o.oprname <> '=')"), {"schema": schema})
        for table, constraint in exclusions:
            extras.equality_exclusions.setdefault(table, set()).add(constraint)
        # a partition's rows are its partitioned table's (PostgreSQL docs, "Table Partitioning"): read through it
        partitions = conn.execute(sa.text(
            "SELECT c.relname, pn.nspname, p.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid JOIN pg_catalog.pg_class p ON p.oid = i.inhparent "
            "JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace "
            "WHERE n.nspname = :schema AND c.relispartition"), {"schema": schema})
        extras.partition_of = {table: (parent_schema, parent) for table, parent_schema, parent in partitions}
        extras.constant_defaults = self._constant_defaults(conn, schema)
        return extras

    def _constant_defaults(self, conn: Connection, schema: str) -> dict[str, dict[str, str]]:
        """The column defaults whose node tree (`pg_attrdef.adbin`, PostgreSQL docs "pg_attrdef") is a non-null
        Const, alone, relabelled (RelabelType), or under the implicit cast the column's type adds (`varchar(n)
        DEFAULT ''`: varchar(Const, Const, Const); `bigint DEFAULT 0`: int8(Const)) by a built-in function
        (oid below FirstNormalObjectId, 16384): the default is then that constant, and `pg_get_expr` renders it
        as a literal (`''::character varying`, `0`, `'-1'::integer`), which is read, never evaluated. A
        function's call (now(), a user's function), an operator or anything else is no constant."""
        const = r"\{CONST [^{}]*:constisnull false [^{}]*\}"
        rows = conn.execute(sa.text(
            "SELECT c.relname, a.attname, pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
            "JOIN pg_catalog.pg_class c ON c.oid = d.adrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND (d.adbin::text ~ :const OR d.adbin::text ~ :relabel "
            "OR (d.adbin::text ~ :cast AND substring(d.adbin::text from :function)::oid < 16384))"),
            {"schema": schema, "const": f"^{const}$", "function": "^\\{FUNCEXPR :funcid ([0-9]+) ",
             "relabel": f"^\\{{RELABELTYPE :arg {const} [^{{}}]*\\}}$",
             "cast": f"^\\{{FUNCEXPR :funcid [0-9]+ [^{{}}]* :funcformat 2 [^{{}}]* :args \\({const}( {const})*\\)"
                     f" :location -?[0-9]+\\}}$"})
        found: dict[str, dict[str, str]] = {}
        for table, column, rendered in rows:
            literal = re.fullmatch(r"('(?:[^']|'')*')::[^']+|(-?[0-9]+)", str(rendered))
            text = constant_default_text(literal.group(1) or literal.group(2)) if literal else None
            if text is not None:
                found.setdefault(table, {})[column] = text
        return found

    def set_timeout(self, conn: Connection, seconds: float) -> None:
        """`set_config('statement_timeout', ..., true)`: `SET LOCAL`, undone when the transaction ends."""
        conn.execute(sa.text("SELECT pg_catalog.set_config('statement_timeout', :ms, true)"),
                     {"ms": str(max(1, int(seconds * 1000)))})

    def sample(self, table: sa.TableClause, columns: list[str], rows: int,
               sample_rows: int) -> tuple[FromClause, float]:
        """`TABLESAMPLE SYSTEM (p)`: whole pages chosen at random (PostgreSQL docs, "SELECT ... TABLESAMPLE"),
        so rows inserted together, as racing duplicates are, tend to be sampled together."""
        percent = min(100.0, max(0.01, 100.0 * sample_rows / max(rows, 1)))
        return table.tablesample(sa.func.system(percent)), 100.0 / percent

    def statement_stats(self, conn: Connection, limit: int = 20_000) -> StatementStats:
        """The current database's statements from `pg_stat_statements` (PostgreSQL docs, "pg_stat_statements"):
        the extension must be created in the database and preloaded (`shared_preload_libraries`)."""
        schema = conn.execute(sa.text(
            "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")).scalar()
        if schema is None:
            return StatementStats([], "pg_stat_statements is not installed in this database "
                                      "(CREATE EXTENSION pg_stat_statements, with it in shared_preload_libraries)")
        view = sa.table("pg_stat_statements", sa.column("query"), sa.column("calls"), sa.column("dbid"),
                        schema=schema)
        databases = sa.table("pg_database", sa.column("oid"), sa.column("datname"), schema="pg_catalog")
        current = sa.select(databases.c.oid).where(databases.c.datname == sa.func.current_database())
        stmt = (sa.select(view.c.query, view.c.calls).where(view.c.dbid == current.scalar_subquery())
                .order_by(view.c.calls.desc()).limit(limit))
        savepoint = conn.begin_nested()
        try:
            rows = [(str(q), int(c)) for q, c in conn.execute(stmt) if q and not str(q).startswith("<insufficient")]
        except sa.exc.DBAPIError as exc:
            savepoint.rollback()
            return StatementStats([], f"pg_stat_statements is not readable: {first_line(exc)}")
        savepoint.commit()
        return StatementStats(rows)

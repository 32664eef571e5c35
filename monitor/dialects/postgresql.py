"""PostgreSQL (psycopg 3): what is true of PostgreSQL for dupewatch.

Read-only detection sessions (PostgreSQL docs, "Client Connection Defaults" and "Extended Query"):
- `default_transaction_read_only` and `statement_timeout` are set in the connection's startup options, so they
  are the session's *reset* values: `DISCARD ALL` (run whenever a detection connection returns to the pool,
  which also releases advisory locks) puts them back, whatever a query did with `set_config()`.
- every statement goes through the extended query protocol (psycopg `prepare=True`), which carries exactly one
  statement: `SELECT 1) x; COMMIT; BEGIN READ WRITE; DELETE ...` is refused by the server's parser instead of
  running as five statements of the simple protocol.
- connects time out (`connect_timeout`) and idle TCP connections are probed (`keepalives*`, libpq parameters).
- a statement is cancelled with libpq's cancel request (`cancel_safe`, bounded); a frozen server, which
  answers neither, has the connection's socket shut instead.

A PostgreSQL-protocol database (CockroachDB, YugabyteDB) would subclass `PostgreSQL` and override what differs
(row identity: no ctid; advisory locks; `NULLS NOT DISTINCT`).
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.base import (
    COMMON_FORBIDDEN,
    DELETED,
    INSERTED,
    UPDATED,
    ChangeCounts,
    Dialect,
    ForbiddenCall,
    NamedLock,
)

_FORBIDDEN = (
    *COMMON_FORBIDDEN,
    ForbiddenCall(r"\blo_\w+\s*\(", "large-object functions read and write server files and objects"),
    ForbiddenCall(r"\bdblink\w*\s*\(", "dblink runs SQL on another session, outside the read-only transaction"),
    ForbiddenCall(r"\bpg_(?:terminate|cancel)_backend\s*\(", "it ends or cancels other sessions"),
    ForbiddenCall(r"\bpg_(?:try_)?advisory\w*\s*\(", "advisory locks outlive the check's transaction"),
    ForbiddenCall(r"\bset_config\s*\(", "it changes the session's settings (read-only mode, timeout)"),
    ForbiddenCall(r"\bpg_(?:read_file|read_binary_file|ls_\w+|stat_file|file_write)\s*\(",
                  "it reads or writes server files"),
    ForbiddenCall(r"\bpg_(?:reload_conf|rotate_logfile|switch_wal|promote|create_restore_point|"
                  r"logical_emit_message|notify)\s*\(", "it acts on the server, not on data"),
    ForbiddenCall(r"\b(?:query_to_xml\w*|cursor_to_xml\w*)\s*\(", "it runs SQL given as text, unchecked"),
    ForbiddenCall(r"\bcopy\b", "COPY reads or writes files and programs"),
)


# What this transaction changed, per table (its not yet flushed counts included, PostgreSQL docs "The Cumulative
# Statistics System": pg_stat_xact_user_tables), counted by the executor, so cascaded deletes, SET NULL updates and
# trigger writes are there even in rows row-level security hides from the role. A partition's rows count as its
# partitioned table's.
_XACT_CHANGES = sa.text("""
    SELECT COALESCE(pg_catalog.pg_partition_root(relid), relid)::regclass::text AS counted,
           sum(n_tup_ins) AS inserted, sum(n_tup_upd) AS updated, sum(n_tup_del) AS deleted
    FROM pg_catalog.pg_stat_xact_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 GROUP BY 1""")
_COUNTED_AS = sa.text("SELECT COALESCE(pg_catalog.pg_partition_root(to_regclass(:t)), to_regclass(:t))::regclass::text")
# Publications that would replicate a delete (update) of the table, and whether it has a replica identity:
# DEFAULT is the primary key, USING INDEX an index, NOTHING none (PostgreSQL docs, "ALTER TABLE ... REPLICA
# IDENTITY" and "Logical Replication: Publication").
_PUBLISHED = sa.text("""
    SELECT p.pubname, c.relreplident,
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid
                   AND (i.indisprimary AND c.relreplident = 'd' OR i.indisreplident AND c.relreplident = 'i'))
               AS has_key
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_publication_tables pt ON pt.schemaname = n.nspname AND pt.tablename = c.relname
    JOIN pg_catalog.pg_publication p ON p.pubname = pt.pubname
    WHERE c.oid = to_regclass(:t) AND CASE :writes WHEN 'delete' THEN p.pubdelete ELSE p.pubupdate END
    ORDER BY p.pubname""")
_ALL_TABLES_PUBLICATIONS = sa.text(
    "SELECT pubname FROM pg_catalog.pg_publication WHERE puballtables AND pubinsert ORDER BY pubname")
_SCHEMA_PUBLICATIONS = sa.text("""
    SELECT p.pubname FROM pg_catalog.pg_publication p
    JOIN pg_catalog.pg_publication_namespace pn ON pn.pnpubid = p.oid
    JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid
    WHERE n.nspname = COALESCE(:s, current_schema()) AND p.pubinsert ORDER BY p.pubname""")


def fix_lock_key(table: str) -> int:
    """The advisory lock key of a table's fix (the same key `monitor.fix.locks` uses)."""
    return int.from_bytes(sha256(f"dupewatch fix {table}".encode()).digest()[:8], "big", signed=True)


class PostgreSQL(Dialect):
    name = "postgresql"
    row_identity_order = "physical order"
    forbidden_calls: ClassVar[tuple[ForbiddenCall, ...]] = _FORBIDDEN
    returning_delete = True
    write_refused_markers = ("read-only transaction",)
    concurrent_index_build = True

    # -- connections ----------------------------------------------------------------------------

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        options = [str(url.query.get("options", "")).strip()] if url.query.get("options") else []
        options.append(f"-c statement_timeout={int(timeout * 1000)}")
        if read_only:
            options.append("-c default_transaction_read_only=on")
        return {"connect_timeout": max(1, round(connect_timeout)), "application_name": "dupewatch",
                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                "options": " ".join(options)}

    def reset_session(self, dbapi: Any) -> None:
        dbapi.rollback()
        dbapi.autocommit = True
        try:
            dbapi.execute("DISCARD ALL")  # settings back to the startup options, advisory locks released
        finally:
            dbapi.autocommit = False

    def install(self, engine: Engine, *, read_only: bool) -> None:
        if not read_only:
            return

        @event.listens_for(engine, "do_execute")
        def _extended(cursor: Any, statement: str, parameters: Any, _context: Any) -> bool:
            cursor.execute(statement, parameters, prepare=True)
            return True

        @event.listens_for(engine, "do_execute_no_params")
        def _extended_no_params(cursor: Any, statement: str, _context: Any) -> bool:
            cursor.execute(statement, prepare=True)
            return True

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        dbapi.cancel_safe(timeout=timeout)

    def socket_fileno(self, dbapi: Any) -> int | None:
        return int(dbapi.fileno())

    def is_timeout(self, message: str) -> bool:
        return "canceling statement due to statement timeout" in message

    # -- detection ------------------------------------------------------------------------------

    def ungroupable_key(self, column: sa.Column[Any]) -> str | None:
        # `json` (unlike `jsonb`) has no equality operator, so GROUP BY on it fails naming neither check nor column.
        if isinstance(column.type, sa.JSON) and not isinstance(column.type, postgresql.JSONB):
            return (f"column {column.name!r} has type json, which PostgreSQL cannot compare or group; make it "
                    f"jsonb, or write a custom query that groups on {column.name}::jsonb")
        return None

    def row_identity(self, *, is_view: bool) -> ColumnElement[Any] | None:
        return None if is_view else sa.literal_column("ctid")  # a view has no ctid

    def nulls_first(self, clause: Any) -> Any:
        return clause.nulls_first()

    def nulls_last(self, clause: Any) -> Any:
        return clause.nulls_last()

    # -- fixes ----------------------------------------------------------------------------------

    def for_update(self, statement: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        return statement.with_for_update(of=table)

    def named_lock(self, key: str) -> NamedLock:
        lock = fix_lock_key(key)
        return NamedLock(sa.text("SELECT pg_try_advisory_lock(:k)").bindparams(k=lock),
                         sa.text("SELECT pg_advisory_unlock(:k)").bindparams(k=lock), "advisory lock")

    def comparable(self, column: sa.Column[Any]) -> bool:
        """json, xml, geometric and unreflected types have no `=` (PostgreSQL docs, "JSON Types")."""
        kind = column.type
        if isinstance(kind, sa.JSON) and not isinstance(kind, postgresql.JSONB):
            return False
        return not isinstance(kind, sa.types.NullType)

    def nulls_not_distinct(self, version: tuple[int, ...]) -> bool:
        return version >= (15,)  # CREATE UNIQUE INDEX ... NULLS NOT DISTINCT, PostgreSQL 15

    def index_options(self, *, where: ColumnElement[bool] | None, nulls_not_distinct: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"postgresql_concurrently": True}
        if where is not None:
            options["postgresql_where"] = where
        if nulls_not_distinct:
            options["postgresql_nulls_not_distinct"] = True
        return options

    # -- a batch's account ----------------------------------------------------------------------

    def changes_so_far(self, conn: Connection) -> ChangeCounts:
        counts: ChangeCounts = {}
        for row in conn.execute(_XACT_CHANGES):
            counts[(row.counted, INSERTED)] = int(row.inserted)
            counts[(row.counted, UPDATED)] = int(row.updated)
            counts[(row.counted, DELETED)] = int(row.deleted)
        return counts

    def counted_as(self, conn: Connection, table: sa.Table) -> str:
        name = conn.dialect.identifier_preparer.format_table(table)
        return str(conn.execute(_COUNTED_AS, {"t": name}).scalar() or name)

    def replication_blockers(self, conn: Connection, table: sa.Table, writes: str) -> list[str]:
        name = conn.dialect.identifier_preparer.format_table(table)
        found = []
        for row in conn.execute(_PUBLISHED, {"t": name, "writes": writes}):
            if row.relreplident == "f" or row.has_key:
                continue
            identity = {"n": "NOTHING", "d": "DEFAULT and no primary key",
                        "i": "USING INDEX of an index that is gone"}.get(row.relreplident, row.relreplident)
            found.append(f"{name} is in publication {row.pubname}, which publishes {writes}s, and has no replica "
                         f"identity (REPLICA IDENTITY {identity}), so PostgreSQL refuses the fix's {writes}s on it; "
                         f"run `ALTER TABLE {name} REPLICA IDENTITY FULL` (or add a primary key) first")
        return found

    def replication_notes(self, conn: Connection, schemas: list[str | None]) -> list[str]:
        everything = list(conn.execute(_ALL_TABLES_PUBLICATIONS).scalars())
        by_schema = {str(p) for s in schemas for p in conn.execute(_SCHEMA_PUBLICATIONS, {"s": s}).scalars()}
        notes = []
        if everything:
            notes.append(f"publication {', '.join(everything)} is FOR ALL TABLES: the fix's archive, plan and log "
                         "tables (dupewatch_*), with every row it archives, are replicated to its subscribers, "
                         "and PostgreSQL cannot leave a table out of it (a subscriber lacking them may stop "
                         "applying changes); create them on each subscriber first, or publish the application's "
                         "tables by name")
        if by_schema:
            notes.append(f"publication {', '.join(sorted(by_schema))} publishes whole schemas: the fix's dupewatch_* "
                         "tables there and the rows it archives are replicated too; set `[fix] schema` to a "
                         "schema it does not publish")
        return notes


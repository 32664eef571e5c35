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
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Engine
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.base import COMMON_FORBIDDEN, Dialect, ForbiddenCall, NamedLock

if TYPE_CHECKING:
    from monitor.live.changes import ChangeStream

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
    change_stream_absent = ""

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

    def change_stream(self, database: str, url: URL) -> ChangeStream:
        from monitor.live.postgresql import LogicalDecodingStream

        return LogicalDecodingStream(database, url, self)

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

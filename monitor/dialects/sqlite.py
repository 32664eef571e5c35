"""SQLite (the standard library's sqlite3): what is true of SQLite for dupewatch.

- Read-only: `PRAGMA query_only` on every detection connection. There is no server and no statement timeout:
  a progress handler interrupts a statement past its deadline, and `interrupt()` cancels one from another
  thread (SQLite docs, "sqlite3_progress_handler", "sqlite3_interrupt").
- `lower()` folds ASCII only (SQLite docs, "Core Functions": "works for ASCII characters only"), so every
  connection dupewatch opens registers `dupewatch_lower()`, Python's Unicode-aware `str.lower` (the same
  per-character lowering PostgreSQL's `lower()` applies in a UTF-8 database), and `case_insensitive` uses it.
  The function exists only on dupewatch's connections: an index on it would make the table unwritable for the
  application, so the guard cannot use it (`case_fold_indexable` is False).
- A missing file is an error (sqlite3 would silently create an empty database). An attached schema that does
  not exist is reported by SQLite as "unknown database".
- Rows are told apart by `rowid` (insertion order); NULL sorts first ascending; values are shown as stored
  (SQLite keeps whatever the application wrote, whatever the declared type).
- Writers take the write lock when their transaction begins (`BEGIN IMMEDIATE`); a fix's locking is that lock,
  so there is no `FOR UPDATE`, and one fixer per table is a file lock.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from monitor.dialects.base import COMMON_FORBIDDEN, Dialect, ForbiddenCall

CASE_FOLD_FUNCTION = "dupewatch_lower"


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class CaseFold(FunctionElement[Any]):
    """`dupewatch_lower(expr)` in queries. In DDL (an index) it compiles to the built-in `lower()`: an index may
    only use functions every connection has, or the application could no longer write to the table. Such an
    index folds ASCII only: see `case_fold_indexable`."""

    inherit_cache = True
    name = CASE_FOLD_FUNCTION

    def __init__(self, expr: ColumnElement[Any]) -> None:
        super().__init__(expr)
        self.type = expr.type


@compiles(CaseFold)  # also for SQL shown as text (fingerprints, advice) outside a SQLite compiler
@compiles(CaseFold, "sqlite")
def _compile_case_fold(element: CaseFold, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(element.clauses, **kw)
    in_ddl = compiler.statement is None  # the compiler a DDL statement uses for its expressions
    return f"lower({inner})" if in_ddl else f"{CASE_FOLD_FUNCTION}({inner})"


def register_functions(dbapi: sqlite3.Connection) -> None:
    """Register dupewatch's SQL functions on a sqlite3 connection."""
    dbapi.create_function(CASE_FOLD_FUNCTION, 1, _unicode_lower, deterministic=True)


_FORBIDDEN = (
    *COMMON_FORBIDDEN,
    ForbiddenCall(r"\b(?:randomblob|zeroblob)\s*\(", "it builds blobs of any size, for as long as it likes"),
    ForbiddenCall(r"\bload_extension\s*\(", "it loads native code into the process"),
    ForbiddenCall(r"\b(?:readfile|writefile|edit|fts3_tokenizer)\s*\(", "it reaches outside the database"),
)


class SQLite(Dialect):
    name = "sqlite"
    change_stream_absent = "SQLite has no change stream"
    forbidden_calls: ClassVar[tuple[ForbiddenCall, ...]] = _FORBIDDEN
    case_fold_indexable = False
    write_refused_markers = ("readonly database",)

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        # A fix waits for the application's short write transactions (SQLite's busy timeout) instead of
        # failing after the driver's default 5 s when the application writes without pause.
        return {} if read_only else {"timeout": max(timeout, 5.0)}

    def engine_options(self, *, read_only: bool) -> dict[str, Any]:
        return {}

    def prepare_session(self, dbapi: Any, *, read_only: bool, timeout: float) -> None:
        register_functions(dbapi)
        if read_only:
            dbapi.execute("PRAGMA query_only = ON")

    def install(self, engine: Engine, *, read_only: bool) -> None:
        if read_only:
            return

        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi: Any, _record: Any) -> None:
            dbapi.isolation_level = None  # the sqlite3 module would otherwise emit its own deferred BEGIN

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def missing_database(self, url: URL) -> str | None:
        path = url.database or ""
        if path in ("", ":memory:") or path.startswith("file:") or url.query.get("mode") == "memory":
            return None
        return None if Path(path).is_file() else f"file not found: {path}"

    def __init__(self) -> None:
        self._deadlines: dict[int, list[float]] = {}  # id(connection) -> [deadline]; 0 once cancelled

    def arm_statement_deadline(self, dbapi: Any, timeout: float) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            deadline = self._deadlines[id(dbapi)] = [time.monotonic() + timeout]
            dbapi.set_progress_handler(lambda: 1 if time.monotonic() > deadline[0] else 0, 20_000)

    def disarm_statement_deadline(self, dbapi: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            self._deadlines.pop(id(dbapi), None)
            dbapi.set_progress_handler(None, 0)

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        """Interrupt the running statement and, through the progress handler, every later one of this checkout
        (an interrupt that arrives between two statements would otherwise be lost)."""
        deadline = self._deadlines.get(id(dbapi))
        if deadline is not None:
            deadline[0] = 0.0
        dbapi.interrupt()

    def is_timeout(self, message: str) -> bool:
        return message == "interrupted"

    # -- detection ------------------------------------------------------------------------------

    def case_fold(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return CaseFold(expr)

    def row_identity(self, *, is_view: bool) -> ColumnElement[Any] | None:
        return None if is_view else sa.literal_column("rowid")

    def timestamp_type(self, column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
        return sa.String()  # stored as the application wrote it; parsed by `detect.as_datetime`

    def shown_columns(self, table: sa.Table) -> list[ColumnElement[Any]]:
        """Exactly as stored: a `DATETIME` holding `2024-01-01T10:00:00Z` or a `NUMERIC` holding `n/a` would make
        SQLAlchemy's result processing raise."""
        return [sa.type_coerce(c, sa.types.NullType()).label(c.name) for c in table.columns]

    def missing_schema(self, exc: sa.exc.DBAPIError) -> bool:
        return "unknown database" in str(exc.orig)

    # -- fixes ----------------------------------------------------------------------------------

    def for_update(self, statement: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        return statement  # BEGIN IMMEDIATE already holds the database's write lock

    def expression_index(self, version: tuple[int, ...], server: str = "") -> bool:
        return True  # built-in functions only: see `case_fold_indexable`

"""MariaDB and MySQL (PyMySQL): what is true of them for dupewatch, their differences inside.

- Read-only sessions: `SET SESSION TRANSACTION READ ONLY`; the statement timeout is MariaDB's
  `max_statement_time` (seconds) or MySQL's `max_execution_time` (milliseconds, SELECT only). PyMySQL does not
  enable multi-statements, so one call is one statement. When a detection connection returns to the pool its
  named locks are released (`RELEASE_ALL_LOCKS()`, MariaDB 10.5+ / MySQL 5.7+).
- A statement is cancelled with `KILL QUERY <connection id>` from a second connection (MariaDB/MySQL docs,
  "KILL"); a frozen server has the connection's socket shut instead. TCP keepalives are switched on at connect.
- Text keys compare by the column's collation: a `_ci` collation already ignores case (and, for most, accents and
  trailing spaces), so `case_insensitive` on such a column is what a plain unique index enforces.
- No row identity (no ctid/rowid), NULL sorts first ascending, no NULLS NOT DISTINCT, no partial indexes;
  expression (functional) index parts only on MySQL 8.0.13+, none on MariaDB.
"""

from __future__ import annotations

import socket
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.base import COMMON_FORBIDDEN, Dialect, ForbiddenCall, NamedLock

if TYPE_CHECKING:
    from monitor.live.changes import ChangeStream

_FORBIDDEN = (
    *COMMON_FORBIDDEN,
    ForbiddenCall(r"\bbenchmark\s*\(", "it only burns the server's CPU"),
    ForbiddenCall(r"\b(?:get_lock|release_lock|release_all_locks)\s*\(", "named locks outlive the check"),
    ForbiddenCall(r"\bload_file\s*\(", "it reads server files"),
    ForbiddenCall(r"\binto\s+(?:outfile|dumpfile)\b", "it writes server files"),
    ForbiddenCall(r"\b(?:master|source)_(?:pos|gtid)_wait\s*\(|\bwait_for_executed_gtid_set\s*\(",
                  "it waits on replication"),
)


def fix_lock_name(table: str) -> str:
    """The named lock of a table's fix (the same name `monitor.fix.locks` uses)."""
    return "dupewatch_fix_" + sha256(table.encode()).hexdigest()[:32]


def is_mariadb(dbapi: Any) -> bool:
    return "mariadb" in str(dbapi.get_server_info()).lower()


class MySQL(Dialect):
    name = "mysql"
    change_stream_absent = ""
    forbidden_calls: ClassVar[tuple[ForbiddenCall, ...]] = _FORBIDDEN
    fix_isolation_level = "READ COMMITTED"  # locking reads see the latest rows; INSERT ... SELECT takes no locks
    partial_index = False
    write_refused_markers = ("read only transaction",)

    # -- connections ----------------------------------------------------------------------------

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        return {"connect_timeout": connect_timeout, "charset": "utf8mb4"}

    def prepare_session(self, dbapi: Any, *, read_only: bool, timeout: float) -> None:
        sock = getattr(dbapi, "_sock", None)  # PyMySQL has no keepalive option
        if isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        statements = ["SET SESSION TRANSACTION READ ONLY"] if read_only else []
        if is_mariadb(dbapi):
            statements.append(f"SET SESSION max_statement_time = {timeout:.3f}")
        else:
            statements.append(f"SET SESSION max_execution_time = {int(timeout * 1000)}")
        cursor = dbapi.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
        dbapi.commit()

    def reset_session(self, dbapi: Any) -> None:
        cursor = dbapi.cursor()
        try:
            cursor.execute("SELECT RELEASE_ALL_LOCKS()")
        finally:
            cursor.close()
        dbapi.rollback()

    def reflected_column_name(self, name: str) -> str:
        """SQLAlchemy's MySQL reflection reads names from SHOW CREATE TABLE and leaves a backtick in a column name
        doubled (`a``b`), so every statement naming that column would fail; use the real name."""
        return name.replace("``", "`")

    def change_stream(self, database: str, url: URL) -> ChangeStream:
        from monitor.live.mysql import BinlogStream

        return BinlogStream(database, url, self)

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        import pymysql

        args = url.translate_connect_args(username="user", database="database")
        killer = pymysql.connect(**args, connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
        try:
            with killer.cursor() as cursor:
                cursor.execute("KILL QUERY %s", (int(dbapi.thread_id()),))
        finally:
            killer.close()

    def socket_fileno(self, dbapi: Any) -> int | None:
        sock = getattr(dbapi, "_sock", None)
        return sock.fileno() if isinstance(sock, socket.socket) else None

    def is_timeout(self, message: str) -> bool:
        return "max_statement_time" in message or "maximum statement execution time" in message.lower()

    # -- fixes ----------------------------------------------------------------------------------

    def named_lock(self, key: str) -> NamedLock:
        name = fix_lock_name(key)
        return NamedLock(sa.text("SELECT GET_LOCK(:n, 0)").bindparams(n=name),
                         sa.text("SELECT RELEASE_LOCK(:n)").bindparams(n=name), f"lock {name}")

    def exact(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        """Text as stored: by collation `a` and `A ` are equal, yet such rows are not identical."""
        if isinstance(column.type, sa.String):
            return sa.cast(column, sa.LargeBinary)
        return column

    def expression_index(self, version: tuple[int, ...], server: str = "") -> bool:
        if "mariadb" in server.lower():
            return False  # no functional key parts (a generated column would change the table's shape)
        return version >= (8, 0, 13)

    def column_collations(self, conn: Connection, table: sa.Table) -> dict[str, str | None]:
        """From information_schema.COLUMNS: a column that inherits the table's collation has none in reflection."""
        query = sa.text("SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table")
        rows = conn.execute(query, {"schema": table.schema, "table": table.name})
        return {str(name): (str(collation) if collation else None) for name, collation in rows}

    def group_identity(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """A text value's sort key under its collation (`WEIGHT_STRING`): 'Ann' and 'ann' under a `_ci`
        collation are one group, as GROUP BY and `=` say, though Python sees two spellings."""
        if isinstance(expr.type, sa.String) and not isinstance(expr.type, sa.Enum):
            return sa.func.weight_string(expr, type_=sa.LargeBinary())
        return expr

    def plain_index_enforces_case_insensitive(self, collation: str | None) -> bool:
        """`*_ci` collations compare case-insensitively (MariaDB docs, "Setting Character Sets and
        Collations"); `_cs`, `_bin` and binary ones do not. None (unknown) is not assumed to."""
        return bool(collation) and str(collation).lower().endswith("_ci")

    def index_options(self, *, where: ColumnElement[bool] | None, nulls_not_distinct: bool) -> dict[str, Any]:
        if where is not None:
            raise ValueError("MySQL/MariaDB have no partial indexes")
        return {}

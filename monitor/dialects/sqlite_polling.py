"""What SQLite tells the watermark poll (`monitor.incremental`): see `monitor.dialects.polling`.

- The main database file's path names the database.
- Whether an index serves a lookup is the planner's answer (`EXPLAIN QUERY PLAN`, "The SQLite Query Optimizer
  Overview"); it gives no cost.
- Keys are IN lists: 500 per statement when an index serves them, else as many as SQLite binds (32,766).
- An `INTEGER PRIMARY KEY` is the rowid (not in a WITHOUT ROWID table, nor as `INTEGER PRIMARY KEY DESC`: their
  key has an index of its own, and nothing hands its values out; such a table's rows are told apart by the
  primary key, which every WITHOUT ROWID table has): a new row gets one more than the largest rowid (or than
  `sqlite_sequence.seq`, with AUTOINCREMENT), so a row imported with a large id moves the sequence with it: no
  row can still come below it.
- A date/time column holds what the application wrote (SQLite docs, "Datatypes In SQLite": type affinity): a
  timestamp watermark reads and compares text ('YYYY-MM-DD HH:MM:SS', as SQLite's date functions and SQLAlchemy
  write it); a column holding numbers (epoch seconds, Julian days) or blobs is refused in one line
  (`unreadable_watermark`: `typeof()` of its lowest and highest values, two index lookups, since numbers sort
  below text and blobs above it).
- `strftime('%Y-%m-%d %H:%M:%f', 'now')` is the clock (UTC), in the text form SQLAlchemy stores.
- SQLite does not say which transactions other connections have open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.polling import KEY_BATCH, Polling, SequencePosition, compiled_create_index

_SQLITE: sa.engine.Dialect = sqlite.dialect()  # how CREATE INDEX is written


def _primary_key_index(conn: Connection, schema: str, table: str) -> bool:
    """Whether the table's primary key has an index of its own (`PRAGMA index_list`, origin `pk`): then it is not
    the rowid, whose values SQLite hands out. A WITHOUT ROWID table (which has no rowid: `max(rowid)` fails with
    "no such column") and an `INTEGER PRIMARY KEY DESC` (SQLite docs, "ROWIDs and the INTEGER PRIMARY KEY") have
    one; a rowid alias has none."""
    return any(str(row[3]) == "pk" for row in conn.exec_driver_sql(f"PRAGMA {schema}index_list({table})").all())


class SQLitePolling(Polling):
    def database_identity_statements(self, conn: Connection) -> list[str]:
        return ["SELECT file FROM pragma_database_list WHERE name = 'main'"]

    def served_by_index(self, conn: Connection, table: sa.Table, exprs: Sequence[ColumnElement[Any]]) -> bool:
        probe = sa.select(sa.func.count()).select_from(table).where(*[e == sa.literal(0) for e in exprs])
        compiled = probe.compile(conn, compile_kwargs={"literal_binds": True})
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
        return any("USING" in str(row[-1]) and ("INDEX" in str(row[-1]) or "PRIMARY KEY" in str(row[-1]))
                   for row in plan)

    def index_statement(self, table: sa.Table, exprs: Sequence[ColumnElement[Any]], name: str) -> str:
        return compiled_create_index(table, sa.Index(name, *exprs), _SQLITE)

    def key_batch_size(self, width: int, *, indexed: bool) -> int:
        return KEY_BATCH if indexed else max(KEY_BATCH, 32_000 // width)

    def database_clock(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        if isinstance(column.type, sa.DateTime):
            return sa.type_coerce(sa.func.strftime("%Y-%m-%d %H:%M:%f", "now"), column.type)
        return sa.type_coerce(sa.func.date("now"), column.type)

    def unreadable_watermark(self, conn: Connection, table: sa.Table, column: sa.Column[Any]) -> str | None:
        """Where a date/time column holds anything but text: SQLite sorts numbers below text and blobs above it,
        so the types of its lowest and highest values tell (NULL is left out by min() and max())."""
        if not isinstance(column.type, sa.DateTime | sa.Date):
            return None
        stored = sa.type_coerce(column, sa.types.NullType())
        lowest = sa.select(sa.func.min(stored)).select_from(table).scalar_subquery()
        highest = sa.select(sa.func.max(stored)).select_from(table).scalar_subquery()
        low_type, high_type = conn.execute(sa.select(sa.func.typeof(lowest), sa.func.typeof(highest))).one()
        odd = [str(kind) for kind in (low_type, high_type) if kind not in ("text", "null")]
        if not odd:
            return None
        kind = odd[0]  # (the type only: a row's value never reaches a message)
        what = {"integer": "integers (epoch seconds?)", "real": "real numbers (Julian days?)"}.get(kind, f"{kind}s")
        return (f"column {column.name!r} is declared {column.type} but holds {what} "
                "(SQLite's typeof()); a timestamp watermark reads dates stored as text ('YYYY-MM-DD HH:MM:SS'): "
                "watch an INTEGER column instead (epoch seconds are an integer watermark), or store the dates as text")

    def sequence_position(self, conn: Connection, table: sa.Table, column: sa.Column[Any]) -> SequencePosition | None:
        quote = conn.dialect.identifier_preparer.quote
        schema = f"{quote(table.schema)}." if table.schema else ""
        info = conn.exec_driver_sql(f"PRAGMA {schema}table_info({quote(table.name)})").all()
        keys = [row for row in info if row[5]]
        if len(keys) != 1 or keys[0][1] != column.name or str(keys[0][2]).upper() != "INTEGER":
            return None  # not the rowid: nothing hands its values out
        if _primary_key_index(conn, schema, quote(table.name)):
            return None  # a WITHOUT ROWID table, or `INTEGER PRIMARY KEY DESC`: the key is not the rowid
        top = conn.execute(sa.select(sa.func.max(sa.literal_column("rowid"))).select_from(table)).scalar()
        if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first():
            seq = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table.name}).scalar()
            top = max(int(v) for v in (top, seq, 0) if v is not None)
        return SequencePosition(f"the rowid of {table.name}", int(top or 0))

"""The guard on SQLite: the duplicate count and `CREATE UNIQUE INDEX` in one `BEGIN IMMEDIATE` transaction."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from monitor.detect import where_condition
from monitor.fix.errors import FixRefused
from monitor.fix.guard.build import Builder


class SQLiteBuilder(Builder):
    """The count and the build in one `BEGIN IMMEDIATE` transaction: SQLite has one writer at a time."""

    nulls_distinct_in = "SQLite"

    def index(self, *, concurrently: bool) -> sa.Index:
        options: dict[str, Any] = {}
        if self.t.config.where:
            options["sqlite_where"] = where_condition(self.t.config.where)
        return sa.Index(self.name, *self.key_parts(), unique=True, **options)

    def existing(self) -> str | None:
        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(sa.text("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                               {"n": self.name}).first()
        if row is None:
            return None
        expected = self.statement(self.index(concurrently=False))
        if row.tbl_name != self.t.tc.table.name or not self._matches(row.sql or "", expected):
            raise FixRefused(f"index {self.name} already exists but is not this check's guard: it is "
                             f"`{' '.join(_words(row.sql or '(automatic index)'))}`, the check needs `{expected}`; "
                             "drop or rename it, then run the guard again")
        return "present"

    def _matches(self, sql: str, expected: str) -> bool:
        """Plain column keys: by SQLite's own description of the index (PRAGMA index_list, index_xinfo);
        expressions and predicates, which SQLite keeps only as the statement's text: by that text."""
        parts = self.key_parts()
        if self.t.config.where or not all(isinstance(p, sa.Column) for p in parts):
            return _words(sql) == _words(expected)
        with self.t.db.connect(self.t.db.writer) as conn:
            listed = {r[1]: r for r in conn.exec_driver_sql(
                f"PRAGMA index_list({self.q(self.t.tc.table.name)})")}
            entry = listed.get(self.name)
            keys = [r[2] for r in conn.exec_driver_sql(f"PRAGMA index_xinfo({self.q(self.name)})") if r[5]]
        # index_list rows: (seq, name, unique, origin, partial); index_xinfo: (seqno, cid, name, desc, coll, key)
        return entry is not None and bool(entry[2]) and not entry[4] and keys == [p.name for p in parts]

    def build(self, lock_timeout: float | None) -> None:
        index = self.index(concurrently=False)
        with self.t.db.connect(self.t.db.writer) as conn:
            try:
                with conn.begin():
                    self.duplicates(conn)
                    conn.execute(sa.schema.CreateIndex(index))
            except sa.exc.DBAPIError as exc:
                raise self.failed(exc) from None


def _words(sql: str) -> list[str]:
    return re.sub(r"\s+", " ", sql.replace("(", " ( ").replace(")", " ) ")).strip().split(" ")

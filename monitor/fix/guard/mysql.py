"""The guard on MySQL/MariaDB: an atomic `CREATE UNIQUE INDEX`, a column indexed as stored where its collation
already compares the way the check does (asked of the server), expression key parts only on MySQL 8.0.13+, and
`LOCK TABLES ... WRITE` under `lock_wait_timeout` for `--lock-timeout`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import DatabaseError, first_line
from monitor.fix.errors import FixRefused
from monitor.fix.guard.build import Builder, lock_refused
from monitor.fix.guard.report import GuardInterrupted
from monitor.fix.target import Target
from monitor.words import command

_MY_COLUMN = sa.text(
    "SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table AND COLUMN_NAME = :column")
# MariaDB appends a system-versioned table's end column (hidden, or a named `row_end`) to each unique key so
# that it holds among current rows; the guard's definition is compared without it.
_MY_INDEX = sa.text(
    "SELECT s.NON_UNIQUE, s.COLUMN_NAME, s.SUB_PART FROM information_schema.STATISTICS s "
    "WHERE s.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND s.TABLE_NAME = :table AND s.INDEX_NAME = :name "
    "AND (s.COLUMN_NAME IS NULL OR s.COLUMN_NAME IN (SELECT c.COLUMN_NAME FROM information_schema.COLUMNS c "
    "WHERE c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME "
    "AND COALESCE(c.GENERATION_EXPRESSION, '') NOT IN ('ROW START', 'ROW END'))) "
    "ORDER BY s.SEQ_IN_INDEX")
_MY_VERSIONED = sa.text(
    "SELECT TABLE_TYPE = 'SYSTEM VERSIONED' FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table")
_MY_DUPLICATE_KEY = (1062, 1022, 1169, 1586)  # ER_DUP_ENTRY, ER_DUP_KEY, ER_DUP_UNIQUE, ER_DUP_ENTRY_WITH_KEY_NAME
_MY_LOCK_WAIT_TIMEOUT = 1205


class MySQLBuilder(Builder):
    nulls_distinct_in = "MySQL/MariaDB"

    def __init__(self, t: Target) -> None:
        super().__init__(t)
        with t.db.connect(t.db.writer) as conn:
            self.version = str(conn.execute(sa.text("SELECT VERSION()")).scalar_one())
        self.mariadb = "mariadb" in self.version.lower()
        self._parts: list[sa.ColumnElement[Any]] | None = None

    def key_parts(self) -> list[sa.ColumnElement[Any]]:
        """Each key column, or its normalised expression when the column's collation does not already
        compare that way (asked of the server, with the column's own character set and collation)."""
        if self._parts is None:
            self._parts = [self._part(column, expr)
                           for column, expr in zip(self.t.tc.key_columns, self.t.tc.key_exprs, strict=True)]
        return self._parts

    def _part(self, column: sa.Column[Any], expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if expr is column:
            return column
        check = self.t.config
        charset, collation = self._collation(column)
        folds_case, pads = self._compares(charset, collation)
        if (not check.case_insensitive or folds_case) and (not check.trim_whitespace or pads):
            if check.trim_whitespace:
                self.notes.append(f"column {column.name!r} is indexed as stored: its collation {collation} ignores "
                                  "trailing spaces (PAD SPACE) but not leading ones, which the check trims too")
            return column
        wanted = " and ".join(w for w, on in (("case-insensitively", check.case_insensitive and not folds_case),
                                               ("ignoring leading and trailing spaces",
                                                check.trim_whitespace and not pads))
                              if on)
        if self.mariadb:
            raise FixRefused(f"check {check.name!r} compares column {column.name!r} {wanted}, which its collation "
                             f"{collation} does not, so the guard needs an expression index; MariaDB has none (a "
                             "generated column would change the table's shape for the application): add the "
                             "constraint by hand" + (", or give the column a case-insensitive collation"
                                                     if check.case_insensitive and not folds_case
                                                     and not check.trim_whitespace else ""))
        numbers = tuple(int(p) for p in self.version.split("-")[0].split(".")[:3] if p.isdigit())
        if numbers < (8, 0, 13):
            raise FixRefused(f"check {check.name!r} needs an expression index on {column.name!r} (lower()/trim()), "
                             f"which requires MySQL 8.0.13 or later (server is {self.version})")
        return expr

    def _collation(self, column: sa.Column[Any]) -> tuple[str, str]:
        table = self.t.tc.table
        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(_MY_COLUMN, {"schema": table.schema, "table": table.name,
                                            "column": column.name}).one()
        return str(row[0]), str(row[1])

    def _compares(self, charset: str, collation: str) -> tuple[bool, bool]:
        """(whether 'a' equals 'A', whether 'a' equals 'a ') under this collation, as the server says."""
        def value(param: str) -> str:
            return f"CONVERT(:{param} USING {self.q(charset)}) COLLATE {self.q(collation)}"

        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(sa.text(f"SELECT {value('a')} = {value('b')}, {value('a')} = {value('c')}"),
                               {"a": "a", "b": "A", "c": "a "}).one()
        return bool(row[0]), bool(row[1])

    def index(self, *, concurrently: bool) -> sa.Index:
        if self.t.config.where:
            raise FixRefused(f"check {self.t.config.name!r} has a `where` filter and MySQL/MariaDB have no partial "
                             "indexes: a unique index would also cover the rows the check ignores; add the "
                             "constraint by hand")
        return sa.Index(self.name, *self.key_parts(), unique=True)

    def existing(self) -> str | None:
        table = self.t.tc.table
        with self.t.db.connect(self.t.db.writer) as conn:
            rows = conn.execute(_MY_INDEX, {"schema": table.schema, "table": table.name, "name": self.name}).all()
        if not rows:
            return None
        have = [(r.COLUMN_NAME, r.SUB_PART) for r in rows]
        want = [(p.name if isinstance(p, sa.Column) else None, None) for p in self.key_parts()]
        if rows[0].NON_UNIQUE or have != want:
            shown = ", ".join(f"{c or '(expression)'}{f'({s})' if s else ''}" for c, s in have)
            needs = ", ".join(c or "(expression)" for c, _ in want)
            raise FixRefused(f"index {self.name} already exists on {self.t.table_name!r} but is not this check's "
                             f"guard: it is {'a non-unique' if rows[0].NON_UNIQUE else 'a unique'} index on "
                             f"({shown}), the check needs a unique index on ({needs}); drop or rename it, then "
                             "run the guard again")
        return "present"

    def build(self, lock_timeout: float | None) -> None:
        index = self.index(concurrently=False)
        with self.t.db.connect(self.t.db.writer) as conn, self._versioned_alter(conn):
            pid, started = conn.execute(sa.text("SELECT CONNECTION_ID(), NOW(6)")).one()
            conn.rollback()  # end the autobegun transaction: LOCK TABLES and DDL must start afresh
            try:
                if lock_timeout is None:
                    with conn.begin():
                        self.duplicates(conn)
                    with conn.begin():
                        conn.execute(sa.schema.CreateIndex(index))
                else:
                    with self._write_locked(conn, lock_timeout):
                        self.duplicates(conn)
                        conn.execute(sa.schema.CreateIndex(index))
            except sa.exc.DBAPIError as exc:
                if exc.orig is not None and exc.orig.args and exc.orig.args[0] == _MY_LOCK_WAIT_TIMEOUT \
                        and lock_timeout is not None:
                    raise lock_refused(self.t, lock_timeout) from None
                if lock_timeout is None and self.t.db.rules.is_timeout(first_line(exc)):
                    older = self._older_transactions(pid, started)
                    if older:
                        raise FixRefused(self._waited(older)) from None
                raise self.failed(exc) from None
            except KeyboardInterrupt:
                self._kill(pid)
                raise GuardInterrupted(f"interrupted: the unique index build for {self.t.config.name!r} was "
                                       "cancelled (MySQL/MariaDB build it atomically: nothing was left behind; "
                                       f"`{command('guard', self.t.config.name)}` again shows whether it finished "
                                       "first)") from None

    def _older_transactions(self, pid: int, started: Any) -> list[str]:
        """The sessions whose transaction began before the build, oldest first (InnoDB's list, with PROCESSLIST's
        user and host), as `connection 12 (Sleep in a transaction since 2024-05-01 12:00:01, app@10.0.0.5)`: a
        transaction that read or wrote the table holds its metadata lock until it ends, and `CREATE INDEX` waits
        for that lock (bounded by statement_timeout). Empty where the role may not read the list (PROCESS)."""
        try:
            with self.t.db.connect(self.t.db.writer) as fresh:
                rows = fresh.execute(sa.text(
                    "SELECT t.trx_mysql_thread_id AS id, t.trx_started AS since, p.COMMAND AS command, "
                    "p.USER AS user, p.HOST AS host FROM information_schema.INNODB_TRX t "
                    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                    "WHERE t.trx_started < :started AND t.trx_mysql_thread_id NOT IN (:pid, CONNECTION_ID()) "
                    "ORDER BY t.trx_started LIMIT 5"), {"started": started, "pid": pid}).all()
        except (sa.exc.DBAPIError, DatabaseError):
            return []
        return [f"connection {r.id} ({r.command} in a transaction since {r.since:%Y-%m-%d %H:%M:%S}, "
                f"{r.user}@{r.host})" for r in rows]

    def _waited(self, older: list[str]) -> str:
        wait = self.t.db.config.statement_timeout
        return (f"building the unique index {self.name} for {self.t.config.name!r} was cancelled after {wait:g}s "
                "(the database's statement_timeout) and nothing was left behind (MySQL/MariaDB build it "
                "atomically): CREATE INDEX waits for the table's metadata lock, which a transaction holds until it "
                f"ends, and these transactions began before the build: {', '.join(older)}; end them (commit, roll "
                "back, or close the session) and run the guard again")

    @contextmanager
    def _versioned_alter(self, conn: Connection) -> Iterator[None]:
        """MariaDB refuses any ALTER of a system-versioned table unless the session allows it
        (`system_versioning_alter_history = KEEP`); adding an index rewrites no history row, and MariaDB extends
        a unique key with the period's end so that it holds among current rows. Set for this build only."""
        table = self.t.tc.table
        versioned = self.mariadb and conn.execute(_MY_VERSIONED, {"schema": table.schema,
                                                                  "table": table.name}).scalar()
        conn.rollback()
        if not versioned:
            yield
            return
        before = conn.execute(sa.text("SELECT @@SESSION.system_versioning_alter_history")).scalar_one()
        conn.execute(sa.text("SET SESSION system_versioning_alter_history = 'KEEP'"))
        conn.rollback()
        self.notes.append(f"{self.t.table_name!r} is system-versioned: the index was added with "
                          "system_versioning_alter_history = KEEP for this session (an index rewrites no history), "
                          "and MariaDB keys it on the current rows")
        try:
            yield
        finally:
            conn.execute(sa.text("SET SESSION system_versioning_alter_history = :v"), {"v": before})
            conn.rollback()

    @contextmanager
    def _write_locked(self, conn: Connection, lock_timeout: float) -> Iterator[None]:
        """`LOCK TABLES t WRITE`, waiting at most `lock_timeout` (lock_wait_timeout, whole seconds, at least 1)."""
        before = conn.execute(sa.text("SELECT @@SESSION.lock_wait_timeout")).scalar_one()
        conn.execute(sa.text("SET SESSION lock_wait_timeout = :s"), {"s": max(1, math.ceil(lock_timeout))})
        try:
            conn.exec_driver_sql(f"LOCK TABLES {self.table_sql} WRITE")
            try:
                yield
            finally:
                conn.exec_driver_sql("UNLOCK TABLES")
        finally:
            conn.execute(sa.text("SET SESSION lock_wait_timeout = :s"), {"s": before})

    def _kill(self, pid: int) -> None:
        try:
            with self.t.db.connect(self.t.db.writer) as fresh:
                fresh.exec_driver_sql(f"KILL QUERY {int(pid)}")
        except (sa.exc.DBAPIError, DatabaseError):
            pass  # the session ended already

    def is_unique_violation(self, exc: sa.exc.DBAPIError) -> bool:
        args: tuple[Any, ...] = getattr(exc.orig, "args", ())
        return bool(args) and args[0] in _MY_DUPLICATE_KEY

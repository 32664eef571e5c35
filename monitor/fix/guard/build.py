"""One attempt at one check's guard: what every database's builder shares (the duplicate count, the null notes,
the real cause of a failed build); one module per database says how its catalog is read and its index built."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import first_line
from monitor.fix import records
from monitor.fix.errors import FixRefused
from monitor.fix.guard.report import DuplicatesFound, GuardReport, guard_name
from monitor.fix.target import Target
from monitor.words import command


class Builder:
    """One attempt at one check's guard on one dialect; subclasses say how the catalog is read."""

    nulls_distinct_in: ClassVar[str] = ""  # where unique indexes treat NULLs as distinct, for the null note

    def __init__(self, t: Target) -> None:
        self.t = t
        self.name = guard_name(t.config.name)
        self.notes: list[str] = []
        self.was_fixed = False

    # what the subclasses provide
    def key_parts(self) -> list[sa.ColumnElement[Any]]:
        return list(self.t.tc.key_exprs)

    def index(self, *, concurrently: bool) -> sa.Index:
        raise NotImplementedError

    def build(self, lock_timeout: float | None) -> None:
        raise NotImplementedError

    def existing(self) -> str | None:
        """None when no index of our name exists and none needs rebuilding; "present" when it counts;
        raises `FixRefused` when a valid index of our name does not match the check."""
        raise NotImplementedError

    def probe(self, lock_timeout: float | None) -> str | None:
        """Raise `FixRefused` for what refuses the index whatever the rows hold, building nothing; `existing`."""
        self.index(concurrently=lock_timeout is None)
        return self.existing()

    # shared
    def add(self, lock_timeout: float | None) -> GuardReport:
        self.was_fixed = self._was_fixed()  # asked first: MySQL's LOCK TABLES hides every other table
        self.notes.extend(self.null_notes())
        statement = self.statement(self.index(concurrently=lock_timeout is None))
        if self.existing() == "present":
            return GuardReport(self.t.config.name, self.name, False, statement,
                               [f"index {self.name} already exists", *self.notes])
        self.build(lock_timeout)
        return GuardReport(self.t.config.name, self.name, True, statement, self.notes)

    def statement(self, index: sa.Index) -> str:
        """The statement as the operator would type it: compiled for the driver, every `%` would be doubled."""
        dialect = self.t.db.writer.dialect
        # every concrete SQLAlchemy dialect takes `paramstyle`; the base class's signature in its hints does not
        named = cast(Callable[..., sa.Dialect], type(dialect))(paramstyle="named")
        return str(sa.schema.CreateIndex(index).compile(dialect=named)).strip()

    def null_notes(self) -> list[str]:
        nulls = self.t.config.nulls
        if nulls == "distinct" or not self.nullable_key():
            return []
        if self.nulls_not_distinct():
            return []
        return [f"{self.nulls_distinct_in} unique indexes treat NULLs as distinct: rows whose key has a NULL are not "
                f"guarded, although the check counts them as duplicates (nulls = \"{nulls}\")"]

    def nullable_key(self) -> bool:
        return any(c.nullable for c in self.t.tc.key_columns)

    def nulls_not_distinct(self) -> bool:
        return False

    def duplicates(self, conn: Connection) -> None:
        """Raise `DuplicatesFound` if the check finds duplicates now (run inside the caller's transaction)."""
        groups, excess, _rows = conn.execute(self.t.tc.figures()).one()
        if groups:
            raise DuplicatesFound(self._duplicates_message(groups, excess),
                                  f"{groups} duplicate group(s) ({excess} excess rows) in the table")

    def _duplicates_message(self, groups: int, excess: int) -> str:
        check = self.t.config.name
        after = ", perhaps new ones that arrived after the fix" if self.was_fixed else ""
        return (f"check {check!r} has {groups} duplicate group(s) ({excess} excess rows){after}; nothing was "
                f"built: fix them first (`{command('fix', check)}`)")

    def _was_fixed(self) -> bool:
        """Whether `dupewatch_fix` (in this database) records a finished fix of this check."""
        with self.t.db.connect(self.t.db.bookkeeping) as own, own.begin():
            if not records.has_tables(own):
                return False
            return any(r.state == "done" for r in records.records(own, self.t.config.name))

    def failed(self, exc: sa.exc.DBAPIError, *, left: str = "nothing was left behind") -> FixRefused:
        """The real cause of a failed build: duplicates only when the database says so."""
        if self.is_unique_violation(exc):
            return DuplicatesFound(f"building the unique index for {self.t.config.name!r} found duplicates that "
                                   f"arrived during the build and {left}: {self.t.db.describe(exc)}",
                                   f"duplicates arrived during the build ({first_line(exc)})")
        return FixRefused(f"building the unique index for {self.t.config.name!r} failed and {left}: "
                          f"{self.t.db.describe(exc)}")

    def is_unique_violation(self, exc: sa.exc.DBAPIError) -> bool:
        return isinstance(exc, sa.exc.IntegrityError)

    def q(self, name: str) -> str:
        return self.t.db.writer.dialect.identifier_preparer.quote(name)

    def qualified(self, name: str) -> str:
        schema = self.t.tc.table.schema
        preparer = self.t.db.writer.dialect.identifier_preparer
        return (f"{preparer.quote_schema(schema)}." if schema else "") + preparer.quote(name)

    @property
    def table_sql(self) -> str:
        return self.t.db.writer.dialect.identifier_preparer.format_table(self.t.tc.table)


def milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def lock_refused(t: Target, lock_timeout: float) -> FixRefused:
    return FixRefused(f"could not take the write lock on {t.table_name!r} within {lock_timeout:g}s (the "
                      "application's transactions held it): nothing was built or changed; try again at a quieter "
                      "moment or with a longer --lock-timeout")

"""The guard: the unique index every seed incident ended with, added once the duplicates are gone.

What counts as "the guard is there" is decided by the database's catalog, never by the index's name alone:
an index named `uq_dupewatch_<check>` counts only if it is valid and its definition is the one this check
needs (columns or expressions, uniqueness, NULLS NOT DISTINCT, predicate). An invalid one (an interrupted
PostgreSQL build) is dropped and rebuilt; a valid one with another definition is a refusal naming it.

- PostgreSQL: `CREATE UNIQUE INDEX CONCURRENTLY` on an autocommit connection (the table stays writable),
  `NULLS NOT DISTINCT` on 15+ when the check treats NULLs as equal, an expression index (`lower()`,
  `trim()`) for case-insensitive or trimmed keys, and the check's `where` as a partial-index predicate.
  Before anything is built the definition is tried on an empty temporary copy of the table
  (`CREATE TEMP TABLE ... (LIKE ...)`, rolled back): PostgreSQL itself says whether the predicate and the
  expressions are IMMUTABLE (a `where` with `now()` is refused up front, naming it) and deparses the
  definition we compare an existing index against (`pg_get_indexdef`, `pg_index.indisvalid/indisready`).
  A partitioned table cannot be indexed concurrently (PostgreSQL docs, CREATE INDEX, "Notes"): the index is
  created `ON ONLY` the parent, then concurrently on each partition and attached (`ALTER INDEX ... ATTACH
  PARTITION`), which makes the parent's index valid. Ctrl-C during a build cancels it on the server and drops
  the half-built index from a fresh connection, or names the exact `DROP INDEX CONCURRENTLY` to run.
- MySQL/MariaDB: `CREATE UNIQUE INDEX` (an online `ALTER TABLE ... ADD UNIQUE`), atomic. A case-insensitive
  key on a column whose collation already compares case-insensitively (and a trimmed key under a PAD SPACE
  collation, which ignores trailing spaces) needs no expression: the column itself is indexed, as the server
  says when asked to compare with the column's collation (information_schema.COLUMNS). Other normalised keys
  need MySQL 8.0.13+ functional key parts; MariaDB has none, and we refuse rather than add a generated column
  behind the application's back. No partial indexes.
- SQLite: `CREATE UNIQUE INDEX`, expressions and partial indexes included, in the same `BEGIN IMMEDIATE`
  transaction as the duplicate count, so no writer can slip a duplicate in between.

While the application keeps writing duplicates, `secure_guard` converges: it fixes the stragglers (`run_fix`)
and retries the build, at most `GUARD_ROUNDS` rounds, each reported; with `lock_timeout` it finally takes the
table's write lock (PostgreSQL `LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE` under `SET LOCAL lock_timeout`;
MariaDB/MySQL `LOCK TABLES ... WRITE` under `lock_wait_timeout`), re-counts under the lock and builds a plain
`CREATE UNIQUE INDEX`, or gives up cleanly when the lock is not granted in time.

MySQL, MariaDB and SQLite (and PostgreSQL before 15) treat NULLs in a unique index as distinct; when the
check treats them as equal and a key column is nullable, the report says so. The index name is
deterministic: `uq_dupewatch_<check>`, sanitised, at most 63 characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import visitors

from monitor.db import Database, DatabaseError, first_line
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.errors import FixError, FixRefused
from monitor.fix.execute import _Target, target
from monitor.fix.records import safe_identifier

if TYPE_CHECKING:
    from monitor.fix.execute import FixReport, ProgressCallback

GUARD_ROUNDS = 3
_TRIAL_TABLE = "dupewatch_guard_trial"


class DuplicatesFound(FixRefused):
    """Nothing was built because the table has duplicates again (they may go away with another fix).
    `short` is what a round reports: the counts, or the database's unique violation."""

    def __init__(self, message: str, short: str = "") -> None:
        super().__init__(message)
        self.short = short or message


class GuardInterrupted(FixRefused):
    """Ctrl-C during a build: the build was cancelled and its half-built index dropped (or named)."""


@dataclass
class GuardRound:
    """One attempt of `secure_guard`: an optional straggler fix, then a build."""

    number: int
    method: str  # "concurrent" (the table stays writable), "locked" (writes paused), "atomic" (MySQL, SQLite)
    outcome: str  # "built", "present", "duplicates", "failed"
    message: str = ""
    straggler_fix: str | None = None  # fix_id of the fix run before this build
    stragglers_deleted: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"round": self.number, "method": self.method, "outcome": self.outcome, "message": self.message,
                "straggler_fix": self.straggler_fix, "stragglers_deleted": self.stragglers_deleted}

    def line(self) -> str:
        fixed = (f"fixed {self.stragglers_deleted:,} straggler row(s) (fix {self.straggler_fix}), "
                 if self.straggler_fix else "")
        return f"round {self.number} ({self.method}): {fixed}{self.outcome}" + (f": {self.message}"
                                                                               if self.message else "")


@dataclass
class GuardReport:
    check: str
    index_name: str
    created: bool
    statement: str
    notes: list[str] = field(default_factory=list)
    rounds: list[GuardRound] = field(default_factory=list)
    error: str | None = None  # set (and created False) when `guard_after_fix` could not add it

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "constraint": None if self.error else self.index_name,
                "created": self.created, "statement": self.statement, "notes": self.notes,
                "rounds": [r.as_json() for r in self.rounds], "error": self.error}


def guard_name(check: str) -> str:
    return safe_identifier("uq_dupewatch_", check, strict=False)


def add_guard(monitor: Monitor, check: str, *, lock_timeout: float | None = None) -> GuardReport:
    """Add the unique index for `check` in one attempt; idempotent.

    `lock_timeout` (seconds): build a plain `CREATE UNIQUE INDEX` under the table's write lock, waiting at most
    this long for the lock. Raises `DuplicatesFound` when the table has duplicates (nothing built),
    `GuardInterrupted` on Ctrl-C (nothing left behind, or the statement to run), `FixRefused` with the real
    cause otherwise, `monitor.db.DatabaseError` when the database cannot be reached.
    """
    builder = _builder(target(monitor, check))
    try:
        return builder.add(lock_timeout)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(builder.t.db.describe(exc)) from None


def secure_guard(monitor: Monitor, check: str, *, rounds: int = GUARD_ROUNDS, lock_timeout: float | None = None,
                 batch_size: int | None = None, progress: ProgressCallback | None = None,
                 on_round: Callable[[GuardRound], None] | None = None) -> GuardReport:
    """Add the guard while the application may still be writing duplicates: converge in bounded rounds.

    Call it after a fix. Round 1 builds; each later round first fixes the duplicates that arrived meanwhile
    (`run_fix`, archived and undoable like any fix) and builds again, at most `rounds` rounds. With
    `lock_timeout` (seconds), up to `rounds` more rounds each fix the stragglers, take the table's write lock
    (waiting at most `lock_timeout`), re-count under it and build a plain `CREATE UNIQUE INDEX`; application
    writes wait meanwhile. `on_round` is called after every round. Returns the report with every round in
    `rounds`; raises `FixRefused` (the last round's cause, rounds so far in `.rounds`) when it did not converge
    or something other than new duplicates stopped it.
    """
    done: list[GuardRound] = []
    plans = [(n, None) for n in range(1, rounds + 1)]
    if lock_timeout is not None:
        plans += [(n, lock_timeout) for n in range(rounds + 1, 2 * rounds + 1)]
    last: FixError | None = None
    for number, locked in plans:
        step = GuardRound(number, "locked" if locked is not None else _method(monitor, check), "failed")
        try:
            if locked is not None and _method(monitor, check) == "concurrent":
                report = _locked_postgresql(monitor, check, locked, step, batch_size, progress)
            else:
                if number > 1:
                    _fix_stragglers(monitor, check, step, batch_size, progress)
                report = add_guard(monitor, check, lock_timeout=locked)
        except DuplicatesFound as exc:
            step.outcome, step.message, last = "duplicates", exc.short, exc
            _record_round(done, step, on_round)
            continue
        except FixError as exc:
            step.message = str(exc)
            _record_round(done, step, on_round)
            raise _with_rounds(FixRefused(str(exc)), done) from None
        step.outcome = "built" if report.created else "present"
        _record_round(done, step, on_round)
        report.rounds = done
        return report
    message = (f"the unique index for {check!r} was not added after {len(done)} round(s) of fixing the "
               f"stragglers and building: {last}")
    if lock_timeout is None:
        message += " (the application keeps writing duplicates: try --lock-timeout to pause its writes briefly)"
    raise _with_rounds(FixRefused(message), done)


def guard_after_fix(monitor: Monitor, check: str, report: FixReport, *, rounds: int = GUARD_ROUNDS,
                    lock_timeout: float | None = None, batch_size: int | None = None,
                    progress: ProgressCallback | None = None,
                    on_round: Callable[[GuardRound], None] | None = None) -> GuardReport:
    """`fix --add-constraint` and the dashboard's checkbox: `secure_guard` after a done fix.

    On success sets `report.constraint`, adds the guard's notes to `report.notes` and records the constraint
    on the fix's row of `dupewatch_fix`; on failure adds "constraint not added: <cause>" to `report.notes` and
    returns a report with `created` False and `error` set (the fix itself stands). Every round is in `rounds`.
    """
    try:
        guard = secure_guard(monitor, check, rounds=rounds, lock_timeout=lock_timeout, batch_size=batch_size,
                             progress=progress, on_round=on_round)
    except FixError as exc:
        report.notes.append(f"constraint not added: {exc}")
        done: list[GuardRound] = getattr(exc, "rounds", [])
        report.notes.extend(r.line() for r in done)
        return GuardReport(check, guard_name(check), False, "", [], done, error=str(exc))
    report.constraint = guard.index_name
    report.notes.extend(guard.notes)
    if len(guard.rounds) > 1:
        report.notes.extend(r.line() for r in guard.rounds)
    t = target(monitor, check)
    with t.db.connect(t.db.bookkeeping) as conn, conn.begin():
        records.update_record(conn, report.fix_id, constraint_name=guard.index_name)
    return guard


def _record_round(done: list[GuardRound], step: GuardRound, on_round: Callable[[GuardRound], None] | None) -> None:
    done.append(step)
    if on_round is not None:
        on_round(step)


def _with_rounds(exc: FixRefused, done: list[GuardRound]) -> FixRefused:
    exc.rounds = list(done)  # type: ignore[attr-defined]
    return exc


def _method(monitor: Monitor, check: str) -> str:
    return "concurrent" if monitor.database_for(monitor.config.check(check)).dialect == "postgresql" else "atomic"


def _fix_stragglers(monitor: Monitor, check: str, step: GuardRound, batch_size: int | None,
                    progress: ProgressCallback | None) -> None:
    """Fix the duplicates that arrived since the last round, if there are any."""
    from monitor.fix.execute import run_fix

    t = target(monitor, check)
    with t.db.connect(t.db.writer) as conn, conn.begin():
        groups, _excess = conn.execute(t.tc.figures()).one()
    if not groups:
        return
    fixed = run_fix(monitor, check, batch_size=batch_size, progress=progress)
    step.straggler_fix, step.stragglers_deleted = fixed.fix_id, fixed.deleted


def _locked_postgresql(monitor: Monitor, check: str, lock_timeout: float, step: GuardRound,
                       batch_size: int | None, progress: ProgressCallback | None) -> GuardReport:
    """The final straggler pass and a plain build, all in one transaction holding the table's write lock.

    The fix runs on the locked session itself (`run_fix` through a one-connection engine whose commits are
    savepoints of the locked transaction), so nothing the application writes can slip in between the pass
    and the build; everything (fix records included) commits together or not at all."""
    from monitor.fix.execute import run_fix

    builder = _builder(target(monitor, check))
    assert isinstance(builder, _PostgresBuilder)
    builder.notes.extend(builder._null_notes())
    if builder.existing() == "present":  # also drops an INVALID one and asks PostgreSQL about the definition
        index = builder.index(concurrently=False)
        return GuardReport(check, builder.name, False, builder.statement(index),
                           [f"index {builder.name} already exists", *builder.notes])
    try:
        with _LockedSession(builder, lock_timeout) as session:
            if session.groups():
                fixed = run_fix(session.monitor(monitor), check, batch_size=batch_size,
                                progress=progress)
                step.straggler_fix, step.stragglers_deleted = fixed.fix_id, fixed.deleted
            return session.build()
    except DuplicatesFound as exc:
        if step.straggler_fix is None:
            raise
        rolled_back = f" (this round's straggler fix {step.straggler_fix} was rolled back with it)"
        raise DuplicatesFound(f"{exc}{rolled_back}", exc.short + rolled_back) from None


# -- one attempt -------------------------------------------------------------------------------------


def _builder(t: _Target) -> _Builder:
    return {"postgresql": _PostgresBuilder, "mysql": _MySQLBuilder}.get(t.db.dialect, _SQLiteBuilder)(t)


class _Builder:
    """One attempt at one check's guard on one dialect; subclasses say how the catalog is read."""

    def __init__(self, t: _Target) -> None:
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

    # shared
    def add(self, lock_timeout: float | None) -> GuardReport:
        self.was_fixed = self._was_fixed()  # asked first: MySQL's LOCK TABLES hides every other table
        self.notes.extend(self._null_notes())
        statement = self.statement(self.index(concurrently=lock_timeout is None))
        if self.existing() == "present":
            return GuardReport(self.t.config.name, self.name, False, statement,
                               [f"index {self.name} already exists", *self.notes])
        self.build(lock_timeout)
        return GuardReport(self.t.config.name, self.name, True, statement, self.notes)

    def statement(self, index: sa.Index) -> str:
        """The statement as the operator would type it: compiled for the driver, every `%` would be doubled."""
        dialect = self.t.db.writer.dialect
        return str(sa.schema.CreateIndex(index).compile(dialect=type(dialect)(paramstyle="named"))).strip()

    def _null_notes(self) -> list[str]:
        if self.t.config.nulls != "equal" or not self.nullable_key():
            return []
        if self.nulls_not_distinct():
            return []
        where = {"postgresql": "PostgreSQL before 15", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}[self.t.db.dialect]
        return [f"{where} unique indexes treat NULLs as distinct: rows whose key has a NULL are not guarded, "
                "although the check counts them as duplicates (nulls = \"equal\")"]

    def nullable_key(self) -> bool:
        return any(c.nullable for c in self.t.tc.key_columns)

    def nulls_not_distinct(self) -> bool:
        return False

    def duplicates(self, conn: Connection) -> None:
        """Raise `DuplicatesFound` if the check finds duplicates now (run inside the caller's transaction)."""
        groups, excess = conn.execute(self.t.tc.figures()).one()
        if groups:
            raise DuplicatesFound(self._duplicates_message(groups, excess),
                                  f"{groups} duplicate group(s) ({excess} excess rows) in the table")

    def _duplicates_message(self, groups: int, excess: int) -> str:
        check = self.t.config.name
        after = ", perhaps new ones that arrived after the fix" if self.was_fixed else ""
        return (f"check {check!r} has {groups} duplicate group(s) ({excess} excess rows){after}; nothing was "
                f"built: fix them first (dupewatch fix {check})")

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


def _rebind(exprs: list[sa.ColumnElement[Any]], table: sa.Table) -> list[sa.ColumnElement[Any]]:
    """The key expressions with every column of the check's table replaced by `table`'s column of that name."""
    def swap(element: Any, **_kw: Any) -> Any:
        if isinstance(element, sa.Column) and element.name in table.c and element.table is not table:
            return table.c[element.name]
        return None

    return [visitors.replacement_traverse(e, {}, swap) for e in exprs]


def _shadow(t: _Target, name: str, schema: str | None) -> sa.Table:
    return sa.Table(name, sa.MetaData(), *[sa.Column(c.name, c.type) for c in t.tc.table.columns], schema=schema)


# -- PostgreSQL ----------------------------------------------------------------------------------------

_PG_INDEX = sa.text(
    "SELECT i.indisvalid, i.indisready, i.indisunique, i.indrelid = c2.oid AS on_table, "
    "pg_get_indexdef(i.indexrelid) AS definition, c2.relkind "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
    "LEFT JOIN pg_catalog.pg_class c2 ON c2.relname = :table AND c2.relnamespace = n.oid "
    "WHERE c.relname = :name AND n.nspname = COALESCE(:schema, current_schema())")
_PG_RELKIND = sa.text(
    "SELECT c.oid, c.relkind, n.nspname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :table AND n.nspname = COALESCE(:schema, current_schema())")
_PG_PARTITIONS = sa.text(
    "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_inherits h "
    "JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE h.inhparent = :parent ORDER BY n.nspname, c.relname")
_PG_CREATE_INDEX_WAITING = "CREATE UNIQUE INDEX CONCURRENTLY"


class _PostgresBuilder(_Builder):
    """CONCURRENTLY outside a transaction; partitioned tables partition by partition."""

    def __init__(self, t: _Target) -> None:
        super().__init__(t)
        self.version = self._scalar("SHOW server_version_num", int)
        self.relid, relkind, self.schema = self._relation()
        self.partitioned = relkind == "p"

    def _scalar(self, sql: str, cast: Callable[[Any], Any]) -> Any:
        with self.t.db.connect(self.t.db.writer) as conn:
            return cast(conn.execute(sa.text(sql)).scalar_one())

    def _relation(self) -> tuple[int, str, str]:
        table = self.t.tc.table
        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(_PG_RELKIND, {"table": table.name, "schema": table.schema}).one()
        return int(row.oid), str(row.relkind), str(row.nspname)

    def qualified(self, name: str) -> str:
        """`schema.name` in the table's schema as the catalog has it, so a printed statement runs anywhere."""
        return self.qualified_in(self.schema, name)

    def nulls_not_distinct(self) -> bool:
        return self.version >= 150000

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.t.config.where:
            options["postgresql_where"] = sa.literal_column(f"({self.t.config.where})", sa.Boolean)
        if self.t.config.nulls == "equal" and self.nullable_key() and self.nulls_not_distinct():
            options["postgresql_nulls_not_distinct"] = True
        return options

    def index(self, *, concurrently: bool) -> sa.Index:
        return self.index_on(self.t.tc.table, self.name, concurrently=concurrently and not self.partitioned)

    def index_on(self, table: sa.Table, name: str, *, concurrently: bool) -> sa.Index:
        parts = _rebind(self.key_parts(), table) if table is not self.t.tc.table else self.key_parts()
        options = self._options()
        if concurrently:
            options["postgresql_concurrently"] = True
        return sa.Index(name, *parts, unique=True, **options)

    def expected_definition(self) -> str:
        """The definition PostgreSQL deparses for our index, tried on an empty temporary copy of the table.

        Also where PostgreSQL refuses what we would build (a `where` or key that is not IMMUTABLE) before
        anything is built; the trial is rolled back."""
        trial = _shadow(self.t, _TRIAL_TABLE, None)
        with self.t.db.connect(self.t.db.writer) as conn, conn.begin() as tx:
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {self.q(_TRIAL_TABLE)} (LIKE {self.table_sql}) "
                                 "ON COMMIT DROP")
            try:
                with conn.begin_nested():
                    conn.execute(sa.schema.CreateIndex(self.index_on(trial, _TRIAL_TABLE + "_idx",
                                                                     concurrently=False)))
            except sa.exc.DBAPIError as exc:
                raise self._refused_definition(exc) from None
            definition = conn.execute(sa.text("SELECT pg_get_indexdef(to_regclass(:n))"),
                                      {"n": _TRIAL_TABLE + "_idx"}).scalar_one()
            tx.rollback()
        return str(definition)

    def _on_only_parent(self) -> str:
        """`CREATE UNIQUE INDEX name ON ONLY parent ...`: SQLAlchemy has no ON ONLY; the compiled statement
        quoted every identifier already."""
        parent = sa.schema.CreateIndex(self.index_on(self.t.tc.table, self.name, concurrently=False))
        head, tail = str(parent.compile(dialect=self.t.db.writer.dialect)).split(" ON ", 1)
        return f"{head} ON ONLY {tail}"

    def _try_parent(self) -> None:
        """A partitioned table's own rules (a unique index must include every partitioning column), asked of
        PostgreSQL up front: the catalog-only `ON ONLY` index is created and rolled back."""
        with self.t.db.connect(self.t.db.writer) as conn, conn.begin() as tx:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_milliseconds(self.t.db.config.statement_timeout)}")
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(self._on_only_parent())
            except sa.exc.DBAPIError as exc:
                raise FixRefused(f"check {self.t.config.name!r}: PostgreSQL refuses a unique index on the "
                                 f"partitioned table {self.t.table_name!r}: {self.t.db.describe(exc)}; nothing "
                                 "was built") from None
            tx.rollback()

    def _refused_definition(self, exc: sa.exc.DBAPIError) -> FixRefused:
        check = self.t.config
        cause = self.t.db.describe(exc)
        if getattr(exc.orig, "sqlstate", None) == "42P17" and check.where and "predicate" in str(exc.orig):
            return FixRefused(f"check {check.name!r}: its where filter ({check.where}) cannot be a unique "
                              f"index's predicate: {cause}; nothing was built (guard a `where` that does not "
                              "depend on the time or the session, or add the constraint by hand)")
        return FixRefused(f"check {check.name!r}: PostgreSQL refuses the unique index this check needs: {cause}; "
                          "nothing was built")

    def existing(self) -> str | None:
        expected = self.expected_definition()
        table = self.t.tc.table
        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(_PG_INDEX, {"name": self.name, "table": table.name, "schema": self.schema}).first()
        if row is None:
            return None
        if row.definition is None or not row.on_table:
            raise FixRefused(f"a relation named {self.name} already exists and is not an index on "
                             f"{self.t.table_name!r}: rename or drop it, then run the guard again")
        if not (row.indisvalid and row.indisready):
            self._drop_all()
            self.notes.append(f"index {self.name} existed but was INVALID (an interrupted build): it was dropped "
                              "and is built again")
            return None
        if not (row.indisunique and _same_definition(row.definition, expected)):
            raise FixRefused(f"index {self.name} already exists on {self.t.table_name!r} but is not this check's "
                             f"guard: it is `{row.definition}`, the check needs `{_tail(expected)}`; drop or "
                             "rename it, then run the guard again")
        return "present"

    # building
    def build(self, lock_timeout: float | None) -> None:
        if lock_timeout is not None:
            self._build_locked(lock_timeout)
        elif self.partitioned:
            self._build_partitioned()
        else:
            self._build_concurrently()

    def _build_locked(self, lock_timeout: float) -> None:
        index = self.index(concurrently=False)
        with self.t.db.connect(self.t.db.writer) as conn:
            try:
                with conn.begin():
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_milliseconds(lock_timeout)}")
                    conn.exec_driver_sql(f"LOCK TABLE {self.table_sql} IN SHARE ROW EXCLUSIVE MODE")
                    self.duplicates(conn)
                    conn.execute(sa.schema.CreateIndex(index))
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":
                    raise _lock_refused(self.t, lock_timeout) from None
                raise self.failed(exc) from None
            except KeyboardInterrupt:
                raise GuardInterrupted(f"interrupted: the unique index build for {self.t.config.name!r} was "
                                       "rolled back and nothing was left behind") from None

    def _build_concurrently(self) -> None:
        with self.t.db.connect(self.t.db.writer) as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            self.duplicates(conn)
            self._concurrently(conn, self.index(concurrently=True), self.qualified(self.name), self._drop_all)

    def _concurrently(self, conn: Connection, index: sa.Index, qualified: str,
                      cleanup: Callable[[], None]) -> None:
        """Run one CREATE UNIQUE INDEX CONCURRENTLY; on failure or Ctrl-C run `cleanup` (fresh connections)."""
        pid, started = conn.execute(sa.text("SELECT pg_backend_pid(), clock_timestamp()")).one()
        conn.exec_driver_sql("SET statement_timeout = 0")  # a concurrent build takes as long as the table needs
        # ... but waits at most statement_timeout for the table's lock and for every transaction older than it
        # (its snapshot waits are lock waits, which lock_timeout bounds), not as long as an idle session lives.
        wait = self.t.db.config.statement_timeout
        conn.exec_driver_sql(f"SET lock_timeout = {_milliseconds(wait)}")
        try:
            conn.execute(sa.schema.CreateIndex(index))
        except sa.exc.DBAPIError as exc:
            older = self._older_transactions(pid, started) if getattr(exc.orig, "sqlstate", None) == "55P03" \
                else None
            conn.invalidate()  # its statement_timeout is 0: never back into the pool
            left = self._cleaned(cleanup, pid)
            if older is not None:
                raise FixRefused(self._waited(wait, older, left)) from None
            raise self.failed(exc, left=left) from None
        except KeyboardInterrupt:
            conn.invalidate()
            left = self._cleaned(cleanup, pid)
            raise GuardInterrupted(f"interrupted: the unique index build for {self.t.config.name!r} was "
                                   f"cancelled and {left}") from None
        valid = conn.execute(sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                             {"n": qualified}).scalar()
        conn.exec_driver_sql(f"SET statement_timeout = {_milliseconds(self.t.db.config.statement_timeout)}")
        conn.exec_driver_sql("RESET lock_timeout")
        if not valid:
            left = self._cleaned(cleanup, pid)
            raise FixRefused(f"the unique index {self.name} was built INVALID and {left}")

    def _older_transactions(self, pid: int, started: Any) -> list[str]:
        """The sessions of this database whose transaction began before the build (what a concurrent build waits
        for), oldest first, as `pid 123 (idle in transaction since 12:00:01, psql)`."""
        try:
            with self.t.db.connect(self.t.db.writer) as fresh:
                rows = fresh.execute(sa.text(
                    "SELECT pid, state, xact_start, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND xact_start < :started AND pid NOT IN (:pid, "
                    "pg_backend_pid()) ORDER BY xact_start LIMIT 5"), {"started": started, "pid": pid}).all()
        except (sa.exc.DBAPIError, DatabaseError):
            return []
        return [f"pid {r.pid} ({r.state} since {r.xact_start:%Y-%m-%d %H:%M:%S %Z}"
                + (f", {r.application_name}" if r.application_name else "") + ")" for r in rows]

    def _waited(self, wait: float, older: list[str], left: str) -> str:
        waited_for = (f"transactions older than it: {', '.join(older)}" if older
                      else "the table's lock")
        return (f"the concurrent build of {self.name} waited {wait:g}s (the database's statement_timeout) for "
                f"{waited_for}, and was cancelled; {left}; end those transactions and run the guard again, or "
                "use --lock-timeout to build under the table's write lock instead")

    def _cleaned(self, cleanup: Callable[[], None], pid: int) -> str:
        """Stop the old session's build (psycopg cancels on Ctrl-C; make sure) and drop what it left."""
        try:
            with self.t.db.connect(self.t.db.writer) as fresh:
                auto = fresh.execution_options(isolation_level="AUTOCOMMIT")
                auto.execute(sa.text("SELECT pg_cancel_backend(:pid) FROM pg_stat_activity WHERE pid = :pid "
                                     "AND state = 'active'"), {"pid": pid})
            cleanup()
        except (sa.exc.DBAPIError, DatabaseError, KeyboardInterrupt) as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            return (f"the half-built index could not be dropped ({reason}): run "
                    f"`{'; '.join(self._drop_statements())}`")
        return "the half-built index was dropped; nothing was left behind"

    def _drop_statements(self) -> list[str]:
        if self.partitioned:
            return [f"DROP INDEX IF EXISTS {self.qualified(self.name)}",
                    *(f"DROP INDEX CONCURRENTLY IF EXISTS {q}" for q, _ in self._partition_indexes())]
        return [f"DROP INDEX CONCURRENTLY IF EXISTS {self.qualified(self.name)}"]

    def _drop_all(self) -> None:
        """Drop our index (and partitions' indexes), waiting for the table's lockers at most statement_timeout."""
        with self.t.db.connect(self.t.db.writer) as fresh:
            auto = fresh.execution_options(isolation_level="AUTOCOMMIT")
            auto.exec_driver_sql(f"SET lock_timeout = {_milliseconds(self.t.db.config.statement_timeout)}")
            try:
                for statement in self._drop_statements():
                    auto.exec_driver_sql(statement)
            except BaseException:
                fresh.invalidate()  # never back into the pool with our lock_timeout
                raise
            auto.exec_driver_sql("RESET lock_timeout")

    # partitioned tables
    def _partitions(self) -> list[tuple[str, str]]:
        with self.t.db.connect(self.t.db.writer) as conn:
            rows = conn.execute(_PG_PARTITIONS, {"parent": self.relid}).all()
        nested = [r.relname for r in rows if r.relkind == "p"]
        if nested:
            raise FixRefused(f"table {self.t.table_name!r} is partitioned on more than one level ({nested[0]} is "
                             "itself partitioned): build the unique index by hand, partition by partition")
        return [(r.nspname, r.relname) for r in rows]

    def _partition_indexes(self) -> list[tuple[str, str]]:
        """(qualified index name, partition) for every partition, names deterministic."""
        preparer = self.t.db.writer.dialect.identifier_preparer
        return [(f"{preparer.quote_schema(schema)}.{preparer.quote(self._partition_index(name))}", name)
                for schema, name in self._partitions()]

    def _partition_index(self, partition: str) -> str:
        return safe_identifier(self.name[:40] + "_", partition)

    def _build_partitioned(self) -> None:
        """PostgreSQL cannot build an index on a partitioned table concurrently: ON ONLY the parent (invalid
        until every partition's index is attached), then concurrently on each partition, then attach."""
        partitions = self._partitions()
        self._try_parent()
        with self.t.db.connect(self.t.db.writer) as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            self.duplicates(conn)
            try:
                conn.exec_driver_sql(self._on_only_parent())
            except sa.exc.DBAPIError as exc:
                raise self.failed(exc) from None
            for schema, name in partitions:
                child = self._partition_index(name)
                shadow = _shadow(self.t, name, schema)
                qualified = f"{self.qualified_in(schema, child)}"
                self._concurrently(conn, self.index_on(shadow, child, concurrently=True), qualified, self._drop_all)
                conn.exec_driver_sql(f"ALTER INDEX {self.qualified(self.name)} ATTACH PARTITION {qualified}")
            valid = conn.execute(sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                                 {"n": self.qualified(self.name)}).scalar()
        if not valid:
            left = self._cleaned(self._drop_all, -1)
            raise FixRefused(f"the unique index {self.name} on the partitioned table {self.t.table_name!r} did not "
                             f"become valid after attaching every partition's index, and {left}")
        self.notes.append(f"partitioned table: built on ONLY the parent, then concurrently on each of "
                          f"{len(partitions)} partition(s) and attached")

    def qualified_in(self, schema: str, name: str) -> str:
        preparer = self.t.db.writer.dialect.identifier_preparer
        return f"{preparer.quote_schema(schema)}.{preparer.quote(name)}"

    def is_unique_violation(self, exc: sa.exc.DBAPIError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"


def _tail(definition: str) -> str:
    """`USING btree (...) ...` of a pg_get_indexdef text: the part that does not name the index or table."""
    return "USING " + definition.split(" USING ", 1)[-1]


def _same_definition(existing: str, expected: str) -> bool:
    return existing.startswith("CREATE UNIQUE INDEX ") and _tail(existing) == _tail(expected)


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _lock_refused(t: _Target, lock_timeout: float) -> FixRefused:
    return FixRefused(f"could not take the write lock on {t.table_name!r} within {lock_timeout:g}s (the "
                      "application's transactions held it): nothing was built or changed; try again at a quieter "
                      "moment or with a longer --lock-timeout")


class _PinnedPsycopg(psycopg.Connection):  # type: ignore[type-arg]
    """A psycopg connection whose commits and rollbacks, while `pinned`, are savepoints of one outer
    transaction: code that commits its own transactions (a fix) then runs inside the caller's."""

    pinned = False
    _SAVEPOINT = "SAVEPOINT dupewatch_pinned"

    def commit(self) -> None:
        if not self.pinned:
            super().commit()
            return
        self.execute("RELEASE SAVEPOINT dupewatch_pinned")
        self.execute(self._SAVEPOINT)

    def rollback(self) -> None:
        if not self.pinned:
            super().rollback()
            return
        self.execute("ROLLBACK TO SAVEPOINT dupewatch_pinned")

    def close(self) -> None:
        if not self.pinned:
            super().close()

    @property
    def autocommit(self) -> bool:
        return bool(psycopg.Connection.autocommit.fget(self))  # type: ignore[attr-defined]

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if not self.pinned:
            psycopg.Connection.autocommit.fset(self, value)  # type: ignore[attr-defined]

    @property
    def isolation_level(self) -> Any:
        return psycopg.Connection.isolation_level.fget(self)  # type: ignore[attr-defined]

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        if not self.pinned:
            psycopg.Connection.isolation_level.fset(self, value)  # type: ignore[attr-defined]


class _PinnedDatabase(Database):
    """The database as a fix sees it, but writing through the locked session."""

    def __init__(self, db: Database, writer: sa.Engine) -> None:
        super().__init__(db.name, db.config, fix_schema=db.fix_schema)
        self._origin, self._pinned_writer = db, writer

    @property
    def engine(self) -> sa.Engine:
        return self._origin.engine

    @property
    def writer(self) -> sa.Engine:
        return self._pinned_writer

    def dispose(self) -> None:
        self._pinned_writer.dispose()


class _PinnedMonitor:
    """A `Monitor` whose check's database writes through the locked session; everything else delegated."""

    def __init__(self, monitor: Monitor, db: Database) -> None:
        self._monitor, self._db = monitor, db

    def database_for(self, _check: Any) -> Database:
        return self._db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._monitor, name)


class _LockedSession:
    """`LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE` (application writes wait, reads go on) under
    `SET LOCAL lock_timeout`, held until `build` commits or anything fails (then all is rolled back)."""

    def __init__(self, builder: _PostgresBuilder, lock_timeout: float) -> None:
        self.builder, self.lock_timeout = builder, lock_timeout
        t = builder.t
        dialect = t.db.writer.dialect
        args, kwargs = dialect.create_connect_args(t.db.writer.url)
        kwargs.update(connect_timeout=10, application_name="dupewatch")
        try:
            self.raw = _PinnedPsycopg.connect(*args, **kwargs)
        except psycopg.Error as exc:
            raise DatabaseError(t.db.describe(exc)) from None
        self.engine = sa.create_engine(t.db.writer.url, creator=lambda: self.raw, poolclass=sa.pool.StaticPool,
                                       pool_reset_on_return=None)

    def __enter__(self) -> _LockedSession:
        t = self.builder.t
        try:
            self.raw.execute(f"SET LOCAL statement_timeout = {_milliseconds(t.db.config.statement_timeout)}")
            self.raw.execute(f"SET LOCAL lock_timeout = {_milliseconds(self.lock_timeout)}")
            self.raw.execute(f"LOCK TABLE {self.builder.table_sql} IN SHARE ROW EXCLUSIVE MODE")
            self.raw.execute(f"SET LOCAL lock_timeout = {_milliseconds(t.db.config.statement_timeout)}")
            self.raw.execute(_PinnedPsycopg._SAVEPOINT)
        except psycopg.errors.LockNotAvailable:
            self._close()
            raise _lock_refused(t, self.lock_timeout) from None
        except BaseException:
            self._close()
            raise
        self.raw.pinned = True
        self.builder.was_fixed = True
        return self

    def __exit__(self, kind: Any, exc: Any, _tb: Any) -> None:
        self._close()
        if isinstance(exc, KeyboardInterrupt):
            raise GuardInterrupted(f"interrupted: the locked build for {self.builder.t.config.name!r} was rolled "
                                   "back (the straggler fix with it) and nothing was left behind") from None
        if isinstance(exc, sa.exc.DBAPIError):
            raise self.builder.failed(exc) from None

    def _close(self) -> None:
        self.raw.pinned = False
        if not self.raw.closed:
            self.raw.rollback()  # a no-op after `build` committed
            self.raw.close()
        self.engine.dispose()

    def monitor(self, monitor: Monitor) -> Monitor:
        return cast(Monitor, _PinnedMonitor(monitor, _PinnedDatabase(self.builder.t.db, self.engine)))

    def groups(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self.builder.t.tc.figures()).one()[0])

    def build(self) -> GuardReport:
        builder = self.builder
        index = builder.index(concurrently=False)
        with self.engine.connect() as conn:
            builder.duplicates(conn)
            conn.execute(sa.schema.CreateIndex(index))
            conn.commit()
        self.raw.pinned = False
        self.raw.commit()
        return GuardReport(builder.t.config.name, builder.name, True, builder.statement(index), builder.notes)


# -- MySQL / MariaDB -------------------------------------------------------------------------------------

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


class _MySQLBuilder(_Builder):
    def __init__(self, t: _Target) -> None:
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
                                               ("ignoring trailing spaces", check.trim_whitespace and not pads))
                              if on)
        if self.mariadb:
            raise FixRefused(f"check {check.name!r} compares column {column.name!r} {wanted}, which its collation "
                             f"{collation} does not, so the guard needs an expression index; MariaDB has none (a "
                             "generated column would change the table's shape for the application): add the "
                             "constraint by hand, or give the column a case-insensitive collation")
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
            pid = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
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
                    raise _lock_refused(self.t, lock_timeout) from None
                raise self.failed(exc) from None
            except KeyboardInterrupt:
                self._kill(pid)
                raise GuardInterrupted(f"interrupted: the unique index build for {self.t.config.name!r} was "
                                       "cancelled (MySQL/MariaDB build it atomically: nothing was left behind; "
                                       "`dupewatch guard` again shows whether it finished first)") from None

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
        args = getattr(exc.orig, "args", ())
        return bool(args) and args[0] in _MY_DUPLICATE_KEY


# -- SQLite ----------------------------------------------------------------------------------------------


class _SQLiteBuilder(_Builder):
    """The count and the build in one `BEGIN IMMEDIATE` transaction: SQLite has one writer at a time."""

    def index(self, *, concurrently: bool) -> sa.Index:
        options: dict[str, Any] = {}
        if self.t.config.where:
            options["sqlite_where"] = sa.literal_column(f"({self.t.config.where})", sa.Boolean)
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

"""Undo: put a fix's archived rows back (original keys, byte-identical) and point references back at them.

Everything happens in one transaction under the table's fix lock. Undo refuses, changing nothing, when a
restored row's primary key is taken, when a unique constraint would be violated (the refusal names the one the
database reports and says whether dupewatch added it: only its own guard is ever suggested for dropping, with
`--drop-constraint`), or when a repointed referencing row was changed or deleted since the fix.

Before it commits, undo settles the database's own account of its transaction, as a fix batch does
(`accounting.BatchAccount`): the rows it inserts into the fixed table and each archived referencing table, the
rows it points back and the update of the fix's record must be all the database counts; a trigger or a rule
writing anything else (an AFTER INSERT trigger writing another table) makes undo refuse, nothing changed,
naming the table where the database counts per table and the triggers and rules undo's writes fire. A row of
another table referring to a row undo points back, by a foreign key whose ON UPDATE writes (CASCADE, SET NULL, SET
DEFAULT: it would act one level down, which MariaDB counts nowhere), refuses undo up front; under NO ACTION or
RESTRICT the database decides, and its refusal rolls undo back, naming the key and its rows. Where DDL is
transactional, the guard's drop (`--drop-constraint`) and the plan table's run inside that account too: an event
trigger writing a row on them refuses undo, nothing changed (one that writes nothing, a NOTIFY, passes).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.db import Database, DatabaseError
from monitor.detect import split_table_name
from monitor.dialects import KeyViolation, UniqueViolation, for_backend
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.accounting import BatchAccount, Planned, UnplannedChange
from monitor.fix.archive import (
    FIX_ID_COLUMN,
    added_since,
    archived_count,
    dropped_since,
    reflect_archive,
    restore_rows,
)
from monitor.fix.catalog import catalog_for
from monitor.fix.errors import FixRefused, NotAsArchived
from monitor.fix.execute import repoint_statement
from monitor.fix.guard import guard_name
from monitor.fix.links import Held, undo_links, undo_target
from monitor.fix.locks import fix_lock
from monitor.fix.plan import unrollable_refusal
from monitor.fix.records import FixRecord, reference_table, repoint_table
from monitor.fix.refs import reflect
from monitor.fix.values import loads
from monitor.words import command, counted

T = TypeVar("T")

UNDOABLE = ("done", "stopped", "failed", "running", records.ABANDONED)


@dataclass
class UndoReport:
    fix_id: str
    check: str
    restored: int
    repointed: int
    references_restored: int = 0  # referencing rows the fix archived with their parents (on_reference = archive)
    constraint_dropped: str | None = None  # the guard `--drop-constraint` dropped
    defaulted: list[str] = field(default_factory=list)  # columns added since the fix: restored rows got defaults
    # Columns dropped since the fix, by the archive that keeps their values (not restored): archive -> columns.
    left_in_archive: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        dropped = {"constraint_dropped": self.constraint_dropped} if self.constraint_dropped else {}
        defaulted = {"defaulted": self.defaulted} if self.defaulted else {}
        left = {"left_in_archive": self.left_in_archive} if self.left_in_archive else {}
        children = {"references_restored": self.references_restored} if self.references_restored else {}
        return {"fix_id": self.fix_id, "check": self.check, "restored": self.restored, "repointed": self.repointed,
                **children, **dropped, **defaulted, **left}

    def restored_said(self) -> str:
        """`N rows restored, [M archived referencing rows restored, ]K references pointed back`."""
        children = (f", {counted(self.references_restored, 'archived referencing row')} restored"
                    if self.references_restored else "")
        return (f"{counted(self.restored, 'row')} restored{children}, {counted(self.repointed, 'reference')} "
                "pointed back")

    def left_said(self) -> str:
        """`; ...` naming the columns dropped since the fix whose archived values were not restored, or ''."""
        if not self.left_in_archive:
            return ""
        where = "; ".join(f"{', '.join(columns)} (in {archive})" for archive, columns in self.left_in_archive.items())
        return (f"; column(s) dropped since the fix were not restored, their archived values stay in the archive: "
                f"{where}")


def find_fix(monitor: Monitor, fix_id: str) -> tuple[Database, FixRecord]:
    """The database holding fix `fix_id` and its record."""
    for name in sorted(monitor.config.databases):
        db = monitor.database(name)
        try:
            with db.connect(db.bookkeeping) as conn, conn.begin():
                record = records.get_record(conn, fix_id) if records.has_tables(conn) else None
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None
        if record is not None:
            return db, record
    raise FixRefused(f"no fix with id {fix_id!r} in any configured database (see `{command('fixes')}`)")


def locate_fixed_table(db: Database, record: FixRecord) -> tuple[str | None, Any]:
    """The schema the server resolves a fix's table in (`to_regclass` on PostgreSQL: the same place the fix
    resolved it) and the table's identity for its fix lock."""
    schema, name = split_table_name(record.table_name)
    try:
        with db.connect(db.bookkeeping) as conn, conn.begin():
            catalog = catalog_for(conn)
            schema = catalog.resolved_schema(sa.Table(name, sa.MetaData(), schema=schema)) or schema
            return schema, catalog.table_identity(sa.Table(name, sa.MetaData(), schema=schema))
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(db.describe(exc)) from None


def on_fixed_table(monitor: Monitor, fix_id: str, refuse: Callable[[FixRecord], None],
                   act: Callable[[Connection, FixRecord, str | None], T]) -> T:
    """`act(conn, record, schema)` for fix `fix_id` under its table's fix lock, on a bookkeeping connection, once
    `refuse(record)` has let it (purge, abandon); a database error as one `DatabaseError`."""
    db, record = find_fix(monitor, fix_id)
    refuse(record)
    schema, identity = locate_fixed_table(db, record)
    try:
        with fix_lock(db, identity, record.table_name), db.connect(db.bookkeeping) as conn:
            return act(conn, record, schema)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(db.describe(exc)) from None


def undo_fix(monitor: Monitor, fix_id: str, *, drop_constraint: bool = False) -> UndoReport:
    """Restore what fix `fix_id` deleted and point its references back, in one transaction, then drop its plan
    table. `drop_constraint`: first drop the check's guard (`uq_dupewatch_<check>`, which `fix --add-constraint`
    or `guard` added), which would refuse the restored duplicates; in the same transaction where DDL is
    transactional (PostgreSQL, SQLite), just before it on MySQL/MariaDB. Raises `FixRefused` (nothing changed) or
    `DatabaseError`."""
    db, record = find_fix(monitor, fix_id)
    if record.state not in UNDOABLE:
        raise FixRefused(f"fix {fix_id} is {record.state}: there is nothing to undo")
    schema, identity = locate_fixed_table(db, record)
    name = split_table_name(record.table_name)[1]
    guard = guard_name(record.check_name) if drop_constraint else None
    dropped = None
    held: list[Held] = []  # rows a NO ACTION / RESTRICT foreign key holds to a value undo changes
    with fix_lock(db, identity, record.table_name):
        try:
            with db.connect(db.bookkeeping) as conn:
                if guard is not None and not db.rules.transactional_ddl:
                    with conn.begin():
                        _refuse_unrollable(conn, record, schema)  # before the guard's drop, which stays
                        dropped = _drop_guard(conn, schema, name, guard)
                    guard = None

                def drop_guard(check_guard: str) -> None:  # in undo's account, where DDL is transactional
                    nonlocal dropped
                    dropped = _drop_guard(conn, schema, name, check_guard)

                with conn.begin():
                    report = _undo(conn, record, schema, None if guard is None else lambda: drop_guard(guard), held)
                if not db.rules.transactional_ddl:
                    _drop_plan_table(conn, records.place(conn, schema), record.plan_table)
                report.constraint_dropped = dropped
            # Restored rows keep their ids and timestamps, below any watermark: the next poll is a full pass.
            monitor.table_changed(db.name, name, f"undo of fix {fix_id}", restored=True)
            _count_restored(record.check_name, db.name, report.restored)
            return report
        except sa.exc.IntegrityError as exc:
            # (`guard` is None only once the guard's drop committed apart, MySQL/MariaDB; where DDL is
            # transactional the drop was rolled back with undo, and the index still stands)
            raise _refusal(db, record, schema, exc, dropped if guard is None else None, held,
                           lambda: _violations(db, record, schema, name, guard),
                           _other_guards(monitor, record)) from None
        except NotAsArchived as exc:
            retyped = _retyped(db, record, schema, name)
            if retyped:
                exc = exc.because(f"the table changed since the fix: {retyped}); give those columns back the "
                                  "archived types (or wider ones), then undo again")
            raise FixRefused(_guard_said(str(exc), dropped, guard)) from None
        except FixRefused as exc:
            raise FixRefused(_guard_said(str(exc), dropped, guard)) from None
        except sa.exc.DataError as exc:  # in undo's one transaction, rolled back whole
            retyped = _retyped(db, record, schema, name)
            hint = f" (the table changed since the fix: {retyped}; give those columns back the archived types, " \
                   "then undo again)" if retyped else ""
            raise FixRefused(_guard_said(f"undo of fix {fix_id} refused, nothing changed: {db.describe(exc)}{hint}",
                                         dropped, guard)) from None
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None


def _guard_said(message: str, dropped: str | None, guard: str | None) -> str:
    """A refusal's "nothing changed", once MySQL/MariaDB committed the guard's drop before undo's transaction."""
    if dropped is None or guard is not None:
        return message
    return message.replace("nothing changed", f"the unique index {dropped} was dropped already (MySQL/MariaDB "
                           "commit DDL at once), nothing else changed")


def _retyped(db: Database, record: FixRecord, schema: str | None, name: str) -> str:
    """The restored columns whose type differs between the table now and the fix's archive, as the catalog spells
    them ("usr.nick is varchar(3), the archive's varchar(20)"), or ""; only for a better message."""
    try:
        with db.connect(db.bookkeeping) as conn:
            archive = reflect_archive(conn, records.place(conn, schema), record.archive_table)
            if archive is None:
                return ""
            table = sa.Table(name, sa.MetaData(), schema=schema)
            catalog = catalog_for(conn)
            now, archived = catalog.column_types([table, archive])
            return "; ".join(f"{name}.{column} is {kind}, the archive's {archived[column]}"
                             for column, kind in now.items()
                             if column in archived and not catalog.same_type(kind, archived[column]))
    except Exception:  # only a better message: never in place of undo's refusal
        return ""


def _count_restored(check: str, database: str, rows: int) -> None:
    """Add an undo's restored rows to `dupewatch_fix_restored_rows_total` of this process's exporter, only if
    `monitor.metrics` is loaded (as `execute._count_deleted` does for deletions)."""
    metrics = sys.modules.get("monitor.metrics")
    if metrics is not None and rows > 0:
        metrics.record_undo(check, database, rows)


def _drop_guard(conn: Connection, schema: str | None, name: str, guard: str) -> str | None:
    """Drop the check's guard from the table if it is there; returns its name, or None."""
    table = reflect(conn, schema, name)
    if guard not in catalog_for(conn).index_names(table):
        return None
    conn.execute(sa.schema.DropIndex(sa.Index(guard, next(iter(table.columns)))))
    return guard


def _violations(db: Database, record: FixRecord, schema: str | None, name: str, guard: str | None
                ) -> list[KeyViolation]:
    """The rows undo would leave referring by a foreign key to no row, as the database lists them, where its refusal
    names no key (SQLite): undo run again in a transaction that checks keys only at its commit, the rows listed
    before its commit (less those listed before undo's writes: rows that referred to no row already), rolled
    back. Empty where the database does not list them, or the run again fails."""
    try:
        with db.connect(db.bookkeeping) as conn, conn.begin() as transaction:
            if not db.rules.defer_foreign_keys(conn):
                return []
            before = db.rules.foreign_key_violations(conn)

            def drop(check_guard: str) -> None:
                _drop_guard(conn, schema, name, check_guard)

            with contextlib.suppress(FixRefused, sa.exc.SQLAlchemyError):  # what it wrote until then is listed
                _undo(conn, record, schema, None if guard is None else lambda: drop(guard), [])
            found = [new for v in db.rules.foreign_key_violations(conn) if (new := v.since(before)) is not None]
            transaction.rollback()
            return found
    except Exception:  # only a better message (a connection that fails too): never in place of undo's refusal
        return []


def _other_guards(monitor: Monitor, record: FixRecord) -> dict[str, str]:
    """The guards other configured checks would have (`uq_dupewatch_<check>`), by name: their check."""
    own = guard_name(record.check_name)
    return {guard_name(c.name): c.name for c in monitor.config.checks if guard_name(c.name) != own}


def _refusal(db: Database, record: FixRecord, schema: str | None, exc: sa.exc.IntegrityError,
             dropped: str | None, held: list[Held], violations: Callable[[], list[KeyViolation]],
             other_guards: dict[str, str] | None = None) -> FixRefused:
    """Undo hit a constraint: a foreign key (NO ACTION, RESTRICT) holding rows to a value undo points back, named
    with those rows; a foreign key the database does not name (SQLite), named with the rows it would leave
    referring to no row (`violations`); or a unique one: name the one the database reports, say whether dupewatch
    added it (this check's guard, or another check's: `other_guards`, guard name to check), and advise dropping
    only this check's guard."""
    head = f"undo of fix {record.fix_id} refused, " + (
        f"the unique index {dropped} was dropped already (MySQL/MariaDB commit DDL at once), nothing else changed"
        if dropped else "nothing changed")
    foreign_key = db.rules.violated_foreign_key(exc)
    # (a database naming no constraint, SQLite, is taken to mean the keys undo found holding rows)
    holding = [h for h in held if foreign_key == "" or h.fk.name == foreign_key] if foreign_key is not None else []
    if holding:
        return FixRefused(f"{head}: the database refused to point rows back ({db.describe(exc)}): "
                          f"{'; '.join(h.describe() for h in holding)}; point those rows elsewhere or delete them, "
                          "then undo again")
    unnamed = [] if foreign_key != "" else violations()
    if unnamed:
        return FixRefused(f"{head}: the database refused it ({db.describe(exc)}): "
                          f"{'; '.join(v.describe() for v in unnamed)}; put back the rows they refer to, or point "
                          "those rows elsewhere, then undo again")
    violation = db.rules.violated_unique(exc)
    name = violation.name or _named_by_columns(db, schema, violation)
    if name is None:
        return FixRefused(f"{head}: restoring its rows would violate a constraint ({db.describe(exc)}); a row "
                          "now conflicts with a row to restore, or a constraint added or changed since the fix (a "
                          "CHECK, a NOT NULL) refuses a restored row: resolve that row or that constraint first")
    guard = guard_name(record.check_name)
    if name in (guard, record.constraint_name):
        added = "this fix added it (--add-constraint)" if name == record.constraint_name else \
            "dupewatch added it (`dupewatch guard`)"
        return FixRefused(f"{head}: restoring its rows would violate the unique index {name}, the guard of check "
                          f"{record.check_name!r}; {added}: `{command('undo', record.fix_id, '--drop-constraint')}` "
                          "drops it and restores the duplicates it keeps out")
    if other := (other_guards or {}).get(name):
        return FixRefused(f"{head}: restoring its rows would violate the unique index {name}, the guard of another "
                          f"check, {other!r} (dupewatch added it): the rows to restore are duplicates under that "
                          f"check's key too, and undo drops only the guard of check {record.check_name!r}; keep "
                          f"this fix, or drop {name} first (check {other!r} will report those duplicates again), "
                          "then undo again")
    return FixRefused(f"{head}: restoring its rows would violate {name}, a unique constraint or index dupewatch did "
                      "not add: a row now holds the same values as a row to restore (say, the user registered "
                      "again); resolve that row first, and keep the constraint")


def _named_by_columns(db: Database, schema: str | None, violation: UniqueViolation) -> str | None:
    """SQLite names the columns only: the unique index of that table on exactly those columns."""
    if not violation.columns or violation.table is None:
        return None
    try:
        with db.connect(db.bookkeeping) as conn, conn.begin():
            keys = catalog_for(conn).unique_keys(reflect(conn, schema, violation.table))
    except sa.exc.SQLAlchemyError:
        return None
    found = [u.name for u in keys if u.columns == violation.columns]
    return found[0] if found else f"the unique constraint on {violation.table}({', '.join(violation.columns)})"


def _undo(conn: Connection, record: FixRecord, schema: str | None,
          drop_guard: Callable[[], None] | None = None, held: list[Held] | None = None) -> UndoReport:
    """`schema`: where the server resolves the fixed table (see `Catalog.resolved_schema`). `drop_guard`: drop the
    check's guard first. `held`: gets the rows NO ACTION / RESTRICT foreign keys hold to values undo changes
    (`links.Held`), for the refusal when the database refuses. Where DDL is transactional, the guard's drop and
    the plan table's run inside undo's account: what fires on them (PostgreSQL event triggers) and writes a row
    refuses undo, nothing changed."""
    current = records.get_record(conn, record.fix_id, lock=True)
    if current is None or current.state not in UNDOABLE:
        raise FixRefused(f"fix {record.fix_id} is {current.state if current else 'gone'}: nothing to undo")
    _schema, name = split_table_name(record.table_name)
    table = undo_target(conn, schema, name, record.fix_id, [], "whose rows it deleted")
    home = records.place(conn, schema)
    archive = reflect_archive(conn, home, record.archive_table)
    expected = archived_count(conn, archive, record.fix_id) if archive is not None else 0
    if expected != current.archived:
        raise FixRefused(f"undo of fix {record.fix_id} refused: the archive holds {expected} of its "
                         f"{current.archived} rows (was {record.archive_table} changed?)")
    rules = for_backend(conn.dialect.name)
    uncounted = rules.account_refusal(conn)
    if uncounted:
        raise FixRefused(f"undo of fix {record.fix_id} refused: {uncounted}")
    # What undo writes, as the database counts it, against what it plans (see accounting.py): a trigger or a rule
    # of a restored or pointed-back table writing elsewhere would leave the database other than before the fix.
    _refuse_unrollable(conn, record, schema)
    account = BatchAccount(conn, rules, subject="this undo", kept="")
    planned = Planned()
    if drop_guard is not None:
        with account.own_ddl(conn, table):  # DROP INDEX holds the table ACCESS EXCLUSIVE
            drop_guard()
    fired: list[str] = []  # the triggers and rules undo's writes fire, as the catalog names them
    defaulted: list[str] = []
    left: dict[str, list[str]] = {}
    if expected and archive is not None:  # (a count above 0 came from the archive)
        defaulted = added_since(conn, archive, table, record.fix_id)
        if gone := dropped_since(conn, archive, table, record.fix_id):
            left[archive.name] = gone
        _refuse_taken_keys(conn, table, archive, record.fix_id)
        if not rules.enforces_foreign_keys(conn):
            _refuse_missing_parents(conn, table, archive, record.fix_id)
        fired += catalog_for(conn).fired_on(table, "INSERT")
        restored = restore_rows(conn, archive, table, record.fix_id)
        if restored != expected:
            raise FixRefused(f"undo of fix {record.fix_id} refused: restored {restored} of {expected} rows")
        planned.inserted(table, restored)
    pointed, children = undo_links(conn, record.fix_id, home, planned, fired, [] if held is None else held, left)
    repointed = pointed + _point_back(conn, record.fix_id, planned)
    records.update_record(conn, record.fix_id, state="undone", finished_at=records.now_text(),
                          message=f"{records.UNDONE_BY}{records.os_user()}@{records.host_name()} at "
                                  f"{records.now_text()}")
    planned.updated(sa.Table(records.fix_table.name, sa.MetaData(), schema=records.home(conn)), 1)
    if rules.transactional_ddl:
        plan_table = sa.Table(record.plan_table, sa.MetaData(), schema=home)
        with account.own_ddl(conn, plan_table):
            plan_table.drop(conn, checkfirst=True)
    account.suspects = list(dict.fromkeys(fired))
    try:
        account.settle(conn, planned)
    except UnplannedChange as exc:
        said = str(exc)
        unnamed = [f for f in account.suspects if f not in said]
        fires = f"; undo's writes fire {', '.join(unnamed)}" if unnamed else ""
        if ddl := rules.ddl_triggers(conn):
            fires += f"; undo's DDL (the drop of the fix's plan table, of the guard): {ddl}"
        raise FixRefused(f"undo of fix {record.fix_id} refused, nothing changed: {said}{fires}; disable what is "
                         "named for the undo (and enable it after), then undo again") from None
    return UndoReport(record.fix_id, record.check_name, expected, repointed, children, defaulted=defaulted,
                      left_in_archive=left)


def _refuse_unrollable(conn: Connection, record: FixRecord, schema: str | None) -> None:
    """Refuse, nothing changed, when undo's writes (its inserts into the fixed table and the archived referencing
    tables, its updates pointing rows back) fire a user trigger while the server holds tables whose engine cannot
    roll back (`plan.unrollable_refusal`): what the trigger wrote there would stay even when undo's account
    refuses and rolls back."""
    catalog = catalog_for(conn)
    fired: list[str] = []
    try:
        if record.archived:
            fired += catalog.fired_on(reflect(conn, schema, split_table_name(record.table_name)[1]), "INSERT")
        for entry in conn.execute(sa.select(reference_table).where(reference_table.c.fix_id == record.fix_id)):
            child = reflect(conn, entry.child_schema, entry.child_table)
            fired += catalog.fired_on(child, "INSERT") if entry.action == "archive" else \
                catalog.fired_on(child, "UPDATE", tuple(json.loads(entry.fk_columns)))
    except sa.exc.NoSuchTableError:
        return  # undo refuses it itself (`links.undo_target`), nothing changed
    if fired and (refusal := unrollable_refusal(conn, list(dict.fromkeys(fired)), "undo's writes", "for the undo")):
        raise FixRefused(f"undo of fix {record.fix_id} refused, nothing changed: {refusal}")


def _refuse_taken_keys(conn: Connection, table: sa.Table, archive: sa.Table, fix_id: str) -> None:
    """Refuse, nothing changed, when rows written since the fix hold primary keys of archived rows. The refusal
    names the table, the key's columns, how many and the query that lists them, never a key's value (a natural
    key is often personal data: an e-mail address)."""
    pk = list(table.primary_key.columns)
    if not pk:
        return
    taken = (sa.select(*[archive.c[c.name] for c in pk]).select_from(archive)
             .join(table, sa.and_(*[archive.c[c.name] == c for c in pk]))
             .where(archive.c[FIX_ID_COLUMN] == fix_id))
    count = conn.execute(sa.select(sa.func.count()).select_from(taken.subquery("dupewatch_taken"))).scalar_one()
    if count:
        columns = ", ".join(c.name for c in pk)
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: {count} archived row(s) have a primary "
                         f"key ({columns}) that a row of {table.name!r} written since the fix holds again; list "
                         f"them with: {_statement_text(conn, taken)}; give those rows another key or delete them, "
                         "then undo again")


def _statement_text(conn: Connection, statement: sa.Select[Any]) -> str:
    """`statement` as one line of SQL for the operator to run, identifiers quoted by SQLAlchemy (its only
    literal is dupewatch's own fix id)."""
    compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
    return " ".join(line.strip() for line in str(compiled).splitlines())


def _refuse_missing_parents(conn: Connection, table: sa.Table, archive: sa.Table, fix_id: str) -> None:
    """Where the session does not check foreign keys (MySQL `foreign_key_checks = 0`, PostgreSQL
    `session_replication_role = replica`, SQLite's `PRAGMA foreign_keys` off), refuse (nothing changed) when an
    archived row would come back referring, by one of the table's own foreign keys, to a row deleted since the fix
    (another restored row of this fix counts, for a key to the table itself): the database would not refuse it, and
    the row would be back referring to a value no row has."""
    for fk in table.foreign_key_constraints:
        parent = fk.referred_table
        if any(e.parent.name not in archive.c for e in fk.elements):
            continue
        pairs = [(archive.c[e.parent.name], e.column) for e in fk.elements]
        found: ColumnElement[bool] = sa.exists().where(*[p == a for a, p in pairs])
        if parent.name == table.name and parent.schema == table.schema:
            twin = archive.alias("dupewatch_restored")
            found = sa.or_(found, sa.exists().where(twin.c[FIX_ID_COLUMN] == fix_id,
                                                   *[twin.c[p.name] == a for a, p in pairs]))
        missing = conn.execute(sa.select(sa.func.count()).select_from(archive).where(
            archive.c[FIX_ID_COLUMN] == fix_id, *[a.is_not(None) for a, _ in pairs], ~found)).scalar_one()
        if missing:
            raise FixRefused(
                f"undo of fix {fix_id} refused, nothing changed: {missing} archived row(s) of {table.name!r} refer, "
                f"by foreign key {fk.name or '(unnamed)'} ({', '.join(e.parent.name for e in fk.elements)}) to "
                f"{parent.name}, to rows deleted since the fix, and the database does not check foreign keys on "
                "undo's connection, so they would come back referring to a value no row has; put those rows back "
                "first, then undo again")


def _drop_plan_table(conn: Connection, schema: str | None, name: str) -> None:
    """A fix stopped mid-way still has its plan table; once undone, nothing will resume it."""
    with conn.begin():
        sa.Table(name, sa.MetaData(), schema=schema).drop(conn, checkfirst=True)


def _point_back(conn: Connection, fix_id: str, planned: Planned) -> int:
    """Undo the repoints of a fix made by dupewatch 0.1, which logged values as JSON text."""
    if not sa.inspect(conn).has_table(records.REPOINT_TABLE, schema=records.home(conn)):
        return 0
    log = conn.execute(sa.select(repoint_table).where(repoint_table.c.fix_id == fix_id)
                       .order_by(repoint_table.c.id.desc())).all()
    children: dict[tuple[str | None, str], sa.Table] = {}
    moved = 0
    for entry in log:
        where = (entry.child_schema, entry.child_table)
        if where not in children:
            children[where] = reflect(conn, entry.child_schema, entry.child_table)
        child = children[where]
        fk = [child.c[c] for c in loads(entry.fk_columns)]
        pk = list(child.primary_key.columns)
        key, old, new = loads(entry.child_key), loads(entry.old_value), loads(entry.new_value)
        # the fix's repoint run backwards: rows still pointing at the keeper go back to their old value
        back = {**{f"p{j}": v for j, v in enumerate(key)}, **{f"o{j}": v for j, v in enumerate(new)},
                **{f"v{j}": v for j, v in enumerate(old)}}
        statement = for_backend(conn.dialect.name).abort_on_conflict(repoint_statement(child, pk, fk))
        if conn.execute(statement, back).rowcount != 1:  # (the row by its key in the log, not in the message)
            raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: a row of {entry.child_table}"
                             f"({', '.join(c.name for c in fk)}) it repointed is no longer as it left it, so it "
                             f"cannot be pointed back: the row of {records.REPOINT_TABLE} with id {entry.id} holds "
                             "its primary key (child_key) and the value the fix set; put it back as the fix left "
                             "it and undo again, or keep this fix")
        planned.updated(child, 1)
        moved += 1
    return moved

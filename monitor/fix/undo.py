"""Undo: put a fix's archived rows back (original keys, byte-identical) and point references back at them.

Everything happens in one transaction under the table's fix lock. Undo refuses, changing nothing, when a
restored row's primary key is taken, when a unique constraint added since (e.g. the guard) would be
violated, or when a repointed referencing row was changed or deleted since the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import Database, DatabaseError
from monitor.detect import split_table_name
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.archive import FIX_ID_COLUMN, archived_count, reflect_archive, restore_rows
from monitor.fix.catalog import catalog_for
from monitor.fix.errors import FixRefused
from monitor.fix.execute import repoint_statement
from monitor.fix.links import undo_links
from monitor.fix.locks import fix_lock
from monitor.fix.records import FixRecord, repoint_table
from monitor.fix.refs import reflect
from monitor.fix.values import loads

UNDOABLE = ("done", "stopped", "failed", "running")


@dataclass(frozen=True)
class UndoReport:
    fix_id: str
    check: str
    restored: int
    repointed: int

    def as_json(self) -> dict[str, Any]:
        return {"fix_id": self.fix_id, "check": self.check, "restored": self.restored, "repointed": self.repointed}


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
    raise FixRefused(f"no fix with id {fix_id!r} in any configured database (see `dupewatch fixes`)")


def undo_fix(monitor: Monitor, fix_id: str) -> UndoReport:
    """Restore what fix `fix_id` deleted and point its references back, in one transaction, then drop its plan
    table. Raises `FixRefused` (nothing changed) or `DatabaseError`."""
    db, record = find_fix(monitor, fix_id)
    if record.state not in UNDOABLE:
        raise FixRefused(f"fix {fix_id} is {record.state}: there is nothing to undo")
    schema, name = split_table_name(record.table_name)
    try:
        with db.connect(db.bookkeeping) as conn, conn.begin():
            identity = catalog_for(conn).table_identity(sa.Table(name, sa.MetaData(), schema=schema))
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(db.describe(exc)) from None
    with fix_lock(db, identity, record.table_name):
        try:
            with db.connect(db.bookkeeping) as conn:
                with conn.begin():
                    report = _undo(conn, record)
                _drop_plan_table(conn, records.place(conn, schema), record.plan_table)
                return report
        except sa.exc.IntegrityError as exc:
            raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: restoring the rows would violate "
                             f"a constraint of {record.table_name!r} ({db.describe(exc)}); a unique constraint "
                             "was probably added since the fix (dupewatch guard adds uq_dupewatch_<check>): "
                             "drop it first") from None
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None


def _undo(conn: Connection, record: FixRecord) -> UndoReport:
    current = records.get_record(conn, record.fix_id, lock=True)
    if current is None or current.state not in UNDOABLE:
        raise FixRefused(f"fix {record.fix_id} is {current.state if current else 'gone'}: nothing to undo")
    schema, name = split_table_name(record.table_name)
    table = reflect(conn, schema, name)
    home = records.place(conn, schema)
    archive = reflect_archive(conn, home, record.archive_table)
    expected = archived_count(conn, archive, record.fix_id) if archive is not None else 0
    if expected != current.archived:
        raise FixRefused(f"undo of fix {record.fix_id} refused: the archive holds {expected} of its "
                         f"{current.archived} rows (was {record.archive_table} changed?)")
    if expected:
        _refuse_taken_keys(conn, table, archive, record.fix_id)  # type: ignore[arg-type]
        restored = restore_rows(conn, archive, table, record.fix_id)  # type: ignore[arg-type]
        if restored != expected:
            raise FixRefused(f"undo of fix {record.fix_id} refused: restored {restored} of {expected} rows")
    pointed, _children = undo_links(conn, record.fix_id, home)
    repointed = pointed + _point_back(conn, record.fix_id)
    records.update_record(conn, record.fix_id, state="undone", finished_at=records.now_text(),
                          message=f"undone by {records.os_user()}@{records.host_name()} at {records.now_text()}")
    return UndoReport(record.fix_id, record.check_name, expected, repointed)


def _refuse_taken_keys(conn: Connection, table: sa.Table, archive: sa.Table, fix_id: str) -> None:
    pk = list(table.primary_key.columns)
    if not pk:
        return
    taken = conn.execute(
        sa.select(*[archive.c[c.name] for c in pk]).select_from(archive)
        .join(table, sa.and_(*[archive.c[c.name] == c for c in pk]))
        .where(archive.c[FIX_ID_COLUMN] == fix_id).limit(3)).all()
    if taken:
        keys = ", ".join(str(tuple(row) if len(row) > 1 else row[0]) for row in taken)
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: primary key(s) of archived rows are "
                         f"taken again in {table.name!r} ({', '.join(c.name for c in pk)} = {keys})")


def _drop_plan_table(conn: Connection, schema: str | None, name: str) -> None:
    """A fix stopped mid-way still has its plan table; once undone, nothing will resume it."""
    with conn.begin():
        sa.Table(name, sa.MetaData(), schema=schema).drop(conn, checkfirst=True)


def _point_back(conn: Connection, fix_id: str) -> int:
    """Undo the repoints of a fix made by dupewatch 0.1, which logged values as JSON text."""
    if not sa.inspect(conn).has_table(records.REPOINT_TABLE):
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
        if conn.execute(repoint_statement(child, pk, fk), back).rowcount != 1:
            label = f"{entry.child_table}({', '.join(c.name for c in pk)} = {', '.join(map(str, key))})"
            raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: the referencing row {label} was "
                             "changed or deleted since the fix, so it cannot be pointed back")
        moved += 1
    return moved

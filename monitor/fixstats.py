"""What the fix records in a database say, for processes that did not run the fixes themselves (the daemon).

`dupewatch fix` and the dashboard record every fix in the `dupewatch_fix` table of the database they fix
(`monitor.fix.records`, in `[fix] schema` when set); its `deleted` column counts the rows each fix deleted, and an
undone fix's `archived` the rows its undo restored.
This module only reads that table, in the detection connection's read-only transaction, and never creates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from monitor.db import Database, DatabaseError


@dataclass
class FixTotals:
    """Per check: rows deleted by all its fixes, and rows restored by the undos of those later undone (an undone
    fix's record is `undone`, or `purged` with its message still saying `undone by`: an undo restores exactly the
    rows the fix archived, or refuses)."""

    deleted: dict[str, int] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Unread:
    """Why the fix records cannot be read: the database's own words (one line), and how it coded a missing
    privilege (`Dialect.privilege_refusal`: "SQLSTATE 42501", "error 1142"), None for any other cause (the table
    dropped mid-read, the server gone, a column an older dupewatch's records lack)."""

    reason: str
    privilege: str | None = None

    def __str__(self) -> str:
        return self.reason


def totals_by_check(db: Database) -> FixTotals | None:
    """What the fix records in `db` say (empty when no fix ever ran there), or None when the records cannot be
    read (database down, no privilege on the table)."""
    read = read_totals(db)
    return read if isinstance(read, FixTotals) else None


def read_totals(db: Database) -> FixTotals | Unread:
    """`totals_by_check`, or why the records cannot be read (`Unread`)."""
    from monitor.fix.records import BOOKKEEPING, UNDONE_BY, fix_table, tables_exist

    undone = sa.or_(fix_table.c.state == "undone",
                    sa.and_(fix_table.c.state == "purged", fix_table.c.message.startswith(UNDONE_BY)))
    try:
        with db.read_only() as conn:
            conn = conn.execution_options(schema_translate_map={BOOKKEEPING: db.fix_schema})
            if not tables_exist(conn):
                return FixTotals()
            rows = conn.execute(sa.select(fix_table.c.check_name, sa.func.sum(fix_table.c.deleted),
                                          sa.func.sum(sa.case((undone, fix_table.c.archived), else_=0)))
                                .group_by(fix_table.c.check_name))
            totals = FixTotals()
            for name, deleted, restored in rows:
                totals.deleted[str(name)] = int(deleted or 0)
                totals.restored[str(name)] = int(restored or 0)
            return totals
    except DatabaseError as exc:
        return Unread(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        return Unread(db.describe(exc), db.rules.privilege_refusal(orig) if orig is not None else None)

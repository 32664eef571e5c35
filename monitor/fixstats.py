"""What the fix records in a database say, for processes that did not run the fixes themselves (the daemon).

`dupewatch fix` and the dashboard record every fix in the `dupewatch_fix` table of the database they fix
(`monitor.fix.records`, in `[fix] schema` when set); its `deleted` column counts the rows each fix deleted.
This module only reads that table, in the detection connection's read-only transaction, and never creates it.
"""

from __future__ import annotations

import sqlalchemy as sa

from monitor.db import Database, DatabaseError


def deleted_by_check(db: Database) -> dict[str, int] | None:
    """Rows deleted by all fixes of each check recorded in `db` ({} when no fix ever ran there), or None when
    the records cannot be read (database down, no privilege on the table)."""
    from monitor.fix.records import BOOKKEEPING, fix_table, tables_exist

    try:
        with db.read_only() as conn:
            conn = conn.execution_options(schema_translate_map={BOOKKEEPING: db.fix_schema})
            if not tables_exist(conn):
                return {}
            rows = conn.execute(sa.select(fix_table.c.check_name, sa.func.sum(fix_table.c.deleted))
                                .group_by(fix_table.c.check_name))
            return {str(name): int(total or 0) for name, total in rows}
    except (DatabaseError, sa.exc.SQLAlchemyError):
        return None

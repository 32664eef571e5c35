"""Purge: forget what a finished fix kept for undo, once the operator no longer wants to undo it.

The archive holds the deleted rows (after an undo, copies of the restored ones: say, the users' password
hashes) and the repoint logs the referencing rows' keys. `purge_fix` deletes the fix's rows from every archive it
wrote (the fixed table's and those of referencing tables it archived), drops its repoint logs and any plan table
left behind, and marks the fix `purged`, in the table's fix lock. The record in `dupewatch_fix` stays: it is the
history `dupewatch fixes` lists. Only a `done`, `undone` or `abandoned` fix can be purged; a purged fix cannot be
undone.

Its deletes and drops are accounted for like the fix's own DDL (`accounting.ddl_step`): a row written in a table
the purge does not write (a PostgreSQL event trigger firing on DROP TABLE) rolls the purge back, nothing changed,
and the refusal names the event triggers that fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.dialects import for_backend
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.accounting import DdlAccount, ddl_step
from monitor.fix.archive import FIX_ID_COLUMN, reflect_archive
from monitor.fix.errors import FixRefused
from monitor.fix.records import FixRecord, reference_table, repoint_table
from monitor.fix.undo import on_fixed_table
from monitor.words import command

PURGEABLE = ("done", "undone", records.ABANDONED)


@dataclass(frozen=True)
class PurgeReport:
    fix_id: str
    check: str
    archived_rows: int  # rows deleted from the archives
    logs_dropped: int  # repoint logs and plan tables dropped

    def as_json(self) -> dict[str, Any]:
        return {"fix_id": self.fix_id, "check": self.check, "archived_rows": self.archived_rows,
                "logs_dropped": self.logs_dropped}


def purge_fix(monitor: Monitor, fix_id: str) -> PurgeReport:
    """Delete fix `fix_id`'s archived rows and drop its logs; raises `FixRefused` unless it is done, undone or
    abandoned."""
    return on_fixed_table(monitor, fix_id, _refuse_unless_purgeable, _purge)


def _refuse_unless_purgeable(record: FixRecord) -> None:
    if record.state not in PURGEABLE:
        why = "its archive and logs are gone already" if record.state == "purged" else \
            "finish it (run the fix again), undo it, or give it up first " \
            f"(`{command('fixes', 'abandon', record.fix_id)}`)" \
            if record.state in records.UNFINISHED else "it never ran: nothing to purge"
        raise FixRefused(f"fix {record.fix_id} is {record.state}: only a done, undone or abandoned fix can be purged; "
                         f"{why}")


def _purge(conn: Connection, record: FixRecord, schema: str | None) -> PurgeReport:
    """Where DDL is transactional (PostgreSQL, SQLite) all in one step, the drops with the deletes: a row an event
    trigger writes on DROP rolls the whole purge back. Elsewhere (MySQL/MariaDB, whose DDL commits at once) the
    deletes and the record first, then each drop in a step of its own: what is left is no longer referenced."""
    home = records.place(conn, schema)
    rules = for_backend(conn.dialect.name)
    step = f"purge of fix {record.fix_id} (deleting its archived rows, dropping its logs and plan table)"
    with ddl_step(conn, rules, step) as account:
        current = records.get_record(conn, record.fix_id, lock=True)
        assert current is not None
        _refuse_unless_purgeable(current)
        entries = conn.execute(sa.select(reference_table)
                               .where(reference_table.c.fix_id == record.fix_id)).all()
        archives = [(home, record.archive_table)]
        archives += [(records.place(conn, e.child_schema), e.log_table) for e in entries if e.action == "archive"]
        archived = 0
        for where, table in dict.fromkeys(archives):
            archived += _delete_archived(conn, account, where, table, record.fix_id)
        account.writes(*records.own_tables(conn))
        conn.execute(reference_table.delete().where(reference_table.c.fix_id == record.fix_id))
        if sa.inspect(conn).has_table(records.REPOINT_TABLE, schema=records.home(conn)):
            account.writes(sa.Table(records.REPOINT_TABLE, sa.MetaData(), schema=records.home(conn)))
            conn.execute(repoint_table.delete().where(repoint_table.c.fix_id == record.fix_id))
        purged = f"archive and logs purged by {records.os_user()}@{records.host_name()} at {records.now_text()}"
        if current.state == "undone" and (current.message or "").startswith(records.UNDONE_BY):
            purged = f"{current.message}; {purged}"  # still says it was undone (`monitor.fixstats`)
        records.update_record(conn, record.fix_id, state="purged", message=purged[:1000])
        logs = [record.plan_table, *(e.log_table for e in entries if e.action == "repoint")]
        dropped = sum(_drop(conn, home, table) for table in logs) if rules.transactional_ddl else 0
    if not rules.transactional_ddl:
        for table in logs:
            with ddl_step(conn, rules, step):
                dropped += _drop(conn, home, table)
    return PurgeReport(record.fix_id, record.check_name, archived, dropped)


def _drop(conn: Connection, schema: str | None, name: str) -> int:
    if not sa.inspect(conn).has_table(name, schema=schema):
        return 0
    sa.Table(name, sa.MetaData(), schema=schema).drop(conn)
    return 1


def _delete_archived(conn: Connection, account: DdlAccount, schema: str | None, name: str, fix_id: str) -> int:
    archive = reflect_archive(conn, schema, name)
    if archive is None:
        return 0
    account.writes(archive)
    statement = sa.delete(archive).where(archive.c[FIX_ID_COLUMN] == fix_id)
    return int(conn.execute(statement).rowcount)

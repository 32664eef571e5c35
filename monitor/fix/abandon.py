"""Abandon: give up an unfinished fix that cannot go on, keeping everything its committed batches did undoable.

A fix whose plan table is gone after it committed batches (the schema restored from a dump, `dupewatch_*` tables
dropped by hand) can neither be resumed (only the plan table says which rows it may delete) nor purged (only a
finished fix can), and while it is unfinished no new fix of its check can start: `fix --yes` resumes it. Undo
is one way out; `abandon_fix` is the other, when the operator wants to keep what the batches did. It marks the fix
`abandoned` and drops its plan table if one is left (a copy of the table's keys, which nothing will resume from
now); it deletes nothing else: the rows the committed batches deleted stay in the archive, the repoint logs stay,
and `dupewatch undo FIX_ID` still restores them (undo reads the archive and the logs, never the plan table). A
new fix of the check then plans afresh. An abandoned fix can be purged like a done one.

It runs under the table's fix lock (a fix still running in another process holds it: refused), and its one
transaction is accounted for like the fix's own DDL (`accounting.ddl_step`): a row an event trigger writes when
the plan table is dropped rolls it all back. Where DDL is not transactional (MySQL/MariaDB) the record is marked
first and the plan table dropped after, in a step of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.dialects import for_backend
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.accounting import ddl_step
from monitor.fix.errors import FixRefused
from monitor.fix.records import ABANDONED, UNFINISHED, FixRecord
from monitor.fix.undo import on_fixed_table
from monitor.words import command


@dataclass(frozen=True)
class AbandonReport:
    fix_id: str
    check: str
    groups: int  # groups its committed batches fixed (skipped ones aside)
    deleted: int  # rows its committed batches deleted, all in the archive
    plan_dropped: bool  # whether a plan table was left to drop

    def as_json(self) -> dict[str, Any]:
        return {"fix_id": self.fix_id, "check": self.check, "state": ABANDONED, "groups": self.groups,
                "deleted": self.deleted, "plan_dropped": self.plan_dropped}


def abandon_fix(monitor: Monitor, fix_id: str) -> AbandonReport:
    """Mark unfinished fix `fix_id` abandoned (see the module docstring); raises `FixRefused` unless it is
    unfinished, or while another process holds the table's fix lock."""
    return on_fixed_table(monitor, fix_id, refuse_unless_abandonable, _abandon)


def refuse_unless_abandonable(record: FixRecord) -> None:
    if record.state in UNFINISHED:
        return
    why = {"done": "it ran to its end: nothing to abandon (`dupewatch undo` puts it back)",
           "undone": "it was undone: nothing of it is left to abandon",
           ABANDONED: "it was abandoned already",
           "purged": "its archive and logs are purged",
           "discarded": "it never ran"}.get(record.state, "")
    raise FixRefused(f"fix {record.fix_id} is {record.state}: only an unfinished fix (planned, running, stopped or "
                     f"failed) can be abandoned{'; ' + why if why else ''}")


def _abandon(conn: Connection, record: FixRecord, schema: str | None) -> AbandonReport:
    home = records.place(conn, schema)
    step = f"abandoning fix {record.fix_id} (dropping its plan table {record.plan_table})"
    rules = for_backend(conn.dialect.name)
    with ddl_step(conn, rules, step) as account:
        account.writes(*records.own_tables(conn))
        current = records.get_record(conn, record.fix_id, lock=True)
        assert current is not None
        refuse_unless_abandonable(current)
        committed = (f"{current.groups:,} group(s) committed, {current.deleted:,} row(s) deleted and archived"
                     if current.done_through else "no batch committed")
        message = (f"abandoned by {records.os_user()}@{records.host_name()} at {records.now_text()} ({current.state}"
                   f"; {committed}; `{command('undo', record.fix_id)}` restores what its batches did)")
        records.update_record(conn, record.fix_id, state=ABANDONED, finished_at=records.now_text(),
                              message=message[:1000])
        dropped = rules.transactional_ddl and _drop_plan(conn, home, record.plan_table)
    if not rules.transactional_ddl:  # after the commit: MySQL/MariaDB would commit the record's update with the DDL
        with ddl_step(conn, rules, step):
            dropped = _drop_plan(conn, home, record.plan_table)
    return AbandonReport(record.fix_id, record.check_name, current.groups, current.deleted, dropped)


def _drop_plan(conn: Connection, schema: str | None, name: str) -> bool:
    if not sa.inspect(conn).has_table(name, schema=schema):
        return False
    sa.Table(name, sa.MetaData(), schema=schema).drop(conn)
    return True

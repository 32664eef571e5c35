"""The target of a fix: one table check, resolved, on its database; what the fix and the guard both start from.

`target(monitor, check)` refuses what cannot be fixed (custom query checks, views, materialized views, foreign
tables, a partitioned table without a primary key) before anything else is asked of the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from monitor.config import CheckConfig
from monitor.db import Database
from monitor.detect import CheckDefinitionError, TableCheck
from monitor.engine import Monitor
from monitor.fix.errors import FixRefused


@dataclass
class Target:
    config: CheckConfig
    tc: TableCheck
    db: Database
    merge_distinct: bool = False  # merge rows another unique constraint says are different entities

    @property
    def table_name(self) -> str:
        return self.config.table or self.tc.table.name


def target(monitor: Monitor, check: str, group: Sequence[Any] | None = None, *,
           merge_distinct: bool = False) -> Target:
    """The table check to fix; custom query checks are refused. `group` (a group's normalised key values,
    as the drill-down lists them) limits the fix to that one group."""
    config = monitor.config.check(check)
    if config.is_custom:
        raise FixRefused(f"check {check!r} is a custom query check: dupewatch cannot know which rows of an "
                         "arbitrary query to delete; only table checks (table + key) can be fixed")
    try:
        tc = monitor.resolve(config)
    except CheckDefinitionError as exc:
        raise FixRefused(str(exc)) from None
    db = monitor.database_for(config)
    if tc.is_view:
        raise FixRefused(f"check {check!r} watches a view ({config.table!r}): dupewatch fixes tables only; "
                         "point a check at the view's underlying table to fix it")
    if _is_materialized_view(db, tc.table):
        raise FixRefused(f"check {check!r} watches a materialized view ({config.table!r}): its rows cannot be "
                         "deleted, only refreshed from its query; point a check at the underlying table to fix it")
    if _is_foreign_table(db, tc.table):
        raise FixRefused(f"check {check!r} watches a foreign table ({config.table!r}): its rows are another "
                         "server's, whose deletes (and what they cascade to there) this database cannot count or "
                         "archive as the fix must; run the fix on the server that holds the table")
    if db.rules.partitioned_tables and not tc.has_primary_key and _is_partitioned(db, tc.table):
        raise FixRefused(f"table {config.table!r} is partitioned and has no primary key: its rows cannot be "
                         "told apart (ctid repeats across partitions); add a primary key first")
    return Target(config, tc if group is None else tc.narrowed(group), db, merge_distinct or config.merge_distinct)


def _is_partitioned(db: Database, table: sa.Table) -> bool:
    with db.read_only() as conn:
        return db.rules.is_partitioned(conn, table)


def _is_foreign_table(db: Database, table: sa.Table) -> bool:
    with db.read_only() as conn:
        return db.rules.is_foreign_table(conn, table)


def _is_materialized_view(db: Database, table: sa.Table) -> bool:
    """PostgreSQL's materialized views are read as tables (rows, a ctid) but no row can be locked or deleted;
    databases without them have no such names (SQLAlchemy: NotImplementedError)."""
    with db.read_only() as conn:
        try:
            return table.name in sa.inspect(conn).get_materialized_view_names(schema=table.schema)
        except NotImplementedError:
            return False

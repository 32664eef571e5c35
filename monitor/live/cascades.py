"""Rows a foreign key's action changes without the change stream naming them.

InnoDB runs `ON DELETE CASCADE`, `ON DELETE SET NULL` and `ON UPDATE CASCADE` inside the storage engine, and the
binary log holds only the parent's row (MariaDB 10.11, MySQL before 9.2: a replica runs the same cascade). A
child table's check would see none of it: deleting two customers whose orders are `ON DELETE SET NULL` gives two
orders the key (NULL, 'x'), a duplicate the stream never names; a cascaded delete leaves a dissolved group
counted. So a change of a table whose rows' changes cascade to a check's table (directly or through other
tables) is taken as a hint for that check: a DELETE that can only remove its rows queues its known groups for a
re-count (as a change without the old row does); one that can give its rows other keys (SET NULL, SET DEFAULT,
an UPDATE of the referenced columns that cascades) counts the check in full (an overflow). PostgreSQL runs
cascades as statements its stream decodes like any others: its stream names no such keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from monitor.live.changes import Cascade, Change, ChangeStream

Table = tuple[str, str]
NOTHING, QUEUE, FULL = 0, 1, 2  # what a parent's change means for a check: nothing, its groups queued, a full count
SETS_VALUES = ("CASCADE", "SET NULL", "SET DEFAULT")
DEPTH = 8  # cascades followed up this many tables (a cycle ends sooner)


@dataclass(frozen=True)
class Effect:
    """What a change of an ancestor table means for one check's table."""

    on_delete: int
    on_update: int
    referenced: frozenset[str]  # the ancestor's columns an UPDATE must change to cascade

    def of(self, change: Change) -> int:
        if change.operation == "DELETE":
            return self.on_delete
        if change.operation != "UPDATE" or change.old is None or change.new is None:
            return NOTHING
        moved = any(change.old.get(c) != change.new.get(c) for c in self.referenced)
        return self.on_update if moved else NOTHING


@dataclass(frozen=True)
class ReadByWhere(Effect):
    """A table a check's `where` reads (`ChangeStream.where_tables`): any change of its rows may move the check's
    rows in or out of the `where`, unnamed: the check is counted in full."""

    def of(self, change: Change) -> int:
        return FULL


READ_BY_WHERE = ReadByWhere(FULL, FULL, frozenset())


def ancestors(stream: ChangeStream, conn: Connection, table: Table, key: frozenset[str],
              where: bool) -> dict[Table, Effect]:
    """The tables whose changes change `table`'s rows unnamed, and what each change means for a check of it
    keyed on `key` (with a `where`, any column changed may move a row in or out of it)."""
    found: dict[Table, Effect] = {}
    # (table, what a DELETE of its rows means for the check, what an UPDATE of its rows' referenced columns does)
    level: list[tuple[Table, int, int]] = [(table, QUEUE, FULL)]
    seen = {table}
    for _ in range(DEPTH):
        above: list[tuple[Table, int, int]] = []
        for child, deleted, updated in level:
            for cascade in stream.unlogged_cascades(conn, child):
                on_delete, on_update = _effects(cascade, child == table, key, where, deleted, updated)
                if on_delete == NOTHING and on_update == NOTHING:
                    continue
                before = found.get(cascade.parent)
                found[cascade.parent] = Effect(
                    max(on_delete, before.on_delete if before else NOTHING),
                    max(on_update, before.on_update if before else NOTHING),
                    cascade.referenced | (before.referenced if before else frozenset()))
                if cascade.parent not in seen:
                    seen.add(cascade.parent)
                    above.append((cascade.parent, on_delete, on_update))
        if not above:
            break
        level = above
    return found


def _effects(cascade: Cascade, direct: bool, key: frozenset[str], where: bool, deleted: int,
             updated: int) -> tuple[int, int]:
    """What a DELETE and an UPDATE of `cascade`'s parent mean for the check, given what a DELETE (`deleted`)
    and an UPDATE (`updated`) of the child's rows mean for it."""
    if direct:  # the child is the check's table: setting its columns matters where they are key (or `where`)
        sets = FULL if where or cascade.columns & key else NOTHING
        deleted_rows, set_rows = QUEUE, sets
    else:
        deleted_rows, set_rows = deleted, updated
    on_delete = deleted_rows if cascade.on_delete == "CASCADE" else \
        set_rows if cascade.on_delete in SETS_VALUES else NOTHING
    on_update = set_rows if cascade.on_update in SETS_VALUES else NOTHING
    return on_delete, on_update

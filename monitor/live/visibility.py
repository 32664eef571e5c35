"""Whether the rows a change stream handed out are visible to other sessions yet, asked of their tables by the
row's identity (its primary key, or a unique key of columns that are all NOT NULL).

MariaDB/MySQL write a transaction to the binary log before the engine's commit makes its rows visible (two-phase
commit; with semi-sync `AFTER_SYNC`, only once a replica answers, or its timeout), and no session can ask which
logged transactions are visible yet (PostgreSQL can: `ChangeStream.unsettled`). A re-count in between counts the
rows as they were, and the duplicate they made is not shown. A row can be asked about: each INSERT, DELETE and
UPDATE of a key or identifying column of a table with an identity (`RowVisibility.fold`) is remembered with the
keys it named, and before the read's keys are re-counted one statement per table (`count(*)` of the rows inserted,
deleted and updated, each through the identity's index, `PROBE_CHUNK` rows to a statement; row by row only where
a count is not the one expected), first in the re-count's transaction (so its snapshot), asks whether each row
is as the change left it: present (an INSERT), present with the values an UPDATE gave its
watched columns, gone (a DELETE). A row that is not stays **pending**, and its keys are re-counted by the read
that finds it visible (`settle`). Asked in the snapshot the re-count reads: a row seen is counted.

A later change of a remembered row in the stream by **another** transaction (a commit was read between the two:
`committed`, the stream's `COMMITTED`) settles it (its keys are re-counted with that read): InnoDB holds a changed
row's lock until the engine commit, so a later transaction could change the row only once the earlier one was
visible; the later change is then remembered in its place. A later change by the **same** transaction (a read may
end within a transaction: the decoder hands its rows out before its commit is read) says nothing of its
visibility: the row's keys are carried with the later change's row, asked about as it left the row, and counted
once it is visible; where that change is not asked about (past the cap), they are counted again a fixed time later
(`take_again`), never only at once. An UPDATE leaving the identity and watched columns as they were leaves a
remembered row as it is. (A row the probe cannot find for another reason, such as a foreign key's cascade, which
the binary log does not name, waits like one not visible.)

A row still pending `VISIBLE_SECONDS` after it was read is **late**: reported as a gap (metric, log line naming
its table, a poll of the database's checks; one gap per `VISIBLE_SECONDS` at most, naming every table and row
count found since), and still asked about, so that it is counted once visible, until `GIVE_UP_SECONDS` after it
was read: then it is let go, its keys counted again a fixed time later and left to the poll (a row a change the
log does not name left otherwise, such as a case-insensitive key deleted and inserted in another spelling, is
never as its change left it: asked about for ever, such rows piled up to the cap). A change that may have changed
a table's rows without naming them (a foreign key's action, the table's changes dropped: `overflowed`, a TRUNCATE:
`release`) lets go of that table's remembered rows at once, their keys counted then (where a later transaction's)
and again a fixed time later. Memory is bounded: at most
`PENDING_ROWS` rows are remembered; rows past the cap read while some were not visible are a gap too. The
changes of tables without an identity, of a view, the UPDATEs of other columns (a check's `where`) and the rows
past the cap are counted once more a fixed time later instead (`ChangeStream.recount_again`), as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.base import Dialect
from monitor.live.changes import Change, Row
from monitor.live.groups import Named, merge

Table = tuple[str, str]  # as the stream names it
Identity = tuple[Table, tuple[Any, ...]]
VISIBLE_SECONDS = 30.0  # a row not visible this long after it was read is a gap (and still counted once visible)
GIVE_UP_SECONDS = 2 * VISIBLE_SECONDS  # a row not as its change left it this long after it was read is let go
PENDING_ROWS = 10_000  # rows remembered (pending, and of the read being folded)
PROBE_CHUNK = 256  # rows asked about by one statement


@dataclass(frozen=True)
class Identified:
    """A table whose rows can be asked about: its columns that identify a row, and the table to ask."""

    table: sa.Table
    columns: tuple[str, ...]


@dataclass
class _Row:
    """A row a change named: what the change left it as, and the keys to re-count once that is visible."""

    operation: str  # INSERT, UPDATE, DELETE
    values: Row  # the identity's values, and (an UPDATE) the watched columns' values it gave the row
    keys: dict[str, Named] = field(default_factory=dict)  # check -> keys
    since: float = 0.0  # monotonic, when it was read
    late: bool = False  # reported as a gap
    # The commits read before it (`RowVisibility.committed`): a later change of the row after another commit is
    # another transaction's
    transaction: int = 0
    # Where the stream reads its transaction again from (its `position` when the change was read), and the order
    # of its first change among the rows remembered: a restart resumes from the oldest pending row's (`resume`)
    resume: str | None = None
    order: int = 0


def identity_columns(table: sa.Table) -> tuple[str, ...] | None:
    """The columns identifying a row of `table`: its primary key, else a unique key of NOT NULL columns; None."""
    if table.primary_key.columns:
        return tuple(c.name for c in table.primary_key.columns)
    unique = [list(index.columns) for index in table.indexes if index.unique] + [
        list(constraint.columns) for constraint in table.constraints if isinstance(constraint, sa.UniqueConstraint)]
    for columns in sorted(unique, key=len):
        if columns and all(isinstance(c, sa.Column) and not c.nullable for c in columns):
            return tuple(c.name for c in columns)
    return None


class RowVisibility:
    """The rows of one reader's stream not known to be visible yet, and the questions that settle them."""

    def __init__(self, rules: Dialect, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self.clock = clock
        self.tables: dict[Table, Identified] = {}
        self.pending: dict[Identity, _Row] = {}  # oldest first
        self._read: dict[Identity, _Row] = {}  # the rows of the read being folded
        self._settled: dict[str, Named] = {}  # keys of pending rows a change of this read settled
        self.again: dict[str, Named] = {}  # keys of rows left unasked, to count again later (`take_again`)
        self._transaction = 0  # commits read (`committed`)
        self._order = 0  # changes remembered (`_Row.order`)
        self._untracked: dict[Table, int] = {}  # rows of this read not remembered (past `PENDING_ROWS`), by table
        self.late: list[tuple[Table, int]] = []  # (table, rows) that the last `settle` reports as a gap
        self._late: dict[Table, int] = {}  # rows found late, or not remembered while some were not visible
        self._reported = float("-inf")  # when a gap was last reported (the clock's)

    @property
    def asking(self) -> bool:
        """Rows are remembered (or settled by a change): `settle` has something to ask or to hand back."""
        return bool(self.pending or self._read or self._settled or self._untracked or self._late)

    def identify(self, name: Table, table: sa.Table) -> tuple[str, ...]:
        """Remember `table` (as the stream names it) if its rows can be asked about; the columns identifying
        them (for the stream to keep: `ChangeStream.watch`), or none."""
        columns = identity_columns(table)
        if columns is None:
            self.tables.pop(name, None)
            return ()
        self.tables[name] = Identified(table, columns)
        return columns

    def committed(self) -> None:
        """The stream read a commit: the changes folded from now on are of later transactions (`COMMITTED`)."""
        self._transaction += 1

    def fold(self, change: Change, checks: Iterable[tuple[str, Callable[[Named, Change], None]]],
             resume: str | None = None) -> bool:
        """Remember `change`'s row with the keys each check (name, its fold) names of it (`resume`: the stream's
        position from which its transaction is read again, for `resume`): True when its
        visibility will be asked (its keys are re-counted once it is visible); False for a change of a table
        without an identity, an UPDATE that left the identity and the watched columns as they were, or a row
        past `PENDING_ROWS`: the caller counts it again later (`recount_again`). A remembered row it changes is
        settled by it, or carried with it (see the module's docstring)."""
        name = (change.schema, change.table)
        identified = self.tables.get(name)
        if identified is None or change.operation not in ("INSERT", "UPDATE", "DELETE"):
            return False
        if change.operation == "UPDATE" and change.old == change.new:
            return False  # the row is as an earlier change left it: a remembered one is still asked about as it was
        old = _identity(change.old, identified.columns)
        new = _identity(change.new, identified.columns)
        carried: list[_Row] = []  # earlier changes of the row by this change's transaction (or not known another's)
        for identity in dict.fromkeys(i for i in (old, new) if i is not None):
            for rows in (self.pending, self._read):
                if (row := rows.pop((name, identity), None)) is None:
                    continue
                if row.transaction < self._transaction:  # another transaction's, visible: it held the row's lock
                    for check, named in row.keys.items():
                        merge(self._settled, check, named)
                else:  # this transaction's: visible with this change, not before
                    carried.append(row)
        target = new if change.operation != "DELETE" else old
        if target is None or len(self.pending) + len(self._read) >= PENDING_ROWS:
            for row in carried:  # not asked about: counted again later, with this change, never only now
                for check, named in row.keys.items():
                    merge(self.again, check, named)
            if target is not None:
                self._untracked[name] = self._untracked.get(name, 0) + 1
            return False
        values = dict(zip(identified.columns, target, strict=True))
        if change.operation == "UPDATE" and change.new is not None:
            values = {**change.new, **values}
        self._order += 1
        row = _Row(change.operation, values, since=self.clock(), transaction=self._transaction, resume=resume,
                   order=self._order)
        for earlier in carried:
            for check, named in earlier.keys.items():
                merge(row.keys, check, named)
            row.since = min(row.since, earlier.since)
            row.late = row.late or earlier.late
            if earlier.order < row.order:  # its transaction began earlier: read again from there
                row.order, row.resume = earlier.order, earlier.resume
        for check, fold in checks:
            fold(row.keys.setdefault(check, Named()), change)
        self._read[(name, target)] = row
        return True

    def release(self, table: Table | None) -> None:
        """A change the stream does not name row by row may have changed `table`'s remembered rows (all tables'
        for None): a foreign key's action, a table's changes dropped (`overflowed`), a TRUNCATE. Those rows may
        never read as their change left them: they are let go, their keys counted at once where a later
        transaction's change could only follow their transaction's commit, and again later (`take_again`) in any
        case (a row that change did not touch may not be visible yet)."""
        for rows in (self.pending, self._read):
            for identity in [i for i in rows if table is None or i[0] == table]:
                row = rows.pop(identity)
                self._let_go(row, settled=row.transaction < self._transaction)

    def _let_go(self, row: _Row, *, settled: bool) -> None:
        for check, named in row.keys.items():
            merge(self.again, check, named)
            if settled:
                merge(self._settled, check, named)

    def resume(self) -> str | None:
        """Where a stream opened later (a restarted daemon) must read from so that the pending rows' transactions
        are read again and asked about once visible: the position before the oldest one's, or None (none pending).
        A daemon stopped while a commit is held was started again from past it, counted the table before the rows
        were visible, and never counted them."""
        oldest = min(self.pending.values(), key=lambda row: row.order, default=None)
        return oldest.resume if oldest is not None else None

    def take_again(self) -> dict[str, Named]:
        """The keys of remembered rows let go unasked (a change of their own transaction not remembered: `fold`;
        `release`; pending past `GIVE_UP_SECONDS`): the caller counts them again later (`recount_again`)."""
        again, self.again = self.again, {}
        return again

    def settle(self, conn: Connection) -> dict[str, Named]:
        """Ask which remembered rows are visible now (in `conn`'s snapshot, a new one: the re-counts that follow
        in it count what it saw); the keys to re-count now: those of pending rows now visible or settled by a
        change. The read's rows not visible become pending; `late` lists a gap to report, if any: rows pending
        `VISIBLE_SECONDS`, and rows not remembered (past `PENDING_ROWS`) while some were not visible."""
        keys, self._settled = self._settled, {}
        read, self._read = self._read, {}
        untracked, self._untracked = self._untracked, {}
        self.late = []
        waiting = self._not_visible(conn, {**self.pending, **read})
        for identity, row in self.pending.items():
            if identity not in waiting:
                for check, named in row.keys.items():
                    merge(keys, check, named)
        self.pending = {identity: row for identity, row in self.pending.items() if identity in waiting}
        for identity, row in read.items():
            if identity in waiting:
                self.pending[identity] = row
        late = self._late
        if waiting:  # rows not visible yet: those not remembered (past the cap) may not be either
            for name, count in untracked.items():
                late[name] = late.get(name, 0) + count
        now = self.clock()
        for identity, row in self.pending.items():
            if not row.late and now - row.since >= VISIBLE_SECONDS:
                row.late = True
                late[identity[0]] = late.get(identity[0], 0) + 1
        # Let go (reported late already): a row an unlogged change left otherwise (a foreign key's action, a
        # TRUNCATE, a case-insensitive key spelled anew) is never as its change left it, and rows asked about at
        # every read for ever piled up to the cap (each read asking them all, new rows no longer remembered).
        for identity in [i for i, row in self.pending.items() if now - row.since >= GIVE_UP_SECONDS]:
            self._let_go(self.pending.pop(identity), settled=False)
        # One gap per `VISIBLE_SECONDS` at most, with every row found since: a replica that stops answering holds
        # every commit, and a gap per read would poll every check of the database as often.
        if late and now - self._reported >= VISIBLE_SECONDS:
            self.late, self._late, self._reported = sorted(late.items()), {}, now
        return keys

    def keep(self, other: RowVisibility, checks: set[str]) -> None:
        """Take over `other`'s pending rows (a reader handing over), with the keys of `checks`, its keys to count
        again later, and the gap it had not reported yet (rows found late within `VISIBLE_SECONDS` of its last
        report: held for the next one, which is now this one's) with when it last reported one."""
        for identity, row in sorted(other.pending.items(), key=lambda item: item[1].order):
            kept = {check: named for check, named in row.keys.items() if check in checks}
            if kept and identity not in self.pending and len(self.pending) < PENDING_ROWS:
                self._order += 1  # older than any this one reads
                self.pending[identity] = _Row(row.operation, row.values, kept, row.since, row.late,
                                              self._transaction,  # a change of it read next may be its transaction's
                                              row.resume, self._order)
        for check, named in other.again.items():
            if check in checks:
                merge(self.again, check, named)
        for name, rows in other._late.items():
            self._late[name] = self._late.get(name, 0) + rows
        self._reported = max(self._reported, other._reported)

    def _not_visible(self, conn: Connection, rows: dict[Identity, _Row]) -> set[Identity]:
        """Of `rows`, those a new snapshot does not see as their last change left them."""
        by_table: dict[Table, list[tuple[tuple[Any, ...], _Row]]] = {}
        for (name, identity), row in rows.items():
            by_table.setdefault(name, []).append((identity, row))
        waiting: set[Identity] = set()
        for name, table_rows in by_table.items():
            identified = self.tables.get(name)
            if identified is None:  # no longer watched (a reload, a check removed): not asked about
                continue
            for start in range(0, len(table_rows), PROBE_CHUNK):
                chunk = table_rows[start:start + PROBE_CHUNK]
                seen = self._seen(conn, identified, chunk)
                for (identity, row), present in zip(chunk, seen, strict=True):
                    if present != (row.operation != "DELETE"):
                        waiting.add((name, identity))
        return waiting

    def _seen(self, conn: Connection, identified: Identified, rows: list[tuple[tuple[Any, ...], _Row]]
              ) -> list[bool]:
        """For each of `rows`, whether the table holds it as the change left it: the row (an INSERT, a DELETE),
        with the values an UPDATE gave it. Asked by counting first (`_all_as_left`: one statement, the usual
        answer), else row by row (`_each_seen`)."""
        if self._all_as_left(conn, identified, rows):
            return [row.operation != "DELETE" for _identity, row in rows]
        return self._each_seen(conn, identified, rows)

    def _all_as_left(self, conn: Connection, identified: Identified, rows: list[tuple[tuple[Any, ...], _Row]]
                     ) -> bool:
        """Whether every row of `rows` is as its change left it, in one statement through the identity's index:
        the rows inserted all there (`count(*) ... WHERE id IN (...)` is their number), those deleted none, those
        updated all there with their values. Counted by the server, never compared with the log's values in
        Python (a `BINARY(n)` the log gives without its trailing zero bytes, a `TIMESTAMP` in UTC)."""
        table = identified.table
        counts: list[Any] = []
        expected: list[int] = []
        for operation in ("INSERT", "DELETE", "UPDATE"):
            these = [(identity, row) for identity, row in rows if row.operation == operation]
            if not these:
                continue
            match = self._identities_in(identified, [identity for identity, _row in these]) \
                if operation != "UPDATE" else sa.or_(*[self._as_updated(identified, i, r) for i, r in these])
            counts.append(sa.select(sa.func.count()).select_from(table).where(match).scalar_subquery())
            expected.append(0 if operation == "DELETE" else len(these))
        return list(conn.execute(sa.select(*counts)).one()) == expected

    def _each_seen(self, conn: Connection, identified: Identified, rows: list[tuple[tuple[Any, ...], _Row]]
                   ) -> list[bool]:
        """For each of `rows`, whether the table holds it as its change left it (`_all_as_left`): one `EXISTS`
        per row, answered by position, in one statement."""
        table = identified.table
        columns = [table.c[name] for name in identified.columns]
        exists = [sa.exists().select_from(table).where(
            self._as_updated(identified, identity, row) if row.operation == "UPDATE" else
            sa.and_(*[self._equal(c, v) for c, v in zip(columns, identity, strict=True)])) for identity, row in rows]
        return [bool(seen) for seen in conn.execute(sa.select(*exists)).one()]

    def _identities_in(self, identified: Identified, identities: list[tuple[Any, ...]]) -> ColumnElement[bool]:
        """`id IN (...)`, compiled once and reused (the reader's `compiled_cache`): one expanding parameter where
        the identity is one column the stream gives as stored (`Dialect.stream_values_plain`), else its values
        padded to a power of two (the last repeated: `IN (a, b, b, b)` is `IN (a, b)`), a handful of shapes."""
        columns = [identified.table.c[name] for name in identified.columns]
        if len(columns) == 1 and self.rules.stream_values_plain(columns[0]):
            return columns[0].in_(sa.bindparam("identities", [identity[0] for identity in identities], expanding=True,
                                               type_=self.rules.as_stored(columns[0]).type, unique=True))
        identities = identities + identities[-1:] * ((1 << (len(identities) - 1).bit_length()) - len(identities))
        values = [[self.rules.stream_value(c, v) for c, v in zip(columns, identity, strict=True)]
                  for identity in identities]
        if len(columns) == 1:
            return columns[0].in_([v[0] for v in values])
        return sa.tuple_(*columns).in_([sa.tuple_(*v) for v in values])

    def _as_updated(self, identified: Identified, identity: tuple[Any, ...], row: _Row) -> ColumnElement[bool]:
        """The row of `identity` with the values its UPDATE gave the watched columns."""
        table = identified.table
        return sa.and_(*[self._equal(table.c[name], value) for name, value in
                         {**row.values, **dict(zip(identified.columns, identity, strict=True))}.items()
                         if name in table.c])

    def _equal(self, column: sa.Column[Any], value: Any) -> ColumnElement[bool]:
        if value is None:
            return column.is_(None)
        return self.rules.as_stored(column) == self.rules.stream_value(column, value)


def _identity(row: Row | None, columns: tuple[str, ...]) -> tuple[Any, ...] | None:
    if row is None or not all(name in row and row[name] is not None for name in columns):
        return None
    return tuple(row[name] for name in columns)


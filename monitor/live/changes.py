"""What a change stream reports, whatever the database: committed transactions of row changes.

A change is a hint, never a count: it names a table and the key values a row had or has, so that the
live reader can re-count those groups in the table. Values are kept as the stream gives them (text for
PostgreSQL's `test_decoding`), and cast back to the column's type by the database when re-counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # the binary log's decoder process imports this module, and no SQLAlchemy
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

# OVERFLOW is no change of a row: a stream that stopped keeping a table's changes (too many at once, see
# monitor/live/mysql.py) says so with it, and the table's checks are counted in full (`overflowed`). COMMIT is none
# either: a stream whose reads may end within a transaction hands it to a `Fold` after each commit (`COMMITTED`).
Operation = Literal["INSERT", "UPDATE", "DELETE", "TRUNCATE", "OVERFLOW", "COMMIT"]
Row = dict[str, Any]  # column name -> value: text (PostgreSQL) or typed (MySQL), per the stream; None is NULL


class OneOf(tuple[Any, ...]):
    """A value the stream prints alike for several (wal2json's `null` for NULL, NaN and the infinities): the row
    holds one of these, and the groups of each are re-counted."""


class LiveRefused(Exception):
    """The server cannot feed live mode as configured; one line saying what to change. Never retried."""


class StreamLost(Exception):
    """The stream broke (connection lost, slot gone): changes may have been missed, a gap; one line.
    `resumable`: the stream can be opened again from the position its reader counted up to
    (`ChangeStream.open(resume=...)`) and read on from there, missing nothing (MariaDB/MySQL after a lost
    connection); then it is a gap only if the server no longer holds that position."""

    def __init__(self, reason: str, *, resumable: bool = False) -> None:
        super().__init__(reason)
        self.resumable = resumable


@dataclass(frozen=True)
class Change:
    """One row change of one table. `old` holds what the stream knows of the row before the change (the
    replica identity's columns, often the primary key only); `new` the row after it."""

    schema: str
    table: str
    operation: Operation
    new: Row | None = None
    old: Row | None = None


@dataclass
class Transaction:
    """The changes of one committed transaction and its commit time (the server's clock). `unseen`: the stream
    says the transaction committed but shows none of its changes, which may have been rows of any table (a
    DELETE the plugin could not print, a TRUNCATE in MySQL's binary log): every known group of the database is
    re-counted. `unnamed`: the transaction may have added rows, or given rows a key, that the stream does not name
    (a statement MariaDB/MySQL logged as a statement); why, in a few words. New groups may have formed anywhere:
    the reader reports it as a gap and counts every check of the database in full. `folded`: changes of the
    transaction handed to a `Fold` as they were read instead of being kept in `changes`."""

    committed_at: datetime | None = None
    changes: list[Change] = field(default_factory=list)
    unseen: bool = False
    unnamed: str | None = None
    folded: int = 0
    # The transaction's id as the stream names it (PostgreSQL's xid), where it does: `ChangeStream.unsettled`.
    xid: str | None = None

    @property
    def events(self) -> int:
        """The transaction's row changes read, kept or folded (an `overflowed` change is none)."""
        return sum(change.operation != "OVERFLOW" for change in self.changes) + self.folded


# Takes each change as it is read, so that a reader keeps what it needs of it (a key), not the change: one
# transaction of PostgreSQL's stream may hold millions (see `ChangeStream.read`).
Fold = Callable[[Change], None]


# What the reader hands each check for an `unseen` transaction: a change whose old rows are unknown.
UNSEEN = Change("", "", "TRUNCATE")

# What a stream that hands out a transaction's changes before its commit is read (MariaDB/MySQL's binary log: a read
# takes what the decoder sent so far) hands a `Fold` after each commit it reads: the changes folded before it and
# those after are of different transactions (monitor/live/visibility.py). No change of a row.
COMMITTED = Change("", "", "COMMIT")


def overflowed(schema: str, table: str) -> Change:
    """What a stream hands on for `table` where it stopped keeping its changes, to bound its memory (more than
    the reader re-counts one by one, or a backlog the reader has not read yet): the table's checks are counted in
    full (`Named.overflow`), so the changes it did not keep are counted too."""
    return Change(schema, table, "OVERFLOW")


@dataclass(frozen=True)
class Cascade:
    """A foreign key of a table whose parent's changes change its rows (`ChangeStream.unlogged_cascades`)."""

    parent: tuple[str, str]  # (schema, table) as the stream names it
    columns: frozenset[str]  # the child's columns the key sets
    referenced: frozenset[str]  # the parent's columns they reference
    on_update: str  # the key's rules, as information_schema spells them: CASCADE, SET NULL, RESTRICT, ...
    on_delete: str


class ChangeStream(Protocol):
    """One database's change stream (see monitor/live/postgresql.py, monitor/live/mysql.py)."""

    typed_values: bool  # row values arrive as Python values of the column's type, not as text to cast
    # 0 where `unsettled` tells which transactions read are not visible yet; else (a stream that cannot tell) the
    # seconds after which the keys of each read are counted once more: a transaction is handed out once logged,
    # and may become visible to other sessions only later. Such a stream's rows are asked about by their table's
    # primary key instead where it has one (monitor/live/visibility.py): the stream keeps those columns too
    # (`watch`), and the timed count is for the other tables' keys.
    recount_again: float
    # Where the stream's changes were all handed out by `read()` (text; None before it opened): what the reader
    # saves once it counted them, for a stream opened later (a restarted daemon) to resume from.
    position: str | None

    def open(self, resume: str | None = None) -> str | None:
        """Connect and start reading: after `resume` (the `position` of an earlier stream) where the server can
        still give what followed it, else from now on. Returns why it cannot resume from `resume` (changes
        committed since may never be seen: a gap), or None. Raises `LiveRefused` or `StreamLost` (also later,
        from `read()`, when the server finds it no longer holds `resume`)."""

    def read(self, fold: Fold | None = None) -> list[Transaction]:
        """The transactions committed since the last read. With `fold`, each of their changes is handed to it
        as it is read and is not kept (`Transaction.folded` counts them). Raises `StreamLost`."""

    def watch(self, columns: dict[tuple[str, str], frozenset[str]], filtered: frozenset[tuple[str, str]]) -> None:
        """The columns of each table (as `table_name` names it) that the reader's checks key on: a stream that
        queues changes before `read()` may keep only those, drop the changes of other tables, and the UPDATEs
        that change none of those columns of a table not in `filtered` (a check of which has a `where`, which
        such an UPDATE may move a row in or out of), counting them. Called after every full count; before the
        first, a stream keeps every change whole."""

    def wait(self, timeout: float) -> None:
        """Return once changes may be there to `read()` (a stream fed by a thread), or after `timeout` seconds
        (a stream that is polled)."""

    def unsettled(self, xids: set[str]) -> set[str]:
        """Of the transactions `xids` (`Transaction.xid`) read from the stream, those whose rows a new snapshot of
        the database does not see yet: committed in the log, not yet visible to other sessions (a commit waiting for
        a synchronous standby). Their keys are re-counted again once they are visible (`LiveReader`). Empty where
        the stream cannot tell."""

    def close(self) -> None:
        """Stop reading; nothing of the stream is left on the server."""

    def table_name(self, conn: Connection, table: sa.Table) -> tuple[str, str]:
        """(schema, table) as the stream names `table` in its changes, asked of the database."""

    def where_tables(self, conn: Connection, table: sa.Table, filters: list[Any]) -> set[tuple[str, str]]:
        """The other tables (as the stream names them) whose rows `filters` (a check's `where` on `table`) read: a
        change of any of them may move the check's rows in or out of it unnamed (`id NOT IN (SELECT ... FROM
        ignored)`), and counts the check in full. Empty where the stream cannot tell."""

    def unstreamed(self, conn: Connection, table: sa.Table) -> str | None:
        """Why the stream shows none (or not all) of `table`'s row changes, in a few words (PostgreSQL: an UNLOGGED
        table, or a foreign table in its tree, which logical decoding never sees), or None. Such a table's check is
        left to its poll: followed, a duplicate its rows made would be missed without a gap."""

    def unlogged_cascades(self, conn: Connection, table: tuple[str, str]) -> list[Cascade]:
        """The foreign keys of `table` (as `table_name` names it) whose actions change its rows without the
        stream naming them (InnoDB's cascades, which the binary log does not hold); empty where the stream names
        every row a cascade changes (PostgreSQL runs them as statements, decoded like any other)."""

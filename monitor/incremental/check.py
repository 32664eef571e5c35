"""The two kinds of run of an incremental check, and how they count keys (see the package docstring)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

from monitor.config import DEFAULT_RECOUNT_EVERY
from monitor.detect import CheckDefinitionError, TableCheck, single_precision
from monitor.dialects.expressions import CatalogEquality
from monitor.dialects.polling import KEY_BATCH, StatementCache
from monitor.dialects.server_value import ServerValue
from monitor.history import IncrementalState, KnownGroup
from monitor.incremental.values import decode_key, decoded, encode_key, encoded
from monitor.incremental.window import ID_OVERLAP, REMOVALS_UNSEEN, Window, next_positions, window_for

Mode = Literal["full", "incremental"]
RECOUNT_BUDGET = 200  # up to this many known groups, every incremental run re-counts all of them
RECOUNT_ROUNDS = 100  # above it, the slices (by a hash of the group) of a rotation through the known groups,
RECOUNT_PERIOD = DEFAULT_RECOUNT_EVERY  # which ends within `recount_every` (300 s) however often the runs come
JSON_BATCH = 50_000  # keys sent as one JSON document (`Dialect.changed_counts`)
_MOVED = "the table was truncated, rewritten or repartitioned since the last run (its storage changed)"


class ColumnTypeChanged(Exception):
    """The incremental column holds values of another kind than its type as reflected says (an `ALTER COLUMN ...
    TYPE` since the table was reflected): the caller reflects the table again and runs again."""


def value_kind(value: Any) -> tuple[str, str] | None:
    """What kind of watermark a value is: ("id", "integer"), or ("timestamp", its type: "date", "timestamp without
    time zone", "timestamp with time zone"); None where it says nothing (no value, the server's text of
    `infinity`)."""
    if value is None or isinstance(value, ServerValue):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return "id", "integer"
    if isinstance(value, datetime):
        return "timestamp", f"timestamp with{'' if value.tzinfo is not None else 'out'} time zone"
    if isinstance(value, date):
        return "timestamp", "date"
    return "other", "another type"


@dataclass(frozen=True)
class Outcome:
    """What one run of an incremental check found: figures, mode, cost, what it has to say, the state to save."""

    groups: int
    excess_rows: int
    mode: Mode
    rows_scanned: int
    new_groups: int
    state: IncrementalState
    first_run: bool = False
    notes: list[str] = field(default_factory=list)


def column_kind(check: str, column: sa.Column[Any]) -> Literal["id", "timestamp"]:
    """`id` for an integer column, `timestamp` for a date/time one; anything else cannot be a watermark."""
    if isinstance(column.type, sa.Integer):
        return "id"
    if isinstance(column.type, sa.DateTime | sa.Date):
        return "timestamp"
    raise CheckDefinitionError(
        f"check {check!r}: incremental: column {column.name!r} has type {column.type}; it must grow for new "
        "rows: an integer (identity, serial, auto-increment) or a timestamp")


def refuse_unreadable_watermark(conn: Connection, resolved: TableCheck) -> None:
    """Refuse, in one line naming the column, an incremental column holding values its declared type cannot read
    (`Dialect.unreadable_watermark`: on SQLite, epoch integers in a DATETIME made every run an internal error)."""
    check = resolved.check
    if check.incremental is None:
        return
    column = resolved._column(check.incremental, "incremental")
    detail = resolved.rules.unreadable_watermark(conn, resolved.table, column)
    if detail is not None:
        raise CheckDefinitionError(f"check {check.name!r}: incremental: {detail}", field="incremental",
                                   detail=detail)


@functools.lru_cache(maxsize=4096)  # (asked at every run: its JSON text and SHA-256 cost about 0.03 ms in a run)
def state_key(subject: str, column: str) -> str:
    """What an incremental check's state is stored by: what it measures and the column its watermark reads (two
    checks of one table with other `incremental` columns keep apart)."""
    return hashlib.sha256(json.dumps([subject, column]).encode()).hexdigest()[:32]


def table_key(place: Sequence[str], table: str) -> str:
    """What a fix or an undo marks as changed: the database (`Monitor.place`: what the server says it is) and the
    table's name."""
    return _table_key((*place, table.rsplit(".", 1)[-1].strip('"`')))


@functools.lru_cache(maxsize=4096)  # (asked at every run, as `state_key`)
def _table_key(parts: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]



def counted_keys(text: str | None, count: int) -> list[tuple[str, int]] | None:
    """The keys of more than one row with their counts, from the one text `_counted_statement` returns them as
    (`[identity] rows.` items joined by spaces), or None where that text was cut short (MariaDB's
    `group_concat_max_len`): fewer items than `count`, or a last item without its closing '.' (a cut within an
    identity or a count, or after a separator)."""
    tokens = text.split(" ") if text else []
    if len(tokens) != 2 * count or not all(t.endswith(".") for t in tokens[1::2]):
        return None
    return [(identity, int(rows[:-1])) for identity, rows in zip(tokens[::2], tokens[1::2], strict=True)]

def _bound_through_sql(kind: sa.types.TypeEngine[Any]) -> bool:
    """Whether the column type `kind` wraps each bound value in SQL of its own (`bind_expression`: a PostgreSQL
    composite's cast, without which `k = $1` compares record = record and the server refuses the text)."""
    return type(kind).bind_expression is not sa.types.TypeEngine.bind_expression


class IncrementalCheck:
    """A resolved table check with an `incremental` column: the statements of full and incremental runs.

    A group is identified as the database compares its key (`TableCheck.group_identities`: on MariaDB/MySQL a text
    key's sort key under its collation, on PostgreSQL a text key's hash under a nondeterministic collation), so a
    case-insensitive group stays one group whichever spelling `GROUP BY` returns; its
    `spelling` (the key values) is what its rows are looked up by."""

    # Counts the runs that changed a state's known groups in place (`_applied`, under the groups lock), of any
    # check: two checks of one subject share their state's groups.
    groups_changed = 0

    def __init__(self, resolved: TableCheck, key: str, groups_lock: threading.Lock | None = None) -> None:
        self.resolved = resolved
        # Held while a run changes the known groups in place (`_applied`): a reader on another thread (the
        # dashboard, `Monitor.group_first_seen`) holds it too.
        self.groups_lock = groups_lock if groups_lock is not None else threading.Lock()
        self.key = key  # the state's key in the store (`state_key`)
        self.rules = resolved.rules
        check = resolved.check
        assert check.incremental is not None
        self.column = resolved._column(check.incremental, "incremental")
        self.kind = column_kind(check.name, self.column)
        # Key values read and bound back as stored (`Dialect.as_stored`: a SQLite DATETIME key read through Python
        # bound back as other text, and the lookups of known groups found none of their rows).
        # Where the driver's value does not bind back as itself, the database's text of it, cast back on the server
        # (`Dialect.polled_key`: a jsonb number read as a Python int bound back as an integer, which jsonb has no
        # `=` with).
        self.exprs = [self.rules.polled_key(r) for r in resolved.key_reads]
        self.read_as_stored = any(r is not e for r, e in zip(self.exprs, resolved.key_exprs, strict=True))
        # Key columns spelled in the state otherwise than the group page shows them (`Dialect.shown_key_value`)
        self._shown_apart = any(p is not r for p, r in zip(self.exprs, resolved.key_reads, strict=True))
        # The map of `group_shown_as`, and what it was made of: the groups (held, so that their id is not another's),
        # their generation and `IncrementalCheck.groups_changed` then.
        self._shown: tuple[tuple[dict[str, KnownGroup] | None, int, int], dict[Any, KnownGroup]] = ((None, -1, -1), {})
        self.identity_exprs = resolved.group_identities(self.exprs)
        self.spelled_apart = any(i is not e for i, e in zip(self.identity_exprs, self.exprs, strict=True))
        self.row_ids = self._row_id_columns()
        # Where a read row of the overlap window holds the incremental value and the key: a primary key that is
        # the incremental column is read once (a column less for the driver to decode on every row).
        self._inc_at = 0 if len(self.row_ids) == 1 and self.row_ids[0] is self.column else len(self.row_ids)
        self._key_at = self._inc_at + 1
        self.key_indexed = True  # whether an index serves the key lookups (set by `index_advice`)
        self.recount_every = check.recount_every  # seconds: every known group is re-counted within them
        self._spellings: dict[str, tuple[Any, ...]] = {}  # group identity -> key values (decoded once)
        # Kept from the last run of this process, valid while its state is the one passed in next:
        self._counted: tuple[dict[str, KnownGroup] | None, int] = (None, 0)  # known groups, their excess rows
        # The identities of the known groups `_identities[0]` (as `_applied` leaves them) as a set, which the keys
        # of one row a run reads are looked up in (`_known_identities`).
        self._identities: tuple[dict[str, KnownGroup] | None, set[str]] = (None, set())
        self._slices: tuple[list[list[str]], dict[str, KnownGroup] | None] = ([], None)  # recount slices
        # The generation this check's last run made: both caches above hold only for it (a run changes the known
        # groups in place, and another check of the same subject, or a store merge, may have made a later one).
        self._made: int | None = None
        self._mark: ColumnElement[Any] | Literal[False] | None = False  # `Dialect.snapshot_mark` (False: not asked)
        # `Dialect.storage_identity_column` (False: not asked; asking may read the catalog)
        self._storage: ColumnElement[Any] | Literal[False] | None = False
        self._storage_read_at = -math.inf  # when a run last read it (monotonic)
        self._statements: dict[tuple[Any, ...], sa.Select[Any]] = {}  # built once, bound at each run
        # and compiled once (`StatementCache`: the detection engine keeps no compiled forms, `Database`'s
        # query_cache_size=0, and compiling a run's statements again cost 1-2 ms a run); a few per check.
        self._cache = StatementCache()
        self._removals_read = False  # whether the top statement reads `Dialect.removed_rows_column`
        # `Dialect.writers_columns` (an id watermark's: False until asked) and why the database does not say
        self._writers: tuple[ColumnElement[Any], ColumnElement[Any]] | Literal[False] | None = False
        self.writers_unseen = ""
        columns = resolved.key_columns
        # The keys read are counted by the database, in the statement that reads them (see `_counted_window`):
        # plain columns (integers: their text is their identity) that no row leaves NULL and an index serves.
        self.counted_on_server = (not self.spelled_apart and not self.read_as_stored
                                  and all(e is c for e, c in zip(self.exprs, columns, strict=True))
                                  and self.rules.counts_window_on_server(columns)
                                  and (check.nulls == "distinct" or not any(c.nullable for c in columns)))
        # A digest of the overlap window (`Dialect.window_digest`), where the rows are counted on the server and no
        # snapshot mark tells the rows committed since the last run: of the row's identity, incremental value and
        # key, each once.
        digested: list[ColumnElement[Any]] = []
        for e in [*self.row_ids, self.column, *self.exprs]:
            if not any(e is d for d in digested):
                digested.append(e)
        self.digest = self.rules.window_digest(digested) \
            if self.counted_on_server and self.kind == "id" and self.resolved.has_primary_key else None

    def _row_id_columns(self) -> list[ColumnElement[Any]]:
        """What tells rows apart for the overlap window: the primary key, else ctid/rowid, else nothing."""
        if self.resolved.has_primary_key:
            return list(self.resolved.table.primary_key.columns)
        identity = self.resolved.row_identity
        return [sa.type_coerce(identity, sa.String()).label("dupewatch_identity")] if identity is not None else []

    # -- fingerprint -----------------------------------------------------------------------------

    def fingerprint(self, conn: Connection, url: sa.engine.URL) -> str:
        """A digest of where the state belongs: the database (its URL without credentials, and what the server
        says it is) and the parts of the check that decide its groups."""
        check = self.resolved.check
        place = url.set(username=None, password=None).render_as_string(hide_password=True)
        server = [str(v) for statement in self.rules.database_identity_statements(conn)
                  for v in conn.execute(sa.text(statement)).one()]
        parts = [place, *server, check.table, check.key, check.where, check.nulls, check.case_insensitive,
                 check.trim_whitespace, check.incremental]
        if self.read_as_stored:  # a state whose keys were read through Python types is started again
            parts.append("keys as stored")
        if self.resolved.compared:  # groups identified under a collation (and its version) or as citext
            parts.append(json.dumps(sorted((n, *c.fingerprinted) for n, c in self.resolved.compared.items())))
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()

    # -- statements ------------------------------------------------------------------------------

    def _keyed(self) -> list[ColumnElement[Any]]:
        """The key's columns of a statement: its values, then (where they differ) its identities."""
        keyed: list[ColumnElement[Any]] = [e.label(f"k{i}") for i, e in enumerate(self.exprs)]
        if self.spelled_apart:
            keyed += [e.label(f"g{i}") for i, e in enumerate(self.identity_exprs)]
        return keyed

    def _top(self, conn: Connection, *, filtered: bool,
             digests: tuple[Any, Any, Any] | None = None, kept: str | None = None
             ) -> tuple[Any, str | None, int | None, Any, Any, str | None, tuple[Any, Any] | None]:
        """The table's highest incremental value and, where the database gives them, the snapshot mark read with
        it (`Dialect.snapshot_mark`; before any row is read: the next run re-reads what this one could not see),
        its count of removed rows (`Dialect.removed_rows`; before counting: a later delete moves it) and the
        identity of its storage (`Dialect.storage_identity_column`, last: a TRUNCATE or a rewrite changes it; where
        it is not due (`_storage_due`, not in a full pass: `filtered`), `kept`, what the last run read).

        With `digests` (low, high, overlap), also the window digests (`_digest_of`) of `(low, high]` (the window
        the last run took one of) and of the `overlap` below the highest value (the window the next run
        re-reads, where this run leaves its watermark there): in this statement, before any row is read, so a row
        that commits later changes the digest the next run compares.

        Last, for an id watermark, the database's clock and the start of the oldest transaction that has written
        (`Dialect.writers_columns`; None where not read), read with the highest value."""
        table = self.resolved.table
        if self._mark is False:
            self._mark = self.rules.snapshot_mark(conn, table)
        if self._writers is False:  # an id watermark a sequence bounds (no other window uses them)
            sequenced = self.kind == "id" and self.rules.sequence_position(conn, table, self.column) is not None
            self._writers, self.writers_unseen = self.rules.writers_columns(conn) if sequenced else (None, "")
        storing = filtered or self._storage_due(conn)
        key = ("top", filtered, digests is not None, storing)
        statement = self._statements.get(key)
        if statement is None:
            mark = self._mark if self._mark is not None else sa.null()
            removals = self.rules.removed_rows_column(conn, table)
            self._removals_read = removals is not None
            storage = self._storage_column(conn) if storing else None
            columns = [sa.func.max(self.column), mark, removals if removals is not None else sa.null(),
                       storage if storage is not None else sa.null()]
            if digests is not None:
                kind = self.column.type
                # The highest value as a scalar subquery: a constant the database reads the next window's range by
                # through the column's index (a bound taken from another row source made MariaDB scan it all).
                highest = sa.select(sa.func.max(self.column)).select_from(table).scalar_subquery()
                overlap = sa.bindparam("dupewatch_next_overlap", type_=kind)
                columns += [self._digest_of(sa.bindparam("dupewatch_low", type_=kind),
                                            sa.bindparam("dupewatch_high", type_=kind)),
                            self._digest_of(highest - overlap, highest)]
            if self._writers is not None:
                columns += list(self._writers)
            top: sa.Select[Any] = sa.select(*columns).select_from(table)
            statement = self._statements[key] = top.where(*self.resolved.filters) if filtered else top
        removed = None if self._removals_read else self.rules.removed_rows(conn, table)
        values = {} if digests is None else {"dupewatch_low": digests[0], "dupewatch_high": digests[1],
                                             "dupewatch_next_overlap": digests[2]}
        row = self._one(conn, statement, values)
        highest, taken, counted = row[:3]
        if self._removals_read:
            removed = None if counted is None else int(counted)
        now, following = (row[4], row[5]) if digests is not None else (None, None)
        writers = (row[-2], row[-1]) if self._writers is not None else None
        identity = kept
        if storing:
            identity, self._storage_read_at = None if row[3] is None else str(row[3]), time.monotonic()
        self._refuse_other_kind(highest)
        return highest, None if taken is None else str(taken), removed, now, following, identity, writers

    def _refuse_other_kind(self, highest: Any) -> None:
        """Raise `ColumnTypeChanged` where the table's highest value is not of the kind the reflected type says (the
        column's type was altered since: every run failed on `datetime - int` until the process restarted), or is a
        date where a timestamp was reflected, or the reverse."""
        kind = value_kind(highest)
        if kind is None or kind[0] not in ("id", "timestamp"):
            return
        dated = isinstance(self.column.type, sa.Date) and not isinstance(self.column.type, sa.DateTime)
        if kind[0] != self.kind or (kind[0] == "timestamp" and (kind[1] == "date") != dated):
            raise ColumnTypeChanged(f"{self.column.name} holds {type(highest).__name__} values, reflected as "
                                    f"{self.column.type}")

    def _refuse_mixed_zones(self, read: Sequence[Row[Any]], top: Any, *more: Any) -> None:
        """Refuse, in one line, a timestamp column whose values read (and the table's highest, and `more` of its
        values) hold date-times with a time zone offset beside ones without (SQLite keeps the text the application
        wrote: `...Z` or `+00:00` beside plain ones): they have no order as one watermark, and every run failed on
        comparing them."""
        if self.kind != "timestamp":
            return
        at = self._inc_at
        zoned = {v.tzinfo is not None for v in (top, *more, *(r[at] for r in read)) if isinstance(v, datetime)}
        if len(zoned) > 1:
            detail = (f"column {self.column.name!r} holds date-times with a time zone offset beside date-times "
                      "without one, which cannot be ordered as one watermark: store one form (SQLite keeps the "
                      "text the application wrote), or watch another column")
            raise CheckDefinitionError(f"check {self.resolved.check.name!r}: incremental: {detail}",
                                       field="incremental", detail=detail)

    def _reflected_kind(self) -> tuple[str, str]:
        """`value_kind` of the values the column's type as reflected holds."""
        kind = self.column.type
        if self.kind == "id":
            return "id", "integer"
        if not isinstance(kind, sa.DateTime):
            return "timestamp", "date"
        return "timestamp", f"timestamp with{'' if getattr(kind, 'timezone', False) else 'out'} time zone"

    def _type_changed(self, watermark: Any, top: Any = None) -> str | None:
        """Why the state's watermark cannot be compared with the column's values, or None: its type was altered
        since the last run (an epoch integer made a timestamp: every run failed on `int - timedelta`; `timestamp`
        made `timestamptz` or `date`). Without `top` (the table's highest value), by the column's kind as
        reflected."""
        kept = value_kind(watermark)
        if kept is None or kept[0] == "other":
            return None
        now = value_kind(top) if top is not None else self._reflected_kind() if kept[0] != self.kind else None
        if now is None or now == kept or now[0] == "other":
            return None
        return (f"the type of {self.column.name} changed since the last run (its watermark {watermark} is of type "
                f"{kept[1]}, the column's values now of type {now[1]})")

    def _count_statement(self) -> sa.Select[Any]:
        return sa.select(sa.func.count()).select_from(self.resolved.table).where(*self.resolved.filters)

    def _all_groups_statement(self) -> sa.Select[Any]:
        """Every group: its key, its highest incremental value (`_missed_note`) and its rows."""
        size = sa.func.count()
        return (sa.select(*self._keyed(), sa.func.max(self.column).label("dupewatch_top"), size.label("n"))
                .select_from(self.resolved.table).where(*self.resolved.filters).group_by(*self.exprs)
                .having(size > 1))

    def _bounds(self, after: Any, watermark: Any = None, late: str | None = None) -> tuple[tuple[bool, bool],
                                                                                           dict[str, Any]]:
        """The shape and parameters of `_window_conditions` for these bounds."""
        limited = late is not None and watermark is not None
        values = {"dupewatch_after": after, "dupewatch_watermark": watermark, "dupewatch_mark": late}
        return (after is not None, limited), values

    def _window_conditions(self, shape: tuple[bool, bool]) -> list[ColumnElement[bool]]:
        """The rows with `column > :dupewatch_after` (where `shape[0]`); of those at or below
        `:dupewatch_watermark`, only those committed since the last run read (`Dialect.committed_after`
        `:dupewatch_mark`) where `shape[1]`."""
        conditions = [*self.resolved.filters, self.column.is_not(None)]
        if shape[0]:
            conditions.append(self.column > sa.bindparam("dupewatch_after", type_=self.column.type))
        if shape[1]:
            late = self.rules.committed_after(sa.bindparam("dupewatch_mark", type_=sa.Text))
            conditions.append(sa.or_(self.column > sa.bindparam("dupewatch_watermark", type_=self.column.type),
                                     late))
        return conditions

    def _digest_of(self, low: ColumnElement[Any], high: ColumnElement[Any]) -> ColumnElement[Any]:
        """The window digest (`Dialect.window_digest`) of the rows with `low < column <= high`, a scalar."""
        assert self.digest is not None
        return (sa.select(self.digest).select_from(self.resolved.table)
                .where(*self.resolved.filters, self.column.is_not(None), self.column > low, self.column <= high)
                .correlate(None).scalar_subquery())  # never to a FROM of the statement it is part of

    def _read_window(self, conn: Connection, after: Any, watermark: Any = None,
                     late: str | None = None) -> Sequence[Row[Any]]:
        """Identity (unless it is the incremental column), incremental value and key of the rows with
        `column > after` (see `_window_conditions`)."""
        shape, values = self._bounds(after, watermark, late)
        statement = self._statements.get(("window", *shape))
        if statement is None:
            ids = self.row_ids[:self._inc_at]
            statement = self._statements["window", *shape] = (
                sa.select(*ids, self.column.label("dupewatch_inc"), *self._keyed())
                .select_from(self.resolved.table).where(*self._window_conditions(shape)))
        return self._execute(conn, statement, values).all()

    def _execute(self, conn: Connection, statement: sa.Executable,
                 values: dict[str, Any]) -> sa.CursorResult[*tuple[Any, ...]]:
        """`statement` bound to `values`, compiled at its first run only (`_cache`)."""
        return self._cache.run(conn, statement, values)

    def _one(self, conn: Connection, statement: sa.Executable, values: dict[str, Any]) -> Sequence[Any]:
        """The one row of `statement` bound to `values` (on the driver's cursor where the dialect says so:
        `StatementCache.one`)."""
        return self._cache.one(conn, statement, values, on_driver=self.rules.reads_row_on_driver)

    def _counted_window(self, conn: Connection, after: Any, watermark: Any, late: str | None,
                        ahead: Any) -> Sequence[Any]:
        """The rows of `_window_conditions`, their keys counted in the whole table by the database
        (`_counted_statement`): one row. A key's count is an index lookup (`counted_on_server` asks for one);
        `ahead`: None where no row can lie ahead."""
        shape, values = self._bounds(after, watermark, late)
        key = ("counted", *shape, ahead is not None)
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = self._counted_statement(shape, ahead is not None)
        return self._one(conn, statement, {**values, "dupewatch_ahead": ahead})

    def _counted_statement(self, shape: tuple[bool, bool], bounded: bool, folded: bool | None = None, *,
                           storage: ColumnElement[Any] | None = None) -> sa.Select[Any]:
        """Each row read (`_window_conditions`) with its key's count in the whole table (a correlated lookup through
        the key's index), aggregated into one row so that only what the client needs comes back: the keys of more
        than one row as one text (each identity followed by its count, space-separated) and how many, the rows
        read, the highest value read, how many lie ahead of `:dupewatch_ahead`, and the keys of one row as one
        text (their identities, space-separated: a known group of one row left is gone) and how many. An identity
        (`encode_key` of integers) holds no space.

        PyMySQL decodes each row in pure Python: 1,000 new rows of which 100 repeat old keys came back as 1,000 rows
        (5.0-5.2 ms as the client saw the statement), then as about 100 (2.6-3.2 ms), and now as one; MariaDB also
        spent 0.5 ms a run on grouping the rows (by key, then by whether the key is a group): none now. Where the
        dialect counts by a join (`Dialect.counts_window_by_join`), each row read is joined with its key's rows and
        grouped by the row; else a correlated subquery counts them, and the LIMIT keeps the read rows a derived
        table of their own (MariaDB merges a derived table without one into the outer query, and then looked each
        key up once for each of the references to its count).

        `folded` (not None: `_folded_pass`): the statement also returns the table's highest value and the window
        digest of the `:dupewatch_next_overlap` values below it (the window the next run re-reads), read in the
        statement's one snapshot with its rows; where True, the rows at or below `:dupewatch_watermark` are read
        only where the digest of `(:dupewatch_after, :dupewatch_watermark]` differs from `:dupewatch_stored` (the
        one the last run took of that window: nothing in it changed); and last, `storage` where given (the identity of
        the table's storage, `Dialect.storage_identity_column`)."""
        table, filters = self.resolved.table, self.resolved.filters
        read = table.alias("dupewatch_read")
        adapter = ClauseAdapter(read)
        keys = [adapter.traverse(e) for e in self.exprs]
        inc = adapter.traverse(self.column)
        matches = [*filters, *[e == k for e, k in zip(self.exprs, keys, strict=True)]]
        beyond = sa.case((inc > sa.bindparam("dupewatch_ahead", type_=self.column.type), 1), else_=0) \
            if bounded else sa.literal(0)
        reading = [adapter.traverse(c) for c in self._window_conditions(shape)]
        source: sa.FromClause = read
        if folded:
            # The rows read start at the watermark where the window's digest is the stored one, else at
            # `:dupewatch_after`: a bound of a one-row derived table, which MariaDB materializes while it plans
            # (a constant, `system`), so that the read is a range from that bound. As `inc > :watermark OR the
            # digest differs`, the range (planned before the digest is computed) covered the window either way: its
            # 1,000 rows were read, then dropped (0.1 ms of a statement of 2.8).
            kind = self.column.type
            after = sa.bindparam("dupewatch_after", type_=kind)
            watermark = sa.bindparam("dupewatch_watermark", type_=kind)
            changed = self._digest_of(after, watermark) \
                .is_distinct_from(sa.bindparam("dupewatch_stored", type_=sa.Text))
            bound = sa.select(sa.case((changed, after), else_=watermark).label("low")).limit(1) \
                .subquery("dupewatch_bound")
            source = bound.join(read, inc > bound.c.low)
        if self.rules.counts_window_by_join and self._inc_at == 0 and not self.resolved.check.where:
            # Each row read joined with its key's rows, grouped by the row (its primary key, the incremental column:
            # read in its order). A key part never NULL in a row it matches counts that key's rows (none: 0). The
            # read row's values are aggregated (one per group) for servers that require it (ONLY_FULL_GROUP_BY).
            identity = sa.func.concat("[", sa.func.concat_ws(",", *[sa.func.max(k) for k in keys]), "]")
            counted = (sa.select(identity.label("identity"), sa.func.count(self.exprs[0]).label("n"),
                                 sa.func.max(inc).label("top"), sa.func.max(beyond).label("ahead"))
                       .select_from(source.outerjoin(table, sa.and_(*matches))).where(*reading)
                       .group_by(inc).subquery("dupewatch_counted"))
        else:
            size = sa.select(sa.func.count()).select_from(table).where(*matches).correlate(read).scalar_subquery()
            identity = sa.func.concat("[", sa.func.concat_ws(",", *keys), "]")  # `encode_key` of integers
            counted = (sa.select(identity.label("identity"), size.label("n"), inc.label("top"),
                                 beyond.label("ahead"))
                       .select_from(source).where(*reading).limit(2**63 - 1).subquery("dupewatch_counted"))
        group, single = counted.c.n > 1, counted.c.n == 1
        columns: list[ColumnElement[Any]] = [
            # each count ends with a '.', so that a text cut short within its last count is told from a whole one
            sa.func.aggregate_strings(sa.case((group, sa.func.concat(counted.c.identity, " ", counted.c.n, "."))),
                                      " "),
            sa.func.count(sa.case((group, 1))), sa.func.count(), sa.func.max(counted.c.top),
            sa.func.sum(counted.c.ahead), sa.func.aggregate_strings(sa.case((single, counted.c.identity)), " "),
            sa.func.count(sa.case((single, 1)))]
        if folded is not None:
            highest = sa.select(sa.func.max(self.column)).select_from(table).correlate(None).scalar_subquery()
            overlap = sa.bindparam("dupewatch_next_overlap", type_=self.column.type)
            columns += [highest, self._digest_of(highest - overlap, highest)]
            if storage is not None:
                columns.append(storage)
        return sa.select(*columns)

    def _in_list_statement(self, keys: Sequence[tuple[Any, ...]]) -> sa.Select[Any]:
        """`WHERE (k0, k1) IN ((..), ..) OR (k0 IS NULL AND k1 = ..)` grouped by the key."""
        plain = [k for k in keys if None not in k]
        matches: list[ColumnElement[bool]] = []
        columns = self.resolved.key_columns
        if plain and any(single_precision(e) for e in self.exprs):
            # A single-precision key equals the double read from it only once the database rounds it again.
            matches.extend(sa.and_(*TableCheck.key_equals(k, self.exprs)) for k in plain)
            plain = []
        if plain and len(self.exprs) > 1 and not self.resolved.row_in_compares_as_equals():
            # The server's row IN does not find these columns' values as `=` does (MariaDB, a utf16 or latin1
            # column): the values converted as it must meet them, still one IN list (`=` key by key, an OR of 20,000
            # conjunctions, took 18 s over 40,000 rows of a table without the key's index).
            matches.append(sa.tuple_(*self.exprs).in_([sa.tuple_(*self.resolved.row_in_operands(
                [sa.bindparam(None, v, type_=e.type) for e, v in zip(self.exprs, k, strict=True)])) for k in plain]))
            plain = []
        if plain and any(isinstance(e.type, sa.ARRAY | CatalogEquality) or _bound_through_sql(c.type)
                         for e, c in zip(self.exprs, columns, strict=True)):
            # An array binds as the driver guesses its element type (smallint[] for small integers): cast it (one
            # carried as its text, `polled_key`, is cast by its type). A type compared by its catalog operator
            # (citext outside the search_path) must not meet a row IN, nor one whose value binds through SQL of
            # its own (a PostgreSQL composite's cast), which a row IN's values are bound without.
            matches.extend(sa.and_(*[e == sa.cast(sa.bindparam(None, v, type_=c.type), c.type)
                                     for e, v, c in zip(self.exprs, k, columns, strict=True)]) for k in plain)
            plain = []
        if plain:
            if len(self.exprs) == 1:
                matches.append(self.exprs[0].in_([k[0] for k in plain]))
            else:
                matches.append(sa.tuple_(*self.exprs).in_(plain))
        matches.extend(sa.and_(*TableCheck.key_equals(k, self.exprs)) for k in keys if None in k)
        return (sa.select(*self._keyed(), sa.func.count().label("n")).select_from(self.resolved.table)
                .where(*self.resolved.filters, sa.or_(*matches)).group_by(*self.exprs))

    def _probe_statement(self) -> sa.Select[Any]:
        """One key's count, as the planner sees a lookup (the key: the table's first, read by a sub-select)."""
        table, filters = self.resolved.table, self.resolved.filters
        first = [sa.select(e).select_from(table).where(*filters).limit(1).scalar_subquery() for e in self.exprs]
        return sa.select(sa.func.count()).select_from(table).where(
            *filters, *[e == f for e, f in zip(self.exprs, first, strict=True)])

    # -- rows ----------------------------------------------------------------------------------

    def _values(self, row: Sequence[Any], at: int) -> tuple[Any, ...]:
        return tuple(row[at:at + len(self.exprs)])

    def _identity(self, row: Sequence[Any], at: int) -> str:
        """The group identity of the key starting at `row[at]` (its values, then its identities)."""
        width = len(self.exprs)
        return encode_key(row[at + width:at + 2 * width] if self.spelled_apart else row[at:at + width])

    def _seen_entry(self, row: Sequence[Any]) -> str | None:
        """A read row as the overlap window remembers it: a digest of the row as read (its identity, incremental
        value and key), so that a row deleted and inserted again with the same identity and another key (REPLACE
        INTO) is read as new. The digest is of the values' `repr`, which needs no encoding of the key; a value
        read another way next time (a driver's other type) only makes its row read as new, and counted again.
        80 bits: two of a run's few thousand rows never share one."""
        if not self.row_ids:
            return None
        return hashlib.blake2b(repr(tuple(row)).encode(), digest_size=10).hexdigest()

    def spelling(self, identity: str, group: KnownGroup | None = None) -> tuple[Any, ...]:
        """The key values a group's rows are looked up by."""
        values = self._spellings.get(identity)
        if values is None:
            text = group.spelling if group is not None and group.spelling is not None else identity
            values = self._spellings[identity] = decode_key(text)
        return values

    def group_shown_as(self, groups: dict[str, KnownGroup], generation: int, key: Sequence[Any]) -> KnownGroup | None:
        """The known group (of `groups`, the state of `generation`) whose key the group page shows as `key` (the
        driver's values of `TableCheck.key_reads`), where the state spells keys otherwise (`polled_key`: a jsonb,
        range or address key as the server's text), or None. The dashboard's FIRST SEEN mark looked `key` up
        among those spellings and found none: blank for every such group. The map is made once per state: again
        for other groups (a store's state loaded again after a failed save, with the generation and often the
        count of the one it replaced), or ones a run changed in place since (`groups_changed`)."""
        if not self._shown_apart:
            return None
        (made_of, made_at, changes), shown = self._shown
        if made_of is not groups or made_at != generation or changes != IncrementalCheck.groups_changed:
            rules = self.rules
            reads = self.resolved.key_reads
            shown = {_comparable(tuple(rules.shown_key_value(e, r, v) for e, r, v in
                                       zip(self.exprs, reads, self.spelling(identity, group), strict=True))): group
                     for identity, group in groups.items()}
            self._shown = ((groups, generation, IncrementalCheck.groups_changed), shown)
        return shown.get(_comparable(tuple(key)))

    # -- runs ------------------------------------------------------------------------------------

    def full_pass(self, conn: Connection, fingerprint: str, before: IncrementalState | None, *,
                  changes_seen: int = 0, notes: Iterable[str] = (), now: float | None = None,
                  compare: bool = True) -> Outcome:
        """Aggregate the whole table; every group found becomes known. An empty table keeps the groups known
        before (a restore brings them back as they were, not as new ones) and no watermark (the next run is a
        full pass, which reads whatever was restored). `now`: the UNIX time of the run (the engine's clock).
        `compare`: whether the run says which groups the incremental runs before it had not found
        (`_missed_note`); not where it follows what made the state's watermark moot (a restore, a truncation)."""
        said = list(notes)
        now = time.time() if now is None else now
        top, mark, removals, _, _, storage, writers = self._top(conn, filtered=True)
        if top is None:
            kept = dict(before.groups) if before is not None else {}
            state = IncrementalState(self.key, fingerprint, None, [], now, _next_generation(before), kept,
                                     changes_seen=changes_seen, removals_seen=removals, recount_left=0,
                                     last_run_at=now, storage=storage,
                                     positions=before.positions if before is not None else None)
            return Outcome(0, 0, "full", 0, 0, state, before is None, said)
        positions = before.positions if before is not None else None
        window = window_for(conn, self, writers, positions)
        said += window.notes
        watermark = window.bounded(top)
        since, start = window.resumed(watermark)
        # Before the rows are counted: a row committed between the two makes the next run re-read the window.
        digest = self._take_digest(conn, start, watermark)
        read = self._read_window(conn, start)
        self._refuse_mixed_zones(read, top)
        said += self._future_notes(read, window)
        seen = self._seen(read, start)
        found: dict[str, tuple[tuple[Any, ...], int]] = {}
        tops: dict[str, Any] = {}
        for r in conn.execute(self._all_groups_statement()):
            identity = self._identity(r, 0)
            found[identity], tops[identity] = (self._values(r, 0), int(r[-1])), r[-2]
        rows = int(conn.execute(self._count_statement()).scalar() or 0)
        if compare and before is not None and before.fingerprint == fingerprint:
            said += self._missed_note(tops, before)
        groups, new = self._known(found, before)
        state = IncrementalState(self.key, fingerprint, encoded(watermark), seen, now,
                                 _next_generation(before), groups, changes_seen=changes_seen,
                                 pending_since=encoded(since), removals_seen=removals, recount_left=0,
                                 snapshot=mark, last_run_at=now, window_digest=digest, storage=storage,
                                 positions=self._positions(positions, writers, window, top))
        excess = sum(g.rows - 1 for g in groups.values())
        self._counted, self._made = (groups, excess), state.generation
        return Outcome(len(groups), excess, "full", rows, new, state, before is None, said)

    def _missed_note(self, tops: dict[str, Any], before: IncrementalState) -> list[str]:
        """What a full pass can say of rows written below the watermark, which an incremental run reads only within
        its overlap window: the groups it found that the state did not know and whose rows all lie at or below the
        watermark the last run left (`tops`: each group's highest incremental value; None: all NULL). An explicit
        low id, a row dated in the past, a commit later than the window allows, a key set by an UPDATE make them;
        a group with a row above the watermark is one the next incremental run would have read: not counted."""
        watermark = decoded(before.watermark)
        if watermark is None:
            return []
        missed = 0
        for identity, top in tops.items():
            if identity in before.groups:
                continue
            try:
                missed += top is None or bool(top <= watermark)
            except TypeError:  # naive against aware: the column's type changed
                continue
        if not missed:
            return []
        column = self.column.name
        return [f"missed by incremental runs: {missed:,} group(s) found by the full pass that incremental runs had "
                f"not: rows written below the watermark (every row of these groups has {column} at or below "
                f"{watermark}, or none: inserted with a low {column} value, committed late, or given their key by an "
                "UPDATE); an incremental run reads below the watermark only within its overlap window, so such rows "
                "wait for a full pass"]

    def _removals_notes(self, conn: Connection, removals: int | None) -> list[str]:
        """Why the count of removed rows is unknown, where the role cannot see what holds it back
        (`Dialect.removals_unseen`): the known groups are re-counted in rotation meanwhile."""
        why = self.rules.removals_unseen(conn) if removals is None else ""
        if not why:
            return []
        return [f"{REMOVALS_UNSEEN}: the count of rows deleted or updated in {self.resolved.table.name} is unknown: "
                f"{why}; known groups are re-counted in rotation (within recount_every) meanwhile"]

    def incremental_pass(self, conn: Connection, state: IncrementalState, *, recount_all: bool = False,
                         changes_seen: int | None = None, notes: Iterable[str] = (), now: float | None = None
                         ) -> Outcome:
        """Read past the watermark (minus the overlap); count the keys read and the share of the known groups the
        time since the last run calls for (`_turns`). `now`: the UNIX time of the run (the engine's clock)."""
        said = list(notes)
        now = time.time() if now is None else now
        if state.generation != self._made:  # not the state this check's last run made: its caches do not hold
            self._counted, self._slices, self._identities = (None, 0), ([], None), (None, set())
        seen_changes = state.changes_seen if changes_seen is None else changes_seen
        if (unmatched := self.resolved.keys_not_found_by_equality(catalog_operators=True)) is not None:
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes,
                                  notes=[*said, f"full pass: {unmatched}"], now=now, compare=False)
        watermark = decoded(state.watermark)
        if why := self._type_changed(watermark):  # before any bound is taken from it
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes,
                                  notes=[*said, f"full pass: {why}"], now=now, compare=False)
        if self._folds(conn):
            return self._folded_pass(conn, state, recount_all, seen_changes, said, now)
        stored = self._stored_digest(state.window_digest)
        digests = None  # none kept: take the next window's (the overlap the window takes on MariaDB/MySQL)
        if self.digest is not None and self.kind == "id" and self.key_indexed:
            digests = (stored[0], stored[1], stored[3]) if stored is not None else (None, None, ID_OVERLAP)
        top, mark, removals, digest_now, digest_next, storage, writers = self._top(conn, filtered=False,
                                                                                  digests=digests,
                                                                                  kept=state.storage)
        if why := self._type_changed(watermark, top):
            # A column altered to another type holds values of the new one only; one whose lowest value is of
            # another kind than its highest holds both (SQLite's text dates with and without an offset): refused.
            lowest = conn.execute(sa.select(sa.func.min(self.column)).select_from(self.resolved.table)
                                  .where(*self.resolved.filters)).scalar()
            self._refuse_mixed_zones([], top, lowest)
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes,
                                  notes=[*said, f"full pass: {why}"], now=now, compare=False)
        window = window_for(conn, self, writers, state.positions)
        positions = self._positions(state.positions, writers, window, top)
        start = window.start(watermark, decoded(state.pending_since))
        if why := self._restart_reason(top, start, watermark, window, state.storage, storage):
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes,
                                  notes=[*said, f"full pass: {why}"], now=now, compare=False)
        said += window.notes + self._removals_notes(conn, removals)
        late = self.rules.committed_since(state.snapshot, mark) \
            if state.snapshot is not None and mark is not None else None  # the value `committed_after` binds
        if self.counted_on_server and self.key_indexed:
            # The window is not read again where its digest is the one the last run took of it.
            unchanged = stored is not None and late is None and (stored[0], stored[1]) == (start, watermark) \
                and digest_now is not None and str(digest_now) == stored[2]
            following = None
            if digests is not None and digest_next is not None and top == window.bounded(top) \
                    and window.start(top) == top - digests[2]:
                following = self._digest_text(window.start(top), top, digest_next)
            return self._counted_pass(conn, state, window, watermark if unchanged else start, watermark, late,
                                      following if top is not None else None, mark, removals, recount_all,
                                      seen_changes, said, now, storage, positions=positions)
        read = self._read_window(conn, start, watermark, late)
        self._refuse_mixed_zones(read, top)
        said += self._future_notes(read, window)
        at, key_at = self._inc_at, self._key_at
        before = set(state.seen)
        fresh: dict[str, tuple[Any, ...]] = {}
        entries = []
        scanned = 0
        newest = None  # the highest value of a row read for the first time
        for row in read:
            entry = self._seen_entry(row)
            entries.append(entry)
            if entry is None or entry not in before:  # a row read for the first time: its key is counted
                scanned += 1
                fresh.setdefault(self._identity(row, key_at), self._values(row, key_at))
                if entry is not None and (newest is None or _sortable(row[at]) > _sortable(newest)):
                    newest = row[at]
        said += self._behind_notes(window, newest, state, now)
        highest = window.bounded(max([watermark, *(r[at] for r in read)], key=_sortable, default=None))
        recount, position, left = self._to_recount(state, removals, recount_all, now)
        cheaper = self._full_pass_cheaper(conn, len(recount) + len(fresh))
        if cheaper is not None:
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes, notes=[*said, cheaper],
                                  now=now)
        changed = self._changed_counts(conn, recount, fresh, state.groups)
        since, next_start = window.resumed(highest)
        seen = [e for e, row in zip(entries, read, strict=True)
                if e is not None and (next_start is None or row[at] > next_start)]
        groups, new, updated, removed, excess, added = self._applied(changed, state)
        saved = IncrementalState(state.key, state.fingerprint, encoded(highest), seen, state.last_full_at,
                                 _next_generation(state), groups, updated, removed, seen_changes, position,
                                 encoded(since), removals, left, mark, now, storage=storage, positions=positions)
        self._counted, self._made = (groups, excess), saved.generation
        self._keep_slices(state.groups, groups, added)
        return Outcome(len(groups), excess, "incremental", scanned, new, saved, False, said)

    def _folds(self, conn: Connection) -> bool:
        """Whether a run reads the table's highest value, the window digests and the new rows in one statement
        (`_folded_pass`): where the keys are counted on the server with window digests (MariaDB/MySQL), and the
        window's bounds need no read of the database (no sequence position: `Dialect.reads_sequence_position`; no
        snapshot mark nor count of removed rows read with the highest value; the identity of the table's storage,
        where the database gives one, is read in that statement too)."""
        if self.digest is None or self.kind != "id" or not self.key_indexed or not self.counted_on_server \
                or self.rules.reads_sequence_position(self.column):
            return False
        if self._mark is False:
            self._mark = self.rules.snapshot_mark(conn, self.resolved.table)
        return self._mark is None and self.rules.removed_rows_column(conn, self.resolved.table) is None

    def _storage_column(self, conn: Connection) -> ColumnElement[Any] | None:
        """`Dialect.storage_identity_column` of the table, asked once."""
        if self._storage is False:
            self._storage = self.rules.storage_identity_column(conn, self.resolved.table)
        return self._storage

    def _storage_due(self, conn: Connection) -> bool:
        """Whether this incremental run reads the storage's identity: where the database gives one, at every run,
        or at most every `Dialect.storage_identity_every` seconds where it costs more (a change is then seen by
        the first run that reads it, that much later at most, and that run is a full pass)."""
        if self._storage_column(conn) is None:
            return False
        every = self.rules.storage_identity_every
        return every is None or time.monotonic() - self._storage_read_at >= every

    def _folded_pass(self, conn: Connection, state: IncrementalState, recount_all: bool, seen_changes: int,
                     said: list[str], now: float) -> Outcome:
        """An incremental run of one statement (`_folds`): the table's highest value, the digest of the window
        the next run re-reads and the new rows counted (`_counted_statement`, `folded`), all in the statement's
        one snapshot; the window the last run took a digest of is re-read only where the database's digest of it
        differs (compared in the statement). A round trip, and a statement's fixed cost, fewer than reading the
        highest value and the digests first (`_top`), with the same figures: a row committed after the statement's
        snapshot is in neither its rows nor the digest it keeps, so the next run's digest differs and reads it."""
        window = window_for(conn, self)  # no read of the database (`_folds`)
        watermark = decoded(state.watermark)
        start = window.start(watermark, decoded(state.pending_since))
        stored = self._stored_digest(state.window_digest)
        compare = stored is not None and (stored[0], stored[1]) == (start, watermark)
        overlap = stored[3] if stored is not None else ID_OVERLAP  # the window the next run's digest is of
        removals = self.rules.removed_rows(conn, self.resolved.table)
        said += self._removals_notes(conn, removals)
        ahead = window.ahead_bound()
        storing = self._storage_due(conn)
        key = ("folded", compare, ahead is not None, storing)
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = self._counted_statement(
                (True, False), ahead is not None, compare, storage=self._storage_column(conn) if storing else None)
        row = self._one(conn, statement, {
            "dupewatch_after": start, "dupewatch_watermark": watermark, "dupewatch_ahead": ahead,
            "dupewatch_stored": stored[2] if compare and stored is not None else None,
            "dupewatch_next_overlap": overlap})
        top, digest_next = row[7], row[8]
        self._refuse_other_kind(top)
        storage = state.storage
        if storing:
            storage, self._storage_read_at = None if row[9] is None else str(row[9]), time.monotonic()
        if why := self._restart_reason(top, start, watermark, window, state.storage, storage):
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes,
                                  notes=[*said, f"full pass: {why}"], now=now, compare=False)
        said += window.notes
        following = None
        if digest_next is not None and top == window.bounded(top) and window.start(top) == top - overlap:
            following = self._digest_text(window.start(top), top, digest_next)
        return self._counted_pass(conn, state, window, start, watermark, None, following, None, removals,
                                  recount_all, seen_changes, said, now, storage, tuple(row)[:7])

    def _counted_pass(self, conn: Connection, state: IncrementalState, window: Window, start: Any, watermark: Any,
                      late: str | None, following: str | None, mark: str | None, removals: int | None,
                      recount_all: bool, seen_changes: int, said: list[str], now: float,
                      storage: str | None, read_row: Sequence[Any] | None = None, *,
                      positions: str | None = None) -> Outcome:
        """An incremental run whose keys read are counted by the database (`_counted_window`): one row comes back,
        the keys of more than one row with their counts as one text, the keys of one row as another, never the
        rows. Every key read comes back, so a known group whose rows fell below two is seen as at the client's count
        (where the text of the keys of one row comes back cut short, every known group is re-counted instead; where
        that of the keys of more than one row does, a group among those cut off would be missed: the run is a full
        pass); the rows re-read are not told apart (a key counted again counts the same), so none is remembered
        (`seen`), and `late` keeps the re-read rows to those committed since the last run where the database says
        which (`start` is the watermark where the window's digest is the one the last run took: nothing in it
        changed). `following`: the digest of the window below the table's highest value (`_top`), kept where the
        run leaves its watermark there. `read_row`: the statement's row where it was read already
        (`_folded_pass`)."""
        row = read_row if read_row is not None else self._counted_window(conn, start, watermark, late,
                                                                          window.ahead_bound())
        groups_text, group_count, scanned, highest_read, beyond, singles_text, single_count = row
        scanned, beyond = int(scanned), int(beyond or 0)
        if beyond:
            said.append(self._future_note(beyond, highest_read, window))
        if late is not None and scanned:  # (PostgreSQL: every row read was committed since the last run)
            said += self._behind_notes(window, highest_read, state, now)
        pairs = counted_keys(groups_text, int(group_count))
        if pairs is None:  # the text was cut short (MariaDB's group_concat_max_len)
            return self.full_pass(conn, state.fingerprint, state, changes_seen=seen_changes, now=now, notes=[
                *said, f"full pass: the {int(group_count):,} keys of more than one row read did not fit in one "
                "text (group_concat_max_len)"])
        singles = singles_text.split(" ") if singles_text else []
        if len(singles) != int(single_count) or (singles and not singles[-1].endswith("]")):  # cut short
            recount_all = True
        known = state.groups
        # the keys of one row: a known group among them is gone
        changed: dict[str, int] = dict.fromkeys(self._known_identities(known).intersection(singles), 1)
        counted = set(singles)
        for identity, rows_now in pairs:
            counted.add(identity)
            group = known.get(identity)
            if (group.rows if group is not None else 0) != rows_now:
                changed[identity] = rows_now
        highest = window.bounded(max([watermark, highest_read], key=_sortable))
        taken = following if following is not None and json.loads(following)[1] == encoded(highest) else None
        recount, position, left = self._to_recount(state, removals, recount_all, now)
        recount = {k: g for k, g in recount.items() if k not in counted}
        if recount:
            changed.update(self._changed_counts(conn, recount, {}, known))
        groups, new, updated, removed, excess, added = self._applied(changed, state)
        saved = IncrementalState(state.key, state.fingerprint, encoded(highest), [], state.last_full_at,
                                 _next_generation(state), groups, updated, removed, seen_changes, position,
                                 encoded(window.resumed(highest)[0]), removals, left, mark, now, taken, storage,
                                 positions if positions is not None else state.positions)
        self._counted, self._made = (groups, excess), saved.generation
        self._keep_slices(known, groups, added)
        return Outcome(len(groups), excess, "incremental", scanned, new, saved, False, said)

    @staticmethod
    def _positions(kept: str | None, writers: tuple[Any, Any] | None, window: Window, top: Any) -> str | None:
        """The positions the state keeps after this run (`window.next_positions`): the table's highest value as
        read with the database's clock, bounded by the sequence's position (ids handed out later lie above it, but
        for the ranges sessions hold cached: the overlap), where the sequence bounds it."""
        if writers is None or window.upper is None or top is None:
            return kept
        return next_positions(kept, writers[0], window.bounded(top))

    def _take_digest(self, conn: Connection, start: Any, watermark: Any) -> str | None:
        """The window digest of the rows in `(start, watermark]`, as the state keeps it (None: none can be taken)."""
        if self.digest is None or not self.key_indexed or start is None or watermark is None:
            return None
        taken = conn.execute(sa.select(self._digest_of(sa.literal(start, self.column.type),
                                                       sa.literal(watermark, self.column.type)))).scalar()
        return None if taken is None else self._digest_text(start, watermark, taken)

    @staticmethod
    def _digest_text(start: Any, watermark: Any, digest: Any) -> str:
        return json.dumps([encoded(start), encoded(watermark), str(digest)])

    def _stored_digest(self, text: str | None) -> tuple[Any, Any, str, Any] | None:
        """The digest the last run took (low, high, digest, and high - low: the overlap it was taken with), or None
        where none is kept or none applies."""
        if text is None or self.digest is None or self.kind != "id":
            return None
        low, high, digest = json.loads(text)
        low, high = decoded(low), decoded(high)
        if not isinstance(low, int) or not isinstance(high, int):
            return None
        return low, high, str(digest), high - low

    def _keep_slices(self, before: dict[str, KnownGroup], after: dict[str, KnownGroup], added: list[str]) -> None:
        """The recount slices of `before`, with the groups found since (`added`): valid for `after`."""
        slices, sliced = self._slices
        if sliced is not before or not slices:
            self._slices = ([], None)
            return
        for key in added:
            slices[zlib.crc32(key.encode()) % len(slices)].append(key)
        self._slices = (slices, after)

    def _restart_reason(self, top: Any, start: Any, watermark: Any, window: Window, stored: str | None,
                        storage: str | None) -> str | None:
        """Why this run must be a full pass instead, or None: the table is empty, what bounds the watermark went
        back (`_bound_went_back`), the table's storage is not the one the last run read (`stored`: truncated,
        rewritten or given other partitions, and loaded again: rows below the watermark no run read), or every
        row lies below the window (`_restarted_below`)."""
        if top is None:
            return "the table is empty"
        if went_back := self._bound_went_back(watermark, start, window):
            return went_back
        if stored is not None and storage != stored:
            return _MOVED
        if self._restarted_below(top, start):
            return "every row lies below the watermark (emptied or recreated)"
        return None

    def _bound_went_back(self, watermark: Any, start: Any, window: Window) -> str | None:
        """Why the watermark cannot be trusted where what bounds it (the sequence handing out ids, the database's
        clock) now stands below the window a run reads: each run leaves the watermark at or below that bound,
        which only grows, unless a sequence was set back (`ALTER SEQUENCE ... RESTART`, `setval`, the table
        created again) or the clock went back (a `timestamp` column of local time when daylight saving time
        ends, a clock stepped back). The values handed out now lie below the window, and their rows would wait
        for the full pass unread (a row kept above them hides a restart from `_restarted_below`)."""
        if window.upper is None or start is None:
            return None
        try:
            behind = bool(start > window.upper)
        except TypeError:
            return None
        what = "the sequence was set back, or the table created again" if self.kind == "id" else \
            "the clock went back: daylight saving time ended for a local-time column, or the clock was stepped back"
        bound = window.upper_name if self.kind == "id" else f"{window.upper_name} ({window.upper})"
        return f"{bound} lies below the watermark {watermark} ({what})" if behind else None

    def _restarted_below(self, top: Any, start: Any) -> bool:
        """Whether the table's highest value (any row, an index lookup) fell below the overlap window: the table
        was emptied or recreated since the watermark was read."""
        if start is None:
            return False
        try:
            return bool(top < start)
        except TypeError:  # naive and aware datetimes (a changed column type): start over
            return True

    def _seen(self, read: Sequence[Row[Any]], start: Any) -> list[str]:
        """The entries of the rows read above `start`: the next run re-reads them and must recognise them."""
        at = self._inc_at
        seen = []
        for row in read:
            if start is None or row[at] > start:
                entry = self._seen_entry(row)
                if entry is not None:
                    seen.append(entry)
        return seen

    def _behind_notes(self, window: Window, newest: Any, state: IncrementalState, now: float) -> list[str]:
        """What a timestamp watermark cannot know where the newest row read for the first time lies behind the
        database's clock by more than the time since the last run plus the overlap: its rows are not dated by that
        clock when they commit (an application's local time in a zone behind the database's, a client's clock).
        When the clock dating them steps back (daylight saving time ends: an hour) by more than the overlap, the
        rows it dates then lie below the window, and wait for the full pass: said, as the database cannot tell."""
        if self.kind != "timestamp" or not isinstance(newest, datetime) or not isinstance(window.upper, datetime) \
                or state.last_run_at is None:
            return []
        try:
            lag = window.upper - newest
            if lag <= window.overlap + timedelta(seconds=max(now - state.last_run_at, 0.0)):
                return []
        except TypeError:
            return []
        hours = lag.total_seconds() / 3600
        return [f"late rows: the newest {self.column.name} values read lie {hours:,.1f} h behind the database's "
                "clock, more than the time since the last run: they are not dated by that clock when they commit "
                "(an application's local time in another time zone, a client's clock); a row that clock dates "
                f"further back than the overlap ({int(window.overlap.total_seconds() // 60)} min) below them, as "
                "when it steps back at the end of daylight saving time, waits for the full pass"]

    def _future_notes(self, read: Sequence[Row[Any]], window: Window) -> list[str]:
        at = self._inc_at
        ahead = [row[at] for row in read if window.ahead(row[at])]
        return [self._future_note(len(ahead), max(ahead), window)] if ahead else []

    def _future_note(self, count: int, highest: Any, window: Window) -> str:
        return (f"rows in the future: {count:,} row(s) with {self.column.name} up to {highest} lie ahead of "
                f"{window.upper_name} ({window.upper}); the watermark stays there, so rows still to come are read")

    def _to_recount(self, state: IncrementalState, removals: int | None, recount_all: bool, now: float
                    ) -> tuple[dict[str, KnownGroup], int, int]:
        """The known groups this run re-counts, the next slice's position, and the slices left in the rotation.

        Where the database counts the rows deleted or updated in the table (`Dialect.removed_rows`), a run while
        that count stands still re-counts none (no group can have shrunk); once it moves, a whole rotation of
        slices follows, so every group is re-counted within `recount_every` of the change. Elsewhere the rotation
        never stops, as it does where the known groups fit in one run's budget (the count reaches the statistics a
        few seconds after a commit: a small set is re-counted at every run instead).

        A run re-counts the slices the time since the last run calls for (`_turns`), so that a rotation ends by
        the first run `recount_every` after it began, however often the runs come."""
        if recount_all:
            return state.groups, state.recount_position, 0 if removals is not None else -1
        turns = self._turns(state, now)
        if removals is None or len(state.groups) <= RECOUNT_BUDGET:
            recount, position = self._recount_slice(state.groups, state.recount_position, turns)
            return recount, position, -1
        left = state.recount_left
        if state.removals_seen is None or removals != state.removals_seen or left < 0:
            left = self._rounds(state.groups)  # a rotation from here
        if left == 0:
            return {}, state.recount_position, 0
        turns = min(turns, left)
        recount, position = self._recount_slice(state.groups, state.recount_position, turns)
        return recount, position, left - turns

    def _turns(self, state: IncrementalState, now: float) -> int:
        """The slices this run re-counts: one per tick of the rotation's clock (`recount_every` / RECOUNT_ROUNDS
        seconds, counted from the UNIX epoch) passed since the last run, at most a rotation; one where the last
        run's time is unknown or ahead of this one (a clock set back).

        The ticks of consecutive runs add up, so over any `recount_every` the runs re-count a whole rotation
        whether they come every few milliseconds (most of them then re-count none) or an hour apart (one re-counts
        all), and a run costs its new rows plus the share of the known groups its interval calls for."""
        rounds = self._rounds(state.groups)
        if rounds == 1:
            return 1
        last = state.last_run_at
        if last is None or now < last:
            return 1
        tick = self.recount_every / rounds
        return min(rounds, math.floor(now / tick) - math.floor(last / tick))

    @staticmethod
    def _rounds(known: dict[str, KnownGroup]) -> int:
        """The slices of a rotation: one (every group, every run) up to RECOUNT_BUDGET groups, else
        RECOUNT_ROUNDS (by a hash of the group: a group keeps its slice while the known groups come and go)."""
        return 1 if len(known) <= RECOUNT_BUDGET else RECOUNT_ROUNDS

    def _recount_slice(self, known: dict[str, KnownGroup], position: int, turns: int = 1
                       ) -> tuple[dict[str, KnownGroup], int]:
        """The known groups this run re-counts: all of them up to RECOUNT_BUDGET, else `turns` of RECOUNT_ROUNDS
        slices, the next ones each run, so that every group is re-counted within `recount_every` and a run
        costs its new rows plus a share of the known groups (`_turns`).

        The slices are kept between runs of this process (a group found since is added to its slice; a group gone
        is skipped), and sliced again when the state came from elsewhere."""
        rounds = self._rounds(known)
        if rounds == 1:
            return known, 0
        slices, sliced = self._slices
        if sliced is not known or len(slices) != rounds:
            slices = [[] for _ in range(rounds)]
            for key in known:
                slices[zlib.crc32(key.encode()) % rounds].append(key)
        chosen: dict[str, KnownGroup] = {}
        for step in range(min(turns, rounds)):
            turn = (position + step) % rounds
            kept = {k: known[k] for k in slices[turn] if k in known}
            slices[turn] = list(kept)
            chosen.update(kept)
        self._slices = (slices, known)
        return chosen, position + min(turns, rounds)

    def _full_pass_cheaper(self, conn: Connection, keys: int) -> str | None:
        """Without an index on the key, whether the planner expects the key lookups to cost as much as a full
        pass (then the run is one, and says so). Where the planner gives no cost, a statement reading the table is
        taken to cost a full pass."""
        if self.key_indexed or keys == 0:
            return None
        columns = self.resolved.key_columns
        correlated = self.rules.counts_keys_as_json(columns) or \
            self.rules.key_count_statement(self.resolved, [tuple(1 for _ in columns)]) is not None
        reads = keys if correlated else -(-keys // self.rules.key_batch_size(len(columns), indexed=False))
        probe = self.rules.estimated_cost(conn, self._probe_statement())
        full = self.rules.estimated_cost(conn, self._all_groups_statement())
        if probe is None or full is None:
            if reads <= 1:
                return None
            return (f"no key index: counting {keys:,} key(s) would read the table {reads:,} times, more than a full "
                    "pass, so the run was a full pass; create the index to run incrementally")
        if reads * probe <= full:
            return None
        return (f"no key index: counting {keys:,} key(s) would cost {reads * probe:,.0f} by the planner's estimate, a "
                f"full pass {full:,.0f}, so the run was a full pass; create the index to run incrementally")

    # -- counting ------------------------------------------------------------------------------

    def _changed_counts(self, conn: Connection, recount: dict[str, KnownGroup], fresh: dict[str, tuple[Any, ...]],
                        known: dict[str, KnownGroup]) -> dict[str, int]:
        """Rows now, by group identity, of the known groups to re-count and of the keys read, where that is not
        what the state (`known`) says: 0 for a key not known; a key read that is no group is left out."""
        wanted = {identity: self.spelling(identity, group) for identity, group in recount.items()}
        for identity, values in fresh.items():
            wanted.setdefault(identity, values)
        expected = {i: (known[i].rows if i in known else 0) for i in wanted}
        changed: dict[str, int] = {}
        plain = {i: v for i, v in wanted.items() if None not in v}
        rest = {i: v for i, v in wanted.items() if None in v}
        if plain and self.rules.counts_keys_as_json(self.resolved.key_columns):
            changed.update(self._changed_by_json(conn, plain, expected))
        else:
            rest.update(plain)
        if rest:
            counts = self._count_keys(conn, list(rest.values()))
            for identity in rest:
                rows = counts.get(identity, 0)
                if rows != expected[identity]:
                    changed[identity] = rows
            for identity, rows in counts.items():  # a key the database groups with one asked under another identity
                if identity not in rest and rows != (known[identity].rows if identity in known else 0):
                    changed[identity] = rows
        return {i: n for i, n in changed.items() if n > 1 or i in known}

    def _changed_by_json(self, conn: Connection, keys: dict[str, tuple[Any, ...]],
                         expected: dict[str, int]) -> dict[str, int]:
        identities = list(keys)
        changed: dict[str, int] = {}
        size = JSON_BATCH  # one parameter however many keys
        for start in range(0, len(identities), size):
            chunk = identities[start:start + size]
            # The identity is the encoded key where the database compares values exactly.
            texts = [encode_key(keys[i]) for i in chunk] if self.spelled_apart else chunk
            document = "[" + ",".join(f"{t[:-1]},{expected[i]}]" for t, i in zip(texts, chunk, strict=True)) + "]"
            for ordinal, rows in self.rules.changed_counts(conn, self.resolved, document, self._cache):
                identity = chunk[ordinal - 1]
                changed[identity] = rows
                self._spellings.setdefault(identity, keys[identity])  # what a new group's rows are looked up by
        return changed

    def _count_keys(self, conn: Connection, keys: list[tuple[Any, ...]]) -> dict[str, int]:
        """Rows per group identity of these keys (only groups with rows), in as few statements as the dialect
        allows."""
        counts: dict[str, int] = {}
        width = len(self.exprs)
        plain = [k for k in keys if None not in k]
        with_null = [k for k in keys if None in k]  # matched by IS NULL: always the IN-list form
        for chunk, size in ((plain, self.rules.key_batch_size(width, indexed=self.key_indexed)),
                            (with_null, KEY_BATCH)):
            for start in range(0, len(chunk), size):
                part = chunk[start:start + size]
                # The dialect's form returns the keys as bound, not their identities: only where they are one.
                statement = None if self.spelled_apart else self.rules.key_count_statement(self.resolved, part)
                if statement is None:  # (a statement has no truth value: `or` raised TypeError)
                    statement = self._in_list_statement(part)
                for row in conn.execute(statement):
                    if row[-1]:
                        identity = self._identity(row, 0)
                        counts[identity] = counts.get(identity, 0) + int(row[-1])
                        self._spellings.setdefault(identity, self._values(row, 0))
        return counts

    def _known_identities(self, known: dict[str, KnownGroup]) -> set[str]:
        """The identities of the known groups `known`, as a set: kept between the runs of this process, changed by
        `_applied` as it changes them (a copy of 20,000 identities costs about 1 ms; a run reads some 900 keys of one
        row, each a miss among the known groups: in the dict 0.3 ms a run, as its probes, two to three lines of
        memory apart, came back from the cache a second after the last run, in a set about half that)."""
        kept_for, identities = self._identities
        if kept_for is not known:
            identities = set(known)
            self._identities = (known, identities)
        return identities

    def _applied(self, changed: dict[str, int], state: IncrementalState
                 ) -> tuple[dict[str, KnownGroup], int, list[str], list[str], int, list[str]]:
        """The known groups after these count changes: (groups, how many are new, updated keys, removed keys,
        excess rows, the keys of the new groups). The excess rows follow from the last run's when this process
        made its state.

        The changes are made to `state.groups` itself, under `groups_lock`, not to a copy (copying 20,000 groups
        cost 0.6 ms a run, 100,000 some milliseconds): the state a run starts from is the one this process saved
        last (`Monitor._load_state`), which a run that fails before its save is dropped with (`_run_incremental`),
        so the next run loads the stored one."""
        now, generation = time.time(), _next_generation(state)
        groups = state.groups
        counted_groups, excess = self._counted
        if counted_groups is not groups:  # another process saved it: count once
            excess = sum(g.rows - 1 for g in groups.values())
        new, updated, removed, added = 0, [], [], []
        kept_for, identities = self._identities
        if kept_for is not groups:  # (a set for other groups: never changed to follow these)
            identities = set()
        with self.groups_lock:
            for identity, rows in changed.items():
                old = groups.get(identity)
                excess += max(rows - 1, 0) - (old.rows - 1 if old is not None else 0)
                if rows < 2:
                    if old is not None:
                        del groups[identity]
                        identities.discard(identity)
                        removed.append(identity)
                        self._spellings.pop(identity, None)
                    continue
                if old is None:
                    new += 1
                    groups[identity] = KnownGroup(identity, rows, now, generation, self._spelling_text(identity))
                    identities.add(identity)
                    added.append(identity)
                else:
                    groups[identity] = KnownGroup(identity, rows, old.first_seen_at, old.first_seen_generation,
                                                  old.spelling)
                updated.append(identity)
            if changed:
                IncrementalCheck.groups_changed += 1
        return groups, new, updated, removed, excess, added

    def _spelling_text(self, identity: str) -> str | None:
        if not self.spelled_apart:
            return None
        return encode_key(self._spellings[identity])

    def _known(self, found: dict[str, tuple[tuple[Any, ...], int]], before: IncrementalState | None
               ) -> tuple[dict[str, KnownGroup], int]:
        """Known groups from the counts found, keeping when each was first seen; and how many are new."""
        now = time.time()
        generation = _next_generation(before)
        previous = before.groups if before is not None else {}
        groups: dict[str, KnownGroup] = {}
        self._spellings = {}
        new = 0
        for identity, (values, rows) in found.items():
            self._spellings[identity] = values
            old = previous.get(identity)
            spelling = encode_key(values) if self.spelled_apart else None
            if old is None:
                new += 1
                groups[identity] = KnownGroup(identity, rows, now, generation, spelling)
            elif old.rows == rows and old.spelling == spelling:
                groups[identity] = old
            else:
                groups[identity] = KnownGroup(identity, rows, old.first_seen_at, old.first_seen_generation, spelling)
        return groups, new


def _next_generation(state: IncrementalState | None) -> int:
    return (state.generation if state is not None else 0) + 1


def _sortable(value: Any) -> Any:
    """Sort key that puts None (no watermark yet) below everything."""
    return (value is not None, value)


def full_pass_due(state: IncrementalState | None, fingerprint: str, full_every: float,
                  now: float | None = None) -> bool:
    """Whether this run must be a full pass: no state, a foreign state, no watermark, or `full_every` elapsed."""
    if state is None or state.fingerprint != fingerprint or state.last_full_at is None or state.watermark is None:
        return True
    return (now if now is not None else time.time()) - state.last_full_at >= full_every


def _comparable(value: Any) -> Any:
    """`value` as a dict key equal for values Python finds equal: a JSON document as its canonical text (numbers
    that are whole as integers: jsonb `1.0` is `1`), a sequence (an array, a multirange) as a tuple."""
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return json.dumps(_whole(value), sort_keys=True, default=str)
    if isinstance(value, tuple | list) or not _hashable(value):
        return tuple(_comparable(v) for v in value)
    return value


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True

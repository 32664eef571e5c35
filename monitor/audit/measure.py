"""Counting a candidate's duplicates: exact on small tables, from a sample on big ones, within the budget.

Every statement runs in the audit's read-only connection, each in its own transaction (rolled back)
under a statement timeout that is the smaller of the time left in the budget and a per-query share of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, SupportsInt, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit import dialect_catalog
from monitor.audit.candidates import Candidate
from monitor.audit.catalog import TableInfo
from monitor.db import Database

EXACT_ROW_LIMIT = 500_000  # tables up to this many rows are counted exactly
SAMPLE_ROWS = 200_000  # a big table is measured on about this many rows
QUERY_SHARE = 0.25  # no single query may take more than this share of the budget
STATUS_VALUES = 50  # key_with_status: the status values read
STATUS_MIN_KEYS = 5  # ... and the keys a value needs before its figures say anything
FLAG_VALUES = 2  # a column set taking no more values than this is a flag (deleted or not), naming nothing


BURST_SECONDS = 2.0  # rows of a group written within this span were born together (the seeds: 5 ms, one click)
SPREAD_GROUPS = 1_000  # the birth spread is read for at most this many groups


@dataclass(frozen=True)
class Measurement:
    """Duplicate figures of one candidate. With `estimated`, counts are scaled up from a sample.

    `groups` counts only rows alike in every other unique key's columns too (rows differing there are distinct
    entities by the schema's declaration). The race signature:
    `alike_groups` of them agree on every compared column, `burst_groups` of `timed_groups` were written within
    BURST_SECONDS (None without a birth timestamp)."""

    distinct_keys: int
    groups: int
    excess_rows: int
    largest: int
    estimated: bool
    sample_percent: float | None = None
    rows: int = 0  # rows the key was measured on (after the candidate's filter), scaled
    table_rows: int = 0
    alike_groups: int = 0
    burst_groups: int | None = None
    timed_groups: int = 0
    status_value: str | None = None  # key_with_status: the value whose rows are one per key ...
    status_where: str | None = None  # ... and the condition selecting it (or identifiers given), as a check's `where`
    same_parent_groups: int = 0  # groups whose rows agree on the candidate's other_parents (all, without any)
    values: int | None = None  # an identifier measured per parent: the distinct values of its own columns
    # an identifier in a table with another unique key (agree_on): its own keys (its columns and parents, without
    # that key's columns) and how many of them repeat; None when they are `distinct_keys` and `groups`
    own_keys: int | None = None
    own_groups: int = 0
    # a natural key over foreign keys (Candidate.described): the values its other columns take, counted up to
    # FLAG_VALUES + 1, when it has duplicate groups; else None
    described_values: int | None = None
    # unique_with_nullable_columns whose groups are not copies (a product's anonymous reviews, no user): the groups
    # of rows among them alike in every compared column too and born within BURST_SECONDS (a guest's review posted
    # twice), and their excess rows; counted among up to SPREAD_GROUPS groups
    copy_groups: int = 0
    copy_excess: int = 0
    # ... and the groups alike in every compared column too that are not shown to be copies: born apart, undated, or
    # past the SPREAD_GROUPS read (a check keyed by every compared column would merge them as well: anonymous votes
    # of +1, days apart); None when not measured
    copy_apart: int | None = None
    # key_with_status keyed per other required parents (Candidate.keyed_parents): of the parents with rows of several
    # key values (an order's lines of several products; up to SPREAD_GROUPS read), how many had all their rows
    # written within BURST_SECONDS (a request writes an order's lines together); None when not measured
    parents_several: int = 0
    parents_together: int | None = None
    together_parents: tuple[str, ...] = ()  # ... those parents (of Candidate.sibling_sides, the side most together)

    @property
    def same_parent_share(self) -> float:
        return self.same_parent_groups / self.groups if self.groups else 0.0

    @property
    def once_share(self) -> float:
        """The share of key values that occur exactly once (1.0 for an empty table)."""
        return 1.0 if not self.distinct_keys else (self.distinct_keys - self.groups) / self.distinct_keys

    @property
    def identifier_once_share(self) -> float:
        """The share of an identifier's own keys that occur once: grouped by its columns (and parents) alone, not by
        another unique key's columns, whose values tell nearly every row apart whatever the identifier's are."""
        if self.own_keys is None:
            return self.once_share
        return 1.0 if not self.own_keys else (self.own_keys - self.own_groups) / self.own_keys

    @property
    def alike_share(self) -> float:
        return self.alike_groups / self.groups if self.groups else 0.0

    @property
    def burst_share(self) -> float | None:
        return None if self.burst_groups is None or not self.timed_groups else self.burst_groups / self.timed_groups

    @property
    def row_share(self) -> float:
        """The share of the table's rows the filter kept (rows with a NULL in the key, for a nullable unique)."""
        return self.rows / self.table_rows if self.table_rows else 0.0


TIMED_OUT = "timed out after"


@dataclass(frozen=True)
class Unmeasured:
    reason: str  # one line: timed out, budget spent, the error
    timed: bool = False  # the budget ran out or bounded the query (a larger --budget may measure it)


class Budget:
    """The audit's time budget, in seconds from its start."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()

    @property
    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def query_timeout(self) -> float:
        return min(self.remaining, self.seconds * QUERY_SHARE)


class Measurer:
    """Measures candidates on one read-only connection, remembering each table's size."""

    def __init__(self, database: Database, conn: Connection, budget: Budget) -> None:
        self.database = database
        self.conn = conn
        self.queries = dialect_catalog.queries_for(conn)
        self.budget = budget
        self._rows: dict[tuple[str, str], int] = {}

    def measure(self, candidate: Candidate) -> Measurement | Unmeasured:
        if self.budget.remaining <= 0.01:
            return Unmeasured(f"not measured: the {self.budget.seconds:g}s budget was spent", timed=True)
        try:
            rows = self.table_rows(candidate.table)
            if not rows:
                # an empty table has no duplicates: what a GROUP BY would say, without a query per candidate
                # (a schema of thousands of mostly empty tables once spent its budget on them)
                return Measurement(0, 0, 0, 0, False)
            return self._run(candidate, rows)
        except sa.exc.DBAPIError as exc:
            reason = self._describe(exc)
            return Unmeasured(f"not measured: {reason}", timed=reason.startswith(TIMED_OUT))
        finally:
            self.conn.rollback()

    def table_rows(self, table: TableInfo) -> int:
        """The statistics' estimate for a big table; else an exact count, bounded so it stays cheap."""
        key = (table.schema, table.name)
        if key not in self._rows:
            estimate = table.row_estimate
            if estimate is not None and estimate > EXACT_ROW_LIMIT:
                self._rows[key] = estimate
            else:
                self._rows[key] = self._bounded_count(table)
        return self._rows[key]

    def _bounded_count(self, table: TableInfo) -> int:
        self._arm()
        clause = table.sa_table()
        first: sa.Select[Any] = (sa.select(sa.literal_column("1").label("one")).select_from(clause)
                                 .limit(EXACT_ROW_LIMIT + 1))
        count = self.conn.execute(sa.select(sa.func.count()).select_from(first.subquery("dw_rows"))).scalar_one()
        if count > EXACT_ROW_LIMIT:
            # Bigger than its statistics say (or it has none): a plain count, cheaper than any GROUP BY,
            # tells how far a sample's figures must be scaled.
            count = self.conn.execute(sa.select(sa.func.count()).select_from(clause)).scalar_one()
        self.conn.rollback()
        return count

    def _run(self, candidate: Candidate, rows: int) -> Measurement:
        table = candidate.table.sa_table()
        source: sa.FromClause = table
        scale, percent = 1.0, None
        if rows > EXACT_ROW_LIMIT:
            needed = list(dict.fromkeys([*candidate.columns, *candidate.agree_on, *candidate.compared,
                                         *([candidate.table.birth_column] if candidate.table.birth_column else [])]))
            source, scale = self.queries.sample(table, needed, rows, SAMPLE_ROWS)
            percent = 100.0 / scale
        if candidate.status is not None:
            return self._run_by_status(candidate, source, rows, scale, percent)
        # an identifier is measured per required parent, as its check keys it (a GitHub issue number per project)
        parents = candidate.other_parents if candidate.identifier else []
        per_key = _per_key(candidate, source, [*candidate.columns, *parents]).subquery("dw_keys")
        self._arm()
        figures = self.conn.execute(_totals(per_key)).one()
        measured = self._with_siblings(candidate, source, self._measurement(candidate, per_key, figures, rows, scale,
                                                                           percent))
        if parents:
            keys = [source.c[c] for c in candidate.columns]
            own = sa.select(*keys).select_from(source).where(*_filters(candidate, keys)).group_by(*keys)
            self._arm()
            values = self.conn.execute(sa.select(sa.func.count()).select_from(own.subquery("dw_values"))).scalar_one()
            # a count of distinct values does not grow with the rows read: a sample's own is kept (scaled, a
            # flag's 10 values seen in a fifth of the rows passed for 50, an identifier's)
            measured = replace(measured, values=int(values))
        if candidate.identifier and candidate.agree_on:
            own_keys, own_groups = self._own_keys(candidate, source, [*candidate.columns, *parents])
            measured = replace(measured, own_keys=own_keys, own_groups=own_groups)
        if candidate.row_filter == "rows_with_null" and measured.groups and measured.alike_groups < measured.groups \
                and candidate.compared and candidate.table.birth_is_creation:
            copies, copied, apart = self._copies(candidate, source, scale)
            measured = replace(measured, copy_groups=copies, copy_excess=copied, copy_apart=apart)
        if candidate.described and measured.groups:
            measured = replace(measured, described_values=self._described_values(candidate, source))
        if candidate.row_filter in ("not_null", "given") and candidate.nulls_beside:
            # the check groups the other key's NULLs together, as measured: its own rows left out are written out
            kept = _filters(candidate, [sa.column(c) for c in candidate.columns])
            return replace(measured, status_where=_where_sql(sa.and_(*kept), self.conn.dialect))
        if candidate.row_filter == "rows_with_null" and candidate.all_null_possible:
            # rows NULL in every column of the key were not counted: its check, keyed with the other unique key's
            # columns or the compared columns too, leaves them out by its where (keyed by the constraint's columns
            # alone, `nulls = "skip_all_null"` does)
            counted = sa.or_(*(sa.column(c).is_not(None) for c in candidate.columns))
            return replace(measured, status_where=_where_sql(counted, self.conn.dialect))
        defaults = _given(candidate, [sa.column(c) for c in candidate.columns])[len(candidate.columns):]
        if not defaults:
            return measured
        return replace(measured, status_where=_where_sql(sa.and_(*defaults), self.conn.dialect))

    def _described_values(self, candidate: Candidate, source: sa.FromClause) -> int:
        """How many values a natural key's described columns take in the rows measured, counted up to FLAG_VALUES + 1
        (the query reads no more groups than that)."""
        keys = [source.c[c] for c in candidate.columns]
        described = [source.c[c] for c in candidate.described]
        values = (sa.select(*described).select_from(source).where(*_filters(candidate, keys)).group_by(*described)
                  .limit(FLAG_VALUES + 1).subquery("dw_described"))
        self._arm()
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(values)).scalar_one())

    def _copies(self, candidate: Candidate, source: sa.FromClause, scale: float) -> tuple[int, int, int]:
        """Copies inside groups that are not: rows grouped by the key and every compared column too (each compared
        column also checked equal in the group, as a GROUP BY over a long text may compare a prefix), of which the
        groups written within BURST_SECONDS are copies, unless the key's group holds other rows all written in that
        burst too (an order's manual ledger lines written by one request, two of them alike: a request's
        children); and how many such groups are not shown to be copies (born apart, undated, a request's children,
        or past the SPREAD_GROUPS read). The key group's figures come from window functions over the same rows: one
        statement, no join, no query per group."""
        birth = candidate.table.birth_column
        assert birth is not None
        grouped = list(dict.fromkeys([*candidate.columns, *candidate.agree_on]))
        needed = list(dict.fromkeys([*grouped, *candidate.compared, *candidate.other_parents, birth]))
        partition = [source.c[c] for c in grouped]
        rows = (sa.select(*(source.c[c] for c in needed),
                          sa.func.count().over(partition_by=partition).label("dw_key_n"),
                          sa.func.min(source.c[birth]).over(partition_by=partition).label("dw_key_first"),
                          sa.func.max(source.c[birth]).over(partition_by=partition).label("dw_key_last"))
                .where(*_filters(candidate, [source.c[c] for c in candidate.columns])).subquery("dw_rows"))
        per_key = (_per_key(candidate, rows, [*candidate.columns, *candidate.compared])
                   .add_columns(sa.func.max(rows.c.dw_key_n).label("dw_key_n"),
                                sa.type_coerce(sa.func.min(rows.c.dw_key_first), sa.DateTime()).label("dw_key_first"),
                                sa.type_coerce(sa.func.max(rows.c.dw_key_last), sa.DateTime()).label("dw_key_last"))
                   .subquery("dw_copies"))
        c = per_key.c
        stmt = (sa.select(c.n, c.dw_first, c.dw_last, c.dw_key_n, c.dw_key_first, c.dw_key_last)
                .where(c.n > 1, c.dw_alike == 1).limit(SPREAD_GROUPS + 1))
        self._arm()
        groups = excess = apart = 0
        for read, (n, first, last, key_n, key_first, key_last) in enumerate(self.conn.execute(stmt)):
            burst = isinstance(first, datetime) and isinstance(last, datetime) \
                and (last - first).total_seconds() <= BURST_SECONDS
            siblings_together = int(key_n) > int(n) and isinstance(key_first, datetime) \
                and isinstance(key_last, datetime) and (key_last - key_first).total_seconds() <= BURST_SECONDS
            if read < SPREAD_GROUPS and burst and not siblings_together:
                groups, excess = groups + 1, excess + int(n) - 1
            else:
                apart += 1
        return _scaled(groups, scale), _scaled(excess, scale), _scaled(apart, scale)

    def _own_keys(self, candidate: Candidate, source: sa.FromClause, columns: list[str]) -> tuple[int, int]:
        """An identifier's own keys, grouped by `columns` alone (not by the other unique keys' columns), and how many
        occur more than once; counted in the rows read (a sample's are kept: only their share is used)."""
        keys = [source.c[c] for c in columns]
        own = (sa.select(sa.func.count().label("n")).select_from(source)
               .where(*_filters(candidate, keys[:len(candidate.columns)])).group_by(*keys).subquery("dw_own"))
        self._arm()
        total, repeated = self.conn.execute(sa.select(sa.func.count(), sa.func.sum(sa.case((own.c.n > 1, 1), else_=0)))
                                            .select_from(own)).one()
        return int(total or 0), int(repeated or 0)

    def _run_by_status(self, candidate: Candidate, source: sa.FromClause, rows: int, scale: float,
                       percent: float | None) -> Measurement:
        """The key's figures per value of the status column; the value where keys most often occur once, among
        values with duplicates, is the one a get_or_create keeps single (an open basket per owner)."""
        assert candidate.status is not None
        # per required parent too: rows of two parents are two relationships, whatever their status
        per_key = _per_key(candidate, source, [*candidate.columns, *candidate.keyed_parents]).subquery("dw_keys")
        status = per_key.c[candidate.status]
        stmt = _totals(per_key).add_columns(status).group_by(status).limit(STATUS_VALUES)
        self._arm()
        by_value = [r for r in self.conn.execute(stmt) if r[1] and r[0] >= STATUS_MIN_KEYS]
        if not by_value:
            return Measurement(0, 0, 0, 0, scale > 1.0, percent, table_rows=rows)
        best = max(by_value, key=lambda r: (r[0] - r[1]) / r[0])
        value = best[-1]
        # the value is written into the statement as a literal, not bound: a bound string is typed varchar
        # (psycopg 3), which a PostgreSQL enum column does not compare with; a literal is read as the column's type
        measured = self._measurement(candidate, per_key, best[:-1], rows, scale, percent,
                                     per_key.c[candidate.status] == sa.bindparam("dw_status", value,
                                                                                 literal_execute=True))
        where = _where_sql(sa.column(candidate.status) == value, self.conn.dialect)
        measured = replace(measured, status_value=str(value), status_where=where)
        return self._with_siblings(candidate, source, measured)

    def _with_siblings(self, candidate: Candidate, source: sa.FromClause, measured: Measurement) -> Measurement:
        """The measurement with its parents' siblings' figures (`_parents_together`) for the side of
        `Candidate.sibling_sides` whose rows were most often written together, when it has duplicate groups."""
        if not measured.groups or candidate.table.birth_column is None:
            return measured
        sides = [(*self._parents_together(candidate, source, parents, own), parents)
                 for parents, own in candidate.sibling_sides]
        if not sides:
            return measured
        several, together, parents = max(sides, key=lambda side: side[1] / side[0] if side[0] else -1.0)
        return replace(measured, parents_several=several, parents_together=together, together_parents=parents)

    def _parents_together(self, candidate: Candidate, source: sa.FromClause, parent_columns: tuple[str, ...],
                          own_column: str) -> tuple[int, int]:
        """Of the parents' values with rows of several `own_column` values (up to SPREAD_GROUPS), whatever their
        status, how many had all their rows written within BURST_SECONDS: a parent whose children one request writes
        (an order's lines) has its copies' look-alikes born together by design."""
        assert candidate.table.birth_column is not None
        parents = [source.c[c] for c in parent_columns]
        own = source.c[own_column]
        birth = source.c[candidate.table.birth_column]
        kinds = sa.func.count(sa.distinct(own))
        stmt = (sa.select(sa.type_coerce(sa.func.min(birth), sa.DateTime()),
                          sa.type_coerce(sa.func.max(birth), sa.DateTime()))
                .select_from(source).where(*(c.is_not(None) for c in [*parents, own]))
                .group_by(*parents).having(kinds > 1).limit(SPREAD_GROUPS))
        self._arm()
        several = together = 0
        for first, last in self.conn.execute(stmt):
            if isinstance(first, datetime) and isinstance(last, datetime):
                several += 1
                together += (last - first).total_seconds() <= BURST_SECONDS
        return several, together

    def _measurement(self, candidate: Candidate, per_key: sa.Subquery, figures: Any, rows: int, scale: float,
                     percent: float | None, *where: sa.ColumnElement[bool]) -> Measurement:
        distinct, groups, excess, largest, measured_rows, alike, same_parent = figures
        burst, timed = None, 0
        if groups and "dw_first" in per_key.c:
            birth = candidate.table.birth_column
            assert birth is not None
            burst, timed = self._bursts(per_key, not candidate.table.columns[birth].defaults_to_now, *where)
        return Measurement(_scaled(distinct, scale), _scaled(groups, scale), _scaled(excess, scale),
                           int(largest or 0), scale > 1.0, percent, _scaled(measured_rows, scale), rows,
                           _scaled(alike, scale), burst, timed, same_parent_groups=_scaled(same_parent, scale))

    def _bursts(self, per_key: sa.Subquery, copyable: bool, *where: sa.ColumnElement[bool]) -> tuple[int | None, int]:
        """How many of (up to SPREAD_GROUPS) duplicate groups were written within BURST_SECONDS; None when every
        measured row was (an install's or an import's data, written in one transaction): then the birth
        timestamps cannot tell a race from the design. With `copyable` (the application writes the birth column,
        no server default fills it), a group of rows that differ but hold one moment is not counted
        (`_one_moment_copied`)."""
        c = per_key.c
        self._arm()
        first, last = self.conn.execute(sa.select(sa.func.min(c.dw_first), sa.func.max(c.dw_last))
                                        .where(*where)).one()
        if isinstance(first, datetime) and isinstance(last, datetime) \
                and (last - first).total_seconds() <= BURST_SECONDS:
            return None, 0
        stmt = (sa.select(c.dw_first, c.dw_last, c.dw_alike).where(c.n > 1, *where).limit(SPREAD_GROUPS))
        self._arm()
        timed = together = 0
        for first, last, alike in self.conn.execute(stmt):
            if isinstance(first, datetime) and isinstance(last, datetime):
                timed += 1
                together += (last - first).total_seconds() <= BURST_SECONDS \
                    and not (copyable and _one_moment_copied(first, last, bool(alike)))
        if not timed:
            return None, 0
        return together, timed

    def _arm(self) -> None:
        dialect_catalog.set_query_timeout(self.conn, self.budget.query_timeout())

    def _describe(self, exc: BaseException) -> str:
        text = self.database.describe(exc)
        if "statement_timeout" in text:
            return f"{TIMED_OUT} {self.budget.query_timeout():.1f}s (the budget's share per query)"
        return text


def _one_moment_copied(first: datetime, last: datetime, alike: bool) -> bool:
    """Whether a group's rows, which differ, hold one birth timestamp to the microsecond, written by the
    application: two writers racing each read their own clock, which never agree to the microsecond, so the moment
    was copied into every row (a history row carries its object's `created`) or one statement wrote them all (a
    request's children): no race. A value with no digits below the millisecond may be a clock's of second or
    millisecond precision (JavaScript's), on which racing writers may agree: it tells nothing, and nor does a group
    alike in every compared column (a client's retried request carries its own timestamp). A moment the server
    fills is no copy (the caller's `copyable`): PostgreSQL's now() is the transaction's start, shared by every row
    one transaction writes, a double submit's copies too."""
    return first == last and first.microsecond % 1000 != 0 and not alike


def _agree(column: sa.ColumnElement[Any], orderable: bool) -> sa.ColumnElement[bool]:
    """Every row of the group holds the same value in `column`, or every row NULL. min() = max() keeps the
    aggregate hashable; count(DISTINCT) (a sort per group) only for types without min()."""
    count = sa.func.count(column)
    same = sa.func.min(column) == sa.func.max(column) if orderable else sa.func.count(column.distinct()) <= 1
    return sa.or_(count == 0, sa.and_(count == sa.func.count(), same))


def _agree_presence(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """Every row of the group holds a value in `column`, or none does."""
    count = sa.func.count(column)
    return sa.or_(count == 0, count == sa.func.count())


def _flag(conditions: list[sa.ColumnElement[bool]]) -> sa.ColumnElement[int]:
    return sa.case((sa.and_(*conditions), 1), else_=0) if conditions else sa.literal(1)


def _per_key(candidate: Candidate, source: sa.FromClause, columns: list[str]) -> sa.Select[Any]:
    """One row per key value: its row count `n`, whether its rows agree on every compared column (`dw_alike`),
    and its first and last birth timestamp. Rows are grouped by the key plus the other unique keys' columns
    (`agree_on`, NULLs together): rows differing there are distinct entities by declaration."""
    keys = [source.c[c] for c in columns]
    grouped = [*keys, *(source.c[c] for c in candidate.agree_on if c not in columns)]
    alike = [*(_agree(source.c[c], candidate.table.columns[c].orderable) for c in candidate.compared),
             *(_agree_presence(source.c[c]) for c in candidate.presence_compared)]
    selected: list[Any] = [*keys, sa.func.count().label("n"), _flag(alike).label("dw_alike"),
                           _flag([_agree(source.c[c], candidate.table.columns[c].orderable)
                                  for c in candidate.other_parents]).label("dw_same_parents")]
    birth = candidate.table.birth_column
    if birth is not None:
        selected += [sa.type_coerce(sa.func.min(source.c[birth]), sa.DateTime()).label("dw_first"),
                     sa.type_coerce(sa.func.max(source.c[birth]), sa.DateTime()).label("dw_last")]
    filters = _filters(candidate, keys[:len(candidate.columns)])
    return sa.select(*selected).select_from(source).where(*filters).group_by(*grouped)


def _totals(per_key: sa.Subquery) -> sa.Select[Any]:
    """distinct keys, duplicate groups, excess rows, largest group, rows, alike groups, same-parent groups."""
    n, alike, parents = per_key.c.n, per_key.c.dw_alike, per_key.c.dw_same_parents
    duplicate = n > 1
    columns: list[Any] = [sa.func.count(), sa.func.sum(sa.case((duplicate, 1), else_=0)),
                          sa.func.sum(sa.case((duplicate, n - 1), else_=0)),
                          sa.func.max(sa.case((duplicate, n), else_=1)), sa.func.sum(n),
                          sa.func.sum(sa.case((sa.and_(duplicate, alike == 1), 1), else_=0)),
                          sa.func.sum(sa.case((sa.and_(duplicate, parents == 1), 1), else_=0))]
    return sa.select(*columns).select_from(per_key)


def _where_sql(condition: sa.ColumnElement[bool], dialect: sa.Dialect) -> str:
    """A condition as the SQL of a check's `where`, its values written in. For a driver whose paramstyle is
    `format` or `pyformat` (psycopg, PyMySQL), SQLAlchemy doubles every `%` for the driver's formatting; with no
    parameter left, the driver's formatting (`% ()`) gives the text the server reads ('100%', not '100%%')."""
    text = str(condition.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    return text % () if dialect.paramstyle in ("format", "pyformat") else text


def _given(candidate: Candidate, keys: Sequence[sa.ColumnElement[Any]]) -> list[sa.ColumnElement[bool]]:
    """Rows given a value in every key column: not NULL, then not the column's server default when the database
    says it is a constant (ColumnInfo.default_value), compared as a bound value: a row left at the default was
    given no identifier. A default that is an expression (now(), uuid(), a user's function) is never evaluated:
    its rows are measured as any other. Of a key of several columns, only a row at the defaults in all of them is
    left out: one column's default is as often a discriminator's common value (`provider DEFAULT 'email'` in
    `(provider, uid)`), and rows holding it are identified by the rest."""
    defaults = [candidate.table.columns[c].default_value for c in candidate.columns]
    given: list[sa.ColumnElement[bool]] = [k.is_not(None) for k in keys]
    if all(value is not None for value in defaults):
        given.append(sa.or_(*(k != sa.bindparam(None, value) for k, value in zip(keys, defaults, strict=True))))
    return given


def _filters(candidate: Candidate, keys: Sequence[sa.ColumnElement[Any]]) -> list[sa.ColumnElement[bool]]:
    if candidate.row_filter == "given":
        return _given(candidate, keys)
    if candidate.row_filter == "not_null":
        return [k.is_not(None) for k in keys]
    if candidate.row_filter == "rows_with_null":
        # rows that a NULLS DISTINCT unique lets through: some key column NULL, but not all of them
        escaping = [k for k, c in zip(keys, candidate.columns, strict=True) if c in candidate.null_columns] or keys
        return [sa.or_(*(k.is_(None) for k in escaping)), sa.or_(*(k.is_not(None) for k in keys))]
    return []


def _scaled(value: object, scale: float) -> int:
    count = int(cast(SupportsInt, value or 0))
    return count if scale == 1.0 else round(count * scale)

"""Counting a candidate's duplicates: exact on small tables, from a sample on big ones, within the budget.

Every statement runs in the audit's read-only connection, each in its own transaction (rolled back)
under a statement timeout that is the smaller of the time left in the budget and a per-query share of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit import dialect_catalog
from monitor.audit.candidates import Candidate
from monitor.audit.catalog import TableInfo
from monitor.db import Database

EXACT_ROW_LIMIT = 500_000  # tables up to this many rows are counted exactly
SAMPLE_ROWS = 200_000  # a big table is measured on about this many rows
QUERY_SHARE = 0.25  # no single query may take more than this share of the budget


@dataclass(frozen=True)
class Measurement:
    """Duplicate figures of one candidate. With `estimated`, counts are scaled up from a sample."""

    distinct_keys: int
    groups: int
    excess_rows: int
    largest: int
    estimated: bool
    sample_percent: float | None = None

    @property
    def once_share(self) -> float:
        """The share of key values that occur exactly once (1.0 for an empty table)."""
        return 1.0 if not self.distinct_keys else (self.distinct_keys - self.groups) / self.distinct_keys


@dataclass(frozen=True)
class Unmeasured:
    reason: str  # one line: timed out, budget spent, the error


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
        self.dialect = database.dialect
        self.budget = budget
        self._rows: dict[tuple[str, str], int] = {}

    def measure(self, candidate: Candidate) -> Measurement | Unmeasured:
        if self.budget.remaining <= 0.01:
            return Unmeasured(f"not measured: the {self.budget.seconds:g}s budget was spent")
        try:
            rows = self.table_rows(candidate.table)
            return self._run(candidate, rows)
        except sa.exc.DBAPIError as exc:
            return Unmeasured(f"not measured: {self._describe(exc)}")
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
        first = sa.select(sa.literal_column("1").label("one")).select_from(clause).limit(EXACT_ROW_LIMIT + 1)
        count = int(self.conn.execute(sa.select(sa.func.count()).select_from(first.subquery("dw_rows"))).scalar())
        if count > EXACT_ROW_LIMIT:
            # Bigger than its statistics say (or it has none): a plain count, cheaper than any GROUP BY,
            # tells how far a sample's figures must be scaled.
            count = int(self.conn.execute(sa.select(sa.func.count()).select_from(clause)).scalar())
        self.conn.rollback()
        return count

    def _run(self, candidate: Candidate, rows: int) -> Measurement:
        table = candidate.table.sa_table()
        columns = list(candidate.columns)
        source: sa.FromClause = table
        scale, percent = 1.0, None
        if rows > EXACT_ROW_LIMIT:
            source, scale = dialect_catalog.sampled_source(table, columns, self.dialect, rows, SAMPLE_ROWS)
            percent = 100.0 / scale
        keys = [source.c[c] for c in columns]
        filters = _filters(candidate, keys)
        per_key = (sa.select(sa.func.count().label("n")).select_from(source).where(*filters)
                   .group_by(*keys).subquery("dw_keys"))
        n = per_key.c.n
        stmt = sa.select(sa.func.count(), sa.func.sum(sa.case((n > 1, 1), else_=0)),
                         sa.func.sum(sa.case((n > 1, n - 1), else_=0)), sa.func.max(n)).select_from(per_key)
        self._arm()
        distinct, groups, excess, largest = self.conn.execute(stmt).one()
        estimated = scale > 1.0
        return Measurement(_scaled(distinct, scale), _scaled(groups, scale), _scaled(excess, scale),
                           int(largest or 0), estimated, percent)

    def _arm(self) -> None:
        dialect_catalog.set_query_timeout(self.conn, self.dialect, self.budget.query_timeout())

    def _describe(self, exc: BaseException) -> str:
        text = self.database.describe(exc)
        if "statement_timeout" in text:
            return f"timed out after {self.budget.query_timeout():.1f}s (the budget's share per query)"
        return text


def _filters(candidate: Candidate, keys: list[sa.ColumnElement[object]]) -> list[sa.ColumnElement[bool]]:
    if candidate.row_filter == "not_null":
        return [k.is_not(None) for k in keys]
    if candidate.row_filter == "rows_with_null":
        # rows that a NULLS DISTINCT unique lets through: some key column NULL, but not all of them
        return [sa.or_(*(k.is_(None) for k in keys)), sa.or_(*(k.is_not(None) for k in keys))]
    return []


def _scaled(value: object, scale: float) -> int:
    count = int(value or 0)  # type: ignore[call-overload]
    return count if scale == 1.0 else round(count * scale)

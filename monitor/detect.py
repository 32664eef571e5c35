"""The SQL of detection: duplicate figures, duplicate groups page by page, and the member rows of a group.

Everything here builds SQLAlchemy Core statements from a reflected table, so identifiers are always
quoted by SQLAlchemy. The database does the counting; Python only ever sees one page of results.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement

from monitor.config import CheckConfig, close_matches
from monitor.dialects import Dialect
from monitor.dialects.base import Comparison
from monitor.dialects.expressions import AsStored, CatalogEquality, SinglePrecision
from monitor.dialects.server_value import ServerValue
from monitor.thresholds import Outcome

# "duplicates" or "violations" (what a check finds, `CheckConfig.finds`) when it found something.
Status = Literal["ok", "duplicates", "violations", "error"]
FOUND = ("duplicates", "violations")
GROUP_PAGE_SIZE = 100
MEMBER_ROW_LIMIT = 1000


class CheckDefinitionError(Exception):
    """The check does not fit the database (unknown table or column); one line naming the check.

    `field` (the config option at fault, e.g. `key`) and `detail` (what is wrong, without the check's name)
    let a caller name the place in the config file instead (`Config.locate`).
    """

    def __init__(self, message: str, *, field: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one run of one check.

    `duration_ms` is the check's query alone (what the database spent, as the daemon's histogram shows);
    `setup_ms` what came before it in the same run: taking a connection (connecting, the first time),
    reflecting the table and probing a custom query's columns (both cached after the first run).
    """

    name: str
    database: str
    status: Status
    groups: int | None
    excess_rows: int | None
    duration_ms: float
    error: str | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    # How the run read the table. A table check's run is a full pass that counts the rows it grouped (the
    # table's rows under its `where` and `nulls` rule) in the same scan; an incremental check's incremental pass
    # counts the rows it read past the watermark (`monitor/incremental.py`) and how many groups it saw for the
    # first time. A custom query's rows are not counted (None).
    mode: Literal["full", "incremental"] = "full"
    rows_scanned: int | None = None
    new_groups: int | None = None
    last_full_pass: datetime | None = None
    first_run: bool = False  # no earlier state to compare with: every group is "new"
    index_advice: str | None = None  # the CREATE INDEX that would make the check's lookups fast
    # What an incremental run has to say beyond its figures, one line each: rows dated in the future, late rows the
    # overlap window cannot bound, why it ran a full pass (see `monitor/incremental/`).
    notes: tuple[str, ...] = ()
    # What the check measured (`monitor.history.subject`): the key its run is stored and compared by.
    subject: str | None = None
    # The run judged by the check's `warn_above` / `fail_above` (`monitor.thresholds`); None for a failed run,
    # or when a percentage threshold cannot be judged (a run restored from history, whose rows are not stored).
    outcome: Outcome | None = None

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental"
    setup_ms: float | None = None

    @property
    def found(self) -> bool:
        """Whether the run found duplicates or violations."""
        return self.status in FOUND

    @property
    def rows_checked(self) -> int | None:
        """The rows the figures are about: those of a full pass (the whole table under the check's `where` and
        `nulls` rule). Unknown for an incremental pass (it reads only new rows) and for a custom query."""
        return self.rows_scanned if self.mode == "full" and self.status != "error" else None

    @property
    def excess_ratio(self) -> float | None:
        """Excess rows as a share of the rows checked (0.005 is 0.5%); None when they are unknown or none."""
        checked = self.rows_checked
        if not checked or self.excess_rows is None:
            return None
        return self.excess_rows / checked

    @property
    def excess_percent(self) -> float | None:
        """Excess rows as a percentage of the rows checked: Soda's `duplicate_percent` (its `duplicate_count`
        is our excess rows, over its non-missing rows). None when the rows checked are unknown or none."""
        ratio = self.excess_ratio
        return None if ratio is None else 100.0 * ratio

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "database": self.database,
            "status": self.status,
            "groups": self.groups,
            "excess_rows": self.excess_rows,
            "duration_ms": round(self.duration_ms, 1),
            "setup_ms": None if self.setup_ms is None else round(self.setup_ms, 1),
            "error": self.error,
            "mode": None if self.status == "error" else self.mode,  # a failed run read nothing, in no mode
            "rows_scanned": self.rows_scanned,
            "excess_percent": None if (percent := self.excess_percent) is None else round(percent, 4),
            "outcome": self.outcome,
            "new_groups": self.new_groups,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class GroupCursor:
    """Where the next page of groups starts: after the group with this size and key."""

    rows: int
    key: tuple[Any, ...]


@dataclass(frozen=True)
class DuplicateGroup:
    key: tuple[Any, ...]
    rows: int
    first_seen: Any = None
    last_seen: Any = None

    @property
    def cursor(self) -> GroupCursor:
        return GroupCursor(self.rows, self.key)

    @property
    def spread(self) -> timedelta | None:
        """How far apart the group's rows were born (needs the check's `timestamp`)."""
        first, last = as_datetime(self.first_seen), as_datetime(self.last_seen)
        if first is None or last is None:
            return None
        if (first.tzinfo is None) != (last.tzinfo is None):
            return None
        return last - first


@dataclass(frozen=True)
class GroupPage:
    key_columns: list[str]
    groups: list[DuplicateGroup]
    next_cursor: GroupCursor | None


@dataclass(frozen=True)
class GroupMembers:
    """The rows of one duplicate group, the row a fix would keep first."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    keeper: int | None
    truncated: bool
    kept_by: str = ""  # `TableCheck.keeper_description()`


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).astimezone()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


_QUOTED_PART = re.compile(r'"((?:[^"]|"")*)"|`((?:[^`]|``)*)`|([^."`]+)')


def split_table_name(name: str) -> tuple[str | None, str]:
    """`schema.table` -> (schema, table); a bare name has no schema.

    Parts may be quoted as in SQL (`"My Schema"."My Table"`, `` `db`.`tbl` ``), which is also how a table
    whose name contains a dot is named (`"x.y"`); quotes inside are doubled.
    """
    if '"' in name or "`" in name:
        parts = _quoted_parts(name)
        if parts is not None and len(parts) in (1, 2):
            return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    schema, dot, table = name.rpartition(".")
    return (schema, table) if dot and schema else (None, name)


def _quoted_parts(name: str) -> list[str] | None:
    """The dot-separated parts of a name with quoted parts unquoted, or None when it is malformed."""
    parts: list[str] = []
    position = 0
    while True:
        match = _QUOTED_PART.match(name, position)
        if match is None:
            return None
        double, backtick, bare = match.groups()
        if double is not None:
            parts.append(double.replace('""', '"'))
        elif backtick is not None:
            parts.append(backtick.replace("``", "`"))
        else:
            parts.append(bare.strip())
        position = match.end()
        if position == len(name):
            return parts
        if name[position] != ".":
            return None
        position += 1


def _is_text(kind: sa.types.TypeEngine[Any]) -> bool:
    return isinstance(kind, sa.String) and not isinstance(kind, sa.Enum)


def single_precision(expr: ColumnElement[Any]) -> bool:
    """Whether `expr` holds single-precision floats, which equal a double read back from them only once the
    database rounds the double again (`key_equals`)."""
    kind = expr.type
    if isinstance(kind, sa.Float) and not isinstance(kind, sa.Double):
        precision = getattr(kind, "precision", None)
        return precision is None or precision <= 24  # FLOAT(p) is single precision up to p = 24
    return False


def _as_stored(expr: ColumnElement[Any], value: Any) -> Any:
    if isinstance(value, ServerValue):  # the server's text of a value no Python type holds: bound as that value
        return sa.literal(value, AsStored())
    if isinstance(expr.type, sa.JSON):
        # A JSON scalar is read as a Python str, number or bool (`"a"` as a): bound as such, VARCHAR or an integer
        # (PostgreSQL: `jsonb = integer`, no such operator), or untyped as the server's text (`a`, no JSON), every
        # statement naming its group failed. Bound as JSON text (the type's serializer) cast to the column's type.
        return sa.cast(sa.literal(value, expr.type), expr.type)
    if isinstance(value, str) and not isinstance(expr.type, sa.String) \
            and isinstance(expr.type.coerce_compared_value(operators.eq, value), sa.String):
        # A value the driver reads as the server's text, of a type that is no string to SQLAlchemy (money, tsvector, a
        # domain, or an extension's type it does not reflect: isbn, ltree, geometry), would be bound as
        # VARCHAR (`money = character varying`: no such operator, every statement naming a group failed): bound
        # untyped, the server takes it as the type of the column it is compared with.
        return sa.literal(value, sa.types.NullType())
    return SinglePrecision(value) if isinstance(value, float) and single_precision(expr) else value


class TableCheck:
    """A duplicate check resolved against its reflected table: every statement detection and fixes use."""

    def __init__(self, check: CheckConfig, table: sa.Table, rules: Dialect, *, is_view: bool = False) -> None:
        self.check = check
        self.table = table
        self.rules = rules
        self.dialect = rules.name  # the name, for callers not yet asking `rules`
        self.is_view = is_view
        self.key_columns = [self._column(name, "key") for name in check.key or []]
        self.key_exprs = [self._normalise(column) for column in self.key_columns]
        # The type of each key value as the check compares it: the column's, or for a key it trims or folds, the
        # type the database stores the column as (`Dialect.storage_type`): a folded value of a domain is text,
        # which need not pass the domain's CHECKs ('abc-x1' of `CHECK (VALUE ~ '^[A-Z]{3}-')`), so a key
        # bound, cast or stored as the domain would be refused.
        self.key_types = [column.type if expr is column else rules.storage_type(column.type)
                          for column, expr in zip(self.key_columns, self.key_exprs, strict=True)]
        # A group's key values as the drill-down reads them and binds them back (`members`, `narrowed`, the page
        # cursor): as stored where the Python type's round trip would change them (`Dialect.as_stored`).
        self.key_reads = [rules.as_stored(e) for e in self.key_exprs]
        # Key columns whose `=` finds values stored apart equal where their reflected type does not say so, as the
        # catalog says (`Dialect.compared_apart`; asked by `Monitor.resolve`, which has a connection).
        self.compared: dict[str, Comparison] = {}
        self.timestamp = self._column(check.timestamp, "timestamp") if check.timestamp else None
        self.order_columns = [self._column(name, "order_by") for name in check.order_by or []]
        if not self.order_columns:
            self.order_columns = list(table.primary_key.columns)
        self.filters: list[ColumnElement[bool]] = []
        if check.where:  # what it calls is vetted by the server before it first runs (`engine._probe_where`)
            self.filters.append(where_condition(check.where))
        self.null_filters = self._null_filters()
        self.filters.extend(self.null_filters)

    def group_identities(self, exprs: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
        """What identifies the group of each key expression (`exprs`, one per key column), as the database compares
        its column (`Dialect.group_identity`, told what the catalog says of the column: `compared`)."""
        return [self.rules.group_identity(e, self.compared.get(c.name))
                for c, e in zip(self.key_columns, exprs, strict=True)]

    def row_in_compares_as_equals(self) -> bool:
        """Whether the server's row IN over the key columns finds their values as `=` does (`Comparison.row_in`, as
        the server says of each column's character set and collation)."""
        return all(c.row_in for c in self.compared.values())

    def row_in_operands(self, values: Sequence[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
        """A key's values (one per key column) as the server's row IN must meet them to find the rows `=` finds
        (`Dialect.row_in_operand`): a utf16 or latin1 column's converted to its character set on MariaDB."""
        return [self.rules.row_in_operand(v, self.compared.get(c.name))
                for c, v in zip(self.key_columns, values, strict=True)]

    def keys_not_found_by_equality(self, *, catalog_operators: bool = False) -> str | None:
        """Why `key = value`, as dupewatch writes it, would not find a group's rows as GROUP BY does (an
        extension's type off the search_path, whose `=` the server does not find: it compares the values as
        text), or None. GROUP BY and a full pass are right; a look-up of keys (an incremental run, live mode) is
        not, unless it compares column by column with the type's own comparator (`catalog_operators`), which
        writes the catalog's operator out (`Dialect.catalog_types`); a row `IN` does not."""
        for column in self.key_columns:
            comparison = self.compared.get(column.name)
            if comparison is not None and not comparison.visible and not (
                    catalog_operators and isinstance(column.type, CatalogEquality)):
                return (f"key column {column.name!r} is of type {comparison.type_name}, whose `=` is not on the "
                        "search_path: a look-up of a key compares it as text, not as GROUP BY does; put the "
                        "type's schema on the role's search_path")
        return None

    def _null_filters(self) -> list[ColumnElement[bool]]:
        """The rows `nulls` leaves out: any with a NULL key part ("distinct", as a unique index), or those whose
        key parts are all NULL ("skip_all_null", Great Expectations' default); "equal" leaves none out. The
        groups, their rows and a fix all filter by these, so each sees the rows detection grouped."""
        if self.check.nulls == "distinct":
            return [column.is_not(None) for column in self.key_columns]
        if self.check.nulls == "skip_all_null":
            return [sa.or_(*(column.is_not(None) for column in self.key_columns))]
        return []

    def _column(self, name: str, option: str) -> sa.Column[Any]:
        try:
            return self.table.c[name]
        except KeyError:
            names = [c.name for c in self.table.columns]
            detail = (f"unknown column {name!r} in table {self.check.table!r}{close_matches(name, names)} "
                      f"(columns: {', '.join(names)})")
            raise CheckDefinitionError(f"check {self.check.name!r}: {option}: {detail}", field=option,
                                       detail=detail) from None

    def refuse_ungroupable_keys(self, conn: Connection) -> None:
        """Refuse, naming the check and the column, a key the database cannot group (`Dialect.ungroupable_key`)."""
        for column, expr in zip(self.key_columns, self.key_exprs, strict=True):
            reason = self.rules.ungroupable_key(conn, self.table, column, expr)
            if reason:
                raise CheckDefinitionError(f"check {self.check.name!r}: key: {reason}", field="key", detail=reason)

    def _normalise(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        return self.normalise(column, column)

    def normalise(self, column: sa.Column[Any], expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """`expr` (the column, or a value of its type) as the check compares keys of `column`: a text column
        (one of a domain over text too, as the database stores it) trimmed and folded as the check says."""
        if _is_text(self.rules.storage_type(column.type)):
            if self.check.trim_whitespace:
                expr = self.rules.trim(expr)
            if self.check.case_insensitive:
                expr = self.rules.case_fold(expr)
        return expr

    @property
    def has_primary_key(self) -> bool:
        return bool(self.table.primary_key.columns)

    @property
    def row_identity(self) -> ColumnElement[Any] | None:
        """What tells rows apart when the table has no primary key: ctid, rowid, or nothing (MySQL, views)."""
        return self.rules.row_identity(is_view=self.is_view)  # a view has no stable row identity anywhere

    def keeper_order(self) -> list[ColumnElement[Any]]:
        """ORDER BY clauses that put the row a fix keeps first (per `order_by` and `keep`).

        A row whose order column is NULL is never preferred, whichever `keep`: the databases disagree on where
        NULL sorts (PostgreSQL last ascending and first descending, MySQL and SQLite the other way round), so
        left to them the same rows would keep a different row on each dialect.
        """
        columns: list[ColumnElement[Any]] = list(self.order_columns)
        # Ties on `order_by` (two racing rows stamped with the same second) are broken by the primary key,
        # then by the row identity, so that the dashboard, the preview and the fix keep the same row.
        columns += [c for c in self.table.primary_key.columns if c not in columns]
        if not self.has_primary_key and self.row_identity is not None:
            columns.append(self.row_identity)
        descending = self.check.keep == "newest"
        clauses: list[ColumnElement[Any]] = []
        for column in columns:
            if getattr(column, "nullable", False):
                clauses.append(column.is_(None).asc())
            clauses.append(column.desc() if descending else column.asc())
        return clauses

    def keeper_description(self) -> str:
        """In words, what `keeper_order()` sorts by: `oldest by id`, `oldest by rowid (insertion order)`."""
        names = [c.name for c in self.order_columns]
        identity = None if self.has_primary_key else self.row_identity
        if identity is not None:
            order = self.rules.row_identity_order
            names.append(f"{identity.name} ({order})" if not names else f"{identity.name} to break ties")
        if not names:
            return "any one of the rows (no primary key or order_by tells them apart)"
        return f"{self.check.keep} by {', '.join(names)}"

    def _grouped(self) -> sa.Select[Any]:
        return sa.select().select_from(self.table).where(*self.filters).group_by(*self.key_exprs)

    def figures(self) -> sa.Select[Any]:
        """One row: (duplicate groups, excess rows, rows checked), from one scan of the table."""
        sizes = self._grouped().add_columns(sa.func.count().label("n")).subquery("dupewatch_groups")
        return sa.select(*_totals(sizes))

    def _group_rows(self, *, every: bool = False) -> sa.Subquery:
        """Every duplicate group (`every`: every key, single rows too) as a row: key values `k0..`, size `n`,
        and first/last birth times."""
        size = sa.func.count()
        columns: list[ColumnElement[Any]] = [e.label(f"k{i}") for i, e in enumerate(self.key_reads)]
        columns.append(size.label("n"))
        if self.timestamp is not None:
            ts_type = self.rules.timestamp_type(self.timestamp)
            columns.append(sa.func.min(self.timestamp, type_=ts_type).label("first_seen"))
            columns.append(sa.func.max(self.timestamp, type_=ts_type).label("last_seen"))
        grouped = self._grouped().add_columns(*columns)
        return (grouped if every else grouped.having(size > 1)).subquery("dupewatch_groups")

    def _page_order(self, groups: sa.FromClause) -> list[Any]:
        keys = [groups.c[f"k{i}"] for i in range(len(self.key_exprs))]
        return [groups.c.n.desc()] + [self._nulls_first(k.asc()) for k in keys]

    def group_page(self, after: GroupCursor | None, limit: int) -> sa.Select[Any]:
        """Groups largest first, then by key; keyset-paginated from `after`.

        The cursor filters the aggregated rows by their labels in an outer query: MySQL refuses a HAVING
        clause that repeats a normalised key expression such as `lower(trim(col))`.
        """
        groups = self._group_rows()
        keys = [groups.c[f"k{i}"] for i in range(len(self.key_exprs))]
        statement = sa.select(*groups.c)
        if after is not None:
            statement = statement.where(sa.or_(
                groups.c.n < after.rows, sa.and_(groups.c.n == after.rows, self._key_after(keys, after.key))))
        return statement.order_by(*self._page_order(groups)).limit(limit)

    def figures_with_first_page(self, limit: int) -> sa.Select[Any]:
        """The figures and the first `limit` groups from one scan of the table.

        Rows: (groups, excess, rows checked, k0.., n, [first_seen, last_seen]); one row with NULL group columns when
        there are no duplicates. The dashboard uses it so that opening a check with a million groups
        shows its first page at once instead of aggregating the table again.
        """
        groups = self._group_rows(every=True).element.cte("dupewatch_groups")
        top = (sa.select(*groups.c).where(groups.c.n > 1).order_by(*self._page_order(groups)).limit(limit)
               .subquery("dupewatch_top"))
        totals = sa.select(*_totals(groups)).select_from(groups).subquery("dupewatch_totals")
        return (sa.select(totals.c.total_groups, totals.c.total_excess, totals.c.total_rows, *top.c)
                .select_from(totals.outerjoin(top, sa.true()))
                .order_by(*self._page_order(top)))

    def _nulls_first(self, clause: Any) -> Any:
        return self.rules.nulls_first(clause)

    def _key_after(self, exprs: Sequence[ColumnElement[Any]], key: Sequence[Any]) -> ColumnElement[bool]:
        """Lexicographic `exprs > key` with NULL sorting before every value."""
        alternatives = []
        for i, expr in enumerate(exprs):
            value = key[i]
            greater = expr.is_not(None) if value is None else expr > _as_stored(expr, value)
            alternatives.append(sa.and_(*self.key_equals(key[:i], exprs[:i]), greater))
        return sa.or_(*alternatives)

    @staticmethod
    def key_equals(values: Sequence[Any], exprs: Sequence[ColumnElement[Any]]) -> list[ColumnElement[bool]]:
        """`exprs = values`, a NULL value matching NULL (`IS NULL`, which indexes can serve). A value read
        back from a `real`/`FLOAT` column is a double that only equals the stored single-precision value
        once the database rounds it to the column's type again, so floats are cast to it."""
        return [e.is_(None) if v is None else e == _as_stored(e, v) for e, v in zip(exprs, values, strict=True)]

    def narrowed(self, key: Sequence[Any]) -> TableCheck:
        """This check limited to the one group with this (normalised) key: what fixing a single group plans."""
        one = copy.copy(self)
        one.filters = [*self.filters, *self.key_equals(key, self.key_reads)]
        return one

    def _shown_columns(self) -> list[ColumnElement[Any]]:
        """Every column of the table, as the dialect can show them (SQLite: exactly as stored)."""
        return self.rules.shown_columns(self.table)

    def members(self, key: Sequence[Any], limit: int = MEMBER_ROW_LIMIT) -> sa.Select[Any]:
        """The rows of the group with this (normalised) key, keeper first."""
        statement = sa.select(*self._shown_columns()).select_from(self.table).where(
            *self.filters, *self.key_equals(key, self.key_reads))
        return statement.order_by(*self.keeper_order()).limit(limit)


def _totals(sizes: sa.FromClause) -> list[ColumnElement[Any]]:
    """(duplicate groups, excess rows, rows checked) from one row per key with its size `n`: the rows checked
    are counted by the same aggregate that finds the groups, so a percentage costs no second scan."""
    rows = sa.func.coalesce(sa.func.sum(sizes.c.n), 0)
    return [sa.func.count(sa.case((sizes.c.n > 1, 1))).label("total_groups"),
            (rows - sa.func.count()).label("total_excess"), rows.label("total_rows")]


def custom_sql(sql: str) -> str:
    """A custom query made safe to wrap in a subquery: no trailing semicolon."""
    return re.sub(r"[\s;]+$", "", sql)


_COMMENTS = re.compile(r"(--[^\n]*\n?|/\*.*?\*/|\s+)", re.S)
_READING = {"select", "with", "values", "table", "("}
# PostgreSQL's data-modifying CTEs: `WITH gone AS (DELETE ... RETURNING ...) SELECT ...`.
_WRITING_CTE = re.compile(r"\bAS\s*(?:NOT\s+)?(?:MATERIALIZED\s*)?\(\s*(insert|update|delete|merge)\b", re.I)


def ensure_select(sql: str) -> None:
    """Refuse a custom query that is not a SELECT before it reaches the database."""
    body = _COMMENTS.sub(" ", sql).strip()
    first = re.split(r"[\s(]", body, maxsplit=1)[0].lower() if body else ""
    if body.startswith("("):
        first = "("
    if first not in _READING:
        raise CheckDefinitionError(
            f"custom query must be a SELECT, got {first.upper() or 'nothing'}: checks run read-only"
        )
    if first == "with" and (writing := _WRITING_CTE.search(body)):
        raise CheckDefinitionError(
            f"custom query must be a SELECT, got {writing.group(1).upper()} inside WITH: checks run read-only"
        )


def ensure_safe(conn: Connection, sql: str, rules: Dialect, statement: str | None = None) -> None:
    """Refuse a custom query that is not a SELECT, or that calls what a read-only transaction does not stop (locks,
    other sessions, server files, ...): the database's own reading of the statement decides which functions it
    calls (`Dialect.refused_call`), before it runs. `statement` is the one that will run it (its rows by default):
    the server resolves an operator or aggregate by the types of the query's columns, so `SUM(dup_count - 1)` over
    a `dup_count` of a type of the database's own may call a function of its owner's that the rows alone do not."""
    ensure_select(sql)
    refused = rules.refused_call(conn, statement or f"SELECT * FROM (\n{custom_sql(sql)}\n) AS dupewatch_custom")
    if refused:
        raise CheckDefinitionError(f"custom query refused: {refused}")


def parenthesised(where: str) -> str:
    """A check's `where` as dupewatch writes it into its statements: in parentheses, the closing one on a line of
    its own, so that a `where` ending in a comment (`status = 'open' -- not drafts`, MySQL's `# ...`) comments out
    nothing of what follows it (the `)`, the AND of dupewatch's own conditions). Only where a line comment could
    start (`--`, `#`): elsewhere the `where` reads as written, as in the guard's partial index the user is shown."""
    return f"({where}\n)" if "--" in where or "#" in where else f"({where})"


def where_condition(where: str) -> ColumnElement[bool]:
    """A check's `where` as a condition of dupewatch's statements (`parenthesised`)."""
    return sa.literal_column(parenthesised(where), sa.Boolean)


def where_probe(resolved: TableCheck, preparer: Any, *, alone: bool = False) -> str:
    """The statement a table check's `where` is vetted in: the filter on its table, as the check runs it (inside
    parentheses), or (`alone`) as the whole condition of the statement (its own line ending it)."""
    where = resolved.check.where or "true"
    return f"SELECT 1 AS dupewatch_probe FROM {preparer.format_table(resolved.table)} WHERE " + (
        f"{where}\n" if alone else parenthesised(where))


def refused_where(rules: Dialect, conn: Connection, resolved: TableCheck,
                  describe: Callable[[BaseException], str]) -> str | None:
    """Why a table check's `where` must not run, as the server reads it on `conn`, or None.

    A call it must not make (`Dialect.refused_call`) in the statement it runs in (`where_probe`), or a `where` that
    is not one condition. dupewatch writes the `where` into its statements inside parentheses, joined by AND to
    conditions of its own, the fix's DELETEs among them; a `)` of the `where` that closes that parenthesis
    (`k = 'c') OR (v = 4`) leaves the rest outside it, OR'ed with the statement's own conditions, so a fix's DELETE
    would also delete every row it names (on MariaDB, a table without a primary key: a row of no group, in place of
    the duplicate it archived). So the server also reads the `where` alone, as the whole condition of a statement,
    where such a `)` closes nothing and is a syntax error: both readings parse only when the `where` is one
    condition, its parentheses its own (dupewatch's lexer reads nothing of it). `describe` words a database
    error."""
    preparer = conn.dialect.identifier_preparer
    refused = rules.refused_call(conn, where_probe(resolved, preparer))
    if refused or not resolved.check.where:
        return refused
    try:
        return rules.refused_call(conn, where_probe(resolved, preparer, alone=True))
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        return (f"it is not one condition: read alone, as the whole condition of a statement, it fails "
                f"({describe(exc)}) where in parentheses it does not, so in the parentheses dupewatch puts it in a ')' "
                "of it would close them, OR'ing the rest with dupewatch's own conditions (a fix's DELETE among them); "
                "balance its parentheses")


# Custom SQL goes to the driver as written: with no parameters, psycopg and PyMySQL leave `%` alone
# (`LIKE 'a%'`), where an empty parameter list would make them read it as a placeholder.
AS_WRITTEN = {"no_parameters": True}


def custom_weighted(columns: list[str]) -> bool:
    """Whether a custom query with these columns (`custom_columns`) returns a `dup_count`."""
    return "dup_count" in [c.lower() for c in columns]


def figures_statement(sql: str, weighted: bool) -> str:
    """The statement that counts a custom query's offences: each row is one; `dup_count` (when `weighted`)
    weighs it."""
    excess = "COALESCE(SUM(dup_count - 1), 0)" if weighted else "COUNT(*)"
    return f"SELECT COUNT(*), {excess} FROM (\n{custom_sql(sql)}\n) AS dupewatch_custom"


# The largest count a run stores and exports (a signed 64-bit integer, as the history store and every database's
# COUNT(*) hold it): `SUM(dup_count - 1)` over a numeric `dup_count` (`power(10::numeric, 100000)`) is not a count.
MAX_COUNT = 2**63 - 1


def custom_figures(conn: Connection, sql: str, weighted: bool) -> tuple[int, int]:
    """Each row a custom query returns is one offence; `dup_count` (when `weighted`) weighs it."""
    ensure_select(sql)
    row = conn.exec_driver_sql(figures_statement(sql, weighted), execution_options=AS_WRITTEN).one()
    try:  # compared as the driver read it (a numeric of 100,000 digits, NaN, Infinity)
        counts = -MAX_COUNT <= row[1] <= MAX_COUNT
    except (ArithmeticError, TypeError):
        counts = False
    if not counts:
        raise CheckDefinitionError("custom query's dup_count does not add up to a count of excess rows (beyond "
                                   "2^63 - 1, or not a number): return a row count as dup_count")
    return int(row[0]), int(row[1])


# What dupewatch reads of a custom query's rows (the drill-down), as the server measures them before it sends them
# (`Dialect.sent_width`): a query returning keys and counts needs far less; one building a string or a number of
# gigabytes from a short statement (nested replace(), a doubling recursive CTE, string_agg, UNCOMPRESS) is refused
# in one line instead of arriving in dupewatch's memory.
MAX_VALUE_BYTES = 1024 * 1024  # per value
MAX_PAGE_BYTES = 16 * 1024 * 1024  # per page of rows, all values together


def custom_columns(conn: Connection, sql: str) -> list[str]:
    """The names of a custom query's columns (a probe that reads no rows)."""
    ensure_select(sql)
    probe = conn.exec_driver_sql(f"SELECT * FROM (\n{custom_sql(sql)}\n) AS dupewatch_probe WHERE 1 = 0",
                                 execution_options=AS_WRITTEN)
    columns = list(probe.keys())
    probe.close()
    return columns


def custom_page_statement(conn: Connection, rules: Dialect, sql: str, width: int, offset: int,
                          limit: int) -> str:
    """A page of a custom query's rows (`width` columns, read by position: a query's columns may share a name),
    each value sent only when the server measured every value of the page within `MAX_VALUE_BYTES` and the page
    within `MAX_PAGE_BYTES`; the measures (`dupewatch_w0..`, the widest value of each column; `dupewatch_total`)
    follow the values. The custom query runs once: its page is a LIMIT sub-select, which no database merges into
    the statement around it. A value beyond `MAX_VALUE_BYTES` is dropped row by row, before the window that
    measures the page keeps the page's rows (in a temporary table that may spill to disk)."""
    names = [f"dupewatch_c{i}" for i in range(width)]
    page = sa.table("dupewatch_page", *(sa.column(name) for name in names))
    widths = [sa.func.coalesce(rules.sent_width(page.c[name]), 0) for name in names]
    capped = sa.select(*(sa.case((w <= MAX_VALUE_BYTES, page.c[name])).label(name) for w, name in zip(widths, names,
                                                                                                  strict=True)),
                       *(w.label(f"dupewatch_w{i}") for i, w in enumerate(widths))).subquery("dupewatch_capped")
    measures = [capped.c[f"dupewatch_w{i}"] for i in range(width)]
    sized = sa.select(*(capped.c[name] for name in names), *(sa.func.max(w).over().label(w.name) for w in measures),
                      sa.func.sum(sum(measures, sa.literal(0, sa.BigInteger()))).over().label("dupewatch_total")
                      ).subquery("dupewatch_sized")
    fits = sa.and_(*(sized.c[f"dupewatch_w{i}"] <= MAX_VALUE_BYTES for i in range(width)),
                   sized.c.dupewatch_total <= MAX_PAGE_BYTES)
    outer = sa.select(*(sa.case((fits, sized.c[name])).label(f"dupewatch_v{i}") for i, name in enumerate(names)),
                      *(sized.c[f"dupewatch_w{i}"] for i in range(width)), sized.c.dupewatch_total)
    compiled = outer.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return (f"WITH dupewatch_page ({', '.join(names)}) AS (SELECT * FROM (\n{custom_sql(sql)}\n) AS dupewatch_custom "
            f"LIMIT {int(limit)} OFFSET {int(offset)})\n{compiled}")


def custom_rows(conn: Connection, rules: Dialect, sql: str, offset: int, limit: int,
                columns: list[str] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A page of the rows a custom query returns, its values bounded (`MAX_VALUE_BYTES`, `MAX_PAGE_BYTES`) by the
    server before it sends them; a page beyond them raises `CheckDefinitionError`, one line naming the column."""
    names = columns if columns is not None else custom_columns(conn, sql)
    width = len(names)
    if not width:  # PostgreSQL's `SELECT FROM t`: rows of no value, nothing to measure
        plain = (f"SELECT * FROM (\n{custom_sql(sql)}\n) AS dupewatch_custom LIMIT {int(limit)} "
                 f"OFFSET {int(offset)}")
        return names, [() for _ in conn.exec_driver_sql(plain, execution_options=AS_WRITTEN)]
    result = conn.exec_driver_sql(custom_page_statement(conn, rules, sql, width, offset, limit),
                                  execution_options=AS_WRITTEN)
    rows = [tuple(row) for row in result]
    if rows:
        widest, total = rows[0][width:2 * width], rows[0][2 * width]
        for name, bytes_ in zip(names, widest, strict=True):
            if bytes_ is not None and int(bytes_) > MAX_VALUE_BYTES:
                raise CheckDefinitionError(
                    f"custom query returned a value of {int(bytes_):,} bytes in column {name!r}, more than the "
                    f"{MAX_VALUE_BYTES // 1024 ** 2} MiB dupewatch reads of a value: return keys and counts")
        if total is not None and int(total) > MAX_PAGE_BYTES:
            raise CheckDefinitionError(
                f"custom query returned {int(total):,} bytes in {len(rows)} rows, more than the "
                f"{MAX_PAGE_BYTES // 1024 ** 2} MiB dupewatch reads of a page: return keys and counts")
    return names, [row[:width] for row in rows]

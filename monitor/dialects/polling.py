"""What the watermark poll (`monitor.incremental`) asks a database; `Dialect` inherits these defaults.

A dialect overrides what its database can say (`postgresql_polling.py`, `mysql_polling.py`, `sqlite_polling.py`):

- `database_identity_statements(conn)`: statements of one row each naming the server and database a connection
  reached (the state's fingerprint).
- `served_by_index(conn, table, exprs)`: whether an index leads with these expressions; `index_statement(table,
  exprs, name)`: the statement creating it (or why it cannot be created).
- `estimated_cost(conn, statement)`: the planner's estimate of a statement's cost, in its own unit; None where the
  planner gives none.
- `key_batch_size(width, indexed)`: keys counted per statement; `counts_keys_as_json(columns)`,
  `changed_counts(conn, resolved, document, cache)`: count keys sent as one JSON document, each by a correlated lookup
  (`cache`: the caller's `StatementCache`, kept between the runs of one check);
  `key_count_statement(resolved, keys)`: a statement counting many keys by correlated lookups, or None for the
  IN-list form. Both correlated forms read the table once per key where no index serves the key.
- `database_clock(column)`: the database's current time as a value of the column's type (a timestamp watermark
  never runs ahead of it).
- `sequence_position(conn, table, column)`: the highest value the column's sequence has handed out, its cache
  size and the sessions that may hold a cached range (an id watermark never runs ahead of it; the overlap covers
  the cached ranges); None where the column has no sequence the database describes.
- `unreadable_watermark(conn, table, column)`: what the incremental column holds that a watermark of its declared
  type cannot read nor compare (SQLite keeps whatever the application wrote: epoch integers in a DATETIME), in
  words naming it, or None; asked at every run and by `config validate` (the check is refused in one line).
- `oldest_transaction_age(conn)`: seconds since the oldest transaction still running on the database began, or
  None where the database does not say (a timestamp watermark's overlap then cannot be bounded).
- `writers_columns(conn)`: two expressions read in the statement that reads the table's highest value: the
  database's clock and the start of the oldest transaction of another session that may still insert a value it
  took (one that has written; on PostgreSQL any open one, as `nextval()` leaves no trace) (NULL where none),
  both in seconds since the epoch by the database's clock; or None, with why (the role may not see them; "" where
  the database has one writer at a time or says nothing). An id watermark's next run reads from the position the
  sequence stood at in the last run before that transaction began (`window.id_since`).
- `snapshot_mark(conn, table)`: an expression a run reads with the table's highest value, naming what the database
  says of the transactions running at that moment (on PostgreSQL its snapshot's xmin), or None where it says
  nothing usable; `committed_since(previous, current)`: the value to bind to `committed_after(mark)`, a condition
  on a row of the table (its only FROM) that holds for every row committed after the run that read `previous`
  (and may hold for others), or None where the marks cannot bound it. The next run re-reads below its watermark
  only the rows it holds for.
- `polled_key(expr)`: a key expression (`TableCheck.key_reads`) as an incremental run reads its values and binds
  them back in the lookups of known groups and keys read: itself, or where the driver's Python form of the value
  does not bind back as the same value, as the database's text of it cast back on the server
  (`expressions.ServerText`). `shown_key_value(expr, shown, value)`: a value `expr` (a `polled_key`) read, as
  `shown` (the key expression it carries) is read (what the dashboard's group page shows): itself by default.
- `counts_window_on_server(columns)`: whether the rows past the watermark are read and their keys counted by the
  database in one statement, which returns each key's group identity as text and its count (`concat`: integer
  keys only, whose text is their identity), instead of sending the rows to the client.
- `removed_rows(conn, table)`: the rows deleted or updated in the table so far, as the database counts them (a
  cumulative counter), or None where it keeps no such count: while it stands still, no known group can have
  shrunk, and an incremental run need not re-count them. `removed_rows_column(conn, table)`: the same count as an
  expression, read in the statement that reads the table's highest value (a statement less per run), or None.
  `removals_unseen(conn)`: where the count is unknown because the role cannot see what the database holds back
  (sessions of other roles), why and what to grant; "" otherwise.
- `storage_identity_column(conn, table)`: an expression, read in the statement that reads the table's highest value,
  naming the storage the table's rows live in (as text), which changes when the table is truncated, rewritten or
  given other partitions (rows that no run read may then lie below the watermark: the next run is a full pass), or
  None where the database does not say. `storage_identity_every`: seconds between two reads of it by the
  incremental runs of a check (a full pass always reads it), where reading it costs more than a lookup; None: every
  run.
- `window_digest(exprs)`: an aggregate over rows, as text, that changes whenever a row is added, removed or has
  any of `exprs` (its identity, incremental value and key) changed (count and sum of a 64-bit hash of the stored
  values, NULL apart from any value), or None where the database cannot say it of these expressions honestly.
  An incremental run whose overlap window gives the digest the last run took of it skips re-reading the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

if TYPE_CHECKING:
    from monitor.detect import TableCheck

KEY_BATCH = 500  # keys counted per IN-list statement when an index serves the lookups


@dataclass(frozen=True)
class SequencePosition:
    """What the database says of the sequence behind an id column.

    `last_value`: the highest value handed out (None when the role may not read it or none was handed out yet);
    `cache_size`: values a session takes at once; `sessions`: sessions that may hold such a cached range (None when
    not known); `name`: the sequence, for messages; `why_unknown`: why `last_value` is None; `increment`: the
    step between two values handed out (its magnitude): a cached range spans `cache_size * increment` values;
    `descending`: whether it counts down (a negative increment: each value handed out lies below the last)."""

    name: str
    last_value: int | None
    cache_size: int = 1
    sessions: int | None = None
    why_unknown: str = ""
    increment: int = 1
    descending: bool = False

    @property
    def cached_span(self) -> int:
        """The values one session's cached range spans (0 where a session takes one value at a time)."""
        return self.cache_size * max(self.increment, 1) if self.cache_size > 1 else 0


@dataclass
class StatementCache:
    """What a caller keeps between the runs of one check: statements built once (`built`, by name) and compiled
    once (`compiled`, SQLAlchemy's `compiled_cache`: the detection engine keeps no compiled forms, and building and
    compiling a run's statements again cost about 1 ms of a run's CPU time on MariaDB)."""

    built: dict[str, Any] = field(default_factory=dict)
    compiled: dict[Any, Any] = field(default_factory=dict)
    # Statements compiled for the driver's cursor (`one`, `on_driver`); None: one that needs SQLAlchemy's execution.
    for_driver: dict[Any, SQLCompiler | None] = field(default_factory=dict)

    def execute(self, conn: Connection, name: str, build: Callable[[], sa.Executable],
                values: dict[str, Any]) -> sa.CursorResult[*tuple[Any, ...]]:
        """The statement named `name` (`build()` at its first run) bound to `values`."""
        statement = self.built.get(name)
        if statement is None:
            statement = self.built[name] = build()
        return self.run(conn, statement, values)

    def run(self, conn: Connection, statement: sa.Executable,
            values: dict[str, Any]) -> sa.CursorResult[*tuple[Any, ...]]:
        """`statement` bound to `values`, compiled at its first run only."""
        return conn.execute(statement, values, execution_options={"compiled_cache": self.compiled})

    def one(self, conn: Connection, statement: sa.Executable, values: dict[str, Any], *,
            on_driver: bool = False) -> Sequence[Any]:
        """The one row of `statement` bound to `values`. `on_driver` (`Polling.reads_row_on_driver`): sent on the
        driver's cursor, without SQLAlchemy's execution context and result, where no value the statement binds
        needs its type's conversion (else as `run`). It runs as SQLAlchemy would run it: in the connection's
        transaction (begun where none is), after the engine's `before_cursor_execute` listeners (the client-side
        deadline is re-armed), a driver's error raised as SQLAlchemy raises it (`DBAPIError`, the connection
        invalidated where the driver says it is lost)."""
        if not on_driver:
            return self.run(conn, statement, values).one()
        if statement not in self.for_driver:
            self.for_driver[statement] = _for_driver(conn, statement)
        compiled = self.for_driver[statement]
        if compiled is None:
            return self.run(conn, statement, values).one()
        expanded = compiled.construct_expanded_state(values)
        text = expanded.statement
        params = expanded.positional_parameters if compiled.positional else expanded.parameters
        if not conn.in_transaction():
            conn.begin()
        dialect, raw = conn.dialect, conn.connection.dbapi_connection
        assert raw is not None  # checked out
        cursor = raw.cursor()
        try:
            conn.dispatch.before_cursor_execute(conn, cursor, text, params, None, False)
            cursor.execute(text, params)
            rows = cursor.fetchall()
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw, cursor)
            if lost:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(text, params, exc, dialect.loaded_dbapi.Error,
                                             connection_invalidated=lost) from exc
        finally:
            cursor.close()
        if len(rows) != 1:
            raise sa.exc.NoResultFound("no row") if not rows else sa.exc.MultipleResultsFound("more than one row")
        return tuple(rows[0])


def _for_driver(conn: Connection, statement: sa.Executable) -> SQLCompiler | None:
    """`statement` compiled for the driver's cursor, or None where it is no SQL expression or a value it binds
    needs its type's conversion (which SQLAlchemy's execution applies)."""
    if not isinstance(statement, sa.ClauseElement):
        return None
    compiled = statement.compile(dialect=conn.dialect)
    if not isinstance(compiled, SQLCompiler) or \
            any(b.type.bind_processor(conn.dialect) is not None for b in compiled.binds.values()):
        return None
    return compiled


class Polling:
    """The defaults: a database that says nothing beyond standard SQL."""

    def database_identity_statements(self, conn: Connection) -> list[str]:
        return []

    def served_by_index(self, conn: Connection, table: sa.Table, exprs: Sequence[ColumnElement[Any]]) -> bool:
        return False

    def index_statement(self, table: sa.Table, exprs: Sequence[ColumnElement[Any]], name: str) -> str:
        return compiled_create_index(table, sa.Index(name, *exprs), sa.engine.default.DefaultDialect())

    def estimated_cost(self, conn: Connection, statement: sa.Select[Any]) -> float | None:
        return None

    def key_batch_size(self, width: int, *, indexed: bool) -> int:
        return KEY_BATCH

    def counts_keys_as_json(self, columns: Sequence[sa.Column[Any]]) -> bool:
        return False

    def changed_counts(self, conn: Connection, resolved: TableCheck, document: str,
                       cache: StatementCache | None = None) -> list[tuple[int, int]]:
        raise NotImplementedError("counts_keys_as_json is False")

    def key_count_statement(self, resolved: TableCheck, keys: Sequence[tuple[Any, ...]]) -> sa.Select[Any] | None:
        return None

    def database_clock(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        if isinstance(column.type, sa.DateTime):
            return sa.type_coerce(sa.func.current_timestamp(), column.type)
        return sa.type_coerce(sa.func.current_date(), column.type)

    def sequence_position(self, conn: Connection, table: sa.Table, column: sa.Column[Any]) -> SequencePosition | None:
        return None

    def unreadable_watermark(self, conn: Connection, table: sa.Table, column: sa.Column[Any]) -> str | None:
        return None

    def reads_sequence_position(self, column: sa.Column[Any]) -> bool:
        return True

    def removed_rows(self, conn: Connection, table: sa.Table) -> int | None:
        return None

    def removed_rows_column(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        return None

    def removals_unseen(self, conn: Connection) -> str:
        return ""

    def snapshot_mark(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        return None

    def storage_identity_column(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        return None

    storage_identity_every: float | None = None

    def committed_since(self, previous: str, current: str) -> str | None:
        return None

    def committed_after(self, mark: ColumnElement[Any]) -> ColumnElement[bool]:
        raise NotImplementedError("committed_since gives no mark")

    def polled_key(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return expr

    def shown_key_value(self, expr: ColumnElement[Any], shown: ColumnElement[Any], value: Any) -> Any:
        return value

    def counts_window_on_server(self, columns: Sequence[sa.Column[Any]]) -> bool:
        return False

    # Whether a run's statements of one row are sent on the driver's cursor (`StatementCache.one`).
    reads_row_on_driver = False

    # Whether the rows read are counted by a join with the table grouped by the row (where the row's identity is
    # the incremental column and no `where` text names the columns of both), rather than by a correlated subquery.
    counts_window_by_join = False

    def window_digest(self, exprs: Sequence[ColumnElement[Any]]) -> ColumnElement[str] | None:
        return None

    def writers_columns(self, conn: Connection) -> tuple[tuple[ColumnElement[Any], ColumnElement[Any]] | None, str]:
        return None, ""

    def oldest_transaction_age(self, conn: Connection) -> tuple[float | None, str]:
        """(seconds since the oldest running transaction began, or None; why None)."""
        return None, "this database does not say which transactions are running"


def compiled_create_index(table: sa.Table, index: sa.Index, dialect: sa.engine.Dialect) -> str:
    """The CREATE INDEX statement of `index` as `dialect` writes it, without leaving the index on `table`."""
    try:
        return str(sa.schema.CreateIndex(index).compile(dialect=dialect)).strip()
    finally:
        table.indexes.discard(index)  # an Index attaches itself to its table: keep reflection as read


def normalised_sql(text: str) -> str:
    """An expression's text for comparing with an index's: no quotes, spaces or casts to text, one trim()."""
    text = text.lower().replace('"', "").replace("`", "").replace(" ", "")
    return text.replace("trim(bothfrom", "trim(").replace("btrim(", "trim(").replace("::text", "")


def expr_text(expr: ColumnElement[Any]) -> str:
    """A normalised text of a key expression (`lower(trim(email))`) to compare with an index's."""
    text = str(expr.compile(compile_kwargs={"literal_binds": True}))
    if "(" not in text:
        return normalised_sql(text.split(".")[-1])
    inner = text[text.rfind("(") + 1:text.find(")")]
    return normalised_sql(text.replace(inner, inner.split(".")[-1]))


def leads(index_columns: Sequence[str], wanted: Sequence[str]) -> bool:
    """Whether an index's leading columns are exactly `wanted`, in any order."""
    return len(index_columns) >= len(wanted) and set(index_columns[:len(wanted)]) == set(wanted)

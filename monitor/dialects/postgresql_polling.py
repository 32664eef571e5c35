"""What PostgreSQL tells the watermark poll (`monitor.incremental`): see `monitor.dialects.polling`.

- The cluster's system identifier (`pg_control_system()`, where the role may call it) names the server.
- Keys travel as one JSON document or as arrays, each counted by a correlated index lookup ("Table Functions" and
  "Scalar Subqueries" in the PostgreSQL docs), so a statement takes 50,000 keys in a few parameters.
- The planner's estimate is `EXPLAIN (FORMAT JSON)`'s `Total Cost` of the top plan node.
- A serial or identity column's sequence is `pg_get_serial_sequence`, else the one its default is exactly the
  `nextval` of (pg_depend: a sequence not owned by the column, or shared by tables); `pg_sequence_last_value` is
  what it handed out (the value `pg_sequences.last_value` shows, NULL without USAGE or SELECT on it),
  `pg_sequence.seqcache` how many values a session takes at once and `seqincrement` the step between two: a
  session's cached range spans `seqcache * seqincrement` ids, and every client session of the database may hold
  one.
- `pg_stat_user_tables.n_tup_del + n_tup_upd` (of the table and its partitions) counts the rows deleted and
  updated, when `track_counts` is on; a backend reports its counts within seconds of its commit ("The Cumulative
  Statistics System"), once it is idle outside a transaction: while another session has been in a transaction for
  more than a second (or, for a session of another role the role may not see, is in a transaction at all: pg_locks
  says so, not for how long), the count is unknown (`_PENDING_WHERE`).
- A run reads the xmin of its statement's snapshot (`pg_snapshot_xmin(pg_current_snapshot())`, 64 bits with the
  epoch; `txid_snapshot_xmin` before PostgreSQL 13): every row it could not see was written by a transaction with an
  id at or above it, still running or not yet begun. The next run re-reads below its watermark only the rows whose
  `xmin` (the inserting transaction) is at most as old as that mark: `age(xmin) <= age(mark)`, both counted from
  the same transaction id, modulo 2^32 as PostgreSQL compares them. A frozen row keeps its `xmin` (9.4+) and is
  older; a row whose `xmin` wrapped around may be re-read, never missed. Where the marks lie 2^30 transactions or
  more apart (or go backwards: another cluster), or the relation is not a table (a view, a foreign table: no
  `xmin`), the whole window is re-read.
- `pg_stat_activity.xact_start` says when each running transaction began; a role sees other roles' sessions only
  as a superuser or a member of `pg_read_all_stats`.
- Every transaction open in the database may still insert a value it took: a transaction that called `nextval()`
  (an ORM's SEQUENCE strategy takes its ids at persist, and inserts them at flush) holds no transaction id
  (`pg_stat_activity.backend_xid`) until it writes, and `pg_stat_activity` does not say whether it took one. The
  oldest open transaction's `xact_start` (a client backend of the database, read from `pg_stat_get_activity`,
  the function under the view) against `clock_timestamp()`, read in the statement that reads the table's highest
  value (`writers_columns`), bounds the ids a transaction still running may hold. A long transaction of any
  table of the database (a report, `pg_dump`) widens the window as much: the runs re-read the ids handed out since
  it began, only those committed since the last run (`xmin`). A prepared
  transaction (`PREPARE TRANSACTION`, two-phase commit) has left its session and holds its rows until `COMMIT
  PREPARED`, for as long as its coordinator takes: it counts from when it was prepared (`pg_prepared_xacts.prepared`):
  the database does not keep when it began, so a value it took more than the overlap before that waits for the
  full pass.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from psycopg.adapt import Transformer
from psycopg.pq import Format
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ranges
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.expressions import ServerText
from monitor.dialects.polling import (
    Polling,
    SequencePosition,
    StatementCache,
    compiled_create_index,
    expr_text,
    leads,
    normalised_sql,
)

_POSTGRESQL: sa.engine.Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # how CREATE INDEX is written
_PSYCOPG: sa.engine.Dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]  # as psycopg gives a key

if TYPE_CHECKING:
    from monitor.detect import TableCheck

_SEQUENCE = sa.text(
    "SELECT s.seqrelid::regclass::text, CASE WHEN has_sequence_privilege(s.seqrelid, 'SELECT,USAGE')"
    " THEN pg_sequence_last_value(s.seqrelid) END, s.seqcache,"
    " has_sequence_privilege(s.seqrelid, 'SELECT,USAGE'), s.seqincrement"
    " FROM pg_sequence s WHERE s.seqrelid = COALESCE(to_regclass(pg_get_serial_sequence(:t, :c)),"
    # A sequence the column is not owned by (`DEFAULT nextval('ids')` without `OWNED BY`: a hand-written schema, a
    # sequence shared by tables), where the column's default is exactly its `nextval` (pg_depend names it).
    " (SELECT d.refobjid FROM pg_attrdef a JOIN pg_attribute c ON c.attrelid = a.adrelid AND c.attnum = a.adnum"
    " JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = a.oid"
    " AND d.refclassid = 'pg_class'::regclass"
    " WHERE a.adrelid = to_regclass(:t) AND c.attname = :c"
    " AND pg_get_expr(a.adbin, a.adrelid) = format('nextval(%L::regclass)', d.refobjid::regclass::text)"
    " LIMIT 1))")
# The counters `pg_stat_user_tables.n_tup_del + n_tup_upd` show, read by relation (the view reads them for every
# table of the database before filtering: a millisecond and more per run).
# Whether the server counts rows changed (`pg_stat_*`, `pg_stat_xact_user_tables`): off, they read 0.
TRACK_COUNTS = "current_setting('track_counts')"
# Whether another session of the database may hold counts it has not reported: a backend reports what its committed
# transactions changed only when it is idle, outside a transaction (at most every second, `PGSTAT_MIN_INTERVAL`), so
# one that deleted rows and then stayed in a transaction (a batch job's next step, a session idle in transaction)
# holds them for as long (a poll saw the count stand still for 30 s after 300 groups were dissolved, and re-counted
# none). A transaction open for more than a second (of a client or a logical replication apply worker, dupewatch's
# own sessions aside) makes the count unknown: the rotation goes on. A session of another role is hidden from a role
# without pg_read_all_stats (`query` reads '<insufficient privilege>'; state, xact_start and backend_type NULL;
# PostgreSQL 15): it counts only where it has a role (`usesysid`: client backends, WAL senders and background
# workers; autovacuum workers and the server's own processes have none) and is in a transaction, which pg_locks
# (readable by every role) shows as the lock it holds on its own virtual transaction id; for how long, the role
# cannot tell (`removals_unseen` says so).
_PENDING_FROM = "pg_stat_get_activity(NULL) AS dupewatch_pending"
_PENDING_OF_OTHERS = (
    "dupewatch_pending.datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND dupewatch_pending.pid <> pg_backend_pid()"
    " AND COALESCE(dupewatch_pending.application_name, '') NOT LIKE 'dupewatch%'")
_HIDDEN_IN_TRANSACTION = (
    "dupewatch_pending.query = '<insufficient privilege>' AND dupewatch_pending.usesysid IS NOT NULL"
    " AND dupewatch_pending.pid IN (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.granted"
    " AND l.virtualxid = l.virtualtransaction)")
_PENDING_WHERE = (
    f"{_PENDING_OF_OTHERS} AND (({_HIDDEN_IN_TRANSACTION})"
    " OR (dupewatch_pending.backend_type IN ('client backend', 'logical replication worker')"
    " AND dupewatch_pending.xact_start < clock_timestamp() - interval '1 second'))")
_HIDDEN_PENDING = sa.text(
    f"SELECT EXISTS (SELECT 1 FROM {_PENDING_FROM} WHERE {_PENDING_OF_OTHERS} AND {_HIDDEN_IN_TRANSACTION})")
_REMOVED_ROWS = sa.text(
    f"SELECT CASE WHEN {TRACK_COUNTS} = 'on'"
    f" AND NOT EXISTS (SELECT 1 FROM {_PENDING_FROM} WHERE {_PENDING_WHERE}) THEN"
    " (SELECT COALESCE(sum(pg_stat_get_tuples_deleted(r.relid) + pg_stat_get_tuples_updated(r.relid)), 0)"
    " FROM (SELECT relid FROM pg_partition_tree(to_regclass(:t)) UNION SELECT to_regclass(:t)) AS r) END")
_HAS_XMIN = sa.text("SELECT relkind IN ('r', 'p', 'm') FROM pg_class WHERE oid = to_regclass(:t)")
_MARK_SPAN = 2 ** 30  # marks further apart than this (transactions) are not compared: the whole window is re-read
_SESSIONS = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend'")
_SEES_ALL_SESSIONS = sa.text("SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')"
                             " FROM pg_roles WHERE rolname = current_user")
_OLDEST_TRANSACTION = sa.text(
    "SELECT EXTRACT(EPOCH FROM greatest(max(clock_timestamp() - xact_start), (SELECT clock_timestamp() - min(prepared)"
    " FROM pg_prepared_xacts WHERE database = current_database()))) FROM pg_stat_activity"
    " WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend'")


class _Xid(sa.types.UserDefinedType[str]):
    """PostgreSQL's 32-bit transaction id (`xmin`), for a cast."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "XID"


_XID = _Xid()


def _quoted(conn: Connection, table: sa.Table) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)


class Composite(sa.types.UserDefinedType[Any]):
    """A column of a composite type (`CREATE TYPE address AS (street text, zip int)`), as the catalog names it
    (`format_type`, schema-qualified where the search_path does not find it). Its values are read as their text;
    a value is bound cast to the type: untyped, `k = $1` resolved to `record = record` and the server refused to
    read the text as a record ("input of anonymous composite types is not implemented"), so every look-up of a
    key failed (a live re-count: a gap each time)."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **_kw: Any) -> str:
        return self.spec

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(bindvalue, self)


def _plain(column: sa.Column[Any]) -> bool:
    """A column whose values bind as array elements and JSON scalars: not JSON, arrays or enums, nor of a type
    SQLAlchemy does not know (an extension's type outside the search_path: no array of it can be named), nor one
    whose keys travel as text (`_as_text`), nor a composite (its values, the server's text, bound as a text[]
    cast to an array of the type: `unnest` gave them as text, and `<composite> = text` has no operator)."""
    kind = _stored(column.type)
    return not isinstance(kind, sa.JSON | sa.ARRAY | sa.Enum | sa.types.NullType | Composite) \
        and _as_text(kind) is None


def _stored(kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """A domain's base type (a domain over a domain's too), as its values are stored, bound and compared: a
    domain over jsonb or text[] is bound as one (a domain's type name alone said neither)."""
    while isinstance(kind, postgresql.DOMAIN):
        kind = sa.types.to_instance(kind.data_type)
    return kind


def spelled_apart(kind: sa.types.TypeEngine[Any]) -> bool:
    """Whether values of `kind` that `=` finds equal may be stored apart, as `group_identity` identifies them: a
    numeric at another scale, a float's `-0`, an interval in other units, a jsonb number, a range's bounds."""
    return isinstance(kind, sa.Numeric | sa.Float | sa.Interval | postgresql.JSONB | ranges.AbstractRange
                      | ranges.AbstractMultiRange)


def _as_text(kind: sa.types.TypeEngine[Any]) -> str | None:
    """For a type whose value psycopg returns as a Python object that does not bind back as the same value, the
    hash function of its hash operator class (`ServerText.hashed`; "" where its text is its identity); else None.
    jsonb: a number is returned as an int or a float (bound back as `integer`/`double precision`, no `=` with
    jsonb), a document as a dict (which psycopg does not adapt); and `1` and `1.0` are one jsonb value (numbers
    compare as numeric), printed apart: identified by `jsonb_hash_extended`. A range or multirange: psycopg's
    `Range` binds as no array element beside another key's text (`cannot dump lists of mixed types`), a
    multirange not at all; `numrange` `[1.0,2.0)` and `[1,2)` are one value printed apart: identified by
    `hash_range_extended` / `hash_multirange_extended` (by the subtype's hash: numeric's ignores the scale).
    inet and cidr: psycopg's `ipaddress` objects bind as no array element beside text either; their text is
    their identity (`10.0.0.1` and `10.0.0.1/32` print as one). An array: psycopg drops lower bounds other than 1
    (`[2:3]={1,2}` is returned as `[1, 2]`, bound back as `{1,2}`, which `=` and GROUP BY tell apart: a known group's
    re-count found another group's rows); its text keeps them, and is its identity unless its elements' `=` finds
    values printed apart equal (then `hash_array_extended`, with the dimensions: `_hashed`)."""
    if isinstance(kind, sa.ARRAY):
        element = _stored(sa.types.to_instance(kind.item_type))
        return "hash_array_extended" if spelled_apart(element) or _as_text(element) else ""
    if isinstance(kind, postgresql.JSONB):
        return "jsonb_hash_extended"
    if isinstance(kind, ranges.AbstractMultiRange):
        return "hash_multirange_extended"
    if isinstance(kind, ranges.AbstractRange):
        return "hash_range_extended"
    if isinstance(kind, postgresql.INET | postgresql.CIDR):
        return ""
    return None


class PostgreSQLPolling(Polling):
    def database_identity_statements(self, conn: Connection) -> list[str]:
        allowed = conn.execute(sa.text("SELECT has_function_privilege('pg_control_system()', 'EXECUTE')")).scalar()
        cluster = "SELECT system_identifier FROM pg_control_system()" if allowed else "SELECT inet_server_port()"
        return [cluster, "SELECT current_database()"]

    def served_by_index(self, conn: Connection, table: sa.Table, exprs: Sequence[ColumnElement[Any]]) -> bool:
        """Each valid, non-partial index's key columns as `pg_get_indexdef(index, n, true)` deparses them."""
        rows = conn.execute(sa.text(
            "SELECT i.indexrelid, i.indnkeyatts FROM pg_index i WHERE i.indrelid = to_regclass(:t)"
            " AND i.indpred IS NULL AND i.indisvalid"), {"t": _quoted(conn, table)}).all()
        wanted = [expr_text(e) for e in exprs]
        for index_id, width in rows:
            columns = [conn.execute(sa.text("SELECT pg_get_indexdef(:i, :n, true)"), {"i": index_id, "n": n}).scalar()
                       for n in range(1, width + 1)]
            if leads([normalised_sql(str(c)) for c in columns], wanted):
                return True
        return False

    def index_statement(self, table: sa.Table, exprs: Sequence[ColumnElement[Any]], name: str) -> str:
        """`CREATE INDEX CONCURRENTLY`: no long lock on a busy table."""
        index = sa.Index(name, *exprs, postgresql_concurrently=True)
        return compiled_create_index(table, index, _POSTGRESQL)

    def estimated_cost(self, conn: Connection, statement: sa.Select[Any]) -> float | None:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        plan: Any = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}").scalar()
        document = json.loads(plan) if isinstance(plan, str) else plan
        return float(document[0]["Plan"]["Total Cost"])

    def key_batch_size(self, width: int, *, indexed: bool) -> int:
        return 50_000  # arrays or one JSON document: a few parameters whatever the number of keys

    def polled_key(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """The key's text (`CAST(.. AS TEXT)`), bound back as `CAST(:value AS <the column's type>)`, for the types of
        `_as_text`; the type is the one reflected from the catalog, as the server names it."""
        stored = _stored(expr.type)  # bound back as the base type: a cast to the domain would run its CHECKs
        hashed = _as_text(stored)
        if hashed is None:
            return expr
        return sa.type_coerce(expr, ServerText(str(stored.compile(dialect=_POSTGRESQL)), hashed))

    def shown_key_value(self, expr: ColumnElement[Any], shown: ColumnElement[Any], value: Any) -> Any:
        """The server's text of a key `polled_key` carries, loaded as the group page reads `shown`: by psycopg's
        loader of the type (by its name in psycopg's registry of the built-in types), then SQLAlchemy's result
        processor of `shown`'s type (a psycopg `Range` made SQLAlchemy's); an inet's text, which always has its
        mask (`10.0.0.1/32`), as the address the column prints without it. A value it cannot load stays text."""
        kind = expr.type
        if not isinstance(kind, ServerText) or not isinstance(value, str):
            return value
        info = psycopg.adapters.types.get(kind.spec.lower())  # an array's ("integer[]"): its element's
        array = kind.spec.endswith("[]")
        if info is None or (array and value.startswith("[")):  # lower bounds a list would drop: the text says them
            return value
        try:
            loaded = Transformer().get_loader(info.array_oid if array else info.oid, Format.TEXT).load(value.encode())
        except (psycopg.Error, ValueError):
            return value
        host = isinstance(loaded, ipaddress.IPv4Interface | ipaddress.IPv6Interface) \
            and loaded.network.prefixlen == loaded.max_prefixlen
        if host and isinstance(shown.type, postgresql.INET):
            return loaded.ip
        processor = shown.type.dialect_impl(_PSYCOPG).result_processor(_PSYCOPG, None)
        return processor(loaded) if processor is not None else loaded

    def counts_keys_as_json(self, columns: Sequence[sa.Column[Any]]) -> bool:
        """Integer and plain text keys: their JSON text casts back to the column's type exactly."""
        return all(isinstance(c.type, sa.Integer) or (isinstance(c.type, sa.String) and _plain(c)) for c in columns)

    def changed_counts(self, conn: Connection, resolved: TableCheck, document: str,
                       cache: StatementCache | None = None) -> list[tuple[int, int]]:
        """The keys as `json_array_elements` rows, each counted by a correlated index lookup; only the keys whose
        count differs from the expected one, and is a group or was one, come back (ordinal, count). JIT is off
        for this transaction: compiling the plan costs more than the lookups it would speed up ("JIT Accelerated
        Operations")."""
        conn.exec_driver_sql("SET LOCAL jit = off")

        def build() -> sa.Select[Any]:
            exprs = resolved.key_exprs
            keys = sa.func.json_array_elements(sa.cast(sa.bindparam("dupewatch_keys", type_=sa.Text),
                                                       postgresql.JSON)).table_valued(
                sa.column("value", postgresql.JSON), with_ordinality="ordinality").render_derived(
                name="dupewatch_keys")
            values = [sa.cast(keys.c.value[i].astext, _stored(resolved.key_types[i])) for i in range(len(exprs))]
            size = (sa.select(sa.func.count()).select_from(resolved.table)
                    .where(*resolved.filters, *[e == v for e, v in zip(exprs, values, strict=True)])
                    .scalar_subquery())
            counted = sa.select(keys.c.ordinality.label("ord"), size.label("n"),
                                sa.cast(keys.c.value[len(exprs)].astext, sa.BigInteger).label("expected")
                                ).subquery("counted")
            return sa.select(counted.c.ord, counted.c.n).where(
                counted.c.n != counted.c.expected, sa.or_(counted.c.n > 1, counted.c.expected > 0))

        kept = cache if cache is not None else StatementCache()
        rows = kept.execute(conn, "changed_counts", build, {"dupewatch_keys": document})
        return [(int(ordinal), int(count)) for ordinal, count in rows]

    def key_count_statement(self, resolved: TableCheck, keys: Sequence[tuple[Any, ...]]) -> sa.Select[Any] | None:
        """The keys as arrays, `unnest`ed, each counted by a correlated subquery. Not for keys with NULL (`=` never
        matches it) nor for JSON or array columns (`unnest` flattens an array of arrays)."""
        if not all(_plain(c) for c in resolved.key_columns) or any(None in k for k in keys):
            return None
        exprs = resolved.key_exprs
        # As the base type of a domain: an array of the domain would run its CHECKs on each key (a VOLATILE
        # function's too, refused in the read-only session).
        types = [_stored(kind) for kind in resolved.key_types]
        arrays = [sa.bindparam(f"dupewatch_keys_{i}", [k[i] for k in keys],
                               type_=postgresql.ARRAY(types[i])) for i in range(len(exprs))]
        wanted = sa.func.unnest(*arrays).table_valued(
            *[sa.column(f"k{i}", types[i]) for i in range(len(exprs))]
        ).render_derived(name="dupewatch_keys")
        size = (sa.select(sa.func.count()).select_from(resolved.table)
                .where(*resolved.filters, *[e == wanted.c[f"k{i}"] for i, e in enumerate(exprs)]).scalar_subquery())
        return sa.select(*wanted.c, size.label("n"))

    def database_clock(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        """`now()` (the transaction's start) as the column's type: timestamptz, timestamp (the session's time
        zone) or date."""
        return sa.cast(sa.func.now(), column.type)

    def sequence_position(self, conn: Connection, table: sa.Table, column: sa.Column[Any]) -> SequencePosition | None:
        row = conn.execute(_SEQUENCE, {"t": _quoted(conn, table), "c": column.name}).first()
        if row is None:
            return None
        name, last_value, cache, readable, increment = row
        sessions = int(conn.execute(_SESSIONS).scalar() or 1)
        why = "" if last_value is not None else (
            f"the role has neither USAGE nor SELECT on {name}" if not readable else f"{name} has handed out no value")
        return SequencePosition(str(name), None if last_value is None else int(last_value), int(cache), sessions,
                                why, abs(int(increment)), int(increment) < 0)

    def removed_rows_column(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        """`_REMOVED_ROWS` as an expression (the table's name bound as a parameter)."""
        relations = _relations(conn, table)
        removed = sa.func.pg_stat_get_tuples_deleted(relations.c.relid) + \
            sa.func.pg_stat_get_tuples_updated(relations.c.relid)
        counted = sa.select(sa.func.coalesce(sa.func.sum(removed), 0)).scalar_subquery()
        pending = sa.exists(sa.select(sa.literal(1)).select_from(sa.text(_PENDING_FROM)).where(sa.text(_PENDING_WHERE)))
        return sa.case((sa.and_(sa.func.current_setting("track_counts") == "on", ~pending), counted))

    def storage_identity_column(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        """The file nodes of the table and its partitions (`pg_relation_filenode`, by relation): TRUNCATE, VACUUM
        FULL, CLUSTER and a rewriting ALTER TABLE give a table a new one; attaching or detaching a partition
        changes the list. NULL for a view (no storage)."""
        relations = _relations(conn, table)
        node = sa.cast(sa.func.pg_relation_filenode(relations.c.relid), sa.Text)
        return sa.select(sa.func.string_agg(node, postgresql.aggregate_order_by(sa.literal(","), relations.c.relid))
                         ).scalar_subquery()

    def removed_rows(self, conn: Connection, table: sa.Table) -> int | None:
        counted = conn.execute(_REMOVED_ROWS, {"t": _quoted(conn, table)}).scalar()
        return None if counted is None else int(counted)

    def removals_unseen(self, conn: Connection) -> str:
        if not conn.execute(_HIDDEN_PENDING).scalar():
            return ""
        return ("another role's session is in a transaction and the role cannot see for how long in pg_stat_activity"
                " (grant it pg_read_all_stats or pg_monitor)")

    def snapshot_mark(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        if not conn.execute(_HAS_XMIN, {"t": _quoted(conn, table)}).scalar():
            return None
        version = conn.dialect.server_version_info or (0,)
        xmin = sa.func.pg_snapshot_xmin(sa.func.pg_current_snapshot()) if version >= (13,) \
            else sa.func.txid_snapshot_xmin(sa.func.txid_current_snapshot())
        return sa.cast(xmin, sa.Text)

    def committed_since(self, previous: str, current: str) -> str | None:
        try:
            before, now = int(previous), int(current)
        except ValueError:
            return None
        if not 0 <= now - before < _MARK_SPAN:
            return None
        return str(before % 2 ** 32)  # the 32-bit xid `xmin` is compared with

    def committed_after(self, mark: ColumnElement[Any]) -> ColumnElement[bool]:
        """`age(xmin) <= age(mark::xid)`: the row's inserting transaction is no older than the mark."""
        return sa.func.age(sa.literal_column("xmin")) <= sa.func.age(sa.cast(sa.cast(mark, sa.Text), _XID))

    def counts_window_on_server(self, columns: Sequence[sa.Column[Any]]) -> bool:
        return all(isinstance(c.type, sa.Integer) and not isinstance(c.type, sa.Boolean) for c in columns)

    def writers_columns(self, conn: Connection) -> tuple[tuple[ColumnElement[Any], ColumnElement[Any]] | None, str]:
        if not conn.execute(_SEES_ALL_SESSIONS).scalar():
            return None, ("the role cannot see other roles' transactions in pg_stat_activity (grant it "
                          "pg_read_all_stats)")
        clock = sa.func.extract("epoch", sa.func.clock_timestamp())
        # The function under pg_stat_activity, without the view's joins and columns: 0.13 ms a run against 0.6 ms
        # (alternated rounds of the top statement, PostgreSQL 15).
        oldest = (sa.select(sa.func.extract("epoch", sa.func.min(sa.literal_column("dupewatch_backends.xact_start"))))
                  .select_from(sa.text("pg_stat_get_activity(NULL) AS dupewatch_backends"))
                  .where(sa.text("dupewatch_backends.datid = (SELECT oid FROM pg_database"
                                 " WHERE datname = current_database())"
                                 " AND dupewatch_backends.xact_start IS NOT NULL"
                                 " AND dupewatch_backends.backend_type = 'client backend'"
                                 # dupewatch's own sessions (a long full pass of another check, live mode)
                                 # take no ids of a watched table: they would widen the window for nothing
                                 " AND dupewatch_backends.application_name NOT LIKE 'dupewatch%'"
                                 " AND dupewatch_backends.pid <> pg_backend_pid()")).scalar_subquery())
        # A prepared transaction (two-phase commit) has left its session: it counts from when it was prepared.
        prepared = (sa.select(sa.func.extract("epoch", sa.func.min(sa.literal_column("prepared"))))
                    .select_from(sa.text("pg_catalog.pg_prepared_xacts"))
                    .where(sa.text("database = current_database()")).scalar_subquery())
        return (clock, sa.func.least(oldest, prepared)), ""

    def oldest_transaction_age(self, conn: Connection) -> tuple[float | None, str]:
        if not conn.execute(_SEES_ALL_SESSIONS).scalar():
            return None, ("the role cannot see other roles' transactions in pg_stat_activity (grant it "
                          "pg_read_all_stats)")
        age = conn.execute(_OLDEST_TRANSACTION).scalar()
        return (float(age) if age is not None else 0.0), ""


def _relations(conn: Connection, table: sa.Table) -> sa.Subquery:
    """The table and its partitions (`pg_partition_tree`, with the table itself for a relation it gives no tree
    of), as a subquery of one column, `relid`."""
    relation = sa.func.to_regclass(sa.literal(_quoted(conn, table), sa.Text))
    tree = sa.func.pg_partition_tree(relation).table_valued("relid").render_derived(name="dupewatch_tree")
    return sa.union(sa.select(tree.c.relid), sa.select(relation.label("relid"))).subquery("dupewatch_rels")

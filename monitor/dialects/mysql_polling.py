"""What MariaDB and MySQL tell the watermark poll (`monitor.incremental`): see `monitor.dialects.polling`.

- The server's host name, port and default schema name the server.
- Integer keys travel as `JSON_TABLE` rows (MariaDB 10.6+, MySQL 8.0), each counted by a dependent subquery that
  looks the key up in its index; other keys as IN lists (JSON_TABLE's text columns would compare in their own
  collation, not the table's). Without an index a long IN list is one scan with a hash lookup ("Conversion of Big
  IN Predicates Into Subqueries").
- Integer keys are read and counted in one statement (`counts_window_on_server`: each row read joined with its
  key's rows through the key's index and grouped by the row, `counts_window_by_join`, else counted by a dependent
  subquery; `CONCAT` of the values as its identity):
  PyMySQL decodes a row in pure Python, so the rows never reach the client: one row comes back, the keys of more
  than one row with their counts as one `GROUP_CONCAT` and the keys of one row as another, which
  `group_concat_max_len` may cut short (the run then re-counts every known group, or is a full pass where the
  keys of more than one row were cut). No transaction id of a row can be
  read (InnoDB's `DB_TRX_ID` is hidden), so each run takes a digest of the overlap window the next run re-reads
  (`window_digest`: the rows' count and the exact sum of a 64-bit hash of each row's integer columns, the CRC32
  of their decimal text and that of their hexadecimal text, `N` for NULL), and the next run re-reads the window
  and counts its keys again only where the digest differs (a late commit, a delete, a `REPLACE INTO` with another
  key, a key update).
- The planner's estimate is the rows `EXPLAIN` expects the outer query to read.
- An AUTO_INCREMENT column's position is `information_schema.TABLES.AUTO_INCREMENT` (the next value), taken one
  insert at a time (no cached ranges). A column without AUTO_INCREMENT has none to read
  (`reads_sequence_position`): its runs read the highest id, the window digests and the new rows in one statement.
- `information_schema.INNODB_TRX.trx_started` says when each running InnoDB transaction began (PROCESS privilege).
  The oldest that has modified a row (`trx_rows_modified > 0`; a read-only one widens nothing, a writing one of
  any table of the server widens the window as much), against `NOW(6)`, read in the statement that reads the
  table's highest value (`writers_columns`), bounds the AUTO_INCREMENT values a transaction still running may hold.
  InnoDB refreshes what `INNODB_TRX` shows at most every 0.1 s, and `trx_started` has whole seconds (read
  earlier: a wider window, never a narrower one).
- No count of deleted or updated rows (`removed_rows`) is read: `performance_schema` and `userstat` are off by
  default, and `INNODB_SYS_TABLESTATS.MODIFIED_COUNTER` counts inserts, is reset whenever the table's statistics
  are recalculated, and counts a `REPLACE INTO` that moves a row to another key as one change (MariaDB 10.11).
- The storage identity (`storage_identity_column`) is the InnoDB table id of the table and of each partition
  (`information_schema.INNODB_SYS_TABLES`, MySQL 8.0's `INNODB_TABLES`; PROCESS privilege), read in the statement
  that reads the table's highest value: `TRUNCATE`, a table dropped and created again or renamed in its place, a
  rebuild (`OPTIMIZE`, `ALTER TABLE ... FORCE`, a copying `ALTER TABLE`) and truncating, adding, dropping or
  exchanging a partition each give an id InnoDB never handed out before (`CREATE_TIME` stays as it was across
  a `TRUNCATE` on MariaDB 10.11). The catalog names a table by its file name (`db/name`, `#P#` before a
  partition's name, a character beyond `[0-9A-Za-z_]` as `@` and four hexadecimal digits): a name beyond ASCII,
  or a table of another engine, has none. InnoDB lists every table of the server for each read (no condition
  reaches it): 0.1 ms with a few tables, 4-5 ms with 1,000 (MariaDB 10.11), against a poll of about 10 ms, so an
  incremental run reads it at most every `storage_identity_every` seconds (a full pass at each run).
- MariaDB cannot index an expression ("Generated Columns"), so a normalised key gets an explanation, with MySQL
  8.0.13+'s functional index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.polling import (
    Polling,
    SequencePosition,
    StatementCache,
    compiled_create_index,
    expr_text,
    leads,
)

_MYSQL: sa.engine.Dialect = mysql.dialect()  # how CREATE INDEX is written

if TYPE_CHECKING:
    from monitor.detect import TableCheck

_AUTO_INCREMENT = sa.text("SELECT AUTO_INCREMENT FROM information_schema.TABLES"
                          " WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t")
# The InnoDB catalog of tables: MariaDB and MySQL 5.7, then MySQL 8.0.
_INNODB_TABLES = ("INNODB_SYS_TABLES", "INNODB_TABLES")
_OLDEST_TRANSACTION = sa.text(
    "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(trx_started), NOW(6)) / 1000000 FROM information_schema.INNODB_TRX"
    " WHERE trx_mysql_thread_id <> CONNECTION_ID()")


class MySQLPolling(Polling):
    storage_identity_every = 30.0  # InnoDB's catalog costs 4-5 ms a read per 1,000 tables on the server

    def database_identity_statements(self, conn: Connection) -> list[str]:
        return ["SELECT @@hostname, @@port, DATABASE()"]

    def served_by_index(self, conn: Connection, table: sa.Table, exprs: Sequence[ColumnElement[Any]]) -> bool:
        """Reflected indexes by column; MariaDB cannot index an expression, so a normalised key is never served."""
        if any(not isinstance(e, sa.Column) for e in exprs):
            return False
        indexes = [list(table.primary_key.columns.keys())]
        indexes += [[c for c in ix["column_names"] if c]
                    for ix in sa.inspect(conn).get_indexes(table.name, schema=table.schema)]
        wanted = [e.name for e in exprs if isinstance(e, sa.Column)]
        return any(leads(columns, wanted) for columns in indexes if columns)

    def index_statement(self, table: sa.Table, exprs: Sequence[ColumnElement[Any]], name: str) -> str:
        if all(isinstance(e, sa.Column) for e in exprs):
            return compiled_create_index(table, sa.Index(name, *exprs), _MYSQL)
        functional = [e if isinstance(e, sa.Column) else sa.Grouping(e) for e in exprs]
        return (f"(MariaDB/MySQL before 8.0.13 cannot index {', '.join(expr_text(e) for e in exprs)}: the key "
                "lookups of incremental runs read the whole table; on MySQL 8.0.13+: "
                + compiled_create_index(table, sa.Index(name, *functional), _MYSQL) + ")")

    def estimated_cost(self, conn: Connection, statement: sa.Select[Any]) -> float | None:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        result = conn.exec_driver_sql(f"EXPLAIN {compiled}")
        columns = list(result.keys())
        rows = [dict(zip(columns, row, strict=True)) for row in result]
        outer = [r for r in rows if str(r.get("id")) == "1"]
        return float(sum(float(r.get("rows") or 1) for r in outer)) if outer else None

    def key_batch_size(self, width: int, *, indexed: bool) -> int:
        return 500 if indexed else 1_000_000  # without an index, one scan for all the keys

    def counts_keys_as_json(self, columns: Sequence[sa.Column[Any]]) -> bool:
        return all(isinstance(c.type, sa.Integer) and not isinstance(c.type, sa.Boolean) for c in columns)

    def changed_counts(self, conn: Connection, resolved: TableCheck, document: str,
                       cache: StatementCache | None = None) -> list[tuple[int, int]]:
        """The keys as `JSON_TABLE` rows, each counted by a dependent subquery that looks the key up in its index;
        only the keys whose count differs from the expected one, and is a group or was one, come back (ordinal,
        count)."""

        def build() -> sa.Select[Any]:
            exprs = resolved.key_exprs
            types = [c.type.compile(dialect=conn.dialect) for c in resolved.key_columns]
            columns = ", ".join(f"k{i} {kind} PATH '$[{i}]'" for i, kind in enumerate(types))
            source = sa.text(f"JSON_TABLE(:dupewatch_keys, '$[*]' COLUMNS (ord FOR ORDINALITY, {columns}, "
                             f"expected BIGINT PATH '$[{len(exprs)}]')) AS dupewatch_keys")
            size = (sa.select(sa.func.count()).select_from(resolved.table).where(
                *resolved.filters, *[e == sa.literal_column(f"dupewatch_keys.k{i}") for i, e in enumerate(exprs)])
                .scalar_subquery())
            counted = sa.select(sa.literal_column("dupewatch_keys.ord").label("ord"), size.label("n"),
                                sa.literal_column("dupewatch_keys.expected").label("expected")).select_from(source)
            inner = counted.subquery("counted")
            return sa.select(inner.c.ord, inner.c.n).where(
                inner.c.n != inner.c.expected, sa.or_(inner.c.n > 1, inner.c.expected > 0))

        kept = cache if cache is not None else StatementCache()
        rows = kept.execute(conn, "changed_counts", build, {"dupewatch_keys": document})
        return [(int(ordinal), int(count)) for ordinal, count in rows]

    def counts_window_on_server(self, columns: Sequence[sa.Column[Any]]) -> bool:
        return all(isinstance(c.type, sa.Integer) and not isinstance(c.type, sa.Boolean) for c in columns)

    # MariaDB runs a dependent subquery anew for each row read (its profile shows an `Executing`/`Sending data`
    # pair per row): 1,000 rows counted through the key's index took 2.5 ms as a subquery, 1.8 ms as a join
    # grouped by the primary key (read in its order: no temporary table).
    counts_window_by_join = True

    # PyMySQL: SQLAlchemy's execution context and `Row` cost 0.44 ms of the client's CPU time for the run's one
    # statement, its driver cursor 0.22 ms (300 alternations, load 3-4).
    reads_row_on_driver = True

    def window_digest(self, exprs: Sequence[ColumnElement[Any]]) -> ColumnElement[str] | None:
        """`count(*)` and the sum (exact: DECIMAL) of a 64-bit hash of each row's values, as `count:sum`: the CRC32
        of the values' decimal text (`N` for NULL in a nullable column, comma-separated) shifted above the CRC32 of
        their hexadecimal text (two texts whose bits differ for values from 10 on; below, the two CRCs are one, 32
        bits). MD5's first 64 bits cost 1.0 ms per 1,000 rows against 0.3-0.4 ms. Integer columns only (their text is
        their stored value; a sum, unlike a XOR, does not cancel two equal rows); None for any other."""
        if not all(isinstance(e.type, sa.Integer) and not isinstance(e.type, sa.Boolean) for e in exprs):
            return None

        def spelled(e: ColumnElement[Any], text: ColumnElement[Any]) -> ColumnElement[Any]:
            # A NOT NULL column (as reflected: a primary key, a key counted on the server) needs no `N`: its part
            # is never left out of the text (the COALESCEs of five columns cost about 0.1 ms per 1,000 rows).
            return text if isinstance(e, sa.Column) and not e.nullable else sa.func.coalesce(text, "N")

        text = sa.func.concat_ws(",", *[spelled(e, sa.func.hex(e)) for e in exprs])
        decimal = sa.func.concat_ws(",", *[spelled(e, e) for e in exprs])
        hashed = sa.func.crc32(decimal).op("<<")(32).op("|")(sa.func.crc32(text))
        return sa.func.concat(sa.func.count(), ":", sa.func.coalesce(sa.func.sum(hashed), 0))

    def database_clock(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        """`NOW(6)` in the session's time zone (DATETIME and TIMESTAMP read back in it), `CURDATE()` for DATE."""
        if isinstance(column.type, sa.DateTime):
            return sa.type_coerce(sa.func.now(6), column.type)
        return sa.type_coerce(sa.func.curdate(), column.type)

    def reads_sequence_position(self, column: sa.Column[Any]) -> bool:
        return column.autoincrement is True

    def sequence_position(self, conn: Connection, table: sa.Table, column: sa.Column[Any]) -> SequencePosition | None:
        if not self.reads_sequence_position(column):  # reflection says AUTO_INCREMENT (information_schema's EXTRA)
            return None
        row = conn.execute(_AUTO_INCREMENT, {"s": table.schema, "t": table.name}).first()
        if row is None:
            return None
        following = row[0]
        name = f"the AUTO_INCREMENT of {table.name}"
        if following is None:
            return SequencePosition(name, None, why_unknown=f"information_schema does not show {name}")
        return SequencePosition(name, int(following) - 1)

    def writers_columns(self, conn: Connection) -> tuple[tuple[ColumnElement[Any], ColumnElement[Any]] | None, str]:
        try:
            with conn.begin_nested():
                # a row read, not `LIMIT 0`: InnoDB asks for PROCESS only when it fills the table
                conn.execute(sa.text("SELECT 1 FROM information_schema.INNODB_TRX LIMIT 1")).all()
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:  # a lost connection, not a missing privilege
                raise
            return None, "the role cannot read information_schema.INNODB_TRX (grant it PROCESS)"
        clock = sa.func.unix_timestamp(sa.func.now(6))
        oldest = (sa.select(sa.func.unix_timestamp(sa.func.min(sa.literal_column("trx_started"))))
                  .select_from(sa.text("information_schema.INNODB_TRX"))
                  .where(sa.text("trx_mysql_thread_id <> CONNECTION_ID() AND trx_rows_modified > 0"))
                  .scalar_subquery())
        return (clock, oldest), ""

    def storage_identity_column(self, conn: Connection, table: sa.Table) -> ColumnElement[Any] | None:
        """The InnoDB table ids of the table and its partitions (how many, the highest, their sum) as text
        (NULL for a table InnoDB does not hold); None where the role cannot read the catalog or the table's name
        has no file name here."""
        schema = table.schema or conn.execute(sa.text("SELECT DATABASE()")).scalar()
        stored = _file_name(str(schema)) if schema else None
        name = _file_name(table.name)
        if stored is None or name is None:
            return None
        for catalog in _INNODB_TABLES:
            tables = sa.table(catalog, sa.column("TABLE_ID"), sa.column("NAME"), schema="information_schema")
            try:
                with conn.begin_nested():
                    conn.execute(sa.select(tables.c.TABLE_ID).limit(1)).all()  # LIMIT 0 would not ask for PROCESS
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:  # a lost connection, not a missing privilege
                    raise
                continue  # not this server's catalog, or the role lacks PROCESS
            whole = f"{stored}/{name}"
            escaped = whole.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # How many, the highest and the sum: InnoDB hands out table ids in increasing order, so a truncated or
            # rebuilt table or partition (a new id, above all others), one added or dropped, changes it; a list of
            # every id would be cut at group_concat_max_len (1,024 bytes by default on MySQL: 200 partitions).
            ids = sa.func.concat(sa.func.count(), ":", sa.func.max(tables.c.TABLE_ID), ":",
                                 sa.func.sum(tables.c.TABLE_ID))
            named = tables.c["NAME"]
            return (sa.select(ids).select_from(tables)
                    .where(sa.or_(named == whole, named.like(escaped + "#P#%", escape="\\")))
                    .scalar_subquery())
        return None

    def oldest_transaction_age(self, conn: Connection) -> tuple[float | None, str]:
        try:
            with conn.begin_nested():
                age = conn.execute(_OLDEST_TRANSACTION).scalar()
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:  # a lost connection, not a missing privilege
                raise
            return None, "the role cannot read information_schema.INNODB_TRX (grant it PROCESS)"
        return (float(age) if age is not None else 0.0), ""


def _file_name(name: str) -> str | None:
    """`name` as InnoDB's catalog spells it (MariaDB's `tablename_to_filename`: a character beyond `[0-9A-Za-z_]`
    as `@` and its code in four hexadecimal digits), or None beyond ASCII (spelled from a table of its own)."""
    if not name.isascii():
        return None
    return "".join(c if c.isalnum() or c == "_" else f"@{ord(c):04x}" for c in name)

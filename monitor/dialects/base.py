"""What every database dialect must provide; the rest of dupewatch asks a `Dialect`, never a dialect's name.

A new database (CockroachDB, YugabyteDB, ...) is one new module with a `Dialect` subclass, registered in
`monitor.dialects.for_backend`, plus its tests (run the `db` fixture's suite against it). A subclass provides:

Connections (`monitor.db`)
- `name`: the short name used in configuration-free places (`postgresql`, `mysql`, `sqlite`).
- `connect_args(url, read_only, timeout)`, `engine_options(read_only)`: driver arguments (connect timeout, TCP
  keepalives, session options) and pool options.
- `prepare_session(dbapi, read_only, timeout, client_deadline)`: run once per new DBAPI connection: read-only
  session mode, the statement timeout; on a writing connection, the driver's own bound on each wait for the server
  (`client_deadline`: the statement timeout and a grace) where it has one.
- `driver_bounds_waits`: whether the driver bounds each wait for the server by itself (a socket timeout set in
  `prepare_session`), or there is no server; else `statement_in_progress(dbapi)` says whether the connection waits
  for a statement's (or a COMMIT's) answer now, and a fix's connection has the client-side deadline of
  `monitor.db` while it does.
- `reset_session(dbapi, rolled_back_after)`: run when a detection connection returns to the pool: release
  whatever a query can leave behind on the session (advisory/named locks, settings), so that the next check
  starts clean; the pool rolls the session back right after where `rolled_back_after` says so.
  `releases_before_return`, `release_session(dbapi)`: where True, a read-only block (`Database.read_only`) ends
  its session itself, under the statement deadline (the release, then one rollback), and the pool sends nothing.
- `install(engine, read_only)`: engine events the dialect needs (SQLite: Unicode case folding, `BEGIN IMMEDIATE`
  for writers; PostgreSQL: the extended protocol for every statement).
- `reflected_column_name(name)`: a reflected column name corrected (MySQL reflection doubles backticks).
- `missing_database(url)`: a reason when the URL points at nothing (a SQLite file that does not exist).
- `database_file(url)`: the file a file database lives in (SQLite), None for a server: its identity on disk
  (device and inode) tells a replaced file, and is what a run measured (`Database.server_place`).
- `server_identity(conn)`: what the server says it is, and the database the session is in, so that two URLs
  naming one server (`localhost`, `127.0.0.1`) share run history; None where the server cannot say.
- `arm_statement_deadline(dbapi, timeout)` / `disarm_statement_deadline(dbapi)`: databases without a server-side
  statement timeout enforce one from the client (SQLite).
- `cancel(dbapi, url, timeout)`: cancel the statement running on `dbapi` from another thread.
- `sever(dbapi)`: shut the connection's socket so that a thread blocked on a frozen server returns.
- `is_timeout(message)`: whether an error's first line is the server's statement timeout;
  `conflict(error)`: what a driver error says when the server rolled the transaction back to resolve a conflict
  (deadlock victim, lock wait timeout, serialization failure), which trying the batch again can resolve;
  `write_refused_markers`: what its refusal of a write in a read-only session says.
- `refused_call(conn, statement)`: why a custom query or a table check's `where` must not run, decided by the
  server's own reading of the statement (its resolved functions, its row locks), not by a lexer of ours.
- `unknown_column(conn, statement)`: the database's complaint when a table check's `where` names a column its
  table lacks, reading a double-quoted name as a name (the SQL standard) where the database would otherwise take
  an unknown one for a string (SQLite, MySQL/MariaDB without ANSI_QUOTES); None when every name resolves.

Detection (`monitor.detect`, `monitor.engine`)
- `ungroupable_key(conn, table, column, expr)`: why the database cannot group a key column, as it says; or None.
- `row_in_operand(value, comparison)`: a key value as a row IN must meet it (MariaDB: in the column's character set).
- `case_fold(expr)`, `trim(expr)`: how `case_insensitive` / `trim_whitespace` normalise text.
- `sent_width(expr)`: the bytes a value of `expr` takes as the server sends it (its text, or its bytes), measured
  by the server before it is sent: a custom query's page of rows is bounded by it (`monitor.detect.custom_rows`).
- `row_identity(is_view)`, `row_identity_order`: what tells rows apart without a primary key.
- `nulls_first(clause)`: an ascending ORDER BY clause that puts NULL first.
- `timestamp_type(column)`: the type min()/max() of a timestamp column is read back as.
- `shown_columns(table)`: the columns a group's rows are shown with.
- `as_stored(expr)`: a key expression read and bound back as the database stores it, where the Python type's
  conversion both ways would not give back the stored value (SQLite's `DATETIME` text, MySQL's `DOUBLE` read as a
  Decimal of 10 places and `TIME` as a time of day), so that a group's key values, read by the drill-down or an
  incremental pass and bound again, find the group's rows.
- `compared_apart(conn, table)`: the columns whose `=` the catalog says finds values stored apart equal beyond
  what their reflected type tells (a PostgreSQL nondeterministic collation, an extension's type reflection does
  not know, a MariaDB/MySQL PAD SPACE collation, SQLite's NOCASE or RTRIM declared on a column), and how
  (`Comparison`); `group_identity(expr, comparison)` then identifies a key's group as that
  `=` does (the database computes the identity, in the column's collation), so that a group is one group whichever
  spelling `GROUP BY` returns.
- `stream_value(column, value)`: a key value of `column` as a typed change stream gives it (MySQL's binary log),
  bound as the database stores it (`as_stored`'s type; a `TIMESTAMP` arrives as UTC), for live mode's re-counts;
  `stream_values_plain(column)`: whether that is every value as itself (a list is then bound at once).
- `missing_schema(exc)`: whether a reflection error means the schema does not exist.
- `resolved_schema(conn, name)`: the schema the server finds an unqualified table in when that is not the
  connection's default schema (PostgreSQL's `search_path`), so that every statement names the same table.

Fleet mode (`monitor.fleet`)
- `list_databases(conn)`: the databases of the server the role may connect to, system ones left out; raises
  `FleetUnsupported` where there is no server to ask (SQLite).
- `connect_refusal(exc)`: what a failed connect means by the code the server or the driver gave it: the whole
  server refusing (`"server"`: down, unreachable, not accepting connections), out of connections for us
  (`"exhausted"`: a `CONNECTION LIMIT`, `max_connections`, `max_user_connections`), or one database
  (`"database"`: it does not exist, the role may not connect); None when there is no code and the server must be
  asked (`monitor.fleet.refusal`), with:
- `database_refusal(conn, database)`: on a connection to the source's own database, why the server refuses
  `database` to this role (missing, closed to connections, no privilege, at its own connection limit), or None;
- `connections_left(conn)`: whether the server and the role still had a connection left beside this one;
- `answers(url, connect_timeout)`: whether the server at the URL's address answers at all (whatever it says).
- `target_url(url, database, schema)`: the URL of one target: the server's URL for another database, and (with
  `schema`) unqualified names resolved in that schema (PostgreSQL's `search_path`; MySQL's schema is a database).

Fixes (`monitor.fix`, the capabilities the fix's branches move onto)
- `for_update(statement, table)`: a locking SELECT (or the statement itself where the transaction already
  holds the write lock).
- `partitioned_tables`, `is_partitioned(conn, table)`: whether a table can be a partitioned parent, and whether
  this one is (a fix cannot tell its rows apart without a primary key).
- `row_locks`: whether a locking read (`FOR UPDATE`) is needed to keep other writers off rows (False where the
  transaction holds the whole database's write lock already, as SQLite's `BEGIN IMMEDIATE` does).
- `delete_using`: whether a DELETE's WHERE may name another table (`DELETE ... USING`, a multi-table DELETE);
  else a join is an `EXISTS`.
- `column_names_fold`: whether two column names differing only in case name one column (MySQL/MariaDB, SQLite),
  so that a table cannot hold both.
- `storage_type(kind)`: the type a column stores its values as, without what it declares beside (a
  PostgreSQL domain's CHECKs), for converting a value to it.
- `enforces_column_types`: whether a column refuses, rounds or truncates a value of another type or size.
  `refused_value(conn, table, column, values)`: where it does not, whether this table's column still refuses one
  of `values` (SQLite STRICT): the database's words for the first it refuses, else None.
- `error_aborts_transaction`: whether a failed statement aborts the whole transaction (PostgreSQL), so that
  nothing more can be asked in it.
- `serialise_table_creation(conn, key)`: serialise creating the same tables from concurrent sessions for the
  rest of the transaction, where `CREATE TABLE IF NOT EXISTS` alone can fail when two race (PostgreSQL).
- `fix_isolation_level`: the isolation level a fix's session uses, or None for the default.
- `whole_table_statement(conn)`: a context around statements that sort the whole table (the plan's snapshot, the
  dry run's preview): session settings that let them keep their internal temporary tables in memory, up to a
  bound, restored afterwards (MariaDB/MySQL); nothing elsewhere.
- `named_lock(key)`: statements taking and releasing a session-level lock without waiting, or None where a file
  lock is used instead.
- `comparable(column)`: whether `=` / DISTINCT work on the column; `exact(column)`: its value as stored.
  `stored_identity(column, kind)`: a form equal exactly when stored values are (undo's check of restored rows).
- `returning_delete`: whether a DELETE can return its rows (one statement archives and deletes).
- `partition_is_equality`: whether PARTITION BY groups exactly as `=` compares (the plan's keys need no window).
- `archive_tag_index`: the index method (`USING ...`) of an archive's fix-id index, None for the default.
- `refresh_statistics`, `relax_batch_durability`, `prepare_snapshot`: session settings and upkeep around the
  snapshot and the batches (statistics of the plan table, commits a crash may lose, a sort-bound statement).
- `case_fold_indexable`: whether an index may use `case_fold()` (False where it is a function only dupewatch's
  connections have).
- `concurrent_index_build`, `nulls_not_distinct(version)`, `expression_index(version)`, `partial_index`,
  `index_options(...)`: what the guard's unique index can be built with.
- `column_collations(conn, table)`: the catalog's collation of each column (a catalog query reflection lacks).
- `declared_types(conn, table)`: each column's type as DDL text from the catalog (for types reflection lacks).
- `catalog_types(conn, table)`: column types that compare with the catalog's equality operator where reflection
  would compare wrongly (PostgreSQL: a type whose `=` is outside the search_path, such as `citext` elsewhere).
- `non_transactional_engine(conn, table)`: the table's storage engine when it cannot roll back (MyISAM).
- `unrollable_tables(conn, limit)`: base tables the role can see whose engine cannot roll back (MyISAM, Aria),
  anywhere on the server, for a trigger the fix's writes fire (a trigger body may write any of them); and
  `rollback_kept(conn)`: whether the rollback just done left such a table's changes in place (MariaDB 1196).
- `violated_check(exc)`: the CHECK constraint (and its table) an error names, where the database reports a
  CHECK violation as an error of its own class (MariaDB 4025), else None.
- `check_constraints(conn, table)`: the table's enforced CHECK constraints, each with its expression as the
  server itself writes it (`CheckConstraint`), for the dry run to evaluate on the rows as a repoint would leave
  them; None where the database keeps them only inside the table's DDL text (SQLite), which dupewatch does not
  parse.
- `domain_constraints(conn, table)`: for each column whose type is a domain (PostgreSQL), the CHECK constraints and
  NOT NULL of that domain and of every domain beneath it (`ColumnDomain`), which an UPDATE assigning the column
  enforces on the value it writes; {} where the database has no domains.
- `plain_index_enforces_case_insensitive(collation)`: whether a plain unique index on a column with this collation
  already enforces `case_insensitive` (MariaDB/MySQL `_ci` collations), so no expression index is needed.
- `server_version(conn)`: the server's version, for the features above.

The watermark poll (`monitor.incremental`): inherited from `monitor.dialects.polling.Polling`, whose docstring
lists what a database can say (its clock, a sequence's position and cache, the oldest running transaction, the
planner's cost, how keys are counted); each dialect's `*_polling.py` says it.

A fix batch's account (`monitor.fix.accounting`): what the transaction changed, as the database counts it
- `changes_so_far(conn)`: rows the session's open transaction (or session) has inserted, updated and deleted so
  far, per table where the database says (PostgreSQL), else for all tables (`ALL_TABLES`); kinds the database does
  not tell apart are `ANY_CHANGE` (SQLite). None where the database keeps no such count. PostgreSQL also
  counts what no row count of a user table shows (`UNCOUNTED_KINDS`): system catalog rows changed, tables the
  transaction holds ACCESS EXCLUSIVE on (truncated, altered, dropped), foreign tables it writes.
- `counted_as(conn, table)`: the name under which `changes_so_far` counts a table's changes (`ALL_TABLES` where it
  counts the session only); `counted_kind(kind)`: the kind a change is counted as; `counted_under(conn, table,
  kind)`: every (name, kind) count one planned change of `table` adds to (a MariaDB system-versioned table's
  DELETE is counted as an UPDATE, its UPDATE as an UPDATE and a history row's write).
- `bounded_statements(conn, seconds)`: bound the statements run inside the fix's own open transaction where no
  second connection can read beside it (SQLite's progress handler); `bounded_read` is the others' bound.
- `read_only_planning(conn)`: make the transaction just begun on a writing connection read-only (the dry run plans
  with the fix role's eyes); `roles`: whether the writing URL can see other rows than the detection URL (SQLite
  has no roles: the dry run plans on the detection connection).
- `ddl_fires_triggers`: whether something may fire on the fix's, undo's and guard's DDL and write rows (PostgreSQL
  event triggers): each transaction running that DDL is then accounted for; `ddl_triggers(conn, tags)` names them.
- `account_sees`: what a batch's account counts beyond rows of the tables the plan names, and what it cannot see
  (a clause for the dry run's note on a trigger the fix fires; "" where the note needs none).
- `unseen_references(conn, table)`: why the fix role may not see every foreign key or trigger that a write to
  `table` sets off (information_schema hides tables the role has no privilege on), or None.
- `replication_blockers(conn, table, writes)` / `replication_notes(conn, tables)`: what a publication makes of the
  fix's writes (PostgreSQL logical replication).
- `privilege_refusal(error)`, `grantee(conn)`: whether an error is the database refusing a statement for a
  missing privilege (its code, as the database gives it), and the session's role as a GRANT names it
  (`monitor.fix.privileges` EXPLAINs each kind of write a fix makes, as the fix role, and names what to grant).
- `violated_unique(exc)`: which unique constraint or index a unique violation names (its name, or its columns
  where the database names only those, as SQLite does); `transactional_ddl`: whether DROP INDEX is rolled back
  with the transaction it ran in.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.polling import Polling

Writing = TypeVar("Writing", sa.Insert, sa.Update)

if TYPE_CHECKING:
    from monitor.live.changes import ChangeStream


class FleetUnsupported(Exception):
    """This database cannot be a fleet source (one line, for the config's source)."""


# Why a fleet target's connect failed: the whole server refusing (down, unreachable, not accepting connections),
# the server out of connections for us, or only the target's database refusing.
Refusal = Literal["server", "exhausted", "database"]


@dataclass(frozen=True)
class CheckConstraint:
    """A CHECK constraint as the server states it: `name`, and `expression`, the server's own text of its condition
    (deparsed from the catalog), to be evaluated over a row source exposing the table's column names. `volatile`:
    a VOLATILE function the expression calls (PostgreSQL), which the dry run does not run (it may write), or None."""

    name: str
    expression: str
    volatile: str | None = None
    domain: str | None = None  # the domain whose constraint this is (its name as the server writes it), else None


@dataclass(frozen=True)
class ColumnDomain:
    """A column whose type is a domain: `base`, the type beneath all its domains as the server names it (the type
    of `VALUE` in their expressions), and `constraints`, the CHECK constraints of its domain and of each domain that
    one is based on, outermost first (each `CheckConstraint.domain` set; its expression refers to the value as
    `VALUE`), a domain's NOT NULL among them as the constraint `NOT NULL`, `VALUE IS NOT NULL`."""

    base: str
    constraints: tuple[CheckConstraint, ...]


@dataclass(frozen=True)
class NamedLock:
    """Session-level lock statements: `acquire` returns a true scalar when the lock was taken without waiting."""

    acquire: sa.TextClause
    release: sa.TextClause
    what: str


# A batch's row changes as a database counts them: (table, kind) -> rows. See `Dialect.changes_so_far`.
ChangeCounts = dict[tuple[str, str], int]
ALL_TABLES = ""  # the table of a count the database keeps for the whole session
ANY_CHANGE = "changed"  # the kind of a count that does not tell inserts, updates and deletes apart
INSERTED, UPDATED, DELETED = "inserted", "updated", "deleted"
# Kinds of what a database may do that no plan writes and no row count shows (PostgreSQL): rows of a system catalog
# changed (DDL, TRUNCATE's new file, a large object's lo_unlink), a table truncated, dropped or altered (the
# transaction holds ACCESS EXCLUSIVE on it), a foreign table written (its rows are another server's, counted
# nowhere). A count of 1 per table for the last two: the transaction holds that lock.
CATALOG_CHANGED, TRUNCATED, FOREIGN_WRITTEN = "changed in a system catalog", "truncated", "written through"
UNCOUNTED_KINDS = frozenset({CATALOG_CHANGED, TRUNCATED, FOREIGN_WRITTEN})


@dataclass(frozen=True)
class Comparison:
    """How the catalog says `=` compares a column's values, where it finds values stored apart equal and the
    reflected type does not say so (`Dialect.compared_apart`)."""

    # a nondeterministic collation (PostgreSQL); the citext extension's type; a collation that pads with spaces
    # ('x' = 'x  ': MariaDB/MySQL PAD SPACE); a collation declared on the column (SQLite's NOCASE and RTRIM); a
    # character set whose row IN is not its `=` (`row_in`), and no more; an array of citext (compared element by
    # element as citext)
    kind: Literal["collation", "citext", "citext array", "pad space", "declared collation", "character set"]
    version: str = ""  # the collation's version as its library reports it now: another may compare otherwise
    # Whether an unqualified `=` finds the type's own operator: one whose schema is off the search_path is not
    # found, and `col = value` compares the value as text (case-sensitively) where GROUP BY uses the type's.
    visible: bool = True
    type_name: str = ""  # the type as the server names it (`ext.citext`), for a message
    name: str = ""  # the collation, where the kind alone does not say how it compares (`pad space`, `declared ...`)
    # Whether the server's row IN (`(a, b) IN ((..), ..)`) finds the column's values as `=` does: MariaDB's does
    # not for a utf16, utf32 or ucs2 column beside values sent in the connection's utf8mb4 (it finds none), as
    # the server says of the column's character set and collation; a look-up of keys then compares them by `=`.
    row_in: bool = True
    character_set: str = ""  # the column's, where `row_in` is False: a value is converted to it (`row_in_operand`)

    @property
    def fingerprinted(self) -> tuple[str, ...]:
        """What a state's fingerprint keeps of it: another collation identifies groups otherwise."""
        return (self.kind, self.version, self.name) if self.name else (self.kind, self.version)


@dataclass(frozen=True)
class UniqueViolation:
    """What the database says a unique violation broke: the constraint or index's `name`, or only its `columns`
    (of `table`)."""

    name: str | None = None
    columns: tuple[str, ...] = ()
    table: str | None = None


@dataclass(frozen=True)
class KeyViolation:
    """Rows of `table` (`rowids`: some of them, as the database lists them) referring by a foreign key (`name`,
    over `columns`) to no row of `parent`, as the database lists them."""

    table: str
    columns: tuple[str, ...]
    name: str | None
    parent: str
    rowids: tuple[Any, ...]

    @property
    def rows(self) -> int:
        return len(self.rowids)

    def since(self, before: Collection[KeyViolation]) -> KeyViolation | None:
        """These rows less those `before` listed for the same key (rows that referred to no row already)."""
        same = [b for b in before if (b.table, b.columns, b.parent) == (self.table, self.columns, self.parent)]
        if None in self.rowids or any(None in b.rowids for b in same):  # a WITHOUT ROWID table: counted, not matched
            more = self.rows - sum(b.rows for b in same)
            return dataclasses.replace(self, rowids=(None,) * more) if more > 0 else None
        old = {rowid for b in same for rowid in b.rowids}
        rowids = tuple(rowid for rowid in self.rowids if rowid not in old)
        return dataclasses.replace(self, rowids=rowids) if rowids else None

    def describe(self) -> str:
        shown = ", ".join(str(r) for r in self.rowids[:3]) + (", ..." if self.rows > 3 else "")
        which = f" (rowid {shown})" if None not in self.rowids else ""
        return (f"{self.rows} row(s) of {self.table}({', '.join(self.columns)}){which} would refer, by "
                f"foreign key {self.name or '(unnamed)'}, to no row of {self.parent}")


class Dialect(Polling):
    """The behaviour of one database family; the base class holds what most databases share."""

    name: ClassVar[str] = ""
    row_identity_order: ClassVar[str] = "insertion order"
    fix_isolation_level: ClassVar[str | None] = None
    returning_delete: ClassVar[bool] = False
    # A fix batch names its rows as `identity = ANY(ARRAY(SELECT ...))`: an index (or TID) scan however many rows
    # the planner expects (PostgreSQL); elsewhere `IN (SELECT ...)`.
    identity_array_scan: ClassVar[bool] = False
    # A row's physical address (`row_identity`), read in a fix's snapshot beside its primary key, reaches the row
    # again without an index (`ctid = ANY(ARRAY(...))` is a TID scan on PostgreSQL): a batch that re-checks each
    # row's primary key and key under its lock may use it as its access path (a row that moved is not found and
    # the batch runs the identity path instead).
    address_scan: ClassVar[bool] = False
    # Learning a query's columns runs the whole query (MySQL may, even for `WHERE 1 = 0`): they are probed once per
    # check and kept; elsewhere the probe only plans it, and runs before each page, so that a `SELECT *` whose table
    # gained a column is read whole (PostgreSQL would read a page by the columns kept, dropping the new one).
    column_probe_runs_query: ClassVar[bool] = False
    # A window's PARTITION BY puts two rows together exactly when `=` (NULL-safe) says their values are equal, so
    # a fix's plan may hold each row's own key where it otherwise holds its keeper's (`Layout.relation_select`):
    # a batch only compares a live row's key with it by `=` (PostgreSQL: both are the type's B-tree equality;
    # MariaDB sorts TEXT on its first max_sort_length bytes; SQLite compares by the left operand's collation).
    partition_is_equality: ClassVar[bool] = False
    # The index method of an archive's `dupewatch_fix_id` index (`USING ...`), or None for the default (B-tree).
    # A fix appends its rows under one id, and ids sort by time, so each fix's rows lie together: a block-range
    # summary finds them as well, at a fraction of a B-tree's cost per archived row (PostgreSQL BRIN).
    archive_tag_index: ClassVar[str | None] = None
    # A fix batch archives and deletes through joins with the plan table: an `IN (subquery)` becomes a
    # DEPENDENT SUBQUERY that scans the whole table once per batch (MariaDB).
    joined_batch_writes: ClassVar[bool] = False
    # A column without a type the fix can reflect may still be copied into its plan table (SQLite keeps any
    # value in a column declared without a type).
    stores_untyped: ClassVar[bool] = False
    # Whether a column refuses (or rounds, or truncates) a value of another type or size written into it, so that a
    # repoint copying a referred value into a narrower referencing column can fail (SQLite keeps any value).
    enforces_column_types: ClassVar[bool] = True
    concurrent_index_build: ClassVar[bool] = False
    partial_index: ClassVar[bool] = True
    case_fold_indexable: ClassVar[bool] = True
    transactional_ddl: ClassVar[bool] = True
    ddl_fires_triggers: ClassVar[bool] = False
    account_sees: ClassVar[str] = ""
    write_refused_markers: ClassVar[tuple[str, ...]] = ()
    roles: ClassVar[bool] = True
    row_locks: ClassVar[bool] = True
    delete_using: ClassVar[bool] = True
    column_names_fold: ClassVar[bool] = False
    error_aborts_transaction: ClassVar[bool] = False
    partitioned_tables: ClassVar[bool] = False
    # Live mode: why `change_stream` returns None for this database ("" when it returns a stream).
    change_stream_absent: ClassVar[str] = "dupewatch cannot read this database's change stream yet"

    # -- fleet ----------------------------------------------------------------------------------

    def list_databases(self, conn: Connection) -> list[str]:
        raise FleetUnsupported(f"{self.name} has no server whose databases can be discovered")

    def connect_refusal(self, exc: BaseException) -> Refusal | None:
        return "server"

    def database_refusal(self, conn: Connection, database: str) -> str | None:
        return None

    def connections_left(self, conn: Connection) -> bool:
        return True

    def answers(self, url: URL, connect_timeout: float) -> bool:
        return False

    def target_url(self, url: URL, database: str, schema: str | None) -> URL:
        if schema is not None:
            raise FleetUnsupported(f"{self.name} has no schemas to discover")
        return url.set(database=database)

    # -- connections ----------------------------------------------------------------------------

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        return {}

    def engine_options(self, *, read_only: bool) -> dict[str, Any]:
        return {"pool_size": 2, "max_overflow": 8, "pool_recycle": 1800, "pool_timeout": 30}

    def prepare_session(self, dbapi: Any, *, read_only: bool, timeout: float, client_deadline: float) -> None:
        """Session settings for a new connection (read-only mode, statement timeout)."""

    driver_bounds_waits = True

    def statement_in_progress(self, dbapi: Any) -> bool:
        """Whether `dbapi` waits for the server's answer to a statement now (asked where not `driver_bounds_waits`)."""
        return False

    def reset_session(self, dbapi: Any, *, rolled_back_after: bool) -> None:
        """Release what a query can leave on a session (locks, settings) before the connection is reused.
        `rolled_back_after`: the pool rolls the session back right after (else a transaction this opens is the
        dialect's to end)."""

    # Whether `Database.read_only` ends a detection session itself before the connection returns to the pool,
    # under the statement deadline: `release_session`, then the session's one rollback, last. The pool then sends
    # nothing for it (the detection engine is made with `reset_on_return=None`; a connection no read-only block
    # ended gets `reset_session` with `rolled_back_after=False`, which rolls back itself).
    releases_before_return = False

    def release_session(self, dbapi: Any) -> None:
        """Release what a query can leave on a session besides its transaction (named locks), before the rollback
        that ends its use (`releases_before_return`)."""

    # Whether the driver pings the server at the protocol level (`Dialect.do_ping`: MySQL's COM_PING, no
    # statement to parse or result to decode); else a pooled connection is pinged with `SELECT 1`.
    pings_by_protocol = False

    def install(self, engine: Engine, *, read_only: bool) -> None:
        """Engine events this dialect needs."""

    def change_stream(self, database: str, url: URL) -> ChangeStream | None:
        """The database's change stream for live mode, or None (see `change_stream_absent`)."""
        return None

    def missing_database(self, url: URL) -> str | None:
        return None

    def database_file(self, url: URL) -> Path | None:
        """The file the database lives in, for a database that is a file (its identity on disk tells whether
        it was replaced); None for a server."""
        return None

    def reflected_column_name(self, name: str) -> str:
        """A column name as reflection reported it, corrected where the reflection is known to be wrong."""
        return name

    def arm_statement_deadline(self, dbapi: Any, timeout: float) -> None:
        """Enforce the statement timeout from the client where the server has none."""

    def disarm_statement_deadline(self, dbapi: Any) -> None:
        """Undo `arm_statement_deadline`."""

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        """Cancel the statement running on `dbapi` (called from another thread); may raise."""

    def sever(self, dbapi: Any) -> None:
        """Shut the connection's socket, so that a thread blocked reading from a frozen server returns."""
        import socket

        fileno = self.socket_fileno(dbapi)
        if fileno is None:
            return
        sock = socket.socket(fileno=fileno)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()  # the driver owns the descriptor

    def socket_fileno(self, dbapi: Any) -> int | None:
        return None

    def is_timeout(self, message: str) -> bool:
        return False

    def conflict(self, error: BaseException) -> str | None:
        """What a driver error says (`deadlock`, ...) when trying the transaction again may succeed, else None."""
        return None

    def between_transactions(self, error: BaseException) -> bool:
        """Whether a driver error is a conflict between transactions (a deadlock, a lock wait or lock timeout, a
        serialization failure), which no trigger or rule raised, whether or not trying again may succeed."""
        return self.conflict(error) is not None

    def error_context(self, error: BaseException) -> str | None:
        """Where the server says a driver error was raised: PostgreSQL's CONTEXT, the functions that were running,
        innermost first (`PL/pgSQL function f() line 3 at RAISE`), '' when it names none; None where the
        database's errors carry no such diagnostics (which trigger raised one cannot be told)."""
        return None

    def is_write_refused(self, message: str) -> bool:
        """Whether an error's first line is the server refusing a write in a read-only session."""
        return any(marker in message.lower() for marker in self.write_refused_markers)

    def refused_call(self, conn: Connection, statement: str) -> str | None:
        """Why `statement` (a custom query, or the probe of a table check's `where`) must not run, or None: one
        line, `<call> is not allowed in a check: <why>`. Decided by the server's own reading of the statement,
        without running it, on `conn` (a read-only session). A database that cannot say which functions a
        statement calls refuses every custom statement."""
        return "custom SQL is not allowed in a check: dupewatch cannot ask this database what a statement calls"

    def unknown_column(self, conn: Connection, statement: str) -> str | None:
        """The database's complaint about a name in `statement` that is no column, double-quoted names read as
        names; None when all resolve. By default None: the database reads `"name"` as a name already, so running
        the statement reports an unknown one (PostgreSQL)."""
        return None

    # -- detection ------------------------------------------------------------------------------

    def row_in_operand(self, value: ColumnElement[Any], comparison: Comparison | None = None) -> ColumnElement[Any]:
        """A key value as a row IN (`(a, b) IN ((..), ..)`) must meet it to find the column's values as `=` does
        (`Comparison.row_in`): the value itself, but where the server says its row IN does not."""
        return value

    def ungroupable_key(self, conn: Connection, table: sa.Table, column: sa.Column[Any],
                        expr: ColumnElement[Any]) -> str | None:
        """Why the database cannot group key `column` (as the check compares it: `expr`), as it says; None where
        it groups every type (MySQL/MariaDB, SQLite)."""
        return None

    def case_fold(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.func.lower(expr)

    def trim(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.func.trim(expr)

    def sent_width(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.func.length(expr, type_=sa.BigInteger())

    def row_identity(self, *, is_view: bool) -> ColumnElement[Any] | None:
        return None

    def counter_identity(self, table: sa.Table) -> sa.Column[Any] | None:
        """A column a table without a primary key or physical row identity numbers its rows by (MariaDB/MySQL:
        its AUTO_INCREMENT column, which need only lead some index, not a unique one), or None. The value is not
        guaranteed unique (an explicit insert may repeat it): a fix that tells rows apart by it proves, per group
        and under its locks, that no value repeats (`plan.Layout`)."""
        return None

    def row_origin(self, table: sa.Table) -> ColumnElement[Any] | None:
        """Which table a row read through `table` lives in, where a query of a table also reads the rows of other
        tables that may repeat its primary key and its row addresses (PostgreSQL inheritance children:
        `tableoid`); None where none does."""
        return None

    def nulls_first(self, clause: Any) -> Any:
        """An ascending ORDER BY clause with NULL first (the default of MySQL and SQLite)."""
        return clause

    def nulls_last(self, clause: Any) -> Any:
        """A descending ORDER BY clause with NULL last (the default of MySQL and SQLite)."""
        return clause

    def timestamp_type(self, column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
        return column.type

    def shown_columns(self, table: sa.Table) -> list[ColumnElement[Any]]:
        return list(table.columns)

    def refused_value(self, conn: Connection, table: sa.Table, column: str, values: sa.Select[Any], *,
                      referred: tuple[sa.Table, str, str] | None = None) -> str | None:
        """Where columns take any value (`enforces_column_types` False): the database's words for the first of
        `values` (one column, as stored) that `table.column` would refuse, or None. With `referred` (the table,
        column and collation a foreign key of `table.column` refers to and compares under), also the first value
        the column would store as one that no longer refers to it."""
        return None

    def storage_type(self, kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
        """The type a column of type `kind` stores its values as, for converting a value to it without running
        anything the type declares beside (a PostgreSQL domain's CHECK constraints, which the fix evaluates
        itself): `kind` itself, where nothing is declared beside."""
        return kind

    def as_stored(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """`expr` as a group's key value is read and bound back: the value the driver returns, which psycopg and
        PyMySQL bind back exactly (temporal and decimal values at the column's precision; a single-precision
        float is rounded again by `detect.key_equals`). A float column SQLAlchemy would read as a Decimal of
        fixed scale (MySQL's `DOUBLE`, 10 places: 1e-300 became 0) is read as the float the driver returns."""
        kind = expr.type
        if isinstance(kind, sa.Float) and kind.asdecimal:
            return sa.type_coerce(expr, sa.Double() if isinstance(kind, sa.Double) else sa.Float())
        return expr

    def stream_value(self, column: sa.Column[Any], value: Any) -> ColumnElement[Any]:
        """`value` of `column`, as a typed change stream gives it, bound as the database stores it: in the type
        the key is read back in (`as_stored`), so that the re-count of a key the stream names finds its rows."""
        return sa.literal(value, self.as_stored(column).type)

    def stream_values_plain(self, column: sa.Column[Any]) -> bool:
        """Whether `stream_value` binds every value of `column` as itself, in `as_stored(column)`'s type: then
        a list of them may be bound as one expanding parameter (`IN (...)`), compiled once for any length."""
        return True

    def missing_schema(self, exc: sa.exc.DBAPIError) -> bool:
        return False

    def resolved_schema(self, conn: Connection, name: str) -> str | None:
        """Where the server finds the unqualified table `name`, if not in the default schema; else None."""
        return None

    # -- fixes ----------------------------------------------------------------------------------

    def refresh_statistics(self, conn: Connection, table: sa.Table) -> None:
        """After a table was filled in one statement, before it is joined: nothing to do by default."""

    @contextmanager
    def whole_table_statement(self, conn: Connection) -> Iterator[None]:
        """Around statements that sort the whole table: nothing to change by default."""
        yield

    def relax_batch_durability(self, conn: Connection) -> None:
        """In a fix batch's transaction: a server crash may lose whole batches, which a resumed fix redoes."""

    def prepare_snapshot(self, conn: Connection) -> None:
        """In the transaction that takes a fix's snapshot (one sort of the whole table): nothing by default."""

    def for_update(self, statement: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        return statement.with_for_update()

    def is_partitioned(self, conn: Connection, table: sa.Table) -> bool:
        """Whether `table` is a partitioned parent, whose rows live in its partitions."""
        return False

    def is_foreign_table(self, conn: Connection, table: sa.Table) -> bool:
        """Whether `table` is a foreign table (PostgreSQL's foreign data wrappers): its rows are another server's,
        which no account of this database counts, and it has no row identity the fix can lock and delete by."""
        return False

    def serialise_table_creation(self, conn: Connection, key: int) -> None:
        """Nothing to do where a table is created atomically (MySQL/MariaDB) or one writer excludes the others."""

    def named_lock(self, key: str) -> NamedLock | None:
        return None

    def comparable(self, column: sa.Column[Any]) -> bool:
        return True

    def exact(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return column

    def unsound_collations(self) -> frozenset[str]:
        """Collations under which this database's own query plans may find equal values apart (a wrong result of
        the library, not of the statement): the fix cannot count the rows a foreign key compared under one refers
        to. None here."""
        return frozenset()

    def referred_compares(self, child: ColumnElement[Any], value: ColumnElement[Any],
                          collation: str) -> ColumnElement[bool]:
        """`child` refers to `value` as a foreign key compares them, with the referred column's affinity and
        `collation` (`ForeignKey.compared_as`, set on SQLite only); a plain `=` elsewhere."""
        return child == value

    def stored_identity(self, column: ColumnElement[Any], kind: sa.Column[Any]) -> ColumnElement[Any]:
        """`column` (of the type of `kind`) in a form two values are `IS NOT DISTINCT FROM` in exactly when they are
        stored alike (undo asks whether the rows it restored are the archived ones): the value as stored where `=`
        works on it, its text elsewhere."""
        return self.exact(column if self.comparable(kind) else sa.cast(column, sa.Text))

    def abort_on_conflict(self, statement: Writing) -> Writing:
        """`statement` (an INSERT or UPDATE of an application table) failing on a unique conflict, whatever the
        table declares: SQLite's `UNIQUE ON CONFLICT REPLACE` would resolve it by deleting the row in the way,
        uncounted by `total_changes()`."""
        return statement

    def row_digest(self, columns: Sequence[ColumnElement[Any]]) -> ColumnElement[Any] | None:
        """One non-NULL value the database computes from `columns` of a row, equal whenever their stored values
        are: a repoint compares it before and after its UPDATE, so a BEFORE UPDATE trigger that rewrites other
        columns of the row (`NEW.updated_at := now()`) stops the batch; such a write changes no count of the
        batch's account. None where no trigger can change the row an UPDATE writes (SQLite: a trigger's own
        UPDATE is counted by `total_changes()`)."""
        return None

    def nulls_not_distinct(self, version: tuple[int, ...]) -> bool:
        """Whether a unique index can treat NULLs as equal."""
        return False

    def expression_index(self, version: tuple[int, ...], server: str = "") -> bool:
        """Whether a unique index can be on expressions such as lower(col)."""
        return True

    def column_collations(self, conn: Connection, table: sa.Table) -> dict[str, str | None]:
        """Each text column's collation as the catalog states it (reflection leaves out inherited ones); {} where
        collations do not decide equality."""
        return {}

    def non_transactional_engine(self, conn: Connection, table: sa.Table) -> str | None:
        """The table's storage engine when it cannot roll back a transaction (MySQL/MariaDB MyISAM, Aria,
        MEMORY...), else None."""
        return None

    def unrollable_tables(self, conn: Connection, limit: int = 3) -> tuple[list[str], int]:
        """The first `limit` base tables (`schema.table (ENGINE)`) the role can see, the system schemas aside,
        whose storage engine cannot roll back a transaction, and how many there are; ([], 0) where every table
        rolls back."""
        return [], 0

    def rollback_kept(self, conn: Connection) -> bool:
        """Whether the rollback just done on `conn` (its last statement) left changes of a table that cannot
        roll back in place, as the database says; False where every table rolls back."""
        return False

    def violated_check(self, exc: BaseException) -> str | None:
        """`constraint <name> of <table>` (as the database reports them) when `exc` is a CHECK violation the
        database raises as an error class of its own (not an integrity error), else None."""
        return None

    def check_constraints(self, conn: Connection, table: sa.Table) -> list[CheckConstraint] | None:
        """The CHECK constraints the database enforces on an UPDATE of `table`'s rows, in name order, each with its
        expression as the server writes it (`CheckConstraint`); [] when it has none. None where the database keeps
        them only inside the table's DDL text, which dupewatch does not parse (SQLite, unless that text has no word
        CHECK at all)."""
        return None

    def domain_constraints(self, conn: Connection, table: sa.Table) -> dict[str, ColumnDomain]:
        """For each column of `table` whose type is a domain, that domain's constraints and those of the domains
        beneath it (`ColumnDomain`), which an UPDATE assigning the column checks on the value it writes; {} where
        the database has no domains."""
        return {}

    def declared_types(self, conn: Connection, table: sa.Table) -> dict[str, str]:
        """Each column's type as the catalog declares it, as DDL text the server wrote (for a column reflection
        does not know, such as PostgreSQL's `citext` or MariaDB's `POINT`, so that the plan table can hold its
        values as they are); {} where a column without a known type can be stored untyped."""
        return {}

    def compared_apart(self, conn: Connection, table: sa.Table) -> dict[str, Comparison]:
        """The columns whose `=` finds values stored apart equal where their reflected type does not say so, as
        the catalog says; {} where the type says all (MariaDB/MySQL's `_ci` types carry their collation)."""
        return {}

    def catalog_types(self, conn: Connection, table: sa.Table) -> dict[str, sa.types.TypeEngine[Any]]:
        """Types for columns whose comparison reflection would get wrong, from the catalog, by column name (set on
        the reflected table once, so every comparison built on it compares as the database's GROUP BY does):
        PostgreSQL's types whose `=` is outside the search_path, such as `citext` in another schema; {} elsewhere."""
        return {}

    def group_identity(self, expr: ColumnElement[Any], comparison: Comparison | None = None) -> ColumnElement[Any]:
        """What identifies the group of a (normalised) key value in Python: equal exactly when the database's
        comparison says the values are equal (`comparison`: how the catalog says its column compares, where the
        type does not tell). The value itself where equality is exact."""
        return expr

    def plain_index_enforces_case_insensitive(self, collation: str | None) -> bool:
        """Whether a plain unique index on a column of this collation already compares case-insensitively."""
        return False

    def index_options(self, *, where: ColumnElement[bool] | None, nulls_not_distinct: bool) -> dict[str, Any]:
        """`sa.Index` keyword options for the guard's unique index."""
        return {f"{self.name}_where": where} if where is not None else {}

    def violated_unique(self, exc: sa.exc.DBAPIError) -> UniqueViolation:
        """The constraint or index a unique violation names, from the error's diagnostics or message."""
        return UniqueViolation()

    def enforces_foreign_keys(self, conn: Connection) -> bool:
        """Whether the database checks foreign keys on `conn`'s session (a NO ACTION key then refuses a change
        of a referred value while a row refers to it); PostgreSQL always does."""
        return True

    def violated_foreign_key(self, exc: sa.exc.DBAPIError) -> str | None:
        """The foreign key a foreign key violation names, "" when the database names none, None when `exc` is
        not a foreign key violation."""
        return None

    def defer_foreign_keys(self, conn: Connection) -> bool:
        """Where the database names no key in its refusals (SQLite) and checks them on `conn`: have it check them
        only at commit for the rest of the transaction, so that `foreign_key_violations` lists what would fail;
        False elsewhere (and nothing done)."""
        return False

    def foreign_key_violations(self, conn: Connection) -> list[KeyViolation]:
        """The rows that refer by a foreign key to no row now, as the database lists them, by key."""
        return []

    def server_identity(self, conn: Connection) -> list[str] | None:
        """What the server says it is (an identifier of its own, else the address and port it answered on) and
        the database the session is in; None where it cannot say (the URL then stands for it)."""
        return None

    def server_version(self, conn: Connection) -> tuple[int, ...]:
        """The server's version as SQLAlchemy read it when the engine first connected."""
        return tuple(int(part) for part in conn.dialect.server_version_info or () if isinstance(part, int))

    # -- a batch's account ----------------------------------------------------------------------

    def changes_so_far(self, conn: Connection) -> ChangeCounts | None:
        """Rows changed so far, as the database counts them (see the module docstring); None: no count kept."""
        return None

    def fire_deferred(self, conn: Connection) -> None:
        """Run now what the database would otherwise run at COMMIT, after the batch's account was read (PostgreSQL:
        deferred constraint triggers and foreign key checks); nothing where the database defers no writes."""

    def counted_as(self, conn: Connection, table: sa.Table) -> str:
        return ALL_TABLES

    def counted_kind(self, kind: str) -> str:
        return kind

    def counted_under(self, conn: Connection, table: sa.Table, kind: str) -> tuple[tuple[str, str], ...]:
        return ((self.counted_as(conn, table), self.counted_kind(kind)),)

    # Whether a second connection can read while the fix's writing transaction is open (SQLite: "database is
    # locked"; there the fix's own connection reads, under the database lock it holds anyway).
    reads_beside_writer = True

    def read_only_planning(self, conn: Connection) -> None:
        """Make the transaction just begun on `conn` read-only (before its first statement)."""
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    @contextmanager
    def bounded_read(self, conn: Connection, seconds: float, lock_seconds: float) -> Iterator[None]:
        """A short read-only transaction on `conn` (begun here, before its first statement) whose statements, and
        their waits for a lock, last at most `seconds` (`lock_seconds` for a wait for a lock); the session as it was
        afterwards."""
        if conn.in_transaction():  # what the pool's checkout ran
            conn.rollback()
        with conn.begin():
            self.read_only_planning(conn)
            yield

    @contextmanager
    def bounded_statements(self, conn: Connection, seconds: float) -> Iterator[None]:
        """Statements run on `conn` meanwhile, inside its open transaction, stop once `seconds` have passed, where
        the server cannot bound them there (SQLite: a progress handler); nothing where `bounded_read` bounds them
        on a connection of their own."""
        yield

    def account_refusal(self, conn: Connection) -> str | None:
        """Why the database would count none of the rows a transaction changes (so that every batch's and undo's
        account would fail), naming the setting and how to turn it on; None where it counts them."""
        return None

    def unseen_references(self, conn: Connection, table: sa.Table) -> str | None:
        return None

    def replication_blockers(self, conn: Connection, table: sa.Table, writes: str) -> list[str]:
        """Why a publication would refuse the fix's `writes` ("delete" or "update") to `table`."""
        return []

    def privilege_refusal(self, error: BaseException) -> str | None:
        """How the database coded `error` when it refused a statement for a missing privilege ("SQLSTATE 42501",
        "error 1142"), else None (also where the database has no privileges)."""
        return None

    def row_size_refusal(self, error: BaseException) -> bool:
        """Whether the database refused to create a table because its rows could exceed the largest row it
        stores (MariaDB/MySQL's 65,535 bytes, ER_TOO_BIG_ROWSIZE); False where it has no such limit short of
        what the table it copies already holds."""
        return False

    def refused_table_shape(self, conn: Connection, select: str) -> str | None:
        """The server's words refusing a table created as `select` (reading no row) as too wide a row
        (`row_size_refusal`), asked without creating a table that lasts; None where the server takes it, has no
        such limit, or cannot be asked."""
        return None

    def grantee(self, conn: Connection) -> str:
        """This session's role as a GRANT names it."""
        return conn.dialect.identifier_preparer.quote(str(conn.execute(sa.select(sa.func.current_user())).scalar()))

    def create_refusal(self, conn: Connection, schema: str | None) -> str | None:
        """Why the fix role may not create dupewatch's tables (each fix's plan table, the archive, the records) in
        `schema` (None: the default one), naming what to grant; None where it may, or where the catalog cannot
        tell ahead of the fix."""
        return None

    def ddl_triggers(self, conn: Connection, tags: tuple[str, ...] | None = None) -> str | None:
        """The triggers that fire on the fix's, undo's and guard's own DDL (their plan, archive and log tables,
        indexes, grants, the guard; `tags`: only these commands), named with how to disable them (PostgreSQL event
        triggers); None where nothing fires on DDL. Where something may (`ddl_fires_triggers`), each transaction
        running that DDL is accounted for (`accounting.ddl_step`), and this names the culprits."""
        return None

    def row_security_refusal(self, conn: Connection, table: sa.Table) -> str | None:
        """Why the fix role cannot be trusted to delete what it reads of the fixed `table`: row-level security
        applies to it with policies for some commands only (PostgreSQL: a permissive `FOR SELECT` one, or a
        restrictive `FOR UPDATE` or `FOR DELETE` one), so the rows its plan reads may not be those its row locks
        and deletes reach; None where no such policy applies to it (or the database has no row-level security)."""
        return None

    def missing_fix_privileges(self, conn: Connection, table: sa.Table) -> list[str]:
        """The privileges the fix role lacks on the fixed `table` to lock its rows and delete them (SELECT, UPDATE
        for the row locks, DELETE); [] where it has them, or where the catalog cannot tell ahead of the fix."""
        return []

    def replication_notes(self, conn: Connection, schemas: list[str | None]) -> list[str]:
        """What the operator should know about publications replicating dupewatch's tables in `schemas`."""
        return []


def version_tuple(text: str) -> tuple[int, ...]:
    """`10.11.6-MariaDB-0+deb12u1` -> (10, 11, 6)."""
    return tuple(int(p) for p in re.split(r"[.-]", text.split()[0])[:3] if p.isdigit())

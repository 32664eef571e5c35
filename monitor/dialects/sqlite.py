"""SQLite (the standard library's sqlite3): what is true of SQLite for dupewatch.

- Read-only: `PRAGMA query_only` on every detection connection. There is no server and no statement timeout:
  a progress handler interrupts a statement past its deadline, and `interrupt()` cancels one from another
  thread (SQLite docs, "sqlite3_progress_handler", "sqlite3_interrupt").
- `lower()` folds ASCII only (SQLite docs, "Core Functions": "works for ASCII characters only"), so every
  connection dupewatch opens registers `dupewatch_lower()`, Python's Unicode-aware `str.lower` (the same
  per-character lowering PostgreSQL's `lower()` applies in a UTF-8 database), and `case_insensitive` uses it.
  The function exists only on dupewatch's connections: an index on it would make the table unwritable for the
  application, so the guard cannot use it (`case_fold_indexable` is False).
- A missing file is an error (sqlite3 would silently create an empty database). An attached schema that does
  not exist is reported by SQLite as "unknown database".
- Rows are told apart by `rowid` (insertion order); NULL sorts first ascending; values are shown as stored
  (SQLite keeps whatever the application wrote, whatever the declared type).
- Writers take the write lock when their transaction begins (`BEGIN IMMEDIATE`); a fix's locking is that lock,
  so there is no `FOR UPDATE`, and one fixer per table is a file lock.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement, TypeCoerce
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from monitor.dialects.base import (
    ALL_TABLES,
    ANY_CHANGE,
    ChangeCounts,
    CheckConstraint,
    Comparison,
    Dialect,
    KeyViolation,
    UniqueViolation,
    Writing,
)
from monitor.dialects.expressions import AsStored
from monitor.dialects.sqlite_polling import SQLitePolling

# The keyword every CHECK constraint is written with, as a word in any case (`checkin_id` is not it).
_CHECK_WORD = re.compile(r"\bcheck\b", re.IGNORECASE)

CASE_FOLD_FUNCTION = "dupewatch_lower"
_SQLITE = sqlite_dialect.dialect()  # what SQLAlchemy's types do with values on SQLite (`SQLite.as_stored`)


def _is_column(expr: ColumnElement[Any]) -> bool:
    """Whether `expr` is a table's column (through `type_coerce`, which SQL does not see)."""
    while isinstance(expr, TypeCoerce):
        expr = expr.clause
    return isinstance(expr, sa.Column)


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class CaseFold(FunctionElement[Any]):
    """`dupewatch_lower(expr)` in queries. In DDL (an index) it compiles to the built-in `lower()`: an index may
    only use functions every connection has, or the application could no longer write to the table. Such an
    index folds ASCII only: see `case_fold_indexable`."""

    inherit_cache = True
    name = CASE_FOLD_FUNCTION

    def __init__(self, expr: ColumnElement[Any]) -> None:
        super().__init__(expr)
        self.type = expr.type


@compiles(CaseFold)  # also for SQL shown as text (fingerprints, advice) outside a SQLite compiler
@compiles(CaseFold, "sqlite")
def _compile_case_fold(element: CaseFold, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(element.clauses, **kw)
    in_ddl = compiler.statement is None  # the compiler a DDL statement uses for its expressions
    return f"lower({inner})" if in_ddl else f"{CASE_FOLD_FUNCTION}({inner})"


# A value as a column's declared collation compares it (SQLite docs, "Collating Sequences"): NOCASE folds the 26
# ASCII capitals only (whatever `lower()` does in a build with ICU), RTRIM ignores trailing spaces (U+0020 only);
# values other than text are compared as they are (no collation applies to them).
COLLATED_FUNCTION = "dupewatch_collated"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
FOLDING_COLLATIONS = ("NOCASE", "RTRIM")


def _collated(value: Any, collation: Any) -> Any:
    if not isinstance(value, str):
        return value
    if collation == "NOCASE":
        return value.translate(_ASCII_LOWER)
    if collation == "RTRIM":
        return value.rstrip(" ")
    return value


class NoAffinity(ColumnElement[Any]):
    """`+expr`: the value of a column without its affinity (SQLite docs, "Type Affinity of Expressions": `+X` is
    an expression, not a column, for affinity; its collation stays the column's)."""

    inherit_cache = True
    _traverse_internals = [("expr", InternalTraversal.dp_clauseelement)]

    def __init__(self, expr: ColumnElement[Any]) -> None:
        self.expr = expr
        self.type = expr.type


@compiles(NoAffinity)
def _compile_no_affinity(element: NoAffinity, compiler: Any, **kw: Any) -> str:
    return f"+{compiler.process(element.expr, **kw)}"


def affinity_type(declared: str, strict: bool) -> str:
    """A type a probe may declare (never the declared text, which is not pasted into SQL) of the affinity SQLite
    gives a column declared `declared` (docs, "Determination Of Column Affinity", in its order: `INT8`, `UNSIGNED
    BIG INT` and `FLOATING POINT` are INTEGER, `"weird type"` NUMERIC, none BLOB); in a STRICT table, `ANY` keeps
    each value as given (no affinity), where elsewhere it is NUMERIC."""
    kind = declared.upper()
    if strict and kind.strip() == "ANY":
        return "ANY"
    if "INT" in kind:
        return "INTEGER"
    if any(t in kind for t in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind.strip():
        return "BLOB"
    if any(t in kind for t in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def declared_type(conn: Connection, table: sa.Table, column: str) -> str:
    """The type `table.column` was declared with, as written ("" for none)."""
    return str(conn.execute(sa.text("SELECT type FROM pragma_table_xinfo(:t, :s) WHERE name = :c"),
                            {"t": table.name, "s": table.schema or "main", "c": column}).scalar() or "")


def is_strict(conn: Connection, schema: str | None, name: str) -> bool:
    """Whether the table is STRICT (SQLite 3.37+; before it, no table is)."""
    try:
        return bool(conn.execute(sa.text('SELECT "strict" FROM pragma_table_list WHERE schema = :s AND name = :t'),
                                 {"s": schema or "main", "t": name}).scalar())
    except sa.exc.OperationalError:  # before SQLite 3.37, which brought STRICT tables and this pragma
        return False


_REFERRED_NAMES = "dupewatch_referred_names"  # its entry in an inspector's reflection cache


def _resolve_referred_names(dialect: Any) -> None:
    """Reflect each foreign key with the referred table and columns as the referred table declares them, as SQLite
    resolves them: it matches table and column names case-insensitively (ASCII letters only, as the NOCASE
    collation compares), and a missing column list means the referred table's primary key. `PRAGMA
    foreign_key_list` gives the names as the referencing table wrote them (`REFERENCES "Usr"(ID)` for the table
    `usr` and its column `id`) and SQLAlchemy looks them up by their exact names: a missing column list reflected
    with no referred columns (ArgumentError), a column in another case as one the table does not have
    (NoReferencedColumnError), either as soon as the referencing table is reflected with its foreign keys. SQLite
    itself says which declared name each one is (`sqlite_master`, `pragma_table_xinfo`, compared under NOCASE); a
    name it matches to nothing (`REFERENCES u(rowid)`, what SQLite calls a foreign key mismatch) is left as
    written."""
    reflect = dialect.get_foreign_keys

    def get_foreign_keys(connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> Any:
        found = reflect(connection, table_name, schema=schema, **kw)
        # SQLite's answers, kept as long as the inspector's own reflection cache (a schema's foreign keys mostly
        # refer to a few tables).
        cache = kw.get("info_cache")
        asked: dict[tuple[Any, ...], Any] = {} if cache is None else cache.setdefault(_REFERRED_NAMES, {})

        def ask(sql: str, params: tuple[Any, ...]) -> Any:
            if (sql, params) not in asked:
                asked[sql, params] = connection.exec_driver_sql(sql, params).scalar()
            return asked[sql, params]

        for fk in found:
            if not fk["constrained_columns"]:
                continue
            where = fk.get("referred_schema") or schema
            quoted = f"{dialect.identifier_preparer.quote_identifier(where)}." if where else ""
            name = ask(f"SELECT name FROM {quoted}sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                       (fk["referred_table"],))
            if name is None:
                continue
            if not fk["referred_columns"]:
                key = dialect.get_pk_constraint(connection, name, schema=where, **kw)["constrained_columns"]
                if len(key) == len(fk["constrained_columns"]):
                    fk["referred_table"], fk["referred_columns"] = name, list(key)
                continue
            declared = []
            for column in fk["referred_columns"]:
                match = ask("SELECT name FROM pragma_table_xinfo(?, ?) WHERE name = ? COLLATE NOCASE",
                            (name, where or "main", column))
                declared.append(column if match is None else match)
            fk["referred_table"], fk["referred_columns"] = name, declared
        return found

    dialect.get_foreign_keys = get_foreign_keys


def register_functions(dbapi: sqlite3.Connection) -> None:
    """Register dupewatch's SQL functions on a sqlite3 connection."""
    dbapi.create_function(CASE_FOLD_FUNCTION, 1, _unicode_lower, deterministic=True)
    dbapi.create_function(COLLATED_FUNCTION, 2, _collated, deterministic=True)


# The longest string or blob a statement may build on dupewatch's connections (`sqlite3_limit`, SQLITE_LIMIT_LENGTH;
# SQLite's own default is 1,000,000,000): SQLite runs in dupewatch's own process, and a statement doubling a string
# (`s || s` in a recursive CTE) would otherwise take gigabytes of its memory before the deadline stops it. Past this
# length SQLite stops the statement ("string or blob too big"); a stored value longer than this cannot be read.
MAX_VALUE_BYTES = 32 * 1024 * 1024
# The longest LIKE or GLOB pattern a statement may use (SQLITE_LIMIT_LIKE_PATTERN_LENGTH; SQLite's default is
# 50,000 bytes). Matching is one step of SQLite's program, which neither the progress handler nor `interrupt()`
# can stop, and costs up to the string's length times the pattern's: measured on SQLite 3.40, a `%`-led pattern
# against a 32 MiB string took 2 s at 100 bytes, 18 s at 1,000, and over a minute at 40,000 against 4 MiB.
MAX_LIKE_PATTERN_BYTES = 200


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The most SQLite may allocate in dupewatch's process, all its connections together (`PRAGMA hard_heap_limit`).
MAX_HEAP_BYTES = 512 << 20


# The functions a check may call. SQLite asks the authorizer about every function a statement calls while it
# prepares it (SQLITE_FUNCTION, whatever the spelling: `[x--]`, quotes, comments, views): anything not here is
# denied, so the statement is refused before it runs. Left out on purpose: randomblob and zeroblob (blobs of any
# size), printf and format (`printf('%.*c', 900000000, 'x')` loops 900 million times inside one step of SQLite's
# program, where neither the length limit nor the deadline can stop it: 1.4 GB or 12 s), instr (its needle has no
# limit: instr over a string doubled to 4 MiB by `s || s` and a 50,000-byte needle took 2.2 s in one step, past a
# 1 s deadline; LIKE, whose pattern `MAX_LIKE_PATTERN_BYTES` bounds, finds the same), load_extension (native code),
# readfile, writefile, edit, fts3_tokenizer (outside the database), json_patch (it merges each key of the patch by a
# search through the target's keys, in one step: 40,000 x 40,000 keys ran past a 3 s deadline).
HARMLESS_FUNCTIONS = _names("""
abs acos acosh asin asinh atan atan2 atanh avg ceil ceiling changes char coalesce concat concat_ws cos cosh count
cume_dist date datetime degrees dense_rank exp first_value floor glob group_concat hex ifnull iif json
json_array json_array_length json_each json_error_position json_extract json_group_array json_group_object
json_insert json_object json_quote json_remove json_replace json_set json_tree json_type json_valid
jsonb julianday lag last_insert_rowid last_value lead length like likelihood likely ln log log10 log2 lower ltrim
max min mod nth_value ntile nullif octet_length percent_rank pi pow power quote radians random rank replace round
row_number rtrim sign sin sinh soundex sqlite_compileoption_get sqlite_compileoption_used sqlite_source_id
sqlite_version sqrt string_agg strftime substr substring sum tan tanh time timediff total total_changes trim trunc
typeof unhex unicode unixepoch unlikely upper -> ->>
""") | {CASE_FOLD_FUNCTION}


# The PRAGMAs a statement may read as tables (`SELECT * FROM pragma_table_info('t')`) report settings and the schema,
# and run nothing, except `optimize`, which runs ANALYZE on the tables this connection's queries would plan better
# with statistics: a write into sqlite_stat1 (on the fix's writable connection, where a `where` runs too).
ACTING_PRAGMA_TABLES = frozenset({"pragma_optimize"})

# Allowed functions that, given this many arguments or more, match their string against an operand no SQLite limit
# bounds (unlike LIKE's pattern), for up to the string's length times the operand's in one step of SQLite's
# program: trims with a set of characters (65,536 x 65,537 took 6.8-8.7 s) and replace's needle (a 4 MiB string
# and a 32 KiB needle took 1.8 s), as instr's needle. SQLite's own program (EXPLAIN) names each call with its
# number of arguments, `ltrim(2)`, so trim(x) of whitespace stays allowed.
UNBOUNDED_OPERAND = {"trim": 2, "ltrim": 2, "rtrim": 2, "replace": 3}
_COLLATION_STEP = re.compile(r"(?:collseq\()?([A-Za-z_]\w*)")  # an Eq step's P4: `NOCASE-8` (`collseq(NOCASE)`)
_CALL_STEP = re.compile(r"([A-Za-z_]\w*)\((-?\d+)\)")  # -1: any number of arguments (printf)


# The column types a STRICT table may declare (https://www.sqlite.org/stricttables.html), as written in a probe.
STRICT_TYPES = {name: name for name in ("INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY")}


class SQLite(SQLitePolling, Dialect):
    name = "sqlite"
    reads_beside_writer = False
    stores_untyped = True
    enforces_column_types = False
    change_stream_absent = "SQLite has no change stream"
    case_fold_indexable = False
    write_refused_markers = ("readonly database",)
    roles = False  # one file, one view: the dry run plans on the detection connection
    row_locks = False  # BEGIN IMMEDIATE already holds the database's write lock
    delete_using = False
    column_names_fold = True  # `Email` and `email` are one column ("duplicate column name")

    def refused_value(self, conn: Connection, table: sa.Table, column: str, values: sa.Select[Any], *,
                      referred: tuple[sa.Table, str, str] | None = None) -> str | None:
        """A STRICT table's column refuses a value its type cannot hold losslessly (`cannot store TEXT value in
        INTEGER column`) where any other table takes it as it comes. Asked of SQLite itself, not of our reading of
        its rules: each value is inserted into a STRICT table of the same declared type in a private in-memory
        database (the table checked is never written, and the detection connection may be read-only)."""
        apart = None if referred is None else self._stored_apart(conn, table, column, values, referred)
        if not is_strict(conn, table.schema, table.name):
            return apart
        kind = declared_type(conn, table, column).upper()
        if kind not in STRICT_TYPES:  # never pasted: one of the six a STRICT table allows
            return apart
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute(f"CREATE TABLE dupewatch_probe (v {STRICT_TYPES[kind]}) STRICT")
            for (value,) in conn.execute(values):
                try:
                    probe.execute("INSERT INTO dupewatch_probe VALUES (?)", (value,))
                except sqlite3.Error as exc:
                    return str(exc).replace("dupewatch_probe.v", f"{table.name}.{column}")
        finally:
            probe.close()
        return apart

    @staticmethod
    def _stored_apart(conn: Connection, table: sa.Table, column: str, values: sa.Select[Any],
                      referred: tuple[sa.Table, str, str]) -> str | None:
        """The first of `values` (the referred column's, as stored) that `table.column`'s affinity stores as a
        value that no longer refers to it as SQLite's foreign key compares (the text '00' stored as 0 in an INTEGER
        column: 0 is '0' to a TEXT key). Asked of SQLite: a private in-memory table of both declared types
        takes each value in both columns and compares them as the foreign key does: each column of its table's
        affinity (`affinity_type`), in a STRICT table where the column's is (which converts as its affinity does,
        or refuses: `refused_value` says so first)."""
        parent, name, collation = referred
        child_type = declared_type(conn, table, column)
        parent_strict, child_strict = is_strict(conn, parent.schema, parent.name), is_strict(conn, table.schema,
                                                                                             table.name)
        kinds = {"k": (affinity_type(declared_type(conn, parent, name), parent_strict), parent_strict),
                 "v": (affinity_type(child_type, child_strict), child_strict)}
        if {kind for kind, _strict in kinds.values()} <= {"INTEGER", "NUMERIC"} or len(set(kinds.values())) == 1:
            return None  # one affinity (INTEGER and NUMERIC store alike): the column stores the value as it is
        probe = sqlite3.connect(":memory:")
        try:
            for label, (kind, strict) in kinds.items():
                probe.execute(f"CREATE TABLE dupewatch_{label} ({label} {kind}){' STRICT' if strict else ''}")
            quoted = collation.replace('"', '""')
            for (value,) in conn.execute(values):
                if value is None:
                    continue  # NULL refers to no row as it is (`plan._unreferable` names those rows)
                probe.execute("DELETE FROM dupewatch_k")
                probe.execute("DELETE FROM dupewatch_v")
                probe.execute("INSERT INTO dupewatch_k VALUES (?)", (value,))
                probe.execute("INSERT INTO dupewatch_v VALUES (?)", (value,))
                refers, kept, stored = probe.execute(
                    f'SELECT k COLLATE "{quoted}" = +v, quote(k), quote(v) FROM dupewatch_k, dupewatch_v').fetchone()
                if not refers:
                    return (f"{table.name}.{column} ({child_type or 'no type'}) stores the kept value {kept} as "
                            f"{stored}, which refers to no row of {parent.name}({name})")
        except sqlite3.Error:
            return None  # a collation only the application registers: not probed
        finally:
            probe.close()
        return None

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        # A fix waits for the application's short write transactions (SQLite's busy timeout) instead of
        # failing after the driver's default 5 s when the application writes without pause.
        return {} if read_only else {"timeout": max(timeout, 5.0)}

    def engine_options(self, *, read_only: bool) -> dict[str, Any]:
        return {}

    def prepare_session(self, dbapi: Any, *, read_only: bool, timeout: float, client_deadline: float) -> None:
        register_functions(dbapi)
        dbapi.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)  # the fix's connection runs `where` too
        dbapi.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN_BYTES)
        # The string limit bounds one value, not how many a statement builds at once: 40 group_concat()s of a
        # recursive CTE took dupewatch to 1.1 GB in 20 s (a statement may hold 2,000 columns of 32 MiB). SQLite's
        # own heap limit (process-wide: every SQLite connection of dupewatch's) fails such a statement with
        # "out of memory"; the PRAGMA only ever lowers it.
        dbapi.execute(f"PRAGMA hard_heap_limit = {MAX_HEAP_BYTES}")
        if read_only:
            dbapi.execute("PRAGMA query_only = ON")

    def install(self, engine: Engine, *, read_only: bool) -> None:
        _resolve_referred_names(engine.dialect)

        @event.listens_for(engine, "handle_error")
        def _out_of_memory(context: Any) -> None:
            # the sqlite3 module raises SQLite's "out of memory" (`MAX_HEAP_BYTES` reached) as Python's MemoryError,
            # which is no DB-API error: say what it is, as one, so it is reported as the statement's error
            if isinstance(context.original_exception, MemoryError):
                raise sa.exc.OperationalError(context.statement, None, sqlite3.OperationalError(
                    f"out of memory: the statement needed more than the {MAX_HEAP_BYTES >> 20} MiB dupewatch lets "
                    f"SQLite allocate in its process")) from context.original_exception

        if read_only:
            return

        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi: Any, _record: Any) -> None:
            dbapi.isolation_level = None  # the sqlite3 module would otherwise emit its own deferred BEGIN

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def missing_database(self, url: URL) -> str | None:
        path = self.database_file(url)
        if path is not None and path.is_dir():
            return f"{path} is a directory, not a database file"
        return None if path is None or path.is_file() else f"file not found: {url.database}"

    def database_file(self, url: URL) -> Path | None:
        """The file of `url`, a URI filename's (`file:PATH?uri=true`) too: sqlite3 creates a file it does not
        find, and a URI filename names a file as much as a path does (without `uri=true`, `file:PATH` is a path)."""
        path = url.database or ""
        if path in ("", ":memory:") or url.query.get("mode") == "memory":
            return None
        if path.startswith("file:") and str(url.query.get("uri", "")).lower() in ("true", "1", "yes", "on", "t", "y"):
            return _uri_file(path)
        return Path(path)

    def __init__(self) -> None:
        self._deadlines: dict[int, list[float]] = {}  # id(connection) -> [deadline]; 0 once cancelled

    def arm_statement_deadline(self, dbapi: Any, timeout: float) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            deadline = self._deadlines[id(dbapi)] = [time.monotonic() + timeout]
            dbapi.set_progress_handler(lambda: 1 if time.monotonic() > deadline[0] else 0, 20_000)

    @contextlib.contextmanager
    def bounded_statements(self, conn: Connection, seconds: float) -> Iterator[None]:
        """A progress handler stops the statements run meanwhile once `seconds` have passed ("interrupted"); the
        checkout's own deadline (`arm_statement_deadline`) holds meanwhile and is put back afterwards."""
        dbapi: Any = conn.connection.driver_connection
        armed = self._deadlines.get(id(dbapi))
        until = time.monotonic() + seconds
        dbapi.set_progress_handler(lambda: 1 if time.monotonic() > min(until, armed[0] if armed else until) else 0,
                                   1_000)
        try:
            yield
        finally:
            if armed is not None:
                dbapi.set_progress_handler(lambda: 1 if time.monotonic() > armed[0] else 0, 20_000)
            else:
                dbapi.set_progress_handler(None, 0)

    def disarm_statement_deadline(self, dbapi: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            self._deadlines.pop(id(dbapi), None)
            dbapi.set_progress_handler(None, 0)

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        """Interrupt the running statement and, through the progress handler, every later one of this checkout
        (an interrupt that arrives between two statements would otherwise be lost)."""
        deadline = self._deadlines.get(id(dbapi))
        if deadline is not None:
            deadline[0] = 0.0
        dbapi.interrupt()

    def is_timeout(self, message: str) -> bool:
        return message == "interrupted"

    def between_transactions(self, error: BaseException) -> bool:
        """SQLITE_BUSY and SQLITE_LOCKED (extended codes included): another connection holds the lock."""
        code = getattr(error, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

    def refused_call(self, conn: Connection, statement: str) -> str | None:
        """The first function SQLite's authorizer reports while preparing `statement` (EXPLAIN: prepared, not
        run) that is not in `HARMLESS_FUNCTIONS`."""
        dbapi: Any = conn.connection.driver_connection
        refused: list[str] = []

        def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in HARMLESS_FUNCTIONS:
                refused.append(arg2 or "")
                return sqlite3.SQLITE_DENY
            if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in ACTING_PRAGMA_TABLES:
                refused.append(arg1 or "")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        program: list[Any] = []
        dbapi.set_authorizer(authorize)
        try:
            program = list(conn.exec_driver_sql(f"EXPLAIN {statement}", execution_options={"no_parameters": True}))
        except sa.exc.DBAPIError:
            if not refused:
                raise
        finally:
            dbapi.set_authorizer(None)
        if refused and refused[0].lower() in ACTING_PRAGMA_TABLES:
            return (f"{refused[0]} is not allowed in a check: reading it runs PRAGMA {refused[0][7:]}, which may "
                    f"write to the database (ANALYZE into sqlite_stat1)")
        if refused:
            return (f"{refused[0]}() is not allowed in a check: it is not one of the SQLite functions known to "
                    f"change nothing and to stay small and quick (randomblob, zeroblob, printf, instr, load_extension "
                    f"and file functions are refused)")
        for step in program:  # (addr, opcode, p1, p2, p3, p4, p5, comment): p4 names a call `name(arguments)`
            call = _CALL_STEP.fullmatch(step[5]) if isinstance(step[5], str) else None
            if call and call.group(1).lower() not in HARMLESS_FUNCTIONS:
                # The authorizer is asked about the calls of the statement and of its views, not about those of a
                # VIRTUAL generated column it reads (resolved once, when the schema was read): the program has them.
                return (f"{call.group(1)}() is not allowed in a check: a generated column the statement reads calls "
                        f"it, and it is not one of the SQLite functions known to change nothing and to stay small "
                        f"and quick (randomblob, zeroblob, printf, instr, load_extension and file functions are "
                        f"refused)")
            if call and int(call.group(2)) >= UNBOUNDED_OPERAND.get(call.group(1).lower(), 99):
                return (f"{call.group(1)}() is not allowed in a check with {call.group(2)} arguments: it matches its "
                        f"string against an operand of any length (the characters to trim, the text to replace) in "
                        f"one step of SQLite's program, which neither the deadline nor an interrupt can stop")
        return None

    def check_constraints(self, conn: Connection, table: sa.Table) -> list[CheckConstraint] | None:
        """SQLite keeps a table's CHECK constraints only in its DDL text (`sqlite_master.sql`), which dupewatch does
        not parse: None (not evaluated beforehand) unless that text holds no word CHECK at all, in any case, which
        no CHECK constraint can be written without: then [] (it has none). A column or table whose name is the word
        `check` only makes it None, never the other way round."""
        where = f"{conn.dialect.identifier_preparer.quote_identifier(table.schema)}." if table.schema else ""
        ddl = conn.exec_driver_sql(f"SELECT sql FROM {where}sqlite_master WHERE type = 'table' AND name = ?",
                                   (table.name,)).scalar()
        return None if ddl is None or _CHECK_WORD.search(ddl) else []

    def unknown_column(self, conn: Connection, statement: str) -> str | None:
        """SQLite's own complaint when it prepares `statement` with double-quoted string literals off
        (SQLITE_DBCONFIG_DQS_DML), so that `"staus"` is the column it names, not the string 'staus'. Python's
        sqlite3 module cannot turn them off before Python 3.12, so apsw prepares it, on a copy of this database's
        schema (its tables and views, no rows: the application's file is not opened a second time). Its message
        says what to do: `no such column: "staus" - should this be a string literal in single-quotes?`."""
        import apsw

        schema = conn.exec_driver_sql(
            "SELECT sql FROM main.sqlite_master WHERE type IN ('table', 'view') AND sql IS NOT NULL "
            "ORDER BY type = 'view', rowid").scalars().all()
        copy = apsw.Connection(":memory:")
        try:
            for create in schema:
                # sqlite_sequence and the shadow tables of a virtual table cannot be created by name; a
                # virtual table of a module apsw lacks is left out (its checks are not vetted here).
                with contextlib.suppress(apsw.Error):
                    copy.execute(create)
            copy.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
            try:
                copy.execute(f"EXPLAIN {statement}")
            except apsw.SQLError as exc:
                message = str(exc).removeprefix("SQLError: ")
                return message if message.startswith("no such column") else None
            return None
        finally:
            copy.close()

    # -- detection ------------------------------------------------------------------------------

    def case_fold(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return CaseFold(expr)

    def sent_width(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """Bytes, not characters: `length()` of a blob counts its bytes, of text its characters."""
        return sa.func.length(sa.cast(expr, sa.LargeBinary()), type_=sa.BigInteger())

    def row_identity(self, *, is_view: bool) -> ColumnElement[Any] | None:
        return None if is_view else sa.literal_column("rowid")

    def timestamp_type(self, column: sa.Column[Any]) -> sa.types.TypeEngine[Any]:
        return sa.String()  # stored as the application wrote it; parsed by `detect.as_datetime`

    def shown_columns(self, table: sa.Table) -> list[ColumnElement[Any]]:
        """Exactly as stored: a `DATETIME` holding `2024-01-01T10:00:00Z` or a `NUMERIC` holding `n/a` would make
        SQLAlchemy's result processing raise."""
        return [sa.type_coerce(c, sa.types.NullType()).label(c.name) for c in table.columns]

    def abort_on_conflict(self, statement: Writing) -> Writing:
        """`OR ABORT` outranks the table's own `ON CONFLICT` clause (SQLite docs, "The ON CONFLICT Clause")."""
        return statement.prefix_with("OR ABORT")

    def compared_apart(self, conn: Connection, table: sa.Table) -> dict[str, Comparison]:
        """The columns declared `COLLATE NOCASE` or `COLLATE RTRIM`, as SQLite compiles a comparison of each
        (`EXPLAIN SELECT col = '' FROM t`: the collating sequence is the P4 of its Eq step). Reflection does not
        say (the type has no collation), nor does `PRAGMA table_xinfo`."""
        found: dict[str, Comparison] = {}
        quote = conn.dialect.identifier_preparer
        name = quote.format_table(table)
        for column in table.columns:
            try:
                program = conn.exec_driver_sql(f"EXPLAIN SELECT {quote.quote(column.name)} = '' FROM {name}",
                                               execution_options={"no_parameters": True}).all()
            except sa.exc.DBAPIError:  # a collation only the application registers: no statement compares it
                continue
            for step in program:  # (addr, opcode, p1, p2, p3, p4, p5, comment)
                if step[1] in ("Eq", "Ne") and isinstance(step[5], str):
                    match = _COLLATION_STEP.match(step[5])
                    collation = match.group(1).upper() if match else ""
                    if collation in FOLDING_COLLATIONS:
                        found[column.name] = Comparison("declared collation", name=collation)
                    break
        return found

    def group_identity(self, expr: ColumnElement[Any], comparison: Comparison | None = None) -> ColumnElement[Any]:
        """A key column declared `COLLATE NOCASE` or `COLLATE RTRIM` (`compared_apart`) as that collation
        compares it ('Bob' = 'bob', 'x' = 'x  '): GROUP BY returns one of a group's spellings, and the group,
        identified by it, became another once that row was deleted. Only the column itself compares under its
        collation: an expression over it (`case_insensitive`, `trim_whitespace`) compares as BINARY (SQLite docs,
        "Assigning Collating Sequences from SQL")."""
        if comparison is None or comparison.kind != "declared collation" or not _is_column(expr):
            return expr
        return sa.func.dupewatch_collated(expr, sa.literal_column(f"'{comparison.name}'"), type_=expr.type)

    @staticmethod
    @functools.cache
    def unsound_collations() -> frozenset[str]:
        """RTRIM where this SQLite library's Bloom filter (3.38 on, beside an automatic index) hashes a value's bytes
        and drops rows equal under RTRIM ('a ' and 'a'): a join under it then misses them, depending on the plan.
        Asked of the library itself (the driver's), in a private in-memory database, with such a join."""
        probe = sqlite3.connect(":memory:")
        try:
            probe.executescript("CREATE TABLE k (k TEXT); CREATE TABLE v (v TEXT); "
                                "INSERT INTO k VALUES ('a'); INSERT INTO v VALUES ('a ');")
            found = probe.execute("SELECT count(*) FROM v JOIN k ON k.k COLLATE RTRIM = +v.v").fetchone()[0]
        finally:
            probe.close()
        return frozenset() if found == 1 else frozenset({"RTRIM"})

    def referred_compares(self, child: ColumnElement[Any], value: ColumnElement[Any],
                          collation: str) -> ColumnElement[bool]:
        """As SQLite's foreign keys compare (docs, "Foreign Key Constraints"): the referred column's affinity
        applied to the referencing value (`value` carries it, `+child` none, so `=` applies it) and the referred
        column's collation (explicit, so it outranks the referencing column's)."""
        return sa.collate(value, collation) == NoAffinity(child)

    def as_stored(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """Exactly as stored, wherever SQLAlchemy's type converts the value in Python: a `DATETIME` holding
        `2024-01-01 09:00:00` reads as a datetime that binds back as `2024-01-01 09:00:00.000000`, which `=`
        compares as different text (as a `BOOLEAN` holding 2 binds back as 1, a `NUMERIC` holding `n/a` does not
        read at all). The value as stored compares equal to itself."""
        dialect = _SQLITE
        if expr.type.dialect_impl(dialect).result_processor(dialect, None) is None:
            return expr  # read as stored already (text, integers, REAL, blobs)
        return sa.type_coerce(expr, AsStored())

    def missing_schema(self, exc: sa.exc.DBAPIError) -> bool:
        return "unknown database" in str(exc.orig)

    # -- fixes ----------------------------------------------------------------------------------

    def for_update(self, statement: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        return statement  # BEGIN IMMEDIATE already holds the database's write lock

    def expression_index(self, version: tuple[int, ...], server: str = "") -> bool:
        return True  # built-in functions only: see `case_fold_indexable`

    # -- a batch's account ----------------------------------------------------------------------

    def changes_so_far(self, conn: Connection) -> ChangeCounts:
        """Rows changed on this connection: trigger bodies and foreign key actions included (SQLite docs,
        "total_changes()"); inserts, updates and deletes in one count."""
        return {(ALL_TABLES, ANY_CHANGE): int(conn.execute(sa.text("SELECT total_changes()")).scalar_one())}

    def counted_kind(self, kind: str) -> str:
        return ANY_CHANGE

    def violated_unique(self, exc: sa.exc.DBAPIError) -> UniqueViolation:
        """SQLite names the columns only: `UNIQUE constraint failed: users.a, users.b`."""
        message = str(exc.orig)
        if not message.startswith("UNIQUE constraint failed: "):
            return UniqueViolation()
        columns = [c.rpartition(".") for c in message.removeprefix("UNIQUE constraint failed: ").split(", ")]
        return UniqueViolation(columns=tuple(c[2] for c in columns), table=columns[0][0] or None)

    def enforces_foreign_keys(self, conn: Connection) -> bool:
        """`PRAGMA foreign_keys`, per connection and off by default: dupewatch leaves it as it is."""
        return bool(conn.exec_driver_sql("PRAGMA foreign_keys").scalar())

    def violated_foreign_key(self, exc: sa.exc.DBAPIError) -> str | None:
        """`FOREIGN KEY constraint failed`: SQLite names no constraint."""
        return "" if str(exc.orig).startswith("FOREIGN KEY constraint failed") else None

    def defer_foreign_keys(self, conn: Connection) -> bool:
        """`PRAGMA defer_foreign_keys = ON`: until the transaction ends, keys are checked at its commit only."""
        if not self.enforces_foreign_keys(conn):
            return False
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        return True

    def foreign_key_violations(self, conn: Connection) -> list[KeyViolation]:
        """`PRAGMA foreign_key_check` (each row of the main database referring to no row, and its key's number in
        `PRAGMA foreign_key_list`, which names no constraint: the reflected foreign key over the same columns
        does)."""
        found: dict[tuple[str, int], list[Any]] = {}
        parents: dict[tuple[str, int], str] = {}
        for table, rowid, parent, fkid in conn.exec_driver_sql(
                'SELECT "table", rowid, parent, fkid FROM pragma_foreign_key_check').all():
            found.setdefault((str(table), int(fkid)), []).append(rowid)
            parents[str(table), int(fkid)] = str(parent)
        violations = []
        for (table, fkid), rowids in found.items():
            columns = tuple(str(row[0]) for row in conn.exec_driver_sql(
                'SELECT "from" FROM pragma_foreign_key_list(?) WHERE id = ? ORDER BY seq', (table, fkid)).all())
            names = [fk["name"] for fk in sa.inspect(conn).get_foreign_keys(table)
                     if tuple(fk["constrained_columns"]) == columns and fk["referred_table"] == parents[table, fkid]]
            violations.append(KeyViolation(table, columns, names[0] if names else None, parents[table, fkid],
                                           tuple(rowids)))
        return violations


def _uri_file(uri: str) -> Path | None:
    """The file a SQLite URI filename names (`file:data.db`, `file:/abs/data.db`, `file:///abs/data.db`,
    `file://localhost/abs/data.db`, percent-encoded), or None for an in-memory one or an authority SQLite refuses."""
    rest = uri.removeprefix("file:")
    if rest.startswith("//"):
        authority, _, tail = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            return None
        rest = "/" + tail
    rest = unquote(rest.partition("#")[0])
    return None if rest in ("", ":memory:") else Path(rest)

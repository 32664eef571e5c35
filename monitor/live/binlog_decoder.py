"""The binary log read and decoded in a process of its own (monitor/live/mysql.py starts and ends it).

`python-mysql-replication` decodes every event in Python. On a thread of the daemon's process that decoding
shared the interpreter (its lock) with the re-counts, and under load the new duplicates waited for it: p95 from
commit to metric of 2 s on a busy machine. In a process of its own it runs beside the re-counts, and sends the
reader only what live mode uses, already plain data:

- `("rows", timestamp, [Change, ...])`: one row event's changes (`timestamp`: the whole second its statement
  began, as the log dates every event);
- `("unseen", timestamp)`: a statement the log holds as a statement (TRUNCATE, DDL), naming no rows;
- `("statement", timestamp, verb)`: a statement that may add rows or change keys (INSERT, REPLACE, UPDATE,
  LOAD DATA) logged as a statement, naming none of them: a session that set `binlog_format` to STATEMENT or MIXED
  (the server's ROW is only the sessions' default); or an `ALTER TABLE` or `RENAME TABLE`, which may change keys
  or how they compare, or swap a table's rows, without logging any row (`adds_rows`, which reads a statement as
  the server runs it: past comments and MariaDB's `SET STATEMENT ... FOR` prefix);
- `("commit", gtid_position | None, log_file, log_pos, timestamp, gtid_set | None)`: a transaction read whole,
  where to resume after it (MariaDB's GTID position, MySQL's set of GTIDs read, else the file and position), and
  its commit's second (the XID event's: a long transaction's rows are dated when it began);
- `("reshaped", timestamp, schema, table)`: a row event whose rows are not decoded, because the log does not
  name its columns (`binlog_row_metadata` is not FULL) and the table's columns are no longer those the event
  was logged with (`Catalog.reshaped`): named by the current columns, its values would be misread;
- `("lost", error_code | None, first_line, connection)`: the stream failed (the process ends after it);
  `connection`: the server's connection failed (it may be opened again from a position read before), not the
  decoding.

The process dies with the daemon (Linux's parent-death signal, sent when the thread that opened the stream
ends: the live reader's, which closes it anyway), so a killed daemon leaves no reader on the server. It writes
nothing: it is a replica connection reading the log.

It is started as `python -m monitor.live.binlog_decoder FD PARENT_PID` (`main`), a new interpreter that imports this
module and what it needs only (pymysql, python-mysql-replication, monitor.live.changes): not the daemon's main
script, which multiprocessing's `spawn` runs again in its child (under the `dupewatch` console script: the CLI,
SQLAlchemy, the engine, about a second of imports). FD is one end of a socket pair, read and written as a
`multiprocessing.connection.Connection`: the first message on it is the start's arguments (`decode`'s), then the
decoder only sends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pymysql
from pymysql.constants import FIELD_TYPE

from monitor.live.changes import Change

# python-mysql-replication has no type information: its modules are objects of type Any here.
replication: Any = importlib.import_module("pymysqlreplication")
LOGGED: Any = importlib.import_module("pymysqlreplication.constants.FIELD_TYPE")  # a table map's column types
events: Any = importlib.import_module("pymysqlreplication.event")
row_event: Any = importlib.import_module("pymysqlreplication.row_event")
gtids: Any = importlib.import_module("pymysqlreplication.gtid")

_PR_SET_PDEATHSIG = 1
FL_PREPARED_XA = 64  # MariaDB's GTID event flag: the transaction is an XA transaction's prepare
XA_CHANGES = 20_000  # changes of prepared XA transactions kept until their XA COMMIT; past it, a gap there


def main(argv: list[str]) -> None:
    """`python -m monitor.live.binlog_decoder FD PARENT_PID` (monitor/live/mysql.py starts it): the start's
    arguments from the connection at FD, then `decode`."""
    _die_with(int(argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the daemon's terminal: the daemon ends it
    pipe = Connection(int(argv[0]))
    try:
        settings, options, gtid, parent, gtid_set = pipe.recv()
    except (EOFError, OSError):
        return  # the reader is gone before it said where to start
    decode(settings, options, gtid, pipe, parent, gtid_set)


def decode(settings: dict[str, Any], options: dict[str, Any], gtid: dict[int, str] | None, pipe: Connection,
           parent: int, gtid_set: str | None = None) -> None:
    """Read the binary log from `options`' position (after `gtid` on MariaDB, `gtid_set` on MySQL with GTIDs:
    every transaction not in it) and send what it holds on `pipe`."""
    _die_with(parent)
    logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)
    started: str | None = None
    in_transaction = False  # between a BEGIN and its end: a statement there does not commit alone
    reader: Any = None
    catalog = Catalog(settings)
    # MariaDB logs an XA transaction's rows at XA PREPARE, not yet committed (a re-count does not see them), and
    # its XA COMMIT later, alone: its changes are kept (by xid) and sent again at the commit; where they were not
    # kept (too many, or prepared before this stream began), the commit is a statement naming no rows, a gap.
    preparing: list[Change] | None = None  # of the XA transaction being read (None: none, or too many)
    xa = False  # reading an XA transaction's prepare
    prepared: dict[str, list[Change] | None] = {}
    # MySQL with GTIDs: the set of transactions read (the server sends every one not in it)
    read_set: Any = gtids.GtidSet(gtid_set) if gtid_set is not None else None

    def connect(**kwargs: Any) -> Any:
        if reader is not None and gtid is not None:  # reconnecting: resume after the last commit read
            reader.auto_position = ",".join(gtid.values())
        elif reader is not None and read_set is not None:
            reader.auto_position = str(read_set)
        return pymysql.connect(**kwargs)

    def committed(timestamp: int) -> tuple[str, str | None, str, int, int, str | None]:
        nonlocal started, read_set
        if started is not None and gtid is not None:
            gtid[int(started.split("-", 1)[0])] = started
        elif started is not None and read_set is not None:
            one = gtids.Gtid(started)
            if one not in read_set:
                read_set = read_set + one
        started = None
        return ("commit", ",".join(gtid.values()) if gtid is not None else None, reader.log_file, reader.log_pos,
                timestamp, str(read_set) if read_set is not None else None)

    only = [row_event.WriteRowsEvent, row_event.UpdateRowsEvent, row_event.DeleteRowsEvent, events.XidEvent,
            events.QueryEvent, events.ExecuteLoadQueryEvent, *([events.MariadbGtidEvent] if gtid is not None else []),
            *([events.GtidEvent] if read_set is not None else [])]
    auto_position = ",".join(gtid.values()) if gtid is not None else str(read_set) if read_set is not None else None
    reader = replication.BinLogStreamReader(
        connection_settings=settings, only_events=only, is_mariadb=gtid is not None, auto_position=auto_position,
        pymysql_wrapper=connect, **options)
    try:
        for event in reader:
            if isinstance(event, events.GtidEvent) and read_set is not None:
                started = event.gtid
            elif isinstance(event, events.MariadbGtidEvent):
                started = event.gtid
                xa = bool(event.flags & FL_PREPARED_XA)
                preparing = [] if xa else None
            elif isinstance(event, events.XidEvent):
                in_transaction = False
                pipe.send(committed(event.timestamp))
            elif isinstance(event, events.QueryEvent):
                control = transaction_control(event.query)
                verb, xid = xa_statement(event.query)
                if verb == "XA END":  # the prepare of an XA transaction: its rows are not committed yet
                    if xa:  # kept within XA_CHANGES for all prepared transactions (some may never commit)
                        held = sum(len(kept) for kept in prepared.values() if kept is not None)
                        fits = preparing is not None and held + len(preparing) <= XA_CHANGES
                        prepared[xid] = preparing if fits else None
                    xa, preparing = False, None
                    pipe.send(committed(event.timestamp))
                elif verb in ("XA COMMIT", "XA ROLLBACK"):
                    kept = prepared.pop(xid, None)
                    if verb == "XA COMMIT" and kept is not None:
                        for table_changes in by_table(kept):
                            pipe.send(("rows", event.timestamp, table_changes))
                    elif verb == "XA COMMIT":
                        pipe.send(("statement", event.timestamp, verb))
                    pipe.send(committed(event.timestamp))
                elif control == "BEGIN":
                    in_transaction = True
                elif control in ("COMMIT", "ROLLBACK"):  # the end of a non-transactional (Aria, MyISAM) table's
                    in_transaction = False  # changes, which are logged even when rolled back: no XID event
                    pipe.send(committed(event.timestamp))
                elif control is None:  # a statement (TRUNCATE, DDL, or DML a session logged as a statement)
                    # Without binlog_row_metadata = FULL, rows carry values by position, named from
                    # information_schema once per table: a DDL statement may have moved, renamed or dropped a column
                    # (or created a table of that name again), so the names are read again for the rows after it.
                    row_event._COLUMN_NAME_CACHE.clear()
                    catalog.forget()
                    verb = adds_rows(event.query)
                    pipe.send(("statement", event.timestamp, verb) if verb else ("unseen", event.timestamp))
                    if not in_transaction:  # it commits alone; inside a transaction its end commits it
                        pipe.send(committed(event.timestamp))
            elif isinstance(event, events.ExecuteLoadQueryEvent):  # LOAD DATA logged as a statement (the file's
                # contents in Begin_load_query events before it, its statement here): rows no event names
                pipe.send(("statement", event.timestamp, "LOAD DATA"))
                if not in_transaction:
                    pipe.send(committed(event.timestamp))
            elif catalog.reshaped(event):
                if preparing is not None:  # its XA COMMIT is a gap too: the rows are not all kept
                    preparing = None
                pipe.send(("reshaped", event.timestamp, event.schema, event.table))
            else:
                catalog.describe(event)
                rows = changes(event, catalog.period_end(event))
                if preparing is not None:
                    preparing.extend(rows)
                    if len(preparing) > XA_CHANGES:
                        preparing = None
                pipe.send(("rows", event.timestamp, rows))
    except (BrokenPipeError, EOFError):
        return  # the reader is gone
    except pymysql.OperationalError as exc:
        _send_lost(pipe, exc.args[0] if exc.args and isinstance(exc.args[0], int) else None, exc, connection=True)
    except Exception as exc:  # any failure is a gap, reported by the reader
        _send_lost(pipe, None, exc, connection=False)
    finally:
        with contextlib.suppress(Exception):
            reader.close()
        catalog.close()


_TEXT_TYPES = (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB)
_INTEGERS = (FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG, FIELD_TYPE.LONGLONG)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


class Catalog:
    """What a row event's columns are, from information_schema where the log does not say it.

    Without `binlog_row_metadata = FULL` (MariaDB's default, NO_LOG, and MySQL's, MINIMAL, log no column names)
    a table map gives the columns' types in order but no names, no ENUM or SET member names and (below MINIMAL) no
    integer's signedness (an UNSIGNED value past the signed range is read as a negative number) and no
    character set: python-mysql-replication then gives every ENUM and SET value as None, a `BINARY`/`VARBINARY`/
    `BLOB` value decoded as UTF-8 (text, or a decoding error that ends the stream at the first byte string that
    is not UTF-8), and text in any character set as UTF-8. A key read as None or as other bytes is re-counted as
    another key than the row's: its duplicate would be missed without a gap. So the table's columns are read
    once per table (and again after a DDL statement of the log) before the event's rows are decoded, and name
    them. They are the table's columns **now**: an event logged before an ALTER TABLE that the decoder reads
    after it (a stream resumed from a saved position, a decoder behind the server) has other columns, and its
    values named by them would be misread. Where the event's column count or a column's type differs from the
    table's now (`reshaped`) its rows are not decoded: the reader treats them as a gap. Columns of one type
    swapped in place cannot be told apart this way; with `binlog_row_metadata = FULL` the log names every
    column and none of this applies."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._connection: Any = None
        self._tables: dict[tuple[str, str], tuple[list[_Described], str | None]] = {}

    def reshaped(self, event: Any) -> bool:
        """The log does not name `event`'s columns and the table's columns now are not the ones it was logged
        with (their number, or a type). Otherwise the event's columns are named by the table's now."""
        table = event.table_map.get(event.table_id)
        if table is None or table.column_name_flag:  # the log named them (binlog_row_metadata = FULL)
            return False
        columns = event.columns
        described = self._columns(event)
        if len(described) != len(columns) or not all(
                _logged_as(column.type, now.data_type) for column, now in zip(columns, described, strict=True)):
            return True
        for column, now in zip(columns, described, strict=True):
            column.name = now.name
        return False

    def describe(self, event: Any) -> None:
        columns = getattr(event, "columns", None) or []
        if not any(_undescribed(column) for column in columns):
            return
        described = self._columns(event)
        if len(described) != len(columns):
            return  # not reached: `reshaped` took the event's rows for a gap
        for column, now in zip(columns, described, strict=True):
            if column.type == FIELD_TYPE.ENUM and not column.enum_values:
                column.enum_values = ["", *_members(now.column_type)]
            elif column.type == FIELD_TYPE.SET and not column.set_values:
                column.set_values = _members(now.column_type)
            elif column.type in _TEXT_TYPES and column.character_set_name is None:
                column.character_set_name = now.charset or "binary"  # a byte string's column has no character set
            elif column.type in _INTEGERS:
                column.unsigned = column.unsigned or " unsigned" in f" {now.column_type.lower()}"

    def _columns(self, event: Any) -> list[_Described]:
        """The columns `event`'s rows are logged with, as the table has them now. A MariaDB table `WITH SYSTEM
        VERSIONING` whose period columns are implicit has two more than information_schema lists (which hides
        them): `row_start` and `row_end`, always its last ones, logged with every row."""
        described, period_end = self._described(event.schema, event.table)
        if period_end == _IMPLICIT_PERIOD[1].name and len(event.columns) == len(described) + 2:
            return described + list(_IMPLICIT_PERIOD)
        return described

    def period_end(self, event: Any) -> str | None:
        """The column a system-versioned table's row ends its life in (`row_end`, or the one declared `AS ROW
        END`), or None for a table of another kind."""
        return self._described(event.schema, event.table)[1]

    def _described(self, schema: str, table: str) -> tuple[list[_Described], str | None]:
        """The table's columns information_schema lists, and its period's end column where it is
        system-versioned (`period_end`)."""
        if (schema, table) not in self._tables:
            if self._connection is None:
                self._connection = pymysql.connect(**self._settings)
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, GENERATION_EXPRESSION"
                               " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
                               " ORDER BY ORDINAL_POSITION", (schema, table))
                listed = cursor.fetchall()
                columns = [_Described(str(name), str(data_type).lower(), str(kind), charset)
                           for name, data_type, kind, charset, _generated in listed]
                cursor.execute("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                               " AND TABLE_NAME = %s AND TABLE_TYPE = 'SYSTEM VERSIONED'", (schema, table))
                row = cursor.fetchone()
                period_end = None
                if row and row[0]:
                    period_end = next((str(name) for name, *_described, generated in listed
                                       if str(generated or "").upper() == "ROW END"), _IMPLICIT_PERIOD[1].name)
                self._tables[schema, table] = (columns, period_end)
        return self._tables[schema, table]

    def forget(self) -> None:
        self._tables.clear()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()


@dataclass(frozen=True)
class _Described:
    """A column as information_schema.COLUMNS describes it now."""

    name: str
    data_type: str  # DATA_TYPE: `varchar`, `int`, ...
    column_type: str  # COLUMN_TYPE: `varchar(100)`, `enum('a','b')`, ...
    charset: str | None


# The period columns MariaDB gives a table created `WITH SYSTEM VERSIONING` without naming them (`Catalog._columns`)
_IMPLICIT_PERIOD = (_Described("row_start", "timestamp", "timestamp(6)", None),
                    _Described("row_end", "timestamp", "timestamp(6)", None))


_STRINGS = frozenset({LOGGED.STRING, LOGGED.VARCHAR, LOGGED.VAR_STRING, LOGGED.ENUM, LOGGED.SET})
_BLOBS = frozenset({LOGGED.TINY_BLOB, LOGGED.MEDIUM_BLOB, LOGGED.LONG_BLOB, LOGGED.BLOB, LOGGED.JSON})
# The types a table map logs a column of each DATA_TYPE as (MariaDB's and MySQL's binary log formats); a DATA_TYPE
# not listed (a type of a newer server) is not judged.
_LOGGED_AS: dict[str, frozenset[int]] = {
    "tinyint": frozenset({LOGGED.TINY}), "smallint": frozenset({LOGGED.SHORT}),
    "mediumint": frozenset({LOGGED.INT24}), "int": frozenset({LOGGED.LONG}), "bigint": frozenset({LOGGED.LONGLONG}),
    "decimal": frozenset({LOGGED.NEWDECIMAL, LOGGED.DECIMAL}), "float": frozenset({LOGGED.FLOAT}),
    "double": frozenset({LOGGED.DOUBLE}), "bit": frozenset({LOGGED.BIT}), "year": frozenset({LOGGED.YEAR}),
    "date": frozenset({LOGGED.DATE, LOGGED.NEWDATE}), "time": frozenset({LOGGED.TIME, LOGGED.TIME2}),
    "datetime": frozenset({LOGGED.DATETIME, LOGGED.DATETIME2}),
    "timestamp": frozenset({LOGGED.TIMESTAMP, LOGGED.TIMESTAMP2}),
    **dict.fromkeys(("char", "varchar", "binary", "varbinary", "enum", "set", "inet4", "inet6", "uuid"), _STRINGS),
    **dict.fromkeys(("tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob", "longblob",
                     "json"), _BLOBS),
    **dict.fromkeys(("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                     "geometrycollection"), frozenset({LOGGED.GEOMETRY})),
}


def _logged_as(logged: int, data_type: str) -> bool:
    """A column logged as type `logged` may be the column information_schema now gives as `data_type`."""
    kinds = _LOGGED_AS.get(data_type)
    return kinds is None or logged in kinds


def _undescribed(column: Any) -> bool:
    if column.type in _INTEGERS:  # without its signedness logged, an UNSIGNED value past the signed range is negative
        return not column.unsigned
    if column.type == FIELD_TYPE.ENUM:
        return not column.enum_values
    if column.type == FIELD_TYPE.SET:
        return not column.set_values
    return column.type in _TEXT_TYPES and column.character_set_name is None


def _members(column_type: str) -> list[str]:
    """The members of `enum('a','it''s')` or `set(...)` as information_schema spells the column's type."""
    return [member.replace("''", "'") for member in _QUOTED.findall(column_type)]


def _send_lost(pipe: Connection, code: int | None, exc: BaseException, *, connection: bool) -> None:
    with contextlib.suppress(BrokenPipeError, EOFError, OSError):
        pipe.send(("lost", code, first_line(exc), connection))


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies; elsewhere it ends when its pipe breaks."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(0)


def changes(event: Any, period_end: str | None = None) -> list[Change]:
    """The row changes of `event`. `period_end`: the table is system-versioned (`Catalog.period_end`), and a DELETE
    of its rows is logged as an UPDATE of that column alone (the row is kept as history): a DELETE here."""
    sets = {column.name: column.set_values for column in event.columns
            if column.type == FIELD_TYPE.SET and column.set_values}

    def plain(values: dict[str, Any]) -> dict[str, Any]:
        """A SET's value (a Python set, unhashable) as the server's text of it: members in definition order."""
        if not sets:
            return values
        return {name: ",".join(m for m in sets[name] if m in value) if name in sets and isinstance(value, set)
                else value for name, value in values.items()}

    def read(values: dict[str, Any], sources: dict[str, str], unreadable: set[str]) -> dict[str, Any]:
        """A row's values, less the `unreadable` columns, with an empty SET (given as None) as the empty text."""
        return plain({name: "" if value is None and sources.get(name) == _EMPTY_SET else value
                      for name, value in values.items() if name not in unreadable})

    if isinstance(event, row_event.WriteRowsEvent):
        return [Change(event.schema, event.table, "INSERT", new=read(row["values"], row["none_sources"],
                                                                     _unreadable(row["none_sources"])))
                for row in event.rows]
    if isinstance(event, row_event.UpdateRowsEvent):
        found = []
        for row in event.rows:  # a column unreadable on either side is left out of both (not taken from the old row)
            unreadable = _unreadable(row["before_none_sources"]) | _unreadable(row["after_none_sources"])
            ended = period_end is not None and row["before_values"].get(period_end) != row["after_values"].get(
                period_end)
            found.append(Change(event.schema, event.table, "DELETE",
                                old=read(row["before_values"], row["before_none_sources"], unreadable)) if ended
                         else Change(event.schema, event.table, "UPDATE",
                                new=read(row["after_values"], row["after_none_sources"], unreadable),
                                old=read(row["before_values"], row["before_none_sources"], unreadable)))
        return found
    return [Change(event.schema, event.table, "DELETE", old=read(row["values"], row["none_sources"],
                                                                 _unreadable(row["none_sources"])))
            for row in event.rows]


# python-mysql-replication gives a zero or partly zero date (`0000-00-00`, `2020-00-00`: sql_mode without
# NO_ZERO_DATE/NO_ZERO_IN_DATE) as None, like a NULL, and says so only in a row's `none_sources`: re-counted as NULL,
# such a key's duplicates were missed without a gap. Its value is not in the log as read: the column is left out of
# the row, so that the check is counted in full for the new row (`LiveGroups.fold`: its key is not in the stream)
# and every known group is queued for the old one. An empty SET is given as None too: it is the empty text.
_OUT_OF_RANGE = frozenset({"out of date range", "out of datetime range", "out of datetime2 range"})
_EMPTY_SET = "empty set"


def _unreadable(sources: dict[str, str]) -> set[str]:
    return {name for name, source in sources.items() if source in _OUT_OF_RANGE}


def by_table(kept: list[Change]) -> list[list[Change]]:
    """`kept` in runs of one table's changes, as row events are."""
    runs: list[list[Change]] = []
    for change in kept:
        if runs and (runs[-1][0].schema, runs[-1][0].table) == (change.schema, change.table):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


_XA = re.compile(r"\A\s*(XA\s+(?:END|COMMIT|ROLLBACK))\s+(.*?)\s*\Z", re.IGNORECASE | re.DOTALL)


def xa_statement(query: Any) -> tuple[str | None, str]:
    """(`XA END`, `XA COMMIT` or `XA ROLLBACK`, the xid as logged) for such a logged statement, else (None, "")."""
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    match = _XA.match(text)
    if match is None or match[2].upper().endswith("ONE PHASE"):
        return None, ""
    return " ".join(match[1].upper().split()), match[2]


def transaction_control(query: Any) -> str | None:
    """`BEGIN`, `COMMIT`, `ROLLBACK`, `XA START` or `XA END` for a logged statement that only delimits a
    transaction, else None."""
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    control = " ".join(text.split()).upper()
    return control if control in ("BEGIN", "COMMIT", "ROLLBACK", "XA START", "XA END") else None


# A statement's text as the server parses it, token by token: a comment (`/*...*/`, `#...`, `-- ...`) anywhere is
# none (an executable one, `/*!50100 ...*/` or MariaDB's `/*M!100100 ...*/`, is its text: taken as run), a quoted
# string or identifier one token (a `FOR` or `TABLE` in it is no keyword), a word, a parenthesis.
_TOKEN = re.compile(r"""(?P<skip>\s+|/\*(?!M?!).*?\*/|#[^\n]*|--(?=\s|\Z)[^\n]*)"""
                    r"""|(?P<open>/\*M?!\d*)|(?P<close>\*/)"""
                    r"""|(?P<quoted>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`)"""
                    r"""|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)|(?P<other>.)""", re.DOTALL | re.MULTILINE)
_ADDS_ROWS = ("INSERT", "REPLACE", "UPDATE", "LOAD")
_ALTER_OPTIONS = ("ONLINE", "IGNORE")


def statement_words(query: Any, nested: bool = False) -> list[str]:
    """The keywords and identifiers of a logged statement at its top level (outside parentheses), upper-cased, in
    order, with a MariaDB `SET STATEMENT var = value, ... FOR` prefix taken off: what the statement is. A quoted
    string or identifier is `'` (never a keyword); a comment is nothing, an executable one its text."""
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    words: list[str] = []
    depth = 0
    for token in _TOKEN.finditer(text):
        kind = token.lastgroup
        if kind == "word" and (depth == 0 or nested):
            words.append(token[0].upper())
        elif kind == "quoted" and (depth == 0 or nested):
            words.append("'")
        elif kind == "other" and token[0] in "()":
            depth = max(0, depth + (1 if token[0] == "(" else -1))
    if words[:2] == ["SET", "STATEMENT"] and "FOR" in words:
        return words[words.index("FOR") + 1:]
    return words


def adds_rows(query: Any) -> str | None:
    """What a statement logged as a statement did that may have made groups the log does not name, or None for one
    that cannot have: only removes rows without firing a trigger (TRUNCATE, DROP), changes no table's rows (GRANT, a
    CREATE without a SELECT, an ALTER of anything but a table, a dump's `ALTER TABLE ... DISABLE KEYS`, ...). Any other
    statement may have: its verb (INSERT, REPLACE, UPDATE, LOAD; `ALTER TABLE`, which may change every row's key
    or how keys compare, a type or a collation, without logging the rows; `RENAME TABLE`, which may put other rows
    under a watched table's name, an online schema change's cut-over; `CREATE TABLE` with a SELECT; a DELETE, whose
    triggers may insert; a SELECT or SET calling a stored function; and any verb not known here, CALL, BINLOG,
    ...): a statement not recognised is taken to have added rows, so that a
    reading of ours that misses a form costs a full count, never a duplicate missed without a gap. Read as the
    server reads it (`statement_words`): a comment within it, or MariaDB's `SET STATEMENT ... FOR` before it,
    hides nothing."""
    words = statement_words(query)
    if words[:1] == ["WITH"]:  # a common table expression before the statement: the first verb after it
        words = [next((w for w in words if w in (*_ADDS_ROWS, "DELETE", "SELECT")), "WITH")]
    verb = words[0] if words else ""
    kind = next((w for w in words[1:] if w not in _ALTER_OPTIONS), "")
    if verb == "ALTER" and kind == "TABLE":
        # a dump's `/*!40000 ALTER TABLE t DISABLE KEYS */` (and ENABLE) changes no key: not counted in full
        keys_only = len(words) <= 6 and words[-1] == "KEYS" and words[-2] in ("DISABLE", "ENABLE")
        return None if keys_only else "ALTER TABLE"
    if verb == "RENAME":
        return "RENAME TABLE" if kind in ("TABLE", "TABLES") else None
    if verb == "CREATE":  # `CREATE [OR REPLACE] TABLE t ... SELECT` fills a table; another CREATE adds no row
        return "CREATE TABLE" if "TABLE" in words and "SELECT" in statement_words(query, nested=True) else None
    if verb in _NO_ROWS_ADDED or not verb:
        return None
    return verb


# The verbs of statements that cannot add rows to a table or give a row another key (`adds_rows`): they remove rows
# without firing a trigger (their groups are re-counted as a TRUNCATE's), or change no table's rows, or are an XA
# transaction's own (its rows are logged as rows). Not DELETE, SELECT or SET: logged as a statement, a DELETE may fire
# a trigger that inserts, and a SELECT or SET may call a stored function that does (logged as `SELECT f()`).
_NO_ROWS_ADDED = frozenset({"TRUNCATE", "DROP", "GRANT", "REVOKE", "FLUSH", "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK",
                            "CHECKSUM", "SAVEPOINT", "RELEASE", "ROLLBACK", "INSTALL", "UNINSTALL", "ALTER", "XA"})


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":
    main(sys.argv[1:])

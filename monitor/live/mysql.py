"""MariaDB/MySQL's change stream: the binary log, read with `python-mysql-replication` as a replica would.

The stream registers as a replica with a server id of its own (random, far above the ids operators number
their servers with) and reads row events from the binary log position current when it opened, in a process of
its own (monitor/live/binlog_decoder.py: decoding in Python must not hold up the re-counts) whose output a
thread hands to `read()`. It needs the binary log on, `binlog_format = ROW` (MariaDB's default is
MIXED, whose statement events name no rows) and `binlog_row_image = FULL` (so an UPDATE or DELETE carries the
old key); otherwise it refuses with one line saying what to change, and never changes a setting. A statement
logged as a statement even so (`TRUNCATE`, DDL) names no rows: it is handed on as an `unseen` transaction, so
every known group of the database is re-counted. An INSERT, REPLACE, UPDATE or LOAD DATA logged as a statement (a
session may set its own `binlog_format`), an `ALTER TABLE` (a key's type or collation) or a `RENAME TABLE` (an
online schema change's cut-over) may have made groups the log does not name: its transaction is `unnamed`, which
the reader reports as a gap and follows with a full count; so is the XA COMMIT of a transaction whose prepared
rows the decoder did not keep (monitor/live/binlog_decoder.py). It writes
nothing; the server keeps no state for it (a replica's position lives on the replica), so an abandoned
daemon retains nothing. Row values arrive typed (ints, strings, datetimes), not as text.

**Position.** On MariaDB the stream starts at the server's GTID position (`@@gtid_binlog_pos`: the last
transaction written to the binary log it reads; `gtid_current_pos` may also hold transactions applied as a
replica and never logged here) and remembers the GTID of each transaction once its commit has been read. When
its connection breaks, the library connects again and the stream resumes after that GTID, so nothing is missed
and there is no gap. When the decoder cannot connect again (the server down for longer) or dies, the stream is
lost `resumable` (`StreamLost.resumable`): the reader opens it again from the position it counted up to
(`open(resume=...)`), which is no gap. When the server no longer holds that position (the binary log was purged
meanwhile) it says so (error 1236): the stream is lost, not resumable, and the reader reports a **gap** naming
the purge, then opens it again from the current position. On MySQL with `gtid_mode = ON` the stream keeps the
set of GTIDs executed before it began (`@@gtid_executed`) plus those it read, and resumes with it (the server
sends every transaction not in it); without GTIDs (and on a MariaDB too old for them) the binary log file and
position do the same: the library's bookkeeping within a connection's life, the position counted up to across
it. The server decides whether it still holds a position: the stream asks for it and reads
the answer, it never compares GTIDs or file names itself.

**Columns.** Without `binlog_row_metadata = FULL` a row event names no columns: the decoder names its values by
the table's columns as information_schema gives them when it decodes the event, and where those are no longer
the ones the event was logged with (another count, or a type: an ALTER TABLE between the two, read from a
backlog or after a resume) it does not decode the rows (`binlog_decoder.Catalog.reshaped`): the transaction is
`unnamed`, a gap followed by a full count, instead of keys misread. With FULL the log names them.

**Memory.** The thread queues what the decoder sends until the reader takes it, all of it at once, and the
reader may be busy re-counting meanwhile (a transaction of a million rows arrives in seconds; a re-count may wait
behind a lock). So the thread keeps of each row only the columns the checks key on (`watch`; every column before
the first full count), drops the rows of tables no check watches and the UPDATEs that change none of those
columns (where no check of the table has a `where`), counting them as read, and queues at most
`QUEUED_CHANGES` changes of a table, and of a transaction's changes of a table: past that the table is
**overflowing**, its changes are dropped (counted) until its transaction commits, and an `overflowed` change for
it is queued just before that commit, so the reader counts the table's checks in full once the transaction's rows
are all committed, logs it and counts it in `dupewatch_live_overflows_total`, as for one read of PostgreSQL's
stream naming too many keys (`KEYS_PER_READ`, monitor/live/groups.py). The position moves past that commit only
once the full count is done, so nothing dropped is skipped by a restart. The thread never waits for the reader:
the binary log is read on, and a row is dropped only where a full count that follows it covers it. Commits with
nothing queued between them are queued as one (the last: its position and time).

**Across daemon restarts.** `position` is where `read()` has handed out every change up to a commit (`gtid:` and
the GTID position on MariaDB, `gtidset:` and the GTID set on MySQL with GTIDs, `file:` and the binary log file
and position elsewhere); the reader saves it in
the state store once it counted those changes, and a daemon started later opens the stream from it
(`open(resume=...)`): what committed while it was down is read then, at least once. A position the binary log no
longer holds is a gap, reported as above.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import secrets
import site
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from monitor.dialects.base import Dialect
from monitor.live import binlog_decoder
from monitor.live.changes import COMMITTED, Cascade, Change, Fold, LiveRefused, Row, StreamLost, Transaction, overflowed
from monitor.live.groups import KEYS_PER_READ

CONNECT_TIMEOUT_SECONDS = 10
HEARTBEAT_SECONDS = 5.0  # the server sends one when idle, so a dead connection is noticed
SERVER_ID_RANGE = (2**30, 2**32 - 1)
POSITION_PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: the requested position is no longer logged
_LOST = object()
QUEUED_CHANGES = KEYS_PER_READ  # a table's changes queued (or of one transaction) before it overflows
Table = tuple[str, str]


@dataclass(frozen=True)
class _Overflow:
    """Queued before the commit of a transaction whose changes of `table` were dropped: count it in full."""

    table: Table


@dataclass(frozen=True)
class _Commit:
    """Queued after a transaction's row events: the stream's position once they are read, and its commit's time."""

    position: str
    committed_at: datetime


RECOUNT_AGAIN_SECONDS = 1.0  # each read's keys are counted once more between one and two of these later

class BinlogStream:
    """One database's changes from the binary log; `open()`, then `read()` repeatedly, `close()`."""

    typed_values = True
    # The binary log is sent once written, before the engine's commit makes its rows visible (two-phase commit;
    # with semi-sync AFTER_SYNC, once a replica answers), and no session can ask which transactions it holds are
    # visible yet: a re-count in between counted the rows as they were (measured: 3 of 10 scenarios under load
    # missed a change, one a new duplicate). The reader asks whether each row a change named is visible yet, by
    # its table's primary key (monitor/live/visibility.py); the keys of a table without one are counted once
    # more this much later.
    recount_again = RECOUNT_AGAIN_SECONDS

    def __init__(self, database: str, url: URL, rules: Dialect) -> None:
        self.database = database
        self.url = url
        self.rules = rules
        self.server_id = SERVER_ID_RANGE[0] + secrets.randbelow(SERVER_ID_RANGE[1] - SERVER_ID_RANGE[0])
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # the queue and its counts, shared by the thread and `read()`
        self._events: deque[Any] = deque()
        self._columns: tuple[dict[Table, frozenset[str]], frozenset[Table]] | None = None  # `watch`: None keeps all
        # The databases whose rows the decoder reads: the URL's, and those of tables checks name as `db.table`
        # (`watch`); the rows of the others are skipped before they are decoded.
        self._schemas: set[str] = {url.database} if url.database else set()
        self._generation = 0  # of the queue: a thread of a stream closed before queues nothing more
        self._reset_queue()
        self._thread: threading.Thread | None = None
        self._arrived = threading.Event()  # something to read since the last `read()`
        self._lost: str | None = None
        self._resumable = False  # the stream was lost with its connection: it may be opened again where it was
        self._read_within = False  # the last `read()` ended within a transaction: its commit, read next, dates it
        self.gtid: dict[int, str] | None = None  # MariaDB: domain -> GTID of the last committed transaction read
        self.gtid_set: str | None = None  # MySQL with gtid_mode = ON: the GTIDs executed before it and read since
        self.position: str | None = None

    def _settings(self) -> dict[str, Any]:
        return {"host": self.url.host or "127.0.0.1", "port": self.url.port or 3306, "user": self.url.username or "",
                "password": self.url.password or "", "connect_timeout": CONNECT_TIMEOUT_SECONDS}

    def open(self, resume: str | None = None) -> str | None:
        """Check the server, then start reading: after `resume`, else after the last transaction read (MariaDB,
        when the stream was open before), else from the server's current position."""
        gap = None
        try:
            position, gtid_position, executed = self._refuse_unless_ready()
            if resume is not None:
                position, gap = self._resumed(resume, position, gtid_position, executed)
                if gap is not None:
                    self.gtid = self.gtid_set = None  # from the server's current position
            if gtid_position is not None and self.gtid is None:
                self.gtid = _gtid_state(gtid_position)
            if executed is not None and self.gtid_set is None:
                self.gtid_set = executed
        except pymysql.MySQLError as exc:
            raise StreamLost(f"database {self.database}: live stream: {_first_line(exc)}") from None
        self.position = f"gtid:{self._gtid_text()}" if self.gtid is not None else \
            f"gtidset:{self.gtid_set}" if self.gtid_set is not None else f"file:{position[0]}:{position[1]}"
        self._start(position)
        return gap

    def _start(self, position: tuple[str | None, int | None]) -> None:
        """Start the decoder process at `position` (after `self.gtid` on MariaDB) and the thread queueing what it
        sends, on an empty queue."""
        options = {
            "server_id": self.server_id, "blocking": True, "resume_stream": True, "log_file": position[0],
            "log_pos": position[1], "only_schemas": sorted(self._schemas) or None,
            "slave_heartbeat": HEARTBEAT_SECONDS,
            "enable_logging": False,
            # Without binlog_row_metadata = FULL the table map names no columns: they are read from
            # information_schema once per table, and again after each DDL statement (binlog_decoder). Its advice to
            # set it is a multi-line warning per stream, silenced in the decoder; the README says it.
            "use_column_name_cache": True}
        self._reset_queue()
        self._arrived = threading.Event()
        self._lost = None
        self._resumable = False
        # A new interpreter running the decoder's module only (`binlog_decoder.main`): never a fork of a process
        # that runs threads, and not multiprocessing's `spawn`, whose child runs the daemon's main script again
        # (the console script imports the CLI, SQLAlchemy and the engine: about a second the decoder does not need).
        # `-P`: the daemon's current directory is not on the decoder's `sys.path` (a `monitor` there must not be
        # imported in place of this package); `-s` and `-B` as the daemon was started.
        flags = ["-P", *(flag for flag, on in (("-s", sys.flags.no_user_site), ("-B", sys.flags.dont_write_bytecode))
                         if on)]
        receiver, sender = multiprocessing.Pipe(duplex=True)  # a socket pair: the start's arguments, then events
        try:
            self._process = subprocess.Popen(
                [sys.executable, *flags, "-m", binlog_decoder.__name__, str(sender.fileno()), str(os.getpid())],
                pass_fds=(sender.fileno(),), stdin=subprocess.DEVNULL, env=_decoder_env())
        except BaseException:
            receiver.close()
            raise
        finally:
            sender.close()  # the decoder's end: once it exits, `recv` ends
        # Sent once the decoder runs, which reads it first (a start larger than the socket's buffer cannot hang);
        # a decoder that ended before reading it: the pump reads the end, and the stream is lost (resumable).
        with contextlib.suppress(OSError):
            receiver.send((self._settings(), options, self.gtid, os.getpid(), self.gtid_set))
        self._thread = threading.Thread(target=self._pump, args=(receiver, self._arrived, self._generation),
                                        name=f"binlog-{self.database}", daemon=True)
        self._thread.start()

    @property
    def decoder_pid(self) -> int | None:
        """The process decoding the binary log (its CPU is the stream's; see benchmarks/bench_live.py)."""
        return self._process.pid if self._process is not None else None

    def _resumed(self, resume: str, current: tuple[str, int], gtid_position: str | None, executed: str | None
                 ) -> tuple[tuple[str, int], str | None]:
        """Where to start for `resume`: the file/position to read from (MariaDB: `self.gtid` is set to the saved
        GTID position; MySQL with GTIDs: `self.gtid_set` to the saved set) and, when `resume` is of a kind this
        server cannot continue, why (then: from `current`). A GTID position saved before the server logged any
        transaction is resumed only while it still logged none (an empty position is no place in the log)."""
        kind, _, value = resume.partition(":")
        if kind == "gtid" and gtid_position is not None and (value or not gtid_position):
            self.gtid = _gtid_state(value)
            return current, None
        if kind == "gtidset" and executed is not None and (value or not executed):
            self.gtid_set = value
            return current, None
        name, _, offset = value.rpartition(":")
        if kind == "file" and gtid_position is None and executed is None and name and offset.isdigit():
            return (name, int(offset)), None
        return current, f"cannot resume from the saved position {resume} on this server: changes since are not read"

    def _gtid_text(self) -> str | None:
        return ",".join(self.gtid.values()) if self.gtid is not None else None

    def _refuse_unless_ready(self) -> tuple[tuple[str, int], str | None, str | None]:
        """The current file/position, the current GTID position on a MariaDB server that has one, and the set of
        GTIDs executed on a MySQL server with `gtid_mode = ON`."""
        where = f"database {self.database}: live = true"
        conn = pymysql.connect(**self._settings())
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@version")
                log_bin, binlog_format, row_image, version = cursor.fetchone()
                if not log_bin:
                    raise LiveRefused(f"{where} needs the binary log: start the server with log_bin (and "
                                      "binlog_format = ROW), or remove live = true")
                if str(binlog_format).upper() != "ROW":
                    raise LiveRefused(f"{where} needs binlog_format = ROW (the server has {binlog_format}): set it "
                                      "in the server's configuration, or remove live = true")
                if str(row_image).upper() != "FULL":
                    raise LiveRefused(f"{where} needs binlog_row_image = FULL (the server has {row_image}): set "
                                      "it in the server's configuration, or remove live = true")
                cursor.execute("SHOW MASTER STATUS")
                row = cursor.fetchone()
                if row is None:
                    raise LiveRefused(f"{where} needs a role allowed to read the binary log position "
                                      "(GRANT REPLICATION CLIENT, or BINLOG MONITOR on MariaDB, and REPLICATION "
                                      "SLAVE), or remove live = true")
                position = str(row[0]), int(row[1])
                if "mariadb" in str(version).lower():
                    cursor.execute("SELECT @@gtid_binlog_pos")
                    return position, str(cursor.fetchone()[0] or ""), None
                cursor.execute("SHOW GLOBAL VARIABLES LIKE 'gtid_mode'")
                mode = cursor.fetchone()
                if mode is None or str(mode[1]).upper() != "ON":
                    return position, None, None
                cursor.execute("SELECT @@GLOBAL.gtid_executed")
                return position, None, "".join(str(cursor.fetchone()[0] or "").split())
        finally:
            conn.close()

    def _reset_queue(self) -> None:
        with self._lock:
            self._generation += 1
            self._events = deque()
            self._queued: dict[Table, int] = {}  # changes queued and not read yet, per table
            self._in_transaction: dict[Table, int] = {}  # changes since the last commit, per table
            self._overflowing: set[Table] = set()  # tables whose changes are dropped until the next commit
            self._marked: set[Table] = set()  # tables with an `_Overflow` queued and not read yet
            self._dropped = 0  # changes read from the log and not queued, not read yet (counted as events)

    def watch(self, columns: dict[Table, frozenset[str]], filtered: frozenset[Table]) -> None:
        """Also, where a check's table is in a database the decoder skips (`otherdb.table`), start the decoder
        again, with it, from where `read()` handed out every change: what it skipped since is read again."""
        self._columns = (columns, filtered)
        schemas = {schema for schema, _table in columns}
        if schemas <= self._schemas or self._process is None or self.position is None:
            return
        self._schemas |= schemas
        self.close()
        kind, _, value = self.position.partition(":")
        if kind == "gtid":  # the file and position are the GTID's
            self.gtid = _gtid_state(value)
            self._start((None, None))
        elif kind == "gtidset":
            self.gtid_set = value
            self._start((None, None))
        else:
            name, _, offset = value.rpartition(":")
            self._start((name, int(offset)))

    def _pump(self, receiver: Pipe, arrived: threading.Event, generation: int) -> None:
        """Hand what the decoder process sends to `read()`, keeping the GTID position of the last commit, and
        of each row the key columns only, in bounded memory (see the module's docstring)."""
        try:
            while True:
                message = receiver.recv()
                kind = message[0]
                if kind == "commit":
                    _kind, gtid, log_file, log_pos, timestamp, gtid_set = message
                    if gtid is not None:
                        self.gtid = _gtid_state(gtid)
                        position = f"gtid:{gtid}"
                    elif gtid_set is not None:
                        self.gtid_set = gtid_set
                        position = f"gtidset:{gtid_set}"
                    else:
                        position = f"file:{log_file}:{log_pos}"
                    self._queue_commit(generation, _Commit(position, datetime.fromtimestamp(timestamp, UTC)))
                    arrived.set()
                elif kind == "lost":
                    self._lost = self._lost_reason(message[1], message[2])
                    self._resumable = message[3] and message[1] != POSITION_PURGED
                    break
                elif kind == "reshaped":
                    self._queue_reshaped(generation, message[1], (message[2], message[3]))
                elif kind == "rows":
                    # `arrived` once its transaction's commit is there: one batch
                    self._queue_rows(generation, message[1], message[2])
                else:
                    with self._lock:
                        if generation == self._generation:
                            self._events.append(message)
        except (EOFError, OSError):
            if self._lost is None:  # the decoder died (killed): started again, it reads on from where it was
                self._lost, self._resumable = "the binary log decoder ended", True
        finally:
            receiver.close()
        with self._lock:
            if generation == self._generation:  # not the queue of the stream opened again
                self._events.append(_LOST)
        arrived.set()

    def _queue_rows(self, generation: int, timestamp: int, changes: list[Change]) -> None:
        """Queue one row event's changes (one table's), reduced to its checks' key columns, or drop them where
        no check watches the table or it overflows."""
        if not changes:
            return
        table, watched = (changes[0].schema, changes[0].table), self._columns
        read = len(changes)
        keep = None if watched is None else watched[0].get(table)
        if watched is not None and keep is not None:
            changes = [Change(c.schema, c.table, c.operation, _only(c.new, keep), _only(c.old, keep)) for c in changes]
            if table not in watched[1]:  # an UPDATE of no key column changes no group; one whose key the log
                # does not give (a zero date, left out of both rows: binlog_decoder.changes) may have
                changes = [c for c in changes if c.operation != "UPDATE" or c.old != c.new
                           or not keep <= (c.new or {}).keys()]
        with self._lock:
            if generation != self._generation:
                return
            self._dropped += read - len(changes)
            if watched is not None and keep is None:  # no check watches the table
                self._dropped += len(changes)
                return
            if not changes:
                return
            in_transaction = self._in_transaction[table] = self._in_transaction.get(table, 0) + len(changes)
            queued = self._queued.get(table, 0) + len(changes)
            if table in self._overflowing or queued > QUEUED_CHANGES or in_transaction > QUEUED_CHANGES:
                self._overflowing.add(table)
                self._dropped += len(changes)
                return
            self._queued[table] = queued
            self._events.append(("rows", timestamp, changes))

    def _queue_reshaped(self, generation: int, timestamp: int, table: Table) -> None:
        """Queue a row event whose rows the decoder could not name (`binlog_decoder.Catalog.reshaped`), unless no
        check watches its table."""
        with self._lock:
            if generation != self._generation:
                return
            watched = self._columns
            if watched is None or table in watched[0]:
                self._events.append(("reshaped", timestamp, table))

    def _queue_commit(self, generation: int, commit: _Commit) -> None:
        """Queue a commit, after an `_Overflow` for each table whose changes it dropped since the last one (none
        where one is still queued: it is read with this commit or after it)."""
        with self._lock:
            if generation != self._generation:
                return
            for table in self._overflowing - self._marked:
                self._events.append(_Overflow(table))
                self._marked.add(table)
            self._overflowing.clear()
            self._in_transaction.clear()
            if self._events and isinstance(self._events[-1], _Commit):
                self._events[-1] = commit  # nothing between: the later one says all
            else:
                self._events.append(commit)

    def _lost_reason(self, code: int | None, text: str) -> str:
        if code == POSITION_PURGED:
            where = f"GTID position {self._gtid_text()}" if self.gtid is not None else \
                f"GTIDs {self.gtid_set}" if self.gtid_set is not None else f"position {self.position}"
            self.gtid = self.gtid_set = None  # opened again, the stream starts from the server's current position
            return f"the binary log no longer holds {where} (purged?): {text}"
        return text

    def wait(self, timeout: float) -> None:
        """Return once a transaction's commit (or the stream's end) has arrived, or after `timeout` seconds."""
        self._arrived.wait(timeout)

    def read(self, fold: Fold | None = None) -> list[Transaction]:
        self._arrived.clear()  # before taking: what arrives from now on is waited for by the next `wait`
        with self._lock:  # all that is queued, at once
            taken, self._events = self._events, deque()
            dropped, self._dropped = self._dropped, 0
            self._queued.clear()
            self._marked.clear()
        done: list[Transaction] = [Transaction(folded=dropped)] if dropped else []
        uncommitted: list[Transaction] = []  # read since the last commit: dated by it once it is read
        for event in taken:
            if event is _LOST:
                self.close()
                raise StreamLost(f"database {self.database}: live stream: {self._lost or 'the binary log ended'}",
                                 resumable=self._resumable)
            if isinstance(event, _Commit):
                self.position = event.position
                for transaction in uncommitted:  # a row event is dated when its statement began, not committed
                    transaction.committed_at = max(event.committed_at, transaction.committed_at or event.committed_at)
                if self._read_within and not uncommitted:  # its rows were handed out by the read before
                    done.append(Transaction(event.committed_at))
                self._read_within = False
                uncommitted.clear()
                if fold is not None:  # the rows folded next are another transaction's (a read may end within one)
                    fold(COMMITTED)
                continue
            if isinstance(event, _Overflow):
                change = overflowed(*event.table)
                if fold is not None:
                    fold(change)
                done.append(Transaction(changes=[] if fold is not None else [change]))
                continue
            committed_at = datetime.fromtimestamp(event[1], UTC)
            if event[0] == "unseen":  # a statement's rows (TRUNCATE) are not logged as rows
                done.append(Transaction(committed_at, unseen=True))
            elif event[0] == "statement":  # rows added or given a key that the log does not name
                done.append(Transaction(committed_at, unseen=True, unnamed=_unnamed(event[2])))
            elif event[0] == "reshaped":  # rows the decoder could not name: which keys they had is not known
                if self._columns is not None and event[2] not in self._columns[0]:
                    continue  # queued before the reader said which tables it watches: not one of them
                done.append(Transaction(committed_at, unseen=True, unnamed=_reshaped(event[2])))
            elif fold is not None:
                for change in event[2]:
                    fold(change)
                done.append(Transaction(committed_at, folded=len(event[2])))
            else:
                done.append(Transaction(committed_at, event[2]))
            uncommitted.append(done[-1])
        for transaction in uncommitted:  # the read ended within a transaction: its commit, read next, dates it
            transaction.committed_at = None  # (a row event is dated when its statement began)
        self._read_within = self._read_within or bool(uncommitted)
        return done

    def table_name(self, conn: Connection, table: sa.Table) -> tuple[str, str]:
        schema = table.schema or conn.execute(sa.text("SELECT DATABASE()")).scalar()
        return str(schema), table.name

    def where_tables(self, conn: Connection, table: sa.Table, filters: list[Any]) -> set[tuple[str, str]]:
        """The tables whose names the `where`'s text holds (`ignored`, `other_db`.`ignored`), but `table`, and those
        under every view it names, read from the view's definition as the server stores it (every table in it
        qualified and quoted), at any depth: the binary log names a view's table, never the view. A plan names a
        table by its alias only (EXPLAIN FORMAT=JSON, the optimizer trace), and a view's by the alias its
        definition gives it, so the names are read from the text; a column named as a table costs a full count
        more, never a miss. Before, a view's rows were followed under the view's name (never in the log), and a
        table named in letters beyond ASCII (unquoted) was not read as a name at all: a row the `where` let back in
        made a duplicate the stream never counted."""
        if not filters:
            return set()
        text = " ".join(str(f.compile(conn, compile_kwargs={"literal_binds": True})) for f in filters)
        current = conn.execute(sa.text("SELECT DATABASE()")).scalar()
        schemas = {str(s) for s in (table.schema, current) if s is not None}
        found: set[tuple[str, str]] = set()
        views: set[tuple[str, str]] = set()
        texts = [(text, schemas)]
        while texts:
            text, defaults = texts.pop()
            words = _names_in(text)
            if not words:
                continue
            rows = conn.execute(sa.text(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_NAME IN :words"
                " AND (TABLE_SCHEMA IN :schemas OR TABLE_SCHEMA IN :words)").bindparams(
                    sa.bindparam("words", expanding=True), sa.bindparam("schemas", expanding=True)),
                {"words": words, "schemas": sorted(defaults)}).all()
            for schema, name, kind in rows:
                if kind != "VIEW":
                    found.add((str(schema), str(name)))
                elif (str(schema), str(name)) not in views:
                    views.add((str(schema), str(name)))
                    definition = conn.execute(sa.text(
                        "SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = :schema"
                        " AND TABLE_NAME = :name"), {"schema": schema, "name": name}).scalar()
                    texts.append((str(definition or ""), {str(schema)}))
        return found - {(str(table.schema or current), table.name)}

    def unstreamed(self, conn: Connection, table: sa.Table) -> str | None:
        return None  # every engine's row changes are logged (a statement logged as a statement is a gap)

    def unlogged_cascades(self, conn: Connection, table: tuple[str, str]) -> list[Cascade]:
        """InnoDB's foreign key actions: the binary log holds the parent's row only (monitor/live/cascades.py)."""
        rows = conn.execute(sa.text(
            "SELECT k.CONSTRAINT_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.COLUMN_NAME,"
            " k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE"
            " FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r"
            " ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME"
            " AND r.TABLE_NAME = k.TABLE_NAME"
            " WHERE k.TABLE_SCHEMA = :schema AND k.TABLE_NAME = :table AND k.REFERENCED_TABLE_NAME IS NOT NULL"),
            {"schema": table[0], "table": table[1]}).all()
        keys: dict[str, list[Any]] = {}
        for row in rows:
            keys.setdefault(str(row[0]), []).append(row)
        return [Cascade((str(first[1]), str(first[2])), frozenset(str(r[3]) for r in columns),
                        frozenset(str(r[4]) for r in columns), str(first[5]), str(first[6]))
                for columns in keys.values() for first in columns[:1]]

    def unsettled(self, xids: set[str]) -> set[str]:
        """Empty: no session can ask the server about a transaction the binary log holds (its rows are asked
        about instead: `recount_again`)."""
        return set()

    def close(self) -> None:
        """End the decoder process (its replica connection goes with it) and the thread reading from it."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def _decoder_env() -> dict[str, str]:
    """The environment of the decoder process: the daemon's, and where the `monitor` package is not in a site
    directory (a source checkout, found from the script's directory or the current one), that directory first on
    PYTHONPATH so that `python -m` finds the same package."""
    root = str(Path(binlog_decoder.__file__).resolve().parents[2])
    env = dict(os.environ)
    sites = {str(Path(path).resolve()) for path in (*site.getsitepackages(), site.getusersitepackages())}
    if root not in sites:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    return env


def _only(row: Row | None, columns: frozenset[str]) -> Row | None:
    return None if row is None else {name: value for name, value in row.items() if name in columns}


def _unnamed(verb: str) -> str:
    """Why a statement's transaction names no rows that may have formed groups (`Transaction.unnamed`)."""
    if verb == "XA COMMIT":
        return ("XA COMMIT of a transaction whose rows were not kept since its XA PREPARE (prepared before the stream "
                "began, or too many): every check counted in full")
    if verb in ("ALTER TABLE", "RENAME TABLE"):
        return (f"{verb} changed tables without logging their rows (a key's type or collation, or a table swapped "
                "in): every check counted in full")
    if verb in ("INSERT", "REPLACE", "UPDATE", "LOAD", "LOAD DATA", "CREATE TABLE"):
        return (f"{verb} logged as a statement, naming no rows (a session's binlog_format is not ROW): every check "
                "counted in full")
    return (f"{verb} logged as a statement that may have added rows without naming them (a statement live mode does "
            "not know): every check counted in full")


def _reshaped(table: Table) -> str:
    """Why the rows of `table` in a transaction are not read (`binlog_decoder.Catalog.reshaped`)."""
    return (f"rows of {table[0]}.{table[1]} logged before its columns changed, which the binary log does not "
            "name (binlog_row_metadata is not FULL): not read, every check counted in full")


def _gtid_state(position: str) -> dict[int, str]:
    """`0-1-12,1-2-7` (one GTID per replication domain) as {domain: GTID}."""
    return {int(gtid.split("-", 1)[0]): gtid for gtid in (g.strip() for g in position.split(",")) if gtid}


_first_line = binlog_decoder.first_line


# A name as the server reads one: unquoted, of ASCII letters, digits, `_`, `$` and any character of the Basic
# Multilingual Plane beyond ASCII (MariaDB's and MySQL's unquoted identifiers); or quoted, in backquotes or double
# quotes (ANSI_QUOTES), the quote doubled in it.
_BARE = re.compile(r"[0-9A-Za-z_$\u0080-\uffff]+")
_QUOTED = {quote: re.compile(f"{quote}((?:[^{quote}]|{quote}{quote})+){quote}") for quote in "`\""}


def _names_in(text: str) -> list[str]:
    """The words of `text` that may name a table or a database, each once. Every unquoted word of the whole text,
    and every quoted one as either pairing of the quotes reads it: a quote inside a string (`'a"b'`) pairs with the
    next one, and taken so the text between (`ignored`, `odd name`) was one quoted word. A name holds no
    character beyond the Basic Multilingual Plane: such a word names no table, and information_schema's utf8mb3
    names cannot be compared with it ("Illegal mix of collations")."""
    words = set(_BARE.findall(text))
    for quote, quoted in _QUOTED.items():
        words.update(name.replace(quote * 2, quote) for name in quoted.findall(text))
        words.update(text.split(quote)[1:-1])  # between any two quotes in a row, whichever pairs with which
    return sorted(w for w in words if w and all(ord(ch) <= 0xFFFF for ch in w))

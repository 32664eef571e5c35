"""MariaDB/MySQL's change stream: the binary log, read with `python-mysql-replication` as a replica would.

The stream registers as a replica with a server id of its own (random, far above the ids operators number
their servers with) and reads row events from the binary log position current when it opened, on a thread of
its own that hands them to `read()`. It needs the binary log on, `binlog_format = ROW` (MariaDB's default is
MIXED, whose statement events name no rows) and `binlog_row_image = FULL` (so an UPDATE or DELETE carries the
old key); otherwise it refuses with one line saying what to change, and never changes a setting. It writes
nothing; the server keeps no state for it (a replica's position lives on the replica), so an abandoned
daemon retains nothing. Row values arrive typed (ints, strings, datetimes), not as text.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import secrets
import socket
import threading
from datetime import UTC, datetime
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from monitor.dialects.base import Dialect
from monitor.live.changes import Change, LiveRefused, StreamLost, Transaction

CONNECT_TIMEOUT_SECONDS = 10
HEARTBEAT_SECONDS = 5.0  # the server sends one when idle, so a dead connection is noticed
SERVER_ID_RANGE = (2**30, 2**32 - 1)
_LOST = object()


class BinlogStream:
    """One database's changes from the binary log; `open()`, then `read()` repeatedly, `close()`."""

    typed_values = True

    def __init__(self, database: str, url: URL, rules: Dialect) -> None:
        self.database = database
        self.url = url
        self.rules = rules
        self.server_id = SERVER_ID_RANGE[0] + secrets.randbelow(SERVER_ID_RANGE[1] - SERVER_ID_RANGE[0])
        self._reader: Any = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        self._closing = False

    def _settings(self) -> dict[str, Any]:
        return {"host": self.url.host or "127.0.0.1", "port": self.url.port or 3306, "user": self.url.username or "",
                "password": self.url.password or "", "connect_timeout": CONNECT_TIMEOUT_SECONDS}

    def open(self) -> None:
        """Check the server, then start reading from its current binary log position."""
        events = _row_events()
        # Its advice to set binlog_row_metadata = FULL is a multi-line warning per stream; the README says it.
        logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)
        try:
            position, is_mariadb = self._refuse_unless_ready()
            self._reader = _replication().BinLogStreamReader(
                connection_settings=self._settings(), server_id=self.server_id, blocking=True, resume_stream=True,
                log_file=position[0], log_pos=position[1], only_schemas=[self.url.database],
                only_events=[events.WriteRowsEvent, events.UpdateRowsEvent, events.DeleteRowsEvent],
                is_mariadb=is_mariadb,
                slave_heartbeat=HEARTBEAT_SECONDS, enable_logging=False,
                # Without binlog_row_metadata = FULL the table map names no columns: they are read from
                # information_schema once per table (a column reordered later needs a daemon restart).
                use_column_name_cache=True, pymysql_wrapper=self._connect)
        except pymysql.MySQLError as exc:
            raise StreamLost(f"database {self.database}: live stream: {_first_line(exc)}") from None
        self._events = queue.SimpleQueue()
        self._lost = None
        self._closing = False
        self._thread = threading.Thread(target=self._pump, name=f"binlog-{self.database}", daemon=True)
        self._thread.start()

    def _refuse_unless_ready(self) -> tuple[tuple[str, int], bool]:
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
                return (str(row[0]), int(row[1])), "mariadb" in str(version).lower()
        finally:
            conn.close()

    def _connect(self, **settings: Any) -> Any:
        """The reader's connections. It reconnects on its own after a lost connection, from its position (no
        gap); once the stream is closing it must not, so that its thread ends."""
        if self._closing:
            raise StreamLost(f"database {self.database}: live stream closed")
        return pymysql.connect(**settings)

    def _pump(self) -> None:
        reader = self._reader
        try:
            for event in reader:
                self._events.put(event)
        except Exception as exc:  # any failure of the reader's thread is a gap, reported by read()
            self._lost = _first_line(exc)
        self._events.put(_LOST)

    def read(self) -> list[Transaction]:
        done: list[Transaction] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return done
            if event is _LOST:
                self.close()
                raise StreamLost(f"database {self.database}: live stream: {self._lost or 'the binary log ended'}")
            done.append(Transaction(datetime.fromtimestamp(event.timestamp, UTC), list(_changes(event))))

    def table_name(self, conn: Connection, table: sa.Table) -> tuple[str, str]:
        schema = table.schema or conn.execute(sa.text("SELECT DATABASE()")).scalar()
        return str(schema), table.name

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        self._closing = True
        # The pump thread is blocked reading the socket: closing its buffered reader would wait for that read
        # (up to a heartbeat), so the socket is shut down first and the read returns at once.
        sock = getattr(getattr(reader, "_stream_connection", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):  # closing a connection that already broke
            reader.close()


def _replication() -> Any:
    """python-mysql-replication (untyped, hence imported as a module object), loaded on first use."""
    return importlib.import_module("pymysqlreplication")


def _row_events() -> Any:
    return importlib.import_module("pymysqlreplication.row_event")


def _changes(event: Any) -> list[Change]:
    events = _row_events()
    if isinstance(event, events.WriteRowsEvent):
        return [Change(event.schema, event.table, "INSERT", new=row["values"]) for row in event.rows]
    if isinstance(event, events.UpdateRowsEvent):
        return [Change(event.schema, event.table, "UPDATE", new=row["after_values"], old=row["before_values"])
                for row in event.rows]
    return [Change(event.schema, event.table, "DELETE", old=row["values"]) for row in event.rows]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

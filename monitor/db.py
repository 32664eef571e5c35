"""Connections: one pooled engine per configured database, read-only transactions with the database's
statement timeout, dialect quirks, and URL/password redaction for everything that reaches a user.

Detection connections are read-only at two levels: every session is put in read-only transaction mode
when it connects, and every transaction is rolled back, never committed. Fixes use a separate engine
(`Database.writer`), from `fix_url` when one is configured.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from monitor.config import ConfigError, DatabaseConfig

CONNECT_TIMEOUT_SECONDS = 5
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                    "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


SUPPORTED_BACKENDS = ("postgresql", "mysql", "mariadb", "sqlite")
_WRITE_REFUSED = ("read-only transaction", "read only transaction", "readonly database")


class DatabaseError(Exception):
    """A database could not be reached or refused a query; the message is one line, password-free."""


def parse_url(url: str, where: str) -> URL:
    """A SQLAlchemy URL, with the project's drivers filled in for bare `postgresql://` / `mysql://`."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{where}: not a database URL: {redact_text(url, [url])}") from None
    driver = _DEFAULT_DRIVERS.get(parsed.drivername)
    parsed = parsed.set(drivername=driver) if driver else parsed
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ConfigError(f"{where}: unsupported database {parsed.get_backend_name()!r} in "
                          f"{redact_url(parsed)} (dupewatch supports postgresql://, mysql://, mariadb:// "
                          "and sqlite:///)")
    return parsed


def redact_url(url: str | URL) -> str:
    """The URL as text with its password replaced by `***`."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def redact_text(text: str, urls: list[str | URL]) -> str:
    """`text` with every password of `urls` (plain or URL-encoded) masked."""
    for url in urls:
        try:
            parsed = url if isinstance(url, URL) else make_url(url)
        except ArgumentError:
            continue
        password = parsed.password
        if password:
            for form in {str(password), quote_plus(str(password))}:
                text = text.replace(form, "***")
    return text


def first_line(exc: BaseException) -> str:
    """The useful first line of a DBAPI or SQLAlchemy error, without SQLAlchemy's SQL echo and links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    args = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # PyMySQL: (code, message)
        text = args[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


class Database:
    """A configured database: a lazily created pooled engine for detection and another for fixes."""

    def __init__(self, name: str, config: DatabaseConfig, *, fix_schema: str | None = None) -> None:
        self.name = name
        self.config = config
        self.fix_schema = fix_schema  # `[fix] schema`: where fixes keep their tables (see monitor/fix/records.py)
        self.url = parse_url(config.resolved_url(name), f"databases.{name}.url")
        self._fix_url_text = config.resolved_fix_url(name)
        self._engine: Engine | None = None
        self._writer: Engine | None = None

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def dialect(self) -> str:
        """`postgresql`, `mysql` (MySQL and MariaDB) or `sqlite`."""
        return self.url.get_backend_name().replace("mariadb", "mysql")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._create_engine(self.url, read_only=True)
        return self._engine

    @property
    def writer(self) -> Engine:
        """The engine fixes use: `fix_url` when configured, else the detection URL, without read-only mode."""
        if self._writer is None:
            url = parse_url(self._fix_url_text, f"databases.{self.name}.fix_url")
            self._writer = self._create_engine(url, read_only=False)
        return self._writer

    @property
    def bookkeeping(self) -> Engine:
        """The writing engine with dupewatch's own tables placed in `[fix] schema` (see monitor/fix/records.py)."""
        from monitor.fix.records import BOOKKEEPING

        return self.writer.execution_options(schema_translate_map={BOOKKEEPING: self.fix_schema})

    def _create_engine(self, url: URL, *, read_only: bool) -> Engine:
        connect_args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        backend = url.get_backend_name()
        if backend == "postgresql":
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
            connect_args["application_name"] = "dupewatch"
        elif backend in ("mysql", "mariadb"):
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
            connect_args["charset"] = "utf8mb4"
        if read_only:
            # Each check runs its own statement once per interval, so a daemon with 200 checks would keep 200
            # compiled forms (about 7 MB) that save well under a millisecond per run; fixes repeat theirs.
            kwargs["query_cache_size"] = 0
        if backend != "sqlite":
            kwargs.update(pool_size=2, max_overflow=8, pool_recycle=1800, pool_timeout=30)
        elif not read_only:
            # A fix waits for the application's short write transactions (SQLite's busy timeout) instead of
            # failing after the driver's default 5 s when the application writes without pause.
            connect_args["timeout"] = max(self.config.statement_timeout, 5.0)
        try:
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(f"databases.{self.name}.url: {exc}") from None
        except ImportError as exc:
            raise ConfigError(
                f"databases.{self.name}.url: the driver of {redact_url(url)} is not installed ({exc}); "
                "drop the +driver part to use the bundled one (psycopg, PyMySQL, sqlite3)") from None
        timeout = self.config.statement_timeout
        event.listen(engine, "connect", lambda dbapi, _record: _prepare_session(
            dbapi, backend, read_only=read_only, timeout=timeout))
        if backend == "sqlite" and not read_only:
            _begin_immediate(engine)
        return engine

    @contextmanager
    def read_only(self) -> Iterator[Connection]:
        """A connection inside a read-only transaction that is always rolled back."""
        with self.connect(self.engine) as conn:
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()

    @contextmanager
    def connect(self, engine: Engine) -> Iterator[Connection]:
        """A connection from `engine`, turning connection failures into a one-line `DatabaseError`."""
        if self.dialect == "sqlite" and not _sqlite_file_exists(engine.url):
            # sqlite3 would silently create an empty database: a typo in the path must be an error instead.
            raise DatabaseError(f"database {self.name!r} ({self.display_url}): file not found: {engine.url.database}")
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(self.describe(exc)) from None
        except Exception as exc:  # drivers raise plain OSError and friends for DNS or socket trouble
            raise DatabaseError(self.describe(exc)) from None
        with conn:
            if self.dialect == "sqlite":
                _arm_sqlite_deadline(conn, self.config.statement_timeout)
            try:
                yield conn
            finally:
                if self.dialect == "sqlite":
                    _disarm_sqlite_deadline(conn)

    def describe(self, exc: BaseException) -> str:
        """A one-line, password-free description of a database error."""
        text = first_line(exc)
        if "canceling statement due to statement timeout" in text or "max_statement_time" in text \
                or "maximum statement execution time" in text.lower() or text == "interrupted":
            text = f"query exceeded statement_timeout ({self.config.statement_timeout:g}s)"
        elif any(marker in text.lower() for marker in _WRITE_REFUSED):
            text = f"refused a write, checks run read-only ({text})"
        return redact_text(f"database {self.name!r} ({self.display_url}): {text}",
                           [self.url, self._fix_url_text])

    def dispose(self) -> None:
        for engine in (self._engine, self._writer):
            if engine is not None:
                engine.dispose()
        self._engine = self._writer = None


def _prepare_session(dbapi: Any, backend: str, *, read_only: bool, timeout: float) -> None:
    """Per-connection session settings: read-only mode for detection and the statement timeout."""
    if backend == "sqlite":
        if read_only:
            dbapi.execute("PRAGMA query_only = ON")
        return
    statements: list[str] = []
    if backend == "postgresql":
        if read_only:
            statements.append("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        statements.append(f"SET statement_timeout = {int(timeout * 1000)}")
    elif backend in ("mysql", "mariadb"):
        if read_only:
            statements.append("SET SESSION TRANSACTION READ ONLY")
        cursor = dbapi.cursor()
        cursor.execute("SELECT VERSION()")
        version = str(cursor.fetchone()[0])
        cursor.close()
        if "mariadb" in version.lower():
            statements.append(f"SET SESSION max_statement_time = {timeout:.3f}")
        else:
            statements.append(f"SET SESSION max_execution_time = {int(timeout * 1000)}")
    cursor = dbapi.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()
    dbapi.commit()


@event.listens_for(sa.Table, "column_reflect")
def _unescape_mysql_backticks(inspector: Any, _table: sa.Table, column: dict[str, Any]) -> None:
    """SQLAlchemy's MySQL reflection reads names from SHOW CREATE TABLE and leaves a backtick in a column
    name doubled (`a``b`), so every statement naming that column would fail; use the real name."""
    if inspector.dialect.name in ("mysql", "mariadb") and "``" in column["name"]:
        column["name"] = column["name"].replace("``", "`")


def _begin_immediate(engine: Engine) -> None:
    """SQLite writers take the write lock when their transaction begins (`BEGIN IMMEDIATE`), not at their
    first write, so a fix's read-check-write batch cannot interleave with another writer."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # the sqlite3 module would otherwise emit its own deferred BEGIN

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file_exists(url: URL) -> bool:
    path = url.database or ""
    if path in ("", ":memory:") or path.startswith("file:") or url.query.get("mode") == "memory":
        return True
    return Path(path).is_file()


def _arm_sqlite_deadline(conn: Connection, timeout: float) -> None:
    """SQLite has no statement timeout: interrupt the query from its progress handler instead."""
    raw = conn.connection.dbapi_connection
    if isinstance(raw, sqlite3.Connection):
        deadline = time.monotonic() + timeout
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 20_000)


def _disarm_sqlite_deadline(conn: Connection) -> None:
    try:
        raw = conn.connection.dbapi_connection
    except sa.exc.ResourceClosedError:
        return
    if isinstance(raw, sqlite3.Connection):
        raw.set_progress_handler(None, 0)

"""Connections: one pooled engine per configured database, read-only transactions with the database's
statement timeout, dialect quirks, and URL/password redaction for everything that reaches a user.

Detection connections are read-only at two levels: every session is put in read-only transaction mode
when it connects, and every transaction is rolled back, never committed. Fixes use a separate engine
(`Database.writer`), from `fix_url` when one is configured.
"""

from __future__ import annotations

import re
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SAWarning

from monitor.config import Config, ConfigError, DatabaseConfig

# Reflection warns about column types and indexes it cannot represent (MariaDB's inet6, SQLite expression
# indexes). Detection reflects only the checked tables and needs neither, so the warnings only alarm.
warnings.filterwarnings("ignore", message=r"Did not recognize type", category=SAWarning)
warnings.filterwarnings("ignore", message=r"Skipped unsupported reflection of expression-based index",
                        category=SAWarning)
warnings.filterwarnings("ignore", message=r"Predicate of partial index .* ignored during reflection",
                        category=SAWarning)

CONNECT_TIMEOUT_SECONDS = 5
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                    "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


SUPPORTED_BACKENDS = ("postgresql", "mysql", "mariadb", "sqlite")
_WRITE_REFUSED = ("read-only transaction", "read only transaction", "readonly database")


class DatabaseError(Exception):
    """A database could not be reached or refused a query; the message is one line, password-free."""


# Every form of a password in URL text: the userinfo of `scheme://user:password@host` (up to the last `@` of
# the word, so an unencoded `@` in the password is masked too) and a `password=` query parameter.
_USERINFO_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^:@/\s]*):\S*@")
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|sslpassword)=)[^&\s'\"(),;]*", re.I)
_PASSWORD_PARAMETERS = ("password", "passwd", "pwd", "sslpassword")


def mask_url_text(text: str) -> str:
    """`text` with any password written in a URL masked as `***`, whether or not the URL parses."""
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", text))


def parse_url(url: str, where: str) -> URL:
    """A SQLAlchemy URL, with the project's drivers filled in for bare `postgresql://` / `mysql://`.

    Raises `ConfigError` (one line, password masked) for text that is not a URL, a port that is not a
    number, and an ambiguous URL: an unencoded `@` in the password would make SQLAlchemy read the rest of
    the password as the host name (RFC 3986 userinfo ends at the first `@`... or the last, depending on
    the parser), so it is refused with a hint to percent-encode.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{where}: not a database URL: {mask_url_text(url)}") from None
    except ValueError:  # make_url's int(port)
        raise ConfigError(f"{where}: the port is not a number in {mask_url_text(url)}") from None
    if parsed.host and "@" in parsed.host:
        raise ConfigError(f"{where}: ambiguous URL {mask_url_text(url)}: it has more than one '@'; "
                          f"percent-encode '@' in the password as %40 (in Python: urllib.parse.quote(password, "
                          "safe=''))")
    driver = _DEFAULT_DRIVERS.get(parsed.drivername)
    parsed = parsed.set(drivername=driver) if driver else parsed
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ConfigError(f"{where}: unsupported database {parsed.get_backend_name()!r} in "
                          f"{redact_url(parsed)} (dupewatch supports postgresql://, mysql://, mariadb:// "
                          "and sqlite:///)")
    return parsed


def redact_url(url: str | URL) -> str:
    """The URL as text with its password (userinfo or `?password=` parameter) replaced by `***`."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return mask_url_text(str(url)) if isinstance(url, str) else "<unparseable URL>"
    masked = {k: "***" for k in parsed.query if k.lower() in _PASSWORD_PARAMETERS}
    if masked:
        parsed = parsed.update_query_dict(masked)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def url_passwords(url: str | URL) -> list[str]:
    """Every password a URL carries: its userinfo password and any password query parameter."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return []
    found = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if key.lower() in _PASSWORD_PARAMETERS:
            found.extend([value] if isinstance(value, str) else list(value))
    if found and url.host and "@" in url.host:  # ambiguous: the rest of the password went to the host name
        rest = url.host.rpartition("@")[0]
        found.extend([f"{found[0]}@{rest}", rest])
    return found


def redact_text(text: str, urls: list[str | URL]) -> str:
    """`text` with every password of `urls` (plain or URL-encoded, in the userinfo or a query parameter)
    masked, and any other password written in a URL too."""
    for url in urls:
        for password in sorted(url_passwords(url), key=len, reverse=True):
            for form in {password, quote_plus(password), quote(password, safe="")}:
                if form:
                    text = text.replace(form, "***")
    return mask_url_text(text)


def url_problems(config: Config, *, environment: bool = True, databases: set[str] | None = None) -> list[str]:
    """What is wrong with the configured database URLs (unparseable, ambiguous, unsupported, a missing
    environment variable), one line each naming the file and the field; `environment=False` checks only
    URLs written in the file; `databases` limits the check to those databases."""
    where = f"{config.path}: " if config.path else ""
    problems: list[str] = []
    for name, database in config.databases.items():
        if databases is not None and name not in databases:
            continue
        pairs = [("url", database.url, database.url_env), ("fix_url", database.fix_url, database.fix_url_env)]
        for field, inline, env in pairs:
            if inline is None and env is None:
                continue
            try:
                if inline is None and not environment:
                    continue
                text = database.resolved_url(name) if field == "url" else database.resolved_fix_url(name)
                parse_url(text, f"databases.{name}.{field if inline is not None else field + '_env'}")
            except ConfigError as exc:
                problems.extend(f"{where}{line}" for line in exc.problems)
    return problems


def first_line(exc: BaseException) -> str:
    """The useful first line of a DBAPI or SQLAlchemy error, without SQLAlchemy's SQL echo and links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    args = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # PyMySQL: (code, message)
        text = args[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


# Errors about data rather than about the query quote the offending value, which comes from a row:
# PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation), and the MySQL/MariaDB
# codes of the same kinds (1264 out of range, 1265 truncated, 1292 incorrect value, 1366 incorrect integer
# value, 1367 illegal value, 1406 too long, 1062 duplicate entry, 3140 invalid JSON, 1411 incorrect datetime).
_MYSQL_DATA_ERRORS = {1062, 1264, 1265, 1292, 1366, 1367, 1406, 1411, 3140}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
VALUE_HIDDEN = "(value not shown)"


def without_values(exc: BaseException, text: str) -> str:
    """`text` with the quoted values of a data error replaced by `(value not shown)`, and PostgreSQL's position
    of the error in the statement (`at character N`) appended; other errors unchanged (their quotes name
    tables and columns)."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    args = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if (isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")) or code in _MYSQL_DATA_ERRORS:
        text = _QUOTED.sub(VALUE_HIDDEN, text)
        position = getattr(getattr(orig, "diag", None), "statement_position", None)
        if position:
            text += f" (at character {position} of the statement)"
    return text


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
        """A one-line, password-free description of a database error; the values a data error quotes (row
        values, from the table) are dropped, its kind and position kept (see `without_values`)."""
        text = without_values(exc, first_line(exc))
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

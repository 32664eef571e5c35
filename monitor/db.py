"""Connections: one pooled engine per configured database (fleet targets that keep no connection share one per
server), read-only transactions with the database's statement timeout and a client-side deadline, and
URL/password redaction for everything that reaches a user.

Detection connections are read-only at two levels: every session is put in read-only mode when it connects
(how is the dialect's business, `monitor.dialects`), and every transaction is rolled back, never committed.
Their session state is reset when they return to the pool. Fixes use a separate engine (`Database.writer`),
from `fix_url` when one is configured.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SAWarning

from monitor.config import Config, ConfigError, DatabaseConfig, TargetDatabaseConfig
from monitor.dialects import DEFAULT_DRIVERS, SUPPORTED_BACKENDS, Dialect, for_backend
from monitor.interrupt import ctrl_c_again, statement_begins

# Reflection warns about column types and indexes it cannot represent (MariaDB's inet6, SQLite expression
# indexes). Detection reflects only the checked tables and needs neither, so the warnings only alarm.
warnings.filterwarnings("ignore", message=r"Did not recognize type", category=SAWarning)
warnings.filterwarnings("ignore", message=r"Skipped unsupported reflection of expression-based index",
                        category=SAWarning)
warnings.filterwarnings("ignore", message=r"Predicate of partial index .* ignored during reflection",
                        category=SAWarning)

log = logging.getLogger("dupewatch.db")

CONNECT_TIMEOUT_SECONDS = 5
DEADLINE_GRACE_SECONDS = 2.0  # beyond statement_timeout, before dupewatch gives up on a statement itself
CANCEL_WAIT_SECONDS = 1.0  # for the server to act on a cancel before the connection's socket is shut


_owner_lookups: list[Callable[[], object | None]] = []


def register_owner_lookup(lookup: Callable[[], object | None]) -> None:
    """Let a face name who runs a query (say, the dashboard's current thread worker), so that it can cancel
    the queries of one owner (`Database.cancel_running(owners=...)`): `lookup` is called on the querying thread."""
    _owner_lookups.append(lookup)


def _current_owner() -> object | None:
    for lookup in _owner_lookups:
        owner = lookup()
        if owner is not None:
            return owner
    return None


class DatabaseError(Exception):
    """A database could not be reached or refused a query; the message is one line, password-free."""


# Every form of a password in URL text: the userinfo of `scheme://user:password@host` (up to the last `@` of
# the word, so an unencoded `@` in the password is masked too) and a `password=` query parameter.
_USERINFO_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^:/\s]*):\S*@")
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
    ambiguous = ConfigError(f"{where}: ambiguous URL {mask_url_text(url)}: it has more than one '@'; "
                            f"percent-encode '@' in the password as %40 (in Python: urllib.parse.quote(password, "
                            "safe=''))")
    if _at_sign_in_user_part(url):
        raise ambiguous
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{where}: not a database URL: {mask_url_text(url)}") from None
    except ValueError:  # make_url's int(port)
        raise ConfigError(f"{where}: the port is not a number in {mask_url_text(url)}") from None
    if parsed.host and "@" in parsed.host:
        raise ambiguous
    driver = DEFAULT_DRIVERS.get(parsed.drivername)
    parsed = parsed.set(drivername=driver) if driver else parsed
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ConfigError(f"{where}: unsupported database {parsed.get_backend_name()!r} in "
                          f"{redact_url(parsed)} (dupewatch supports postgresql://, mysql://, mariadb:// "
                          "and sqlite:///)")
    _check_parameters(parsed, where)
    return parsed


def _check_parameters(url: URL, where: str) -> None:
    """Raise `ConfigError` for a URL parameter its SQLAlchemy dialect cannot read (`?read_timeout=abc`,
    `?check_same_thread=maybe`), which `create_engine` would raise as a bare `ValueError` when a check first
    connects, or would ignore with a Python warning (SQLite's `?mode=ro` without `uri=true`). The driver itself is
    not imported; what the driver refuses is its one-line connection error."""
    try:
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError):
        return  # an unknown +driver: `Database._create_engine` names it
    try:
        with warnings.catch_warnings():  # a parameter the driver would ignore (sqlite's `?mode=ro` without uri=true)
            warnings.simplefilter("error", SAWarning)
            dialect().create_connect_args(url)
    except ArgumentError as exc:  # `?port=x`, mixed multi-host forms, `sqlite://user@host/x.db` (several lines)
        raise ConfigError(f"{where}: {mask_url_text(' '.join(str(exc).split()))}") from None
    except (ValueError, TypeError, SAWarning) as exc:
        reason = str(exc).partition(" (Background on this")[0]
        raise ConfigError(f"{where}: a parameter of {redact_url(url)} is not valid: {reason}") from None


def _at_sign_in_user_part(url: str) -> bool:
    """Whether `url`'s text has an `@` after the one that ends its password, before the query: an unencoded `@` in
    the password followed by a `/` or `:` makes SQLAlchemy read the rest of the password as host, port or database,
    and show it. SQLAlchemy reads the user name up to the first `:` (it may hold an `@`: `alice@example.com`, a
    cloud IAM role, is read right) and the password from there up to the next `@`."""
    _, scheme, rest = url.partition("://")
    head = rest.partition("?")[0]
    user, colon, after = head.partition(":")
    if not scheme or not colon or "/" in user:  # no password (a `:` after a `/` is no user part's)
        return False
    _password, at, host = after.partition("@")
    return bool(at) and "@" in host


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
    if databases is None:
        for name, source in config.sources.items():  # fleet sources: the server discovery asks
            if source.url is None and not environment:
                continue
            try:
                parse_url(source.resolved_url(name), f"sources.{name}.{'url' if source.url else 'url_env'}")
            except ConfigError as exc:
                problems.extend(f"{where}{line}" for line in exc.problems)
    return problems


def first_line(exc: BaseException) -> str:
    """The useful first line of a DBAPI or SQLAlchemy error, without SQLAlchemy's SQL echo and links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # PyMySQL: (code, message)
        text = args[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


# Errors about data rather than about the query quote the offending value, which comes from a row:
# PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation), and the MySQL/MariaDB
# codes of the same kinds (1264 out of range, 1265 truncated, 1292 incorrect value, 1366 incorrect integer
# value, 1367 illegal value, 1406 too long, 1062 duplicate entry, 3140 invalid JSON, 1411 incorrect datetime).
_MYSQL_DATA_ERRORS = {1062, 1264, 1265, 1292, 1366, 1367, 1406, 1411, 3140}
# MariaDB/MySQL end a data error with the name of what refused it ("... for key 'email_u'", "Data too long for
# column 'nick' at row 1", "... for column `db`.`t`.`c` at row 1"); the value, which the server quotes without
# escaping its own quotes, comes before.
_NAMED_END = re.compile(r"\s+for (?:key|column) (?:'[^']*'|`[^`]*`(?:\.`[^`]*`)*)(?: at row \d+)?$")
_NAMED_START = re.compile(r"^(?:Column|Field) (?:'[^']*'|`[^`]*`) ")  # "Column 'nick' cannot be null"
VALUE_HIDDEN = "(value not shown)"
# The names a PostgreSQL error's diagnostics carry (from the catalog, never a row's value).
_DIAGNOSED_NAMES = ("schema_name", "table_name", "column_name", "constraint_name", "datatype_name")


def without_values(exc: BaseException, text: str) -> str:
    """`text` with the values a data error quotes replaced by `(value not shown)`: everything from its first quote
    to its last, since a value may hold quotes itself (neither server escapes them), the names PostgreSQL's
    diagnostics give left out of that, and the name MariaDB/MySQL start or end the message with kept. PostgreSQL's
    constraint (from the error's own diagnostics, not its text) and its position of the error in the statement (`at
    character N`) are appended. Other errors are unchanged (their quotes name tables and columns)."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    args = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if (isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")) or code in _MYSQL_DATA_ERRORS:
        diag = getattr(orig, "diag", None)
        names = {n for n in (getattr(diag, a, None) for a in _DIAGNOSED_NAMES) if n}
        named_start = _NAMED_START.match(text) if diag is None else None
        named_end = _NAMED_END.search(text) if diag is None else None
        start = named_start.end() if named_start else 0
        end = named_end.start() if named_end else len(text)
        head, body, tail = text[:start], text[start:end], text[end:]
        named = {i for name in names for quoted in (f'"{name}"', f"'{name}'")  # the diagnosed names, quoted
                 for m in re.finditer(re.escape(quoted), body) for i in range(m.start(), m.end())}
        quotes = [i for i, ch in enumerate(body) if ch in "'\"" and i not in named]
        if quotes:
            body = body[:quotes[0]] + VALUE_HIDDEN + body[quotes[-1] + 1:]
        text = head + body + tail
        constraint = getattr(diag, "constraint_name", None)  # a name from the catalog, not a row's value
        if constraint:
            text += f" (constraint {constraint})"
        position = getattr(diag, "statement_position", None)
        if position:
            text += f" (at character {position} of the statement)"
    return text


class Database:
    """A configured database: a lazily created pooled engine for detection and another for fixes.

    What differs between databases is asked of `rules` (a `monitor.dialects.Dialect`). Detection connections
    (`read_only()`) carry a client-side deadline: each statement may run `statement_timeout` plus
    `DEADLINE_GRACE_SECONDS`; past that the statement is cancelled, the connection is discarded (its socket shut
    if the server does not answer) and the caller gets a one-line `DatabaseError`. A fix's connections have the
    same bound on each statement and COMMIT they wait on (`_watch_statements`, or the driver's own socket
    timeouts), and the fix's own error handling reports it.
    """

    def __init__(self, name: str, config: DatabaseConfig, *, fix_schema: str | None = None,
                 given_as: str | None = None) -> None:
        self.name = name
        self.config = config
        self.fix_schema = fix_schema  # `[fix] schema`: where fixes keep their tables (see monitor/fix/records.py)
        # How errors name this database: as the user gave it, a config's `databases.NAME` or a flag (`--url`).
        self.label = given_as or f"database {name!r}"
        self.url_field = given_as or f"databases.{name}.url"
        self.url = parse_url(config.resolved_url(name), self.url_field)
        self.rules: Dialect = for_backend(self.url.get_backend_name())
        self._fix_url_text = config.resolved_fix_url(name)
        self._engine: Engine | None = None
        self._writer: Engine | None = None
        self._watches: set[_Watch] = set()
        self._watch_lock = threading.Lock()
        # A file database (SQLite): the identity (st_dev, st_ino) of the file the engines opened. A file replaced
        # on disk (restored, rebuilt, swapped) has another: its pools are closed so the next run opens the new one.
        self._file = self.rules.database_file(self.url)
        self._opened_file: tuple[int, int] | None = None
        self._file_lock = threading.Lock()
        self._identity: list[str] | None = None  # `server_place` of a server, once it answered
        self._identity_lock = threading.Lock()
        self._target_connect: tuple[list[Any], dict[str, Any]] | None = None  # see `_server_engine`
        self._held = threading.local()  # `holding()`: this thread's shared detection connection
        # What the driver raised when the last attempt to connect failed (None once one succeeded): a fleet
        # server whose targets cannot connect backs off as a whole, after asking it why (`monitor.fleet.refusal`).
        self.connect_failure: BaseException | None = None

    @property
    def address(self) -> list[str]:
        """Where this database's URL points: its backend and the server and database it names, or the file's
        resolved path; never the config's name for it or credentials. Two addresses may name one server
        (`localhost`, `127.0.0.1`): `server_place` is what a run measured."""
        if self._file is not None:
            return [self.rules.name, os.path.realpath(self._file)]
        socket = self.url.query.get("host", "")
        place = [self.rules.name, (self.url.host or "").lower(), str(self.url.port or ""), str(socket),
                 self.url.database or ""]
        if isinstance(self.config, TargetDatabaseConfig) and self.config.place_schema is not None:
            place.append(self.config.place_schema)  # a tenant schema: another place in the same database
        return place

    def server_place(self) -> list[str]:
        """What this database is, as it tells, for keying run history (`monitor.history.subject`): the server's
        own identity and the database (`Dialect.server_identity`, asked once per process), or the device and
        inode of a database file (asked each time: a file replaced on disk is another database). Raises
        `DatabaseError` when the server does not answer or the file is gone."""
        if self._file is not None:
            try:
                found = os.stat(self._file)
            except OSError as exc:
                raise DatabaseError(f"{self.label} ({self.display_url}): {exc.strerror or exc}") from None
            return [self.rules.name, "file", str(found.st_dev), str(found.st_ino)]
        with self._identity_lock:
            if self._identity is None:
                with self.read_only() as conn:
                    try:
                        told = self.rules.server_identity(conn)
                    except sa.exc.DBAPIError as exc:
                        raise DatabaseError(self.describe(exc)) from None
                self._identity = self.address if told is None else [self.rules.name, *told]
                if told is not None and isinstance(self.config, TargetDatabaseConfig) \
                        and self.config.place_schema is not None:
                    self._identity.append(self.config.place_schema)  # a tenant schema: another place in one database
            return self._identity

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def dialect(self) -> str:
        """The dialect's name: `postgresql`, `mysql` (MySQL and MariaDB) or `sqlite` (ask `rules` what it does)."""
        return self.rules.name

    @property
    def deadline_seconds(self) -> float:
        """How long one detection statement may run, measured by dupewatch: statement timeout plus a grace."""
        return self.config.statement_timeout + DEADLINE_GRACE_SECONDS

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if isinstance(self.config, TargetDatabaseConfig) and not self.config.pooled:
                self._engine = self._server_engine()
            else:
                self._engine = self._create_engine(self.url, read_only=True)
        return self._engine

    def _server_engine(self) -> Engine:
        """The detection engine a fleet target without a pooled connection shares with the other targets of its
        server (same credentials and settings): one dialect, initialised by the server's first connection, not
        one engine per database. Its connections are made for whichever target opens them, on that thread
        (`_connecting`): the dialect's own connect arguments for the target's URL."""
        server = self.url._replace(database=None).difference_update_query(["options"])  # (set() keeps a None)
        key = (server.render_as_string(hide_password=False), self.config.statement_timeout)
        with _server_engines_lock:
            engine = _server_engines.get(key)
            if engine is None:
                engine = _server_engines[key] = self._create_engine(server, read_only=True)
                event.listen(engine, "do_connect", _connect_for_target)
        cargs, cparams = engine.dialect.create_connect_args(self.url)
        connect_args = self.rules.connect_args(self.url, read_only=True, timeout=self.config.statement_timeout,
                                               connect_timeout=CONNECT_TIMEOUT_SECONDS)
        self._target_connect = (list(cargs), {**cparams, **connect_args})
        return engine

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
        rules = for_backend(url.get_backend_name())
        timeout = self.config.statement_timeout
        connect_args = rules.connect_args(url, read_only=read_only, timeout=timeout,
                                          connect_timeout=CONNECT_TIMEOUT_SECONDS)
        kwargs: dict[str, Any] = rules.engine_options(read_only=read_only)
        if isinstance(self.config, TargetDatabaseConfig):
            # A fleet target: at most one check runs on it at a time, and one checked rarely keeps no connection.
            if self.config.pooled:
                kwargs.update(pool_size=1, max_overflow=4)
            else:
                kwargs = {k: v for k, v in kwargs.items() if k not in ("pool_size", "max_overflow", "pool_timeout")}
                kwargs["poolclass"] = sa.NullPool
        if read_only:
            # Each check runs its own statement once per interval, so a daemon with 200 checks would keep 200
            # compiled forms (about 7 MB) that save well under a millisecond per run; fixes repeat theirs.
            kwargs["query_cache_size"] = 0
            if rules.releases_before_return:  # the session's one rollback is `read_only`'s or `reset_session`'s
                kwargs["pool_reset_on_return"] = None
        try:
            # Detection (and a fix where the driver bounds no wait) pings inside its deadline (`_checked_out`): a
            # pre-ping would hang on a frozen server.
            pre_ping = not read_only and rules.driver_bounds_waits
            engine = sa.create_engine(url, pool_pre_ping=pre_ping, connect_args=connect_args, **kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(f"{self.url_field}: {exc}") from None
        except ImportError as exc:
            raise ConfigError(
                f"{self.url_field}: the driver of {redact_url(url)} is not installed ({exc}); "
                "drop the +driver part to use the bundled one (psycopg, PyMySQL, sqlite3)") from None
        event.listen(engine, "connect", lambda dbapi, _record: rules.prepare_session(
            dbapi, read_only=read_only, timeout=timeout, client_deadline=self.deadline_seconds))
        if read_only:
            event.listen(engine, "reset", _reset_listener(rules, pool_rolls_back=not rules.releases_before_return))
        else:  # a fix's COMMIT (and ROLLBACK) waits for the server too
            event.listen(engine, "commit", _rearm_deadline)
            event.listen(engine, "rollback", _rearm_deadline)
        event.listen(engine, "before_cursor_execute", _rearm_deadline)
        event.listen(engine, "before_cursor_execute", statement_begins)
        event.listen(engine, "handle_error", ctrl_c_again)
        rules.install(engine, read_only=read_only)
        return engine

    @contextmanager
    def read_only(self) -> Iterator[Connection]:
        """A connection inside a read-only transaction that is always rolled back, under the client deadline.
        Inside `holding()` on the same thread, every call shares one connection (each its own transaction)."""
        held: _Held | None = getattr(self._held, "value", None)
        if held is not None:
            with held.transaction() as conn:
                yield conn
            return
        with self.connect(self.engine) as conn:
            try:
                yield conn
            except BaseException:
                if conn.in_transaction() and not conn.invalidated:
                    conn.rollback()
                raise
            if not conn.invalidated:
                self._end_read(conn)

    def _end_read(self, conn: Connection) -> None:
        """Roll back a read-only block's transaction as it ends, under the statement deadline. Where the dialect
        ends the session itself (`Dialect.releases_before_return`), what a query can leave on it is released first
        and the one rollback comes last, and the pool's reset (`_reset_listener`) sends nothing more: the
        connection is marked as ended, until a statement runs on it."""
        if not self.rules.releases_before_return:
            if conn.in_transaction():
                conn.rollback()
            return
        raw = conn.connection.dbapi_connection
        assert raw is not None  # checked out, not invalidated
        self.rules.release_session(raw)
        if conn.in_transaction():
            conn.rollback()
        else:
            raw.rollback()
        conn.info[_ENDED_KEY] = True

    @staticmethod
    def deadline_passed(conn: Connection) -> bool:
        """Whether `conn`'s statement was cancelled by its client-side deadline or by `cancel_running` (a stop):
        what it raised is that, whatever the server worded it as, and the connection must run nothing more.
        An invalidated connection (the server or the deadline ended it) runs nothing more either."""
        if conn.invalidated:
            return True
        watch: _Watch | None = conn.info.get(_WATCH_KEY)
        return watch is not None and watch.expired

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the first detection connection opened on this thread until the block ends: the checks of one
        fleet target's round connect once, run one after the other, and close (or return it to the pool).
        A connection that failed under its deadline is dropped, and the next check opens another."""
        if getattr(self._held, "value", None) is not None:
            yield
            return
        held = self._held.value = _Held(self)
        try:
            yield
        finally:
            self._held.value = None
            held.close()

    @contextmanager
    def connect(self, engine: Engine) -> Iterator[Connection]:
        """A connection from `engine`, turning connection failures into a one-line `DatabaseError`. Connections of
        the detection engine are watched by the client-side deadline (see the class docstring)."""
        missing = self.rules.missing_database(engine.url)
        if missing:  # sqlite3 would silently create an empty database: a typo in the path must be an error
            raise DatabaseError(f"{self.label} ({self.display_url}): {missing}")
        engine = self._reopened_if_replaced(engine)
        watched = engine is self._engine
        conn = self._checked_out(engine, watched)
        with conn:
            watch: _Watch | None = conn.info.get(_WATCH_KEY)
            raw = conn.connection.dbapi_connection  # its statement deadline was armed at checkout
            try:
                yield conn
            except Exception:
                if watched and watch is not None and watch.expired:
                    raise DatabaseError(self._deadline_message(watch)) from None
                raise
            except BaseException:  # Ctrl-C: a driver that stops reading (PyMySQL) leaves the statement running
                if watch is not None:
                    watch.abandon()
                raise
            finally:
                if watch is not None:
                    self._unwatch(conn, watch)
                if not conn.invalidated:
                    self.rules.disarm_statement_deadline(raw)

    def _file_identity(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            stat = os.stat(self._file)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _reopened_if_replaced(self, engine: Engine) -> Engine:
        """`engine`, or its replacement when the database file was replaced on disk since the engines opened it
        (a connection to the old file would read a deleted file forever, and report it as live)."""
        if self._file is None:
            return engine
        current = self._file_identity()
        with self._file_lock:
            if self._opened_file is None or current is None:
                self._opened_file = current
                return engine
            if current == self._opened_file:
                return engine
            log.warning("database file replaced on disk, reopening it", extra={"fields": {
                "database": self.name, "path": str(self._file)}})
            was_reader = engine is self._engine
            for old in (self._engine, self._writer):
                if old is not None:
                    old.dispose()  # idle connections close now; one checked out closes when returned
            self._engine = self._writer = None
            self._opened_file = current
        if not was_reader:  # a fix (or its bookkeeping) must not carry on against another file than it planned on
            raise DatabaseError(f"{self.label} ({self.display_url}): the file was replaced on disk; "
                                "run again to use the new one")
        return self.engine

    def _checked_out(self, engine: Engine, watched: bool) -> Connection:
        """A pooled connection; a watched one (a fix's too, where the driver bounds no wait) is pinged under its
        deadline (once more after a stale connection)."""
        for attempt in (1, 2):
            _connecting.target = self._target_connect if engine is self._engine else None
            try:
                conn = engine.connect()
            except Exception as exc:  # drivers raise plain OSError and friends for DNS or socket trouble
                self.connect_failure = exc
                raise DatabaseError(self.describe(exc)) from None
            finally:
                _connecting.target = None
            self.connect_failure = None
            # Armed before the watch exists, so that a cancel arriving during the ping is not undone by it.
            self.rules.arm_statement_deadline(conn.connection.dbapi_connection, self.config.statement_timeout)
            watch = self._watch(conn) if watched else self._watch_statements(conn)
            if watch is None or isinstance(engine.pool, sa.NullPool):
                return conn  # connected just now (a fleet target checked rarely): nothing stale to find
            try:
                self._ping(conn)
                if not watched:
                    conn.rollback()  # a fix begins its own transactions
                return conn
            except sa.exc.DBAPIError as exc:
                self._unwatch(conn, watch)
                conn.close()
                if watch.expired:
                    raise DatabaseError(self._deadline_message(watch)) from None
                if not exc.connection_invalidated or attempt == 2:
                    raise DatabaseError(self.describe(exc)) from None
        raise AssertionError("unreachable")

    def _ping(self, conn: Connection) -> None:
        """Ping the server on `conn`; a driver's error is raised as SQLAlchemy raises a
        statement's, the connection invalidated where the driver says it is lost."""
        if not self.rules.pings_by_protocol:
            conn.exec_driver_sql("SELECT 1").close()
            return
        raw, dialect = conn.connection.dbapi_connection, conn.dialect
        assert raw is not None  # checked out just now
        try:
            dialect.do_ping(raw)
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw, None)
            if lost:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance("ping", None, exc, dialect.loaded_dbapi.Error,
                                             connection_invalidated=lost) from exc

    def _watch(self, conn: Connection) -> _Watch:
        watch = _Watch(self, conn.connection.dbapi_connection, conn.engine.url)
        conn.info[_WATCH_KEY] = watch
        with self._watch_lock:
            self._watches.add(watch)
        watch.rearm()
        return watch

    def _watch_statements(self, conn: Connection) -> _Watch | None:
        """A fix's connection: the client-side deadline from the start of each statement (and COMMIT) it sends,
        acting only if the connection still waits for that answer then (`Dialect.statement_in_progress`), since
        a fix keeps its connection between batches. The server ends a statement at its own timeout; this bounds
        the wait for an answer that never comes (server hung, network partition), which a fix batch would
        otherwise wait for forever. Not in `_watches`: `cancel_running` stops detection, never a fix's batch."""
        if self.rules.driver_bounds_waits:
            return None  # by a socket timeout (`Dialect.prepare_session`), or there is no server
        watch = conn.info[_WATCH_KEY] = _Watch(self, conn.connection.dbapi_connection, conn.engine.url,
                                               per_statement=True)
        return watch

    def _unwatch(self, conn: Connection, watch: _Watch) -> None:
        WATCHDOG.unwatch(watch)
        expired = watch.release()
        with self._watch_lock:
            self._watches.discard(watch)
        if not conn.invalidated:
            conn.info.pop(_WATCH_KEY, None)
            if expired:
                conn.invalidate()  # a cancel may still be on its way to the server: never reuse the session

    def _deadline_message(self, watch: _Watch | None) -> str:
        told = (f"{self.label} ({self.display_url}): no answer within the client-side deadline "
                f"({self.config.statement_timeout:g}s statement_timeout + {DEADLINE_GRACE_SECONDS:g}s): ")
        if watch is not None and watch.unstopped:
            return told + (f"query cancelled, but it did not stop within {CANCEL_WAIT_SECONDS:g}s (a call the database "
                           "does not interrupt, such as a long LIKE); connection discarded, and the database may run "
                           "that call to its end")
        return told + "query cancelled, connection discarded"

    def cancel_running(self, owners: Collection[object] | None = None) -> int:
        """Cancel the detection statements running now (all, or those run by `owners`, see
        `register_owner_lookup`) and discard their connections, as if their deadline had passed; returns how many.
        Waits until each was cancelled on the server or its socket shut (at most about 2 x `CANCEL_WAIT_SECONDS`).
        For faces that stop waiting: quit, reload, a screen left while its query runs."""
        with self._watch_lock:
            running = [w for w in self._watches if owners is None or w.owner in owners]
        for watch in running:
            WATCHDOG.unwatch(watch)
        cancels = [threading.Thread(target=watch.expire, name="dupewatch-cancel", daemon=True) for watch in running]
        for cancel in cancels:
            cancel.start()
        for cancel in cancels:
            cancel.join(2 * CANCEL_WAIT_SECONDS + 0.5)
        return len(running)

    def abandon_running(self) -> None:
        """Cancel the detection statements running now on the server, without waiting (Ctrl-C: their threads then
        give their connections back, discarded)."""
        with self._watch_lock:
            running = list(self._watches)
        for watch in running:
            WATCHDOG.unwatch(watch)
            watch.abandon()

    def describe(self, exc: BaseException) -> str:
        """A one-line, password-free description of a database error; the values a data error quotes (row
        values, from the table) are dropped, its kind and position kept (see `without_values`)."""
        text = without_values(exc, first_line(exc))
        if self.rules.is_timeout(text):
            text = f"query exceeded statement_timeout ({self.config.statement_timeout:g}s)"
        elif self.rules.is_write_refused(text):
            text = f"refused a write, checks run read-only ({text})"
        return redact_text(f"{self.label} ({self.display_url}): {text}",
                           [self.url, self._fix_url_text])

    def dispose(self) -> None:
        self.cancel_running()
        # A server's shared engine (`_server_engine`) is not this database's to close; it holds no connection.
        own = (self._engine if self._target_connect is None else None, self._writer)
        for engine in own:
            if engine is not None:
                engine.dispose()
        self._engine = self._writer = None


_WATCH_KEY = "dupewatch.watch"
_ENDED_KEY = "dupewatch.ended"  # `Database._end_read` released and rolled back the session; nothing ran since

# Fleet servers' shared detection engines (`Database._server_engine`), and the target a thread connects for.
_server_engines: dict[tuple[str, float], Engine] = {}
_server_engines_lock = threading.Lock()
_connecting = threading.local()


def _connect_for_target(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
    """A shared server engine connects to the database of the target that asked (see `_server_engine`)."""
    target: tuple[list[Any], dict[str, Any]] | None = getattr(_connecting, "target", None)
    if target is None:  # the engine's own first connection, to the server's default database
        return
    cargs[:] = target[0]
    cparams.clear()
    cparams.update(target[1])


class _Held:
    """The connection `Database.holding()` keeps for one thread, opened by the first transaction that needs it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._stack: ExitStack | None = None
        self._conn: Connection | None = None
        # The connection's deadline, taken when it opened: an invalidated connection (the server ended it)
        # answers nothing, its `info` included, until rolled back.
        self._watch: _Watch | None = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        if self._conn is None or self._conn.invalidated:
            self.close()
            stack = ExitStack()
            self._conn = stack.enter_context(self.db.connect(self.db.engine))
            self._stack = stack
            self._watch = self._conn.info.get(_WATCH_KEY)
        conn, watch = self._conn, self._watch
        try:
            yield conn
        except BaseException as exc:
            expired = watch is not None and watch.expired
            try:
                self._rollback(conn)
                broken = conn.invalidated
            except Exception:
                broken = True
            if expired or broken:
                # As `connect` does on leaving: the deadline's error, and the connection never reused.
                self.close(exc)
                if expired and not isinstance(exc, DatabaseError):
                    raise DatabaseError(self.db._deadline_message(watch)) from None
            raise
        self._rollback(conn)

    @staticmethod
    def _rollback(conn: Connection) -> None:
        if conn.in_transaction() and not conn.invalidated:
            conn.rollback()

    def close(self, exc: BaseException | None = None) -> None:
        stack, self._stack, self._conn, self._watch = self._stack, None, None, None
        if stack is not None:
            if exc is None:
                stack.close()
            else:
                with suppress(Exception):
                    stack.__exit__(type(exc), exc, exc.__traceback__)


class _Watch:
    """The deadline of one checked-out detection connection (or of each statement of a fix's, `per_statement`).
    On expiry (on its own thread) the statement is cancelled; if the connection is not released (a fix's statement
    has not stopped) within `CANCEL_WAIT_SECONDS`, its socket is shut."""

    def __init__(self, db: Database, dbapi: Any, url: URL, *, per_statement: bool = False) -> None:
        self.db = db
        self.dbapi = dbapi
        self.url = url
        # A fix's connection (`Database._watch_statements`): armed by each statement, acting only while one waits.
        self.per_statement = per_statement
        self.due = math.inf
        self.expired = False
        self.unstopped = False  # expired, and the statement had not stopped `CANCEL_WAIT_SECONDS` after its cancel
        # was delivered
        self.released = threading.Event()
        self.owner = _current_owner()
        self._lock = threading.Lock()

    def release(self) -> bool:
        """The connection's user is done with it; returns whether it expired (then it must not be reused)."""
        with self._lock:
            self.released.set()
            return self.expired

    def rearm(self) -> None:
        self.due = time.monotonic() + self.db.deadline_seconds
        WATCHDOG.watch(self, self.due)

    def expire(self) -> None:
        with self._lock:
            if self.released.is_set():
                return
            if self.per_statement and (time.monotonic() < self.due  # a statement since re-armed it
                                       or not self.db.rules.statement_in_progress(self.dbapi)):
                return  # between statements: nothing waits
            self.expired = True
        rules = self.db.rules
        log.warning("database %s: cancelling a statement (client-side deadline or shutdown)", self.db.name)
        try:
            rules.cancel(self.dbapi, self.url, CANCEL_WAIT_SECONDS)
            delivered = True
        except Exception as exc:  # the server may not answer at all (frozen, unreachable)
            log.info("database %s: cancel failed (%s)", self.db.name, first_line(exc))
            delivered = False
        if not self._stopped(CANCEL_WAIT_SECONDS):
            # Set before the socket is shut: the statement's thread reads it once woken. A server that took the
            # cancel and still runs the statement is inside a call it does not interrupt; one that did not take
            # it (frozen, unreachable) is only not answering.
            self.unstopped = delivered
            try:
                rules.sever(self.dbapi)
            except Exception as exc:  # already closed by its thread meanwhile
                log.info("database %s: could not shut the socket (%s)", self.db.name, first_line(exc))

    def abandon(self) -> None:
        """The thread using the connection stopped waiting for its statement (Ctrl-C): cancel the statement on the
        server, without waiting for the connection to be given back (that thread is the caller), and never reuse
        the session."""
        with self._lock:
            if self.released.is_set():
                return
            self.expired = True
        try:
            self.db.rules.cancel(self.dbapi, self.url, CANCEL_WAIT_SECONDS)
        except Exception as exc:  # the server may not answer at all, or the driver closed the connection already
            log.info("database %s: cancel failed (%s)", self.db.name, first_line(exc))

    def _stopped(self, seconds: float) -> bool:
        """Whether the connection's user gave it back (a fix's: its statement stopped waiting) within `seconds`."""
        if not self.per_statement:
            return self.released.wait(seconds)
        until = time.monotonic() + seconds
        while self.db.rules.statement_in_progress(self.dbapi):
            if self.released.wait(min(0.02, max(until - time.monotonic(), 0))) or time.monotonic() >= until:
                return self.released.is_set()
        return True


class _Watchdog:
    """One daemon thread for every deadline of the process; expiries run on their own short-lived threads."""

    def __init__(self) -> None:
        self._deadlines: dict[_Watch, float] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = -math.inf  # when the thread, waiting, wakes up next

    def watch(self, watch: _Watch, deadline: float) -> None:
        with self._changed:
            self._deadlines[watch] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dupewatch-deadlines", daemon=True)
                self._thread.start()
            # Every statement re-arms its deadline, later than before: waking the thread for each (to find
            # nothing due) cost a thread switch per statement; it is woken only for an earlier deadline.
            if deadline < self._wakes_at:
                self._changed.notify()

    def unwatch(self, watch: _Watch) -> None:
        with self._changed:
            self._deadlines.pop(watch, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [w for w, at in self._deadlines.items() if at <= now]
                for watch in due:
                    del self._deadlines[watch]
                if not due:
                    wait = max(min(self._deadlines.values(), default=now + 60) - now, 0.01)
                    self._wakes_at = now + wait
                    self._changed.wait(wait)
                    continue
            for watch in due:
                threading.Thread(target=watch.expire, name="dupewatch-cancel", daemon=True).start()


WATCHDOG = _Watchdog()


def _rearm_deadline(conn: Connection, *_args: Any) -> None:
    """Each statement of a watched connection gets the whole deadline (a fix's COMMIT and ROLLBACK too; the
    rollback of a connection the deadline or the server ended sends nothing), and a session `Database._end_read`
    ended is one to reset again."""
    if conn.invalidated:
        return
    info = conn.info
    info.pop(_ENDED_KEY, None)
    watch = info.get(_WATCH_KEY)
    if watch is not None and not watch.expired:
        watch.rearm()


def _reset_listener(rules: Dialect, *, pool_rolls_back: bool) -> Any:
    """The pool's `reset` event: the dialect's `reset_session`, unless `Database._end_read` ended the session and
    nothing ran on it since. Where `pool_rolls_back` (`reset_on_return="rollback"`), the pool rolls back after it
    unless the connection's transaction was just rolled back by closing it; else the dialect rolls back itself."""
    def _reset(dbapi: Any, record: Any, state: Any) -> None:
        ended = record is not None and record.info.pop(_ENDED_KEY, False)
        if state.terminate_only or ended:
            return
        rolled_back_after = pool_rolls_back and state.asyncio_safe and not state.transaction_was_reset
        rules.reset_session(dbapi, rolled_back_after=rolled_back_after)
    return _reset


@event.listens_for(sa.Table, "column_reflect")
def _unescape_reflected_name(inspector: Any, _table: sa.Table, column: dict[str, Any]) -> None:
    """A dialect's reflection quirks (MySQL's doubled backticks): see `Dialect.reflected_column_name`."""
    try:
        rules = for_backend(inspector.dialect.name)
    except KeyError:  # a table reflected through an engine that is not dupewatch's (tests, tools)
        return
    column["name"] = rules.reflected_column_name(column["name"])

"""Shared fixtures: real PostgreSQL, MariaDB/MySQL and SQLite databases, each test in its own schema.

Servers come from DUPEWATCH_TEST_PG_URL / DUPEWATCH_TEST_MYSQL_URL. A missing server skips the test
locally and fails it under CI=true.
"""

from __future__ import annotations

import atexit
import functools
import json
import locale
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tls_context
from sqlalchemy.engine import Engine, make_url

tls_context.install()  # one PyMySQL TLS context for the test process's connections to MariaDB (see the module)

PG_URL = os.environ.get("DUPEWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("DUPEWATCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DIALECTS = ["postgresql", "mysql", "sqlite"]


@dataclass(frozen=True)
class Volume:
    """How much a randomized or stress test generates (`examples`: examples, rounds), and whether this is its soak
    variant (`soak`: examples drawn afresh each run, where the suite's are derandomized)."""

    examples: int
    soak: bool


def volumes(ci: int, soak: int) -> list[Any]:
    """For `pytest.mark.parametrize("volume", ...)`: a randomized or stress test in two variants, `ci` (run by the
    suite) and `soak`, marked `soak`: deselected by default, `pytest -m soak` runs these alone.
    DUPEWATCH_FUZZ_EXAMPLES sets the volume of both."""
    raised = os.environ.get("DUPEWATCH_FUZZ_EXAMPLES")
    return [pytest.param(Volume(int(raised or ci), False), id="ci"),
            pytest.param(Volume(int(raised or soak), True), id="soak", marks=pytest.mark.soak)]


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {str(exc).splitlines()[0]}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: servers are required)")
    pytest.skip(message)


@dataclass
class TestDatabase:
    """An isolated database for one test: `url` points into it, `engine` writes to it."""

    __test__ = False
    dialect: str
    url: str
    engine: Engine
    schema: str | None

    def execute(self, *statements: str, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def scalar(self, statement: str, params: dict[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(statement), params or {}).scalar()

    def rows(self, statement: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(statement), params or {})]

    def q(self, name: str) -> str:
        """An identifier quoted for this dialect, for hand-written test SQL."""
        return self.engine.dialect.identifier_preparer.quote_identifier(name)


@functools.cache
def administrator(url: str) -> Engine:
    """The test process's engine for a server's administration (databases, schemas, logins of each test), in
    autocommit: one for the whole run, its connection kept (a new engine connects and asks the dialect's first
    questions again, about 15 ms on PostgreSQL, for each database a test creates and again as it drops it)."""
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@contextmanager
def server_login(dialect: str, *setup: str, prefix: str = "dw", password: str | None = None) -> Iterator[str]:
    """A login (PostgreSQL role, MariaDB/MySQL user `'name'@'%'`) on the shared test server, with a fresh name
    starting with `prefix` and the given password (none when None); `setup` statements run after it, as the
    server's administrator, with `{user}` replaced by the quoted name. Yields the name; the login and what it owns
    are dropped afterwards. A missing server skips (fails under CI=true)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    mysql = dialect == "mysql"
    admin = administrator(MYSQL_URL if mysql else PG_URL)
    user = f"'{name}'@'%'" if mysql else f'"{name}"'
    create = f"CREATE USER {user}" if mysql else f"CREATE ROLE {user} LOGIN"
    if password is not None:  # MariaDB takes it as a parameter; PostgreSQL's DDL takes none (a test's own value)
        create += " IDENTIFIED BY :password" if mysql else f" PASSWORD '{password}'"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(create), {"password": password})
    except Exception as exc:
        _unavailable("MySQL/MariaDB" if mysql else "PostgreSQL", exc)
    drops = [f"DROP USER IF EXISTS {user}"] if mysql else [f"DROP OWNED BY {user} CASCADE", f"DROP ROLE {user}"]
    try:
        with admin.connect() as conn:
            for statement in setup:
                conn.execute(sa.text(statement.replace("{user}", user)))
        yield name
    finally:
        with admin.connect() as conn:
            for statement in drops:
                conn.execute(sa.text(statement))


def _pg(name: str) -> Iterator[TestDatabase]:
    admin = administrator(PG_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"})
    url_text = url.render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        yield TestDatabase("postgresql", url_text, engine, name)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def _mysql(name: str) -> Iterator[TestDatabase]:
    admin = administrator(MYSQL_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except Exception as exc:
        _unavailable("MySQL/MariaDB", exc)
    url_text = make_url(MYSQL_URL).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url_text)
    try:
        yield TestDatabase("mysql", url_text, engine, name)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


def _sqlite(path: Path) -> Iterator[TestDatabase]:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    try:
        yield TestDatabase("sqlite", url, engine, None)
    finally:
        engine.dispose()


def make_test_database(dialect: str, tmp_path: Path) -> Iterator[TestDatabase]:
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    if dialect == "postgresql":
        yield from _pg(name)
    elif dialect == "mysql":
        yield from _mysql(name)
    else:
        yield from _sqlite(tmp_path / f"{name}.sqlite")


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """The same test against PostgreSQL, MariaDB/MySQL and SQLite, each isolated."""
    yield from make_test_database(request.param, tmp_path)


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """The same test against the two servers (what SQLite has no part in: sessions, locks, server errors)."""
    yield from make_test_database(request.param, tmp_path)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[TestDatabase]:
    yield from make_test_database("postgresql", tmp_path)


@pytest.fixture
def mysql(tmp_path: Path) -> Iterator[TestDatabase]:
    yield from make_test_database("mysql", tmp_path)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[TestDatabase]:
    yield from make_test_database("sqlite", tmp_path)


@contextmanager
def own_pg_database() -> Iterator[sa.URL]:
    """A PostgreSQL database of the test's own on the shared server (for what is per database: an extension, VACUUM's
    horizon), dropped after it: its URL."""
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    admin = administrator(PG_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(str(exc)) if IN_CI else pytest.skip(str(exc))
    try:
        yield make_url(PG_URL).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def own_pg() -> Iterator[TestDatabase]:
    """A PostgreSQL database of the test's own (`own_pg_database`), for what is per database: VACUUM's horizon, the
    writing transactions an incremental run looks at; sessions of other tests in the shared database see neither."""
    with own_pg_database() as url:
        engine = sa.create_engine(url)
        try:
            yield TestDatabase("postgresql", url.render_as_string(hide_password=False), engine, None)
        finally:
            engine.dispose()


@pytest.fixture
def pg_citext_elsewhere() -> Iterator[TestDatabase]:
    """A database of its own (an extension is installed once per database, and tests of the shared database look
    for citext where it is): citext in schema `ext`, the test's tables in `app`, the search_path `app` only."""
    with own_pg_database() as url:
        setup = sa.create_engine(url)
        try:
            with setup.begin() as conn:
                conn.execute(sa.text("CREATE SCHEMA ext"))
                conn.execute(sa.text("CREATE SCHEMA app"))
                conn.execute(sa.text("CREATE EXTENSION citext SCHEMA ext"))
        finally:
            setup.dispose()
        in_app = url.update_query_dict({"options": "-csearch_path=app"})
        engine = sa.create_engine(in_app)
        try:
            yield TestDatabase("postgresql", in_app.render_as_string(hide_password=False), engine, "app")
        finally:
            engine.dispose()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, databases: dict[str, dict[str, Any]], checks: list[dict[str, Any]],
                 **sections: dict[str, Any]) -> Path:
    """Write a dupewatch TOML config and return its path."""
    lines: list[str] = []
    for name, options in databases.items():
        lines.append(f"[databases.{json.dumps(name)}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in options.items())
        lines.append("")
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in options.items())
        lines.append("")
    for check in checks:
        lines.append("[[checks]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in check.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- running the real CLI and the engine ---------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CliRun:
    """What a `dupewatch` subprocess did."""

    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_dupewatch(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict[str, str] | None = None,
                  timeout: float = 120) -> CliRun:
    """Run `python -m monitor.cli ARGS` as a real subprocess (exit codes and stderr exactly as a user sees them).

    The process is forked from one that imported dupewatch already (`_Forker`): it then runs the module as `-m`
    does, in its own working directory and environment, and exits as the interpreter does; all such processes share
    the forking process's hash seed. A call made while another runs (from another thread), or whose `env` sets
    what Python reads as it starts (PYTHON*, LANG, LC_*), starts a new Python instead."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    command = [str(a) for a in args]
    # What Python reads only as it starts (PYTHON*: the hash seed, UTF-8 mode, I/O encoding; the locale) takes a
    # new interpreter to follow.
    starting = any(k.startswith(("PYTHON", "LANG", "LC_")) for k in (env or {}))
    if not starting and _FORKER.lock.acquire(blocking=False):
        try:
            return _FORKER.run(command, cwd or REPO_ROOT, full_env, timeout)
        finally:
            _FORKER.lock.release()
    done = subprocess.run([sys.executable, "-m", "monitor.cli", *command], cwd=cwd or REPO_ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    return CliRun(done.returncode, done.stdout, done.stderr)


# The forking process: reads one request a line ({"args", "cwd", "env", "stdout", "stderr"}), forks, answers the
# child's pid, waits for it, answers its exit code. The child runs `monitor.cli` as `python -m` runs it.
_FORKING = r"""
import json, os, runpy, sys, time
import monitor
import monitor.cli  # what it imports stays imported; the module itself is run afresh, as `-m` runs it
del sys.modules["monitor.cli"], monitor.cli
# What the commands import as they run (the engine, the dialects, the fix, the audit, the drivers), once here
# rather than in every call; none of them imports the dashboard, the scheduler or prometheus-client.
import monitor.audit, monitor.detect, monitor.engine, monitor.fixstats, monitor.fleet, monitor.history
import monitor.dialects.mysql, monitor.dialects.postgresql, monitor.dialects.sqlite, monitor.incremental
import monitor.fix.execute, monitor.fix.guard, monitor.fix.plan, monitor.fix.purge, monitor.fix.undo
import psycopg, pymysql, sqlalchemy.dialects.mysql.pymysql, sqlalchemy.dialects.postgresql.psycopg
import sqlalchemy.dialects.sqlite.pysqlite
TLS_CONTEXT

requests, answers = os.fdopen(int(sys.argv[1])), os.fdopen(int(sys.argv[2]), "w")
for line in requests:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        requests.close()
        answers.close()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, fd)
            os.close(out)
        sys.argv = ["", *request["args"]]
        runpy.run_module("monitor.cli", run_name="__main__", alter_sys=True)
        sys.exit(0)
    answers.write(json.dumps(pid) + "\n")
    answers.flush()
    answers.write(json.dumps(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])) + "\n")
    answers.flush()
""".replace("TLS_CONTEXT", tls_context.INSTALL)


class _Forker:
    """The forking process (`_FORKING`), started at the first call; one call at a time (`lock`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.requests: Any = None
        self.answers = -1
        self.pending = b""
        self.scratch = Path(tempfile.mkdtemp(prefix="dw_cli_"))
        atexit.register(self.close)

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-c", _FORKING, str(request_read), str(answer_write)],
                                     cwd=REPO_ROOT, pass_fds=(request_read, answer_write))
        os.close(request_read)
        os.close(answer_write)
        self.requests = os.fdopen(request_write, "w")
        self.answers = answer_read
        self.pending = b""

    def _answer(self, timeout: float) -> Any:
        """The next answer line, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                return None
            chunk = os.read(self.answers, 4096)
            if not chunk:
                raise AssertionError("the forking process of run_dupewatch ended")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> CliRun:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        out, err = self.scratch / "stdout", self.scratch / "stderr"
        self.requests.write(json.dumps({"args": args, "cwd": str(cwd), "env": env, "stdout": str(out),
                                        "stderr": str(err)}) + "\n")
        self.requests.flush()
        pid = self._answer(60)
        code = self._answer(timeout)
        if code is None:  # as subprocess.run(timeout=...) does: kill, wait, raise
            os.kill(pid, signal.SIGKILL)
            self._answer(60)
            raise subprocess.TimeoutExpired(["dupewatch", *args], timeout)

        def text(path: Path) -> str:  # as subprocess.run(text=True) decodes
            raw = path.read_bytes().decode(locale.getpreferredencoding(False))
            return raw.replace("\r\n", "\n").replace("\r", "\n")

        return CliRun(code, text(out), text(err))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.requests.close()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)


_FORKER = _Forker()


@pytest.fixture
def dupewatch() -> Any:
    """`dupewatch(*args, cwd=None, env=None)` -> CliRun."""
    return run_dupewatch


@pytest.fixture
def monitor_for() -> Iterator[Any]:
    """`monitor_for(databases, checks)` -> a `Monitor` on that config, closed after the test."""
    from monitor.config import config_from_dict
    from monitor.engine import Monitor

    made: list[Monitor] = []

    def make(databases: dict[str, dict[str, Any]], checks: list[dict[str, Any]], path: Path | None = None) -> Monitor:
        monitor = Monitor(config_from_dict({"databases": databases, "checks": checks}, path))
        made.append(monitor)
        return monitor

    yield make
    for monitor in made:
        monitor.close()


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus's own rule and config checker (Debian's `prometheus` package; .ci/run installs it)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def metric_samples(exporter: Any) -> dict[tuple[str, str], float]:
    """(sample name, check) -> value of a `monitor.metrics.MetricsExporter`'s labelled series (no histogram
    buckets)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(exporter.metrics.exposition().decode()):
        for s in family.samples:
            if "check" in s.labels and "le" not in s.labels:
                found[(s.name, s.labels["check"])] = s.value
    return found


class AutocommitConnection(sa.Connection):
    """A connection of an engine that autocommits each statement (`autocommit_engine`): there `begin()` starts no
    transaction on the server (`with engine.connect() as conn, conn.begin():` commits each statement on its own),
    so asking for one is refused; statements meant to be one transaction go through `one_transaction`."""

    _autobeginning = False

    def _autobegin(self) -> None:
        self._autobeginning = True
        try:
            super()._autobegin()
        finally:
            self._autobeginning = False

    def begin(self) -> sa.RootTransaction:
        if not self._autobeginning:
            raise AssertionError("begin() on an engine that autocommits each statement runs no transaction:"
                                 " use one_transaction(engine)")
        return super().begin()


def autocommit_engine(url: str | sa.URL) -> Engine:
    """An engine that commits each statement on its own (DDL, server settings); `begin()` on it is refused."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    engine._connection_cls = AutocommitConnection
    return engine


@contextmanager
def one_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """A connection whose statements are ONE transaction on the server, committed at the end (rolled back on an
    error), whatever the isolation level of `engine`; that it was one transaction is checked before the commit
    (PostgreSQL: the same transaction id at the start and the end; MariaDB/MySQL: still in a transaction, which
    DDL's implicit commit would have ended)."""
    transactional = sa.create_engine(engine.url)
    try:
        with transactional.begin() as conn:
            postgresql = conn.dialect.name == "postgresql"
            first = None
            if postgresql:
                first = conn.execute(sa.text("SELECT txid_current()")).scalar()
            else:  # begun at once (else only by the first statement that reads or writes a table)
                conn.execute(sa.text("START TRANSACTION"))
            yield conn
            if postgresql:
                assert conn.execute(sa.text("SELECT txid_current()")).scalar() == first, "not one transaction"
            else:
                assert conn.execute(sa.text("SELECT @@in_transaction")).scalar() == 1, "not one transaction"
    finally:
        transactional.dispose()


@pytest.fixture
def other_session() -> Iterator[Any]:
    """Another PostgreSQL session of the shared server's role: the one a test's functions end (the read-only tests
    then assert it is alive)."""
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        yield conn

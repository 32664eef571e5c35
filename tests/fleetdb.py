"""Fleet tests' databases: uniquely named PostgreSQL and MariaDB databases (`dwfleet_<random>_tenant_<i>`) and
tenant schemas, each holding a `login_source` table with known duplicates; dropped afterwards.

Other engineers create databases on the same servers at the same time: discovery in these tests always
includes only `^dwfleet_<random>_`, the prefix of the test's own databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import MYSQL_URL, PG_URL
from monitor.config import DatabaseConfig
from monitor.db import Database, DatabaseError
from monitor.fleet.refusal import Verdict, ask

TABLE = "login_source"


@dataclass
class Fleet:
    """The databases (or schemas) of one test on one server; `excess[name]` is each one's excess rows."""

    server_url: str  # the server, in a database discovery may run in
    prefix: str
    names: list[str] = field(default_factory=list)
    excess: dict[str, int] = field(default_factory=dict)

    @property
    def include(self) -> str:
        return f"^{self.prefix}"

    def url_of(self, database: str) -> str:
        return make_url(self.server_url).set(database=database).render_as_string(hide_password=False)


def _seed(conn: sa.Connection, excess: int, schema: str | None = None, *, mysql: bool = False) -> None:
    table = f"{schema}.{TABLE}" if schema else TABLE
    ident = "id INT AUTO_INCREMENT PRIMARY KEY" if mysql else "id SERIAL PRIMARY KEY"
    conn.execute(sa.text(f"CREATE TABLE {table} ({ident}, user_id INT NOT NULL, agent VARCHAR(20) NOT NULL)"))
    rows = [{"u": i, "a": "web"} for i in range(5)] + [{"u": 0, "a": "web"}] * excess
    conn.execute(sa.text(f"INSERT INTO {table} (user_id, agent) VALUES (:u, :a)"), rows)


def new_prefix() -> str:
    return f"dwfleet_{uuid.uuid4().hex[:8]}_"


def create_pg_database(fleet: Fleet, name: str, excess: int) -> None:
    admin = sa.create_engine(fleet.server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    engine = sa.create_engine(fleet.url_of(name))
    try:
        with engine.begin() as conn:
            _seed(conn, excess)
    finally:
        engine.dispose()
    fleet.names.append(name)
    fleet.excess[name] = excess


def drop_pg_database(name: str, server_url: str = PG_URL) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def pg_databases(count: int, *, prefix: str | None = None, server_url: str = PG_URL) -> Iterator[Fleet]:
    """`count` PostgreSQL databases `PREFIXtenant_<i>`, tenant i with i excess rows (on the shared server, or the
    one at `server_url`)."""
    fleet = Fleet(server_url, prefix or new_prefix())
    try:
        for i in range(1, count + 1):
            create_pg_database(fleet, f"{fleet.prefix}tenant_{i}", i)
        yield fleet
    finally:
        for name in list(fleet.names):
            drop_pg_database(name, server_url)


@contextmanager
def pg_schemas(count: int) -> Iterator[Fleet]:
    """`count` tenant schemas `PREFIXtenant_<i>` in the test database, plus a registry table listing them."""
    fleet = Fleet(PG_URL, new_prefix())
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{fleet.prefix}registry"'))
            conn.execute(sa.text(f'CREATE TABLE "{fleet.prefix}registry".tenants (schema_name TEXT)'))
            for i in range(1, count + 1):
                name = f"{fleet.prefix}tenant_{i}"
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
                fleet.names.append(name)
                _seed(conn, i, f'"{name}"')
                fleet.excess[name] = i
                conn.execute(sa.text(f'INSERT INTO "{fleet.prefix}registry".tenants VALUES (:n)'), {"n": name})
        yield fleet
    finally:
        with engine.begin() as conn:
            for name in [*fleet.names, f"{fleet.prefix}registry"]:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@contextmanager
def mysql_databases(count: int) -> Iterator[Fleet]:
    """`count` MariaDB/MySQL databases `PREFIXtenant_<i>`, tenant i with i excess rows."""
    fleet = Fleet(MYSQL_URL, new_prefix())
    admin = sa.create_engine(MYSQL_URL)
    try:
        for i in range(1, count + 1):
            name = f"{fleet.prefix}tenant_{i}"
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
                fleet.names.append(name)
                _seed(conn, i, f"`{name}`", mysql=True)
                fleet.excess[name] = i
        yield fleet
    finally:
        with admin.begin() as conn:
            for name in fleet.names:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


LIMIT = 2  # the connections `limited_role` may hold


@contextmanager
def limited_role(dialect: str, fleet: Fleet) -> Iterator[str]:
    """A role that may hold LIMIT connections and read the fleet's table; yields the fleet's URL as that role."""
    role, password = f"dwlimit_{uuid.uuid4().hex[:8]}", "pw_" + uuid.uuid4().hex[:8]
    admin = sa.create_engine(fleet.server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if dialect == "postgresql":
                conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT {LIMIT}"))
            else:
                conn.execute(sa.text(f"CREATE USER '{role}'@'%' IDENTIFIED BY '{password}' "
                                     f"WITH MAX_USER_CONNECTIONS {LIMIT}"))
                for name in fleet.names:
                    conn.execute(sa.text(f"GRANT SELECT, SHOW VIEW ON `{name}`.* TO '{role}'@'%'"))
        if dialect == "postgresql":
            _in_each_database(fleet, f"GRANT SELECT ON {TABLE} TO {role}")
        # Discovery runs in the URL's database: one the role may use (MariaDB refuses it the others).
        url = make_url(fleet.url_of(fleet.names[0])).set(username=role, password=password)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if dialect == "postgresql":
                _in_each_database(fleet, f"REVOKE ALL ON {TABLE} FROM {role}")
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
            else:
                conn.execute(sa.text(f"DROP USER IF EXISTS '{role}'@'%'"))
        admin.dispose()


def refusal(url: str, source_url: str) -> tuple[Verdict, str]:
    """Why connecting to `url` once failed, as the server at `source_url` (the source's database) says."""
    db = Database("probe", DatabaseConfig(url=url))
    try:
        with db.read_only():
            pass
    except DatabaseError as exc:
        assert db.connect_failure is not None
        known = db.rules.connect_refusal(db.connect_failure)  # the server's code, else the server asked
        verdict = Verdict(known) if known is not None else ask(db, make_url(source_url), db.url.database or "")
        return verdict, str(exc)
    finally:
        db.dispose()
    raise AssertionError(f"{url} connected")


def assert_server_tells_one_database_from_itself(server_url: str, fleet: Fleet, role_url: str) -> None:
    """Against the server at `server_url` (as its admin): a missing database, one closed to connections, one the
    role may not CONNECT to and one at its own CONNECTION LIMIT refuse alone; the role out of connections, a
    role the server refuses and a server that is not there refuse as a whole."""
    missing, closed, forbidden, full = fleet.names
    as_role = make_url(role_url)
    source = as_role.set(database=make_url(server_url).database).render_as_string(False)
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{missing}"'))
            fleet.names.remove(missing)
            conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text(f'REVOKE CONNECT ON DATABASE "{forbidden}" FROM PUBLIC'))
            conn.execute(sa.text(f'ALTER DATABASE "{full}" CONNECTION LIMIT 0'))
        for name, reason in ((missing, "does not exist"), (closed, "does not allow connections"),
                             (forbidden, "no CONNECT privilege"), (full, "CONNECTION LIMIT (0 of 0)")):
            verdict, error = refusal(as_role.set(database=name).render_as_string(False), source)
            assert verdict.refusal == "database" and reason in (verdict.reason or ""), (verdict, error)
        nobody = as_role.set(username="dwlimit_no_such_role").render_as_string(False)
        verdict, error = refusal(as_role.set(username="dwlimit_no_such_role", database=fleet.names[0])
                                 .render_as_string(False), nobody)
        assert verdict.refusal != "database", error  # the role: every target would fail alike
        held = [sa.create_engine(source).connect() for _ in range(LIMIT)]
        try:
            verdict, error = refusal(as_role.set(database=fleet.names[0]).render_as_string(False), source)
            assert verdict.refusal == "exhausted", error
        finally:
            for conn in held:
                conn.close()
                conn.engine.dispose()
        down = make_url(server_url).set(port=1).render_as_string(False)
        assert refusal(down, down)[0].refusal == "server"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS true'))
            conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{forbidden}" TO PUBLIC'))
            conn.execute(sa.text(f'ALTER DATABASE "{full}" CONNECTION LIMIT -1'))
        admin.dispose()


def _in_each_database(fleet: Fleet, statement: str) -> None:
    """Run `statement` in each database of `fleet` (PostgreSQL grants are per database)."""
    for name in fleet.names:
        engine = sa.create_engine(fleet.url_of(name))
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()

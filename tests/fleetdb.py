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
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
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


def drop_pg_database(name: str) -> None:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def pg_databases(count: int, *, prefix: str | None = None) -> Iterator[Fleet]:
    """`count` PostgreSQL databases `PREFIXtenant_<i>`, tenant i with i excess rows."""
    fleet = Fleet(PG_URL, prefix or new_prefix())
    try:
        for i in range(1, count + 1):
            create_pg_database(fleet, f"{fleet.prefix}tenant_{i}", i)
        yield fleet
    finally:
        for name in list(fleet.names):
            drop_pg_database(name)


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

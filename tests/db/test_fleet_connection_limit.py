"""A server that gives the fleet's role fewer connections than `[fleet] server_connections` (PostgreSQL's
`CREATE ROLE ... CONNECTION LIMIT 2`, MariaDB's `WITH MAX_USER_CONNECTIONS 2`): after the first refusals the
server takes as many checks at once as it was taking, the others wait unconnected, and every target is checked,
with no stream of refused connections (real servers, a role and databases made for this test only)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import MYSQL_URL, PG_URL, write_config
from fleetdb import TABLE, Fleet, mysql_databases, pg_databases
from monitor.config import load_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet import expand
from monitor.fleet.discover import discover_all
from monitor.schedule import Poller

TARGETS = 6
LIMIT = 2
# What each server says when the role has no connection left.
REFUSED = {"postgresql": "too many connections for role", "mysql": "max_user_connections"}


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
            for name in fleet.names:
                engine = sa.create_engine(fleet.url_of(name))
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.text(f"GRANT SELECT ON {TABLE} TO {role}"))
                finally:
                    engine.dispose()
        # Discovery runs in the URL's database: one the role may use (MariaDB refuses it the others).
        url = make_url(fleet.url_of(fleet.names[0])).set(username=role, password=password)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if dialect == "postgresql":
                for name in fleet.names:
                    engine = sa.create_engine(fleet.url_of(name))
                    try:
                        with engine.begin() as db:
                            db.execute(sa.text(f"REVOKE ALL ON {TABLE} FROM {role}"))
                    finally:
                        engine.dispose()
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
            else:
                conn.execute(sa.text(f"DROP USER IF EXISTS '{role}'@'%'"))
        admin.dispose()


class Runs:
    """Every result a poller reported; `enough` is set once every target succeeded `times` times."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.results: list[CheckResult] = []
        self.succeeded: Counter[str] = Counter()
        self.enough = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, result: CheckResult) -> None:
        with self._lock:
            self.results.append(result)
            if result.status != "error":
                self.succeeded[result.name] += 1
            if len(self.succeeded) == TARGETS and min(self.succeeded.values()) >= self.times:
                self.enough.set()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_role_with_fewer_connections_than_the_cap_is_not_stormed_and_every_target_is_checked(
        dialect: str, tmp_path: Path):
    with (pg_databases(TARGETS) if dialect == "postgresql" else mysql_databases(TARGETS)) as fleet, \
            limited_role(dialect, fleet) as url:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": ["user_id", "agent"], "interval": 0.5}],
            **{"sources.tenants": {"url": url, "discover": "databases", "include": fleet.include},
               "fleet": {"server_connections": 4, "max_running": 8}})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        monitor = Monitor(config)
        runs = Runs(times=10)
        poller = Poller(monitor, runs, stagger=False)  # every target at once: the cap, twice the role's limit
        poller.start()
        try:
            assert runs.enough.wait(90), f"checked: {runs.succeeded}"
        finally:
            poller.shutdown()
            monitor.close()
        server = next(iter({d.server for d in config.databases.values() if hasattr(d, "server")}))  # type: ignore[attr-defined]
        refused = [r for r in runs.results if r.error and REFUSED[dialect] in r.error]
        # The first round's refusals (the cap less what the role may hold), and a few while the server frees a
        # closed connection's slot a moment after the close (a check connecting then is refused, and the server
        # takes one check fewer at once): a handful, however long it runs. Without it a refused connection came
        # with every other round (98 and 10 in this test's run on PostgreSQL and MariaDB).
        assert len(refused) <= 6, [(r.name, r.finished_at.isoformat(), r.error) for r in refused]
        assert poller.budget.server_limit(server) < 4
        assert all(runs.succeeded[c.name] >= 10 for c in config.checks)
        excess = {r.name.partition("@")[2]: r.excess_rows for r in runs.results if r.status != "error"}
        assert excess == fleet.excess


def refusal(url: str) -> tuple[bool, bool, str]:
    """(server_refused, connections_exhausted, error) of connecting to `url` once."""
    from monitor.config import DatabaseConfig
    from monitor.db import Database, DatabaseError

    db = Database("probe", DatabaseConfig(url=url))
    try:
        with db.read_only():
            pass
    except DatabaseError as exc:
        return db.server_refused, db.connections_exhausted, str(exc)
    finally:
        db.dispose()
    raise AssertionError(f"{url} connected")


def test_postgresql_a_database_refusing_one_role_is_not_the_whole_server_refusing():
    """psycopg gives a failed connection no SQLSTATE: the server's FATAL says whether it refused one database
    (the others keep being checked) or the server or role (its targets back off as a whole)."""
    from fleetdb import pg_databases

    with pg_databases(3) as fleet, limited_role("postgresql", fleet) as url:
        missing, closed, forbidden = fleet.names
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{missing}"'))
                fleet.names.remove(missing)
                conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text(f'REVOKE CONNECT ON DATABASE "{forbidden}" FROM PUBLIC'))
            as_role = make_url(url)
            for name, words in ((missing, "does not exist"), (closed, "not currently accepting connections"),
                                (forbidden, "permission denied for database")):
                refused, exhausted, error = refusal(as_role.set(database=name).render_as_string(False))
                assert (refused, exhausted) == (False, False) and words in error, error
            nobody = as_role.set(username="dwlimit_no_such_role", database=make_url(PG_URL).database)
            refused, exhausted, error = refusal(nobody.render_as_string(False))
            assert (refused, exhausted) == (True, False), error  # the role: every target would fail alike
            usable = as_role.set(database=make_url(PG_URL).database).render_as_string(False)
            held = [sa.create_engine(usable).connect() for _ in range(LIMIT)]
            try:
                refused, exhausted, error = refusal(usable)
                assert (refused, exhausted) == (True, True) and "too many connections for role" in error, error
            finally:
                for conn in held:
                    conn.close()
                    conn.engine.dispose()
            down = make_url(PG_URL).set(port=1).render_as_string(False)
            assert refusal(down)[:2] == (True, False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS true'))
                conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{forbidden}" TO PUBLIC'))
            admin.dispose()


def test_mariadb_a_database_the_user_may_list_but_not_use_is_not_the_whole_server_refusing(tmp_path: Path):
    """SHOW DATABASES lists every database to a user with the global SHOW DATABASES privilege, even those it may
    not use: that target fails with the server's word (1044), the server does not back off, the others are
    checked."""
    from dbtest import run_dupewatch
    from fleetdb import mysql_databases

    with mysql_databases(2) as fleet, limited_role("mysql", fleet) as url:
        role = make_url(url).username
        admin = sa.create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f"REVOKE ALL PRIVILEGES ON `{fleet.names[1]}`.* FROM '{role}'@'%'"))
                conn.execute(sa.text(f"GRANT SHOW DATABASES ON *.* TO '{role}'@'%'"))
            refused, exhausted, error = refusal(make_url(url).set(database=fleet.names[1]).render_as_string(False))
            assert (refused, exhausted) == (False, False) and "Access denied" in error, error
            path = write_config(tmp_path / "fleet.toml", {}, [
                {"name": "logins", "source": "shops", "table": TABLE, "key": ["user_id", "agent"]}],
                **{"sources.shops": {"url": url, "discover": "databases", "include": fleet.include}})
            run = run_dupewatch("check", "--json", "--config", path)
            entries = {e["target"]: e for e in run.json["checks"]}
            assert set(entries) == set(fleet.names), run.stderr  # listed
            assert entries[fleet.names[0]]["excess_rows"] == fleet.excess[fleet.names[0]]
            assert entries[fleet.names[1]]["status"] == "error" and "Access denied" in entries[fleet.names[1]]["error"]
            assert "***" in entries[fleet.names[1]]["error"] and make_url(url).password not in run.stdout + run.stderr
        finally:
            admin.dispose()

"""A server that gives the fleet's role fewer connections than `[fleet] server_connections` (PostgreSQL's
`CREATE ROLE ... CONNECTION LIMIT 2`, MariaDB's `WITH MAX_USER_CONNECTIONS 2`): after the first refusals the
server takes as many checks at once as it was taking, the others wait unconnected, and every target is checked,
with no stream of refused connections (real servers, a role and databases made for this test only)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import MYSQL_URL, PG_URL, write_config
from fleetdb import (
    TABLE,
    assert_server_tells_one_database_from_itself,
    limited_role,
    mysql_databases,
    pg_databases,
    refusal,
)
from monitor.config import load_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet import expand
from monitor.fleet.discover import discover_all
from monitor.schedule import Poller

TARGETS = 6
# What each server says when the role has no connection left.
REFUSED = {"postgresql": "too many connections for role", "mysql": "max_user_connections"}


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


def test_postgresql_the_server_tells_a_database_refusing_one_role_from_the_whole_server_refusing():
    """psycopg gives a failed connection no SQLSTATE: the server is asked (pg_database, the role's and the
    server's connection limits, libpq's ping) whether it refused one database or refuses as a whole."""
    with pg_databases(4) as fleet, limited_role("postgresql", fleet) as url:
        assert_server_tells_one_database_from_itself(PG_URL, fleet, url)


def test_psycopg_gives_a_failed_connection_no_sqlstate():
    """Why the server is asked: if psycopg ever gives one, `connect_refusal` uses it and this test says so."""
    import psycopg

    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(make_url(PG_URL).set(database="dw_no_such_database_x", drivername="postgresql")
                        .render_as_string(False))
    assert raised.value.sqlstate is None and raised.value.diag.sqlstate is None


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
            verdict, error = refusal(make_url(url).set(database=fleet.names[1]).render_as_string(False), url)
            assert verdict.refusal == "database" and "Access denied" in error, error
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

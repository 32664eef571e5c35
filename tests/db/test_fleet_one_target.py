"""At most one check per target at a time, and one hung target never delays the others (real PostgreSQL and
MariaDB, databases made for these tests only).

- A target is what it is (server, database, schema): two sources that list the same database, each with its own
  slow check, never run on it at once.
- A target whose table is locked holds one worker of its server, no more: with two workers for four targets,
  the other three keep being checked, round after round, while it waits."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtest import PG_URL, write_config
from fleetdb import TABLE, Fleet, mysql_databases, pg_databases
from monitor.config import load_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet import expand
from monitor.fleet.discover import discover_all
from monitor.schedule import Poller

SLOW = "SELECT 1 AS v FROM (SELECT pg_sleep(0.3)::text AS s) AS t WHERE t.s = 'x'"
RUNNING = ("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND query LIKE '%pg_sleep(0.3)%' "
           "AND state = 'active'")


def test_two_sources_listing_one_database_never_run_two_checks_on_it_at_once(tmp_path: Path):
    with pg_databases(1) as fleet:
        sources = {f"sources.{name}": {"url": PG_URL, "discover": "databases", "include": fleet.include}
                   for name in ("a", "b")}
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": f"slow-{name}", "source": name, "sql": SLOW, "interval": 0.2} for name in ("a", "b")],
            **sources, fleet={"server_connections": 4, "max_running": 8})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        assert len(config.checks) == 2 and len(config.databases) == 2  # one database, an entry per source
        monitor = Monitor(config)
        runs: Counter[str] = Counter()
        enough = threading.Event()

        def on_result(result: CheckResult) -> None:
            assert result.status != "error", result.error
            runs[result.name] += 1
            if len(runs) == 2 and min(runs.values()) >= 5:
                enough.set()

        poller = Poller(monitor, on_result, stagger=False)
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        most = 0
        poller.start()
        try:
            with admin.connect() as conn:
                while not enough.wait(0.02):
                    most = max(most, conn.execute(sa.text(RUNNING), {"d": fleet.names[0]}).scalar() or 0)
        finally:
            poller.shutdown()
            monitor.close()
            admin.dispose()
        assert most == 1  # seen running, never two at once


@contextmanager
def locked(dialect: str, fleet: Fleet, database: str) -> Iterator[None]:
    """`TABLE` of `database` locked against readers until the block ends."""
    engine = sa.create_engine(fleet.url_of(database))
    try:
        with engine.connect() as lock, lock.begin():
            lock.execute(sa.text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE" if dialect == "postgresql"
                                 else f"LOCK TABLES {TABLE} WRITE"))
            yield
            if dialect == "mysql":
                lock.execute(sa.text("UNLOCK TABLES"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_hung_target_holds_one_worker_and_the_others_keep_being_checked(dialect: str, tmp_path: Path):
    with (pg_databases(4) if dialect == "postgresql" else mysql_databases(4)) as fleet:
        hung = fleet.names[0]
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": ["user_id", "agent"], "interval": 0.3}],
            **{"sources.tenants": {"url": fleet.server_url, "discover": "databases", "include": fleet.include,
                                   "statement_timeout": "60s"}},
            fleet={"server_connections": 2, "max_running": 2})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        monitor = Monitor(config)
        done: Counter[str] = Counter()
        enough = threading.Event()

        def on_result(result: CheckResult) -> None:
            done[result.name.partition("@")[2]] += 1
            if all(done[name] >= 5 for name in fleet.names[1:]):
                enough.set()

        poller = Poller(monitor, on_result, stagger=False)
        with locked(dialect, fleet, hung):
            poller.start()
            try:
                assert enough.wait(60), f"the others were held up: {done}"
                assert done[hung] == 0  # still waiting on its lock all along
            finally:
                poller.shutdown()
        monitor.close()  # cancels the hung statement

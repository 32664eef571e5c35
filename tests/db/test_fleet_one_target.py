"""At most one check per target at a time, a target being what it is (server, database, schema): two sources that
list the same PostgreSQL database, each with its own slow check, never run on it at once (real PostgreSQL, a
database made for this test only)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from dbtest import PG_URL, write_config
from fleetdb import pg_databases
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

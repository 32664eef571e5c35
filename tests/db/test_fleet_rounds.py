"""A fleet target's checks run as one round on one connection, and a plain check that runs without reflecting its
table still names a missing column as any check does (real PostgreSQL, databases named for this test only)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

from dbtest import PG_URL, write_config
from fleetdb import TABLE, pg_databases
from monitor.config import load_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet import expand
from monitor.fleet.discover import discover_all
from monitor.schedule import Poller


def test_a_targets_round_connects_once_and_a_missing_column_is_named_as_for_a_reflected_check(tmp_path: Path):
    with pg_databases(2) as fleet:
        checks = [{"name": "pair", "source": "tenants", "table": TABLE, "key": ["user_id", "agent"]},
                  {"name": "user", "source": "tenants", "table": TABLE, "key": ["user_id"]},
                  {"name": "typo", "source": "tenants", "table": TABLE, "key": ["user_idd"]}]
        path = write_config(tmp_path / "fleet.toml", {}, [{**c, "interval": 3600} for c in checks],
                            **{"sources.tenants": {"url": PG_URL, "discover": "databases",
                                                   "include": fleet.include},
                               "fleet": {"server_connections": 1}})  # more targets than connections: no pool
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        monitor = Monitor(config)
        connects: Counter[str] = Counter()
        engine = monitor.database(config.checks[0].database).engine
        event.listen(engine, "connect", lambda dbapi, _record: connects.update([dbapi.info.dbname]))
        results: dict[str, CheckResult] = {}
        done = threading.Event()

        def on_result(result: CheckResult) -> None:
            results[result.name] = result
            if len(results) == len(config.checks):
                done.set()

        poller = Poller(monitor, on_result, stagger=False)
        poller.start()
        try:
            assert done.wait(60), f"only {sorted(results)} ran"
        finally:
            poller.shutdown()
            monitor.close()
        assert connects == Counter({name: 1 for name in fleet.names})  # three checks, one connection per target
        for name in fleet.names:
            assert results[f"pair@{name}"].excess_rows == fleet.excess[name]
            assert results[f"user@{name}"].excess_rows == fleet.excess[name]
            error: Any = results[f"typo@{name}"].error
            assert "key: unknown column 'user_idd'" in error and "did you mean 'user_id'" in error

"""The daemon over a fleet, as a real process over HTTP: every per-check series carries `target` and the static
labels, targets that disappear stop being exported, discovery that fails keeps the last good list, and shards
(by `--shard`, `DUPEWATCH_SHARD` or a StatefulSet's `DUPEWATCH_SHARDS` + `POD_NAME`) check every target exactly
once between them."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from daemonproc import Scrape, daemon_starter, free_port
from sqlalchemy.engine import make_url

from dbtest import PG_URL, write_config
from fleetdb import TABLE, create_pg_database, drop_pg_database, pg_databases, pg_schemas
from monitor.config import FleetConfig

KEY = ["user_id", "agent"]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def fleet_config(tmp_path: Path, port: int, source: dict[str, Any], *, name: str = "fleet.toml",
                 databases: dict[str, dict[str, Any]] | None = None, checks: list[dict[str, Any]] | None = None,
                 interval: float = 0.5) -> Path:
    fleet_checks = [{"name": "logins", "source": "tenants", "table": TABLE, "key": KEY, "interval": interval}]
    return write_config(tmp_path / name, databases or {}, fleet_checks + (checks or []),
                        **{"sources.tenants": {"every": 0.5, **source},
                           "metrics": {"listen": f"127.0.0.1:{port}"},
                           "state": {"path": str(tmp_path / f"{name}.history.sqlite")}})


def series(scrape: Scrape, metric: str) -> dict[str, dict[str, str]]:
    """target -> labels of `metric`'s samples."""
    return {labels["target"]: labels for labels, _ in scrape.samples.get(metric, [])}


def figures(scrape: Scrape, metric: str = "dupewatch_duplicate_excess_rows") -> dict[str, float]:
    return {labels["target"]: value for labels, value in scrape.samples.get(metric, [])}


def test_every_series_carries_target_and_static_labels_and_a_target_that_disappears_is_no_longer_exported(
        tmp_path: Path, start_daemon: Any):
    with pg_databases(3) as fleet:
        port = free_port()
        plain = {"name": "plain", "database": "app", "table": TABLE, "key": KEY, "interval": 0.5}
        path = fleet_config(tmp_path, port, {"url": PG_URL, "discover": "databases", "include": fleet.include,
                                             "labels": {"env": "test"}},
                            databases={"app": {"url": fleet.url_of(fleet.names[0]), "labels": {"team": "core"}}},
                            checks=[plain])
        daemon = start_daemon(path, port)
        scrape = daemon.wait_for(lambda s: len(figures(s)) == 4, "every target's figures")
        assert figures(scrape) == {**fleet.excess, "app": fleet.excess[fleet.names[0]]}
        labels = series(scrape, "dupewatch_check_up")
        assert labels[fleet.names[1]] == {"check": "logins", "database": fleet.names[1], "target": fleet.names[1],
                                          "env": "test", "team": ""}
        assert labels["app"] == {"check": "plain", "database": "app", "target": "app", "env": "", "team": "core"}
        for metric in ("dupewatch_target_up", "dupewatch_target_last_success_timestamp_seconds",
                       "dupewatch_target_duration_seconds"):
            assert set(series(scrape, metric)) == {*fleet.names, "app"}, metric
        assert scrape.value("dupewatch_discovery_targets", "") is None  # labelled by source, not check
        assert scrape.samples["dupewatch_discovery_targets"] == [({"source": "tenants"}, 3.0)]
        server = f"{make_url(PG_URL).host}:{make_url(PG_URL).port}"
        cap = float(FleetConfig().server_connections)
        assert scrape.samples["dupewatch_server_connection_limit"] == [({"server": server}, cap)]
        assert scrape.samples["dupewatch_server_connections_limited"] == [({"server": server}, 0.0)]

        drop_pg_database(fleet.names[2])
        fleet.names.pop()
        scrape = daemon.wait_for(lambda s: fleet.prefix + "tenant_3" not in s.text, "the dropped target gone")
        assert set(figures(scrape)) == {*fleet.names, "app"}
        create_pg_database(fleet, fleet.prefix + "tenant_4", 4)
        scrape = daemon.wait_for(lambda s: figures(s).get(fleet.prefix + "tenant_4") == 4.0, "a new database")
        assert daemon.stop() == 0


def test_failed_discovery_keeps_the_last_good_list_and_says_so(tmp_path: Path, start_daemon: Any):
    with pg_schemas(2) as fleet:
        port = free_port()
        registry = f'"{fleet.prefix}registry".tenants'
        path = fleet_config(tmp_path, port, {"url": PG_URL, "discover": "schemas",
                                             "schemas_query": f"SELECT schema_name FROM {registry}"})
        daemon = start_daemon(path, port)
        daemon.wait_for(lambda s: len(figures(s)) == 2, "both schemas checked")
        engine = sa.create_engine(PG_URL)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'ALTER TABLE {registry} RENAME TO moved'))
            scrape = daemon.wait_for(
                lambda s: s.samples["dupewatch_discovery_up"] == [({"source": "tenants"}, 0.0)], "discovery down")
            errors = scrape.samples["dupewatch_discovery_errors_total"][0][1]
            assert errors >= 1
            assert "discovery failed, keeping the last good list of targets" in daemon.log()
            # Both targets are still checked: their last success keeps advancing.
            metric = "dupewatch_target_last_success_timestamp_seconds"
            before = figures(scrape, metric)
            later = daemon.wait_for(lambda s: all(v > before[t] for t, v in figures(s, metric).items()),
                                    "targets still checked")
            assert len(figures(later)) == 2
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f'ALTER TABLE "{fleet.prefix}registry".moved RENAME TO tenants'))
            engine.dispose()
        daemon.wait_for(lambda s: s.samples["dupewatch_discovery_up"] == [({"source": "tenants"}, 1.0)],
                        "discovery back")


def test_three_shards_check_every_target_exactly_once(tmp_path: Path, start_daemon: Any,
                                                      monkeypatch: pytest.MonkeyPatch):
    with pg_databases(9) as fleet:
        source = {"url": PG_URL, "discover": "databases", "include": fleet.include}
        ports = [free_port() for _ in range(3)]
        daemons = []
        for index, port in enumerate(ports):
            path = fleet_config(tmp_path, port, source, name=f"shard{index}.toml")
            if index == 0:
                daemons.append(start_daemon(path, port, "--shard", "0/3"))
            elif index == 1:
                monkeypatch.setenv("DUPEWATCH_SHARD", "1/3")
                daemons.append(start_daemon(path, port))
                monkeypatch.delenv("DUPEWATCH_SHARD")
            else:  # a StatefulSet pod: the count from the environment, the ordinal from the pod's name
                monkeypatch.setenv("DUPEWATCH_SHARDS", "3")
                monkeypatch.setenv("POD_NAME", "dupewatch-2")
                daemons.append(start_daemon(path, port))
        checked: Counter[str] = Counter()
        exported: Counter[str] = Counter()
        for index, daemon in enumerate(daemons):
            # Discovery first: before its first listing a shard exports no target, and 0 == 0 would pass.
            scrape = daemon.wait_for(lambda s: s.samples.get("dupewatch_discovery_up") == [({"source": "tenants"}, 1.0)]
                                     and len(figures(s)) == len(figures(s, "dupewatch_check_interval_seconds"))
                                     and "dupewatch_shard" in s.samples, "every target of the shard checked")
            assert scrape.samples["dupewatch_shard"] == [({"shard": str(index), "shards": "3"}, 1.0)]
            for labels, runs in scrape.samples.get("dupewatch_check_duration_seconds_count", []):
                if runs > 0:
                    checked[labels["target"]] += 1
            exported.update(list(figures(scrape, "dupewatch_check_interval_seconds")))  # a shard may own none
        assert set(checked) == set(fleet.names) == set(exported)
        assert all(count == 1 for count in checked.values()), checked  # by one shard each
        assert all(count == 1 for count in exported.values()), exported  # and exported by that one only


def test_a_reload_that_narrows_a_source_stops_exporting_the_targets_it_left_out(tmp_path: Path, start_daemon: Any):
    with pg_databases(2) as fleet:
        port = free_port()
        source = {"url": PG_URL, "discover": "databases", "include": fleet.include, "every": "1h"}
        path = fleet_config(tmp_path, port, source)
        daemon = start_daemon(path, port)
        daemon.wait_for(lambda s: set(figures(s)) == set(fleet.names), "both targets")
        fleet_config(tmp_path, port, {**source, "exclude": "_2$"})  # the same file, rewritten
        daemon.send(signal.SIGHUP)
        scrape = daemon.wait_for(lambda s: set(figures(s, "dupewatch_check_interval_seconds")) == {fleet.names[0]},
                                 "the narrowed source's targets only")
        assert set(series(scrape, "dupewatch_target_up")) == {fleet.names[0]}
        assert daemon.stop() == 0

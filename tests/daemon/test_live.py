"""Live mode on PostgreSQL for real: a throwaway cluster with `wal_level = logical`, the daemon as a real process
scraped over HTTP, and the stream in-process where the test is about the server (refusals, the temporary slot)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from daemonproc import DaemonProcess, Scrape, daemon_starter, free_port
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from mariadbserver import MariaDBServer, started_mariadb
from pgcluster import Cluster, started_cluster

from dbtest import TestDatabase, Volume, autocommit_engine, one_transaction, volumes, write_config
from monitor.config import config_from_dict
from monitor.dialects import for_backend
from monitor.dialects.mysql import MySQL
from monitor.dialects.postgresql import PostgreSQL
from monitor.engine import Monitor
from monitor.history import History
from monitor.live import Figures, LiveReader, LiveRefused, StreamLost
from monitor.live import postgresql as postgresql_module
from monitor.live import visibility as visibility_module
from monitor.live.changes import Change
from monitor.live.groups import KEYS_PER_READ, LiveGroups, Named
from monitor.live.mysql import QUEUED_CHANGES, BinlogStream
from monitor.live.postgresql import TEST_DECODING, WAL2JSON, LogicalDecodingStream, Plugin
from monitor.live.visibility import GIVE_UP_SECONDS, VISIBLE_SECONDS, RowVisibility

pytestmark = pytest.mark.timeout(120)

@contextmanager
def following_reader(monitor: Any, recorded: Any) -> Iterator[LiveReader]:
    """An in-process reader of database `live`'s stream, started and following it; stopped afterwards."""
    db = monitor.database("live")
    reader = LiveReader(monitor, "live", list(monitor.config.checks), db.rules.change_stream("live", db.url),
                        recorded, poll_seconds=0.05)
    reader.start()
    try:
        assert reader.following.wait(10)
        yield reader
    finally:
        reader.stop()


def signups_monitor(monitor_for: Any, url: str, table: str, key: list[str] | None = None, **check: Any) -> Monitor:
    """A monitor of database `live` at `url` with one check, `signups`, of `table` by `key` (email by default);
    `check`: more of the check's options."""
    return monitor_for({"live": {"url": url}}, [
        {"name": "signups", "database": "live", "table": table, "key": key or ["email"], **check}])


@contextmanager
def following_signups(monitor_for: Any, url: str, table: str, key: list[str] | None = None,
                      **check: Any) -> Iterator[tuple[LiveReader, Recorded]]:
    """`signups_monitor`'s stream followed by an in-process reader (`following_reader`): (reader, recorded)."""
    recorded = Recorded()
    with following_reader(signups_monitor(monitor_for, url, table, key, **check), recorded) as reader:
        yield reader, recorded


GROUPS = "dupewatch_duplicate_groups"
EXCESS = "dupewatch_duplicate_excess_rows"
NEW = "dupewatch_new_duplicate_groups_total"
GAPS = "dupewatch_live_gaps_total"
EVENTS = "dupewatch_live_events_total"
LAG = "dupewatch_live_lag_seconds"
FOLLOWING = "dupewatch_live_following"
OVERFLOWS = "dupewatch_live_overflows_total"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "dupewatch.rules.yml"
LIVE_SECONDS = 5.0  # commit to /metrics (about 0.2 s measured; generous for a loaded CI machine)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # logical_decoding_work_mem at its least: a transaction past 64kB is spilled to disk while decoded
    for made in started_cluster("the live-mode tests", wal_level="logical", max_prepared_transactions="2",
                                logical_decoding_work_mem="64kB"):
        allow_wal2json(made)
        yield made


def allow_wal2json(cluster: Cluster) -> None:
    """Where the server lists the output plugins roles may use (`output_plugin_libraries`), add wal2json to this
    throwaway cluster's list, so that live mode uses it where it is installed."""
    set_plugin_libraries(cluster, "pgoutput, test_decoding, wal2json")


def set_plugin_libraries(cluster: Cluster, libraries: str) -> bool:
    """Set the throwaway cluster's `output_plugin_libraries` and wait until new sessions have it; False where
    the server has no such setting."""
    engine = autocommit_engine(cluster.url)
    try:
        with engine.connect() as conn:
            if not conn.execute(sa.text("SELECT count(*) FROM pg_settings"
                                        " WHERE name = 'output_plugin_libraries'")).scalar():
                return False
            conn.execute(sa.text(f"ALTER SYSTEM SET output_plugin_libraries = {libraries}"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))

        def applied() -> bool:
            with engine.connect() as fresh:
                return bool(fresh.execute(sa.text("SHOW output_plugin_libraries")).scalar() == libraries)

        await_true(applied, "the setting reloaded")
        return True
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def plugin(cluster: Cluster) -> str:
    """The output plugin live mode uses on the cluster: wal2json where the server accepts it."""
    stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL())
    stream.open()
    assert stream.plugin is not None
    name = stream.plugin.name
    stream.close()
    return name


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[sa.Engine]:
    engine = autocommit_engine(cluster.url)
    yield engine
    engine.dispose()


@pytest.fixture
def table(admin: sa.Engine) -> Iterator[str]:
    name = f"signup_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id serial PRIMARY KEY, email text NOT NULL)"))
        conn.execute(sa.text(f"CREATE INDEX ON {name} (email)"))
    yield name
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP TABLE {name}"))


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def live_value(scrape: Scrape, name: str, database: str = "live") -> float | None:
    for labels, value in scrape.samples.get(name, []):
        if labels.get("database") == database:
            return value
    return None


def live_daemon(start_daemon: Callable[..., DaemonProcess], tmp_path: Path, url: str, table: str,
                check: dict[str, Any] | None = None, **database: Any) -> DaemonProcess:
    """A daemon whose one check polls hourly: after its first run, only the stream can change its figures.
    `check`: more of the check's options."""
    port = free_port()
    config = write_config(
        tmp_path / "dupewatch.toml", {"live": {"url": url, "live": True, **database}},
        [{"name": "signups", "database": "live", "table": table, "key": ["email"], "interval": 3600,
          **(check or {})}],
        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    daemon = start_daemon(config, port)
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") is not None, "the first run of the check")
    await_log(daemon, "following the change stream")
    await_first_count(daemon)
    return daemon


def await_first_count(daemon: DaemonProcess) -> None:
    """The new-groups counter is exported once the stream's first count settled the run's groups (it is held
    until then); the page shows it a render after the log says the stream is followed."""
    daemon.wait_for(lambda s: s.value(NEW, "signups") is not None, "the stream's first count on the page")


def await_log(daemon: DaemonProcess, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert daemon.proc.poll() is None, f"daemon exited:\n{daemon.log()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {text!r} in the log:\n{daemon.log()[-3000:]}"
        time.sleep(0.05)  # polling interval of a condition wait


def execute(engine: sa.Engine, statement: str, **params: Any) -> None:
    """One statement, committed (on an engine that autocommits or not); several in one transaction:
    `one_transaction`."""
    with engine.connect() as conn:
        conn.execute(sa.text(statement), params)
        conn.commit()


def race(engine: sa.Engine, table: str, email: str, sessions: int = 2) -> None:
    """`sessions` transactions insert the same email at once, each after checking it is not there yet."""
    barrier = threading.Barrier(sessions)

    def insert() -> None:
        with one_transaction(engine) as conn:
            seen = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE email = :e"), {"e": email}).scalar()
            barrier.wait()
            if not seen:
                conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES (:e)"), {"e": email})

    threads = [threading.Thread(target=insert) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_racing_inserts_show_a_new_duplicate_in_metrics_within_seconds(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    execute(admin, f"INSERT INTO {table} (email) VALUES ('old@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    assert daemon.scrape().value(GROUPS, "signups") == 0

    race(admin, table, "racer@example.com", sessions=3)
    committed = time.monotonic()
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1, "the raced group in /metrics",
                             timeout=LIVE_SECONDS)
    latency = time.monotonic() - committed
    print(f"commit to count (dupewatch_live_lag_seconds): {live_value(scrape, LAG):.3f} s")
    assert scrape.value(EXCESS, "signups") == 2
    assert scrape.value(NEW, "signups") == 1
    assert (live_value(scrape, EVENTS) or 0) >= 3
    assert live_value(scrape, GAPS) == 0
    assert live_value(scrape, OVERFLOWS) == 0
    assert live_value(scrape, LAG) is not None
    assert live_value(scrape, FOLLOWING) == 1
    print(f"commit-to-metric latency: {latency:.3f} s")
    assert daemon.stop() == 0


def test_a_raced_duplicate_moves_the_new_duplicates_counter_from_the_stream_and_the_shipped_alert_fires(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any, promtool: str) -> None:
    """The check polls hourly: between two scrapes only the stream ran. Prometheus's own rule engine (promtool)
    then evaluates the shipped DupewatchNewDuplicates rule over the counter's two scraped values (under CI a
    missing promtool fails the test, as in the rule tests)."""
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    ran_at = "dupewatch_check_last_success_timestamp_seconds"
    # The counter is exported once the stream's first count settled what the run found (held until then).
    before = daemon.wait_for(lambda s: s.value(ran_at, "signups") is not None and s.value(NEW, "signups") is not None,
                             "the check's first (hourly) run and the stream's first count")
    ran = before.value(ran_at, "signups")
    assert before.value(NEW, "signups") == 0

    race(admin, table, "alert@example.com", sessions=2)
    after = daemon.wait_for(lambda s: s.value(NEW, "signups") == 1, "the new group counted", timeout=LIVE_SECONDS)
    assert after.value(ran_at, "signups") == ran  # no poll ran since
    assert daemon.stop() == 0

    alert_labels = {"check": "signups", "database": "live", "instance": "dupewatch", "job": "dupewatch"}
    labels = ",".join(f'{name}="{value}"' for name, value in alert_labels.items())
    case = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f"{NEW}{{{labels}}}",
                          "values": f"{before.value(NEW, 'signups'):.0f} {after.value(NEW, 'signups'):.0f}"}],
        "alert_rule_test": [{"eval_time": "1m", "alertname": "DupewatchNewDuplicates", "exp_alerts": [{
            "exp_labels": {"severity": "critical", **alert_labels},
            "exp_annotations": {name: expand(text, alert_labels, after.value(NEW, "signups") or 0)
                                for name, text in rule_annotations("DupewatchNewDuplicates").items()},
        }]}]}]}
    cases = tmp_path / "live.rules.test.yml"
    cases.write_text(json.dumps(case))  # YAML is a superset of JSON
    tested = subprocess.run([promtool, "test", "rules", str(cases)], capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def rule_annotations(alert: str) -> dict[str, str]:
    rules = yaml.safe_load(RULES.read_text())
    return next(r["annotations"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)


def expand(template: str, labels: dict[str, str], value: float) -> str:
    """The annotation as Prometheus fills it in: `{{ $labels.NAME }}` and `{{ $value | printf "%.0f" }}`."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], template)
    return text.replace('{{ $value | printf "%.0f" }}', f"{value:.0f}")


def test_a_low_id_committed_late_makes_a_duplicate_the_moment_it_commits(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    transactional = sa.create_engine(cluster.url)
    with transactional.connect() as late:
        late_transaction = late.begin()
        late.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('late@example.com')"))  # the lower id
        execute(admin, f"INSERT INTO {table} (email) VALUES ('late@example.com'), ('other@example.com')")
        daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 2, "the higher id's commit read")
        assert daemon.scrape().value(GROUPS, "signups") == 0
        late_transaction.commit()
    transactional.dispose()
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1 and s.value(NEW, "signups") == 1,
                    "the group the late commit made", timeout=LIVE_SECONDS)
    assert daemon.stop() == 0


def test_a_key_changing_update_forms_and_dissolves_a_group(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    execute(admin, f"INSERT INTO {table} (email) VALUES ('a@example.com'), ('b@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)

    execute(admin, f"UPDATE {table} SET email = 'a@example.com' WHERE email = 'b@example.com'")
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1 and s.value(NEW, "signups") == 1,
                    "the group the update formed", timeout=LIVE_SECONDS)
    # The stream gives the new row only (the replica identity is the primary key): the old group is found
    # among the known ones and re-counted.
    execute(admin, f"UPDATE {table} SET email = 'c@example.com' WHERE id = (SELECT max(id) FROM {table})")
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 0, "the group the second update dissolved",
                    timeout=LIVE_SECONDS)
    assert daemon.scrape().value(NEW, "signups") == 1
    assert daemon.stop() == 0


def test_a_delete_dissolves_a_group(cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path,
                                    start_daemon: Any) -> None:
    execute(admin, f"INSERT INTO {table} (email) VALUES ('d@example.com'), ('d@example.com'), ('d@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    assert daemon.scrape().value(EXCESS, "signups") == 2

    execute(admin, f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")
    daemon.wait_for(lambda s: s.value(EXCESS, "signups") == 1, "one excess row left", timeout=LIVE_SECONDS)
    execute(admin, f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 0, "the group dissolved", timeout=LIVE_SECONDS)
    assert scrape.value(NEW, "signups") == 0
    assert daemon.stop() == 0


def test_live_mode_writes_nothing_and_leaves_the_replica_identity_as_it_was(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    """The read-only promise, asked of the server: a slot of the test's own, opened before the daemon, holds every
    change committed while the daemon followed the stream and counted; only the test's own four are there."""
    slot = f"audit_{uuid.uuid4().hex[:8]}"
    with admin.connect() as watch:  # the slot is temporary: it lives as long as this session
        watch.execute(sa.text("SELECT pg_create_logical_replication_slot(:s, 'test_decoding', temporary => true)"),
                      {"s": slot})
        daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
        execute(admin, f"INSERT INTO {table} (email) VALUES ('w@example.com'), ('w@example.com')")
        daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1, "the group counted", timeout=LIVE_SECONDS)
        execute(admin, f"UPDATE {table} SET email = 'v@example.com' WHERE id = (SELECT max(id) FROM {table})")
        daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 0, "the group dissolved", timeout=LIVE_SECONDS)
        execute(admin, f"DELETE FROM {table} WHERE email = 'v@example.com'")
        daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 4, "the delete read", timeout=LIVE_SECONDS)
        assert daemon.stop() == 0
        data = watch.execute(sa.text("SELECT data FROM pg_logical_slot_get_changes(:s, NULL, NULL)"),
                             {"s": slot}).scalars().all()
        identity = watch.execute(sa.text("SELECT relreplident FROM pg_class WHERE oid = to_regclass(:t)"),
                                 {"t": table}).scalar()
    changes = [line for line in data if not line.startswith(("BEGIN", "COMMIT"))]
    assert [line.split(":")[1].strip() for line in changes] == ["INSERT", "INSERT", "UPDATE", "DELETE"], changes
    assert all(line.startswith(f"table public.{table}: ") for line in changes), changes
    assert identity == "d"  # the default (the primary key): never changed by live mode


def test_a_check_the_stream_does_not_follow_keeps_its_polled_figures_on_a_live_database(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    """Live mode follows table checks only: a custom SQL check of the same database takes its figures, and its
    new groups, from its runs while the stream is followed."""
    port = free_port()
    config = write_config(
        tmp_path / "dupewatch.toml", {"live": {"url": cluster.url, "live": True}},
        [{"name": "signups", "database": "live", "table": table, "key": ["email"], "interval": 3600},
         {"name": "custom", "database": "live", "interval": 0.5, "kind": "duplicates",
          "sql": f"SELECT email, count(*) AS dup_count FROM {table} GROUP BY email HAVING count(*) > 1"}],
        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    daemon = start_daemon(config, port)
    await_log(daemon, "following the change stream")
    daemon.wait_for(lambda s: s.value(GROUPS, "custom") == 0, "the custom check's first run")
    execute(admin, f"INSERT INTO {table} (email) VALUES ('c@example.com'), ('c@example.com')")
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1 and s.value(GROUPS, "custom") == 1,
                             "both checks' figures", timeout=LIVE_SECONDS)
    assert scrape.value(EXCESS, "custom") == 1
    assert daemon.stop() == 0


def live_backend(admin: sa.Engine) -> int | None:
    """The backend of the one live stream reading the cluster (earlier tests' sessions may still be ending)."""
    deadline = time.monotonic() + 10
    while True:
        with admin.connect() as conn:
            pids = conn.execute(sa.text("SELECT active_pid FROM pg_replication_slots"
                                        " WHERE slot_name LIKE 'dupewatch_live_%' AND active_pid IS NOT NULL")).all()
        if len(pids) == 1 or time.monotonic() > deadline:
            assert len(pids) == 1, f"expected one live slot, found {len(pids)}"
            return int(pids[0][0])
        time.sleep(0.05)  # polling interval of a condition wait


# (column type, two key values as SQL literals): the stream prints them as text, cast back by the server; the
# re-counted keys are read and bound back as stored (`Dialect.as_stored`), the float rounded to its column's type.
POSTGRESQL_STREAM_KEYS = {
    "timestamptz": ("TIMESTAMPTZ", "'2024-01-01 09:00:00.123456+02'", "'2024-01-01 09:00:00.123457+02'"),
    "real": ("REAL", "0.1", "3.3"),
    "numeric": ("NUMERIC(30, 20)", "0.00000000000000000001", "12345678.12345678901234567890"),
    "interval": ("INTERVAL", "'1 mon'", "'1 day 00:00:00.000001'"),
    # wal2json prints a bytea without its `\x`, and NaN and the infinities as `null`, like a NULL
    "bytea": ("BYTEA", "'\\x00ff'", "'\\x'"),
    "nan": ("FLOAT8", "'-0'", "'NaN'"),
    "infinity": ("NUMERIC", "'-Infinity'", "'Infinity'"),
    # no Python datetime holds them: read as the server's text (`postgresql_values.ServerValue`), bound back as it
    "timestamp_infinity": ("TIMESTAMPTZ", "'-infinity'", "'infinity'"),
    "date_bc": ("DATE", "'0044-03-15 BC'", "'infinity'"),
    # read back as a list and a dict, which Python cannot hash: every re-count failed (a gap)
    "array": ("TEXT[]", "'{a,\"b c\"}'", "'{NULL}'"),
    # `=` tells them apart by their lower bounds, psycopg's list does not: read as `[1, 2]` both, one group
    "array_bounds": ("INT[]", "'[2:3]={1,2}'", "'{1,2}'"),
    "jsonb": ("JSONB", "'{\"b\": [1, 2], \"a\": null}'", "'[1, {\"c\": 2}]'"),
    # read as the server's text, of a type that is no string to SQLAlchemy (money: a double charge's amount) or one
    # it does not reflect at all (pg_lsn, as an extension's type: isbn, ltree): bound as VARCHAR, `money = character
    # varying` failed every re-count of a known group (each a gap)
    "money": ("MONEY", "'1.00'", "'-2.50'"),
    "unreflected": ("PG_LSN", "'0/16B3748'", "'1/0'"),
}


@pytest.mark.parametrize("kind", POSTGRESQL_STREAM_KEYS)
def test_recounts_bind_the_streams_key_values_as_the_database_stores_them(
        kind: str, cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    column, first, second = POSTGRESQL_STREAM_KEYS[kind]
    execute(admin, f"ALTER TABLE {table} ADD COLUMN k {column}")
    execute(admin, f"CREATE INDEX ON {table} (k)")
    execute(admin, f"ALTER TABLE {table} REPLICA IDENTITY FULL")  # deletes give the old key
    assert_recounts_find_stream_keys(monitor_for, cluster.url, admin, table, first, second,
                                     f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")


def test_recounts_find_the_keys_of_a_composite_type_as_the_stream_gives_them(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """A key of a composite type (`CREATE TYPE address AS (...)`), which SQLAlchemy does not reflect and psycopg
    reads as its text: each stream prints its fields its own way (test_decoding the row's text, wal2json a
    string of it), bound back, the re-count finds its rows as GROUP BY groups them."""
    kind = f"{table}_address"
    execute(admin, f"CREATE TYPE {kind} AS (street text, zip int)")
    try:
        execute(admin, f"ALTER TABLE {table} ADD COLUMN k {kind}")
        execute(admin, f"CREATE INDEX ON {table} (k)")
        execute(admin, f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        assert_recounts_find_stream_keys(monitor_for, cluster.url, admin, table, "ROW('1 Main St, \"B\"', 10)",
                                         "ROW(NULL, 20)",
                                         f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")
    finally:
        execute(admin, f"ALTER TABLE {table} DROP COLUMN IF EXISTS k")
        execute(admin, f"DROP TYPE {kind}")


def assert_recounts_find_stream_keys(monitor_for: Any, url: str, engine: sa.Engine, table: str, first: str,
                                     second: str, delete_one_second: str) -> None:
    """Two groups of key column `k` made one insert per transaction (the stream names each key), one dissolved
    by `delete_one_second`, the other by a TRUNCATE (no rows named: every known group re-counted by its key): the
    re-counts find each group by the key as the stream gave it."""
    with following_signups(monitor_for, url, table, key=["k"]) as (reader, recorded):
        for value in (first, first, first, second, second):
            execute(engine, f"INSERT INTO {table} (email, k) VALUES ('x', {value})")
        groups = reader.groups["signups"]
        await_true(lambda: groups.figures == (2, 3), "both groups counted from the stream")
        execute(engine, delete_one_second)
        await_true(lambda: groups.figures == (1, 2), "the dissolved group found by its key")
        execute(engine, f"TRUNCATE {table}")
        await_true(lambda: groups.figures == (0, 0) and not groups.pending, "the known group re-counted")
    assert not recorded.gaps


# 100,000: five times the keys a read collects (KEYS_PER_READ), and twice BIG_GROWTH_MB were its changes held;
# 1,000,000 for the README's figure
BIG_ROWS = int(os.environ.get("DUPEWATCH_LIVE_BIG_ROWS", "100000"))
BIG_GROWTH_MB = 48  # holding the transaction's changes took about 1 KB each: 100 MB for 100,000 rows


def peak_rss_kb(reset: bool = False) -> int:
    """This process's peak resident memory (VmHWM), in KB; `reset` sets the peak to what is resident now."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())[1])  # type: ignore[index]


@pytest.mark.parametrize("decoder", [WAL2JSON, TEST_DECODING], ids=lambda p: p.name)
def test_one_big_transaction_is_followed_in_bounded_memory_and_its_duplicate_found(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, decoder: Plugin, plugin: str) -> None:
    """PostgreSQL hands over a whole transaction in one read (`upto_nchanges` is checked at commits only): the
    reader must neither hold its rows nor a key per row, yet still find the duplicate the transaction made."""
    if decoder is WAL2JSON and plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    monitor = signups_monitor(monitor_for, cluster.url, table)
    recorded = Recorded()
    stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL(), plugins=(decoder,))
    reader = LiveReader(monitor, "live", list(monitor.config.checks), stream, recorded, poll_seconds=0.05)
    reader.start()
    try:
        assert reader.following.wait(10)
        groups = reader.groups["signups"]
        before = peak_rss_kb(reset=True)
        started = time.monotonic()
        execute(admin, f"INSERT INTO {table} (email) SELECT 'user' || g || '@example.com'"
                       f" FROM generate_series(1, {BIG_ROWS}) g UNION ALL SELECT 'user7@example.com'")
        await_true(lambda: groups.figures == (1, 1), "the duplicate of the big transaction counted", timeout=90)
        seconds = time.monotonic() - started
        growth_mb = (peak_rss_kb() - before) / 1024
    finally:
        reader.stop()
    print(f"{BIG_ROWS + 1} rows in one transaction ({decoder.name}): peak RSS +{growth_mb:.0f} MB, "
          f"counted {seconds:.1f} s after the insert began")
    assert growth_mb < BIG_GROWTH_MB
    assert ("signups", Figures(1, 1, 1)) in recorded.figures
    assert recorded.events >= BIG_ROWS + 1
    assert recorded.overflows == ["signups"]  # counted in full, once: not a gap, nothing was missed
    assert not recorded.gaps


class _Abort(Exception):
    pass


@pytest.mark.parametrize("decoder", [WAL2JSON, TEST_DECODING], ids=lambda p: p.name)
def test_a_transaction_spilled_past_logical_decoding_work_mem_is_counted_once_committed_and_an_aborted_one_never(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, decoder: Plugin, plugin: str) -> None:
    """The live tests' cluster decodes with `logical_decoding_work_mem = 64kB`: the server spills a bigger
    transaction to disk and hands it over whole at its commit (the stream never asks for in-progress blocks,
    `stream-changes`). A duplicate made inside one is counted once it commits, by key (fewer keys than the cap);
    nothing of a rolled-back big transaction, nor of a savepoint rolled back inside the committed one, is."""
    if decoder is WAL2JSON and plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    execute(admin, f"ALTER TABLE {table} ADD COLUMN note text")
    monitor = signups_monitor(monitor_for, cluster.url, table)
    recorded = Recorded()
    stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL(), plugins=(decoder,))
    reader = LiveReader(monitor, "live", list(monitor.config.checks), stream, recorded, poll_seconds=0.05)
    filler = (f"INSERT INTO {table} (email, note) SELECT :prefix || g || '@example.com', repeat(md5(g::text), 30)"
              " FROM generate_series(1, 300) g")  # about 300 KB of changes, 300 keys
    pair = f"INSERT INTO {table} (email) VALUES (:email), (:email)"
    reader.start()
    try:
        assert reader.following.wait(10)
        groups = reader.groups["signups"]
        with pytest.raises(_Abort), one_transaction(admin) as conn:
            conn.execute(sa.text(filler), {"prefix": "gone"})
            conn.execute(sa.text(pair), {"email": "aborted@example.com"})
            raise _Abort
        with one_transaction(admin) as conn:
            conn.execute(sa.text(filler), {"prefix": "kept"})
            conn.execute(sa.text("SAVEPOINT s"))
            conn.execute(sa.text(pair), {"email": "savepoint@example.com"})
            conn.execute(sa.text(filler), {"prefix": "undone"})
            conn.execute(sa.text("ROLLBACK TO SAVEPOINT s"))
            conn.execute(sa.text(pair), {"email": "dup@example.com"})
        await_true(lambda: recorded.events >= 302, "the committed transaction read")
        await_true(lambda: not groups.pending, "its keys counted")
        assert groups.figures == (1, 1)
        assert [key for key, _n in groups.known.values()] == [("dup@example.com",)]
        assert recorded.events == 302 and recorded.overflows == [] and recorded.gaps == []
        with admin.connect() as conn:
            spilled = conn.execute(sa.text("SELECT spill_txns FROM pg_stat_replication_slots"
                                           " WHERE slot_name = :s"), {"s": stream.slot}).scalar()
        assert spilled, "the transactions were not spilled to disk: the test does not test what it names"
    finally:
        reader.stop()


def test_a_transaction_naming_fewer_keys_than_the_cap_is_recounted_by_key_not_in_full(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"INSERT INTO {table} (email) SELECT 'user' || g || '@example.com'"
                       f" FROM generate_series(1, {KEYS_PER_READ - 1}) g UNION ALL SELECT 'user7@example.com'")
        await_true(lambda: groups.figures == (1, 1), "the duplicate counted", timeout=30)
        assert groups.recounted >= KEYS_PER_READ - 1  # each key named, re-counted through the index
    assert recorded.overflows == []
    assert not recorded.gaps


def test_a_reconnect_gap_is_counted_and_the_duplicate_made_meanwhile_is_found(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    ran_at = "dupewatch_check_last_success_timestamp_seconds"
    first_run = daemon.wait_for(lambda s: s.value(ran_at, "signups") is not None, "the check's first (hourly) run")
    pid = live_backend(admin)
    assert pid is not None
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    execute(admin, f"INSERT INTO {table} (email) VALUES ('gap@example.com'), ('gap@example.com')")

    scrape = daemon.wait_for(lambda s: live_value(s, GAPS) == 1 and s.value(GROUPS, "signups") == 1,
                             "the gap counted and the group found", timeout=20)
    assert scrape.value(NEW, "signups") == 1
    daemon.wait_for(lambda s: live_value(s, FOLLOWING) == 1, "followed again after the gap", timeout=20)
    # The poll fills the gap at once: the hourly check ran again, not an hour later.
    daemon.wait_for(lambda s: (s.value(ran_at, "signups") or 0) > (first_run.value(ran_at, "signups") or 0),
                    "the check polled at the gap", timeout=20)
    assert "live stream gap" in daemon.log()
    await_log(daemon, "live stream open again")
    assert daemon.stop() == 0


def restarted(start_daemon: Callable[..., DaemonProcess], daemon: DaemonProcess) -> DaemonProcess:
    """The same daemon (config, state store, port) started again after `daemon` stopped."""
    again = start_daemon(daemon.config, daemon.port)
    await_log(again, "following the change stream")
    await_first_count(again)
    return again


def test_a_daemon_restart_is_a_gap_on_postgresql_and_the_rows_committed_meanwhile_are_counted(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    execute(admin, f"INSERT INTO {table} (email) VALUES ('before@example.com')")
    daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 1, "the insert read from the stream",
                    timeout=LIVE_SECONDS)
    assert daemon.stop() == 0
    execute(admin, f"INSERT INTO {table} (email) VALUES ('down@example.com'), ('down@example.com')")

    again = restarted(start_daemon, daemon)
    scrape = again.wait_for(lambda s: live_value(s, GAPS) == 1 and s.value(GROUPS, "signups") == 1,
                            "the restart counted as a gap and the group made meanwhile counted", timeout=20)
    assert scrape.value(EXCESS, "signups") == 1
    assert scrape.value(NEW, "signups") == 1  # formed while no daemon ran: new (the alert fires)
    gap = next(line for line in again.log().splitlines() if "live stream gap" in line)
    assert "temporary slot ended with its session (read up to " in gap
    execute(admin, f"INSERT INTO {table} (email) VALUES ('after@example.com'), ('after@example.com')")
    scrape = again.wait_for(lambda s: s.value(GROUPS, "signups") == 2, "the stream followed after the gap",
                            timeout=LIVE_SECONDS)
    assert scrape.value(NEW, "signups") == 2
    assert again.stop() == 0
    assert LIVE_BASELINE not in again.log()


LIVE_BASELINE = "no duplicate groups saved by an earlier run of live mode"


def test_an_incremental_live_check_counts_a_group_formed_while_down_once(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    """The check's first run after the restart (an incremental pass, from its saved state) and the stream's first
    count both find the group formed meanwhile: it is counted once."""
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table, check={"incremental": "id", "interval": 0.5})
    daemon.wait_for(lambda s: (s.value("dupewatch_check_duration_seconds_count", "signups") or 0) >= 2, "two runs")
    assert daemon.stop() == 0
    execute(admin, f"INSERT INTO {table} (email) VALUES ('down@example.com'), ('down@example.com')")
    again = restarted(start_daemon, daemon)
    scrape = again.wait_for(lambda s: s.value(GROUPS, "signups") == 1
                            and (s.value("dupewatch_check_duration_seconds_count", "signups") or 0) >= 3,
                            "the group and three runs after the restart")
    assert scrape.value(NEW, "signups") == 1
    assert again.stop() == 0


def restart_with_known_groups_changed(daemon: DaemonProcess, engine: sa.Engine, table: str,
                                      start_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """Groups known before a restart that grow, and shrink to two rows of other spellings, while no daemon runs;
    the daemon started again and its stream followed (its first count done)."""
    assert daemon.stop() == 0
    execute(engine, f"INSERT INTO {table} (email) VALUES ('grows@example.com')")
    execute(engine, f"INSERT INTO {table} (email) VALUES ('ANN@example.com'), ('Ann@Example.com')")
    execute(engine, f"DELETE FROM {table} WHERE email LIKE BINARY 'ann@%'")
    again = restarted(start_daemon, daemon)
    again.wait_for(lambda s: s.value(GROUPS, "signups") is not None, "the figures after the restart")
    return again


def test_a_daemon_restart_with_only_known_groups_changed_counts_nothing_new(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    """PostgreSQL's default collation is deterministic: respelled rows are another group there, so only the
    group that grew is known (the respelled case is the MariaDB test's)."""
    execute(admin, f"INSERT INTO {table} (email) VALUES ('grows@example.com'), ('grows@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    assert daemon.scrape().value(NEW, "signups") == 0  # the first start: the baseline, said once
    assert daemon.log().count(LIVE_BASELINE) == 1
    assert daemon.stop() == 0
    execute(admin, f"INSERT INTO {table} (email) VALUES ('grows@example.com')")
    again = restarted(start_daemon, daemon)
    scrape = again.wait_for(lambda s: live_value(s, GAPS) == 1 and s.value(EXCESS, "signups") == 2,
                            "the group that grew counted after the restart", timeout=20)
    assert (scrape.value(GROUPS, "signups"), scrape.value(NEW, "signups")) == (1, 0)
    assert again.stop() == 0
    assert LIVE_BASELINE not in again.log()


def remembering_reader(monitor: Monitor, recorded: Recorded) -> LiveReader:
    """A daemon's reader of database `live` (`remember`: it saves its checks' groups and its first count
    compares with those saved before), started and following."""
    db = monitor.database("live")
    reader = LiveReader(monitor, "live", list(monitor.config.checks), db.rules.change_stream("live", db.url),
                        recorded, poll_seconds=0.05, remember=True, owner="test")
    reader.start()
    assert reader.following.wait(10)
    return reader


def test_groups_saved_by_a_reader_started_while_the_server_was_down_are_compared_at_the_next_start(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path) -> None:
    """The daemon's first run asked the server what it is while it was down (its groups' subject fell back to the
    URL's address, and the server is asked again only after a while); the reader that followed once it was up
    saved its groups under that fallback. The next start, the server answering, found none saved: the group
    formed while no daemon ran was the baseline, never new."""
    config = config_from_dict({"databases": {"live": {"url": cluster.url, "live": True}}, "checks": [
        {"name": "signups", "database": "live", "table": table, "key": ["email"]}]})
    state = History(tmp_path / "state.sqlite")
    first = Monitor(config, state=state)
    with cluster.down():
        first.subject("signups")  # the daemon's first run: the server does not say what it is
    admin.dispose()  # its pooled connections ended with the server
    recorded = Recorded()
    reader = remembering_reader(first, recorded)
    execute(admin, f"INSERT INTO {table} (email) VALUES ('up@example.com'), ('up@example.com')")
    await_true(lambda: bool(recorded.figures) and recorded.figures[-1][1].groups == 1, "the group counted")
    reader.stop()
    first.close()
    execute(admin, f"INSERT INTO {table} (email) VALUES ('down@example.com'), ('down@example.com')")

    second, recorded = Monitor(config, state=state), Recorded()
    reader = remembering_reader(second, recorded)
    reader.stop()
    second.close()
    state.close()
    figures = recorded.figures[-1][1]
    assert (figures.groups, figures.new_groups, figures.baseline, figures.compared) == (2, 1, False, True)


def test_the_first_start_of_a_daemon_is_no_gap(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    assert live_value(daemon.scrape(), GAPS) == 0
    assert "live stream gap" not in daemon.log()
    assert daemon.stop() == 0


def test_the_temporary_slot_dies_with_a_killed_daemon(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any, plugin: str) -> None:
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    pid = live_backend(admin)
    with admin.connect() as conn:
        slots = conn.execute(sa.text("SELECT temporary, slot_type, plugin FROM pg_replication_slots"
                                     " WHERE active_pid = :pid"), {"pid": pid}).all()
        assert [tuple(s) for s in slots] == [(True, "logical", plugin)]
        assert conn.execute(sa.text("SELECT count(*) FROM pg_publication")).scalar() == 0
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()

    deadline = time.monotonic() + 20
    while _slots(admin, pid):
        assert time.monotonic() < deadline, "the slot outlived the killed daemon"
        time.sleep(0.05)  # polling interval of a condition wait


def _slots(admin: sa.Engine, pid: int | None = None) -> int:
    """Slots of the backend `pid` (every slot of the cluster without one)."""
    with admin.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pg_replication_slots"
                                        " WHERE :pid IS NULL OR active_pid = :pid"), {"pid": pid}).scalar() or 0)


def test_a_server_without_logical_wal_is_refused_in_one_line_and_polling_goes_on(
        pg: TestDatabase, tmp_path: Path, start_daemon: Any) -> None:
    with pg.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW wal_level")).scalar() != "logical", "needs the shared server (replica)"
    pg.execute("CREATE TABLE signup (id serial PRIMARY KEY, email text NOT NULL)",
               "INSERT INTO signup (email) VALUES ('x@example.com'), ('x@example.com')")
    port = free_port()
    config = write_config(
        tmp_path / "dupewatch.toml", {"live": {"url": pg.url, "live": True}},
        [{"name": "signups", "database": "live", "table": "signup", "key": ["email"], "interval": 0.5}],
        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    daemon = start_daemon(config, port)
    await_log(daemon, "live = true needs wal_level")
    refusal = [line for line in daemon.log().splitlines() if "live = true needs wal_level" in line]
    assert len(refusal) == 1
    assert "needs wal_level = logical (the server has replica): set it in postgresql.conf and restart the " \
           "server, or remove live = true" in refusal[0]
    assert "Traceback" not in daemon.log()
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1
                             and s.value("dupewatch_check_up", "signups") == 1, "the check still polled")
    # On /metrics too, a refused stream is not a quiet one: not followed, no gap (it never opened).
    assert (live_value(scrape, FOLLOWING), live_value(scrape, GAPS)) == (0, 0)
    assert daemon.stop() == 0


def test_a_slot_held_back_by_an_open_transaction_says_which_one(
        cluster: Cluster, admin: sa.Engine, table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A logical slot starts once every transaction running when it was created has ended: an idle-in-transaction
    session (or a forgotten prepared transaction) kept live mode from opening for as long as it stayed so, and each
    attempt logged only `canceling statement due to statement timeout`. The failed attempt names the transaction
    it waits for."""
    monkeypatch.setattr(postgresql_module, "STATEMENT_TIMEOUT_SECONDS", 1.0)
    engine = sa.create_engine(cluster.url)
    holder = engine.connect()
    stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL())
    try:
        holder.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('held@example.com')"))  # an id, held
        pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with pytest.raises(StreamLost) as lost:
            stream.open()
        assert "the temporary slot waits for the transactions running when it was created to end" in str(lost.value)
        assert f"the oldest, pid {pid}, idle in transaction since " in str(lost.value)
        holder.execute(sa.text("PREPARE TRANSACTION 'dw_forgotten'"))
        with pytest.raises(StreamLost) as lost:
            stream.open()
        assert "the oldest, the prepared transaction 'dw_forgotten' (since " in str(lost.value)
        with admin.connect() as conn:  # the attempts' temporary slots ended with their sessions
            assert conn.execute(sa.text("SELECT count(*) FROM pg_replication_slots")).scalar() == 0
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
        with admin.connect() as conn:
            if conn.execute(sa.text("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'dw_forgotten'")).scalar():
                conn.execute(sa.text("ROLLBACK PREPARED 'dw_forgotten'"))


def test_a_role_without_replication_is_refused_in_one_line(cluster: Cluster, admin: sa.Engine) -> None:
    role = f"dw_norep_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE ROLE {role} LOGIN")
    try:
        url = sa.make_url(cluster.url).set(username=role)
        stream = LogicalDecodingStream("live", url, PostgreSQL())
        with pytest.raises(LiveRefused) as refused:
            stream.open()
        assert str(refused.value) == (
            f"database live: live = true needs a role with REPLICATION to read a temporary logical slot "
            f"(ALTER ROLE {role} REPLICATION), or remove live = true")
        assert stream.slot is None
        with admin.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid"
                " WHERE a.usename = :role"), {"role": role}).scalar() == 0
    finally:
        execute(admin, f"DROP ROLE {role}")


SQLITE_NOTICE = ("database app: live = true: SQLite has no change stream; dupewatch keeps polling it at each "
                 "check's interval")


def test_an_autocommit_engine_refuses_begin_and_one_transaction_checks_it_is_one(tmp_path: Path) -> None:
    """`with admin.connect() as conn, conn.begin():` on an engine that autocommits committed each statement on its
    own (proved by txid_current() on PostgreSQL, @@in_transaction = 0 on MariaDB): tests meant one transaction
    and tested another thing. Such an engine refuses begin(); `one_transaction` is one, or fails."""
    engine = autocommit_engine(f"sqlite:///{tmp_path / 'a.sqlite'}")
    execute(engine, "CREATE TABLE t (x int)")  # one statement: fine
    with pytest.raises(AssertionError, match="one_transaction"), engine.connect() as conn, conn.begin():
        pass
    with pytest.raises(AssertionError, match="one_transaction"), engine.begin():
        pass
    engine.dispose()


def test_sqlite_keeps_polling_and_says_so(tmp_path: Path, dupewatch: Any, start_daemon: Any) -> None:
    database = tmp_path / "app.sqlite"
    with sa.create_engine(f"sqlite:///{database}").begin() as conn:
        conn.execute(sa.text("CREATE TABLE signup (id integer PRIMARY KEY, email text)"))
    port = free_port()
    config = write_config(tmp_path / "dupewatch.toml", {"app": {"url": f"sqlite:///{database}", "live": True}},
                          [{"name": "signups", "database": "app", "table": "signup", "key": ["email"],
                            "interval": 0.2}],
                          metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    run = dupewatch("check", "--config", config)
    assert run.code == 0, run.output
    assert run.stderr.strip().splitlines()[-1] == f"dupewatch: {SQLITE_NOTICE}"

    daemon = start_daemon(config, port)
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 0, "the first poll")
    with sa.create_engine(f"sqlite:///{database}").begin() as conn:
        conn.execute(sa.text("INSERT INTO signup (email) VALUES ('s@example.com'), ('s@example.com')"))
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1, "the duplicate found by polling")
    assert [line for line in daemon.log().splitlines() if SQLITE_NOTICE in line] != []
    assert daemon.log().count(SQLITE_NOTICE) == 1
    assert live_value(daemon.scrape(), EVENTS, "app") == 0
    assert daemon.stop() == 0




class Recorded:
    """A `LiveSink` that keeps what a reader reports."""

    def __init__(self) -> None:
        self.figures: list[tuple[str, Figures]] = []
        self.lags: list[float] = []
        self.gaps: list[str] = []
        self.overflows: list[str] = []
        self.left: list[str] = []
        self.events = 0

    def live_figures(self, check: str, database: str, figures: Figures) -> None:
        self.figures.append((check, figures))

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        self.events += events  # reported once the changes read are applied
        if lag_seconds is not None:
            self.lags.append(lag_seconds)

    def live_gap(self, database: str, reason: str) -> None:
        self.gaps.append(reason)

    def live_following(self, database: str, following: bool) -> None:
        pass

    def live_overflow(self, database: str, check: str) -> None:
        self.overflows.append(check)

    def live_left(self, database: str, check: str) -> None:
        self.left.append(check)


def await_true(condition: Callable[[], bool], what: str, timeout: float = LIVE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling interval of a condition wait


@pytest.mark.parametrize("decoder", [WAL2JSON, TEST_DECODING], ids=lambda p: p.name)
def test_the_stream_reads_quoted_names_and_values_as_the_server_prints_them(
        cluster: Cluster, admin: sa.Engine, decoder: Plugin, plugin: str) -> None:
    if decoder is WAL2JSON and plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    name = f"Sign Up {uuid.uuid4().hex[:6]}"
    execute(admin, f'CREATE TABLE "{name}" (id serial PRIMARY KEY, "E-mail" text, note text, tags int[],'
                   ' amount numeric, flag boolean)')
    stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL(), plugins=(decoder,))
    stream.open()
    try:
        execute(admin, f'INSERT INTO "{name}" ("E-mail", note, tags, amount, flag)'
                       ' VALUES (:e, NULL, ARRAY[1, 2], 1.10000000000000000001, true)',
                e="o'brien @ example.com")
        execute(admin, f'UPDATE "{name}" SET id = 10')
        execute(admin, f'DELETE FROM "{name}"')
        changes: list[Any] = []
        xids: list[str | None] = []  # each transaction's id, asked of the server once read (`unsettled`)

        def read() -> bool:
            for transaction in stream.read():
                changes.extend(transaction.changes)
                xids.append(transaction.xid)
            return len(changes) >= 3

        await_true(read, "three changes")
        assert len(xids) == 3 and all(x is not None and x.isdigit() for x in xids), xids
        assert stream.unsettled({str(x) for x in xids}) == set()  # committed and visible
    finally:
        stream.close()
        execute(admin, f'DROP TABLE "{name}"')
    insert, update, delete = changes
    assert (insert.schema, insert.table, insert.operation) == ("public", name, "INSERT")
    assert insert.new == {"id": "1", "E-mail": "o'brien @ example.com", "note": None, "tags": "{1,2}",
                          "amount": "1.10000000000000000001", "flag": "true"}
    assert (update.operation, update.old, update.new["id"]) == ("UPDATE", {"id": "1"}, "10")
    assert (delete.operation, delete.old) == ("DELETE", {"id": "10"})


@contextmanager
def following_with(decoder: Plugin, monitor: Monitor, url: str) -> Iterator[tuple[LiveReader, Recorded]]:
    """Database `live` of `monitor` followed by an in-process reader whose stream uses the output plugin `decoder`."""
    recorded = Recorded()
    stream = LogicalDecodingStream("live", sa.make_url(url), PostgreSQL(), plugins=(decoder,))
    reader = LiveReader(monitor, "live", list(monitor.config.checks), stream, recorded, poll_seconds=0.05)
    reader.start()
    try:
        assert reader.following.wait(10)
        yield reader, recorded
    finally:
        reader.stop()


@pytest.mark.parametrize("decoder", [WAL2JSON, TEST_DECODING], ids=lambda p: p.name)
def test_a_truncate_of_several_tables_dissolves_the_groups_without_a_gap(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, decoder: Plugin, plugin: str) -> None:
    """test_decoding prints one TRUNCATE statement of several tables as one line naming them all (`table public.a,
    public.b: TRUNCATE: restart_seqs`): it was taken for a line of an unknown plugin version, a gap."""
    if decoder is WAL2JSON and plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    other = f"{table}_other"
    execute(admin, f'CREATE TABLE "{other}" (id serial PRIMARY KEY)')
    execute(admin, f"INSERT INTO {table} (email) VALUES ('t@example.com'), ('t@example.com')")
    try:
        with following_with(decoder, signups_monitor(monitor_for, cluster.url, table), cluster.url) as (reader,
                                                                                                        recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (1, 1)
            execute(admin, f'TRUNCATE "{other}", {table} RESTART IDENTITY')
            await_true(lambda: groups.figures == (0, 0) and not groups.pending, "the group the TRUNCATE dissolved")
            execute(admin, f"INSERT INTO {table} (email) VALUES ('u@example.com'), ('u@example.com')")
            await_true(lambda: groups.figures == (1, 1), "a group formed after it, from the stream")
    finally:
        execute(admin, f'DROP TABLE "{other}"')
    assert recorded.gaps == []


def test_rows_with_a_column_of_a_type_named_in_a_schema_of_capitals_are_read_without_a_gap(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, plugin: str) -> None:
    """wal2json 2.5 prints a column's type name as format_type() spells it, and one it quotes whole (an enum
    `"Billing"."Status"`: a schema of capitals, as an ORM's multi-schema enums are named) without escaping it: an
    invalid JSON line. Every read holding a row of any table with such a column failed (a gap, every check counted
    in full, each time); the stream asks for type OIDs instead."""
    if plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    schema = f"Billing_{table}"
    execute(admin, f'CREATE SCHEMA "{schema}"')
    execute(admin, f'CREATE TYPE "{schema}"."Status" AS ENUM (\'Paid\', \'Open\')')
    execute(admin, f'ALTER TABLE {table} ADD COLUMN status "{schema}"."Status"')
    try:
        with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
            groups = reader.groups["signups"]
            execute(admin, f"INSERT INTO {table} (email, status) VALUES ('b@example.com', 'Paid'),"
                           " ('b@example.com', 'Open')")
            await_true(lambda: groups.figures == (1, 1), "the group formed")
            execute(admin, f"DELETE FROM {table} WHERE status = 'Open'")
            await_true(lambda: groups.figures == (0, 0), "the group dissolved")
        assert recorded.gaps == []
    finally:
        execute(admin, f"ALTER TABLE {table} DROP COLUMN status")
        execute(admin, f'DROP SCHEMA "{schema}" CASCADE')


def test_the_slot_falls_back_to_test_decoding_when_the_server_refuses_a_plugin(
        cluster: Cluster, admin: sa.Engine) -> None:
    missing = Plugin("dupewatch_no_such_plugin", (), TEST_DECODING.parse)
    stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL(), plugins=(missing, TEST_DECODING))
    stream.open()
    try:
        assert stream.plugin is TEST_DECODING
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT plugin FROM pg_replication_slots WHERE slot_name = :s"),
                                {"s": stream.slot}).scalar() == "test_decoding"
    finally:
        stream.close()


def test_a_server_that_lets_the_role_use_no_output_plugin_is_refused_in_one_line(
        cluster: Cluster, admin: sa.Engine) -> None:
    if not set_plugin_libraries(cluster, "pgoutput"):
        pytest.skip("this PostgreSQL has no output_plugin_libraries setting")
    try:
        stream = LogicalDecodingStream("live", sa.make_url(cluster.url), PostgreSQL())
        with pytest.raises(LiveRefused) as refused:
            stream.open()
        assert str(refused.value) == (
            'database live: live = true needs an output plugin this role may use (library "test_decoding" may not '
            "be used as an output plugin): add test_decoding to output_plugin_libraries and reload the server, "
            "or remove live = true")
        assert stream.slot is None
    finally:
        allow_wal2json(cluster)


def test_a_delete_from_a_table_without_a_replica_identity_dissolves_its_group(
        cluster: Cluster, admin: sa.Engine, monitor_for: Any, plugin: str) -> None:
    """Neither plugin gives such a row's key (wal2json prints nothing of it): every known group is re-counted."""
    name = f"membership_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {name} (role_id int NOT NULL, group_id int NOT NULL)")  # no primary key
    execute(admin, f"CREATE INDEX ON {name} (role_id, group_id)")  # live mode re-counts through the key's index
    try:
        execute(admin, f"INSERT INTO {name} VALUES (1, 1), (1, 1), (2, 2), (2, 2)")
        monitor = monitor_for({"live": {"url": cluster.url}}, [
            {"name": "membership", "database": "live", "table": name, "key": ["role_id", "group_id"]}])
        recorded = Recorded()
        with following_reader(monitor, recorded) as reader:
            assert reader.groups["membership"].figures == (2, 2)
            execute(admin, f"DELETE FROM {name} WHERE ctid = (SELECT min(ctid) FROM {name} WHERE role_id = 1)")
            await_true(lambda: reader.groups["membership"].figures == (1, 1), f"group (1, 1) dissolved ({plugin})")
    finally:
        execute(admin, f"DROP TABLE {name}")


def test_a_check_whose_key_no_index_serves_is_left_to_its_poll_in_one_line(
        cluster: Cluster, admin: sa.Engine, monitor_for: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Without an index on the key every re-count reads the whole table, at every batch of changes (a 1M-row bulk
    insert made 5,000 of them): live mode leaves such a check to its poll, and says which index it needs."""
    name = f"unindexed_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {name} (id serial PRIMARY KEY, email text NOT NULL)")
    try:
        monitor = signups_monitor(monitor_for, cluster.url, name)
        with caplog.at_level(logging.ERROR, logger="dupewatch.live"), \
                following_reader(monitor, Recorded()) as reader:
            assert "signups" not in reader.groups
        (line,) = [r.getMessage() for r in caplog.records if "leaves check" in r.getMessage()]
        assert line.startswith("database live: live = true leaves check signups to its poll: no index serves its "
                               "key, so re-counting the keys each change names would read the whole table; create "
                               "one (CREATE INDEX CONCURRENTLY "), line
        assert f"ON {name} (email)) and reload" in line
    finally:
        execute(admin, f"DROP TABLE {name}")


def test_an_unlogged_partition_created_while_followed_is_a_gap_and_leaves_the_check_to_its_poll(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:
    """An UNLOGGED partition joins the tree empty, like a premade monthly partition: it was taken for one whose rows
    the stream would show (no gap), and the duplicates its rows made were missed while the stream was followed. It is
    a gap; the full count leaves the check to its poll, and says so to the sink, which counts its runs' figures again
    (it kept the stream's last ones while the stream was followed)."""
    with following_signups(monitor_for, cluster.url, partitioned) as (reader, recorded):
        assert "signups" in reader.groups
        execute(admin, f"CREATE UNLOGGED TABLE {partitioned}_3 PARTITION OF {partitioned} FOR VALUES IN (3)")
        await_true(lambda: recorded.left == ["signups"], "the check left to its poll")
        assert "signups" not in reader.groups
        assert len(recorded.gaps) == 1 and "partitions or inheritance children attached" in recorded.gaps[0]


@pytest.mark.parametrize("shape", ["unlogged", "unlogged partition"])
def test_a_check_of_a_table_whose_rows_logical_decoding_never_sees_is_left_to_its_poll_in_one_line(
        cluster: Cluster, admin: sa.Engine, monitor_for: Any, caplog: pytest.LogCaptureFixture, shape: str) -> None:
    """An UNLOGGED table (a staging or import table; or one partition of the tree) writes no WAL: logical decoding
    shows none of its changes. It was followed all the same, its figures taken from the stream, and the duplicate a
    new row made was missed without a gap (the poll's figures are not taken while the stream is followed)."""
    name = f"unlogged_{uuid.uuid4().hex[:8]}"
    if shape == "unlogged":
        execute(admin, f"CREATE UNLOGGED TABLE {name} (id serial PRIMARY KEY, email text NOT NULL)")
    else:
        execute(admin, f"CREATE TABLE {name} (id serial, email text NOT NULL, region int NOT NULL,"
                       " PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
        execute(admin, f"CREATE TABLE {name}_1 PARTITION OF {name} FOR VALUES IN (1)")
        execute(admin, f"CREATE UNLOGGED TABLE {name}_2 PARTITION OF {name} FOR VALUES IN (2)")
    execute(admin, f"CREATE INDEX ON {name} (email)")
    try:
        monitor = signups_monitor(monitor_for, cluster.url, name)
        with caplog.at_level(logging.ERROR, logger="dupewatch.live"), \
                following_reader(monitor, Recorded()) as reader:
            assert "signups" not in reader.groups
        (line,) = [r.getMessage() for r in caplog.records if "leaves check" in r.getMessage()]
        unlogged = name if shape == "unlogged" else f"{name}_2"
        assert line.startswith("database live: live = true leaves check signups to its poll: its table's rows are in "
                               f"no change logical decoding shows, {unlogged} (UNLOGGED): "), line
    finally:
        execute(admin, f"DROP TABLE {name}")


def test_a_group_a_concurrent_refresh_of_a_materialized_view_dissolves_is_followed(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """REFRESH MATERIALIZED VIEW CONCURRENTLY deletes and inserts the view's rows, decoded as any table's; a
    materialized view has no replica identity, and wal2json prints nothing of its DELETEs: its replica identity was
    not asked (plain tables only), so the stream kept wal2json, and the group the refresh dissolved stayed counted
    (beside a row it inserted: a transaction showing no change at all re-counts every known group). The stream reads
    such a view with test_decoding, as it reads a table without a replica identity."""
    view = f"{table}_mv"
    execute(admin, f"INSERT INTO {table} (email) VALUES ('m@example.com'), ('m@example.com')")
    execute(admin, f"CREATE MATERIALIZED VIEW {view} AS SELECT id, email FROM {table}")
    execute(admin, f"CREATE UNIQUE INDEX ON {view} (id)")  # REFRESH ... CONCURRENTLY needs one
    execute(admin, f"CREATE INDEX ON {view} (email)")
    try:
        with following_signups(monitor_for, cluster.url, view) as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (1, 1)
            execute(admin, f"DELETE FROM {table} WHERE id = (SELECT min(id) FROM {table})")
            execute(admin, f"INSERT INTO {table} (email) VALUES ('n@example.com')")  # a row the refresh inserts
            execute(admin, f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")
            await_true(lambda: groups.figures == (0, 0) and not groups.pending, "the group the refresh dissolved")
        assert recorded.gaps == []
    finally:
        execute(admin, f"DROP MATERIALIZED VIEW {view}")


def test_a_case_insensitive_trimmed_key_groups_spellings_from_the_stream(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    execute(admin, f"CREATE INDEX ON {table} (lower(trim(email)))")  # the key as compared
    with following_signups(monitor_for, cluster.url, table, case_insensitive=True, trim_whitespace=True) as (
            reader, recorded):
        execute(admin, f"INSERT INTO {table} (email) VALUES ('Ann@Example.com')")
        execute(admin, f"INSERT INTO {table} (email) VALUES (' ann@example.COM ')")
        await_true(lambda: bool(recorded.figures) and recorded.figures[-1][1].groups == 1, "the group of spellings")
        assert recorded.figures[-1][1] == Figures(groups=1, excess_rows=1, new_groups=1)
        assert reader.groups["signups"].known == {("ann@example.com",): (("ann@example.com",), 2)}
        assert recorded.lags and all(0 <= lag < 60 for lag in recorded.lags)
        assert recorded.gaps == []


def recounts_of_updates(admin: sa.Engine, table: str, reader: LiveReader, recorded: Recorded) -> tuple[int, int]:
    """Groups re-counted by an UPDATE of 20 rows' non-key column, then by one UPDATE moving a row from group
    'a' to group 'b' (20 rows hold 'a', 'b' and singles)."""
    groups = reader.groups["signups"]

    def recounts_of(statement: str, events: int) -> int:
        before, seen = groups.recounted, recorded.events
        execute(admin, statement)
        await_true(lambda: recorded.events >= seen + events, f"{events} change(s) applied")
        assert not groups.pending, "no known group queued for a re-count"
        return groups.recounted - before

    non_key = recounts_of(f"UPDATE {table} SET note = 'touched'", 20)
    key = recounts_of(f"UPDATE {table} SET email = 'b@example.com' WHERE id = 1", 1)
    return non_key, key


def fill_for_updates(engine: sa.Engine, table: str) -> None:
    """Rows 1-3 hold 'a' (a group of 3), rows 4-5 'b' (a group of 2), rows 6-20 one key each."""
    emails = ["a@example.com"] * 3 + ["b@example.com"] * 2 + [f"single{i}@example.com" for i in range(15)]
    with one_transaction(engine) as conn:
        for email in emails:
            conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES (:e)"), {"e": email})


def test_an_update_of_no_key_column_recounts_nothing_and_a_key_update_recounts_old_and_new_groups(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    execute(admin, f"ALTER TABLE {table} ADD COLUMN note text, REPLICA IDENTITY FULL")  # the test's own table
    fill_for_updates(admin, table)
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        assert reader.groups["signups"].figures == (2, 3)
        non_key, key = recounts_of_updates(admin, table, reader, recorded)
        assert reader.groups["signups"].figures == (2, 3)  # 'a' has 2 rows and 'b' 3 now
        assert reader.groups["signups"].known[("a@example.com",)][1] == 2
    assert (non_key, key) == (0, 2)


Operation = tuple[str, int, str]  # (insert | key | note | delete, row index, key)
OPERATIONS = st.lists(st.tuples(st.sampled_from(["insert", "key", "note", "delete"]), st.integers(0, 30),
                                st.sampled_from("abcde")), min_size=1, max_size=25)


@pytest.mark.parametrize("volume", volumes(12, 100))
@pytest.mark.parametrize("identity", ["DEFAULT", "FULL"])
def test_the_live_figures_equal_a_group_by_after_any_inserts_updates_and_deletes(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, identity: str, volume: Volume) -> None:
    """Randomized: whatever rows are inserted, moved between keys, touched in another column or deleted (several
    to a transaction), once the reader has applied them its groups are the table's `GROUP BY ... HAVING`."""
    execute(admin, f"ALTER TABLE {table} ADD COLUMN note text, REPLICA IDENTITY {identity}")
    figures_follow_random_operations(admin, table, signups_monitor(monitor_for, cluster.url, table), volume)


def figures_follow_random_operations(engine: sa.Engine, table: str, monitor: Any, volume: Volume,
                                     late_seconds: float = 0.0) -> None:
    """`late_seconds`: the last transaction of each example is read late (`LastCommitReadLate`)."""
    recorded = Recorded()
    with following_reader(monitor, recorded) as reader:
        late = LastCommitReadLate(reader, recorded, engine, late_seconds) if late_seconds else None
        groups = reader.groups["signups"]
        applied = {"events": 0}

        @settings(max_examples=volume.examples, deadline=None, derandomize=not volume.soak,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(operations=OPERATIONS, split=st.integers(1, 4))
        @example(operations=[("insert", 0, "a"), ("insert", 0, "a")], split=1)  # first: a group forms
        def run(operations: list[Operation], split: int) -> None:
            with engine.connect() as conn:
                ids = [int(i) for i in conn.execute(sa.text(f"SELECT id FROM {table} ORDER BY id")).scalars()]
            batches = [operations[i::split] for i in range(split)]
            try:
                for number, batch in enumerate(batches):
                    if late is not None and number == len(batches) - 1:
                        late.begin()
                    with one_transaction(engine) as conn:
                        for operation, index, key in batch:
                            applied["events"] += apply_operation(conn, table, ids, operation, index, key)
                if late is not None:
                    late.committed(applied["events"])
                with engine.connect() as conn:  # every transaction committed: the figures the reader must reach
                    truth = {str(k): int(n) for k, n in conn.execute(sa.text(
                        f"SELECT email, count(*) FROM {table} GROUP BY email HAVING count(*) > 1"))}

                def known() -> dict[str, int]:
                    return {key[0]: n for key, n in groups.known.values()}

                # Not only the changes read: MariaDB's binary log may be read before the engine's commit makes a
                # transaction's rows visible; the keys of rows not visible yet are counted by a later read, once
                # they are (monitor/live/visibility.py), after their events were reported. Counts that do not
                # reach the truth within the deadline are a miss.
                deadline = time.monotonic() + LIVE_SECONDS
                while not (recorded.events >= applied["events"] and not groups.pending and known() == truth) \
                        and time.monotonic() < deadline:
                    time.sleep(0.02)  # polling interval of a condition wait
                assert recorded.events >= applied["events"], "the changes read"
                assert known() == truth
            finally:
                if late is not None:
                    late.end()

        run()
        assert recorded.gaps == []


class LastCommitReadLate:
    """MariaDB's binary log read before the engine's commit made the transaction visible (group commit logs it
    first), as a soak run met it by chance: `reader` asks about rows and re-counts keys in a snapshot taken before
    the last transaction of an example (`begin`) until `seconds` after it reported that transaction's events read
    (`committed`), then in new snapshots again. Its rows are not visible to the read that names them: their keys
    are counted by a later one, which finds them visible (`RowVisibility`)."""

    def __init__(self, reader: LiveReader, recorded: Recorded, engine: sa.Engine, seconds: float) -> None:
        self.recorded, self.engine, self.seconds = recorded, engine, seconds
        self.lock = threading.Lock()  # the snapshot is the reader thread's while it reads in it
        self.snapshot: sa.Connection | None = None
        self.events: int | None = None  # the events once the last transaction is read
        self.reported: float | None = None  # when they were reported
        visibility, groups = reader._visibility, reader.groups["signups"]
        assert visibility is not None
        settle, apply, live_events = visibility.settle, groups.apply, recorded.live_events
        visibility.settle = lambda conn: self._in(settle, conn)  # type: ignore[method-assign]
        groups.apply = lambda conn, named: self._in(apply, conn, named)  # type: ignore[method-assign]

        def events_reported(database: str, events: int, lag_seconds: float | None) -> None:
            live_events(database, events, lag_seconds)
            self._read()

        recorded.live_events = events_reported  # type: ignore[method-assign]

    def _in(self, call: Callable[..., Any], conn: sa.Connection, *args: Any) -> Any:
        with self.lock:
            if self.snapshot is not None and (self.reported is None or
                                              time.monotonic() < self.reported + self.seconds):
                conn = self.snapshot
            return call(conn, *args)

    def _read(self) -> None:
        with self.lock:
            if self.events is not None and self.reported is None and self.recorded.events >= self.events:
                self.reported = time.monotonic()

    def begin(self) -> None:
        snapshot = self.engine.connect()
        snapshot.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        with self.lock:
            self.snapshot, self.events, self.reported = snapshot, None, None

    def committed(self, events: int) -> None:
        with self.lock:
            self.events = events
        self._read()

    def end(self) -> None:
        with self.lock:
            snapshot, self.snapshot = self.snapshot, None
        if snapshot is not None:
            snapshot.rollback()
            snapshot.close()


def apply_operation(conn: sa.Connection, table: str, ids: list[int], operation: str, index: int, key: str) -> int:
    """One operation; the rows it changed (each a change in the stream). `ids` follows the table's rows."""
    email = f"{key}@example.com"
    if operation == "insert" or not ids:
        ids.append(int(conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES (:e) RETURNING id"),
                                    {"e": email}).scalar_one()))
        return 1
    row = ids[index % len(ids)]
    if operation == "delete":
        ids.remove(row)
        return int(conn.execute(sa.text(f"DELETE FROM {table} WHERE id = :i"), {"i": row}).rowcount)
    current = conn.execute(sa.text(f"SELECT email, note FROM {table} WHERE id = :i"), {"i": row}).one()
    # Only updates that change the row: MariaDB logs none for a row left as it was (PostgreSQL does).
    column, value = ("email", email) if operation == "key" else ("note", "x" if current.note != "x" else "y")
    if getattr(current, column) == value:
        return 0
    return int(conn.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :i"),
                            {"v": value, "i": row}).rowcount)


def test_without_the_old_row_an_update_recounts_its_new_key_and_queues_the_known_groups(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """The replica identity is the primary key: the stream says nothing of the old email. The new key is
    re-counted at once; the known groups (one of which the row may have left) within the budget."""
    execute(admin, f"ALTER TABLE {table} ADD COLUMN note text")
    fill_for_updates(admin, table)
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        before = groups.recounted
        execute(admin, f"UPDATE {table} SET email = 'c@example.com' WHERE id IN (1, 2)")  # 'a' dissolves
        final = Figures(groups=2, excess_rows=2, new_groups=1)
        # The reader reports to its sink after it updates its groups: wait for the report, not only the groups.
        await_true(lambda: groups.figures == (2, 2) and not groups.pending
                   and bool(recorded.figures) and recorded.figures[-1][1] == final, "'a' dissolved, 'c' formed")
        assert groups.recounted - before == 1 + 2  # the new key, then the two known groups


def test_a_new_spelling_of_a_citext_key_joins_its_group_instead_of_a_new_one(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    """citext compares lower(text): 'Bob', 'bob' and 'BOB' are one group, whichever spelling GROUP BY returns."""
    execute(admin, "CREATE EXTENSION IF NOT EXISTS citext")
    execute(admin, f"ALTER TABLE {table} ALTER COLUMN email TYPE citext")
    execute(admin, f"INSERT INTO {table} (email) VALUES ('Bob'), ('bob')")
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    assert daemon.scrape().value(EXCESS, "signups") == 1
    execute(admin, f"INSERT INTO {table} (email) VALUES ('BOB')")
    scrape = daemon.wait_for(lambda s: s.value(EXCESS, "signups") == 2, "the third spelling counted",
                             timeout=LIVE_SECONDS)
    assert (scrape.value(GROUPS, "signups"), scrape.value(NEW, "signups")) == (1, 0)
    execute(admin, f"DELETE FROM {table} WHERE id = 1")  # the spelling GROUP BY returned first
    execute(admin, f"INSERT INTO {table} (email) VALUES ('bOB')")
    scrape = daemon.wait_for(lambda s: s.value(EXCESS, "signups") == 2 and (live_value(s, EVENTS) or 0) >= 3,
                             "the delete and the fourth spelling read", timeout=LIVE_SECONDS)
    assert (scrape.value(GROUPS, "signups"), scrape.value(NEW, "signups")) == (1, 0)
    assert daemon.stop() == 0



@contextmanager
def nondeterministic_email(admin: sa.Engine, table: str) -> Iterator[None]:
    """`table`'s email column under a nondeterministic ICU collation that ignores case, made for the test."""
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'")).scalar():
            pytest.skip("the server has no ICU collations")
    collation = f"ci_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE COLLATION {collation} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    try:
        execute(admin, f"ALTER TABLE {table} ALTER COLUMN email TYPE text COLLATE {collation}")
        yield
    finally:
        execute(admin, f'ALTER TABLE {table} ALTER COLUMN email TYPE text COLLATE "default"')
        execute(admin, f"DROP COLLATION {collation}")


def test_a_new_spelling_under_a_nondeterministic_collation_joins_its_group_instead_of_a_new_one(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """Under a nondeterministic ICU collation 'Bob' = 'BOB' (GROUP BY and `=` say so, Python does not): a new
    spelling joins its group, and deleting the spelling GROUP BY returned leaves it the same group, never a new one
    (the group is identified by its hash in the collation, computed by the server)."""
    with nondeterministic_email(admin, table):
        execute(admin, f"INSERT INTO {table} (email) VALUES ('Bob'), ('bob')")
        with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (1, 1)
            execute(admin, f"INSERT INTO {table} (email) VALUES ('BOB')")
            await_true(lambda: groups.figures == (1, 2), "the third spelling counted in its group")
            with admin.connect() as conn:
                shown = conn.execute(sa.text(f"SELECT CAST(email AS text) FROM {table} GROUP BY email")).scalar()
            execute(admin, f'DELETE FROM {table} WHERE email = :shown COLLATE "C"', shown=shown)  # one row
            execute(admin, f"INSERT INTO {table} (email) VALUES ('bOB')")
            await_true(lambda: recorded.events >= 3 and groups.figures == (1, 2),  # 'BOB', the delete, 'bOB'
                       "the delete of the spelling GROUP BY returned and a fourth spelling read")
            assert len(groups.known) == 1 and not groups.pending
        assert [f.new_groups for _check, f in recorded.figures] == [0] * len(recorded.figures)
        assert recorded.gaps == []


def test_a_delete_under_a_nondeterministic_collation_finds_its_group_by_the_key_it_removed(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """The stream gives a deleted row's key (REPLICA IDENTITY FULL) in its own spelling, not the one its group is
    known by: the server identifies the group from that key (its hash in the collation), so the deleted keys are
    re-counted and no known group is queued."""
    with nondeterministic_email(admin, table):
        execute(admin, f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        execute(admin, f"INSERT INTO {table} (email) VALUES ('Bob'), ('bob'), ('x'), ('X')")
        with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (2, 2)
            before = groups.recounted
            execute(admin, f"DELETE FROM {table} WHERE email = 'BOB'")  # both rows: 'Bob' and 'bob'
            await_true(lambda: groups.figures == (1, 1), "the group the delete dissolved")
            assert groups.recounted - before == 2  # the two keys deleted, not the known groups
            assert not groups.pending
        assert recorded.gaps == []

@pytest.mark.parametrize("identity", ["DEFAULT", "FULL"])
def test_a_jsonb_key_printed_otherwise_stays_its_group_when_the_spelling_group_by_returned_is_deleted(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, identity: str) -> None:
    """jsonb `{"a":1}` = `{"a":1.0}` = `{"a":1.00}` (numbers compare as numeric): one group, printed apart. Read as
    Python dicts and identified by their JSON text, the group was another once the rows of the spelling GROUP BY
    returned were deleted: counted as new (DEFAULT), or (FULL: the deleted key re-counted by its own spelling) the
    old group never dissolved beside the new one, the figures off the table's from then on."""
    execute(admin, f"ALTER TABLE {table} ADD COLUMN doc jsonb, REPLICA IDENTITY {identity}")
    execute(admin, f"CREATE INDEX ON {table} (doc)")
    execute(admin, f"INSERT INTO {table} (email, doc) VALUES ('a', CAST(:d AS jsonb)), ('b', CAST(:d AS jsonb))",
            d='{"a":1}')
    with following_signups(monitor_for, cluster.url, table, key=["doc"]) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (1, 1)
        execute(admin, f"INSERT INTO {table} (email, doc) VALUES ('c', CAST(:c AS jsonb)), ('d', CAST(:d AS jsonb))",
                c='{"a":1.0}', d='{"a": 1.00}')
        await_true(lambda: groups.figures == (1, 3) and recorded.events >= 2, "the other spellings joined")
        execute(admin, f"DELETE FROM {table} WHERE email IN ('a', 'b')")
        await_true(lambda: recorded.events >= 4 and groups.figures == (1, 1) and not groups.pending,
                   "the delete of the spelling first read")
        assert [f.new_groups for _check, f in recorded.figures] == [0] * len(recorded.figures)
    assert recorded.gaps == []


def test_a_range_key_with_an_infinite_timestamp_bound_is_recounted_without_a_gap(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """psycopg reads no timestamp past year 9999 (`infinity`): a tstzrange key `[x,infinity)` read as a Python
    range failed every re-count of its group, each a gap followed by a full count that failed too. Read as the
    server's text (`Dialect.polled_key`), it is counted."""
    execute(admin, f"ALTER TABLE {table} ADD COLUMN valid tstzrange")
    execute(admin, f"CREATE INDEX ON {table} (valid)")
    with following_signups(monitor_for, cluster.url, table, key=["valid"]) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"INSERT INTO {table} (email, valid) VALUES ('a', '[2026-03-01Z,infinity)'),"
                       " ('b', '[\"2026-03-01 01:00+01\",infinity)')")
        await_true(lambda: groups.figures == (1, 1) and recorded.events >= 2, "the group of an open range")
    assert recorded.gaps == []


def test_a_float_key_updated_between_values_wal2json_prints_alike_is_recounted(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, plugin: str) -> None:
    """wal2json prints NaN and Infinity alike (`null`), so with the whole old row an UPDATE from NaN to Infinity
    read as leaving the key as it was: nothing re-counted, the NaN group left counted and the Infinity group short
    of its row."""
    if plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    execute(admin, f"ALTER TABLE {table} ADD COLUMN score float8, REPLICA IDENTITY FULL")
    execute(admin, f"CREATE INDEX ON {table} (score)")
    execute(admin, f"INSERT INTO {table} (email, score) VALUES ('a', 'NaN'), ('b', 'NaN'), ('c', 'Infinity'),"
                   " ('d', 'Infinity')")
    with following_signups(monitor_for, cluster.url, table, key=["score"]) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (2, 2)
        execute(admin, f"UPDATE {table} SET score = 'Infinity' WHERE email = 'a'")
        await_true(lambda: groups.figures == (1, 2) and recorded.events >= 1, "NaN dissolved, Infinity grown")
    assert recorded.gaps == []


@contextmanager
def synchronous_standby_awaited(cluster: Cluster) -> Iterator[None]:
    """The throwaway cluster waits for a synchronous standby that never answers, in sessions that ask for it
    (`SET synchronous_commit = on`): every other session commits locally, as before."""
    engine = autocommit_engine(cluster.url)

    def configure(standby: str, commit: str) -> None:
        with engine.connect() as conn:
            conn.execute(sa.text(f"ALTER SYSTEM SET synchronous_standby_names = '{standby}'"))
            conn.execute(sa.text(f"ALTER SYSTEM SET synchronous_commit = {commit}"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))

        def applied() -> bool:
            with engine.connect() as fresh:
                return bool(fresh.execute(sa.text("SHOW synchronous_standby_names")).scalar() == standby)

        await_true(applied, "the setting reloaded")

    configure("dw_absent_standby", "local")
    try:
        yield
    finally:
        configure("", "on")
        engine.dispose()


def test_a_duplicate_committed_while_waiting_for_a_synchronous_standby_is_counted_once_visible(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """Logical decoding returns a transaction once its commit record is flushed; the committing session makes its
    rows visible only after its synchronous standby answers. Re-counted in between, the new duplicate counted as
    the single row it was, and no later change named its key: never shown. Its keys are re-counted again once it
    is visible (here: its wait cancelled, the transaction committed locally)."""
    execute(admin, f"INSERT INTO {table} (email) VALUES ('a')")
    with synchronous_standby_awaited(cluster), following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        backend: list[int] = []

        def commit_waiting() -> None:
            with admin.connect() as conn:
                backend.append(int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()))
                conn.execute(sa.text("SET synchronous_commit = on"))
                conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('a')"))  # waits for the standby

        writer = threading.Thread(target=commit_waiting)
        writer.start()
        try:
            await_true(lambda: recorded.events >= 1, "the commit read while it waits for the standby")
            assert groups.figures == (0, 0)  # not visible yet
        finally:
            await_true(lambda: bool(backend), "the writer's session")
            execute(admin, "SELECT pg_cancel_backend(:p)", p=backend[0])  # committed locally: now visible
            writer.join()
        await_true(lambda: groups.figures == (1, 1), "the duplicate counted once visible")
        # The reader reports to its sink after it updates its groups: wait for the report, not only the groups.
        await_true(lambda: sum(f.new_groups for _check, f in recorded.figures) >= 1, "the new group reported")
        assert sum(f.new_groups for _check, f in recorded.figures) == 1
    assert recorded.gaps == []


def test_a_key_update_beside_an_unchanged_toasted_key_column_is_counted(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """Key (team, email) where email is TOASTed: an UPDATE of team alone sends no email (PostgreSQL sends no
    unchanged TOASTed value), and the default replica identity no old row: the row's key is not in the stream,
    so the group it joined is found by a full count (an overflow), never missed."""
    execute(admin, f"ALTER TABLE {table} ADD COLUMN team int NOT NULL DEFAULT 0")
    execute(admin, f"ALTER TABLE {table} ALTER COLUMN email SET STORAGE EXTERNAL")  # out of line, uncompressed
    execute(admin, f"CREATE INDEX ON {table} (team, email)")
    big = "x" * 2400  # past the 2 KB a row keeps inline, within the 2.7 KB a btree entry holds
    execute(admin, f"INSERT INTO {table} (email, team) VALUES (:big, 1), (:big, 2)", big=big)
    with following_signups(monitor_for, cluster.url, table, key=["team", "email"]) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(admin, f"UPDATE {table} SET team = 1 WHERE team = 2")
        await_true(lambda: groups.figures == (1, 1), "the group the update formed")
    assert recorded.overflows and not recorded.gaps


# -- MariaDB: the binary log -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDBServer]:
    yield from started_mariadb("the live-mode tests", **{"log-bin": "binlog", "binlog-format": "ROW"})


@pytest.fixture
def mariadb_table(mariadb: MariaDBServer) -> Iterator[tuple[sa.Engine, str]]:
    engine = autocommit_engine(mariadb.url)
    name = f"signup_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {name} (id int AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL, "
                    "INDEX (email))")
    yield engine, name
    execute(engine, f"DROP TABLE {name}")
    engine.dispose()


def test_mariadb_racing_inserts_show_a_new_duplicate_in_metrics_within_seconds(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    engine, table = mariadb_table
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    race(engine, table, "racer@example.com", sessions=3)
    committed = time.monotonic()
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1, "the raced group in /metrics",
                             timeout=LIVE_SECONDS)
    print(f"MariaDB commit-to-metric latency: {time.monotonic() - committed:.3f} s")
    assert scrape.value(EXCESS, "signups") == 2
    assert scrape.value(NEW, "signups") == 1
    # The first insert's re-count may already count all three rows: the other events are read after it.
    daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 3, "the three inserts read", timeout=LIVE_SECONDS)
    assert daemon.stop() == 0


def test_mariadb_updates_and_deletes_change_groups_by_their_old_and_new_keys(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com'), ('b@example.com'), ('b@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    assert daemon.scrape().value(GROUPS, "signups") == 1

    execute(engine, f"UPDATE {table} SET email = 'a@example.com' WHERE id = 3")  # b dissolves, a forms
    daemon.wait_for(lambda s: s.value(NEW, "signups") == 1 and s.value(EXCESS, "signups") == 1,
                    "the group the update moved", timeout=LIVE_SECONDS)
    execute(engine, f"DELETE FROM {table} WHERE id = 3")
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 0, "the group the delete dissolved",
                    timeout=LIVE_SECONDS)
    assert daemon.stop() == 0


def test_mariadb_an_update_of_no_key_column_recounts_nothing_and_a_key_update_recounts_old_and_new_groups(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20)")
    fill_for_updates(engine, table)
    with following_signups(monitor_for, mariadb.url, table) as (reader, recorded):
        non_key, key = recounts_of_updates(engine, table, reader, recorded)
        assert reader.groups["signups"].figures == (2, 3)
    assert (non_key, key) == (0, 2)


def test_mariadb_keys_of_a_table_without_a_row_identity_counted_before_their_transaction_was_visible_are_counted_again(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """The binary log is sent once written, before the engine's commit makes its rows visible to other sessions
    (measured under load: a new duplicate missed, a dissolved group kept). A table without a primary key or a
    unique NOT NULL key has no row to ask about (monitor/live/visibility.py): here the first re-count after the
    insert runs in a snapshot taken before it, as one in that window would, and the key is counted once more a
    fixed time later (`recount_again`): the duplicate is found."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} MODIFY id int NOT NULL, DROP PRIMARY KEY")
    execute(engine, f"INSERT INTO {table} (id, email) VALUES (1, 'a@example.com')")
    with following_signups(monitor_for, mariadb.url, table) as (reader, recorded), engine.connect() as before:
        groups = reader.groups["signups"]
        before.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        before.exec_driver_sql(f"SELECT count(*) FROM {table}")  # the snapshot is taken here
        apply, stale = groups.apply, []

        def apply_first_in_the_snapshot_before(conn: Any, named: Any) -> Any:
            if not stale:
                stale.append(named)
                return apply(before, named)
            return apply(conn, named)

        groups.apply = apply_first_in_the_snapshot_before  # type: ignore[method-assign]
        execute(engine, f"INSERT INTO {table} (id, email) VALUES (2, 'a@example.com')")
        await_true(lambda: bool(stale) and recorded.events >= 1, "the insert read and counted in the old snapshot")
        assert groups.figures == (0, 0)
        await_true(lambda: groups.figures == (1, 1), "the key counted again")
        await_true(lambda: sum(f.new_groups for _check, f in recorded.figures) >= 1, "the new group reported")
        before.exec_driver_sql("ROLLBACK")
    assert sum(f.new_groups for _check, f in recorded.figures) == 1 and recorded.gaps == []


@contextmanager
def commits_held_after_the_binary_log(engine: sa.Engine) -> Iterator[Callable[[], None]]:
    """The throwaway server holds each commit between its binary log write and the engine's commit, as a primary
    does for a semi-synchronous replica that does not answer (`rpl_semi_sync_master_wait_point = AFTER_SYNC`, a
    timeout far beyond the test): the stream reads the transaction while no other session sees its rows. Yields
    what releases them (semi-sync switched off: the waiting commits complete at once). A release build has no
    debug sync point; this is the server's own wait, deterministic, and released by the test, not by time."""
    execute(engine, "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC")
    execute(engine, "SET GLOBAL rpl_semi_sync_master_timeout = 600000")
    execute(engine, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
    try:
        yield lambda: execute(engine, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
    finally:
        execute(engine, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")


def held_insert(engine: sa.Engine, table: str, email: str) -> threading.Thread:
    """An INSERT of `email` in a thread of its own (its commit may be held: `commits_held_after_the_binary_log`)."""
    writer = threading.Thread(target=execute, args=(engine, f"INSERT INTO {table} (email) VALUES (:e)"),
                              kwargs={"e": email})
    writer.start()
    return writer


@contextmanager
def following_with_visibility(monitor_for: Any, url: str, table: str
                              ) -> Iterator[tuple[LiveReader, Recorded, list[float], list[int]]]:
    """`following_signups` with the rows' visibility on a clock the test moves (`[seconds]`), and the reads of
    the stream counted (`[reads]`); its timed second counts due at once (`recount_again`), so a test waits for them
    by condition, not by time."""
    monitor = signups_monitor(monitor_for, url, table)
    db = monitor.database("live")
    stream = db.rules.change_stream("live", db.url)
    stream.recount_again = 0.01  # type: ignore[union-attr]
    recorded, now, reads = Recorded(), [0.0], [0]
    reader = LiveReader(monitor, "live", list(monitor.config.checks), stream, recorded, poll_seconds=0.05)
    assert reader._visibility is not None
    reader._visibility.clock = lambda: now[0]
    read = stream.read

    def counted_read(*args: Any) -> Any:
        try:
            return read(*args)
        finally:
            reads[0] += 1

    stream.read = counted_read  # type: ignore[method-assign,union-attr]
    reader.start()
    try:
        assert reader.following.wait(10)
        yield reader, recorded, now, reads
    finally:
        reader.stop()


def await_reads(reader: LiveReader, reads: list[int], more: int = 3) -> None:
    """`more` reads of the stream (and their re-counts) done, and the timed second counts due done."""
    then = reads[0]
    await_true(lambda: reads[0] >= then + more and not reader._again and reader._again_due is None,
               f"{more} more reads of the stream")


@contextmanager
def a_held_duplicate(engine: sa.Engine, table: str) -> Iterator[None]:
    """Within the block, an INSERT of 'a@example.com' whose commit is held after the binary log
    (`commits_held_after_the_binary_log`); released, and its thread joined, when the block ends."""
    with commits_held_after_the_binary_log(engine) as release:
        writer = held_insert(engine, table, "a@example.com")
        try:
            yield
        finally:
            release()
            writer.join()


def test_mariadb_a_duplicate_whose_commit_is_held_after_the_binary_log_is_counted_once_visible(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """The binary log holds the insert while its commit waits (a semi-synchronous replica that does not answer):
    counted at once and again a fixed time later, its duplicate was counted as the single row it was both times,
    and never shown. Its row is asked about by primary key at each read: it is counted once visible."""
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
    with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, _now, reads):
        groups = reader.groups["signups"]
        with a_held_duplicate(engine, table):
            await_true(lambda: recorded.events >= 1, "the held commit read from the binary log")
            await_reads(reader, reads)  # counted, and counted again after the fixed time
            assert groups.figures == (0, 0)  # not visible yet
        await_true(lambda: groups.figures == (1, 1), "the duplicate counted once visible")
    assert sum(f.new_groups for _check, f in recorded.figures) == 1 and recorded.gaps == []


def test_mariadb_a_row_not_visible_after_the_bounded_wait_is_a_gap_and_still_counted_once_visible(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
    with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, now, reads):
        groups = reader.groups["signups"]
        with a_held_duplicate(engine, table):
            await_true(lambda: recorded.events >= 1, "the held commit read from the binary log")
            await_reads(reader, reads)
            assert recorded.gaps == []
            now[0] += VISIBLE_SECONDS
            await_true(lambda: len(recorded.gaps) == 1, "the row not visible in time reported as a gap")
            assert f"test.{table} (1 row)" in recorded.gaps[0]
            await_reads(reader, reads)
            assert len(recorded.gaps) == 1  # once
        await_true(lambda: groups.figures == (1, 1), "the duplicate counted once visible")
        assert reader._visibility is not None and reader._visibility.pending == {}


def _hide_visibility(visibility: Any) -> list[bool]:
    """Make `visibility`'s question find none of the rows it asks about while the returned flag's one item is True
    (a row the question cannot find, as a commit not visible yet leaves it); set it False to answer again."""
    seen, hidden = visibility._seen, [True]

    def seen_unless_hidden(conn: Any, identified: Any, rows: Any) -> Any:
        return [False] * len(rows) if hidden[0] else seen(conn, identified, rows)

    visibility._seen = seen_unless_hidden
    return hidden


@pytest.mark.parametrize("later", ["DELETE FROM {table} WHERE id = 2",
                                   "UPDATE {table} SET id = 5, email = 'b@example.com' WHERE id = 2"],
                         ids=["deleted", "moved to another primary key"])
def test_mariadb_a_pending_row_a_later_change_in_the_stream_deletes_or_moves_is_settled_by_it(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any, later: str) -> None:
    """A later transaction changes a row only once the one that wrote it released its lock, at its engine commit:
    a pending row (here its visibility hidden from the question until the later change is read, as a row the
    question cannot find) that a later change in the stream deletes or moves is settled by it, not left to wait
    for a row that is no longer there and end as a gap."""
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
    with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, now, reads):
        visibility = reader._visibility
        assert visibility is not None
        hidden = _hide_visibility(visibility)
        execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
        await_true(lambda: len(visibility.pending) == 1, "the insert pending")
        execute(engine, later.format(table=table))
        await_true(lambda: recorded.events >= 2, "the later change read")
        hidden[0] = False
        await_true(lambda: not visibility.pending, "the pending row settled")
        now[0] += VISIBLE_SECONDS
        await_reads(reader, reads)
        assert reader.groups["signups"].figures == (0, 0)
    assert recorded.gaps == []


def key_fold(column: str) -> Callable[[Named, Change], None]:
    """A check's fold of a change (as `LiveGroups.fold`, no `where`): the key a row has, the one it had; an UPDATE
    leaving the key as it was names none."""
    def fold(named: Named, change: Change) -> None:
        old, new = (change.old or {}).get(column), (change.new or {}).get(column)
        if change.operation == "UPDATE" and old == new:
            return
        if new is not None:
            named.present.add((new,))
        if old is not None:
            named.left.add((old,))
    return fold


@contextmanager
def two_key_table(mariadb: MariaDBServer) -> Iterator[tuple[sa.Engine, str, RowVisibility]]:
    """A table of two checks' keys (email, phone) holding one row of email a@x, its rows asked about by a
    `RowVisibility` on a clock the test moves (`clock`: `visibility.clock = ...`)."""
    engine = sa.create_engine(mariadb.url)
    name = f"users_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {name} (id int PRIMARY KEY, email varchar(50), phone varchar(50), INDEX (email),"
                    " INDEX (phone))")
    try:
        execute(engine, f"INSERT INTO {name} VALUES (1, 'a@x', 'p1')")
        visibility = RowVisibility(for_backend("mysql"))
        visibility.identify((str(engine.url.database), name), sa.Table(name, sa.MetaData(), autoload_with=engine))
        yield engine, name, visibility
    finally:
        execute(engine, f"DROP TABLE {name}")
        engine.dispose()


def test_mariadb_a_pending_row_a_later_change_of_its_own_transaction_changes_is_counted_once_visible(
        mariadb: MariaDBServer) -> None:
    """A read may end within a transaction (the decoder hands its rows out before its commit is read): its INSERT
    is pending (not visible), and the next read holds its UPDATE of the same row, of another check's key only.
    Taken as a later transaction's change, it settled the row: email a@x was counted while the transaction was not
    visible (one row), and never again (the UPDATE names no email): a new duplicate missed, without a gap. A
    change of its own transaction carries the row's keys, counted once it is visible."""
    with two_key_table(mariadb) as (engine, table, visibility):
        schema = str(engine.url.database)
        checks = [("email", key_fold("email")), ("phone", key_fold("phone"))]
        counted: list[int] = []  # the rows of a@x, counted by each settle that hands its key back

        def read(*changes: Change) -> None:
            for change in changes:
                visibility.fold(change, checks)
            with engine.connect() as conn, conn.begin():
                keys = visibility.settle(conn)
                if ("a@x",) in keys.get("email", Named()).present:
                    counted.append(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE email = 'a@x'")
                                                ).scalar_one())

        with engine.connect() as app:
            app.execute(sa.text(f"INSERT INTO {table} VALUES (5, 'a@x', 'p5')"))
            app.execute(sa.text(f"UPDATE {table} SET phone = 'p6' WHERE id = 5"))
            read(Change(schema, table, "INSERT", new={"id": 5, "email": "a@x", "phone": "p5"}))
            read(Change(schema, table, "UPDATE", new={"id": 5, "email": "a@x", "phone": "p6"},
                        old={"id": 5, "email": "a@x", "phone": "p5"}))
            assert counted == []  # not visible: not counted
            app.commit()
        visibility.committed()  # its commit read
        read()
        assert counted == [2] and not visibility.pending


def test_mariadb_the_binary_log_stream_tells_the_rows_visibility_each_commit_it_reads(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """What tells a later change of a row by the same transaction from one by another (`RowVisibility.committed`):
    the stream hands `COMMITTED` to the reader's fold after each commit it reads."""
    engine, table = mariadb_table
    with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, _now, _reads):
        visibility = reader._visibility
        assert visibility is not None
        execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
        await_true(lambda: visibility._transaction >= 1, "the first commit read")
        execute(engine, f"INSERT INTO {table} (email) VALUES ('b@example.com')")
        await_true(lambda: visibility._transaction >= 2, "the second commit read")
        assert recorded.gaps == []


def test_mariadb_a_pending_row_never_as_its_change_left_it_is_let_go_after_the_second_bound(
        mariadb: MariaDBServer) -> None:
    """A row a change the binary log does not name left otherwise (a case-insensitive key deleted and inserted in
    another spelling, a foreign key's action) never reads as its change left it: asked about at every read for
    ever, such rows piled up to the cap (each read asking all of them, new rows no longer remembered), a gap every
    `VISIBLE_SECONDS`. Reported late once, it is let go at `GIVE_UP_SECONDS`, its keys counted again later."""
    with two_key_table(mariadb) as (engine, table, visibility):
        now = [0.0]
        visibility.clock = lambda: now[0]
        visibility.fold(Change(str(engine.url.database), table, "INSERT", new={"id": 9, "email": "a@x", "phone": "p9"}),
                        [("email", key_fold("email"))])  # no such row: never as the change left it
        late = []
        for seconds in (0.0, VISIBLE_SECONDS, GIVE_UP_SECONDS, GIVE_UP_SECONDS + VISIBLE_SECONDS):
            now[0] = seconds
            with engine.connect() as conn, conn.begin():
                visibility.settle(conn)
            late.append(visibility.late)
        assert late == [[], [((str(engine.url.database), table), 1)], [], []]
        assert not visibility.pending and visibility.take_again()["email"].present == {("a@x",)}


def test_mariadb_a_pending_row_a_foreign_keys_cascade_deletes_is_let_go_without_a_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """InnoDB's cascades are not in the binary log: a row inserted and deleted by its parent's `ON DELETE CASCADE`
    (here in one transaction) never reads as its INSERT left it; it stayed pending, asked about at every read, and
    was a false gap after `VISIBLE_SECONDS`. The parent's change lets go of the child table's remembered rows."""
    engine, table = mariadb_table
    parent = f"parent_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {parent} (id int PRIMARY KEY)")
    execute(engine, f"INSERT INTO {parent} VALUES (1)")
    execute(engine, f"ALTER TABLE {table} ADD COLUMN pid int, ADD FOREIGN KEY (pid) REFERENCES {parent} (id) "
                    "ON DELETE CASCADE")
    try:
        with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, now, reads):
            visibility = reader._visibility
            assert visibility is not None
            with one_transaction(engine) as conn:
                conn.execute(sa.text(f"INSERT INTO {table} (email, pid) VALUES ('a@example.com', 1)"))
                conn.execute(sa.text(f"DELETE FROM {parent} WHERE id = 1"))
            await_true(lambda: recorded.events >= 2, "the insert and the parent's delete read")
            await_reads(reader, reads)
            assert visibility.pending == {}
            now[0] += GIVE_UP_SECONDS
            await_reads(reader, reads)
            assert reader.groups["signups"].figures == (0, 0)
        assert recorded.gaps == []
    finally:
        execute(engine, f"DELETE FROM {table}")
        execute(engine, f"ALTER TABLE {table} DROP FOREIGN KEY {table}_ibfk_1")
        execute(engine, f"DROP TABLE {parent}")


def test_mariadb_a_pending_row_a_truncate_removes_is_let_go_without_a_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """A TRUNCATE is logged as a statement naming no rows: a pending row (here its visibility hidden from the
    question until the TRUNCATE is read) it removed never reads as its INSERT left it, and was a false gap."""
    engine, table = mariadb_table
    with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, now, reads):
        visibility = reader._visibility
        assert visibility is not None
        hidden = _hide_visibility(visibility)
        execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
        await_true(lambda: len(visibility.pending) == 1, "the insert pending")
        execute(engine, f"TRUNCATE TABLE {table}")
        await_true(lambda: not visibility.pending, "the pending row let go")
        hidden[0] = False
        now[0] += GIVE_UP_SECONDS
        await_reads(reader, reads)
        assert reader.groups["signups"].figures == (0, 0)
    assert recorded.gaps == []


def test_mariadb_rows_found_late_before_a_reload_are_reported_by_the_next_reader_once_its_time_comes(
        mariadb: MariaDBServer) -> None:
    """Rows found late within `VISIBLE_SECONDS` of the last gap report are held for the next one; a reload's
    reader took the pending rows (already late) but not that report, nor when the last was made: the gap was never
    reported. It is, by the new reader, no sooner than `VISIBLE_SECONDS` after the previous reader's last."""
    with two_key_table(mariadb) as (engine, table, before):
        schema, now = str(engine.url.database), [0.0]
        before.clock = lambda: now[0]
        checks = [("email", key_fold("email"))]

        def settle(visibility: RowVisibility, seconds: float, *changes: Change) -> list[Any]:
            now[0] = seconds
            for change in changes:
                visibility.fold(change, checks)
            with engine.connect() as conn, conn.begin():
                visibility.settle(conn)
            return visibility.late

        never = [Change(schema, table, "INSERT", new={"id": i, "email": "b@x", "phone": "p"}) for i in (8, 9)]
        assert settle(before, 0.0, never[0]) == [] and settle(before, 10.0, never[1]) == []
        assert settle(before, VISIBLE_SECONDS + 1) == [((schema, table), 1)]  # the first row; the second not yet
        assert settle(before, VISIBLE_SECONDS + 11) == []  # the second late: held for the next report
        after = RowVisibility(before.rules, clock=lambda: now[0])
        after.identify((schema, table), before.tables[schema, table].table)
        after.keep(before, {"email"})  # a reload
        assert settle(after, VISIBLE_SECONDS + 20) == []  # not two gaps within VISIBLE_SECONDS
        assert settle(after, 2 * VISIBLE_SECONDS + 1) == [((schema, table), 1)]


def test_mariadb_rows_past_the_cap_of_rows_remembered_while_some_are_not_visible_are_a_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded: past `PENDING_ROWS` a row is not remembered, and where the rows asked about are not
    visible (here hidden from the question), those not remembered may not be either: a gap, reported."""
    engine, table = mariadb_table
    monkeypatch.setattr(visibility_module, "PENDING_ROWS", 1)
    with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, _now, _reads):
        visibility = reader._visibility
        assert visibility is not None
        visibility._seen = lambda conn, identified, rows: [False] * len(rows)  # type: ignore[method-assign]
        execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com'), ('b@example.com')")
        await_true(lambda: len(recorded.gaps) == 1, "the row not remembered reported as a gap")
        assert f"test.{table} (1 row)" in recorded.gaps[0] and len(visibility.pending) == 1


def test_mariadb_a_row_whose_binary_primary_key_ends_in_zero_bytes_is_seen_visible(
        mariadb: MariaDBServer, monitor_for: Any) -> None:
    """The binary log gives a `BINARY(n)` without the zero bytes that pad it: the row is asked about by the key
    as stored (`Dialect.stream_value`) and answered by position, so it is seen, not left pending until a gap."""
    engine = autocommit_engine(mariadb.url)
    table = f"signup_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {table} (id BINARY(4) PRIMARY KEY, email varchar(100) NOT NULL, INDEX (email))")
    try:
        execute(engine, f"INSERT INTO {table} VALUES (x'01000000', 'a@example.com')")
        with following_with_visibility(monitor_for, mariadb.url, table) as (reader, recorded, now, reads):
            execute(engine, f"INSERT INTO {table} VALUES (x'61620000', 'a@example.com')")
            await_true(lambda: reader.groups["signups"].figures == (1, 1), "the duplicate counted")
            await_reads(reader, reads)
            assert reader._visibility is not None and reader._visibility.pending == {}
            now[0] += VISIBLE_SECONDS
            await_reads(reader, reads)
        assert recorded.gaps == []
    finally:
        execute(engine, f"DROP TABLE {table}")
        engine.dispose()


def read_changes(stream: Any, count: int) -> list[Any]:
    changes: list[Any] = []
    await_true(lambda: bool(changes.extend(c for t in stream.read() for c in t.changes)) or len(changes) >= count,
               f"{count} change(s) read")
    return changes


@pytest.mark.parametrize("volume", volumes(12, 100))
@pytest.mark.parametrize("late_seconds", [0.0, 0.3], ids=["visible", "visible_late"])
def test_mariadb_the_live_figures_equal_a_group_by_after_any_inserts_updates_and_deletes(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any, volume: Volume,
        late_seconds: float) -> None:
    """`visible_late`: the last transaction of each example is read before it is visible (`LastCommitReadLate`),
    as a soak run met by chance: its keys are counted by a later read than the one that reported its events."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20)")
    figures_follow_random_operations(engine, table, signups_monitor(monitor_for, mariadb.url, table), volume,
                                     late_seconds)


def test_mariadb_a_reopened_stream_resumes_after_the_last_gtid_read_and_misses_nothing(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str]) -> None:
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")  # before: never read
    stream = MySQL().change_stream("live", sa.make_url(mariadb.url))
    stream.open()
    try:
        execute(engine, f"INSERT INTO {table} (email) VALUES ('first@example.com')")
        assert [c.new["email"] for c in read_changes(stream, 1)] == ["first@example.com"]
        with engine.connect() as conn:
            assert stream.gtid == {0: conn.execute(sa.text("SELECT @@gtid_binlog_pos")).scalar()}
        stream.close()  # down: what commits now must be read once it opens again
        execute(engine, f"INSERT INTO {table} (email) VALUES ('meanwhile@example.com')")
        stream.open()
        execute(engine, f"INSERT INTO {table} (email) VALUES ('after@example.com')")
        assert [c.new["email"] for c in read_changes(stream, 2)] == ["meanwhile@example.com", "after@example.com"]
    finally:
        stream.close()


def test_mariadb_a_non_transactional_tables_commit_moves_the_saved_position(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str]) -> None:
    """An Aria table's changes end with a COMMIT statement, not an XID event: the stream's position (what a
    restarted daemon resumes from) moves past them too."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} ENGINE = Aria")
    stream = MySQL().change_stream("live", sa.make_url(mariadb.url))
    stream.open()
    try:
        execute(engine, f"INSERT INTO {table} (email) VALUES ('aria@example.com')")
        assert [c.new["email"] for c in read_changes(stream, 1)] == ["aria@example.com"]
        with engine.connect() as conn:
            logged = conn.execute(sa.text("SELECT @@gtid_binlog_pos")).scalar()
        await_true(lambda: not stream.read() and stream.position == f"gtid:{logged}", "the position past the insert")
    finally:
        stream.close()


def test_mariadb_a_binary_log_purged_while_the_stream_was_down_is_a_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str]) -> None:
    engine, table = mariadb_table
    stream = MySQL().change_stream("live", sa.make_url(mariadb.url))
    stream.open()
    try:
        execute(engine, f"INSERT INTO {table} (email) VALUES ('first@example.com')")
        read_changes(stream, 1)
        stream.close()
        execute(engine, f"INSERT INTO {table} (email) VALUES ('lost@example.com')")
        with engine.connect() as conn:
            conn.execute(sa.text("FLUSH BINARY LOGS"))
            current = conn.execute(sa.text("SHOW MASTER STATUS")).one()[0]

            def purged() -> bool:  # the throwaway server's binary log; purged once InnoDB has checkpointed it
                conn.execute(sa.text(f"PURGE BINARY LOGS TO '{current}'"))
                return [row[0] for row in conn.execute(sa.text("SHOW BINARY LOGS"))] == [current]

            await_true(purged, "the binary log purged up to the current file")
        stream.open()
        with pytest.raises(StreamLost) as lost:
            read_changes(stream, 1)
        assert str(lost.value).startswith("database live: live stream: the binary log no longer holds GTID "
                                          "position 0-1-")
        assert "purged" in str(lost.value)
        stream.open()  # from the current position now
        execute(engine, f"INSERT INTO {table} (email) VALUES ('next@example.com')")
        assert [c.new["email"] for c in read_changes(stream, 1)] == ["next@example.com"]
    finally:
        stream.close()


def test_mariadb_a_restarted_daemon_resumes_from_the_saved_gtid_and_reads_what_committed_meanwhile(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    engine, table = mariadb_table
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")
    daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 1, "the insert read from the stream",
                    timeout=LIVE_SECONDS)
    assert daemon.stop() == 0
    for _ in range(3):  # three transactions while no daemon runs
        execute(engine, f"INSERT INTO {table} (email) VALUES ('down@example.com')")

    again = restarted(start_daemon, daemon)
    # Read from the stream, not only found by the full count: the three inserts are events of the new process.
    scrape = again.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 3 and s.value(GROUPS, "signups") == 1,
                            "the inserts made while the daemon was down read from the binary log")
    assert scrape.value(EXCESS, "signups") == 2
    # Formed while no daemon ran: new, once (by the first count, not again when its inserts are read).
    assert scrape.value(NEW, "signups") == 1
    assert live_value(scrape, GAPS) == 0
    assert "resuming the change stream from the position saved before" in again.log()
    assert "live stream gap" not in again.log()
    assert again.stop() == 0


def test_mariadb_a_daemon_restarted_while_a_commit_is_held_counts_its_duplicate_once_visible(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    """A daemon stopped while a duplicate's commit is held after the binary log (its row pending) saved the position
    past it; the next one counted the table before the row was visible, resumed after it, and never counted it. The
    position saved is the one before the oldest pending row's transaction: read again, counted once visible."""
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    with a_held_duplicate(engine, table):
        daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 1, "the held commit read from the binary log",
                        timeout=LIVE_SECONDS)
        assert daemon.stop() == 0
        again = restarted(start_daemon, daemon)  # counted in full while the row is not visible
        again.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 1, "the held commit read again",
                       timeout=LIVE_SECONDS)
        assert again.scrape().value(GROUPS, "signups") == 0
    again.wait_for(lambda s: s.value(GROUPS, "signups") == 1, "the duplicate counted once visible",
                   timeout=LIVE_SECONDS)
    assert live_value(again.scrape(), GAPS) == 0
    assert again.stop() == 0


def test_mariadb_a_daemon_restart_with_only_known_groups_changed_counts_nothing_new(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    """A group that grew, and one whose rows are all spelled otherwise now (a `_ci` column: one group, as the
    database compares them), while no daemon ran: known, not new."""
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('grows@example.com'), ('grows@example.com'), "
                    "('ann@example.com'), ('ann@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    assert (daemon.scrape().value(GROUPS, "signups"), daemon.scrape().value(NEW, "signups")) == (2, 0)
    assert daemon.log().count(LIVE_BASELINE) == 1
    again = restart_with_known_groups_changed(daemon, engine, table, start_daemon)
    scrape = again.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 5, "what committed meanwhile read")
    assert (scrape.value(GROUPS, "signups"), scrape.value(EXCESS, "signups")) == (2, 3)
    assert scrape.value(NEW, "signups") == 0
    assert again.stop() == 0
    assert LIVE_BASELINE not in again.log()


def purge_binary_logs(engine: sa.Engine) -> None:
    """Rotate the throwaway server's binary log and purge every file but the new one."""
    with engine.connect() as conn:
        conn.execute(sa.text("FLUSH BINARY LOGS"))
        current = conn.execute(sa.text("SHOW MASTER STATUS")).one()[0]

        def purged() -> bool:  # purged once InnoDB has checkpointed it
            conn.execute(sa.text(f"PURGE BINARY LOGS TO '{current}'"))
            return [row[0] for row in conn.execute(sa.text("SHOW BINARY LOGS"))] == [current]

        await_true(purged, "the binary log purged up to the current file")


def test_mariadb_a_binary_log_purged_while_the_daemon_was_down_is_a_gap_and_its_rows_are_counted(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    engine, table = mariadb_table
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")
    daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 1, "the insert read from the stream",
                    timeout=LIVE_SECONDS)
    assert daemon.stop() == 0
    execute(engine, f"INSERT INTO {table} (email) VALUES ('down@example.com'), ('down@example.com')")
    purge_binary_logs(engine)

    again = restarted(start_daemon, daemon)
    scrape = again.wait_for(lambda s: live_value(s, GAPS) == 1 and s.value(GROUPS, "signups") == 1,
                            "the purge counted as a gap and the group made meanwhile counted", timeout=20)
    assert scrape.value(EXCESS, "signups") == 1
    assert scrape.value(NEW, "signups") == 1
    gap = next(line for line in again.log().splitlines() if "live stream gap" in line)
    assert "the binary log no longer holds GTID position" in gap
    execute(engine, f"INSERT INTO {table} (email) VALUES ('after@example.com'), ('after@example.com')")
    scrape = again.wait_for(lambda s: s.value(GROUPS, "signups") == 2, "the stream followed after the gap",
                            timeout=LIVE_SECONDS)
    assert live_value(scrape, GAPS) == 1  # the purge is one gap, not one per attempt to resume
    assert again.stop() == 0
    assert sum("live stream gap" in line for line in again.log().splitlines()) == 1


class CuedStream(BinlogStream):
    """A binary log stream that, once lost, opens again only when `cue` is set: what a test commits meanwhile
    commits while no stream is read."""

    def __init__(self, database: str, url: sa.URL) -> None:
        super().__init__(database, url, MySQL())
        self.cue = threading.Event()

    def open(self, resume: str | None = None) -> str | None:
        if self.position is not None:  # opened before
            self.cue.wait(LIVE_SECONDS * 4)
        return super().open(resume)


@contextmanager
def reader_reopened_on_cue(monitor: Any, recorded: Recorded) -> Iterator[tuple[LiveReader, CuedStream]]:
    """A following reader of database `live` whose stream, once lost, opens again on its cue."""
    stream = CuedStream("live", monitor.database("live").url)
    reader = LiveReader(monitor, "live", list(monitor.config.checks), stream, recorded, poll_seconds=0.05)
    reader.start()
    try:
        assert reader.following.wait(10)
        yield reader, stream
    finally:
        stream.cue.set()
        reader.stop()


def lose_decoder(reader: LiveReader, stream: CuedStream) -> None:
    """Kill the stream's decoder process (its replica connection goes with it): the stream is lost."""
    assert stream.decoder_pid is not None
    os.kill(stream.decoder_pid, signal.SIGKILL)
    await_true(lambda: not reader.following.is_set(), "the reader to find the stream lost")


def test_mariadb_a_lost_stream_resumes_from_the_counted_gtid_and_reads_what_committed_meanwhile_without_a_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    engine, table = mariadb_table
    monitor = signups_monitor(monitor_for, mariadb.url, table)
    recorded = Recorded()
    with reader_reopened_on_cue(monitor, recorded) as (reader, stream):
        execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")
        await_true(lambda: recorded.events >= 1, "the first insert read")
        lose_decoder(reader, stream)
        execute(engine, f"INSERT INTO {table} (email) VALUES ('down@example.com')")  # while no stream is read
        execute(engine, f"INSERT INTO {table} (email) VALUES ('down@example.com')")
        read_before = recorded.events
        stream.cue.set()
        # Read from the binary log, not only found by the full count at the reopening: two more events.
        await_true(lambda: recorded.events >= read_before + 2 and reader.groups["signups"].figures == (1, 1),
                   "the inserts made while the stream was lost read from the binary log")
        assert reader.following.is_set()
    assert recorded.gaps == []
    assert sum(f.new_groups for _check, f in recorded.figures) == 1  # the group formed meanwhile is new


def test_mariadb_a_lost_stream_whose_position_was_purged_meanwhile_is_exactly_one_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    engine, table = mariadb_table
    monitor = signups_monitor(monitor_for, mariadb.url, table)
    recorded = Recorded()
    with reader_reopened_on_cue(monitor, recorded) as (reader, stream):
        execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")
        await_true(lambda: recorded.events >= 1, "the first insert read")
        lose_decoder(reader, stream)
        execute(engine, f"INSERT INTO {table} (email) VALUES ('down@example.com'), ('down@example.com')")
        purge_binary_logs(engine)
        stream.cue.set()
        await_true(lambda: len(recorded.gaps) == 1 and reader.following.is_set(), "the purge reported as a gap",
                   timeout=20)
        assert "the binary log no longer holds GTID position" in recorded.gaps[0]
        assert reader.groups["signups"].figures == (1, 1)  # counted in full after the gap
        execute(engine, f"INSERT INTO {table} (email) VALUES ('after@example.com'), ('after@example.com')")
        await_true(lambda: reader.groups["signups"].figures == (2, 2), "the stream followed after the gap")
    assert len(recorded.gaps) == 1


def test_mariadb_two_databases_of_one_server_resume_each_from_its_own_saved_position(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path) -> None:
    """One binary log, two databases: each reader saves where it counted up to under its own database. Database
    `second`, stopped while `first` reads on past an insert into `second`, resumes from its own position and reads
    that insert; from `first`'s it would start after it."""
    engine, table = mariadb_table
    other = f"dw_other_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE DATABASE {other}")
    execute(engine, f"CREATE TABLE {other}.{table} (id int AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL,"
                    " INDEX (email))")
    url = sa.make_url(mariadb.url)
    state = History(tmp_path / "state.db")
    monitor = Monitor(config_from_dict({
        "databases": {"first": {"url": mariadb.url, "live": True},
                      "second": {"url": url.set(database=other).render_as_string(hide_password=False), "live": True}},
        "checks": [{"name": "first_signups", "database": "first", "table": table, "key": ["email"]},
                   {"name": "second_signups", "database": "second", "table": table, "key": ["email"]}]}),
        state=state)

    def reader(database: str, recorded: Recorded) -> LiveReader:
        db = monitor.database(database)
        made = LiveReader(monitor, database, [c for c in monitor.config.checks if c.database == database],
                          db.rules.change_stream(database, db.url), recorded, poll_seconds=0.05)
        made.start()
        assert made.following.wait(10)
        return made

    try:
        assert monitor.place("first") != monitor.place("second")
        second = reader("second", Recorded())
        second.stop()
        first_recorded = Recorded()
        first = reader("first", first_recorded)
        execute(engine, f"INSERT INTO {other}.{table} (email) VALUES ('s@example.com'), ('s@example.com')")
        execute(engine, f"INSERT INTO {table} (email) VALUES ('f@example.com')")  # after it in the binary log
        await_true(lambda: first_recorded.events >= 1, "database first's insert read")
        first.stop()  # saves a position past database second's insert
        recorded = Recorded()
        again = reader("second", recorded)
        try:
            await_true(lambda: recorded.events >= 2, "database second's inserts read from its own saved position")
            assert again.groups["second_signups"].figures == (1, 1)
        finally:
            again.stop()
        assert recorded.gaps == []
    finally:
        monitor.close()
        state.close()
        execute(engine, f"DROP DATABASE {other}")


def binlog_readers(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return sum(1 for row in conn.execute(sa.text("SHOW PROCESSLIST")) if str(row[4]).startswith("Binlog Dump"))


def test_mariadb_the_binary_log_reader_dies_with_a_killed_daemon(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    engine, table = mariadb_table
    await_true(lambda: binlog_readers(engine) == 0, "no reader left by earlier tests", timeout=20)
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    await_true(lambda: binlog_readers(engine) == 1, "the daemon's decoder reading the binary log")
    daemon.send(signal.SIGKILL)
    daemon.proc.wait(timeout=10)
    await_true(lambda: binlog_readers(engine) == 0, "the decoder gone with the daemon", timeout=20)


# Loaded (PYTHONPATH) by every Python process of the daemon below, none of dupewatch's code: on SIGUSR1 a process
# writes the names of the modules it imported to DUPEWATCH_TEST_MODULES/PID.json.
REPORT_MODULES = """
import json, os, signal, sys

def _report(*_):
    path = os.path.join(os.environ["DUPEWATCH_TEST_MODULES"], f"{os.getpid()}.json")
    with open(path + ".part", "w") as out:
        json.dump(sorted(sys.modules), out)
    os.replace(path + ".part", path)

if os.environ.get("DUPEWATCH_TEST_MODULES"):
    signal.signal(signal.SIGUSR1, _report)
"""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            if int(stat.rpartition(")")[2].split()[1]) == pid:  # the field after the state: the parent's pid
                found.append(int(entry.name))
    return found


def test_mariadb_the_decoder_of_the_console_scripts_daemon_imports_neither_the_cli_nor_sqlalchemy(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path) -> None:
    """multiprocessing's `spawn` ran the parent's main script again in the decoder process: under the installed
    `dupewatch` script, the CLI, SQLAlchemy and the engine, about a second of imports the decoder does not need.
    Nor does it import a `monitor` from the daemon's current directory (`python -m` would put it first)."""
    engine, table = mariadb_table
    script = Path(sysconfig.get_path("scripts")) / "dupewatch"
    assert script.is_file(), f"no console script at {script}: pip install -e ."
    hooks, reports = tmp_path / "hooks", tmp_path / "modules"
    hooks.mkdir()
    reports.mkdir()
    (hooks / "sitecustomize.py").write_text(REPORT_MODULES)
    elsewhere = tmp_path / "cwd"  # the daemon's current directory holds another `monitor`: never the decoder's
    elsewhere.mkdir()
    (elsewhere / "monitor.py").write_text("raise SystemExit('the current directory's monitor was imported')\n")
    port = free_port()
    config = write_config(
        tmp_path / "dupewatch.toml", {"live": {"url": mariadb.url, "live": True}},
        [{"name": "signups", "database": "live", "table": table, "key": ["email"], "interval": 3600}],
        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    env = {**os.environ, "DUPEWATCH_TEST_MODULES": str(reports),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(hooks), os.environ.get("PYTHONPATH"))))}
    await_true(lambda: binlog_readers(engine) == 0, "no reader left by earlier tests", timeout=20)
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([str(script), "daemon", "--config", str(config)], stdout=subprocess.DEVNULL,
                                stderr=log_file, env=env, cwd=elsewhere)
    daemon = DaemonProcess(proc, port, config, log_path)
    try:
        await_log(daemon, "following the change stream", timeout=60)
        await_true(lambda: binlog_readers(engine) == 1, "the daemon's decoder reading the binary log")
        children = children_of(proc.pid)
        for child in children:
            os.kill(child, signal.SIGUSR1)

        def decoders() -> list[list[str]]:
            found = [json.loads(path.read_text()) for path in reports.glob("*.json")]
            return [modules for modules in found if "pymysqlreplication" in modules]

        await_true(lambda: len(decoders()) == 1, f"the decoder among the daemon's children {children} reporting")
        modules = set(decoders()[0])
        assert "monitor.live.changes" in modules  # what it sends
        # (`__mp_main__` is no sign: importing multiprocessing names `__main__` so in any process)
        assert not {"monitor.cli", "monitor.engine", "monitor.live.mysql", "click"} & modules
        assert not [name for name in modules if name.split(".")[0] == "sqlalchemy"]
        assert daemon.stop() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_decoder_that_cannot_reach_the_server_says_so_to_the_reader_and_ends() -> None:
    """The decoder's errors reach the reader as the stream lost, resumable where its connection failed."""
    stream = BinlogStream("down", sa.make_url(f"mysql+pymysql://nobody@127.0.0.1:{free_port()}/test"), MySQL())
    stream._start((None, None))
    pid = stream.decoder_pid
    assert pid is not None
    stream.wait(LIVE_SECONDS * 4)
    with pytest.raises(StreamLost) as lost:
        stream.read()
    assert lost.value.resumable
    assert "Can't connect" in str(lost.value) and "\n" not in str(lost.value)
    assert stream.decoder_pid is None  # ended and reaped by `read`
    assert not Path(f"/proc/{pid}").exists()


# (column type, two key values as SQL literals) whose groups the binary log's typed values must find as stored:
# a DOUBLE read as a Decimal of 10 places makes 1e-300 and 2e-300 one group (0E-10); a TIME beyond a day or below
# zero is no time of day; a TIMESTAMP arrives as UTC and is compared in the session's time zone (here +05:30).
MARIADB_STREAM_KEYS = {
    "double": ("DOUBLE", "1e-300", "2e-300"),
    "time": ("TIME", "'25:00:00'", "'-01:00:00'"),
    "timestamp": ("TIMESTAMP(6) NULL", "'2024-01-01 09:00:00.000001'", "'2024-01-01 09:00:00'"),
    "decimal": ("DECIMAL(30, 20)", "0.00000000000000000001", "12345678.12345678901234567890"),
    # Without binlog_row_metadata = FULL (MariaDB logs none by default) the log names no ENUM or SET member and
    # no character set: read from information_schema, else ENUM and SET keys were None, byte strings UTF-8 text.
    "binary": ("BINARY(4)", "'ab'", "'a'"),  # logged without the zero bytes that pad it
    "varbinary": ("VARBINARY(8)", "X'FF00'", "X'FF'"),  # no UTF-8: it ended the stream
    "latin1": ("VARCHAR(8) CHARACTER SET latin1", "'caf\u00e9'", "'\u00e9'"),
    "bit": ("BIT(8)", "b'101'", "b'11000000'"),  # logged as the text of its bits
    "enum": ("ENUM('x','y')", "'x'", "'y'"),
    "set": ("SET('x','y')", "'x,y'", "'y'"),
}


@pytest.mark.parametrize("kind", MARIADB_STREAM_KEYS)
def test_mariadb_recounts_bind_the_binary_logs_key_values_as_the_database_stores_them(
        kind: str, mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    engine, table = mariadb_table
    column, first, second = MARIADB_STREAM_KEYS[kind]
    execute(engine, f"ALTER TABLE {table} ADD COLUMN k {column}, ADD INDEX (k)")
    url = sa.make_url(mariadb.url).update_query_dict({"init_command": "SET time_zone = '+05:30'"})
    assert_recounts_find_stream_keys(monitor_for, url.render_as_string(hide_password=False), engine, table, first,
                                     second, f"DELETE FROM {table} ORDER BY id DESC LIMIT 1")


def test_mariadb_without_the_binary_log_is_refused_in_one_line(mysql: TestDatabase) -> None:
    with mysql.engine.connect() as conn:
        assert not conn.execute(sa.text("SELECT @@log_bin")).scalar(), "needs the shared server (no binary log)"
    stream = MySQL().change_stream("shared", sa.make_url(mysql.url))
    with pytest.raises(LiveRefused) as refused:
        stream.open()
    assert str(refused.value) == ("database shared: live = true needs the binary log: start the server with "
                                  "log_bin (and binlog_format = ROW), or remove live = true")


@pytest.mark.parametrize(("setting", "value", "refusal"), [
    ("binlog_format", "MIXED", "needs binlog_format = ROW (the server has MIXED): set it in the server's "
                               "configuration, or remove live = true"),
    ("binlog_row_image", "MINIMAL", "needs binlog_row_image = FULL (the server has MINIMAL): set it in the "
                                    "server's configuration, or remove live = true"),
])
def test_mariadb_binlog_settings_that_hide_rows_are_refused_in_one_line(
        mariadb: MariaDBServer, setting: str, value: str, refusal: str) -> None:
    engine = autocommit_engine(mariadb.url)
    before = engine.connect().execute(sa.text(f"SELECT @@GLOBAL.{setting}")).scalar()
    execute(engine, f"SET GLOBAL {setting} = '{value}'")  # the throwaway server's, never the shared one's
    try:
        with pytest.raises(LiveRefused) as refused:
            MySQL().change_stream("live", sa.make_url(mariadb.url)).open()
        assert str(refused.value) == f"database live: live = true {refusal}"
    finally:
        execute(engine, f"SET GLOBAL {setting} = '{before}'")
        engine.dispose()


def test_mariadb_a_new_spelling_of_a_ci_key_joins_its_group_instead_of_a_new_one(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (email) VALUES ('Ann@example.com'), ('ann@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    assert daemon.scrape().value(EXCESS, "signups") == 1  # one group under the column's _ci collation

    execute(engine, f"INSERT INTO {table} (email) VALUES ('ANN@EXAMPLE.COM')")
    scrape = daemon.wait_for(lambda s: s.value(EXCESS, "signups") == 2, "the third spelling counted",
                             timeout=LIVE_SECONDS)
    assert (scrape.value(GROUPS, "signups"), scrape.value(NEW, "signups")) == (1, 0)
    execute(engine, f"DELETE FROM {table} WHERE email = 'ann@example.com' AND id > 1")  # the collation's =
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 0, "the group gone", timeout=LIVE_SECONDS)
    assert scrape.value(NEW, "signups") == 0
    assert daemon.stop() == 0


def test_mariadb_the_lag_runs_from_the_commit_not_from_a_long_transactions_first_statement(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """The binary log dates a row event to the second its statement began: a transaction held open 4 s after its
    insert must not read as a stream 4 s behind. Its commit (the XID event) dates it, to the whole second."""
    engine, table = mariadb_table
    monitor = signups_monitor(monitor_for, mariadb.url, table)
    recorded = Recorded()
    held = sa.create_engine(mariadb.url)
    try:
        with following_reader(monitor, recorded), held.connect() as conn:
            transaction = conn.begin()
            conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('long@example.com')"))
            began = conn.execute(sa.text("SELECT NOW(6)")).scalar()

            def held_4_seconds() -> bool:
                with engine.connect() as clock:
                    return bool(clock.execute(sa.text("SELECT NOW(6)")).scalar() >= began + timedelta(seconds=4))

            await_true(held_4_seconds, "the transaction held open 4 s", timeout=30)
            committed = time.monotonic()
            transaction.commit()
            await_true(lambda: recorded.events >= 1 and bool(recorded.lags), "the insert read from the stream")
            reader_delay = time.monotonic() - committed  # a loaded machine delays the reader, not the dating
    finally:
        held.dispose()
    # Dated from the commit: at most 1 s of rounding plus the reader's own delay; from the first statement it
    # would be 4 s more.
    assert recorded.lags[-1] < reader_delay + 1.5, (recorded.lags, reader_delay)


def test_mariadb_rows_a_session_logs_as_a_statement_are_a_gap_and_their_group_is_counted_at_once(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    """The server's binlog_format = ROW is only the sessions' default: a session may log its INSERT as a statement,
    which names no rows. The group it made is counted at once (not at the hourly poll), and the gap is reported."""
    engine, table = mariadb_table
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    statement_logged = autocommit_engine(mariadb.url)  # its own session, then gone
    try:
        with statement_logged.connect() as conn:
            conn.execute(sa.text("SET SESSION binlog_format = 'STATEMENT'"))
            conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('s@example.com'), ('s@example.com')"))
    finally:
        statement_logged.dispose()
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1 and live_value(s, GAPS) == 1,
                             "the group the statement made, and the gap", timeout=LIVE_SECONDS)
    assert scrape.value(NEW, "signups") == 1
    gap = next(line for line in daemon.log().splitlines() if "live stream gap" in line)
    assert "INSERT logged as a statement, naming no rows (a session's binlog_format is not ROW)" in gap
    execute(engine, f"INSERT INTO {table} (email) VALUES ('r@example.com'), ('r@example.com')")  # rows again
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 2, "the stream followed after the gap",
                             timeout=LIVE_SECONDS)
    assert (live_value(scrape, GAPS), scrape.value(NEW, "signups")) == (1, 2)
    assert daemon.stop() == 0


def test_mariadb_an_alter_table_that_makes_keys_equal_is_a_gap_and_its_group_is_counted_at_once(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], tmp_path: Path, start_daemon: Any) -> None:
    """A collation change makes 'Ann' and 'ann' one key without logging a row: the binary log holds the ALTER as a
    statement. The group it made is counted at once, and the gap is reported."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} MODIFY email varchar(100) COLLATE utf8mb4_bin NOT NULL")
    execute(engine, f"INSERT INTO {table} (email) VALUES ('Ann@example.com'), ('ann@example.com')")
    daemon = live_daemon(start_daemon, tmp_path, mariadb.url, table)
    assert daemon.scrape().value(GROUPS, "signups") == 0
    execute(engine, f"ALTER TABLE {table} MODIFY email varchar(100) COLLATE utf8mb4_general_ci NOT NULL")
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1 and live_value(s, GAPS) == 1,
                             "the group the collation made, and the gap", timeout=LIVE_SECONDS)
    assert scrape.value(NEW, "signups") == 1
    gap = next(line for line in daemon.log().splitlines() if "live stream gap" in line)
    assert "ALTER TABLE changed tables without logging their rows" in gap
    assert daemon.stop() == 0


@pytest.mark.parametrize("statement", [
    "SET STATEMENT lock_wait_timeout = 5 FOR ALTER TABLE {t} MODIFY email varchar(100) COLLATE utf8mb4_general_ci",
    "ALTER /* online */ TABLE {t} MODIFY email varchar(100) COLLATE utf8mb4_general_ci",
    "SET STATEMENT binlog_format = 'STATEMENT' FOR INSERT INTO {t} (email) VALUES ('ann@example.com')",
], ids=["set-statement-alter", "comment-in-alter", "set-statement-insert"])
def test_mariadb_a_statement_logged_as_a_statement_behind_a_prefix_or_comment_is_a_gap_and_its_group_counted(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any, statement: str) -> None:
    """MariaDB logs `SET STATEMENT ... FOR <statement>` and a comment inside a statement as they were run: read by
    their first words, the ALTER that made 'Ann' and 'ann' one key (or the INSERT a session logged as a statement)
    was taken for a statement that adds no row, and the group it made was missed without a gap until the poll."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} MODIFY email varchar(100) COLLATE utf8mb4_bin NOT NULL")
    execute(engine, f"INSERT INTO {table} (email) VALUES ('Ann@example.com'), ('ann@example.com')")
    with following_signups(monitor_for, mariadb.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(engine, statement.format(t=table))
        await_true(lambda: groups.figures == (1, 1) and len(recorded.gaps) == 1, "the group, and the gap",
                   timeout=10)


def test_mariadb_changes_of_a_system_versioned_table_are_followed_without_a_gap(
        mariadb: MariaDBServer, monitor_for: Any) -> None:
    """A table `WITH SYSTEM VERSIONING` logs its hidden `row_start`/`row_end` with every row, two columns more than
    information_schema lists: each of its changes was taken for rows logged before an ALTER TABLE, a gap and a full
    count of every check of the database at every change. A DELETE is logged as an UPDATE of `row_end` alone: it
    was taken for an update of no key column, and the group it dissolved stayed on /metrics until the poll."""
    engine = autocommit_engine(mariadb.url)
    table = f"versioned_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {table} (id int AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL,"
                    " INDEX (email)) WITH SYSTEM VERSIONING")
    try:
        with following_signups(monitor_for, mariadb.url, table) as (reader, recorded):
            groups = reader.groups["signups"]
            execute(engine, f"INSERT INTO {table} (email) VALUES ('a@example.com'), ('b@example.com')")
            execute(engine, f"UPDATE {table} SET email = 'a@example.com' WHERE email = 'b@example.com'")
            await_true(lambda: groups.figures == (1, 1), "the group the update formed")
            with engine.connect() as conn:
                first = conn.execute(sa.text(f"SELECT min(id) FROM {table}")).scalar()
            # logged as an UPDATE of row_end alone (the row is kept as history), which changes no key column
            execute(engine, f"DELETE FROM {table} WHERE id = :id", id=first)
            await_true(lambda: groups.figures == (0, 0), "the group the delete dissolved")
            assert recorded.gaps == []
    finally:
        execute(engine, f"DROP TABLE {table}")
        engine.dispose()


@contextmanager
def following_keyed(mariadb: MariaDBServer, monitor_for: Any, column: str,
                    name: str = "k") -> Iterator[tuple[sa.Engine, str, LiveGroups, Recorded]]:
    """A table of its own whose indexed key column `name` is of type `column`, its check followed by an in-process
    reader: (engine, table, the check's groups, recorded). Dropped after."""
    engine = autocommit_engine(mariadb.url)
    table = f"keyed_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {table} (id int AUTO_INCREMENT PRIMARY KEY, {name} {column}, INDEX ({name}))")
    try:
        with following_signups(monitor_for, mariadb.url, table, key=[name]) as (reader, recorded):
            yield engine, table, reader.groups["signups"], recorded
    finally:
        execute(engine, f"DROP TABLE {table}")
        engine.dispose()


@pytest.mark.parametrize("column", ["tinyint unsigned", "int unsigned", "bigint unsigned"])
def test_mariadb_an_unsigned_key_past_the_signed_range_is_read_as_stored(
        mariadb: MariaDBServer, monitor_for: Any, column: str) -> None:
    """Without `binlog_row_metadata = FULL` the log does not say whether an integer column is UNSIGNED: an IPv4
    address kept as `int unsigned` (half of them past 2^31), a `tinyint unsigned` status of 200, were read as
    negative numbers, re-counted as keys no row has: their duplicates were missed without a gap."""
    top = {"tinyint unsigned": 255, "int unsigned": 4294967295, "bigint unsigned": 18446744073709551615}[column]
    with following_keyed(mariadb, monitor_for, column, "ip") as (engine, table, groups, recorded):
        execute(engine, f"INSERT INTO {table} (ip) VALUES (:top), (:top), (1)", top=top)
        await_true(lambda: groups.figures == (1, 1), "the group of the unsigned key")
        execute(engine, f"UPDATE {table} SET ip = 1 WHERE id = (SELECT min(id) FROM {table})")
        await_true(lambda: groups.figures == (1, 1) and {k for k, _n in groups.known.values()} == {(1,)},
                   "the group the update moved")
        assert recorded.gaps == []


@pytest.mark.parametrize(("column", "value", "other"), [
    ("date", "0000-00-00", "2020-02-29"), ("date", "2020-00-00", "2020-01-01"),
    ("datetime(3)", "0000-00-00 00:00:00", "2020-01-01 00:00:00"), ("set('a','b')", "", "a"),
    # a zero TIMESTAMP is logged as 0 seconds since the epoch, an instant no TIMESTAMP holds (review of break19)
    ("timestamp NULL", "0000-00-00 00:00:00", "2020-01-01 00:00:00")])
def test_mariadb_a_zero_date_or_empty_set_key_is_not_read_as_null(
        mariadb: MariaDBServer, monitor_for: Any, column: str, value: str, other: str) -> None:
    """python-mysql-replication gives a zero (or partly zero) date, and an empty SET, as None, like a NULL: re-counted
    as NULL, their duplicates were missed without a gap. An empty SET is the empty text; a zero date's value is not
    in the log as read, so its row's check is counted in full."""
    zero_allowed = "SET STATEMENT sql_mode = '' FOR "
    with following_keyed(mariadb, monitor_for, column) as (engine, table, groups, recorded):
        execute(engine, f"{zero_allowed}INSERT INTO {table} (k) VALUES (:v), (:o)", v=value, o=other)
        execute(engine, f"{zero_allowed}INSERT INTO {table} (k) VALUES (:v)", v=value)
        await_true(lambda: groups.figures == (1, 1), "the group of the key read as NULL before")
        execute(engine, f"{zero_allowed}UPDATE {table} SET k = :o WHERE id = (SELECT min(id) FROM {table})",
                o=other)
        await_true(lambda: groups.figures == (1, 1) and len(next(iter(groups.known.values()))) == 2
                   and str(next(iter(groups.known.values()))[0][0]).startswith(other[:4]),
                   "the group the update moved the row to")
        assert recorded.gaps == []


@pytest.mark.parametrize(("column", "value", "other"), [
    ("uuid", "123e4567-e89b-12d3-a456-426655440000", "6ccd780c-baba-1026-9564-5b8c656024db"),
    ("binary(4)", b"\x00", b"\x02")])
def test_mariadb_a_uuid_or_all_zero_binary_key_is_recounted_without_a_gap(
        mariadb: MariaDBServer, monitor_for: Any, column: str, value: Any, other: Any) -> None:
    """A MariaDB UUID key comes as its 16 stored bytes less trailing zero bytes, a BINARY(n) key of zero bytes only
    as the empty text: a DELETE's re-count raised TypeError (a traceback, a gap, a full count), an insert's group
    was never found (review of break19, its finding 7)."""
    with following_keyed(mariadb, monitor_for, column) as (engine, table, groups, recorded):
        execute(engine, f"INSERT INTO {table} (k) VALUES (:v), (:v), (:o)", v=value, o=other)
        await_true(lambda: groups.figures == (1, 1), "the group")
        with engine.connect() as conn:
            first = conn.execute(sa.text(f"SELECT min(id) FROM {table}")).scalar()
        execute(engine, f"DELETE FROM {table} WHERE id = :id", id=first)
        await_true(lambda: groups.figures == (0, 0) or bool(recorded.gaps), "the group dissolved")
        assert recorded.gaps == []


def test_a_recount_that_fails_is_a_gap_and_the_reader_follows_again_once_it_can(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    role = f"dw_live_{uuid.uuid4().hex[:8]}"
    for statement in (f"CREATE ROLE {role} LOGIN REPLICATION", f"GRANT SELECT ON {table} TO {role}"):
        execute(admin, statement)
    url = sa.make_url(cluster.url).set(username=role).render_as_string(hide_password=False)
    monitor = signups_monitor(monitor_for, url, table)
    recorded = Recorded()
    with following_reader(monitor, recorded) as reader:
        execute(admin, f"REVOKE SELECT ON {table} FROM {role}")
        execute(admin, f"INSERT INTO {table} (email) VALUES ('x@example.com'), ('x@example.com')")
        await_true(lambda: bool(recorded.gaps), "the failed re-count reported as a gap")
        assert recorded.gaps[0].startswith("database live: re-count failed: ")
        assert "permission denied" in recorded.gaps[0]
        execute(admin, f"GRANT SELECT ON {table} TO {role}")
        await_true(lambda: reader.following.is_set() and bool(recorded.figures)
                   and recorded.figures[-1][1] == Figures(groups=1, excess_rows=1, new_groups=1),
                   "the group found by the full count after the gap", timeout=20)
        assert len(recorded.gaps) == 1
        monitor.close()
        execute(admin, f"DROP OWNED BY {role}")
        execute(admin, f"DROP ROLE {role}")


def test_a_table_rewrite_that_makes_keys_equal_is_a_gap_and_its_group_is_counted_at_once(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """Logical decoding shows no DDL: `ALTER ... TYPE ... USING lower(email)` makes 'Ann' and 'ann' one key without
    a row change in the stream. The reader sees the table's new storage, reports a gap and counts in full."""
    execute(admin, f"INSERT INTO {table} (email) VALUES ('Ann@example.com'), ('ann@example.com')")
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        assert reader.groups["signups"].figures == (0, 0)
        execute(admin, f"ALTER TABLE {table} ALTER COLUMN email TYPE text USING lower(email)")
        await_true(lambda: bool(recorded.figures) and recorded.figures[-1][1] == Figures(1, 1, 1),
                   "the group the rewrite made, counted as new")
        (gap,) = recorded.gaps
        assert gap == (f"database live: live stream: table public.{table} rewritten or its columns changed (ALTER "
                       "TABLE, VACUUM FULL, CLUSTER; logical decoding shows no DDL): every check counted in full")
        execute(admin, f"TRUNCATE {table}")  # a new storage too, but the stream shows the TRUNCATE
        await_true(lambda: reader.groups["signups"].figures == (0, 0) and not reader.groups["signups"].pending,
                   "the truncated table's group gone")
        execute(admin, f"INSERT INTO {table} (email) VALUES ('b@example.com'), ('b@example.com')")
        await_true(lambda: reader.groups["signups"].figures == (1, 1), "the stream followed after the TRUNCATE")
    assert len(recorded.gaps) == 1


def test_a_change_of_a_table_the_checks_where_reads_counts_the_check_in_full(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """A `where` reading another table (rows a team marked as not duplicates: `id NOT IN (SELECT signup_id FROM
    ignored)`): a change of that table moves the check's rows in or out of it without a change of the check's
    table. A row let back in made a duplicate the stream never counted, a row shut out left its group counted (the
    runs' figures are not taken while the stream is followed). Such a change counts the check in full; a change of
    the check's own table is still re-counted by its key."""
    ignored = f"{table}_ignored"
    execute(admin, f"CREATE TABLE {ignored} (signup_id int PRIMARY KEY)")
    execute(admin, f"INSERT INTO {table} (email) VALUES ('w@example.com'), ('w@example.com')")
    execute(admin, f"INSERT INTO {ignored} VALUES (2)")
    try:
        with following_signups(monitor_for, cluster.url, table,
                               where=f"id NOT IN (SELECT signup_id FROM {ignored})") as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            execute(admin, f"DELETE FROM {ignored}")
            await_true(lambda: groups.figures == (1, 1), "the group a row let back in made")
            execute(admin, f"INSERT INTO {ignored} VALUES (1)")
            await_true(lambda: groups.figures == (0, 0), "the group a row shut out dissolved")
            full = len(recorded.overflows)
            execute(admin, f"INSERT INTO {table} (email) VALUES ('w@example.com')")
            await_true(lambda: groups.figures == (1, 1), "the check's own row re-counted by its key")
            assert len(recorded.overflows) == full
        assert recorded.gaps == []
    finally:
        execute(admin, f"DROP TABLE {ignored}")


def test_mariadb_a_change_of_a_table_the_checks_where_reads_counts_the_check_in_full(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """As on PostgreSQL: the binary log names the other table's rows only (and the stream dropped them, no check
    watching that table); the tables the `where`'s text names are followed, any change counting the check in full."""
    engine, table = mariadb_table
    ignored = f"{table}_ignored"
    execute(engine, f"CREATE TABLE {ignored} (signup_id int PRIMARY KEY, note varchar(10))")
    execute(engine, f"INSERT INTO {table} (email) VALUES ('w@example.com'), ('w@example.com')")
    execute(engine, f"INSERT INTO {ignored} VALUES (2, 'a')")
    try:
        with following_signups(monitor_for, mariadb.url, table,
                               where=f"id NOT IN (SELECT signup_id FROM {ignored})") as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            execute(engine, f"UPDATE {ignored} SET signup_id = 3")
            await_true(lambda: groups.figures == (1, 1), "the group a row let back in made")
            execute(engine, f"INSERT INTO {ignored} VALUES (1, 'b')")
            await_true(lambda: groups.figures == (0, 0), "the group a row shut out dissolved")
        assert recorded.gaps == []
    finally:
        execute(engine, f"DROP TABLE {ignored}")


def test_a_recount_cancelled_by_a_stop_is_not_a_gap(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """The daemon stops its readers, then closes the detection connections, cancelling a re-count in flight: that
    is the stop, not a break of the stream (no gap counted, no poll asked of a scheduler that is gone). The
    re-count is held by a lock on a table its `where` reads."""
    blocker = f"blocker_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {blocker} (id int)")
    monitor = signups_monitor(monitor_for, cluster.url, table, where=f"id NOT IN (SELECT id FROM {blocker})")
    recorded = Recorded()
    locker = sa.create_engine(cluster.url)
    try:
        with following_reader(monitor, recorded) as reader, locker.connect() as lock:
            lock.execute(sa.text(f"LOCK TABLE {blocker} IN ACCESS EXCLUSIVE MODE"))
            execute(admin, f"INSERT INTO {table} (email) VALUES ('s@example.com'), ('s@example.com')")

            def waiting() -> list[int]:
                with admin.connect() as conn:
                    return [int(pid) for pid in conn.execute(sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :q"),
                        {"q": f"%{blocker}%"}).scalars()]

            await_true(lambda: bool(waiting()), "the re-count held by the lock")
            reader.stop(timeout=0.2)  # stopping: the re-count is still in flight
            execute(admin, f"SELECT pg_cancel_backend({waiting()[0]})")  # as closing the connections does
            reader._thread.join(10)
            assert not reader._thread.is_alive()
            lock.rollback()
    finally:
        locker.dispose()
        execute(admin, f"DROP TABLE {blocker}")
    assert recorded.gaps == []


def test_a_config_reload_hands_the_stream_over_without_a_gap_and_follows_it_with_one_slot(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    """The new config's reader opens its slot, then the previous reader reads to the end of its own and stops:
    nothing is unread between the two, so a reload is no gap (a restart on PostgreSQL is one)."""
    daemon = live_daemon(start_daemon, tmp_path, cluster.url, table)
    execute(admin, f"INSERT INTO {table} (email) VALUES ('before@example.com')")
    daemon.wait_for(lambda s: (live_value(s, EVENTS) or 0) >= 1, "the insert read from the stream",
                    timeout=LIVE_SECONDS)  # a position saved: a reader without a predecessor would report a gap
    before = live_backend(admin)
    daemon.send(signal.SIGHUP)
    await_log(daemon, "config reloaded")
    deadline = time.monotonic() + 20
    while daemon.log().count("following the change stream") < 2:
        assert time.monotonic() < deadline, f"not following again after the reload:\n{daemon.log()[-2000:]}"
        time.sleep(0.05)  # polling interval of a condition wait
    after = live_backend(admin)  # exactly one live slot: the previous one went with its session
    assert after != before

    execute(admin, f"INSERT INTO {table} (email) VALUES ('reload@example.com'), ('reload@example.com')")
    scrape = daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1 and s.value(NEW, "signups") == 1,
                             "the group after the reload", timeout=LIVE_SECONDS)
    assert live_value(scrape, GAPS) == 0
    log = daemon.log()
    assert "took over the change stream from the previous config's reader" in log
    assert "live stream gap" not in log
    assert daemon.stop() == 0


def saved_live_checks(tmp_path: Path) -> set[str]:
    """The checks whose live groups the daemon's state store holds (read as its own file, by another process)."""
    with sqlite3.connect(tmp_path / "history.sqlite") as conn:
        return {str(row[0]) for row in conn.execute("SELECT check_name FROM live_group_sets")}


def test_the_live_groups_of_a_check_removed_from_the_config_are_deleted_at_a_reload_and_a_start(
        cluster: Cluster, admin: sa.Engine, table: str, tmp_path: Path, start_daemon: Any) -> None:
    execute(admin, f"INSERT INTO {table} (email) VALUES ('a@example.com'), ('a@example.com')")
    port = free_port()

    def config(*names: str) -> Path:
        return write_config(
            tmp_path / "dupewatch.toml", {"live": {"url": cluster.url, "live": True}},
            # each its own `where`: checks measuring one thing share their groups (one subject)
            [{"name": name, "database": "live", "table": table, "key": ["email"], "interval": 3600,
              "where": f"id > {len(name)}"} for name in names],
            metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})

    daemon = start_daemon(config("signups", "emails"), port)
    await_log(daemon, "following the change stream")
    await_true(lambda: saved_live_checks(tmp_path) == {"signups", "emails"}, "both checks' groups saved")
    config("signups")
    daemon.send(signal.SIGHUP)
    await_log(daemon, "deleted the live groups saved for a check no longer followed live")
    assert saved_live_checks(tmp_path) == {"signups"}
    assert daemon.stop() == 0
    again = start_daemon(config("mails"), port)
    await_log(again, "deleted the live groups saved for a check no longer followed live")
    await_log(again, "following the change stream")
    await_true(lambda: saved_live_checks(tmp_path) == {"mails"}, "the new check's groups saved, the old one's gone")
    assert again.stop() == 0


@pytest.mark.parametrize("behind", [False, True], ids=["reader-free", "reader-waiting"])
def test_mariadb_one_big_transaction_is_followed_in_bounded_memory_and_its_duplicate_found(
        behind: bool, mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """The binary log's thread queues what the decoder sends until the reader takes it. A transaction of
    `BIG_ROWS` rows, read from the log while the reader is free or while its re-count waits behind a lock (a daemon
    whose counting falls behind: then it is queued whole): the queue must keep only keys, at most
    `QUEUED_CHANGES` of the table, and the table be counted in full once (an overflow), which finds the
    duplicate the transaction made, with no gap."""
    engine, table = mariadb_table
    with following_signups(monitor_for, mariadb.url, table) as (reader, recorded), engine.connect() as locker:
        groups = reader.groups["signups"]
        if behind:
            locker.execute(sa.text(f"LOCK TABLES {table} WRITE, seq_1_to_{BIG_ROWS} READ"))
        try:
            locker.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('first@example.com')"))
            if behind:
                await_true(lambda: waiting_for_a_lock(engine), "the reader's re-count waiting behind the lock")
            before = peak_rss_kb(reset=True)
            started = time.monotonic()
            locker.execute(sa.text(f"INSERT INTO {table} (email) SELECT CONCAT('user', seq, '@example.com')"
                                   f" FROM seq_1_to_{BIG_ROWS} UNION ALL SELECT 'user7@example.com'"))
            logged = gtid_binlog_pos(engine)
            await_true(lambda: reader.stream.gtid == logged, "the big transaction read from the log", timeout=120)
        finally:
            if behind:
                locker.execute(sa.text("UNLOCK TABLES"))
        await_true(lambda: groups.figures == (1, 1) and recorded.events >= BIG_ROWS + 2,
                   "the duplicate of the big transaction counted", timeout=600)
        seconds = time.monotonic() - started
        growth_mb = (peak_rss_kb() - before) / 1024
    print(f"MariaDB: {BIG_ROWS + 1} rows in one transaction, reader {'waiting' if behind else 'free'}: peak RSS "
          f"+{growth_mb:.0f} MB, counted {seconds:.1f} s after the insert began, {len(recorded.overflows)} overflows")
    assert growth_mb < BIG_GROWTH_MB
    assert ("signups", Figures(1, 1, 1)) in recorded.figures
    assert recorded.overflows == ["signups"]  # counted in full, once: not a gap, nothing was missed
    assert not recorded.gaps


def test_mariadb_a_transaction_overflowing_the_queue_is_handed_on_as_one_overflow_before_its_commit(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str]) -> None:
    """Past `QUEUED_CHANGES` changes of a watched table in one transaction the queue keeps none of the rest, and
    says so with one `OVERFLOW` change read no later than the commit (the position a restart resumes from), so
    the full count it leads to covers what was dropped; what it queued holds the key columns only."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20)")
    stream = MySQL().change_stream("live", sa.make_url(mariadb.url))
    stream.open()
    try:
        stream.watch({(str(sa.make_url(mariadb.url).database), table): frozenset({"email"})}, frozenset())
        execute(engine, f"INSERT INTO {table} (email, note) SELECT CONCAT('user', seq, '@example.com'), 'x'"
                        f" FROM seq_1_to_{QUEUED_CHANGES + 1}")
        committed = f"gtid:{gtid_binlog_pos(engine)[0]}"
        done: list[Any] = []
        await_true(lambda: bool(done.extend(stream.read())) or stream.position == committed,
                   "the transaction's commit read", timeout=30)
    finally:
        stream.close()
    changes = [c for t in done for c in t.changes]
    assert [c.operation for c in changes if c.operation != "INSERT"] == ["OVERFLOW"]
    assert 0 < len(changes) - 1 <= QUEUED_CHANGES
    assert all(set(c.new) == {"email"} for c in changes if c.operation == "INSERT")
    assert sum(t.events for t in done) == QUEUED_CHANGES + 1  # every row counted as read, queued or not


def test_mariadb_a_mass_update_of_no_key_column_is_no_overflow(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """An UPDATE of more rows than `QUEUED_CHANGES` that changes no key column changes no group: the queue drops
    its changes (counted as read) rather than overflowing into a full count."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20)")
    execute(engine, f"INSERT INTO {table} (email) SELECT CONCAT('user', seq, '@example.com')"
                    f" FROM seq_1_to_{QUEUED_CHANGES + 1}")
    with following_signups(monitor_for, mariadb.url, table) as (reader, recorded):
        before = reader.groups["signups"].recounted
        execute(engine, f"UPDATE {table} SET note = 'seen'")
        await_true(lambda: recorded.events >= QUEUED_CHANGES + 1, "the update's rows read", timeout=30)
        assert reader.groups["signups"].recounted == before
    assert recorded.overflows == []
    assert not recorded.gaps


def test_mariadb_an_update_of_no_key_column_that_moves_a_row_into_a_wheres_groups_is_followed(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """Where a check has a `where`, an UPDATE of no key column may still make a duplicate (a row now matches
    it): the queue keeps such UPDATEs for the re-count."""
    engine, table = mariadb_table
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20)")
    execute(engine, f"INSERT INTO {table} (email, note) VALUES ('a@example.com', NULL), ('a@example.com', 'old')")
    with following_signups(monitor_for, mariadb.url, table, where="note IS NULL") as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(engine, f"UPDATE {table} SET note = NULL WHERE note = 'old'")
        await_true(lambda: groups.figures == (1, 1), "the group the update made")
    assert not recorded.gaps


def waiting_for_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                                         " WHERE state = 'Waiting for table metadata lock'")).scalar())


def gtid_binlog_pos(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {0: str(conn.execute(sa.text("SELECT @@gtid_binlog_pos")).scalar())}


# -- shapes the stream names otherwise than the check: partitions (PostgreSQL), columns moved (MariaDB) -----


@pytest.fixture
def partitioned(admin: sa.Engine) -> Iterator[str]:
    name = f"signup_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {name} (id serial, email text NOT NULL, region int NOT NULL,"
                   f" PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
    execute(admin, f"CREATE INDEX ON {name} (email)")
    execute(admin, f"CREATE TABLE {name}_1 PARTITION OF {name} FOR VALUES IN (1)")
    execute(admin, f"CREATE TABLE {name}_2 PARTITION OF {name} FOR VALUES IN (2)")
    yield name
    execute(admin, f"DROP TABLE {name}")


def test_a_duplicate_inserted_into_partitions_is_found_from_the_stream(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:
    """Logical decoding names each change by the partition that holds the row, not by the partitioned table the
    check counts: the changes of its partitions are its changes."""
    with following_signups(monitor_for, cluster.url, partitioned) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('p@example.com', 1)")
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('p@example.com', 2)")
        await_true(lambda: groups.figures == (1, 1), "the group formed across two partitions")
        execute(admin, f"DELETE FROM {partitioned} WHERE region = 2")
        await_true(lambda: groups.figures == (0, 0), "the group a delete in a partition dissolved")
    assert recorded.gaps == []


def test_attaching_a_partition_that_holds_a_duplicate_is_a_gap_and_its_group_is_counted(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:
    """ATTACH PARTITION puts rows under the check's table without logging any of them."""
    execute(admin, f"CREATE TABLE {partitioned}_3 (LIKE {partitioned})")
    execute(admin, f"INSERT INTO {partitioned}_3 (id, email, region) VALUES (101, 'a@example.com', 3),"
                   " (102, 'a@example.com', 3)")
    with following_signups(monitor_for, cluster.url, partitioned) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(admin, f"ALTER TABLE {partitioned} ATTACH PARTITION {partitioned}_3 FOR VALUES IN (3)")
        await_true(lambda: groups.figures == (1, 1), "the group the attached partition brought")
        await_true(lambda: len(recorded.gaps) == 1, "the gap reported")
    assert "partition" in recorded.gaps[0]


def test_an_empty_partition_created_while_followed_is_no_gap_and_its_rows_are_followed(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:
    """CREATE TABLE ... PARTITION OF brings no row under the check's table: the catalog's tree changes, yet no
    change was missed (the partition holds no row), so it is no gap; the rows it is given later are streamed."""
    with following_signups(monitor_for, cluster.url, partitioned) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('e@example.com', 1)")
        execute(admin, f"CREATE TABLE {partitioned}_3 PARTITION OF {partitioned} FOR VALUES IN (3)")
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('e@example.com', 2)")
        await_true(lambda: groups.figures == (1, 1), "the group formed after the partition was created")
        # Rows for the new partition only once a read has looked at the tree with it in it, still empty (the
        # reader keeps the tree it saw last): a partition given rows before any read sees it is a gap.
        with admin.connect() as conn:
            oid = str(conn.execute(sa.text(f"SELECT '{partitioned}_3'::regclass::oid")).scalar_one())
        stream = reader.stream
        await_true(lambda: any(oid in shape.split(":", 2)[-1].split(",")
                               for _schema, _name, shape in list(stream._shapes.values())),
                   "a read that saw the new partition in the tree")
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('e@example.com', 3)")
        await_true(lambda: groups.figures == (1, 2), "the new partition's row counted from the stream")
    assert recorded.gaps == []


def test_rows_given_to_a_table_attached_empty_are_followed_though_it_was_no_partition_before(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A table whose changes were read while it was no partition, emptied and attached: its rows committed between
    the read's look at the tree (which saw it join empty: no gap) and the stream's read are the check's rows, not
    another table's (the reader asked which tables are partitions before it, and had kept the answer)."""
    other = f"{partitioned}_9"
    execute(admin, f"CREATE TABLE {other} (id serial, email text NOT NULL, region int NOT NULL,"
                   " PRIMARY KEY (id, region))")
    with following_signups(monitor_for, cluster.url, partitioned) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"INSERT INTO {other} (email, region) VALUES ('elsewhere@example.com', 9)")
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('x@example.com', 1)")
        await_true(lambda: recorded.events >= 1, "the other table's change read, as no partition's")
        stream = reader.stream
        looked = stream._shapes_now
        armed = threading.Event()

        def then_a_row(*args: Any) -> Any:
            seen = looked(*args)
            if armed.is_set():
                armed.clear()
                execute(admin, f"INSERT INTO {other} (email, region) VALUES ('x@example.com', 9)")
            return seen

        monkeypatch.setattr(stream, "_shapes_now", then_a_row)
        with one_transaction(admin) as conn:
            conn.execute(sa.text(f"TRUNCATE {other}"))
            conn.execute(sa.text(f"ALTER TABLE {partitioned} ATTACH PARTITION {other} FOR VALUES IN (9)"))
        armed.set()
        await_true(lambda: not armed.is_set(), "a read that saw the table join empty")
        await_true(lambda: groups.figures == (1, 1), "the attached table's row counted from the stream")
    assert recorded.gaps == []


def test_detaching_a_partition_is_a_gap_and_the_group_it_took_away_dissolves(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:
    """DETACH PARTITION takes rows from under the check's table without a change: a gap, even where another,
    empty partition joins the tree in the same read."""
    execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('d@example.com', 1), ('d@example.com', 2)")
    with following_signups(monitor_for, cluster.url, partitioned) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (1, 1)
        with one_transaction(admin) as conn:
            conn.execute(sa.text(f"ALTER TABLE {partitioned} DETACH PARTITION {partitioned}_2"))
            conn.execute(sa.text(f"CREATE TABLE {partitioned}_3 PARTITION OF {partitioned} FOR VALUES IN (3)"))
        await_true(lambda: groups.figures == (0, 0), "the group the detached partition took away")
        await_true(lambda: len(recorded.gaps) == 1, "the gap reported")
    assert "partition" in recorded.gaps[0]
    execute(admin, f"DROP TABLE {partitioned}_2")


@pytest.fixture
def inherited(admin: sa.Engine) -> Iterator[str]:
    """A table with an inheritance child (`INHERITS`: no primary key of its own, as a child gets none from its
    parent), each indexed on email; a query of the parent reads the child's rows too."""
    name = f"signup_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {name} (id serial PRIMARY KEY, email text NOT NULL)")
    execute(admin, f"CREATE INDEX ON {name} (email)")
    execute(admin, f"CREATE TABLE {name}_child () INHERITS ({name})")
    execute(admin, f"CREATE INDEX ON {name}_child (email)")
    yield name
    execute(admin, f"DROP TABLE {name} CASCADE")


@pytest.mark.parametrize("decoder", [WAL2JSON, TEST_DECODING], ids=lambda p: p.name)
def test_a_duplicate_across_an_inheritance_parent_and_child_is_found_from_the_stream(
        cluster: Cluster, admin: sa.Engine, inherited: str, monitor_for: Any, decoder: Plugin, plugin: str) -> None:
    """Logical decoding names a change by the table that holds the row: an inheritance child's rows, which the check
    of the parent counts, were asked for partition ancestors only (none) and never handed on as the parent's: the
    duplicate the child's row made was missed without a gap, and the group its delete dissolved stayed counted."""
    if decoder is WAL2JSON and plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    if decoder is WAL2JSON:  # which prints none of the DELETEs of a child without a replica identity
        execute(admin, f"ALTER TABLE {inherited}_child ADD PRIMARY KEY (id)")
    execute(admin, f"INSERT INTO {inherited} (email) VALUES ('i@example.com')")
    with following_with(decoder, signups_monitor(monitor_for, cluster.url, inherited), cluster.url) as (reader,
                                                                                                        recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(admin, f"INSERT INTO {inherited}_child (email) VALUES ('i@example.com')")
        await_true(lambda: groups.figures == (1, 1), "the group the child's row made")
        execute(admin, f"DELETE FROM {inherited}_child")
        await_true(lambda: groups.figures == (0, 0) and not groups.pending, "the group the child's delete dissolved")
    assert recorded.gaps == []


def test_a_table_that_inherits_from_the_checks_table_holding_a_duplicate_is_a_gap_and_its_group_is_counted(
        cluster: Cluster, admin: sa.Engine, inherited: str, monitor_for: Any) -> None:
    """ALTER TABLE ... INHERIT puts a table's rows under the check's table without a change, as ATTACH PARTITION
    does: the inheritance tree is part of the table's shape."""
    execute(admin, f"CREATE TABLE {inherited}_more (id int NOT NULL, email text NOT NULL)")
    execute(admin, f"INSERT INTO {inherited}_more VALUES (101, 'm@example.com'), (102, 'm@example.com')")
    with following_signups(monitor_for, cluster.url, inherited) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(admin, f"ALTER TABLE {inherited}_more INHERIT {inherited}")
        await_true(lambda: groups.figures == (1, 1), "the group the inheriting table brought")
        await_true(lambda: len(recorded.gaps) == 1, "the gap reported")


def test_mariadb_a_column_added_before_the_key_while_followed_keeps_the_keys_read_from_the_log(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """Without binlog_row_metadata = FULL the log's rows carry values by position and the reader names them from
    information_schema: after an ALTER TABLE that moves the key column, the names must be read again."""
    engine, table = mariadb_table
    with following_signups(monitor_for, mariadb.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")  # names read and kept
        await_true(lambda: recorded.events >= 1, "the first insert read")
        execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20) AFTER id")
        await_true(lambda: len(recorded.gaps) == 1, "the ALTER reported as a gap")
        execute(engine, f"INSERT INTO {table} (note, email) VALUES ('x', 'm@example.com'), ('y', 'm@example.com')")
        await_true(lambda: groups.figures == (1, 1), "the duplicate inserted after the ALTER")


@pytest.fixture
def row_metadata(mariadb: MariaDBServer) -> Iterator[Callable[[str], None]]:
    """Sets the throwaway server's binlog_row_metadata (global: the table maps logged from then on); restored."""
    engine = autocommit_engine(mariadb.url)
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT @@GLOBAL.binlog_row_metadata")).scalar()

    def set_to(value: str) -> None:
        execute(engine, "SET GLOBAL binlog_row_metadata = :value", value=value)

    yield set_to
    set_to(str(before))
    engine.dispose()


def read_logged_before_an_alter(url: str, engine: sa.Engine, table: str) -> list[Any]:
    """The transactions a stream resumed from before an INSERT reads, once that INSERT is followed by an ALTER
    TABLE adding a column before the key: the decoder reads the insert's row event when the table has the new
    columns. Read until the ALTER's own gap."""
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT @@gtid_binlog_pos")).scalar()
    execute(engine, f"INSERT INTO {table} (email) VALUES ('early@example.com')")
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20) AFTER id")
    stream = MySQL().change_stream("live", sa.make_url(url))
    assert stream.open(resume=f"gtid:{before}") is None
    read: list[Any] = []
    try:
        await_true(lambda: bool(read.extend(stream.read())) or any(
            t.unnamed and "ALTER TABLE" in t.unnamed for t in read), "the ALTER TABLE read")
    finally:
        stream.close()
    return read


def test_mariadb_rows_logged_before_their_tables_columns_changed_are_a_gap_not_misread_without_full_row_metadata(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], row_metadata: Callable[[str], None]) -> None:
    """With binlog_row_metadata MINIMAL (or NO_LOG, MariaDB's default) the log names no column: named by the
    table's columns now, the insert's email would be read as `note` (and its key as missing)."""
    engine, table = mariadb_table
    row_metadata("MINIMAL")
    read = read_logged_before_an_alter(mariadb.url, engine, table)
    assert [c for t in read for c in t.changes if c.table == table] == []  # not misread
    reshaped = [t.unnamed for t in read if t.unnamed and "binlog_row_metadata" in t.unnamed]
    assert reshaped == [f"rows of test.{table} logged before its columns changed, which the binary log does not "
                        "name (binlog_row_metadata is not FULL): not read, every check counted in full"]


def test_mariadb_rows_logged_before_their_tables_columns_changed_are_named_by_the_log_with_full_row_metadata(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], row_metadata: Callable[[str], None]) -> None:
    engine, table = mariadb_table
    row_metadata("FULL")
    read = read_logged_before_an_alter(mariadb.url, engine, table)
    assert [c.new for t in read for c in t.changes if c.table == table] == [{"id": 1, "email": "early@example.com"}]
    assert not any(t.unnamed and "binlog_row_metadata" in t.unnamed for t in read)


# A column of each type the server has, as information_schema names it (DATA_TYPE), beside the type its table map
# logs it as: a pair the decoder did not know to be one would make every row of the table a gap.
EVERY_COLUMN_TYPE = ("a tinyint, b smallint, c mediumint, d int, e bigint unsigned, f decimal(10,2), g float, h double,"
                     " i bit(3), j year, k date, l time(3), m datetime(6), n timestamp NULL, o char(3), p binary(2),"
                     " q varbinary(5), r enum('x'), s set('x','y'), t tinytext, u text, v mediumtext, w longblob,"
                     " x json, y inet6, z uuid, aa geometry, ab point, ac boolean, ad inet4")


def test_mariadb_rows_of_a_table_of_every_column_type_are_read_without_a_reshape_gap(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], row_metadata: Callable[[str], None]) -> None:
    engine, table = mariadb_table
    row_metadata("NO_LOG")
    execute(engine, f"ALTER TABLE {table} ADD COLUMN ({EVERY_COLUMN_TYPE})")
    stream = MySQL().change_stream("live", sa.make_url(mariadb.url))
    stream.open()
    try:
        execute(engine, f"INSERT INTO {table} (email, a, x, y, z, aa, ab, ad) VALUES ('t@example.com', 1, '{{}}',"
                        " '::1', UUID(), POINT(1, 2), POINT(3, 4), '10.0.0.1')")
        read: list[Any] = []
        await_true(lambda: bool(read.extend(stream.read())) or any(t.changes or t.unnamed for t in read),
                   "the insert read")
    finally:
        stream.close()
    assert [t.unnamed for t in read if t.unnamed] == []
    assert [c.new["email"] for t in read for c in t.changes] == ["t@example.com"]


def test_mariadb_rows_of_a_reshaped_table_are_a_gap_and_the_duplicate_they_made_is_counted(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], row_metadata: Callable[[str], None],
        monitor_for: Any) -> None:
    """A reader behind the server (here: lost, then resumed) reads a duplicate's rows after a column was dropped
    and another added in its place: same count, another type, which the log (without names) cannot tell
    apart from the old columns but the table map's types can."""
    engine, table = mariadb_table
    row_metadata("NO_LOG")
    execute(engine, f"ALTER TABLE {table} ADD COLUMN note int")
    monitor = signups_monitor(monitor_for, mariadb.url, table)
    recorded = Recorded()
    with reader_reopened_on_cue(monitor, recorded) as (reader, stream):
        lose_decoder(reader, stream)
        execute(engine, f"INSERT INTO {table} (email, note) VALUES ('m@example.com', 1), ('m@example.com', 2)")
        execute(engine, f"ALTER TABLE {table} DROP COLUMN note, ADD COLUMN note varchar(20)")
        stream.cue.set()
        await_true(lambda: bool(recorded.gaps) and reader.groups["signups"].figures == (1, 1),
                   "the reshaped rows reported as a gap, the duplicate counted", timeout=20)
    # The ALTER after them is a gap of its own when the reader reads it apart (one full count covers both).
    assert "logged before its columns changed" in recorded.gaps[0]
    assert all("ALTER TABLE" in gap for gap in recorded.gaps[1:])


def test_mariadb_rows_a_foreign_key_sets_null_or_deletes_are_followed(
        mariadb: MariaDBServer, tmp_path: Path, start_daemon: Any) -> None:
    """InnoDB's foreign key actions change the child's rows without the binary log naming them (it holds the
    parent's row only): deleting two customers sets two orders' customer to NULL, making the group (NULL, 'x')
    (NULLs group as equal), and a cascaded delete dissolves a group. Both reach /metrics from the parent's change."""
    engine = autocommit_engine(mariadb.url)
    parent, child = f"customer_{uuid.uuid4().hex[:8]}", f"orders_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {parent} (id int PRIMARY KEY)")
    execute(engine, f"CREATE TABLE {child} (id int AUTO_INCREMENT PRIMARY KEY, customer int NULL, "
                    f"ref varchar(10) NOT NULL, INDEX (customer, ref), "
                    f"FOREIGN KEY (customer) REFERENCES {parent} (id) ON DELETE SET NULL)")
    grandchild = f"line_{uuid.uuid4().hex[:8]}"
    execute(engine, f"CREATE TABLE {grandchild} (id int AUTO_INCREMENT PRIMARY KEY, customer int NOT NULL, "
                    f"sku varchar(10) NOT NULL, INDEX (sku), "
                    f"FOREIGN KEY (customer) REFERENCES {parent} (id) ON DELETE CASCADE)")
    try:
        execute(engine, f"INSERT INTO {parent} VALUES (1), (2), (3)")
        execute(engine, f"INSERT INTO {child} (customer, ref) VALUES (1, 'x'), (2, 'x'), (3, 'y')")
        execute(engine, f"INSERT INTO {grandchild} (customer, sku) VALUES (1, 's'), (3, 's')")
        port = free_port()
        config = write_config(
            tmp_path / "dupewatch.toml", {"live": {"url": mariadb.url, "live": True}},
            [{"name": "orders", "database": "live", "table": child, "key": ["customer", "ref"], "interval": 3600},
             {"name": "lines", "database": "live", "table": grandchild, "key": ["sku"], "interval": 3600}],
            metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
        daemon = start_daemon(config, port)
        daemon.wait_for(lambda s: s.value(GROUPS, "orders") == 0 and s.value(GROUPS, "lines") == 1, "first runs")
        await_log(daemon, "following the change stream")

        execute(engine, f"DELETE FROM {parent} WHERE id IN (1, 2)")  # orders (NULL, 'x') twice; a line goes
        scrape = daemon.wait_for(lambda s: s.value(GROUPS, "orders") == 1 and s.value(GROUPS, "lines") == 0,
                                 "the group SET NULL formed, the one CASCADE dissolved", timeout=LIVE_SECONDS)
        assert (scrape.value(NEW, "orders"), live_value(scrape, GAPS)) == (1, 0)
        assert daemon.stop() == 0
    finally:
        for name in (grandchild, child, parent):
            execute(engine, f"DROP TABLE IF EXISTS {name}")
        engine.dispose()


def test_mariadb_a_check_on_a_table_of_another_database_is_followed(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """A check may name `otherdb.table` on a MariaDB connection whose URL names another database: its rows are in
    the same binary log, and the stream must not keep only the URL's database's."""
    engine, table = mariadb_table
    execute(engine, "CREATE DATABASE IF NOT EXISTS live_other")
    execute(engine, f"CREATE TABLE live_other.{table} (id int AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL,"
                    " INDEX (email))")
    try:
        with following_signups(monitor_for, mariadb.url, f"live_other.{table}") as (reader, _recorded):
            groups = reader.groups["signups"]
            execute(engine, f"INSERT INTO {table} (email) VALUES ('o@example.com'), ('o@example.com')")  # not it
            execute(engine, f"INSERT INTO live_other.{table} (email) VALUES ('o@example.com'), ('o@example.com')")
            await_true(lambda: groups.figures == (1, 1), "the group of the other database's table")
            assert groups.figures == (1, 1)
    finally:
        execute(engine, f"DROP TABLE live_other.{table}")


def test_a_table_swapped_in_under_the_checks_name_is_a_gap_and_its_group_is_counted(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """An online schema change's cut-over renames a table filled beforehand (its rows named by its old name in the
    stream) to the check's table's name: rows under the name that no change named, as MariaDB's RENAME TABLE."""
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"CREATE TABLE {table}_new (LIKE {table} INCLUDING ALL)")
        execute(admin, f"INSERT INTO {table}_new (id, email) VALUES (1, 's@example.com'), (2, 's@example.com')")
        with one_transaction(admin) as conn:
            conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {table}_old"))
            conn.execute(sa.text(f"ALTER TABLE {table}_new RENAME TO {table}"))
        try:
            await_true(lambda: groups.figures == (1, 1), "the group of the table swapped in")
            await_true(lambda: len(recorded.gaps) == 1, "the swap reported as a gap")
        finally:
            execute(admin, f"DROP TABLE {table}_old CASCADE")
    assert "replaced" in recorded.gaps[0]


def test_a_table_moved_away_and_back_while_followed_is_followed_again_once_back(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """A watched table moved to another schema (or renamed) for a while, then back: the full count of the gap its
    move made skipped its check (its table was not there: said to lack an index on its key), and the stream never
    followed it again, the duplicate made once it was back never counted until the stream was opened again."""
    execute(admin, "CREATE SCHEMA IF NOT EXISTS elsewhere")
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        execute(admin, f"ALTER TABLE {table} SET SCHEMA elsewhere")
        await_true(lambda: len(recorded.gaps) == 1 and "signups" in reader._missing, "the move's gap counted")
        execute(admin, f"INSERT INTO elsewhere.{table} (email) VALUES ('m@example.com'), ('m@example.com')")
        execute(admin, f"ALTER TABLE elsewhere.{table} SET SCHEMA public")
        await_true(lambda: groups.figures == (1, 1), "the group made while it was away", timeout=10)
        execute(admin, f"INSERT INTO {table} (email) VALUES ('b@example.com'), ('b@example.com')")
        await_true(lambda: groups.figures == (2, 2), "a group made once it was back, from the stream")
    assert len(recorded.gaps) == 2 and "there again" in recorded.gaps[1]


def in_one_transaction(url: str, *statements: str) -> None:
    """`statements` in one transaction (the tests' `admin` engine autocommits each statement, `begin()` or not)."""
    with one_transaction(autocommit_engine(url)) as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


@pytest.fixture
def membership(admin: sa.Engine) -> Iterator[str]:
    """A link table without a primary key, so without a replica identity; indexed on its key."""
    name = f"membership_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {name} (id int NOT NULL, role_id int NOT NULL, group_id int NOT NULL)")
    execute(admin, f"CREATE INDEX ON {name} (role_id, group_id)")
    yield name
    execute(admin, f"DROP TABLE {name}")


def membership_monitor(monitor_for: Any, url: str, name: str) -> Monitor:
    return monitor_for({"live": {"url": url}}, [
        {"name": "membership", "database": "live", "table": name, "key": ["role_id", "group_id"]}])


@pytest.mark.parametrize("identity", ["no primary key", "REPLICA IDENTITY NOTHING"])
def test_updates_and_deletes_of_a_table_without_a_replica_identity_beside_other_changes_are_followed(
        cluster: Cluster, admin: sa.Engine, table: str, membership: str, monitor_for: Any, identity: str) -> None:
    """wal2json prints nothing of an UPDATE or DELETE of a table without a replica identity (a warning in the
    server's log): an UPDATE that made a duplicate was never counted (its transaction also inserted another table's
    row; alone in its transaction only the known groups were re-counted), nor a DELETE that dissolved one. The
    stream reads such a table with a plugin that prints them."""
    if identity != "no primary key":
        execute(admin, f"ALTER TABLE {membership} ADD PRIMARY KEY (id), REPLICA IDENTITY NOTHING")
    execute(admin, f"INSERT INTO {membership} VALUES (1, 1, 1), (2, 1, 1), (3, 2, 2), (4, 3, 3)")
    recorded = Recorded()
    with following_reader(membership_monitor(monitor_for, cluster.url, membership), recorded) as reader:
        groups = reader.groups["membership"]
        assert groups.figures == (1, 1)
        in_one_transaction(cluster.url, f"INSERT INTO {table} (email) VALUES ('other@example.com')",
                           f"UPDATE {membership} SET role_id = 2, group_id = 2 WHERE id = 4")  # (2, 2) twice
        await_true(lambda: groups.figures == (2, 2), "the group the update made")
        in_one_transaction(cluster.url, f"INSERT INTO {table} (email) VALUES ('other@example.com')",
                           f"DELETE FROM {membership} WHERE id = 1")
        await_true(lambda: groups.figures == (1, 1) and not groups.pending
                   and (1, 1) not in {k for k, _n in groups.known.values()}, "the group the delete dissolved")
        execute(admin, f"UPDATE {membership} SET role_id = 1, group_id = 1 WHERE id = 3")  # alone: (1, 1), not (2, 2)
        await_true(lambda: (1, 1) in {k for k, _n in groups.known.values()} and groups.figures == (1, 1)
                   and not groups.pending, "the update alone in its transaction")
    assert recorded.gaps == []


def test_a_table_without_a_replica_identity_where_no_plugin_prints_its_updates_is_left_to_its_poll_in_one_line(
        cluster: Cluster, admin: sa.Engine, table: str, membership: str, monitor_for: Any, plugin: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Where the server lets the role use wal2json but not test_decoding (output_plugin_libraries), the slot made
    again for a table without a replica identity was made with wal2json once more, which prints none of its UPDATEs
    and DELETEs: an UPDATE that made a duplicate beside another change in its transaction was missed without a gap.
    Such a check is left to its poll, in one line saying what to change. (Making the slot again failed too: the
    refused plugin's error dropped the session's temporary slot, whose drop by name then failed; live mode never
    opened, retrying every 30 s.)"""
    if plugin != "wal2json":
        pytest.skip("wal2json is not installed (Debian: postgresql-15-wal2json)")
    if not set_plugin_libraries(cluster, "pgoutput, wal2json"):
        pytest.skip("the server has no output_plugin_libraries")
    try:
        execute(admin, f"INSERT INTO {membership} VALUES (1, 1, 1), (2, 2, 2)")
        monitor = monitor_for({"live": {"url": cluster.url}}, [
            {"name": "membership", "database": "live", "table": membership, "key": ["role_id", "group_id"]},
            {"name": "signups", "database": "live", "table": table, "key": ["email"]}])
        with caplog.at_level(logging.ERROR, logger="dupewatch.live"), \
                following_reader(monitor, Recorded()) as reader:
            assert "membership" not in reader.groups and "signups" in reader.groups
            assert reader.stream.plugin is WAL2JSON  # type: ignore[attr-defined]
            assert _slots(admin, reader.stream.backend_pid) == 1  # type: ignore[attr-defined]  # the old one dropped
        (line,) = [r.getMessage() for r in caplog.records if "leaves check" in r.getMessage()]
        assert line.startswith("database live: live = true leaves check membership to its poll: its table has no "
                               "replica identity (no primary key), and the output plugin wal2json prints none of "
                               "its UPDATEs and DELETEs"), line
    finally:
        allow_wal2json(cluster)


def test_a_table_that_loses_its_replica_identity_while_followed_is_a_gap_and_its_updates_are_followed(
        cluster: Cluster, admin: sa.Engine, table: str, membership: str, monitor_for: Any, plugin: str) -> None:
    """A primary key dropped while the stream is read: with wal2json the table's UPDATEs are not printed from then
    on, so that is a gap (every check counted in full), and the stream goes on with a plugin that prints them."""
    execute(admin, f"ALTER TABLE {membership} ADD PRIMARY KEY (id)")
    execute(admin, f"INSERT INTO {membership} VALUES (1, 1, 1), (2, 2, 2)")
    recorded = Recorded()
    with following_reader(membership_monitor(monitor_for, cluster.url, membership), recorded) as reader:
        groups = reader.groups["membership"]
        assert groups.figures == (0, 0)
        execute(admin, f"ALTER TABLE {membership} DROP CONSTRAINT {membership}_pkey")
        if plugin == "wal2json":
            await_true(lambda: len(recorded.gaps) == 1, "the identity lost reported as a gap")
            assert "replica identity" in recorded.gaps[0]
        in_one_transaction(cluster.url, f"INSERT INTO {table} (email) VALUES ('other@example.com')",
                           f"UPDATE {membership} SET role_id = 1, group_id = 1 WHERE id = 2")
        await_true(lambda: groups.figures == (1, 1), "the group the update made")
    assert len(recorded.gaps) == (plugin == "wal2json")


def test_the_shapes_read_before_each_read_skip_the_replica_identity_while_the_plugin_prints_such_tables(
        cluster: Cluster, admin: sa.Engine, table: str, membership: str, monitor_for: Any) -> None:
    """Review: the statement sent before every read (`_shapes_now`) also read each watched table's replica identity,
    which doubled its time on a table of 1000 partitions; while the slot's plugin prints the rows of a table without
    one (test_decoding, read for this table) that is of no use, and it is not read."""
    execute(admin, f"INSERT INTO {membership} VALUES (1, 1, 1), (2, 2, 2)")
    recorded = Recorded()
    with following_reader(membership_monitor(monitor_for, cluster.url, membership), recorded) as reader:
        stream = reader.stream
        assert stream.plugin is not None and stream.plugin.unidentified  # type: ignore[attr-defined]
        conn = stream._conn  # type: ignore[attr-defined]
        sent: list[str] = []
        execute_on = conn.execute

        def spied(query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return execute_on(query, *args, **kwargs)

        conn.execute = spied
        await_true(lambda: sum("relfilenode" in q for q in sent) >= 2, "two reads' shapes")
        assert not any("relreplident" in q for q in sent if "relfilenode" in q)
        assert [shape.split(":", 1)[0].rsplit("/", 1)[-1]
                for _s, _n, shape in stream._shapes.values()] == ["f"]  # type: ignore[attr-defined]
        execute(admin, f"UPDATE {membership} SET role_id = 1, group_id = 1 WHERE id = 2")
        await_true(lambda: reader.groups["membership"].figures == (1, 1), "the group the update made")
    assert recorded.gaps == []


def test_a_column_renamed_to_the_key_is_a_gap_and_its_group_is_counted(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """Renaming columns changes no type: the key's name may come to name another column (its old values are in no
    change), which makes the groups of that column's values the check's."""
    execute(admin, f"ALTER TABLE {table} ADD COLUMN email_next text")
    execute(admin, f"CREATE INDEX ON {table} (email_next)")  # the key's index once renamed
    execute(admin, f"INSERT INTO {table} (email, email_next) VALUES ('a@example.com', 'n@example.com'),"
                   " ('b@example.com', 'n@example.com')")
    with following_signups(monitor_for, cluster.url, table) as (reader, recorded):
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        with one_transaction(admin) as conn:
            conn.execute(sa.text(f"ALTER TABLE {table} RENAME COLUMN email TO email_before"))
            conn.execute(sa.text(f"ALTER TABLE {table} RENAME COLUMN email_next TO email"))
        await_true(lambda: groups.figures == (1, 1), "the group of the column now named email")
        await_true(lambda: len(recorded.gaps) == 1, "the rename reported as a gap")


@pytest.mark.parametrize("how", ["LOCAL", "server", "REPLACE", "STATEMENT"])
def test_mariadb_rows_a_load_data_infile_loads_are_followed(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any, tmp_path: Path,
        how: str) -> None:
    """`LOAD DATA [LOCAL] INFILE` into a watched table: in ROW format its rows are logged as rows (in STATEMENT
    format as the file's contents, a statement); a duplicate it loads is counted from the stream, one its REPLACE
    of an existing row makes too, without a gap. A session that logs it as a statement (`STATEMENT`): its rows
    are named nowhere, in events (Begin_load_query, Execute_load_query) the stream did not read: the duplicate was
    missed without a gap; it is a gap, every check counted in full. (The throwaway server has local_infile on and
    no secure_file_priv: it reads the test's file itself.)"""
    engine, table = mariadb_table
    execute(engine, f"INSERT INTO {table} (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com')")
    data = tmp_path / "rows.csv"
    data.write_text("b@example.com\nl@example.com\nl@example.com\n" if how != "REPLACE" else
                    "1,b@example.com\n")
    data.chmod(0o644)
    options = {"local_infile": "1"}  # LOCAL allowed
    if how == "STATEMENT":  # (it may not be set within a transaction)
        options["init_command"] = "SET SESSION binlog_format = 'STATEMENT'"
    loader = sa.create_engine(sa.make_url(mariadb.url).update_query_dict(options))
    statement = {"LOCAL": f"LOAD DATA LOCAL INFILE :path INTO TABLE {table} (email)",
                 "server": f"LOAD DATA INFILE :path INTO TABLE {table} (email)",
                 "STATEMENT": f"LOAD DATA INFILE :path INTO TABLE {table} (email)",
                 "REPLACE": f"LOAD DATA INFILE :path REPLACE INTO TABLE {table} FIELDS TERMINATED BY ','"
                            " (id, email)"}[how]
    try:
        with following_signups(monitor_for, mariadb.url, table) as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            with one_transaction(loader) as conn:
                conn.execute(sa.text(statement), {"path": str(data)})
            expected = (2, 2) if how != "REPLACE" else (1, 1)  # b and l twice each; or b on rows 1 and 2
            await_true(lambda: groups.figures == expected and not groups.pending, "the loaded rows' groups")
            if how == "STATEMENT":
                await_true(lambda: len(recorded.gaps) == 1, "the statement's gap")
                assert "LOAD DATA logged as a statement, naming no rows" in recorded.gaps[0]
            else:
                assert recorded.gaps == []
    finally:
        loader.dispose()
        execute(engine, f"DELETE FROM {table}")


def test_mariadb_a_duplicate_committed_by_an_xa_transaction_is_found(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    """MariaDB logs an XA transaction's rows at XA PREPARE, before they are committed (a re-count cannot see them
    yet), and its XA COMMIT later as a statement: the rows are counted once committed."""
    engine, table = mariadb_table
    monitor = signups_monitor(monitor_for, mariadb.url, table)
    recorded = Recorded()
    xid = f"dw{uuid.uuid4().hex[:8]}"
    with following_reader(monitor, recorded) as reader:
        groups = reader.groups["signups"]
        with engine.connect() as conn:
            conn.execute(sa.text(f"XA START '{xid}'"))
            conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('xa@example.com'), ('xa@example.com')"))
            conn.execute(sa.text(f"XA END '{xid}'"))
            conn.execute(sa.text(f"XA PREPARE '{xid}'"))
            try:
                await_true(lambda: recorded.events >= 2, "the prepared rows read from the binary log")
                assert groups.figures == (0, 0)  # not committed yet
            finally:
                conn.execute(sa.text(f"XA COMMIT '{xid}'"))
            await_true(lambda: groups.figures == (1, 1), "the group the XA transaction committed")


def test_mariadb_an_xa_transaction_prepared_before_the_stream_began_is_a_gap_at_its_commit(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:
    engine, table = mariadb_table
    monitor = signups_monitor(monitor_for, mariadb.url, table)
    recorded = Recorded()
    xid = f"dw{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f"XA START '{xid}'"))
        conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('xa@example.com'), ('xa@example.com')"))
        conn.execute(sa.text(f"XA END '{xid}'"))
        conn.execute(sa.text(f"XA PREPARE '{xid}'"))
        try:
            with following_reader(monitor, recorded) as reader:
                groups = reader.groups["signups"]
                assert groups.figures == (0, 0)
                conn.execute(sa.text(f"XA COMMIT '{xid}'"))
                await_true(lambda: groups.figures == (1, 1), "the group the XA transaction committed")
                await_true(lambda: len(recorded.gaps) == 1, "the commit of rows not kept reported as a gap")
        finally:  # a prepared transaction outlives its session and holds its locks: never left behind
            if conn.execute(sa.text("XA RECOVER")).fetchall():
                conn.execute(sa.text(f"XA ROLLBACK '{xid}'"))
    assert "XA COMMIT of a transaction whose rows were not kept" in recorded.gaps[0]


@pytest.mark.parametrize("reading", ["view", "unquoted non-ASCII name", "another database's view"])
def test_mariadb_a_where_reading_a_table_through_a_view_or_by_a_non_ascii_name_counts_the_check_in_full(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any, reading: str) -> None:
    """The tables a `where` reads were taken from the ASCII words of its text: a view's (the binary log names the
    table under it, never the view) and a table named in letters beyond ASCII (`ignoré`, unquoted) were not
    followed, and a row let back in made a duplicate the stream never counted. The definitions of the views the
    text names are read too, as the server stores them (every table in them qualified and quoted)."""
    engine, table = mariadb_table
    ignored = f"{table}_ignoré" if reading == "unquoted non-ASCII name" else f"{table}_ignored"
    other = f"revlive_{table}"
    execute(engine, f"CREATE TABLE `{ignored}` (signup_id int PRIMARY KEY)")
    execute(engine, f"INSERT INTO {table} (email) VALUES ('w@example.com'), ('w@example.com')")
    execute(engine, f"INSERT INTO `{ignored}` VALUES (2)")
    if reading == "view":
        execute(engine, f"CREATE VIEW {table}_v AS SELECT i.signup_id FROM {ignored} i")
        where = f"id NOT IN (SELECT signup_id FROM {table}_v)"
    elif reading == "another database's view":
        execute(engine, f"CREATE DATABASE {other}")
        execute(engine, f"CREATE VIEW {other}.v AS SELECT i.signup_id FROM {mariadb_db(engine)}.{ignored} i")
        where = f"id NOT IN (SELECT signup_id FROM `{other}`.`v`)"
    else:
        where = f"id NOT IN (SELECT signup_id FROM {ignored})"
    try:
        with following_signups(monitor_for, mariadb.url, table, where=where) as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            execute(engine, f"UPDATE `{ignored}` SET signup_id = 3")
            await_true(lambda: groups.figures == (1, 1), "the group a row let back in made")
        assert recorded.gaps == []
    finally:
        execute(engine, f"DROP VIEW IF EXISTS {table}_v")
        execute(engine, f"DROP DATABASE IF EXISTS {other}")
        execute(engine, f"DROP TABLE `{ignored}`")


def mariadb_db(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT DATABASE()")).scalar())


def test_a_partition_added_to_a_table_the_checks_where_reads_is_followed(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """The plan of a `where` reading a partitioned table names its partitions, not the table: a partition created
    while the stream was followed was none of the tables followed, and a row deleted from it (letting a row of the
    check back into the `where`) made a duplicate the stream never counted."""
    ignored = f"{table}_ignored"
    execute(admin, f"CREATE TABLE {ignored} (signup_id int, kind text, PRIMARY KEY (signup_id, kind))"
                   " PARTITION BY LIST (kind)")
    execute(admin, f"CREATE TABLE {ignored}_a PARTITION OF {ignored} FOR VALUES IN ('a')")
    execute(admin, f"INSERT INTO {table} (id, email) VALUES (1, 'w@example.com'), (2, 'w@example.com'),"
                   " (3, 'v@example.com'), (4, 'v@example.com')")
    execute(admin, f"INSERT INTO {ignored} VALUES (2, 'a'), (4, 'a')")
    try:
        with following_signups(monitor_for, cluster.url, table,
                               where=f"id NOT IN (SELECT signup_id FROM {ignored})") as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            execute(admin, f"CREATE TABLE {ignored}_b PARTITION OF {ignored} FOR VALUES IN ('b')")
            # the stream reads past it while it holds no row (a read begun after it): no gap, and no full count
            # finding the where's tables again
            for n, email in enumerate(("z@example.com", "y@example.com"), 1):
                execute(admin, f"INSERT INTO {table} (id, email) VALUES ({2 * n + 3}, '{email}'), ({2 * n + 4},"
                               f" '{email}')")
                await_true(lambda n=n: groups.figures == (n, n), "a group of the check's own table")
            execute(admin, f"INSERT INTO {ignored} VALUES (2, 'b')")
            execute(admin, f"DELETE FROM {ignored} WHERE kind = 'a'")  # a followed partition: counted in full
            await_true(lambda: groups.figures == (3, 3), "the group of the row let back in (4)")
            execute(admin, f"DELETE FROM {ignored} WHERE kind = 'b'")  # the new partition only
            await_true(lambda: groups.figures == (4, 4), "the group a row let back in (2) made")
        assert recorded.gaps == []
    finally:
        execute(admin, f"DROP TABLE {ignored}")


def test_a_delete_from_a_table_without_a_replica_identity_the_checks_where_reads_is_seen(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, plugin: str) -> None:
    """wal2json prints nothing of a DELETE from a table without a replica identity (no primary key): a table the
    `where` reads so (a plain list of ids, `ignored (signup_id int)`) let a row back in without a change the stream
    named, and the duplicate it made was never counted. As for a check's own table, a plugin that prints such a
    table's rows is read."""
    if plugin != "wal2json":
        pytest.skip("the stream reads test_decoding, which prints such a DELETE")
    ignored = f"{table}_ignored"
    execute(admin, f"CREATE TABLE {ignored} (signup_id int)")
    execute(admin, f"INSERT INTO {table} (email) VALUES ('w@example.com'), ('w@example.com')")
    execute(admin, f"INSERT INTO {ignored} VALUES (2)")
    try:
        with following_signups(monitor_for, cluster.url, table,
                               where=f"id NOT IN (SELECT signup_id FROM {ignored})") as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            execute(admin, f"DELETE FROM {ignored}")
            await_true(lambda: groups.figures == (1, 1), "the group a row let back in made")
        assert recorded.gaps == []
    finally:
        execute(admin, f"DROP TABLE {ignored}")


def test_a_check_whose_where_reads_an_unlogged_table_is_left_to_its_poll_in_one_line(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Logical decoding shows no change of an UNLOGGED table: one the `where` reads moved the check's rows in or out
    of it unseen (followed, a row let back in made a duplicate never counted, without a gap)."""
    ignored = f"{table}_ignored"
    execute(admin, f"CREATE UNLOGGED TABLE {ignored} (signup_id int PRIMARY KEY)")
    try:
        monitor = signups_monitor(monitor_for, cluster.url, table, where=f"id NOT IN (SELECT signup_id FROM {ignored})")
        with caplog.at_level(logging.ERROR, logger="dupewatch.live"), \
                following_reader(monitor, Recorded()) as reader:
            assert "signups" not in reader.groups
        (line,) = [r.getMessage() for r in caplog.records if "leaves check" in r.getMessage()]
        assert line.startswith(f"database live: live = true leaves check signups to its poll: a table its where reads,"
                               f" public.{ignored}: "), line
        assert f"{ignored} (UNLOGGED)" in line
    finally:
        execute(admin, f"DROP TABLE {ignored}")


def test_a_refresh_of_a_materialized_view_the_checks_where_reads_counts_the_check(
        cluster: Cluster, admin: sa.Engine, table: str, monitor_for: Any) -> None:
    """REFRESH MATERIALIZED VIEW (not CONCURRENTLY) fills a new storage: logical decoding shows none of its rows.
    A view the `where` reads refreshed so let a row back in without a change the stream named, and the duplicate it
    made was never counted. Its storage is now watched as a check's table's: a gap, every check counted in full."""
    ignored = f"{table}_ignored"
    execute(admin, f"CREATE TABLE {ignored} (signup_id int PRIMARY KEY)")
    execute(admin, f"INSERT INTO {ignored} VALUES (2)")
    execute(admin, f"CREATE MATERIALIZED VIEW {ignored}_mv AS SELECT signup_id FROM {ignored}")
    execute(admin, f"INSERT INTO {table} (email) VALUES ('w@example.com'), ('w@example.com')")
    try:
        with following_signups(monitor_for, cluster.url, table,
                               where=f"id NOT IN (SELECT signup_id FROM {ignored}_mv)") as (reader, recorded):
            groups = reader.groups["signups"]
            assert groups.figures == (0, 0)
            execute(admin, f"DELETE FROM {ignored}")
            execute(admin, f"REFRESH MATERIALIZED VIEW {ignored}_mv")
            await_true(lambda: groups.figures == (1, 1), "the group a row let back in made")
        assert len(recorded.gaps) == 1 and f"{ignored}_mv" in recorded.gaps[0], recorded.gaps  # said, not hidden
    finally:
        execute(admin, f"DROP TABLE {ignored} CASCADE")

"""A fleet target's checks run as one round on one connection, and a plain check that runs without reflecting its
table still names a missing column as any check does (real PostgreSQL, databases named for this test only)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from dbtest import PG_URL, write_config
from fleetdb import TABLE, Fleet, mysql_databases, pg_databases
from monitor.config import load_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet import expand
from monitor.fleet.discover import discover_all
from monitor.schedule import Poller


class AllResults(dict[str, CheckResult]):
    """A poller's results by check name; `done` is set once `expected` checks reported."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, result: CheckResult) -> None:
        self[result.name] = result
        if len(self) == self.expected:
            self.done.set()



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
        results = AllResults(len(config.checks))

        poller = Poller(monitor, results, stagger=False)
        poller.start()
        try:
            assert results.done.wait(60), f"only {sorted(results)} ran"
        finally:
            poller.shutdown()
            monitor.close()
        assert connects == Counter({name: 1 for name in fleet.names})  # three checks, one connection per target
        for name in fleet.names:
            assert results[f"pair@{name}"].excess_rows == fleet.excess[name]
            assert results[f"user@{name}"].excess_rows == fleet.excess[name]
            error: Any = results[f"typo@{name}"].error
            assert "key: unknown column 'user_idd'" in error and "did you mean 'user_id'" in error


WAITING_ON_A_LOCK = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock'",
    "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = :d AND state LIKE 'Waiting for table%'",
}


@contextmanager
def table_locked(dialect: str, fleet: Fleet, database: str) -> Iterator[Callable[[], bool]]:
    """`TABLE` of `database` locked against readers until the block ends; yields whether a statement waits on it
    (asked on a connection of its own, outside any transaction: PostgreSQL's activity view is a snapshot per
    transaction)."""
    engine = sa.create_engine(fleet.url_of(database))
    admin = sa.create_engine(fleet.server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as lock, lock.begin(), admin.connect() as watch:
            lock.execute(sa.text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE" if dialect == "postgresql"
                                 else f"LOCK TABLES {TABLE} WRITE"))
            yield lambda: bool(watch.execute(sa.text(WAITING_ON_A_LOCK[dialect]), {"d": database}).scalar())
            if dialect == "mysql":
                lock.execute(sa.text("UNLOCK TABLES"))
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_cancelled_unreflected_statement_is_not_run_again_by_the_reflected_check(dialect: str, tmp_path: Path):
    """A statement cancelled by the client-side deadline or by a stop (`cancel_running`: quit, reload) is the
    check's error; it is not taken for a refused definition and run again, reflected, past the cancel."""
    databases = pg_databases if dialect == "postgresql" else mysql_databases
    with databases(1) as fleet:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "pair", "source": "tenants", "table": TABLE, "key": ["user_id", "agent"], "interval": 3600}],
            **{"sources.tenants": {"url": fleet.server_url, "discover": "databases", "include": fleet.include}})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        monitor = Monitor(config)
        check = config.checks[0]
        db = monitor.database(check.database)
        scans: list[Any] = []  # the connections that ran the figures statement
        after_cancel: list[str] = []
        cancelled = threading.Event()

        def counted(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if cancelled.is_set() and conn in scans:
                after_cancel.append(statement)
            elif "dupewatch_groups" in statement:
                scans.append(conn)

        event.listen(db.engine, "before_cursor_execute", counted)
        results: list[CheckResult] = []
        try:
            with table_locked(dialect, fleet, fleet.names[0]) as waiting:
                runner = threading.Thread(target=lambda: results.append(monitor.run(check.name)))
                runner.start()
                deadline = time.monotonic() + 30
                while not scans or not waiting():
                    assert time.monotonic() < deadline, "the check's statement never waited on the lock"
                    time.sleep(0.05)
                cancelled.set()
                assert db.cancel_running() == 1
                runner.join(30)
        finally:
            event.remove(db.engine, "before_cursor_execute", counted)
            monitor.close()
        assert not runner.is_alive()
        assert results[0].status == "error", results[0]
        assert after_cancel == [], f"the cancelled check went on: {after_cancel}"


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_tenant_missing_the_timestamp_or_order_by_column_fails_as_a_reflected_check_does(dialect: str,
                                                                                          tmp_path: Path):
    """The unreflected statement names every column the check names (not only its key), so that a tenant whose
    table lacks one fails with the reflected check's error, not with figures a fix of it would then refuse."""
    databases = pg_databases if dialect == "postgresql" else mysql_databases
    with databases(2) as fleet:
        complete, lacking = fleet.names
        engine = sa.create_engine(fleet.url_of(complete))
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {TABLE} ADD COLUMN created_at TIMESTAMP NULL, ADD COLUMN seq INT"))
        engine.dispose()
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "born", "source": "tenants", "table": TABLE, "key": ["user_id"], "timestamp": "created_at"},
            {"name": "ordered", "source": "tenants", "table": TABLE, "key": ["user_id"], "order_by": ["seq"]}],
            **{"sources.tenants": {"url": fleet.server_url, "discover": "databases", "include": fleet.include}})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        monitor = Monitor(config)
        try:
            results = {check.name: monitor.run(check.name) for check in config.checks}
        finally:
            monitor.close()
        assert results[f"born@{complete}"].excess_rows == fleet.excess[complete]
        assert results[f"ordered@{complete}"].excess_rows == fleet.excess[complete]
        born, ordered = results[f"born@{lacking}"], results[f"ordered@{lacking}"]
        assert born.status == "error" and "timestamp: unknown column 'created_at'" in (born.error or ""), born
        assert ordered.status == "error" and "order_by: unknown column 'seq'" in (ordered.error or ""), ordered


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_connection_dropped_mid_round_fails_that_check_with_the_servers_word_and_the_next_reconnects(
        dialect: str, tmp_path: Path):
    """The server ends a round's connection while a check's statement waits (an administrator's kill, a
    failover): that check fails saying so, not with an internal error, and the round's next check runs on a
    new connection."""
    databases = pg_databases if dialect == "postgresql" else mysql_databases
    with databases(1) as fleet:
        name = fleet.names[0]
        engine = sa.create_engine(fleet.url_of(name))
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE other (id INT PRIMARY KEY, k INT)"))
            conn.execute(sa.text("INSERT INTO other VALUES (1, 1), (2, 1)"))
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "killed", "source": "tenants", "table": TABLE, "key": ["user_id"], "interval": 3600},
            {"name": "next", "source": "tenants", "table": "other", "key": ["k"], "interval": 3600}],
            **{"sources.tenants": {"url": fleet.server_url, "discover": "databases", "include": fleet.include}})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        monitor = Monitor(config)
        results = AllResults(len(config.checks))

        admin = sa.create_engine(fleet.server_url, isolation_level="AUTOCOMMIT")
        poller = Poller(monitor, results, stagger=False)
        try:
            with engine.connect() as lock, lock.begin(), admin.connect() as kill:
                lock.execute(sa.text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE" if dialect == "postgresql"
                                     else f"LOCK TABLES {TABLE} WRITE"))
                waiting = (sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock'")
                           if dialect == "postgresql" else
                           sa.text("SELECT id FROM information_schema.processlist WHERE db = :d AND state LIKE "
                                   "'Waiting for table%'"))
                poller.start()
                deadline = time.monotonic() + 30
                while (pid := kill.execute(waiting, {"d": name}).scalar()) is None:
                    assert time.monotonic() < deadline, "the check never waited on the lock"
                    time.sleep(0.05)
                kill.execute(sa.text(f"SELECT pg_terminate_backend({int(pid)})" if dialect == "postgresql"
                                     else f"KILL CONNECTION {int(pid)}"))
                assert results.done.wait(30), f"only {sorted(results)} ran"
                if dialect == "mysql":
                    lock.execute(sa.text("UNLOCK TABLES"))
        finally:
            poller.shutdown()
            monitor.close()
            admin.dispose()
            engine.dispose()
        killed, after = results[f"killed@{name}"], results[f"next@{name}"]
        assert killed.status == "error" and "internal error" not in (killed.error or ""), killed
        assert after.status == "duplicates" and after.excess_rows == 1, after


def test_a_reload_during_a_round_leaves_no_connection_behind(tmp_path: Path):
    """A reload closes the old monitor while a round runs on it: the check in flight is cancelled and the rest of
    the round is left to the new monitor, instead of running on the closed one, whose re-opened pools nothing
    would ever close (a connection held against the server's cap until the daemon exits, per reload)."""
    with pg_databases(1) as fleet:
        name = fleet.names[0]
        engine = sa.create_engine(fleet.url_of(name))
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE other (id INT PRIMARY KEY, k INT)"))
        path = write_config(tmp_path / "fleet.toml", {}, [  # checked often: the target keeps a pooled connection
            {"name": "first", "source": "tenants", "table": TABLE, "key": ["user_id"], "interval": 60},
            {"name": "second", "source": "tenants", "table": "other", "key": ["k"], "interval": 60},
            {"name": "third", "source": "tenants", "table": "other", "key": ["id"], "interval": 60}],
            **{"sources.tenants": {"url": PG_URL, "discover": "databases", "include": fleet.include}})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        old = Monitor(config)
        assert old.config.databases[config.checks[0].database].pooled  # type: ignore[union-attr]
        results: list[CheckResult] = []
        poller = Poller(old, results.append, stagger=False)
        connections = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d")
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")  # pg_stat_activity is read afresh
        try:
            with admin.connect() as watch:
                with engine.connect() as lock, lock.begin():
                    lock.execute(sa.text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
                    poller.start()
                    deadline = time.monotonic() + 30
                    while not watch.execute(sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND wait_event_type = 'Lock'"),
                            {"d": name}).scalar():
                        assert time.monotonic() < deadline, f"the first check never waited on the lock: {results}"
                        time.sleep(0.05)
                    new = Monitor(config)
                    poller.reload(new)  # as the daemon reloads: the new monitor in, then the old one closed
                    old.close()
                poller.shutdown(wait=True)
                new.close()
                engine.dispose()  # the lock's own connection
                deadline = time.monotonic() + 10  # a closed connection's backend leaves pg_stat_activity soon after
                while (left := watch.execute(connections, {"d": name}).scalar()) != 0:
                    assert time.monotonic() < deadline, f"{left} connection(s) left open"
                    time.sleep(0.05)
        finally:
            poller.shutdown()
            old.close()
            engine.dispose()
            admin.dispose()

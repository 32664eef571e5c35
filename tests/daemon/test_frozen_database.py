"""A frozen database (a throwaway PostgreSQL cluster whose postmaster and backends are stopped with SIGSTOP) is
reported down by the client-side deadline: only the frozen server would have enforced `statement_timeout`."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import DaemonProcess, daemon_starter, free_port
from pgcluster import Cluster, started_cluster

from dbtest import write_config

pytestmark = pytest.mark.timeout(180)

# The test waits for the client-side deadline and then a connect timeout (or a second deadline): each shortened (a
# `SELECT 1` on the cluster is far within them), the daemon's own by `TUNED`.
STATEMENT_TIMEOUT = 1.0
GRACE = 0.5  # monitor.db.DEADLINE_GRACE_SECONDS (2 s)
CANCEL_WAIT = 0.5  # monitor.db.CANCEL_WAIT_SECONDS (1 s)
CONNECT_TIMEOUT = 2  # monitor.db.CONNECT_TIMEOUT_SECONDS (5 s); whole seconds, libpq's least
TUNED = (f"import monitor.db as d; d.DEADLINE_GRACE_SECONDS = {GRACE}; d.CANCEL_WAIT_SECONDS = {CANCEL_WAIT}; "
         f"d.CONNECT_TIMEOUT_SECONDS = {CONNECT_TIMEOUT}",)
UP = "dupewatch_check_up"


@pytest.fixture(scope="module")
def started() -> Iterator[Cluster]:
    yield from started_cluster("the frozen-database tests")


@pytest.fixture
def cluster(started: Cluster) -> Iterator[Cluster]:
    """The module's cluster, thawed after each test (one that failed while it was frozen too)."""
    yield started
    started.signal_all(signal.SIGCONT)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def test_a_frozen_database_reports_up_0_within_the_deadline(cluster: Cluster, tmp_path: Path, start_daemon) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "dupewatch.toml", {"frozen": {"url": cluster.url, "statement_timeout": f"{STATEMENT_TIMEOUT}s"}},
        [{"name": "frozen-check", "database": "frozen", "sql": "SELECT 1 AS a WHERE false", "interval": 0.5}],
        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    daemon: DaemonProcess = start_daemon(config, port, tuning=TUNED)
    daemon.wait_for(lambda s: s.value(UP, "frozen-check") == 1, "the first successful run")

    cluster.signal_all(signal.SIGSTOP)
    frozen_at = time.monotonic()
    # A run that started just before the freeze has the whole deadline (its statement, or the session reset when
    # the connection is returned); the next run's ping then waits it too, or its new connection the connect timeout.
    # Each expiry also waits for the cancel and then for the statement to give up before the socket is shut
    # (CANCEL_WAIT each).
    deadline = STATEMENT_TIMEOUT + GRACE + 2 * CANCEL_WAIT
    budget = deadline + max(deadline, CONNECT_TIMEOUT) + 3
    daemon.wait_for(lambda s: s.value(UP, "frozen-check") == 0, "up = 0 while the database is frozen",
                    timeout=budget)
    assert time.monotonic() - frozen_at < budget
    assert "client-side deadline" in daemon.log()

    cluster.signal_all(signal.SIGCONT)
    daemon.wait_for(lambda s: s.value(UP, "frozen-check") == 1, "up = 1 again once the database thaws",
                    timeout=30)
    assert daemon.stop() == 0


def test_a_frozen_database_is_not_said_to_be_running_a_call_it_does_not_interrupt(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline's cancel never reached a frozen server, so its error says no more than that the query was
    cancelled: `did not stop within ...` is for a server that took the cancel and still runs the statement."""
    from monitor.config import DatabaseConfig
    from monitor.db import Database, DatabaseError

    monkeypatch.setattr("monitor.db.DEADLINE_GRACE_SECONDS", GRACE)  # as in the daemon of the test above
    monkeypatch.setattr("monitor.db.CANCEL_WAIT_SECONDS", CANCEL_WAIT)

    database = Database("frozen", DatabaseConfig(url=cluster.url, statement_timeout=f"{STATEMENT_TIMEOUT}s"))
    try:
        with pytest.raises(DatabaseError) as raised, database.read_only() as conn:
            conn.exec_driver_sql("SELECT 1").close()
            cluster.signal_all(signal.SIGSTOP)
            conn.exec_driver_sql("SELECT 1")
    finally:
        cluster.signal_all(signal.SIGCONT)
        database.dispose()
    message = str(raised.value)
    assert "query cancelled, connection discarded" in message and "did not stop within" not in message, message

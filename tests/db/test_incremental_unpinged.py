"""An incremental run's pooled connection is not pinged at checkout (`Database.reading`): where the server dropped
it between two runs, the run's first statement meets the lost connection and the run starts again, once, on a
fresh one, as the ping would have replaced it; a connection lost after a statement was answered fails as before."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_incremental import Runner, insert, ts_type

from dbtest import TestDatabase, make_test_database
from monitor.db import Database

pytestmark = pytest.mark.timeout(120)

SERVER_DIALECTS = ["mysql", "postgresql"]
SESSION_ID = {"mysql": "SELECT CONNECTION_ID()", "postgresql": "SELECT pg_backend_pid()"}
KILL = {"mysql": "KILL CONNECTION {}", "postgresql": "SELECT pg_terminate_backend({})"}


@pytest.fixture(params=SERVER_DIALECTS)
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    made = make_test_database(request.param, tmp_path)
    db = next(made)
    db.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device TEXT,"
               f" created_at {ts_type(db)} NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device(20))"
               if db.dialect == "mysql" else "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(1, 1, "a"), (2, 1, "a"), (3, 2, "b")])
    yield db
    made.close()


@pytest.fixture
def runner(server_db: TestDatabase, tmp_path: Path) -> Iterator[Runner]:
    r = Runner(server_db, tmp_path / "state.sqlite", table="logins", key=["user_id", "device"], incremental="id")
    yield r
    r.close()


def pooled_session(r: Runner) -> int:
    """The server's id of the session the incremental check's pool keeps (it holds one: the runs take turns)."""
    engine = r.monitor.database_for(r.monitor.config.check("inc")).engine
    assert engine.pool.checkedin() == 1
    with engine.connect() as conn:  # the pooled connection itself, not pinged
        return int(conn.exec_driver_sql(SESSION_ID[r.db.dialect]).scalar_one())


def kill(db: TestDatabase, session: int) -> None:
    db.execute(KILL[db.dialect].format(int(session)))
    alive = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {}" if db.dialect == "mysql" else \
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {}"
    for _ in range(200):  # the server ends the session asynchronously
        if db.scalar(alive.format(int(session))) == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"session {session} still alive")


def counting_pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    real = Database._ping

    def ping(self: Database, conn: Any) -> None:
        pings.append(1)
        real(self, conn)

    monkeypatch.setattr(Database, "_ping", ping)
    return pings


def test_a_run_sends_no_ping_on_its_pooled_connection(runner, monkeypatch):
    assert runner.run().mode == "full"
    pings = counting_pings(monkeypatch)
    assert runner.run().mode == "incremental"
    assert pings == []
    runner.oracle()  # a plain check still pings its pooled connection
    assert pings == [1]


def test_a_run_after_the_server_killed_its_pooled_connection_runs_on_a_fresh_one(server_db, runner, caplog):
    caplog.set_level(logging.INFO, logger="dupewatch.db")
    assert runner.run().mode == "full"
    assert runner.run().mode == "incremental"
    before = pooled_session(runner)
    kill(server_db, before)
    insert(server_db, [(4, 2, "b"), (5, 3, "c")])
    result = runner.run()  # would fail as a lost connection without the run again
    assert (result.mode, result.groups, result.excess_rows, result.new_groups) == ("incremental", 2, 2, 1)
    runner.assert_matches_full_pass(result)
    assert "pooled connection lost, running again on a fresh one" in caplog.text
    assert pooled_session(runner) != before
    again = runner.run()  # and the next runs go on from the saved state
    assert (again.mode, again.groups, again.rows_scanned) == ("incremental", 2, 0)


def test_a_connection_lost_after_an_answer_fails_the_run_without_running_it_again(server_db, runner):
    assert runner.run().mode == "full"
    database = runner.monitor.database_for(runner.monitor.config.check("inc"))
    calls: list[int] = []

    def work(conn: sa.Connection) -> None:
        calls.append(1)
        session = conn.exec_driver_sql(SESSION_ID[server_db.dialect]).scalar_one()
        kill(server_db, session)
        conn.exec_driver_sql("SELECT 1").all()

    with pytest.raises(sa.exc.DBAPIError) as raised:
        database.reading(work)
    assert raised.value.connection_invalidated
    assert calls == [1]
    after = runner.run()  # the pool replaced the lost connection
    assert after.error is None and after.mode == "incremental"

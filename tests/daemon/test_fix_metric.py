"""`dupewatch_fix_deleted_rows_total` in a daemon counts the fixes other processes ran: a real daemon, a real
`dupewatch fix` in another process, the metric read by scraping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import daemon_starter, free_port

from dbtest import run_dupewatch, write_config
from monitor.config import DatabaseConfig
from monitor.db import Database
from monitor.fixstats import Unread, totals_by_check

pytestmark = pytest.mark.timeout(120)
DELETED = "dupewatch_fix_deleted_rows_total"
RESTORED = "dupewatch_fix_restored_rows_total"


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def test_a_fix_run_by_the_cli_shows_in_the_daemons_deleted_rows(pg, tmp_path, start_daemon):
    pg.execute("CREATE TABLE signup (id INTEGER PRIMARY KEY, email TEXT NOT NULL)",
               "INSERT INTO signup SELECT g, 'u' || (g % 10) || '@example.com' FROM generate_series(1, 25) g")
    excess = 25 - 10
    port = free_port()
    path = write_config(tmp_path / "dw.toml", {"app": {"url": pg.url}},
                        [{"name": "signups", "database": "app", "table": "signup", "key": ["email"],
                          "interval": "0.5s"},
                         {"name": "other", "database": "app", "table": "signup", "key": ["id"], "interval": "1h"}],
                        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})
    daemon = start_daemon(path, port)
    daemon.wait_for(lambda s: s.value("dupewatch_duplicate_excess_rows", "signups") == excess, "the first run")
    assert daemon.scrape().value(DELETED, "signups") == 0

    fixed = run_dupewatch("fix", "signups", "--yes", "--json", "--config", path)
    assert fixed.code == 0, fixed.output
    assert fixed.json["deleted"] == excess

    scrape = daemon.wait_for(lambda s: s.value(DELETED, "signups") == excess, "the fix's rows in the metric")
    assert scrape.value(DELETED, "other") == 0  # counted for the check that was fixed only
    daemon.wait_for(lambda s: s.value("dupewatch_duplicate_excess_rows", "signups") == 0, "the next run")
    assert daemon.scrape().value(DELETED, "signups") == excess  # read again, not added twice
    assert daemon.stop() == 0


def test_an_undo_run_by_the_cli_shows_in_the_daemons_restored_rows_and_deleted_rows_stay(pg, tmp_path,
                                                                                           start_daemon):
    pg.execute("CREATE TABLE signup (id INTEGER PRIMARY KEY, email TEXT NOT NULL)",
               "INSERT INTO signup SELECT g, 'u' || (g % 4) || '@example.com' FROM generate_series(1, 10) g")
    excess = 10 - 4
    port = free_port()
    path = write_config(tmp_path / "dw.toml", {"app": {"url": pg.url}},
                        [{"name": "signups", "database": "app", "table": "signup", "key": ["email"],
                          "interval": "0.5s"}],
                        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})
    daemon = start_daemon(path, port)
    daemon.wait_for(lambda s: s.value("dupewatch_duplicate_excess_rows", "signups") == excess, "the first run")
    assert (daemon.scrape().value(DELETED, "signups"), daemon.scrape().value(RESTORED, "signups")) == (0, 0)

    fixed = run_dupewatch("fix", "signups", "--yes", "--json", "--config", path)
    assert fixed.code == 0, fixed.output
    daemon.wait_for(lambda s: s.value(DELETED, "signups") == excess, "the fix's rows in the metric")
    daemon.wait_for(lambda s: s.value("dupewatch_duplicate_excess_rows", "signups") == 0, "a run after the fix")
    undone = run_dupewatch("undo", fixed.json["fix_id"], "--yes", "--config", path)
    assert undone.code == 0, undone.output
    scrape = daemon.wait_for(lambda s: s.value(RESTORED, "signups") == excess, "the undo's rows in the metric")
    assert scrape.value(DELETED, "signups") == excess  # a counter: the undone fix still deleted its rows once
    purged = run_dupewatch("fixes", "purge", fixed.json["fix_id"], "--yes", "--config", path)
    assert purged.code == 0, purged.output
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "purged"
    database = Database("app", DatabaseConfig(url=pg.url))  # what a daemon started now reads
    try:
        totals = totals_by_check(database)
    finally:
        database.dispose()
    assert totals is not None and (totals.deleted, totals.restored) == ({"signups": excess}, {"signups": excess})
    daemon.wait_for(lambda s: s.value("dupewatch_duplicate_excess_rows", "signups") == excess, "a run after purge")
    assert (daemon.scrape().value(DELETED, "signups"), daemon.scrape().value(RESTORED, "signups")) == (excess,
                                                                                                      excess)
    assert daemon.stop() == 0


def test_an_empty_listen_host_serves_on_loopback(tmp_path, start_daemon, sqlite_db):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)")
    port = free_port()
    path = write_config(tmp_path / "dw.toml", {"d": {"url": sqlite_db.url}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"], "interval": "1h"}],
                        metrics={"listen": f":{port}"}, state={"path": str(tmp_path / "state.sqlite")})
    daemon = start_daemon(path, port)  # it answers on 127.0.0.1 (daemonproc scrapes there) ...
    daemon.wait_for(lambda _: "dupewatch daemon started" in daemon.log(), "the start-up log line")
    assert f"metrics=http://127.0.0.1:{port}/metrics" in daemon.log()  # ... and says it listens there only
    assert daemon.stop() == 0


def test_fix_records_the_detection_role_cannot_read_are_said_once_not_counted_as_none(pg, tmp_path, start_daemon):
    """deploy/README's detection role reads the checked tables only: the fix records (`dupewatch_fix`, written by the
    fix role) are refused to it, and `dupewatch_fix_deleted_rows_total` stayed 0 after a fix deleted rows, with no
    word in the log. The daemon says once why the fixes are not counted (the server's words)."""
    from sqlalchemy.engine import make_url

    from dbtest import server_login

    pg.execute("CREATE TABLE signup (id INTEGER PRIMARY KEY, email TEXT NOT NULL)",
               "INSERT INTO signup SELECT g, 'u' || (g % 4) || '@example.com' FROM generate_series(1, 10) g")
    checks = [{"name": "signups", "database": "app", "table": "signup", "key": ["email"], "interval": "0.2s"}]
    fixing = write_config(tmp_path / "fix.toml", {"app": {"url": pg.url}}, checks,
                          state={"path": str(tmp_path / "fix-state.sqlite")})
    fixed = run_dupewatch("fix", "signups", "--yes", "--json", "--config", fixing)
    assert fixed.code == 0, fixed.output
    pg.execute("INSERT INTO signup VALUES (11, 'u1@example.com')")
    with server_login("postgresql", f'GRANT USAGE ON SCHEMA "{pg.schema}" TO {{user}}',
                      f'GRANT SELECT ON "{pg.schema}".signup TO {{user}}', prefix="dw_ro") as role:
        url = make_url(pg.url).set(username=role).render_as_string(hide_password=False)
        port = free_port()
        path = write_config(tmp_path / "dw.toml", {"app": {"url": url}}, checks,
                            metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})
        daemon = start_daemon(path, port)
        daemon.wait_for(lambda s: (s.value("dupewatch_check_duration_seconds_count", "signups") or 0) >= 3
                        and "fix records cannot be read" in daemon.log(), "the fix records to be read")
        assert daemon.stop() == 0
    log = daemon.log()
    assert log.count("fix records cannot be read") == 1, log[-2000:]
    assert "permission denied" in log and "dupewatch_fix" in log, log[-2000:]
    assert "SQLSTATE 42501: grant the detection role SELECT on dupewatch_fix" in log, log[-2000:]


def test_mariadb_fix_records_a_role_with_table_grants_only_cannot_read_are_a_reason_not_an_error(mysql):
    """A MariaDB detection role granted on the checked table only: the server answers it "SELECT command denied"
    for dupewatch_fix whether or not the table exists. The daemon's read of the fix records says so (the reason it
    logs once), and never raises the fix's own refusal into the daemon."""
    from sqlalchemy.engine import make_url

    from dbtest import server_login
    from monitor.fixstats import read_totals

    mysql.execute("CREATE TABLE signup (id INTEGER PRIMARY KEY, email VARCHAR(40) NOT NULL)")
    with server_login("mysql", f"GRANT SELECT ON `{mysql.schema}`.signup TO {{user}}", prefix="dw_ro") as role:
        database = Database("app", DatabaseConfig(url=make_url(mysql.url).set(username=role, password=None)
                                                  .render_as_string(hide_password=False)))
        try:
            read = read_totals(database)
        finally:
            database.dispose()
    assert isinstance(read, Unread) and "denied" in read.reason and "dupewatch_fix" in read.reason, read
    assert read.privilege == "error 1142", read  # ER_TABLEACCESS_DENIED_ERROR: the warning suggests the grant


def test_fix_records_an_older_dupewatch_wrote_without_a_column_are_said_with_the_servers_reason_not_a_privilege(
        pg, tmp_path, start_daemon):
    """`dupewatch_fix` made by an older dupewatch, without the `archived` column: the server refuses the read with
    an undefined column (SQLSTATE 42703), not a privilege. The daemon's warning said "grant the detection role
    SELECT" whatever the cause; it names the server's reason, and a privilege only for a privilege refusal."""
    pg.execute("CREATE TABLE signup (id INTEGER PRIMARY KEY, email TEXT NOT NULL)",
               "CREATE TABLE dupewatch_fix (fix_id varchar(40) PRIMARY KEY, check_name varchar(200) NOT NULL,"
               " state varchar(16) NOT NULL, deleted bigint NOT NULL DEFAULT 0, message text)")
    port = free_port()
    path = write_config(tmp_path / "dw.toml", {"app": {"url": pg.url}},
                        [{"name": "signups", "database": "app", "table": "signup", "key": ["email"],
                          "interval": "1h"}],
                        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})
    daemon = start_daemon(path, port)
    daemon.wait_for(lambda _: "fix records cannot be read" in daemon.log(), "the fix records to be read")
    assert daemon.stop() == 0
    line = next(line for line in daemon.log().splitlines() if "fix records cannot be read" in line)
    assert "archived" in line and "does not exist" in line, line
    assert "grant" not in line.lower(), line

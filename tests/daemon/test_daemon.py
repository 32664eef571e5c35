"""A real daemon process against real PostgreSQL, scraped over HTTP: figures, outages, reloads, signals, logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from daemonproc import DaemonProcess, Scrape, daemon_command, daemon_starter, free_port
from sqlalchemy.engine import make_url

from dbtest import PG_URL, REPO_ROOT, run_dupewatch, write_config

INTERVAL = 0.5
PASSWORD = "S3cret-Passw0rd-xyzzy"
UP, GROUPS, EXCESS = "dupewatch_check_up", "dupewatch_duplicate_groups", "dupewatch_duplicate_excess_rows"
ERRORS, LAST_SUCCESS = "dupewatch_check_errors_total", "dupewatch_check_last_success_timestamp_seconds"


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def figures_by_sql(execute: Any, table: str, key: str) -> tuple[int, int]:
    """Duplicate groups and excess rows counted independently of dupewatch's SQL."""
    rows = execute(f"SELECT count(*) AS n FROM {table} GROUP BY {key} HAVING count(*) > 1")
    return len(rows), sum(n - 1 for (n,) in rows)


def config_file(tmp_path: Path, port: int, databases: dict[str, dict[str, Any]],
                checks: list[dict[str, Any]], name: str = "dupewatch.toml") -> Path:
    return write_config(tmp_path / name, databases, checks,
                        metrics={"listen": f"127.0.0.1:{port}"},
                        state={"path": str(tmp_path / "history.sqlite")})


def check(name: str, database: str, table: str, key: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "database": database, "table": table, "key": key, "interval": INTERVAL, **extra}


def seed_orders(pg: Any) -> None:
    pg.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer int NOT NULL, ref text NOT NULL)")
    # 40 distinct orders, then 7 keys written twice and 2 keys written four times: 9 groups, 13 excess.
    pg.execute("INSERT INTO orders (customer, ref) SELECT g % 5, 'r' || g FROM generate_series(1, 40) g")
    pg.execute("INSERT INTO orders (customer, ref) SELECT g % 5, 'r' || g FROM generate_series(1, 9) g")
    pg.execute("INSERT INTO orders (customer, ref) SELECT g % 5, 'r' || g FROM generate_series(1, 2) g, "
               "generate_series(1, 2)")


def test_figures_match_independent_sql_and_new_duplicates_show_up_within_a_few_intervals(
        pg, tmp_path: Path, start_daemon) -> None:
    seed_orders(pg)
    port = free_port()
    config = config_file(tmp_path, port, {"main": {"url": pg.url}},
                         [check("orders_ref", "main", "orders", ["customer", "ref"])])
    daemon: DaemonProcess = start_daemon(config, port)

    expected = figures_by_sql(pg.rows, "orders", "customer, ref")
    assert expected == (9, 13)
    scrape = daemon.wait_for(lambda s: s.value(UP, "orders_ref") == 1, "the first successful run")
    assert (scrape.value(GROUPS, "orders_ref"), scrape.value(EXCESS, "orders_ref")) == expected
    assert scrape.value(ERRORS, "orders_ref") == 0
    assert scrape.value(LAST_SUCCESS, "orders_ref") == pytest.approx(time.time(), abs=30)
    assert scrape.value("dupewatch_check_interval_seconds", "orders_ref") == INTERVAL

    # The application races again: three new pairs.
    pg.execute("INSERT INTO orders (customer, ref) SELECT g % 5, 'r' || g FROM generate_series(30, 32) g")
    inserted = time.monotonic()
    expected = figures_by_sql(pg.rows, "orders", "customer, ref")
    assert expected == (12, 16)
    daemon.wait_for(lambda s: (s.value(GROUPS, "orders_ref"), s.value(EXCESS, "orders_ref")) == expected,
                    "the new duplicates to show up")
    assert time.monotonic() - inserted < 8 * INTERVAL + 2  # a few intervals, with room for a busy machine
    assert daemon.stop() == 0


@pytest.fixture
def spare_pg_database() -> Iterator[tuple[str, str, sa.Engine]]:
    """A whole PostgreSQL database of its own (so the test can drop it under the daemon)."""
    name = f"dw_spare_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable: {str(exc).splitlines()[0]}")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield name, url, admin
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def plant_pairs(url: str, pairs: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE logins (id serial PRIMARY KEY, user_id int, agent text)"))
            conn.execute(sa.text("INSERT INTO logins (user_id, agent) SELECT g, 'firefox' "
                                 "FROM generate_series(1, :n) g, generate_series(1, 2)"), {"n": pairs})
            conn.execute(sa.text("INSERT INTO logins (user_id, agent) VALUES (1000, 'curl')"))
    finally:
        engine.dispose()


def test_a_dropped_database_goes_down_without_delaying_others_and_recovers_with_fresh_figures(
        pg, spare_pg_database, tmp_path: Path, start_daemon) -> None:
    name, spare_url, admin = spare_pg_database
    plant_pairs(spare_url, 3)
    seed_orders(pg)
    port = free_port()
    config = config_file(tmp_path, port, {"main": {"url": pg.url}, "spare": {"url": spare_url}}, [
        check("steady", "main", "orders", ["customer", "ref"]),
        check("doomed", "spare", "logins", ["user_id", "agent"]),
    ])
    daemon = start_daemon(config, port)
    daemon.wait_for(lambda s: s.value(UP, "steady") == 1 and s.value(UP, "doomed") == 1, "both checks up")

    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    dropped = time.time()

    down = daemon.wait_for(lambda s: s.value(UP, "doomed") == 0 and (s.value(ERRORS, "doomed") or 0) >= 2,
                           "the dropped database's check to go down with errors counted")
    # Its figures stay at the last success (documented): no fake "0 duplicates" from a database that is gone.
    assert (down.value(GROUPS, "doomed"), down.value(EXCESS, "doomed")) == (3, 3)
    assert (down.value(LAST_SUCCESS, "doomed") or 0) < dropped
    # The other database's check kept succeeding on its own schedule meanwhile.
    daemon.wait_for(lambda s: (s.value(LAST_SUCCESS, "steady") or 0) > dropped + 2 * INTERVAL
                    and s.value(UP, "steady") == 1 and s.value(ERRORS, "steady") == 0,
                    "the other check to keep updating")
    assert "check failed check=doomed" in daemon.log()

    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    plant_pairs(spare_url, 5)
    recreated = time.time()
    back = daemon.wait_for(lambda s: s.value(UP, "doomed") == 1, "the recreated database's check to recover",
                           timeout=40)
    assert (back.value(GROUPS, "doomed"), back.value(EXCESS, "doomed")) == (5, 5)
    assert (back.value(LAST_SUCCESS, "doomed") or 0) >= recreated
    assert daemon.stop() == 0


def test_a_restart_keeps_the_last_figures_and_success_time_until_a_run_replaces_them(
        pg, tmp_path: Path, start_daemon) -> None:
    """Restarted while its database is unreachable, the daemon still says what it last saw, and when."""
    seed_orders(pg)
    port = free_port()
    config = config_file(tmp_path, port, {"main": {"url": pg.url}}, [check("orders_ref", "main", "orders",
                                                                           ["customer", "ref"])])
    first = start_daemon(config, port)
    seen = first.wait_for(lambda s: s.value(UP, "orders_ref") == 1, "the first successful run")
    assert first.stop() == 0
    stopped = time.time()
    last_success = seen.value(LAST_SUCCESS, "orders_ref")
    # Restarted after a run that may have landed between that scrape and the stop: the store's last word. The
    # same server and database, which refuses the login now (a URL naming another database measures another
    # thing: its figures are not these, see test_a_restart_never_restores_another_databases_figures).
    unreachable = make_url(pg.url).set(username=f"dw_missing_{uuid.uuid4().hex[:8]}")
    config = config_file(tmp_path, port, {"main": {"url": unreachable.render_as_string(hide_password=False)}},
                         [check("orders_ref", "main", "orders", ["customer", "ref"])])
    second = start_daemon(config, port)
    down = second.wait_for(lambda s: (s.value(ERRORS, "orders_ref") or 0) >= 1, "a failed run after the restart")
    assert down.value(UP, "orders_ref") == 0
    assert (down.value(GROUPS, "orders_ref"), down.value(EXCESS, "orders_ref")) == (9, 13)
    assert last_success <= down.value(LAST_SUCCESS, "orders_ref") <= stopped
    assert second.stop() == 0


def test_a_restart_never_restores_another_databases_figures(pg, tmp_path: Path, start_daemon) -> None:
    """Two projects whose configs use the same names (`main`, `orders_ref`) and share a state file: a daemon
    watching the second never starts from the first one's figures."""
    seed_orders(pg)
    port = free_port()
    config = config_file(tmp_path, port, {"main": {"url": pg.url}},  # both use tmp_path's history file
                         [check("orders_ref", "main", "orders", ["customer", "ref"])])
    first = start_daemon(config, port)
    first.wait_for(lambda s: s.value(UP, "orders_ref") == 1, "the first project's run")
    assert first.stop() == 0

    other = make_url(pg.url).set(database=f"dw_missing_{uuid.uuid4().hex[:8]}")
    config = config_file(tmp_path, port, {"main": {"url": other.render_as_string(hide_password=False)}},
                         [check("orders_ref", "main", "orders", ["customer", "ref"])])
    second = start_daemon(config, port)
    down = second.wait_for(lambda s: (s.value(ERRORS, "orders_ref") or 0) >= 1, "the second project's run")
    assert down.value(UP, "orders_ref") == 0
    assert down.value(GROUPS, "orders_ref") is None and down.value(LAST_SUCCESS, "orders_ref") is None
    assert second.stop() == 0


def test_sighup_adds_and_removes_checks_and_a_broken_file_keeps_the_old_config(
        pg, tmp_path: Path, start_daemon) -> None:
    seed_orders(pg)
    port = free_port()
    databases = {"main": {"url": pg.url}}
    first = check("by_ref", "main", "orders", ["customer", "ref"])
    second = check("by_customer", "main", "orders", ["customer"])
    config = config_file(tmp_path, port, databases, [first])
    daemon = start_daemon(config, port)
    daemon.wait_for(lambda s: s.value(UP, "by_ref") == 1, "the first check")

    config_file(tmp_path, port, databases, [first, second])
    daemon.send(signal.SIGHUP)
    scrape = daemon.wait_for(lambda s: s.value(UP, "by_customer") == 1, "the added check")
    assert scrape.value(GROUPS, "by_customer") == figures_by_sql(pg.rows, "orders", "customer")[0] == 5

    config_file(tmp_path, port, databases, [second])
    daemon.send(signal.SIGHUP)
    daemon.wait_for(lambda s: "by_ref" not in s.checks() and s.value(UP, "by_ref") is None,
                    "the removed check's series to disappear")
    # The reload's line is written once the reload is done, after the series went away: awaited, not raced
    daemon.wait_for(lambda _: "removed=by_ref" in daemon.log(), "the reload's line")
    assert "added=by_customer" in daemon.log()

    # A check edited in place: the reload's line names it (it said only how many checks there were).
    config_file(tmp_path, port, databases, [{**second, "key": ["customer", "ref"]}])
    daemon.send(signal.SIGHUP)
    daemon.wait_for(lambda s: "changed=by_customer" in daemon.log(), "the reload naming the changed check")

    config.write_text(config.read_text() + "\n[[checks]\nname = broken\n", encoding="utf-8")
    reloaded_at = time.time()
    daemon.send(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config reload failed" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert "invalid TOML" in daemon.log()
    # Still running the previous config: the remaining check keeps succeeding.
    daemon.wait_for(lambda s: (s.value(LAST_SUCCESS, "by_customer") or 0) > reloaded_at + INTERVAL
                    and s.checks() == {"by_customer"}, "the old config to keep running")
    assert daemon.stop() == 0


def test_sigterm_exits_0_within_10_seconds_abandoning_a_query_in_flight(
        pg, tmp_path: Path, start_daemon) -> None:
    port = free_port()
    marker = f"dw_sleep_{uuid.uuid4().hex[:8]}"
    slow = {"name": "slow", "database": "main", "interval": INTERVAL,
            "sql": f"SELECT 1 AS {marker} FROM pg_sleep(20)"}
    config = config_file(tmp_path, port, {"main": {"url": pg.url, "statement_timeout": "60s"}}, [slow])
    daemon = start_daemon(config, port)
    try:
        deadline = time.monotonic() + 20
        while not pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                            "AND application_name = 'dupewatch' AND query LIKE :q", {"q": f"%{marker}%"}):
            assert time.monotonic() < deadline, f"the slow query never started:\n{daemon.log()}"
            time.sleep(0.05)

        started = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        assert "abandoned=slow" in daemon.log()
    finally:  # the server-side sleep outlives the client: end it so the test leaves nothing behind
        pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE :q "
                   "AND pid <> pg_backend_pid()", params={"q": f"%{marker}%"})


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_logs_one_line_per_run_and_never_the_password(pg, tmp_path: Path, start_daemon, log_format: str) -> None:
    seed_orders(pg)
    port = free_port()
    dead_url = f"postgresql://dupewatch:{PASSWORD}@127.0.0.1:1/nowhere"
    config = config_file(tmp_path, port, {"main": {"url": pg.url}, "dead": {"url": dead_url}}, [
        check("live", "main", "orders", ["customer", "ref"]),
        check("on_dead_port", "dead", "orders", ["customer", "ref"]),
    ])
    daemon = start_daemon(config, port, "--log-format", log_format)
    scrape = daemon.wait_for(lambda s: (s.value(ERRORS, "on_dead_port") or 0) >= 2
                             and (s.value("dupewatch_check_duration_seconds_count", "live") or 0) >= 2,
                             "two failed runs and two good ones")
    assert scrape.value(UP, "on_dead_port") == 0 and scrape.value(UP, "live") == 1
    assert scrape.value(GROUPS, "on_dead_port") is None  # never succeeded: no figures rather than a fake 0
    assert PASSWORD not in scrape.text
    assert daemon.stop() == 0

    log = daemon.log()
    assert PASSWORD not in log
    lines = log.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON document
        assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
        failed = [r for r in records if r["message"] == "check failed"]
        finished = [r for r in records if r["message"] == "check finished"]
        assert failed and all(r["level"] == "error" and r["check"] == "on_dead_port" for r in failed)
        assert "***" in failed[0]["error"] and "Connection refused" in failed[0]["error"]
        assert finished[0]["check"] == "live" and (finished[0]["groups"], finished[0]["excess_rows"]) == (9, 13)
    else:
        failed = [line for line in lines if "check failed" in line]
        finished = [line for line in lines if "check finished" in line]
        assert failed and all(" ERROR " in line and "check=on_dead_port" in line for line in failed)
        assert "dupewatch:***@127.0.0.1:1" in failed[0]
        assert "check=live" in finished[0] and "groups=9 excess_rows=13" in finished[0]
    # One line per run: the runs the metrics counted are the runs the log shows (up to the last scrape).
    assert len(failed) >= 2 and len(finished) >= 2


def run_to_exit(config: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(daemon_command(config), capture_output=True, text=True, timeout=timeout)


def test_a_port_already_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_file(tmp_path, port, {"d": {"url": f"sqlite:///{tmp_path / 'x.sqlite'}"}},
                             [check("c", "d", "t", ["k"])])
        result = run_to_exit(config)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"dupewatch: error: metrics listen 127.0.0.1:{port}: address already in use "
        "(is another dupewatch running?)"]


def test_a_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = config_file(tmp_path, free_port(), {"d": {"url": f"sqlite:///{tmp_path / 'x.sqlite'}"}},
                         [check("c", "nowhere", "t", ["k"])])
    result = run_to_exit(config)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown database 'nowhere'" in lines[0], result.stderr


def test_scrape_is_a_valid_exposition_with_build_info(pg, tmp_path: Path, start_daemon) -> None:
    seed_orders(pg)
    port = free_port()
    config = config_file(tmp_path, port, {"main": {"url": pg.url}}, [check("c", "main", "orders", ["ref"])])
    daemon = start_daemon(config, port)
    scrape: Scrape = daemon.wait_for(lambda s: s.value(UP, "c") == 1, "the first run")
    info = scrape.samples["dupewatch_build_info"]
    assert len(info) == 1 and set(info[0][0]) == {"version", "python"}
    labelled = [labels for name, samples in scrape.samples.items() if name.startswith("dupewatch_check")
                for labels, _ in samples]
    assert all(set(labels) - {"le"} == {"check", "database", "target"} for labels in labelled)
    assert daemon.stop() == 0


def test_the_daemon_watches_the_demo_with_the_config_the_demo_prints(tmp_path: Path, start_daemon) -> None:
    """`dupewatch demo --print-config` writes the demo's config; the daemon serves its figures to Prometheus."""
    printed = run_dupewatch("demo", "--print-config", "--dir", tmp_path / "demo")
    assert printed.code == 0, printed.output
    text = printed.stdout.replace('listen = "127.0.0.1:9641"', f'listen = "127.0.0.1:{(port := free_port())}"')
    config = tmp_path / "demo.toml"
    config.write_text(text)
    daemon = start_daemon(config, port)
    seen = daemon.wait_for(lambda s: s.value(UP, "login-sources") == 1 and s.value(UP, "vote-drift") == 1,
                           "the demo's checks")
    assert (seen.value(GROUPS, "login-sources") or 0) > 0
    assert seen.value(GROUPS, "vote-drift") is None  # a violations check: its own metric
    assert daemon.stop() == 0


def test_config_example_prints_the_documented_example() -> None:
    printed = run_dupewatch("config", "example", cwd=Path("/"))
    assert printed.code == 0 and printed.stdout == (REPO_ROOT / "config.example.toml").read_text(encoding="utf-8")


def test_a_reload_that_changes_many_checks_names_the_first_few_and_counts_the_rest(
        sqlite_db, tmp_path: Path, start_daemon) -> None:
    """A fleet template edited over hundreds of databases changes as many checks: the reload's line named every
    one (one enormous line). It names the first `RELOAD_NAMES` of each list, then how many more."""
    sqlite_db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INT, ref TEXT)")
    port = free_port()
    databases = {"main": {"url": sqlite_db.url}}
    names = [f"orders_{n:03}" for n in range(60)]
    config = config_file(tmp_path, port, databases, [check(n, "main", "orders", ["customer"], interval=3600)
                                                     for n in names])
    daemon = start_daemon(config, port)
    daemon.wait_for(lambda s: all(s.value(UP, n) == 1 for n in names), "every check's first run")
    config_file(tmp_path, port, databases, [check(n, "main", "orders", ["ref"], interval=3600) for n in names])
    daemon.send(signal.SIGHUP)
    daemon.wait_for(lambda _: "config reloaded" in daemon.log(), "the reload")
    assert daemon.stop() == 0
    line = next(line for line in daemon.log().splitlines() if "config reloaded" in line)
    assert 'changed="orders_000,orders_001,' in line and ',orders_019,and 40 more"' in line, line
    assert "orders_020" not in line, line

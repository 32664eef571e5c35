"""The daemon over a fleet selected by labels, and what must never leak: a real process over HTTP on real
PostgreSQL and MariaDB (databases named for this test only).

- A check with `match_labels` runs on every target of every source carrying the labels and on the `[databases]`
  entries carrying them; a database selected twice is checked once; a reload that adds or removes a source
  adds or removes its targets' series.
- A password in a source's URL is in no log line and no metric, discovery failures included."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import Scrape, daemon_starter, free_port
from sqlalchemy.engine import make_url

from dbtest import PG_URL, write_config
from fleetdb import TABLE, mysql_databases, pg_databases

KEY = ["user_id", "agent"]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def figures(scrape: Scrape, metric: str = "dupewatch_duplicate_excess_rows") -> dict[str, float]:
    return {labels["target"]: value for labels, value in scrape.samples.get(metric, [])}


def write(tmp_path: Path, port: int, sources: dict[str, dict[str, Any]], databases: dict[str, dict[str, Any]],
          checks: list[dict[str, Any]]) -> Path:
    return write_config(tmp_path / "fleet.toml", databases, checks,
                        **{f"sources.{name}": {"every": 0.5, **source} for name, source in sources.items()},
                        **{"metrics": {"listen": f"127.0.0.1:{port}"},
                           "state": {"path": str(tmp_path / "history.sqlite")}})


def test_a_check_selected_by_labels_runs_on_every_matching_source_and_entry_and_follows_a_reload(
        tmp_path: Path, start_daemon: Any):
    with pg_databases(2) as pg, mysql_databases(2) as my:
        sources = {"pg": {"url": PG_URL, "discover": "databases", "include": pg.include,
                          "labels": {"env": "prod", "kind": "pg"}},
                   "staging": {"url": PG_URL, "discover": "databases", "include": pg.include,
                               "labels": {"env": "staging", "kind": "pg"}}}
        mariadb = {"url": my.server_url, "discover": "databases", "include": my.include,
                   "labels": {"env": "prod", "kind": "mariadb"}}
        # The entry names a database the pg source lists too: checked once, as the entry.
        databases = {"main": {"url": pg.url_of(pg.names[0]), "labels": {"env": "prod", "kind": "entry"}}}
        check = {"name": "logins", "match_labels": {"env": "prod"}, "table": TABLE, "key": KEY, "interval": 0.5}
        port = free_port()
        path = write(tmp_path, port, sources, databases, [check])
        daemon = start_daemon(path, port)
        expected = {"main": pg.excess[pg.names[0]], pg.names[1]: pg.excess[pg.names[1]]}
        scrape = daemon.wait_for(lambda s: figures(s) == expected, "the prod targets of PostgreSQL")
        checked = Counter(labels["target"] for labels, _ in scrape.samples["dupewatch_check_up"])
        assert all(count == 1 for count in checked.values()), checked  # staging's same databases: not selected
        kinds = {labels["target"]: labels["kind"] for labels, _ in scrape.samples["dupewatch_check_up"]}
        assert kinds == {"main": "entry", pg.names[1]: "pg"}

        write(tmp_path, port, {**sources, "mariadb": mariadb}, databases, [check])
        daemon.send(signal.SIGHUP)
        both = {**expected, **my.excess}
        daemon.wait_for(lambda s: figures(s) == both, "MariaDB's targets added by the reload")
        write(tmp_path, port, {**sources, "mariadb": mariadb}, {}, [check])
        daemon.send(signal.SIGHUP)
        scrape = daemon.wait_for(lambda s: figures(s) == {**pg.excess, **my.excess},
                                 "the entry gone, its database checked as the source's target")
        assert set(figures(scrape, "dupewatch_target_up")) == set(pg.names) | set(my.names)
        assert daemon.stop() == 0


def test_a_sources_password_is_in_no_log_line_and_no_metric(tmp_path: Path, start_daemon: Any):
    password = "Pw-Secret-7f3a"
    with pg_databases(1) as pg:
        good = make_url(PG_URL).set(password=password).render_as_string(hide_password=False)  # trust: accepted
        down = make_url(PG_URL).set(port=1, password=password).render_as_string(hide_password=False)
        broken = make_url(PG_URL).set(password=password, database=f"{pg.prefix}no_such_database")
        sources = {"tenants": {"url": good, "discover": "databases", "include": pg.include},
                   "down": {"url": down, "discover": "databases"},
                   "broken": {"url": broken.render_as_string(hide_password=False), "discover": "schemas",
                              "schemas_query": f"SELECT '{password}' FROM no_such_table"}}
        checks = [{"name": name, "source": name, "table": "no_such_table", "key": KEY, "interval": 0.5}
                  for name in sources]
        port = free_port()
        daemon = start_daemon(write(tmp_path, port, sources, {}, checks), port)
        scrape = daemon.wait_for(lambda s: len(figures(s, "dupewatch_check_up")) == 1
                                 and len(s.samples.get("dupewatch_discovery_errors_total", [])) == 3
                                 and all(v >= 2 for _, v in s.samples["dupewatch_discovery_errors_total"]
                                         if _["source"] != "tenants"), "discovery failing twice, a check failing")
        log = daemon.log()
        assert "discovery failed, keeping the last good list of targets" in log and "check failed" in log
        assert password not in log and password not in scrape.text
        assert daemon.stop() == 0
        assert password not in daemon.log()


# A check that runs for a while: PostgreSQL's pg_sleep in a subquery it cannot flatten (volatile); on MariaDB a
# sleep per row of the table, whose metadata lock makes a DROP DATABASE wait for the statement to end.
SLOW = {"postgresql": "SELECT 1 AS v FROM (SELECT pg_sleep(2)::text AS s) AS t WHERE t.s = 'x'",
        "mysql": f"SELECT 1 AS v FROM {TABLE} WHERE SLEEP(0.3) = 7"}
RUNNING = {"postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND query LIKE '%pg_sleep(2)%'",
           "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = :d AND info LIKE '%SLEEP(0.3)%'"}


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_database_dropped_while_its_round_runs_fails_in_one_line_and_leaves(dialect: str, tmp_path: Path,
                                                                              start_daemon: Any):
    import sqlalchemy as sa

    from fleetdb import drop_pg_database

    with (pg_databases(2) if dialect == "postgresql" else mysql_databases(2)) as fleet:
        doomed = fleet.names[1]
        sources = {"tenants": {"url": fleet.server_url, "discover": "databases", "include": fleet.include,
                               "every": 1}}
        checks = [{"name": "logins", "source": "tenants", "table": TABLE, "key": KEY, "interval": 0.5},
                  {"name": "slow", "source": "tenants", "sql": SLOW[dialect], "interval": 0.5}]
        port = free_port()
        daemon = start_daemon(write(tmp_path, port, sources, {}, checks), port)
        daemon.wait_for(lambda s: set(figures(s)) == set(fleet.names), "both targets checked")
        admin = sa.create_engine(fleet.server_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                daemon.wait_for(lambda _: conn.execute(sa.text(RUNNING[dialect]), {"d": doomed}).scalar(),
                                "the doomed target's slow check running")
                if dialect == "postgresql":
                    drop_pg_database(doomed)
                else:
                    conn.execute(sa.text(f"DROP DATABASE `{doomed}`"))
                fleet.names.remove(doomed)
        finally:
            admin.dispose()
        scrape = daemon.wait_for(lambda s: doomed not in s.text and set(figures(s)) == {fleet.names[0]}
                                 and "fleet targets changed" in daemon.log(), "the dropped target gone from /metrics")
        assert figures(scrape, "dupewatch_target_up") == {fleet.names[0]: 1.0}
        log = daemon.log()
        assert "Traceback" not in log
        for line in log.splitlines():
            if "check failed" in line:
                assert doomed in line, line  # only the dropped one failed, and said so in its line
        assert daemon.stop() == 0

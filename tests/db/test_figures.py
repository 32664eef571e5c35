"""Figures that cannot say something untrue: DURATION is the query's time (set-up apart), a custom query
reports violations rather than duplicates, and the demo says where it writes and cleans up after itself."""

from __future__ import annotations

import os
import time

import pytest

from dbtest import write_config

pytestmark = pytest.mark.timeout(120)


def test_duration_is_the_query_and_setup_ms_what_came_before_it(pg, tmp_path, dupewatch):
    # The query sleeps 0.3 s; connecting and probing its columns (the set-up) come before it, timed apart.
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg.url}},
                        [{"name": "slow", "database": "d", "sql": "SELECT 1 AS x FROM pg_sleep(0.3)"}])
    started = time.perf_counter()
    run = dupewatch("check", "--json", "--config", path)
    wall_ms = (time.perf_counter() - started) * 1000
    [result] = run.json["checks"]
    assert result["duration_ms"] >= 300 and result["setup_ms"] > 0, result
    assert result["duration_ms"] + result["setup_ms"] <= wall_ms


def test_a_custom_query_reports_violations_and_kind_overrides_it(db, tmp_path, dupewatch):
    db.execute("CREATE TABLE vote (id INTEGER PRIMARY KEY, total INTEGER, paid INTEGER)",
               "INSERT INTO vote VALUES (1, 3, 3), (2, 5, 3), (3, 7, 6)")
    drift = "SELECT id FROM vote WHERE total <> paid"
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}}, [
        {"name": "vote-drift", "database": "d", "sql": drift},
        {"name": "as-duplicates", "database": "d", "sql": drift, "kind": "duplicates"},
        {"name": "table-as-violations", "database": "d", "table": "vote", "key": ["paid"], "kind": "violations"},
        {"name": "clean", "database": "d", "sql": "SELECT id FROM vote WHERE total < 0"},
    ])
    run = dupewatch("check", "--json", "--config", path)
    assert run.code == 1
    assert {c["name"]: c["status"] for c in run.json["checks"]} == {
        "vote-drift": "violations", "as-duplicates": "duplicates", "table-as-violations": "violations",
        "clean": "ok"}
    table = dupewatch("check", "--config", path, "vote-drift")
    assert table.code == 1 and table.stdout.splitlines()[1].split()[:3] == ["vote-drift", "d", "violations"]


def test_kind_accepts_only_duplicates_or_violations(tmp_path, dupewatch):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "sqlite://"}},
                        [{"name": "c", "database": "d", "sql": "SELECT 1", "kind": "problems"}])
    run = dupewatch("check", "--config", path)
    assert run.code == 2
    assert run.stderr.strip() == (f"dupewatch: error: {path}: checks[0] ('c').kind: Input should be "
                                  "'duplicates' or 'violations'")


def test_demo_writes_under_the_per_user_data_directory_and_reset_removes_it(tmp_path, dupewatch):
    data = tmp_path / "data"
    env = {"XDG_DATA_HOME": str(data), "HOME": str(tmp_path / "home")}
    run = dupewatch("demo", "--once", cwd=tmp_path, env=env)
    assert run.code == 0, run.output
    demo = data / "dupewatch" / "demo"
    assert (demo / "demo.sqlite").is_file() and str(demo / "demo.sqlite") in run.stdout
    (demo / "state.sqlite").write_bytes(b"")  # as the live dashboard leaves it
    reset = dupewatch("demo", "--reset", cwd=tmp_path, env=env)
    assert reset.code == 0, reset.output
    assert reset.stdout.strip() == f"dupewatch demo: removed demo.sqlite, state.sqlite from {demo}"
    assert not demo.exists()
    again = dupewatch("demo", "--reset", cwd=tmp_path, env=env)
    assert again.code == 0 and again.stdout.strip() == f"dupewatch demo: nothing to remove in {demo}"


def _another_spelling(db, tmp_path):
    """A second URL to the same database: `localhost` for `127.0.0.1`, or a hard link to the SQLite file."""
    if db.dialect == "sqlite":
        link = tmp_path / "linked" / "same.sqlite"
        link.parent.mkdir()
        os.link(db.url.removeprefix("sqlite:///"), link)
        return f"sqlite:///{link}"
    assert "@127.0.0.1:" in db.url
    return db.url.replace("@127.0.0.1:", "@localhost:")


def test_two_urls_to_one_server_share_run_history(db, tmp_path):
    """What a run measured is the server as it identifies itself, not the URL's spelling: a dashboard on
    `localhost` reads the history a daemon on `127.0.0.1` wrote (and another database's never)."""
    from monitor.config import config_from_dict
    from monitor.engine import Monitor
    from monitor.history import History

    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(40))",
               "INSERT INTO users VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    store = History(tmp_path / "history.sqlite")

    def project(url, name):
        return Monitor(config_from_dict({"databases": {name: {"url": url}},
                                         "checks": [{"name": f"{name}-emails", "database": name,
                                                     "table": "users", "key": ["email"]}]}), state=store)

    daemon, dashboard = project(db.url, "app"), project(_another_spelling(db, tmp_path), "main")
    other_url = db.url.replace("/test", "/postgres") if db.dialect == "postgresql" else None
    try:
        result = daemon.run("app-emails")
        assert result.groups == 1 and result.subject is not None
        store.record(result)
        assert dashboard.subject("main-emails") == result.subject
        [run] = store.recent(dashboard.subject("main-emails"))
        assert (run.groups, run.excess_rows) == (1, 1)
        if other_url is not None:  # the same server, another database: never the same history
            assert project(other_url, "x").subject("x-emails") != result.subject
    finally:
        daemon.close()
        dashboard.close()
        store.close()


def test_a_server_that_does_not_answer_is_known_by_what_it_said_before(tmp_path):
    """Its history stays readable while it is down: the place its URL named is remembered in the store."""
    from monitor.config import config_from_dict
    from monitor.engine import Monitor
    from monitor.history import History

    store = History(tmp_path / "history.sqlite")
    config = config_from_dict({"databases": {"d": {"url": "postgresql://u@127.0.0.1:1/x"}},
                               "checks": [{"name": "c", "database": "d", "table": "t", "key": ["k"]}]})
    monitor = Monitor(config, state=store)
    try:
        address = monitor.database("d").address
        assert monitor.place("d") == address  # never answered: its address stands for it
        store.remember_place(address, ["postgresql", "system_identifier", "42", "x", "public"])
        later = Monitor(config, state=store)
        assert later.place("d", ask=False) == ["postgresql", "system_identifier", "42", "x", "public"]
        assert later.place("d") == ["postgresql", "system_identifier", "42", "x", "public"]
        later.close()
    finally:
        monitor.close()
        store.close()

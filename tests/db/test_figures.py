"""Figures that cannot say something untrue: DURATION is the query's time (set-up apart), a custom query
reports violations rather than duplicates, and the demo says where it writes and cleans up after itself."""

from __future__ import annotations

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

"""Fleet mode as an adversary uses it, on real PostgreSQL and MariaDB: names that need quoting, a source that
lists nothing, a target the user may list but not use, an unknown target named on the command line."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import MYSQL_URL, PG_URL, run_dupewatch, write_config
from fleetdb import TABLE

KEY = ["user_id", "agent"]
# Upper case, a space, a double quote, a dot, a slash, a backslash and a backtick, and accents: every one must be
# quoted (never pasted) to connect, to name the schema on the search path, and to be the target label.
AWKWARD = ["Upper Case", 'quo"te', "do.t", "sla/sh", "back\\sl`ash", "ünïcødé"]


def pg_quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def my_quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def seed(conn: sa.Connection, table: str, excess: int, *, mysql: bool = False) -> None:
    ident = "id INT AUTO_INCREMENT PRIMARY KEY" if mysql else "id SERIAL PRIMARY KEY"
    conn.execute(sa.text(f"CREATE TABLE {table} ({ident}, user_id INT NOT NULL, agent VARCHAR(20) NOT NULL)"))
    rows = [{"u": i, "a": "web"} for i in range(5)] + [{"u": 0, "a": "web"}] * excess
    conn.execute(sa.text(f"INSERT INTO {table} (user_id, agent) VALUES (:u, :a)"), rows)


@contextmanager
def pg_awkward_databases(prefix: str) -> Iterator[dict[str, int]]:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    made: dict[str, int] = {}
    try:
        for excess, suffix in enumerate(AWKWARD, start=1):
            name = prefix + suffix
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {pg_quoted(name)}"))
            made[name] = excess
            engine = sa.create_engine(make_url(PG_URL).set(database=name))
            try:
                with engine.begin() as conn:
                    seed(conn, TABLE, excess)
            finally:
                engine.dispose()
        yield made
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {pg_quoted(name)} WITH (FORCE)"))
        admin.dispose()


def excess_by_target(run_json: dict[str, object]) -> dict[str, int]:
    return {e["target"]: e["excess_rows"] for e in run_json["checks"]}  # type: ignore[attr-defined, index]


def test_postgresql_databases_whose_names_need_quoting_are_discovered_checked_and_labelled(tmp_path: Path):
    prefix = f"DwRev {uuid.uuid4().hex[:6]} "
    with pg_awkward_databases(prefix) as made:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
            **{"sources.tenants": {"url": PG_URL, "discover": "databases",
                                   "include": "^" + prefix.replace(" ", "\\s")}})
        run = run_dupewatch("check", "--json", "--config", path)
        assert excess_by_target(run.json) == made, run.stderr
        assert all(e["status"] != "error" for e in run.json["checks"]), run.stdout


def test_postgresql_tenant_schemas_whose_names_need_quoting_are_each_checked_in_their_own(tmp_path: Path):
    prefix = f"DwRev {uuid.uuid4().hex[:6]} "
    schemas = {prefix + suffix: excess for excess, suffix in enumerate(AWKWARD, start=1)}
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {pg_quoted(prefix + 'registry')} (name TEXT)"))
            for name, excess in schemas.items():
                conn.execute(sa.text(f"CREATE SCHEMA {pg_quoted(name)}"))
                seed(conn, f"{pg_quoted(name)}.{TABLE}", excess)
                conn.execute(sa.text(f"INSERT INTO {pg_quoted(prefix + 'registry')} VALUES (:n)"), {"n": name})
        database = make_url(PG_URL).database
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
            **{"sources.tenants": {"url": PG_URL, "discover": "schemas",
                                   "schemas_query": f"SELECT name FROM {pg_quoted(prefix + 'registry')}"}})
        run = run_dupewatch("check", "--json", "--config", path)
        assert excess_by_target(run.json) == {f"{database}/{n}": e for n, e in schemas.items()}, run.stderr
    finally:
        with engine.begin() as conn:
            for name in schemas:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {pg_quoted(name)} CASCADE"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {pg_quoted(prefix + 'registry')}"))
        engine.dispose()


@contextmanager
def mysql_awkward_databases(prefix: str) -> Iterator[dict[str, int]]:
    admin = sa.create_engine(MYSQL_URL)
    made: dict[str, int] = {}
    try:
        for excess, suffix in enumerate(AWKWARD, start=1):
            name = prefix + suffix
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {my_quoted(name)}"))
                made[name] = excess
                seed(conn, f"{my_quoted(name)}.{TABLE}", excess, mysql=True)
        yield made
    finally:
        with admin.begin() as conn:
            for name in made:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {my_quoted(name)}"))
        admin.dispose()


def test_mariadb_databases_whose_names_need_quoting_are_discovered_and_checked(tmp_path: Path):
    prefix = f"DwRev {uuid.uuid4().hex[:6]} "
    with mysql_awkward_databases(prefix) as made:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "shops", "table": TABLE, "key": KEY}],
            **{"sources.shops": {"url": MYSQL_URL, "discover": "databases", "include": "^" + prefix}})
        run = run_dupewatch("check", "--json", "--config", path)
        assert excess_by_target(run.json) == made, run.stderr


def test_mariadb_tenant_schemas_from_a_query_each_checked_in_its_own(tmp_path: Path):
    prefix = f"DwRev {uuid.uuid4().hex[:6]} "
    with mysql_awkward_databases(prefix) as made:
        database = make_url(MYSQL_URL).database
        listing = " UNION ALL ".join(f"SELECT '{n.replace(chr(92), chr(92) * 2)}'" for n in list(made)[:3])
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
            **{"sources.tenants": {"url": MYSQL_URL, "discover": "schemas", "schemas_query": listing}})
        run = run_dupewatch("check", "--json", "--config", path)
        assert excess_by_target(run.json) == {f"{database}/{n}": made[n] for n in list(made)[:3]}, run.stderr


@pytest.mark.parametrize("url", [PG_URL, MYSQL_URL], ids=["postgresql", "mariadb"])
def test_a_fleet_whose_source_lists_no_target_is_one_line_and_exit_2(url: str, tmp_path: Path):
    path = write_config(tmp_path / "fleet.toml", {}, [
        {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
        **{"sources.tenants": {"url": url, "discover": "databases", "include": "^no_such_dwrev_"}})
    for args in (("check",), ("check", "logins"), ("check", "--json")):
        run = run_dupewatch(*args, "--config", path)
        assert run.code == 2, run.stderr
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "nothing to run: no target for check 'logins'" in run.stderr


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_fix_or_guard_of_a_fleet_check_without_a_known_target_is_one_line_naming_a_few(server: str,
                                                                                     tmp_path: Path):
    from fleetdb import mysql_databases, pg_databases

    with (pg_databases(4) if server == "postgresql" else mysql_databases(4)) as fleet:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
            **{"sources.tenants": {"url": fleet.server_url, "discover": "databases", "include": fleet.include}})
        first = fleet.names[0]
        cases = {
            ("fix", "logins@no_such_tenant", "--dry-run"): "check 'logins' has no target 'no_such_tenant' (4 targets: ",
            ("fix", f"logins@{first[:-1]}x", "--dry-run"): f"(did you mean '{fleet.prefix}tenant_",
            ("fix", "logins", "--dry-run"):
                f"check 'logins' runs on 4 targets: name one, as CHECK@TARGET (logins@{first}",
            ("guard", "logins@no_such_tenant"): "check 'logins' has no target 'no_such_tenant'",
            ("fix", "login", "--dry-run"): "no check named 'login' (did you mean 'logins'?) (have: logins; ",
            ("check", "logins@no_such_tenant"): "check 'logins' has no target 'no_such_tenant'",
            ("check", "--json", "login"): "no check named 'login' (did you mean 'logins'?) (have: logins; ",
        }
        for args, expected in cases.items():
            run = run_dupewatch(*args, "--config", path)
            assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1, (args, run.stderr)
            assert run.stdout == "" or expected in run.json["error"], run.stdout  # --json: the same, as JSON
            assert expected in run.stderr, (args, run.stderr)
            assert "Traceback" not in run.stderr
        done = run_dupewatch("fix", f"logins@{first}", "--dry-run", "--config", path)
        assert done.code == 0, done.stderr  # a known target is fixed as any check


@pytest.mark.parametrize("url", [PG_URL, MYSQL_URL], ids=["postgresql", "mariadb"])
def test_a_discovery_failure_names_the_source_without_its_password(url: str, tmp_path: Path):
    password = "Pw-Secret-c0ffee"
    down = make_url(url).set(port=1, password=password).render_as_string(hide_password=False)
    path = write_config(tmp_path / "fleet.toml", {}, [
        {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
        **{"sources.tenants": {"url": down, "discover": "databases"}})
    for args in (("check",), ("check", "--json"), ("fix", "logins@x", "--dry-run")):
        run = run_dupewatch(*args, "--config", path)
        assert run.code == 2 and "discovery failed" in run.stderr + run.stdout, run.stderr
        assert ":***@" in run.stderr and password not in run.stdout + run.stderr, run.stderr


def test_a_label_selector_over_databases_entries_alone_runs_on_each_and_fixes_one(tmp_path: Path):
    """`match_labels` with no source at all: every `[databases]` entry carrying the labels is a target (SQLite
    files here; no server to discover), named `CHECK@ENTRY` on the command line."""
    import sqlite3

    databases = {}
    for name in ("one", "two", "other"):
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)")
            conn.executemany("INSERT INTO t (k) VALUES (?)", [("a",), ("a",), ("b",)])
        conn.close()
        databases[name] = {"url": f"sqlite:///{tmp_path / f'{name}.db'}",
                           **({"labels": {"team": "core"}} if name != "other" else {})}
    path = write_config(tmp_path / "fleet.toml", databases, [
        {"name": "dups", "match_labels": {"team": "core"}, "table": "t", "key": ["k"]}])
    run = run_dupewatch("check", "--json", "--config", path)
    assert {(e["check"], e["target"], e["excess_rows"]) for e in run.json["checks"]} == {
        ("dups", "one", 1), ("dups", "two", 1)}, run.stderr
    fixed = run_dupewatch("fix", "dups@two", "--yes", "--config", path)
    assert fixed.code == 0, fixed.stderr
    again = run_dupewatch("check", "--json", "--config", path)
    assert {e["target"]: e["excess_rows"] for e in again.json["checks"]} == {"one": 1, "two": 0}


@pytest.mark.parametrize("url", [PG_URL, MYSQL_URL], ids=["postgresql", "mariadb"])
def test_a_schemas_query_listing_a_schema_twice_or_an_empty_one_makes_one_target_each(url: str):
    from monitor.config import SourceConfig
    from monitor.fleet import discover

    database = make_url(url).database
    query = "SELECT 'alpha' UNION ALL SELECT NULL UNION ALL SELECT '' UNION ALL SELECT 'beta' UNION ALL SELECT 'alpha'"
    source = SourceConfig.model_validate({"url": url, "discover": "schemas", "schemas_query": query})
    assert [t.name for t in discover("tenants", source)] == [f"{database}/alpha", f"{database}/beta"]

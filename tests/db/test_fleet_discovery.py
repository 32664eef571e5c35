"""Discovery asks the server which databases (or tenant schemas) exist, and `dupewatch check` runs a fleet check
on every target: real PostgreSQL and MariaDB, databases named for this test only (include `^dwfleet_<random>_`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import PG_URL, run_dupewatch, write_config
from fleetdb import TABLE, mysql_databases, pg_databases, pg_schemas
from monitor.config import SourceConfig
from monitor.fleet import discover

KEY = ["user_id", "agent"]


def source(fleet_url: str, **options: object) -> SourceConfig:
    return SourceConfig.model_validate({"url": fleet_url, "discover": "databases", **options})


def test_postgresql_discovery_lists_connectable_databases_the_role_may_connect_to():
    role = f"dwfleet_{uuid.uuid4().hex[:8]}"
    with pg_databases(4) as fleet:
        closed, forbidden = fleet.names[2], fleet.names[3]
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text(f'REVOKE CONNECT ON DATABASE "{forbidden}" FROM PUBLIC'))
                conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
            as_role = make_url(PG_URL).set(username=role, password=None).render_as_string(hide_password=False)
            found = [t.database for t in discover("tenants", source(as_role, include=fleet.include))]
            assert found == fleet.names[:2]  # not the one refusing connections, not the one the role may not enter
            as_owner = [t.database for t in discover("tenants", source(PG_URL, include=fleet.include))]
            assert as_owner == [*fleet.names[:2], forbidden]  # a superuser may connect to it
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS true'))
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
            admin.dispose()


def test_include_and_exclude_are_regular_expressions_on_the_name():
    with pg_databases(3) as fleet:
        found = discover("tenants", source(PG_URL, include=fleet.include, exclude="_2$", labels={"env": "t"}))
        assert [t.name for t in found] == [fleet.names[0], fleet.names[2]]
        assert {t.labels for t in found} == {(("env", "t"),)}


def test_mariadb_discovery_is_show_databases_without_system_schemas():
    with mysql_databases(2) as fleet:
        found = discover("tenants", source(fleet.server_url, include=fleet.include))
        assert [t.database for t in found] == fleet.names
        everything = {t.database for t in discover("all", source(fleet.server_url))}
        assert not everything & {"mysql", "information_schema", "performance_schema", "sys"}


def test_check_runs_a_fleet_check_on_every_database_one_json_entry_per_check_and_target(tmp_path: Path):
    with pg_databases(3) as fleet:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY},
            {"name": "logins-web", "source": "tenants", "table": TABLE, "key": KEY, "where": "agent = 'web'"}],
            **{"sources.tenants": {"url": PG_URL, "discover": "databases", "include": fleet.include,
                                   "labels": {"env": "test"}}})
        run = run_dupewatch("check", "--json", "--config", path)
        assert run.code == 1, run.stderr  # duplicates found
        entries = {(e["check"], e["target"]): e for e in run.json["checks"]}
        assert set(entries) == {(c, n) for c in ("logins", "logins-web") for n in fleet.names}
        for (_check, target), entry in entries.items():
            assert entry["excess_rows"] == fleet.excess[target]  # each target's own figures
            assert entry["labels"] == {"env": "test"}
        one = run_dupewatch("check", "--json", "--config", path, "logins")
        assert {e["target"] for e in one.json["checks"]} == set(fleet.names)
        assert {e["check"] for e in one.json["checks"]} == {"logins"}


def test_mariadb_fleet_check(tmp_path: Path):
    with mysql_databases(2) as fleet:
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "shops", "table": TABLE, "key": KEY}],
            **{"sources.shops": {"url": fleet.server_url, "discover": "databases", "include": fleet.include}})
        run = run_dupewatch("check", "--json", "--config", path)
        assert {e["target"]: e["excess_rows"] for e in run.json["checks"]} == fleet.excess, run.stderr


def test_tenant_schemas_from_a_query_each_checked_in_its_own_schema(tmp_path: Path):
    with pg_schemas(3) as fleet:
        query = f'SELECT schema_name FROM "{fleet.prefix}registry".tenants'
        database = make_url(PG_URL).database
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY},
            {"name": "per-agent", "source": "tenants", "kind": "duplicates",
             "sql": f"SELECT count(*) - count(DISTINCT user_id) AS n FROM {TABLE} HAVING count(*) > 0"}],
            **{"sources.tenants": {"url": PG_URL, "discover": "schemas", "schemas_query": query,
                                   "exclude": "_3$"}})
        run = run_dupewatch("check", "--json", "--config", path, "logins")
        assert {e["target"]: e["excess_rows"] for e in run.json["checks"]} == {
            f"{database}/{name}": fleet.excess[name] for name in fleet.names[:2]}, run.stderr
        custom = run_dupewatch("check", "--json", "--config", path, "per-agent")
        assert {e["target"] for e in custom.json["checks"]} == {f"{database}/{n}" for n in fleet.names[:2]}
        assert all(e["status"] != "error" for e in custom.json["checks"]), custom.stdout


def test_a_source_that_cannot_be_listed_is_one_line_and_exit_2(tmp_path: Path):
    url = make_url(PG_URL).set(port=1).render_as_string(hide_password=False)
    path = write_config(tmp_path / "fleet.toml", {}, [
        {"name": "logins", "source": "tenants", "table": TABLE, "key": KEY}],
        **{"sources.tenants": {"url": url, "discover": "databases"}})
    run = run_dupewatch("check", "--config", path)
    assert run.code == 2
    assert run.stderr.startswith("dupewatch: error: ") and "discovery failed" in run.stderr
    assert "Traceback" not in run.stderr

"""Fixes stay one per table across daemons over a fleet: the fix lock is keyed by the table the server resolves
(PostgreSQL: its oid, under an advisory lock scoped to its database; MySQL/MariaDB: schema and name), so two
monitors of the same tenant's table exclude each other, while the same-named tables of two tenants do not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from sqlalchemy.engine import make_url

from dbtest import PG_URL
from fleetdb import TABLE, Fleet, mysql_databases, pg_databases, pg_schemas
from monitor.config import Config, config_from_dict
from monitor.engine import Monitor
from monitor.fix.catalog import catalog_for
from monitor.fix.errors import FixRefused
from monitor.fix.locks import fix_lock
from monitor.fleet import expand
from monitor.fleet.discover import discover_all


def fleet_config(source: dict[str, object]) -> Config:
    template = config_from_dict({"sources": {"tenants": source}, "checks": [
        {"name": "logins", "source": "tenants", "table": TABLE, "key": ["user_id", "agent"]}]})
    return expand(template, discover_all(template))


@contextmanager
def holding(monitor: Monitor, check: str) -> Iterator[None]:
    """The fix lock of `check`'s table, taken as `dupewatch fix` takes it (resolved on the writing connection)."""
    db = monitor.database_for(check)
    table = monitor.resolve(check).table
    with db.connect(db.writer) as conn:
        identity = catalog_for(conn).table_identity(table)
    with fix_lock(db, identity, TABLE):
        yield


def assert_one_fixer_per_table(config: Config, fleet: Fleet) -> None:
    first, second = Monitor(config), Monitor(config)  # two daemons (or a daemon and a dashboard)
    names = config.names
    try:
        with ExitStack() as held:
            held.enter_context(holding(first, names[0]))
            with pytest.raises(FixRefused), holding(second, names[0]):
                pass
            held.enter_context(holding(second, names[1]))  # another tenant's table of the same name
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("kind", ["databases", "schemas"])
def test_postgresql_fix_lock_is_per_resolved_table_across_targets(kind: str):
    factory = pg_databases if kind == "databases" else pg_schemas
    with factory(2) as fleet:
        source: dict[str, object] = {"url": PG_URL, "discover": kind}
        if kind == "schemas":
            source["schemas_query"] = f'SELECT schema_name FROM "{fleet.prefix}registry".tenants'
        else:
            source["include"] = fleet.include
        config = fleet_config(source)
        assert len(config.checks) == 2
        assert_one_fixer_per_table(config, fleet)


def test_mariadb_fix_lock_is_per_resolved_table_across_targets():
    with mysql_databases(2) as fleet:
        url = make_url(fleet.server_url).render_as_string(hide_password=False)
        config = fleet_config({"url": url, "discover": "databases", "include": fleet.include})
        assert_one_fixer_per_table(config, fleet)

"""`dupewatch audit` over tenant schemas writes one template (a check with `source`) for a table found alike in
many tenants, not one copy per tenant; the config it writes runs that check on every tenant."""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtest import PG_URL, run_dupewatch


@pytest.fixture
def tenants() -> Iterator[list[str]]:
    """Three tenant schemas, each with a user table whose nullable unique key let copies in (i + 1 in tenant i)."""
    prefix = f"dwfleet_{uuid.uuid4().hex[:8]}_"
    names = [f"{prefix}tenant_{i}" for i in range(1, 4)]
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            for i, name in enumerate(names, start=1):
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
                conn.execute(sa.text(
                    f'CREATE TABLE "{name}".app_user (id SERIAL PRIMARY KEY, email VARCHAR(190) UNIQUE, '
                    "backend VARCHAR(50) NOT NULL, backend_id VARCHAR(190), UNIQUE (backend, backend_id))"))
                rows = [{"e": f"u{n}@x"} for n in range(45)] + [{"e": None}] * (i + 1)
                conn.execute(sa.text(f'INSERT INTO "{name}".app_user (email, backend) VALUES (:e, \'native\')'),
                             rows)
        yield names
    finally:
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


def test_audit_of_tenant_schemas_writes_one_template_over_them(tenants: list[str], tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    args = [arg for name in tenants for arg in ("--schema", name)]
    audit = run_dupewatch("audit", "--url", PG_URL, *args, "--write", path)
    assert audit.code == 1, audit.stderr  # duplicates found
    written = tomllib.loads(path.read_text(encoding="utf-8"))
    fleet_checks = [c for c in written["checks"] if c.get("table") == "app_user"]
    assert len(fleet_checks) == 1, written["checks"]  # one template, not three copies
    [template] = fleet_checks
    assert template["source"] == "tenants" and "database" not in template
    source = written["sources"]["tenants"]
    assert source["discover"] == "schemas" and source["url_env"] == "DUPEWATCH_URL"
    check = run_dupewatch("check", "--json", "--config", path, template["name"], env={"DUPEWATCH_URL": PG_URL})
    database = sa.engine.make_url(PG_URL).database
    assert {e["target"]: e["excess_rows"] for e in check.json["checks"]} == {
        f"{database}/{name}": i for i, name in enumerate(tenants, start=1)}, check.stderr  # i + 1 copies

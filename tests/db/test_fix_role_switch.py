"""A fix role that may not use dupewatch's own tables: they grant nothing to anyone but their owner (and, on
PostgreSQL, enable row-level security with no policy), so after a first fix run as one role (the detection URL, a
superuser) a fix through another `fix_url` role can neither read nor write them. That is a refusal naming the
table, its owner and what to do, in one line, before anything changes; not an unexpected error saying that a
batch was rolled back (found trying issue 16's item 1 as a new user: the fix as the RLS-bound role stopped with
`unexpected ProgrammingError: permission denied for table dupewatch_fix (the open batch was rolled back; ...
please report this)`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from dbtest import TestDatabase, server_login, write_config
from fix_support import contents, run_cli

CHECK = {"name": "customers", "table": "customer", "key": ["email"]}


@pytest.fixture
def other_role(pg: TestDatabase) -> Iterator[str]:
    """A login that is neither superuser nor BYPASSRLS, may read and write every table of the test schema (by
    default privileges, which dupewatch revokes on its own tables), and owns none of them."""
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS",
                      f'GRANT USAGE, CREATE ON SCHEMA "{pg.schema}" TO {{user}}',
                      f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{pg.schema}" GRANT SELECT, INSERT, UPDATE, DELETE '
                      "ON TABLES TO {user}", prefix="dw_other", password="pw") as role:
        yield role


def test_a_fix_role_that_may_not_use_dupewatchs_tables_is_refused_naming_them(pg, other_role, tmp_path):
    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x'), (4, 'b@x')")
    first = write_config(tmp_path / "first.toml", {"app": {"url": pg.url}},
                         [{"database": "app", **CHECK, "where": "email = 'a@x'"}])
    assert run_cli("fix", CHECK["name"], "--config", str(first), "--yes").exit_code == 0  # as the superuser
    before = contents(pg, "customer", "dupewatch_fix", "dupewatch_archive_customer")
    as_other = make_url(pg.url).set(username=other_role, password="pw").render_as_string(hide_password=False)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "fix_url": as_other}},
                        [{"database": "app", **CHECK}])
    dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    blocked = [line for line in dry.stdout.splitlines() if "BLOCKED:" in line and "dupewatch_fix " in line]
    assert blocked and "belongs to postgres" in blocked[0] and other_role in blocked[0], dry.stdout
    fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
    assert fix.exit_code == 2, fix.output
    message = fix.stderr
    assert message.count("\n") == 1 and "unexpected" not in message and "rolled back" not in message, message
    assert "dupewatch_fix " in message and "belongs to postgres" in message and other_role in message, message
    assert "OWNER TO" in message, message
    assert contents(pg, "customer", "dupewatch_fix", "dupewatch_archive_customer") == before

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
    # The plan's blocker, or (where the dry run must read the fix records first: is a fix of this check unfinished?)
    # the same one line as its error
    blocked = [line for line in (dry.stdout + dry.stderr).splitlines()
               if ("BLOCKED:" in line or "error:" in line) and "dupewatch_fix " in line]
    assert blocked and "belongs to postgres" in blocked[0] and other_role in blocked[0], dry.output
    fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
    assert fix.exit_code == 2, fix.output
    message = fix.stderr
    assert message.count("\n") == 1 and "unexpected" not in message and "rolled back" not in message, message
    assert "dupewatch_fix " in message and "belongs to postgres" in message and other_role in message, message
    assert "OWNER TO" in message, message
    assert contents(pg, "customer", "dupewatch_fix", "dupewatch_archive_customer") == before


def test_the_detection_role_reads_the_fix_records_with_a_grant_and_a_policy(pg, other_role, tmp_path):
    """What `records.ensure_tables` and the README say about letting the detection role (the daemon's
    `dupewatch_fix_deleted_rows_total`) read `dupewatch_fix` on PostgreSQL: row-level security with no policy makes a
    grant alone read no row; the grant and a SELECT policy read the totals."""
    from monitor.config import load_config
    from monitor.engine import Monitor
    from monitor.fixstats import totals_by_check

    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x')")
    fixing = write_config(tmp_path / "fix.toml", {"app": {"url": pg.url}}, [{"database": "app", **CHECK}])
    assert run_cli("fix", CHECK["name"], "--config", str(fixing), "--yes").exit_code == 0  # as the superuser
    as_other = make_url(pg.url).set(username=other_role, password="pw").render_as_string(hide_password=False)
    path = write_config(tmp_path / "detect.toml", {"app": {"url": as_other}}, [{"database": "app", **CHECK}])

    def totals() -> dict[str, int] | None:
        monitor = Monitor(load_config(path))
        try:
            read = totals_by_check(monitor.database("app"))
            return None if read is None else read.deleted
        finally:
            monitor.close()

    assert totals() is None  # no privilege: unreadable, not zero
    pg.execute(f'GRANT SELECT ON "{pg.schema}".dupewatch_fix TO {other_role}')
    assert totals() == {}  # row-level security without a policy: no row
    pg.execute(f'CREATE POLICY dupewatch_fix_read ON "{pg.schema}".dupewatch_fix FOR SELECT TO {other_role} '
               "USING (true)")
    assert totals() == {CHECK["name"]: 1}


def test_a_fix_role_that_may_not_use_the_tables_archive_is_refused_before_anything_changes(pg, other_role, tmp_path):
    """The operator gave dupewatch_fix and dupewatch_fix_reference to the fix role, but the table's archive from an
    earlier fix still belongs to the first role: refused up front naming the archive, not a batch stopped on it."""
    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x'), (4, 'b@x')")
    first = write_config(tmp_path / "first.toml", {"app": {"url": pg.url}},
                         [{"database": "app", **CHECK, "where": "email = 'a@x'"}])
    assert run_cli("fix", CHECK["name"], "--config", str(first), "--yes").exit_code == 0  # as the superuser
    pg.execute(f'ALTER TABLE "{pg.schema}".dupewatch_fix OWNER TO {other_role}',
               f'ALTER TABLE "{pg.schema}".dupewatch_fix_reference OWNER TO {other_role}')
    before = contents(pg, "customer", "dupewatch_archive_customer")
    fixes = pg.scalar("SELECT count(*) FROM dupewatch_fix")
    as_other = make_url(pg.url).set(username=other_role, password="pw").render_as_string(hide_password=False)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "fix_url": as_other}},
                        [{"database": "app", **CHECK}])
    dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    blocked = [line for line in dry.stdout.splitlines() if "BLOCKED:" in line]
    assert blocked and "dupewatch_archive_customer" in blocked[0] and "belongs to postgres" in blocked[0], dry.stdout
    fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
    assert fix.exit_code == 2, fix.output
    message = fix.stderr
    assert "rolled back" not in message and "dupewatch_archive_customer" in message, message
    assert contents(pg, "customer", "dupewatch_archive_customer") == before
    assert pg.scalar("SELECT count(*) FROM dupewatch_fix") == fixes


def test_a_resumed_fix_through_a_role_that_may_not_use_its_tables_is_refused_before_anything_changes(
        pg, other_role, tmp_path):
    """A fix stopped after its first batch (run as the superuser) resumed through a `fix_url` role that was handed
    dupewatch_fix and dupewatch_fix_reference only: the ownership check runs on resume too, refusing in one line
    naming the archive, not a batch stopped on it."""
    import threading

    from monitor.config import load_config
    from monitor.engine import Monitor
    from monitor.fix import prepare_fix, run_fix

    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x'), (4, 'b@x')")
    first = write_config(tmp_path / "first.toml", {"app": {"url": pg.url}}, [{"database": "app", **CHECK}])
    monitor = Monitor(load_config(first))
    try:
        stop = threading.Event()
        stopped = run_fix(monitor, CHECK["name"], prepare_fix(monitor, CHECK["name"]), batch_size=1,
                          progress=lambda _p: stop.set(), cancel=stop)
        assert (stopped.state, stopped.deleted) == ("stopped", 1)
    finally:
        monitor.close()
    pg.execute(f'ALTER TABLE "{pg.schema}".dupewatch_fix OWNER TO {other_role}',
               f'ALTER TABLE "{pg.schema}".dupewatch_fix_reference OWNER TO {other_role}')
    before = contents(pg, "customer", "dupewatch_archive_customer")
    as_other = make_url(pg.url).set(username=other_role, password="pw").render_as_string(hide_password=False)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "fix_url": as_other}},
                        [{"database": "app", **CHECK}])
    fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
    assert fix.exit_code == 2, fix.output
    message = fix.stderr
    assert message.count("\n") == 1 and "rolled back" not in message, message
    assert "dupewatch_archive_customer" in message and "belongs to postgres" in message, message
    assert contents(pg, "customer", "dupewatch_archive_customer") == before
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "stopped"


def test_undo_by_a_role_that_may_not_read_the_archive_is_refused_naming_it(pg, other_role, tmp_path):
    """Undo through a `fix_url` role that was handed dupewatch_fix and dupewatch_fix_reference but not the archive:
    refused in one line naming the archive and its owner, the fix still undoable by the owner."""
    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x')")
    first = write_config(tmp_path / "first.toml", {"app": {"url": pg.url}}, [{"database": "app", **CHECK}])
    assert run_cli("fix", CHECK["name"], "--config", str(first), "--yes").exit_code == 0  # as the superuser
    fix_id = pg.scalar("SELECT fix_id FROM dupewatch_fix")
    pg.execute(f'ALTER TABLE "{pg.schema}".dupewatch_fix OWNER TO {other_role}',
               f'ALTER TABLE "{pg.schema}".dupewatch_fix_reference OWNER TO {other_role}')
    as_other = make_url(pg.url).set(username=other_role, password="pw").render_as_string(hide_password=False)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "fix_url": as_other}},
                        [{"database": "app", **CHECK}])
    undo = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undo.exit_code == 2, undo.output
    assert "dupewatch_archive_customer" in undo.stderr and "unexpected" not in undo.stderr, undo.stderr
    assert pg.rows("SELECT id FROM customer ORDER BY id") == [(1,)]
    assert run_cli("undo", fix_id, "--config", str(first), "--yes").exit_code == 0, "the owner may still undo"
    assert pg.rows("SELECT id FROM customer ORDER BY id") == [(1,), (2,)]


@pytest.fixture
def select_only_role(pg: TestDatabase) -> Iterator[str]:
    """A detection-style login: it may read the test schema's tables (and create there), not change their rows."""
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS",
                      f'GRANT USAGE, CREATE ON SCHEMA "{pg.schema}" TO {{user}}',
                      f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{pg.schema}" GRANT SELECT ON TABLES TO {{user}}',
                      prefix="dw_select", password="pw") as role:
        yield role


def test_a_fix_role_without_delete_on_the_table_is_blocked_by_the_dry_run(pg, select_only_role, tmp_path):
    """Found as a new user: the dry run as a SELECT-only role passed (exit 0), then the fix failed at its first
    batch with `permission denied`, recorded failed, with "run the fix again to resume" (which fails alike)."""
    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')")
    as_role = make_url(pg.url).set(username=select_only_role, password="pw").render_as_string(hide_password=False)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "fix_url": as_role}},
                        [{"database": "app", **CHECK}])
    dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    [blocked] = [line for line in dry.stdout.splitlines() if "BLOCKED:" in line]
    assert "may not UPDATE or DELETE" in blocked and "GRANT SELECT, UPDATE, DELETE ON" in blocked, blocked
    before = contents(pg, "customer")
    fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
    assert fix.exit_code == 2 and "may not UPDATE or DELETE" in fix.stderr, fix.output
    assert "rolled back" not in fix.stderr and fix.stderr.count("\n") == 1, fix.stderr
    assert contents(pg, "customer") == before

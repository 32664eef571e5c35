"""A fix role that lacks a privilege the fix needs. Found as a new user: on MariaDB the dry run of a role without
DELETE passed (exit 0), then the fix stopped at its first batch with `DELETE command denied` and "run the fix again
to resume", which fails the same way. The dry run now asks the server, as the fix role, whether it may make each
kind of write the fix makes (EXPLAIN, no row touched) and blocks naming the privilege, the object and the GRANT;
a batch stopped by a privilege refusal (one revoked after the plan) says the same, in one line, and does not
advise running the fix again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dbtest import TestDatabase, server_login, write_config
from fix_support import contents, run_cli
from monitor.config import load_config
from monitor.engine import Monitor
from monitor.fix import PrivilegeMissing, prepare_fix, run_fix

CHECK = {"name": "customers", "table": "customer", "key": ["email"]}


def _seed(db: TestDatabase) -> None:
    db.execute("CREATE TABLE customer (id INT PRIMARY KEY, email VARCHAR(20))",
               "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT REFERENCES customer (id))",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x'), (4, 'c@x'), (5, 'c@x')",
               "INSERT INTO orders VALUES (10, 1), (11, 2), (12, 5)")


@contextmanager
def _fix_role(db: TestDatabase, *, delete: bool) -> Iterator[str]:
    """A login that may read and write the test's tables (DELETE on `customer` only with `delete`) and create
    dupewatch's tables, and owns none of the application's. MariaDB: DELETE is a table grant, so that revoking it
    reaches an open connection at its next statement (a database grant would not)."""
    s = db.schema
    if db.dialect == "mysql":
        grants = ["GRANT PROCESS ON *.* TO {user}",
                  f"GRANT SELECT, INSERT, UPDATE, CREATE, DROP, ALTER, INDEX, TRIGGER ON `{s}`.* TO {{user}}"]
        grants += [f"GRANT DELETE ON `{s}`.customer TO {{user}}"] if delete else []
    else:
        grants = ["ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS", f'GRANT USAGE, CREATE ON SCHEMA "{s}" TO {{user}}',
                  f'GRANT SELECT, INSERT, UPDATE{", DELETE" if delete else ""} ON "{s}".customer TO {{user}}',
                  f'GRANT SELECT, UPDATE ON "{s}".orders TO {{user}}']
    with server_login(db.dialect, *grants, prefix="dw_priv", password="pw") as role:
        yield role


def _config(db: TestDatabase, role: str, tmp_path: Path) -> Path:
    as_role = make_url(db.url).set(username=role, password="pw").render_as_string(hide_password=False)
    return write_config(tmp_path / "dupewatch.toml", {"app": {"url": db.url, "fix_url": as_role}},
                        [{"database": "app", **CHECK}])


def test_mariadb_dry_run_blocks_a_fix_role_without_delete_naming_the_grant(mysql, tmp_path):
    _seed(mysql)
    with _fix_role(mysql, delete=False) as role:
        path = _config(mysql, role, tmp_path)
        dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
        assert dry.exit_code == 2, dry.output
        [blocked] = [line for line in dry.stdout.splitlines() if "BLOCKED:" in line]
        assert "may not DELETE" in blocked and "error 1142" in blocked, blocked
        assert f"GRANT DELETE ON customer TO '{role}'@'%'" in blocked, blocked
        before = contents(mysql, "customer", "orders")
        fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
        assert fix.exit_code == 2 and "may not DELETE" in fix.stderr, fix.output
        assert fix.stderr.count("\n") == 1 and "resume" not in fix.stderr, fix.stderr
        assert contents(mysql, "customer", "orders") == before


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_batch_refused_for_a_privilege_revoked_after_the_plan_names_it_and_does_not_advise_resuming(
        request, dialect, tmp_path):
    db = request.getfixturevalue("pg" if dialect == "postgresql" else "mysql")
    _seed(db)
    with _fix_role(db, delete=True) as role:
        monitor = Monitor(load_config(_config(db, role, tmp_path)))
        try:
            plan = prepare_fix(monitor, CHECK["name"])
            assert not plan.blockers and plan.rows_to_delete == 2, plan.blockers
            before = contents(db, "customer", "orders")
            table = f'"{db.schema}".customer' if dialect == "postgresql" else f"`{db.schema}`.customer"
            user = f'"{role}"' if dialect == "postgresql" else f"'{role}'@'%'"
            db.execute(f"REVOKE DELETE ON {table} FROM {user}")
            with pytest.raises(PrivilegeMissing) as stopped:  # the dashboard says no "press f to resume"
                run_fix(monitor, CHECK["name"], plan)
        finally:
            monitor.close()
    message = str(stopped.value)
    assert "\n" not in message and "resume" not in message and "run the fix again" not in message, message
    assert "may not DELETE customer" in message and "GRANT DELETE ON customer TO" in message, message
    assert ("SQLSTATE 42501" if dialect == "postgresql" else "error 1142") in message, message
    assert f"dupewatch undo {plan.fix_id}" in message, message
    assert contents(db, "customer", "orders") == before  # the batch was rolled back


def _refused_without_create(db: TestDatabase, role: str, tmp_path, why: tuple[str, ...], grant: str,
                            own_tables: str) -> None:
    """As `role`, the dry run is blocked saying each of `why` and `grant`, and the fix refuses in one line naming
    `grant` (no "resume"), nothing changed and none of dupewatch's tables created (`own_tables` counts them)."""
    path = _config(db, role, tmp_path)
    dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    [blocked] = [line for line in dry.stdout.splitlines() if "BLOCKED:" in line]
    assert all(w in blocked for w in why) and grant in blocked, blocked
    before = contents(db, "customer", "orders")
    fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
    assert fix.exit_code == 2 and grant in fix.stderr, fix.output
    assert fix.stderr.count("\n") == 1 and "resume" not in fix.stderr, fix.stderr
    assert contents(db, "customer", "orders") == before
    assert db.scalar(own_tables) == 0


def test_postgresql_dry_run_blocks_a_fix_role_that_may_not_create_in_the_schema(pg, tmp_path):
    """Each fix creates its plan table beside the table: without CREATE on the schema the dry run passed and the
    fix failed on `permission denied for schema`, naming nothing to grant."""
    _seed(pg)
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS",
                      f'GRANT USAGE ON SCHEMA "{pg.schema}" TO {{user}}',
                      f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{pg.schema}" TO {{user}}',
                      prefix="dw_priv", password="pw") as role:
        _refused_without_create(pg, role, tmp_path, (f"may not CREATE in schema {pg.schema}",),
                                f"GRANT CREATE ON SCHEMA {pg.schema} TO {role}",
                                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                                "AND tablename LIKE 'dupewatch%'")


def test_mariadb_dry_run_blocks_a_reference_the_fix_role_may_not_repoint(mysql, tmp_path):
    """The referencing table in another database, where the fix role may only read: its repoint's UPDATE is
    refused by the server (error 1142), named with its column and the GRANT, before anything changes."""
    other = f"{mysql.schema}_o"
    mysql.execute("CREATE TABLE customer (id INT PRIMARY KEY, email VARCHAR(20))",
                  "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')",
                  f"CREATE DATABASE `{other}`",
                  f"CREATE TABLE `{other}`.orders (id INT PRIMARY KEY, customer_id INT, "
                  f"FOREIGN KEY (customer_id) REFERENCES `{mysql.schema}`.customer (id))",
                  f"INSERT INTO `{other}`.orders VALUES (10, 1), (11, 2)")
    try:
        with server_login("mysql", "GRANT PROCESS ON *.* TO {user}",
                          f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX ON `{mysql.schema}`.* "
                          "TO {user}", f"GRANT SELECT ON `{other}`.orders TO {{user}}",
                          prefix="dw_priv", password="pw") as role:
            path = _config(mysql, role, tmp_path)
            dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
            assert dry.exit_code == 2, dry.output
            [blocked] = [line for line in dry.stdout.splitlines() if "BLOCKED:" in line]
            assert f"may not UPDATE {other}.orders" in blocked and "error 1142" in blocked, blocked
            assert f"GRANT UPDATE (customer_id) ON {other}.orders TO '{role}'@'%'" in blocked, blocked
            before = mysql.rows(f"SELECT * FROM `{other}`.orders ORDER BY id"), contents(mysql, "customer")
            fix = run_cli("fix", CHECK["name"], "--config", str(path), "--yes")
            assert fix.exit_code == 2 and "may not UPDATE" in fix.stderr and "resume" not in fix.stderr, fix.output
            assert (mysql.rows(f"SELECT * FROM `{other}`.orders ORDER BY id"), contents(mysql, "customer")) == before
    finally:
        mysql.execute(f"DROP DATABASE IF EXISTS `{other}`")


def test_mariadb_dry_run_blocks_a_fix_role_that_may_not_create_in_the_database(mysql, tmp_path):
    """Each fix creates its records, plan and archive tables in the table's database: without CREATE there the dry
    run passed and the fix stopped on `CREATE command denied`, naming nothing to grant. The server is asked by
    PREPARE of a CREATE TABLE, which checks the privilege and creates nothing (nor commits)."""
    _seed(mysql)
    s = mysql.schema
    with server_login("mysql", "GRANT PROCESS ON *.* TO {user}",
                      f"GRANT SELECT, INSERT, UPDATE, DELETE, DROP, ALTER, INDEX ON `{s}`.* TO {{user}}",
                      prefix="dw_priv", password="pw") as role:
        _refused_without_create(mysql, role, tmp_path, (f"may not CREATE in database {s}", "error 1142"),
                                f"GRANT CREATE ON {s}.* TO '{role}'@'%'",
                                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                                "AND TABLE_NAME LIKE 'dupewatch%'")


def test_mariadb_a_fix_role_with_table_grants_only_is_told_what_to_grant_not_asked_to_report_a_bug(mysql, tmp_path):
    """A MariaDB role granted on the application's tables only: the server answers it "SELECT command denied" for
    dupewatch's record table, which does not exist yet, as for one it may not read, and the dry run ended in
    "unexpected OperationalError ... please report this". One line naming the records and the grant, exit 2."""
    _seed(mysql)
    s = mysql.schema
    with server_login("mysql", f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{s}`.customer TO {{user}}",
                      f"GRANT SELECT, UPDATE ON `{s}`.orders TO {{user}}", prefix="dw_priv", password="pw") as role:
        path = _config(mysql, role, tmp_path)
        dry = run_cli("fix", CHECK["name"], "--config", str(path), "--dry-run")
        assert dry.exit_code == 2, dry.output
        assert "please report" not in dry.output and "Traceback" not in dry.output, dry.output
        assert "dupewatch_fix" in dry.stderr and "grant the fix role CREATE" in dry.stderr, dry.stderr
        assert len(dry.stderr.strip().splitlines()) == 1 and "pw" not in dry.stderr.replace(role, ""), dry.stderr

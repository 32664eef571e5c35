"""Issue 16's defence: the database's own account of each batch, and what the fix role cannot see.

A batch that changed anything the plan did not say (a cascade into rows row-level security hides, a trigger
writing elsewhere) is rolled back whole and names the table; what the catalog says the fix role cannot see
(row-level security it does not bypass, foreign keys on tables hidden from it, a publication refusing deletes)
blocks the plan, dry run and fix alike. Every outcome is read back from the database.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import PG_URL, TestDatabase, server_login, write_config
from fix_support import audit_trigger, contents, json_out, run_cli
from monitor.config import config_from_dict
from monitor.engine import Monitor
from monitor.fix import FixError, FixRefused, make_plan, prepare_fix, run_fix
from monitor.fix.catalog import PostgresCatalog

CUSTOMERS = {"name": "customers", "table": "customer", "key": ["email"]}
T = {"name": "t", "table": "t", "key": ["k"]}


@pytest.fixture
def monitor_on(monitor_for: Any) -> Any:
    """`monitor_on(db, check, **database options)`: a `Monitor` of one check on the test database (database
    `app`), closed after the test."""
    def make(db: TestDatabase, check: dict[str, Any] = T, **options: Any) -> Monitor:
        return monitor_for({"app": {"url": db.url, **options}}, [{"database": "app", **check}])
    return make


@pytest.fixture
def pg_fix_role(pg: TestDatabase) -> Iterator[str]:
    """A login role that is neither superuser nor BYPASSRLS and may read and write the test schema."""
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS",
                      f'GRANT USAGE, CREATE ON SCHEMA "{pg.schema}" TO {{user}}',
                      f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{pg.schema}" GRANT SELECT, INSERT, UPDATE, DELETE '
                      "ON TABLES TO {user}", prefix="dw_fix") as role:
        yield role


def _as(db: TestDatabase, user: str, password: str | None = None) -> str:
    return make_url(db.url).set(username=user, password=password).render_as_string(hide_password=False)


def _seed_customers(pg: TestDatabase, role: str) -> None:
    """Issue 16, item 1: invoices cascade, payments are unlinked, and RLS shows the fix role none of either."""
    pg.execute("CREATE TABLE customer (id INT PRIMARY KEY, email TEXT)",
               "CREATE TABLE invoice (id INT PRIMARY KEY, customer_id INT REFERENCES customer ON DELETE CASCADE)",
               "CREATE TABLE payment (id INT PRIMARY KEY, customer_id INT REFERENCES customer ON DELETE SET NULL)",
               "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')",
               "INSERT INTO invoice VALUES (10, 2), (11, 2), (12, 3)",
               "INSERT INTO payment VALUES (20, 2)",
               "ALTER TABLE invoice ENABLE ROW LEVEL SECURITY", "ALTER TABLE payment ENABLE ROW LEVEL SECURITY",
               f'CREATE POLICY nothing_for_the_fix ON invoice TO "{role}" USING (false)',
               f'CREATE POLICY nothing_for_the_fix ON payment TO "{role}" USING (false)')


def _customers_config(tmp_path, pg: TestDatabase, role: str):
    return write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "fix_url": _as(pg, role)}},
                        [{"database": "app", **CUSTOMERS}])


def test_rls_hiding_cascading_children_blocks_dry_run_and_fix(pg, pg_fix_role, tmp_path):
    _seed_customers(pg, pg_fix_role)
    before = contents(pg, "customer", "invoice", "payment")
    path = _customers_config(tmp_path, pg, pg_fix_role)
    dry = run_cli("fix", "customers", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    blockers = json_out(dry)["blockers"]
    assert any("invoice(customer_id)" in b and "row-level security" in b and "BYPASSRLS" in b for b in blockers)
    assert any("payment(customer_id)" in b and pg_fix_role in b for b in blockers)
    fix = run_cli("fix", "customers", "--config", str(path), "--yes")
    assert fix.exit_code == 2 and "row-level security" in fix.stderr
    assert contents(pg, "customer", "invoice", "payment") == before


def test_the_batch_account_alone_rolls_back_a_cascade_into_hidden_rows(pg, pg_fix_role, monkeypatch, monitor_on):
    """Without the up-front refusal, the database's count of the batch catches the cascade it could not see."""
    _seed_customers(pg, pg_fix_role)
    unrefused = PostgresCatalog.foreign_keys_to
    monkeypatch.setattr(PostgresCatalog, "foreign_keys_to",
                        lambda self, table: [dataclasses.replace(fk, hidden_from=None)
                                             for fk in unrefused(self, table)])
    before = contents(pg, "customer", "invoice", "payment")
    monitor = monitor_on(pg, CUSTOMERS, fix_url=_as(pg, pg_fix_role))
    assert make_plan(monitor, "customers").blockers == []  # what the fix role sees: nothing references
    with pytest.raises(FixError, match=r"2 row\(s\) deleted in invoice, the plan 0") as stopped:
        run_fix(monitor, "customers")
    assert "rolled back" in str(stopped.value)
    assert contents(pg, "customer", "invoice", "payment") == before
    assert pg.scalar("SELECT COUNT(*) FROM dupewatch_archive_customer") == 0
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "failed"


# -- a trigger writing elsewhere, on every database ------------------------------------------------------------


def test_a_trigger_writing_another_table_rolls_the_batch_back(db, monitor_on):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1), (3, 2)")
    audit_trigger(db, "remember_delete", "DELETE", "t")
    before = contents(db, "t", "audit")
    with pytest.raises(FixError) as stopped:
        run_fix(monitor_on(db), "t")
    message = str(stopped.value)
    # PostgreSQL counts per table; SQLite and MariaDB count the session's writes and name what may have done it.
    named = "in audit" if db.dialect == "postgresql" else "AFTER DELETE trigger remember_delete"
    assert named in message and "rolled back" in message, message
    assert "run the fix again" not in message  # it would do the same again
    assert contents(db, "t", "audit") == before


def test_postgres_a_deferred_constraint_trigger_is_counted_before_commit(pg, monitor_on):
    """`CREATE CONSTRAINT TRIGGER ... AFTER DELETE ... DEFERRABLE INITIALLY DEFERRED` fires at COMMIT, after the
    account was read: it deleted `profile`'s row of the deleted duplicate uncounted, the fix reported done, and
    undo could not bring that row back. The batch now fires deferred work before its account, and is rolled back."""
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1), (3, 2)",
               "CREATE TABLE profile (id INTEGER PRIMARY KEY, t_ref INTEGER, data TEXT)",
               "INSERT INTO profile VALUES (1, 2, 'precious'), (2, 1, 'kept')",
               "CREATE FUNCTION clean_up() RETURNS trigger LANGUAGE plpgsql AS "
               "'BEGIN DELETE FROM profile WHERE t_ref = OLD.id; RETURN NULL; END'",
               "CREATE CONSTRAINT TRIGGER t_clean_up AFTER DELETE ON t DEFERRABLE INITIALLY DEFERRED "
               "FOR EACH ROW EXECUTE FUNCTION clean_up()")
    before = contents(pg, "t", "profile")
    with pytest.raises(FixError) as stopped:
        run_fix(monitor_on(pg), "t")
    assert "deleted in" in str(stopped.value) and "profile" in str(stopped.value), stopped.value
    assert "t_clean_up" in str(stopped.value)
    assert contents(pg, "t", "profile") == before


def test_a_trigger_on_a_repointed_table_writing_elsewhere_rolls_the_batch_back(db, monitor_on):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
               "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t (id))",
               "INSERT INTO c VALUES (10, 2)")
    audit_trigger(db, "remember_move", "UPDATE", "c")
    before = contents(db, "t", "c", "audit")
    with pytest.raises(FixError, match="rolled back") as stopped:
        run_fix(monitor_on(db), "t")
    assert db.dialect != "postgresql" or "in audit" in str(stopped.value)
    assert contents(db, "t", "c", "audit") == before


def test_a_trigger_rewriting_its_own_row_stops_the_fix_on_every_database(db, monitor_on):
    """A child's BEFORE UPDATE trigger that stamps the updated row is one update of that row, as the account
    plans, but it changes a column the repoint does not (`seen`), which undo, firing it again, cannot put back:
    the batch is rolled back, on PostgreSQL and MariaDB (the database's digest of the rest of the row, before and
    after) as on SQLite (whose trigger is a second UPDATE statement, beyond the plan)."""
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
               "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t (id), seen INTEGER)",
               "INSERT INTO c VALUES (10, 2, 0)")
    if db.dialect == "postgresql":
        db.execute("CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
                   "'BEGIN NEW.seen := 1; RETURN NEW; END'",
                   "CREATE TRIGGER stamp BEFORE UPDATE ON c FOR EACH ROW EXECUTE FUNCTION stamp()")
    elif db.dialect == "mysql":
        db.execute("CREATE TRIGGER stamp BEFORE UPDATE ON c FOR EACH ROW SET NEW.seen = 1")
    else:
        db.execute("CREATE TRIGGER stamp AFTER UPDATE OF t_id ON c BEGIN UPDATE c SET seen = 1 WHERE id = new.id; END")
    before = contents(db, "t", "c")
    with pytest.raises(FixError, match="row"):
        run_fix(monitor_on(db), "t")
    assert contents(db, "t", "c") == before


# -- item 9: the preview is the fix's view ------------------------------------------------------------------


def test_the_dry_run_plans_what_the_fix_role_sees(pg, pg_fix_role, monitor_on):
    """The detection role (a superuser) sees two duplicate groups; the fix role, under row-level security, one.
    The dry run promises what the fix then does."""
    pg.execute("CREATE TABLE member (id INT PRIMARY KEY, tenant TEXT, email TEXT)",
               "INSERT INTO member VALUES (1, 'a', 'x'), (2, 'a', 'x'), (3, 'b', 'y'), (4, 'b', 'y'), (5, 'b', 'y')",
               "ALTER TABLE member ENABLE ROW LEVEL SECURITY",
               f"CREATE POLICY tenant_a ON member TO \"{pg_fix_role}\" USING (tenant = 'a')")
    monitor = monitor_on(pg, {"name": "m", "table": "member", "key": ["email"]}, fix_url=_as(pg, pg_fix_role))
    plan = make_plan(monitor, "m")
    report = run_fix(monitor, "m")
    assert (plan.groups, plan.rows_to_delete) == (1, 1)
    assert (report.groups, report.deleted) == (plan.groups, plan.rows_to_delete)
    assert pg.rows("SELECT id FROM member ORDER BY id") == [(1,), (3,), (4,), (5,)]


def test_policies_letting_the_fix_role_read_rows_it_may_not_delete_block_the_dry_run(pg, pg_fix_role, monitor_on):
    """Row-level security on the fixed table whose policies differ by command (a multi-tenant app: every tenant
    reads every member, deletes its own only): the dry run, reading as the fix role, planned both groups and exited
    0; every run of the fix then stopped at its first batch ("archived 1 rows, expected 2 ... run the fix again
    to resume"), since DELETE saw one of the two rows. Now a blocker names the policies and their commands, and
    the fix refuses up front, nothing changed. A policy FOR ALL (one view for every command) still plans and
    fixes what the role sees."""
    pg.execute("CREATE TABLE member (id INT PRIMARY KEY, tenant TEXT, email TEXT)",
               "INSERT INTO member VALUES (1, 'a', 'x'), (2, 'a', 'x'), (3, 'b', 'y'), (4, 'b', 'y')",
               "ALTER TABLE member ENABLE ROW LEVEL SECURITY",
               f"CREATE POLICY read_all ON member FOR SELECT TO \"{pg_fix_role}\" USING (true)",
               f"CREATE POLICY lock_all ON member FOR UPDATE TO \"{pg_fix_role}\" USING (true)",
               f"CREATE POLICY delete_own ON member FOR DELETE TO \"{pg_fix_role}\" USING (tenant = 'a')")
    before = contents(pg, "member")
    monitor = monitor_on(pg, {"name": "m", "table": "member", "key": ["email"]}, fix_url=_as(pg, pg_fix_role))
    plan = make_plan(monitor, "m")
    said = [b for b in plan.blockers if "row-level security" in b]
    assert len(said) == 1 and "delete_own (DELETE)" in said[0] and "read_all (SELECT)" in said[0], plan.blockers
    with pytest.raises(FixRefused, match="row-level security"):
        run_fix(monitor, "m")
    assert contents(pg, "member") == before
    pg.execute("DROP POLICY read_all ON member", "DROP POLICY lock_all ON member", "DROP POLICY delete_own ON member",
               f"CREATE POLICY tenant_a ON member TO \"{pg_fix_role}\" USING (tenant = 'a')")
    assert not prepare_fix(monitor, "m").blockers  # planned, then the policies change: resuming refuses too
    pg.execute(f"CREATE POLICY read_all ON member FOR SELECT TO \"{pg_fix_role}\" USING (true)")
    with pytest.raises(FixRefused, match=r"read_all \(SELECT\)"):
        run_fix(monitor, "m")
    assert contents(pg, "member") == before
    pg.execute("DROP POLICY read_all ON member")
    assert run_fix(monitor, "m").deleted == 1
    assert pg.rows("SELECT id FROM member ORDER BY id") == [(1,), (3,), (4,)]


def test_policies_that_cannot_part_reads_from_deletes_do_not_block(pg, pg_fix_role, monitor_on):
    """A restrictive `FOR SELECT` policy (beside a permissive `FOR ALL` one), or a permissive `FOR UPDATE` or
    `FOR DELETE` one wider than what the role reads, was a blocker ("policies for some commands only"), though a row
    the fix locks or deletes passes the SELECT policies too: it touches exactly the rows it reads, and the fix
    would have run. They no longer block, and the fix deletes the duplicates the role sees; a restrictive
    `FOR DELETE` policy, which narrows what it may delete, still blocks."""
    role = f'"{pg_fix_role}"'
    pg.execute("CREATE TABLE member (id INT PRIMARY KEY, tenant TEXT, email TEXT)",
               "INSERT INTO member VALUES (1, 'a', 'x'), (2, 'a', 'x'), (3, 'b', 'y'), (4, 'b', 'y'), "
               "(5, 'a', 'z'), (6, 'b', 'z')",
               "ALTER TABLE member ENABLE ROW LEVEL SECURITY",
               f"CREATE POLICY tenant_a ON member TO {role} USING (tenant = 'a')",
               f"CREATE POLICY lock_any ON member FOR UPDATE TO {role} USING (true)",
               f"CREATE POLICY delete_any ON member FOR DELETE TO {role} USING (true)",
               f"CREATE POLICY see_x ON member AS RESTRICTIVE FOR SELECT TO {role} USING (email <> 'z')")
    monitor = monitor_on(pg, {"name": "m", "table": "member", "key": ["email"]}, fix_url=_as(pg, pg_fix_role))
    plan = make_plan(monitor, "m")
    assert (plan.groups, [b for b in plan.blockers if "row-level security" in b]) == (1, []), plan.blockers
    pg.execute(f"CREATE POLICY delete_own ON member AS RESTRICTIVE FOR DELETE TO {role} USING (id <> 2)")
    said = [b for b in make_plan(monitor, "m").blockers if "row-level security" in b]
    assert len(said) == 1 and "delete_own (DELETE, restrictive)" in said[0], said
    pg.execute("DROP POLICY delete_own ON member")
    assert run_fix(monitor, "m").deleted == 1
    assert pg.rows("SELECT id FROM member ORDER BY id") == [(1,), (3,), (4,), (5,), (6,)]


def test_the_dry_run_changes_nothing_on_the_writing_connection(db, monitor_on):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    plan = make_plan(monitor_on(db), "t")
    assert plan.rows_to_delete == 1
    assert not [t for t in sa.inspect(db.engine).get_table_names() if t.startswith("dupewatch")]


# -- MariaDB: foreign keys on tables the fix role cannot see ------------------------------------------------


@pytest.fixture
def mysql_fix_user(mysql: TestDatabase) -> Iterator[tuple[str, str]]:
    password = uuid.uuid4().hex
    with server_login("mysql", f"GRANT ALL ON `{mysql.schema}`.* TO {{user}}", prefix="dw_fix",
                      password=password) as user:
        yield user, password


@pytest.fixture
def invoices_elsewhere(mysql: TestDatabase) -> Iterator[str]:
    """customer 1 and 2 share an email; invoice 10, in a second database, references customer 2 ON DELETE
    CASCADE. Yields the second database's name, dropped after the test."""
    other = f"{mysql.schema}_other"
    mysql.execute("CREATE TABLE customer (id INT PRIMARY KEY, email VARCHAR(20))",
                  "INSERT INTO customer VALUES (1, 'a@x'), (2, 'a@x')", f"CREATE DATABASE `{other}`")
    try:
        mysql.execute(f"CREATE TABLE `{other}`.invoice (id INT PRIMARY KEY, customer_id INT, FOREIGN KEY "
                      f"(customer_id) REFERENCES `{mysql.schema}`.customer (id) ON DELETE CASCADE)",
                      f"INSERT INTO `{other}`.invoice VALUES (10, 2)")
        yield other
    finally:
        mysql.execute(f"DROP DATABASE `{other}`")


def test_mysql_a_cascade_from_a_database_the_fix_role_cannot_see_blocks_the_plan(mysql, mysql_fix_user,
                                                                                  invoices_elsewhere, monitor_on):
    monitor = monitor_on(mysql, CUSTOMERS, fix_url=_as(mysql, *mysql_fix_user))
    plan = make_plan(monitor, "customers")
    with pytest.raises(FixRefused, match="cannot see every foreign key"):
        run_fix(monitor, "customers")
    assert any("grant it PROCESS" in b for b in plan.blockers), plan.blockers
    assert mysql.scalar(f"SELECT COUNT(*) FROM `{invoices_elsewhere}`.invoice") == 1
    assert mysql.scalar("SELECT COUNT(*) FROM customer") == 2


def test_mysql_with_process_the_hidden_foreign_key_is_named(mysql, mysql_fix_user, invoices_elsewhere, monitor_on):
    user, password = mysql_fix_user
    mysql.execute(f"GRANT PROCESS ON *.* TO '{user}'@'%'")
    plan = make_plan(monitor_on(mysql, CUSTOMERS, fix_url=_as(mysql, user, password)), "customers")
    assert any(f"{invoices_elsewhere}.invoice" in b and "no privilege" in b for b in plan.blockers), plan.blockers


def test_mysql_a_reference_on_a_table_granted_alone_is_repointed_not_cascaded(mysql, mysql_fix_user,
                                                                               invoices_elsewhere, monitor_on):
    """MariaDB hides the REFERENTIAL_CONSTRAINTS row of a foreign key from a role with only table privileges on
    its table; InnoDB's cascade (which no session counter shows) would delete the invoice unseen."""
    user, password = mysql_fix_user
    mysql.execute(f"GRANT SELECT, UPDATE ON `{invoices_elsewhere}`.invoice TO '{user}'@'%'",
                  f"GRANT PROCESS ON *.* TO '{user}'@'%'")
    report = run_fix(monitor_on(mysql, CUSTOMERS, fix_url=_as(mysql, user, password)), "customers")
    assert (report.deleted, report.repointed) == (1, 1)
    assert mysql.rows(f"SELECT id, customer_id FROM `{invoices_elsewhere}`.invoice") == [(10, 1)]


TAGS = {"name": "tags", "table": "tag", "key": ["name"]}


@pytest.fixture
def labels_elsewhere(mysql: TestDatabase) -> Iterator[str]:
    """tag 1 and 2 share a name; item 10 refers to tag 2, item 11 to tag 1; in a second database, which the fix
    role may not see, `label(tag_id, item_id)` refers to `item(tag_id, id)` ON UPDATE CASCADE (created empty).
    Yields the second database's name, dropped after the test."""
    other = f"{mysql.schema}_lbl"
    mysql.execute("CREATE TABLE tag (id INT PRIMARY KEY, name VARCHAR(20))",
                  "INSERT INTO tag VALUES (1, 'red'), (2, 'red')",
                  "CREATE TABLE item (id INT PRIMARY KEY, tag_id INT REFERENCES tag (id), UNIQUE KEY (tag_id, id))",
                  "INSERT INTO item VALUES (10, 2), (11, 1)", f"CREATE DATABASE `{other}`")
    try:
        yield other
    finally:
        mysql.execute(f"DROP DATABASE `{other}`")


def _hidden_labels(mysql: TestDatabase, other: str, *rows: str) -> None:
    mysql.execute(f"CREATE TABLE `{other}`.label (id INT PRIMARY KEY, tag_id INT, item_id INT, FOREIGN KEY "
                  f"(tag_id, item_id) REFERENCES `{mysql.schema}`.item (tag_id, id) ON UPDATE CASCADE)",
                  *[f"INSERT INTO `{other}`.label VALUES {row}" for row in rows])


def test_mysql_a_hidden_on_update_cascade_from_a_repointed_table_blocks_the_plan(mysql, mysql_fix_user,
                                                                                  labels_elsewhere, monitor_on):
    """The repoint of item 10 would cascade into a label the fix role cannot see (InnoDB's action, counted by no
    Handler_* counter): the fix repointed, said nothing, and the label followed. Now the plan names it."""
    user, password = mysql_fix_user
    mysql.execute(f"GRANT PROCESS ON *.* TO '{user}'@'%'")
    _hidden_labels(mysql, labels_elsewhere, "(100, 2, 10)")
    monitor = monitor_on(mysql, TAGS, fix_url=_as(mysql, user, password))
    plan = make_plan(monitor, "tags")
    assert any(f"{labels_elsewhere}.label" in b and "'item'" in b and "ON UPDATE" in b for b in plan.blockers), \
        plan.blockers
    with pytest.raises(FixRefused, match="no privilege on"):
        run_fix(monitor, "tags")
    assert mysql.rows(f"SELECT id, tag_id, item_id FROM `{labels_elsewhere}`.label") == [(100, 2, 10)]
    assert mysql.rows("SELECT id, tag_id FROM item ORDER BY id") == [(10, 2), (11, 1)]


def test_mysql_undo_refuses_to_point_back_rows_a_hidden_foreign_key_refers_to(mysql, mysql_fix_user,
                                                                               labels_elsewhere, tmp_path):
    """A label referring to the repointed item ON UPDATE CASCADE, in a database the fix role cannot see, written
    after the fix: pointing item 10 back would cascade into it unseen. Undo refuses, naming it, nothing changed."""
    user, password = mysql_fix_user
    mysql.execute(f"GRANT PROCESS ON *.* TO '{user}'@'%'")
    path = str(write_config(tmp_path / "dupewatch.toml", {"app": {"url": mysql.url,
                                                                  "fix_url": _as(mysql, user, password)}},
                            [{"database": "app", **TAGS}]))
    fixed = run_cli("fix", "tags", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    _hidden_labels(mysql, labels_elsewhere, "(100, 1, 10)")
    before = contents(mysql, "tag", "item")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes")
    assert undone.exit_code == 2, undone.output
    message = undone.stderr.strip()
    assert "\n" not in message and "nothing changed" in message and f"{labels_elsewhere}.label" in message, message
    assert contents(mysql, "tag", "item") == before
    assert mysql.rows(f"SELECT id, tag_id, item_id FROM `{labels_elsewhere}`.label") == [(100, 1, 10)]


# -- item 10: publications ------------------------------------------------------------------------------------


def test_a_publication_refusing_deletes_blocks_the_dry_run(pg, tmp_path):
    publication = f"dw_pub_{uuid.uuid4().hex[:8]}"
    pg.execute("CREATE TABLE t (id INTEGER, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
               f'CREATE PUBLICATION "{publication}" FOR TABLE t')
    try:
        path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}},
                            [{"database": "app", "name": "t", "table": "t", "key": ["k"]}])
        dry = run_cli("fix", "t", "--config", str(path), "--dry-run", "--json")
        assert dry.exit_code == 2, dry.output
        blocked = [b for b in json_out(dry)["blockers"] if publication in b]
        assert blocked and "REPLICA IDENTITY FULL" in blocked[0]
        pg.execute("ALTER TABLE t REPLICA IDENTITY FULL")  # what the blocker says to do
        assert run_cli("fix", "t", "--config", str(path), "--dry-run").exit_code == 0
        assert run_cli("fix", "t", "--config", str(path), "--yes").exit_code == 0
    finally:
        pg.execute(f'DROP PUBLICATION "{publication}"')
    assert pg.rows("SELECT id FROM t") == [(1,)]


def test_a_for_all_tables_publication_is_named_in_the_plan_notes(tmp_path):
    """In a database of its own: a FOR ALL TABLES publication reaches every table of its database."""
    name = f"dw_pub_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 1), (2, 1)"))
            conn.execute(sa.text("CREATE PUBLICATION everything FOR ALL TABLES"))
        config = {"databases": {"app": {"url": url.render_as_string(hide_password=False)}},
                  "checks": [{"database": "app", "name": "t", "table": "t", "key": ["k"]}]}
        monitor = Monitor(config_from_dict(config))
        try:
            plan = make_plan(monitor, "t")
            # A group changed after the snapshot is skipped and dropped from the plan table: a DELETE that the
            # publication (it publishes deletes) allows only on a table with a replica identity.
            prepared = prepare_fix(monitor, "t")
            with engine.connect() as conn:
                conn.execute(sa.text("UPDATE t SET k = 2 WHERE id = 2"))
            report = run_fix(monitor, "t", prepared)
        finally:
            monitor.close()
        assert plan.blockers == []
        assert any("everything is FOR ALL TABLES" in n and "archive" in n for n in plan.notes), plan.notes
        assert (report.state, report.skipped) == ("done", 1)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_rows_of_partitions_are_counted_as_their_partitioned_table(pg, monitor_on):
    """PostgreSQL counts a partitioned table's changes on its partitions: the account adds them up."""
    pg.execute("CREATE TABLE event (id INT, day INT, k INT, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)",
               "CREATE TABLE event_1 PARTITION OF event FOR VALUES FROM (0) TO (10)",
               "CREATE TABLE event_2 PARTITION OF event FOR VALUES FROM (10) TO (20)",
               "INSERT INTO event VALUES (1, 1, 7), (2, 11, 7), (3, 12, 7), (4, 2, 8)")
    report = run_fix(monitor_on(pg, {"name": "e", "table": "event", "key": ["k"]}), "e")
    assert (report.state, report.deleted) == ("done", 2)
    assert pg.rows("SELECT id FROM event ORDER BY id") == [(1,), (4,)]


def test_sqlite_a_cascade_the_fix_did_not_see_is_counted(sqlite_db, monkeypatch, monitor_on):
    """SQLite counts foreign key actions in total_changes(): with foreign keys enforced on the fix's connection
    and the reference hidden from the plan, the cascade is what the account catches."""
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t (id) ON DELETE CASCADE)",
                      "INSERT INTO c VALUES (10, 2)")
    monkeypatch.setattr("monitor.fix.execute.find_references", lambda *_args, **_kw: [])
    before = contents(sqlite_db, "t", "c")
    monitor = monitor_on(sqlite_db)
    sa.event.listen(monitor.database("app").writer, "connect",
                    lambda dbapi, _record: dbapi.execute("PRAGMA foreign_keys = ON"))
    with pytest.raises(FixError, match=r"counted 3 row\(s\) changed in this batch, the plan 2"):
        run_fix(monitor, "t")
    assert contents(sqlite_db, "t", "c") == before


def test_sqlite_a_batch_refused_by_a_foreign_key_names_the_key_and_the_rows(sqlite_db, monitor_on):
    """Foreign keys enforced on the fix's connection; a trigger `t_gone` AFTER DELETE ON t records each deleted id
    in `gone(t_id REFERENCES t (id))`, a row referring to the row just deleted, so the database refuses the batch.
    SQLite's own words are "FOREIGN KEY constraint failed", naming no key; now the fix asks SQLite which rows
    violate which key (the batch run again with deferred keys, `PRAGMA foreign_key_check`, rolled back) and names
    them; nothing of the batch is done."""
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
                      "CREATE TABLE gone (id INTEGER PRIMARY KEY, t_id INTEGER, "
                      "CONSTRAINT gone_t FOREIGN KEY (t_id) REFERENCES t (id))",
                      "CREATE TRIGGER t_gone AFTER DELETE ON t BEGIN INSERT INTO gone (t_id) VALUES (OLD.id); END")
    before = contents(sqlite_db, "t", "gone")
    monitor = monitor_on(sqlite_db)
    sa.event.listen(monitor.database("app").writer, "connect",
                    lambda dbapi, _record: dbapi.execute("PRAGMA foreign_keys = ON"))
    with pytest.raises(FixError) as stopped:
        run_fix(monitor, "t")
    message = str(stopped.value)
    assert "FOREIGN KEY constraint failed" in message, message
    assert "1 row(s) of gone(t_id) (rowid 1) would refer, by foreign key gone_t, to no row of t" in message, message
    assert "\n" not in message, message
    assert contents(sqlite_db, "t", "gone") == before


# -- PostgreSQL event triggers: the fix's, undo's and guard's DDL ------------------------------------------


def _ddl_audit(pg: TestDatabase) -> None:
    """An event trigger that logs each DDL command's tag into `ddl_log`, DROP TABLE included (a database of the
    test's own: event triggers are per database)."""
    pg.execute("CREATE TABLE ddl_log (tag TEXT)",
               "CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
               "'BEGIN INSERT INTO ddl_log VALUES (tg_tag); END'",
               "CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl()")


def _ddl_notify(pg: TestDatabase) -> None:
    """What PostgREST installs on every Supabase project: unfiltered event triggers that only NOTIFY."""
    pg.execute("CREATE FUNCTION notify_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
               "'BEGIN PERFORM pg_notify(''pgrst'', ''reload schema''); END'",
               "CREATE EVENT TRIGGER pgrst_ddl_watch ON ddl_command_end EXECUTE FUNCTION notify_ddl()",
               "CREATE EVENT TRIGGER pgrst_drop_watch ON sql_drop EXECUTE FUNCTION notify_ddl()")


def _dupewatch_tables(pg: TestDatabase) -> list[tuple[str]]:
    return pg.rows("SELECT tablename FROM pg_tables WHERE tablename LIKE 'dupewatch%' ORDER BY 1")


def test_postgres_an_event_trigger_writing_on_ddl_stops_the_fix_with_nothing_of_that_step_committed(own_pg, tmp_path):
    """The fix's DDL (plan, archive and log tables) ran outside every batch's account: `audit_ddl` wrote rows
    into ddl_log, and the fix said nothing. Now the transaction running the DDL counts what it changed: the row
    in ddl_log rolls it back and the fix stops naming the trigger: nothing written, not even dupewatch's own
    records. The dry run names the trigger in a note (it cannot know what the trigger writes)."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    _ddl_audit(pg)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    dry = run_cli("fix", "t", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert any("audit_ddl (ddl_command_end, log_ddl())" in n for n in json_out(dry)["notes"]), json_out(dry)
    fixed = run_cli("fix", "t", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    message = fixed.stderr.strip()
    assert "\n" not in message, message
    assert "row(s) inserted in ddl_log" in message and "audit_ddl (ddl_command_end, log_ddl())" in message, message
    assert "ALTER EVENT TRIGGER audit_ddl DISABLE" in message and "nothing of that step" in message, message
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert pg.rows("SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    assert _dupewatch_tables(pg) == []
    pg.execute("ALTER EVENT TRIGGER audit_ddl DISABLE")  # what the message says to do
    assert run_cli("fix", "t", "--config", str(path), "--yes").exit_code == 0
    assert pg.rows("SELECT tag FROM ddl_log") == [] and pg.rows("SELECT id FROM t") == [(1,)]


def test_postgres_an_event_trigger_writing_on_ddl_stops_a_second_fix_at_its_plan_table(own_pg, tmp_path):
    """dupewatch's records exist already (an earlier fix): the first DDL is the plan table's; it is rolled back,
    the fix's record discarded, the table untouched."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    assert run_cli("fix", "t", "--config", str(path), "--yes").exit_code == 0
    pg.execute("INSERT INTO t VALUES (3, 2), (4, 2)")
    tables = _dupewatch_tables(pg)
    _ddl_audit(pg)
    fixed = run_cli("fix", "t", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "plan and archive tables" in fixed.stderr and "audit_ddl" in fixed.stderr, fixed.stderr
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert pg.rows("SELECT id FROM t ORDER BY id") == [(1,), (3,), (4,)]
    assert _dupewatch_tables(pg) == tables
    assert pg.rows("SELECT state FROM dupewatch_fix ORDER BY created_at") == [("done",), ("discarded",)]


def test_postgres_event_triggers_that_only_notify_let_fix_undo_and_guard_run(own_pg, tmp_path):
    """Supabase's pgrst_ddl_watch and pgrst_drop_watch fire on every DDL and write no row: the fix, undo and the
    guard built under --lock-timeout account for each DDL transaction and pass (a concurrent build, outside any
    transaction, cannot be accounted for: refused)."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
               "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t)", "INSERT INTO c VALUES (7, 2)")
    _ddl_notify(pg)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    dry = run_cli("fix", "t", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0 and not json_out(dry)["blockers"], dry.output
    fixed = run_cli("fix", "t", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert pg.rows("SELECT id FROM t") == [(1,)] and pg.rows("SELECT id, t_id FROM c") == [(7, 1)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert pg.rows("SELECT id FROM t ORDER BY id") == [(1,), (2,)] and pg.rows("SELECT id, t_id FROM c") == [(7, 2)]
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "undone"
    assert not [r for r in _dupewatch_tables(pg) if r[0].startswith("dupewatch_plan")]
    pg.execute("DELETE FROM c", "DELETE FROM t WHERE id = 2")
    concurrent = run_cli("guard", "t", "--config", str(path))  # outside a transaction: refused, see below
    assert concurrent.exit_code == 2 and "pgrst_ddl_watch" in concurrent.stderr, concurrent.output
    assert "--lock-timeout" in concurrent.stderr, concurrent.stderr
    guarded = run_cli("guard", "t", "--config", str(path), "--lock-timeout", "5s")
    assert guarded.exit_code == 0, guarded.output
    assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_dupewatch_t'") == 1
    # fix --add-constraint: its concurrent rounds are skipped for the locked ones, whose builds are accounted
    pg.execute("DROP INDEX uq_dupewatch_t", "INSERT INTO t VALUES (3, 1)")
    added = run_cli("fix", "t", "--config", str(path), "--yes", "--add-constraint", "--lock-timeout", "5s")
    assert added.exit_code == 0, added.output
    assert pg.rows("SELECT id FROM t") == [(1,)]
    assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_dupewatch_t'") == 1


def test_postgres_an_event_trigger_writing_on_ddl_refuses_undo(own_pg, tmp_path):
    """Undo drops the fix's plan table (and with --drop-constraint its guard): an event trigger created since the
    fix writes a row there. That drop now runs inside undo's account: undo refuses, naming it, nothing changed."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    fixed = run_cli("fix", "t", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = json_out(fixed)["fix_id"]
    pg.execute(f'CREATE TABLE "dupewatch_plan_{fix_id.replace("-", "_")}" (x INT)')  # as a stopped fix leaves it
    _ddl_audit(pg)
    pg.execute("CREATE EVENT TRIGGER only_extensions ON ddl_command_end WHEN TAG IN ('CREATE EXTENSION') "
               "EXECUTE FUNCTION log_ddl()")  # fires on nothing undo runs: not named
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    message = undone.stderr.strip()
    assert "audit_ddl" in message and "only_extensions" not in message and "nothing changed" in message, message
    assert "ddl_log" in message and "\n" not in message, message
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert pg.rows("SELECT id FROM t") == [(1,)]
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "done"


def test_postgres_an_event_trigger_on_create_index_refuses_the_concurrent_guard(own_pg, tmp_path):
    """CREATE INDEX CONCURRENTLY runs outside a transaction: nothing can count or roll back what a trigger writes
    then, so the guard refuses before it builds, naming only the triggers whose tags fire on it. Under
    --lock-timeout the index is built in a transaction whose account is settled: the row is rolled back."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 2)")
    _ddl_audit(pg)
    pg.execute("ALTER EVENT TRIGGER audit_ddl DISABLE",
               "CREATE EVENT TRIGGER on_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') "
               "EXECUTE FUNCTION log_ddl()",
               "CREATE EVENT TRIGGER on_tables ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
               "EXECUTE FUNCTION log_ddl()")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    guarded = run_cli("guard", "t", "--config", str(path))
    assert guarded.exit_code == 2, guarded.output
    message = guarded.stderr.strip()
    assert "CONCURRENTLY" in message and "on_index" in message and "on_tables" not in message, message
    assert "audit_ddl" not in message and "nothing was built" in message, message
    locked = run_cli("guard", "t", "--config", str(path), "--lock-timeout", "5s")
    assert locked.exit_code == 2, locked.output
    assert "row(s) inserted in ddl_log" in locked.stderr and "on_index" in locked.stderr, locked.stderr
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_dupewatch_t'") == 0


def test_postgres_an_event_trigger_writing_on_the_guards_drop_refuses_undo_drop_constraint(own_pg, tmp_path):
    """`undo --drop-constraint` drops the guard inside undo's account (PostgreSQL's DDL is transactional): the row
    the trigger writes on DROP INDEX refuses undo, and the guard is still there."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    fixed = run_cli("fix", "t", "--config", str(path), "--yes", "--add-constraint", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_dupewatch_t'") == 1
    _ddl_audit(pg)
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes", "--drop-constraint")
    assert undone.exit_code == 2, undone.output
    assert "audit_ddl" in undone.stderr and "nothing changed" in undone.stderr, undone.stderr
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_dupewatch_t'") == 1
    assert pg.rows("SELECT id FROM t") == [(1,)] and pg.scalar("SELECT state FROM dupewatch_fix") == "done"
    pg.execute("ALTER EVENT TRIGGER audit_ddl DISABLE")
    again = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes", "--drop-constraint")
    assert again.exit_code == 0, again.output
    assert pg.rows("SELECT id FROM t ORDER BY id") == [(1,), (2,)]


def test_postgres_an_event_trigger_writing_on_drop_stops_the_done_fix_at_its_plan_tables_drop(own_pg, tmp_path):
    """A `sql_drop` trigger writes nothing while the fix creates its tables and fires when the done fix drops its
    plan table: that step is rolled back (the plan table kept, nothing in ddl_log) and named; the fix stays done."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
               "CREATE TABLE ddl_log (tag TEXT)",
               "CREATE FUNCTION log_drop() RETURNS event_trigger LANGUAGE plpgsql AS "
               "'BEGIN INSERT INTO ddl_log VALUES (tg_tag); END'",
               "CREATE EVENT TRIGGER audit_drop ON sql_drop EXECUTE FUNCTION log_drop()")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    fixed = run_cli("fix", "t", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    message = fixed.stderr.strip().splitlines()[-1]  # after the batch's progress line: one line
    assert message.startswith("dupewatch: error: ") and "dropping its plan table" in message, fixed.stderr
    assert "the fix is done" in message and "audit_drop (sql_drop, log_drop())" in message, message
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert pg.rows("SELECT id FROM t") == [(1,)] and pg.scalar("SELECT state FROM dupewatch_fix") == "done"
    assert pg.scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'dupewatch_plan%'") == 1


def test_postgres_an_event_trigger_writing_on_drop_refuses_purge_with_nothing_changed(own_pg, tmp_path):
    """`fixes purge` deleted the fix's archived rows, committed, then dropped its repoint log outside any account:
    a `sql_drop` trigger wrote its row and the purge said nothing. Now the deletes and drops are one accounted
    step: the row in ddl_log rolls it all back (archive, log, record as they were) and the refusal names the
    trigger; once disabled, the purge runs."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)",
               "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t)", "INSERT INTO c VALUES (7, 2)")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    fixed = run_cli("fix", "t", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = json_out(fixed)["fix_id"]
    pg.execute("CREATE TABLE ddl_log (tag TEXT)",
               "CREATE FUNCTION log_drop() RETURNS event_trigger LANGUAGE plpgsql AS "
               "'BEGIN INSERT INTO ddl_log VALUES (tg_tag); END'",
               "CREATE EVENT TRIGGER audit_drop ON sql_drop EXECUTE FUNCTION log_drop()")
    tables = _dupewatch_tables(pg)
    assert any(name.startswith("dupewatch_repoint_") for (name,) in tables), tables
    before = contents(pg, "dupewatch_archive_t", "dupewatch_fix", "dupewatch_fix_reference")

    purged = run_cli("fixes", "purge", fix_id, "--config", str(path), "--yes")
    assert purged.exit_code == 2, purged.output
    message = purged.stderr.strip()
    assert "\n" not in message and "unexpected" not in message, message
    assert f"purge of fix {fix_id}" in message and "audit_drop (sql_drop, log_drop())" in message, message
    assert "row(s) inserted in ddl_log" in message and "nothing of that step was committed" in message, message
    assert pg.rows("SELECT tag FROM ddl_log") == []
    assert _dupewatch_tables(pg) == tables
    assert contents(pg, "dupewatch_archive_t", "dupewatch_fix", "dupewatch_fix_reference") == before

    pg.execute("ALTER EVENT TRIGGER audit_drop DISABLE")
    again = run_cli("fixes", "purge", fix_id, "--config", str(path), "--yes", "--json")
    assert again.exit_code == 0 and json_out(again)["archived_rows"] == 1, again.output
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "purged"


def test_postgres_an_event_trigger_writing_on_drop_refuses_abandon_with_nothing_changed(own_pg, tmp_path,
                                                                                       monitor_for):
    """`fixes abandon` drops the fix's plan table in the transaction that records it abandoned: a row the
    `sql_drop` trigger writes rolls both back, naming the trigger."""
    pg = own_pg
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}}, [{"database": "app", **T}])
    fix_id = prepare_fix(monitor_for({"app": {"url": pg.url}}, [{"database": "app", **T}]), "t").fix_id or ""
    pg.execute("CREATE TABLE ddl_log (tag TEXT)",
               "CREATE FUNCTION log_drop() RETURNS event_trigger LANGUAGE plpgsql AS "
               "'BEGIN INSERT INTO ddl_log VALUES (tg_tag); END'",
               "CREATE EVENT TRIGGER audit_drop ON sql_drop EXECUTE FUNCTION log_drop()")
    tables = _dupewatch_tables(pg)
    abandoned = run_cli("fixes", "abandon", fix_id, "--config", str(path), "--yes")
    assert abandoned.exit_code == 2, abandoned.output
    message = abandoned.stderr.strip()
    assert "\n" not in message and f"abandoning fix {fix_id}" in message and "audit_drop" in message, message
    assert pg.rows("SELECT tag FROM ddl_log") == [] and _dupewatch_tables(pg) == tables
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "planned"

"""Issue 9's regressions: schemas from public bug reports on which the fix once broke its promise.

Each test names the promise; every check of the outcome is made in the database (row contents compared in SQL or
as the database returns them), never by trusting the fix's own report.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fix_support import config_file, contents, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import FixError, FixRefused, execute, make_plan, prepare_fix, run_fix, undo_fix
from monitor.fix import records as fix_records
from monitor.fix.execute import _Batch, table_lock
from monitor.fix.target import target
from monitor.words import command_naming


def _monitor(db, checks):
    return Monitor(make_config(db, checks))


def _plan_tables(db) -> list[str]:
    return [t for t in sa.inspect(db.engine).get_table_names() if t.startswith("dupewatch_plan_")]


def _states(db) -> list[str]:
    return [r[0] for r in db.rows("SELECT state FROM dupewatch_fix ORDER BY created_at")]


# -- 1. a foreign key to a non-unique column (MariaDB/MySQL allow it) -----------------------------------


@pytest.mark.parametrize("ondelete", ["CASCADE", "RESTRICT"])
def test_reference_to_a_non_unique_column_is_refused_not_cascaded(mysql, tmp_path, ondelete):
    mysql.execute("CREATE TABLE teams (tid INT AUTO_INCREMENT PRIMARY KEY, cid INT NOT NULL, name VARCHAR(20), "
                  "KEY (cid))",
                  "INSERT INTO teams (cid, name) VALUES (1, 'usa'), (1, 'usa'), (2, 'germany')",
                  f"CREATE TABLE members (row_id INT PRIMARY KEY, uid INT, cid INT, "
                  f"FOREIGN KEY (cid) REFERENCES teams (cid) ON DELETE {ondelete})",
                  "INSERT INTO members VALUES (10, 1, 1), (11, 1, 1), (12, 1, 2)")
    checks = [{"name": "teams", "table": "teams", "key": ["cid", "name"]}]
    before = contents(mysql, "teams", "members")
    path = config_file(tmp_path, mysql, checks)
    dry = run_cli("fix", "teams", "--config", str(path), "--dry-run")
    assert dry.exit_code == 2
    blocked = [line for line in dry.stdout.splitlines() if "BLOCKED" in line]
    assert blocked and "members(cid)" in blocked[0] and "not unique" in blocked[0]
    assert "so nothing cascades" not in dry.stdout
    result = run_cli("fix", "teams", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "not unique" in result.stderr
    assert contents(mysql, "teams", "members") == before


# -- 2. a physical slot is not a row identity -------------------------------------------------------------



@pytest.mark.parametrize(("gone", "late", "left"), [
    ("B", ("D-late", 4), ["A", "C", "D-late"]),  # a planned row's slot: the late row must not be deleted
    ("A", ("Z-newest", 9), ["B", "C", "Z-newest"]),  # the keeper's slot: the late row must not be kept in its place
])
def test_a_row_that_took_a_planned_rows_ctid_is_left_alone(own_pg, gone, late, left):
    pg = own_pg
    pg.execute("CREATE TABLE log_lines (name TEXT, body TEXT, t INT) WITH (autovacuum_enabled = off)",
               "INSERT INTO log_lines VALUES ('k1', 'A', 1), ('k1', 'B', 2), ('k1', 'C', 3)")
    monitor = _monitor(pg, [{"name": "lines", "table": "log_lines", "key": ["name"], "order_by": ["t"]}])
    try:
        plan = prepare_fix(monitor, "lines")
        slot = pg.scalar("SELECT ctid::text FROM log_lines WHERE body = :b", {"b": gone})
        pg.execute("DELETE FROM log_lines WHERE body = :b", params={"b": gone})
        with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM log_lines"))
        pg.execute("INSERT INTO log_lines VALUES ('k1', :b, :t)", params={"b": late[0], "t": late[1]})
        assert pg.scalar("SELECT ctid::text FROM log_lines WHERE body = :b", {"b": late[0]}) == slot  # reused
        report = run_fix(monitor, "lines", plan)
    finally:
        monitor.close()
    assert (report.deleted, report.skipped) == (0, 1)
    assert pg.rows("SELECT body FROM log_lines ORDER BY t") == [(b,) for b in left]


# -- 4. float keys: group membership decided by the database -----------------------------------------------


def test_identical_float_rows_without_a_key_are_fixed_in_one_run(mysql, tmp_path):
    mysql.execute("CREATE TABLE readings (sensor_id INT, reading FLOAT, taken_on DATE)",
                  "INSERT INTO readings VALUES (1, 0.3, '2024-01-01'), (1, 0.3, '2024-01-01'), "
                  "(2, 1.5, '2024-01-01'), (2, 1.5, '2024-01-01')")
    path = config_file(tmp_path, mysql, [{"name": "readings", "table": "readings",
                                          "key": ["sensor_id", "reading", "taken_on"]}])
    first = run_cli("fix", "readings", "--config", str(path), "--yes", "--json")
    assert first.exit_code == 0, first.output
    assert (json_out(first)["deleted"], json_out(first)["skipped"]) == (2, 0)
    assert mysql.scalar("SELECT COUNT(*) FROM readings") == 2
    assert mysql.scalar("SELECT COUNT(*) FROM dupewatch_archive_readings") == 2
    again = run_cli("fix", "readings", "--config", str(path), "--yes", "--json")
    assert again.exit_code == 0 and json_out(again)["deleted"] == 0


@pytest.mark.parametrize("dialect_type", ["REAL"])
def test_one_group_fix_finds_a_real_keys_group(pg, dialect_type):
    pg.execute(f"CREATE TABLE readings (id INT PRIMARY KEY, sensor_id INT, reading {dialect_type})",
               "INSERT INTO readings VALUES (1, 1, 0.3), (2, 1, 0.3), (3, 2, 1.5), (4, 2, 1.5)")
    key = pg.rows("SELECT sensor_id, reading FROM readings WHERE id = 1")[0]  # as the drill-down reads it
    monitor = _monitor(pg, [{"name": "r", "table": "readings", "key": ["sensor_id", "reading"]}])
    try:
        plan = make_plan(monitor, "r", group=key)
        assert (plan.groups, plan.rows_to_delete) == (1, 1)
        report = run_fix(monitor, "r", prepare_fix(monitor, "r", group=key))
    finally:
        monitor.close()
    assert report.deleted == 1
    assert pg.rows("SELECT id FROM readings ORDER BY id") == [(1,), (3,), (4,)]


# -- 5. references matched by the database's collation --------------------------------------------------------


def test_references_matching_by_collation_are_repointed_and_undone(mysql, tmp_path):
    mysql.execute("CREATE TABLE roles (code VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, name VARCHAR(40))",
                  "INSERT INTO roles VALUES ('admin', 'Administrator'), ('root', 'Administrator'), "
                  "('guest', 'Guest')",
                  "CREATE TABLE user_roles (id INT PRIMARY KEY, role_code VARCHAR(20) COLLATE utf8mb4_general_ci, "
                  "FOREIGN KEY (role_code) REFERENCES roles (code))",
                  "INSERT INTO user_roles VALUES (1, 'root'), (2, 'ROOT'), (3, 'guest')")
    before = contents(mysql, "roles", "user_roles")
    checks = [{"name": "roles", "table": "roles", "key": ["name"], "order_by": ["code"]}]
    path = config_file(tmp_path, mysql, checks)
    result = run_cli("fix", "roles", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result)["repointed"] == 2
    assert mysql.rows("SELECT id, role_code FROM user_roles ORDER BY id") == [(1, "admin"), (2, "admin"),
                                                                             (3, "guest")]
    undone = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(mysql, "roles", "user_roles") == before
    assert not _plan_tables(mysql)


# -- 6. ties on order_by ----------------------------------------------------------------------------------------


def test_ties_on_order_by_keep_the_lowest_primary_key_everywhere(pg):
    pg.execute("CREATE TABLE checkins (id INT PRIMARY KEY, user_id INT, day DATE, created_at TIMESTAMP(0), "
               "note TEXT)",
               "INSERT INTO checkins VALUES (7, 1, '2024-05-01', '2024-05-01 10:00:00', 'x'), "
               "(3, 1, '2024-05-01', '2024-05-01 10:00:00', 'y'), (5, 1, '2024-05-01', '2024-05-01 10:00:00', 'z')",
               "UPDATE checkins SET note = 'moved' WHERE id = 3")  # physical order now differs from id order
    monitor = _monitor(pg, [{"name": "c", "table": "checkins", "key": ["user_id", "day"], "order_by": ["created_at"]}])
    try:
        tc = monitor.resolve(monitor.config.check("c"))
        with monitor.database("app").read_only() as conn:
            shown = conn.execute(tc.members((1, pg.scalar("SELECT day FROM checkins LIMIT 1")))).all()
        preview = make_plan(monitor, "c")
        run_fix(monitor, "c")
    finally:
        monitor.close()
    assert shown[0].id == 3
    assert preview.sample[0].keep["id"] == 3
    assert pg.rows("SELECT id FROM checkins") == [(3,)]


# -- 7. an unexpected error leaves no debris --------------------------------------------------------------------


def test_an_unexpected_error_in_a_batch_is_one_line_and_leaves_nothing_running(db, tmp_path, monkeypatch):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    path = config_file(tmp_path, db, [{"name": "t", "table": "t", "key": ["k"]}])

    def boom(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(_Batch, "run", boom)
    result = run_cli("fix", "t", "--config", str(path), "--yes")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "RuntimeError: a bug" in result.stderr
    assert _states(db) == ["failed"]
    assert db.scalar("SELECT COUNT(*) FROM t") == 2
    monkeypatch.undo()
    resumed = run_cli("fix", "t", "--config", str(path), "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert db.scalar("SELECT COUNT(*) FROM t") == 1 and not _plan_tables(db)


# -- 9. references from other schemas ------------------------------------------------------------------------


def test_references_from_another_schema_are_found_repointed_and_undone(pg):
    other = f"{pg.schema}_other"
    pg.execute(f'CREATE SCHEMA "{other}"',
               "CREATE TABLE parent (id INT PRIMARY KEY, k INT)",
               "INSERT INTO parent SELECT g, g % 5 FROM generate_series(1, 20) g",
               f'CREATE TABLE "{other}".child_cascade (id INT PRIMARY KEY, parent_id INT '
               f"REFERENCES parent (id) ON DELETE CASCADE)",
               f'CREATE TABLE "{other}".child_setnull (id INT PRIMARY KEY, parent_id INT '
               f"REFERENCES parent (id) ON DELETE SET NULL)",
               f'INSERT INTO "{other}".child_cascade SELECT g, g FROM generate_series(1, 20) g',
               f'INSERT INTO "{other}".child_setnull SELECT g, g FROM generate_series(1, 20) g')
    snapshot = (f'SELECT (SELECT string_agg(c::text, \',\' ORDER BY id) FROM "{other}".child_cascade c), '
                f'(SELECT string_agg(s::text, \',\' ORDER BY id) FROM "{other}".child_setnull s), '
                "(SELECT string_agg(p::text, ',' ORDER BY id) FROM parent p)")
    before = pg.rows(snapshot)
    monitor = _monitor(pg, [{"name": "p", "table": "parent", "key": ["k"]}])
    try:
        plan = make_plan(monitor, "p")
        assert sorted(r.reference.table for r in plan.references) == ["child_cascade", "child_setnull"]
        assert all(r.rows == 15 for r in plan.references)
        report = run_fix(monitor, "p")
        assert (report.deleted, report.repointed) == (15, 30)
        assert pg.scalar(f'SELECT COUNT(*) FROM "{other}".child_cascade') == 20
        assert pg.scalar(f'SELECT COUNT(*) FROM "{other}".child_setnull WHERE parent_id IS NULL') == 0
        undo_fix(monitor, report.fix_id)
        assert pg.rows(snapshot) == before
    finally:
        monitor.close()
        pg.execute(f'DROP SCHEMA "{other}" CASCADE')


def test_a_reference_from_another_database_is_found(mysql):
    other = f"{mysql.schema}_other"
    mysql.execute(f"CREATE DATABASE `{other}`")
    try:
        mysql.execute("CREATE TABLE parent (id INT PRIMARY KEY, k INT)",
                      "INSERT INTO parent VALUES (1, 1), (2, 1), (3, 2)",
                      f"CREATE TABLE `{other}`.child (id INT PRIMARY KEY, parent_id INT, FOREIGN KEY (parent_id) "
                      f"REFERENCES `{mysql.schema}`.parent (id) ON DELETE CASCADE)",
                      f"INSERT INTO `{other}`.child VALUES (1, 1), (2, 2), (3, 3)")
        monitor = _monitor(mysql, [{"name": "p", "table": "parent", "key": ["k"]}])
        try:
            report = run_fix(monitor, "p")
        finally:
            monitor.close()
        assert report.repointed == 1
        assert mysql.rows(f"SELECT id, parent_id FROM `{other}`.child ORDER BY id") == [(1, 1), (2, 1), (3, 3)]
    finally:
        mysql.execute(f"DROP DATABASE `{other}`")


# -- 10. the archive keeps what row-level security hid ----------------------------------------------------------


def test_bookkeeping_tables_grant_nothing_to_anyone_but_their_owner(pg):
    role = f"{pg.schema}_tenant"
    pg.execute(f'CREATE ROLE "{role}"',
               f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{pg.schema}" GRANT SELECT ON TABLES TO "{role}"',
               "CREATE TABLE secrets (id INT PRIMARY KEY, tenant TEXT, k TEXT)",
               "INSERT INTO secrets VALUES (1, 'a', 'x'), (2, 'b', 'x')")
    monitor = _monitor(pg, [{"name": "s", "table": "secrets", "key": ["k"]}])
    try:
        run_fix(monitor, "s")
        grants = pg.rows("SELECT table_name FROM information_schema.role_table_grants WHERE grantee = :r "
                         "AND table_name LIKE 'dupewatch%'", {"r": role})
        assert pg.scalar("SELECT COUNT(*) FROM pg_tables WHERE tablename LIKE 'dupewatch%' "
                         "AND schemaname = :s", {"s": pg.schema}) >= 3  # fix, fix_reference, archive
        secured = pg.scalar("SELECT relrowsecurity FROM pg_class WHERE oid = 'dupewatch_archive_secrets'::regclass")
    finally:
        monitor.close()
        pg.execute(f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')
    assert grants == [] and secured is True


# -- 11. values of other types: bookkeeping rows written by the database ------------------------------------------


def test_a_referencing_table_keyed_by_inet_is_repointed_and_undone(pg):
    pg.execute("CREATE TABLE hosts (id INT PRIMARY KEY, name TEXT)",
               "INSERT INTO hosts VALUES (1, 'web'), (2, 'web')",
               "CREATE TABLE addresses (addr INET PRIMARY KEY, host_id INT REFERENCES hosts (id))",
               "INSERT INTO addresses VALUES ('10.0.0.1', 1), ('10.0.0.2', 2)")
    before = contents(pg, "hosts", "addresses")
    monitor = _monitor(pg, [{"name": "h", "table": "hosts", "key": ["name"]}])
    try:
        report = run_fix(monitor, "h")
        assert report.repointed == 1
        assert pg.scalar("SELECT COUNT(*) FROM addresses WHERE host_id = 1") == 2
        undo_fix(monitor, report.fix_id)
    finally:
        monitor.close()
    assert contents(pg, "hosts", "addresses") == before


# -- 12. one lock per resolved table ---------------------------------------------------------------------------


def test_two_spellings_of_one_table_share_its_fix_lock(pg):
    pg.execute("CREATE TABLE parent (id INT PRIMARY KEY, k INT)", "INSERT INTO parent VALUES (1, 1), (2, 1)")
    checks = [{"name": "plain", "table": "parent", "key": ["k"]},
              {"name": "qualified", "table": f"{pg.schema}.parent", "key": ["k"], "keep": "newest"}]
    monitor = _monitor(pg, checks)
    try:
        with table_lock(target(monitor, "plain")), pytest.raises(FixRefused, match="already being fixed"):
            run_fix(monitor, "qualified")
    finally:
        monitor.close()
    assert pg.scalar("SELECT COUNT(*) FROM parent") == 2


# -- 13. a process killed while planning ---------------------------------------------------------------------


def test_a_snapshot_left_by_a_killed_process_is_cleaned_up(db, tmp_path):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    monitor = _monitor(db, [{"name": "t", "table": "t", "key": ["k"]}])
    try:
        with monitor.database("app").bookkeeping.begin() as conn:  # what `kill -9` during the snapshot leaves
            fix_records.ensure_tables(conn)
            fix_records.insert_record(conn, fix_id="20240101-000000-dead00", check_name="t", table_name="t",
                                      identity="pk", plan_table="dupewatch_plan_20240101_000000_dead00",
                                      archive_table="dupewatch_archive_t", os_user="x", host="y",
                                      created_at="2024-01-01T00:00:00.000Z", state="planning")
            conn.execute(sa.text("CREATE TABLE dupewatch_plan_20240101_000000_dead00 (dw_group INTEGER)"))
        report = run_fix(monitor, "t")
    finally:
        monitor.close()
    assert report.deleted == 1
    assert sorted(_states(db)) == ["discarded", "done"]
    assert not _plan_tables(db)


# -- 14. deletes that do not happen ---------------------------------------------------------------------------


def test_a_before_delete_trigger_blocks_the_fix_by_name(db, tmp_path):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 1)")
    if db.dialect == "postgresql":
        db.execute("CREATE FUNCTION keep_all() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
                   "CREATE TRIGGER keep_rows BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION keep_all()")
    elif db.dialect == "mysql":
        db.execute("CREATE TRIGGER keep_rows BEFORE DELETE ON t FOR EACH ROW SET @dupewatch_seen = 1")
    else:
        db.execute("CREATE TRIGGER keep_rows BEFORE DELETE ON t BEGIN SELECT RAISE(IGNORE); END")
    path = config_file(tmp_path, db, [{"name": "t", "table": "t", "key": ["k"]}])
    dry = run_cli("fix", "t", "--config", str(path), "--dry-run")
    assert dry.exit_code == 2
    assert "BLOCKED" in dry.stdout.splitlines()[1] and "BEFORE DELETE trigger keep_rows" in dry.stdout
    result = run_cli("fix", "t", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "keep_rows" in result.stderr
    assert db.scalar("SELECT COUNT(*) FROM t") == 2


def test_an_inheritance_parent_is_refused(pg, tmp_path):
    pg.execute("CREATE TABLE events (id INT PRIMARY KEY, k INT)", "CREATE TABLE old_events () INHERITS (events)",
               "INSERT INTO events VALUES (1, 1), (2, 1)", "INSERT INTO old_events VALUES (3, 1)")
    path = config_file(tmp_path, pg, [{"name": "e", "table": "events", "key": ["k"]}])
    result = run_cli("fix", "e", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "inheritance children (old_events)" in result.stderr
    assert pg.scalar("SELECT COUNT(*) FROM events") == 3


@pytest.mark.parametrize("child_key", ["", ", FOREIGN KEY (cust) REFERENCES cust (id)"])
def test_postgres_a_referencing_table_with_inheritance_children_is_refused_up_front(pg, tmp_path, child_key):
    """`orders(cust) REFERENCES cust` with `orders_2023 () INHERITS (orders)` (inheritance partitioning, the child
    declaring the key again or not): a foreign key covers its own table's rows only, while the fix's reads and
    UPDATE of `orders` reach the child's too. The dry run counted the child's rows as the reference's and named no
    blocker; the fix then stopped at its first batch, every run, blaming a trigger, a rule, a cascade or row-level
    security (none exists). The dry run now names the children as a blocker and the fix refuses, nothing changed."""
    pg.execute("CREATE TABLE cust (id INT PRIMARY KEY, email TEXT)",
               "CREATE TABLE orders (id INT PRIMARY KEY, cust INT REFERENCES cust (id), amount INT)",
               f"CREATE TABLE orders_2023 (PRIMARY KEY (id){child_key}) INHERITS (orders)",
               "INSERT INTO cust VALUES (1, 'a'), (2, 'a'), (3, 'b')",
               "INSERT INTO orders VALUES (10, 2, 100), (11, 1, 5)", "INSERT INTO orders_2023 VALUES (20, 2, 200)")
    path = config_file(tmp_path, pg, [{"name": "c", "table": "cust", "key": ["email"]}])
    before = contents(pg, "cust", "orders", "orders_2023")
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    assert any("orders(cust) has inheritance children (orders_2023)" in b and "not supported" in b
               for b in json_out(dry)["blockers"]), json_out(dry)["blockers"]
    fixed = run_cli("fix", "c", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "inheritance children (orders_2023)" in fixed.stderr, fixed.output
    assert contents(pg, "cust", "orders", "orders_2023") == before
    assert pg.scalar("SELECT count(*) FROM dupewatch_fix WHERE state NOT IN ('discarded', 'done')") == 0


@pytest.mark.parametrize("primary_key", ["PRIMARY KEY", ""])
def test_postgres_the_preview_of_an_inheritance_parent_lists_each_row_once_under_its_own_group(pg, tmp_path,
                                                                                               primary_key):
    """A child table INHERITS the parent and repeats its keys (a primary key is not inherited; ctids are each
    table's own): the preview joined the plan to the table by id (or ctid) and listed the parent's id 1 and the
    child's id 1 twice each, 4 deletes in a group of 3. Each row now appears once, in its own group; the fix stays
    refused, saying why."""
    pg.execute(f"CREATE TABLE parent (id INT {primary_key}, k TEXT, note TEXT)",
               "CREATE TABLE child (extra TEXT) INHERITS (parent)",
               "INSERT INTO parent VALUES (1, 'a', 'p1'), (2, 'a', 'p2'), (3, 'b', 'p3')",
               "INSERT INTO child VALUES (1, 'a', 'c1', 'x'), (4, 'b', 'c4', 'y'), (5, 'c', 'c5', 'z'), "
               "(6, 'c', 'c6', 'z')")
    path = config_file(tmp_path, pg, [{"name": "p", "table": "parent", "key": ["k"]}])
    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    plan = json_out(dry)
    listed = {tuple(g["key"]): sorted(r["note"] for r in [g["keep"], *g["delete"]]) for g in plan["sample"]}
    assert listed == {("a",): ["c1", "p1", "p2"], ("b",): ["c4", "p3"], ("c",): ["c5", "c6"]}, plan["sample"]
    assert all(g["rows"] == 1 + len(g["delete"]) for g in plan["sample"]), plan["sample"]
    assert any("has inheritance children (child)" in b and "not supported" in b for b in plan["blockers"]), \
        plan["blockers"]
    assert not any("cancel or redirect" in b for b in plan["blockers"]), plan["blockers"]


# -- on_reference ----------------------------------------------------------------------------------------------


def _checkins_with_credits(db) -> None:
    db.execute("CREATE TABLE checkin (id INTEGER PRIMARY KEY, user_id INTEGER, day INTEGER)",
               "CREATE TABLE checkin_credit (id INTEGER PRIMARY KEY, checkin_id INTEGER REFERENCES checkin (id), "
               "credits INTEGER)",
               "INSERT INTO checkin VALUES (1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 2, 1)",
               "INSERT INTO checkin_credit VALUES (11, 1, 10), (12, 2, 10), (13, 3, 10), (14, 4, 10)")


def test_on_reference_archive_moves_the_credits_with_their_checkins_and_undo_restores_them(db, tmp_path):
    _checkins_with_credits(db)
    before = contents(db, "checkin", "checkin_credit")
    check = {"name": "c", "table": "checkin", "key": ["user_id", "day"],
             "on_reference": {"checkin_credit.checkin_id": "archive"}}
    path = config_file(tmp_path, db, [check])
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run", "--json")
    reference = json_out(dry)["references"][0]
    assert (reference["action"], reference["rows_to_archive"], reference["rows_to_repoint"]) == ("archive", 2, 0)
    result = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (json_out(result)["deleted"], json_out(result)["references_archived"]) == (2, 2)
    assert db.rows("SELECT id, checkin_id FROM checkin_credit ORDER BY id") == [(11, 1), (14, 4)]
    assert db.scalar("SELECT COUNT(*) FROM dupewatch_archive_checkin_credit") == 2
    undone = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "checkin", "checkin_credit") == before


def test_undo_says_how_many_archived_referencing_rows_it_restored(db, tmp_path):
    """Undo of a fix that archived referencing rows with their parents (on_reference = archive) said `2 rows
    restored, 0 references pointed back` and its JSON had no count of them, though it restored the 2 credits too:
    the operator could not tell they were back. It now counts them, as the fix's report counts them archived."""
    _checkins_with_credits(db)
    check = {"name": "c", "table": "checkin", "key": ["user_id", "day"],
             "on_reference": {"checkin_credit.checkin_id": "archive"}}
    path = config_file(tmp_path, db, [check])
    fix_id = json_out(run_cli("fix", "c", "--config", str(path), "--yes", "--json"))["fix_id"]
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert (json_out(undone)["restored"], json_out(undone)["references_restored"]) == (2, 2)
    assert db.scalar("SELECT COUNT(*) FROM checkin_credit") == 4
    fix_id = json_out(run_cli("fix", "c", "--config", str(path), "--yes", "--json"))["fix_id"]
    said = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert said.exit_code == 0, said.output
    assert "2 rows restored, 2 archived referencing rows restored, 0 references pointed back" in said.stdout


def test_repoint_preview_says_how_crowded_the_kept_rows_become(db, tmp_path):
    _checkins_with_credits(db)
    path = config_file(tmp_path, db, [{"name": "c", "table": "checkin", "key": ["user_id", "day"]}])
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run")
    assert "1 kept row(s) will each have 3 checkin_credit rows" in dry.stdout


def test_on_reference_refuse_and_unknown_names(db, tmp_path):
    _checkins_with_credits(db)
    before = contents(db, "checkin", "checkin_credit")
    refusing = config_file(tmp_path, db, [{"name": "c", "table": "checkin", "key": ["user_id", "day"],
                                           "on_reference": {"checkin_credit.checkin_id": "refuse"}}])
    result = run_cli("fix", "c", "--config", str(refusing), "--yes")
    assert result.exit_code == 2 and "on_reference is \"refuse\"" in result.stderr
    unknown = config_file(tmp_path, db, [{"name": "c", "table": "checkin", "key": ["user_id", "day"],
                                          "on_reference": {"checkin_credits.checkin_id": "archive"}}])
    result = run_cli("fix", "c", "--config", str(unknown), "--dry-run")
    assert result.exit_code == 2
    assert "'checkin_credits.checkin_id' names no foreign key" in result.stderr
    assert "checkin_credit.checkin_id" in result.stderr and result.stderr.count("\n") == 1
    assert contents(db, "checkin", "checkin_credit") == before


def test_a_batch_that_fails_under_its_locks_is_reported_and_resumable(db):
    _checkins_with_credits(db)
    monitor = _monitor(db, [{"name": "c", "table": "checkin", "key": ["user_id", "day"],
                             "on_reference": {"checkin_credit.checkin_id": "refuse"}}])
    try:
        db.execute("DELETE FROM checkin_credit")
        plan = prepare_fix(monitor, "c")
        db.execute("INSERT INTO checkin_credit VALUES (15, 3, 1)")  # arrives after the snapshot
        with pytest.raises(FixError, match="still point at rows to delete"):
            run_fix(monitor, "c", plan)
    finally:
        monitor.close()
    assert db.scalar("SELECT COUNT(*) FROM checkin") == 4
    assert _states(db) == ["failed"]


# -- [fix] schema (issue 13): the fix's own tables apart from the application's ------------------------------


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_fix_tables_live_in_the_configured_fix_schema(dialect, request, tmp_path):
    db = request.getfixturevalue("pg" if dialect == "postgresql" else "mysql")
    home = f"{db.schema}_fix"
    db.execute(f"CREATE {'SCHEMA' if dialect == 'postgresql' else 'DATABASE'} {db.q(home)}")
    try:
        _checkins_with_credits(db)
        before = contents(db, "checkin", "checkin_credit")
        check = {"name": "c", "table": "checkin", "key": ["user_id", "day"],
                 "on_reference": {"checkin_credit.checkin_id": "archive"}}
        path = config_file(tmp_path, db, [check])
        path.write_text(path.read_text() + f'\n[fix]\nschema = "{home}"\n')
        result = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
        assert result.exit_code == 0, result.output
        assert [t for t in sa.inspect(db.engine).get_table_names() if t.startswith("dupewatch")] == []
        apart = sorted(sa.inspect(db.engine).get_table_names(schema=home))
        assert apart == ["dupewatch_archive_checkin", "dupewatch_archive_checkin_credit", "dupewatch_fix",
                         "dupewatch_fix_reference"]  # no legacy dupewatch_fix_repoint
        listed = run_cli("fixes", "--config", str(path), "--json")
        assert [f["state"] for f in json_out(listed)["fixes"]] == ["done"]
        undone = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
        assert undone.exit_code == 0, undone.output
        assert contents(db, "checkin", "checkin_credit") == before
    finally:
        db.execute(f"DROP {'SCHEMA' if dialect == 'postgresql' else 'DATABASE'} {db.q(home)}"
                   + (" CASCADE" if dialect == "postgresql" else ""))


def test_a_missing_fix_schema_is_one_line_and_changes_nothing(db, tmp_path):
    _checkins_with_credits(db)
    path = config_file(tmp_path, db, [{"name": "c", "table": "checkin", "key": ["user_id", "day"]}])
    path.write_text(path.read_text() + '\n[fix]\nschema = "no_such_schema"\n')
    result = run_cli("fix", "c", "--config", str(path), "--yes")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "[fix] schema 'no_such_schema' does not exist" in result.stderr
    assert db.scalar("SELECT COUNT(*) FROM checkin") == 4
    assert [t for t in sa.inspect(db.engine).get_table_names() if t.startswith("dupewatch")] == []


def test_undo_restores_a_tables_rows_once_whatever_references_it(db, tmp_path):
    """A self-reference and two foreign keys from one table, all `archive`: each archived row comes back once."""
    db.execute("CREATE TABLE node (id INTEGER PRIMARY KEY, k INTEGER, parent_id INTEGER REFERENCES node (id))",
               "INSERT INTO node VALUES (1, 1, NULL), (2, 1, NULL), (3, 2, 1)",
               "CREATE TABLE edge (id INTEGER PRIMARY KEY, a INTEGER REFERENCES node (id), "
               "b INTEGER REFERENCES node (id))",
               "INSERT INTO edge VALUES (10, 2, 2), (11, 1, 3)")
    before = contents(db, "node", "edge")
    check = {"name": "n", "table": "node", "key": ["k"],
             "on_reference": {"node.parent_id": "archive", "edge.a": "archive", "edge.b": "archive"}}
    path = config_file(tmp_path, db, [check])
    result = run_cli("fix", "n", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (json_out(result)["deleted"], json_out(result)["references_archived"]) == (1, 1)
    assert db.rows("SELECT id FROM edge ORDER BY id") == [(11,)]
    undone = run_cli("undo", json_out(result)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "node", "edge") == before


def test_a_repoint_that_would_fire_a_grandchilds_on_update_is_refused(pg, tmp_path):
    """Repointing c.pid changes the (cid, pid) that g refers to: PostgreSQL's ON UPDATE SET NULL would null g's
    rows where no repoint log reaches, beyond undo."""
    pg.execute("CREATE TABLE p (id INT PRIMARY KEY, k TEXT)", "INSERT INTO p VALUES (1, 'x'), (2, 'x'), (3, 'y')",
               "CREATE TABLE c (cid INT PRIMARY KEY, pid INT REFERENCES p ON DELETE CASCADE, UNIQUE (cid, pid))",
               "INSERT INTO c VALUES (10, 1), (11, 2), (12, 2), (13, 3)",
               "CREATE TABLE g (gid INT PRIMARY KEY, cid INT, pid INT, FOREIGN KEY (cid, pid) REFERENCES c (cid, pid) "
               "ON UPDATE SET NULL ON DELETE CASCADE)",
               "INSERT INTO g VALUES (100, 11, 2), (101, 12, 2), (102, 10, 1)")
    before = contents(pg, "p", "c", "g")
    path = config_file(tmp_path, pg, [{"name": "p", "table": "p", "key": ["k"]}])
    dry = run_cli("fix", "p", "--config", str(path), "--dry-run")
    assert dry.exit_code == 2 and "2 row(s) of g(cid, pid) refer to the c columns the repoint changes" in dry.stdout
    result = run_cli("fix", "p", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "g(cid, pid)" in result.stderr
    assert contents(pg, "p", "c", "g") == before



def _grandchild_no_action(db) -> None:
    """p 1 and 2 share k; c 11 and 12 point at p 2; g refers to c(cid, pid) ON UPDATE NO ACTION (created empty)."""
    db.execute("CREATE TABLE p (id INT PRIMARY KEY, k VARCHAR(10))",
               "INSERT INTO p VALUES (1, 'x'), (2, 'x'), (3, 'y')",
               "CREATE TABLE c (cid INT PRIMARY KEY, pid INT REFERENCES p (id), UNIQUE (cid, pid))",
               "INSERT INTO c VALUES (10, 1), (11, 2), (12, 2), (13, 3)",
               "CREATE TABLE g (gid INT PRIMARY KEY, cid INT, pid INT, CONSTRAINT g_c FOREIGN KEY (cid, pid) "
               "REFERENCES c (cid, pid) ON UPDATE NO ACTION)")


def test_a_repoint_a_grandchilds_no_action_key_would_refuse_is_blocked_for_that_reason(db, tmp_path):
    """Under ON UPDATE NO ACTION the database writes nothing one level down, it refuses the repoint: the dry run
    says so, naming the foreign key, instead of an ON UPDATE action firing where no log reaches."""
    _grandchild_no_action(db)
    db.execute("INSERT INTO g VALUES (100, 11, 2), (101, 12, 2), (102, 10, 1)")
    path = config_file(tmp_path, db, [{"name": "p", "table": "p", "key": ["k"]}])
    dry = run_cli("fix", "p", "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    assert ("2 row(s) of g(cid, pid) refer to the c columns the repoint changes (pid) by foreign key g_c, ON UPDATE "
            "NO ACTION: the database would refuse the repoint") in " ".join(dry.stdout.split()), dry.stdout
    assert "would fire where no log reaches" not in dry.stdout, dry.stdout


def test_postgres_a_no_action_row_written_after_the_plan_is_left_to_the_database(pg, tmp_path, monkeypatch):
    """A grandchild row referring (NO ACTION) to a row the repoint changes, written after the plan: the batch
    leaves it to the database, whose refusal rolls the batch back naming the foreign key, nothing changed."""
    _grandchild_no_action(pg)
    real = execute.prepare_links

    def then_a_grandchild(*args, **kwargs):
        links = real(*args, **kwargs)
        pg.execute("INSERT INTO g VALUES (100, 11, 2)")
        return links

    monkeypatch.setattr(execute, "prepare_links", then_a_grandchild)
    before = contents(pg, "p", "c")
    path = config_file(tmp_path, pg, [{"name": "p", "table": "p", "key": ["k"]}])
    result = run_cli("fix", "p", "--config", str(path), "--yes")
    assert result.exit_code == 2, result.output
    assert "violates foreign key constraint" in result.stderr and "g_c" in result.stderr, result.stderr
    assert "now refer to" not in result.stderr, result.stderr
    assert contents(pg, "p", "c") == before

@pytest.mark.parametrize("way_out", ["delete", "abandon"])
def test_grandchild_rows_written_under_rows_to_archive_say_what_to_do_not_resume(db, tmp_path, monkeypatch, way_out):
    """on_reference = "archive" and the application adds grandchild rows under child rows a later batch archives
    (break16b finding 3): the batch is rolled back, and the message says what ends the stop (those rows gone, or
    abandon and fix with "repoint", or undo) instead of a bare "run the fix again to resume", which met the same
    rows on every run. Removing the rows as told lets the resumed fix finish."""
    db.execute("CREATE TABLE u (id INT PRIMARY KEY, email VARCHAR(20) NOT NULL)",
               "INSERT INTO u VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'b')",
               "CREATE TABLE o (id INT PRIMARY KEY, u_id INT REFERENCES u (id))",
               "INSERT INTO o VALUES (10, 2), (11, 4)",
               "CREATE TABLE gc (id INT PRIMARY KEY, o_id INT REFERENCES o (id) ON DELETE CASCADE)")
    real = execute._count_deleted
    written = []

    def then_grandchildren(*args, **kwargs):  # after the first batch's commit, as the application would
        real(*args, **kwargs)
        if not written:
            written.append(db.execute("INSERT INTO gc SELECT id + 100, id FROM o"))

    monkeypatch.setattr(execute, "_count_deleted", then_grandchildren)
    check = {"name": "u", "table": "u", "key": ["email"], "on_reference": {"o.u_id": "archive"}}
    path = config_file(tmp_path, db, [check])
    first = run_cli("fix", "u", "--config", str(path), "--yes", "--batch-size", "1")
    assert first.exit_code == 2 and written, first.output
    monkeypatch.setattr(execute, "_count_deleted", real)
    again = run_cli("fix", "u", "--config", str(path), "--yes", "--batch-size", "1")  # the application stopped
    assert again.exit_code == 2, again.output
    said = " ".join(again.stderr.split())
    fix_id = said.split("fix ", 1)[1].split(" ", 1)[0]
    assert "1 row(s) of gc(o_id) now reference rows of o(u_id) that the fix would archive" in said, said
    assert "run the fix again to resume)" not in said and "stops here while those rows of gc(o_id)" in said, said
    assert f"`{command_naming(path.resolve(), 'fixes', 'abandon', fix_id)}`" in said, said
    assert 'on_reference = "repoint"` for o.u_id' in said, said
    assert f"`{command_naming(path.resolve(), 'undo', fix_id)}`" in said, said
    assert db.rows("SELECT id, o_id FROM gc") == [(111, 11)]  # rolled back: the grandchild row is untouched
    if way_out == "delete":  # as told: those rows gone, the fix resumes and finishes
        db.execute("DELETE FROM gc")
    else:  # as told: this fix given up, a new one repoints
        assert run_cli("fixes", "abandon", fix_id, "--config", str(path), "--yes").exit_code == 0
        check["on_reference"] = {"o.u_id": "repoint"}
        path = config_file(tmp_path, db, [check])
    done = run_cli("fix", "u", "--config", str(path), "--yes", "--batch-size", "1")
    assert done.exit_code == 0, done.output
    assert db.rows("SELECT id FROM u ORDER BY id") == [(1,), (3,)]
    assert db.rows("SELECT id, u_id FROM o") == ([] if way_out == "delete" else [(11, 3)])


def test_rows_grouped_only_by_a_sort_prefix_are_not_deleted(mysql, tmp_path):
    """MariaDB groups TEXT on its first max_sort_length bytes; a row is only deleted if its key equals its
    keeper's by `=`."""
    mysql.execute("CREATE TABLE t (id INT PRIMARY KEY, body TEXT, n INT)",
                  "INSERT INTO t VALUES (1, CONCAT(REPEAT('x', 2000), 'A'), 1), "
                  "(2, CONCAT(REPEAT('x', 2000), 'B'), 2), (3, 'y', 3), (4, 'y', 4)",
                  "SET SESSION max_sort_length = 1024")
    monitor = _monitor(mysql, [{"name": "t", "table": "t", "key": ["body"]}])
    try:
        run_fix(monitor, "t")
    finally:
        monitor.close()
    assert mysql.rows("SELECT id FROM t ORDER BY id") == [(1,), (2,), (3,)]


def test_long_table_names_sharing_a_prefix_each_get_their_own_archive(pg):
    stem = "customer_subscription_entitlements_history_records_"
    pg.execute(f"CREATE TABLE {stem}alpha (id INT PRIMARY KEY, k INT)",
               f"CREATE TABLE {stem}bravo (id INT PRIMARY KEY, k INT)",
               f"INSERT INTO {stem}alpha VALUES (1, 1), (2, 1)", f"INSERT INTO {stem}bravo VALUES (1, 1), (2, 1)")
    monitor = _monitor(pg, [{"name": "a", "table": f"{stem}alpha", "key": ["k"]},
                            {"name": "b", "table": f"{stem}bravo", "key": ["k"]}])
    try:
        assert (run_fix(monitor, "a").deleted, run_fix(monitor, "b").deleted) == (1, 1)
    finally:
        monitor.close()

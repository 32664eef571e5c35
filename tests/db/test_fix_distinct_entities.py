"""Issue 16, item 4: rows the schema declares distinct (they differ on another unique constraint or index) are
not merged unless the operator asks (`fix --merge-distinct`, or `merge_distinct = true` on the check).

Every outcome is read back from the database, never from the fix's own report.
"""

from __future__ import annotations

from dbtest import TestDatabase
from fix_support import config_file, contents, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import make_plan, prepare_fix, run_fix
from monitor.fix.catalog import distinct_entity_keys
from monitor.fix.refs import reflect

USERS = {"name": "users-by-backend", "table": "users", "key": ["auth_backend", "auth_backend_identifier"]}
PASSWORD_USERS = 46
POSTS_PER_USER = 5


def seed_users(db: TestDatabase) -> None:
    """The issue's schema: password users have no backend identifier, each has its own email."""
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL, "
               "auth_backend VARCHAR(32) NOT NULL, auth_backend_identifier VARCHAR(64), "
               "CONSTRAINT users_email_key UNIQUE (email), "
               "CONSTRAINT users_backend_key UNIQUE (auth_backend, auth_backend_identifier))",
               "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id))")
    db.execute("INSERT INTO users VALUES (:id, :e, 'password', NULL)",
               params=[{"id": i, "e": f"user{i}@example.org"} for i in range(1, PASSWORD_USERS + 1)])
    db.execute("INSERT INTO users VALUES (100, 'sso@example.org', 'oidc', 'sub-1')")
    db.execute("INSERT INTO posts VALUES (:id, :u)",
               params=[{"id": 1000 + i * 10 + j, "u": i} for i in range(1, PASSWORD_USERS + 1)
                       for j in range(POSTS_PER_USER)])


def _email_named(db: TestDatabase, text: str) -> bool:
    # SQLite names the index of a table constraint itself (sqlite_autoindex_users_<n>); the columns say which.
    return "(email)" in text and (db.dialect == "sqlite" or "users_email_key" in text)


def test_catalog_lists_unique_keys_beyond_the_check_key(db, tmp_path):
    seed_users(db)
    with db.engine.connect() as conn:
        keys = distinct_entity_keys(conn, reflect(conn, None, "users"), USERS["key"])
    assert [k.columns for k in keys] == [("email",)]
    assert db.dialect == "sqlite" or keys[0].name == "users_email_key"


def test_dry_run_names_the_unique_constraint_that_tells_the_rows_apart(db, tmp_path):
    seed_users(db)
    path = config_file(tmp_path, db, [USERS])
    dry = run_cli("fix", USERS["name"], "--config", str(path), "--dry-run")
    assert dry.exit_code == 2
    blocked = [line for line in dry.stdout.splitlines() if "BLOCKED" in line]
    assert len(blocked) == 1 and _email_named(db, blocked[0]) and "1 group(s)" in blocked[0]
    assert "--merge-distinct" in blocked[0]
    as_json = json_out(run_cli("fix", USERS["name"], "--config", str(path), "--dry-run", "--json"))
    assert list(as_json["distinct_entities"].values()) == [1]


def test_fix_refuses_to_merge_distinct_entities_and_changes_nothing(db, tmp_path):
    seed_users(db)
    before = contents(db, "users", "posts")
    path = config_file(tmp_path, db, [USERS])
    result = run_cli("fix", USERS["name"], "--config", str(path), "--yes")
    assert result.exit_code == 2 and _email_named(db, result.stderr)
    assert contents(db, "users", "posts") == before


def test_merge_distinct_merges_them_when_asked(db, tmp_path):
    seed_users(db)
    path = config_file(tmp_path, db, [USERS])
    dry = run_cli("fix", USERS["name"], "--config", str(path), "--dry-run", "--merge-distinct")
    assert dry.exit_code == 0 and "merged as asked" in dry.stdout
    result = run_cli("fix", USERS["name"], "--config", str(path), "--yes", "--merge-distinct", "--json")
    assert result.exit_code == 0, result.output
    assert db.scalar("SELECT count(*) FROM users WHERE auth_backend = 'password'") == 1
    assert db.scalar("SELECT count(DISTINCT user_id) FROM posts") == 1
    assert db.scalar("SELECT count(*) FROM posts") == PASSWORD_USERS * POSTS_PER_USER


def test_merge_distinct_in_the_check_config(db):
    seed_users(db)
    monitor = Monitor(make_config(db, [{**USERS, "merge_distinct": True}]))
    try:
        plan = make_plan(monitor, USERS["name"])
    finally:
        monitor.close()
    assert not plan.blockers and plan.rows_to_delete == PASSWORD_USERS - 1


def test_rows_equal_on_the_other_unique_key_where_it_applies_are_duplicates(db, tmp_path):
    """NULLs on the other key say nothing: rows without an email are plain duplicates."""
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL), (2, 'ann', NULL), (3, 'bob', 'b@x'), (4, 'bob', NULL)")
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "accounts", "key": ["login"]}])
    result = run_cli("fix", "accounts", "--config", str(path), "--yes")
    assert result.exit_code == 0, result.output
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,)]


def test_partial_unique_index_applies_under_its_predicate_only(pg, tmp_path):
    """PostgreSQL: a partial unique index tells rows apart only where its predicate holds."""
    pg.execute("CREATE TABLE members (id INTEGER PRIMARY KEY, team INTEGER NOT NULL, handle TEXT, active BOOLEAN)",
               "CREATE UNIQUE INDEX members_active_handle ON members (lower(handle)) WHERE active",
               "INSERT INTO members VALUES (1, 7, 'Ann', false), (2, 7, 'bob', false), "
               "(3, 8, 'Cid', true), (4, 8, 'dan', true)")
    path = config_file(tmp_path, pg, [{"name": "members", "table": "members", "key": ["team"]}])
    dry = run_cli("fix", "members", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0 and "BLOCKED" not in dry.stdout
    left_out = [line for line in dry.stdout.splitlines() if "LEFT OUT" in line]
    assert len(left_out) == 1 and "members_active_handle (lower(handle)) WHERE active" in left_out[0]
    assert "1 group(s)" in left_out[0] and "keys (8)" in left_out[0]
    result = run_cli("fix", "members", "--config", str(path), "--yes")
    assert result.exit_code == 1, result.output
    assert pg.rows("SELECT id FROM members ORDER BY id") == [(1,), (3,), (4,)]


def test_batch_skips_a_group_whose_rows_became_distinct_after_the_plan(db):
    """The batch asks again under its locks: an email set after the plan makes the group distinct entities."""
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL), (2, 'ann', NULL), (3, 'bob', NULL), (4, 'bob', NULL)")
    monitor = Monitor(make_config(db, [{"name": "accounts", "table": "accounts", "key": ["login"]}]))
    try:
        plan = prepare_fix(monitor, "accounts")
        assert not plan.blockers and plan.groups == 2
        db.execute("UPDATE accounts SET email = 'a1@x' WHERE id = 1", "UPDATE accounts SET email = 'a2@x' WHERE id = 2")
        report = run_fix(monitor, "accounts", plan)
    finally:
        monitor.close()
    assert (report.groups, report.skipped, report.deleted) == (1, 1, 1)
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (2,), (3,)]


def seed_accounts(db: TestDatabase) -> None:
    """Three real duplicate groups (ann, bob, cid: no email) and one of distinct entities (dan: two emails), each
    row with a post pointing at it."""
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "CREATE TABLE notes (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts (id))",
               "INSERT INTO accounts VALUES (1, 'ann', NULL), (2, 'ann', NULL), (3, 'bob', NULL), (4, 'bob', NULL), "
               "(5, 'cid', NULL), (6, 'cid', NULL), (7, 'dan', 'd1@x'), (8, 'dan', 'd2@x')")
    db.execute("INSERT INTO notes VALUES (:id, :a)", params=[{"id": 100 + a, "a": a} for a in range(1, 9)])


ACCOUNTS = {"name": "accounts", "table": "accounts", "key": ["login"]}


def _accounts_email_named(db: TestDatabase, text: str) -> bool:
    return "(email)" in text and (db.dialect == "sqlite" or "accounts_email_key" in text)


def test_only_the_distinct_group_is_left_out_and_the_others_are_fixed(db, tmp_path):
    """One group of distinct entities no longer refuses the whole fix: it is left out, named with the constraint
    and its key in the plan and the fix's summary, the three real duplicate groups are fixed, exit code 1."""
    seed_accounts(db)
    path = config_file(tmp_path, db, [ACCOUNTS])
    dry = run_cli("fix", ACCOUNTS["name"], "--config", str(path), "--dry-run")
    assert dry.exit_code == 0 and "BLOCKED" not in dry.stdout, dry.output
    left_out = [line for line in dry.stdout.splitlines() if "LEFT OUT" in line]
    assert len(left_out) == 1 and _accounts_email_named(db, left_out[0]), dry.stdout
    assert "1 group(s)" in left_out[0] and "keys (dan)" in left_out[0] and "--merge-distinct" in left_out[0]
    assert "4 duplicate group(s) (3 to fix, 1 left out); 3 row(s) to delete" in dry.stdout
    plan = json_out(run_cli("fix", ACCOUNTS["name"], "--config", str(path), "--dry-run", "--json"))
    assert plan["rows_to_delete"] == 3 and plan["left_out_groups"] == 1
    assert [(x["groups"], x["keys"]) for x in plan["left_out"]] == [(1, [["dan"]])]
    assert plan["references"][0]["rows_to_repoint"] == 3  # dan's note is not counted: its group is left alone

    result = run_cli("fix", ACCOUNTS["name"], "--config", str(path), "--yes")
    assert result.exit_code == 1, result.output
    summary = [line for line in result.stdout.splitlines() if "left out" in line]
    assert len(summary) == 1 and _accounts_email_named(db, summary[0]) and "keys (dan)" in summary[0]
    assert "3 group(s) fixed" in result.stdout and "changed since the plan" not in result.stdout
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (5,), (7,), (8,)]
    assert db.rows("SELECT id, account_id FROM notes ORDER BY id") == [
        (101, 1), (102, 1), (103, 3), (104, 3), (105, 5), (106, 5), (107, 7), (108, 8)]
    fix = db.rows("SELECT groups, skipped, deleted, state FROM dupewatch_fix")
    assert fix == [(3, 1, 3, "done")]


def test_a_distinct_group_is_left_out_of_a_confirmed_plan_and_its_report(db):
    """The prepared plan (what a terminal confirms) leaves the group out of its plan table: the run reports it."""
    seed_accounts(db)
    monitor = Monitor(make_config(db, [ACCOUNTS]))
    try:
        plan = prepare_fix(monitor, ACCOUNTS["name"])
        assert not plan.blockers and (plan.groups, plan.left_out_groups, plan.rows_to_delete) == (4, 1, 3)
        report = run_fix(monitor, ACCOUNTS["name"], plan)
    finally:
        monitor.close()
    assert (report.groups, report.skipped, report.deleted) == (3, 1, 3)
    assert [(x.groups, x.keys) for x in report.left_out] == [(1, [("dan",)])]
    assert db.rows("SELECT id FROM accounts WHERE login = 'dan' ORDER BY id") == [(7,), (8,)]


def test_merge_distinct_still_merges_the_distinct_group_too(db, tmp_path):
    seed_accounts(db)
    path = config_file(tmp_path, db, [ACCOUNTS])
    result = run_cli("fix", ACCOUNTS["name"], "--config", str(path), "--yes", "--merge-distinct")
    assert result.exit_code == 0, result.output
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (5,), (7,)]
    assert db.scalar("SELECT count(*) FROM notes WHERE account_id = 7") == 2


def test_rows_made_distinct_while_the_fix_runs_are_not_merged(db):
    """A concurrent update between two batches gives bob's rows two emails: the next batch asks the database under
    its locks, skips the group, and the rest is fixed."""
    seed_accounts(db)
    db.execute("UPDATE accounts SET email = NULL WHERE login = 'dan'")  # four real duplicate groups at the plan
    monitor = Monitor(make_config(db, [ACCOUNTS]))
    updated = []

    def application(progress) -> None:
        if progress.groups_done == 1 and not updated:  # ann fixed and committed; bob's batch is next
            db.execute("UPDATE accounts SET email = 'b3@x' WHERE id = 3",
                       "UPDATE accounts SET email = 'b4@x' WHERE id = 4")
            updated.append(True)

    try:
        plan = prepare_fix(monitor, ACCOUNTS["name"])
        assert not plan.blockers and (plan.groups, plan.left_out_groups) == (4, 0)
        report = run_fix(monitor, ACCOUNTS["name"], plan, batch_size=1, progress=application)
    finally:
        monitor.close()
    assert updated and (report.groups, report.skipped, report.deleted) == (3, 1, 3)
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (4,), (5,), (7,)]
    assert db.rows("SELECT account_id FROM notes WHERE id IN (103, 104) ORDER BY id") == [(3,), (4,)]


def test_a_resumed_fix_still_leaves_the_distinct_group_out(db):
    """Stopped after its first batch and resumed by another run (which has not the plan at hand): the group the
    plan left out stays left out, counted as skipped, and the summary says it may have been left out."""
    import threading

    from monitor.fix.render import report_lines

    seed_accounts(db)
    db.execute("UPDATE accounts SET login = 'aaa' WHERE login = 'dan'")  # the distinct group first
    monitor = Monitor(make_config(db, [ACCOUNTS]))
    cancel = threading.Event()
    try:
        plan = prepare_fix(monitor, ACCOUNTS["name"])
        assert plan.left_out_groups == 1 and [x.keys for x in plan.left_out] == [[("aaa",)]]
        first = run_fix(monitor, ACCOUNTS["name"], plan, batch_size=2, progress=lambda _p: cancel.set(),
                        cancel=cancel)
        assert first.state == "stopped" and (first.groups, first.skipped) == (1, 1)
        resumed = run_fix(monitor, ACCOUNTS["name"])
    finally:
        monitor.close()
    assert resumed.resumed and resumed.state == "done" and (resumed.groups, resumed.skipped) == (3, 1)
    assert any("left out by the plan" in line for line in report_lines(resumed))
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (3,), (5,), (7,), (8,)]


def seed_tenants(db: TestDatabase) -> None:
    """A multi-tenant schema (break16 F12): orders refer to users by (tenant_id, user_id), a check on email alone
    groups ann's users of tenants 100 and 200 (different entities) and bob's two users of tenant 100 (duplicates)."""
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, email VARCHAR(20) NOT NULL, "
               "UNIQUE (tenant_id, id))",
               "CREATE TABLE orders (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, user_id INTEGER NOT NULL, "
               "FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id))",
               "INSERT INTO users VALUES (1, 100, 'ann'), (2, 200, 'ann'), (3, 100, 'bob'), (4, 100, 'bob')",
               "INSERT INTO orders VALUES (1, 100, 1), (2, 200, 2), (3, 100, 3), (4, 100, 4)")


TENANT_FK = "orders(tenant_id, user_id) references users(tenant_id, id): rows differ in tenant_id"


def test_a_repoint_never_moves_a_referencing_row_into_another_tenant(db, tmp_path):
    """The composite foreign key says an order belongs to its tenant_id: ann's group spans two tenants, so its rows
    are different entities, left out by default and named with the foreign key; bob's group is fixed."""
    seed_tenants(db)
    path = config_file(tmp_path, db, [{"name": "users", "table": "users", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0 and "BLOCKED" not in dry.stdout, dry.output
    left_out = [line for line in dry.stdout.splitlines() if "LEFT OUT" in line]
    assert len(left_out) == 1 and TENANT_FK in left_out[0] and "keys (ann)" in left_out[0], dry.stdout
    result = run_cli("fix", "users", "--config", str(path), "--yes")
    assert result.exit_code == 1, result.output
    assert db.rows("SELECT id, tenant_id, user_id FROM orders ORDER BY id") == [
        (1, 100, 1), (2, 200, 2), (3, 100, 3), (4, 100, 3)]
    assert db.rows("SELECT id FROM users ORDER BY id") == [(1,), (2,), (3,)]


def test_a_group_spanning_tenants_alone_refuses_the_fix_unless_merged(db, tmp_path):
    seed_tenants(db)
    db.execute("DELETE FROM orders WHERE user_id = 4", "DELETE FROM users WHERE id = 4")
    before = contents(db, "users", "orders")
    path = config_file(tmp_path, db, [{"name": "users", "table": "users", "key": ["email"]}])
    refused = run_cli("fix", "users", "--config", str(path), "--yes")
    assert refused.exit_code == 2 and TENANT_FK in refused.stderr and "--merge-distinct" in refused.stderr
    assert contents(db, "users", "orders") == before
    merged = run_cli("fix", "users", "--config", str(path), "--yes", "--merge-distinct", "--json")
    assert merged.exit_code == 0, merged.output
    assert db.rows("SELECT id, tenant_id, user_id FROM orders ORDER BY id") == [(1, 100, 1), (2, 100, 1), (3, 100, 3)]
    undone = run_cli("undo", json_out(merged)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "users", "orders") == before


def test_postgres_an_exclusion_constraint_of_equalities_tells_rows_apart_as_a_unique_one_does(pg, tmp_path):
    """PostgreSQL: `EXCLUDE USING btree (email WITH =)` refuses two rows with the same email exactly as `UNIQUE
    (email)` does (the database's own equality, btree strategy 3), so rows differing on it are different entities:
    the fix merged 3 password users of different emails into one. One also comparing by overlap (`WITH &&`) says
    nothing of rows differing on its `=` column alone, and leaves nothing out."""
    pg.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, backend TEXT NOT NULL, ident TEXT, email TEXT, "
               "CONSTRAINT users_email_excl EXCLUDE USING btree (email WITH =))",
               "CREATE TABLE booking (id INTEGER PRIMARY KEY, backend TEXT NOT NULL, room int4range, during int4range, "
               "CONSTRAINT booking_overlap EXCLUDE USING gist (room WITH =, during WITH &&))",
               "INSERT INTO users VALUES (1, 'pw', NULL, 'a@x'), (2, 'pw', NULL, 'b@x'), (3, 'pw', NULL, 'c@x'), "
               "(4, 'ldap', 'u1', 'd@x'), (5, 'ldap', 'u1', NULL)",
               "INSERT INTO booking VALUES (1, 'x', '[1,2)', '[1,2)'), (2, 'x', '[2,3)', '[3,4)')")
    before = contents(pg, "users")
    path = config_file(tmp_path, pg, [{"name": "users", "table": "users", "key": ["backend", "ident"],
                                       "nulls": "equal"},
                                      {"name": "booking", "table": "booking", "key": ["backend"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run")
    left_out = [line for line in dry.stdout.splitlines() if "LEFT OUT" in line]
    assert len(left_out) == 1 and "users_email_excl (email)" in left_out[0] and "keys (pw, NULL)" in left_out[0]
    refused = run_cli("fix", "users", "--config", str(path), "--yes")
    assert refused.exit_code == 1, refused.output
    assert pg.rows("SELECT id FROM users ORDER BY id") == [(1,), (2,), (3,), (4,)]
    undone = run_cli("undo", json_out(run_cli("fixes", "--config", str(path), "--json"))["fixes"][0]["fix_id"],
                     "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, "users") == before
    overlap = run_cli("fix", "booking", "--config", str(path), "--dry-run")
    assert overlap.exit_code == 0 and "LEFT OUT" not in overlap.stdout, overlap.output

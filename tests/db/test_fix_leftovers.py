"""Issue 16, item 10: what a fix leaves behind and what it changes beyond its plan. Repoint and undo keep a
child's `ON UPDATE CURRENT_TIMESTAMP` column; a fix leaves a repoint log only for a reference it repointed;
`dupewatch fixes purge` deletes a finished fix's archived rows and logs."""

from __future__ import annotations

import time
from datetime import datetime

import psycopg
import sqlalchemy as sa

from dbtest import PG_URL, TestDatabase, write_config
from fix_support import config_file, contents, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import prepare_fix

CHECK = {"name": "accounts", "table": "account", "key": ["email"]}
OLD = datetime(2020, 1, 2, 3, 4, 5)


def _logs(db: TestDatabase) -> list[str]:
    return sorted(t for t in sa.inspect(db.engine).get_table_names() if t.startswith("dupewatch_repoint_"))


def seed(db: TestDatabase, children: int = 3) -> None:
    """`account` with one duplicate; `child0` references the duplicate, the other children reference nothing."""
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL, secret VARCHAR(64))",
               "INSERT INTO account VALUES (1, 'a@x', 'hash-1'), (2, 'a@x', 'hash-2'), (3, 'b@x', 'hash-3')")
    for j in range(children):
        db.execute(f"CREATE TABLE child{j} (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id))")
    if children:
        db.execute("INSERT INTO child0 VALUES (10, 2), (11, 3)")


def test_a_fix_leaves_a_repoint_log_only_for_references_it_repointed(db, tmp_path):
    seed(db)
    path = config_file(tmp_path, db, [CHECK])
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert len(_logs(db)) == 1  # child0's; child1 and child2 had nothing to repoint
    assert db.rows("SELECT account_id FROM child0 ORDER BY id") == [(1,), (3,)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert db.rows("SELECT account_id FROM child0 ORDER BY id") == [(2,), (3,)]


def test_purge_deletes_a_fixs_archived_rows_and_logs_and_refuses_unfinished_fixes(db, tmp_path):
    seed(db, children=1)
    path = config_file(tmp_path, db, [CHECK])
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json")
    fix_id = json_out(fixed)["fix_id"]
    assert run_cli("undo", fix_id, "--config", str(path), "--yes").exit_code == 0
    # after undo the archive still holds a copy of the restored row's secret
    assert db.scalar("SELECT count(*) FROM dupewatch_archive_account WHERE secret = 'hash-2'") == 1
    unconfirmed = run_cli("fixes", "purge", fix_id, "--config", str(path))
    assert unconfirmed.exit_code == 2 and "without confirmation" in unconfirmed.stderr
    before = contents(db, "account", "child0")
    purged = run_cli("fixes", "purge", fix_id, "--config", str(path), "--yes", "--json")
    assert purged.exit_code == 0, purged.output
    assert json_out(purged) == {"fix_id": fix_id, "check": CHECK["name"], "archived_rows": 1, "logs_dropped": 1}
    assert db.scalar("SELECT count(*) FROM dupewatch_archive_account") == 0
    assert _logs(db) == []
    assert contents(db, "account", "child0") == before  # the application's rows are untouched
    assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fix_id}) == "purged"
    listed = json_out(run_cli("fixes", "--config", str(path), "--json"))
    assert [f["state"] for f in listed["fixes"]] == ["purged"]
    again = run_cli("fixes", "purge", fix_id, "--config", str(path), "--yes")
    assert again.exit_code == 2 and "is purged" in again.stderr
    assert run_cli("undo", fix_id, "--config", str(path), "--yes").exit_code == 2


def test_purge_refuses_a_fix_that_is_not_finished(db, tmp_path):
    seed(db, children=1)
    path = config_file(tmp_path, db, [CHECK])
    monitor = Monitor(make_config(db, [CHECK]))
    try:
        plan = prepare_fix(monitor, CHECK["name"])
    finally:
        monitor.close()
    result = run_cli("fixes", "purge", plan.fix_id or "", "--config", str(path), "--yes")
    assert result.exit_code == 2 and "is planned: only a done, undone or abandoned fix can be purged" in result.stderr


def test_repoint_and_undo_keep_on_update_timestamps(mysql, tmp_path):
    seed(mysql, children=0)
    mysql.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id), "
                  "touched TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP)",
                  "INSERT INTO visit VALUES (20, 2, :t), (21, 3, :t)", params={"t": OLD})
    path = config_file(tmp_path, mysql, [CHECK])
    fixed = run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert mysql.rows("SELECT account_id, touched FROM visit ORDER BY id") == [(1, OLD), (3, OLD)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert mysql.rows("SELECT account_id, touched FROM visit ORDER BY id") == [(2, OLD), (3, OLD)]


def test_the_postgresql_guard_waits_for_old_transactions_at_most_statement_timeout(pg, tmp_path):
    """CREATE INDEX CONCURRENTLY waits for every transaction older than it; an idle one must not hold the guard
    forever: it gives up after statement_timeout, names the session, and leaves no INVALID index behind. (Not
    built again afterwards: on a shared server another session's long transaction may be open too.)"""
    pg.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL)",
               "INSERT INTO account VALUES (1, 'a@x'), (2, 'b@x')")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "statement_timeout": "2s"}},
                        [{"database": "app", **CHECK}])
    old = psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), application_name="old-report")
    try:
        old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT 1")  # a snapshot, and no lock on the table
        started = time.monotonic()
        result = run_cli("guard", CHECK["name"], "--config", str(path))
        elapsed = time.monotonic() - started
        assert result.exit_code == 2
        assert f"pid {old.info.backend_pid} (idle in transaction since" in result.stderr
        assert "old-report" in result.stderr and "waited 2s" in result.stderr
        assert "the half-built index was dropped" in result.stderr
        assert elapsed < 30
        assert pg.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'uq_dupewatch_accounts'") == 0
    finally:
        old.close()


def test_the_mariadb_guard_behind_an_open_transaction_names_it(mysql, tmp_path):
    """MariaDB: CREATE INDEX waits for the table's metadata lock, which a transaction that read the table holds until
    it ends. The wait is bounded by statement_timeout, but the refusal said only `query exceeded statement_timeout`,
    as if the build were slow; it now names the transactions older than the build (connection, since when, user)
    and says to end them, as PostgreSQL's guard does. Nothing is built."""
    mysql.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL)",
                  "INSERT INTO account VALUES (1, 'a@x'), (2, 'b@x')")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": mysql.url, "statement_timeout": "2s"}},
                        [{"database": "app", **CHECK}])
    with mysql.engine.connect() as old:
        old.execute(sa.text("SELECT * FROM account")).all()  # a transaction holding the table's metadata lock
        connection = old.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
        started = time.monotonic()
        result = run_cli("guard", CHECK["name"], "--config", str(path))
        elapsed = time.monotonic() - started
        old.rollback()
    assert result.exit_code == 2
    message = result.stderr
    assert f"connection {connection} (" in message and "in a transaction since" in message, message
    assert "metadata lock" in message and "end them" in message and "nothing was left behind" in message
    assert elapsed < 30
    assert mysql.scalar("SELECT count(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND INDEX_NAME = 'uq_dupewatch_accounts'") == 0


def test_the_archives_fix_id_index_is_a_block_range_index_that_finds_each_fixs_rows(pg, tmp_path):
    """PostgreSQL: a B-tree on `dupewatch_fix_id` cost three times a BRIN's server time per archived row; each fix
    appends its rows under one time-sorted id, so the BRIN finds them. Two fixes in one archive: a lookup by either
    id goes through the index, and undoing the first restores its row only."""
    seed(pg, children=0)
    path = config_file(tmp_path, pg, [CHECK])
    first = json_out(run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json"))["fix_id"]
    pg.execute("INSERT INTO account VALUES (4, 'b@x', 'hash-4')")
    second = json_out(run_cli("fix", CHECK["name"], "--config", str(path), "--yes", "--json"))["fix_id"]
    assert pg.rows("SELECT a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                   "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'dupewatch_archive_account'::regclass") \
        == [("brin",)]
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for fix_id, row in ((first, 2), (second, 4)):
            found = conn.execute(sa.text("SELECT id FROM dupewatch_archive_account WHERE dupewatch_fix_id = :f"),
                                 {"f": fix_id}).all()
            assert found == [(row,)]
            plan = "\n".join(r[0] for r in conn.execute(sa.text(
                "EXPLAIN SELECT id FROM dupewatch_archive_account WHERE dupewatch_fix_id = :f"), {"f": fix_id}))
            assert "Bitmap Index Scan on dupewatch_archive_account_fix" in plan, plan
    assert run_cli("undo", first, "--config", str(path), "--yes").exit_code == 0
    assert pg.rows("SELECT id FROM account ORDER BY id") == [(1,), (2,), (3,)]

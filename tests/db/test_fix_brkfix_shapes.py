"""The fix on shapes from public bug reports that earlier rounds had not met (brkfix round)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result

from dbtest import TestDatabase, write_config
from fix_support import config_file, contents, fix_json, json_out, run_cli, undo_restores

_GENERATED = {"postgresql": "INTEGER GENERATED ALWAYS AS (raw + 0) STORED", "mysql": "INTEGER AS (raw + 0) STORED",
              "sqlite": "INTEGER GENERATED ALWAYS AS (raw + 0) STORED"}


def test_a_foreign_key_on_a_generated_column_is_refused_up_front_and_archive_works(db, tmp_path):
    """The exclusive-arc answer to polymorphic references: `comment.account_id` computed from other columns
    (`GENERATED ALWAYS AS (...) STORED REFERENCES account`). A repoint must UPDATE it, which the database refuses
    (PostgreSQL "can only be updated to DEFAULT", SQLite "cannot UPDATE generated column") or ignores (MariaDB):
    the dry run promised the repoint, and every batch then stopped, saying running again would resume."""
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL)")
    db.execute(f"CREATE TABLE comment (id INTEGER PRIMARY KEY, raw INTEGER, account_id {_GENERATED[db.dialect]}, "
               "FOREIGN KEY (account_id) REFERENCES account (id))")
    db.execute("INSERT INTO account VALUES (1, 'e'), (2, 'e'), (3, 'f')")
    db.execute("INSERT INTO comment (id, raw) VALUES (10, 1), (20, 2), (21, 2), (30, 3)")
    check = {"name": "accounts", "table": "account", "key": ["email"]}
    path = config_file(tmp_path, db, [check])
    before = contents(db, "account", "comment")
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    assert any("comment(account_id) is a generated column" in b and "archive" in b
               for b in json_out(dry)["blockers"]), dry.output
    fixed = run_cli("fix", "accounts", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "cannot be fixed" in fixed.stderr, fixed.output
    assert contents(db, "account", "comment") == before

    path = config_file(tmp_path, db, [{**check, "on_reference": {"comment.account_id": "archive"}}])
    fixed = fix_json("accounts", path)
    assert (fixed["deleted"], fixed["references_archived"]) == (1, 2)
    undo_restores(db, path, fixed["fix_id"], before)


@pytest.mark.parametrize("action", ["repoint", "archive"])
def test_undo_restores_a_zero_in_an_auto_increment_column(mysql, tmp_path, action):
    """A row whose AUTO_INCREMENT id is 0, as a mysqldump restore loads it (the dump sets NO_AUTO_VALUE_ON_ZERO
    for that reason; Drupal's anonymous user is such a row). Undo inserted it back as the next id: it refused,
    blaming a BEFORE INSERT trigger, and the fix could not be undone."""
    mysql.execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_AUTO_VALUE_ON_ZERO')",
                  "CREATE TABLE account (id INTEGER AUTO_INCREMENT PRIMARY KEY, email VARCHAR(20) NOT NULL)",
                  "CREATE TABLE note (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id))",
                  "INSERT INTO account VALUES (0, 'e'), (1, 'e'), (2, 'f')",
                  "INSERT INTO note VALUES (10, 0), (20, 1)")
    assert mysql.scalar("SELECT count(*) FROM account WHERE id = 0") == 1
    path = config_file(tmp_path, mysql, [{"name": "accounts", "table": "account", "key": ["email"],
                                          "keep": "newest", "on_reference": {"note.account_id": action}}])
    before = contents(mysql, "account", "note")
    fixed = fix_json("accounts", path)
    assert mysql.rows("SELECT id FROM account ORDER BY id") == [(1,), (2,)]
    undo_restores(mysql, path, fixed["fix_id"], before)


def test_a_table_without_primary_key_holding_an_invalid_date_is_fixed_and_undone(mysql, tmp_path):
    """`2020-02-31`, written under ALLOW_INVALID_DATES by a legacy application: the dry run promised the fix, and
    the fix then failed with "Incorrect date value ... for column (temporary)" (the batch's copy of the rows)."""
    mysql.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
                  "CREATE TABLE m (g INTEGER NOT NULL, u INTEGER NOT NULL, d DATE)",
                  "INSERT INTO m VALUES (1, 7, '2020-02-31'), (1, 7, '2020-02-31'), (2, 7, '2020-01-01')")
    path = config_file(tmp_path, mysql, [{"name": "ms", "table": "m", "key": ["g", "u"]}])
    before = contents(mysql, "m")
    assert run_cli("fix", "ms", "--config", str(path), "--dry-run").exit_code == 0
    fixed = fix_json("ms", path)
    assert mysql.scalar("SELECT count(*) FROM m") == 2
    undo_restores(mysql, path, fixed["fix_id"], before)


@pytest.mark.parametrize("mode", ["STRICT_TRANS_TABLES%2CNO_ZERO_DATE%2CNO_ZERO_IN_DATE", "TRADITIONAL"])
def test_zero_dates_are_archived_and_restored_under_a_session_mode_refusing_them(mysql, tmp_path, mode):
    """MySQL 8's default sql_mode (here set by the URL's init_command) refuses `0000-00-00`, which legacy rows
    hold: the dry run promised the fix, whose archive then failed with "Incorrect date value", saying to run
    it again to resume. MariaDB keeps TRADITIONAL in @@sql_mode as a mode of its own, which brings back
    NO_ZERO_DATE and NO_ZERO_IN_DATE when the session's mode is set again without them."""
    mysql.execute("SET SESSION sql_mode = ''",
                  "CREATE TABLE m (id INTEGER PRIMARY KEY, g INTEGER NOT NULL, d DATE, t DATETIME)",
                  "INSERT INTO m VALUES (1, 1, '0000-00-00', '2020-00-00 00:00:00'), "
                  "(2, 1, '0000-00-00', '2020-00-00 00:00:00'), (3, 2, '2020-01-01', NULL)")
    url = mysql.url + ("&" if "?" in mysql.url else "?") + (
        f"init_command=SET+SESSION+sql_mode%3D%27{mode}%27")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": url}},
                        [{"database": "app", "name": "ms", "table": "m", "key": ["g"]}])
    before = contents(mysql, "m")
    assert run_cli("fix", "ms", "--config", str(path), "--dry-run").exit_code == 0
    fixed = fix_json("ms", path)
    assert mysql.rows("SELECT id FROM m ORDER BY id") == [(1,), (3,)]
    undo_restores(mysql, path, fixed["fix_id"], before)


def _guard_refused_up_front(db: TestDatabase, path: Path, check: str, word: str,
                            before: dict[str, list[str]]) -> Result:
    """The dry run with --add-constraint names the guard's refusal (`word` in it) as a blocker (exit 2), and the
    fix with it changes nothing of `before` (a `contents` snapshot; exit 2): the fix's result."""
    dry = run_cli("fix", check, "--config", str(path), "--dry-run", "--add-constraint", "--json")
    assert dry.exit_code == 2, dry.output
    assert any(b.startswith("--add-constraint:") and word in b for b in json_out(dry)["blockers"]), dry.output
    fixed = run_cli("fix", check, "--config", str(path), "--yes", "--add-constraint")
    assert fixed.exit_code == 2 and "nothing changed" in fixed.stderr, fixed.output
    assert contents(db, *before) == before
    return fixed


def test_add_constraint_the_guard_refuses_whatever_the_rows_is_refused_before_the_fix(mysql, tmp_path):
    """Soft-deleted rows (`where = "deleted_at IS NULL"`), on MariaDB, which has no partial index: the dry run
    with --add-constraint said nothing of the guard (exit 0), and `fix --yes --add-constraint` deleted the rows,
    then reported the guard refused (exit 1): the refusal was known before anything changed."""
    mysql.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(40) NOT NULL, deleted_at DATETIME)",
                  "INSERT INTO users VALUES (1, 'a', NULL), (2, 'a', NULL), (3, 'a', '2024-01-01 00:00:00')")
    path = config_file(tmp_path, mysql, [{"name": "users", "table": "users", "key": ["email"],
                                          "where": "deleted_at IS NULL"}])
    before = contents(mysql, "users")
    fixed = _guard_refused_up_front(mysql, path, "users", "no partial", before)
    assert "no partial" in fixed.stderr and len(fixed.stderr.strip().splitlines()) == 1, fixed.stderr
    # without the constraint the fix goes ahead, and its dry run says so
    assert run_cli("fix", "users", "--config", str(path), "--dry-run").exit_code == 0
    undo_restores(mysql, path, fix_json("users", path)["fix_id"], before)


def test_add_constraint_with_a_where_postgresql_cannot_index_is_refused_by_the_dry_run_and_the_fix(pg, tmp_path):
    """`where = "at > now() - interval '1 day'"` cannot be a partial index's predicate (not IMMUTABLE): the fix
    with --add-constraint deleted the duplicates, then reported the guard refused."""
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, at timestamptz NOT NULL DEFAULT now())",
               "INSERT INTO t (id, k) VALUES (1, 1), (2, 1), (3, 2)")
    path = config_file(tmp_path, pg, [{"name": "ts", "table": "t", "key": ["k"],
                                       "where": "at > now() - interval '1 day'"}])
    _guard_refused_up_front(pg, path, "ts", "IMMUTABLE", contents(pg, "t"))
    assert run_cli("fix", "ts", "--config", str(path), "--dry-run").exit_code == 0


def test_add_constraint_on_a_partitioned_table_whose_key_lacks_the_partition_key_is_refused_up_front(pg, tmp_path):
    """PostgreSQL refuses a unique index on a partitioned table that leaves out a partitioning column, whatever
    the rows hold: the up-front refusal tried the definition on a temporary copy (a plain table, which takes it),
    so the fix deleted the duplicates, then reported the guard refused."""
    pg.execute("CREATE TABLE ev (id INTEGER NOT NULL, k INTEGER NOT NULL, at DATE NOT NULL, PRIMARY KEY (id, at)) "
               "PARTITION BY RANGE (at)",
               "CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
               "INSERT INTO ev VALUES (1, 1, '2024-02-01'), (2, 1, '2024-03-01'), (3, 2, '2024-04-01')")
    path = config_file(tmp_path, pg, [{"name": "ev", "table": "ev", "key": ["k"]}])
    _guard_refused_up_front(pg, path, "ev", "partition", contents(pg, "ev"))
    assert run_cli("fix", "ev", "--config", str(path), "--dry-run").exit_code == 0
    # a key holding the partitioning column is guarded, and once built its guard is no refusal either
    pg.execute("INSERT INTO ev VALUES (4, 1, '2024-02-01')")
    path = config_file(tmp_path, pg, [{"name": "ev", "table": "ev", "key": ["k", "at"]}])
    assert run_cli("fix", "ev", "--config", str(path), "--dry-run", "--add-constraint").exit_code == 0
    fixed = run_cli("fix", "ev", "--config", str(path), "--yes", "--add-constraint", "--json")
    assert fixed.exit_code == 0 and json_out(fixed)["constraint"], fixed.output
    pg.execute("INSERT INTO ev VALUES (5, 3, '2024-02-01')")
    again = run_cli("fix", "ev", "--config", str(path), "--dry-run", "--add-constraint", "--json")
    assert not any(b.startswith("--add-constraint:") for b in json_out(again)["blockers"]), again.output


def test_the_up_front_probe_of_a_partitioned_table_does_not_wait_on_its_writers(pg, tmp_path):
    """The probe's `CREATE UNIQUE INDEX ... ON ONLY parent` takes a SHARE lock, which waits for the writers in
    flight and queues every new one behind it: a dry run with --add-constraint held the application's writes up
    for the whole statement timeout, then named the lock as a blocker."""
    pg.execute("CREATE TABLE ev (id INTEGER NOT NULL, k INTEGER NOT NULL, at DATE NOT NULL, PRIMARY KEY (id, at)) "
               "PARTITION BY RANGE (at)",
               "CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
               "INSERT INTO ev VALUES (1, 1, '2024-02-01'), (2, 1, '2024-02-01'), (3, 2, '2024-04-01')")
    path = config_file(tmp_path, pg, [{"name": "ev", "table": "ev", "key": ["k", "at"]}])
    with pg.engine.connect() as writer:  # the application, mid-transaction
        writer.execute(sa.text("INSERT INTO ev VALUES (9, 9, '2024-05-01')"))
        started = time.monotonic()
        dry = run_cli("fix", "ev", "--config", str(path), "--dry-run", "--add-constraint", "--json")
        elapsed = time.monotonic() - started
        writer.rollback()
    assert dry.exit_code == 0, dry.output
    assert elapsed < 10, elapsed


def test_the_up_front_probe_leaves_an_invalid_guard_index_alone(pg, tmp_path):
    """An INVALID index of the guard's name (a concurrent build interrupted, or still under way in another
    session) was dropped by `fix --dry-run --add-constraint` (under an ACCESS EXCLUSIVE lock): a dry run
    changed the schema. The guard itself drops it and builds again, after the fix."""
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)",
               "INSERT INTO t VALUES (1, 1), (2, 1), (3, 2)")
    with pytest.raises(sa.exc.IntegrityError), pg.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "CREATE UNIQUE INDEX CONCURRENTLY uq_dupewatch_ts ON t (k)")
    invalid = "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('uq_dupewatch_ts') AND NOT indisvalid"
    assert pg.scalar(invalid) == 1
    path = config_file(tmp_path, pg, [{"name": "ts", "table": "t", "key": ["k"]}])
    dry = run_cli("fix", "ts", "--config", str(path), "--dry-run", "--add-constraint", "--json")
    assert dry.exit_code == 0, dry.output
    assert pg.scalar(invalid) == 1
    fixed = run_cli("fix", "ts", "--config", str(path), "--yes", "--add-constraint", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert pg.scalar("SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('uq_dupewatch_ts') "
                     "AND indisvalid AND indisunique") == 1

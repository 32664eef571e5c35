"""The guard (issue 9, items 3 and 8, and convergence): what counts as an existing guard is decided in the
catalog, every failure names its real cause, Ctrl-C leaves nothing behind, and `fix --add-constraint` converges
while the application keeps writing duplicates."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import REPO_ROOT, TestDatabase, write_config
from fix_support import config_file, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import FixRefused, add_guard
from monitor.fix import records as fix_records

ITEMS = {"name": "items", "table": "item", "key": ["k"]}


def _seed_items(db: TestDatabase, *, duplicates: bool = False) -> None:
    db.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, other INTEGER NOT NULL)")
    rows = [{"id": i, "k": i, "o": i % 3} for i in range(1, 21)]
    if duplicates:
        rows += [{"id": 100 + i, "k": i, "o": 0} for i in range(1, 4)]
    db.execute("INSERT INTO item VALUES (:id, :k, :o)", params=rows)


def _index_names(db: TestDatabase, table: str) -> set[str]:
    return {i["name"] for i in sa.inspect(db.engine).get_indexes(table)}


def _pg_index_state(db: TestDatabase, name: str) -> tuple[bool, bool] | None:
    row = db.rows("SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = to_regclass(:n)", {"n": name})
    return row[0] if row else None


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- item 3: an existing index counts only if valid and matching -------------------------------------------


def test_invalid_index_of_the_guards_name_is_dropped_and_rebuilt(pg, tmp_path):
    _seed_items(pg, duplicates=True)
    with pg.engine.connect() as conn:  # a concurrent build that fails leaves an INVALID index behind
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(sa.exc.IntegrityError):
            auto.exec_driver_sql("CREATE UNIQUE INDEX CONCURRENTLY uq_dupewatch_items ON item (k)")
    assert _pg_index_state(pg, "uq_dupewatch_items")[0] is False  # INVALID
    pg.execute("DELETE FROM item WHERE id > 100")
    result = run_cli("guard", "items", "--config", str(config_file(tmp_path, pg, [ITEMS])), "--json")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert report["created"] is True
    assert any("INVALID" in note and "dropped" in note for note in report["notes"])
    assert _pg_index_state(pg, "uq_dupewatch_items") == (True, True)
    with pytest.raises(sa.exc.IntegrityError):
        pg.execute("INSERT INTO item VALUES (999, 1, 0)")


def test_valid_index_with_another_definition_is_refused_naming_it(db, tmp_path):
    _seed_items(db)
    db.execute("CREATE UNIQUE INDEX uq_dupewatch_items ON item (other, k)")
    result = run_cli("guard", "items", "--config", str(config_file(tmp_path, db, [ITEMS])))
    assert result.exit_code == 2
    line = _one_line(result.stderr)
    assert "index uq_dupewatch_items already exists" in line and "is not this check's guard" in line
    assert "already present" not in result.stdout


def test_non_unique_index_of_the_guards_name_does_not_count(db, tmp_path):
    _seed_items(db)
    db.execute("CREATE INDEX uq_dupewatch_items ON item (k)")
    result = run_cli("guard", "items", "--config", str(config_file(tmp_path, db, [ITEMS])))
    assert result.exit_code == 2 and "is not this check's guard" in _one_line(result.stderr)
    db.execute("INSERT INTO item VALUES (999, 1, 0)")  # nothing guards the key: the refusal was right


def test_hand_made_index_with_the_checks_definition_counts(db, tmp_path):
    _seed_items(db)
    db.execute("CREATE UNIQUE INDEX uq_dupewatch_items ON item ( k  )")
    result = run_cli("guard", "items", "--config", str(config_file(tmp_path, db, [ITEMS])))
    assert result.exit_code == 0, result.output
    assert "already present" in result.stdout


def test_matching_index_counts_on_postgresql_whatever_its_text(pg, tmp_path):
    """Compared as PostgreSQL deparses it: a hand-made index with the same meaning is the guard."""
    pg.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL, active INTEGER NOT NULL)")
    pg.execute("CREATE UNIQUE INDEX uq_dupewatch_emails ON person USING btree (LOWER(email)) WHERE active=1")
    check = {"name": "emails", "table": "person", "key": ["email"], "case_insensitive": True, "where": "active = 1"}
    result = run_cli("guard", "emails", "--config", str(config_file(tmp_path, pg, [check])))
    assert result.exit_code == 0, result.output
    assert "already present" in result.stdout
    pg.execute("DROP INDEX uq_dupewatch_emails")
    pg.execute("CREATE UNIQUE INDEX uq_dupewatch_emails ON person (lower(email))")  # no predicate
    refused = run_cli("guard", "emails", "--config", str(config_file(tmp_path, pg, [check])))
    assert refused.exit_code == 2 and "WHERE (active = 1)" in _one_line(refused.stderr)


# -- item 3: Ctrl-C during CREATE UNIQUE INDEX CONCURRENTLY ---------------------------------------------


@contextmanager
def _row_lock_held(db: TestDatabase) -> Iterator[Any]:
    """Another session's open transaction that changed a row: a concurrent build waits for it."""
    conn = db.engine.connect()
    try:
        conn.execute(sa.text("UPDATE item SET other = other + 1 WHERE id = 1"))
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _interruptible() -> None:
    """Ctrl-C as at a terminal: a test run started in the background (`pytest &`, nohup, as CI runners may)
    ignores SIGINT, a child inherits that, and Python then installs no KeyboardInterrupt handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)


def _waiting(db: TestDatabase, statement: str) -> bool:
    return bool(db.scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q AND wait_event_type = 'Lock' "
                          "AND state = 'active'", {"q": statement + "%"}))


def _unique_check(db: TestDatabase) -> tuple[dict[str, Any], str]:
    """ITEMS under a name of its own: other sessions on the server may be building indexes too."""
    name = f"items_{db.schema}"
    return {**ITEMS, "name": name}, f"uq_dupewatch_{name}"


def test_ctrl_c_during_a_concurrent_build_drops_the_half_built_index(pg, tmp_path):
    _seed_items(pg)
    check, index = _unique_check(pg)
    path = config_file(tmp_path, pg, [check])
    with _row_lock_held(pg) as holder:
        proc = _spawn("guard", check["name"], "--config", str(path))
        try:
            wait_for(lambda: _waiting(pg, f"CREATE UNIQUE INDEX CONCURRENTLY {index} "),
                     "the build to wait for the lock")
            assert _pg_index_state(pg, index) is not None  # half-built, in the catalog
            proc.send_signal(signal.SIGINT)
            # The drop waits for the same transaction; the operator's colleague commits it.
            dropping = f"DROP INDEX CONCURRENTLY IF EXISTS {pg.schema}.{index}"
            wait_for(lambda: _waiting(pg, dropping) or proc.poll() is not None, "the cleanup to start")
            holder.rollback()
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2, err
    line = _one_line(err)
    assert "interrupted" in line and "the half-built index was dropped" in line
    assert _pg_index_state(pg, index) is None
    pg.execute("INSERT INTO item VALUES (999, 1, 0)")  # and nothing guards (or blocks) the key


def test_ctrl_c_when_the_cleanup_cannot_finish_names_the_drop_to_run(pg, tmp_path):
    _seed_items(pg)
    check, index = _unique_check(pg)
    path = config_file(tmp_path, pg, [check])
    with _row_lock_held(pg):
        proc = _spawn("guard", check["name"], "--config", str(path))
        try:
            wait_for(lambda: _waiting(pg, f"CREATE UNIQUE INDEX CONCURRENTLY {index} "),
                     "the build to wait for the lock")
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: _waiting(pg, f"DROP INDEX CONCURRENTLY IF EXISTS {pg.schema}.{index}"),
                     "the cleanup to wait")
            proc.send_signal(signal.SIGINT)  # impatient: a second Ctrl-C during the cleanup
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2, err
    line = _one_line(err)
    schema = pg.schema
    assert f"run `DROP INDEX CONCURRENTLY IF EXISTS {schema}.{index}`" in line
    assert _pg_index_state(pg, index)[0] is False  # INVALID
    with pg.engine.connect() as conn:  # what it said to run works
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            f"DROP INDEX CONCURRENTLY IF EXISTS {schema}.{index}")
    assert _pg_index_state(pg, index) is None


def test_a_cleanup_cancelled_by_the_statement_timeout_is_said_in_one_line(pg, tmp_path):
    """The build waits behind a held row lock until statement_timeout cancels it, and so does the DROP that cleans
    up after it: the refusal names the server's reason and the drop to run, on one line (the SQLAlchemy error's own
    text, with its SQL echo and link lines, made it three)."""
    _seed_items(pg)
    check, index = _unique_check(pg)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url, "statement_timeout": "1s"}},
                        [{"database": "app", **check}])
    with _row_lock_held(pg):
        proc = _spawn("guard", check["name"], "--config", str(path))
        try:
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2, err
    line = _one_line(err)
    assert "the half-built index could not be dropped (canceling statement due to statement timeout)" in line
    assert f"run `DROP INDEX CONCURRENTLY IF EXISTS {pg.schema}.{index}`" in line
    with pg.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            f"DROP INDEX CONCURRENTLY IF EXISTS {pg.schema}.{index}")


# -- item 8: every failure says its real cause ------------------------------------------------------------


def test_guard_on_a_never_fixed_check_does_not_blame_a_fix(db, tmp_path):
    _seed_items(db, duplicates=True)
    path = config_file(tmp_path, db, [ITEMS])
    refused = run_cli("guard", "items", "--config", str(path))
    assert refused.exit_code == 2
    line = _one_line(refused.stderr)
    assert "has 3 duplicate group(s)" in line and "after the fix" not in line
    assert run_cli("fix", "items", "--config", str(path), "--yes").exit_code == 0
    db.execute("INSERT INTO item VALUES (500, 1, 0)")
    after = run_cli("guard", "items", "--config", str(path))
    assert after.exit_code == 2 and "perhaps new ones that arrived after the fix" in _one_line(after.stderr)


def test_non_immutable_where_is_refused_up_front_naming_it(pg, tmp_path):
    pg.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL)")
    pg.execute("CREATE FUNCTION recent(t timestamptz) RETURNS boolean LANGUAGE sql STABLE "
               "AS $$ SELECT t > now() - interval '1 day' $$")
    for where in ("at > now() - interval '1 day'", "recent(at)"):
        check = {"name": "ev", "table": "ev", "key": ["k"], "where": where}
        result = run_cli("guard", "ev", "--config", str(config_file(tmp_path, pg, [check])))
        assert result.exit_code == 2
        line = _one_line(result.stderr)
        assert f"its where filter ({where}) cannot be a unique index's predicate" in line
        assert "IMMUTABLE" in line and "new duplicates" not in line
        assert "uq_dupewatch_ev" not in _index_names(pg, "ev")


def test_immutable_where_is_accepted(pg):
    pg.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, kind TEXT NOT NULL)")
    checks = [{"name": "ev", "table": "ev", "key": ["k"], "where": "upper(kind) = 'A'"}]
    monitor = Monitor(make_config(pg, checks))
    try:
        assert add_guard(monitor, "ev").created
    finally:
        monitor.close()


def _partitioned(pg: TestDatabase) -> None:
    pg.execute("CREATE TABLE reading (id INTEGER NOT NULL, region INTEGER NOT NULL, k INTEGER NOT NULL, "
               "PRIMARY KEY (id, region)) PARTITION BY LIST (region)",
               "CREATE TABLE reading_1 PARTITION OF reading FOR VALUES IN (1)",
               "CREATE TABLE reading_2 PARTITION OF reading FOR VALUES IN (2)",
               "INSERT INTO reading VALUES (1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2)")


def test_partitioned_table_is_guarded_partition_by_partition(pg, tmp_path):
    _partitioned(pg)
    check = {"name": "readings", "table": "reading", "key": ["region", "k"]}
    result = run_cli("guard", "readings", "--config", str(config_file(tmp_path, pg, [check])), "--json")
    assert result.exit_code == 0, result.output
    assert any("partition" in note for note in json_out(result)["notes"])
    assert _pg_index_state(pg, "uq_dupewatch_readings") == (True, True)
    attached = pg.scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'uq_dupewatch_readings'::regclass")
    assert attached == 2
    with pytest.raises(sa.exc.IntegrityError):
        pg.execute("INSERT INTO reading VALUES (9, 2, 1)")
    again = run_cli("guard", "readings", "--config", str(config_file(tmp_path, pg, [check])))
    assert again.exit_code == 0 and "already present" in again.stdout


def test_partitioned_table_key_without_the_partition_column_names_postgresqls_reason(pg, tmp_path):
    _partitioned(pg)
    check = {"name": "readings", "table": "reading", "key": ["k"]}
    result = run_cli("guard", "readings", "--config", str(config_file(tmp_path, pg, [check])))
    assert result.exit_code == 2
    line = _one_line(result.stderr)
    assert "must include all partitioning columns" in line and "new duplicates" not in line
    assert _pg_index_state(pg, "uq_dupewatch_readings") is None


def test_mariadb_case_insensitive_collation_gets_a_plain_index(mysql):
    mysql.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, email VARCHAR(64) COLLATE utf8mb4_general_ci, "
                  "code VARCHAR(16) COLLATE utf8mb4_bin)")
    mysql.execute("INSERT INTO person VALUES (1, 'Ada@x', 'a'), (2, 'grace@x', 'b')")
    checks = [{"name": "emails", "table": "person", "key": ["email"], "case_insensitive": True},
              {"name": "codes", "table": "person", "key": ["code"], "case_insensitive": True},
              {"name": "padded", "table": "person", "key": ["email"], "trim_whitespace": True}]
    monitor = Monitor(make_config(mysql, checks))
    try:
        report = add_guard(monitor, "emails")
        assert report.created and report.statement.endswith("(email)")
        with pytest.raises(sa.exc.IntegrityError):
            mysql.execute("INSERT INTO person VALUES (3, 'ADA@x', 'c')")
        with pytest.raises(FixRefused, match=r"column 'code' case-insensitively, which its collation utf8mb4_bin"):
            add_guard(monitor, "codes")
        mysql.execute("DROP INDEX uq_dupewatch_emails ON person")
        padded = add_guard(monitor, "padded")
    finally:
        monitor.close()
    assert padded.created and any("PAD SPACE" in note for note in padded.notes)
    with pytest.raises(sa.exc.IntegrityError):
        mysql.execute("INSERT INTO person VALUES (4, 'Ada@x  ', 'd')")
    assert "uq_dupewatch_codes" not in _index_names(mysql, "person")


# -- --lock-timeout ------------------------------------------------------------------------------------------


def test_lock_timeout_builds_a_plain_index_under_the_write_lock(db, tmp_path):
    _seed_items(db)
    result = run_cli("guard", "items", "--config", str(config_file(tmp_path, db, [ITEMS])), "--lock-timeout", "5s",
                     "--json")
    assert result.exit_code == 0, result.output
    assert "CONCURRENTLY" not in json_out(result)["statement"]
    with pytest.raises(sa.exc.IntegrityError):
        db.execute("INSERT INTO item VALUES (999, 1, 0)")


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_lock_timeout_gives_up_cleanly_when_the_lock_is_not_granted(dialect, request, tmp_path):
    db = request.getfixturevalue("pg" if dialect == "postgresql" else "mysql")
    _seed_items(db)
    path = config_file(tmp_path, db, [ITEMS])
    with _row_lock_held(db):
        started = time.monotonic()
        result = run_cli("guard", "items", "--config", str(path), "--lock-timeout", "1s")
        waited = time.monotonic() - started
    assert result.exit_code == 2
    line = _one_line(result.stderr)
    assert "could not take the write lock on 'item' within 1s" in line and "nothing was built" in line
    assert waited < 30
    assert "uq_dupewatch_items" not in _index_names(db, "item")
    db.execute("INSERT INTO item VALUES (999, 1, 0)")  # the table is writable and unguarded, as before


def test_lock_timeout_is_a_duration_and_needs_add_constraint(sqlite_db, tmp_path):
    _seed_items(sqlite_db)
    path = str(config_file(tmp_path, sqlite_db, [ITEMS]))
    bad = run_cli("guard", "items", "--config", path, "--lock-timeout", "soon")
    assert bad.exit_code == 2 and _one_line(bad.stderr).startswith("dupewatch: error: --lock-timeout: expected")
    alone = run_cli("fix", "items", "--config", path, "--yes", "--lock-timeout", "2s")
    assert alone.exit_code == 2 and "use it with --add-constraint" in _one_line(alone.stderr)


# -- convergence while the application keeps racing ---------------------------------------------------------


class Racer(threading.Thread):
    """The application: keeps inserting a second row for an existing key (a check-then-insert race)."""

    def __init__(self, db: TestDatabase, pause: float) -> None:
        super().__init__(daemon=True)
        self.engine = sa.create_engine(db.url)
        self.pause = pause
        self.stop = threading.Event()
        self.inserted = 0
        self.refused = 0
        self.next_id = 10_000

    def run(self) -> None:
        while not self.stop.is_set():
            self.next_id += 1
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO item VALUES (:id, :k, 0)"),
                                 {"id": self.next_id, "k": self.next_id % 20 + 1})
                self.inserted += 1
            except sa.exc.IntegrityError:
                self.refused += 1
            except sa.exc.DBAPIError:
                pass  # e.g. a deadlock victim while dupewatch holds its locks: the application retries
            self.stop.wait(self.pause)

    def halt(self) -> None:
        self.stop.set()
        self.join(30)
        self.engine.dispose()


def test_add_constraint_converges_while_the_application_keeps_racing(pg, tmp_path):
    """PostgreSQL: the last rounds fix the stragglers and build under the table's write lock, in one
    transaction, so an application writing a duplicate every 20 ms cannot keep the guard out."""
    db = pg
    _seed_items(db, duplicates=True)
    path = config_file(tmp_path, db, [ITEMS])
    racer = Racer(db, pause=0.02)
    racer.start()
    try:
        wait_for(lambda: racer.inserted >= 5, "the racer to write duplicates")
        result = run_cli("fix", "items", "--config", str(path), "--yes", "--json", "--add-constraint",
                         "--lock-timeout", "5s")
        refused_before = racer.refused
        wait_for(lambda: racer.refused > refused_before, "the guard to refuse the racer's next duplicate")
    finally:
        racer.halt()
    assert result.exit_code == 0, result.output
    out = json_out(result)
    guard = out["guard"]
    assert out["constraint"] == "uq_dupewatch_items" and guard["created"] is True and guard["error"] is None
    outcomes = [r["outcome"] for r in guard["rounds"]]
    assert outcomes[-1] == "built" and set(outcomes[:-1]) <= {"duplicates"}
    assert [r["round"] for r in guard["rounds"]] == list(range(1, len(outcomes) + 1))
    assert db.scalar("SELECT count(*) FROM (SELECT k FROM item GROUP BY k HAVING count(*) > 1) d") == 0
    assert _pg_index_state(db, "uq_dupewatch_items") == (True, True)
    assert racer.inserted > 5  # the application really raced throughout


def _echoing_items(pg: TestDatabase) -> None:
    """Items with duplicates, and a duplicate that comes back after every fix (a trigger re-inserting one, with
    an id never used before, when a fix is recorded done, after its batches committed: inside a batch the batch's
    account would refuse it)."""
    _seed_items(pg, duplicates=True)
    monitor = Monitor(make_config(pg, [ITEMS]))
    try:
        with monitor.database("app").bookkeeping.begin() as conn:
            fix_records.ensure_tables(conn)
    finally:
        monitor.close()
    pg.execute("CREATE SEQUENCE echo_id START 1000",
               "CREATE FUNCTION echo() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "INSERT INTO item (id, k, other) VALUES (nextval('echo_id'), 1, 0); RETURN NEW; END $$",
               "CREATE TRIGGER item_echo AFTER UPDATE ON dupewatch_fix FOR EACH ROW "
               "WHEN (NEW.state = 'done' AND OLD.state <> 'done') EXECUTE FUNCTION echo()")


def test_add_constraint_reports_each_round_when_it_does_not_converge(pg, tmp_path):
    """A duplicate that comes back after every fix (`_echoing_items`): bounded, each round said."""
    _echoing_items(pg)
    path = config_file(tmp_path, pg, [ITEMS])
    result = run_cli("fix", "items", "--config", str(path), "--yes", "--json", "--add-constraint")
    assert result.exit_code == 1, result.output
    guard = json_out(result)["guard"]
    assert guard["created"] is False and "was not added after 3 round(s)" in guard["error"]
    assert [(r["round"], r["outcome"]) for r in guard["rounds"]] == [(1, "duplicates"), (2, "duplicates"),
                                                                    (3, "duplicates")]
    assert all(r["straggler_fix"] for r in guard["rounds"][1:])
    assert json_out(result)["straggler_fixes"] == [r["straggler_fix"] for r in guard["rounds"][1:]]
    assert _pg_index_state(pg, "uq_dupewatch_items") is None


def test_the_undo_lines_of_add_constraint_undo_every_fix_its_rounds_made(pg, tmp_path):
    """The straggler fixes of the guard's later rounds stand on their own: the lines printed after the fix, run as
    printed, undo each of them (newest first) and the fix itself, leaving no row of any of them deleted."""
    _echoing_items(pg)
    path = config_file(tmp_path, pg, [ITEMS])
    result = run_cli("fix", "items", "--config", str(path), "--yes", "--add-constraint")
    assert result.exit_code == 1, result.output
    commands = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                if line.strip().startswith(("undo with:", "then:"))]
    assert len(commands) == 3, result.stdout  # two straggler fixes, then the fix
    for command in commands:
        undone = run_cli(*shlex.split(command)[1:], "--yes")
        assert undone.exit_code == 0, (command, undone.output)
    assert pg.rows("SELECT DISTINCT state FROM dupewatch_fix WHERE check_name = 'items'") == [("undone",)]

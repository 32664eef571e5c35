"""Incremental detection (issues 10 and 19) on every dialect: after each change, an incremental run's figures equal
a full pass's (a plain check of the same key is the oracle); the watermark and known groups live in the state
file, survive a restart, and are discarded for another database or an edited key. The watermark never runs ahead
of rows still to come; fixes and undos tell the state what they changed; groups are identified as the database
compares keys."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgcluster import started_cluster

from dbtest import TestDatabase, Volume, make_test_database, run_dupewatch, server_login, volumes, write_config
from fix_support import ts
from monitor.config import config_from_dict
from monitor.dialects.mysql import MySQL
from monitor.dialects.mysql_polling import MySQLPolling
from monitor.dialects.postgresql_polling import PostgreSQLPolling
from monitor.engine import Monitor
from monitor.history import History
from monitor.incremental import REMOVALS_UNSEEN, TIMESTAMP_OVERLAP, standing
from monitor.incremental.check import IncrementalCheck

pytestmark = pytest.mark.timeout(180)

NOW = datetime(2026, 11, 30, 12, 0, 0)


def ts_type(db: TestDatabase) -> str:
    return {"postgresql": "TIMESTAMP(6)", "mysql": "DATETIME(6)", "sqlite": "DATETIME"}[db.dialect]


@pytest.fixture
def logins(db: TestDatabase) -> TestDatabase:
    """The table, with the index on the key the advice asks for (without it a run may be a full pass)."""
    db.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               f" created_at {ts_type(db)} NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(1, 1, "phone"), (2, 1, "phone"), (3, 2, "tablet"), (4, 3, "phone"), (5, 4, "pc")])
    return db


def insert(db: TestDatabase, rows: list[tuple[int, int, str | None]], at: datetime = NOW) -> None:
    db.execute("INSERT INTO logins (id, user_id, device, created_at) VALUES (:id, :u, :d, :t)",
               params=[dict(id=i, u=u, d=d, t=ts(db, at)) for i, u, d in rows])


class Runner:
    """An incremental check and its plain twin (the oracle: a full GROUP BY) on one state file."""

    def __init__(self, db: TestDatabase, state: Path, **check: Any) -> None:
        self.db, self.state_path, self.check = db, state, check
        self.history = History(state)
        self.monitor = self._monitor()

    def _monitor(self) -> Monitor:
        config = config_from_dict({"databases": {"d": {"url": self.db.url}}, "checks": [
            {"name": "inc", "database": "d", **self.check},
            {"name": "plain", "database": "d", **{k: v for k, v in self.check.items()
                                                   if k not in ("incremental", "full_every", "recount_every")}}]})
        return Monitor(config, state=self.history)

    def run(self, *, full: bool = False) -> Any:
        result = self.monitor.run("inc", full=full)
        assert result.error is None, result.error
        return result

    def oracle(self) -> tuple[int | None, int | None]:
        plain = self.monitor.run("plain")
        assert plain.error is None, plain.error
        return plain.groups, plain.excess_rows

    def assert_matches_full_pass(self, result: Any) -> None:
        assert (result.groups, result.excess_rows) == self.oracle()

    def restart(self) -> None:
        self.close()
        self.history = History(self.state_path)
        self.monitor = self._monitor()

    def close(self) -> None:
        self.monitor.close()
        self.history.close()


@pytest.fixture
def runner_for(tmp_path: Path) -> Iterator[Any]:
    """`runner_for(db, **check)`: a Runner of `logins` in `db` (a table the test made)."""
    made: list[Runner] = []

    def make(db: TestDatabase, **check: Any) -> Runner:
        check = {"table": "logins", "key": ["user_id", "device"], "incremental": "id", **check}
        made.append(Runner(db, tmp_path / "state.sqlite", **check))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def runner(logins: TestDatabase, runner_for: Any) -> Any:
    return lambda db=None, **check: runner_for(db or logins, **check)


# -- inserts, deletes, a fix, an update --------------------------------------------------------------


def test_inserts_create_groups_found_by_an_incremental_run(logins, runner):
    r = runner()
    first = r.run()
    assert (first.mode, first.groups, first.rows_scanned, first.new_groups) == ("full", 1, 5, 1)
    insert(logins, [(6, 2, "tablet"), (7, 9, "pc"), (8, 9, "pc"), (9, 1, "phone")])
    second = r.run()
    assert second.mode == "incremental"
    assert second.rows_scanned == 4
    assert second.new_groups == 2  # (2, tablet) with an old row, (9, pc) between two new ones
    assert (second.groups, second.excess_rows) == (3, 4)
    r.assert_matches_full_pass(second)
    quiet = r.run()
    assert (quiet.mode, quiet.rows_scanned, quiet.new_groups) == ("incremental", 0, 0)
    r.assert_matches_full_pass(quiet)


def test_deletes_resolve_known_groups_at_the_next_incremental_run(logins, runner):
    r = runner()
    insert(logins, [(6, 2, "tablet")])
    assert r.run().groups == 2
    logins.execute("DELETE FROM logins WHERE id IN (2, 6)")
    after = r.run()
    assert after.mode == "incremental"
    assert (after.groups, after.excess_rows) == (0, 0)
    r.assert_matches_full_pass(after)


def cli(*args: str) -> Any:
    from click.testing import CliRunner

    from monitor.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def fix_config(db: TestDatabase, tmp_path: Path, **check: Any) -> Path:
    """A config for `dupewatch fix`/`undo` sharing the runner's state file."""
    return write_config(tmp_path / "fix.toml", {"d": {"url": db.url}},
                        [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                          "incremental": "id", **check}], state={"path": str(tmp_path / "state.sqlite")})


def test_a_fix_between_runs_is_reflected_by_the_next_incremental_run(logins, runner, tmp_path):
    r = runner()
    insert(logins, [(6, 2, "tablet"), (7, 1, "phone")])
    assert r.run().groups == 2
    fixed = cli("fix", "inc", "--config", str(fix_config(logins, tmp_path)), "--yes")
    assert fixed.exit_code == 0, fixed.output
    after = r.run()
    assert after.mode == "incremental"
    assert (after.groups, after.excess_rows) == (0, 0)
    assert any("every known group re-counted: fix" in n for n in after.notes), after.notes
    r.assert_matches_full_pass(after)


def test_undo_tells_the_next_poll_to_count_the_restored_rows(logins, runner, tmp_path):
    """Restored rows keep their old ids, below the watermark: the next run is a full pass that counts them."""
    r = runner()
    insert(logins, [(6, 2, "tablet"), (7, 1, "phone")])
    insert(logins, [(id_, id_, "x") for id_ in range(100, 1300)])  # the watermark moves far past ids 1-7
    assert r.run().groups == 2
    config = str(fix_config(logins, tmp_path))
    fixed = cli("fix", "inc", "--config", config, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (r.run().groups, r.run().mode) == (0, "incremental")
    fix_id = json.loads(fixed.output)["fix_id"]
    undone = cli("undo", fix_id, "--config", config, "--yes")
    assert undone.exit_code == 0, undone.output
    after = r.run()
    assert (after.mode, after.groups, after.excess_rows) == ("full", 2, 3)
    assert any(f"undo of fix {fix_id} restored rows" in n for n in after.notes), after.notes
    assert missed_notes(after) == []  # the full pass says why it ran; the groups were not missed
    r.assert_matches_full_pass(after)
    assert r.run().mode == "incremental"  # once


def test_an_update_of_old_keys_is_caught_at_the_next_full_pass(logins, runner):
    r = runner(full_every="1h")
    insert(logins, [(id_, id_, "x") for id_ in range(100, 1200)])  # id 5 lies below the overlap window
    r.run()
    logins.execute("UPDATE logins SET user_id = 3, device = 'phone' WHERE id = 5")  # joins (3, phone)
    missed = r.run()
    assert (missed.mode, missed.groups) == ("incremental", 1)  # documented: updates wait for a full pass
    assert r.run().mode == "incremental"
    r.monitor.clock = lambda: time.time() + 3601  # an hour passes
    due = r.run()
    assert due.mode == "full"
    assert due.groups == 2 and due.new_groups == 1
    r.assert_matches_full_pass(due)


def missed_notes(result: Any) -> list[str]:
    return [n for n in result.notes if n.startswith("missed by incremental runs")]


@pytest.mark.parametrize("column", ["id", "created_at"])
def test_a_full_pass_says_the_groups_rows_written_below_the_watermark_made(logins, runner, column):
    """An insert with an explicit id below the overlap window, or dated a day back on a timestamp watermark, is
    never read by an incremental run (a watermark's limit, README); the full pass that finds its group says so:
    `missed by incremental runs: 1 group(s) ...`. A new group with a row above the window (which the next
    incremental run would have read) is not counted; the full pass that only made the state (the first) says
    nothing."""
    r = runner(incremental=column)
    insert(logins, [(id_, id_, "x") for id_ in range(100, 1300)])
    first = r.run()
    assert (first.mode, first.groups, missed_notes(first)) == ("full", 1, [])
    low = {"id": (50, NOW), "created_at": (2000, NOW - timedelta(days=1))}[column]
    later = NOW + timedelta(minutes=1)  # above the watermark whichever the column
    insert(logins, [(low[0], 100, "x")], at=low[1])  # a duplicate of (100, x), below the window
    insert(logins, [(1300, 200, "x")], at=later)  # a duplicate of (200, x), read by the next run
    polled = r.run()
    assert (polled.mode, polled.groups, polled.new_groups) == ("incremental", 2, 1)  # (100, x) is not read
    assert missed_notes(polled) == []
    insert(logins, [(1301, 300, "x")], at=later + timedelta(minutes=1))  # (300, x): above the watermark
    full = r.run(full=True)
    assert (full.mode, full.groups, full.new_groups) == ("full", 4, 2), full
    (note,) = missed_notes(full)
    assert note.startswith("missed by incremental runs: 1 group(s) found by the full pass that incremental runs "
                           "had not: rows written below the watermark"), note
    r.assert_matches_full_pass(full)
    again = r.run(full=True)
    assert missed_notes(again) == []


def test_an_emptied_and_refilled_table_starts_over_with_a_full_pass(logins, runner):
    r = runner()
    r.run()
    insert(logins, [(id_, id_, "x") for id_ in range(100, 1200)])  # the watermark moves past 1,100
    assert r.run().mode == "incremental"
    logins.execute("DELETE FROM logins")
    insert(logins, [(1, 5, "pc"), (2, 5, "pc")])  # below the watermark: an incremental run would never read them
    after = r.run()
    assert (after.mode, after.groups) == ("full", 1)
    r.assert_matches_full_pass(after)


def test_check_full_forces_a_full_pass(logins, runner):
    r = runner()
    r.run()
    assert r.run().mode == "incremental"
    forced = r.run(full=True)
    assert (forced.mode, forced.rows_scanned) == ("full", 5)


# -- timestamp watermark ---------------------------------------------------------------------------


def test_late_committed_row_under_a_timestamp_watermark_is_not_missed(logins, runner):
    r = runner(incremental="created_at")
    assert r.run().mode == "full"
    insert(logins, [(6, 7, "pc")], at=NOW + timedelta(minutes=10))
    assert r.run().rows_scanned == 1  # the watermark is now NOW + 10 min
    late_engine = sa.create_engine(logins.url)
    try:
        with late_engine.connect() as late:
            transaction = late.begin()
            # Born before the watermark (inside the overlap window), committed only after the next run.
            late.execute(sa.text("INSERT INTO logins (id, user_id, device, created_at) VALUES (60, 7, 'pc', :t)"),
                         {"t": ts(logins, NOW + timedelta(minutes=10) - TIMESTAMP_OVERLAP / 2)})
            during = r.run()  # the row is not committed yet: not seen
            assert (during.mode, during.groups) == ("incremental", 1)
            transaction.commit()
    finally:
        late_engine.dispose()
    after = r.run()
    assert after.mode == "incremental"
    assert after.rows_scanned == 1  # the re-read window holds rows 6 and 60; 6 was already read
    assert (after.groups, after.new_groups) == (2, 1)
    r.assert_matches_full_pass(after)


def test_overlap_window_rereads_are_deduplicated_by_row_identity(logins, runner):
    r = runner(incremental="created_at")
    r.run()
    insert(logins, [(6, 8, "pc"), (7, 8, "pc")], at=NOW + timedelta(seconds=1))
    first = r.run()
    assert (first.rows_scanned, first.new_groups) == (2, 1)
    again = r.run()  # the same two rows are inside the overlap window: read, recognised, not new
    assert (again.rows_scanned, again.new_groups, again.groups) == (0, 0, 2)


def test_overlap_window_rereads_under_the_primary_key_watermark_are_deduplicated(logins, runner):
    # The primary key is the incremental column: it is read once, and is both the watermark and the row identity.
    r = runner()
    r.run()
    insert(logins, [(6, 8, "pc"), (7, 8, "pc"), (8, 9, "pc")])
    first = r.run()
    assert (first.rows_scanned, first.new_groups, first.groups) == (3, 1, 2)
    again = r.run()  # rows 1-8 are inside the 1,000-value overlap window: read, recognised, not new
    assert (again.mode, again.rows_scanned, again.new_groups, again.groups) == ("incremental", 0, 0, 2)
    logins.execute("DELETE FROM logins WHERE id = 7")  # a run that changed nothing keeps its groups countable
    after = r.run()
    assert (after.rows_scanned, after.groups) == (0, 1)
    r.assert_matches_full_pass(after)


# -- the state file ----------------------------------------------------------------------------------


def test_a_restart_keeps_the_watermark_and_the_known_groups(logins, runner):
    r = runner()
    r.run()
    insert(logins, [(6, 2, "tablet")])
    r.restart()
    after = r.run()
    assert after.mode == "incremental"
    assert (after.rows_scanned, after.new_groups, after.groups) == (1, 1, 2)
    logins.execute("DELETE FROM logins WHERE id = 1")
    r.restart()
    resolved = r.run()
    assert (resolved.mode, resolved.groups) == ("incremental", 1)
    r.assert_matches_full_pass(resolved)


def test_a_run_whose_state_is_not_saved_leaves_its_new_group_to_the_next_run(logins, runner, monkeypatch):
    """A run changes the known groups of the state it started from in place: where its save fails, the next run
    starts from the store's state, so it still reports the group as new and saves it."""
    r = runner()
    r.run()
    insert(logins, [(6, 2, "tablet")])

    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(r.history, "save_incremental", failing)
    first_seen = r.monitor.group_first_seen("inc", [1, "phone"])
    assert first_seen is not None
    lost = r.monitor.run("inc")
    assert lost.error is not None and "disk I/O error" in lost.error
    assert r.monitor.group_first_seen("inc", [1, "phone"]) == first_seen  # the dashboard still shows when
    monkeypatch.undo()
    again = r.run()
    assert (again.mode, again.new_groups, again.groups) == ("incremental", 1, 2)
    r.assert_matches_full_pass(again)
    key = r.monitor.state_key("inc")
    r.restart()
    stored = r.history.load_incremental(key)
    assert stored is not None and len(stored.groups) == 2
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 0, 2)


def test_without_a_state_store_a_failed_run_keeps_the_state_in_memory(logins, monkeypatch):
    """A monitor without a state store keeps its state in memory only: a run that fails (a statement timeout on
    its first statement) leaves it, and the next run finds the new group and reports it as new (found by an
    adversarial run: dropping it made the next run a first full pass, every known group new again)."""
    config = config_from_dict({"databases": {"d": {"url": logins.url}}, "checks": [
        {"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"], "incremental": "id"}]})
    monitor = Monitor(config)
    try:
        assert monitor.run("inc").mode == "full"
        assert monitor.run("inc").mode == "incremental"
        insert(logins, [(6, 2, "tablet")])

        def failing(*_args: Any, **_kwargs: Any) -> Any:
            raise sqlite3.OperationalError("statement timeout")

        monkeypatch.setattr(IncrementalCheck, "incremental_pass", failing)
        assert monitor.run("inc").error is not None
        monkeypatch.undo()
        result = monitor.run("inc")
        assert result.error is None
        assert (result.mode, result.groups, result.new_groups) == ("incremental", 2, 1)
    finally:
        monitor.close()


def test_two_runs_of_one_check_in_one_process_run_one_after_the_other(logins, runner, monkeypatch):
    """A run changes the known groups it starts from in place: a second run of the same check in the same process
    waits for the first to save, and starts from what it saved."""
    r = runner()
    r.run()
    insert(logins, [(6, 2, "tablet")])
    order: list[str] = []
    inside, second, release = threading.Event(), threading.Event(), threading.Event()
    original = IncrementalCheck.incremental_pass

    def observed(self: IncrementalCheck, *args: Any, **kwargs: Any) -> Any:
        first = not order
        order.append("enter")
        if first:
            inside.set()
            release.wait(30)
        else:
            second.set()
        try:
            return original(self, *args, **kwargs)
        finally:
            order.append("exit")

    monkeypatch.setattr(IncrementalCheck, "incremental_pass", observed)
    results: dict[int, Any] = {}
    one = threading.Thread(target=lambda: results.__setitem__(1, r.monitor.run("inc")))
    one.start()
    assert inside.wait(30)
    two = threading.Thread(target=lambda: results.__setitem__(2, r.monitor.run("inc")))
    two.start()
    overlapped = second.wait(1)  # where the runs could overlap, the second is inside at once
    release.set()
    one.join(30)
    two.join(30)
    assert not overlapped and order == ["enter", "exit", "enter", "exit"]
    assert results[1].error is None and results[2].error is None
    assert (results[1].new_groups, results[2].new_groups) == (1, 0)
    r.assert_matches_full_pass(results[2])


def test_two_checks_of_one_subject_each_count_what_the_other_found(logins, runner_for, tmp_path):
    """Two checks of the same table, key and watermark share one state, whose known groups a run changes in place:
    neither may keep counting from a total or a re-count rotation the other's run has changed since."""
    db = logins
    config = config_from_dict({"databases": {"d": {"url": db.url}}, "checks": [
        {"name": name, "database": "d", "table": "logins", "key": ["user_id", "device"], "incremental": "id"}
        for name in ("a", "b")] + [{"name": "plain", "database": "d", "table": "logins",
                                    "key": ["user_id", "device"]}]})
    history = History(tmp_path / "shared.sqlite")
    monitor = Monitor(config, state=history)
    try:
        assert monitor.state_key("a") == monitor.state_key("b")

        def matches(name: str) -> None:
            result, plain = monitor.run(name), monitor.run("plain")
            assert result.error is None and plain.error is None, (result.error, plain.error)
            assert (result.groups, result.excess_rows) == (plain.groups, plain.excess_rows), name

        matches("a")
        matches("b")
        next_id = 6
        for user in range(10, 14):  # each check in turn after rows that make a new group or grow one
            insert(db, [(next_id, user, "pc"), (next_id + 1, user, "pc"), (next_id + 2, 1, "phone")])
            next_id += 3
            matches("b" if user % 2 else "a")
        matches("a")
        matches("b")
    finally:
        monitor.close()
        history.close()


def test_a_state_file_from_another_database_starts_with_a_full_pass(logins, runner, tmp_path):
    r = runner()
    r.run()
    assert r.run().mode == "incremental"
    other_iter = make_test_database(logins.dialect, tmp_path)
    other = next(other_iter)
    try:
        other.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
                      f" device VARCHAR(40) NULL, created_at {ts_type(other)} NOT NULL)")
        insert(other, [(1, 5, "pc"), (2, 5, "pc"), (3, 5, "pc")])
        elsewhere = runner(db=other)  # the same check name, the same state file, another database
        moved = elsewhere.run()
        assert (moved.mode, moved.groups, moved.excess_rows, moved.rows_scanned) == ("full", 1, 2, 3)
        elsewhere.close()
    finally:
        other_iter.close()


def test_an_edited_key_starts_with_a_full_pass(logins, runner):
    r = runner()
    r.run()
    assert r.run().mode == "incremental"
    r.close()
    edited = runner(key=["user_id"])
    result = edited.run()
    assert result.mode == "full"
    edited.assert_matches_full_pass(result)


# -- normalisation, where, nulls ---------------------------------------------------------------------

VARIANTS = [(10, 20, "Phone"), (11, 20, " phone "), (12, 21, None), (13, 21, None), (14, 22, "X")]


def test_where_nulls_case_and_trim_match_a_full_pass(logins, runner):
    if logins.dialect != "mysql":  # MariaDB cannot index the expression: its one IN-list scan stays incremental
        logins.execute("CREATE INDEX logins_folded ON logins (user_id, lower(trim(device)))")
    r = runner(case_insensitive=True, trim_whitespace=True, where="user_id < 100")
    r.run()
    insert(logins, [*VARIANTS, (15, 200, "pc"), (16, 200, "pc")])  # user 200 is outside `where`
    after = r.run()
    assert after.mode == "incremental"
    assert (after.groups, after.excess_rows) == (3, 3)  # (1, phone), (20, phone), (21, NULL)
    r.assert_matches_full_pass(after)
    logins.execute("DELETE FROM logins WHERE id = 13")
    resolved = r.run()
    assert resolved.groups == 2
    r.assert_matches_full_pass(resolved)


def test_nulls_distinct_never_counts_a_null_key(logins, runner):
    r = runner(nulls="distinct")
    r.run()
    insert(logins, VARIANTS)
    after = r.run()
    assert after.groups == 1
    r.assert_matches_full_pass(after)


# -- index advice --------------------------------------------------------------------------------------


def test_index_advice_names_the_exact_statement_until_the_index_exists(logins, runner):
    logins.execute("DROP INDEX logins_key" + (" ON logins" if logins.dialect == "mysql" else ""))
    r = runner(case_insensitive=True)
    advice = r.run().index_advice
    assert advice is not None
    if logins.dialect == "postgresql":
        assert "CREATE INDEX CONCURRENTLY" in advice and "lower(device)" in advice
        logins.execute("CREATE INDEX logins_key ON logins (user_id, lower(device))")
    elif logins.dialect == "sqlite":
        assert advice.startswith("CREATE INDEX ") and "lower(device)" in advice
        logins.execute("CREATE INDEX logins_key ON logins (user_id, lower(device))")
    else:
        assert "cannot index" in advice and "lower(device)" in advice
        return  # MariaDB has no expression indexes: the advice stays
    r.restart()
    assert r.run().index_advice is None


def test_index_advice_for_a_plain_key_and_a_timestamp_watermark(logins, runner):
    logins.execute("DROP INDEX logins_key" + (" ON logins" if logins.dialect == "mysql" else ""))
    r = runner(incremental="created_at")
    advice = r.run().index_advice
    assert advice is not None and advice.count("CREATE INDEX") == 2  # watermark column, key
    assert ("CONCURRENTLY" in advice) == (logins.dialect == "postgresql")
    logins.execute("CREATE INDEX logins_created ON logins (created_at)",
                   "CREATE INDEX logins_key ON logins (device, user_id, id)")
    r.restart()
    assert r.run().index_advice is None


# -- definition errors -------------------------------------------------------------------------------


def test_an_incremental_column_that_cannot_grow_is_a_one_line_error(logins, runner):
    result = runner(incremental="device").monitor.run("inc")
    assert result.status == "error"
    assert "incremental: column 'device'" in (result.error or "") and "\n" not in (result.error or "")
    assert result.as_json()["mode"] is None  # it read nothing: neither a full nor an incremental pass


# -- two processes, the CLI ------------------------------------------------------------------------------


def test_check_json_reports_mode_rows_scanned_and_new_groups(logins, tmp_path):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": logins.url}},
                        [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                          "incremental": "id"}], state={"path": str(tmp_path / "cli-state.sqlite")})
    logins.execute("DROP INDEX logins_key" + (" ON logins" if logins.dialect == "mysql" else ""))
    first = run_dupewatch("check", "--json", "--config", path)
    assert first.code == 1, first.output
    (doc,) = first.json["checks"]
    assert (doc["mode"], doc["rows_scanned"], doc["new_groups"]) == ("full", 5, 1)
    assert first.stderr.count("CREATE INDEX") == 1  # the key index, said once, outside the JSON
    logins.execute("CREATE INDEX logins_key ON logins (user_id, device)")
    insert(logins, [(6, 2, "tablet")])
    second = run_dupewatch("check", "--json", "--config", path).json["checks"][0]
    assert (second["mode"], second["rows_scanned"], second["new_groups"], second["groups"]) == \
        ("incremental", 1, 1, 2)
    forced = run_dupewatch("check", "--json", "--full", "--config", path).json["checks"][0]
    assert (forced["mode"], forced["rows_scanned"], forced["new_groups"]) == ("full", 6, 0)


# Rounds of two `dupewatch check` processes started together on one state file (the soak variant: 30)
@pytest.mark.parametrize("volume", volumes(3, 30))
def test_two_processes_sharing_a_state_file_never_corrupt_it(sqlite_db, tmp_path, volume: Volume):
    db = sqlite_db
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               " created_at DATETIME NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(1, 1, "a"), (2, 1, "a")])
    state = tmp_path / "shared.sqlite"
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}},
                        [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                          "incremental": "id"}], state={"path": str(state)})
    assert run_dupewatch("check", "--config", path).code == 1
    errors: list[str] = []
    together = threading.Barrier(2)  # each round, both processes start at once: their runs overlap

    def hammer(offset: int) -> None:
        for i in range(volume.examples):
            ident = 100 + offset * 100 + i
            insert(db, [(ident, ident % 3, "a")])
            together.wait(timeout=60)
            run = run_dupewatch("check", "--json", "--config", path)
            if run.code not in (0, 1):
                errors.append(run.output)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sqlite3.connect(state) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    final = run_dupewatch("check", "--json", "--config", path).json["checks"][0]
    full = run_dupewatch("check", "--json", "--full", "--config", path).json["checks"][0]
    assert final["mode"] == "incremental"
    assert (final["groups"], final["excess_rows"]) == (full["groups"], full["excess_rows"])


def await_counted_removals(db: TestDatabase, rows: int) -> None:
    """PostgreSQL: await its statistics counting the deleted rows (a backend reports them when it goes idle;
    `pg_stat_force_next_flush` asks it not to wait), as an incremental run reads them (`Dialect.removed_rows`)."""
    if db.dialect != "postgresql":
        return
    db.execute("SELECT pg_stat_force_next_flush()")
    deadline = time.monotonic() + 60
    while (db.scalar("SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = to_regclass('logins')") or 0) < rows:
        assert time.monotonic() < deadline, "the statistics never counted the deletes"


def test_known_groups_are_recounted_by_the_time_since_the_last_run_all_within_recount_every(logins, runner):
    """More known groups than the budget (and than one IN list holds), half of them with a NULL in the key: runs
    back to back re-count none of them (their cost follows the new rows), a run half of `recount_every` after the
    last re-counts about half, and every group is re-counted by the first run `recount_every` after."""
    rows = [(100 + n, 1000 + n // 2, None if n % 4 < 2 else "pc") for n in range(2400)]
    insert(logins, rows)  # 1,200 pairs
    r = runner(recount_every="100s")
    now = [time.time()]
    r.monitor.clock = lambda: now[0]
    assert r.run().groups == 1201
    logins.execute("DELETE FROM logins WHERE id >= 100 AND id < 1100 AND MOD(id, 2) = 0")  # breaks 500 pairs
    await_counted_removals(logins, 500)
    insert(logins, [(5000, 1001, None), (5001, 1999, "pc")])
    back_to_back = r.run()
    assert back_to_back.mode == "incremental"
    assert back_to_back.groups == 1201  # no slice re-counted: every broken group waits for its turn
    now[0] += 50
    half = r.run()
    assert 701 < half.groups < 1201  # the slices of 50 s of the 100 s rotation
    now[0] += 50
    after = r.run()
    assert after.mode == "incremental"
    r.assert_matches_full_pass(after)
    assert after.groups == 1201 - 500
    if logins.dialect == "postgresql":  # the count of deleted rows stands still: no group is re-counted
        now[0] += 100
        quiet = r.run()
        assert (quiet.groups, quiet.rows_scanned) == (701, 0)


def test_runs_further_apart_than_recount_every_recount_every_known_group(logins, runner):
    """A run re-counts the share of a rotation that `recount_every` gives the time since the last run: with a
    period shorter than the time between two runs, the next run re-counts every known group."""
    rows = [(100 + n, 1000 + n // 2, "pc") for n in range(2400)]
    insert(logins, rows)  # 1,200 pairs: more than the budget, so a rotation of slices
    r = runner(recount_every="10s")
    now = [time.time()]
    r.monitor.clock = lambda: now[0]
    assert r.run().groups == 1201
    logins.execute("DELETE FROM logins WHERE id >= 100 AND id < 1100 AND MOD(id, 2) = 0")  # breaks 500 pairs
    await_counted_removals(logins, 500)
    now[0] += 11
    after = r.run()
    assert (after.mode, after.groups) == ("incremental", 701)
    r.assert_matches_full_pass(after)


# -- issue 19: the watermark never runs ahead of rows still to come ----------------------------------


def db_now(db: TestDatabase) -> str:
    """SQL for the database's clock in the column's form (what `Dialect.database_clock` reads)."""
    return {"postgresql": "LOCALTIMESTAMP", "mysql": "NOW(6)",
            "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')"}[db.dialect]


def insert_now(db: TestDatabase, rows: list[tuple[int, int, str]], conn: sa.Connection | None = None) -> None:
    """Rows dated by the database's clock (as the session `conn` reads it), as a `DEFAULT now()` would date them."""
    statement = f"INSERT INTO logins (id, user_id, device, created_at) VALUES (:i, :u, :d, {db_now(db)})"
    for id_, user, device in rows:
        if conn is not None:
            conn.execute(sa.text(statement), {"i": id_, "u": user, "d": device})
        else:
            db.execute(statement, params={"i": id_, "u": user, "d": device})


def test_a_row_dated_a_day_ahead_does_not_blind_a_timestamp_watermark(logins, runner, monkeypatch):
    from monitor.dialects import for_backend

    # Only the fixed window, as for a role that cannot see other sessions: the clock alone must bound the watermark.
    rules = for_backend(logins.dialect)
    monkeypatch.setattr(type(rules), "oldest_transaction_age", lambda self, conn: (None, "not asked in this test"))
    r = runner(incremental="created_at")
    insert(logins, [(6, 50, "pc")], at=datetime.now() + timedelta(days=2))  # a client with a wrong clock
    first = r.run()
    assert any(n.startswith("rows in the future: 1 row(s) with created_at") for n in first.notes), first.notes
    insert_now(logins, [(7, 2, "tablet")])  # a duplicate of (2, tablet), dated now
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 2)
    r.assert_matches_full_pass(after)
    assert r.run(full=True).mode == "full"  # even right after a full pass
    insert_now(logins, [(8, 4, "pc")])  # a duplicate of (4, pc)
    later = r.run()
    assert (later.mode, later.new_groups, later.groups) == ("incremental", 1, 3)
    r.assert_matches_full_pass(later)
    assert later.rows_scanned == 1  # the row ahead is recognised, not counted again


def test_a_clock_gone_back_below_a_timestamp_watermark_makes_a_full_pass(logins, runner, monkeypatch):
    """A `timestamp` of local time goes back an hour when daylight saving time ends: rows dated by the clock
    now lie below the watermark's window, and would wait for the full pass. The run that finds the clock below it
    is a full pass, and says why."""
    from monitor.dialects import for_backend

    rules = for_backend(logins.dialect)
    monkeypatch.setattr(type(rules), "oldest_transaction_age", lambda self, conn: (None, "not asked in this test"))
    clock = [NOW + timedelta(minutes=30)]

    def database_clock(self: Any, column: sa.Column[Any]) -> Any:  # a bound value comes back as text on MySQL
        value = sa.literal(clock[0], column.type)
        return sa.cast(value, column.type) if logins.dialect == "mysql" else value

    monkeypatch.setattr(type(rules), "database_clock", database_clock)
    r = runner(incremental="created_at")
    assert r.run().mode == "full"  # the watermark: the rows' NOW
    clock[0] = NOW - timedelta(minutes=30)  # 01:30 again
    insert(logins, [(6, 2, "tablet")], at=NOW - timedelta(minutes=25))  # a duplicate of (2, tablet), dated now
    after = r.run()
    assert (after.mode, after.groups, after.new_groups) == ("full", 2, 1), after
    assert any("lies below the watermark" in n and "the clock went back" in n for n in after.notes), after.notes
    r.assert_matches_full_pass(after)
    clock[0] = NOW - timedelta(minutes=20)
    insert(logins, [(7, 4, "pc")], at=NOW - timedelta(minutes=21))  # a duplicate of (4, pc)
    later = r.run()
    assert (later.mode, later.groups, later.new_groups) == ("incremental", 3, 1), later
    r.assert_matches_full_pass(later)


def sequenced_logins(db: TestDatabase, cache: int = 1, increment: int = 1) -> None:
    """`logins` whose ids a sequence hands out: serial with `CACHE` (and `INCREMENT BY`), AUTO_INCREMENT, an SQLite
    rowid."""
    columns = f"user_id INTEGER NOT NULL, device VARCHAR(40) NULL, created_at {ts_type(db)} NOT NULL"
    if db.dialect == "postgresql":
        db.execute(f"CREATE SEQUENCE logins_ids CACHE {cache} INCREMENT BY {increment}",
                   f"CREATE TABLE logins (id BIGINT PRIMARY KEY DEFAULT nextval('logins_ids'), {columns})",
                   "ALTER SEQUENCE logins_ids OWNED BY logins.id")
    elif db.dialect == "mysql":
        db.execute(f"CREATE TABLE logins (id BIGINT AUTO_INCREMENT PRIMARY KEY, {columns})")
    else:
        db.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, {columns})")
    db.execute("CREATE INDEX logins_key ON logins (user_id, device)")


def add(db: TestDatabase, user: int, device: str, conn: sa.Connection | None = None) -> None:
    statement = sa.text("INSERT INTO logins (user_id, device, created_at) VALUES (:u, :d, :t)")
    params = {"u": user, "d": device, "t": ts(db, NOW)}
    if conn is not None:
        conn.execute(statement, params)
        return
    with db.engine.begin() as own:
        own.execute(statement, params)


def test_an_id_imported_far_above_the_sequence_does_not_blind_the_watermark(db, runner_for):
    sequenced_logins(db)
    for user in (1, 1, 2, 3):
        add(db, user, "pc")
    db.execute("INSERT INTO logins (id, user_id, device, created_at) VALUES (1000000, 9, 'pc', :t)",
               params={"t": ts(db, NOW)})  # an import with explicit ids
    r = runner_for(db)
    first = r.run()
    ahead = [n for n in first.notes if n.startswith("rows in the future")]
    # Only PostgreSQL's sequence stays behind an explicit id; AUTO_INCREMENT and the rowid move past it.
    assert bool(ahead) == (db.dialect == "postgresql"), first.notes
    add(db, 2, "pc")  # the sequence's next id, far below 1,000,000
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 2)
    r.assert_matches_full_pass(after)


def test_ids_handed_out_again_after_a_sequence_restart_are_read(pg, runner_for):
    """A sequence set back (`ALTER SEQUENCE ... RESTART`) hands out ids below the watermark; a row kept above them
    hides it from the emptied-table check. The run that finds the sequence below the watermark is a full pass."""
    sequenced_logins(pg)
    for user in range(1, 1202):
        add(pg, user, "pc")
    r = runner_for(pg)
    assert r.run().groups == 0
    pg.execute("DELETE FROM logins WHERE id < 1201", "ALTER SEQUENCE logins_ids RESTART")
    r.run()  # the sequence has handed out no value yet: nothing bounds the watermark
    add(pg, 5, "pc")
    add(pg, 5, "pc")  # ids 1 and 2, 1,200 below the watermark
    after = r.run()
    assert (after.mode, after.groups, after.new_groups) == ("full", 1, 1), after
    assert any("lies below the watermark" in n for n in after.notes), after.notes
    r.assert_matches_full_pass(after)
    add(pg, 6, "pc")
    add(pg, 6, "pc")
    again = r.run()
    assert (again.mode, again.groups) == ("incremental", 2), again
    r.assert_matches_full_pass(again)


def test_a_late_commit_inside_a_sequence_cache_is_read(pg, runner_for):
    """CACHE 2000 and two sessions: the late session's id lies 2,000 below the rows already read. The overlap
    covers every range the sessions may hold cached (pg_sequence.seqcache times the sessions)."""
    sequenced_logins(pg, cache=2000)
    late_engine = sa.create_engine(pg.url)
    try:
        with late_engine.connect() as late:
            transaction = late.begin()
            add(pg, 7, "pc", conn=late)  # takes id 1, caches 1-2000, commits last
            for user in (1, 1, 7, 3):
                add(pg, user, "pc")  # another session: ids 2001-2004
            r = runner_for(pg)
            assert (r.run().groups, r.run().mode) == (1, "incremental")
            transaction.commit()
    finally:
        late_engine.dispose()
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 2)
    r.assert_matches_full_pass(after)


def test_a_cached_range_of_a_sequence_incrementing_by_more_than_one_is_read(own_pg, runner_for):
    """INCREMENT BY 50 CACHE 40: a session's cached range spans 2,000 ids (cache times increment), not 40. A session
    takes id 1 (caching 1-1951) and stays idle while another's ids run to 2151; its next row, id 51, lies 2,100
    below the watermark: within the window the cached ranges span (own_pg: the sessions counted are this test's)."""
    pg = own_pg
    sequenced_logins(pg, cache=40, increment=50)
    late_engine = sa.create_engine(pg.url)
    try:
        with late_engine.connect() as late:
            with late.begin():
                add(pg, 70, "pc", conn=late)  # id 1; the session caches 1-1951 and stays idle
            for user in (1, 1, 7, 3):
                add(pg, user, "pc")  # another session: ids 2001-2151
            r = runner_for(pg)
            assert (r.run().groups, r.run().mode) == (1, "incremental")
            with late.begin():
                add(pg, 7, "pc", conn=late)  # id 51: a duplicate of (7, pc)
            assert pg.scalar("SELECT min(id) FROM logins WHERE user_id = 7") == 51
    finally:
        late_engine.dispose()
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 2)
    r.assert_matches_full_pass(after)


def test_a_sequence_handing_out_cached_ranges_is_said_once_with_what_to_change(pg, tmp_path):
    """CACHE 100: an idle pooled session holds its cached range for as long as it stays open, beyond any window.
    `check` says so once (the note in its JSON, a line on stderr), naming the sequence, its CACHE and the statement
    that would end it, which it never runs; the dashboard and the daemon say a standing note once per check."""
    sequenced_logins(pg, cache=100)
    add(pg, 1, "pc")
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg.url}},
                        [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                          "incremental": "id"}], state={"path": str(tmp_path / "state.sqlite")})
    for _ in range(2):
        run = run_dupewatch("check", "--json", "--config", path)
        (doc,) = run.json["checks"]
        (note,) = [n for n in doc["notes"] if "CACHE" in n]
        assert note.startswith("late rows (sequence cache): logins_ids has CACHE 100: "), note
        assert "arrive later than any window allows, and waits for the full pass" in note, note
        assert "`ALTER SEQUENCE logins_ids CACHE 1`" in note and "never runs it" in note, note
        assert standing(note) == "late rows (sequence cache)"
        assert run.stderr.count("late rows (sequence cache)") == 1, run.stderr
    assert pg.scalar("SELECT cache_size FROM pg_sequences WHERE sequencename = 'logins_ids'") == 100


def add_many(db: TestDatabase, users: range) -> None:
    """Rows of distinct new keys, committed by another session (one statement)."""
    db.execute("INSERT INTO logins (user_id, device, created_at) VALUES (:u, 'pc', :t)",
               params=[{"u": u, "t": ts(db, NOW)} for u in users])


def await_next_second(db: TestDatabase) -> None:
    """MariaDB's `trx_started` has whole seconds (a transaction's start reads as earlier, never later): the
    transaction to come begins in a second after the runs before it."""
    if db.dialect != "mysql":
        return
    started = db.scalar("SELECT UNIX_TIMESTAMP(NOW())")
    deadline = time.monotonic() + 10
    while db.scalar("SELECT UNIX_TIMESTAMP(NOW())") == started:
        assert time.monotonic() < deadline


def await_writer_shown(db: TestDatabase) -> None:
    """Until MariaDB shows a writing transaction (`INNODB_TRX` is refreshed at most every 0.1 s)."""
    if db.dialect != "mysql":
        return
    deadline = time.monotonic() + 10
    while not db.scalar("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_rows_modified > 0"):
        assert time.monotonic() < deadline


def late_notes(result: Any) -> list[str]:
    return [n for n in result.notes if n.startswith("late rows")]



def alone(db: TestDatabase) -> bool:
    """Whether the run's notes and window concern this test's transactions only: on MariaDB, `INNODB_TRX` shows the
    whole shared server's (other tests' writers widen the window too); the figures hold either way."""
    return db.dialect == "postgresql"


@pytest.mark.parametrize("server", ["own_pg", "mysql"])
def test_a_long_transaction_holding_an_id_far_below_the_watermark_is_read(server, request, runner_for):
    """A transaction takes a low id and stays open while 1,500 later rows are read: the next run reads from the
    position of the last run before it began (the database says when the oldest writing transaction began), not
    from a fixed 1,000 ids below the watermark."""
    db = request.getfixturevalue(server)
    sequenced_logins(db)
    add(db, 1, "pc")
    r = runner_for(db)
    assert r.run().mode == "full"
    await_next_second(db)
    engine = sa.create_engine(db.url)
    try:
        with engine.connect() as late:
            transaction = late.begin()
            add(db, 7, "pc", conn=late)  # id 2, committed last
            add(db, 7, "pc")
            add_many(db, range(100, 1600))
            await_writer_shown(db)
            polled = r.run()
            assert (polled.mode, polled.groups) == ("incremental", 0)
            transaction.commit()
    finally:
        engine.dispose()
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 1)
    if alone(db):
        assert late_notes(polled) == late_notes(after) == []
    r.assert_matches_full_pass(after)


def test_a_transaction_that_took_its_id_before_inserting_it_is_read(own_pg, runner_for):
    """`BEGIN; SELECT nextval(...)` (an ORM's SEQUENCE strategy at persist), the INSERT at a later flush: until it
    writes, the transaction holds no transaction id, and may still insert the id it took: every open transaction
    widens the window back to the position of the last run before it began."""
    pg = own_pg
    sequenced_logins(pg)
    add(pg, 1, "pc")
    r = runner_for(pg)
    assert r.run().mode == "full"
    engine = sa.create_engine(pg.url)
    try:
        with engine.connect() as late:
            transaction = late.begin()
            taken = late.execute(sa.text("SELECT nextval('logins_ids')")).scalar()  # id 2, no write yet
            add(pg, 7, "pc")
            add_many(pg, range(100, 1600))  # ids to 1503
            polled = r.run()
            assert (polled.mode, polled.groups) == ("incremental", 0)
            late.execute(sa.text("INSERT INTO logins (id, user_id, device, created_at) VALUES (:i, 7, 'pc', :t)"),
                         {"i": taken, "t": ts(pg, NOW)})
            transaction.commit()
    finally:
        engine.dispose()
    assert taken == 2
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 1)
    assert late_notes(polled) == late_notes(after) == []
    r.assert_matches_full_pass(after)


def test_a_read_only_long_transaction_does_not_widen_the_window(mysql, runner_for):
    """MariaDB hands out an AUTO_INCREMENT value only to an INSERT: a transaction that has not written holds none.
    (PostgreSQL's `nextval()` leaves no trace: there every open transaction widens the window, above.)"""
    db = mysql
    sequenced_logins(db)
    add(db, 1, "pc")
    r = runner_for(db)
    engine = sa.create_engine(db.url)
    try:
        with engine.connect() as reader:
            transaction = reader.begin()
            assert reader.execute(sa.text("SELECT COUNT(*) FROM logins")).scalar() == 1  # before every run
            if db.dialect == "mysql":  # what the run asks INNODB_TRX leaves the reader out
                thread = reader.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
                assert db.scalar("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = :t",
                                 {"t": thread}) == 1
                assert db.scalar("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = :t"
                                 " AND trx_rows_modified > 0", {"t": thread}) == 0
            assert r.run().mode == "full"
            add(db, 1, "pc")
            add_many(db, range(100, 1600))
            polled = r.run()
            transaction.rollback()
    finally:
        engine.dispose()
    assert (polled.mode, polled.groups) == ("incremental", 1)
    if alone(db):
        state = r.history.load_incremental(r.monitor.state_key("inc"))
        assert state is not None and state.pending_since is None  # no window reaching back for the reader
        assert late_notes(polled) == []
    r.assert_matches_full_pass(polled)


def test_a_transaction_writing_since_before_the_runs_kept_is_said_once(own_pg, runner_for, monkeypatch):
    pg = own_pg
    """Beyond the positions kept (here: none older than the last run), the run says once that late rows wait for
    the full pass, and reads from the earliest position it keeps."""
    import monitor.incremental.window as window

    monkeypatch.setattr(window, "POSITIONS_SPAN", 0.0)
    sequenced_logins(pg)
    add(pg, 1, "pc")
    r = runner_for(pg)
    r.run()
    engine = sa.create_engine(pg.url)
    try:
        with engine.connect() as late:
            transaction = late.begin()
            add(pg, 7, "pc", conn=late)
            first = r.run()  # keeps only its own position, after the transaction began
            add(pg, 7, "pc")
            second = r.run()
            transaction.commit()
    finally:
        engine.dispose()
    assert late_notes(first) == []
    (note,) = late_notes(second)
    assert "transaction open since before the runs the state keeps" in note, note
    after = r.run()
    assert (after.groups, after.new_groups) == (1, 1)
    r.assert_matches_full_pass(after)


@pytest.mark.parametrize("clock", ["database", "application behind"])
def test_a_late_commit_within_the_oldest_transactions_age_is_read(logins, runner, monkeypatch, clock):
    """A timestamp watermark's overlap covers the oldest transaction still running (here with no fixed floor),
    also where the application dates its rows by its own session's local time, hours behind the database's clock
    (a JDBC driver sets the session's time zone to the JVM's)."""
    if logins.dialect == "sqlite":
        pytest.skip("SQLite does not say which transactions are running (see the next test)")
    import monitor.incremental.window as window

    monkeypatch.setattr(window, "TIMESTAMP_OVERLAP", timedelta(0))
    r = runner(incremental="created_at")
    app = sa.create_engine(logins.url)
    if clock != "database":
        zone = "SET TimeZone = 'America/New_York'" if logins.dialect == "postgresql" else "SET time_zone = '-05:00'"

        @sa.event.listens_for(app, "connect")
        def local_time(dbapi: Any, _: Any) -> None:
            cursor = dbapi.cursor()
            cursor.execute(zone)
            cursor.close()
            dbapi.commit()
    try:
        with app.begin() as conn:
            insert_now(logins, [(6, 40, "pc")], conn)
        r.run()
        with app.connect() as late:
            transaction = late.begin()
            # Dated when its transaction began (as DEFAULT now() dates it), committed after a later row was read.
            insert_now(logins, [(60, 40, "pc")], late)
            started = logins.scalar(f"SELECT {db_now(logins)}")
            deadline = time.monotonic() + 30
            while logins.scalar(f"SELECT {db_now(logins)}") < started + timedelta(seconds=2):  # await the clock
                assert time.monotonic() < deadline
            with app.begin() as conn:
                insert_now(logins, [(7, 41, "pc")], conn)
            assert r.run().groups == 1
            transaction.commit()
    finally:
        app.dispose()
    after = r.run()
    assert (after.mode, after.new_groups, after.groups) == ("incremental", 1, 2)
    r.assert_matches_full_pass(after)


def test_where_the_overlap_cannot_be_bounded_the_run_says_why(sqlite_db, tmp_path):
    db = sqlite_db
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               " created_at DATETIME NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)",
               "CREATE INDEX logins_created ON logins (created_at)")
    insert(db, [(1, 1, "a"), (2, 1, "a")])
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}},
                        [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                          "incremental": "created_at"}], state={"path": str(tmp_path / "state.sqlite")})
    run = run_dupewatch("check", "--json", "--config", path)
    (doc,) = run.json["checks"]
    late = [n for n in doc["notes"] if n.startswith("late rows")]
    assert late == ["late rows: a row committed more than 5 min after its created_at value waits for the full "
                    "pass: this database does not say which transactions are running"]
    assert run.stderr.count("late rows") == 1, run.stderr


# -- issue 19: what the state must not lose ----------------------------------------------------------


def test_a_poll_while_the_table_is_empty_keeps_its_groups_and_reads_restored_rows(logins, runner):
    r = runner()
    insert(logins, [(id_, id_, "x") for id_ in range(100, 1300)])
    assert r.run().groups == 1
    saved = logins.rows("SELECT id, user_id, device FROM logins ORDER BY id")
    logins.execute("DELETE FROM logins")
    empty = r.run()
    assert (empty.groups, empty.excess_rows) == (0, 0)
    insert(logins, saved)  # restored with their old ids, below the watermark
    after = r.run()
    assert (after.groups, after.excess_rows) == (1, 1)
    assert after.new_groups == 0  # the group came back; it is not new
    r.assert_matches_full_pass(after)


@pytest.fixture
def storage_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """MariaDB/MySQL runs read the storage identity at each run (not every 30 s: `storage_identity_every`)."""
    monkeypatch.setattr(MySQLPolling, "storage_identity_every", None)


@pytest.mark.parametrize("db", ["postgresql", "mysql"], indirect=True)  # SQLite says nothing of it (see README)
def test_a_table_truncated_and_loaded_again_between_two_polls_is_read_by_a_full_pass(logins, runner,
                                                                                     storage_every_run):
    """TRUNCATE and a reload with the same ids (an ETL job, a restore from a dump) between two polls: no poll saw
    the table empty, and the rows below the overlap window were taken as read. (On MariaDB the polls of this table,
    whose id has no AUTO_INCREMENT, are one statement each, `_folded_pass`, which reads the storage too.)"""
    r = runner()
    insert(logins, [(id_, id_, "x") for id_ in range(6, 1600)])
    r.run()
    logins.execute("TRUNCATE logins")
    insert(logins, [(id_, id_ // 2, "x") for id_ in range(6, 1600)])  # 797 groups, most far below the watermark
    after = r.run()
    assert after.mode == "full" and any("truncated" in n for n in after.notes), after.notes
    r.assert_matches_full_pass(after)
    statements: list[str] = []
    engine = r.monitor.database("d").engine
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert r.run().mode == "incremental"
    if logins.dialect == "mysql":  # the storage's identity costs no statement of its own
        read = [s for s in statements if "INNODB_SYS_TABLES" in s]
        assert read and all("FROM logins" in s for s in read), statements


def test_mariadb_a_table_swapped_in_by_rename_or_a_partition_truncated_is_read_by_a_full_pass(mysql, runner_for,
                                                                                             storage_every_run):
    """The InnoDB table id (`information_schema.INNODB_SYS_TABLES`) of an AUTO_INCREMENT table whose name InnoDB
    spells otherwise (`login-source`: `login@002dsource`), and of each partition: a copy loaded and renamed in
    place of the table (pt-online-schema-change, gh-ost), or a partition truncated and loaded again."""
    create = ("CREATE TABLE `{}` (id INTEGER AUTO_INCREMENT PRIMARY KEY, user_id INTEGER NOT NULL,"
              " device VARCHAR(40) NULL, created_at DATETIME(6) NOT NULL, KEY logins_key (user_id, device)){}")
    load = "INSERT INTO `{}` (id, user_id, device, created_at) VALUES (:id, :u, 'x', :t)"
    mysql.execute(create.format("login-source", ""))
    mysql.execute(load.format("login-source"), params=[dict(id=i, u=i, t=ts(mysql, NOW)) for i in range(1, 1600)])
    r = runner_for(mysql, table="login-source")
    assert r.run().mode == "full"
    mysql.execute(create.format("login-copy", ""))
    mysql.execute(load.format("login-copy"), params=[dict(id=i, u=i // 2, t=ts(mysql, NOW)) for i in range(1, 1600)])
    mysql.execute("RENAME TABLE `login-source` TO `login-old`, `login-copy` TO `login-source`")
    swapped = r.run()
    assert swapped.mode == "full" and any("truncated" in n for n in swapped.notes), swapped.notes
    r.assert_matches_full_pass(swapped)
    assert r.run().mode == "incremental"

    mysql.execute(create.format("logins", " PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (1000),"
                                          " PARTITION p1 VALUES LESS THAN MAXVALUE)"))
    mysql.execute(load.format("logins"), params=[dict(id=i, u=i, t=ts(mysql, NOW)) for i in range(1, 1600)])
    p = runner_for(mysql)
    assert p.run().mode == "full"
    mysql.execute("ALTER TABLE logins TRUNCATE PARTITION p0")
    mysql.execute(load.format("logins"), params=[dict(id=i, u=i // 2, t=ts(mysql, NOW)) for i in range(1, 1000)])
    truncated = p.run()
    assert truncated.mode == "full" and any("truncated" in n for n in truncated.notes), truncated.notes
    p.assert_matches_full_pass(truncated)
    assert p.run().mode == "incremental"


def test_mariadb_a_partition_truncated_among_hundreds_changes_the_storage_identity(mysql, runner_for,
                                                                                  storage_every_run):
    """Under MySQL's default `group_concat_max_len` (1,024 bytes) a list of 250 partitions' ids was cut short, and
    the truncated partition's new id (the highest) fell in what was cut: no full pass, the reloaded rows unread."""
    mysql.execute("CREATE TABLE logins (id INTEGER AUTO_INCREMENT PRIMARY KEY, user_id INTEGER NOT NULL,"
                  " device VARCHAR(40) NULL, created_at DATETIME(6) NOT NULL, KEY logins_key (user_id, device))"
                  " PARTITION BY HASH (id) PARTITIONS 250")
    load = "INSERT INTO logins (id, user_id, device, created_at) VALUES (:id, :u, 'x', :t)"
    mysql.execute(load, params=[dict(id=i, u=i, t=ts(mysql, NOW)) for i in range(1, 1600)])
    r = runner_for(mysql)
    engine = r.monitor.database("d").engine

    @sa.event.listens_for(engine, "connect")
    def mysql_default(dbapi: Any, _: Any) -> None:
        with dbapi.cursor() as cursor:
            cursor.execute("SET SESSION group_concat_max_len = 1024")

    engine.dispose()
    assert r.run().mode == "full"
    mysql.execute("ALTER TABLE logins TRUNCATE PARTITION p249")  # ids 249, 499, ... 1499
    mysql.execute(load, params=[dict(id=i, u=1, t=ts(mysql, NOW)) for i in range(249, 1600, 250)])
    truncated = r.run()
    assert truncated.mode == "full" and any("truncated" in n for n in truncated.notes), truncated.notes
    assert truncated.groups == 1
    r.assert_matches_full_pass(truncated)


def test_mariadb_incremental_runs_read_the_storage_identity_at_most_every_storage_identity_every(
        mysql, runner_for, monkeypatch):
    """InnoDB's catalog costs 4-5 ms a read per 1,000 tables: a run within `storage_identity_every` of the last
    read reads nothing of it (the storage is the one the last run read), and the first run past it sees the
    TRUNCATE and is a full pass."""
    mysql.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
                  " created_at DATETIME(6) NOT NULL, KEY logins_key (user_id, device))")
    insert(mysql, [(id_, id_, "x") for id_ in range(6, 1600)])
    r = runner_for(mysql)
    assert r.run().mode == "full"
    statements: list[str] = []
    sa.event.listen(r.monitor.database("d").engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    mysql.execute("TRUNCATE logins")
    insert(mysql, [(id_, id_ // 2, "x") for id_ in range(6, 1600)])
    unread = r.run()
    assert unread.mode == "incremental" and not any("INNODB_SYS_TABLES" in s for s in statements)
    monkeypatch.setattr(MySQLPolling, "storage_identity_every", 0.05)
    deadline = time.monotonic() + 10
    while (after := r.run()).mode == "incremental":
        assert time.monotonic() < deadline, "no run read the storage identity"
    assert any("truncated" in n for n in after.notes), after.notes
    r.assert_matches_full_pass(after)


def test_mariadb_a_role_without_process_polls_without_the_storage_identity(mysql, runner_for):
    """InnoDB's catalog and its running transactions need PROCESS (asked once rows are read: `LIMIT 0` passes): a
    detection role without it gets no storage identity and no writers' window, and its polls of an AUTO_INCREMENT
    id run without them (a TRUNCATE and a reload wait for the full pass, as README says)."""
    mysql.execute("CREATE TABLE logins (id INTEGER AUTO_INCREMENT PRIMARY KEY, user_id INTEGER NOT NULL,"
                  " device VARCHAR(40) NULL, created_at DATETIME(6) NOT NULL, KEY logins_key (user_id, device))")
    insert(mysql, [(id_, id_, "x") for id_ in range(1, 100)])
    password = uuid.uuid4().hex
    with server_login("mysql", f"GRANT SELECT ON `{mysql.schema}`.* TO {{user}}", prefix="live19_np",
                      password=password) as user:
        url = sa.engine.make_url(mysql.url).set(username=user, password=password)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                table = sa.Table("logins", sa.MetaData(), autoload_with=conn)
                assert MySQL().storage_identity_column(conn, table) is None
        finally:
            engine.dispose()
        limited = TestDatabase("mysql", url.render_as_string(hide_password=False), mysql.engine, mysql.schema)
        r = runner_for(limited)
        assert r.run().mode == "full"
        insert(mysql, [(100, 1, "x")])
        after = r.run()
        assert (after.mode, after.new_groups) == ("incremental", 1)
        r.close()


def test_a_row_replaced_with_the_same_id_and_a_new_key_is_read(logins, runner):
    r = runner()
    r.run()
    if logins.dialect == "mysql":
        logins.execute("REPLACE INTO logins (id, user_id, device, created_at) VALUES (5, 2, 'tablet', :t)",
                       params={"t": ts(logins, NOW)})
    else:
        logins.execute("DELETE FROM logins WHERE id = 5",
                       "INSERT INTO logins (id, user_id, device, created_at) VALUES (5, 2, 'tablet', :t)",
                       params={"t": ts(logins, NOW)})
    after = r.run()
    assert (after.mode, after.rows_scanned, after.new_groups, after.groups) == ("incremental", 1, 1, 2)
    r.assert_matches_full_pass(after)


def test_checks_of_one_table_with_other_incremental_columns_keep_apart(logins, tmp_path):
    history = History(tmp_path / "state.sqlite")
    config = config_from_dict({"databases": {"d": {"url": logins.url}}, "checks": [
        {"name": name, "database": "d", "table": "logins", "key": ["user_id", "device"], "incremental": column}
        for name, column in (("by-id", "id"), ("by-time", "created_at"))]})
    monitor = Monitor(config, state=history)
    try:
        assert monitor.state_key("by-id") != monitor.state_key("by-time")
        assert (monitor.run("by-id").mode, monitor.run("by-time").mode) == ("full", "full")
        insert(logins, [(6, 2, "tablet")], at=NOW + timedelta(hours=1))
        by_id, by_time = monitor.run("by-id"), monitor.run("by-time")
        assert (by_id.mode, by_id.new_groups, by_id.groups) == ("incremental", 1, 2)
        assert (by_time.mode, by_time.new_groups, by_time.groups) == ("incremental", 1, 2)
    finally:
        monitor.close()
        history.close()


# -- issue 19: keys -----------------------------------------------------------------------------------


def group_by_figures(db: TestDatabase, key: str = "user_id, device") -> tuple[int, int]:
    """Groups and excess rows of `logins` by a plain `GROUP BY` (the oracle, written by hand)."""
    groups, excess = db.rows(f"SELECT count(*), coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM logins"
                             f" GROUP BY {key} HAVING count(*) > 1) AS g")[0]
    return int(groups), int(excess)


@pytest.mark.parametrize("shape", ["WITHOUT ROWID", "INTEGER PRIMARY KEY DESC"])
def test_sqlite_a_primary_key_that_is_not_the_rowid_runs_incrementally(sqlite_db, runner_for, shape):
    """A WITHOUT ROWID table has no rowid (`max(rowid)` failed every run, the first included: "no such column:
    rowid"); an `INTEGER PRIMARY KEY DESC` is no alias of it. Nothing hands their ids out: the run says so and
    tells rows apart by the primary key."""
    db = sqlite_db
    if shape == "WITHOUT ROWID":
        db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
                   " created_at DATETIME NOT NULL) WITHOUT ROWID")
    else:
        db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY DESC, user_id INTEGER NOT NULL,"
                   " device VARCHAR(40) NULL, created_at DATETIME NOT NULL)")
    db.execute("CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(1, 1, "a"), (2, 1, "a"), (3, 2, "b")])
    r = runner_for(db)
    first = r.run()
    assert (first.mode, first.groups, first.new_groups) == ("full", 1, 1)
    assert (first.groups, first.excess_rows) == group_by_figures(db)
    steps = [lambda: insert(db, [(4, 2, "b"), (5, 3, "c")]),
             lambda: db.execute("DELETE FROM logins WHERE id = 1"),
             lambda: insert(db, [(900, 3, "c"), (901, 1, "a")]),  # ids far above the rowids
             lambda: insert(db, [(902, 2, "b")])]
    for step in steps:
        step()
        after = r.run()
        assert after.mode == "incremental", after
        assert (after.groups, after.excess_rows) == group_by_figures(db), after
        r.assert_matches_full_pass(after)
        assert not [n for n in after.notes if n.startswith("rows in the future")], after.notes
        assert any(n.startswith("late rows: id is not handed out by a sequence") for n in after.notes), after.notes


@pytest.mark.parametrize("since", ["the first run", "a later run"])
def test_sqlite_a_datetime_watermark_holding_epoch_integers_is_refused_in_one_line(sqlite_db, runner_for, tmp_path,
                                                                                   since):
    """SQLite keeps what the application wrote: epoch integers in a DATETIME column made every run (the first,
    full, one included) an internal error with a traceback, and text dates with a few integers among them a run
    that missed rows. The check is refused in one line naming the column and what it holds, at every run while
    it holds them (and by `config validate`); text dates run as before."""
    db = sqlite_db
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               " created_at DATETIME NULL)", "CREATE INDEX logins_key ON logins (user_id, device)",
               "CREATE INDEX logins_created ON logins (created_at)")
    r = runner_for(db, incremental="created_at")
    if since == "the first run":
        db.execute("INSERT INTO logins VALUES (1, 1, 'a', 1796565700), (2, 1, 'a', 1796565701),"
                   " (3, 2, 'b', 1796565702)")
    else:
        insert(db, [(1, 1, "a"), (2, 1, "a"), (3, 2, "b")])  # text dates, as SQLAlchemy writes them
        first = r.run()
        assert (first.mode, first.groups, first.excess_rows) == ("full", *group_by_figures(db))

    def refused() -> None:
        result = r.monitor.run("inc")
        assert result.status == "error", result
        error = result.error or ""
        assert error.startswith("check 'inc': incremental: column 'created_at' is declared DATETIME but holds"
                                " integers"), error
        assert "17965657" not in error and "\n" not in error  # what it holds by its type, never a row's value
        assert result.as_json()["mode"] is None
        assert r.oracle() == group_by_figures(db)  # the plain check of the same table is unaffected

    db.execute("INSERT INTO logins VALUES (4, 2, 'b', 1796565716)")  # the application starts writing epochs
    refused()
    db.execute("INSERT INTO logins VALUES (5, 3, 'c', 1796565717), (6, 3, 'c', NULL)")
    refused()  # again at the next run, not once
    config = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}},
                          [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                            "incremental": "created_at"},
                           {"name": "plain", "database": "d", "table": "logins", "key": ["user_id", "device"]}],
                          state={"path": str(tmp_path / "cli-state.sqlite")})
    validated = run_dupewatch("config", "validate", "--config", config)
    assert validated.code == 2 and "Traceback" not in validated.stderr, validated
    assert "checks[0] ('inc').incremental: column 'created_at' is declared DATETIME" in validated.stderr
    checked = run_dupewatch("check", "--json", "--config", config)  # the refused check alone; the other runs
    assert "Traceback" not in checked.stderr, checked.stderr
    entries = {e["name"]: e for e in checked.json["checks"]}
    assert "is declared DATETIME but holds integers" in entries["inc"]["error"], entries["inc"]
    assert (entries["plain"]["error"], entries["plain"]["groups"]) == (None, group_by_figures(db)[0])
    db.execute("UPDATE logins SET created_at = '2026-11-30 12:00:01.000000' WHERE typeof(created_at) = 'integer'")
    back = r.run()  # text again: the check runs, with the figures of a full pass
    assert back.error is None and (back.groups, back.excess_rows) == group_by_figures(db) == (3, 3), back
    r.assert_matches_full_pass(back)


def spelled_apart_runs(db: TestDatabase, runner_for: Any, device: str, stamp: str, spellings: list[str],
                       apart: list[str], shown: str, spelled: str) -> None:
    """A group of `spellings` of one device that the key column's collation finds equal, and `apart`: two devices
    it tells apart, two rows each. The spelling GROUP BY returns (read as `shown`) is deleted twice (`spelled`
    finding that spelling only): each run is incremental, says no new group and matches a plain GROUP BY; a row of
    a spelling no known group has (`spellings[4]`) joins its group; the group dissolved, then formed again, is
    new."""
    db.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
               f" device {device} NULL, created_at {stamp} NOT NULL)",
               "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(1, 1, spellings[0]), (2, 1, spellings[1]), (3, 1, spellings[2]), (4, 1, spellings[3]),
                (5, 2, apart[0]), (6, 2, apart[0]), (7, 2, apart[1]), (8, 2, apart[1])])
    r = runner_for(db)
    first = r.run()
    assert (first.mode, first.groups, first.excess_rows, first.new_groups) == ("full", 3, 5, 3), first
    assert (first.groups, first.excess_rows) == group_by_figures(db)
    for _ in range(2):
        spelling = db.scalar(f"SELECT {shown} FROM logins WHERE user_id = 1 GROUP BY user_id, device")
        db.execute(f"DELETE FROM logins WHERE user_id = 1 AND {spelled}", params={"d": spelling})
        after = r.run()
        assert (after.mode, after.new_groups) == ("incremental", 0), after
        assert (after.groups, after.excess_rows) == group_by_figures(db), after
        r.assert_matches_full_pass(after)
    insert(db, [(9, 1, spellings[4])])
    grown = r.run()
    assert (grown.mode, grown.new_groups, grown.groups, grown.excess_rows) == ("incremental", 0, 3, 4), grown
    assert (grown.groups, grown.excess_rows) == group_by_figures(db)
    db.execute("DELETE FROM logins WHERE user_id = 1 AND id <> 9")
    gone = r.run()
    assert (gone.mode, gone.groups, gone.new_groups) == ("incremental", 2, 0), gone
    assert (gone.groups, gone.excess_rows) == group_by_figures(db)
    insert(db, [(10, 1, spellings[0])])
    back = r.run()  # formed again: new
    assert (back.mode, back.new_groups, back.groups) == ("incremental", 1, 3), back
    assert (back.groups, back.excess_rows) == group_by_figures(db)
    r.assert_matches_full_pass(back)


@pytest.mark.parametrize(("collation", "spellings", "apart"), [
    ("NOCASE", ["Bob", "bob", "BOB", "bOB", "BoB"], ["\u00c9mile", "\u00e9mile"]),  # NOCASE folds ASCII only
    ("RTRIM", ["x", "x ", "x  ", "x   ", "x    "], ["y\t", "y"]),  # RTRIM ignores spaces only
])
def test_sqlite_nocase_and_rtrim_groups_are_identified_by_the_collation_not_by_one_spelling(
        sqlite_db, runner_for, collation, spellings, apart):
    """A key column declared `COLLATE NOCASE` or `COLLATE RTRIM`: GROUP BY returns one of a group's spellings, and
    once the rows of that spelling were deleted the old group was counted as a new duplicate. Each run is compared
    with a plain GROUP BY; two spellings the collation tells apart stay two groups."""
    spelled_apart_runs(sqlite_db, runner_for, f"VARCHAR(40) COLLATE {collation}", "DATETIME", spellings, apart,
                       "device", "device = :d COLLATE BINARY")


def test_ci_groups_are_identified_by_the_collation_not_by_one_spelling(mysql, runner_for):
    mysql.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
                  " device VARCHAR(40) COLLATE utf8mb4_general_ci NULL, created_at DATETIME(6) NOT NULL)",
                  "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(mysql, [(1, 1, "Phone"), (2, 1, "phone"), (3, 1, "PHONE"), (4, 2, "Pad"), (5, 2, "pad")])
    r = runner_for(mysql)
    assert r.run().groups == 2
    for _ in range(2):  # delete the spelling GROUP BY returns, twice
        shown = mysql.scalar("SELECT device FROM logins WHERE user_id = 1 GROUP BY user_id, device")
        mysql.execute("DELETE FROM logins WHERE device = BINARY :d", params={"d": shown})
        after = r.run()
        assert after.mode == "incremental" and after.new_groups == 0, after
    assert after.groups == 1  # (1, phone) is down to one row; (2, pad) stays
    r.assert_matches_full_pass(after)
    insert(mysql, [(6, 1, "pHONE")])
    back = r.run()
    assert (back.new_groups, back.groups) == (1, 2)
    r.assert_matches_full_pass(back)


@pytest.mark.parametrize(("column", "spellings", "apart"), [
    ("CHARACTER SET latin1 COLLATE latin1_swedish_ci", ["x ", "x", "X  ", "x   ", "X    "], ["y\t", "y"]),
    ("CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", ["x", "x ", "X  ", "x   ", "X    "], ["y\t", "y"]),
    ("CHARACTER SET latin1 COLLATE latin1_bin", ["x ", "x", "x  ", "x   ", "x    "], ["Y", "y"]),
    ("CHARACTER SET utf8mb4 COLLATE utf8mb4_general_nopad_ci", ["ab", "Ab", "aB", "AB", "ab"], ["y ", "y"]),  # NO PAD
    # MariaDB's row IN finds no value of these character sets among values sent as utf8mb4 (`=` does): the look-up
    # of the known groups by their keys found none, and every group was counted gone.
    ("CHARACTER SET utf16 COLLATE utf16_general_ci", ["x ", "x", "X  ", "x   ", "X    "], ["y\t", "y"]),
    ("CHARACTER SET ucs2 COLLATE ucs2_bin", ["x ", "x", "x  ", "x   ", "x    "], ["Y", "y"]),
    ("CHARACTER SET utf32 COLLATE utf32_general_nopad_ci", ["ab", "Ab", "aB", "AB", "ab"], ["y ", "y"]),
    # Nor a latin1 'é' (nor a cp932 '日'), though it finds a latin1 'x': a probe of 'x' alone said it agreed.
    ("CHARACTER SET latin1 COLLATE latin1_swedish_ci", ["é ", "é", "É  ", "é   ", "É    "], ["ü\t", "ü"]),
    ("CHARACTER SET cp932 COLLATE cp932_japanese_ci", ["日 ", "日", "日  ", "日   ", "日    "], ["本\t", "本"]),
])
def test_mariadb_pad_space_groups_are_identified_by_the_collation_not_by_one_spelling(mysql, runner_for, column,
                                                                                       spellings, apart):
    """Under a PAD SPACE collation 'x' = 'x  ' (GROUP BY and `=` say so), but `WEIGHT_STRING` keeps trailing spaces
    on MariaDB: once the rows of the spelling GROUP BY returned were deleted, the old group was counted as a new
    duplicate. Each run is compared with a plain GROUP BY; under a NO PAD collation 'y ' and 'y' stay two groups."""
    spelled_apart_runs(mysql, runner_for, f"VARCHAR(40) {column}", "DATETIME(6)", spellings, apart, "HEX(device)",
                       "HEX(device) = :d")


@pytest.mark.parametrize(("kind", "spellings"), [
    ("numeric", ["1.0", "1.00", "1.000", "1"]),
    ("double precision", ["0", "-0", "0", "-0"]),
    ("interval", ["1 day", "24 hours", "1440 minutes", "86400 seconds"]),
    ("date", ["2024-01-01"] * 4),  # one spelling: the re-count of its keys raised TypeError
    # Arrays compare element by element as their element type does ('{1.0}' = '{1.00}'): each was identified by
    # its spelling, and deleting the rows of the one GROUP BY returned made the old group new.
    ("numeric[]", ["{1.0}", "{1.00}", "{1.000}", "{1}"]),
    ("double precision[]", ["{0}", "{-0}", "{0}", "{-0}"]),
])
def test_keys_equal_in_other_spellings_are_one_group_on_postgresql(pg, runner_for, kind, spellings):
    """GROUP BY returns one of a group's spellings (1.0 or 1.00): deleting the row it returned, or reading the
    group by another row's key, must not make an old group new, nor count it twice."""
    assert_spellings_are_one_group(pg, runner_for, kind, spellings)


def test_citext_keys_outside_the_search_path_are_identified_lowered_whichever_spelling_group_by_returned(
        pg_citext_elsewhere, runner_for):
    """citext from a schema off the search_path is a type SQLAlchemy does not know: the catalog says it is citext,
    and a group is identified lowered, as GROUP BY compares (deleting the spelling GROUP BY returned left a "new"
    group); its keys are looked up with the catalog's `OPERATOR(ext.=)`, so the runs stay incremental."""
    db = pg_citext_elsewhere
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device ext.citext NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(1, 1, "Bob"), (2, 1, "bob"), (3, 1, "BOB")])
    r = runner_for(db)
    assert r.run().groups == 1
    for id_, spelling in ((4, "bOB"), (5, "BoB")):
        shown = db.scalar("SELECT CAST(device AS text) FROM logins GROUP BY device")
        db.execute("DELETE FROM logins WHERE CAST(device AS text) = :d", params={"d": shown})
        insert(db, [(id_, 1, spelling)])
        after = r.run()
        assert (after.mode, after.new_groups, after.groups) == ("incremental", 0, 1), after
        r.assert_matches_full_pass(after)


def assert_spellings_are_one_group(pg: TestDatabase, runner_for: Any, kind: str, spellings: list[str]) -> None:
    pg.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device {kind} NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")

    def put(id_: int, spelling: str) -> None:
        pg.execute(f"INSERT INTO logins VALUES (:i, 1, CAST(:d AS {kind}), :t)", params={"i": id_, "d": spelling,
                                                                                        "t": NOW})

    put(1, spellings[0])
    put(2, spellings[1])
    r = runner_for(pg)
    assert r.run().groups == 1
    put(3, spellings[2])  # read by its own spelling
    grown = r.run()
    assert (grown.mode, grown.new_groups, grown.groups, grown.excess_rows) == ("incremental", 0, 1, 2), grown
    shown = pg.scalar("SELECT min(id) FROM logins WHERE CAST(device AS text) ="  # as spelled, not as compared
                      " (SELECT CAST(device AS text) FROM logins GROUP BY device)")
    pg.execute("DELETE FROM logins WHERE id = :i", params={"i": shown})  # a row of the spelling GROUP BY returned
    put(4, spellings[3])
    after = r.run()
    assert (after.mode, after.new_groups, after.groups, after.excess_rows) == ("incremental", 0, 1, 2), after
    r.assert_matches_full_pass(after)


def nondeterministic_collation(pg: TestDatabase) -> str:
    """An ICU collation that ignores case (`und-u-ks-level2`, deterministic = false) in the test's schema: its name."""
    if not pg.scalar("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'"):
        pytest.skip("the server has no ICU collations")
    pg.execute("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    return "ci"


@pytest.mark.parametrize("keyed", ["text", "integer and text"])
def test_nondeterministic_collation_groups_are_identified_by_the_collation_not_by_one_spelling(pg, runner_for,
                                                                                               keyed):
    """Under a nondeterministic collation 'Phone' = 'PHONE' (GROUP BY and `=` say so), though Python sees two
    spellings: deleting the spelling GROUP BY returned, or reading the group by another spelling, must not make
    an old group new nor count it twice."""
    collation = nondeterministic_collation(pg)
    pg.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
               f" device TEXT COLLATE {collation} NULL, created_at TIMESTAMP(6) NOT NULL)",
               "CREATE INDEX logins_key ON logins (user_id, device)", "CREATE INDEX logins_device ON logins (device)")
    insert(pg, [(1, 1, "Phone"), (2, 1, "phone"), (3, 1, "PHONE"), (4, 2, "Pad"), (5, 2, "pad")])
    r = runner_for(pg, key=["device"] if keyed == "text" else ["user_id", "device"])
    assert r.run().groups == 2
    insert(pg, [(6, 1, "pHONE")])  # read by a spelling no known group has
    grown = r.run()
    assert (grown.mode, grown.new_groups, grown.groups, grown.excess_rows) == ("incremental", 0, 2, 4), grown
    for _ in range(2):  # delete the spelling GROUP BY returns, twice
        shown = pg.scalar("SELECT device FROM logins WHERE user_id = 1 GROUP BY device")
        pg.execute("DELETE FROM logins WHERE device = :d COLLATE \"C\"", params={"d": shown})
        after = r.run(full=_ == 1)  # the second time a full pass
        assert after.new_groups == 0, after
        r.assert_matches_full_pass(after)
    assert after.groups == 2  # (1, phone) is down to two rows; (2, pad) stays
    pg.execute("DELETE FROM logins WHERE id <> (SELECT min(id) FROM logins WHERE user_id = 1) AND user_id = 1")
    gone = r.run()
    assert (gone.mode, gone.groups) == ("incremental", 1), gone
    insert(pg, [(7, 1, "PhOnE")])
    back = r.run()
    assert (back.new_groups, back.groups) == (1, 2)
    r.assert_matches_full_pass(back)


def test_check_json_counts_no_new_group_when_the_spelling_group_by_returned_is_deleted(pg, tmp_path):
    """`dupewatch check --json`, one process per run (the state from the file): under a nondeterministic collation
    the group whose returned spelling was deleted, then read by another spelling, is the same group."""
    collation = nondeterministic_collation(pg)
    pg.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
               f" device TEXT COLLATE {collation} NULL, created_at TIMESTAMP(6) NOT NULL)",
               "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(pg, [(1, 1, "Phone"), (2, 1, "phone"), (3, 1, "PHONE")])
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg.url}},
                        [{"name": "inc", "database": "d", "table": "logins", "key": ["user_id", "device"],
                          "incremental": "id"}], state={"path": str(tmp_path / "cli-state.sqlite")})
    first = run_dupewatch("check", "--json", "--config", path).json["checks"][0]
    assert (first["mode"], first["groups"], first["new_groups"]) == ("full", 1, 1)
    shown = pg.scalar("SELECT device FROM logins GROUP BY user_id, device")
    pg.execute('DELETE FROM logins WHERE device = :d COLLATE "C"', params={"d": shown})
    insert(pg, [(4, 1, "pHONE")])
    second = run_dupewatch("check", "--json", "--config", path).json["checks"][0]
    assert (second["mode"], second["groups"], second["excess_rows"], second["new_groups"]) == \
        ("incremental", 1, 2, 0), second
    forced = run_dupewatch("check", "--json", "--full", "--config", path).json["checks"][0]
    assert (forced["mode"], forced["groups"], forced["new_groups"]) == ("full", 1, 0), forced


def test_case_variants_of_a_citext_outside_the_search_path_are_one_group_incrementally(pg_citext_elsewhere,
                                                                                       runner_for):
    """A citext whose `=` is outside the search_path: an unqualified `=` (or a row `IN`) compares its keys as text,
    so the re-count of ('Bob') found only that spelling and 'bob' made a new group of an old one."""
    pg = pg_citext_elsewhere
    pg.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device ext.citext NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(pg, [(1, 1, "Bob"), (2, 1, "bob"), (3, 2, "Pad")])
    r = runner_for(pg)
    first = r.run()
    assert (first.groups, first.excess_rows) == (1, 1)
    quiet = r.run()  # the re-count of the known group's keys
    assert (quiet.mode, quiet.new_groups, quiet.groups, quiet.excess_rows) == ("incremental", 0, 1, 1), quiet
    insert(pg, [(4, 1, "BOB"), (5, 2, "pAD")])
    grown = r.run()
    assert (grown.mode, grown.new_groups, grown.groups, grown.excess_rows) == ("incremental", 1, 2, 3), grown
    r.assert_matches_full_pass(grown)
    shown = pg.scalar("SELECT device::text FROM logins WHERE user_id = 1 GROUP BY user_id, device")
    pg.execute("DELETE FROM logins WHERE device::text = :d", params={"d": shown})  # the spelling GROUP BY returned
    after = r.run()
    assert (after.mode, after.new_groups, after.groups, after.excess_rows) == ("incremental", 0, 2, 2), after
    r.assert_matches_full_pass(after)


@pytest.mark.parametrize("kind", ["jsonb", "integer[]"])
def test_a_jsonb_or_array_key_runs_incrementally(pg, runner_for, kind):
    values = ({"a": 1, "b": [1, 2]}, {"a": 2}) if kind == "jsonb" else ([1, 2], [3])
    pg.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device {kind} NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")

    def put(rows: list[tuple[int, int, Any]]) -> None:
        for id_, user, device in rows:
            text = json.dumps(device) if kind == "jsonb" else "{" + ",".join(map(str, device)) + "}"
            pg.execute(f"INSERT INTO logins VALUES (:i, :u, CAST(:d AS {kind}), :t)",
                       params={"i": id_, "u": user, "d": text, "t": NOW})

    put([(1, 1, values[0]), (2, 1, values[0]), (3, 2, values[1])])
    r = runner_for(pg)
    assert r.run().groups == 1
    put([(4, 2, values[1]), (5, 1, values[0])])
    after = r.run()
    assert (after.mode, after.new_groups, after.groups, after.excess_rows) == ("incremental", 1, 2, 3)
    r.assert_matches_full_pass(after)
    pg.execute("DELETE FROM logins WHERE id IN (1, 2)")
    resolved = r.run()
    assert (resolved.mode, resolved.groups) == ("incremental", 1)  # (1, v0) is down to one row
    r.assert_matches_full_pass(resolved)


@pytest.mark.parametrize(("kind", "spellings"), [
    ("jsonb", ('{"a": 1}', '{"a": 1.0}')), ("int4range", ("[1,3)", "[1,2]")), ("inet", ("10.0.0.1", "10.0.0.1/32")),
    ("cidr", ("10.0.0.0/8", "10/8")), ("int4multirange", ("{[1,3)}", "{[1,2],[2,3)}"))])
def test_the_first_seen_mark_of_a_key_kept_as_the_servers_text_is_found_from_the_group_page(pg, runner_for, kind,
                                                                                         spellings):
    """The group page shows a jsonb, range or address key as psycopg reads it (a dict, a Range, an address); the
    state spells it as the server's text (`polled_key`): the dashboard's FIRST SEEN was blank for every such group."""
    typed_logins(pg, kind, [(1, 1, spellings[0]), (2, 1, spellings[1])])
    r = runner_for(pg)
    r.run()
    put_typed(pg, kind, [(3, 1, spellings[1])])
    assert r.run().mode == "incremental"
    page = r.monitor.groups("inc")
    assert [g.rows for g in page.groups] == [3]
    seen = r.monitor.group_first_seen("inc", page.groups[0].key)
    assert seen is not None and seen[1] is False, seen  # first seen by the first run, not by the latest


def typed_logins(pg: TestDatabase, kind: str, rows: list[tuple[int, int, str | None]]) -> None:
    """`logins` with a `device` of this PostgreSQL type (each value given as its text), and its key index."""
    pg.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device {kind} NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    put_typed(pg, kind, rows)


def put_typed(pg: TestDatabase, kind: str, rows: list[tuple[int, int, str | None]]) -> None:
    pg.execute(f"INSERT INTO logins VALUES (:i, :u, CAST(:d AS {kind}), :t)",
               params=[{"i": i, "u": u, "d": d, "t": NOW} for i, u, d in rows])


def runs_match_group_by(r: Any, pg: TestDatabase, kind: str, steps: list[tuple[list[tuple[int, int, str | None]],
                                                                               int]]) -> None:
    """Insert each step's rows and run: an incremental run, with the figures of a plain GROUP BY and only the groups
    new at that step reported new (an old group read again under another spelling is not new)."""
    for rows, new in steps:
        put_typed(pg, kind, rows)
        result = r.run()
        assert (result.mode, result.new_groups) == ("incremental", new), (rows, result)
        r.assert_matches_full_pass(result)


@pytest.mark.parametrize("nulls", ["equal", "distinct"])
@pytest.mark.parametrize("key", [["device"], ["user_id", "device"]])
def test_jsonb_keys_equal_in_jsonb_are_one_group_at_every_incremental_run(pg, runner_for, key, nulls):
    """jsonb `1`, `1.0` and `1.00` are one value (numbers compare as numeric), as are `{"a": [1]}` and
    `{"a": [1.0]}`: read back as Python ints, floats and dicts, they were bound as integer, double precision or not
    at all (every incremental run failed), and the group, identified by one spelling, was new again when read under
    another."""
    typed_logins(pg, "jsonb", [(1, 1, "1"), (2, 1, "1.0"), (3, 2, '{"a": 2}'), (4, 3, '{"a": [1.0]}'),
                               (5, 4, None)])
    r = runner_for(pg, key=key, nulls=nulls)
    first = r.run()
    assert (first.mode, first.groups) == ("full", 1)
    r.assert_matches_full_pass(first)
    runs_match_group_by(r, pg, "jsonb", [
        ([(6, 1, "1.00")], 0), ([(7, 2, '{"a": 2.0}')], 1), ([(8, 3, '{"a": [1]}'), (9, 1, "1")], 1),
        ([(10, 4, None)], 0 if nulls == "distinct" else 1), ([(11, 1, "1.0"), (12, 5, '"x"')], 0)])
    pg.execute("DELETE FROM logins WHERE id IN (3, 7)")  # the group {"a": 2} dissolved
    gone = r.run()
    assert gone.mode == "incremental"
    r.assert_matches_full_pass(gone)


@pytest.mark.parametrize(("kind", "equal", "other"), [  # two spellings of one value (apart where the type allows)
    ("int4range", ("[1,3)", "[1,2]"), "[5,9)"),
    ("numrange", ("[1.0,2.0)", "[1,2)"), "[3,4)"),
    ("daterange", ("[2024-01-01,2024-01-05)", "[2024-01-01,2024-01-04]"), "[2024-02-01,2024-02-02)"),
    ("tsrange", ("[2024-01-01,2024-01-02)", "[2024-01-01 00:00,2024-01-02)"), "[2024-02-01,2024-02-02)"),
    ("int4multirange", ("{[1,3)}", "{[1,2],[2,3)}"), "{[7,8)}"),
    ("nummultirange", ("{[1.0,2)}", "{[1,2.00)}"), "{[7,8)}"),
    ("inet", ("10.0.0.1", "10.0.0.1/32"), "::1"),
    ("cidr", ("10.0.0.0/8", "10.0.0.0/8"), "::/0"),
])
@pytest.mark.parametrize("key", [["device"], ["user_id", "device"]])
def test_range_multirange_and_network_keys_run_incrementally_as_group_by_counts(pg, runner_for, kind, equal, other,
                                                                                  key):
    """psycopg reads these as `Range`, lists of `Range`, `ipaddress` objects, which the lookup of two keys (or of a
    known group read back from the state as text) could not bind: every incremental run failed. `numrange` and
    `nummultirange` values equal as numbers print apart (`[1.0,2.0)`, `[1,2)`): one group, not new again."""
    a, b = equal
    typed_logins(pg, kind, [(1, 1, a), (2, 1, b), (3, 2, other)])
    r = runner_for(pg, key=key)
    first = r.run()
    assert (first.mode, first.groups) == ("full", 1)
    r.assert_matches_full_pass(first)
    runs_match_group_by(r, pg, kind, [([(4, 2, other)], 1), ([(5, 1, b)], 0), ([(6, 1, a), (7, 2, other)], 0),
                                      ([(8, 3, None), (9, 3, None)], 1)])
    pg.execute("DELETE FROM logins WHERE id IN (3, 4, 7)")  # the group of `other` dissolved
    gone = r.run()
    assert (gone.mode, gone.groups) == ("incremental", 2)
    r.assert_matches_full_pass(gone)


def test_without_a_key_index_a_run_is_a_full_pass_when_the_planner_says_it_is_cheaper(logins, runner):
    logins.execute("DROP INDEX logins_key" + (" ON logins" if logins.dialect == "mysql" else ""))
    insert(logins, [(id_, id_ // 2, "x") for id_ in range(100, 400)])  # 150 groups to re-count
    r = runner(key=["user_id"])
    r.run()
    insert(logins, [(500, 7, "y")])
    after = r.run()
    r.assert_matches_full_pass(after)
    if logins.dialect == "sqlite":  # no cost from its planner: one IN-list scan is no dearer than a full pass
        assert after.mode == "incremental"
        return
    assert after.mode == "full"
    (note,) = [n for n in after.notes if n.startswith("no key index: ")]
    assert "planner's estimate" in note and "the run was a full pass" in note
    logins.execute("CREATE INDEX logins_user ON logins (user_id)")
    r.restart()
    r.run()
    insert(logins, [(501, 8, "y")])
    assert r.run().mode == "incremental"


# -- randomized: an incremental run's figures equal a full pass's after any mix of these changes ---------

OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 4), st.sampled_from(["a", "b", None])),
    st.tuples(st.just("delete"), st.integers(0, 50), st.just(None)),
    st.tuples(st.just("replace"), st.integers(0, 50), st.sampled_from(["a", "b", None])),
    st.tuples(st.just("empty"), st.just(0), st.just(None)),
    st.tuples(st.just("restore"), st.just(0), st.just(None)),
), min_size=1, max_size=12)


@pytest.mark.parametrize("volume", volumes(25, 300))
def test_random_inserts_deletes_replaces_and_restores_match_a_full_pass(tmp_path_factory, volume: Volume):
    """Fewer known groups than the budget, so every run re-counts all of them: exact after every change (an UPDATE
    of a key below the overlap window is the documented exception, and is not drawn)."""

    @settings(max_examples=volume.examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(operations=OPERATIONS)
    def check(operations):
        place = tmp_path_factory.mktemp("fuzz")
        made = make_test_database("sqlite", place)
        db = next(made)
        r = None
        try:
            db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
                       " created_at DATETIME NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
            insert(db, [(1, 1, "a"), (2, 1, "a"), (3, 2, None), (4, 2, None), (5, 3, "b")])
            r = Runner(db, place / "state.sqlite", table="logins", key=["user_id", "device"], incremental="id")
            r.run()
            saved: list[tuple[Any, ...]] = []
            next_id = 6
            for kind, number, device in operations:
                ids = [row[0] for row in db.rows("SELECT id FROM logins ORDER BY id")]
                if kind == "insert":
                    insert(db, [(next_id, number, device)])
                    next_id += 1
                elif kind == "delete" and ids:
                    db.execute("DELETE FROM logins WHERE id = :i", params={"i": ids[number % len(ids)]})
                elif kind == "replace" and ids:
                    victim = ids[number % len(ids)]
                    db.execute("DELETE FROM logins WHERE id = :i",
                               "INSERT INTO logins (id, user_id, device, created_at) VALUES (:i, :u, :d, :t)",
                               params={"i": victim, "u": number % 5, "d": device, "t": ts(db, NOW)})
                elif kind == "empty":
                    saved = db.rows("SELECT id, user_id, device FROM logins")
                    db.execute("DELETE FROM logins")
                elif kind == "restore" and saved:
                    present = {row[0] for row in db.rows("SELECT id FROM logins")}
                    insert(db, [row for row in saved if row[0] not in present])
                    saved = []
                r.assert_matches_full_pass(r.run())
        finally:
            if r is not None:
                r.close()
            made.close()

    check()


ADDED_TEXT_COLUMN = {"mysql": "ALTER TABLE logins ADD COLUMN note VARCHAR(20) COLLATE utf8mb4_general_ci",
                     "sqlite": "ALTER TABLE logins ADD COLUMN note TEXT COLLATE NOCASE"}


def test_a_text_column_added_beside_the_key_keeps_the_state(logins, runner):
    """Only the key's columns' comparisons are in the state's fingerprint: a text column added under a collation
    that compares spellings apart (MariaDB PAD SPACE, SQLite NOCASE) is none of the check's business, and its next
    run stays incremental (it restarted the state: a full pass)."""
    if logins.dialect not in ADDED_TEXT_COLUMN:
        pytest.skip("the collations that compare spellings apart are MariaDB's and SQLite's here")
    r = runner(key=["user_id"])
    assert r.run().mode == "full"
    logins.execute(ADDED_TEXT_COLUMN[logins.dialect])
    r.restart()  # the table resolved again, as a new process would
    insert(logins, [(6, 2, "pc")])
    second = r.run()
    assert second.mode == "incremental", second.notes
    r.assert_matches_full_pass(second)


def test_postgresql_infinity_in_the_watermark_and_the_key(pg, runner_for):
    """PostgreSQL's `infinity` (and `-infinity`) in the watermark column and in the key: a value no Python type
    holds, read as the server's text. The watermark stays at the database's clock (a row dated `infinity` lies in
    the future, and says so) instead of failing the run, and a key holding it is counted again by binding it
    back; every run matches the full pass."""
    pg.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device DATE,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)",
               "CREATE INDEX logins_at ON logins (created_at)",
               "INSERT INTO logins VALUES (1, 1, 'infinity', '-infinity'), (2, 1, 'infinity', 'infinity'), "
               "(3, 2, '-infinity', now()), (4, 3, NULL, now())")
    r = runner_for(pg, incremental="created_at")
    first = r.run()
    assert (first.mode, first.groups) == ("full", 1)
    assert any("infinity" in note and "future" in note for note in first.notes), first.notes
    pg.execute("INSERT INTO logins VALUES (5, 2, '-infinity', now()), (6, 1, 'infinity', now()), "
               "(7, 4, '2020-01-01', 'infinity')")
    second = r.run()
    assert second.mode == "incremental"
    assert (second.groups, second.excess_rows) == (2, 3)
    r.assert_matches_full_pass(second)
    pg.execute("DELETE FROM logins WHERE id IN (2, 6)")
    r.restart()
    third = r.run()
    assert (third.groups, third.excess_rows) == (1, 1)
    r.assert_matches_full_pass(third)


def test_postgresql_minus_infinity_watermark_is_kept_and_read_back(pg, runner_for):
    """A watermark of `-infinity` (every row so far dated so) is kept in the state as that value, not as text,
    and the next run, after a restart, reads from it: rows after it are found."""
    pg.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device TEXT,"
               " created_at TIMESTAMPTZ NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)",
               "CREATE INDEX logins_at ON logins (created_at)",
               "INSERT INTO logins VALUES (1, 1, 'a', '-infinity'), (2, 1, 'a', '-infinity'), (3, 2, 'b', '-infinity')")
    r = runner_for(pg, incremental="created_at")
    assert r.run().groups == 1
    r.restart()
    pg.execute("INSERT INTO logins VALUES (4, 2, 'b', now()), (5, 3, 'c', '-infinity')")
    second = r.run()
    assert second.mode == "incremental"
    assert (second.groups, second.excess_rows) == (2, 2)
    r.assert_matches_full_pass(second)


def test_the_first_seen_mark_of_a_key_kept_as_the_servers_text_follows_a_run_whose_save_failed(pg, runner_for,
                                                                                           monkeypatch):
    """The map from the page's keys to the groups was kept by (generation, number of groups): a run whose save
    failed changed the groups in place (one dissolved, one formed) with neither changed, and the dashboard looked
    the new group up in the old map: blank, while the plain keys' lookup, reading the groups, found it."""
    typed_logins(pg, "jsonb", [(1, 1, '{"a": 1}'), (2, 1, '{"a": 1.0}')])
    r = runner_for(pg)
    assert r.run().groups == 1
    [old] = r.monitor.groups("inc").groups
    assert r.monitor.group_first_seen("inc", old.key) is not None  # the map made
    pg.execute("DELETE FROM logins WHERE id = 2")
    await_counted_removals(pg, 1)
    put_typed(pg, "jsonb", [(3, 2, '{"b": 2}'), (4, 2, '{"b": 2.0}')])

    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(r.history, "save_incremental", failing)
    lost = r.monitor.run("inc")
    assert lost.error is not None and "disk I/O error" in lost.error
    [formed] = r.monitor.groups("inc").groups
    assert formed.key != old.key
    seen = r.monitor.group_first_seen("inc", formed.key)
    assert seen is not None
    assert r.monitor.group_first_seen("inc", old.key) is None  # dissolved


@pytest.mark.parametrize("db", ["postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("restarted", [False, True])
def test_a_watermark_column_whose_type_was_altered_makes_one_full_pass_that_says_so(db, runner_for, restarted):
    """An epoch-seconds column made a timestamp (`ALTER COLUMN ... TYPE`) between two polls: the state's integer
    watermark against the column's timestamps failed every run (`int - timedelta`, or `datetime - int` in a process
    that had reflected the column as an integer: until it restarted, full passes included). The run that finds
    the column's values of another type than the watermark (or than the type reflected: the table is reflected
    again) is a full pass and says why; the runs after it are incremental again."""
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               " created BIGINT NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    add = "INSERT INTO logins (id, user_id, device, created) VALUES (:i, :u, 'pc', :c)"
    db.execute(add, params=[dict(i=i, u=i, c=1_700_000_000 + i) for i in range(1, 50)])
    r = runner_for(db, incremental="created")
    r.run()
    db.execute(add, params={"i": 100, "u": 1, "c": 1_700_000_100})
    assert r.run().mode == "incremental"
    if db.dialect == "postgresql":
        db.execute("ALTER TABLE logins ALTER COLUMN created TYPE TIMESTAMP(6) USING to_timestamp(created) "
                   "AT TIME ZONE 'UTC'")
    else:
        db.execute("ALTER TABLE logins ADD created_at DATETIME(6) NULL", "UPDATE logins SET created_at = "
                   "FROM_UNIXTIME(created)", "ALTER TABLE logins DROP COLUMN created",
                   "ALTER TABLE logins CHANGE created_at created DATETIME(6) NOT NULL")
    db.execute(add, params={"i": 101, "u": 2, "c": datetime.utcnow()})
    if restarted:
        r.restart()
    after = r.run()
    assert after.mode == "full", after
    assert [n for n in after.notes if "changed since the last run" in n] == [
        "full pass: the type of created changed since the last run (its watermark 1700000100 is of type integer, "
        "the column's values now of type timestamp without time zone)"], after.notes
    r.assert_matches_full_pass(after)
    db.execute(add, params={"i": 102, "u": 3, "c": datetime.utcnow()})
    again = r.run()
    assert (again.mode, again.groups) == ("incremental", 3), again
    r.assert_matches_full_pass(again)


def test_sqlite_text_dates_with_and_without_a_time_zone_are_refused_in_one_line(sqlite_db, runner_for):
    """SQLite keeps the text the application wrote: a row dated `...T19:19:29Z` (or `+00:00`) among plain
    `YYYY-MM-DD HH:MM:SS` ones is read as an aware date-time beside naive ones, and every run after it (the full
    pass it made included) was an internal error with a traceback (`can't compare offset-naive and offset-aware
    datetimes`). The check is refused in one line naming the column, without a row's value; other text forms
    (`T` without a zone, no seconds) run as before, and the plain check is unaffected. The rows are dated as when a
    run of this test at 00:48 UTC failed: the row with an offset was the table's highest, so its kind looked like a
    column altered to another type, and a full pass ran instead of the refusal (the column's lowest value, of the
    other kind, now tells the two apart)."""
    db = sqlite_db
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               " created_at DATETIME NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)",
               "CREATE INDEX logins_created ON logins (created_at)")
    now = (datetime.utcnow() - timedelta(days=1)).replace(hour=0, minute=48, second=0, microsecond=0)
    add = "INSERT INTO logins (id, user_id, device, created_at) VALUES (:i, :u, 'a', :t)"
    db.execute(add, params=[dict(i=i, u=i, t=(now - timedelta(hours=2, seconds=-i)).strftime("%Y-%m-%d %H:%M:%S.%f"))
                            for i in range(1, 50)])
    r = runner_for(db, incremental="created_at")
    assert r.run().mode == "full"
    for i, form in enumerate(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]):  # no time zone: read as before
        db.execute(add, params={"i": 100 + i, "u": 1, "t": (now - timedelta(minutes=50 - 10 * i)).strftime(form)})
        r.assert_matches_full_pass(r.run())
    for form in ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S+00:00"]:
        db.execute(add, params={"i": 200, "u": 2, "t": (now - timedelta(minutes=20)).strftime(form)})
        for _ in range(2):  # at every run while it holds them
            result = r.monitor.run("inc")
            assert result.status == "error", result
            assert result.error == (
                "check 'inc': incremental: column 'created_at' holds date-times with a time zone offset beside "
                "date-times without one, which cannot be ordered as one watermark: store one form (SQLite keeps "
                "the text the application wrote), or watch another column"), result.error
        assert r.oracle() == (2, 3)  # (1, a): ids 1, 100, 101; (2, a): ids 2, 200
        db.execute("DELETE FROM logins WHERE id = 200")


def test_deletes_a_session_has_not_reported_yet_are_recounted_within_recount_every(pg, runner_for):
    """PostgreSQL's count of deleted rows is what each backend reported, and a backend reports only when idle
    outside a transaction: a session that deleted rows and went on in a transaction (here in one message, so it is
    never idle between) holds the count for as long, and the runs, finding the count still, re-counted no known
    group (400 groups shown where 100 were left, for as long as the transaction stayed open). While a transaction of
    another session has been open for more than a second, the count is unknown and the rotation goes on: every
    group is re-counted by the first run `recount_every` after."""
    pg.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL)",
               "CREATE INDEX logins_key ON logins (user_id, device)",
               "INSERT INTO logins SELECT g, g % 400, 'pc' FROM generate_series(1, 2000) g")  # 400 groups of 5
    r = runner_for(pg, recount_every="10s")
    now = [time.time()]
    r.monitor.clock = lambda: now[0]
    assert r.run().groups == 400
    engine = sa.create_engine(pg.url)
    try:
        with engine.connect() as writer:
            driver = writer.connection.driver_connection
            assert driver is not None
            driver.autocommit = True
            driver.execute("BEGIN; DELETE FROM logins WHERE id > 400 AND user_id < 300; COMMIT; BEGIN; SELECT 1")
            deadline = time.monotonic() + 30
            while not pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"
                                " AND xact_start < clock_timestamp() - interval '1.1 second'",
                                {"p": driver.info.backend_pid}):
                assert time.monotonic() < deadline
            now[0] += 11
            after = r.run()
            assert (after.mode, after.groups) == ("incremental", 100), after
            r.assert_matches_full_pass(after)
            driver.execute("COMMIT")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def monitoring_role_cluster() -> Iterator[Any]:
    """A throwaway cluster (every session in it is the tests'; autovacuum wakes every second) with the roles `app`
    and `mon` (no pg_read_all_stats, no pg_monitor), shared by the module's tests: each has a database of its own."""
    for cluster in started_cluster("the monitoring-role poll tests", autovacuum_naptime="1"):
        admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for statement in ("CREATE ROLE app LOGIN", "CREATE ROLE mon LOGIN"):
                conn.execute(sa.text(statement))
        try:
            yield cluster, admin
        finally:
            admin.dispose()


@pytest.fixture
def watched_by_a_monitoring_role(monitoring_role_cluster: Any) -> Iterator[tuple[TestDatabase, sa.Engine]]:
    """A database of its own in the monitoring-role cluster (no other session in it) with `logins` (400 groups of
    5), owned by the role `app`, which `mon` may only read: `mon`'s TestDatabase and an engine of `app`; the
    database is dropped afterwards."""
    cluster, admin = monitoring_role_cluster
    database = f"shop_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database} OWNER app"))
    url = sa.engine.make_url(cluster.url).set(database=database)
    app = sa.create_engine(url.set(username="app"), isolation_level="AUTOCOMMIT")
    with app.connect() as conn:
        for statement in (
                "CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL)",
                "CREATE INDEX logins_key ON logins (user_id, device)",
                "INSERT INTO logins SELECT g, g % 400, 'pc' FROM generate_series(1, 2000) g",
                "GRANT SELECT ON logins TO mon"):
            conn.execute(sa.text(statement))
    mon_url = url.set(username="mon")
    mon = sa.create_engine(mon_url)
    try:
        yield TestDatabase("postgresql", mon_url.render_as_string(hide_password=False), mon, None), app
    finally:
        mon.dispose()
        app.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {database} WITH (FORCE)"))


def _deletes_counted(db: TestDatabase) -> int | None:
    """What the poll reads of the deleted and updated rows of `logins`, as the monitoring role."""
    with db.engine.connect() as conn:
        return PostgreSQLPolling().removed_rows(conn, sa.Table("logins", sa.MetaData()))


def test_an_idle_session_of_another_role_leaves_the_delete_count_known_to_a_role_without_pg_read_all_stats(
        watched_by_a_monitoring_role):
    """A role without pg_read_all_stats sees another role's session only as '<insufficient privilege>' (state and
    xact_start NULL): every idle connection of an application's pool made the count of deleted rows unknown, so
    the rotation never stopped. pg_locks, which every role reads, says whether the session is in a transaction:
    an idle one holds back no count."""
    mon, app = watched_by_a_monitoring_role
    with app.connect() as idle:
        idle.execute(sa.text("DELETE FROM logins WHERE id = 1"))  # then idle outside a transaction
        # A backend that reported less than a second ago reports what it did 10 s after going idle: asked not to wait
        idle.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        pid = idle.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        assert mon.scalar("SELECT query FROM pg_stat_activity WHERE pid = :p", {"p": pid}) == "<insufficient privilege>"
        deadline = time.monotonic() + 30
        while _deletes_counted(mon) != 1:  # reported as it goes idle
            assert time.monotonic() < deadline, _deletes_counted(mon)


def test_an_autovacuum_worker_never_makes_the_delete_count_unknown(watched_by_a_monitoring_role):
    """An autovacuum worker is hidden from a role without pg_read_all_stats like another role's session, and is in
    a transaction while it works: it has no role (`usesysid` NULL), holds back no count of a client's, and is not
    counted."""
    mon, app = watched_by_a_monitoring_role
    with app.connect() as conn:  # a crawling vacuum of many dead rows, so the worker stays long enough to be seen
        conn.execute(sa.text("ALTER TABLE logins SET (autovacuum_vacuum_threshold = 0,"
                             " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
                             " autovacuum_vacuum_cost_limit = 1)"))
        conn.execute(sa.text("INSERT INTO logins SELECT g, g % 400, 'pc' FROM generate_series(2001, 60000) g"))
        conn.execute(sa.text("DELETE FROM logins WHERE id > 2000"))
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))  # autovacuum acts on the reported dead rows
    superuser = sa.create_engine(sa.engine.make_url(mon.url).set(username="postgres"), isolation_level="AUTOCOMMIT")
    workers = sa.text("SELECT pid, xact_start FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                      " AND datname = current_database() AND xact_start IS NOT NULL")
    try:
        deadline = time.monotonic() + 60
        while True:  # until a count is read while a worker is in a transaction, before and after
            assert time.monotonic() < deadline, "no autovacuum worker seen while the count was read"
            with superuser.connect() as conn:
                before = conn.execute(workers).first()
            if before is None:
                continue
            hidden = mon.scalar("SELECT query FROM pg_stat_activity WHERE pid = :p", {"p": before[0]})
            counted = _deletes_counted(mon)
            with superuser.connect() as conn:
                after = conn.execute(workers).all()
            if tuple(before) in [tuple(w) for w in after]:
                break
        assert hidden == "<insufficient privilege>"
        assert counted is not None
    finally:
        superuser.dispose()


def test_a_role_without_pg_read_all_stats_says_why_the_delete_count_is_unknown(watched_by_a_monitoring_role,
                                                                                 runner_for):
    """While a session of another role is in a transaction, a role without pg_read_all_stats cannot tell for how
    long, nor whether it holds back a count: the count is unknown (the rotation goes on), and the run says why and
    what to grant, as a standing note (the daemon's log and the dashboard say it once)."""
    mon, app = watched_by_a_monitoring_role
    r = runner_for(mon, recount_every="10s")
    now = [time.time()]
    r.monitor.clock = lambda: now[0]
    assert r.run().groups == 400
    with app.connect() as writer:
        driver = writer.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN; DELETE FROM logins WHERE id > 400 AND user_id < 300; COMMIT; BEGIN; SELECT 1")
        now[0] += 11
        after = r.run()
        assert (after.mode, after.groups) == ("incremental", 100), after
        said = [n for n in after.notes if standing(n) == REMOVALS_UNSEEN]
        assert len(said) == 1, after.notes
        assert "pg_read_all_stats or pg_monitor" in said[0] and "logins" in said[0], said
        r.assert_matches_full_pass(after)
        driver.execute("COMMIT")
    quiet = r.run()
    assert not [n for n in quiet.notes if standing(n) == REMOVALS_UNSEEN], quiet.notes


def test_an_id_watermark_handed_out_by_a_sequence_counting_down_is_refused_in_one_line(pg, runner_for):
    """An identity counting down (`INCREMENT BY -1`) hands out every new id below the watermark: the runs read the
    whole table above it at every run (every old row said to lie "in the future", ahead of the sequence), and a
    run after more than the overlap's inserts was a full pass saying the sequence had been set back. The check is
    refused in one line naming the column and the sequence (the catalog's `seqincrement`); the plain check runs."""
    pg.execute("CREATE TABLE logins (id INTEGER GENERATED BY DEFAULT AS IDENTITY (START 100000 INCREMENT BY -1"
               " MINVALUE 1 MAXVALUE 100000) PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL)",
               "CREATE INDEX logins_key ON logins (user_id, device)",
               "INSERT INTO logins (user_id, device) SELECT g % 700, 'pc' FROM generate_series(1, 1500) g")
    r = runner_for(pg)
    for _ in range(2):
        result = r.monitor.run("inc")
        assert result.status == "error", result
        assert result.error == ("check 'inc': incremental: column 'id' is handed out by logins_id_seq, which counts "
                                "down (a negative INCREMENT BY): new rows lie below any watermark; watch a column "
                                "that grows"), result.error
    assert r.oracle() == (700, 800)


@pytest.mark.parametrize("db", ["postgresql", "mysql"], indirect=True)
def test_a_timestamp_watermark_column_made_a_date_makes_one_full_pass_that_says_so(db, runner_for):
    """A timestamp column made a `date` (or back) keeps the kind of its watermark; the full pass the run after it
    made said the table was rewritten (PostgreSQL) or every row lay below the watermark (MariaDB, where nothing
    was emptied), and a process that had reflected the timestamp read the database's clock as a date and said the
    new rows lay in the future. The run says the type changed, and the table is reflected again."""
    db.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device VARCHAR(40) NULL,"
               f" created_at {ts_type(db)} NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    insert(db, [(i, i, "pc") for i in range(1, 50)], at=datetime.utcnow())
    r = runner_for(db, incremental="created_at")
    r.run()
    db.execute("ALTER TABLE logins ALTER COLUMN created_at TYPE DATE" if db.dialect == "postgresql"
               else "ALTER TABLE logins MODIFY created_at DATE NOT NULL")
    insert(db, [(100, 1, "pc")], at=datetime.utcnow())
    after = r.run()
    assert after.mode == "full", after
    (said,) = [n for n in after.notes if n.startswith("full pass")]
    assert said.startswith("full pass: the type of created_at changed since the last run (its watermark "), said
    assert said.endswith("is of type timestamp without time zone, the column's values now of type date)"), said
    r.assert_matches_full_pass(after)
    insert(db, [(101, 2, "pc"), (102, 2, "pc")], at=datetime.utcnow())
    again = r.run()
    assert (again.mode, again.groups, again.notes) == ("incremental", 2, ()), again
    r.assert_matches_full_pass(again)


@pytest.mark.parametrize("name", ["logins_ids", "Login Ids"])
def test_a_sequence_the_column_is_not_owned_by_bounds_the_watermark(pg, runner_for, name):
    """`DEFAULT nextval('ids')` without `OWNED BY` (a hand-written schema, a sequence two tables share):
    `pg_get_serial_sequence` names none, so nothing bounded the watermark, and one id imported far above the
    sequence blinded every run to the duplicates after it (said only as 'nothing bounds the watermark'). The
    sequence the column's default calls (pg_depend, where the default is exactly its nextval) bounds it."""
    seq = pg.q(name)
    pg.execute(f"CREATE SEQUENCE {seq}",
               f"CREATE TABLE logins (id BIGINT DEFAULT nextval('{seq}') PRIMARY KEY, user_id INTEGER NOT NULL,"
               " device VARCHAR(40) NULL)", f"CREATE TABLE other_ids (id BIGINT DEFAULT nextval('{seq}'))",
               "CREATE INDEX logins_key ON logins (user_id, device)",
               "INSERT INTO logins (user_id, device) SELECT g, 'pc' FROM generate_series(1, 100) g",
               "INSERT INTO logins (id, user_id, device) VALUES (1000000, 5000, 'pc')")  # an import
    r = runner_for(pg)
    first = r.run()
    assert [n.split(" lie ahead")[0] for n in first.notes] == ["rows in the future: 1 row(s) with id up to 1000000"]
    pg.execute("INSERT INTO other_ids SELECT FROM generate_series(1, 50)",  # the other table takes ids too
               "INSERT INTO logins (user_id, device) VALUES (1, 'pc'), (2, 'pc')")
    after = r.run()
    assert (after.mode, after.groups, after.new_groups) == ("incremental", 2, 2), after
    r.assert_matches_full_pass(after)


def test_rows_dated_by_a_clock_hours_behind_the_databases_are_said_to_wait_when_it_steps_back(pg, runner_for):
    """An application writing its session's local time (`timestamp`, a JDBC driver's JVM zone) hours behind the
    database's clock: when that clock steps back an hour (daylight saving time ends: here the session's zone moves
    from New York to Chicago), its rows lie below the overlap window and wait for the full pass, and no run said
    anything (the database cannot tell). The run that reads such rows says so once (a standing `late rows` note);
    rows dated by the database's clock make no such note; the full pass says what the polls missed."""
    app = sa.create_engine(pg.url)

    def add(table: str, zone: str, rows: range, user: int | None = None) -> None:
        with app.begin() as conn:
            conn.execute(sa.text(f"SET LOCAL TIME ZONE '{zone}'"))
            for i in rows:
                conn.execute(sa.text(f"INSERT INTO {table} VALUES (:i, :u, 'pc', LOCALTIMESTAMP)"),
                             {"i": i, "u": i if user is None else user})

    try:
        for table, zone in (("logins_utc", "UTC"), ("logins", "America/New_York")):
            pg.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
                       f" device VARCHAR(40) NULL, created_at TIMESTAMP NULL)",
                       f"CREATE INDEX {table}_key ON {table} (user_id, device)",
                       f"CREATE INDEX {table}_created ON {table} (created_at)")
            add(table, zone, range(1, 50))
        same = runner_for(pg, table="logins_utc", incremental="created_at")
        same.run()
        add("logins_utc", "UTC", range(50, 51), user=1)
        polled = same.run()
        assert (polled.mode, polled.groups, late_notes(polled)) == ("incremental", 1, []), polled
        r = runner_for(pg, incremental="created_at")
        r.run()
        add("logins", "America/New_York", range(50, 51), user=1)
        behind = r.run()
        (note,) = late_notes(behind)
        assert note.startswith("late rows: the newest created_at values read lie ") and note.endswith(
            " h behind the database's clock, more than the time since the last run: they are not dated by that clock "
            "when they commit (an application's local time in another time zone, a client's clock); a row that "
            "clock dates further back than the overlap (5 min) below them, as when it steps back at the end of "
            "daylight saving time, waits for the full pass"), note
        assert standing(note) == "late rows"
        r.assert_matches_full_pass(behind)
        add("logins", "America/Chicago", range(51, 52), user=2)  # that clock stepped back an hour
        stepped = r.run()
        assert (stepped.mode, stepped.groups) == ("incremental", 1)  # (2, pc) waits, as the note said
        full = r.run(full=True)
        assert full.groups == 2 and missed_notes(full), full
        r.assert_matches_full_pass(full)
    finally:
        app.dispose()


@pytest.mark.parametrize(("base", "spellings"), [
    ("numeric", ["1.0", "1.00", "1.000", "1"]),
    ("double precision", ["0", "-0", "0", "-0"]),
    ("jsonb", ["1.0", "1.00", "1", "1.000"]),
    ("text[]", ["{a}", "{a}", "{a}", "{a}"]),
])
def test_keys_of_a_domain_are_one_group_as_its_base_type_compares_them(pg, runner_for, base, spellings):
    """A domain compares as its base type (`-0` = `0` of a domain over double precision): its groups were
    identified by their spelling, so one group read as two, or an old one counted as new. And its keys are bound
    as its base type: those of a domain over jsonb or text[] were bound as plain values (`cannot dump lists of
    mixed types`, `malformed array literal`), and every incremental run failed."""
    pg.execute(f"CREATE DOMAIN amount AS {base}")
    assert_spellings_are_one_group(pg, runner_for, "amount", spellings)


@pytest.mark.parametrize("other", ["{{1.0,2}}", "{{1.0},{2}}"])
def test_arrays_of_other_dimensions_are_other_groups_on_postgresql(pg, runner_for, other):
    """`=` finds '{1,2}' and '{{1,2}}' apart, as GROUP BY does, but `hash_array_extended` hashes the elements only,
    not the dimensions: identified by that hash alone, the two groups were one group of all their rows, and a run
    (the first full pass too) counted one group where GROUP BY says two."""
    pg.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device numeric[] NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    for id_, device in enumerate(["{1,2}", "{1.00,2}", other, other], start=1):
        pg.execute("INSERT INTO logins VALUES (:i, 1, CAST(:d AS numeric[]), :t)",
                   params={"i": id_, "d": device, "t": NOW})
    r = runner_for(pg)
    first = r.run()
    r.assert_matches_full_pass(first)
    pg.execute("INSERT INTO logins VALUES (5, 1, '{1,2.0}', :t)", params={"t": NOW})
    grown = r.run()
    assert grown.mode == "incremental", grown
    r.assert_matches_full_pass(grown)


@pytest.mark.parametrize("kind", ["integer[]", "numeric[]"])
def test_arrays_with_lower_bounds_other_than_one_are_their_own_groups_on_postgresql(pg, runner_for, kind):
    """`=` and GROUP BY find '[2:3]={1,2}' and '{1,2}' apart; psycopg returns both as the list [1, 2], which binds
    back as '{1,2}'. The group of two '[2:3]={1,2}' rows was re-counted as '{1,2}' (one row: the group gone, 0
    groups where 1 exists) and, once '{1,2}' formed a group too, both were one group (the full pass too)."""
    pg.execute(f"CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device {kind} NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    for id_, device in enumerate(["[2:3]={1,2}", "[2:3]={1,2}", "{1,2}"], start=1):
        pg.execute(f"INSERT INTO logins VALUES (:i, 1, CAST(:d AS {kind}), :t)",
                   params={"i": id_, "d": device, "t": NOW})
    r = runner_for(pg)
    r.assert_matches_full_pass(r.run())
    pg.execute("INSERT INTO logins VALUES (4, 2, '{9}', :t)", params={"t": NOW})
    unrelated = r.run()
    assert (unrelated.mode, unrelated.groups) == ("incremental", 1), unrelated
    r.assert_matches_full_pass(unrelated)
    pg.execute("INSERT INTO logins VALUES (5, 1, '{1,2}', :t)", params={"t": NOW})
    grown = r.run()
    assert (grown.mode, grown.groups) == ("incremental", 2), grown
    r.assert_matches_full_pass(grown)


def test_mariadb_known_groups_of_a_latin1_key_are_looked_up_by_one_in_list_not_key_by_key(mysql, runner_for):
    """MariaDB's row IN finds no latin1 'é' sent as utf8mb4 (`=` does): the known groups were looked up by `=`, an OR
    of one conjunction per group, which a table without the key's index evaluates per row (20,000 groups over
    40,000 rows: 18 s a statement, without bound). The values converted to the column's character set, a row IN
    finds them, in one sorted list."""
    mysql.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
                  " device VARCHAR(40) CHARACTER SET latin1 NULL, created_at DATETIME(6) NOT NULL)")
    insert(mysql, [(id_, id_ // 2, "dévice") for id_ in range(10, 1210)])  # 600 pairs
    r = runner_for(mysql, recount_every="1s")
    now = [time.time()]
    r.monitor.clock = lambda: now[0]
    assert r.run().groups == 600
    statements: list[str] = []
    sa.event.listen(r.monitor.database("d").engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    mysql.execute("DELETE FROM logins WHERE id < 410 AND MOD(id, 2) = 0")  # breaks 200 pairs
    now[0] += 10  # every known group re-counted
    after = r.run()
    assert after.mode == "incremental", after
    r.assert_matches_full_pass(after)
    assert after.groups == 400
    assert max(s.count(" OR ") for s in statements) < 10, "the known groups were looked up key by key"


@pytest.mark.parametrize("base", ["integer", "text"])
def test_keys_of_a_domain_whose_check_calls_a_volatile_function_are_looked_up_without_running_it(pg, runner_for,
                                                                                                  base):
    """A known group's key bound back cast to its domain would run the domain's CHECK, here a VOLATILE function
    (nextval: refused in the read-only session); bound as the base type, nothing of the domain's runs."""
    pg.execute("CREATE SEQUENCE calls", "CREATE FUNCTION counted(v anyelement) RETURNS boolean VOLATILE LANGUAGE sql"
               " AS 'SELECT nextval(''calls'') > 0'", f"CREATE DOMAIN amount AS {base} CHECK (counted(VALUE))",
               "CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NULL, device amount NULL,"
               " created_at TIMESTAMP(6) NOT NULL)", "CREATE INDEX logins_key ON logins (user_id, device)")
    spelling = "1"
    for id_, user in ((1, 1), (2, 1), (3, 1), (4, None), (5, None), (6, None)):  # a key with a NULL too
        pg.execute("INSERT INTO logins VALUES (:i, :u, CAST(:d AS amount), :t)",
                   params={"i": id_, "u": user, "d": spelling, "t": NOW})
    calls = pg.scalar("SELECT last_value FROM calls")
    r = runner_for(pg, recount_every="1s")
    now = [time.time()]
    r.monitor.clock = lambda: now[0]
    assert r.run().groups == 2
    pg.execute("DELETE FROM logins WHERE id IN (1, 4)")
    now[0] += 10
    after = r.run()
    assert (after.mode, after.error) == ("incremental", None), after
    r.assert_matches_full_pass(after)
    assert pg.scalar("SELECT last_value FROM calls") == calls


def test_citext_array_keys_are_one_group_whichever_spelling_group_by_returned(pg_citext_elsewhere, runner_for):
    """An array of citext compares element by element as citext ('{Bob}' = '{BOB}'), which the catalog says of the
    array's element type (the array type is no member of the extension): identified by its spelling, the group
    was counted new once the rows of the spelling GROUP BY returned were deleted."""
    assert_spellings_are_one_group(pg_citext_elsewhere, runner_for, "ext.citext[]",
                                   ["{Bob}", "{bob}", "{BOB}", "{bOB}"])


def test_known_groups_of_a_composite_key_are_re_counted_on_postgresql(pg, runner_for):
    """left typed composite columns (`Composite`, bound cast to the type) for live re-counts; the poll then took
    them for plain keys and re-counted its known groups through `unnest` of a text[] cast to an array of the type
    ('operator does not exist: address = text'), and before that through a row IN whose values are bound without
    the cast ('input of anonymous composite types is not implemented'): every incremental run was an error."""
    pg.execute("CREATE TYPE address AS (street text, zip int)",
               "CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, device address NULL,"
               " created_at TIMESTAMP(6) NOT NULL)")
    for id_, device in enumerate(['("a,\\"b",)', '("a,\\"b",)', "(c,2)"], start=1):
        pg.execute("INSERT INTO logins VALUES (:i, 1, CAST(:d AS address), :t)",
                   params={"i": id_, "d": device, "t": NOW})
    r = runner_for(pg)
    r.assert_matches_full_pass(r.run())
    pg.execute("INSERT INTO logins VALUES (4, 1, '(c,2)', :t)", params={"t": NOW})
    grown = r.run()
    assert (grown.mode, grown.groups) == ("incremental", 2), grown
    r.assert_matches_full_pass(grown)

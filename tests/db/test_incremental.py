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
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import TestDatabase, make_test_database, run_dupewatch, write_config
from fix_support import ts
from monitor.config import config_from_dict
from monitor.engine import Monitor
from monitor.history import History
from monitor.incremental import RECOUNT_BUDGET, TIMESTAMP_OVERLAP

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
                                                   if k not in ("incremental", "full_every")}}]})
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
def runner(logins: TestDatabase, tmp_path: Path) -> Iterator[Any]:
    made: list[Runner] = []

    def make(db: TestDatabase | None = None, **check: Any) -> Runner:
        check = {"table": "logins", "key": ["user_id", "device"], "incremental": "id", **check}
        made.append(Runner(db or logins, tmp_path / "state.sqlite", **check))
        return made[-1]

    yield make
    for r in made:
        r.close()


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


def test_two_processes_sharing_a_state_file_never_corrupt_it(sqlite_db, tmp_path):
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

    def hammer(offset: int) -> None:
        for i in range(6):
            ident = 100 + offset * 100 + i
            insert(db, [(ident, ident % 3, "a")])
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


def test_known_groups_are_recounted_within_a_budget_all_within_bounded_runs(logins, runner):
    """More known groups than the budget (and than one IN list holds), half of them with a NULL in the key: a run
    re-counts a slice of them (its cost follows the new rows), and every group within a bounded number of runs."""
    rows = [(100 + n, 1000 + n // 2, None if n % 4 < 2 else "pc") for n in range(2400)]
    insert(logins, rows)  # 1,200 pairs
    r = runner()
    assert r.run().groups == 1201
    logins.execute("DELETE FROM logins WHERE id >= 100 AND id < 1100 AND MOD(id, 2) = 0")  # breaks 500 pairs
    insert(logins, [(5000, 1001, None), (5001, 1999, "pc")])
    first = r.run()
    assert first.mode == "incremental"
    assert first.groups > 1201 - 500  # a slice only: some broken groups wait for their turn
    rounds = -(-1201 // RECOUNT_BUDGET)
    for _ in range(rounds - 1):
        after = r.run()
    assert after.mode == "incremental"
    r.assert_matches_full_pass(after)
    assert after.groups == 1201 - 500

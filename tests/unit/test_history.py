"""The state store: runs are stored and read back, old runs are pruned by the retention period."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from monitor import history as history_module
from monitor.config import config_from_dict
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.history import History


def result(name: str, *, age_seconds: float = 0.0, status: str = "ok", groups: int | None = 0,
           error: str | None = None) -> CheckResult:
    finished = datetime.now().astimezone() - timedelta(seconds=age_seconds)
    excess = None if groups is None else groups * 2
    return CheckResult(name, "db", status, groups, excess, 12.5, error, finished,  # type: ignore[arg-type]
                       subject=name)


@pytest.fixture
def store(tmp_path: Path):
    history = History(tmp_path / "state" / "history.sqlite", retention_seconds=3600)
    yield history
    history.close()


def test_prune_removes_runs_older_than_retention_and_keeps_newer(store: History) -> None:
    store.record(result("a", age_seconds=7200, groups=1))
    store.record(result("a", age_seconds=3000, groups=2))
    store.record(result("a", age_seconds=10, groups=3))

    assert store.prune() == 1
    assert [run.groups for run in store.recent("a")] == [2, 3]


def test_recording_prunes_by_itself_every_few_runs(store: History, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_module, "PRUNE_EVERY", 3)
    store.record(result("a", age_seconds=90_000, groups=1))
    store.record(result("a", age_seconds=80_000, groups=2))
    assert len(store.recent("a")) == 2  # not yet: pruning is batched

    store.record(result("a", groups=3))  # the third run since the last prune triggers one

    assert [run.groups for run in store.recent("a")] == [3]


def test_reopening_with_a_shorter_retention_trims_the_file(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    first = History(path, retention_seconds=86400)
    first.record(result("a", age_seconds=600, groups=1))
    first.record(result("a", age_seconds=5, groups=2))
    first.close()

    second = History(path, retention_seconds=60)
    try:
        assert [run.groups for run in second.recent("a")] == [2]
    finally:
        second.close()


def test_recent_since_and_last_success_read_back_in_order(store: History) -> None:
    store.record(result("a", age_seconds=30, groups=1))
    store.record(result("a", age_seconds=20, groups=4))
    store.record(result("a", age_seconds=10, status="error", groups=None, error="boom"))
    store.record(result("b", age_seconds=5, groups=9))

    assert [run.status for run in store.recent("a")] == ["ok", "ok", "error"]
    assert [run.groups for run in store.recent("a", limit=2)] == [4, None]
    assert [run.groups for run in store.since("a", time.time() - 25)] == [4, None]
    last = store.last_success("a")
    assert last is not None and (last.groups, last.excess_rows, last.error) == (4, 8, None)
    assert store.last_success("missing") is None


def test_a_dashboard_and_a_daemon_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    dashboard, daemon = History(path), History(path)
    try:
        dashboard.record(result("a", age_seconds=2, groups=1))
        daemon.record(result("a", groups=2))
        assert [run.groups for run in dashboard.recent("a")] == [1, 2]
    finally:
        dashboard.close()
        daemon.close()


def test_a_run_finishing_after_close_is_dropped_not_raised(tmp_path: Path) -> None:
    store = History(tmp_path / "history.sqlite")
    store.close()
    store.record(result("late"))  # an abandoned run finishing during shutdown must not raise


def test_pruning_goes_through_the_time_index_in_small_steps(tmp_path):
    store = History(tmp_path / "h.sqlite", retention_seconds=3600)
    try:
        plan = " ".join(str(row[-1]) for row in store._conn.execute(
            "EXPLAIN QUERY PLAN " + history_module.PRUNE_STATEMENT, (0.0, 10)))
        assert "USING COVERING INDEX runs_by_time" in plan or "USING INDEX runs_by_time" in plan, plan
        old, recent = time.time() - 7200, time.time()
        rows = [("c", "d", old - i, "ok", 0, 0, 1.0, None, "c") for i in range(2 * history_module.PRUNE_STEP + 500)]
        rows += [("c", "d", recent, "ok", 0, 0, 1.0, None, "c")] * 3
        store._conn.executemany("INSERT INTO runs (check_name, database, finished_at, status, groups, excess_rows,"
                                " duration_ms, error, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        assert store.prune() == 2 * history_module.PRUNE_STEP + 500
        assert sum(s.startswith("DELETE") for s in statements) == 3  # steps of PRUNE_STEP, not one big DELETE
        assert len(store.recent("c")) == 3
    finally:
        store.close()


# -- keyed by what was measured ------------------------------------------------------------------------


def project(url: str, *, name: str = "users-email", database: str = "app", key: list[str] | None = None,
            where: str | None = None) -> Monitor:
    return Monitor(config_from_dict({
        "databases": {database: {"url": url}},
        "checks": [{"name": name, "database": database, "table": "users", "key": key or ["email"],
                    **({"where": where} if where else {})}],
    }))


def test_two_projects_with_the_same_names_on_different_databases_keep_apart() -> None:
    postgres = project("postgresql://u:secret@db.example:5432/shop")
    mariadb = project("mysql://u:secret@db.example:3306/shop")
    sqlite_a = project("sqlite:///a/app.sqlite")
    sqlite_b = project("sqlite:///b/app.sqlite")

    subjects = {m.subject("users-email") for m in (postgres, mariadb, sqlite_a, sqlite_b)}

    assert len(subjects) == 4
    assert not any("secret" in s for s in subjects)


def test_a_renamed_check_keeps_its_subject_only_while_it_measures_the_same_thing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    before = project(url).subject("users-email")

    assert project(url, name="emails", database="main").subject("emails") == before
    assert project("postgresql://other:pw@db.example/shop?sslmode=require").subject("users-email") != before
    assert project(url, key=["email", "tenant"]).subject("users-email") != before
    assert project(url, where="deleted_at IS NULL").subject("users-email") != before
    # The same file named through another path is the same subject.
    assert project(f"sqlite:///{tmp_path / '.' / 'app.sqlite'}").subject("users-email") == before


def test_a_subject_is_the_digest_of_its_parts_as_stored_before_it_was_kept() -> None:
    """`subject`, `state_key` and `table_key` keep their digests (a run asks for each): each is still the SHA-256 of
    the JSON list of its parts, so that the states, runs and table changes stored by earlier versions are found
    again; a key's columns in another order make another subject, a `where` spelled with other spaces the same."""
    import hashlib
    import json

    from monitor.incremental import state_key, table_key

    config = config_from_dict({"databases": {"main": {"url": "sqlite:///app.sqlite"}}, "checks": [
        {"name": "a", "database": "main", "table": "users", "key": ["email", "tenant"],
         "where": "deleted_at  IS NULL", "case_insensitive": True},
        {"name": "b", "database": "main", "table": "users", "key": ["tenant", "email"]}]})
    place = ["sqlite", "/srv/app.sqlite"]
    for _ in range(2):  # computed, then kept
        digests = []
        for check in config.checks:
            parts = [*place, check.finds, "table", check.table, check.key,
                     check.where and " ".join(check.where.split()), check.nulls, check.case_insensitive,
                     check.trim_whitespace]
            digests.append(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32])
            assert history_module.subject(place, check) == digests[-1]
            # the keys of its incremental state and of its table's changes, kept as well
            assert state_key(digests[-1], "id") == hashlib.sha256(
                json.dumps([digests[-1], "id"]).encode()).hexdigest()[:32]
        assert digests[0] != digests[1]
        assert table_key(place, 'app."users"') == hashlib.sha256(
            json.dumps([*place, "users"]).encode()).hexdigest()[:32]


def test_runs_of_another_subject_with_the_same_names_are_never_read(store: History) -> None:
    store.record(replace(result("users-email", groups=10), subject="postgres-project"))
    store.record(replace(result("users-email", groups=1), subject="mariadb-project"))

    assert [run.groups for run in store.recent("mariadb-project")] == [1]
    assert [run.groups for run in store.since("mariadb-project", 0)] == [1]
    last = store.last_success("mariadb-project")
    assert last is not None and last.groups == 1
    assert store.recent("users-email") == []


def test_a_file_from_before_subjects_is_migrated_and_its_runs_ignored(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY, check_name TEXT NOT NULL, database TEXT NOT NULL,
            finished_at REAL NOT NULL, status TEXT NOT NULL, groups INTEGER, excess_rows INTEGER,
            duration_ms REAL NOT NULL, error TEXT);
        CREATE TABLE incremental_state (check_name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, watermark TEXT,
            seen TEXT NOT NULL, last_full_at REAL, generation INTEGER NOT NULL);
    """)
    old.execute("INSERT INTO runs (check_name, database, finished_at, status, groups, excess_rows, duration_ms)"
                " VALUES ('users-email', 'app', ?, 'duplicates', 10, 10, 1.0)", (time.time(),))
    old.execute("INSERT INTO incremental_state VALUES ('users-email', 'f', '5', '[]', NULL, 3)")
    old.commit()
    old.close()

    store = History(path)
    try:
        assert store.recent("users-email") == [] and store.last_success("users-email") is None
        assert store.load_incremental("users-email") is None
        store.record(result("users-email", groups=2))
        assert [run.groups for run in store.recent("users-email")] == [2]
    finally:
        store.close()
    again = History(path)  # reopening a migrated file migrates nothing twice
    again.close()


def test_a_live_stream_position_is_kept_per_database_place_across_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    first = History(path)
    first.save_live_position(["server_uuid", "a", "app"], "gtid:0-1-5")
    first.save_live_position(["server_uuid", "a", "app"], "gtid:0-1-9")  # the later position replaces it
    first.save_live_position(["server_uuid", "b", "app"], "lsn:0/16B3748")
    first.close()
    again = History(path)
    assert again.live_position(["server_uuid", "a", "app"])[0] == "gtid:0-1-9"  # type: ignore[index]
    assert again.live_position(["server_uuid", "b", "app"])[0] == "lsn:0/16B3748"  # type: ignore[index]
    assert again.live_position(["server_uuid", "c", "app"]) is None
    again.close()


def test_concurrent_saves_keep_the_earlier_snapshot_mark_and_last_run(store: History) -> None:
    """Two processes saved one check's state from the same base: the merged state keeps the earlier snapshot mark
    (the next run re-reads everything either could not see) and the earlier last run (it re-counts at least as
    many known groups); a state without a mark makes the next run re-read the whole window."""
    from monitor.history import IncrementalState

    base = store.save_incremental(IncrementalState("k", "f", '1', [], 1.0, snapshot="500", last_run_at=10.0), None)
    store.save_incremental(replace(base, snapshot="900", last_run_at=30.0), base)
    merged = store.save_incremental(replace(base, snapshot="700", last_run_at=20.0), base)
    assert (merged.snapshot, merged.last_run_at) == ("700", 20.0)
    loaded = store.load_incremental("k")
    assert loaded is not None and (loaded.snapshot, loaded.last_run_at) == ("700", 20.0)
    unmarked = store.save_incremental(replace(base, snapshot=None, last_run_at=5.0), base)
    assert (unmarked.snapshot, unmarked.last_run_at) == (None, 5.0)


def test_a_window_digest_is_stored_and_kept_by_a_merge_only_where_both_took_it(store: History) -> None:
    """The window digest (what the database said of the overlap window the next run re-reads) is saved and loaded;
    two processes' concurrent saves keep it only where both took the same one (else the next run re-reads the
    window)."""
    from monitor.history import IncrementalState

    base = store.save_incremental(IncrementalState("k", "f", '1', [], 1.0, window_digest='["0","1","1:7"]'), None)
    loaded = store.load_incremental("k")
    assert loaded is not None and loaded.window_digest == '["0","1","1:7"]'
    store.save_incremental(replace(base, window_digest='["0","1","2:9"]'), base)
    differing = store.save_incremental(replace(base, window_digest='["0","1","1:7"]'), base)
    assert differing.window_digest is None
    loaded = store.load_incremental("k")
    assert loaded is not None and loaded.window_digest is None
    store.save_incremental(replace(loaded, window_digest='["0","1","3:5"]'), loaded)
    same = store.save_incremental(replace(loaded, window_digest='["0","1","3:5"]'), loaded)
    assert same.window_digest == '["0","1","3:5"]'


def test_the_live_groups_of_checks_a_config_no_longer_follows_are_deleted_by_their_owner_only(
        tmp_path: Path) -> None:
    store = History(tmp_path / "history.sqlite")
    try:
        store.save_live_groups("s-signups", "fp", ['["a"]'], [], replace=True, saver=("daemon-1", "app", "signups"))
        store.save_live_groups("s-orders", "fp", ['["b"]'], [], replace=True, saver=("daemon-1", "app", "orders"))
        store.save_live_groups("s-orders-2", "fp", ['["c"]'], [], replace=True, saver=("daemon-2", "app", "orders"))
        store.save_live_groups("s-old", "fp", ['["d"]'], [], replace=True)  # saved before owners were kept
        # Changes alone keep the set's owner
        store.save_live_groups("s-orders", "fp", ['["e"]'], [], replace=False, saver=("daemon-1", "app", "orders"))
        assert store.forget_live_groups("daemon-1", [("app", "signups")]) == [("app", "orders")]
        assert store.live_groups("s-orders") is None
        assert store.live_groups("s-signups") == ("fp", {'["a"]'})
        assert store.live_groups("s-orders-2") == ("fp", {'["c"]'})  # another daemon's (config, shard)
        assert store.live_groups("s-old") == ("fp", {'["d"]'})
        assert store.forget_live_groups("daemon-1", [("app", "signups")]) == []
        # The check's definition changed (another subject): its set replaces the one of its old definition
        store.save_live_groups("s-signups-v2", "fp", ['["f"]'], [], replace=True,
                               saver=("daemon-1", "app", "signups"))
        assert store.live_groups("s-signups") is None
        assert store.live_groups("s-signups-v2") == ("fp", {'["f"]'})
        assert store._conn.execute("SELECT count(*) FROM live_groups WHERE subject IN ('s-signups', 's-orders')"
                                   ).fetchone() == (0,)
    finally:
        store.close()


def test_live_groups_are_saved_by_subject_replaced_or_changed_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    first = History(path)
    first.save_live_groups("subject-a", "fp1", ['["a"]', '["b"]'], [], replace=True)
    first.save_live_groups("subject-a", "fp1", ['["c"]'], ['["a"]'], replace=False)  # c joined, a left
    first.save_live_groups("subject-b", "fp1", ['["z"]'], [], replace=True)
    first.close()
    again = History(path)
    try:
        assert again.live_groups("subject-a") == ("fp1", {'["b"]', '["c"]'})
        assert again.live_groups("subject-b") == ("fp1", {'["z"]'})  # another database's: kept apart
        assert again.live_groups("subject-c") is None  # none saved: the first run
        # Changes of a set stored under another fingerprint (a collation changed; another process sharing the
        # file) or of none stored are not that set: storing them alone would store a partial set as complete (a
        # restart would count every group left out as new). Nothing is written; the caller saves all next time.
        assert again.save_live_groups("subject-a", "fp2", ['["d"]'], [], replace=False) is False
        assert again.live_groups("subject-a") == ("fp1", {'["b"]', '["c"]'})
        assert again.save_live_groups("subject-c", "fp1", ['["d"]'], [], replace=False) is False
        assert again.live_groups("subject-c") is None
        assert again.save_live_groups("subject-a", "fp2", ['["d"]'], [], replace=True) is True
        assert again.save_live_groups("subject-a", "fp2", ['["e"]'], ['["d"]'], replace=False) is True
        assert again.live_groups("subject-a") == ("fp2", {'["e"]'})
    finally:
        again.close()


def test_run_positions_are_stored_thinned_and_merged_as_a_union(store: History) -> None:
    """The (database clock, position) of recent runs an id watermark reads back by (`window.next_positions`):
    saved and loaded; spread over the span once more than POSITIONS_KEPT (the latest always kept, none older than
    the span); two processes' concurrent saves keep the positions of both."""
    import json

    from monitor.history import IncrementalState
    from monitor.incremental.window import POSITIONS_KEPT, POSITIONS_SPAN, id_since, next_positions

    kept = None
    for run in range(100):
        kept = next_positions(kept, 1000.0 + run, 10 * run)
    runs = json.loads(kept or "[]")
    assert len(runs) == POSITIONS_KEPT and runs[-1] == [1099.0, 990] and runs[0][0] >= 1099.0 - POSITIONS_SPAN
    assert id_since(kept, 1099.5, 1000, "id") == (990 - 1000, [])
    assert id_since(kept, None, 1000, "id") == (None, [])
    since, notes = id_since(kept, runs[0][0] - 1, 1000, "id")
    assert since == runs[0][1] - 1000 and len(notes) == 1 and notes[0].startswith("late rows")
    assert json.loads(next_positions(kept, 1000.0 + POSITIONS_SPAN + 200, 2000) or "") == \
        [[1000.0 + POSITIONS_SPAN + 200, 2000]]  # all older than the span
    base = store.save_incremental(IncrementalState("k", "f", "1", [], 1.0, positions="[[1.0, 5]]"), None)
    loaded = store.load_incremental("k")
    assert loaded is not None and loaded.positions == "[[1.0, 5]]"
    store.save_incremental(replace(base, positions="[[1.0, 5], [2.0, 7]]"), base)
    merged = store.save_incremental(replace(base, positions="[[1.0, 5], [3.0, 9]]"), base)
    assert json.loads(merged.positions or "") == [[1.0, 5], [2.0, 7], [3.0, 9]]


def test_a_daemon_keeps_the_live_groups_while_a_discovery_source_has_not_listed_its_targets(tmp_path: Path) -> None:
    """A fleet source that has not answered yet leaves its targets out of the running config: their checks are
    not removed, so the groups saved for them are kept (a restart would otherwise count again, as new, the groups
    formed while it was down); once every source has listed, those of checks no longer followed are deleted."""
    from types import SimpleNamespace

    from monitor.config import config_from_dict
    from monitor.daemon import Daemon
    from monitor.fleet.discover import SourceState

    store = History(tmp_path / "history.sqlite")
    config = config_from_dict({"databases": {"app": {"url": f"sqlite:///{tmp_path / 'app.db'}"}},
                               "checks": [{"name": "c", "database": "app", "table": "t", "key": ["k"]}]})
    daemon = SimpleNamespace(history=store, monitor=SimpleNamespace(), config=config,
                             discovery=SimpleNamespace(states={"cmdb": SourceState()}),
                             _live_owner=lambda: "daemon-1")
    try:
        store.save_live_groups("s-orders", "fp", ['["b"]'], [], replace=True, saver=("daemon-1", "t1", "orders"))
        Daemon._forget_removed_live_groups(daemon)  # type: ignore[arg-type]
        assert store.live_groups("s-orders") == ("fp", {'["b"]'})
        daemon.discovery.states["cmdb"] = SourceState(targets=[])
        Daemon._forget_removed_live_groups(daemon)  # type: ignore[arg-type]
        assert store.live_groups("s-orders") is None
    finally:
        store.close()


def test_the_groups_a_run_changed_are_journaled_then_folded_and_read_back_whole(tmp_path: Path) -> None:
    """An incremental run's changed known groups are saved as one journal row (the B-tree of the groups stays as
    the last full pass wrote it: a run's commit writes a few pages, not one per group), read back applied in order,
    folded into the groups once a check has JOURNAL_RUNS journaled runs or at once for a large change, and
    dropped by a full pass's save, a merge and `forget_incremental`."""
    from monitor.history import JOURNAL_GROUPS, JOURNAL_RUNS, IncrementalState, KnownGroup

    path = tmp_path / "state.sqlite"
    store = History(path)

    def count(table: str) -> int:
        with sqlite3.connect(path) as raw:
            return int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    groups = {f"[{i}]": KnownGroup(f"[{i}]", 2, 1.0, 1) for i in range(100)}
    state = store.save_incremental(IncrementalState("k", "f", "1", [], 1.0, groups=groups), None)
    assert (count("subject_groups"), count("subject_group_changes")) == (100, 0)
    for run in range(1, JOURNAL_RUNS):  # each run: one group more, one gone, one re-counted
        after = dict(state.groups)
        after[f"[n{run}]"] = KnownGroup(f"[n{run}]", 2, float(run), state.generation + 1)
        after.pop(next(k for k in after if not k.startswith("[n")))
        recounted = next(k for k in after if not k.startswith("[n"))
        after[recounted] = KnownGroup(recounted, 3 + run, after[recounted].first_seen_at, 1)
        removed = [k for k in state.groups if k not in after]
        state = store.save_incremental(replace(state, watermark=str(run), groups=after,
                                               updated=[f"[n{run}]", recounted], removed=removed), state)
        assert count("subject_group_changes") == run and count("subject_groups") == 100
    reopened = History(path)
    assert reopened.load_incremental("k").groups == state.groups  # type: ignore[union-attr]
    after = {**state.groups, "[last]": KnownGroup("[last]", 2, 9.0, state.generation + 1)}
    state = store.save_incremental(replace(state, groups=after, updated=["[last]"], removed=[]), state)
    assert count("subject_group_changes") == 0 and count("subject_groups") == len(state.groups)
    assert reopened.load_incremental("k").groups == state.groups  # type: ignore[union-attr]
    many = {**state.groups, **{f"[m{i}]": KnownGroup(f"[m{i}]", 2, 9.0, 1) for i in range(JOURNAL_GROUPS + 1)}}
    state = store.save_incremental(replace(state, groups=many, updated=[k for k in many if k.startswith("[m")],
                                           removed=[]), state)
    assert count("subject_group_changes") == 0 and reopened.load_incremental("k").groups == many  # type: ignore[union-attr]
    small = {**state.groups, "[s]": KnownGroup("[s]", 2, 9.0, 1)}
    state = store.save_incremental(replace(state, groups=small, updated=["[s]"], removed=[]), state)
    assert count("subject_group_changes") == 1
    state = store.save_incremental(replace(state, groups=groups, updated=None, removed=None), state)  # a full pass
    assert count("subject_group_changes") == 0 and reopened.load_incremental("k").groups == groups  # type: ignore[union-attr]
    one = KnownGroup("[a]", 2, 9.0, 1)
    store.save_incremental(replace(state, groups={**groups, "[a]": one}, updated=["[a]"], removed=[]), state)
    assert count("subject_group_changes") == 1
    other = KnownGroup("[b]", 2, 9.0, 1)  # another process saved from the same state: merged, the journal folded
    merged = store.save_incremental(replace(state, groups={**groups, "[b]": other}, updated=["[b]"], removed=[]),
                                    state)
    assert merged.groups == {**groups, "[a]": one, "[b]": other} and count("subject_group_changes") == 0
    assert reopened.load_incremental("k").groups == merged.groups  # type: ignore[union-attr]
    store.save_incremental(replace(merged, groups=small, updated=["[s]"], removed=[]), merged)
    assert count("subject_group_changes") == 1
    store.forget_incremental("k")
    assert count("subject_group_changes") == count("subject_groups") == 0
    reopened.close()
    store.close()

"""The state store: runs are stored and read back, old runs are pruned by the retention period."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from monitor import history as history_module
from monitor.detect import CheckResult
from monitor.history import History


def result(name: str, *, age_seconds: float = 0.0, status: str = "ok", groups: int | None = 0,
           error: str | None = None) -> CheckResult:
    finished = datetime.now().astimezone() - timedelta(seconds=age_seconds)
    excess = None if groups is None else groups * 2
    return CheckResult(name, "db", status, groups, excess, 12.5, error, finished)  # type: ignore[arg-type]


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
        rows = [("c", "d", old - i, "ok", 0, 0, 1.0, None) for i in range(2 * history_module.PRUNE_STEP + 500)]
        rows += [("c", "d", recent, "ok", 0, 0, 1.0, None)] * 3
        store._conn.executemany("INSERT INTO runs (check_name, database, finished_at, status, groups, excess_rows,"
                                " duration_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        assert store.prune() == 2 * history_module.PRUNE_STEP + 500
        assert sum(s.startswith("DELETE") for s in statements) == 3  # steps of PRUNE_STEP, not one big DELETE
        assert len(store.recent("c")) == 3
    finally:
        store.close()

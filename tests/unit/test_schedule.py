"""The poller: backoff with jitter on errors, recovery, coalescing of late runs, one pool per database."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES

from monitor import schedule
from monitor.config import config_from_dict
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.schedule import Poller, backoff_seconds

DEADLINE = 15.0


class Results:
    """Collects results from worker threads; tests wait on conditions, never on the clock."""

    def __init__(self) -> None:
        self.items: list[tuple[CheckResult, int, float | None]] = []
        self.poller: Poller | None = None
        self._cond = threading.Condition()

    def __call__(self, result: CheckResult) -> None:
        assert self.poller is not None
        next_run = self.poller.next_run(result.name)
        delay = None if next_run is None else (next_run - datetime.now().astimezone()).total_seconds()
        with self._cond:
            self.items.append((result, self.poller.failures(result.name), delay))
            self._cond.notify_all()

    def of(self, name: str) -> list[tuple[CheckResult, int, float | None]]:
        with self._cond:
            return [item for item in self.items if item[0].name == name]

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout=DEADLINE), f"timed out waiting for {what}"


def make_table(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)")
        conn.execute("INSERT INTO t (k) VALUES ('a'), ('a'), ('b')")
    conn.close()


def table_check(name: str, database: str, interval: float) -> dict[str, Any]:
    return {"name": name, "database": database, "table": "t", "key": ["k"], "interval": interval}


@pytest.fixture
def poll(tmp_path: Path) -> Iterator[Callable[..., tuple[Poller, Results]]]:
    made: list[tuple[Poller, Monitor]] = []

    def start(databases: dict[str, Path], checks: list[dict[str, Any]], **kwargs: Any) -> tuple[Poller, Results]:
        config = config_from_dict({
            "databases": {name: {"url": f"sqlite:///{path}"} for name, path in databases.items()},
            "checks": checks,
        })
        monitor = Monitor(config)
        results = Results()
        poller = Poller(monitor, results, stagger=False, **kwargs)
        results.poller = poller
        made.append((poller, monitor))
        poller.start()
        return poller, results

    yield start
    for poller, monitor in made:
        poller.shutdown(wait=True)
        monitor.close()


def test_backoff_doubles_per_failure_within_twenty_percent_jitter() -> None:
    rng = random.Random(7)
    for failures, base in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0)]:
        delays = [backoff_seconds(10.0, failures, rng) for _ in range(200)]
        assert all(0.8 * base <= d <= 1.2 * base for d in delays)
        assert max(delays) - min(delays) > 0.2 * base  # jittered, so retries of many checks spread out


def test_backoff_is_capped_but_never_shorter_than_the_interval() -> None:
    rng = random.Random(1)
    assert backoff_seconds(10.0, 30, rng) <= schedule.MAX_BACKOFF_SECONDS * 1.2
    assert backoff_seconds(10.0, 30, rng) >= schedule.MAX_BACKOFF_SECONDS * 0.8
    assert backoff_seconds(3600.0, 5, rng) >= 3600.0 * 0.8  # an hourly check is not retried more often


def test_a_failing_check_backs_off_then_recovers_on_its_normal_interval(poll, tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "db.sqlite"  # the directory is missing, so connecting fails
    poller, results = poll({"d": path}, [table_check("c", "d", 0.2)])

    results.wait_for(lambda: any(failures >= 3 for _, failures, _ in results.of("c")), "three failures")
    third = next(item for item in results.of("c") if item[1] == 3)
    assert third[0].status == "error"
    # After three failures the retry is 4 intervals away (0.8 s), +-20%: well past the 0.2 s interval.
    assert third[2] is not None and third[2] >= 0.2 * 4 * 0.8 - 0.05

    make_table(path)
    results.wait_for(lambda: any(r.status == "duplicates" for r, _, _ in results.of("c")), "recovery")
    recovered = next(item for item in results.of("c") if item[0].status == "duplicates")
    assert recovered[1] == 0 and poller.failures("c") == 0
    assert recovered[2] is not None and recovered[2] <= 0.2 + 0.05  # back on its normal schedule


def test_a_late_run_is_coalesced_never_run_twice_at_once(poll, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    make_table(path)
    release = threading.Event()
    lock = threading.Lock()
    state = {"starts": 0, "active": 0, "max_active": 0, "skipped": 0}
    skipped = threading.Condition()

    def on_start(_name: str) -> None:
        with lock:
            state["starts"] += 1
            state["active"] += 1
            state["max_active"] = max(state["max_active"], state["active"])
        release.wait(DEADLINE)
        with lock:
            state["active"] -= 1

    poller, results = poll({"d": path}, [table_check("c", "d", 0.1)], on_start=on_start)

    def count_skip(_event: Any) -> None:
        with skipped:
            state["skipped"] += 1
            skipped.notify_all()

    poller._scheduler.add_listener(count_skip, EVENT_JOB_MAX_INSTANCES)
    with skipped:
        assert skipped.wait_for(lambda: state["skipped"] >= 3, timeout=DEADLINE), "no run came due while busy"
    assert state["starts"] == 1  # three runs came due while the first was busy: none started

    release.set()
    results.wait_for(lambda: len(results.of("c")) >= 2, "the next run after the slow one")
    assert state["max_active"] == 1


def test_a_hung_database_does_not_delay_another_databases_checks(poll, tmp_path: Path) -> None:
    slow, fast = tmp_path / "slow.sqlite", tmp_path / "fast.sqlite"
    make_table(slow)
    make_table(fast)
    release = threading.Event()
    hung: list[str] = []

    def on_start(name: str) -> None:
        if name.startswith("slow"):
            hung.append(name)
            release.wait(DEADLINE)

    # More hung checks than the slow database's pool has workers: its pool is saturated.
    checks = [table_check(f"slow{i}", "slow", 0.1) for i in range(schedule.WORKERS_PER_DATABASE + 1)]
    _poller, results = poll({"slow": slow, "fast": fast}, [*checks, table_check("fast", "fast", 0.1)],
                           on_start=on_start)
    try:
        results.wait_for(lambda: len(results.of("fast")) >= 5, "five runs of the fast database's check")
        assert len(hung) == schedule.WORKERS_PER_DATABASE
        assert not any(r.name.startswith("slow") for r, _, _ in results.items)
    finally:
        release.set()


def test_run_now_runs_a_check_without_waiting_for_its_interval(poll, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    make_table(path)
    poller, results = poll({"d": path}, [table_check("c", "d", 3600)])
    results.wait_for(lambda: len(results.of("c")) == 1, "the first run")

    poller.run_now("c")

    results.wait_for(lambda: len(results.of("c")) == 2, "the run asked for")


def test_reload_drops_removed_checks_and_schedules_new_ones(poll, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    make_table(path)
    poller, results = poll({"d": path}, [table_check("old", "d", 3600)])
    results.wait_for(lambda: len(results.of("old")) == 1, "the first run")

    new_config = config_from_dict({
        "databases": {"e": {"url": f"sqlite:///{path}"}},
        "checks": [table_check("new", "e", 3600)],
    })
    old_monitor = poller.monitor
    poller.reload(Monitor(new_config))
    old_monitor.close()

    results.wait_for(lambda: len(results.of("new")) == 1, "the new check's first run")
    assert poller.next_run("old") is None
    assert results.of("new")[0][0].groups == 1
    poller.monitor.close()


def test_run_now_while_a_run_is_under_way_runs_once_more_after_it(poll, tmp_path: Path) -> None:
    """A run asked for (a live stream's gap) while the check's run is under way: that run began before the ask and
    may have read before what the ask is about, so one more run follows it, at once, and never beside it."""
    path = tmp_path / "db.sqlite"
    make_table(path)
    release = threading.Event()
    started = threading.Condition()
    state = {"starts": 0, "active": 0, "max_active": 0}

    def on_start(_name: str) -> None:
        with started:
            state["starts"] += 1
            state["active"] += 1
            state["max_active"] = max(state["max_active"], state["active"])
            started.notify_all()
        if state["starts"] == 1:
            release.wait(DEADLINE)
        with started:
            state["active"] -= 1

    poller, results = poll({"d": path}, [table_check("c", "d", 3600)], on_start=on_start)
    with started:
        assert started.wait_for(lambda: state["starts"] == 1, timeout=DEADLINE), "the first run never started"
    poller.run_now("c")  # the first run is under way: the scheduler skips the ask's due time
    release.set()
    results.wait_for(lambda: len(results.of("c")) == 2, "the run asked for, after the one under way")
    assert state["max_active"] == 1
    assert poller.next_run("c") is not None

"""A daemon restarted: duplicate groups that formed while it was down count as new in
`dupewatch_new_duplicate_groups_total` (so the new-duplicates alert fires), groups it knew before do not, and the
very first start counts nothing (the baseline, said once). Real daemon processes over HTTP, their state store
shared; incremental checks on PostgreSQL, MariaDB and SQLite (live mode's restarts: tests/daemon/test_live.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import DaemonProcess, daemon_starter, free_port

from dbtest import TestDatabase, run_dupewatch, write_config

pytestmark = pytest.mark.timeout(120)
NEW = "dupewatch_new_duplicate_groups_total"
GROUPS = "dupewatch_duplicate_groups"
RUNS = "dupewatch_check_duration_seconds_count"
BASELINE = "first run of the check: no state saved by an earlier run"
INTERVAL = 0.2  # the tests await several runs of each daemon


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def config_for(db: TestDatabase, tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "dw.toml", {"main": {"url": db.url}},
                        [{"name": "logins", "database": "main", "table": "logins", "key": ["user_id"],
                          "incremental": "id", "interval": INTERVAL}],
                        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})


def started(db: TestDatabase, tmp_path: Path, start_daemon: Any) -> DaemonProcess:
    """A daemon watching `logins` (two duplicate groups: users 1 and 2), after its first run."""
    db.execute("CREATE TABLE logins (id integer PRIMARY KEY, user_id integer NOT NULL)",
               "CREATE INDEX logins_user ON logins (user_id)",
               "INSERT INTO logins (id, user_id) VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 4)")
    port = free_port()
    daemon: DaemonProcess = start_daemon(config_for(db, tmp_path, port), port)
    daemon.wait_for(lambda s: s.value(GROUPS, "logins") == 2, "the first run")
    return daemon


def runs_after(daemon: DaemonProcess, runs: int, what: str) -> Any:
    return daemon.wait_for(lambda s: (s.value(RUNS, "logins") or 0) >= runs, what)


def test_groups_formed_while_the_daemon_was_down_count_as_new_after_a_restart(
        db: TestDatabase, tmp_path: Path, start_daemon: Any) -> None:
    daemon = started(db, tmp_path, start_daemon)
    first = runs_after(daemon, 3, "a few runs")
    assert first.value(NEW, "logins") == 0  # the first start ever: the baseline
    assert daemon.stop() == 0
    assert daemon.log().count(BASELINE) == 1, daemon.log()[-3000:]
    # While it is down: user 3 becomes a group (new), user 1's group grows (known: not new).
    db.execute("INSERT INTO logins (id, user_id) VALUES (7, 3), (8, 1)")

    again: DaemonProcess = start_daemon(daemon.config, daemon.port)
    scrape = again.wait_for(lambda s: s.value(GROUPS, "logins") == 3, "the group made meanwhile")
    assert scrape.value(NEW, "logins") == 1
    scrape = runs_after(again, (scrape.value(RUNS, "logins") or 0) + 2, "two more runs")
    assert scrape.value(NEW, "logins") == 1  # counted once
    assert again.stop() == 0
    assert BASELINE not in again.log()
    assert "new_groups=1" in again.log()


def test_a_restart_with_no_change_counts_nothing_new(db: TestDatabase, tmp_path: Path, start_daemon: Any) -> None:
    daemon = started(db, tmp_path, start_daemon)
    runs_after(daemon, 2, "two runs")
    assert daemon.stop() == 0

    again: DaemonProcess = start_daemon(daemon.config, daemon.port)
    scrape = runs_after(again, 3, "three runs after the restart")
    assert (scrape.value(GROUPS, "logins"), scrape.value(NEW, "logins")) == (2, 0)
    assert again.stop() == 0
    assert BASELINE not in again.log()


def test_a_fix_and_its_undo_while_the_daemon_was_down_make_no_new_group(
        pg: TestDatabase, tmp_path: Path, start_daemon: Any) -> None:
    """The fix's group comes back with the undo: it existed when the daemon last ran, so it is not new."""
    daemon = started(pg, tmp_path, start_daemon)
    runs_after(daemon, 2, "two runs")
    assert daemon.stop() == 0
    fixed = run_dupewatch("fix", "logins", "--yes", "--json", "--config", daemon.config)
    assert fixed.code == 0, fixed.output
    undone = run_dupewatch("undo", fixed.json["fix_id"], "--yes", "--config", daemon.config)
    assert undone.code == 0, undone.output

    again: DaemonProcess = start_daemon(daemon.config, daemon.port)
    scrape = runs_after(again, 3, "three runs after the restart")
    assert (scrape.value(GROUPS, "logins"), scrape.value(NEW, "logins")) == (2, 0)
    assert again.stop() == 0


def test_a_group_fixed_before_the_restart_and_restored_while_down_counts_as_new(
        pg: TestDatabase, tmp_path: Path, start_daemon: Any) -> None:
    """Fixed while the daemon ran (its state saved without the group), then restored by an undo while it was
    down: the group reappeared, and did not exist at the last saved state, so it counts as new (as it would
    had the daemon been running)."""
    daemon = started(pg, tmp_path, start_daemon)
    fixed = run_dupewatch("fix", "logins", "--yes", "--json", "--config", daemon.config)
    assert fixed.code == 0, fixed.output
    daemon.wait_for(lambda s: s.value(GROUPS, "logins") == 0, "a run after the fix")
    assert daemon.stop() == 0
    undone = run_dupewatch("undo", fixed.json["fix_id"], "--yes", "--config", daemon.config)
    assert undone.code == 0, undone.output

    again: DaemonProcess = start_daemon(daemon.config, daemon.port)
    scrape = again.wait_for(lambda s: s.value(GROUPS, "logins") == 2, "the restored groups")
    assert scrape.value(NEW, "logins") == 2
    assert again.stop() == 0


def test_mariadb_a_known_group_spelled_otherwise_after_a_restart_is_not_new(
        mysql: TestDatabase, tmp_path: Path, start_daemon: Any) -> None:
    """A `_ci` column: the group's rows are all spelled otherwise when the daemon starts again, one group as the
    database compares them (its saved identity is the collation's sort key), so not new."""
    mysql.execute("CREATE TABLE signup (id integer PRIMARY KEY, email varchar(50) COLLATE utf8mb4_general_ci "
                  "NOT NULL, INDEX (email))",
                  "INSERT INTO signup (id, email) VALUES (1, 'ann@example.com'), (2, 'ann@example.com')")
    port = free_port()
    config = write_config(tmp_path / "dw.toml", {"main": {"url": mysql.url}},
                          [{"name": "signups", "database": "main", "table": "signup", "key": ["email"],
                            "incremental": "id", "interval": INTERVAL}],
                          metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})
    daemon: DaemonProcess = start_daemon(config, port)
    daemon.wait_for(lambda s: s.value(GROUPS, "signups") == 1, "the first run")
    assert daemon.stop() == 0
    mysql.execute("INSERT INTO signup (id, email) VALUES (3, 'ANN@example.com'), (4, 'Ann@Example.com')",
                  "DELETE FROM signup WHERE id IN (1, 2)")

    again: DaemonProcess = start_daemon(config, port)
    scrape = again.wait_for(lambda s: (s.value(RUNS, "signups") or 0) >= 3, "three runs after the restart")
    assert (scrape.value(GROUPS, "signups"), scrape.value(NEW, "signups")) == (1, 0)
    assert again.stop() == 0

"""The dashboard's face of incremental detection: a small Δ for incremental runs, rows scanned and the last full
pass in the details panel, index advice said once, and groups first seen by the latest run marked new."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.config import config_from_dict
from monitor.tui.screens.groups import GroupsScreen
from monitor.tui.screens.main import MainScreen
from monitor.tui.widgets.paged_table import PagedTable
from tui_support import cell_text, screen_text, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def logins(tmp_path: Path) -> Path:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER, device TEXT)")
        conn.executemany("INSERT INTO logins VALUES (?, ?, ?)", [(1, 1, "a"), (2, 1, "a"), (3, 2, "b")])
    return path


def config(path: Path):
    return config_from_dict({"databases": {"app": {"url": f"sqlite:///{path}"}}, "checks": [
        {"name": "logins", "database": "app", "table": "logins", "key": ["user_id", "device"],
         "incremental": "id", "interval": "1h"}]})


def advice_toasts(app) -> int:
    """Notifications of index advice the app raised (Textual keeps them while they are shown)."""
    return sum("incremental runs need an index" in n.message for n in app._notifications)


def runs(app) -> int:
    return len(app.dashboard["logins"].history)


async def test_incremental_runs_show_a_delta_rows_scanned_and_new_groups_in_the_drill_down(logins, make_app):
    app = make_app(config(logins))
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: runs(app) == 1, what="the first (full) run")
        await pilot.pause()
        assert "Δ" not in cell_text(app, "logins", "duration")  # a full pass
        shown = screen_text(app)
        assert "full pass · 3 rows scanned · 1 new group · last full pass" in shown
        assert "faster with an index: CREATE INDEX" in shown
        await wait_for(pilot, lambda: advice_toasts(app) == 1, what="the index advice")
        with sqlite3.connect(logins) as conn:
            conn.executemany("INSERT INTO logins VALUES (?, ?, ?)", [(4, 2, "b"), (5, 7, "c")])
        await pilot.press("r")
        await wait_for(pilot, lambda: runs(app) == 2, what="the incremental run")
        await pilot.pause()
        assert cell_text(app, "logins", "duration").startswith("Δ ")
        assert "Δ incremental run · 2 rows scanned · 1 new group" in screen_text(app)
        assert advice_toasts(app) == 1  # said once, not again after the second run
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and len(app.screen.groups) == 2)
        table = app.screen.query_one(PagedTable)
        rows = {" ".join(c.plain for c in table.get_row_at(i)) for i in range(2)}
        new = [r for r in rows if "● new" in r]
        assert len(new) == 1 and new[0].split()[1:3] == ["2", "b"], rows
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_late_rows_the_window_cannot_bound_are_said_once(tmp_path, make_app):
    """Issue 19: SQLite does not say which transactions are running, so a timestamp watermark's late rows beyond
    its fixed window wait for the full pass: the dashboard says so once, not at every run."""
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id INTEGER, created_at DATETIME)")
        conn.executemany("INSERT INTO logins VALUES (?, ?, '2026-11-30 12:00:00')", [(1, 1), (2, 1)])
    app = make_app(config_from_dict({"databases": {"app": {"url": f"sqlite:///{path}"}}, "checks": [
        {"name": "logins", "database": "app", "table": "logins", "key": ["user_id"],
         "incremental": "created_at", "interval": "1h"}]}))

    def late_toasts() -> int:
        return sum("late rows: " in n.message and "does not say which transactions" in n.message
                   for n in app._notifications)

    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: late_toasts() == 1, what="the late-rows note")
        await pilot.press("r")
        await wait_for(pilot, lambda: runs(app) == 2, what="a second run")
        await pilot.pause()
        assert late_toasts() == 1


async def test_a_sequence_handing_out_cached_ranges_is_said_once(pg, make_app):
    """Issue 19: an idle pooled session holds its cached sequence range beyond any window: the dashboard says so once
    (naming the sequence, its CACHE and the `ALTER SEQUENCE` it proposes), not at every run."""
    pg.execute("CREATE SEQUENCE logins_ids CACHE 100",
               "CREATE TABLE logins (id BIGINT PRIMARY KEY DEFAULT nextval('logins_ids'), user_id INTEGER NOT NULL)",
               "ALTER SEQUENCE logins_ids OWNED BY logins.id", "CREATE INDEX logins_key ON logins (user_id)",
               "INSERT INTO logins (user_id) VALUES (1), (1), (2)")
    app = make_app(config_from_dict({"databases": {"app": {"url": pg.url}}, "checks": [
        {"name": "logins", "database": "app", "table": "logins", "key": ["user_id"], "incremental": "id",
         "interval": "1h"}]}))

    def cache_toasts() -> int:
        return sum("late rows (sequence cache): logins_ids has CACHE 100" in n.message
                   and "ALTER SEQUENCE logins_ids CACHE 1" in n.message for n in app._notifications)

    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: cache_toasts() == 1, what="the sequence-cache note")
        await pilot.press("r")
        await wait_for(pilot, lambda: runs(app) == 2, what="a second run")
        await pilot.pause()
        assert cache_toasts() == 1

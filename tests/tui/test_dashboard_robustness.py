"""The dashboard survives its own bugs and never leaves a query behind: an unexpected error in a worker becomes a
dismissable notification, and quitting or leaving a screen cancels the queries still running on the server."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitor.config import config_from_dict
from monitor.history import History
from monitor.tui.screens.groups import GroupsScreen
from monitor.tui.screens.main import MainScreen
from monitor.tui.screens.rows import GroupRowsScreen
from tui_support import all_ran, wait_for


def dupewatch_queries(pg: Any, marker: str) -> int:
    """Statements of dupewatch's sessions naming `marker` that the server is running (or waiting in) now."""
    return int(pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dupewatch' "
                         "AND state = 'active' AND query LIKE :q", {"q": f"%{marker}%"}))


async def test_an_unexpected_error_in_a_worker_is_shown_and_the_dashboard_keeps_running(
        demo_app, tmp_path: Path) -> None:
    state = tmp_path / "broken.sqlite"
    history = History(state)
    with sqlite3.connect(state) as conn:  # the state file is damaged under the running dashboard
        conn.execute("DROP TABLE runs")
    app = demo_app(history=history)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications),
                       what="an error notification")
        note = next(n for n in app._notifications if n.severity == "error")
        assert note.title == "Background task failed" and "no such table: runs" in note.message
        assert "\n" not in note.message
        await pilot.press("question_mark")  # still answering keys
        await pilot.press("escape")
        assert app.is_running and isinstance(app.screen, MainScreen)


async def test_quitting_cancels_the_queries_still_running_within_2_seconds(pg, make_app) -> None:
    marker = f"dw_quit_{uuid.uuid4().hex[:8]}"
    config = config_from_dict({"databases": {"pg": {"url": pg.url, "statement_timeout": "60s"}}, "checks": [
        {"name": "slow", "database": "pg", "sql": f"SELECT pg_sleep(30) AS {marker}", "interval": "1h"}]})
    app = make_app(config)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: dupewatch_queries(pg, marker) == 1, what="the slow check to run")
        started = time.monotonic()
        await pilot.press("q")
    while dupewatch_queries(pg, marker):
        assert time.monotonic() - started < 2, "a query outlived the dashboard"
        time.sleep(0.02)


async def test_leaving_a_screen_cancels_its_query_within_2_seconds(pg, make_app) -> None:
    marker = f"dw_leave_{uuid.uuid4().hex[:8]}"  # the table's name: other test runs may share the server
    pg.execute(f"CREATE TABLE {marker} (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL)",
               f"INSERT INTO {marker} (email) VALUES ('a@x'), ('a@x'), ('b@x')")
    config = config_from_dict({"databases": {"pg": {"url": pg.url, "statement_timeout": "60s"}}, "checks": [
        {"name": "signups", "database": "pg", "table": marker, "key": ["email"], "interval": "1h"}]})
    app = make_app(config)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app), what="the first run")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        with pg.engine.connect() as blocker:  # the application holds the table: the rows query waits on it
            blocker.execute(sa.text(f"LOCK TABLE {marker} IN ACCESS EXCLUSIVE MODE"))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, GroupRowsScreen)
                           and dupewatch_queries(pg, marker) == 1, what="the rows query to wait on the lock")
            started = time.monotonic()
            await pilot.press("escape")
            await wait_for(pilot, lambda: dupewatch_queries(pg, marker) == 0, timeout=2,
                           what="the query to be cancelled")
            assert time.monotonic() - started < 2
            blocker.rollback()
        assert app.is_running

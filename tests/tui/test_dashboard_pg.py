"""Pilot tests of the dashboard against PostgreSQL: a slow query never freezes the UI, groups are paged."""

from __future__ import annotations

import time

from monitor.config import config_from_dict
from monitor.tui.screens.groups import GroupsScreen
from monitor.tui.screens.help import HelpScreen
from monitor.tui.screens.main import MainScreen
from monitor.tui.widgets.checks_table import ChecksTable
from monitor.tui.widgets.paged_table import PagedTable
from tui_support import all_ran, cell_text, screen_text, wait_for

KEY_BOUND_SECONDS = 1.0  # generous: on an idle loop a key is handled in milliseconds


def pg_config(pg, *checks: dict) -> object:
    return config_from_dict({"databases": {"pg": {"url": pg.url}}, "checks": list(checks)})


def plant_groups(pg, groups: int, copies: int = 2) -> None:
    pg.execute("CREATE TABLE signup (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL, "
               "created_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    pg.execute(f"INSERT INTO signup (email, created_at) SELECT 'user' || g || '@example.com', "
               f"now() + c * interval '3 milliseconds' FROM generate_series(1, {groups}) g, "
               f"generate_series(1, {copies}) c")


async def test_keys_are_handled_at_once_while_a_ten_second_query_runs(pg, make_app):
    plant_groups(pg, 5)
    config = pg_config(
        pg,
        {"name": "slow-invariant", "database": "pg", "sql": "SELECT pg_sleep(10) AS slept", "interval": "1h"},
        {"name": "signups", "database": "pg", "table": "signup", "key": ["email"], "interval": "1h"},
    )
    app = make_app(config)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: "running" in cell_text(app, "slow-invariant", "status"),
                       what="the slow check to show as running")
        # the other check is not held up behind the slow one: it finishes while the slow query still runs
        await wait_for(pilot, lambda: app.dashboard["signups"].last is not None, timeout=5.0,
                       what="the fast check to finish")
        assert app.dashboard["slow-invariant"].running
        started = time.monotonic()
        await pilot.press("s")
        await wait_for(pilot, lambda: "most rows" in screen_text(app), timeout=KEY_BOUND_SECONDS)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), timeout=KEY_BOUND_SECONDS)
        await pilot.press("escape")
        elapsed = time.monotonic() - started
        assert isinstance(app.screen, MainScreen)
        assert app.dashboard["slow-invariant"].running, "the slow query must still be running"
        assert elapsed < 3 * KEY_BOUND_SECONDS
        # the running check shows a live timer rather than a stale duration
        await wait_for(pilot, lambda: cell_text(app, "slow-invariant", "duration").endswith(" s"))


async def test_drill_down_loads_groups_page_by_page_as_the_operator_scrolls(pg, make_app):
    plant_groups(pg, 250)
    pg.execute("INSERT INTO signup (email) VALUES ('big@example.com'), ('big@example.com'), ('big@example.com')")
    config = pg_config(pg, {"name": "signups", "database": "pg", "table": "signup", "key": ["email"],
                            "timestamp": "created_at", "interval": "1h"})
    app = make_app(config)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        assert cell_text(app, "signups", "groups") == "251"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        screen = app.screen
        table = screen.query_one(PagedTable)
        assert len(screen.groups) == 100, "only the first page is loaded on open"
        assert screen.groups[0].key == ("big@example.com",) and screen.groups[0].rows == 3
        assert "race" in " ".join(c.plain for c in table.get_row_at(1))  # born 3 ms apart
        table.scroll_to(y=table.max_scroll_y, animate=False)  # the mouse wheel at the bottom
        await wait_for(pilot, lambda: len(screen.groups) == 200)
        await pilot.press("end")  # the cursor to the last row
        await wait_for(pilot, lambda: len(screen.groups) == 251)
        assert screen.next_cursor is None
        keys = [g.key for g in screen.groups]
        assert len(set(keys)) == 251, "no group twice, none skipped"
        assert table.row_count == 251
        assert "251 of 251 groups loaded" in screen_text(app)


async def test_postgresql_group_rows_mark_the_kept_row(pg, make_app):
    plant_groups(pg, 3, copies=3)
    config = pg_config(pg, {"name": "signups", "database": "pg", "table": "signup", "key": ["email"],
                            "keep": "newest", "interval": "1h"})
    newest = pg.scalar("SELECT max(id) FROM signup WHERE email = 'user1@example.com'")
    app = make_app(config)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query_one(PagedTable).row_count == 3)
        first = app.screen.query_one(PagedTable).get_row_at(0)
        assert first[0].plain == "★ keep" and int(first[1].plain) == newest


async def test_database_that_comes_back_is_reconnected(pg, make_app):
    """A check whose table is missing errors, then recovers on the next run without a restart."""
    config = pg_config(pg, {"name": "signups", "database": "pg", "table": "signup", "key": ["email"],
                            "interval": "1h"})
    app = make_app(config)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        assert "error" in cell_text(app, "signups", "status")
        assert "not found" in screen_text(app)
        plant_groups(pg, 4)
        app.screen.query_one(ChecksTable).focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: "duplicates" in cell_text(app, "signups", "status"))
        assert cell_text(app, "signups", "groups") == "4"
        assert "not found" not in screen_text(app)

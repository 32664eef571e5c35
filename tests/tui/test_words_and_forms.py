"""Words and forms on the dashboard: counts agree with their nouns ("Fix 1 row", not "Fix 1 rows"), a timestamp
reads the same in the fix's preview and on the rows screen, and the header's filter never overwrites its totals.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_fix_dashboard import fix_screen, open_fix
from textual.widgets import Button, DataTable, Static

from monitor.config import config_from_dict
from monitor.tui.screens.groups import GroupsScreen
from monitor.tui.screens.rows import GroupRowsScreen
from monitor.tui.widgets.paged_table import PagedTable
from tui_support import all_ran, wait_for

BORN = "2024-06-01 01:10:31.000000"  # SQLite's DATETIME as SQLAlchemy stores it: whole seconds, six zeros


def one_duplicate(tmp_path: Path) -> Path:
    """One group of two rows, born in the same second: a fix deletes exactly one row."""
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE signup (id INTEGER PRIMARY KEY, email TEXT NOT NULL, created_at DATETIME)")
        conn.execute("INSERT INTO signup VALUES (1, 'a@x', ?), (2, 'a@x', '2024-06-01 01:10:31.004000'), "
                     "(3, 'b@x', ?)", (BORN, BORN))
    return path


def config_for(path: Path):  # type: ignore[no-untyped-def]
    return config_from_dict({"databases": {"app": {"url": f"sqlite:///{path}"}},
                             "checks": [{"name": "signups", "database": "app", "table": "signup", "key": ["email"],
                                         "timestamp": "created_at", "interval": "1h"}]})


def column_texts(table: DataTable, column: str) -> list[str]:
    return [str(table.get_cell_at((row, list(table.columns).index(column)))) for row in range(table.row_count)]


async def test_one_row_to_delete_is_said_in_the_singular(tmp_path, make_app):
    app = make_app(config_for(one_duplicate(tmp_path)))
    async with app.run_test(size=(150, 40)) as pilot:
        await open_fix(pilot, app, "signups")
        assert str(app.screen.query_one("#confirm-button", Button).label) == "Fix 1 row"
        facts = str(app.screen.query_one("#fix-facts", Static).render())
        assert facts.startswith("1 duplicate group: 1 row to delete, each copied first")


async def test_a_timestamp_reads_the_same_in_the_preview_and_on_the_rows_screen(tmp_path, make_app):
    app = make_app(config_for(one_duplicate(tmp_path)))
    async with app.run_test(size=(150, 40)) as pilot:
        await open_fix(pilot, app, "signups")
        sample = app.screen.query_one("#fix-sample", DataTable)
        previewed = column_texts(sample, "col:created_at")
        assert previewed == [BORN, "2024-06-01 01:10:31.004000"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: fix_screen(app) is None)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups, what="the groups")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupRowsScreen)
                       and app.screen.query_one(PagedTable).row_count == 2, what="the group's rows")
        assert column_texts(app.screen.query_one(PagedTable), "col:created_at") == previewed
        assert "2 rows share this key" in str(app.screen.query_one("#caption", Static).render())


async def test_a_filter_never_overwrites_the_header_totals(demo_app):
    """At 160 columns (and 80) the filter shown in the header sits beside the totals, neither cut nor covered."""
    app = demo_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        for size in ((160, 45), (80, 24)):
            await pilot.resize_terminal(*size)
            await pilot.press("escape", "slash", *"login-sources")
            await pilot.pause()
            totals, mode = app.screen.query_one("#totals", Static), app.screen.query_one("#mode", Static)
            assert str(mode.render()).startswith("/login-sour" if size[0] == 160 else "/login-")
            assert totals.region.right <= mode.region.x and mode.region.right <= size[0]
            assert len(str(totals.render())) <= totals.region.width, str(totals.render())
            assert "dupewatch" in str(totals.render()) and "excess" in str(totals.render())


async def test_the_trend_legend_is_the_charts_title_never_drawn_over_its_lines():
    """plotext draws its own legend inside the canvas, over the lines: the legend is the title line instead."""
    from datetime import datetime, timedelta

    from textual.app import App, ComposeResult

    from monitor.detect import CheckResult
    from monitor.tui.widgets.trend import TrendChart

    start = datetime(2024, 6, 3, 14, 0).astimezone()
    points = [CheckResult("c", "d", "duplicates", groups, rows, 5.0, None,
                          finished_at=start + timedelta(minutes=minute))
              for minute, (groups, rows) in enumerate([(1, 2), (2, 5), (4, 9), (4, 12), (6, 20), (6, 21)])]

    class Chart(App[None]):
        def compose(self) -> ComposeResult:
            yield TrendChart(id="chart")

    app = Chart()
    async with app.run_test(size=(100, 16)) as pilot:
        chart = app.query_one(TrendChart)
        chart.show(points, points[-1].finished_at)
        await pilot.pause()
        lines = chart.render().plain.splitlines()  # type: ignore[union-attr]
        [title] = [i for i, line in enumerate(lines) if "excess rows (amber), groups (blue)" in line]
        assert title == 0 and "6 runs over" in lines[0]
        assert not any(word in line for line in lines[1:] for word in ("excess", "groups", "amber", "blue"))
        assert any("\u2800" < ch <= "\u28ff" for line in lines[1:] for ch in line)  # the lines are drawn (braille)

"""The dashboard in a small terminal (80x24) and a large one: what matters is on screen at each width.

80x24: the main table keeps CHECK, STATUS, ROWS, CHANGE and LAST RUN, and ROWS % where it fits (giving up
DURATION, TREND, DATABASE, GROUPS and then ROWS % in that order), the header its totals in short words, the
footer every key, help and quit included; the fix modal keeps its confirmation, its button, its progress and its
outcome visible below a preview that scrolls.
"""

from __future__ import annotations

from typing import Any

from test_fix_dashboard import fix_screen, open_fix, result_text, type_text
from textual.widget import Widget

from monitor.tui.screens.main import MainScreen
from monitor.tui.widgets.checks_table import ChecksTable
from tui_support import all_ran, wait_for

SMALL, LARGE = (80, 24), (160, 45)


def on_screen(widget: Widget, size: tuple[int, int]) -> bool:
    """Whether the widget is displayed and wholly inside the terminal, not clipped by its container."""
    region = widget.region
    visible = widget.screen.find_widget(widget).visible_region if widget.display else None
    return bool(widget.display and region.width and region.height and visible is not None
                and visible == region and region.right <= size[0] and region.bottom <= size[1])


def footer_text(app: Any) -> str:
    from textual.widgets import Footer

    footer = app.screen.query_one(Footer)
    return " ".join(str(key.render()) for key in footer.query("FooterKey"))


async def test_the_main_screen_at_80x24_keeps_what_matters_and_gets_the_rest_back_when_wider(demo_app):
    app = demo_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.pause()
        table = app.screen.query_one(ChecksTable)
        assert table.shown_columns == ["name", "status", "excess", "percent", "change", "last"]
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= SMALL[0]
        header = str(app.screen.query_one("#totals").render()) + str(app.screen.query_one("#mode").render())
        assert "dup" in header and "excess" in header and "LIVE" in header
        footer = footer_text(app)
        assert "Help" in footer and "Quit" in footer
        footer_keys = app.screen.query("FooterKey")
        assert footer_keys and all(on_screen(key, SMALL) for key in footer_keys)

        await pilot.resize_terminal(*LARGE)
        await wait_for(pilot, lambda: table.shown_columns[-1] == "duration", what="the columns to come back")
        assert table.shown_columns == ["name", "database", "status", "groups", "excess", "percent", "change", "trend",
                                       "last", "duration"]
        assert isinstance(app.screen, MainScreen)


async def test_the_fix_is_confirmed_run_and_reported_visibly_at_80x24(demo_app, demo_db):
    app = demo_app(fix_batch_size=7)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_fix(pilot, app, "daily-checkins")
        await pilot.pause()
        for selector in ("#confirm-name", "#confirm-button", "#fix-guard"):
            assert on_screen(app.screen.query_one(selector), SMALL), selector
        await type_text(pilot, app, "daily-checkins")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.stage in ("done", "failed"), timeout=30, what="the fix to finish")
        await pilot.pause()
        assert screen.stage == "done", result_text(app)
        for selector in ("#fix-progress", "#fix-counts", "#fix-result"):
            assert on_screen(app.screen.query_one(selector), SMALL), selector
        assert "finished" in result_text(app)
        assert fix_screen(app) is screen


async def test_typing_after_tab_goes_into_the_name_and_enter_never_cancels_silently(demo_app):
    app = demo_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_fix(pilot, app, "login-sources")
        await pilot.press("tab", "end", *"login-sources")
        assert app.screen.query_one("#confirm-name").value == "login-sources"
        assert app.focused is app.screen.query_one("#confirm-name")
        assert fix_screen(app) is screen and screen.stage == "preview"

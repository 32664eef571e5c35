"""The dashboard in a small terminal (80x24) and a large one: what matters is on screen at each width.

80x24: the main table keeps CHECK, STATUS, ROWS, CHANGE and LAST RUN, and ROWS % where it fits (giving up
DURATION, TREND, DATABASE, GROUPS and then ROWS % in that order), the header its totals in short words, the
footer every key, help and quit included; the fix modal keeps its confirmation, its button, its progress and its
outcome visible below a preview that scrolls.
"""

from __future__ import annotations

from typing import Any

from test_fix_dashboard import fix_screen, open_fix, result_text, type_text
from textual.coordinate import Coordinate
from textual.widget import Widget
from textual.widgets.data_table import ColumnKey

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


def _orders_app(make_app: Any, tmp_path: Any, names: list[str]) -> Any:
    """The dashboard over one SQLite table with one duplicate group, a check of it under each of `names`."""
    import sqlite3

    from monitor.config import config_from_dict

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, email TEXT)")
        conn.executemany("INSERT INTO orders (email) VALUES (?)", [("a",), ("a",), ("b",)])
    conn.close()
    return make_app(config_from_dict({"databases": {"app": {"url": f"sqlite:///{path}"}}, "checks": [
        {"name": name, "database": "app", "table": "orders", "key": ["email"], "interval": "1h"} for name in names]}))


async def _shown_names(pilot: Any, app: Any, names: list[str]) -> tuple[int, list[str]]:
    """Once every check ran: the CHECK column's width and each name as its row shows it."""
    from rich.cells import cell_len

    await wait_for(pilot, lambda: all_ran(app))
    await pilot.pause()
    table = app.screen.query_one(ChecksTable)
    width = table.columns[ColumnKey("name")].width
    shown = [str(table.get_cell(name, "name")) for name in names]
    assert all(cell_len(text) <= width for text in shown), (width, shown)
    assert len(set(shown)) == len(names), (width, shown)
    return width, shown


async def test_long_check_names_stay_told_apart_at_80x24(make_app, tmp_path) -> None:
    """Names of one application often share a long start and differ only at their end (..._region_europe,
    ..._region_america) or in their middle: at 80 columns the CHECK column crops them, and cropping every one at
    its end showed three identical rows. Each is cropped where it keeps what tells it from the others."""
    names = [f"orders_by_customer_email_in_region_{region}" for region in ("europe", "america", "asia")]
    names += [f"orders_by_customer_{n:02d}_email_in_one_region_of_the_world" for n in range(3)]
    names += ["short", "orders"]
    app = _orders_app(make_app, tmp_path, names)
    async with app.run_test(size=SMALL) as pilot:
        width, shown = await _shown_names(pilot, app, names)
        assert width < max(map(len, names))
        assert shown[-2:] == ["short", "orders"]
        table = app.screen.query_one(ChecksTable)
        await pilot.press("s", "s", "s")  # sorted by name: the rows follow the whole names
        await wait_for(pilot, lambda: [table.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value
                                       for i in range(table.row_count)] == sorted(names), what="the name order")


async def test_wide_character_names_stay_told_apart_within_their_column(make_app, tmp_path) -> None:
    """A name's width on screen is its cells, not its characters: a CJK character takes two. Names sized and
    cropped by their characters were wider than the CHECK column, and the table cut them at its edge, where
    names of one application differ (注文…_ヨーロッパ / _アメリカ / _アジア showed as one)."""
    from rich.cells import cell_len

    names = [f"注文の重複_顧客のメール_地域_{region}" for region in ("ヨーロッパ", "アメリカ", "アジア")]
    names += ["short"]
    app = _orders_app(make_app, tmp_path, names)
    async with app.run_test(size=SMALL) as pilot:
        width, shown = await _shown_names(pilot, app, names)
        assert width < max(map(cell_len, names))
        assert shown[-1] == "short"


async def test_names_whose_crops_read_the_same_are_cropped_elsewhere(make_app, tmp_path) -> None:
    """Keeping each name's distinguishing character is not enough: the parts kept around it can read the same
    (..._invoice_invoice and ..._invoice_invoice_invoice both read 'daily_user_cust…invoice_invoice' in 31
    cells). A name whose crop another shows takes another part around that character."""
    names = ["daily_user_customer_daily_user_customer", "daily_user_customer_invoice_invoice",
             "daily_user_customer_invoice_invoice_invoice", "daily_user_customer_unique_daily"]
    app = _orders_app(make_app, tmp_path, names)
    async with app.run_test(size=SMALL) as pilot:
        await _shown_names(pilot, app, names)

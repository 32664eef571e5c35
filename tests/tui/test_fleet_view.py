"""The fleet view (`t`): targets by checks with their state, worst first; `:` jumps to a target by name; `/`
filters by label; Enter shows the target's checks on the main screen. Real PostgreSQL databases (this test's
own, `dwfleet_<random>_tenant_<i>`), at 80x24."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from textual.widgets import DataTable

from dbtest import PG_URL
from fleetdb import TABLE, pg_databases
from monitor.cli import with_targets
from monitor.config import config_from_dict
from monitor.tui.screens.fleet import FleetScreen
from monitor.tui.screens.main import MainScreen
from tui_support import all_ran, wait_for


def fleet_app(make_app: Any, fleet: Any, tmp_path: Path) -> Any:
    template = config_from_dict({
        "sources": {
            "eu": {"url": PG_URL, "discover": "databases", "include": fleet.include, "exclude": "_3$",
                   "labels": {"region": "eu"}},
            "us": {"url": PG_URL, "discover": "databases", "include": fleet.prefix + "tenant_3$",
                   "labels": {"region": "us"}},
        },
        "checks": [{"name": name, "source": source, "table": TABLE, "key": ["user_id", "agent"], "interval": "1h"}
                   for name, source in (("logins", "eu"), ("logins-us", "us"))],
        "state": {"path": str(tmp_path / "state.sqlite")},
    })
    return make_app(with_targets(template))


def rows(screen: FleetScreen) -> list[str]:
    return [row.target for row in screen.rows]


async def test_fleet_view_worst_first_jump_filter_and_open(make_app: Any, tmp_path: Path) -> None:
    with pg_databases(3) as fleet:
        first, second, third = fleet.names
        engine = sa.create_engine(fleet.url_of(second))
        try:
            with engine.begin() as conn:  # tenant_2 fails: its table is gone
                conn.execute(sa.text(f"DROP TABLE {TABLE}"))
        finally:
            engine.dispose()
        app = fleet_app(make_app, fleet, tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: all_ran(app), what="every target's first run")
            assert isinstance(app.screen, MainScreen)
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet view")
            screen = app.screen
            assert isinstance(screen, FleetScreen)
            # worst first: the failing target, then the most rows found (tenant i has i excess rows)
            assert rows(screen) == [second, third, first]
            table = screen.query_one(DataTable)
            assert [str(c.label) for c in table.columns.values()] == ["TARGET", "logins", "logins-us"]
            assert table.get_row_at(0)[1] == "✖ error"
            assert table.get_row_at(1)[2] == "▲ 3" and table.get_row_at(1)[1] == ""
            await pilot.press("colon", *first.removeprefix(fleet.prefix), "enter")  # `:tenant_1`
            assert screen.selected() == first
            await pilot.press("slash", *"region=us", "enter")
            assert rows(screen) == [third]
            await pilot.press("slash", "ctrl+u", *"region=eu", "enter")
            assert rows(screen) == [second, first]
            await pilot.press("enter")  # the cursor's target, on the main screen
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="back on the main screen")
            shown = app.screen._visible()
            assert [s.name for s in shown] == [f"logins@{second}"]

"""The fleet view at 80x24 over 300 targets (Pilot): every target listed, worst first, `:` jumps to one far
down and shows it, `/` filters by label, keeping the cursor on its target while the filter is typed. The targets are on
a server that is not there (port 1): every check fails at once, no database needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from textual.widgets import DataTable

from dbtest import PG_URL
from monitor.config import config_from_dict
from monitor.fleet import Target, expand
from monitor.tui.screens.fleet import FleetScreen
from tui_support import all_ran, wait_for

TARGETS = 300


def large_fleet(tmp_path: Path) -> Any:
    server = make_url(PG_URL).set(port=1)
    template = config_from_dict({
        "sources": {name: {"url": server.render_as_string(False), "discover": "databases",
                           "labels": {"region": name}} for name in ("eu", "us")},
        "checks": [{"name": f"logins-{name}", "source": name, "table": "login_source", "key": ["user_id"],
                    "interval": "1h"} for name in ("eu", "us")],
        "state": {"path": str(tmp_path / "state.sqlite")},
    })
    targets: dict[str, list[Target]] = {"eu": [], "us": []}
    for i in range(TARGETS):
        region = "eu" if i % 2 else "us"
        name = f"tenant_{i:03d}"
        targets[region].append(Target(region, name, None, server.set(database=name), (("region", region),)))
    return expand(template, targets)


async def test_the_fleet_view_at_80x24_over_300_targets(make_app: Any, tmp_path: Path) -> None:
    app = make_app(large_fleet(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet view")
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        await wait_for(pilot, lambda: all_ran(app), timeout=60, what="every target's first run")
        await pilot.pause()
        table = screen.query_one(DataTable)
        assert table.row_count == TARGETS and len(screen.rows) == TARGETS
        assert all(row.rank[0] == 0 for row in screen.rows)  # all failing
        title = str(screen.query_one("#title").render())
        assert f"{TARGETS} targets" in title and f"{TARGETS} failing" in title
        await pilot.press("colon", *"tenant_287", "enter")
        assert screen.selected() == "tenant_287"
        # on screen, not only under the cursor (the table scrolls to it on its next refresh)
        await wait_for(pilot, lambda: 0 <= table.cursor_row - table.scroll_offset.y < table.size.height - 1,
                       what=f"row {table.cursor_row} scrolled into view")
        await pilot.press("slash", *"region=eu", "enter")
        assert len(screen.rows) == TARGETS // 2 and table.row_count == TARGETS // 2
        assert {row.labels["region"] for row in screen.rows} == {"eu"}
        assert screen.selected() == "tenant_287"  # the cursor stays on its target

"""The checks table with thresholds (issue 18, items 20-21): a check with `warn_above` / `fail_above` shows its
outcome (ok, warn, fail) in STATUS, a check without them shows what it found as before, and ROWS % (excess rows
as a share of the rows the check grouped) is shown where it fits, at 80x24 included.

Snapshots at 80x24 and 160x45 freeze the data (the demo database), the clock and the durations; regenerate with
`pytest tests/tui/test_thresholds_dashboard.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_snapshots import first_runs, frozen_app

from monitor.config import config_from_dict
from monitor.demo import demo_config
from monitor.engine import Monitor
from monitor.thresholds import format_percent
from monitor.tui.widgets.checks_table import ChecksTable
from tui_support import all_ran, wait_for

# The demo's figures: login-sources 75 excess rows, daily-checkins 100, role-membership 46, profiles 26.
THRESHOLDS = {
    "login-sources": {"fail_above": 100},  # 75: tolerated
    "daily-checkins": {"warn_above": 50, "fail_above": 200},  # 100: a warning
    "role-membership": {"warn_above": 10, "fail_above": "1%"},  # far above 1% of its rows: fails
}


def thresholds_config(demo_db: Path) -> Any:
    data = demo_config(demo_db, interval="1h").model_dump(mode="json", exclude_none=True)
    for check in data["checks"]:
        check.update(THRESHOLDS.get(check["name"], {}))
    return config_from_dict(data)


def cell(table: ChecksTable, check: str, column: str) -> str:
    value = table.get_cell(check, column)
    return value.plain if hasattr(value, "plain") else str(value)


async def test_status_shows_the_outcome_of_checks_with_thresholds_and_percent_fits_at_80x24(demo_db, tmp_path):
    app = frozen_app(thresholds_config(demo_db), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: all_ran(app), what="every check's first run")
        await pilot.pause()
        table = app.screen.query_one(ChecksTable)
        assert "percent" in table.shown_columns
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80
        statuses = {name: cell(table, name, "status") for name in
                    ("login-sources", "daily-checkins", "role-membership", "profiles-get-or-create", "vote-drift")}
        assert statuses == {"login-sources": "● ok", "daily-checkins": "▲ warn", "role-membership": "▲ fail",
                            "profiles-get-or-create": "▲ duplicates", "vote-drift": "▲ violations"}
        engine = Monitor(thresholds_config(demo_db))
        try:
            for name in ("login-sources", "daily-checkins", "role-membership"):
                result = engine.run(name)
                assert cell(table, name, "percent") == format_percent(result.excess_percent) != ""
        finally:
            engine.close()
        assert cell(table, "vote-drift", "percent") == "—"  # a custom query has no row count


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_thresholds_snapshot(snap_compare, demo_db, tmp_path, size):
    app = frozen_app(thresholds_config(demo_db), tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=first_runs)
    app.stop()

"""Snapshot tests of the main screen, the drill-down and the error state.

Stable by construction: the demo database is built from a fixed seed and `now`, the racer is off, the
clock is frozen (relative times, durations, the chart's time axis), and the terminal size is fixed.
Regenerate with `pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import config_from_dict
from monitor.demo import demo_config
from monitor.history import History
from monitor.tui.app import DashboardApp
from monitor.tui.screens.groups import GroupsScreen
from tui_support import FROZEN_NOW, SIZE, FrozenMonitor, all_ran, frozen_poller, wait_for


def frozen_app(config, tmp_path: Path, *, demo: bool = True) -> DashboardApp:
    return DashboardApp(config, monitor=FrozenMonitor(config), history=History(tmp_path / "state.sqlite"),
                        poller_factory=frozen_poller, clock=lambda: FROZEN_NOW, demo=demo, tick=False)


async def first_runs(pilot) -> None:
    await wait_for(pilot, lambda: all_ran(pilot.app), what="every check's first run")
    await pilot.pause()


SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")


@SIZES
def test_main_screen(snap_compare, demo_db, tmp_path, size):
    app = frozen_app(demo_config(demo_db, interval="1h"), tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=first_runs)
    app.stop()


@SIZES
def test_drill_down(snap_compare, demo_db, tmp_path, size):
    app = frozen_app(demo_config(demo_db, interval="1h"), tmp_path)

    async def open_check(pilot) -> None:
        await first_runs(pilot)
        await pilot.press("down", "enter")  # daily-checkins: races and one cron re-run hours apart
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_check)
    app.stop()


def test_error_state(snap_compare, demo_db, tmp_path):
    data = demo_config(demo_db, interval="1h").model_dump(mode="json", exclude_none=True)
    data["databases"]["orders"] = {"url": "postgresql://watcher:s3cret@127.0.0.1:1/orders", "statement_timeout": "5s"}
    data["checks"].insert(0, {"name": "orders-double-submit", "database": "orders", "table": "orders",
                              "key": ["customer_id", "cart_id"], "interval": "1h",
                              "description": "Orders submitted twice by a double click on Pay."})
    app = frozen_app(config_from_dict(data), tmp_path, demo=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=first_runs)
    app.stop()

"""Fixtures for the dashboard's Pilot and snapshot tests: a fixed demo database, a frozen clock, an app factory.

The app runs its real scheduler against real databases; only time is frozen where a snapshot needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from monitor.config import CheckConfig, Config, config_from_dict
from monitor.demo import build_demo, demo_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.history import History
from monitor.schedule import Poller
from monitor.tui.app import DashboardApp

FROZEN_NOW = datetime(2024, 6, 3, 14, 30, 0).astimezone()
DEMO_NOW = datetime(2024, 6, 3, 14, 0, 0)
SIZE = (150, 40)


class FrozenMonitor(Monitor):
    """The real engine, with the two things a snapshot cannot hold still fixed: when and how long."""

    def run(self, check: CheckConfig | str) -> CheckResult:
        result = super().run(check)
        return dataclasses.replace(result, duration_ms=12.0, finished_at=FROZEN_NOW)


class FrozenPoller(Poller):
    """The real scheduler; only the time of a failing check's next try is read against the frozen clock."""

    def next_run(self, name: str) -> datetime | None:
        failures = self.failures(name)
        return FROZEN_NOW + timedelta(seconds=30 * failures) if failures else super().next_run(name)


def unstaggered(monitor: Monitor, on_result: Callable[[CheckResult], None], *, history: History | None,
                on_start: Callable[[str], None]) -> Poller:
    return Poller(monitor, on_result, history=history, on_start=on_start, stagger=False)


def frozen_poller(monitor: Monitor, on_result: Callable[[CheckResult], None], *, history: History | None,
                  on_start: Callable[[str], None]) -> Poller:
    return FrozenPoller(monitor, on_result, history=history, on_start=on_start, stagger=False)


async def wait_for(pilot: Pilot[Any], condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Let the app run until `condition()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


def all_ran(app: DashboardApp) -> bool:
    return all(state.last is not None for state in app.dashboard.checks.values())


def cell_text(app: DashboardApp, check: str, column: str) -> str:
    from monitor.tui.widgets.checks_table import ChecksTable

    table = app.screen.query_one(ChecksTable)
    value = table.get_cell(check, column)
    return getattr(value, "plain", str(value))


def screen_text(app: DashboardApp) -> str:
    """Everything the current screen shows, as plain text (for asserting on what the operator reads)."""
    from textual.widgets import DataTable, Static

    parts: list[str] = []
    for widget in app.screen.query(Static):
        parts.append(str(widget.render()))
    for table in app.screen.query(DataTable):
        for row in range(table.row_count):
            parts.append(" ".join(getattr(c, "plain", str(c)) for c in table.get_row_at(row)))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixed demo database, built once (deterministic for its seed and `DEMO_NOW`); tests get copies."""
    built = build_demo(tmp_path_factory.mktemp("demo") / "demo.sqlite", seed=2024, now=DEMO_NOW)
    assert not Path(f"{built}-wal").exists(), "the demo database is not whole in its one file"
    return built


@pytest.fixture
def demo_db(demo_template: Path, tmp_path: Path) -> Path:
    """A copy of the fixed demo database, the test's own."""
    return Path(shutil.copyfile(demo_template, tmp_path / "demo.sqlite"))


def with_state(config: Config, path: Path, **extra_checks: Any) -> Config:
    data = config.model_dump(mode="json", exclude_none=True)
    data["state"] = {"path": str(path)}
    for check in data["checks"]:
        check.update(extra_checks)
    return config_from_dict(data, None)


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., DashboardApp]:
    """`make_app(config, **kwargs)`: a dashboard with its state store in the test's directory."""
    created: list[DashboardApp] = []

    def factory(config: Config, **kwargs: Any) -> DashboardApp:
        kwargs.setdefault("poller_factory", unstaggered)
        kwargs.setdefault("history", History(tmp_path / "state.sqlite"))
        app = DashboardApp(config, **kwargs)
        created.append(app)
        return app

    yield factory
    for app in created:
        app.stop()
        app.monitor.close()


@pytest.fixture
def demo_app(demo_db: Path, make_app: Callable[..., DashboardApp]) -> Callable[..., DashboardApp]:
    """`demo_app(interval="1h", **kwargs)`: the dashboard on the fixed demo database, racer off."""

    def factory(interval: str = "1h", **kwargs: Any) -> DashboardApp:
        return make_app(demo_config(demo_db, interval=interval), **kwargs)

    return factory


def run(coro: Any) -> Any:
    return asyncio.run(coro)

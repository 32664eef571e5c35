"""The config `dupewatch audit --write` produces opens in the dashboard as it is, and its checks find what the
audit measured (here on the demo database, where the Aleph link table has no key at all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbtest import run_dupewatch
from monitor.config import load_config
from monitor.tui.screens.main import MainScreen
from tui_support import all_ran, cell_text, wait_for


async def test_written_config_opens_in_the_dashboard_with_the_audited_figures(
        demo_db: Path, make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{demo_db}"
    target = tmp_path / "dupewatch.toml"
    audited = run_dupewatch("audit", "--url", url, "--json", "--write", target)
    assert audited.code == 1, audited.output
    link = next(f for f in audited.json["findings"] if f["kind"] == "link_table_without_unique")
    monkeypatch.setenv("DUPEWATCH_URL", url)
    app = make_app(load_config(target))
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app), what="the first run of every written check")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        name = link["check"]["name"]
        assert cell_text(app, name, "groups") == f"{link['duplicate_groups']:,}"
        assert "duplicates" in cell_text(app, name, "status")

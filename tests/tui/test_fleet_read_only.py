"""A target marked `read_only = true` (on its database or fleet source) hides every fix action: `f` leaves the
footer, pressing it opens no fix, and `dupewatch fix` refuses in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbtest import run_dupewatch, write_config
from monitor.config import config_from_dict
from monitor.demo import demo_config
from monitor.tui.screens.fix import FixScreen
from monitor.tui.screens.main import MainScreen
from tui_support import all_ran, wait_for


def demo(demo_db: Path, *, read_only: bool) -> Any:
    data = demo_config(demo_db, interval="1h").model_dump(mode="json", exclude_none=True, by_alias=True)
    for database in data["databases"].values():
        database["read_only"] = read_only
    return config_from_dict(data, None)


async def test_f_is_hidden_and_refused_on_a_read_only_target(demo_db: Path, make_app: Any) -> None:
    shown = make_app(demo(demo_db, read_only=False))
    async with shown.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: all_ran(shown), what="the first runs")
        assert isinstance(shown.screen, MainScreen)
        assert shown.screen.check_action("fix", ()) is True
        assert "f" in shown.screen.active_bindings  # what the footer shows
    hidden = make_app(demo(demo_db, read_only=True))
    async with hidden.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: all_ran(hidden), what="the first runs")
        assert hidden.screen.check_action("fix", ()) is False
        assert "f" not in hidden.screen.active_bindings and "F" in hidden.screen.active_bindings  # undo stays
        hidden.request_fix(hidden.config.checks[0].name)  # what any screen's `f` calls
        await pilot.pause()
        assert not isinstance(hidden.screen, FixScreen)


def test_dupewatch_fix_refuses_a_read_only_target(tmp_path: Path) -> None:
    path = write_config(tmp_path / "ro.toml", {"app": {"url": f"sqlite:///{tmp_path / 'x.sqlite'}",
                                                       "read_only": True}},
                        [{"name": "c", "database": "app", "table": "t", "key": ["k"]}])
    run = run_dupewatch("fix", "--config", path, "c", "--dry-run")
    assert run.code == 2
    assert run.stderr.strip() == (f"dupewatch: error: {path}: checks[0] ('c'): runs on a read-only target "
                                  "(read_only = true on its database or source): no fix")

"""The fix screen's "also add the unique constraint" checkbox: the fix, then the guard (converging), in the worker."""

from __future__ import annotations

import sqlite3

from test_fix_dashboard import BATCH, open_fix, result_text, run_confirmed_fix
from textual.widgets import Checkbox


async def test_checkbox_adds_the_unique_index_after_the_fix(demo_app, demo_db):
    app = demo_app(fix_batch_size=BATCH)
    async with app.run_test() as pilot:
        screen = await open_fix(pilot, app, "daily-checkins")
        screen.query_one("#fix-guard", Checkbox).value = True
        await pilot.pause()
        screen = await run_confirmed_fix(pilot, app, "daily-checkins")
        report = screen.report
        assert report is not None and report.constraint == "uq_dupewatch_daily_checkins"
        assert "unique index uq_dupewatch_daily_checkins now guards the key" in result_text(app)
    indexes = [r[0] for r in sqlite3.connect(demo_db).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'checkin'")]
    assert "uq_dupewatch_daily_checkins" in indexes
    recorded = sqlite3.connect(demo_db).execute(
        "SELECT constraint_name FROM dupewatch_fix WHERE fix_id = ?", (report.fix_id,)).fetchone()
    assert recorded == ("uq_dupewatch_daily_checkins",)

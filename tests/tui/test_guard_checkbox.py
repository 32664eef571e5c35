"""The fix screen's "also add the unique constraint" checkbox: the fix, then the guard (converging), in the worker."""

from __future__ import annotations

import sqlite3

from test_fix_dashboard import BATCH, enter_name, facts, open_fix, result_text, run_confirmed_fix
from textual.widgets import Checkbox

from tui_support import wait_for


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


async def test_checkbox_refuses_a_guard_it_cannot_add_before_deleting_anything(demo_app, demo_db):
    """An index of the guard's name with another definition refuses the guard whatever the fix deletes: the
    screen refuses up front, nothing deleted, as `fix --add-constraint` does (it deleted the duplicates, then
    reported the guard's refusal)."""
    with sqlite3.connect(demo_db) as conn:
        conn.execute("CREATE INDEX uq_dupewatch_daily_checkins ON checkin (id)")
    before = sqlite3.connect(demo_db).execute("SELECT count(*) FROM checkin").fetchone()
    app = demo_app(fix_batch_size=BATCH)
    async with app.run_test() as pilot:
        screen = await open_fix(pilot, app, "daily-checkins")
        screen.query_one("#fix-guard", Checkbox).value = True
        await pilot.pause()
        await enter_name(pilot, app, "daily-checkins")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.stage in ("done", "failed"), timeout=30, what="the fix to finish")
        assert screen.stage == "failed", result_text(app)
        assert "already exists but is not this check's guard" in result_text(app)
        assert "nothing changed" in result_text(app)
    assert sqlite3.connect(demo_db).execute("SELECT count(*) FROM checkin").fetchone() == before
    assert not sqlite3.connect(demo_db).execute(  # no fix recorded, not even a snapshot
        "SELECT name FROM sqlite_master WHERE name = 'dupewatch_fix'").fetchall()


async def test_a_guard_refused_whatever_the_fix_deletes_is_said_in_the_preview_not_offered(demo_app, demo_db):
    """The preview asks whether the guard can be added at all: an index of the guard's name with another definition
    is named among its notes and the box is not offered (it was offered, then refused after the confirmation); the
    duplicates can still be fixed."""
    with sqlite3.connect(demo_db) as conn:
        conn.execute("CREATE INDEX uq_dupewatch_daily_checkins ON checkin (id)")
    app = demo_app(fix_batch_size=BATCH)
    async with app.run_test() as pilot:
        screen = await open_fix(pilot, app, "daily-checkins")
        assert not screen.query_one("#fix-guard", Checkbox).display
        shown = " ".join(facts(app).split())
        assert "the unique constraint cannot be added afterwards" in shown, shown
        assert "already exists but is not this check's guard" in shown, shown
        screen = await run_confirmed_fix(pilot, app, "daily-checkins")
        assert screen.report is not None and screen.report.constraint is None and screen.report.deleted > 0

"""Pilot tests of every screen and key of the dashboard, on the embedded SQLite demo (a real database)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from monitor.config import config_from_dict
from monitor.demo import demo_config
from monitor.history import History
from monitor.schedule import Poller
from monitor.tui.app import DashboardApp
from monitor.tui.screens.custom import CustomRowsScreen
from monitor.tui.screens.groups import GroupsScreen
from monitor.tui.screens.help import HelpScreen
from monitor.tui.screens.main import MainScreen
from monitor.tui.screens.rows import GroupRowsScreen
from monitor.tui.widgets.checks_table import ChecksTable
from monitor.tui.widgets.paged_table import PagedTable
from tui_support import all_ran, cell_text, screen_text, wait_for

DEMO_CHECKS = ["login-sources", "daily-checkins", "vote-drift", "role-membership", "profiles-get-or-create"]


def sql(path: Path, statement: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def plant_profile_race(path: Path, user_id: str, copies: int, apart_ms: int = 2) -> None:
    """`copies` rows for one user_id, `apart_ms` apart: what get_or_create in several threads leaves.

    One transaction, so a poll sees all the copies or none of them and the change is one step."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany("INSERT INTO race_profile (user_id, name, created_at) VALUES (?, 'x', ?)",
                             [(user_id, f"2024-06-03 13:00:00.{i * apart_ms * 1000:06d}") for i in range(copies)])
    finally:
        conn.close()


def table_names(app: DashboardApp) -> list[str]:
    table = app.screen.query_one(ChecksTable)
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


async def test_main_screen_shows_every_check_in_config_order_with_its_figures(demo_app, demo_db):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app), what="the first run of every check")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert table_names(app) == DEMO_CHECKS
        (groups, excess), = sql(demo_db, "SELECT COUNT(*), COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM "
                                "race_profile GROUP BY user_id HAVING COUNT(*) > 1)")
        assert cell_text(app, "profiles-get-or-create", "groups") == f"{groups:,}"
        assert cell_text(app, "profiles-get-or-create", "excess") == f"{excess:,}"
        assert "duplicates" in cell_text(app, "profiles-get-or-create", "status")
        header = screen_text(app)
        assert "4 of 5 checks with duplicates" in header and "1 with violations" in header  # vote-drift
        assert "0 of 1 database unreachable" in header
        # the highlighted check explains itself to a newcomer
        assert "Seed 000 (Pretix)" in header


async def test_figures_update_live_without_a_keypress(demo_app, demo_db):
    # long enough that the run showing the growth is not replaced by an unchanged one before the test looks
    app = demo_app(interval="1s")
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        before = int(cell_text(app, "profiles-get-or-create", "excess").replace(",", ""))
        plant_profile_race(demo_db, "live-update-user", copies=3)
        await wait_for(pilot, lambda: cell_text(app, "profiles-get-or-create", "excess") == f"{before + 2:,}",
                       what="the excess rows cell to grow by 2")
        assert cell_text(app, "profiles-get-or-create", "change") == "▲ 2"
        # rows never move while the figures change
        assert table_names(app) == DEMO_CHECKS


async def test_drill_down_lists_groups_largest_first_and_tells_a_race_from_a_logic_bug(demo_app, demo_db):
    plant_profile_race(demo_db, "race-burst", copies=6, apart_ms=2)
    for day in (1, 4, 7, 9, 12):  # the same user created on five different days: not a race
        sql(demo_db, "INSERT INTO race_profile (user_id, name, created_at) VALUES ('slow-bug', 'x', ?)",
            (f"2024-05-{day:02d} 10:00:00.000000",))
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("profiles-get-or-create"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        screen = app.screen
        sizes = [g.rows for g in screen.groups]
        assert sizes == sorted(sizes, reverse=True)
        assert [g.key for g in screen.groups[:2]] == [("race-burst",), ("slow-bug",)]
        table = screen.query_one(PagedTable)
        race, bug = (" ".join(c.plain for c in table.get_row_at(i)) for i in range(2))
        assert "race" in race and "burst 10 ms" in race
        assert "logic bug" in bug and "11 days apart" in bug
        assert "Seed 004" in screen_text(app)  # the check's description
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_enter_on_a_group_shows_its_rows_with_the_kept_row_marked(demo_app, demo_db):
    plant_profile_race(demo_db, "keeper-test", copies=5)  # larger than any planted group: listed first
    ids = [row[0] for row in sql(demo_db, "SELECT id FROM race_profile WHERE user_id = 'keeper-test' ORDER BY id")]
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("profiles-get-or-create"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupRowsScreen)
                       and app.screen.query_one(PagedTable).row_count == 5)
        table = app.screen.query_one(PagedTable)
        rows = [[getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(5)]
        assert [r[0] for r in rows] == ["★ keep"] + ["✖ extra"] * 4
        assert [int(r[1]) for r in rows] == ids  # keep = oldest by primary key
        assert [label.plain for label in (c.label for c in table.columns.values())][1:] == [
            "id", "user_id", "name", "created_at"]
        await pilot.press("escape")
        assert isinstance(app.screen, GroupsScreen)


async def test_a_table_without_primary_key_says_which_row_a_fix_keeps(demo_app):
    # role_membership (seed 003) has no primary key: the keeper is the first inserted row (rowid), not "by
    # primary key" as the dashboard used to claim.
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("role-membership"))
        await wait_for(pilot, lambda: "keeps the oldest by rowid (insertion order)" in screen_text(app),
                       what="the details panel to name rowid")
        assert "by primary key" not in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupRowsScreen)
                       and app.screen.query_one(PagedTable).row_count >= 2)
        assert "A fix keeps the oldest by rowid (insertion order) (★)" in screen_text(app)


async def test_custom_query_check_shows_the_rows_its_query_returns(demo_app, demo_db):
    drifting = sql(demo_db, "SELECT c.id FROM candidate c LEFT JOIN (SELECT candidate_id, SUM(votes) AS s FROM payment "
                   "WHERE verified = 1 GROUP BY candidate_id) p ON p.candidate_id = c.id "
                   "WHERE c.total_votes <> COALESCE(p.s, 0) ORDER BY c.id")
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("vote-drift"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CustomRowsScreen) and app.screen.loaded)
        table = app.screen.query_one(PagedTable)
        assert sorted(int(table.get_row_at(i)[0].plain) for i in range(table.row_count)) == [r[0] for r in drifting]
        assert "drift" in [c.label.plain for c in table.columns.values()]
        # a custom query check cannot be fixed, and `f` says why
        await pilot.press("f")
        await pilot.pause()
        assert any("cannot" in n.title.lower() or "custom query" in n.message for n in app._notifications)


async def test_f_hands_the_check_to_the_fix_hook(demo_app):
    requests = []
    app = demo_app(on_fix=lambda app, request: requests.append(request))
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("f")
        assert [r.check for r in requests] == ["login-sources"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        await pilot.press("f")
        assert requests[-1].check == "login-sources"
        assert requests[-1].key == app.screen.groups[0].key


async def test_filter_shows_only_matching_checks_and_escape_restores_them(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("slash", *"check")
        assert table_names(app) == ["daily-checkins"]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert table_names(app) == ["daily-checkins"]
        assert "/check" in screen_text(app)
        await pilot.press("escape")
        assert table_names(app) == DEMO_CHECKS


async def test_s_cycles_the_sort_and_config_order_comes_back(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("s")
        by_rows = sorted(DEMO_CHECKS, key=lambda n: -(app.dashboard[n].figure or 0))
        assert table_names(app) == by_rows
        assert "most rows" in screen_text(app)
        await pilot.press("s")
        assert "largest change" in screen_text(app)
        by_change = sorted(DEMO_CHECKS, key=lambda n: (-(app.dashboard[n].change or 0),
                                                       -(app.dashboard[n].figure or 0)))
        assert table_names(app) == by_change
        await pilot.press("s")
        assert table_names(app) == sorted(DEMO_CHECKS)
        await pilot.press("s")
        assert table_names(app) == DEMO_CHECKS


async def test_pause_stops_polling_and_resume_picks_up_new_duplicates(demo_app, demo_db):
    app = demo_app(interval="0.2s")
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("p")
        assert app.paused
        assert "PAUSED" in screen_text(app)
        # Paused keeps what the last run found, marked paused in place of the status mark.
        await wait_for(pilot, lambda: cell_text(app, "login-sources", "status") == "‖ duplicates")
        await wait_for(pilot, lambda: not any(s.running for s in app.dashboard.checks.values()))
        before = cell_text(app, "profiles-get-or-create", "excess")
        finished = app.dashboard["profiles-get-or-create"].last.finished_at
        plant_profile_race(demo_db, "while-paused", copies=2)
        await pilot.pause(1.0)  # five intervals: nothing may run while paused
        assert app.dashboard["profiles-get-or-create"].last.finished_at == finished
        assert cell_text(app, "profiles-get-or-create", "excess") == before
        await pilot.press("p")
        assert not app.paused
        await wait_for(pilot, lambda: cell_text(app, "profiles-get-or-create", "excess") != before)


async def test_r_reruns_the_selected_check_and_R_every_check(demo_app, demo_db):
    app = demo_app()  # hourly: only a key press can make them run again
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("profiles-get-or-create"))
        first = {n: app.dashboard[n].last.finished_at for n in DEMO_CHECKS}
        plant_profile_race(demo_db, "rerun", copies=2)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.dashboard["profiles-get-or-create"].last.finished_at
                       > first["profiles-get-or-create"])
        assert app.dashboard["login-sources"].last.finished_at == first["login-sources"]
        assert cell_text(app, "profiles-get-or-create", "change") == "▲ 1"
        await pilot.press("R")
        await wait_for(pilot, lambda: all(app.dashboard[n].last.finished_at > first[n] for n in DEMO_CHECKS))


async def test_r_runs_a_check_once_even_while_paused(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        first = app.dashboard["login-sources"].last.finished_at
        await pilot.press("p", "r")
        await wait_for(pilot, lambda: app.dashboard["login-sources"].last.finished_at > first)
        assert app.paused


async def test_help_screen_opens_and_closes(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "race" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_q_quits_with_exit_code_zero(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_q_quits_from_the_drill_down_too(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen))
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_mouse_click_opens_a_check(demo_app):
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        table = app.screen.query_one(ChecksTable)
        row = DEMO_CHECKS.index("role-membership")
        await pilot.click(ChecksTable, offset=(3, row + 1))  # the header is line 0
        await pilot.click(ChecksTable, offset=(3, row + 1))  # a second click on the highlighted row opens it
        assert table.cursor_row == row
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen))
        assert app.screen.check == "role-membership"


async def test_a_database_that_stops_answering_keeps_its_last_known_figures_with_their_age(demo_db, make_app):
    """Unknown is not zero: the header counts a failing check's last known figures and says how old they are."""
    app = make_app(demo_config(demo_db))
    async with app.run_test(size=(240, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        duplicates = [n for n in DEMO_CHECKS if app.dashboard[n].finds == "duplicates"]
        total = sum(app.dashboard[n].excess or 0 for n in duplicates)
        violating = app.dashboard["vote-drift"].groups or 0
        assert total > 0 and f"{total:,} excess rows" in screen_text(app)
        demo_db.rename(demo_db.with_name("moved-away.sqlite"))  # the database stops answering
        await pilot.press("R")
        await wait_for(pilot, lambda: all(app.dashboard[n].last.status == "error" for n in DEMO_CHECKS),
                       what="every check to fail")
        await pilot.pause()
        shown = screen_text(app)
        assert f"{total:,} excess rows (last known, " in shown
        assert f"{violating:,} violating rows (last known, " in shown
        assert " 0 excess rows" not in shown
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("profiles-get-or-create"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen))
        await pilot.pause()
        known = app.dashboard["profiles-get-or-create"].last_known
        assert known is not None and known.status == "duplicates"
        assert f"excess rows {known.excess_rows:,}  (last known, " in screen_text(app)


async def test_an_unreachable_database_shows_its_error_while_other_checks_carry_on(demo_db, make_app):
    demo = demo_config(demo_db)
    data = demo.model_dump(mode="json", exclude_none=True)
    data["databases"]["orders"] = {"url": "postgresql://watcher:s3cret-pw@127.0.0.1:1/orders",
                                   "statement_timeout": "5s"}
    data["checks"].append({"name": "orders-double-submit", "database": "orders", "table": "orders",
                           "key": ["customer_id", "cart_id"], "interval": "1h"})
    app = make_app(config_from_dict(data))
    async with app.run_test(size=(200, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.pause()
        assert "error" in cell_text(app, "orders-double-submit", "status")
        assert "duplicates" in cell_text(app, "login-sources", "status")
        shown = screen_text(app)
        assert "1 of 2 databases unreachable" in shown
        # The orders database never answered: its excess rows are unknown, so the total is a floor, never exact.
        total = sum(app.dashboard[n].excess or 0 for n in DEMO_CHECKS if app.dashboard[n].finds == "duplicates")
        assert f"≥ {total:,} excess rows" in shown
        masked = "postgresql+psycopg://watcher:***@127.0.0.1:1/orders"
        assert f"orders-double-submit: ✖ database 'orders' ({masked})" in shown
        assert "failed once" in shown and "backing off" in shown
        assert "s3cret-pw" not in shown
        assert app.poller.failures("orders-double-submit") == 1


async def test_trends_survive_a_restart(demo_db, make_app, tmp_path):
    store = tmp_path / "trend.sqlite"
    config = demo_config(demo_db, interval="1h")
    first = make_app(config, history=History(store))
    async with first.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(first))
        await pilot.press("R")
        await wait_for(pilot, lambda: all(len(s.history) == 2 for s in first.dashboard.checks.values()))
    first.history.close()

    class NotPolling(Poller):
        def start(self) -> None:  # only what the store holds may appear
            pass

    second = make_app(config, history=History(store),
                      poller_factory=lambda m, cb, **kw: NotPolling(m, cb, **kw))
    async with second.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all(len(s.history) == 2 for s in second.dashboard.checks.values()))
        await pilot.pause()
        assert cell_text(second, "login-sources", "last") != "never"
        assert len(cell_text(second, "login-sources", "trend")) == 2
        assert cell_text(second, "login-sources", "groups") == f"{first.dashboard['login-sources'].groups:,}"


def footer_keys(app: DashboardApp) -> list[str]:
    from textual.widgets._footer import FooterKey

    return [key.description for key in app.screen.query(FooterKey)]


async def test_the_footer_follows_the_screen_it_is_on(demo_app):
    """The footer rebuilds once per refresh (coalesced): it must still end up with the current screen's keys."""
    app = demo_app()
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await wait_for(pilot, lambda: "Fixes" in footer_keys(app), what="the main screen's footer")
        assert "Back" not in footer_keys(app)
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("profiles-get-or-create"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and "Back" in footer_keys(app),
                       what="the drill-down's footer")
        assert {"Rows", "Re-run", "Fix", "Help", "Quit"} <= set(footer_keys(app))
        assert "Pause" not in footer_keys(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and "Back" not in footer_keys(app),
                       what="the main screen's footer again")
        assert {"Pause", "Fixes"} <= set(footer_keys(app))


async def test_the_drill_down_count_and_list_agree_when_a_run_lands_after_the_list(demo_app, demo_db):
    """The figures above the list and its caption say the same count: a run that finds one more group after
    the list was read says so at once (not "12 of 12 groups loaded" beside "groups 13" until `r`)."""
    app = demo_app()  # hourly: only the test makes the check run again
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("profiles-get-or-create"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups)
        listed = len(app.screen.groups)
        assert app.dashboard["profiles-get-or-create"].groups == listed
        plant_profile_race(demo_db, "after-the-list", copies=2)
        app.run_checks("profiles-get-or-create")
        await wait_for(pilot, lambda: app.dashboard["profiles-get-or-create"].groups == listed + 1)
        await pilot.pause()
        shown = screen_text(app)
        assert f"groups      {listed + 1}" in shown
        assert f"{listed} loaded, then the last run found {listed + 1} (r: reload the list)" in shown
        await pilot.press("r")
        await wait_for(pilot, lambda: len(app.screen.groups) == listed + 1)
        await pilot.pause()
        assert f"{listed + 1} of {listed + 1} groups loaded" in screen_text(app)

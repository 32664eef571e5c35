"""Pilot tests of the dashboard's confirm-to-fix, the fixes screen with undo, and metrics from the dashboard.

Against the fixed SQLite demo and real PostgreSQL: the preview matches `make_plan`, only the exact name arms
the fix, the fix runs to 100 % and the check's figures drop to 0 after the re-run, the archive holds the
deleted rows, cancelling changes nothing, undo restores the rows exactly, and `[metrics]` is served.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

from monitor.config import config_from_dict
from monitor.demo import demo_config
from monitor.engine import Monitor
from monitor.fix import make_plan
from monitor.history import History
from monitor.tui.app import DashboardApp, start_metrics
from monitor.tui.screens.fix import FixScreen
from monitor.tui.screens.fixes import FixesScreen, UndoScreen
from monitor.tui.screens.groups import GroupsScreen
from monitor.tui.screens.main import MainScreen
from monitor.tui.screens.rows import GroupRowsScreen
from monitor.tui.widgets.checks_table import ChecksTable
from monitor.tui.widgets.paged_table import PagedTable
from monitor.words import counted
from tui_support import FROZEN_NOW, SIZE, FrozenMonitor, all_ran, frozen_poller, wait_for

DEMO_CHECKS = ["login-sources", "daily-checkins", "vote-drift", "role-membership", "profiles-get-or-create"]
BATCH = 7  # groups per batch: the demo's checks take several batches, so progress moves


# -- helpers ---------------------------------------------------------------------------------------


def sqlite_rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute(f'SELECT rowid, * FROM "{table}"').fetchall(), key=repr)


def sqlite_schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=repr)


def demo_tables(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: sqlite_rows(path, name) for name in names}


def fix_screen(app: DashboardApp) -> FixScreen | None:
    return app.screen if isinstance(app.screen, FixScreen) else None


def facts(app: DashboardApp) -> str:
    return str(app.screen.query_one("#fix-facts", Static).render())


def result_text(app: DashboardApp) -> str:
    return str(app.screen.query_one("#fix-result", Static).render())


def confirm_button(app: DashboardApp) -> Button:
    return app.screen.query_one("#confirm-button", Button)


async def select_check(pilot: Any, app: DashboardApp, check: str) -> None:
    await wait_for(pilot, lambda: all_ran(app), what="every check's first run")
    app.screen.query_one(ChecksTable).move_cursor(row=app.config.names.index(check))


async def open_groups(pilot: Any, app: DashboardApp, check: str) -> GroupsScreen:
    await select_check(pilot, app, check)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups, what="the groups")
    return app.screen  # type: ignore[return-value]


async def open_fix(pilot: Any, app: DashboardApp, check: str) -> FixScreen:
    await select_check(pilot, app, check)
    await pilot.press("f")
    await wait_for(pilot, lambda: fix_screen(app) and fix_screen(app).stage == "preview", what="the preview")
    return fix_screen(app)  # type: ignore[return-value]


async def type_text(pilot: Any, app: DashboardApp, text: str) -> None:
    """Type `text` into the confirmation box key by key (each key waits for the app to go idle, twice)."""
    box = app.screen.query_one("#confirm-name", Input)
    box.value = ""
    box.focus()
    await pilot.press(*text)


async def enter_name(pilot: Any, app: DashboardApp, name: str) -> None:
    """Put the check's `name` in the confirmation box at once, for tests about what follows (typing it is
    type_text's), and await the button it arms."""
    box = app.screen.query_one("#confirm-name", Input)
    box.focus()
    box.value = name
    await wait_for(pilot, lambda: not confirm_button(app).disabled, what=f"{name!r} to arm the button")


async def run_confirmed_fix(pilot: Any, app: DashboardApp, check: str) -> FixScreen:
    """Type the name, press Enter, wait for the summary."""
    screen = fix_screen(app)
    assert screen is not None
    await enter_name(pilot, app, check)
    assert not confirm_button(app).disabled
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.stage in ("done", "failed"), timeout=30, what="the fix to finish")
    assert screen.stage == "done", result_text(app)
    return screen


def figures_after(app: DashboardApp, check: str, when: Any) -> tuple[int | None, int | None] | None:
    """The check's figures from a run that finished after `when` (None until there is one)."""
    last = app.dashboard[check].last
    if last is None or last.finished_at <= when:
        return None
    return last.groups, last.excess_rows


def independent_plan(config: Any, check: str) -> Any:
    monitor = Monitor(config)
    try:
        return make_plan(monitor, check)
    finally:
        monitor.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_metrics(config: Any, port: int) -> Any:
    data = config.model_dump(mode="json", exclude_none=True)
    data["metrics"] = {"listen": f"127.0.0.1:{port}"}
    return config_from_dict(data, None)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def sample(page: str, metric: str, check: str, database: str) -> float | None:
    prefix = f'{metric}{{check="{check}",database="{database}",target="{database}"}} '
    for line in page.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


# -- SQLite demo -------------------------------------------------------------------------------------


async def test_preview_shows_the_plans_counts_and_only_the_exact_name_arms_the_fix(demo_app, demo_db):
    app = demo_app()
    plan = independent_plan(app.config, "login-sources")
    assert plan.groups > 0
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "login-sources")
        text = facts(app)
        assert f"{counted(plan.groups, 'duplicate group')}: {counted(plan.rows_to_delete, 'row')} to delete" in text
        assert f"keeps the {plan.keeper}" in text
        assert screen.preview is not None and screen.preview.rows_to_delete == plan.rows_to_delete
        # the sample: every sampled group's keeper marked, then its rows to delete
        table = app.screen.query_one("#fix-sample", DataTable)
        marks = [table.get_row_at(i)[0] for i in range(table.row_count)]
        marks = [getattr(m, "plain", str(m)) for m in marks]
        assert marks.count("★ keep") == len(plan.sample)
        assert marks.count("✖ delete") == sum(len(g.delete) for g in plan.sample)
        assert str(confirm_button(app).label) == f"Fix {plan.rows_to_delete:,} rows"
        box = app.screen.query_one("#confirm-name", Input)
        for wrong in ("login-source", "Login-sources", "login-sources ", " login-sources", "daily-checkins"):
            await enter_name(pilot, app, "login-sources")  # armed, so that disarming shows the name was read
            box.value = wrong
            await wait_for(pilot, lambda: confirm_button(app).disabled, what=f"{wrong!r} to disarm the button")
            await pilot.press("enter")
            assert screen.stage == "preview", wrong
        await type_text(pilot, app, "login-sources")
        assert not confirm_button(app).disabled


async def test_the_demos_fix_summary_offers_no_shell_undo_command_that_has_no_config_to_find(demo_app):
    """The demo's config is built in memory: `dupewatch undo ID` typed in a shell finds no config and fails, so
    the summary points at F (which undoes it) instead of printing that command."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_fix(pilot, app, "profiles-get-or-create")
        screen = await run_confirmed_fix(pilot, app, "profiles-get-or-create")
        summary = result_text(app)
        assert screen.report is not None and screen.report.fix_id in summary
        assert "dupewatch undo" not in summary and "F lists past fixes and undoes them" in summary


async def test_enter_on_a_wrong_name_says_why_nothing_happened_and_changes_nothing(demo_app, demo_db):
    before = demo_tables(demo_db)
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "daily-checkins")
        await type_text(pilot, app, "daily")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app._notifications), what="a notification")
        [note] = list(app._notifications)
        assert "'daily' is not 'daily-checkins'" in note.message and "exactly" in note.message
        assert screen.stage == "preview"
    assert demo_tables(demo_db) == before


async def test_escape_on_the_preview_changes_nothing(demo_app, demo_db):
    before_rows, before_schema = demo_tables(demo_db), sqlite_schema(demo_db)
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_fix(pilot, app, "daily-checkins")
        await enter_name(pilot, app, "daily-checkins")  # armed, but not confirmed
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the modal to close")
    assert demo_tables(demo_db) == before_rows
    assert sqlite_schema(demo_db) == before_schema  # no plan, record or archive table either


async def test_fix_runs_to_the_end_then_the_fixes_screen_lists_it_and_undo_restores_the_rows(demo_app, demo_db):
    """daily-checkins: duplicate check-ins, each with a credit referencing it (repointed to the keeper)."""
    before = {t: sqlite_rows(demo_db, t) for t in ("checkin", "checkin_credit")}
    app = demo_app(fix_batch_size=BATCH)
    plan = independent_plan(app.config, "daily-checkins")
    assert plan.groups > BATCH and plan.references and plan.references[0].rows > 0
    async with app.run_test(size=SIZE) as pilot:
        await open_fix(pilot, app, "daily-checkins")
        confirmed_at = app.dashboard["daily-checkins"].last.finished_at
        screen = await run_confirmed_fix(pilot, app, "daily-checkins")
        report = screen.report
        assert report is not None and report.state == "done"
        assert (report.groups, report.deleted, report.repointed) == (plan.groups, plan.rows_to_delete,
                                                                     plan.references[0].rows)
        assert app.screen.query_one(ProgressBar).percentage == 1.0
        summary = result_text(app)
        assert report.fix_id in summary and f"{plan.rows_to_delete:,} row(s) deleted" in summary
        # the re-run after the fix: the check's figures drop to 0 without a keypress
        await wait_for(pilot, lambda: figures_after(app, "daily-checkins", confirmed_at) == (0, 0),
                       what="the re-run to report no duplicates")
        # the deleted rows are in the archive, and every credit points at a surviving check-in
        after = sqlite_rows(demo_db, "checkin")
        deleted = {row[1:] for row in before["checkin"]} - {row[1:] for row in after}
        archive = sqlite3.connect(demo_db).execute(
            "SELECT id, user_id, checkin_date, created_at FROM dupewatch_archive_checkin "
            "WHERE dupewatch_fix_id = ?", (report.fix_id,)).fetchall()
        assert len(deleted) == plan.rows_to_delete and set(archive) == deleted
        orphans = sqlite3.connect(demo_db).execute(
            "SELECT COUNT(*) FROM checkin_credit WHERE checkin_id NOT IN (SELECT id FROM checkin)").fetchone()[0]
        assert orphans == 0

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("F")
        await wait_for(pilot, lambda: isinstance(app.screen, FixesScreen) and app.screen.loaded)
        fixes = app.screen.query_one(DataTable)
        row = [getattr(c, "plain", str(c)) for c in fixes.get_row_at(0)]
        assert row[0] == report.fix_id and row[2] == "daily-checkins" and row[3] == "done"
        assert row[7] == f"{plan.rows_to_delete:,}"

        undone_at = app.dashboard["daily-checkins"].last.finished_at
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UndoScreen))
        undo = app.screen
        await type_text(pilot, app, "daily-checkin")  # one letter short: not armed
        assert confirm_button(app).disabled
        await enter_name(pilot, app, "daily-checkins")
        await pilot.press("enter")
        await wait_for(pilot, lambda: undo.stage == "done", what="the undo")
        assert undo.undone, str(app.screen.query_one("#undo-result", Static).render())
        assert {t: sqlite_rows(demo_db, t) for t in before} == before
        await wait_for(pilot, lambda: figures_after(app, "daily-checkins", undone_at) == (plan.groups,
                                                                                        plan.rows_to_delete),
                       what="the re-run after the undo")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FixesScreen) and app.screen.loaded
                       and app.screen.fixes[0][1].state == "undone", what="the list to show the fix undone")
        # undoing it twice is refused with one line, nothing changed
        await pilot.press("u")
        await pilot.pause()
        assert not isinstance(app.screen, UndoScreen)
        assert any("nothing to undo" in n.message for n in app._notifications)


async def test_a_snapshot_that_differs_from_the_preview_is_confirmed_again(demo_app, demo_db):
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "profiles-get-or-create")
        previewed = screen.preview
        assert previewed is not None
        # the application writes one more duplicate between the preview and the confirmation
        with sqlite3.connect(demo_db) as conn:
            conn.execute("INSERT INTO race_profile (user_id, name, created_at) "
                         "SELECT user_id, name, created_at FROM race_profile ORDER BY id LIMIT 1")
        await enter_name(pilot, app, "profiles-get-or-create")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.stage == "reconfirm", what="the changed snapshot")
        assert "Changed since the preview: groups" in facts(app)
        assert screen.snapshot is not None and screen.snapshot.rows_to_delete == previewed.rows_to_delete + 1
        assert f"{counted(previewed.rows_to_delete + 1, 'row')} to delete" in facts(app)
        assert not confirm_button(app).disabled  # the name is still typed: one more press runs it
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.stage in ("done", "failed"), timeout=30)
        assert screen.report is not None and screen.report.fix_id == screen.snapshot.fix_id
        assert screen.report.deleted == previewed.rows_to_delete + 1


async def test_escape_on_a_changed_snapshot_discards_it(demo_app, demo_db):
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "profiles-get-or-create")
        with sqlite3.connect(demo_db) as conn:
            conn.execute("INSERT INTO race_profile (user_id, name, created_at) "
                         "SELECT user_id, name, created_at FROM race_profile ORDER BY id LIMIT 1")
        rows = sqlite_rows(demo_db, "race_profile")
        await enter_name(pilot, app, "profiles-get-or-create")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.stage == "reconfirm")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the snapshot to be discarded")
    assert sqlite_rows(demo_db, "race_profile") == rows
    with sqlite3.connect(demo_db) as conn:
        assert conn.execute("SELECT state FROM dupewatch_fix").fetchall() == [("discarded",)]


async def test_f_on_a_group_previews_and_fixes_that_group_only(demo_app, demo_db):
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        picked = (await open_groups(pilot, app, "profiles-get-or-create")).groups[0]
        groups_before = app.dashboard["profiles-get-or-create"].last.groups
        (user_id,) = picked.key
        await pilot.press("f")
        screen = await wait_for(pilot, lambda: fix_screen(app) if fix_screen(app) and fix_screen(app).stage
                                == "preview" else None, what="the preview of the picked group")
        assert f"Fixes the group user_id='{user_id}' only" in str(app.screen.query_one("#fix-picked", Static).render())
        assert screen.preview.groups == 1 and screen.preview.rows_to_delete == picked.rows - 1
        assert [g.key for g in screen.preview.sample] == [picked.key]
        assert not app.screen.query_one("#fix-guard").display  # a constraint needs every group fixed
        fixed_at = app.dashboard["profiles-get-or-create"].last.finished_at
        await run_confirmed_fix(pilot, app, "profiles-get-or-create")
        await wait_for(pilot, lambda: figures_after(app, "profiles-get-or-create", fixed_at),
                       what="the re-run after the fix")
        await pilot.press("escape")  # back to the drill-down, which reloads: the fixed group is gone
        await wait_for(pilot, lambda: isinstance(app.screen, GroupsScreen) and app.screen.groups
                       and picked.key not in [g.key for g in app.screen.groups], what="the reloaded groups")
    with sqlite3.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM race_profile WHERE user_id = ?", (user_id,)).fetchone() == (1,)
    assert app.dashboard["profiles-get-or-create"].last.groups == groups_before - 1


async def test_f_on_a_groups_rows_fixes_it_and_the_rows_reload_to_the_kept_one(demo_app, demo_db):
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        picked = (await open_groups(pilot, app, "profiles-get-or-create")).groups[0]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupRowsScreen)
                       and app.screen.query_one(PagedTable).row_count == picked.rows, what="the group's rows")
        await pilot.press("f")
        await wait_for(pilot, lambda: fix_screen(app) and fix_screen(app).stage == "preview")
        await run_confirmed_fix(pilot, app, "profiles-get-or-create")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, GroupRowsScreen)
                       and app.screen.query_one(PagedTable).row_count == 1, what="the rows to reload")
        assert "★" in str(app.screen.query_one(PagedTable).get_row_at(0)[0])
    (user_id,) = picked.key
    with sqlite3.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM race_profile WHERE user_id = ?", (user_id,)).fetchone() == (1,)


async def test_f_on_a_custom_query_check_says_why_it_cannot_be_fixed(demo_app):
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("vote-drift"))
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert any("custom query check" in n.message for n in app._notifications)


async def test_dashboard_serves_metrics_and_counts_the_rows_its_fixes_delete(demo_db, make_app):
    config = with_metrics(demo_config(demo_db, interval="1h"), free_port())
    exporter, notice = start_metrics(config)
    assert exporter is not None and notice is None
    try:
        app = make_app(config, exporter=exporter)
        plan = independent_plan(config, "login-sources")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: all_ran(app))

            def scraped(metric: str, check: str = "login-sources") -> float | None:
                return sample(scrape(exporter.url), metric, check, "demo")

            await wait_for(pilot, lambda: scraped("dupewatch_duplicate_groups") == plan.groups,
                           what="the check's figures on /metrics")
            assert scraped("dupewatch_duplicate_excess_rows") == plan.rows_to_delete
            assert scraped("dupewatch_check_up", "daily-checkins") == 1
            assert scraped("dupewatch_fix_deleted_rows_total") == 0
            await open_fix(pilot, app, "login-sources")
            await run_confirmed_fix(pilot, app, "login-sources")
            await wait_for(pilot, lambda: scraped("dupewatch_fix_deleted_rows_total") == plan.rows_to_delete,
                           what="the fix's deleted rows on /metrics")
            await wait_for(pilot, lambda: scraped("dupewatch_duplicate_groups") == 0,
                           what="the re-run's figures on /metrics")
    finally:
        exporter.close()


def test_fix_batches_count_their_deleted_rows_once_in_this_process_exporter(demo_db):
    """The fix path feeds `dupewatch_fix_deleted_rows_total` batch by batch; a resumed fix adds only its own."""
    import threading

    from monitor.fix import prepare_fix, run_fix
    from monitor.metrics import MetricsExporter

    config = demo_config(demo_db, interval="1h")
    exporter = MetricsExporter(config, process_metrics=False)
    monitor = Monitor(config)
    labels = {"check": "daily-checkins", "database": "demo", "target": "demo"}
    try:
        plan = prepare_fix(monitor, "daily-checkins")
        cancel = threading.Event()

        def stop_after_two(progress: Any) -> None:
            if progress.groups_done >= 2 * BATCH:
                cancel.set()

        first = run_fix(monitor, "daily-checkins", plan, batch_size=BATCH, progress=stop_after_two, cancel=cancel)
        assert first.state == "stopped" and 0 < first.deleted < plan.rows_to_delete
        counted = exporter.registry.get_sample_value("dupewatch_fix_deleted_rows_total", labels)
        assert counted == first.deleted
        resumed = run_fix(monitor, "daily-checkins", batch_size=BATCH)
        assert resumed.resumed and resumed.deleted == plan.rows_to_delete
        assert exporter.registry.get_sample_value("dupewatch_fix_deleted_rows_total", labels) == plan.rows_to_delete
    finally:
        monitor.close()
        exporter.close()


async def test_the_dashboard_opens_beside_a_daemon_serving_the_same_metrics_and_says_so(demo_db, make_app):
    """The metrics port is taken (a daemon with the same config): the dashboard does not need to serve them."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = with_metrics(demo_config(demo_db, interval="1h"), taken.getsockname()[1])
        exporter, notice = start_metrics(config)
        assert exporter is None
        assert notice is not None and "already served" in notice and "does not serve metrics" in notice
        app = make_app(config)
        app.startup_notice = notice
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: all_ran(app))
            assert isinstance(app.screen, MainScreen)
            assert any("already served" in n.message for n in app._notifications)


def test_dashboard_with_unusable_metrics_tls_exits_2_with_one_line_before_the_ui(demo_db, tmp_path):
    from monitor.cli import main

    config = tmp_path / "dupewatch.toml"
    config.write_text(f'[databases.demo]\nurl = "sqlite:///{demo_db}"\n\n'
                      f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
                      f'tls_cert = "{tmp_path}/missing.crt"\ntls_key = "{tmp_path}/missing.key"\n\n'
                      '[[checks]]\nname = "profiles"\ndatabase = "demo"\ntable = "race_profile"\nkey = ["user_id"]\n')
    result = CliRunner().invoke(main, ["tui", "--config", str(config)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "TLS file not found" in lines[0] and "Traceback" not in result.output


def test_cli_fix_does_not_load_prometheus_client(demo_db):
    code = ("import sys\nfrom monitor.cli import main\n"
            "try:\n    main(['fix', 'profiles-get-or-create', '--yes', '--config', sys.argv[1]])\n"
            "except SystemExit as exit:\n    print('exit', exit.code)\n"
            "print('prometheus_client' in sys.modules)\n")
    path = demo_db.parent / "demo.toml"
    path.write_text(f'[databases.demo]\nurl = "sqlite:///{demo_db}"\n\n[[checks]]\nname = "profiles-get-or-create"\n'
                    'database = "demo"\ntable = "race_profile"\nkey = ["user_id"]\n')
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert lines[-2:] == ["exit 0", "False"], out.stdout + out.stderr


# -- PostgreSQL ----------------------------------------------------------------------------------------


def pg_fixture(pg: Any, *, child_pk: bool = True) -> Any:
    pg.execute("CREATE TABLE account (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL, "
               "created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
               f"CREATE TABLE invoice ({'id BIGSERIAL PRIMARY KEY, ' if child_pk else ''}"
               "account_id BIGINT NOT NULL REFERENCES account(id), amount INT NOT NULL)",
               "INSERT INTO account (email, created_at) SELECT 'user' || g || '@example.com', "
               "timestamptz '2024-06-01' + c * interval '3 milliseconds' FROM generate_series(1, 40) g, "
               "generate_series(1, 1 + g % 3) c",
               "INSERT INTO account (email) SELECT 'single' || g || '@example.com' FROM generate_series(1, 20) g",
               "INSERT INTO invoice (account_id, amount) SELECT id, id * 10 FROM account WHERE id % 2 = 0")
    return config_from_dict({"databases": {"pg": {"url": pg.url}},
                             "checks": [{"name": "accounts", "database": "pg", "table": "account",
                                         "key": ["email"], "timestamp": "created_at", "interval": "1h"}]})


def pg_contents(pg: Any) -> dict[str, list[tuple]]:
    return {"account": pg.rows("SELECT * FROM account ORDER BY id"),
            "invoice": pg.rows("SELECT * FROM invoice ORDER BY account_id, amount")}


async def test_pg_fix_from_the_dashboard_then_undo(pg, make_app):
    config = pg_fixture(pg)
    before = pg_contents(pg)
    plan = independent_plan(config, "accounts")
    assert plan.groups == 27 and plan.references[0].rows > 0
    app = make_app(config, fix_batch_size=BATCH)
    async with app.run_test(size=SIZE) as pilot:
        await open_fix(pilot, app, "accounts")
        wanted = f"{counted(plan.groups, 'duplicate group')}: {counted(plan.rows_to_delete, 'row')} to delete"
        assert wanted in facts(app)
        assert f"{plan.references[0].rows:,} referencing row(s) repointed" in facts(app)
        await type_text(pilot, app, "account")
        assert confirm_button(app).disabled
        ran_at = app.dashboard["accounts"].last.finished_at
        screen = await run_confirmed_fix(pilot, app, "accounts")
        assert screen.report is not None
        assert (screen.report.deleted, screen.report.repointed) == (plan.rows_to_delete, plan.references[0].rows)
        assert app.screen.query_one(ProgressBar).percentage == 1.0
        assert screen.report.fix_id in result_text(app)
        await wait_for(pilot, lambda: figures_after(app, "accounts", ran_at) == (0, 0))
        assert pg.scalar("SELECT COUNT(*) FROM dupewatch_archive_account WHERE dupewatch_fix_id = :f",
                         {"f": screen.report.fix_id}) == plan.rows_to_delete
        assert pg.scalar("SELECT COUNT(*) FROM account") == len(before["account"]) - plan.rows_to_delete

        await pilot.press("escape", "F")
        await wait_for(pilot, lambda: isinstance(app.screen, FixesScreen) and app.screen.loaded)
        assert app.screen.fixes[0][1].fix_id == screen.report.fix_id
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UndoScreen))
        undo = app.screen
        await enter_name(pilot, app, "accounts")
        await pilot.press("enter")
        await wait_for(pilot, lambda: undo.stage == "done")
        assert undo.undone
    assert pg_contents(pg) == before


async def test_pg_escape_while_running_stops_between_batches_and_f_resumes(pg, make_app):
    config = pg_fixture(pg)
    third = pg.scalar("SELECT email FROM account GROUP BY email HAVING COUNT(*) > 1 ORDER BY email LIMIT 1 OFFSET 2")
    app = make_app(config, fix_batch_size=1)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "accounts")
        total = screen.preview.groups
        bar = app.screen.query_one(ProgressBar)
        # the application holds the third group's rows: the fix's third batch waits for them
        with pg.engine.connect() as holder:
            holder.begin()
            holder.exec_driver_sql("SELECT id FROM account WHERE email = %(e)s FOR UPDATE", {"e": third})
            await enter_name(pilot, app, "accounts")
            await pilot.press("enter")
            await wait_for(pilot, lambda: bar.progress == 2, what="two batches done, the third waiting")
            await pilot.press("escape")
            assert screen.stage == "stopping"
            holder.rollback()
        await wait_for(pilot, lambda: screen.stage == "done", what="the fix to stop")
        assert screen.report is not None and screen.report.state == "stopped"
        assert screen.report.groups == 3  # the batch in flight committed whole, then the fix stopped
        assert "run it again to resume" in result_text(app)
        assert pg.scalar("SELECT state FROM dupewatch_fix") == "stopped"
        left = pg.scalar("SELECT COUNT(*) FROM (SELECT email FROM account GROUP BY email HAVING COUNT(*) > 1) d")
        assert left == total - 3

        await pilot.press("escape", "f")
        resume = await wait_for(pilot, lambda: fix_screen(app) and fix_screen(app).stage == "preview"
                                and fix_screen(app))
        assert resume.unfinished is not None and resume.unfinished.fix_id == screen.report.fix_id
        assert "Unfinished fix" in facts(app) and str(confirm_button(app).label) == "Resume fix"
        await run_confirmed_fix(pilot, app, "accounts")
        assert resume.report is not None and resume.report.resumed
        assert resume.report.fix_id == screen.report.fix_id and resume.report.groups == total
    assert pg.scalar("SELECT COUNT(*) FROM (SELECT email FROM account GROUP BY email HAVING COUNT(*) > 1) d") == 0


async def test_pg_quitting_the_dashboard_stops_a_running_fix_between_batches(pg, make_app):
    config = pg_fixture(pg)
    second = pg.scalar("SELECT email FROM account GROUP BY email HAVING COUNT(*) > 1 ORDER BY email LIMIT 1 OFFSET 1")
    app = make_app(config, fix_batch_size=1)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "accounts")
        with pg.engine.connect() as holder:
            holder.begin()
            holder.exec_driver_sql("SELECT id FROM account WHERE email = %(e)s FOR UPDATE", {"e": second})
            await enter_name(pilot, app, "accounts")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen.query_one(ProgressBar).progress == 1)
            app.stop()  # what quitting does (on_unmount)
            holder.rollback()
        await wait_for(pilot, lambda: screen.stage == "done", what="the fix to stop")
        assert screen.report is not None and screen.report.state == "stopped" and screen.report.groups == 2


async def test_pg_cancel_on_the_preview_changes_nothing(pg, make_app):
    config = pg_fixture(pg)
    before = pg_contents(pg)
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await open_fix(pilot, app, "accounts")
        await enter_name(pilot, app, "accounts")
        await pilot.click("#cancel-button")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    assert pg_contents(pg) == before
    assert pg.scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE 'dupewatch%' "
                     "AND table_schema = current_schema()") == 0


async def test_pg_a_blocked_fix_shows_why_and_cannot_be_confirmed(pg, make_app):
    config = pg_fixture(pg, child_pk=False)  # referencing rows without a key cannot be repointed and undone
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_fix(pilot, app, "accounts")
        assert screen.preview is not None and screen.preview.blockers
        assert "BLOCKED" in facts(app) and "has no primary key" in facts(app)
        await type_text(pilot, app, "accounts")
        assert confirm_button(app).disabled
        await pilot.press("enter")
        assert screen.stage == "preview"


async def test_pg_an_unreachable_database_is_one_line_in_the_modal(pg, make_app):
    config = config_from_dict({"databases": {"pg": {"url": "postgresql://watcher:s3cret@127.0.0.1:1/nowhere"}},
                               "checks": [{"name": "accounts", "database": "pg", "table": "account",
                                           "key": ["email"], "interval": "1h"}]})
    app = make_app(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: all_ran(app))
        await pilot.press("f")
        await wait_for(pilot, lambda: fix_screen(app) and fix_screen(app).stage == "failed")
        text = result_text(app)
        assert text.startswith("✖ ") and "\n" not in text and "s3cret" not in text and "Traceback" not in text


# -- snapshot ------------------------------------------------------------------------------------------


def test_fix_preview_modal(snap_compare, demo_db, tmp_path):
    config = demo_config(demo_db, interval="1h")
    app = DashboardApp(config, monitor=FrozenMonitor(config), history=History(tmp_path / "state.sqlite"),
                       poller_factory=frozen_poller, clock=lambda: FROZEN_NOW, demo=True, tick=False)

    async def open_preview(pilot: Any) -> None:
        await wait_for(pilot, lambda: all_ran(app))
        app.screen.query_one(ChecksTable).move_cursor(row=DEMO_CHECKS.index("daily-checkins"))
        await pilot.press("f")
        await wait_for(pilot, lambda: fix_screen(app) and fix_screen(app).stage == "preview")
        await pilot.press(*"daily-checkin")  # one letter short: the button stays disabled
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=open_preview)
    app.stop()

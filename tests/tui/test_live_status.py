"""The dashboard's live-mode status line: each `live = true` database's stream, its lag and its gaps.

Snapshots (80x24 and 160x45) freeze what the readers report; one test follows a real stream on a throwaway
PostgreSQL cluster with `wal_level = logical` and breaks it, so the line shows the lag and then the gap.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pgcluster import Cluster, started_cluster

from monitor.config import Config, config_from_dict
from monitor.demo import demo_config
from monitor.history import History
from monitor.tui.app import DashboardApp
from monitor.tui.messages import LiveReported
from monitor.tui.widgets.live_status import LiveStatus
from tui_support import FROZEN_NOW, FrozenMonitor, all_ran, frozen_poller, screen_text, wait_for

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")


def live_config(demo_db: Path) -> Config:
    """The demo's SQLite checks with `live = true` (no stream: polled), and two live server databases."""
    data = demo_config(demo_db, interval="1h").model_dump(mode="json", exclude_none=True)
    for database in data["databases"].values():
        database["live"] = True
    data["databases"]["app"] = {"url": "postgresql://watcher@127.0.0.1:1/app", "live": True}
    data["databases"]["shop"] = {"url": "mysql+pymysql://watcher@127.0.0.1:1/shop", "live": True}
    return config_from_dict(data)


def no_readers(monitor: Any, sink: Any) -> list[Any]:
    return []


@SIZES
def test_the_status_line_shows_each_live_database_its_lag_and_gaps(snap_compare, demo_db, tmp_path, size):
    config = live_config(demo_db)
    app = DashboardApp(config, monitor=FrozenMonitor(config), history=History(tmp_path / "state.sqlite"),
                       poller_factory=frozen_poller, clock=lambda: FROZEN_NOW, demo=False, tick=False,
                       live_starter=no_readers)

    async def reported(pilot) -> None:
        await wait_for(pilot, lambda: all_ran(pilot.app), what="every check's first run")
        for message in (LiveReported("app", following=True), LiveReported("app", events=12, lag_seconds=0.21),
                        LiveReported("shop", following=True), LiveReported("shop", gap="connection lost"),
                        LiveReported("shop", gap="the binary log no longer holds GTID position 0-1-9 (purged?)")):
            app.post_message(message)
        await wait_for(pilot, lambda: app.live_states["shop"].gaps == 2, what="the reports applied")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=reported)
    assert app.live_states["app"].events == 12
    app.stop()


async def test_without_a_live_database_there_is_no_status_line(demo_app: Any) -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: all_ran(app), what="every check's first run")
        assert app.live_states == {}
        assert not app.screen.query_one(LiveStatus).display


# -- a real stream ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from started_cluster("the dashboard's live-mode test", wal_level="logical")


@pytest.mark.timeout(120)
async def test_the_status_line_follows_a_real_stream_and_counts_its_gap(cluster: Cluster, tmp_path: Path) -> None:
    table = f"signup_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id serial PRIMARY KEY, email text NOT NULL)"))
    config = config_from_dict({
        "databases": {"live": {"url": cluster.url, "live": True}},
        "checks": [{"name": "signups", "database": "live", "table": table, "key": ["email"], "interval": "1h"}],
        "state": {"path": str(tmp_path / "state.sqlite")}})
    app = DashboardApp(config)
    try:
        async with app.run_test(size=(100, 24)) as pilot:
            state = app.live_states["live"]
            await wait_for(pilot, lambda: state.following, what="the stream followed")
            with admin.connect() as conn:
                conn.execute(sa.text(f"INSERT INTO {table} (email) VALUES ('a@example.com'), ('a@example.com')"))
            await wait_for(pilot, lambda: state.events >= 2 and state.lag_seconds is not None, what="events read")
            await pilot.pause()
            assert "live ● following · lag " in screen_text(app)
            assert "0 gaps" in screen_text(app)

            with admin.connect() as conn:  # break the stream: its backend ends
                conn.execute(sa.text("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                                     " WHERE slot_name LIKE 'dupewatch_live_%'"))
            await wait_for(pilot, lambda: state.gaps == 1, what="the gap counted")
            await wait_for(pilot, lambda: state.following, what="the stream followed again", timeout=20)
            await pilot.pause()
            assert "1 gap" in screen_text(app)
    finally:
        app.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        admin.dispose()


async def test_a_server_that_refuses_live_mode_says_so_once_and_the_check_keeps_polling(
        pg: Any, tmp_path: Path) -> None:
    with pg.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW wal_level")).scalar() != "logical", "needs the shared server (replica)"
    pg.execute("CREATE TABLE signup (id serial PRIMARY KEY, email text NOT NULL)",
               "INSERT INTO signup (email) VALUES ('x@example.com'), ('x@example.com')")
    config = config_from_dict({
        "databases": {"app": {"url": pg.url, "live": True}},
        "checks": [{"name": "signups", "database": "app", "table": "signup", "key": ["email"], "interval": "1h"}],
        "state": {"path": str(tmp_path / "state.sqlite")}})
    app = DashboardApp(config)
    try:
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_for(pilot, lambda: app.live_states["app"].polling == "refused", what="the refusal shown")
            await wait_for(pilot, lambda: all_ran(app), what="the check's run")
            await pilot.pause()
            assert "app · polling: refused" in screen_text(app)
            refusals = [n for n in app._notifications if n.title == "Live mode refused"]
            assert [n.message for n in refusals] == [
                "database app: live = true needs wal_level = logical (the server has replica): set it in "
                "postgresql.conf and restart the server, or remove live = true"]
            assert app.dashboard["signups"].last is not None and app.dashboard["signups"].last.groups == 1
    finally:
        app.stop()

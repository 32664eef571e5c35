"""A real daemon process scraped over HTTP (issue 18, items 20-21): a check's status against its thresholds and
its excess rows as a share of the rows it read, on every database, moving when the data does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import daemon_starter, free_port

from dbtest import write_config

STATUS, RATIO, SCANNED = "dupewatch_check_status", "dupewatch_duplicate_excess_ratio", "dupewatch_check_rows_scanned"


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def test_status_ratio_and_rows_follow_the_table(db, tmp_path: Path, start_daemon) -> None:
    db.execute("CREATE TABLE sub (id INTEGER PRIMARY KEY, email VARCHAR(32) NOT NULL)")
    db.execute("INSERT INTO sub VALUES (:id, :e)", params=[{"id": i, "e": f"u{i}"} for i in range(1, 199)] +
               [{"id": 199, "e": "u1"}, {"id": 200, "e": "u2"}])  # 2 excess rows of 200: 1%
    port = free_port()
    config = write_config(tmp_path / "dupewatch.toml", {"d": {"url": db.url}},
                          [{"name": "subs", "database": "d", "table": "sub", "key": ["email"], "interval": 0.5,
                            "warn_above": "0.5%", "fail_above": 5}],
                          metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "state.sqlite")})
    daemon = start_daemon(config, port)
    scrape = daemon.wait_for(lambda s: s.value(STATUS, "subs") is not None, "the first judged run")
    assert (scrape.value(STATUS, "subs"), scrape.value(RATIO, "subs"), scrape.value(SCANNED, "subs")) == \
        (1, 0.01, 200)  # 1% > 0.5%: warn
    db.execute("INSERT INTO sub VALUES (:id, :e)", params=[{"id": 200 + i, "e": "u3"} for i in range(1, 5)])
    scrape = daemon.wait_for(lambda s: s.value(STATUS, "subs") == 2, "6 excess rows to fail")
    assert (scrape.value(RATIO, "subs"), scrape.value(SCANNED, "subs")) == (6 / 204, 204)
    db.execute("DELETE FROM sub WHERE id > 198")
    scrape = daemon.wait_for(lambda s: s.value(STATUS, "subs") == 0, "a clean table to be ok")
    assert (scrape.value(RATIO, "subs"), scrape.value(SCANNED, "subs")) == (0, 198)

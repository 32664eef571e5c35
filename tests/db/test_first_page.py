"""A run that keeps its first page of groups returns the same page a fresh query would."""

from monitor.config import config_from_dict
from monitor.engine import Monitor


def _monitor(db, first_page_size, **check):
    config = config_from_dict({
        "databases": {"d": {"url": db.url}},
        "checks": [{"name": "t", "database": "d", "table": "t", "key": ["k", "j"], "timestamp": "ts", **check}],
    })
    monitor = Monitor(config, first_page_size=first_page_size)
    monitor.keep_first_page("t")
    return monitor


def _plant(db):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k VARCHAR(20), j INTEGER, ts TIMESTAMP NULL)")
    rows = []
    next_id = 1
    for group in range(7):
        for _ in range(2 + group % 3):
            rows.append({"id": next_id, "k": None if group == 3 else f"g{group}", "j": group % 2,
                         "ts": f"2026-01-0{1 + group % 5} 10:00:0{group % 6}"})
            next_id += 1
    rows.append({"id": next_id, "k": "single", "j": 0, "ts": "2026-01-01 00:00:00"})
    db.execute("INSERT INTO t (id, k, j, ts) VALUES (:id, :k, :j, :ts)", params=rows)


def test_run_keeps_first_page_equal_to_a_fresh_page(db):
    _plant(db)
    monitor = _monitor(db, first_page_size=3)
    try:
        result = monitor.run("t")
        cached = monitor.groups("t", limit=3)
        fresh = monitor.groups("t", limit=3, fresh=True)
    finally:
        monitor.close()
    assert (result.groups, result.excess_rows) == (7, 7 * 2 - 7 + sum(g % 3 for g in range(7)))
    assert cached == fresh
    assert cached.next_cursor is not None and len(cached.groups) == 3
    assert [g.rows for g in cached.groups] == sorted((g.rows for g in cached.groups), reverse=True)


def test_run_without_duplicates_keeps_an_empty_first_page(db):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k VARCHAR(20), j INTEGER, ts TIMESTAMP NULL)")
    db.execute("INSERT INTO t (id, k, j) VALUES (1, 'a', 1), (2, 'b', 1)")
    monitor = _monitor(db, first_page_size=5)
    try:
        result = monitor.run("t")
        page = monitor.groups("t", limit=5)
    finally:
        monitor.close()
    assert (result.status, result.groups, result.excess_rows) == ("ok", 0, 0)
    assert page.groups == [] and page.next_cursor is None


def test_only_the_checks_asked_for_keep_their_first_page(db, monkeypatch):
    _plant(db)
    monitor = _monitor(db, first_page_size=3)
    monitor.keep_first_page("another")
    try:
        monitor.run("t")
        fetched = []
        real = monitor._execute
        monkeypatch.setattr(monitor, "_execute", lambda *a: fetched.append(1) or real(*a))
        page = monitor.groups("t", limit=3)
    finally:
        monitor.close()
    assert fetched == [1], "the first page must be queried, not kept, for a check that was not asked for"
    assert len(page.groups) == 3

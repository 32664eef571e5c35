"""The engine finds planted duplicates on every dialect (a quick cross-dialect smoke test)."""

from monitor.config import config_from_dict
from monitor.engine import Monitor


def test_detects_planted_pair_on_every_dialect(db):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k VARCHAR(20))")
    db.execute("INSERT INTO t (id, k) VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    config = config_from_dict({
        "databases": {"d": {"url": db.url}},
        "checks": [{"name": "t", "database": "d", "table": "t", "key": ["k"]}],
    })
    monitor = Monitor(config)
    try:
        result = monitor.run("t")
    finally:
        monitor.close()
    assert (result.status, result.groups, result.excess_rows) == ("duplicates", 1, 1)


def test_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "typo" / "app.sqlite"
    config = config_from_dict({
        "databases": {"d": {"url": f"sqlite:///{missing}"}},
        "checks": [{"name": "t", "database": "d", "table": "t", "key": ["k"]}],
    })
    monitor = Monitor(config)
    try:
        result = monitor.run("t")
    finally:
        monitor.close()
    assert result.status == "error"
    assert "file not found" in (result.error or "")
    assert not missing.exists() and not missing.parent.exists()


def test_custom_query_columns_are_probed_once_not_on_every_run(db):
    from sqlalchemy import event

    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k VARCHAR(20))")
    db.execute("INSERT INTO t (id, k) VALUES (1, 'a'), (2, 'a'), (3, 'a')")
    config = config_from_dict({
        "databases": {"d": {"url": db.url}},
        "checks": [{"name": "c", "database": "d",
                    "sql": "SELECT k, COUNT(*) AS dup_count FROM t GROUP BY k HAVING COUNT(*) > 1"}],
    })
    monitor = Monitor(config)
    statements: list[str] = []
    event.listen(monitor.database("d").engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: statements.append(statement))
    try:
        results = [monitor.run("c") for _ in range(3)]
    finally:
        monitor.close()
    assert [(r.groups, r.excess_rows) for r in results] == [(1, 2)] * 3
    assert sum("dupewatch_probe" in s for s in statements) == 1

"""The engine finds planted duplicates on every dialect (a quick cross-dialect smoke test)."""

import pytest
from sqlalchemy.engine import make_url

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


@pytest.mark.parametrize("form", ["file:{path}?uri=true", "file:{path}?mode=ro&uri=true", "file://{path}?uri=1",
                                  "file:{path}"])
def test_a_missing_sqlite_file_named_as_a_uri_is_an_error_and_is_not_created(tmp_path, dupewatch, form):
    """SQLite's URI filenames (`file:PATH?uri=true`) skipped the check, and sqlite3 created an empty database (or,
    without `uri=true`, a file named `file:PATH`): detection wrote a file, and `audit` reported 0 tables."""
    missing = tmp_path / "app.sqlite"
    url = "sqlite:///" + form.format(path=missing)
    run = dupewatch("audit", "--url", url, cwd=tmp_path)
    assert run.code == 2 and "file not found" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.output
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_url_naming_a_directory_says_so(tmp_path, dupewatch):
    """It said "file not found: DIR" of a directory that is there."""
    run = dupewatch("audit", "--url", f"sqlite:///{tmp_path}")
    assert run.code == 2 and run.stderr.strip().endswith(f"{tmp_path} is a directory, not a database file"), run.output


def test_an_existing_sqlite_file_named_as_a_uri_is_read(sqlite_db, dupewatch):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)")
    path = make_url(sqlite_db.url).database
    run = dupewatch("audit", "--url", f"sqlite:///file:{path}?mode=ro&uri=true")
    assert run.code == 0 and "audited 1 table(s)" in run.stderr + run.stdout, run.output


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

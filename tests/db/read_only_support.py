"""Running a custom query or a table check's `where` as a check does, and asserting it was refused in one line."""

from __future__ import annotations

from typing import Any


def run_query(monitor_for: Any, db: Any, sql: str, **database: Any) -> Any:
    """The result of a check running `sql` as its custom query on `db`."""
    monitor = monitor_for({"d": {"url": db.url, **database}}, [{"name": "c", "database": "d", "sql": sql}])
    return monitor.run("c")


def run_where(monitor_for: Any, db: Any, where: str) -> Any:
    """The result of a table check of `victim` keyed on `k` with `where`."""
    monitor = monitor_for({"d": {"url": db.url}},
                          [{"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": where}])
    return monitor.run("w")


def assert_refused(result: Any, *words: str) -> None:
    """The check was refused as not allowed, in one line holding each of `words`."""
    assert result.status == "error", result
    assert "is not allowed in a check" in result.error, result.error
    assert all(word in result.error for word in words), result.error
    assert "\n" not in result.error


def assert_alive(session: Any) -> None:
    """`session` (a DB-API connection of another session) was not ended by what ran."""
    assert session.execute("SELECT 1").fetchone() == (1,)


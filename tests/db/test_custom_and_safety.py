"""Custom query checks, read-only enforcement and the statement timeout, on every dialect."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import write_config
from monitor.config import DatabaseConfig, load_config
from monitor.db import Database, DatabaseError
from monitor.engine import Monitor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def items(db):
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, k VARCHAR(10))")
    db.execute("INSERT INTO items VALUES (1, 'a'), (2, 'a'), (3, 'a'), (4, 'b'), (5, 'b'), (6, 'c')")
    return db


def run_sql(monitor_for: Any, db: Any, sql: str, **database: Any) -> Any:
    monitor = monitor_for({"d": {"url": db.url, **database}}, [{"name": "c", "database": "d", "sql": sql}])
    return monitor.run("c")


# -- custom query rules ------------------------------------------------------------------------------

def test_custom_query_counts_each_row_as_one_offence(items, monitor_for):
    result = run_sql(monitor_for, items, "SELECT k FROM items WHERE id IN (1, 4, 6)")
    assert (result.status, result.groups, result.excess_rows) == ("violations", 3, 3)  # a custom query finds violations


def test_custom_query_dup_count_weighs_excess_rows(items, monitor_for):
    sql = "SELECT k, COUNT(*) AS dup_count FROM items GROUP BY k HAVING COUNT(*) > 1"
    result = run_sql(monitor_for, items, sql)
    assert (result.status, result.groups, result.excess_rows) == ("violations", 2, 3)  # (3-1) + (2-1)


def test_custom_query_returning_nothing_is_ok(items, monitor_for):
    result = run_sql(monitor_for, items, "SELECT k, COUNT(*) AS dup_count FROM items WHERE id > 100 GROUP BY k")
    assert (result.status, result.groups, result.excess_rows, result.error) == ("ok", 0, 0, None)


def test_custom_query_file_with_comments_and_semicolon(items, tmp_path):
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "dups.sql").write_text(
        "-- duplicated keys\n/* a block comment */\nSELECT k, COUNT(*) AS dup_count\nFROM items\n"
        "GROUP BY k\nHAVING COUNT(*) > 1;\n\n", encoding="utf-8")
    config = write_config(tmp_path / "dw.toml", {"d": {"url": items.url}},
                          [{"name": "c", "database": "d", "query": "checks/dups.sql"}])
    monitor = Monitor(load_config(config))
    try:
        result = monitor.run("c")
        columns, rows = monitor.custom_rows("c")
    finally:
        monitor.close()
    assert (result.groups, result.excess_rows) == (2, 3)
    assert [c.lower() for c in columns] == ["k", "dup_count"]
    assert sorted((r[0], int(r[1])) for r in rows) == [("a", 3), ("b", 2)]


# -- read-only enforcement ----------------------------------------------------------------------------

WRITES = [
    "DELETE FROM items",
    "UPDATE items SET k = 'z'",
    "INSERT INTO items VALUES (99, 'x')",
    "DROP TABLE items",
    "  -- sneaky\n  delete from items where id > 0",
]


@pytest.mark.parametrize("sql", WRITES)
def test_custom_query_that_writes_fails_clearly_and_changes_nothing(items, monitor_for, sql):
    before = items.rows("SELECT id, k FROM items ORDER BY id")
    result = run_sql(monitor_for, items, sql)
    assert result.status == "error" and result.groups is None
    assert "check 'c'" in result.error and "read-only" in result.error
    assert items.rows("SELECT id, k FROM items ORDER BY id") == before


def test_cte_with_delete_is_refused_on_postgresql(pg, monitor_for):
    pg.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, k TEXT)",
               "INSERT INTO items VALUES (1, 'a'), (2, 'a')")
    result = run_sql(monitor_for, pg, "WITH gone AS (DELETE FROM items RETURNING id) SELECT id FROM gone")
    assert result.status == "error"
    assert result.error == "check 'c': custom query must be a SELECT, got DELETE inside WITH: checks run read-only"
    assert pg.scalar("SELECT COUNT(*) FROM items") == 2


def test_select_calling_a_writing_function_is_refused_on_postgresql(pg, monitor_for):
    pg.execute("CREATE SEQUENCE s")
    result = run_sql(monitor_for, pg, "SELECT nextval('s') AS n")
    assert result.status == "error"
    assert "nextval(regclass) is not allowed in a check: it is VOLATILE" in result.error
    assert pg.scalar("SELECT last_value FROM s") == 1 and not pg.scalar("SELECT is_called FROM s")


@pytest.mark.parametrize("statement", ["DELETE FROM items", "UPDATE items SET k = 'z'", "DROP TABLE items",
                                       "CREATE TABLE other (id INTEGER)", "ALTER TABLE items ADD COLUMN x INTEGER"])
def test_detection_connections_refuse_writes_and_ddl_at_the_database(items, statement):
    """Below the SELECT-only guard, the session itself is read-only (MariaDB included, for DDL too)."""
    database = Database("d", DatabaseConfig(url=items.url))
    before = items.rows("SELECT * FROM items ORDER BY id")
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught, database.read_only() as conn:
            conn.exec_driver_sql(statement)
        assert "refused a write, checks run read-only" in database.describe(caught.value)
    finally:
        database.dispose()
    assert items.rows("SELECT * FROM items ORDER BY id") == before
    tables = sa.inspect(items.engine).get_table_names()
    assert "items" in tables and "other" not in tables


# -- a pooled connection the server ended ---------------------------------------------------------------

SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
SESSION_ENDED = {"postgresql": "SELECT count(*) FROM pg_stat_activity WHERE pid = {id}",
                 "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"}
END_SESSION = {"postgresql": "SELECT pg_terminate_backend({id})", "mysql": "KILL CONNECTION {id}"}


@pytest.mark.parametrize("db", ["postgresql", "mysql"], indirect=True)
def test_a_pooled_connection_the_server_ended_is_replaced_by_the_next_run(items, monitor_for):
    """The server ends the session a check's pooled connection holds between two runs (a restart, `wait_timeout`,
    a DBA's kill): the ping at checkout (COM_PING on MariaDB/MySQL, `SELECT 1` elsewhere) finds it lost, and the
    run takes a new connection instead of failing."""
    monitor = monitor_for({"d": {"url": items.url}}, [{"name": "c", "database": "d", "table": "items", "key": ["k"]}])
    assert monitor.run("c").groups == 2
    engine = monitor.database_for("c").engine
    with engine.connect() as pooled:  # the connection the run returned to the pool
        session = int(pooled.exec_driver_sql(SESSION_ID[items.dialect]).scalar())
    items.execute(END_SESSION[items.dialect].format(id=session))
    deadline = time.monotonic() + 30
    while items.scalar(SESSION_ENDED[items.dialect].format(id=session)):
        assert time.monotonic() < deadline, "the server never ended the session"
        time.sleep(0.05)
    after = monitor.run("c")
    assert (after.status, after.groups, after.error) == ("duplicates", 2, None)
    with engine.connect() as pooled:
        assert int(pooled.exec_driver_sql(SESSION_ID[items.dialect]).scalar()) != session


# -- statement timeout ----------------------------------------------------------------------------------

SLOW_SQL = {
    "postgresql": "SELECT pg_sleep(20) AS slept",
    "mysql": "SELECT SLEEP(20) AS slept",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
              "SELECT COUNT(*) AS n FROM c",
}


def test_statement_timeout_stops_a_slow_query_with_a_clear_message(items, monitor_for):
    monitor = monitor_for({"d": {"url": items.url, "statement_timeout": "1s"}}, [
        {"name": "slow", "database": "d", "sql": SLOW_SQL[items.dialect]},
        {"name": "fine", "database": "d", "table": "items", "key": ["k"]},
    ])
    started = time.monotonic()
    result = monitor.run("slow")
    assert time.monotonic() - started < 10
    assert result.status == "error"
    assert "query exceeded statement_timeout (1s)" in result.error
    # the pooled connection is still usable afterwards
    after = monitor.run("fine")
    assert (after.status, after.groups) == ("duplicates", 2)


def test_describe_never_leaks_the_password():
    database = Database("d", DatabaseConfig(url="postgresql+psycopg://u:Sup3r-Secret@127.0.0.1:1/x"))
    try:
        with pytest.raises(DatabaseError) as caught, database.read_only():
            pass
    finally:
        database.dispose()
    assert "Sup3r-Secret" not in str(caught.value) and "***" in str(caught.value)


def test_custom_query_and_where_with_a_percent_sign_run_as_written(items, monitor_for):
    """`%` is not a placeholder: custom SQL (and the statements that vet it) reach the driver with no parameters."""
    items.execute("INSERT INTO items VALUES (7, '10%'), (8, '10%')")
    monitor = monitor_for({"d": {"url": items.url}}, [
        {"name": "c", "database": "d", "sql": "SELECT k FROM items WHERE k LIKE '%!%%' ESCAPE '!' OR k = 'a'"},
        {"name": "w", "database": "d", "table": "items", "key": ["k"], "where": "k LIKE '1%' OR k = '10%'"}])
    custom = monitor.run("c")
    assert (custom.status, custom.groups, custom.error) == ("violations", 5, None)
    result = monitor.run("w")
    assert (result.status, result.groups, result.excess_rows, result.error) == ("duplicates", 1, 1, None)

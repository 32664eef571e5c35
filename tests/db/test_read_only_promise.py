"""The read-only promise cannot be escaped: one statement per call, read-only sessions reset when they return to
the pool, known side effects refused, every statement bounded by the client too, abandoned queries cancelled."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pymysql
import pymysql.connections
import pytest
import sqlalchemy as sa
from pymysql.constants import COMMAND, SERVER_STATUS
from sqlalchemy.engine import make_url

from monitor.config import DatabaseConfig
from monitor.db import Database

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def victim(db):
    db.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))")
    db.execute("INSERT INTO victim (id, k) VALUES (:id, 'x')", params=[{"id": i} for i in range(1, 101)])
    return db


def run_sql(monitor_for: Any, db: Any, sql: str, **database: Any) -> Any:
    monitor = monitor_for({"d": {"url": db.url, **database}}, [{"name": "c", "database": "d", "sql": sql}])
    return monitor.run("c")


def wait_until(condition: Any, timeout: float, what: str) -> float:
    """Poll `condition` until true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what} within {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - started


# -- one statement per call -------------------------------------------------------------------------------

def test_postgresql_custom_query_cannot_smuggle_a_write_in_a_second_statement(pg, monitor_for):
    pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY)", "INSERT INTO victim SELECT generate_series(1, 100)")
    sql = ("SELECT 1 AS a) z; COMMIT; BEGIN READ WRITE; DELETE FROM victim WHERE id <= 50; COMMIT; "
           "SELECT * FROM (SELECT 1 AS a")
    result = run_sql(monitor_for, pg, sql)
    assert result.status == "error"
    assert "multiple commands" in result.error and "\n" not in result.error
    assert pg.scalar("SELECT count(*) FROM victim") == 100


def test_postgresql_custom_query_cannot_lift_the_timeout_with_a_second_statement(pg, monitor_for):
    started = time.monotonic()
    result = run_sql(monitor_for, pg, "SELECT 1 AS a) z; SET statement_timeout = 0; SELECT pg_sleep(20) AS s; "
                                      "SELECT * FROM (SELECT 1 AS a", statement_timeout="3s")
    assert result.status == "error" and "multiple commands" in result.error
    assert time.monotonic() - started < 3


def test_postgresql_session_is_read_only_even_for_a_new_transaction(pg):
    pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY)")
    database = Database("d", DatabaseConfig(url=pg.url))
    try:
        with database.read_only() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            conn.rollback()
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                conn.exec_driver_sql("INSERT INTO victim VALUES (1)")
    finally:
        database.dispose()
    assert pg.scalar("SELECT count(*) FROM victim") == 0


# -- session state is reset when a connection returns to the pool -------------------------------------------

def test_postgresql_settings_and_advisory_locks_do_not_survive_the_pool(pg):
    database = Database("d", DatabaseConfig(url=pg.url, statement_timeout="4s"))
    try:
        with database.read_only() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            conn.exec_driver_sql("SELECT pg_advisory_lock(4242)")
            conn.exec_driver_sql("SELECT set_config('default_transaction_read_only', 'off', false), "
                                 "set_config('statement_timeout', '0', false)")
        assert pg.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242") == 0
        with database.read_only() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid  # the same, pooled session
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "4s"
    finally:
        database.dispose()


def test_mysql_named_locks_do_not_survive_the_pool(mysql):
    name = f"dw_{uuid.uuid4().hex[:8]}"
    database = Database("d", DatabaseConfig(url=mysql.url))
    try:
        with database.read_only() as conn:
            assert conn.exec_driver_sql(f"SELECT GET_LOCK('{name}', 0)").scalar() == 1
        assert mysql.scalar(f"SELECT IS_FREE_LOCK('{name}')") == 1
    finally:
        database.dispose()


def test_mysql_a_read_only_block_ends_its_session_itself_under_its_deadline(mysql, monkeypatch):
    """`Database.read_only` releases named locks and then rolls back once, both while the client-side deadline
    watches the connection; the pool's reset sends nothing after them: four commands a checkout where five were
    sent (the block's rollback, then the release and the pool's rollback outside the deadline)."""
    name = f"dw_{uuid.uuid4().hex[:8]}"
    database = Database("d", DatabaseConfig(url=mysql.url))
    sent: list[tuple[str, bool]] = []
    original = pymysql.connections.Connection._execute_command

    def recording(self: Any, command: int, sql: Any) -> Any:
        text = sql if isinstance(sql, str) else bytes(sql).decode()
        sent.append(("ping" if command == COMMAND.COM_PING else text, bool(database._watches)))
        return original(self, command, sql)

    try:
        with database.read_only() as conn:  # connects (the session's settings): not counted
            conn.exec_driver_sql("SELECT 1").close()
        monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", recording)
        with database.read_only() as conn:
            assert conn.exec_driver_sql(f"SELECT GET_LOCK('{name}', 0)").scalar() == 1
        assert sent == [("ping", True), (f"SELECT GET_LOCK('{name}', 0)", True),
                        ("DO RELEASE_ALL_LOCKS()", True), ("ROLLBACK", True)]
        monkeypatch.undo()
        assert mysql.scalar(f"SELECT IS_FREE_LOCK('{name}')") == 1
        assert not in_transaction(database)
    finally:
        database.dispose()


def in_transaction(database: Database) -> bool:
    """Whether the server said a transaction was open after the last command the pool sent on its connection."""
    pooled = database.engine.raw_connection()
    try:
        return bool(pooled.dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)
    finally:
        pooled.close()


def test_mysql_sessions_return_to_the_pool_with_their_locks_released_and_no_transaction_open(mysql):
    """The pool's reset releases named locks and ends the transaction `RELEASE_ALL_LOCKS()` opens, whether the
    connection's transaction was rolled back before it returned (`Database.read_only`: the pool's own rollback
    ends it) or closed with it (the dialect's rollback does)."""
    name = f"dw_{uuid.uuid4().hex[:8]}"
    database = Database("d", DatabaseConfig(url=mysql.url))
    try:
        with database.read_only() as conn:
            assert conn.exec_driver_sql(f"SELECT GET_LOCK('{name}', 0)").scalar() == 1
        with database.engine.connect() as conn:  # closed with its transaction open
            assert conn.exec_driver_sql(f"SELECT GET_LOCK('{name}_2', 0)").scalar() == 1
        assert mysql.scalar(f"SELECT IS_FREE_LOCK('{name}') AND IS_FREE_LOCK('{name}_2')") == 1
        raw = database.engine.raw_connection()  # the probe itself sees a transaction left open
        try:
            raw.cursor().execute("START TRANSACTION READ ONLY")
            assert bool(raw.dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)
        finally:
            raw.dbapi_connection.rollback()
            raw.close()
        with database.read_only() as conn:  # rolled back before it returns: the pool's rollback follows
            conn.exec_driver_sql("SELECT 1").close()
        assert not in_transaction(database)
        with database.engine.connect() as conn:  # closed with its transaction open: the dialect rolls back
            conn.exec_driver_sql("SELECT 1").close()
        assert not in_transaction(database)
    finally:
        database.dispose()


# -- known side effects are refused (by the server's reading of the statement: test_read_only_spellings.py) -------

REFUSED = {
    "postgresql": [
        ("SELECT lo_export(1, '/tmp/x') AS a", "lo_export("),
        ("SELECT pg_terminate_backend(pid) AS a FROM pg_stat_activity", "pg_terminate_backend("),
        ('SELECT "pg_catalog"."pg_advisory_lock"(4242) AS a', "pg_advisory_lock("),
        ("SELECT set_config('statement_timeout', '0', false) AS a", "set_config("),
        ("SELECT * FROM victim FOR UPDATE", "FOR UPDATE"),
        ("SELECT query_to_xml('DELETE FROM victim', true, true, '') AS a", "query_to_xml("),
        ("SELECT nextval('victim_seq') AS a", "nextval("),
        ("SELECT txid_current() AS a", "txid_current("),
    ],
    "mysql": [
        ("SELECT * FROM victim LOCK IN SHARE MODE", "LOCK IN SHARE MODE"),
        ("SELECT GET_LOCK('x', 0) AS a", "GET_LOCK("),
        ("SELECT LOAD_FILE('/etc/passwd') AS a", "LOAD_FILE("),
        ("SELECT BENCHMARK(100000000, MD5('x')) AS a", "BENCHMARK("),
        ("SELECT MASTER_POS_WAIT('x', 4, 10) AS a", "MASTER_POS_WAIT("),
    ],
    "sqlite": [
        ("SELECT length(randomblob(100000000)) AS a", "randomblob("),
        ("SELECT length(zeroblob(100000000)) AS a", "zeroblob("),
        ("SELECT load_extension('x') AS a", "load_extension("),
    ],
}


def test_custom_queries_calling_known_side_effects_are_refused_in_one_line(victim, monitor_for):
    if victim.dialect == "postgresql":
        victim.execute("CREATE SEQUENCE victim_seq")
    for sql, shown in REFUSED[victim.dialect]:
        result = run_sql(monitor_for, victim, sql)
        assert result.status == "error", sql
        assert "is not allowed in a check" in result.error and shown.lower() in result.error.lower(), result.error
        assert "\n" not in result.error
    assert victim.scalar("SELECT count(*) FROM victim") == 100


def test_mysql_for_update_is_refused_by_the_read_only_transaction(mysql, monitor_for):
    mysql.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY)")
    result = run_sql(monitor_for, mysql, "SELECT * FROM victim FOR UPDATE")
    assert result.status == "error" and "READ ONLY transaction" in result.error and "\n" not in result.error


def test_a_where_calling_a_side_effect_is_refused_naming_the_check(victim, monitor_for):
    where = {"postgresql": "pg_terminate_backend(42) IS NOT NULL", "mysql": "GET_LOCK('x', 0) = 1",
             "sqlite": "length(randomblob(100000000)) > 0"}[victim.dialect]
    monitor = monitor_for({"d": {"url": victim.url}},
                          [{"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": where}])
    result = monitor.run("w")
    assert result.status == "error"
    assert result.error.startswith("check 'w': where: ") and "is not allowed in a check" in result.error


def test_the_names_of_refused_functions_inside_comments_are_harmless(victim, monitor_for):
    sql = ("SELECT k /* no pg_terminate_backend( GET_LOCK( randomblob( here */ FROM victim WHERE k = 'none' "
           "-- nor GET_LOCK(\n")
    result = run_sql(monitor_for, victim, sql)
    assert (result.status, result.error) == ("ok", None)


@pytest.mark.parametrize("server", ["pg", "sqlite_db"])
def test_the_names_of_refused_functions_inside_strings_are_harmless(server, request, monitor_for):
    db = request.getfixturevalue(server)
    db.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))")
    result = run_sql(monitor_for, db, "SELECT k FROM victim WHERE k = 'FOR UPDATE randomblob(1)'")
    assert (result.status, result.error) == ("ok", None)


def test_mysql_refuses_a_call_spelled_inside_a_string(mysql, monitor_for):
    """MariaDB prints some string literals unescaped in its reading of a statement (`_utf8mb4'\\'`), so that
    reading is not lexed: a `name(` inside a string is refused rather than risk missing a call, when the server
    resolves a function of that name (a name it resolves to none cannot be a call anywhere in the statement)."""
    mysql.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))")
    result = run_sql(monitor_for, mysql, "SELECT k FROM victim WHERE k = 'get_lock(1)'")
    assert result.status == "error" and "get_lock() is not allowed in a check" in result.error
    unknown = run_sql(monitor_for, mysql, "SELECT k FROM victim WHERE k = 'randomblob(1)'")
    assert (unknown.status, unknown.error) == ("ok", None)


# -- the client-side deadline and cancellation ----------------------------------------------------------------

SLEEP = {"postgresql": "SELECT pg_sleep(30) AS {marker}", "mysql": "SELECT SLEEP(30) AS {marker}",
         "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000000) "
                   "SELECT COUNT(*) AS {marker} FROM c"}


def running_queries(db: Any, marker: str) -> int:
    if db.dialect == "postgresql":
        return int(db.scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE :q "
                             "AND pid <> pg_backend_pid()", {"q": f"%{marker}%"}))
    return int(db.scalar("SELECT count(*) FROM information_schema.processlist WHERE info LIKE :q "
                         "AND id <> CONNECTION_ID()", {"q": f"%{marker}%"}))


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_cancel_running_frees_the_server_within_2_seconds(server, request, monitor_for):
    db = request.getfixturevalue("pg" if server == "postgresql" else "mysql")
    marker = f"dw_cancel_{uuid.uuid4().hex[:8]}"
    monitor = monitor_for({"d": {"url": db.url, "statement_timeout": "60s"}},
                          [{"name": "slow", "database": "d", "sql": SLEEP[server].format(marker=marker)}])
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(monitor.run("slow")))
    worker.start()
    wait_until(lambda: running_queries(db, marker) == 1, 20, "the slow query to start")
    started = time.monotonic()
    assert monitor.database("d").cancel_running() == 1
    wait_until(lambda: running_queries(db, marker) == 0, 2, "the server to be free of the query")
    worker.join(5)
    assert time.monotonic() - started < 2.5
    assert results[0].status == "error" and "query cancelled, connection discarded" in results[0].error


def test_sqlite_cancel_running_interrupts_the_statement(sqlite_db, monitor_for):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    monitor = monitor_for({"d": {"url": sqlite_db.url, "statement_timeout": "60s"}},
                          [{"name": "slow", "database": "d", "sql": SLEEP["sqlite"].format(marker="n")}])
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(monitor.run("slow")))
    worker.start()
    database = monitor.database("d")
    wait_until(lambda: bool(database._watches), 10, "the check to check out its connection")
    started = time.monotonic()
    database.cancel_running()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 2
    assert results[0].status == "error" and "query cancelled" in results[0].error


def test_mysql_a_detection_read_locks_no_row_under_a_serializable_default(mysql):
    """Under a server's SERIALIZABLE default (here the session's, as it starts: `init_command`) InnoDB adds LOCK IN
    SHARE MODE to every read of a transaction, READ ONLY ones too: a check's scan held shared locks on the rows it
    read, and the application's UPDATE of one waited (`Lock wait timeout exceeded`) until the check's transaction
    ended. Detection sessions read at REPEATABLE READ, consistently, locking nothing."""
    mysql.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10)) ENGINE=InnoDB",
                  "INSERT INTO victim (id, k) VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    url = make_url(mysql.url).update_query_dict(
        {"init_command": "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"})
    database = Database("d", DatabaseConfig(url=url.render_as_string(hide_password=False)))
    plain = make_url(mysql.url)
    writer = pymysql.connect(host=plain.host, port=plain.port or 3306, user=plain.username,
                             password=plain.password or "", database=plain.database, autocommit=True)
    try:
        with database.read_only() as conn:
            assert conn.exec_driver_sql("SELECT k, COUNT(*) FROM victim GROUP BY k").all() == [("a", 2), ("b", 1)]
            with writer.cursor() as cursor:  # while the check's transaction is open
                cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
                assert cursor.execute("UPDATE victim SET k = 'c' WHERE id = 1") == 1
    finally:
        writer.close()
        database.dispose()


def test_postgresql_a_check_fails_no_application_transaction_under_a_serializable_default(pg, monitor_for):
    """A role or database defaulting to SERIALIZABLE (here the connection's options, as a role's setting would) made
    each check's read a serializable one, with predicate locks: a report-like check reading `control` and `receipts`
    between two of the application's serializable transactions (the read-only anomaly) made the application's
    commit fail (`could not serialize access due to read/write dependencies among transactions`). Detection
    sessions read at PostgreSQL's own default, READ COMMITTED."""
    pg.execute("CREATE TABLE control (deposit_no INTEGER)", "INSERT INTO control VALUES (1)",
               "CREATE TABLE receipts (batch INTEGER, amount INTEGER)")
    url = make_url(pg.url)
    serializable = url.update_query_dict({"options": f"{url.query.get('options', '')} "
                                                     "-c default_transaction_isolation=serializable"})
    plain = url.set(drivername="postgresql", query={})
    options = str(url.query.get("options", ""))
    app = psycopg.connect(plain.render_as_string(hide_password=False), options=options)
    other = psycopg.connect(plain.render_as_string(hide_password=False), options=options, autocommit=True)
    try:
        app.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        batch = app.execute("SELECT deposit_no FROM control").fetchone()[0]
        app.execute("INSERT INTO receipts VALUES (%s, 100)", (batch,))
        with other.transaction():
            other.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            other.execute("UPDATE control SET deposit_no = deposit_no + 1")
        monitor = monitor_for({"d": {"url": serializable.render_as_string(hide_password=False)}}, [
            {"name": "c", "database": "d", "sql": "SELECT r.batch AS k, 2 AS dup_count FROM control c, receipts r "
                                                  "WHERE r.batch = c.deposit_no - 1"}])
        assert monitor.run("c").status == "ok"
        app.execute("COMMIT")  # raised SerializationFailure
    finally:
        app.close()
        other.close()

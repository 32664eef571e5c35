"""The read-only promise is decided by the server's own reading of a statement, so no spelling gets a refused call
past it: each case here passed the old lexer (an adversarial run, issue 16) or hides from `EXPLAIN (VERBOSE)`.

A custom query and a table check's `where` (which the fix also runs, on its writable connection) are vetted alike.
"""

from __future__ import annotations

import resource
import time
import uuid
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import PG_URL, TestDatabase, write_config
from fix_support import run_cli
from monitor.config import DatabaseConfig
from monitor.db import Database
from monitor.detect import CheckDefinitionError
from monitor.dialects.mysql import MySQL
from read_only_support import run_query, run_where

pytestmark = pytest.mark.timeout(120)


def assert_refused(result: Any, call: str) -> None:
    assert result.status == "error", result
    assert "is not allowed in a check" in result.error and call in result.error.lower(), result.error
    assert "\n" not in result.error


def make_victim(db: Any, *statements: str, rows: bool = True) -> Any:
    """The table every check here reads (`victim`: key `k`, 'a' twice), then `statements`; returns `db`."""
    db.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))", *statements)
    if rows:
        db.execute("INSERT INTO victim (id, k) VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    return db


@pytest.fixture
def victim_table(request: Any) -> Any:
    """`victim` in the database fixture named by the parameter (indirect parametrization)."""
    return make_victim(request.getfixturevalue(request.param))


# -- PostgreSQL ------------------------------------------------------------------------------------------------

PG_SPELLINGS = {
    "unicode-escaped name": ('SELECT U&"pg\\005fterminate\\005fbackend"({pid}) AS a', "pg_terminate_backend("),
    "-- inside a quoted alias": ('SELECT 1 AS "x--", pg_terminate_backend({pid}) AS a', "pg_terminate_backend("),
    "quote inside a quoted alias": ("SELECT 1 AS \"it's\", pg_terminate_backend({pid}) AS a, 'x' AS b",
                                    "pg_terminate_backend("),
    "E'\\'' string": ("SELECT E'\\'' AS a, pg_terminate_backend({pid}) AS b, 'x' AS c", "pg_terminate_backend("),
    "$ in identifiers": ("SELECT 1 AS a$q$, pg_terminate_backend({pid}) AS b$q$", "pg_terminate_backend("),
}


@pytest.mark.parametrize("victim_table", ["pg"], indirect=True)
@pytest.mark.parametrize("spelling", PG_SPELLINGS)
def test_postgresql_custom_query_spelling_cannot_call_a_refused_function(victim_table, other_session, spelling,
                                                                         monitor_for):
    pid = other_session.info.backend_pid
    sql, call = PG_SPELLINGS[spelling]
    assert_refused(run_query(monitor_for, victim_table, sql.format(pid=pid)), call)
    assert other_session.execute("SELECT 1").fetchone() == (1,)  # the other session is alive


PG_WHERE_SPELLINGS = {
    "unicode-escaped name": ('U&"pg\\005fadvisory\\005flock"(4242) IS NOT NULL', "pg_advisory_lock("),
    "-- inside a quoted alias": ('EXISTS (SELECT 1 AS "x--" WHERE pg_advisory_lock(4242) IS NOT NULL)',
                                 "pg_advisory_lock("),
    "quote inside a quoted alias": ("EXISTS (SELECT 1 AS \"it's\" WHERE pg_advisory_lock(4242) IS NOT NULL) "
                                    "AND k <> 'x'", "pg_advisory_lock("),
    "E'\\'' string": ("k <> E'\\'' AND pg_advisory_lock(4242) IS NOT NULL AND k <> 'x'", "pg_advisory_lock("),
    "$ in identifiers": ("EXISTS (SELECT a$q$ FROM (SELECT pg_advisory_lock(4242) AS a$q$) AS t)",
                         "pg_advisory_lock("),
}


@pytest.fixture
def pg_objects(pg):
    """A VOLATILE function of the application's, an operator and a view that call it: nothing in a statement
    using them names a refused function."""
    return make_victim(pg,
                       "CREATE FUNCTION grab(n integer) RETURNS integer VOLATILE LANGUAGE plpgsql "
                       "AS 'BEGIN PERFORM pg_advisory_lock(n); RETURN n; END'",
                       "CREATE FUNCTION grab_eq(a integer, b integer) RETURNS boolean VOLATILE LANGUAGE plpgsql "
                       "AS 'BEGIN RETURN pg_try_advisory_lock(a) AND a = b; END'",
                       "CREATE OPERATOR === (LEFTARG = integer, RIGHTARG = integer, FUNCTION = grab_eq)",
                       "CREATE VIEW grabbing AS SELECT id, k, pg_try_advisory_lock(id) AS locked FROM victim")


PG_HIDDEN = {
    "a function of the application's": ("SELECT grab(4242) AS a", "grab(integer)"),
    "an operator": ("SELECT k FROM victim WHERE id === 4242", "grab_eq(integer,integer)"),
    "a view": ("SELECT k FROM grabbing", "pg_try_advisory_lock(bigint)"),
    "LIMIT, which EXPLAIN (VERBOSE) does not show": ("SELECT k FROM victim LIMIT grab(1)", "grab(integer)"),
    "VALUES, which EXPLAIN (VERBOSE) does not show": ("SELECT * FROM (VALUES (grab(1)), (2)) AS v(a)",
                                                      "grab(integer)"),
    "a window frame, which EXPLAIN (VERBOSE) does not show": (
        "SELECT count(*) OVER (ORDER BY id ROWS BETWEEN grab(1) PRECEDING AND CURRENT ROW) AS n FROM victim",
        "grab(integer)"),
}


@pytest.mark.parametrize("hidden", PG_HIDDEN)
def test_postgresql_a_call_the_statement_does_not_name_is_refused(pg_objects, hidden, monitor_for):
    sql, call = PG_HIDDEN[hidden]
    assert_refused(run_query(monitor_for, pg_objects, sql), call)


@pytest.fixture
def pg_domains():
    """A database of its own (a domain's CHECK is refused database-wide, so the shared test database, where other
    tests run, must not hold one): `victim`, a VOLATILE `grab`, domains whose CHECK calls it (one through the
    other), a row type holding one, and a domain whose CHECK calls nothing volatile."""
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        yield make_victim(TestDatabase("postgresql", url, engine, None),
                          "CREATE FUNCTION grab(n integer) RETURNS boolean VOLATILE LANGUAGE plpgsql "
                          "AS 'BEGIN PERFORM pg_advisory_lock(n); RETURN true; END'",
                          "CREATE DOMAIN positive AS integer CHECK (VALUE > 0 AND abs(VALUE) < 1000000)",
                          "CREATE DOMAIN grabbed AS integer CHECK (grab(VALUE))",
                          "CREATE DOMAIN grabbed_inside AS integer CHECK (CAST(VALUE AS grabbed) > 0)",
                          "CREATE TYPE holder AS (a grabbed_inside)")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


PG_DOMAIN_CHECKS = {
    "a cast to the domain": "SELECT CAST(id AS grabbed) AS a FROM victim",
    "a row literal, parsed (and its domain checked) before the EXPLAIN that vets it":
        "SELECT 1 AS a WHERE ('(4242)'::holder).a IS NOT NULL",
    "a JSON function filling the row type": "SELECT 1 AS a WHERE (jsonb_populate_record(NULL::holder, "
                                            "'{\"a\": 4242}')).a IS NOT NULL",
    "a column definition list": "SELECT a FROM jsonb_to_record('{\"a\": 4242}') AS x(a grabbed_inside) "
                                "WHERE a IS NOT NULL",
    "nothing of the domain's": "SELECT k, count(*) AS dup_count FROM victim GROUP BY k",
}


@pytest.mark.parametrize("spelling", PG_DOMAIN_CHECKS)
def test_postgresql_a_domain_whose_check_calls_a_volatile_function_refuses_custom_sql(pg_domains, spelling,
                                                                                      monitor_for):
    result = run_query(monitor_for, pg_domains, PG_DOMAIN_CHECKS[spelling])
    assert_refused(result, "grab(integer)")
    assert "domain grabbed" in result.error


def test_postgresql_a_domain_whose_check_calls_a_volatile_function_refuses_a_where(pg_domains, monitor_for):
    assert_refused(run_where(monitor_for, pg_domains, "CAST(id AS grabbed) > 0"), "grab(integer)")


@pytest.mark.xfail(strict=True, reason="a domain's CHECK calling a function declared IMMUTABLE or STABLE whose body "
                   "PostgreSQL does not parse (PL/pgSQL) is taken at its declaration before the statement is parsed "
                   "(refusing it would stop every custom check on the database), and parsing an array or row "
                   "literal of the domain runs that CHECK: the function ran inside the vetting's Parse, before the "
                   "refusal that follows from the plan (measured on PostgreSQL 15: an advisory lock taken, a session "
                   "terminated). Kept (issue 16): no reading of a statement comes before its parse")
def test_postgresql_a_domain_check_declared_immutable_does_not_run_while_the_statement_is_vetted(own_pg, other_session,
                                                                                              monitor_for):
    """`'{pid}'::d[]` parses each element through the domain's input, running its CHECK, a PL/pgSQL function that
    says IMMUTABLE and terminates the session it is given."""
    make_victim(own_pg, "CREATE FUNCTION dw_lies(v integer) RETURNS boolean IMMUTABLE LANGUAGE plpgsql "
                        "AS 'BEGIN PERFORM pg_terminate_backend(v); RETURN true; END'",
                "CREATE DOMAIN dw_lying AS integer CHECK (dw_lies(VALUE))")
    pid = other_session.info.backend_pid
    result = run_query(monitor_for, own_pg, f"SELECT 1 AS a WHERE '{{{pid}}}'::dw_lying[] IS NOT NULL")
    assert result.status == "error", result
    assert other_session.execute("SELECT 1").fetchone() == (1,)  # the other session is alive


def test_postgresql_a_domain_whose_check_calls_nothing_volatile_is_allowed(pg, monitor_for):
    make_victim(pg, "CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 5 AND VALUE ~ '^[a-z]')")
    sql = "SELECT CAST(k AS short_text) AS k, count(*) AS dup_count FROM victim GROUP BY 1 HAVING count(*) > 1"
    result = run_query(monitor_for, pg, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


def test_postgresql_allows_stable_functions_and_harmless_volatile_ones(pg, monitor_for):
    pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10), at TIMESTAMPTZ DEFAULT now())",
               "INSERT INTO victim (id, k) VALUES (1, 'a'), (2, 'a')")
    sql = ("SELECT lower(k) AS k, count(*) AS dup_count, max(at) AS last, random() AS r, clock_timestamp() AS c "
           "FROM victim WHERE at <= now() AND k ~ '^a' AND k = ANY (ARRAY['a', 'b']) GROUP BY lower(k) "
           "HAVING count(*) > 1 ORDER BY 1 LIMIT 10")
    result = run_query(monitor_for, pg, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


@pytest.fixture
def pg_hidden_runners(pg):
    """A VOLATILE function of the application's reached without a call the statement's plan holds: an operator the
    count of a custom query resolves by the type of its `dup_count`, a cast to json the JSON builders run, and a
    view that functions running a query of their own read."""
    grab = "BEGIN PERFORM pg_advisory_lock(4242); RETURN {}; END"
    return make_victim(pg,
                       "CREATE TYPE grabby AS (n integer)",
                       f"CREATE FUNCTION grab_minus(a grabby, b integer) RETURNS integer VOLATILE LANGUAGE plpgsql "
                       f"AS '{grab.format('a.n - b')}'",
                       "CREATE OPERATOR - (LEFTARG = grabby, RIGHTARG = integer, FUNCTION = grab_minus)",
                       "CREATE TYPE mood AS ENUM ('calm')",
                       f"CREATE FUNCTION grab_json(m mood) RETURNS json VOLATILE LANGUAGE plpgsql "
                       f"AS '{grab.format('to_json(m::text)')}'",
                       "CREATE CAST (mood AS json) WITH FUNCTION grab_json(mood)",
                       f"CREATE FUNCTION grab_text(m mood) RETURNS text VOLATILE LANGUAGE plpgsql "
                       f"AS '{grab.format('m::varchar')}'",
                       "CREATE CAST (mood AS text) WITH FUNCTION grab_text(mood)",
                       "CREATE VIEW grabbing AS SELECT id, k, pg_try_advisory_lock(id) AS locked FROM victim")


PG_HIDDEN_RUNNERS = {
    "an operator only the count calls (SUM(dup_count - 1))":
        ("SELECT k, ROW(2)::grabby AS dup_count FROM victim", "grab_minus(grabby,integer)"),
    "a cast to json run by to_json": ("SELECT to_json('calm'::mood) AS j", "grab_json(mood)"),
    "a cast to json run by json_build_object": ("SELECT json_build_object('m', 'calm'::mood) AS j",
                                                "grab_json(mood)"),
    "a cast to json run by json_agg": ("SELECT json_agg(CAST('calm' AS mood)) AS j FROM victim", "grab_json(mood)"),
    "table_to_xml reading a view": ("SELECT table_to_xml('grabbing', true, false, '') AS x",
                                    "table_to_xml(regclass,boolean,boolean,text)"),
    "schema_to_xml reading every view": ("SELECT schema_to_xml(current_schema(), true, false, '') AS x",
                                         "schema_to_xml(name,boolean,boolean,text)"),
    "database_to_xml reading every view": ("SELECT database_to_xml(true, false, '') AS x",
                                           "database_to_xml(boolean,boolean,text)"),
}


@pytest.mark.parametrize("spelling", PG_HIDDEN_RUNNERS)
def test_postgresql_a_call_run_outside_the_plan_is_refused(pg_hidden_runners, spelling, monitor_for):
    sql, call = PG_HIDDEN_RUNNERS[spelling]
    assert_refused(run_query(monitor_for, pg_hidden_runners, sql), call)


def test_postgresql_a_cast_to_text_only_the_page_of_rows_calls_is_refused(pg_hidden_runners, monitor_for):
    """The dashboard's list of a custom query's rows measures each value as it will be sent, `octet_length(CAST(v
    AS text))`: for a type of the database's own, a cast to text it defines, called by no statement of the count."""
    monitor = monitor_for({"d": {"url": pg_hidden_runners.url}},
                          [{"name": "c", "database": "d", "sql": "SELECT k, 'calm'::mood AS m FROM victim"}])
    assert monitor.run("c").status == "violations"  # the count casts nothing to text
    with pytest.raises(CheckDefinitionError, match="is not allowed in a check") as refused:
        monitor.custom_rows("c")
    assert "grab_text(mood)" in str(refused.value) and "\n" not in str(refused.value)


def test_postgresql_a_where_cannot_reach_a_view_through_table_to_xml(pg_hidden_runners, monitor_for):
    where = "table_to_xml('grabbing', true, false, '') IS NOT NULL"
    assert_refused(run_where(monitor_for, pg_hidden_runners, where), "table_to_xml(")


PG_EXTENSION_QUERIES = {
    "tablefunc": ("SELECT * FROM crosstab('SELECT k::text, k::text, pg_try_advisory_lock(4242)::text FROM victim "
                  "ORDER BY 1') AS ct(k text, a text)", "crosstab(text)"),
    "xml2": ("SELECT * FROM xpath_table('id', 'x', '(SELECT id, ''<a/>'' AS x FROM victim "
             "WHERE pg_try_advisory_lock(4242)) AS v', '/a', 'true') AS t(id integer, a text)",
             "xpath_table(text,text,text,text,text)"),
}


@pytest.mark.parametrize("extension", PG_EXTENSION_QUERIES)
def test_postgresql_an_extension_function_running_sql_text_is_refused(pg, extension, monitor_for):
    make_victim(pg, f'CREATE EXTENSION {extension} SCHEMA "{pg.schema}"')
    sql, call = PG_EXTENSION_QUERIES[extension]
    assert_refused(run_query(monitor_for, pg, sql), call)


def test_postgresql_to_json_of_a_type_without_a_volatile_cast_is_allowed(pg, monitor_for):
    make_victim(pg, "CREATE TYPE mood AS ENUM ('calm')")
    sql = ("SELECT k, count(*) AS dup_count, json_agg(to_json('calm'::mood)) AS j FROM victim GROUP BY k "
           "HAVING count(*) > 1")
    result = run_query(monitor_for, pg, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


@pytest.fixture
def pg_foreign(own_pg):
    """A database of its own (an extension is per database) with `victim`, a file_fdw foreign table whose
    `program` option runs a shell command on the database server each time it is read, a view and a STABLE SQL
    function reading it, and a partitioned table one partition of which is such a foreign table."""
    return make_victim(own_pg,
                       "CREATE EXTENSION file_fdw", "CREATE SERVER dw_files FOREIGN DATA WRAPPER file_fdw",
                       "CREATE FOREIGN TABLE dw_program (k text) SERVER dw_files "
                       "OPTIONS (program 'echo a; echo a', format 'text')",
                       "CREATE VIEW dw_program_view AS SELECT k FROM dw_program",
                       "CREATE FUNCTION dw_program_count() RETURNS bigint STABLE LANGUAGE sql "
                       "AS 'SELECT count(*) FROM dw_program'",
                       "CREATE TABLE dw_parted (k text) PARTITION BY LIST (k)",
                       "CREATE FOREIGN TABLE dw_parted_a PARTITION OF dw_parted FOR VALUES IN ('a') SERVER dw_files "
                       "OPTIONS (program 'echo a', format 'text')")


PG_FOREIGN = {
    "custom query": lambda monitor_for, db: run_query(
        monitor_for, db, "SELECT k, count(*) AS dup_count FROM dw_program GROUP BY k"),
    "where": lambda monitor_for, db: run_where(monitor_for, db, "k IN (SELECT k FROM dw_program)"),
    "through a view": lambda monitor_for, db: run_query(
        monitor_for, db, "SELECT k, count(*) AS dup_count FROM dw_program_view GROUP BY k"),
    "through a SQL function": lambda monitor_for, db: run_where(monitor_for, db, "dw_program_count() > 0"),
    "a partition": lambda monitor_for, db: run_query(
        monitor_for, db, "SELECT k, count(*) AS dup_count FROM dw_parted GROUP BY k"),
}


@pytest.mark.parametrize("spelling", PG_FOREIGN)
def test_postgresql_a_foreign_table_is_refused(pg_foreign, spelling, monitor_for):
    """Reading a foreign table runs its wrapper's code, which no plan shows: file_fdw's `program` ran a shell
    command on the database server for a check (custom query or where, superuser or a role granted SELECT)."""
    result = PG_FOREIGN[spelling](monitor_for, pg_foreign)
    assert_refused(result, "foreign table dw_")
    assert "file_fdw" in result.error


def test_postgresql_a_foreign_partition_is_refused_naming_the_table_read(pg_foreign, monitor_for):
    """The refusal named only the foreign partition `dw_parted_a`, which the check does not name: it reads
    `dw_parted`."""
    result = PG_FOREIGN["a partition"](monitor_for, pg_foreign)
    assert_refused(result, "foreign table dw_parted_a (a partition or inheritance child of dw_parted)")


# -- MariaDB / MySQL -------------------------------------------------------------------------------------------

MYSQL_SPELLINGS = {
    "executable comment": ("SELECT 1 /*!, GET_LOCK('{lock}', 0)*/ AS a", "get_lock("),
    "'\\'' string": ("SELECT '\\'' AS a, GET_LOCK('{lock}', 0) AS b, 'x' AS c", "get_lock("),
    "\"'\" string": ("SELECT \"'\" AS a, GET_LOCK('{lock}', 0) AS b, 'x' AS c", "get_lock("),
    "backquoted `x--`": ("SELECT 1 AS `x--`, GET_LOCK('{lock}', 0) AS b", "get_lock("),
}


@pytest.mark.parametrize("victim_table", ["mysql"], indirect=True)
@pytest.mark.parametrize("spelling", MYSQL_SPELLINGS)
def test_mysql_custom_query_spelling_cannot_take_a_named_lock(victim_table, spelling, monitor_for):
    lock = f"dw_{uuid.uuid4().hex[:8]}"
    sql, call = MYSQL_SPELLINGS[spelling]
    assert_refused(run_query(monitor_for, victim_table, sql.format(lock=lock)), call)
    assert victim_table.scalar(f"SELECT IS_FREE_LOCK('{lock}')") == 1


MYSQL_WHERE_SPELLINGS = {
    "executable comment": ("k <> 'x' /*!AND GET_LOCK('dw_l', 0) = 1*/", "get_lock("),
    "'\\'' string": ("k <> '\\'' AND GET_LOCK('dw_l', 0) = 1 AND k <> 'x'", "get_lock("),
    "\"'\" string": ("k <> \"'\" AND GET_LOCK('dw_l', 0) = 1 AND k <> 'x'", "get_lock("),
    "backquoted `x--`": ("EXISTS (SELECT 1 AS `x--` FROM DUAL WHERE GET_LOCK('dw_l', 0) = 1)", "get_lock("),
}


def test_mysql_a_stored_function_is_refused(mysql, monitor_for):
    make_victim(mysql, "CREATE FUNCTION grab() RETURNS INT NOT DETERMINISTIC RETURN GET_LOCK('dw_grab', 0)")
    assert_refused(run_query(monitor_for, mysql, "SELECT grab() AS a FROM victim"), "grab()")


def test_mysql_a_call_in_a_constant_derived_table_is_refused(mysql, monitor_for):
    """`EXPLAIN EXTENDED` would evaluate `(SELECT GET_LOCK(...)) x` while it optimizes and print `1` in its place;
    the statement is vetted by PREPARE, which runs nothing and keeps the call."""
    make_victim(mysql)
    lock = f"dw_{uuid.uuid4().hex[:8]}"
    result = run_query(monitor_for, mysql, f"SELECT * FROM (SELECT GET_LOCK('{lock}', 0) AS g) AS x WHERE g")
    assert_refused(result, "get_lock(")


def test_mysql_a_shared_row_lock_in_a_sub_select_is_refused(mysql, monitor_for):
    make_victim(mysql)
    sql = "SELECT k FROM victim WHERE id IN (SELECT id FROM victim LOCK /*!IN*/ SHARE MODE)"
    assert_refused(run_query(monitor_for, mysql, sql), "lock in share mode")


def test_mysql_allows_ordinary_functions(mysql, monitor_for):
    mysql.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10), at DATETIME)",
                  "INSERT INTO victim VALUES (1, 'a', NOW()), (2, 'A', NOW())")
    sql = ("SELECT LOWER(TRIM(k)) AS k, COUNT(*) AS dup_count, MAX(at) AS last, CAST(SUM(id) AS DECIMAL(10, 2)) "
           "AS s, GROUP_CONCAT(id ORDER BY id SEPARATOR ',') AS ids FROM victim "
           "WHERE at <= NOW() + INTERVAL 1 DAY AND k IN ('a', 'A') GROUP BY LOWER(TRIM(k)) HAVING COUNT(*) > 1")
    result = run_query(monitor_for, mysql, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


def test_mysql_a_common_table_expression_with_a_column_list_is_allowed(mysql, monitor_for):
    """The server's expansion prints a CTE's column list as `r(n)`, which was refused as a call of `r()` (with
    advice to rewrite the query); `r` is no function the server knows, so it is no call."""
    make_victim(mysql)
    sql = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3), q(a, b) AS (SELECT 1, 2) "
           "SELECT k, COUNT(*) AS dup_count FROM victim, q WHERE (SELECT MAX(n) FROM r) = 3 "
           "GROUP BY k HAVING COUNT(*) > 1")
    result = run_query(monitor_for, mysql, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


MYSQL_WRITABLE_LOCKS = {
    "FOR UPDATE in a WHERE sub-select": "id IN (SELECT id FROM victim FOR UPDATE)",
    "a comment between the words": "id IN (SELECT id FROM victim FOR/**/UPDATE)",
    "an executable comment": "k = (SELECT MAX(k) FROM victim /*!FOR*/ UPDATE)",
}


@pytest.mark.parametrize("spelling", MYSQL_WRITABLE_LOCKS)
def test_mysql_a_where_locking_rows_is_refused_on_the_fixs_writable_connection(mysql, spelling):
    """The fix vets a `where` again on its own, writable, connection, where no READ ONLY transaction refuses FOR
    UPDATE at PREPARE, and the server's expansion leaves the clause of a WHERE sub-select out: it passed, and the
    fix's statements would have locked every row the sub-select read."""
    make_victim(mysql)
    with mysql.engine.connect() as conn:
        where = MYSQL_WRITABLE_LOCKS[spelling]
        refused = MySQL().refused_call(conn, f"SELECT 1 AS dupewatch_probe FROM victim WHERE ({where})")
    assert refused is not None and refused.startswith("FOR UPDATE is not allowed in a check"), refused


def test_mysql_a_call_in_a_values_list_is_refused_as_the_built_in_function_it_is(mysql, monitor_for):
    """The expansion names a VALUES list's column after its expression (`` x.`GET_LOCK('l', 0)` ``), which was read
    as a call of a stored function `GET_LOCK`, and the refusal said so."""
    make_victim(mysql)
    lock = f"dw_{uuid.uuid4().hex[:8]}"
    result = run_query(monitor_for, mysql, f"SELECT * FROM (VALUES (GET_LOCK('{lock}', 0))) AS x")
    assert_refused(result, "get_lock(")
    assert "it is a stored function" not in result.error and "not one of the built-in functions" in result.error
    assert mysql.scalar(f"SELECT IS_FREE_LOCK('{lock}')") == 1


def test_mysql_allows_crc32c_and_nvl2(mysql, monitor_for):
    """Built-in functions that only compute (MariaDB 10.8+'s CRC32C, the Oracle-compatible NVL2) were refused as not
    known to change nothing."""
    make_victim(mysql)
    sql = ("SELECT NVL2(k, CRC32C(k), 0) AS k, COUNT(*) AS dup_count FROM victim GROUP BY NVL2(k, CRC32C(k), 0) "
           "HAVING COUNT(*) > 1")
    result = run_query(monitor_for, mysql, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


# A stored function of the current database is called unqualified, and the server's expansion prints its name as
# MariaDB may write it: unquoted with a leading digit or `$` (`9f(`), backquoted past ASCII letters and digits
# (`` `f-`( ``, `` `é`( ``); a name dupewatch knows as a harmless built-in of another server (FORMAT_BYTES, MySQL's)
# or as syntax (LATERAL) is no built-in here, so the stored function of that name is called.
MYSQL_STORED_NAMES = {
    "a leading digit": ("`9f`", "9f()"),
    "a leading $": ("`$f`", "$f()"),
    "a hyphen": ("`f-`", "`f-`()"),
    "a letter past ASCII": ("`é`", "`é`()"),
    "another server's built-in": ("format_bytes", "format_bytes()"),
    "a word read as syntax": ("`lateral`", "lateral()"),
}


@pytest.mark.parametrize("spelling", MYSQL_STORED_NAMES)
def test_mysql_a_stored_function_of_any_name_is_refused(mysql, spelling, monitor_for):
    """Each passed as no call (or a harmless one): the check ran the stored function, whose body may call anything
    (here GET_LOCK())."""
    declared, call = MYSQL_STORED_NAMES[spelling]
    make_victim(mysql, f"CREATE FUNCTION {declared}() RETURNS INT NOT DETERMINISTIC RETURN GET_LOCK('dw_held', 0)")
    name = declared.strip("`")
    assert_refused(run_query(monitor_for, mysql, f"SELECT {call} AS k, COUNT(*) AS dup_count FROM victim GROUP BY 1"),
                   f"{name}()")
    assert_refused(run_where(monitor_for, mysql, f"{call} = 1"), f"{name}()")


def test_mysql_a_backquoted_alias_opening_with_a_parenthesis_is_no_call(mysql, monitor_for):
    """The text between two backquoted names (`` min(victim.`id`) AS `(first)` ``: ``) AS ``) was read as a
    backquoted name called, and the server's answer for it (no routine may be named so) as a function."""
    make_victim(mysql)
    sql = "SELECT k, COUNT(*) AS dup_count, MIN(id) AS `(first)` FROM victim GROUP BY k HAVING COUNT(*) > 1"
    result = run_query(monitor_for, mysql, sql)
    assert (result.status, result.groups, result.excess_rows, result.error) == ("violations", 1, 1, None)


def test_mysql_a_common_table_expression_named_as_a_refused_function_is_still_refused(mysql, monitor_for):
    """A CTE named `get_lock` does not make a call of GET_LOCK() pass as its column list."""
    make_victim(mysql)
    lock = f"dw_{uuid.uuid4().hex[:8]}"
    sql = (f"WITH get_lock(a) AS (SELECT 1) SELECT k, COUNT(*) AS dup_count FROM victim, get_lock "
           f"WHERE GET_LOCK('{lock}', 0) = 1 GROUP BY k")
    assert_refused(run_query(monitor_for, mysql, sql), "get_lock(")
    assert mysql.scalar(f"SELECT IS_FREE_LOCK('{lock}')") == 1


MYSQL_ASSIGNMENTS = {
    "custom query": lambda monitor_for, db: run_query(
        monitor_for, db, "SELECT k, COUNT(*) AS dup_count FROM victim WHERE (@dw_x := id) > 0 GROUP BY k"),
    "custom query, quoted name": lambda monitor_for, db: run_query(monitor_for, db, "SELECT @`dw_x` := 1 AS k"),
    "where": lambda monitor_for, db: run_where(monitor_for, db, "(@dw_x := id) > 0"),
}


@pytest.mark.parametrize("spelling", MYSQL_ASSIGNMENTS)
def test_mysql_a_user_variable_assignment_is_refused(mysql, spelling, monitor_for):
    """`@x := ...` sets a user variable that stays set in the session, for every later statement on the pooled
    connection (the fix's, for a `where`): a session change a read-only transaction does not stop."""
    make_victim(mysql)
    assert_refused(MYSQL_ASSIGNMENTS[spelling](monitor_for, mysql), "@dw_x:=")


# A sequence function hides the whole statement from the server's reading (MariaDB withholds its optimizer trace,
# INSUFFICIENT_PRIVILEGES, whatever the role may do): the refusal of LASTVAL() and PREVIOUS VALUE FOR said the trace
# was "missing or larger than its optimizer trace keeps (optimizer_trace_max_mem_size)", which no setting cures.
# Those that take or set a value are refused by the server itself at PREPARE, a write in a read-only transaction.
# Each spelling, in a custom query and in a table check's `where`; none takes or sets a value.
MARIADB_SEQUENCE_SPELLINGS = {
    "PREVIOUS VALUE FOR": ("PREVIOUS VALUE FOR dw_seq", "withheld"),
    "LASTVAL()": ("LASTVAL(dw_seq)", "withheld"),
    "NEXTVAL()": ("NEXTVAL(dw_seq)", "write"),
    "NEXT VALUE FOR": ("NEXT VALUE FOR dw_seq", "write"),
    "SETVAL()": ("SETVAL(dw_seq, 500)", "write"),
}


def _assert_sequence_refusal(mysql: TestDatabase, error: str | None, reason: str) -> None:
    assert error is not None and "\n" not in error, error
    if reason == "withheld":
        assert "withholds its reading" in error and "calls a sequence function" in error, error
        assert "optimizer_trace_max_mem_size" not in error, error
    else:
        assert "refused a write, checks run read-only" in error, error
    assert mysql.scalar("SELECT next_not_cached_value FROM dw_seq") == 1  # no value was taken, none set


@pytest.mark.parametrize("spelling", MARIADB_SEQUENCE_SPELLINGS)
def test_mariadb_a_custom_query_calling_a_sequence_function_is_refused_for_the_true_reason(mysql, spelling,
                                                                                           monitor_for):
    make_victim(mysql, "CREATE SEQUENCE dw_seq")
    call, reason = MARIADB_SEQUENCE_SPELLINGS[spelling]
    result = run_query(monitor_for, mysql, f"SELECT k, COUNT(*) AS n FROM victim WHERE id <> COALESCE({call}, 0) "
                                           "GROUP BY k HAVING COUNT(*) > 1")
    assert result.status == "error", result
    _assert_sequence_refusal(mysql, result.error, reason)


@pytest.mark.parametrize("spelling", MARIADB_SEQUENCE_SPELLINGS)
def test_mariadb_a_where_calling_a_sequence_function_is_refused_for_the_true_reason(mysql, spelling, monitor_for):
    make_victim(mysql, "CREATE SEQUENCE dw_seq")
    call, reason = MARIADB_SEQUENCE_SPELLINGS[spelling]
    result = run_where(monitor_for, mysql, f"id <> COALESCE({call}, 0)")
    assert result.status == "error" and result.error.startswith("check 'w': where"), result
    _assert_sequence_refusal(mysql, result.error, reason)


def test_mariadb_a_sequence_read_as_a_table_is_allowed(mysql, monitor_for):
    """What the refusal advises: the sequence read as a table is traced like any table, and allowed."""
    make_victim(mysql, "CREATE SEQUENCE dw_seq")
    result = run_where(monitor_for, mysql, "id < (SELECT next_not_cached_value + 100 FROM dw_seq)")
    assert (result.status, result.groups, result.error) == ("duplicates", 1, None), result

# -- SQLite ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_bracketed_alias_cannot_hide_randomblob(victim_table, monitor_for):
    result = run_query(monitor_for, victim_table, "SELECT 1 AS [x--], length(randomblob(1000000)) AS b")
    assert_refused(result, "randomblob(")


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_printf_cannot_build_a_900_mb_string(victim_table, monitor_for):
    """No name the old scanner refused: printf loops inside one step of SQLite's program, past every deadline."""
    started = time.monotonic()
    result = run_query(monitor_for, victim_table, "SELECT length(printf('%.*c', 900000000, 'x')) AS n")
    assert_refused(result, "printf(")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_a_statement_cannot_build_a_string_of_a_gigabyte(victim_table, monitor_for):
    """Only allowed calls (`||`, length, max): SQLite's length limit stops the doubling string at 32 MiB."""
    peak_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sql = ("WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM r WHERE n < 31) "
           "SELECT max(length(s)) AS n FROM r")
    result = run_query(monitor_for, victim_table, sql, statement_timeout="60s")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kb) / 1024
    assert result.status == "error" and "string or blob too big" in result.error, result.error
    assert grown_mb < 400, grown_mb


# -- a table check's `where`, on every database ------------------------------------------------------------------

SQLITE_WHERE_SPELLINGS = {
    "bracketed alias": ("EXISTS (SELECT 1 AS [x--] WHERE length(randomblob(10)) > 0)", "randomblob("),
    "instr, whose needle has no limit": ("instr(k, 'a') > 0", "instr("),
}
WHERE_SPELLINGS = [pytest.param(fixture, where, call, id=f"{fixture}-{name}")
                   for fixture, spellings in (("pg", PG_WHERE_SPELLINGS), ("mysql", MYSQL_WHERE_SPELLINGS),
                                              ("sqlite_db", SQLITE_WHERE_SPELLINGS))
                   for name, (where, call) in spellings.items()]


@pytest.mark.parametrize(("victim_table", "where", "call"), WHERE_SPELLINGS, indirect=["victim_table"])
def test_where_spelling_cannot_call_a_refused_function(victim_table, where, call, monitor_for):
    result = run_where(monitor_for, victim_table, where)
    assert_refused(result, call)
    assert result.error.startswith("check 'w': where: ")


# -- what the user sees: one line naming the check and the call, exit 2; a fix changes nothing ------------------

CLI_QUERY = {"postgresql": ('SELECT U&"pg\\005fadvisory\\005flock"(4242) AS a', "pg_advisory_lock("),
             "mysql": ("SELECT 1 /*!, GET_LOCK('dw_cli', 0)*/ AS a", "get_lock("),
             "sqlite": ("SELECT 1 AS [x--], length(randomblob(10)) AS b", "randomblob(")}
FIX_WHERE = {"postgresql": ("k <> E'\\'' AND pg_advisory_lock(4242) IS NOT NULL AND k <> 'x'", "pg_advisory_lock("),
             "mysql": ("k <> \"'\" AND GET_LOCK('dw_fix', 0) = 1 AND k <> 'x'", "get_lock("),
             "sqlite": ("EXISTS (SELECT 1 AS [x--] WHERE length(randomblob(10)) > 0)", "randomblob(")}


def test_dupewatch_check_reports_a_refused_call_in_one_line_and_exits_2(db, tmp_path):
    make_victim(db, rows=False)
    sql, call = CLI_QUERY[db.dialect]
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}}, [{"name": "sneaky", "database": "d", "sql": sql}])
    result = run_cli("check", "--config", str(path))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if "is not allowed in a check" in line]
    assert len(errors) == 1 and errors[0].startswith("sneaky: ") and call in errors[0].lower(), result.output


def test_dupewatch_fix_refuses_a_where_with_a_refused_call_and_changes_nothing(db, tmp_path):
    make_victim(db)
    where, call = FIX_WHERE[db.dialect]
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}},
                        [{"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": where}])
    before = db.rows("SELECT id, k FROM victim ORDER BY id")
    result = run_cli("fix", "w", "--yes", "--config", str(path))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "'w'" in result.stderr and "is not allowed in a check" in result.stderr and call in result.stderr.lower()
    assert db.rows("SELECT id, k FROM victim ORDER BY id") == before


# -- a `where` is one condition: a `)` of it cannot close the parentheses dupewatch puts it in --------------------
# dupewatch writes a `where` into its statements as `(where)`, joined by AND to its own conditions, the fix's DELETEs
# among them: `k = 'a') OR (id = 3` made them `... AND (k = 'a') OR (id = 3)`, OR'ing `id = 3` with everything else.

ESCAPING_WHERES = {
    "OR after a closing parenthesis": "k = 'a') OR (id = 3",
    "over two lines": "k = 'a')\nOR (id = 3",
    "after a string holding a parenthesis": "k <> '(' AND k = 'a') OR (id = 3",
    "a comment after it": "k = 'a') OR (id = 3 -- the rest\n",
}


@pytest.mark.parametrize("victim_table", ["pg", "mysql", "sqlite_db"], indirect=True)
@pytest.mark.parametrize("spelling", ESCAPING_WHERES)
def test_a_where_closing_the_parenthesis_it_is_put_in_is_refused(victim_table, spelling, monitor_for):
    result = run_where(monitor_for, victim_table, ESCAPING_WHERES[spelling])
    assert result.status == "error", result
    assert result.error.startswith("check 'w': where: it is not one condition"), result.error
    assert "\n" not in result.error


@pytest.mark.parametrize("victim_table", ["pg", "mysql", "sqlite_db"], indirect=True)
def test_a_where_with_parentheses_of_its_own_is_allowed(victim_table, monitor_for):
    where = "(k = 'a') OR (k <> ')' AND id = 3 AND k = '(') -- a comment (\n"
    assert run_where(monitor_for, victim_table, where).status == "duplicates"


def test_dupewatch_fix_refuses_a_where_closing_its_parenthesis_and_changes_nothing(db, tmp_path):
    make_victim(db)
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url}},
                        [{"name": "w", "database": "d", "table": "victim", "key": ["k"],
                          "where": "k = 'a') OR (id = 3"}])
    before = db.rows("SELECT id, k FROM victim ORDER BY id")
    result = run_cli("fix", "w", "--yes", "--config", str(path))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "'w'" in result.stderr and "it is not one condition" in result.stderr
    assert db.rows("SELECT id, k FROM victim ORDER BY id") == before


def test_mysql_a_where_closing_its_parenthesis_cannot_make_the_fix_delete_a_row_of_no_group(mysql, tmp_path):
    """A table without a primary key: the fix deletes all but one of a group's identical rows with `DELETE ...
    WHERE <row equals the group's copy> AND (where) LIMIT n`. A `where` true for another row only while the
    session runs a DELETE (its own processlist entry) planned the group 'c' as written, then made that DELETE
    `... AND (k = 'c') OR (v = 4 AND <in a DELETE>) LIMIT 1`: it deleted ('d', 4), in no group, archived a copy of
    'c', and reported one duplicate deleted."""
    mysql.execute("CREATE TABLE nopk (k VARCHAR(10), v INTEGER)",
                  "INSERT INTO nopk (k, v) VALUES ('d', 4), ('a', 1), ('c', 3), ('c', 3), ('b', 2)")
    in_a_delete = ("EXISTS (SELECT 1 FROM information_schema.processlist p WHERE p.id = CONNECTION_ID() "
                   "AND p.info LIKE 'DELETE%')")
    path = write_config(tmp_path / "dw.toml", {"d": {"url": mysql.url}},
                        [{"name": "w", "database": "d", "table": "nopk", "key": ["k"],
                          "where": f"k = 'c') OR (v = 4 AND {in_a_delete}"}])
    before = mysql.rows("SELECT k, v FROM nopk ORDER BY k, v")
    result = run_cli("fix", "w", "--yes", "--config", str(path))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "it is not one condition" in result.stderr, result.stderr
    assert mysql.rows("SELECT k, v FROM nopk ORDER BY k, v") == before


# -- the vetting leaves the session as it found it ---------------------------------------------------------------

def test_postgresql_vetting_leaves_no_setting_behind(pg):
    database = Database("d", DatabaseConfig(url=pg.url))
    try:
        with database.read_only() as conn:
            assert database.rules.refused_call(conn, "SELECT lower('A') AS a") is None
            settings = conn.exec_driver_sql("SELECT current_setting('debug_print_plan'), "
                                            "current_setting('debug_print_rewritten'), "
                                            "current_setting('client_min_messages')").one()
            assert tuple(settings) == ("off", "off", "notice")
    finally:
        database.dispose()


def test_mysql_vetting_leaves_no_setting_behind(mysql):
    database = Database("d", DatabaseConfig(url=mysql.url))
    try:
        with database.read_only() as conn:
            assert database.rules.refused_call(conn, "SELECT LOWER('A') AS a") is None
            settings = conn.exec_driver_sql("SELECT @@optimizer_trace, @dupewatch_vetted").one()
            assert tuple(settings) == ("enabled=off", None)
    finally:
        database.dispose()


# -- a result whose size an argument sets: the matchers over it run past every timeout -------------------------
# LIKE and position() (PostgreSQL), LOCATE (MariaDB), instr and LIKE (SQLite) look for no cancel while they match,
# and cost the string's length times the needle's: measured, `repeat('a', 400000) LIKE '%' || repeat('a', 40000)
# || 'b'` ran 17 s under a 1 s statement_timeout, LOCATE over REPEAT('a', 400000) 6 s through a KILL QUERY at 1 s.

def stop_backends(db: Any, marker: str) -> None:
    """End every session still running a statement holding `marker` (a statement that does not look for a
    cancel ends when its call does): terminate it, and wait until it is gone."""
    if db.dialect == "postgresql":
        db.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE :q "
                  "AND pid <> pg_backend_pid()", {"q": f"%{marker}%"})
        running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q AND pid <> pg_backend_pid()"
    else:
        for (pid,) in db.rows("SELECT id FROM information_schema.processlist WHERE info LIKE :q "
                              "AND id <> CONNECTION_ID()", {"q": f"%{marker}%"}):
            db.execute(f"KILL {int(pid)}")
        running = "SELECT count(*) FROM information_schema.processlist WHERE info LIKE :q AND id <> CONNECTION_ID()"
    started = time.monotonic()
    while db.scalar(running, {"q": f"%{marker}%"}):
        assert time.monotonic() - started < 60, f"the statement marked {marker} to end"
        time.sleep(0.1)


@pytest.fixture
def marker() -> str:
    """A name for the statements of this test (`stop_backends` ends those still running after it)."""
    return f"dw_runaway_{uuid.uuid4().hex[:8]}"


PG_SIZED = {
    "repeat under LIKE, folded (and so run) by planning": (
        "SELECT repeat('a', 400000) LIKE '%' || repeat('a', 40000) || 'b' AS {marker}", "repeat(text,integer)"),
    "position() of an lpad needle": ("SELECT position(lpad('b', 20001, 'a') IN k) AS {marker} FROM victim",
                                     "lpad(text,integer,text)"),
    "rpad": ("SELECT rpad(k, 3) AS {marker} FROM victim", "rpad(text,integer)"),
    "array_fill": ("SELECT array_to_string(array_fill('a'::text, ARRAY[3]), '') AS {marker}",
                   "array_fill(anyelement,integer[])"),
    "format's width": ("SELECT format('%*s', 3, k) AS {marker} FROM victim", "format(text,\"any\")"),
    "unicode-escaped repeat": ('SELECT U&"r\\0065peat"(k, 3) AS {marker} FROM victim', "repeat(text,integer)"),
    # A type's length (typmod) pads the value to it: bit(n) with zeros, char(n) with spaces, up to 83,886,080
    # bits and 10,485,760 characters; the length coercion is an IMMUTABLE call that planning folds, and so runs.
    "bit(n) padding under LIKE, folded (and so run) by planning": (
        "SELECT B'0'::bit(1000000)::text LIKE '%' || B'0'::bit(3000)::text || '1' AS {marker}",
        '"bit"(bit,integer,boolean)'),
    "char(n) padding": ("SELECT CAST(k AS char(30)) AS {marker} FROM victim", "bpchar(character,integer,boolean)"),
}


@pytest.mark.parametrize("spelling", PG_SIZED)
def test_postgresql_a_function_sized_by_its_argument_is_refused_before_it_runs(pg, spelling, marker, monitor_for):
    make_victim(pg)
    sql, call = PG_SIZED[spelling]
    started = time.monotonic()
    try:
        result = run_query(monitor_for, pg, sql.format(marker=marker), statement_timeout="1s")
    finally:
        stop_backends(pg, marker)
    assert_refused(result, call)
    assert "sets the size of its result" in result.error
    assert time.monotonic() - started < 2.5  # nothing ran: planning would fold, and so run, a LIKE on constants


def test_postgresql_a_where_cannot_call_a_function_sized_by_its_argument(pg, monitor_for):
    make_victim(pg)
    assert_refused(run_where(monitor_for, pg, "k LIKE '%' || repeat('a', 3) || 'b'"), "repeat(text,integer)")


PG_UNBOUNDED_HASH = {
    "custom query": "WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r) "
                    "SELECT n AS {marker}, count(*) AS dup_count FROM r GROUP BY n",
    "where": "k IN (WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r) SELECT 'a' || n || '{marker}' FROM r)",
    "view": "SELECT n AS {marker}, 1 AS dup_count FROM advro_unbounded",
    # not inlined (a CTE): the function's own plan, which no plan of the statement holds, runs it
    "STABLE SQL function's body": "SELECT 1 AS {marker}, 2 AS dup_count WHERE advro_unbounded_count() > 0",
}


@pytest.mark.parametrize("spelling", PG_UNBOUNDED_HASH)
def test_postgresql_a_recursive_union_growing_server_memory_without_bound_is_refused(pg, spelling, marker,
                                                                                      monitor_for):
    """A recursive UNION (not ALL) keeps every row it made in a hash table no work_mem or temp_file_limit bounds:
    834 MB of the server's memory in 6 s (work_mem 4 MB), about 4 GB in the default 30 s timeout."""
    make_victim(pg, "CREATE VIEW advro_unbounded AS WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r) "
                    "SELECT n FROM r",
                "CREATE FUNCTION advro_unbounded_count() RETURNS bigint STABLE LANGUAGE sql AS "
                "'WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r) SELECT count(*) FROM r'")
    started = time.monotonic()
    sql = PG_UNBOUNDED_HASH[spelling].format(marker=marker)
    try:
        if spelling == "where":
            result = monitor_for({"d": {"url": pg.url, "statement_timeout": "2s"}}, [
                {"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": sql}]).run("w")
        else:
            result = run_query(monitor_for, pg, sql, statement_timeout="2s")
    finally:
        stop_backends(pg, marker)
    assert_refused(result, "recursive union")
    assert time.monotonic() - started < 2  # refused before it ran, not stopped by the timeout


PG_HASHED_UNBOUNDED = {
    # the planner takes a recursive CTE for about 100 rows, so hashes it: the hash tables of a SetOp and of a
    # hashed SubPlan never spill (PostgreSQL 15: 619 MB and 451 MB of the server's memory in 4 s, work_mem 4 MB)
    "hashed EXCEPT": "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s) "
                     "SELECT n AS {marker}, 2 AS dup_count FROM (SELECT n FROM s EXCEPT SELECT 0) AS x",
    "hashed NOT IN sub-select": "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s) "
                                "SELECT 1 AS {marker}, 2 AS dup_count WHERE 0 NOT IN (SELECT n FROM s)",
}


@pytest.mark.xfail(strict=True, reason="a hash table PostgreSQL never spills (hashed SetOp, hashed SubPlan) fed by a "
                                       "source of no bound grows the server's memory until the statement timeout; "
                                       "refusing every hashed NOT IN would refuse ordinary checks")
@pytest.mark.parametrize("spelling", PG_HASHED_UNBOUNDED)
def test_postgresql_a_hash_table_the_server_never_spills_is_not_fed_without_bound(pg, spelling, marker,
                                                                                   monitor_for):
    make_victim(pg)
    started = time.monotonic()
    try:
        result = run_query(monitor_for, pg, PG_HASHED_UNBOUNDED[spelling].format(marker=marker),
                           statement_timeout="2s")
    finally:
        stop_backends(pg, marker)
    assert_refused(result, "hash")
    assert time.monotonic() - started < 2


@pytest.mark.xfail(strict=True, reason="each aggregate's value stops at PostgreSQL's 1 GB, not how many a statement "
                                       "builds: 8 string_agg()s of 1 MiB rows took the server backend to 978 MB in 1 s "
                                       "(40 of them, tens of GB within the default 30 s); nothing bounds their sum")
def test_postgresql_many_aggregates_each_within_the_value_limit_do_not_grow_the_server_without_bound(pg, marker,
                                                                                                    monitor_for):
    make_victim(pg)
    grown = " + ".join(f"length(string_agg(s || '{i}', ''))" for i in range(4))
    sql = ("WITH RECURSIVE b(n, s) AS (SELECT 0, 'x'::text UNION ALL SELECT n + 1, s || s FROM b WHERE n < 20) "
           f"SELECT 1 AS {marker}, 2 AS dup_count FROM (SELECT s FROM b WHERE n = 20) AS big, "
           f"generate_series(1, 2000) AS g HAVING {grown} > 0")
    try:
        result = run_query(monitor_for, pg, sql, statement_timeout="500ms")
    finally:
        stop_backends(pg, marker)
    assert_refused(result, "string_agg")


def test_postgresql_a_recursive_union_all_and_a_union_outside_recursion_are_allowed(pg, monitor_for):
    make_victim(pg, "CREATE FUNCTION advro_bounded_count() RETURNS bigint STABLE LANGUAGE sql AS "
                    "'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5), "
                    "u AS (SELECT k FROM victim UNION SELECT k FROM victim) SELECT count(*) FROM r, u'")
    sql = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3), "
           "u AS (SELECT k FROM victim UNION SELECT 'a') SELECT k, count(*) AS dup_count FROM victim "
           "WHERE k IN (SELECT k FROM u) AND (SELECT count(*) FROM r) = 3 AND advro_bounded_count() = 10 GROUP BY k")
    result = run_query(monitor_for, pg, sql)
    assert result.status != "error", result.error


MYSQL_SIZED = {
    "REPEAT under LOCATE": (
        "SELECT LOCATE(CONCAT(REPEAT('a', 40000), 'b'), REPEAT('a', 400000)) AS {marker}", "repeat("),
    "LPAD": ("SELECT LPAD(k, 3, 'a') AS {marker} FROM victim", "lpad("),
    "RPAD": ("SELECT RPAD(k, 3, 'a') AS {marker} FROM victim", "rpad("),
    "SPACE": ("SELECT CONCAT(k, SPACE(3)) AS {marker} FROM victim", "space("),
    "SFORMAT's width": ("SELECT SFORMAT('{{:>3}}', k) AS {marker} FROM victim", "sformat("),
    "WEIGHT_STRING AS CHAR(n)": ("SELECT WEIGHT_STRING(k AS CHAR(3)) AS {marker} FROM victim", "weight_string("),
    "REPEAT in an executable comment": ("SELECT 1 /*!, REPEAT(k, 3)*/ AS {marker} FROM victim", "repeat("),
    # EXPORT_SET(bits, on, off, separator, n): n (up to 64) copies of `on` or `off`; nested, 64 times per level
    # (this LOCATE ran 3.6 s under a 1 s max_statement_time).
    "EXPORT_SET under LOCATE": (
        "SELECT LOCATE(CONCAT(EXPORT_SET(0, '', EXPORT_SET(0, '', 'a', '', 64), '', 64), 'b'), "
        "EXPORT_SET(0, '', EXPORT_SET(0, '', EXPORT_SET(0, '', 'aaaa', '', 64), '', 64), '', 64)) AS {marker}",
        "export_set("),
    # CAST/CONVERT to BINARY(n) pads with 0x00 bytes to n (this LOCATE ran 2.0 s under a 1 s max_statement_time,
    # and returned its result).
    "CAST AS BINARY(n) under LOCATE": (
        "SELECT LOCATE(CONCAT(CAST('' AS BINARY(3000)), 'b'), CAST('' AS BINARY(1000000))) AS {marker}",
        "as binary(n)"),
    "CONVERT to CHAR(n) CHARACTER SET binary": (
        "SELECT CONVERT(k, CHAR(30) CHARACTER SET binary) AS {marker} FROM victim", "as binary(n)"),
}


@pytest.mark.parametrize("spelling", MYSQL_SIZED)
def test_mysql_a_function_sized_by_its_argument_is_refused(mysql, spelling, marker, monitor_for):
    make_victim(mysql)
    sql, call = MYSQL_SIZED[spelling]
    started = time.monotonic()
    try:
        result = run_query(monitor_for, mysql, sql.format(marker=marker), statement_timeout="1s")
    finally:
        stop_backends(mysql, marker)
    assert_refused(result, call)
    assert "sets the size of its result" in result.error
    assert time.monotonic() - started < 2.5


def _replaced(levels: int) -> str:
    """'a' replaced by ten of it, `levels` times over: a string of 10^levels characters from a short statement, no
    function of it sized by an argument."""
    text = "'a'"
    for _ in range(levels):
        text = f"REPLACE({text}, 'a', 'aaaaaaaaaa')"
    return text


@pytest.mark.xfail(strict=True, reason="nested REPLACE multiplies a string's length by its replacement's at each "
                   "level, so a short statement builds a string of any size up to max_allowed_packet (MariaDB) or "
                   "1 GB (PostgreSQL, where the planner folds it on constants inside the vetting EXPLAIN), and LIKE "
                   "and INSTR over it do not look for a cancel: measured, a 10^6-character string LIKE a 10^4 "
                   "needle ran 194 s under MariaDB's max_statement_time = 1, INSTR 12 s, and on PostgreSQL the "
                   "backend stayed active past pg_terminate_backend; refusing REPLACE would refuse the commonest "
                   "normalization of a key (REPLACE(phone, '-', '')); kept (issue 16)")
@pytest.mark.parametrize("database", ["pg", "mysql"])
def test_a_string_grown_by_nested_replace_is_not_matched_past_the_deadline(database, request, marker, monitor_for):
    db = make_victim(request.getfixturevalue(database))
    sql = f"SELECT {_replaced(4)} LIKE CONCAT('%', {_replaced(2)}, 'b') AS {marker}"
    try:
        result = run_query(monitor_for, db, sql, statement_timeout="1s")
    finally:
        stop_backends(db, marker)
    assert_refused(result, "replace")


def test_mysql_a_where_cannot_call_a_function_sized_by_its_argument(mysql, monitor_for):
    make_victim(mysql)
    assert_refused(run_where(monitor_for, mysql, "LOCATE(REPEAT('a', 3), k) = 0"), "repeat(")


DOUBLED = "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM r WHERE n < {n}) "


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_instr_is_refused(victim_table, monitor_for):
    """instr's needle has no limit: over a string doubled to 4 MiB it matched for 2.2 s in one step, past a 1 s
    deadline. (The doubling itself stops at `MAX_VALUE_BYTES`.)"""
    started = time.monotonic()
    sql = DOUBLED.format(n=23) + "SELECT instr(s, substr(s, 1, 50000) || 'y') AS n FROM r WHERE n = 23"
    assert_refused(run_query(monitor_for, victim_table, sql, statement_timeout="1s"), "instr(")
    assert time.monotonic() - started < 2


SQLITE_UNBOUNDED_OPERAND = {
    # each character of the string is looked up in the set of characters to trim, one by one: 65,536 x 65,537
    # took 6.8-8.7 s in one step, past a 1 s deadline (dupewatch's own process, which no interrupt reaches)
    "ltrim's character set": ("WITH RECURSIVE a(n, s, t) AS (SELECT 1, 'a', 'b' UNION ALL SELECT n + 1, s || s, "
                              "t || t FROM a WHERE n < 16) SELECT n FROM a WHERE n = 16 AND ltrim(s, t || 'a') = ''",
                              "ltrim("),
    "rtrim's character set": ("SELECT rtrim(k, 'ab') AS n FROM victim", "rtrim("),
    "trim's character set": ("SELECT trim(k, 'ab') AS n FROM victim", "trim("),
    # replace's needle, like instr's, has no limit: a 4 MiB string and a 32 KiB needle took 1.8 s in one step
    # json_patch merges each key of the patch by a search through the target's keys: 40,000 x 40,000 keys ran
    # past the 3 s deadline in one step
    "json_patch of two large objects": (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 20000), "
        "a(j) AS (SELECT json_group_object('a' || n, n) FROM r), b(j) AS (SELECT json_group_object('b' || n, n) "
        "FROM r) SELECT 1 AS x FROM a, b WHERE json_patch(a.j, b.j) <> ''", "json_patch("),
    "replace's needle": (DOUBLED.format(n=23) + "SELECT n FROM r WHERE n = 23 "
                         "AND replace(s, substr(s, 1, 32768) || 'y', '') <> ''", "replace("),
}


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
@pytest.mark.parametrize("spelling", SQLITE_UNBOUNDED_OPERAND)
def test_sqlite_a_function_whose_second_operand_has_no_limit_is_refused(victim_table, spelling, monitor_for):
    """SQLite's own program (EXPLAIN) names each call with its number of arguments (`ltrim(2)`): a trim with a set
    of characters and replace match in one step, for up to the string's length times that operand's."""
    sql, call = SQLITE_UNBOUNDED_OPERAND[spelling]
    started = time.monotonic()
    assert_refused(run_query(monitor_for, victim_table, sql, statement_timeout="1s"), call)
    assert time.monotonic() - started < 1


SQLITE_GENERATED = {
    "printf": "printf('%.*c', 900000000, 'x')",
    "zeroblob": "length(zeroblob(30000000))",
}


@pytest.mark.parametrize("call", SQLITE_GENERATED)
def test_sqlite_a_virtual_generated_column_calling_a_refused_function_is_refused(sqlite_db, call, monitor_for):
    """SQLite's authorizer is not asked about a VIRTUAL generated column's calls (they were resolved when the
    schema was read); the statement's program runs them on every read of the column."""
    make_victim(sqlite_db, f"CREATE TABLE made (id INTEGER PRIMARY KEY, c AS ({SQLITE_GENERATED[call]}) VIRTUAL)")
    result = run_query(monitor_for, sqlite_db, "SELECT id, 1 AS dup_count FROM made WHERE c IS NOT NULL")
    assert_refused(result, f"{call}()")
    assert "generated column" in result.error


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_a_where_cannot_read_a_generated_column_calling_a_refused_function(victim_table, monitor_for):
    victim_table.execute("DROP TABLE victim",
                         "CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10), "
                         "c AS (printf('%.*c', 900000000, 'x')) VIRTUAL)")
    assert_refused(run_where(monitor_for, victim_table, "c IS NOT NULL"), "printf()")


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_pragma_optimize_read_as_a_table_is_refused(victim_table, monitor_for):
    """`pragma_optimize` runs PRAGMA optimize, which may ANALYZE (write sqlite_stat1), also in a `where` on the fix's
    writable connection; the PRAGMAs that only report stay readable."""
    result = run_where(monitor_for, victim_table, "EXISTS (SELECT 1 FROM pragma_optimize)")
    assert result.status == "error" and "pragma_optimize is not allowed in a check" in result.error, result
    allowed = run_query(monitor_for, victim_table,
                        "SELECT name AS k, 2 AS dup_count FROM pragma_table_info('victim') WHERE pk = 1")
    assert (allowed.status, allowed.groups, allowed.error) == ("violations", 1, None)


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_trim_of_whitespace_is_allowed(victim_table, monitor_for):
    result = run_query(monitor_for, victim_table, "SELECT trim(k) AS t, ltrim(k) AS l, rtrim(k) AS r FROM victim "
                                                  "GROUP BY trim(k) HAVING COUNT(*) > 1")
    assert result.status == "violations" and result.groups == 1, result


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
@pytest.mark.parametrize("operator", ["LIKE '%'", "GLOB '*'"])
def test_sqlite_a_long_like_pattern_is_refused_by_sqlite_before_it_matches(victim_table, operator, monitor_for):
    """A LIKE or GLOB matches in one step of SQLite's program, which no deadline stops, for up to the string's
    length times the pattern's: SQLite's own pattern limit (SQLITE_LIMIT_LIKE_PATTERN_LENGTH) bounds it."""
    started = time.monotonic()
    sql = DOUBLED.format(n=22) + f"SELECT n FROM r WHERE n = 22 AND s {operator} || substr(s, 1, 5000) || 'y'"
    result = run_query(monitor_for, victim_table, sql, statement_timeout="1s")
    assert result.status == "error" and "pattern too complex" in result.error, result.error
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("victim_table", ["sqlite_db"], indirect=True)
def test_sqlite_a_short_like_pattern_still_matches(victim_table, monitor_for):
    sql = "SELECT k, count(*) AS dup_count FROM victim WHERE k LIKE 'a%' GROUP BY k HAVING count(*) > 1"
    result = run_query(monitor_for, victim_table, sql)
    assert (result.status, result.groups, result.error) == ("violations", 1, None)


# -- the deadline, when the database does not stop a statement on cancel -----------------------------------------

UNSTOPPABLE = {
    # string_agg builds the string as rows come (interruptible); the LIKE over it is not.
    "pg": "SELECT s AS {marker}, 2 AS dup_count FROM (SELECT string_agg('a', '') AS s FROM generate_series(1, 120000)) "
          "AS t WHERE s LIKE '%' || substr(s, 1, 30000) || 'b'",
    "mysql": "SELECT s AS {marker}, 2 AS dup_count FROM (SELECT GROUP_CONCAT('a' SEPARATOR '') AS s "
             "FROM seq_1_to_200000) AS t WHERE LOCATE(CONCAT(LEFT(s, 40000), 'b'), s) > 0",
}
GRACE = 0.3  # monitor.db.DEADLINE_GRACE_SECONDS (2 s) and CANCEL_WAIT_SECONDS (1 s), shortened here: the test waits
CANCEL_WAIT = 0.3  # for the unstoppable call to end, so the sooner the deadline decides, the shorter that call can be


@pytest.mark.parametrize("server", ["pg", "mysql"])
def test_the_deadline_says_when_the_database_did_not_stop_a_cancelled_statement(server, request, marker,
                                                                                monitor_for, monkeypatch):
    """The cancel (libpq's cancel request, KILL QUERY) cannot stop a call that does not look for it: dupewatch
    still answers at its deadline, and says that the database may run the call on."""
    monkeypatch.setattr("monitor.db.DEADLINE_GRACE_SECONDS", GRACE)
    monkeypatch.setattr("monitor.db.CANCEL_WAIT_SECONDS", CANCEL_WAIT)
    db = request.getfixturevalue(server)
    make_victim(db)
    started = time.monotonic()
    try:
        # The shortest call that still runs (about 5 s here, load average 3) well past the moment the deadline
        # decides: 0.5 s + 0.3 s grace + 0.3 s for the cancel.
        result = run_query(monitor_for, db, UNSTOPPABLE[server].format(marker=marker), statement_timeout="500ms")
        took = time.monotonic() - started
    finally:
        stop_backends(db, marker)
    assert result.status == "error", result
    assert "did not stop within 0.3s" in result.error and "may run that call to its end" in result.error, result.error
    assert "\n" not in result.error
    assert took < 0.5 + GRACE + CANCEL_WAIT + 1.5, took  # statement_timeout + grace + the wait for the cancel + slack


# -- the fix role reads the `where` with its own search_path -------------------------------------------------------

def test_postgresql_a_where_the_fix_role_resolves_to_another_function_is_refused(pg, monitor_for):
    """The `where` is vetted on the detection connection, but the fix runs it as `fix_url`'s role, whose
    search_path (`ALTER ROLE ... SET search_path`, or `"$user"` first with a schema named after the role) may
    resolve the same name to another function: there a VOLATILE one that ends a session of the fix role."""
    from monitor.fix.errors import FixRefused
    from monitor.fix.execute import make_plan

    make_victim(pg, "CREATE FUNCTION dw_same(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t $$")
    fixer = f"dw_fixer_{uuid.uuid4().hex[:8]}"
    pg.execute(f'CREATE ROLE "{fixer}" LOGIN NOSUPERUSER NOBYPASSRLS',
               f'GRANT USAGE ON SCHEMA "{pg.schema}" TO "{fixer}"',
               f'GRANT SELECT, INSERT, UPDATE, DELETE ON victim TO "{fixer}"',
               f'CREATE SCHEMA "{fixer}" AUTHORIZATION "{fixer}"',
               f'ALTER ROLE "{fixer}" SET search_path = "{fixer}", "{pg.schema}"')
    fixer_url = make_url(PG_URL).set(username=fixer)
    try:
        with psycopg.connect(fixer_url.render_as_string(hide_password=False)
                             .replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as victim_session:
            pid = victim_session.info.backend_pid
            pg.execute(f'CREATE FUNCTION "{fixer}".dw_same(t text) RETURNS text LANGUAGE sql VOLATILE '
                       f"AS $$ SELECT pg_terminate_backend({pid})::text || t $$",
                       f'ALTER FUNCTION "{fixer}".dw_same(text) OWNER TO "{fixer}"')
            monitor = monitor_for({"d": {"url": pg.url, "fix_url": fixer_url.render_as_string(hide_password=False)}},
                                  [{"name": "w", "database": "d", "table": "victim", "key": ["k"],
                                    "where": "dw_same(k) = k"}])
            assert monitor.run("w").status == "duplicates"  # the detection role's dw_same is IMMUTABLE
            with pytest.raises(FixRefused, match=r"is not allowed in a check") as refused:
                make_plan(monitor, "w")
            assert "dw_same(text)" in str(refused.value) and "VOLATILE" in str(refused.value)
            assert "\n" not in str(refused.value)
            assert victim_session.execute("SELECT 1").fetchone() == (1,)  # still alive: nothing was called
    finally:
        pg.execute(f'DROP OWNED BY "{fixer}" CASCADE', f'DROP ROLE "{fixer}"')

"""PostgreSQL does not hold a function to its declared volatility: a STABLE or IMMUTABLE function of the database's own
may call VOLATILE ones (PL/pgSQL `PERFORM pg_terminate_backend(...)`, a SQL body calling it), and the planner runs
IMMUTABLE and STABLE calls while it plans, the vetting EXPLAIN's included. So what such a function calls is read
from its body as the server parses it (a SQL body, written as text or BEGIN ATOMIC), and one whose body the server
does not parse before it runs (PL/pgSQL, ...) is refused. Sorting or grouping by an operator runs its operator
family's support functions, and comparing a range, an array or a row those of the types it holds, which are vetted
too. Also: the disk a detection statement may spill to (PostgreSQL `temp_file_limit`, MariaDB `tmp_disk_table_size`),
and MariaDB views whose definition locks the rows they read. Each refusal here got through before (an adversarial
round); each "allowed" case guards against refusing too much.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import run_cli
from monitor.config import DatabaseConfig
from monitor.db import Database
from read_only_support import assert_alive, assert_refused, run_query, run_where

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pg_bodies(pg: Any, other_session: Any) -> Any:
    """`victim` (key `k`, 'a' twice) and functions declared STABLE or IMMUTABLE that end `other_session`."""
    kill = f"pg_terminate_backend({other_session.info.backend_pid})"
    pg.execute(
        "CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
        "INSERT INTO victim VALUES (1, 'a'), (2, 'a'), (3, 'b')",
        f"CREATE FUNCTION st_kill() RETURNS boolean STABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM {kill}; "
        "RETURN true; END $$",
        f"CREATE FUNCTION st_kill_rows() RETURNS SETOF integer STABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM {kill}; "
        "RETURN NEXT 1; END $$",
        f"CREATE FUNCTION im_kill(n integer) RETURNS integer IMMUTABLE LANGUAGE sql "
        f"AS $$ SELECT n + 0 * {kill}::int $$",
        f"CREATE FUNCTION at_kill() RETURNS boolean STABLE LANGUAGE sql BEGIN ATOMIC SELECT {kill}; END",
        "CREATE FUNCTION wrapped(t text) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT t || im_kill(1)::text; $$",
        f"CREATE FUNCTION same_kill(a integer, b integer) RETURNS boolean STABLE LANGUAGE plpgsql "
        f"AS $$ BEGIN PERFORM {kill}; RETURN a = b; END $$",
        "CREATE OPERATOR #=# (LEFTARG = integer, RIGHTARG = integer, FUNCTION = same_kill)")
    return pg


@pytest.fixture
def pg_operator_family(pg: Any, other_session: Any) -> Any:
    """`victim` and a btree operator class on integer whose comparison (support function 1) is VOLATILE and ends
    `other_session` once its pid is in `kill_target` (`arm`); its operators run only the built-in integer
    comparisons."""
    pg.execute(
        "CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
        "INSERT INTO victim VALUES (1, 'a'), (2, 'a'), (3, 'b')",
        "CREATE TABLE kill_target (pid integer)",
        "CREATE FUNCTION cmp_kill(a integer, b integer) RETURNS integer VOLATILE LANGUAGE sql "
        "AS $$ SELECT btint4cmp(a, b) + 0 * (SELECT count(pg_terminate_backend(pid)) FROM kill_target)::int $$",
        *(f"CREATE OPERATOR {op} (LEFTARG = integer, RIGHTARG = integer, FUNCTION = {fn})"
          for op, fn in (("<<<", "int4lt"), ("<<<=", "int4le"), ("====", "int4eq"), (">>>=", "int4ge"),
                         (">>>", "int4gt"))),
        "CREATE OPERATOR CLASS kill_ops FOR TYPE integer USING btree AS OPERATOR 1 <<<, OPERATOR 2 <<<=, "
        "OPERATOR 3 ====, OPERATOR 4 >>>=, OPERATOR 5 >>>, FUNCTION 1 cmp_kill(integer, integer)")
    pg.arm = lambda: pg.execute(f"INSERT INTO kill_target VALUES ({other_session.info.backend_pid})")
    yield pg
    pg.execute("DROP OPERATOR FAMILY IF EXISTS kill_ops USING btree CASCADE")


OPAQUE = "whose body PostgreSQL does not parse before it runs"
BODIES = {
    "a STABLE PL/pgSQL function": ("SELECT st_kill() AS a", ("st_kill()", OPAQUE)),
    "a STABLE PL/pgSQL function in FROM": ("SELECT * FROM st_kill_rows() AS x(a)", ("st_kill_rows()", OPAQUE)),
    "an IMMUTABLE SQL function, which the vetting EXPLAIN itself ran on a constant":
        ("SELECT im_kill(1) AS a", ("pg_terminate_backend(", "reached through im_kill(integer)", "VOLATILE")),
    "a STABLE BEGIN ATOMIC function": ("SELECT at_kill() AS a", ("reached through at_kill()", "VOLATILE")),
    "a SQL function calling one": ("SELECT wrapped(k) AS a FROM victim",
                                   ("reached through wrapped(text), im_kill(integer)", "VOLATILE")),
    "an operator whose function is a STABLE PL/pgSQL one": ("SELECT k FROM victim WHERE id #=# 1",
                                                            ("same_kill(integer,integer)", OPAQUE)),
}


@pytest.mark.parametrize("spelling", BODIES)
def test_postgresql_a_function_declared_stable_or_immutable_is_read_through(pg_bodies, other_session, spelling,
                                                                            monitor_for):
    sql, words = BODIES[spelling]
    assert_refused(run_query(monitor_for, pg_bodies, sql), *words)
    assert_alive(other_session)


def test_postgresql_a_where_calling_a_stable_plpgsql_function_is_refused(pg_bodies, other_session, monitor_for):
    assert_refused(run_where(monitor_for, pg_bodies, "st_kill()"), "st_kill()", OPAQUE)
    assert_alive(other_session)


def test_dupewatch_fix_refuses_a_where_calling_a_stable_plpgsql_function_and_changes_nothing(
        pg_bodies, other_session, tmp_path):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg_bodies.url}},
                        [{"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": "st_kill()"}])
    before = pg_bodies.rows("SELECT id, k FROM victim ORDER BY id")
    result = run_cli("fix", "w", "--yes", "--config", str(path))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is not allowed in a check" in result.stderr and "st_kill()" in result.stderr
    assert pg_bodies.rows("SELECT id, k FROM victim ORDER BY id") == before
    assert_alive(other_session)


def test_postgresql_a_begin_atomic_function_reading_a_view_is_vetted_through_the_view(pg, other_session,
                                                                                       monitor_for):
    """PostgreSQL stores a BEGIN ATOMIC body parsed but not rewritten: a view it reads is expanded only when the
    function runs (a table check's `where: at_view()` ended another session). The same body as text was refused."""
    pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)", "INSERT INTO victim VALUES (1, 'a'), (2, 'a')",
               f"CREATE VIEW killer AS SELECT pg_terminate_backend({other_session.info.backend_pid}) AS x",
               "CREATE VIEW over_killer AS SELECT x FROM killer",
               "CREATE FUNCTION at_view() RETURNS boolean STABLE LANGUAGE sql BEGIN ATOMIC SELECT x FROM over_killer; "
               "END",
               "CREATE VIEW calm AS SELECT k FROM victim",
               "CREATE FUNCTION at_calm() RETURNS bigint STABLE LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM calm; "
               "END")
    assert_refused(run_where(monitor_for, pg, "at_view()"), "pg_terminate_backend(", "reached through at_view()")
    assert_refused(run_query(monitor_for, pg, "SELECT k FROM victim WHERE at_view()"), "pg_terminate_backend(")
    assert_alive(other_session)
    assert run_where(monitor_for, pg, "at_calm() > 0").status == "duplicates"


def test_postgresql_a_begin_atomic_function_reading_a_table_is_vetted_with_its_row_level_security_policy(
        pg, other_session, monitor_for):
    """The rewriter adds a row-level security policy to a table the body reads each time the function runs, for a
    role the policy applies to: its USING is vetted too."""
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS",
                      f'GRANT USAGE ON SCHEMA "{pg.schema}" TO {{user}}', prefix="dw_fixro2", password="pw") as role:
        pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
                   "INSERT INTO victim VALUES (1, 'a'), (2, 'a')",
                   "CREATE TABLE guarded (id INTEGER)", "INSERT INTO guarded VALUES (1)",
                   "ALTER TABLE guarded ENABLE ROW LEVEL SECURITY",
                   f'CREATE POLICY take ON guarded TO "{role}" USING (pg_try_advisory_lock(16016))',
                   "CREATE FUNCTION at_rls() RETURNS boolean STABLE LANGUAGE sql BEGIN ATOMIC "
                   "SELECT count(*) > 0 FROM guarded; END",
                   f'GRANT SELECT ON victim, guarded TO "{role}"')
        url = make_url(pg.url).set(username=role, password="pw").render_as_string(hide_password=False)
        monitor = monitor_for({"d": {"url": url}},
                              [{"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": "at_rls()"}])
        assert_refused(monitor.run("w"), "pg_try_advisory_lock(", "reached through at_rls()")
        assert not pg.rows("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 16016")


FAMILY = {
    "ORDER BY ... USING": "SELECT id FROM victim ORDER BY id USING <<<",
    "a sub-select sorted USING": "SELECT k FROM victim WHERE id IN (SELECT id FROM victim ORDER BY id USING <<<)",
}


@pytest.mark.parametrize("spelling", FAMILY)
def test_postgresql_sorting_by_an_operator_runs_its_family_support_function_which_is_vetted(
        pg_operator_family, other_session, spelling, monitor_for):
    pg_operator_family.arm()
    assert_refused(run_query(monitor_for, pg_operator_family, FAMILY[spelling]), "cmp_kill(integer,integer)",
                   "VOLATILE")
    assert_alive(other_session)


def test_postgresql_a_where_sorting_by_an_operator_of_a_volatile_family_is_refused(pg_operator_family,
                                                                                   other_session, monitor_for):
    pg_operator_family.arm()
    assert_refused(run_where(monitor_for, pg_operator_family, FAMILY["a sub-select sorted USING"].split("WHERE ")[1]),
                   "cmp_kill(integer,integer)")
    assert_alive(other_session)


def test_postgresql_sql_functions_that_call_nothing_refused_are_allowed(pg, monitor_for):
    """Named and numbered arguments, an argument qualified by the function's name, a column of the body's own table
    named like an argument (the column wins, as in PostgreSQL), a body ending in a semicolon, BEGIN ATOMIC, a
    function setting its own search_path, a function calling another, an operator of built-in families."""
    pg.execute(
        "CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
        "INSERT INTO victim VALUES (1, 'a'), (2, 'A '), (3, 'b')",
        "CREATE FUNCTION norm(t text) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT lower(trim(norm.t)); $$",
        "CREATE FUNCTION norm2(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT norm($1)'",
        "CREATE FUNCTION seen(k text) RETURNS bigint STABLE LANGUAGE sql AS $$ SELECT count(*) FROM victim v "
        "WHERE v.k = k $$",
        "CREATE FUNCTION atomic_norm(t text) RETURNS text IMMUTABLE LANGUAGE sql BEGIN ATOMIC "
        "SELECT upper(trim(t)); END",
        "CREATE FUNCTION pathed(t text) RETURNS text STABLE LANGUAGE sql SET search_path = pg_catalog "
        "AS $$ SELECT lower(t) $$")
    sql = ("SELECT norm2(k) AS k, count(*) AS dup_count, max(atomic_norm(k)) AS a, max(pathed(k)) AS p, "
           "max(seen(k)) AS s FROM victim GROUP BY norm2(k) HAVING count(*) > 1 ORDER BY 1")
    result = run_query(monitor_for, pg, sql)
    assert result.status == "violations", result.error
    assert run_where(monitor_for, pg, "norm(k) = 'a'").status == "ok"  # run: 'a' and 'A ' differ as keys


def test_dupewatch_check_names_a_stable_plpgsql_function_in_one_line_and_exits_2(pg_bodies, other_session,
                                                                                 tmp_path):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg_bodies.url}},
                        [{"name": "sneaky", "database": "d", "sql": "SELECT k, st_kill() AS b FROM victim"}])
    result = run_cli("check", "--config", str(path))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if "is not allowed in a check" in line]
    assert len(errors) == 1 and errors[0].startswith("sneaky: ") and "st_kill()" in errors[0], result.output
    assert "Traceback" not in result.output
    assert_alive(other_session)


# -- disk: a short statement spilling without end stops at the server's bound, not at its timeout ------------------

WIDE = "'" + "x" * 6000 + "'"
SPILLING = {
    "postgresql": f"WITH RECURSIVE r(n, s) AS (SELECT 1, CAST({WIDE} AS text) UNION ALL SELECT n + 1, s FROM r) "
                  "SELECT count(*) AS n FROM r",
    "mysql": f"WITH RECURSIVE r AS (SELECT 1 AS n, CAST({WIDE} AS CHAR(6000)) AS s UNION ALL "
             "SELECT r.n + 1, r.s FROM r, victim WHERE r.n < 40) SELECT COUNT(*) AS n FROM r",
}
SPILL_STOPPED = {"postgresql": "temporary file size exceeds temp_file_limit", "mysql": "is full"}


def test_a_statement_spilling_to_disk_without_end_is_stopped_by_the_servers_bound(server, monkeypatch, monitor_for):
    """A recursive CTE of no bound wrote 1.7 GB of temporary files in 5 s on PostgreSQL (1.5 GB of temporary table
    on MariaDB through a join): the detection session bounds them (`temp_file_limit`, `tmp_disk_table_size`, here
    lowered to 1 MiB), also once its connection has been back to the pool (`DISCARD ALL` resets settings)."""
    monkeypatch.setattr("monitor.dialects.postgresql.TEMP_FILE_LIMIT_KB", 1024)
    monkeypatch.setattr("monitor.dialects.mysql.TEMP_TABLE_DISK_BYTES", 1024 * 1024)
    db = server
    db.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))",
               "INSERT INTO victim VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    monitor = monitor_for({"d": {"url": db.url, "statement_timeout": "120s"}},
                          [{"name": "c", "database": "d", "sql": SPILLING[db.dialect]}])
    for _ in range(2):  # the second run's connection came back from the pool
        result = monitor.run("c")
        assert result.status == "error" and SPILL_STOPPED[db.dialect] in result.error, result.error
        assert "\n" not in result.error


def test_the_detection_sessions_disk_bound_is_the_one_dupewatch_sets(server):
    """As set, not as mangled: MariaDB stored `LEAST()` of its unsigned default and the bound as 1024 bytes, and
    every check with a temporary table then failed ("The table '(temporary)' is full")."""
    from monitor.dialects.mysql import TEMP_TABLE_DISK_BYTES
    from monitor.dialects.postgresql import TEMP_FILE_LIMIT_KB

    database = Database("d", DatabaseConfig(url=server.url))
    ask, expected = {"postgresql": ("SELECT setting::bigint FROM pg_settings WHERE name = 'temp_file_limit'",
                                    TEMP_FILE_LIMIT_KB),  # the test role is a superuser
                     "mysql": ("SELECT @@SESSION.tmp_disk_table_size", TEMP_TABLE_DISK_BYTES)}[server.dialect]
    try:
        for _ in range(2):  # the second time on the connection back from the pool
            with database.read_only() as conn:
                assert conn.exec_driver_sql(ask).scalar_one() == expected
    finally:
        database.dispose()


def test_postgresql_a_volatile_function_added_to_pg_catalog_under_a_harmless_name_is_refused(pg, other_session,
                                                                                              monitor_for):
    """`random`, `pg_sleep`... are allowed VOLATILE functions by name in pg_catalog; a superuser may add an overload
    there (`pg_catalog.random(integer)`), which is not the built-in one."""
    pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
               "CREATE FUNCTION pg_catalog.random(n integer) RETURNS integer VOLATILE LANGUAGE plpgsql "
               f"AS $$ BEGIN PERFORM pg_terminate_backend({other_session.info.backend_pid}); RETURN n; END $$")
    try:
        assert_refused(run_query(monitor_for, pg, "SELECT random(1) AS a"), "random(integer)", "VOLATILE")
    finally:
        pg.execute("DROP FUNCTION pg_catalog.random(integer)")
    assert_alive(other_session)


RANGES = {
    "ORDER BY a range": "SELECT r FROM kr ORDER BY r",
    "GROUP BY a range": "SELECT r, count(*) AS dup_count FROM kr GROUP BY r HAVING count(*) > 1",
    "DISTINCT arrays of a range": "SELECT DISTINCT ARRAY[r] AS a FROM kr",
    "rows holding a range compared": "SELECT 1 AS a FROM kr WHERE ROW(r, 1) < ROW(r, 2)",
}


@pytest.mark.parametrize("spelling", RANGES)
def test_postgresql_comparing_a_range_runs_its_subtype_comparison_which_is_vetted(pg_operator_family, other_session,
                                                                                  spelling, monitor_for):
    """A range type compares its bounds by its subtype's operator class (`subtype_opclass`), which no field of the
    statement names: the built-in range_cmp calls it, for the range, an array of it, a row holding it."""
    pg_operator_family.execute("CREATE TYPE krange AS RANGE (SUBTYPE = integer, SUBTYPE_OPCLASS = kill_ops)",
                               "CREATE TABLE kr (r krange)", "INSERT INTO kr VALUES ('[1,3)'), ('[2,5)'), ('[1,3)')")
    pg_operator_family.arm()
    assert_refused(run_query(monitor_for, pg_operator_family, RANGES[spelling]), "cmp_kill(integer,integer)")
    assert_alive(other_session)


def test_postgresql_a_stable_plpgsql_function_added_to_an_extension_is_refused(own_pg, other_session, monitor_for):
    """An extension's compiled functions are taken at their declaration; its owner may add any function to it
    (`ALTER EXTENSION ... ADD FUNCTION`), which is read like any other. (A database of its own: an extension is
    installed once per database.)"""
    own_pg.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)", "INSERT INTO victim VALUES (1, 'a')",
                   "CREATE FUNCTION st_kill() RETURNS boolean STABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM "
                   f"pg_terminate_backend({other_session.info.backend_pid}); RETURN true; END $$",
                   "CREATE EXTENSION pgcrypto", "ALTER EXTENSION pgcrypto ADD FUNCTION st_kill()")
    assert_refused(run_query(monitor_for, own_pg, "SELECT k FROM victim WHERE st_kill()"), "st_kill()", OPAQUE)
    assert_alive(other_session)


def test_postgresql_an_extensions_compiled_functions_are_allowed(own_pg, monitor_for):
    own_pg.execute("CREATE EXTENSION pgcrypto", "CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
                   "INSERT INTO victim VALUES (1, 'a'), (2, 'a')")
    result = run_query(monitor_for, own_pg, "SELECT encode(digest(k, 'sha256'), 'hex') AS h, count(*) AS dup_count "
                                            "FROM victim GROUP BY 1 HAVING count(*) > 1")
    assert result.status == "violations", result.error


def test_postgresql_a_function_changing_a_setting_while_it_runs_is_refused(pg_bodies, monitor_for):
    """`SET work_mem = '2GB'` on a function lifts dupewatch's session's bounds while it runs (a hash of 2 GB); its
    own `SET search_path` stays allowed (`test_postgresql_sql_functions_that_call_nothing_refused_are_allowed`)."""
    pg_bodies.execute("CREATE FUNCTION roomy() RETURNS bigint STABLE LANGUAGE sql SET work_mem = '2GB' "
                      "AS $$ SELECT count(DISTINCT g) FROM generate_series(1, 10) AS g $$")
    assert_refused(run_query(monitor_for, pg_bodies, "SELECT k FROM victim WHERE roomy() > 0"), "roomy()",
                   "work_mem=2GB")


def test_postgresql_a_function_setting_a_timeout_is_refused_and_one_setting_its_time_zone_is_allowed(
        pg_bodies, monitor_for):
    """Only the settings that bound a statement's resources or time are refused on a function (`SET timezone`
    bounds nothing: an application's `utc_day()` was refused, with advice to change it)."""
    pg_bodies.execute("CREATE FUNCTION utc_day(t timestamptz) RETURNS date IMMUTABLE LANGUAGE sql "
                      "SET timezone = 'UTC' AS $$ SELECT CAST(t AS date) $$",
                      "CREATE FUNCTION patient() RETURNS boolean STABLE LANGUAGE sql SET statement_timeout = 0 "
                      "AS $$ SELECT true $$")
    result = run_query(monitor_for, pg_bodies, "SELECT utc_day(now()) AS d, count(*) AS dup_count FROM victim "
                                               "GROUP BY 1 HAVING count(*) > 1")
    assert result.status == "violations", result.error
    refused = run_query(monitor_for, pg_bodies, "SELECT k FROM victim WHERE patient()")
    assert_refused(refused, "patient()", "statement_timeout=0")
    assert "ALTER FUNCTION" not in refused.error


def test_postgresql_a_domain_checked_by_an_immutable_plpgsql_function_blocks_no_check_on_the_database(
        pg_bodies, monitor_for):
    """A domain's CHECK runs even while a literal of a type holding it is parsed, so what it calls is vetted for every
    statement on the database; a function it calls declared IMMUTABLE in PL/pgSQL is taken at its declaration there
    (it refused every custom check, on tables not using the domain too). A statement coercing a value to the domain
    runs that function, which is read as any other call the statement makes."""
    pg_bodies.execute("CREATE FUNCTION plchk(t text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql "
                      "AS $$ BEGIN RETURN position('@' in t) > 0; END $$",
                      "CREATE DOMAIN email AS text CHECK (plchk(VALUE))")
    result = run_query(monitor_for, pg_bodies, "SELECT k, count(*) AS dup_count FROM victim GROUP BY k "
                                               "HAVING count(*) > 1")
    assert result.status == "violations", result.error
    assert run_where(monitor_for, pg_bodies, "id > 0").status == "duplicates"
    assert_refused(run_where(monitor_for, pg_bodies, "CAST(k AS email) IS NOT NULL"), "plchk(text)", OPAQUE)
    assert_refused(run_query(monitor_for, pg_bodies, "SELECT k FROM victim WHERE CAST(k || '@' AS email) <> ''"),
                   "plchk(text)", OPAQUE)


# -- MariaDB: a view's locking clause ---------------------------------------------------------------------------

LOCKING_VIEW = {
    "the view": "SELECT k FROM shared",
    "an aliased view over it": "SELECT x.id FROM over_shared AS x",
    "a sub-select": "SELECT k FROM victim WHERE id IN (SELECT id FROM shared)",
}


@pytest.mark.parametrize("spelling", LOCKING_VIEW)
def test_mysql_a_view_that_locks_the_rows_it_reads_is_refused(mysql, spelling, monitor_for):
    """A TEMPTABLE view `... LOCK IN SHARE MODE` takes shared row locks in a read-only transaction (it kept the
    application's UPDATE waiting until its lock wait timeout), and the server's expansion of a statement reading it
    leaves the clause out; its stored definition says so."""
    mysql.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))",
                  "INSERT INTO victim VALUES (1, 'a'), (2, 'a'), (3, 'b')",
                  "CREATE ALGORITHM=TEMPTABLE VIEW shared AS SELECT id, k FROM victim LOCK IN SHARE MODE",
                  "CREATE VIEW over_shared AS SELECT id FROM shared", "CREATE VIEW calm AS SELECT id, k FROM victim")
    assert_refused(run_query(monitor_for, mysql, LOCKING_VIEW[spelling]), "view shared", "LOCK IN SHARE MODE")
    assert_refused(run_where(monitor_for, mysql, "id IN (SELECT id FROM shared)"), "view shared")
    assert run_query(monitor_for, mysql, "SELECT k, COUNT(*) AS dup_count FROM calm GROUP BY k "
                                         "HAVING COUNT(*) > 1").status == "violations"

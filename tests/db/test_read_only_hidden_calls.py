"""Calls a statement makes that its parse tree does not name, found by an adversarial round (brkro): PostgreSQL adds a
function's default arguments (`CREATE FUNCTION g(a int, b int DEFAULT f())`) to a call that leaves them out while it
plans, not while it parses, so the parse tree vetted before planning holds `g` alone; the planner then folds an
IMMUTABLE default on its constants, running it inside the vetting EXPLAIN, and the plan holds only its result. Each
refusal here got through before; the "allowed" case guards against refusing too much.
"""

from __future__ import annotations

import uuid
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import make_url

from dbtest import MYSQL_URL, server_login, write_config
from fix_support import run_cli
from read_only_support import assert_alive, assert_refused, run_query, run_where

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pg_defaults(pg: Any, other_session: Any) -> Any:
    """`victim` (key `k`, 'a' twice), and SQL functions that call nothing refused in their bodies but have a default
    argument calling an IMMUTABLE PL/pgSQL function that ends `other_session` (or, `vol_default`, `nextval`)."""
    kill = f"pg_terminate_backend({other_session.info.backend_pid})"
    pg.execute(
        "CREATE TABLE victim (id INTEGER PRIMARY KEY, k TEXT)",
        "INSERT INTO victim VALUES (1, 'a'), (2, 'a'), (3, 'b')",
        "CREATE SEQUENCE counter",
        f"CREATE FUNCTION im_kill() RETURNS integer IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM {kill}; "
        "RETURN 0; END $$",
        "CREATE FUNCTION plus(a integer, b integer DEFAULT im_kill()) RETURNS integer IMMUTABLE LANGUAGE sql "
        "AS $$ SELECT a + b $$",
        "CREATE FUNCTION wraps_plus(a integer) RETURNS integer STABLE LANGUAGE sql AS $$ SELECT plus(a) $$",
        "CREATE FUNCTION vol_default(a integer, b bigint DEFAULT nextval('counter')) RETURNS integer "
        "IMMUTABLE LANGUAGE sql AS $$ SELECT a + 0 * b::integer $$",
        "CREATE FUNCTION tame(a integer, b integer DEFAULT abs(-1)) RETURNS integer IMMUTABLE LANGUAGE sql "
        "AS $$ SELECT a * b $$")
    return pg


OPAQUE = "whose body PostgreSQL does not parse before it runs"
LEFT_OUT = "reached through the default arguments of plus(integer,integer)"
DEFAULTS = {
    "a default argument left out": ("SELECT plus(1) AS a", ("im_kill()", OPAQUE, LEFT_OUT)),
    "a default argument left out, in a WHERE": ("SELECT k FROM victim WHERE plus(id) > 0",
                                                ("im_kill()", OPAQUE)),
    "a default argument left out inside a SQL function's body": ("SELECT wraps_plus(1) AS a",
                                                                 ("im_kill()", OPAQUE, "wraps_plus(integer)")),
}


@pytest.mark.parametrize("spelling", DEFAULTS)
def test_postgresql_a_default_argument_calling_a_refused_function_is_refused(pg_defaults, other_session, spelling,
                                                                             monitor_for):
    sql, words = DEFAULTS[spelling]
    result = run_query(monitor_for, pg_defaults, sql)
    assert_alive(other_session)
    assert_refused(result, *words)


def test_postgresql_a_volatile_default_argument_is_refused(pg_defaults, monitor_for):
    assert_refused(run_query(monitor_for, pg_defaults, "SELECT vol_default(1) AS a"), "nextval(regclass)", "VOLATILE")


def test_postgresql_a_where_calling_a_function_whose_default_is_refused_is_refused(pg_defaults, other_session,
                                                                                  monitor_for):
    assert_refused(run_where(monitor_for, pg_defaults, "plus(id) > 0"), "im_kill()", OPAQUE)
    assert_alive(other_session)


def test_dupewatch_fix_refuses_a_where_whose_default_argument_is_refused_and_changes_nothing(
        pg_defaults, other_session, tmp_path):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg_defaults.url}},
                        [{"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": "plus(id) > 0"}])
    before = pg_defaults.rows("SELECT id, k FROM victim ORDER BY id")
    result = run_cli("fix", "w", "--yes", "--config", str(path))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is not allowed in a check" in result.stderr and "im_kill()" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert pg_defaults.rows("SELECT id, k FROM victim ORDER BY id") == before
    assert_alive(other_session)


def test_postgresql_a_default_argument_calling_nothing_refused_is_allowed(pg_defaults, monitor_for):
    result = run_query(monitor_for, pg_defaults,
                       "SELECT k, max(tame(id)) AS a, count(*) AS dup_count FROM victim GROUP BY k HAVING count(*) > 1")
    assert result.status == "violations", result.error
    assert run_where(monitor_for, pg_defaults, "tame(id) > 0").status == "duplicates"


# -- a table's stored expressions, which the planner folds while it plans a statement reading it ---------------


@pytest.fixture
def pg_children(pg: Any, other_session: Any) -> Any:
    """`parted` (partitioned) and `parent` (inheritance), each with 'a' twice, whose partition or child has a CHECK
    constraint calling an IMMUTABLE PL/pgSQL function, on constants, that ends `other_session`: PostgreSQL's planner
    reads the CHECK constraints of the partitions and children of a table a statement reads with a WHERE (constraint
    exclusion) and folds their IMMUTABLE calls on constants, running them while it plans, the vetting EXPLAIN too.
    The function ends the sessions in `kill_target`, armed once the rows are in (an INSERT runs the CHECK too).
    `tame_parted`'s partition has a CHECK calling only built-in functions. The planner also folds, for any statement
    reading a table, its index expressions (`indexed`), partial index predicates (`partial`), statistics
    expressions (`counted`) and partition key expressions (`keyed`), each calling the function here. `normed` calls
    such a function only over a column (its index, its partition's CHECK), which no planner folds."""
    pg.execute(
        "CREATE TABLE kill_target (pid integer)",
        "CREATE FUNCTION im_kill() RETURNS integer IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pid) FROM kill_target; RETURN 0; END $$",
        "CREATE TABLE parted (id INTEGER, k TEXT) PARTITION BY RANGE (id)",
        "CREATE TABLE parted_low PARTITION OF parted (CHECK (id > im_kill())) FOR VALUES FROM (0) TO (100)",
        "INSERT INTO parted VALUES (1, 'a'), (2, 'a'), (3, 'b')",
        "CREATE TABLE parent (id INTEGER, k TEXT)",
        "CREATE TABLE child (CHECK (id > im_kill())) INHERITS (parent)",
        "INSERT INTO child VALUES (1, 'a'), (2, 'a'), (3, 'b')",
        "CREATE TABLE tame_parted (id INTEGER, k TEXT) PARTITION BY RANGE (id)",
        "CREATE TABLE tame_low PARTITION OF tame_parted (CHECK (id > abs(-1) - 2)) FOR VALUES FROM (0) TO (100)",
        "INSERT INTO tame_parted VALUES (1, 'a'), (2, 'a'), (3, 'b')",
        "CREATE TABLE indexed (id INTEGER, k TEXT)",
        "CREATE INDEX indexed_expression ON indexed ((id + im_kill()))",
        "CREATE TABLE partial (id INTEGER, k TEXT)",
        "CREATE INDEX partial_predicate ON partial (id) WHERE id > im_kill()",
        "CREATE TABLE counted (id INTEGER, k TEXT)",
        "CREATE STATISTICS counted_stats ON (id + im_kill()), k FROM counted",
        "CREATE TABLE keyed (id INTEGER, k TEXT) PARTITION BY RANGE ((id + im_kill()))",
        "CREATE TABLE keyed_low PARTITION OF keyed FOR VALUES FROM (0) TO (100)",
        "CREATE FUNCTION im_norm(t text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pid) FROM kill_target; RETURN lower(t); END $$",
        "CREATE TABLE normed (id INTEGER, k TEXT) PARTITION BY RANGE (id)",
        "CREATE TABLE normed_low PARTITION OF normed (CHECK (im_norm(k) <> '')) FOR VALUES FROM (0) TO (100)",
        "CREATE INDEX normed_k ON normed (im_norm(k))",
        *(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'a'), (3, 'b')"
          for t in ("indexed", "partial", "counted", "keyed", "normed")),
        f"INSERT INTO kill_target VALUES ({other_session.info.backend_pid})")
    return pg


CHILD_CHECKS = {
    "a partition's CHECK": ("SELECT k FROM parted WHERE id > 0", "CHECK constraint", "of table parted_low"),
    "an inheritance child's CHECK": ("SELECT k FROM parent WHERE id > 0", "CHECK constraint", "of table child"),
    # read by the planner for every statement reading the table (once per session: the server caches them)
    "an index expression": ("SELECT k FROM indexed", "index indexed_expression"),
    "a partial index's predicate": ("SELECT k FROM partial", "index partial_predicate"),
    "a statistics object's expression": ("SELECT k FROM counted", "statistics object counted_stats"),
    "a partition key expression": ("SELECT k FROM keyed", "the partition key of table keyed"),
    "an index expression, in a sub-select": ("SELECT 1 AS a WHERE EXISTS (SELECT FROM indexed)",
                                             "index indexed_expression"),
}


@pytest.mark.parametrize("spelling", CHILD_CHECKS)
def test_postgresql_an_expression_the_planner_folds_for_a_table_read_is_vetted(pg_children, other_session, spelling,
                                                                   monitor_for):
    sql, *words = CHILD_CHECKS[spelling]
    result = run_query(monitor_for, pg_children, sql)
    assert_alive(other_session)
    assert_refused(result, "im_kill()", OPAQUE, *words, "which PostgreSQL's planner evaluates on constants")


@pytest.mark.parametrize("table", ["parted", "parent", "indexed", "keyed"])
def test_postgresql_a_where_on_a_table_whose_expressions_the_planner_folds_is_refused(pg_children, other_session,
                                                                                     table, monitor_for):
    monitor = monitor_for({"d": {"url": pg_children.url}},
                          [{"name": "w", "database": "d", "table": table, "key": ["k"], "where": "k <> 'z'"}])
    result = monitor.run("w")
    assert_alive(other_session)
    assert_refused(result, "im_kill()", OPAQUE)


def test_postgresql_a_partition_check_calling_nothing_refused_is_allowed(pg_children, monitor_for):
    result = run_query(monitor_for, pg_children,
                       "SELECT k, count(*) AS dup_count FROM tame_parted WHERE id > 0 GROUP BY k HAVING count(*) > 1")
    assert result.status == "violations", result.error


def test_postgresql_a_tables_expressions_calling_a_function_over_a_column_are_allowed(pg_children, other_session,
                                                                                     monitor_for):
    """The planner folds only calls on constants: `im_norm(k)`, in an index and a partition's CHECK, never runs
    while a statement reading the table is planned, so neither refuses a check reading it."""
    result = run_query(monitor_for, pg_children,
                       "SELECT k, count(*) AS dup_count FROM normed WHERE id > 0 GROUP BY k HAVING count(*) > 1")
    assert result.status == "violations", result.error
    monitor = monitor_for({"d": {"url": pg_children.url}},
                          [{"name": "w", "database": "d", "table": "normed", "key": ["k"], "where": "k <> 'z'"}])
    assert monitor.run("w").status == "duplicates"
    assert_alive(other_session)


@pytest.fixture
def pg_mutable_children(pg: Any, other_session: Any) -> Any:
    """Inheritance parents whose child's CHECK calls, on constants, a PL/pgSQL function declared VOLATILE
    (`vol_parent`) or STABLE (`stable_parent`): the planner's constant folding runs only IMMUTABLE calls, so
    neither runs while a statement reading the parent is planned (found by review: such a read was refused as
    "evaluated on constants"). `wrapped_parent`'s child passes the IMMUTABLE `im_kill()` to the VOLATILE function,
    and the planner folds that argument."""
    pg.execute(
        "CREATE TABLE kill_target (pid integer)",
        "CREATE FUNCTION im_kill() RETURNS integer IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pid) FROM kill_target; RETURN 0; END $$",
        "CREATE FUNCTION max_id() RETURNS integer VOLATILE LANGUAGE plpgsql AS $$ BEGIN RETURN 1000; END $$",
        "CREATE FUNCTION stable_max_id() RETURNS integer STABLE LANGUAGE plpgsql AS $$ BEGIN RETURN 1000; END $$",
        "CREATE FUNCTION vol_plus(a integer) RETURNS integer VOLATILE LANGUAGE plpgsql AS $$ BEGIN "
        "RETURN a + 1000; END $$",
        *(statement for parent, check in (("vol_parent", "id < max_id()"), ("stable_parent", "id < stable_max_id()"),
                                          ("wrapped_parent", "id < vol_plus(im_kill())"))
          for statement in (f"CREATE TABLE {parent} (id INTEGER, k TEXT)",
                            f"CREATE TABLE {parent}_child (CHECK ({check})) INHERITS ({parent})",
                            f"INSERT INTO {parent}_child VALUES (1, 'a'), (2, 'a'), (3, 'b')")),
        f"INSERT INTO kill_target VALUES ({other_session.info.backend_pid})")
    return pg


@pytest.mark.parametrize("parent", ["vol_parent", "stable_parent"])
def test_postgresql_a_childs_check_calling_a_volatile_or_stable_function_on_constants_is_allowed(
        pg_mutable_children, parent, monitor_for):
    result = run_query(monitor_for, pg_mutable_children,
                       f"SELECT k, count(*) AS dup_count FROM {parent} WHERE id > 0 GROUP BY k HAVING count(*) > 1")
    assert result.status == "violations", result.error


def test_postgresql_an_immutable_argument_of_a_volatile_call_in_a_childs_check_is_still_vetted(
        pg_mutable_children, other_session, monitor_for):
    result = run_query(monitor_for, pg_mutable_children, "SELECT k FROM wrapped_parent WHERE id > 0")
    assert_alive(other_session)
    assert_refused(result, "im_kill()", OPAQUE, "of table wrapped_parent_child",
                   "which PostgreSQL's planner evaluates on constants")
    assert "vol_plus" not in result.error


def test_dupewatch_check_names_an_index_expression_the_planner_folds_in_one_line_and_exits_2(pg_children,
                                                                                            other_session, tmp_path):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg_children.url}},
                        [{"name": "w", "database": "d", "table": "indexed", "key": ["k"], "where": "k <> 'z'"}])
    result = run_cli("check", "--config", str(path))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "is not allowed in a check" in line]
    assert len(errors) == 1 and "index indexed_expression" in errors[0] and "im_kill()" in errors[0], result.output
    assert "Traceback" not in result.output + result.stderr
    assert_alive(other_session)


# -- MariaDB: a DETERMINISTIC stored function, run while the vetting PREPARE sizes a built-in function's result -------


@pytest.fixture
def mysql_other_session() -> Any:
    """Another MariaDB session, the one the function below ends."""
    url = make_url(MYSQL_URL)
    conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "",
                           autocommit=True)
    yield conn
    conn.close()


def assert_mysql_alive(session: Any) -> None:
    with session.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)  # nothing ended it


DETERMINISTIC_SPELLINGS = {
    "ROUND's precision": ("sql", "SELECT ROUND(1.5, ends()) AS a FROM victim"),
    "SUBSTR's length": ("sql", "SELECT SUBSTR(k, 1, ends()) AS a FROM victim"),
    "SUBSTR's length, in a where": ("where", "SUBSTR(k, 1, ends()) <> ''"),
}


def _victim_id(session: Any) -> int:
    with session.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def _mysql_victim(mysql: Any, *more: str) -> str:
    """`victim` (key `k`, 'a' twice), then the statements `more`: the database's name."""
    mysql.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, k VARCHAR(10))",
                  "INSERT INTO victim (id, k) VALUES (1, 'a'), (2, 'a'), (3, 'b')", *more)
    return str(make_url(mysql.url).database)


def _armed_ends(victim_id: int) -> tuple[str, str]:
    """`armed` (empty) and `ends()`, DETERMINISTIC, ending session `victim_id` once `armed` holds a row."""
    return ("CREATE TABLE armed (n INTEGER)",
            "CREATE FUNCTION ends() RETURNS INT DETERMINISTIC BEGIN IF (SELECT COUNT(*) FROM armed) > 0 THEN "
            f"KILL {victim_id}; END IF; RETURN 3; END")


@pytest.mark.parametrize("spelling", DETERMINISTIC_SPELLINGS)
def test_mysql_a_deterministic_stored_function_is_refused_before_the_vetting_prepare_runs_it(
        mysql, mysql_other_session, spelling, monitor_for):
    victim_id = _victim_id(mysql_other_session)
    _mysql_victim(mysql,
                  f"CREATE FUNCTION ends() RETURNS INT DETERMINISTIC BEGIN KILL {victim_id}; RETURN 3; END")
    kind, text = DETERMINISTIC_SPELLINGS[spelling]
    check = {"name": "c", "database": "d", "sql": text} if kind == "sql" else \
        {"name": "c", "database": "d", "table": "victim", "key": ["k"], "where": text}
    result = monitor_for({"d": {"url": mysql.url}}, [check]).run("c")
    assert_mysql_alive(mysql_other_session)
    assert_refused(result, "ends()", "DETERMINISTIC", "may SELECT but not EXECUTE")


ACCENT_FOLDED_SPELLINGS = {
    **DETERMINISTIC_SPELLINGS,
    "through a view": ("sql", "SELECT ROUND(1.5, a) AS b FROM folded_view"),
}


@pytest.mark.parametrize("spelling", ACCENT_FOLDED_SPELLINGS)
def test_mysql_a_deterministic_stored_function_called_by_its_name_without_accents_is_refused_before_it_runs(
        mysql, mysql_other_session, spelling, monitor_for):
    """The server finds `endš` when `ends()` is called: routine names compare under utf8mb3_general_ci, which folds
    accents as well as case. Before, the word `ends` matched no DETERMINISTIC function's name, and the vetting
    PREPARE ran `endš` (it ended another session)."""
    victim_id = _victim_id(mysql_other_session)
    _mysql_victim(mysql,
                  f"CREATE FUNCTION `endš`() RETURNS INT DETERMINISTIC BEGIN KILL {victim_id}; RETURN 3; END",
                  "CREATE VIEW folded_view AS SELECT ends() AS a FROM victim")
    kind, text = ACCENT_FOLDED_SPELLINGS[spelling]
    check = {"name": "c", "database": "d", "sql": text} if kind == "sql" else \
        {"name": "c", "database": "d", "table": "victim", "key": ["k"], "where": text}
    result = monitor_for({"d": {"url": mysql.url}}, [check]).run("c")
    assert_mysql_alive(mysql_other_session)
    assert_refused(result, "endš()", "DETERMINISTIC")


def test_mysql_a_not_deterministic_stored_function_leaves_other_checks_running(mysql, monitor_for):
    """A NOT DETERMINISTIC function is no constant, so no PREPARE runs it: checks not calling it run, and one
    calling it is refused by the server's reading of it, as before."""
    _mysql_victim(mysql,
                  "CREATE FUNCTION grab() RETURNS INT NOT DETERMINISTIC RETURN GET_LOCK('dw_brkro_grab', 0)")
    monitor = monitor_for({"d": {"url": mysql.url}}, [
        {"name": "c", "database": "d",
         "sql": "SELECT k, COUNT(*) AS dup_count FROM victim GROUP BY k HAVING COUNT(*) > 1"},
        {"name": "g", "database": "d", "sql": "SELECT ROUND(1.5, grab()) AS a FROM victim"}])
    assert monitor.run("c").status == "violations"
    assert_refused(monitor.run("g"), "grab()")


def test_mysql_a_deterministic_stored_function_the_statement_does_not_name_refuses_nothing(mysql, monitor_for):
    """A DETERMINISTIC function on the server (applications declare theirs so, for the binary log) that a check
    neither names nor reads through a view: the check runs. Before, any such function the role may run refused
    every custom query and `where` on the server."""
    _mysql_victim(mysql,
                  "CREATE FUNCTION slugify(s VARCHAR(50)) RETURNS VARCHAR(50) DETERMINISTIC RETURN LOWER(s)")
    monitor = monitor_for({"d": {"url": mysql.url}}, [
        {"name": "c", "database": "d",
         "sql": "SELECT k, COUNT(*) AS dup_count FROM victim GROUP BY k HAVING COUNT(*) > 1"},
        {"name": "w", "database": "d", "table": "victim", "key": ["k"], "where": "k <> ''"}])
    assert (monitor.run("c").status, monitor.run("w").status) == ("violations", "duplicates")


def test_mysql_a_deterministic_stored_function_read_through_a_view_is_refused(
        mysql, mysql_other_session, monitor_for):
    """A view whose definition calls a DETERMINISTIC function as a constant argument: the PREPARE of a statement
    reading the view would run it. The view is named, so the statement is refused before it is prepared, naming the
    function and the view; the other session lives."""
    victim_id = _victim_id(mysql_other_session)
    _mysql_victim(mysql,
                  *_armed_ends(victim_id),  # armed once the views exist: creating one prepares the other
                  "CREATE VIEW rounded AS SELECT k, ROUND(1.5, ends()) AS a FROM victim",
                  "CREATE VIEW outer_rounded AS SELECT k, a FROM rounded",
                  "INSERT INTO armed VALUES (1)")
    result = monitor_for({"d": {"url": mysql.url}}, [
        {"name": "c", "database": "d", "sql": "SELECT k, a FROM outer_rounded"}]).run("c")
    assert_mysql_alive(mysql_other_session)
    assert_refused(result, "ends()", "through view outer_rounded")


def _run_as(monitor_for: Any, mysql: Any, user: str, sql: str) -> Any:
    url = make_url(mysql.url).set(username=user, password="pw")
    return monitor_for({"d": {"url": url.render_as_string(hide_password=False)}},
                       [{"name": "c", "database": "d", "sql": sql}]).run("c")


def test_mysql_a_deterministic_function_a_view_calls_is_refused_for_a_role_that_may_not_run_it(
        mysql, mysql_other_session, monitor_for):
    """A view (SQL SECURITY DEFINER) runs its definer's functions for a role that may only read the view: the role
    cannot see the function in information_schema.ROUTINES nor the view's definition, and the PREPARE of a statement
    reading the view runs it as a constant all the same. What the role can see is the view's SECURITY_TYPE and
    DEFINER (information_schema.VIEWS): a DEFINER view of another account is refused, naming it and the definer; the
    remedies it names work: as the definer the check is refused naming the function, and once the view is SQL
    SECURITY INVOKER the role is told to get SHOW VIEW on it, and with it the server refuses the view (error 1356: the
    invoker may not EXECUTE the function) before it runs anything."""
    victim_id = _victim_id(mysql_other_session)
    database = _mysql_victim(
        mysql, *_armed_ends(victim_id),
        "CREATE SQL SECURITY DEFINER VIEW rounded AS SELECT k, ROUND(1.5, ends()) AS a FROM victim",
        "INSERT INTO armed VALUES (1)")
    definer = mysql.scalar("SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() "
                           "AND TABLE_NAME = 'rounded'")
    with server_login("mysql", f"GRANT SELECT ON `{database}`.victim TO {{user}}",
                      f"GRANT SELECT ON `{database}`.rounded TO {{user}}", prefix="dw_definer",
                      password="pw") as user:
        result = _run_as(monitor_for, mysql, user, "SELECT k, a FROM rounded")
        assert_mysql_alive(mysql_other_session)
        assert_refused(result, f"view {database}.rounded", "SQL SECURITY DEFINER", f"connect as {definer}",
                       "SQL SECURITY INVOKER")
        # the remedies: the definer sees the function; the role, once the view is INVOKER, needs SHOW VIEW on it
        assert_refused(run_query(monitor_for, mysql, "SELECT k, a FROM rounded"), "ends()", "DETERMINISTIC")
        mysql.execute("DELETE FROM armed",  # ALTER VIEW prepares its definition, running the function
                      "ALTER SQL SECURITY INVOKER VIEW rounded AS SELECT k, ROUND(1.5, ends()) AS a FROM victim",
                      "INSERT INTO armed VALUES (1)")
        result = _run_as(monitor_for, mysql, user, "SELECT k, a FROM rounded")
        assert_mysql_alive(mysql_other_session)
        assert_refused(result, f"view {database}.rounded", f"GRANT SHOW VIEW ON `{database}`.`rounded` TO '{user}'")
        mysql.execute(f"GRANT SHOW VIEW ON `{database}`.rounded TO '{user}'@'%'")
        result = _run_as(monitor_for, mysql, user, "SELECT k, a FROM rounded")
        assert_mysql_alive(mysql_other_session)
        assert result.status == "error" and "lack rights to use them" in result.error, result.error


@pytest.fixture
def mysql_views(mysql: Any, mysql_other_session: Any) -> Any:
    """`victim` ('a' twice); `ends()`, DETERMINISTIC, ending `mysql_other_session` once armed; `rounded`, a DEFINER
    view calling it; `over_rounded`, an INVOKER view reading `rounded`; `inv_rounded`, an INVOKER view calling it;
    `tame`, an INVOKER view of `victim` calling nothing."""
    victim_id = _victim_id(mysql_other_session)
    _mysql_victim(mysql,
                  *_armed_ends(victim_id),  # armed once the views exist: creating one prepares the other
                  "CREATE SQL SECURITY DEFINER VIEW rounded AS SELECT k, ROUND(1.5, ends()) AS a FROM victim",
                  "CREATE SQL SECURITY INVOKER VIEW over_rounded AS SELECT k, a FROM rounded",
                  "CREATE SQL SECURITY INVOKER VIEW inv_rounded AS SELECT k, ROUND(1.5, ends()) AS a FROM victim",
                  "CREATE SQL SECURITY INVOKER VIEW tame AS SELECT id, k FROM victim",
                  "INSERT INTO armed VALUES (1)")
    return mysql


def test_mysql_a_definer_view_read_through_a_readable_view_is_refused(mysql_views, mysql_other_session,
                                                                      monitor_for):
    """The role may read `over_rounded`'s definition (SHOW VIEW), which reads the DEFINER view `rounded`: the
    statement names only the outer view, and the PREPARE would run `ends()` as `rounded`'s definer."""
    database = make_url(mysql_views.url).database
    with server_login("mysql", *(f"GRANT SELECT ON `{database}`.{t} TO {{user}}"
                                 for t in ("victim", "rounded", "over_rounded")),
                      f"GRANT SHOW VIEW ON `{database}`.over_rounded TO {{user}}", prefix="dw_definer",
                      password="pw") as user:
        result = _run_as(monitor_for, mysql_views, user, "SELECT k, a FROM over_rounded")
    assert_mysql_alive(mysql_other_session)
    assert_refused(result, f"view {database}.rounded (read through view {database}.over_rounded)",
                   "SQL SECURITY DEFINER")


def test_mysql_a_view_whose_definition_the_role_may_not_read_is_refused(mysql_views, mysql_other_session,
                                                                        monitor_for):
    """An INVOKER view calling a DETERMINISTIC function the role may run: without SHOW VIEW the role reads an empty
    definition in information_schema.VIEWS, and the PREPARE would run the function. The refusal names the GRANT;
    with it, the function is found through the view. A view of the role's tables it may SHOW runs its check."""
    database = make_url(mysql_views.url).database
    with server_login("mysql", *(f"GRANT SELECT ON `{database}`.{t} TO {{user}}" for t in ("victim", "inv_rounded",
                                                                                         "tame")),
                      f"GRANT SHOW VIEW ON `{database}`.tame TO {{user}}",
                      f"GRANT EXECUTE ON FUNCTION `{database}`.ends TO {{user}}", prefix="dw_definer",
                      password="pw") as user:
        result = _run_as(monitor_for, mysql_views, user, "SELECT k, a FROM inv_rounded")
        assert_mysql_alive(mysql_other_session)
        assert_refused(result, f"view {database}.inv_rounded", "may not read its definition",
                       f"GRANT SHOW VIEW ON `{database}`.`inv_rounded` TO '{user}'@'%'")
        mysql_views.execute(f"GRANT SHOW VIEW ON `{database}`.inv_rounded TO '{user}'@'%'")
        result = _run_as(monitor_for, mysql_views, user, "SELECT k, a FROM inv_rounded")
        assert_mysql_alive(mysql_other_session)
        assert_refused(result, "ends()", "through view inv_rounded", "DETERMINISTIC")
        tame = _run_as(monitor_for, mysql_views, user,
                       "SELECT k, COUNT(*) AS dup_count FROM tame GROUP BY k HAVING COUNT(*) > 1")
        assert tame.status == "violations", tame.error


def test_mysql_a_definer_view_of_another_account_runs_for_a_role_holding_every_global_privilege(mysql, monitor_for):
    """The server traces a statement reading a DEFINER view of another account for a role holding every global
    privilege (it may see every routine and definition): the test server's root runs a check over such a view."""
    database = _mysql_victim(mysql)
    with server_login("mysql", f"GRANT SELECT ON `{database}`.victim TO {{user}}", prefix="dw_definer") as user:
        mysql.execute(f"CREATE DEFINER = '{user}'@'%' SQL SECURITY DEFINER VIEW theirs AS SELECT id, k FROM victim")
        result = run_query(monitor_for, mysql,
                           "SELECT k, COUNT(*) AS dup_count FROM theirs GROUP BY k HAVING COUNT(*) > 1")
    assert result.status == "violations", result.error


def test_mysql_a_definer_view_of_another_database_the_statement_does_not_name_refuses_nothing(mysql, monitor_for):
    """A view of another database reached only by its name (`victim`, also the check's table here) is not read
    by a statement that does not name that database: the check runs."""
    database = _mysql_victim(mysql)
    other = f"dw_definer_{uuid.uuid4().hex[:8]}"
    mysql.execute(f"CREATE DATABASE `{other}`")
    try:
        mysql.execute(f"CREATE SQL SECURITY DEFINER VIEW `{other}`.victim AS SELECT id, k FROM `{database}`.victim")
        with server_login("mysql", f"GRANT SELECT ON `{database}`.victim TO {{user}}",
                          f"GRANT SELECT ON `{other}`.victim TO {{user}}", prefix="dw_definer",
                          password="pw") as user:
            result = _run_as(monitor_for, mysql, user,
                             "SELECT k, COUNT(*) AS dup_count FROM victim GROUP BY k HAVING COUNT(*) > 1")
    finally:
        mysql.execute(f"DROP DATABASE `{other}`")
    assert result.status == "violations", result.error


@pytest.mark.xfail(strict=True, reason="rev1: a view is matched as a word anywhere in the statement, so a "
                   "column named as a DEFINER view of another account refuses a check that ran before (its trace "
                   "was not withheld). Kept (issue 16, measured on MariaDB 10.11.19 with a DETERMINISTIC function "
                   "setting a session variable, called as ROUND(1.5, f()) in the view): the server names the views "
                   "a statement reads only after opening them, and opening one runs the function as its definer: "
                   "PREPARE, EXPLAIN, EXPLAIN EXTENDED (before its SHOW WARNINGS rewrite), and even "
                   "information_schema.COLUMNS, SHOW CREATE TABLE and DESCRIBE of the view ran it; only "
                   "information_schema.VIEWS did not. A TEMPORARY TABLE named as the view hides it from the "
                   "statement's own references, but MariaDB refuses to create one in the vetting's READ ONLY "
                   "transaction (error 1792), a read-only role seldom holds CREATE TEMPORARY TABLES, and a view "
                   "read through another view still opens the real one (the function ran). Refusing more is the "
                   "safe side")
def test_mysql_a_column_named_as_a_definer_view_of_another_account_refuses_nothing(mysql_views, monitor_for):
    """rev1: a check whose column happens to be named as a DEFINER view of another account (`rounded`) does not
    read the view."""
    database = make_url(mysql_views.url).database
    mysql_views.execute("CREATE TABLE sized (id INTEGER PRIMARY KEY, rounded VARCHAR(10))",
                        "INSERT INTO sized VALUES (1, 'a'), (2, 'a')")
    with server_login("mysql", f"GRANT SELECT ON `{database}`.sized TO {{user}}",
                      f"GRANT SELECT ON `{database}`.rounded TO {{user}}", prefix="dw_definer",
                      password="pw") as user:
        result = _run_as(monitor_for, mysql_views, user,
                         "SELECT rounded, COUNT(*) AS dup_count FROM sized GROUP BY rounded HAVING COUNT(*) > 1")
    assert result.status == "violations", result.error


def test_mysql_a_definer_view_of_a_role_is_refused_without_telling_to_connect_as_the_role(mysql, monitor_for):
    """rev1: a view whose definer is a role (`CREATE DEFINER = role VIEW`, its DEFINER `role@`) was refused telling
    the operator to "connect as role@": no one connects as a role, and a login granted it is another account,
    refused the same. The refusal names the role and the remedy that works (SQL SECURITY INVOKER)."""
    database = _mysql_victim(mysql)
    role = f"dw_definer_role_{uuid.uuid4().hex[:8]}"
    mysql.execute(f"CREATE ROLE {role}")
    try:
        mysql.execute(f"GRANT SELECT ON `{database}`.victim TO {role}",
                      f"CREATE DEFINER = {role} SQL SECURITY DEFINER VIEW theirs AS SELECT id, k FROM victim")
        with server_login("mysql", f"GRANT SELECT ON `{database}`.theirs TO {{user}}", prefix="dw_definer",
                          password="pw") as user:
            result = _run_as(monitor_for, mysql, user,
                             "SELECT k, COUNT(*) AS dup_count FROM theirs GROUP BY k HAVING COUNT(*) > 1")
    finally:
        mysql.execute(f"DROP ROLE {role}")
    assert_refused(result, f"view {database}.theirs", f"role {role}", "SQL SECURITY INVOKER")
    assert "connect as" not in result.error, result.error


def test_mysql_a_definer_view_whose_name_holds_a_backtick_is_refused(mysql, mysql_other_session, monitor_for):
    """rev1: a name holding a backtick is written with it doubled inside a quoted identifier (`ro``unded`): the
    view was not found named in the statement, and the PREPARE ran the DETERMINISTIC function it calls, as its
    definer."""
    victim_id = _victim_id(mysql_other_session)
    database = _mysql_victim(
        mysql, *_armed_ends(victim_id),
        "CREATE SQL SECURITY DEFINER VIEW `ro``unded` AS SELECT k, ROUND(1.5, ends()) AS a FROM victim")
    with server_login("mysql", f"GRANT SELECT ON `{database}`.victim TO {{user}}",
                      f"GRANT SELECT ON `{database}`.`ro``unded` TO {{user}}", prefix="dw_definer",
                      password="pw") as user:
        mysql.execute("INSERT INTO armed VALUES (1)")
        result = _run_as(monitor_for, mysql, user, "SELECT k, a FROM `ro``unded`")
    assert_mysql_alive(mysql_other_session)
    assert_refused(result, f"view {database}.ro`unded", "SQL SECURITY DEFINER")

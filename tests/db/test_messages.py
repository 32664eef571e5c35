"""What a new operator reads when something is wrong (issue 13, and issue 12's configuration errors): real
`dupewatch` subprocesses, their exit codes and their stderr, line by line.

Every problem of a file at once, one line each naming the file, the check and the field, with close matches;
unknown tables and columns before any check runs; a dead database once; passwords masked in every URL form;
row values kept out of error text.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import write_config
from monitor.db import first_line, without_values

pytestmark = pytest.mark.timeout(180)
ERROR = "dupewatch: error: "


def error_lines(run: Any) -> list[str]:
    """stderr's lines, each one problem; exit 2, never a traceback."""
    assert run.code == 2, run.output
    assert "Traceback" not in run.output and 'File "' not in run.output, run.output
    lines = run.stderr.strip().splitlines()
    assert lines and all(line.startswith(ERROR) for line in lines), run.stderr
    return [line.removeprefix(ERROR) for line in lines]


def toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- every problem of a file at once -----------------------------------------------------------------

def test_every_problem_of_a_file_is_reported_at_once_one_line_each_with_file_check_field(
        tmp_path, dupewatch, sqlite_db):
    (tmp_path / "queries").mkdir()
    path = toml(tmp_path / "dw.toml", f"""
[databases.app]
url = "{sqlite_db.url}"
statment_timeout = "5s"

[[checks]]
name = "checkins"
database = "ap"
table = "checkin"
key = ["user_id"]
case_insensitive = "yes"
intervl = "1m"

[[checks]]
name = "fast"
database = "app"
table = "checkin"
key = ["user_id"]
interval = "0.0001ms"

[[checks]]
name = "empty-table"
database = "app"
table = ""
key = ["user_id"]

[[checks]]
name = "three-parts"
database = "app"
table = "db.table.x"
key = ["user_id"]

[[checks]]
name = "dot-query"
database = "app"
query = "."
""")
    lines = error_lines(dupewatch("check", "--config", path))
    where = f"{path}: "
    assert all(line.startswith(where) for line in lines), lines
    problems = {line.removeprefix(where) for line in lines}
    assert problems == {
        "databases.app.statment_timeout: unknown field (did you mean 'statement_timeout'?)",
        "checks[0] ('checkins').case_insensitive: expected true or false (without quotes), got 'yes'",
        "checks[0] ('checkins').intervl: unknown field (did you mean 'interval'?)",
        "checks[1] ('fast').interval: must be at least 100ms, got '0.0001ms'",
        "checks[2] ('empty-table').table: must not be empty",
        "checks[3] ('three-parts').table: expected TABLE or SCHEMA.TABLE, got 'db.table.x' (quote a name that "
        "contains a dot: '\"x.y\"', or '`x.y`' on MySQL/MariaDB)",
        "checks[0] ('checkins').database: unknown database 'ap' (did you mean 'app'?) (known: app)",
        f"checks[4] ('dot-query').query: '.' is a directory, not a SQL file ({tmp_path})",
    }


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "bell\x07", "esc\x1b[31m"])
def test_check_names_with_control_characters_are_refused_naming_the_position(tmp_path, dupewatch, name):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "sqlite://"}},
                        [{"name": "fine", "database": "d", "sql": "SELECT 1"},
                         {"name": name, "database": "d", "sql": "SELECT 1"}])
    assert error_lines(dupewatch("check", "--config", path)) == [
        f"{path}: checks[1].name: must be printable characters, without newlines, tabs or control characters"]


def test_database_names_with_control_characters_are_refused(tmp_path, dupewatch):
    path = toml(tmp_path / "dw.toml", '[databases."a\\nb"]\nurl = "sqlite://"\n\n'
                '[[checks]]\nname = "c"\ndatabase = "a\\nb"\nsql = "SELECT 1"\n')
    [line] = error_lines(dupewatch("check", "--config", path))
    assert line.startswith(f"{path}: databases: database name 'a\\nb' must be printable"), line


def test_a_mistyped_check_name_on_the_command_line_suggests_the_close_one(tmp_path, dupewatch):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "sqlite://"}},
                        [{"name": "daily-checkins", "database": "d", "sql": "SELECT 1 WHERE 1 = 0"}])
    [line] = error_lines(dupewatch("check", "--config", path, "daily-chekins"))
    assert line == (f"{path}: no check named 'daily-chekins' (did you mean 'daily-checkins'?) "
                    "(have: daily-checkins)")


def test_unknown_tables_and_columns_are_reported_together_before_any_check_runs(db, tmp_path, dupewatch):
    db.execute("CREATE TABLE checkin (id INTEGER PRIMARY KEY, user_id INTEGER, checkin_date VARCHAR(10))",
               "CREATE TABLE profile (id INTEGER PRIMARY KEY, user_id INTEGER)",
               "INSERT INTO checkin VALUES (1, 1, 'x'), (2, 1, 'x')")
    path = write_config(tmp_path / "dw.toml", {"app": {"url": db.url}}, [
        {"name": "good", "database": "app", "table": "checkin", "key": ["user_id"]},
        {"name": "daily-checkins", "database": "app", "table": "checkin", "key": ["user_id", "chekin_date"]},
        {"name": "profiles", "database": "app", "table": "profle", "key": ["user_id"]},
    ])
    run = dupewatch("check", "--config", path)
    lines = error_lines(run)
    assert run.stdout == ""  # no check ran: no table printed
    assert lines == [
        f"{path}: checks[1] ('daily-checkins').key: unknown column 'chekin_date' in table 'checkin' "
        "(did you mean 'checkin_date'?) (columns: id, user_id, checkin_date)",
        f"{path}: checks[2] ('profiles').table: table 'profle' not found in database 'app' "
        "(did you mean 'profile'?)",
    ]
    document = dupewatch("check", "--json", "--config", path).json
    assert document["checks"] == [] and document["problems"] == lines


def test_an_unreachable_database_is_printed_once_listing_its_checks(tmp_path, dupewatch, sqlite_db):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)")
    gone = "postgresql://watcher@127.0.0.1:1/orders"
    path = write_config(tmp_path / "dw.toml", {"local": {"url": sqlite_db.url}, "orders": {"url": gone}},
                        [{"name": f"orders-{i}", "database": "orders", "table": "t", "key": ["k"]} for i in range(6)]
                        + [{"name": "local", "database": "local", "table": "t", "key": ["k"]}])
    run = dupewatch("check", "--config", path)
    assert run.code == 2 and "Traceback" not in run.output
    errors = [line for line in run.stdout.splitlines() if "127.0.0.1" in line]
    assert len(errors) == 1, run.stdout
    assert errors[0].startswith("orders-0, orders-1, orders-2, orders-3, orders-4, orders-5: database 'orders'")


# -- config validate ---------------------------------------------------------------------------------

def test_config_validate_exits_0_on_a_valid_file_and_2_listing_every_problem(tmp_path, dupewatch, sqlite_db):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)")
    good = write_config(tmp_path / "good.toml", {"d": {"url": sqlite_db.url}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    run = dupewatch("config", "validate", "--config", good)
    assert run.code == 0 and run.stdout.strip() == f"{good}: valid (1 check)", run.output
    columns = write_config(tmp_path / "columns.toml", {"d": {"url": sqlite_db.url}},
                           [{"name": "c", "database": "d", "table": "t", "key": ["kk"]}])
    assert error_lines(dupewatch("config", "validate", "--config", columns)) == [
        f"{columns}: checks[0] ('c').key: unknown column 'kk' in table 't' (did you mean 'k'?) (columns: id, k)"]


def test_config_validate_offline_does_not_connect(tmp_path, dupewatch):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "postgresql://u:pw@127.0.0.1:1/x"},
                                               "e": {"url_env": "DW_TEST_UNSET_VARIABLE"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]},
                         {"name": "w", "database": "e", "sql": "DELETE FROM t"}])
    env = {k: v for k, v in os.environ.items() if k != "DW_TEST_UNSET_VARIABLE"}
    assert error_lines(dupewatch("config", "validate", "--offline", "--config", path, env=env)) == [
        f"{path}: checks[1] ('w').sql: custom query must be a SELECT, got DELETE: checks run read-only"]
    ok = write_config(tmp_path / "ok.toml", {"d": {"url": "postgresql://u:pw@127.0.0.1:1/x"}},
                      [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    offline = dupewatch("config", "validate", "--offline", "--config", ok)
    assert offline.code == 0 and offline.stdout.strip() == f"{ok}: valid (1 check, not connected)"
    [online] = error_lines(dupewatch("config", "validate", "--config", ok))
    assert online.startswith(f"{ok}: databases.d: database 'd' (postgresql+psycopg://u:***@127.0.0.1:1/x)")
    assert online.endswith("(checks: c)") and "pw" not in online.replace("postgresql", "")


def test_a_mistyped_schema_qualified_table_is_not_told_to_quote_a_dot(server, tmp_path, dupewatch):
    """A typo in `SCHEMA.TABLE` of a schema that exists was also told to quote the name as if the dot were the
    table's own; that hint is kept for a schema that lists no table."""
    server.execute("CREATE TABLE checkin (id INTEGER PRIMARY KEY, user_id INTEGER)")
    path = write_config(tmp_path / "dw.toml", {"app": {"url": server.url}}, [
        {"name": "typo", "database": "app", "table": f"{server.schema}.chekin", "key": ["user_id"]},
        {"name": "dotted", "database": "app", "table": "no_such_schema_dw.checkin", "key": ["user_id"]}])
    typo, dotted = sorted(error_lines(dupewatch("check", "--config", path)), key=lambda line: "dotted" in line)
    assert "(did you mean 'checkin'?)" in typo and "contains a dot" not in typo, typo
    assert "a table whose name contains a dot is written quoted" in dotted, dotted


# -- secrets and row values --------------------------------------------------------------------------

def test_a_password_given_as_a_query_parameter_is_masked_in_table_json_and_errors(tmp_path, dupewatch):
    secret = "Qu3ryPassw0rd"
    path = write_config(tmp_path / "dw.toml", {"d": {"url": f"postgresql://watcher@127.0.0.1:1/x?password={secret}"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    for args in (("check",), ("check", "--json"), ("config", "validate")):
        run = dupewatch(*args, "--config", path)
        assert run.code == 2 and secret not in run.output, run.output
        assert "password=***" in run.output


def test_an_ambiguous_url_with_an_unencoded_at_sign_is_refused_with_a_hint(tmp_path, dupewatch):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "mysql://user:Tr1cky@Secret99@127.0.0.1/db"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    [line] = error_lines(dupewatch("check", "--config", path))
    assert line.startswith(f"{path}: databases.d.url: ambiguous URL mysql://user:***@127.0.0.1/db")
    assert "percent-encode '@' in the password as %40" in line
    assert "Tr1cky" not in line and "Secret99" not in line


def test_an_unparseable_port_is_one_line_exit_2_in_check_json_and_daemon(tmp_path, dupewatch):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "mysql://user:Pw0rdX@127.0.0.1:notaport/db"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    expected = f"{path}: databases.d.url: the port is not a number in mysql://user:***@127.0.0.1:notaport/db"
    assert error_lines(dupewatch("check", "--config", path)) == [expected]
    as_json = dupewatch("check", "--json", "--config", path)
    assert error_lines(as_json) == [expected] and json.loads(as_json.stdout)["checks"] == []
    assert error_lines(dupewatch("daemon", "--config", path)) == [expected]


@pytest.mark.parametrize(("url", "complaint"), [
    ("mysql://user:Pw0rdX@127.0.0.1/db?read_timeout=abc", "invalid literal for int() with base 10: 'abc'"),
    ("mysql://user:Pw0rdX@127.0.0.1/db?local_infile=maybe", "String is not true/false: 'maybe'"),
    ("sqlite:///app.db?timeout=soon", "could not convert string to float: 'soon'"),
    ("sqlite:///app.db?mode=ro", "Query string argument(s) 'mode' are not accepted by the pysqlite driver and are "
                                 "being ignored; SQLite URI arguments require that 'uri=true' also be present in the "
                                 "URL."),
])
def test_a_url_parameter_the_driver_cannot_read_is_one_line_exit_2_before_connecting(tmp_path, dupewatch, url,
                                                                                     complaint):
    """SQLAlchemy converts these parameters when the engine is made, which raised a bare ValueError (a traceback)
    from `check`, `daemon`, `audit` and `config validate`, or ignores them with a Python warning (two lines naming
    dupewatch's source) while the check ran without what the URL asked for."""
    path = write_config(tmp_path / "dw.toml", {"d": {"url": url}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    shown = url.replace("mysql://", "mysql+pymysql://").replace("Pw0rdX", "***")
    expected = f"{path}: databases.d.url: a parameter of {shown} is not valid: {complaint}"
    for args in (("check",), ("check", "--json"), ("daemon",), ("config", "validate", "--offline")):
        assert error_lines(dupewatch(*args, "--config", path)) == [expected], args
    assert error_lines(dupewatch("audit", "--url", url)) == [
        f"--url: a parameter of {shown} is not valid: {complaint}"]


@pytest.mark.parametrize(("url", "complaint"), [
    ("postgresql://user:Pw0rdX@127.0.0.1/db?port=x", "Received non-integer port arguments: ('x',)"),
    ("postgresql://user:Pw0rdX@/db?host=h1&host=h2&port=1", "Can't mix 'multihost' formats together"),
    ("sqlite://user:Pw0rdX@host/app.db", "Invalid SQLite URL: sqlite://user:***@host/app.db Valid SQLite URL forms "
                                         "are: sqlite:///:memory: (or, sqlite://)"),
])
def test_a_url_its_dialect_refuses_is_one_line_exit_2(tmp_path, dupewatch, url, complaint):
    """The parameter probe let SQLAlchemy's ArgumentError out of parse_url: a traceback, exit 1."""
    path = write_config(tmp_path / "dw.toml", {"d": {"url": url}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]}])
    for args in (("check", "--config", path), ("config", "validate", "--offline", "--config", path),
                 ("audit", "--url", url)):
        [line] = error_lines(dupewatch(*args))
        assert complaint in line and "Pw0rdX" not in line, (args, line)


def test_a_data_error_keeps_its_kind_and_drops_the_row_value(pg, tmp_path, dupewatch):
    pg.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, ssn TEXT, team INTEGER)",
               "INSERT INTO person VALUES (1, 'SSN-123-45-6789', 1), (2, 'SSN-987', 1)")
    path = write_config(tmp_path / "dw.toml", {"d": {"url": pg.url}},
                        [{"name": "people", "database": "d", "table": "person", "key": ["team"],
                          "where": "ssn::int > 0"}])
    run = dupewatch("check", "--json", "--config", path)
    [result] = run.json["checks"]
    assert result["status"] == "error"
    assert "invalid input syntax for type integer: (value not shown)" in result["error"]
    assert "SSN" not in run.output


@pytest.mark.parametrize("statements, shown, hidden", [
    pytest.param(["CREATE TABLE friendship (a INTEGER, b INTEGER, CONSTRAINT no_self CHECK (a <> b))",
                  "INSERT INTO friendship VALUES (7, 7)"], ["friendship", "no_self"], [], id="check"),
    pytest.param(["CREATE TABLE usr (email TEXT, CONSTRAINT usr_email UNIQUE (email))",
                  "INSERT INTO usr VALUES ('Bob@X.org'), ('Bob@X.org')"], ["usr_email"], ["Bob@X.org"], id="unique"),
    pytest.param(["CREATE TABLE usr (nick VARCHAR(3) NOT NULL)", "INSERT INTO usr VALUES (NULL)"],
                 ["nick"], [], id="not-null"),
    pytest.param(["CREATE TABLE usr (n INTEGER)", "INSERT INTO usr VALUES ('SSN-123')"], [], ["SSN-123"],
                 id="input-syntax"),
    # a value holding quotes (MariaDB quotes it without escaping them): no part of it shows, the key's name does
    pytest.param(["CREATE TABLE usr (email VARCHAR(40), CONSTRAINT usr_email UNIQUE (email))",
                  "INSERT INTO usr VALUES ('O''Brien'' for key ''x'), ('O''Brien'' for key ''x')"], ["usr_email"],
                 ["Brien", "'x'"], id="quoted-value"),
    pytest.param(["CREATE TABLE usr (n INTEGER)", "INSERT INTO usr VALUES ('1\"Brien')"], [], ["Brien"],
                 id="double-quoted-value"),
])
def test_a_data_error_names_its_table_column_and_constraint_but_no_row_value(server, statements, shown, hidden):
    """Only a row's values are hidden: the names the database's error gives (PostgreSQL's diagnostics, MariaDB's
    "for column", "for key") reach the operator, who must know which table and constraint refused."""
    for statement in statements[:-1]:
        server.execute(statement)
    with server.engine.begin() as conn, pytest.raises(sa.exc.DBAPIError) as refused:
        conn.execute(sa.text(statements[-1]))
    text = without_values(refused.value, first_line(refused.value))
    assert all(name in text for name in shown), text
    assert not any(value in text for value in hidden), text


# -- lenient input that is not a config field ---------------------------------------------------------

@pytest.mark.parametrize("field", ["case_insensitive", "trim_whitespace"])
@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_booleans_are_strict(tmp_path, dupewatch, field, value):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "sqlite://"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"], field: value}])
    assert error_lines(dupewatch("config", "validate", "--offline", "--config", path)) == [
        f"{path}: checks[0] ('c').{field}: expected true or false (without quotes), got {value!r}"]


@pytest.mark.parametrize(("value", "shown"), [(True, "true"), (5, "5")])
def test_a_string_field_given_another_type_says_to_quote_a_string(tmp_path, dupewatch, value, shown):
    path = write_config(tmp_path / "dw.toml", {"d": {"url": "sqlite://"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"], "incremental": value}])
    assert error_lines(dupewatch("config", "validate", "--offline", "--config", path)) == [
        f"{path}: checks[0] ('c').incremental: expected a string in quotes (see `dupewatch config example`), "
        f"got {shown}"]


def test_reflection_warnings_about_other_tables_are_not_printed_mariadb(mysql, tmp_path, dupewatch):
    mysql.execute("CREATE TABLE device (id INTEGER PRIMARY KEY, address INET6)",
                  "CREATE TABLE login (id INTEGER PRIMARY KEY, device_id INTEGER, k INTEGER, "
                  "FOREIGN KEY (device_id) REFERENCES device (id))",
                  "INSERT INTO login VALUES (1, NULL, 1), (2, NULL, 1)")
    path = write_config(tmp_path / "dw.toml", {"d": {"url": mysql.url}},
                        [{"name": "logins", "database": "d", "table": "login", "key": ["k"]}])
    run = dupewatch("check", "--config", path)
    assert run.code == 1 and run.stderr == "", run.output


def test_reflection_warnings_about_expression_indexes_are_not_printed_sqlite(sqlite_db, tmp_path, dupewatch):
    sqlite_db.execute("CREATE TABLE profile (id INTEGER PRIMARY KEY, email TEXT)",
                      "CREATE INDEX profile_email_lower ON profile (lower(email))",
                      "INSERT INTO profile VALUES (1, 'a'), (2, 'a')")
    path = write_config(tmp_path / "dw.toml", {"d": {"url": sqlite_db.url}},
                        [{"name": "profiles", "database": "d", "table": "profile", "key": ["email"]}])
    run = dupewatch("check", "--config", path)
    assert run.code == 1 and run.stderr == "", run.output


# -- the state file -----------------------------------------------------------------------------------

def test_the_state_file_and_its_directory_are_private(tmp_path):
    from monitor.history import History

    path = tmp_path / "state" / "nested" / "history.sqlite"
    history = History(path)
    history.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    History(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_listen_host_means_loopback():
    from monitor.config import MetricsConfig

    assert MetricsConfig(listen=":19661").host == "127.0.0.1"
    assert MetricsConfig(listen="0.0.0.0:19661").host == "0.0.0.0"


def test_fix_on_one_database_does_not_need_another_databases_variable(tmp_path, dupewatch, sqlite_db):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT)", "INSERT INTO t VALUES (1, 'a'), (2, 'a')")
    path = write_config(tmp_path / "dw.toml", {"d": {"url": sqlite_db.url}, "other": {"url_env": "DW_TEST_UNSET_X"}},
                        [{"name": "c", "database": "d", "table": "t", "key": ["k"]},
                         {"name": "o", "database": "other", "table": "t", "key": ["k"]}])
    env = {k: v for k, v in os.environ.items() if k != "DW_TEST_UNSET_X"}
    run = dupewatch("fix", "c", "--dry-run", "--config", path, env=env)
    assert run.code == 0 and "Traceback" not in run.output, run.output
    assert dupewatch("check", "--config", path, "c", env=env).code == 1  # only the chosen checks' databases
    [line] = error_lines(dupewatch("check", "--config", path, env=env))  # running every check needs them all
    assert line == f"{path}: databases.other.url_env: environment variable DW_TEST_UNSET_X is not set"


# -- errors name what the user typed -----------------------------------------------------------------

def test_audit_and_init_errors_name_the_url_as_given_never_an_internal_database(tmp_path, dupewatch):
    """`audit` and `init` take a URL, not a config: no `database 'audit'` the user never configured."""
    gone = "postgresql://watcher:S3cretPw@127.0.0.1:1/orders"
    for command in ("audit", "init"):
        [line] = error_lines(dupewatch(command, "--url", gone, cwd=tmp_path))
        assert line.startswith("--url (postgresql+psycopg://watcher:***@127.0.0.1:1/orders): connection failed")
        assert "audit'" not in line and "S3cretPw" not in line
    env = {**os.environ, "DUPEWATCH_URL": "not a url"}
    assert error_lines(dupewatch("audit", env=env, cwd=tmp_path)) == ["$DUPEWATCH_URL: not a database URL: not a url"]
    [missing] = error_lines(dupewatch("init", "--url", f"sqlite:///{tmp_path}/nope.sqlite", cwd=tmp_path))
    assert missing.startswith(f"--url (sqlite:///{tmp_path}/nope.sqlite): ")


def test_init_over_an_existing_config_names_the_file_not_a_flag_it_never_typed(tmp_path, dupewatch, sqlite_db):
    (tmp_path / "dupewatch.toml").write_text("# mine\n")
    assert error_lines(dupewatch("init", "--url", sqlite_db.url, cwd=tmp_path)) == [
        "dupewatch.toml: file exists; refusing to overwrite it (remove it, or write another file with "
        "`dupewatch audit --write FILE`)"]
    (tmp_path / "other.toml").write_text("# mine\n")
    assert error_lines(dupewatch("audit", "--url", sqlite_db.url, "--write", "other.toml", cwd=tmp_path)) == [
        "--write other.toml: file exists; refusing to overwrite it (choose another name or remove it)"]
    assert (tmp_path / "dupewatch.toml").read_text() == "# mine\n"


# -- a `where` names columns of its table --------------------------------------------------------------

def test_a_where_naming_an_unknown_double_quoted_column_is_one_line_exit_2_on_every_database(db, tmp_path, dupewatch):
    """SQLite (and MariaDB without ANSI_QUOTES) would read `"staus"` as the string 'staus': the check would
    report 0 groups forever. The database, asked to read it as a name, says there is no such column."""
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, email VARCHAR(40), status INTEGER)",
               "INSERT INTO orders VALUES (1, 'a', 1), (2, 'a', 1)")
    typo = write_config(tmp_path / "typo.toml", {"d": {"url": db.url}},
                        [{"name": "c", "database": "d", "table": "orders", "key": ["email"], "where": '"staus" = 1'}])
    for command in (("config", "validate"), ("check",)):
        [line] = error_lines(dupewatch(*command, "--config", typo))
        assert line.startswith(f"""{typo}: checks[0] ('c').where: '"staus" = 1' fails: database 'd' (""")
        assert "staus" in line.split("): ", 1)[1]
    good = write_config(tmp_path / "good.toml", {"d": {"url": db.url}},
                        [{"name": "c", "database": "d", "table": "orders", "key": ["email"],
                          "where": db.q("status") + " = 1"}])
    run = dupewatch("check", "--json", "--config", good)
    assert run.code == 1 and run.json["checks"][0]["groups"] == 1, run.output


def test_mysql_where_vetting_leaves_the_sql_mode_as_it_found_it(mysql):
    from monitor.config import DatabaseConfig
    from monitor.db import Database

    mysql.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status INTEGER)")
    database = Database("d", DatabaseConfig(url=mysql.url))
    try:
        with database.read_only() as conn:
            before = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar_one()
            probe = 'SELECT 1 FROM orders WHERE ("staus" = 1)'
            assert "Unknown column 'staus'" in (database.rules.unknown_column(conn, probe) or "")
            assert database.rules.unknown_column(conn, "SELECT 1 FROM orders WHERE (status = 'x')") is None
            after = conn.exec_driver_sql("SELECT @@SESSION.sql_mode, @dupewatch_vetted").one()
            assert tuple(after) == (before, None) and "ANSI_QUOTES" not in before
    finally:
        database.dispose()


def test_a_demo_directory_that_cannot_be_written_is_one_line_naming_the_flag(tmp_path, dupewatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for flags in (("--once",), ("--print-config",)):
        [line] = error_lines(dupewatch("demo", *flags, "--dir", str(blocker / "demo"), cwd=tmp_path))
        assert line.startswith(f"--dir {blocker / 'demo'}: cannot write the demo database there: ")

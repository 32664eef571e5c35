"""Pure configuration parsing: durations, validation messages, discovery, the shipped example config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dbtest import REPO_ROOT
from monitor.config import (
    CheckConfig,
    ConfigError,
    DatabaseConfig,
    FleetConfig,
    MetricsConfig,
    SourceConfig,
    StateConfig,
    config_from_dict,
    find_config_file,
    load_config,
    parse_duration,
    parse_reference_name,
)
from monitor.db import Database, parse_url, redact_text, redact_url
from monitor.detect import CheckDefinitionError, ensure_select, split_table_name

EXAMPLE = REPO_ROOT / "config.example.toml"


def minimal(**check: object) -> dict[str, object]:
    return {"databases": {"d": {"url": "sqlite://"}},
            "checks": [{"name": "c", "database": "d", "table": "t", "key": ["k"], **check}]}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("500ms", 0.5), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1.5s", 1.5), (" 10 s ", 10), (7, 7),
    ("45", 45),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-1s", "0s", 0, True, "1w", float("nan"), float("inf"),
                                  1e300, "99999d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults():
    config = config_from_dict(minimal())
    check = config.checks[0]
    assert (check.interval, check.nulls, check.keep, check.case_insensitive, check.trim_whitespace) == \
        (60.0, "equal", "oldest", False, False)
    assert config.databases["d"].statement_timeout == 30.0
    assert config.metrics is None and config.state.path is None


def test_order_by_accepts_a_name_or_a_list():
    assert config_from_dict(minimal(order_by="id")).checks[0].order_by == ["id"]
    assert config_from_dict(minimal(order_by=["a", "b"])).checks[0].order_by == ["a", "b"]


@pytest.mark.parametrize(("data", "message"), [
    (minimal(key=["k", "k"]), "config: checks[0] ('c').key: names a column twice"),
    (minimal(key=[]), "config: checks[0] ('c').key: must name at least one column"),
    # pydantic said "Input should be a valid list", not what to write
    (minimal(key="user_id"), "config: checks[0] ('c').key: expected a list in brackets, such as key = "
                             "[\"user_id\"], got 'user_id'"),
    (minimal(key=5), "config: checks[0] ('c').key: expected a list in brackets, such as key = [\"a\", \"b\"], got 5"),
    # `[checks]` for `[[checks]]` was told to write `checks = ["a", "b"]`, and shown the whole table
    ({"databases": {"d": {"url": "sqlite://"}}, "checks": {"name": "c", "database": "d", "table": "t", "key": ["k"]}},
     "config: checks: expected each check as a table under [[checks]] (double brackets; see `dupewatch config "
     "example`), got one table [checks]"),
    # a TOML string reads `\b` as a backspace: the example must not copy a backslash
    (minimal(key="a\\b"), "config: checks[0] ('c').key: expected a list in brackets, such as key = [\"a\", \"b\"], "
                          "got 'a\\\\b'"),
    ({"databases": {"d": {"url": "sqlite://"}}, "checks": [{"name": "c", "database": "d", "sql": "SELECT 1",
                                                           "key": ["k"]}]},
     "config: checks[0] ('c'): 'key' applies only to table checks, not custom queries"),
    ({"databases": {"d": {"url": "sqlite://"}}, "checks": [{"name": "c", "database": "d", "table": "t"}]},
     "config: checks[0] ('c'): a table check needs 'key', the columns that should be unique"),
    ({"databases": {"d": {"url": "sqlite://"}}, "checks": []}, "config: checks: List should have at least 1 item"),
    ({"databases": {"d": {"url": "sqlite://", "fix_url": "x", "fix_url_env": "Y"}}, "checks": minimal()["checks"]},
     "config: databases.d: set at most one of 'fix_url' or 'fix_url_env'"),
    ({**minimal(), "metrics": {"listen": "nowhere"}}, "config: metrics.listen: expected HOST:PORT, got 'nowhere'"),
    ({**minimal(), "colour": "red"}, "config: colour: unknown field"),
])
def test_validation_errors_are_one_line_with_a_location(data, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_url_env_is_read_when_the_database_is_used(monkeypatch):
    config = config_from_dict({"databases": {"d": {"url_env": "DW_UNIT_URL"}}, "checks": minimal()["checks"]})
    monkeypatch.delenv("DW_UNIT_URL", raising=False)
    missing = "databases.d.url_env: environment variable DW_UNIT_URL is not set"
    with pytest.raises(ConfigError, match=re.escape(missing)):
        Database("d", config.databases["d"])
    monkeypatch.setenv("DW_UNIT_URL", "postgresql://u:pw@h/db")
    database = Database("d", config.databases["d"])
    assert database.display_url == "postgresql+psycopg://u:***@h/db" and database.dialect == "postgresql"


def test_find_config_file_prefers_explicit_then_cwd_then_xdg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config_file(None) is None
    xdg = tmp_path / "xdg" / "dupewatch" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("")
    assert find_config_file(None) == xdg
    (tmp_path / "dupewatch.toml").write_text("")
    assert find_config_file(None) == Path("dupewatch.toml")
    assert find_config_file("other.toml") == Path("other.toml")


def test_url_env_ending_in_a_newline_is_read_without_it(monkeypatch):
    """A secret mounted from a file (`kubectl create secret --from-file`, `echo URL > f`) ends in a newline, which
    became part of the database's name (`test\\n`: "database does not exist", or another role's error)."""
    config = config_from_dict({"databases": {"d": {"url_env": "DW_UNIT_URL"}}, "checks": minimal()["checks"]})
    monkeypatch.setenv("DW_UNIT_URL", "  postgresql://u:pw@h/db\r\n")
    database = Database("d", config.databases["d"])
    assert database.url.database == "db" and database.display_url == "postgresql+psycopg://u:***@h/db"
    monkeypatch.setenv("DW_UNIT_URL", " \n")
    with pytest.raises(ConfigError, match=re.escape("databases.d.url_env: environment variable DW_UNIT_URL is empty")):
        Database("d", config.databases["d"])


def test_redaction_masks_plain_and_url_encoded_passwords():
    url = "postgresql://me:p%40ss%2Fw0rd@db/app"
    assert redact_url(url) == "postgresql://me:***@db/app"
    assert redact_text("failed for me:p%40ss%2Fw0rd and p@ss/w0rd", [url]) == "failed for me:*** and ***"


@pytest.mark.parametrize("url", [
    "postgresql://me:Tr0ub@dor/42x@127.0.0.1/app",      # read as host 'dor', database '42x@127.0.0.1/app'
    "postgresql://me:Tr0ub@dor:42x@127.0.0.1:5432/app",  # read as host 'dor', port '42x@127.0.0.1:5432'
    "mysql://me:Tr0ub@dor/42x@127.0.0.1/app?charset=utf8mb4",
])
def test_an_unencoded_at_sign_before_a_slash_or_colon_is_refused_as_ambiguous_without_the_password(url):
    with pytest.raises(ConfigError) as refused:
        parse_url(url, "databases.d.url")
    [line] = refused.value.problems
    assert "ambiguous URL" in line and "percent-encode '@' in the password as %40" in line
    assert "dor" not in line and "42x" not in line and "Tr0ub" not in line


def test_a_user_name_holding_an_at_sign_is_read_as_sqlalchemy_reads_it():
    """A user name that is an e-mail address (a cloud IAM role, Azure's `user@server`) is read right by SQLAlchemy
    (the user name runs to the first `:`): it was refused as ambiguous, told to encode the password's `@`, with
    the password (an IAM token) shown."""
    url = parse_url("postgresql://alice@example.com:Tok3nX@127.0.0.1/app", "databases.d.url")
    assert (url.username, url.password, url.host, url.database) == ("alice@example.com", "Tok3nX", "127.0.0.1",
                                                                    "app")
    assert parse_url("postgresql://alice@example.com@127.0.0.1/app", "databases.d.url").username == \
        "alice@example.com"


@pytest.mark.parametrize("url", [
    "postgresql://alice@example.com:Tr0ub@dor/42x@127.0.0.1/app",
    "postgresql://alice@example.com:Tr0ub@dor@127.0.0.1/app",
])
def test_an_ambiguous_url_whose_user_name_holds_an_at_sign_is_refused_without_the_password(url):
    with pytest.raises(ConfigError) as refused:
        parse_url(url, "databases.d.url")
    [line] = refused.value.problems
    assert "ambiguous URL postgresql://alice@example.com:***@127.0.0.1/app" in line
    assert "dor" not in line and "Tr0ub" not in line


@pytest.mark.parametrize("sql", [
    "SELECT 1", "  select 1", "-- comment\nSELECT 1;", "/* c */ WITH x AS (SELECT 1 AS \"update\") SELECT * FROM x",
    "(SELECT 1) UNION (SELECT 2)", "VALUES (1)",
])
def test_ensure_select_accepts_reading_queries(sql):
    ensure_select(sql)


@pytest.mark.parametrize(("sql", "verb"), [
    ("DELETE FROM t", "DELETE"), ("update t set a = 1", "UPDATE"), ("DROP TABLE t", "DROP"),
    ("-- hi\nINSERT INTO t VALUES (1)", "INSERT"), ("", "nothing"), ("TRUNCATE t", "TRUNCATE"),
    ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", "DELETE inside WITH"),
    ("with u as materialized ( update t set a = 1 returning a ) select a from u", "UPDATE inside WITH"),
])
def test_ensure_select_refuses_writes(sql, verb):
    with pytest.raises(CheckDefinitionError, match=f"must be a SELECT, got {verb}: checks run read-only"):
        ensure_select(sql)


# -- config.example.toml ---------------------------------------------------------------------------

def test_example_config_loads(monkeypatch):
    for var in ("APP_DB_URL", "APP_DB_FIX_URL", "BILLING_DB_URL"):
        monkeypatch.setenv(var, "postgresql://monitor:secret@127.0.0.1:1/app")
    config = load_config(EXAMPLE)
    assert set(config.databases) == {"app", "billing"}
    assert config.names == ["login-sources", "orders-by-user", "profiles-get-or-create", "vote-drift",
                            "duplicate-invoices"]
    assert "candidate" in config.custom_sql(config.check("vote-drift"))  # query path resolved beside the file
    assert "dup_count" in config.custom_sql(config.check("duplicate-invoices"))
    assert config.metrics is not None and config.metrics.port == 9641
    for name, database in config.databases.items():
        Database(name, database).dispose()  # url_env and fix_url_env resolve


@pytest.mark.parametrize("model", [DatabaseConfig, CheckConfig, StateConfig, MetricsConfig, SourceConfig,
                                   FleetConfig])
def test_example_config_documents_every_option(model):
    text = EXAMPLE.read_text(encoding="utf-8")
    for field in model.model_fields:
        assert re.search(rf"^#?\s*{field} = ", text, re.M), f"config.example.toml does not document {field}"


@pytest.mark.parametrize(("value", "message"), [
    ("0.1ms", "must be at least 1ms"),  # 0 ms would switch the database's timeout off
    (1e-9, "must be at least 1ms"),
    ("25d", "must be at most 24d"),  # beyond PostgreSQL's statement_timeout limit
    (float("nan"), "expected a duration"),
    (float("inf"), "must be a duration of at most 10 years"),
])
def test_statement_timeout_is_one_the_databases_can_enforce(value, message):
    data = {"databases": {"d": {"url": "sqlite://", "statement_timeout": value}}, "checks": minimal()["checks"]}
    with pytest.raises(ConfigError, match=re.escape(f"databases.d.statement_timeout: {message}")):
        config_from_dict(data)
    assert config_from_dict({**data, "databases": {"d": {"url": "sqlite://", "statement_timeout": "1ms"}}}) \
        .databases["d"].statement_timeout == 0.001


@pytest.mark.parametrize(("url", "fragments"), [
    ("oracle://scott:tiger@host/db", ["unsupported database 'oracle'", "scott:***@host", "postgresql://"]),
    ("mssql+pyodbc://u:secret@dsn", ["unsupported database 'mssql'", "u:***@dsn"]),
])
def test_an_unsupported_database_url_is_a_config_error(url, fragments):
    with pytest.raises(ConfigError) as caught:
        Database("d", DatabaseConfig(url=url))
    message = str(caught.value)
    assert message.startswith("databases.d.url: ") and all(f in message for f in fragments), message
    assert "tiger" not in message and "secret" not in message


def test_a_missing_driver_is_a_config_error_naming_it():
    db = Database("d", DatabaseConfig(url="postgresql+psycopg2://u:p%40ss@127.0.0.1/test"))
    with pytest.raises(ConfigError) as caught:
        db.engine  # noqa: B018 (creating the engine imports the driver)
    message = str(caught.value)
    assert "postgresql+psycopg2://u:***@127.0.0.1/test is not installed" in message and "psycopg2" in message
    assert "p@ss" not in message and "p%40ss" not in message


@pytest.mark.parametrize(("name", "parts"), [
    ("people", (None, "people")),
    ("auth.people", ("auth", "people")),
    ('"My Schema"."My Table"', ("My Schema", "My Table")),
    ('"x.y"', (None, "x.y")),
    ('"a""b"."c.d"', ('a"b', "c.d")),
    ("`other db`.`t``1`", ("other db", "t`1")),
    ('auth."Login Source"', ("auth", "Login Source")),
])
def test_split_table_name_understands_quoted_parts(name, parts):
    assert split_table_name(name) == parts


# -- incremental detection ------------------------------------------------------------------------------


def test_incremental_is_off_by_default_and_full_every_defaults_to_an_hour():
    check = config_from_dict(minimal()).checks[0]
    assert (check.incremental, check.full_every) == (None, 3600.0)
    check = config_from_dict(minimal(incremental="id", full_every="15m")).checks[0]
    assert (check.incremental, check.full_every) == ("id", 900.0)


@pytest.mark.parametrize(("check", "fragment"), [
    ({"incremental": "id", "table": None, "key": None, "sql": "SELECT 1"}, "'incremental' applies only to table"),
    ({"incremental": "id", "full_every": "soon"}, "checks[0] ('c').full_every: expected a duration"),
    ({"incremental": ""}, "checks[0] ('c').incremental"),
])
def test_incremental_mistakes_are_one_line_naming_the_check(check, fragment):
    data = minimal(**check)
    data["checks"][0] = {k: v for k, v in data["checks"][0].items() if v is not None}  # type: ignore[index]
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert fragment in str(err.value) and "\n" not in str(err.value)


# -- hostile or mistaken input: one line, no traceback, no password ---------------------------------------


def test_toml_nested_thousands_deep_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: invalid TOML: arrays or tables nested too deeply"


@pytest.mark.parametrize("field", ["statement_timeout", "database"])
def test_a_url_pasted_in_the_wrong_field_is_never_echoed_with_its_password(field: str) -> None:
    pasted = "postgresql://app:hunter2-secret@db.internal:5432/app"
    database = {"url": "sqlite:///x.sqlite"}
    check = {"name": "c", "database": "main", "table": "t", "key": ["k"]}
    if field == "statement_timeout":
        database["statement_timeout"] = pasted
    else:
        check["database"] = pasted
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"databases": {"main": database}, "checks": [check]})
    assert "hunter2-secret" not in str(caught.value)
    assert "postgresql://app:***@db.internal:5432/app" in str(caught.value)


@pytest.mark.parametrize("listen", ["[::1", "::1:9641", "[::1:9641", "[nothost]:9641", "a b:9641"])
def test_a_malformed_listen_address_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        config_from_dict({"databases": {"d": {"url": "sqlite:///x.sqlite"}}, "metrics": {"listen": listen},
                          "checks": [{"name": "c", "database": "d", "table": "t", "key": ["k"]}]})


@pytest.mark.parametrize("listen", ["[::1]:9641", "127.0.0.1:9641", ":9641", "db-monitor.internal:9641"])
def test_a_good_listen_address_is_accepted(listen: str) -> None:
    config_from_dict({"databases": {"d": {"url": "sqlite:///x.sqlite"}}, "metrics": {"listen": listen},
                      "checks": [{"name": "c", "database": "d", "table": "t", "key": ["k"]}]})


def test_a_table_name_with_a_nul_character_is_refused() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        config_from_dict({"databases": {"d": {"url": "sqlite:///x.sqlite"}},
                          "checks": [{"name": "c", "database": "d", "table": "us\0ers", "key": ["k"]}]})


@pytest.mark.parametrize(("name", "parsed"), [
    ('"Order"."Customer Id"', (None, "Order", ("Customer Id",))),
    ('app."weird.table".user_id', ("app", "weird.table", ("user_id",))),
    ('`odd.t`.(a, "B c")', (None, "odd.t", ("a", "B c"))),
    ("public.login_event.user_id", ("public", "login_event", ("user_id",))),
])
def test_quoted_on_reference_names_are_read_as_written(name: str, parsed: tuple) -> None:
    assert parse_reference_name(name) == parsed


def test_the_printed_example_validates_on_its_own_in_an_empty_directory(tmp_path):
    """README: `dupewatch config example > dupewatch.toml` starts one; the file it writes must load where it is
    written (a pip install has no `queries/` beside it)."""
    from click.testing import CliRunner

    from monitor.cli import main

    printed = CliRunner().invoke(main, ["config", "example"])
    assert printed.exit_code == 0
    (tmp_path / "dupewatch.toml").write_text(printed.output)
    validated = CliRunner().invoke(main, ["config", "validate", "--offline", "--config",
                                          str(tmp_path / "dupewatch.toml")])
    assert validated.exit_code == 0, validated.output

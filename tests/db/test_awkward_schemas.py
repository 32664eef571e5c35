"""Schemas the seed tests don't use, on the real servers: views, quoted and dotted table names, identifiers
with quotes, backticks and unicode, json keys on PostgreSQL, a broken `where`, SQLite's loosely typed values."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import server_login

pytestmark = pytest.mark.timeout(120)


def one_check(monitor_for: Any, db: Any, **check: Any) -> Any:
    return monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", **check}])


def create_people(db: Any, table: str = "people") -> None:
    db.execute(f"CREATE TABLE {db.q(table)} (id INTEGER PRIMARY KEY, email VARCHAR(40), born INTEGER)",
               f"INSERT INTO {db.q(table)} VALUES (1, 'a@x', 10), (2, 'a@x', 11), (3, 'b@x', 12), (4, 'a@x', 13)")


def test_a_view_is_checked_paged_and_drilled_into(db, monitor_for):
    create_people(db)
    db.execute(f"CREATE VIEW {db.q('People View')} AS SELECT * FROM people")
    monitor = one_check(monitor_for, db, table="People View", key=["email"], order_by="id")
    result = monitor.run("c")
    assert (result.status, result.groups, result.excess_rows) == ("duplicates", 1, 2)
    page = monitor.groups("c")
    assert [(g.key, g.rows) for g in page.groups] == [(("a@x",), 3)]
    members = monitor.members("c", ("a@x",))
    assert [row[0] for row in members.rows] == [1, 2, 4]


def test_a_view_without_order_by_still_lists_its_members(pg, monitor_for):
    # A PostgreSQL view has no ctid: the members query must not order by it.
    create_people(pg)
    pg.execute("CREATE VIEW v AS SELECT email, born FROM people")
    monitor = one_check(monitor_for, pg, table="v", key=["email"])
    assert sorted(monitor.members("c", ("a@x",)).rows) == [("a@x", 10), ("a@x", 11), ("a@x", 13)]


def test_quoted_schema_and_table_names_are_understood(pg, monitor_for):
    pg.execute('CREATE SCHEMA "My ""Odd"" Schema"',
               'CREATE TABLE "My ""Odd"" Schema"."My.Table" (id INTEGER PRIMARY KEY, k TEXT)',
               """INSERT INTO "My ""Odd"" Schema"."My.Table" VALUES (1, 'a'), (2, 'a')""")
    try:
        monitor = one_check(monitor_for, pg, table='"My ""Odd"" Schema"."My.Table"', key=["k"])
        result = monitor.run("c")
        assert (result.status, result.groups, result.error) == ("duplicates", 1, None)
        assert [r[0] for r in monitor.members("c", ("a",)).rows] == [1, 2]
    finally:
        pg.execute('DROP SCHEMA "My ""Odd"" Schema" CASCADE')


def test_a_table_in_another_mysql_database(mysql, monitor_for):
    other = f"dw_other_{uuid.uuid4().hex[:8]}"
    mysql.execute(f"CREATE DATABASE `{other}`", f"CREATE TABLE `{other}`.tbl (id INT PRIMARY KEY, k VARCHAR(5))",
                  f"INSERT INTO `{other}`.tbl VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    try:
        for table in (f"{other}.tbl", f"`{other}`.`tbl`"):
            monitor = one_check(monitor_for, mysql, table=table, key=["k"])
            result = monitor.run("c")
            assert (result.status, result.groups, result.error) == ("duplicates", 1, None), table
    finally:
        mysql.execute(f"DROP DATABASE `{other}`")


def test_a_table_whose_name_holds_a_dot_is_named_quoted_and_the_error_says_so(db, monitor_for):
    create_people(db, "x.y")
    unquoted = one_check(monitor_for, db, table="x.y", key=["email"]).run("c")
    assert unquoted.status == "error"
    assert "check 'c': table 'x.y' not found" in unquoted.error and "table = '\"x.y\"'" in unquoted.error
    quoted = one_check(monitor_for, db, table='"x.y"', key=["email"]).run("c")
    assert (quoted.status, quoted.groups, quoted.error) == ("duplicates", 1, None)


AWKWARD = ['a"b', "it's", "dot.col", "Ünïcødé", "MixedCase", "select", "with space", "back`tick"]


def test_identifiers_with_quotes_dots_unicode_and_backticks(db, monitor_for):
    columns = ", ".join(f"{db.q(c)} VARCHAR(10)" for c in AWKWARD)
    db.execute(f"CREATE TABLE {db.q('Weird Table')} (id INTEGER PRIMARY KEY, {columns})")
    names = ", ".join(db.q(c) for c in AWKWARD)
    values = ", ".join(f"'v{i}'" for i in range(len(AWKWARD)))
    db.execute(f"INSERT INTO {db.q('Weird Table')} (id, {names}) VALUES (1, {values}), (2, {values}), (3, "
               f"{', '.join('NULL' for _ in AWKWARD)})")
    monitor = one_check(monitor_for, db, table="Weird Table", key=AWKWARD, case_insensitive=True,
                        order_by=["back`tick", "id"], keep="newest")
    result = monitor.run("c")
    assert (result.status, result.groups, result.error) == ("duplicates", 1, None)
    page = monitor.groups("c")
    assert page.key_columns == AWKWARD and page.groups[0].rows == 2
    members = monitor.members("c", page.groups[0].key)
    assert members.columns == ["id", *AWKWARD]
    assert [r[0] for r in members.rows] == [2, 1]


def test_a_json_key_on_postgresql_is_refused_naming_the_column(pg, monitor_for):
    pg.execute("CREATE TABLE j (id INTEGER PRIMARY KEY, doc JSON, docb JSONB)",
               """INSERT INTO j VALUES (1, '{"a": 1}', '{"a": 1}'), (2, '{"a": 1}', '{"a":  1}')""")
    refused = one_check(monitor_for, pg, table="j", key=["doc"]).run("c")
    assert refused.status == "error"
    assert "check 'c': key: PostgreSQL cannot group column 'doc'" in refused.error and "jsonb" in refused.error
    jsonb = one_check(monitor_for, pg, table="j", key=["docb"]).run("c")
    assert (jsonb.status, jsonb.groups) == ("duplicates", 1)



@pytest.mark.parametrize("kind", ["xml", "point", "xml[]", "doc", "box"])
def test_a_key_postgresql_cannot_group_is_refused_naming_the_column_as_the_server_says(pg, monitor_for, kind):
    """Not only json: any type with no equality operator GROUP BY can use (xml, point, an array or a domain of
    one) is refused by the server's parser. Only json was known (by its name), so a run of any other failed with
    the server's words alone, naming neither check nor column, and the fix's dry run with a traceback-free but
    unexplained error; the server is asked (GROUP BY planned, not run) when the check is resolved."""
    pg.execute("CREATE DOMAIN doc AS xml", f"CREATE TABLE g (id INTEGER PRIMARY KEY, v {kind})")
    refused = one_check(monitor_for, pg, table="g", key=["id", "v"]).run("c")
    assert refused.status == "error"
    assert f"check 'c': key: PostgreSQL cannot group column 'v': could not identify an equality operator for type " \
        f"{kind}" in refused.error, refused.error

@pytest.mark.parametrize("where", ["nonsense ) (", "no_such_column = 1"])
def test_an_invalid_where_is_reported_naming_the_check_and_the_where(db, monitor_for, where):
    create_people(db)
    result = one_check(monitor_for, db, table="people", key=["email"], where=where).run("c")
    assert result.status == "error"
    assert result.error.startswith(f"check 'c': where {where!r} fails: database 'd'"), result.error


def test_a_where_with_percent_colon_and_quotes_is_passed_as_written(db, monitor_for):
    create_people(db)
    db.execute("INSERT INTO people VALUES (5, 'it''s:%x', 1), (6, 'it''s:%x', 2)")
    where = "email LIKE '%x' AND email <> 'it''s :name %(p)s %s' AND ':' = ':'"
    result = one_check(monitor_for, db, table="people", key=["email"], where=where).run("c")
    assert (result.status, result.groups, result.excess_rows, result.error) == ("duplicates", 2, 3, None)


def test_sqlite_members_show_values_as_stored_whatever_the_declared_type(sqlite_db, monitor_for):
    # SQLite keeps what the application wrote: ISO timestamps with a `T` and `Z`, text in a NUMERIC column.
    sqlite_db.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, k TEXT, at DATETIME, amount NUMERIC, day DATE)",
                      "INSERT INTO ev VALUES (1, 'a', '2024-01-01T10:00:00.123Z', 'n/a', 'someday'), "
                      "(2, 'a', '2024-01-01T10:00:00.127Z', 1.5, '2024-01-01')")
    monitor = one_check(monitor_for, sqlite_db, table="ev", key=["k"], timestamp="at")
    assert monitor.run("c").groups == 1
    members = monitor.members("c", ("a",))
    assert members.rows == [(1, "a", "2024-01-01T10:00:00.123Z", "n/a", "someday"),
                            (2, "a", "2024-01-01T10:00:00.127Z", 1.5, "2024-01-01")]


def test_mysql_enum_set_and_binary_keys_with_normalisation(mysql, monitor_for):
    mysql.execute("CREATE TABLE t (id INT PRIMARY KEY, e ENUM('happy', 'sad'), s SET('a', 'b'), b VARBINARY(5))",
                  "INSERT INTO t VALUES (1, 'happy', 'a', 'A'), (2, 'happy', 'a', 'a'), (3, 'sad', 'b', 'A')")
    for key, groups in ((["e"], 1), (["s"], 1), (["b"], 1), (["e", "b"], 0)):
        result = one_check(monitor_for, mysql, table="t", key=key, case_insensitive=True,
                           trim_whitespace=True).run("c")
        assert (result.groups, result.error) == (groups, None), key


def test_mysql_url_for_another_server_user_never_leaks_its_password(mysql, monitor_for):
    password = "p@ss:w/rd%"
    with server_login("mysql", password=password) as user:
        url = sa.engine.make_url(mysql.url).set(username=user, password=password + "wrong")
        result = monitor_for({"d": {"url": url.render_as_string(hide_password=False)}},
                             [{"name": "c", "database": "d", "table": "t", "key": ["k"]}]).run("c")
        assert result.status == "error" and "Access denied" in result.error
        assert "p@ss" not in result.error and "p%40ss" not in result.error and "***" in result.error


KEPT_BY_WITHOUT_KEY = {
    "postgresql": "oldest by ctid (physical order)",
    "sqlite": "oldest by rowid (insertion order)",
    "mysql": "any one of the rows (no primary key or order_by tells them apart)",
}


def test_members_say_in_words_which_row_a_fix_keeps(db, monitor_for):
    create_people(db)
    db.execute("CREATE TABLE link (a INTEGER, b INTEGER, born INTEGER)",
               "INSERT INTO link VALUES (1, 2, 5), (1, 2, 6)")
    cases = [
        ({"table": "people", "key": ["email"]}, ("a@x",), "oldest by id"),
        ({"table": "people", "key": ["email"], "order_by": ["born", "id"], "keep": "newest"}, ("a@x",),
         "newest by born, id"),
        ({"table": "link", "key": ["a", "b"]}, (1, 2), KEPT_BY_WITHOUT_KEY[db.dialect]),
    ]
    if db.dialect != "mysql":
        by = "ctid" if db.dialect == "postgresql" else "rowid"
        cases.append(({"table": "link", "key": ["a", "b"], "order_by": "born"}, (1, 2),
                      f"oldest by born, {by} to break ties"))
    for check, key, kept_by in cases:
        monitor = one_check(monitor_for, db, **check)
        assert monitor.keeper_description("c") is None  # not known before the table was looked at
        assert monitor.members("c", key).kept_by == kept_by, check
        assert monitor.keeper_description("c") == kept_by


@pytest.mark.parametrize(("keep", "order"), [("oldest", [1, 3, 2]), ("newest", [3, 1, 2])])
def test_a_null_in_a_nullable_order_by_column_never_makes_the_keeper(db, monitor_for, keep, order):
    # Each database sorts NULL at a different end; the kept row must not depend on which one it is.
    db.execute("CREATE TABLE seen (id INTEGER PRIMARY KEY, k VARCHAR(5), at INTEGER NULL)",
               "INSERT INTO seen VALUES (1, 'a', 10), (2, 'a', NULL), (3, 'a', 20)")
    monitor = one_check(monitor_for, db, table="seen", key=["k"], order_by="at", keep=keep)
    assert [row[0] for row in monitor.members("c", ("a",)).rows] == order
    from monitor.fix import make_plan

    plan = make_plan(monitor, "c")
    assert plan.sample[0].keep["id"] == order[0]  # the fix keeps the row the dashboard marks


def test_a_jsonb_null_key_is_its_own_group_apart_from_sql_null_on_postgresql(pg, monitor_for):
    """jsonb's `null` is a value, not SQL's NULL (`IS NULL` is false for it; GROUP BY keeps them apart). psycopg
    read both as None: the `null` group was listed as NULL and its members were the NULL group's rows (bound back
    as `IS NULL`), so the dashboard showed, and a single group's fix acted on, the wrong rows."""
    pg.execute("CREATE TABLE js (id INTEGER PRIMARY KEY, docb JSONB)",
               "INSERT INTO js VALUES (1, 'null'), (2, 'null'), (3, NULL), (4, NULL), (5, NULL), (6, '{}')")
    monitor = one_check(monitor_for, pg, table="js", key=["docb"], order_by="id", nulls="equal")
    members = {str(group.key[0]): [row[0] for row in monitor.members("c", group.key).rows]
               for group in monitor.groups("c", fresh=True).groups}
    assert members == {"null": [1, 2], "None": [3, 4, 5]}


def test_the_members_of_a_jsonb_key_holding_a_scalar_are_listed_on_postgresql(pg, monitor_for):
    """psycopg reads a jsonb scalar as a Python str, number or bool (`"a"` as a): bound back as VARCHAR or an
    integer (`jsonb = integer`: no such operator), or untyped as the server's text (`a`, no JSON), the statement
    naming the group failed (members, a single group's fix); bound as JSON, as the column's type."""
    pg.execute("CREATE TABLE js (id INTEGER PRIMARY KEY, docb JSONB)",
               """INSERT INTO js VALUES (1, '"a"'), (2, '"a"'), (3, '2'), (4, '2'), (5, 'true'), (6, 'true'),"""
               """ (7, '{"a": 1}'), (8, '{"a": 1}'), (9, '"b"')""")
    monitor = one_check(monitor_for, pg, table="js", key=["docb"], order_by="id")
    result = monitor.run("c")
    assert (result.status, result.groups) == ("duplicates", 4)
    for group in monitor.groups("c").groups:
        assert len(monitor.members("c", group.key).rows) == 2, group.key

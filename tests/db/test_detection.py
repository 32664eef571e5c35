"""Detection semantics on every dialect: NULLs, normalisation, awkward identifiers, tables without a
primary key, keyset paging of groups and the keeper-first member rows."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import PG_URL

pytestmark = pytest.mark.timeout(120)


def figures(monitor_for: Any, db: Any, **check: Any) -> tuple[str, int | None, int | None]:
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", **check}])
    result = monitor.run("c")
    assert result.error is None, result.error
    return result.status, result.groups, result.excess_rows


def all_groups(monitor: Any, check: str, page_size: int) -> list[tuple[tuple[Any, ...], int]]:
    """Walk every page with the keyset cursor, as a dashboard scrolling down would."""
    seen: list[tuple[tuple[Any, ...], int]] = []
    cursor = None
    for _ in range(10_000):
        page = monitor.groups(check, after=cursor, limit=page_size)
        assert len(page.groups) <= page_size
        seen += [(g.key, g.rows) for g in page.groups]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("paging never ended")


# -- NULL semantics --------------------------------------------------------------------------------

NULL_ROWS = [(1, None), (1, None), (None, None), (None, None), (None, None), (1, 2), (1, 2), (2, None), (3, 3)]


@pytest.fixture
def nullable_table(db):
    db.execute("CREATE TABLE n (id INTEGER PRIMARY KEY, a INTEGER NULL, b INTEGER NULL)")
    db.execute("INSERT INTO n (id, a, b) VALUES (:id, :a, :b)",
               params=[dict(id=i, a=a, b=b) for i, (a, b) in enumerate(NULL_ROWS, 1)])
    return db


def test_nulls_equal_groups_null_keys_together_like_group_by(nullable_table, monitor_for):
    # (1, NULL) x2, (NULL, NULL) x3, (1, 2) x2
    assert figures(monitor_for, nullable_table, table="n", key=["a", "b"]) == ("duplicates", 3, 4)


def test_nulls_distinct_never_counts_a_row_with_a_null_key_column(nullable_table, monitor_for):
    assert figures(monitor_for, nullable_table, table="n", key=["a", "b"], nulls="distinct") == ("duplicates", 1, 1)


def test_nulls_distinct_is_clean_when_only_null_keys_repeat(db, monitor_for):
    db.execute("CREATE TABLE n (id INTEGER PRIMARY KEY, a INTEGER NULL)")
    db.execute("INSERT INTO n (id, a) VALUES (1, NULL), (2, NULL), (3, 7)")
    assert figures(monitor_for, db, table="n", key=["a"], nulls="distinct") == ("ok", 0, 0)
    assert figures(monitor_for, db, table="n", key=["a"]) == ("duplicates", 1, 1)


def test_groups_and_members_of_a_null_key(nullable_table, monitor_for):
    monitor = monitor_for({"d": {"url": nullable_table.url}}, [{"name": "c", "database": "d", "table": "n",
                                                               "key": ["a", "b"]}])
    page = monitor.groups("c")
    assert [(g.key, g.rows) for g in page.groups] == [((None, None), 3), ((1, None), 2), ((1, 2), 2)]
    members = monitor.members("c", (None, None))
    assert [r[0] for r in members.rows] == [3, 4, 5]


# -- normalisation ---------------------------------------------------------------------------------

@pytest.fixture
def emails(db):
    # Case-sensitive collation on MySQL so the plain comparison is the same on every dialect; see
    # test_mysql_compares_text_keys_by_the_column_collation for the default.
    collate = " COLLATE utf8mb4_bin" if db.dialect == "mysql" else ""
    db.execute(f"CREATE TABLE e (id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL, email VARCHAR(64){collate})")
    rows = [(1, "ann@x.com"), (1, "ANN@x.com"), (1, "  ann@x.com"), (1, "bob@x.com"), (2, "ann@x.com")]
    db.execute("INSERT INTO e (id, tenant, email) VALUES (:id, :t, :e)",
               params=[dict(id=i, t=t, e=e) for i, (t, e) in enumerate(rows, 1)])
    return db


@pytest.mark.parametrize(("options", "expected"), [
    ({}, ("ok", 0, 0)),
    ({"case_insensitive": True}, ("duplicates", 1, 1)),
    ({"trim_whitespace": True}, ("duplicates", 1, 1)),
    ({"case_insensitive": True, "trim_whitespace": True}, ("duplicates", 1, 2)),
])
def test_case_and_whitespace_normalisation_applies_to_text_key_columns(emails, monitor_for, options, expected):
    # the integer `tenant` is part of the key: lower()/trim() must not be applied to it
    assert figures(monitor_for, emails, table="e", key=["tenant", "email"], **options) == expected


def test_normalised_group_lists_its_differently_written_members(emails, monitor_for):
    monitor = monitor_for({"d": {"url": emails.url}}, [{"name": "c", "database": "d", "table": "e",
                                                       "key": ["tenant", "email"], "case_insensitive": True,
                                                       "trim_whitespace": True}])
    page = monitor.groups("c")
    assert [(g.key, g.rows) for g in page.groups] == [((1, "ann@x.com"), 3)]
    members = monitor.members("c", page.groups[0].key)
    assert [r[2] for r in members.rows] == ["ann@x.com", "ANN@x.com", "  ann@x.com"]


def test_mysql_compares_text_keys_by_the_column_collation(mysql, monitor_for):
    # The same rule a UNIQUE index enforces on MySQL/MariaDB: a *_ci, PAD SPACE collation treats these as equal.
    mysql.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, email VARCHAR(64) COLLATE utf8mb4_general_ci)")
    mysql.execute("INSERT INTO e VALUES (1, 'ann@x.com'), (2, 'ANN@x.com'), (3, 'ann@x.com  ')")
    assert figures(monitor_for, mysql, table="e", key=["email"]) == ("duplicates", 1, 2)


# -- awkward identifiers ---------------------------------------------------------------------------

def make_awkward_table(db: Any, table: str = "order") -> None:
    q = db.q
    db.execute(f"CREATE TABLE {q(table)} ({q('ID')} INTEGER PRIMARY KEY, {q('user')} INTEGER NULL, "
               f"{q('select')} VARCHAR(20) NULL, {q('Mixed Case')} VARCHAR(20) NULL, {q('Created At')} INTEGER)")
    rows = [(1, 10, "a", "X", 5), (2, 10, "a", "X", 3), (3, 10, "a", "X", 9), (4, 11, "b", "Y", 1),
            (5, 11, "b", "Y", 2), (6, 12, "c", "Z", 1)]
    db.execute(f"INSERT INTO {q(table)} VALUES (:i, :u, :s, :m, :c)",
               params=[dict(i=i, u=u, s=s, m=m, c=c) for i, u, s, m, c in rows])


@pytest.mark.parametrize("table", ["order", "user", "select", "Order Items"])
def test_reserved_words_mixed_case_and_spaces_in_identifiers(db, monitor_for, table):
    make_awkward_table(db, table)
    monitor = monitor_for({"d": {"url": db.url}}, [{
        "name": "c", "database": "d", "table": table, "key": ["user", "select", "Mixed Case"],
        "order_by": "Created At", "keep": "newest", "where": f"{db.q('user')} > 0", "timestamp": "Created At",
        "case_insensitive": True, "trim_whitespace": True}])
    result = monitor.run("c")
    assert (result.status, result.groups, result.excess_rows, result.error) == ("duplicates", 2, 3, None)
    first = monitor.groups("c", limit=1)
    assert (first.groups[0].key, first.groups[0].rows) == ((10, "a", "x"), 3)
    second = monitor.groups("c", after=first.next_cursor, limit=1)
    assert [(g.key, g.rows) for g in second.groups] == [((11, "b", "y"), 2)] and second.next_cursor is None
    members = monitor.members("c", first.groups[0].key)
    assert members.columns == ["ID", "user", "select", "Mixed Case", "Created At"]
    assert [r[0] for r in members.rows] == [3, 1, 2]  # newest by "Created At" first


def test_schema_qualified_table(db, monitor_for):
    if db.dialect == "sqlite":
        pytest.skip("SQLite has no schemas beyond attached databases")
    make_awkward_table(db)
    check = {"name": "c", "database": "d", "table": f"{db.schema}.order", "key": ["user"]}
    assert monitor_for({"d": {"url": db.url}}, [check]).run("c").groups == 2


def test_schema_qualified_table_in_a_mixed_case_schema_on_postgresql(pg, monitor_for):
    schema = f"Audit Log {uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    q = pg.q
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {q(schema)}"))
            conn.execute(sa.text(f"CREATE TABLE {q(schema)}.{q('User')} (id INTEGER PRIMARY KEY, {q('E-mail')} TEXT)"))
            conn.execute(sa.text(f"INSERT INTO {q(schema)}.{q('User')} VALUES (1, 'a'), (2, 'a'), (3, 'b')"))
        monitor = monitor_for({"d": {"url": pg.url}}, [
            {"name": "c", "database": "d", "table": f"{schema}.User", "key": ["E-mail"]}])
        result = monitor.run("c")
        assert (result.status, result.groups, result.excess_rows) == ("duplicates", 1, 1), result.error
        assert [r[0] for r in monitor.members("c", ("a",)).rows] == [1, 2]
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE"))
        admin.dispose()


# -- tables without a primary key ---------------------------------------------------------------

def test_table_without_primary_key(db, monitor_for):
    db.execute("CREATE TABLE role_membership (group_id INTEGER NOT NULL, member_id INTEGER NOT NULL, note VARCHAR(10))")
    db.execute("INSERT INTO role_membership VALUES (1, 1, 'first'), (1, 1, 'second'), (1, 2, NULL), "
               "(2, 2, NULL), (2, 2, NULL), (2, 2, NULL)")
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "role_membership",
                                                   "key": ["group_id", "member_id"]}])
    result = monitor.run("c")
    assert (result.groups, result.excess_rows) == (2, 3)
    assert [(g.key, g.rows) for g in monitor.groups("c").groups] == [((2, 2), 3), ((1, 1), 2)]
    members = monitor.members("c", (1, 1))
    assert members.columns == ["group_id", "member_id", "note"]
    if db.dialect != "mysql":  # ctid / rowid order: the first-inserted row is the one kept
        assert [r[2] for r in members.rows] == ["first", "second"]
    else:
        assert sorted(r[2] for r in members.rows) == ["first", "second"]


# -- keyset paging ---------------------------------------------------------------------------------

def test_paging_walks_every_group_exactly_once_in_order(db, monitor_for):
    """Many equal-size groups and NULL keys: the cursor must neither skip nor repeat a group."""
    db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, a INTEGER NULL, b INTEGER NULL)")
    keys: list[tuple[int | None, int | None]] = []
    for i in range(60):
        a = None if i % 5 == 0 else i % 7
        b = None if i % 3 == 0 else i
        size = 4 if i % 17 == 0 else 3 if i % 4 == 0 else 2
        keys += [(a, b)] * size
    keys += [(100 + i, None) for i in range(20)]  # singletons: not groups
    db.execute("INSERT INTO p (id, a, b) VALUES (:id, :a, :b)",
               params=[dict(id=i, a=a, b=b) for i, (a, b) in enumerate(keys, 1)])
    counts = Counter(keys)

    def null_first(v: int | None) -> tuple[bool, int]:
        return (v is not None, v or 0)

    expected = sorted(((k, n) for k, n in counts.items() if n > 1),
                      key=lambda kn: (-kn[1], null_first(kn[0][0]), null_first(kn[0][1])))
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "p", "key": ["a", "b"]}])

    for page_size in (1, 7, len(expected), 1000):
        assert all_groups(monitor, "c", page_size) == expected
    assert monitor.run("c").groups == len(expected)

    distinct = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "p", "key": ["a", "b"],
                                                    "nulls": "distinct"}])
    assert all_groups(distinct, "c", 3) == [(k, n) for k, n in expected if None not in k]


# -- members: the keeper first ---------------------------------------------------------------------

@pytest.fixture
def accounts(db):
    db.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, email VARCHAR(20), created INTEGER)")
    db.execute("INSERT INTO acct VALUES (1, 'a', 30), (2, 'a', 10), (3, 'a', 20), (4, 'b', 1)")
    return db


@pytest.mark.parametrize(("options", "ids"), [
    ({}, [1, 2, 3]),
    ({"keep": "oldest"}, [1, 2, 3]),
    ({"keep": "newest"}, [3, 2, 1]),
    ({"order_by": "created"}, [2, 3, 1]),
    ({"order_by": ["created"], "keep": "newest"}, [1, 3, 2]),
    ({"order_by": ["email", "created"]}, [2, 3, 1]),
])
def test_members_put_the_row_a_fix_keeps_first(accounts, monitor_for, options, ids):
    monitor = monitor_for({"d": {"url": accounts.url}}, [{"name": "c", "database": "d", "table": "acct",
                                                         "key": ["email"], **options}])
    members = monitor.members("c", ("a",))
    assert members.keeper == 0 and not members.truncated
    assert [r[0] for r in members.rows] == ids


def test_members_are_truncated_at_the_limit(accounts, monitor_for):
    monitor = monitor_for({"d": {"url": accounts.url}}, [{"name": "c", "database": "d", "table": "acct",
                                                         "key": ["email"]}])
    members = monitor.members("c", ("a",), limit=2)
    assert members.truncated and [r[0] for r in members.rows] == [1, 2]


def test_where_filter_limits_the_rows_checked(accounts, monitor_for):
    assert figures(monitor_for, accounts, table="acct", key=["email"], where="created >= 20") == ("duplicates", 1, 1)
    assert figures(monitor_for, accounts, table="acct", key=["email"], where="created > 20") == ("ok", 0, 0)

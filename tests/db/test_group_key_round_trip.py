"""A group's key values go from the database to Python and back (issue 16, M9): the drill-down lists groups, then
binds a group's key values to list its rows (`members`), to page past it (the keyset cursor) and to fix that one
group (`make_plan(group=...)`). Each must find exactly the group's rows, for every temporal, decimal and float key
type, on every database: a value that comes back as other text or another precision finds none of them.

Each case stores two groups as the application wrote them (three rows and two rows, literal SQL, not through
SQLAlchemy's types), then walks the groups one per page and checks each group's rows and its one-group plan; an
incremental check looks up the groups it knows by their key values too, and must count what a full pass counts.
"""

from __future__ import annotations

from typing import Any

import pytest

from monitor.fix import make_plan

pytestmark = pytest.mark.timeout(120)

# (column type, the two stored values as SQL literals)
SQLITE = {
    "datetime": ("DATETIME", "'2024-01-01 09:00:00'", "'2024-01-01 09:00:01'"),  # M9: binds back as '.000000'
    "datetime_micro": ("DATETIME", "'2024-01-01 09:00:00.5'", "'2024-01-01 09:00:00.25'"),
    "datetime_t": ("DATETIME", "'2024-01-01T09:00:00'", "'2024-01-01T10:00:00'"),
    "date": ("DATE", "'2024-01-01'", "'2024-01-02'"),
    "time": ("TIME", "'09:00:00'", "'09:00:01'"),
    "numeric": ("NUMERIC(10, 2)", "1.5", "0.1"),
    "decimal": ("DECIMAL(12, 4)", "12345678.1234", "0.0001"),
    "float": ("FLOAT", "0.1", "1e-300"),
    "real": ("REAL", "0.1", "3.3"),
    "boolean": ("BOOLEAN", "2", "0"),  # reads back True, would bind as 1
}
POSTGRESQL = {
    "timestamptz": ("TIMESTAMPTZ", "'2024-01-01 09:00:00.123456+02'", "'2024-01-01 09:00:00.123457+02'"),
    "timestamptz_0": ("TIMESTAMPTZ(0)", "'2024-01-01 09:00:00+05:30'", "'2024-01-01 09:00:01+05:30'"),
    "timestamp": ("TIMESTAMP(6)", "'2024-01-01 09:00:00.000001'", "'2024-01-01 09:00:00'"),
    "date": ("DATE", "'2024-01-01'", "'2024-01-02'"),
    "time": ("TIME(6)", "'09:00:00.000001'", "'09:00:00'"),
    "timetz": ("TIMETZ", "'09:00:00+02'", "'09:00:00+03'"),
    "interval": ("INTERVAL", "'1 day 02:00:00.5'", "'26 hours'"),
    "numeric": ("NUMERIC(12, 4)", "1.5", "12345678.0001"),
    "numeric_free": ("NUMERIC", "0.1000000000000000000001", "1e-20"),
    "real": ("REAL", "0.1", "3.3"),
    "double": ("DOUBLE PRECISION", "0.1", "1e-300"),
}
MYSQL = {
    "datetime6": ("DATETIME(6)", "'2024-01-01 09:00:00.123456'", "'2024-01-01 09:00:00.123457'"),
    "datetime0": ("DATETIME", "'2024-01-01 09:00:00'", "'2024-01-01 09:00:01'"),
    "timestamp6": ("TIMESTAMP(6) NULL", "'2024-01-01 09:00:00.000001'", "'2024-01-01 09:00:00'"),
    "date": ("DATE", "'2024-01-01'", "'2024-01-02'"),
    "time6": ("TIME(6)", "'09:00:00.000001'", "'09:00:00'"),
    "time_beyond_a_day": ("TIME", "'-838:59:59'", "'25:00:00'"),  # SQLAlchemy reads a time of day
    "decimal": ("DECIMAL(12, 4)", "1.5", "12345678.0001"),
    "decimal_wide": ("DECIMAL(65, 30)", "0.100000000000000000000000000001", "1e-30"),
    "float": ("FLOAT", "0.1", "3.3"),  # single precision (M8)
    "double": ("DOUBLE", "0.1", "1e-300"),  # SQLAlchemy reads a Decimal of 10 places: 0
    "set": ("SET('a', 'b', 'c')", "'b,a'", "'c'"),  # SQLAlchemy reads a Python set, binds its members in any order
    "bit": ("BIT(8)", "b'101'", "b'0'"),
}


def walk_groups(db: Any, monitor_for: Any, column_type: str, first: str, second: str) -> None:
    db.execute(f"CREATE TABLE kv (id INTEGER PRIMARY KEY, k {column_type})")
    values = [first] * 3 + [second] * 2 + ["NULL"]
    db.execute(*(f"INSERT INTO kv (id, k) VALUES ({i + 1}, {v})" for i, v in enumerate(values)))
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "kv", "key": ["k"]}])
    result = monitor.run("c")
    assert (result.error, result.groups, result.excess_rows) == (None, 2, 3)

    seen, cursor = [], None
    for _ in range(4):  # one group per page: the cursor binds the last group's key values
        page = monitor.groups("c", after=cursor, limit=1, fresh=True)
        for group in page.groups:
            ids = sorted(row[0] for row in monitor.members("c", group.key).rows)
            plan = make_plan(monitor, "c", group=group.key)
            seen.append((group.rows, ids, plan.groups, plan.rows_to_delete))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [(3, [1, 2, 3], 1, 2), (2, [4, 5], 1, 1)]


def count_incrementally(db: Any, monitor_for: Any, column_type: str, first: str, second: str) -> None:
    db.execute(f"CREATE TABLE kv (id INTEGER PRIMARY KEY, k {column_type})")
    db.execute(*(f"INSERT INTO kv (id, k) VALUES ({i + 1}, {v})" for i, v in enumerate([first] * 2 + [second])))
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "kv", "key": ["k"],
                                                    "incremental": "id"}])
    full = monitor.run("c")
    assert (full.mode, full.groups, full.excess_rows) == ("full", 1, 1)
    db.execute(f"INSERT INTO kv (id, k) VALUES (4, {first})", f"INSERT INTO kv (id, k) VALUES (5, {second})")
    step = monitor.run("c")
    # the known group's rows found again by its key values
    assert (step.error, step.groups, step.excess_rows) == (None, 2, 3)


@pytest.mark.parametrize("case", list(SQLITE))
def test_sqlite_group_keys_find_their_rows(sqlite_db: Any, monitor_for: Any, case: str) -> None:
    walk_groups(sqlite_db, monitor_for, *SQLITE[case])


@pytest.mark.parametrize("case", list(POSTGRESQL))
def test_postgresql_group_keys_find_their_rows(pg: Any, monitor_for: Any, case: str) -> None:
    walk_groups(pg, monitor_for, *POSTGRESQL[case])


@pytest.mark.parametrize("case", list(MYSQL))
def test_mysql_group_keys_find_their_rows(mysql: Any, monitor_for: Any, case: str) -> None:
    walk_groups(mysql, monitor_for, *MYSQL[case])


@pytest.mark.parametrize("case", list(SQLITE))
def test_sqlite_incremental_checks_find_known_groups(sqlite_db: Any, monitor_for: Any, case: str) -> None:
    count_incrementally(sqlite_db, monitor_for, *SQLITE[case])


@pytest.mark.parametrize("case", list(POSTGRESQL))
def test_postgresql_incremental_checks_find_known_groups(pg: Any, monitor_for: Any, case: str) -> None:
    count_incrementally(pg, monitor_for, *POSTGRESQL[case])


@pytest.mark.parametrize("case", list(MYSQL))
def test_mysql_incremental_checks_find_known_groups(mysql: Any, monitor_for: Any, case: str) -> None:
    count_incrementally(mysql, monitor_for, *MYSQL[case])

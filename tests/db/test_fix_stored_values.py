"""A fix reads, compares and puts back values exactly as the database stores them, whatever SQLAlchemy's type for
the column would make of them in Python: the preview lists the rows, the fix finds and archives them, undo restores
them byte for byte.

- SQLite: a NUMERIC column (NUMERIC affinity) keeps a value it cannot read as a number as text (`'n/a'`), which
  SQLAlchemy's Numeric type cannot turn into a Decimal: the preview (`plan._sample`) crashed on it.
- MariaDB: SET and BIT columns as a check's key (see tests/db/test_group_key_round_trip.py for how keys are bound
  back as stored): plan, fix, undo.
"""

from __future__ import annotations

from typing import Any

import pytest

from fix_support import config_file, json_out, run_cli
from monitor.fix import make_plan, prepare_fix, run_fix, undo_fix

pytestmark = pytest.mark.timeout(120)


def _contents(db: Any, table: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in db.rows(f"SELECT * FROM {table} ORDER BY id"))


def _plan_fix_undo(db: Any, monitor_for: Any, table: str, key: list[str]) -> dict[str, Any]:
    """The preview, then a fix and its undo through the API; the table's rows after undo must be the rows before."""
    before = _contents(db, table)
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": table, "key": key}])
    preview = make_plan(monitor, "c")
    report = run_fix(monitor, "c", prepare_fix(monitor, "c"))
    after_fix = _contents(db, table)
    undone = undo_fix(monitor, report.fix_id)
    assert _contents(db, table) == before
    return {"preview": preview, "report": report, "after_fix": after_fix, "restored": undone.restored}


# -- SQLite: NUMERIC affinity holding text ----------------------------------------------------------------


def test_sqlite_preview_shows_text_stored_in_a_numeric_column(sqlite_db: Any, monitor_for: Any) -> None:
    sqlite_db.execute("CREATE TABLE price (id INTEGER PRIMARY KEY, sku TEXT, amount NUMERIC(10, 2))")
    sqlite_db.execute("INSERT INTO price VALUES (1, 'a', 'n/a'), (2, 'a', 'n/a'), (3, 'a', 1.5), (4, 'b', 2)")
    done = _plan_fix_undo(sqlite_db, monitor_for, "price", ["sku"])
    group = done["preview"].sample[0]
    assert (group.key, group.keep["amount"], [r["amount"] for r in group.delete]) == (("a",), "n/a", ["n/a", 1.5])
    assert group.differs == ["amount"]
    assert (done["report"].deleted, done["after_fix"]) == (2, [(1, "a", "n/a"), (4, "b", 2)])
    assert done["restored"] == 2


def test_sqlite_numeric_key_holding_text_is_planned_fixed_and_undone(sqlite_db: Any, monitor_for: Any) -> None:
    sqlite_db.execute("CREATE TABLE reading (id INTEGER PRIMARY KEY, v NUMERIC)")
    sqlite_db.execute("INSERT INTO reading VALUES (1, 'n/a'), (2, 'n/a'), (3, 'n/a'), (4, 0.1), (5, 0.1), (6, 7)")
    done = _plan_fix_undo(sqlite_db, monitor_for, "reading", ["v"])
    assert [(g.key, g.rows) for g in done["preview"].sample] == [((0.1,), 2), (("n/a",), 3)]
    assert (done["report"].groups, done["report"].deleted) == (2, 3)
    assert done["after_fix"] == [(1, "n/a"), (4, 0.1), (6, 7)]


# -- MariaDB: SET and BIT keys --------------------------------------------------------------------------


@pytest.mark.parametrize(("column_type", "values"), [
    ("SET('read', 'write', 'admin')", ["'read,write'", "'write,read'", "'read,write'", "'admin'", "'admin'", "''"]),
    ("BIT(1)", ["b'1'", "b'1'", "b'1'", "b'0'", "b'0'", "NULL"]),
    ("BIT(12)", ["b'101000000001'", "b'101000000001'", "b'101000000001'", "b'1'", "b'1'", "b'111'"]),
], ids=["set", "bit1", "bit12"])
def test_mysql_set_and_bit_keys_are_planned_fixed_and_undone(mysql: Any, monitor_for: Any, column_type: str,
                                                             values: list[str]) -> None:
    """Three rows with one value (a SET's members in any order are one value), two with another, one alone."""
    mysql.execute(f"CREATE TABLE perm (id INTEGER PRIMARY KEY, k {column_type}, note VARCHAR(10))")
    mysql.execute(*(f"INSERT INTO perm VALUES ({i + 1}, {v}, 'n{i + 1}')" for i, v in enumerate(values)))
    done = _plan_fix_undo(mysql, monitor_for, "perm", ["k"])
    assert sorted(g.rows for g in done["preview"].sample) == [2, 3]
    assert sorted(len(g.delete) for g in done["preview"].sample) == [1, 2]
    assert (done["report"].groups, done["report"].deleted, done["report"].archived) == (2, 3, 3)
    assert [row[0] for row in done["after_fix"]] == [1, 4, 6]
    assert done["restored"] == 3


def test_mysql_fixing_one_group_with_a_set_or_bit_key_finds_its_rows(mysql: Any, monitor_for: Any) -> None:
    """The group's key values as the drill-down lists them, bound back: the one-group plan finds its rows."""
    mysql.execute("CREATE TABLE perm (id INTEGER PRIMARY KEY, s SET('a', 'b'), f BIT(3))")
    mysql.execute("INSERT INTO perm VALUES (1, 'a,b', b'101'), (2, 'b,a', b'101'), (3, 'a', b'101'), (4, 'a', b'101')")
    monitor = monitor_for({"d": {"url": mysql.url}}, [{"name": "c", "database": "d", "table": "perm",
                                                        "key": ["s", "f"]}])
    groups = monitor.groups("c").groups
    assert sorted(g.rows for g in groups) == [2, 2]
    for group in groups:
        plan = make_plan(monitor, "c", group=group.key)
        assert (plan.groups, plan.rows_to_delete) == (1, 1)
    report = run_fix(monitor, "c", prepare_fix(monitor, "c", group=groups[0].key))
    assert (report.groups, report.deleted) == (1, 1)
    assert mysql.scalar("SELECT count(*) FROM perm") == 3


# -- PostgreSQL: keys equal by `=`, written differently ----------------------------------------------------


def test_postgresql_plan_holds_each_rows_own_key_which_a_batch_rechecks_by_equality(pg: Any, monitor_for: Any) -> None:
    """PostgreSQL's PARTITION BY groups exactly as `=` compares, so the plan holds each row's own key (1.00 beside
    its keeper's 1.0; the snapshot needs no window ordered by rank). A batch compares each live row's key with it by
    `=`: the duplicate written 1.00 is deleted, and one whose key changed since the plan to an unequal value is
    kept and its group skipped."""
    pg.execute("CREATE TABLE price (id INTEGER PRIMARY KEY, v NUMERIC NOT NULL)",
               "INSERT INTO price VALUES (1, 1.0), (2, 1.00), (3, 2.0), (4, 2.00)")
    monitor = monitor_for({"d": {"url": pg.url}}, [{"name": "c", "database": "d", "table": "price", "key": ["v"]}])
    plan = prepare_fix(monitor, "c")
    plan_table = pg.scalar(f"SELECT plan_table FROM dupewatch_fix WHERE fix_id = '{plan.fix_id}'")
    assert pg.rows(f"SELECT dw_i0, dw_gk0::text FROM {plan_table} ORDER BY dw_i0") == [
        (1, "1.0"), (2, "1.00"), (3, "2.0"), (4, "2.00")]
    pg.execute("UPDATE price SET v = 2.5 WHERE id = 4")
    report = run_fix(monitor, "c", plan)
    assert (report.deleted, report.skipped) == (1, 1)
    assert pg.rows("SELECT id, v::text FROM price ORDER BY id") == [(1, "1.0"), (3, "2.0"), (4, "2.5")]


# -- PostgreSQL: dates and timestamps beyond Python's range ------------------------------------------------


def test_postgresql_infinity_and_bc_values_are_previewed_listed_fixed_and_undone(pg: Any, monitor_for: Any,
                                                                                tmp_path: Any) -> None:
    """`infinity`, `-infinity` and years before 1 are valid in PostgreSQL's date, timestamp and timestamptz and
    held by no Python type: psycopg refused to load them, so the dry run (which lists a group's rows) failed with
    "timestamp too large (after year 10K)" while the fix ran. They are read as the server's text, and a key read so
    binds back as the same value (the dashboard's group page, then that group's rows)."""
    pg.execute("CREATE TABLE pass (id INTEGER PRIMARY KEY, valid_until TIMESTAMPTZ, born DATE, seen TIMESTAMP)",
               "INSERT INTO pass VALUES (1, 'infinity', '-infinity', '0044-03-15 10:00 BC'), "
               "(2, 'infinity', 'infinity', NULL), (3, '-infinity', '0001-01-01 BC', '2020-01-01'), "
               "(4, '-infinity', NULL, 'infinity'), (5, '2020-01-01 00:00+00', NULL, NULL)",
               "CREATE TABLE visit (id INTEGER PRIMARY KEY, pass_id INTEGER REFERENCES pass)",
               "INSERT INTO visit VALUES (10, 2), (11, 4)")
    check = {"name": "c", "table": "pass", "key": ["valid_until"]}
    stored = "SELECT id, valid_until::text, born::text, seen::text FROM pass ORDER BY id"
    before = pg.rows(stored)
    path = config_file(tmp_path, pg, [check])
    dry = run_cli("fix", "c", "--dry-run", "--json", "--config", str(path))
    assert dry.exit_code == 0, dry.output
    sample = json_out(dry)["sample"]
    assert [(g["key"], g["keep"]["id"], [r["id"] for r in g["delete"]]) for g in sample] == [
        (["-infinity"], 3, [4]), (["infinity"], 1, [2])]
    assert [(g["keep"]["born"], g["keep"]["seen"], g["delete"][0]["seen"]) for g in sample] == [
        ("0001-01-01 BC", "2020-01-01T00:00:00", "infinity"), ("-infinity", "0044-03-15 10:00:00 BC", None)]
    text = run_cli("fix", "c", "--dry-run", "--config", str(path))
    assert text.exit_code == 0, text.output
    assert "born=-infinity, seen=0044-03-15 10:00:00 BC" in text.stdout

    monitor = monitor_for({"app": {"url": pg.url}}, [{"database": "app", **check}])
    page = monitor.groups("c", fresh=True)
    keys = sorted(str(g.key[0]) for g in page.groups)
    assert keys == ["-infinity", "infinity"]
    for group in page.groups:  # the key read from the server binds back as the value it holds
        members = monitor.members("c", group.key)
        assert len(members.rows) == 2
    assert pg.rows(stored) == before

    fixed = run_cli("fix", "c", "--yes", "--json", "--config", str(path))
    assert fixed.exit_code == 0, fixed.output
    assert pg.rows("SELECT id FROM pass ORDER BY id") == [(1,), (3,), (5,)]
    assert pg.rows("SELECT id, pass_id FROM visit ORDER BY id") == [(10, 1), (11, 3)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--yes", "--config", str(path))
    assert undone.exit_code == 0, undone.output
    assert pg.rows(stored) == before
    assert pg.rows("SELECT id, pass_id FROM visit ORDER BY id") == [(10, 2), (11, 4)]


def test_postgresql_time_24_00_is_a_key_of_its_own_listed_and_fixed(pg: Any, monitor_for: Any, tmp_path: Any) -> None:
    """PostgreSQL's `time` and `timetz` hold `24:00:00` (the end of a day: a shop's closing time), which `=` finds
    apart from `00:00:00` and no Python `time` holds: psycopg refused to load it ("hour must be in 0..23"), so the
    group page, a group's rows and the dry run failed. Read as the server's text, it binds back as itself."""
    pg.execute("CREATE TABLE shift (id INTEGER PRIMARY KEY, ends TIME, ends_tz TIMETZ)",
               "INSERT INTO shift VALUES (1, '24:00', '24:00+02'), (2, '24:00', '24:00+02'), "
               "(3, '00:00', '00:00+02'), (4, '00:00', '00:00+02'), (5, '12:00', '12:00+02')")
    for key in ("ends", "ends_tz"):
        monitor = monitor_for({"app": {"url": pg.url}}, [{"name": "c", "database": "app", "table": "shift",
                                                          "key": [key]}])
        page = monitor.groups("c", fresh=True)
        assert sorted(str(g.key[0])[:5] for g in page.groups) == ["00:00", "24:00"], key
        for group in page.groups:  # the key read from the server binds back as the value it holds
            assert len(monitor.members("c", group.key).rows) == 2
    path = config_file(tmp_path, pg, [{"name": "c", "table": "shift", "key": ["ends"]}])
    dry = run_cli("fix", "c", "--dry-run", "--json", "--config", str(path))
    assert dry.exit_code == 0, dry.output
    fixed = run_cli("fix", "c", "--yes", "--json", "--config", str(path))
    assert fixed.exit_code == 0, fixed.output
    assert pg.rows("SELECT id FROM shift ORDER BY id") == [(1,), (3,), (5,)]


def test_postgresql_array_and_jsonb_keys_are_json_in_the_dry_runs_json_not_pythons_repr(
        pg: Any, tmp_path: Any) -> None:
    """`fix --dry-run --json` wrote a group's key and rows with `str()`: a text[] key `{'a"b',NULL}` came out as
    Python's `['a"b', None]`, a jsonb `{"a": null}` as `{'a': None}`: neither JSON nor what the server holds, and
    a script reading the plan could not tell the array NULL element from the string 'None'."""
    pg.execute("CREATE TABLE tagged (id INTEGER PRIMARY KEY, tags TEXT[], doc JSONB)",
               """INSERT INTO tagged VALUES (1, ARRAY['a"b', NULL, 'None'], '{"a": null, "b": [1, "x"]}'),"""
               """ (2, ARRAY['a"b', NULL, 'None'], '{"a": null, "b": [1, "x"]}')""")
    path = config_file(tmp_path, pg, [{"name": "c", "table": "tagged", "key": ["tags", "doc"]}])
    dry = run_cli("fix", "c", "--dry-run", "--json", "--config", str(path))
    assert dry.exit_code == 0, dry.output
    group = json_out(dry)["sample"][0]
    assert group["key"] == [['a"b', None, "None"], {"a": None, "b": [1, "x"]}], group
    assert group["keep"]["tags"] == ['a"b', None, "None"], group


@pytest.mark.xfail(strict=True, reason="open: the group page reads an array key through psycopg, which drops lower "
                   "bounds other than 1; SQLAlchemy's ARRAY result processor iterates whatever the loader returns")
def test_postgresql_the_group_page_lists_the_rows_of_an_array_group_with_lower_bounds(
        pg: Any, monitor_for: Any) -> None:
    """left fixed lower-bound arrays for incremental and live re-counts, not the group page: the group of two
    '[0:1]={1,2}' rows is listed with the key [1, 2], which binds back as '{1,2}': its rows (the dashboard's) and a
    single group's fix (`narrowed`) are those of '{1,2}', another group."""
    pg.execute("CREATE TABLE bounded (id INTEGER PRIMARY KEY, k INTEGER[])",
               "INSERT INTO bounded VALUES (1, '[0:1]={1,2}'), (2, '[0:1]={1,2}'), (3, '{1,2}')")
    monitor = monitor_for({"app": {"url": pg.url}}, [{"name": "c", "database": "app", "table": "bounded",
                                                      "key": ["k"]}])
    [group] = monitor.groups("c", fresh=True).groups
    assert [row[0] for row in monitor.members("c", group.key).rows] == [1, 2]

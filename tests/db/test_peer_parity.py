"""Parity with the peers' own test suites (issue 18, items 20-22), on every database: the rows a check read
(counted by the same aggregate), percentages as Soda and Great Expectations state them, warn/fail thresholds,
and Great Expectations' default NULL rule (`nulls = "skip_all_null"`) through detection, drill-down and fix.

The datasets and expected figures are translated from Great Expectations'
`tests/test_definitions/multicolumn_map_expectations/expect_compound_columns_to_be_unique.json` and Soda Core's
contract tests of the `duplicate` check (`duplicate_column` table). How the figures map:

- Soda's `duplicate_count` (valid_count - distinct_count) is our excess rows with `nulls = "distinct"` (Soda
  leaves missing values out), and its `duplicate_percent` is our `excess_percent`.
- GX's `unexpected_count` counts every row of a duplicate group: our excess rows + groups; its
  `unexpected_percent` is that over the non-missing rows, our `rows_checked` under GX's NULL rule.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbtest import Volume, run_dupewatch, volumes, write_config
from fix_support import make_config
from monitor.engine import Monitor
from monitor.fix import add_guard, prepare_fix, run_fix

pytestmark = pytest.mark.timeout(240)

# -- Great Expectations: expect_compound_columns_to_be_unique ---------------------------------------------------

GX = {
    "w": [2, 3, 4, 5, 6, 7, 8, 9, 10, None],
    "x": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "a": [1, 1, 1, 1, 1, 2, 2, 2, 2, None],
    "b": [1, 2, 1, 2, 1, 2, 1, 2, 1, None],
}


@pytest.fixture
def gx_table(db):
    db.execute("CREATE TABLE gx (id INTEGER PRIMARY KEY, w INTEGER, x INTEGER, a INTEGER, b INTEGER)")
    db.execute("INSERT INTO gx VALUES (:id, :w, :x, :a, :b)",
               params=[{"id": i + 1, **{c: GX[c][i] for c in GX}} for i in range(10)])
    return db


def run(monitor_for: Any, db: Any, **check: Any) -> Any:
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", **check}])
    result = monitor.run("c")
    assert result.error is None, result.error
    return result


@pytest.mark.parametrize(("title", "check", "unexpected", "element_count"), [
    # basic_test_ignore_if_all_are_missing_the_default_behavior: (NULL, 10) has a value, so it is checked
    ("default rule", {"key": ["w", "x"], "nulls": "skip_all_null"}, 0, 10),
    # basic_test_ignore_if_any_are_missing
    ("any missing", {"key": ["w", "x"], "nulls": "distinct"}, 0, 9),
    # row_condition_with_ignore_if_any_are_missing: x != 1 & w != 6 leaves 8 rows, one of them missing
    ("row condition", {"key": ["w", "x"], "nulls": "distinct", "where": "x <> 1 AND w <> 6"}, 0, 7),
    # unexpected_values_exact_match_out: 9 unexpected rows, 100% of the 9 non-missing ones
    ("unexpected values", {"key": ["a", "b"], "nulls": "skip_all_null"}, 9, 9),
])
def test_great_expectations_compound_columns_unique(gx_table, monitor_for, title, check, unexpected, element_count):
    result = run(monitor_for, gx_table, table="gx", **check)
    assert (result.excess_rows or 0) + (result.groups or 0) == unexpected  # GX's unexpected_count
    assert result.rows_checked == element_count  # GX's non-missing element count
    if unexpected:
        assert 100.0 * unexpected / element_count == 100.0  # unexpected_percent
        assert result.excess_percent == pytest.approx(100.0 * 5 / 9)


def test_gx_default_rule_differs_from_equal_and_distinct_only_on_partial_nulls(db, monitor_for):
    db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)")
    rows = [(1, None), (1, None), (None, None), (None, None), (2, 2), (2, 2), (3, None)]
    db.execute("INSERT INTO p VALUES (:id, :a, :b)", params=[dict(id=i, a=a, b=b) for i, (a, b) in enumerate(rows, 1)])
    figures = {nulls: run(monitor_for, db, table="p", key=["a", "b"], nulls=nulls)
               for nulls in ("equal", "skip_all_null", "distinct")}
    assert {n: (r.groups, r.excess_rows, r.rows_checked) for n, r in figures.items()} == {
        "equal": (3, 3, 7), "skip_all_null": (2, 2, 5), "distinct": (1, 1, 2)}


# -- Soda Core: the `duplicate` check ---------------------------------------------------------------------------

SODA = [("1", 1, "USA"), ("2", 2, "USA"), ("3", 2, "BE"), ("4", 3, "USA"), ("5", 3, "BE"), ("6", 3, "BE"),
        ("7", 3, "BE"), ("8", 4, "USA"), ("9", 4, "BE"), (None, None, "BE")]


@pytest.fixture
def soda_table(db):
    db.execute("CREATE TABLE soda (pk INTEGER PRIMARY KEY, id VARCHAR(8), age INTEGER, country VARCHAR(8))")
    db.execute("INSERT INTO soda VALUES (:pk, :id, :age, :country)",
               params=[dict(pk=i, id=r[0], age=r[1], country=r[2]) for i, r in enumerate(SODA, 1)])
    return db


@pytest.mark.parametrize(("title", "check", "duplicate_count", "duplicate_percent"), [
    ("test_duplicate_str_pass", {"key": ["id"]}, 0, 0.0),
    ("test_duplicate_int_fail", {"key": ["age"]}, 5, 100.0 * 5 / 9),
    ("test_duplicate_with_check_filter", {"key": ["age"], "where": "country = 'USA'"}, 0, 0.0),
    ("test_duplicate_with_check_missing_and_validity_and_filter", {"key": ["age"], "where": "country = 'BE'"},
     2, 100.0 * 2 / 5),
])
def test_soda_duplicate_count_and_percent(soda_table, monitor_for, title, check, duplicate_count,
                                          duplicate_percent):
    result = run(monitor_for, soda_table, table="soda", nulls="distinct", **check)
    assert result.excess_rows == duplicate_count
    assert result.excess_percent == pytest.approx(duplicate_percent)


@pytest.mark.parametrize(("thresholds", "outcome"), [
    ({}, "fail"),  # no thresholds: anything found fails, as before
    ({"fail_above": 5}, "ok"),  # test_duplicate_threshold: must_be_less_than 6 passes with 5
    ({"fail_above": 4}, "fail"),
    ({"fail_above": "56%"}, "ok"),  # 55.6% of the rows
    ({"fail_above": "55%"}, "fail"),
    ({"warn_above": "50%", "fail_above": "60%"}, "warn"),
    ({"warn_above": 4}, "warn"),  # only a warning level: never fails
    ({"warn_above": 5}, "ok"),
])
def test_soda_thresholds_judge_the_run(soda_table, monitor_for, thresholds, outcome):
    result = run(monitor_for, soda_table, table="soda", key=["age"], nulls="distinct", **thresholds)
    assert (result.status, result.outcome) == ("duplicates", outcome)


def test_a_clean_check_is_ok_whatever_its_thresholds(soda_table, monitor_for):
    result = run(monitor_for, soda_table, table="soda", key=["id"], nulls="distinct", warn_above="1%")
    assert (result.status, result.outcome, result.excess_percent) == ("ok", "ok", 0.0)


# -- dbt-utils: unique_combination_of_columns ------------------------------------------------------------------------

def test_dbt_unique_combination_of_columns_with_warn_if_and_error_if(db, monitor_for):
    """`data_unique_combination_of_columns_where_failing.csv`: dbt counts one failure per repeated combination
    (its query returns the groups), NULLs grouped together as GROUP BY does (`nulls = "equal"`). With
    `warn_if: ">1"` and `error_if: ">2"` its two failures warn; here each group has one extra row, so the
    excess rows our thresholds count are the same two."""
    db.execute("CREATE TABLE dbt (pk INTEGER PRIMARY KEY, id INTEGER, color VARCHAR(8))")
    rows = [(1, "orange"), (1, "blue"), (2, "orange"), (2, "orange"), (2, "blue"), (2, "blue")]
    db.execute("INSERT INTO dbt VALUES (:pk, :id, :color)",
               params=[dict(pk=i, id=a, color=c) for i, (a, c) in enumerate(rows, 1)])
    result = run(monitor_for, db, table="dbt", key=["id", "color"], warn_above=1, fail_above=2)
    assert (result.groups, result.excess_rows, result.rows_checked, result.outcome) == (2, 2, 6, "warn")


# -- rows checked: counted by the aggregate that finds the groups --------------------------------------------------

def test_the_first_page_scan_counts_the_same_rows(soda_table):
    config = make_config(soda_table, [{"name": "ages", "table": "soda", "key": ["age"], "where": "country = 'BE'"}])
    plain, paged = Monitor(config), Monitor(config, first_page_size=2)
    paged.keep_first_page("ages")
    try:
        a, b = plain.run("ages"), paged.run("ages")
        assert (a.groups, a.excess_rows, a.rows_scanned) == (b.groups, b.excess_rows, b.rows_scanned) == (1, 2, 6)
        assert [(g.key, g.rows) for g in paged.kept_first_page("ages").groups] == [((3,), 3)]
    finally:
        plain.close()
        paged.close()


def test_an_empty_table_has_no_percentage(db, monitor_for):
    db.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, k INTEGER)")
    result = run(monitor_for, db, table="e", key=["k"], fail_above="1%")
    assert (result.rows_checked, result.excess_percent, result.outcome) == (0, None, "ok")


def test_an_incremental_pass_reports_the_rows_it_read_but_no_percentage(db, monitor_for):
    db.execute("CREATE TABLE inc (id INTEGER PRIMARY KEY, k INTEGER)")
    db.execute("INSERT INTO inc VALUES (1, 1), (2, 1), (3, 2), (4, 3)")
    db.execute("CREATE INDEX inc_k ON inc (k)")  # without it a poll may run as a full pass (issue 19)
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "inc", "key": ["k"],
                                                    "incremental": "id", "warn_above": 1}])
    full = monitor.run("c")
    assert (full.mode, full.rows_scanned, full.rows_checked, full.excess_percent) == ("full", 4, 4, 25.0)
    assert full.outcome == "ok"
    db.execute("INSERT INTO inc VALUES (5, 2)")
    step = monitor.run("c")
    assert (step.mode, step.excess_rows, step.rows_scanned, step.rows_checked, step.excess_percent) == \
        ("incremental", 2, 1, None, None)
    assert step.outcome == "warn"


# -- the CLI: columns, JSON, exit codes ------------------------------------------------------------------------------

def test_check_exit_codes_follow_the_worst_outcome(soda_table, tmp_path):
    def check(**thresholds: Any) -> Any:
        path = write_config(tmp_path / "dupewatch.toml", {"d": {"url": soda_table.url}},
                            [{"name": "ages", "database": "d", "table": "soda", "key": ["age"], "nulls": "distinct",
                              **thresholds}])
        return run_dupewatch("check", "-c", path, "--json"), run_dupewatch("check", "-c", path)

    expected = {(): ("fail", 1), (("fail_above", "60%"),): ("ok", 0), (("warn_above", 3),): ("warn", 3),
                (("warn_above", 3), ("fail_above", 4)): ("fail", 1)}
    for thresholds, (outcome, code) in expected.items():
        as_json, as_text = check(**dict(thresholds))
        assert (as_json.code, as_text.code) == (code, code), as_json.output + as_text.output
        [only] = as_json.json["checks"]
        assert (only["outcome"], only["rows_scanned"], only["excess_percent"]) == (outcome, 9, 55.5556)
        header, row = as_text.stdout.strip().splitlines()
        assert header.split() == ["CHECK", "DATABASE", "STATUS", "OUTCOME", "GROUPS", "EXCESS", "ROWS", "EXCESS", "%",
                                  "DURATION"]
        assert row.split()[:7] == ["ages", "d", "duplicates", outcome, "3", "5", "55.56%"]


# -- GX's NULL rule through the drill-down and the fix ----------------------------------------------------------------

@pytest.fixture
def partial_nulls(db):
    db.execute("CREATE TABLE dev (id INTEGER PRIMARY KEY, user_id INTEGER, os VARCHAR(10))")
    db.execute("INSERT INTO dev VALUES (1, NULL, 'ios'), (2, NULL, 'ios'), (3, NULL, NULL), (4, NULL, NULL), "
               "(5, 1, NULL), (6, 1, NULL), (7, 1, NULL), (8, 1, 'ios'), (9, 1, 'ios'), (10, 2, 'ios')")
    return db


def test_skip_all_null_groups_drill_and_fix_match_detection(partial_nulls):
    db = partial_nulls
    config = make_config(db, [{"name": "devices", "table": "dev", "key": ["user_id", "os"], "nulls": "skip_all_null"}])
    monitor = Monitor(config)
    try:
        result = monitor.run("devices")
        assert (result.groups, result.excess_rows, result.rows_checked) == (3, 4, 8)
        page = monitor.groups("devices")
        assert [(g.key, g.rows) for g in page.groups] == [((1, None), 3), ((None, "ios"), 2), ((1, "ios"), 2)]
        assert [r[0] for r in monitor.members("devices", (1, None)).rows] == [5, 6, 7]
        assert [r[0] for r in monitor.members("devices", (None, "ios")).rows] == [1, 2]
        assert monitor.members("devices", (None, None)).rows == []  # skipped rows belong to no group
        report = run_fix(monitor, "devices")
        assert (report.groups, report.deleted) == (3, 4)
    finally:
        monitor.close()
    # the all-NULL rows (3, 4) are not duplicates under this rule and are left alone
    assert [r[0] for r in db.rows("SELECT id FROM dev ORDER BY id")] == [1, 3, 4, 5, 8, 10]


# -- randomized: the figures of every NULL rule against a model -------------------------------------------------------

def model(rows: list[tuple[int | None, int | None]], nulls: str) -> tuple[int, int, int]:
    """(groups, excess rows, rows checked) as the peers define them, computed in Python."""
    if nulls == "distinct":
        kept = [r for r in rows if None not in r]
    elif nulls == "skip_all_null":
        kept = [r for r in rows if r != (None, None)]
    else:
        kept = list(rows)
    sizes = Counter(kept).values()
    return sum(1 for n in sizes if n > 1), sum(n - 1 for n in sizes), len(kept)


KEYS = st.tuples(st.one_of(st.none(), st.integers(0, 2)), st.one_of(st.none(), st.integers(0, 2)))


@pytest.mark.parametrize("volume", volumes(8, 100))
def test_figures_and_fix_of_every_null_rule_match_the_model(db, volume: Volume):
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)")
    checks = [{"name": n, "table": "r", "key": ["a", "b"], "nulls": n} for n in ("equal", "skip_all_null", "distinct")]

    @settings(max_examples=volume.examples, derandomize=not volume.soak, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(rows=st.lists(KEYS, max_size=14), nulls=st.sampled_from(["equal", "skip_all_null", "distinct"]))
    def check(rows: list[tuple[int | None, int | None]], nulls: str) -> None:
        db.execute("DELETE FROM r")
        if rows:
            db.execute("INSERT INTO r VALUES (:id, :a, :b)",
                       params=[dict(id=i, a=a, b=b) for i, (a, b) in enumerate(rows, 1)])
        monitor = Monitor(make_config(db, checks))
        try:
            found = {c["name"]: monitor.run(c["name"]) for c in checks}
            for name, result in found.items():
                assert (result.groups, result.excess_rows, result.rows_checked) == model(rows, name), name
            report = run_fix(monitor, nulls)
        finally:
            monitor.close()
        left = [(a, b) for _, a, b in db.rows("SELECT id, a, b FROM r ORDER BY id")]
        _groups, excess, _ = model(rows, nulls)
        assert report.deleted == excess and len(left) == len(rows) - excess
        assert model(left, nulls)[:2] == (0, 0)  # nothing the rule counts is left duplicated
        assert Counter(left) - Counter(rows) == Counter()  # only rows of the table, each kept at most as often
        assert set(left) == set(rows)  # every key keeps a row, the skipped ones included

    check()


def test_json_rows_scanned_is_absent_for_a_custom_query(sqlite_db, tmp_path):
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)")
    path = write_config(tmp_path / "dupewatch.toml", {"d": {"url": sqlite_db.url}},
                        [{"name": "v", "database": "d", "sql": "SELECT id FROM t WHERE k < 0", "fail_above": 3}])
    result = run_dupewatch("check", "-c", path, "--json")
    assert result.code == 0, result.output
    [only] = json.loads(result.stdout)["checks"]
    assert (only["rows_scanned"], only["excess_percent"], only["outcome"]) == (None, None, "ok")


def test_an_incremental_check_with_the_gx_rule_matches_its_full_pass(partial_nulls, monitor_for):
    db = partial_nulls
    db.execute("CREATE INDEX dev_key ON dev (user_id, os)")  # without it a poll may run as a full pass (issue 19)
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "table": "dev",
                                                    "key": ["user_id", "os"], "nulls": "skip_all_null",
                                                    "incremental": "id"}])
    assert (monitor.run("c").groups, monitor.run("c").excess_rows) == (3, 4)
    # a new all-NULL row is skipped; a new partial-NULL row joins its group; another starts a new group
    db.execute("INSERT INTO dev VALUES (11, NULL, NULL), (12, 2, NULL), (13, NULL, 'ios'), (14, 2, NULL)")
    step = monitor.run("c")
    assert (step.mode, step.groups, step.excess_rows, step.rows_scanned) == ("incremental", 4, 6, 3)
    full = monitor.run("c", full=True)
    assert (full.mode, full.groups, full.excess_rows, full.rows_checked) == ("full", 4, 6, 11)


def test_the_guard_after_a_gx_rule_fix_refuses_what_the_rule_counts_and_nothing_else(partial_nulls):
    """PostgreSQL 15+: NULLS NOT DISTINCT where the key is not all NULL, so a second (1, NULL) is refused and a
    second all-NULL row (which the rule skips) is not. Elsewhere NULLs are distinct in unique indexes: the guard
    says the rows with a NULL key part are not guarded."""
    db = partial_nulls
    monitor = Monitor(make_config(db, [{"name": "devices", "table": "dev", "key": ["user_id", "os"],
                                        "nulls": "skip_all_null"}]))
    try:
        run_fix(monitor, "devices")
        report = add_guard(monitor, "devices")
    finally:
        monitor.close()
    assert report.created
    db.execute("INSERT INTO dev VALUES (20, NULL, NULL)")  # skipped by the rule: never refused
    with pytest.raises(sa.exc.IntegrityError):
        db.execute("INSERT INTO dev VALUES (21, 1, 'ios')")
    if db.dialect == "postgresql":
        assert "NULLS NOT DISTINCT" in report.statement and "IS NOT NULL" in report.statement and not report.notes
        with pytest.raises(sa.exc.IntegrityError):
            db.execute("INSERT INTO dev VALUES (22, 1, NULL)")
    else:
        assert any("skip_all_null" in note and "not guarded" in note for note in report.notes), report.notes


def test_fixing_one_partial_null_group_under_the_gx_rule_leaves_the_others(partial_nulls):
    """The drill-down's `f` on the (1, NULL) group: the plan matches that group's rows NULL-safely, as detection
    grouped them, and no other row."""
    db = partial_nulls
    monitor = Monitor(make_config(db, [{"name": "devices", "table": "dev", "key": ["user_id", "os"],
                                        "nulls": "skip_all_null"}]))
    try:
        plan = prepare_fix(monitor, "devices", group=(1, None))
        assert (plan.groups, plan.rows_to_delete) == (1, 2)
        report = run_fix(monitor, "devices", plan)
        assert report.deleted == 2
        after = monitor.run("devices")
        assert (after.groups, after.excess_rows) == (2, 2)  # (NULL, 'ios') and (1, 'ios') are untouched
    finally:
        monitor.close()
    assert [r[0] for r in db.rows("SELECT id FROM dev ORDER BY id")] == [1, 2, 3, 4, 5, 8, 9, 10]

"""Thresholds (issue 18, item 21): the `warn_above` / `fail_above` keys, the outcome they give a run, and the
`dupewatch_check_status` / `dupewatch_duplicate_excess_ratio` series the alert rules and Grafana read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbtest import metric_samples
from monitor.config import ConfigError, Limit, config_from_dict
from monitor.detect import CheckResult
from monitor.history import History
from monitor.metrics import MetricsExporter
from monitor.thresholds import format_percent, judge


def check(**options: Any) -> Any:
    return config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}},
                             "checks": [{"name": "c", "database": "d", "table": "t", "key": ["k"], **options}]}
                            ).checks[0]


@pytest.mark.parametrize(("value", "limit"), [
    (10, Limit(10, False)), ("10", Limit(10, False)), ("0.5%", Limit(0.5, True)), (" 2 % ", Limit(2, True)),
    (0, Limit(0, False)), ("0%", Limit(0, True)),
])
def test_a_threshold_is_rows_or_a_percentage(value, limit):
    assert check(warn_above=value).warn_above == limit


@pytest.mark.parametrize(("options", "message"), [
    ({"warn_above": "ten"}, "checks[0] ('c').warn_above: expected a number of rows (10) or a percentage"),
    ({"fail_above": -1}, "checks[0] ('c').fail_above: must not be negative"),
    ({"fail_above": 1.5}, "checks[0] ('c').fail_above: expected a number of rows"),
    ({"fail_above": "100%"}, "a percentage must be below 100%"),
    ({"warn_above": True}, "expected a number of rows"),
    ({"warn_above": 5, "fail_above": 5}, "'warn_above' (5) must be below 'fail_above' (5)"),
    ({"warn_above": "2%", "fail_above": "1%"}, "'warn_above' (2%) must be below 'fail_above' (1%)"),
    ({"warn_above": "1%", "incremental": "id"}, "cannot apply to an incremental check"),
])
def test_a_bad_threshold_is_one_line_naming_the_check_and_key(options, message):
    with pytest.raises(ConfigError) as raised:
        check(**options)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_custom_query_takes_rows_but_not_a_percentage():
    data = {"databases": {"d": {"url": "sqlite:///unused.sqlite"}},
            "checks": [{"name": "v", "database": "d", "sql": "SELECT 1", "warn_above": "1%"}]}
    with pytest.raises(ConfigError, match="needs a table check"):
        config_from_dict(data)
    data["checks"][0]["warn_above"] = 3
    assert config_from_dict(data).checks[0].warn_above == Limit(3, False)


def test_mixed_units_are_each_judged():
    both = check(warn_above=5, fail_above="10%")
    assert judge(both, 5, 100) == "ok"
    assert judge(both, 6, 100) == "warn"
    assert judge(both, 11, 100) == "fail"
    assert judge(both, 6, None) is None  # the percentage cannot be judged without the rows checked
    assert judge(both, 3, 10) == "fail"  # 30% fails before the rows are looked at


def test_no_thresholds_fails_as_soon_as_anything_is_found():
    plain = check()
    assert (judge(plain, 0, None), judge(plain, 1, None), judge(plain, 1, 10**9)) == ("ok", "fail", "fail")


ROWS = st.integers(0, 1000)
LIMITS = st.one_of(st.none(), st.builds(lambda v: v, st.integers(0, 50)),
                   st.builds(lambda v: f"{v / 10:g}%", st.integers(0, 999)))


def model_exceeds(value: Any, found: int, checked: int) -> bool:
    if isinstance(value, int):
        return found > value
    share = float(value.rstrip("%"))
    return checked > 0 and found / checked * 100 > share


@given(found=ROWS, extra=ROWS, warn=LIMITS, fail=LIMITS)
def test_the_outcome_matches_a_model_of_the_peers_thresholds(found, extra, warn, fail):
    options = {k: v for k, v in (("warn_above", warn), ("fail_above", fail)) if v is not None}
    try:
        c = check(**options)
    except ConfigError:
        return  # warn at or above fail in one unit: refused, tested above
    checked = found + extra
    if fail is None and warn is None:
        expected = "fail" if found else "ok"
    elif fail is not None and model_exceeds(fail, found, checked):
        expected = "fail"
    elif warn is not None and model_exceeds(warn, found, checked):
        expected = "warn"
    else:
        expected = "ok"
    assert judge(c, found, checked) == expected


def test_percentages_read_as_people_write_them():
    assert [format_percent(p) for p in (None, 0.0, 0.004, 0.5, 55.5556, 100.0)] == \
        ["", "0.00%", "<0.01%", "0.50%", "55.56%", "100.00%"]


# -- the exported series ---------------------------------------------------------------------------------------------

@pytest.fixture
def exporter() -> Iterator[MetricsExporter]:
    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "c", "database": "d", "table": "t", "key": ["k"], "warn_above": 3},
        {"name": "v", "database": "d", "sql": "SELECT 1"}]})
    made = MetricsExporter(config, process_metrics=False)
    yield made
    made.close()


values = metric_samples  # (sample name, check) -> value


def test_status_and_excess_ratio_follow_successful_runs_only(exporter):
    assert ("dupewatch_check_status", "c") not in values(exporter)  # never judged: no series, not a false 0
    exporter.observe(CheckResult("c", "d", "duplicates", 2, 4, 1.0, rows_scanned=400, outcome="warn"))
    exporter.observe(CheckResult("v", "d", "violations", 2, 2, 1.0, outcome="fail"))
    found = values(exporter)
    assert found[("dupewatch_check_status", "c")] == 1
    assert found[("dupewatch_duplicate_excess_ratio", "c")] == 0.01
    assert found[("dupewatch_check_rows_scanned", "c")] == 400
    assert found[("dupewatch_check_status", "v")] == 2
    assert ("dupewatch_duplicate_excess_ratio", "v") not in found  # a custom query has no row count
    exporter.observe(CheckResult("c", "d", "error", None, None, 1.0, "database down"))
    assert values(exporter)[("dupewatch_check_status", "c")] == 1  # a failed run judges nothing
    exporter.observe(CheckResult("c", "d", "duplicates", 1, 1, 1.0, rows_scanned=400, outcome="ok"))
    assert values(exporter)[("dupewatch_check_status", "c")] == 0


def test_a_restart_restores_the_status_of_row_thresholds(exporter, tmp_path):
    history = History(tmp_path / "state.sqlite")
    try:
        config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
            {"name": "c", "database": "d", "table": "t", "key": ["k"], "warn_above": 3},
            {"name": "v", "database": "d", "sql": "SELECT 1"}]})
        history.record(CheckResult("c", "d", "duplicates", 2, 5, 1.0, subject="s-c",
                                   finished_at=datetime.now().astimezone()))
        exporter.restore(history, lambda check: f"s-{check.name}", config)
        assert values(exporter)[("dupewatch_check_status", "c")] == 1  # 5 excess rows: above warn_above 3
    finally:
        history.close()


def test_a_removed_check_loses_its_status_series(exporter):
    exporter.observe(CheckResult("c", "d", "duplicates", 2, 4, 1.0, rows_scanned=400, outcome="warn"))
    exporter.reload(config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "v", "database": "d", "sql": "SELECT 1"}]}))
    found = values(exporter)
    assert ("dupewatch_check_status", "c") not in found and ("dupewatch_duplicate_excess_ratio", "c") not in found

"""The dashboard's formatting rules: relative times, changes, sparklines and the race-vs-bug verdict."""

from datetime import datetime, timedelta

from monitor.config import config_from_dict
from monitor.detect import CheckResult
from monitor.tui.format import change_text, format_interval, format_spread, relative_time, sparkline, spread_kind
from monitor.tui.state import CheckState, Dashboard


def test_relative_time_reads_like_a_person_would_say_it():
    assert [relative_time(s) for s in (0.3, 12, 185, 7300, 3 * 86400)] == [
        "just now", "12s ago", "3m ago", "2h ago", "3d ago"]


def test_change_shows_direction_and_size():
    assert change_text(10, 13).plain == "▲ 3"
    assert change_text(13, 10).plain == "▼ 3"
    assert change_text(10, 10).plain == "="
    assert change_text(None, 10).plain == "—"


def test_sparkline_scales_between_min_and_max_and_marks_failed_runs():
    assert sparkline([0, 7, 14]) == "▁▅█"
    assert sparkline([5, None, 5]) == "▄·▄"
    assert sparkline([0, 0]) == "▁▁"
    assert len(sparkline(list(range(40)), width=16)) == 16


def test_spread_tells_a_race_from_a_retry_from_a_logic_bug():
    assert spread_kind(timedelta(milliseconds=5)) == "race"
    assert spread_kind(timedelta(seconds=40)) == "retry"
    assert spread_kind(timedelta(days=3)) == "logic"
    assert format_spread(timedelta(milliseconds=5)).plain == "↯ race  burst 5 ms"
    assert format_spread(timedelta(days=3)).plain == "logic bug  3 days apart"
    assert format_spread(None).plain == "no timestamp"


def test_interval_is_written_in_its_natural_unit():
    assert [format_interval(s) for s in (5, 90, 300, 3600, 0.5)] == ["5s", "90s", "5m", "1h", "0.5s"]


def _result(groups, at, status="duplicates", error=None):
    return CheckResult("c", "d", status, groups, groups, 1.0, error, finished_at=at)


def test_state_compares_with_the_previous_run_that_had_figures_and_ignores_stale_results():
    config = config_from_dict({"databases": {"d": {"url": "sqlite://"}},
                               "checks": [{"name": "c", "database": "d", "table": "t", "key": ["k"]}]})
    state = CheckState(config.checks[0])
    t0 = datetime(2024, 1, 1).astimezone()
    state.apply(_result(3, t0))
    state.apply(_result(None, t0 + timedelta(seconds=1), "error", "boom"))
    state.apply(_result(5, t0 + timedelta(seconds=2)))
    assert state.change == 2
    state.apply(_result(1, t0))  # older than what we have: ignored
    assert state.excess == 5
    state.load([_result(1, t0 - timedelta(seconds=10))])  # history from the store goes before live runs
    assert [r.excess_rows for r in state.history] == [1, 3, None, 5]
    assert state.excess == 5


def test_a_database_counts_as_unreachable_only_when_its_checks_fail_on_the_database():
    config = config_from_dict({"databases": {"a": {"url": "sqlite://"}, "b": {"url": "sqlite://"}},
                               "checks": [{"name": "x", "database": "a", "table": "t", "key": ["k"]},
                                          {"name": "y", "database": "b", "table": "t", "key": ["k"]}]})
    dash = Dashboard(config)
    now = datetime.now().astimezone()
    dash["x"].apply(CheckResult("x", "a", "error", None, None, 1, "database 'a' (sqlite://): unable to open", now))
    dash["y"].apply(CheckResult("y", "b", "error", None, None, 1, "check 'y': table 't' not found", now))
    assert dash.unreachable_databases() == ["a"]


def test_checks_that_have_not_run_yet_leave_the_header_total_unknown_not_zero(tmp_path):
    """README: a check that never succeeded makes the total a floor or unknown, never 0; a fleet's first runs
    are spread over up to a minute, and until then nothing has been counted."""
    from monitor.demo import demo_config
    from monitor.tui.widgets.totals import totals_text

    dashboard = Dashboard(demo_config(tmp_path / "demo.sqlite"))
    shown = totals_text(dashboard, datetime.now()).plain
    assert "excess rows unknown" in shown and "violating rows unknown" in shown, shown
    assert " 0 excess" not in shown and " 0 violating" not in shown, shown

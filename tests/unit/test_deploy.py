"""What operators deploy refers only to metrics the daemon really exports, with the labels it really uses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import config_from_dict
from monitor.detect import CheckResult
from monitor.metrics import MetricsExporter

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bdupewatch_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
OWN_LABELS = {"check", "database", "target", "le"}
PROMETHEUS_LABELS = {"job", "instance"}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> label names, parsed from a real registry after a good run, a failed run and a fix."""
    config = config_from_dict({
        "databases": {"app": {"url": "sqlite:///unused.sqlite"}},
        "checks": [{"name": "orders", "database": "app", "table": "orders", "key": ["ref"]},
                   {"name": "logins", "database": "app", "table": "logins", "key": ["user_id"]},
                   {"name": "sessions", "database": "app", "table": "sessions", "key": ["token"],
                    "incremental": "id"},
                   {"name": "vote-drift", "database": "app", "sql": "SELECT 1 WHERE 1 = 0"}],
    })
    exporter = MetricsExporter(config)
    try:
        exporter.observe(CheckResult("orders", "app", "duplicates", 3, 4, 12.0, rows_scanned=400, outcome="warn"))
        exporter.observe(CheckResult("sessions", "app", "duplicates", 2, 2, 3.0, mode="incremental",
                                     rows_scanned=1000, new_groups=1, last_full_pass=datetime.now().astimezone()))
        exporter.observe(CheckResult("logins", "app", "error", None, None, 5000.0, "database down"))
        exporter.observe(CheckResult("vote-drift", "app", "violations", 4, 4, 2.0))
        exporter.record_fix("orders", "app", 4)
        exporter.live_database("app")  # live mode's series, labelled by database
        exporter.live_events("app", 3, 0.05)
        exporter.live_gap("app", "connection lost")
        text = exporter.metrics.exposition().decode()
    finally:
        exporter.close()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "dupewatch.rules.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dupewatch.json").read_text(encoding="utf-8"))


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: panel targets and templating variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield value["query"]
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def assert_exported(queries: list[str], exported: dict[str, set[str]], where: str) -> None:
    used = {name for query in queries for name in METRIC.findall(query)}
    assert used, f"{where} uses no dupewatch metric"
    unknown = sorted(used - exported.keys())
    assert not unknown, f"{where} uses metrics the daemon does not export: {unknown}"
    for query in queries:
        for group in GROUPING.findall(query):
            labels = {label.strip() for label in group.split(",") if label.strip()}
            assert labels <= OWN_LABELS | PROMETHEUS_LABELS, f"{where}: unknown labels {labels} in {query!r}"


def test_every_alert_rule_uses_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    assert_exported([rule["expr"] for rule in rules()], exported, "the alert rules")
    # The stale alert's "never succeeded since the start" half reads the process's start time.
    assert "process_start_time_seconds" in exported


def test_every_dashboard_query_uses_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    assert_exported(list(dashboard_queries(dashboard())), exported, "the Grafana dashboard")


def test_every_check_metric_is_labelled_check_database_and_target_only(exported: dict[str, set[str]]) -> None:
    for name, labels in exported.items():
        if name == "dupewatch_build_info":
            assert labels == {"version", "python"}
        elif name.startswith("dupewatch_live_"):  # the change stream belongs to a database, not to a check
            assert labels == {"database"}, name
        elif name.startswith("dupewatch_target_"):  # a target's checks taken together
            assert labels == {"database", "target"}, name
        elif name.startswith("dupewatch_"):
            assert labels - {"le"} == {"check", "database", "target"}, name


def test_alerts_cover_present_growing_down_and_stale_with_summary_and_description() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    for alert in ("DupewatchDuplicatesPresent", "DupewatchDuplicatesGrowing", "DupewatchCheckDown",
                  "DupewatchCheckStale"):
        rule = by_name[alert]
        assert rule["annotations"]["summary"].strip() and len(rule["annotations"]["description"]) > 80, alert
        assert rule["labels"]["severity"] in ("warning", "critical"), alert
    assert "last_over_time(dupewatch_check_up[5m]) == 0" in by_name["DupewatchCheckDown"]["expr"]
    assert "dupewatch_check_interval_seconds" in by_name["DupewatchCheckStale"]["expr"]


def test_new_duplicates_alert_fires_on_any_new_group_within_ten_minutes() -> None:
    rule = {rule["alert"]: rule for rule in rules()}["DupewatchNewDuplicates"]
    # silent only for a check within its thresholds (dupewatch_check_status 0)
    # (its last sample within 5 minutes, so that a failed scrape does not page), or removed from the config
    expr = rule["expr"]
    assert expr.startswith("increase(dupewatch_new_duplicate_groups_total[10m]) > 0\n"), expr
    assert "unless on (job, instance, check, database, target) last_over_time(dupewatch_check_status[5m]) == 0" \
        in expr, expr
    assert "last_over_time(dupewatch_check_interval_seconds[10m])" in expr, expr
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"].strip() and len(rule["annotations"]["description"]) > 80


def test_dashboard_has_a_panel_of_new_duplicate_groups_and_one_of_rows_scanned() -> None:
    panels = dashboard()["panels"]
    exprs = {panel["title"]: " ".join(dashboard_queries(panel.get("targets", []))) for panel in panels}
    assert any("increase(dupewatch_new_duplicate_groups_total" in e for e in exprs.values()), exprs
    assert any("dupewatch_check_rows_scanned" in e for e in exprs.values()), exprs
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))


def test_dashboard_is_templated_by_check_and_database() -> None:
    board = dashboard()
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"check", "database"} <= variables
    targets = [q for panel in board["panels"] for q in dashboard_queries(panel.get("targets", []))]
    # Live mode's series belong to a database, not to a check: filtered by database only.
    live = [q for q in targets if "dupewatch_live_" in q]
    assert live and all('database=~"$database"' in q for q in live)
    assert all('check=~"$check"' in q for q in targets if "dupewatch_build_info" not in q and q not in live)


def test_dashboard_shows_the_live_streams_lag_events_and_gaps() -> None:
    """Issue 19: latency and gaps on the dashboard as in the metrics, one series per database."""
    exprs = [q for panel in dashboard()["panels"] for q in dashboard_queries(panel.get("targets", []))]
    for metric in ("dupewatch_live_lag_seconds", "dupewatch_live_events_total", "dupewatch_live_gaps_total"):
        assert any(metric in e for e in exprs), metric
    assert any("rate(dupewatch_live_events_total" in e for e in exprs)  # events per second
    assert any("increase(dupewatch_live_gaps_total" in e for e in exprs)

"""The shipped alert rules do what deploy/README says, by Prometheus's own rule engine: `promtool test rules`
runs deploy/prometheus/dupewatch.rules.test.yml (present, growing, growing again after a fix, new duplicates,
violations, checks within their thresholds staying silent, down, stale, exporter down). promtool comes from
Debian's `prometheus` package; .ci/run installs it, and under CI a missing promtool fails the run instead of
skipping it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid(promtool: str) -> None:
    checked = run(promtool, "check", "rules", "dupewatch.rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_passes_its_promtool_unit_tests(promtool: str) -> None:
    tested = run(promtool, "test", "rules", "dupewatch.rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    rules = yaml.safe_load((RULES_DIR / "dupewatch.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((RULES_DIR / "dupewatch.rules.test.yml").read_text())["tests"]
    fires = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c["exp_alerts"]}
    silent = {c["alertname"] for t in cases for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert alerts == fires == silent


def test_the_stale_alert_waits_for_its_condition_only() -> None:
    """deploy/README: "no success for 5 intervals (at least 10 minutes)" — the expression already waits that
    long, so a `for:` would add to it (it made the alert fire after 25 minutes)."""
    rules = yaml.safe_load((RULES_DIR / "dupewatch.rules.yml").read_text())
    stale = next(r for g in rules["groups"] for r in g["rules"] if r["alert"] == "DupewatchCheckStale")
    assert "for" not in stale


def test_every_grafana_query_parses(promtool: str, tmp_path: Path) -> None:
    """Prometheus's own parser reads each of the dashboard's queries (as recording rules of a scratch file)."""
    import json

    from test_deploy import dashboard_queries

    board = json.loads((RULES_DIR.parent / "grafana" / "dupewatch.json").read_text())
    queries = [q.replace("$__rate_interval", "5m") for q in dashboard_queries(board) if "label_values" not in q]
    rules = {"groups": [{"name": "grafana", "rules": [{"record": f"grafana:query_{i}", "expr": q}
                                                      for i, q in enumerate(queries)]}]}
    scratch = tmp_path / "grafana.rules.yml"
    scratch.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", str(scratch)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr

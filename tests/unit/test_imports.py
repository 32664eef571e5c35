"""`dupewatch check` stays fast: the CLI and the check path import nothing heavy (Textual, APScheduler,
prometheus-client), so a check on a tiny table starts in well under a second."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dbtest import REPO_ROOT

HEAVY = ("textual", "apscheduler", "prometheus_client", "textual_plotext", "plotext")

PROBE = """
import json, sys
from click.testing import CliRunner
import monitor.cli
after_import = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
result = CliRunner().invoke(monitor.cli.main, ["check", "--json", "--config", CONFIG])
after_check = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "after_import": after_import, "after_check": after_check}))
"""


def test_check_path_imports_no_dashboard_scheduler_or_metrics_library(tmp_path: Path):
    db = tmp_path / "tiny.sqlite"
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'a');")
    config = tmp_path / "dw.toml"
    config.write_text(f'[databases.d]\nurl = "sqlite:///{db}"\n[[checks]]\nname = "t"\ndatabase = "d"\n'
                      'table = "t"\nkey = ["k"]\n', encoding="utf-8")
    code = f"HEAVY = {HEAVY!r}\nCONFIG = {str(config)!r}\n" + PROBE
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    report = json.loads(done.stdout)
    assert report["exit"] == 1, report["output"]  # the check really ran and found the pair
    assert report["after_import"] == []
    assert report["after_check"] == []

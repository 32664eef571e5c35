"""The demo as a new user walks through it: a fix made while the racer keeps inserting rows can be undone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fix_support import run_cli

from monitor.demo import build_demo, demo_config_toml


def test_demo_fix_can_be_undone_after_the_racer_inserted_more_rows(tmp_path: Path) -> None:
    database = build_demo(tmp_path / "demo.sqlite")
    config = tmp_path / "demo.toml"
    config.write_text(demo_config_toml(database))
    with sqlite3.connect(database) as conn:  # a race burst as the newest rows: the fix deletes the highest id
        conn.execute("INSERT INTO race_profile (user_id, name, created_at) VALUES ('u-last', 'a', '2026-01-01')")
        conn.execute("INSERT INTO race_profile (user_id, name, created_at) VALUES ('u-last', 'b', '2026-01-01')")
    conn.close()
    fixed = run_cli("fix", "profiles-get-or-create", "--config", str(config), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = next(line for line in fixed.output.splitlines() if '"fix_id"' in line).split('"')[3]
    with sqlite3.connect(database) as conn:  # the racer's next get_or_create, as the demo runs it
        conn.execute("INSERT INTO race_profile (user_id, name, created_at) VALUES ('u-new', 'c', '2026-01-02')")
    conn.close()
    undone = run_cli("undo", fix_id, "--config", str(config), "--yes")
    assert undone.exit_code == 0, undone.output

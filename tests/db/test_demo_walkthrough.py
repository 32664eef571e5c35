"""The demo as a new user walks through it: a fix made while the racer keeps inserting rows can be undone."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

import pytest

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


def test_the_undo_command_a_fix_prints_works_as_printed_from_another_directory(tmp_path: Path,
                                                                               monkeypatch) -> None:
    database = build_demo(tmp_path / "demo.sqlite")
    (tmp_path / "demo.toml").write_text(demo_config_toml(database))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./dupewatch.toml here: the printed command must name the config
    fixed = run_cli("fix", "daily-checkins", "--config", str(tmp_path / "demo.toml"), "--yes")
    assert fixed.exit_code == 0, fixed.output
    undo = next(line for line in fixed.output.splitlines() if "undo with:" in line).split("undo with:")[1]
    command = shlex.split(undo)
    assert command[0] == "dupewatch"
    undone = run_cli(*command[1:], "--yes")
    assert undone.exit_code == 0, undone.output
    assert "undone" in undone.output


@pytest.mark.parametrize("command", [("undo",), ("fixes", "purge"), ("fixes", "abandon")])
def test_an_unknown_fix_id_is_said_before_asking_for_confirmation(tmp_path: Path, command: tuple[str, ...]) -> None:
    database = build_demo(tmp_path / "demo.sqlite")
    (tmp_path / "demo.toml").write_text(demo_config_toml(database))
    undone = run_cli(*command, "20990101-000000-abcdef", "--config", str(tmp_path / "demo.toml"))
    assert undone.exit_code == 2
    assert "no fix with id '20990101-000000-abcdef'" in undone.stderr and "--yes" not in undone.stderr
    assert len(undone.stderr.strip().splitlines()) == 1

"""Every dupewatch command the CLI prints for the user to run next names the config the user gave (`--config`,
shell-quoted): run as printed, from another directory, it works, or is refused for the reason it names, never
for a config it cannot find (`words.command`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dbtest import TestDatabase, write_config
from fix_support import make_config, run_cli
from monitor.engine import Monitor
from monitor.words import command_naming

CHECK = {"name": "users-by-name", "table": "users", "key": ["name"]}


@pytest.fixture
def spaced(sqlite_db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Duplicates in `users`, a config in a directory whose name has a space, and a working directory (and XDG
    home) with no config of their own: a printed command that omits --config finds none."""
    sqlite_db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(32) NOT NULL)",
                      "INSERT INTO users VALUES (1, 'ann'), (2, 'ann'), (3, 'bob'), (4, 'bob'), (5, 'cid')")
    folder = tmp_path / "my configs"
    folder.mkdir()
    path = write_config(folder / "watch.toml", {"app": {"url": sqlite_db.url}},
                        [{"database": "app", **CHECK}])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(elsewhere))
    return path


def printed(text: str, starting: str) -> list[str]:
    """The words of the first `dupewatch ...` command in backticks in `text` that starts with `starting`."""
    for found in re.findall(r"`(dupewatch [^`]*)`", text):
        if found.startswith(starting):
            words = shlex.split(found)
            return words[1:]
    raise AssertionError(f"no `{starting}` in {text!r}")


def test_the_command_is_shell_quoted_and_names_the_config(tmp_path):
    assert command_naming(tmp_path / "a b.toml", "fix", "it's") == \
        f"dupewatch fix 'it'\"'\"'s' --config '{tmp_path}/a b.toml'"
    assert command_naming(None, "fixes") == "dupewatch fixes"


def test_fix_without_confirmation_prints_a_dry_run_that_runs(spaced):
    refused = run_cli("fix", CHECK["name"], "--config", str(spaced))
    assert refused.exit_code == 2
    dry_run = run_cli(*printed(refused.stderr, "dupewatch fix"))
    assert dry_run.exit_code == 0, dry_run.output
    assert "dry run: nothing changed" in dry_run.stdout


def test_undo_refusal_prints_the_drop_constraint_command_that_runs(spaced, sqlite_db):
    fixed = run_cli("fix", CHECK["name"], "--config", str(spaced), "--yes", "--add-constraint")
    assert fixed.exit_code == 0, fixed.output
    fix_id = sqlite_db.scalar("SELECT fix_id FROM dupewatch_fix")
    refused = run_cli("undo", fix_id, "--config", str(spaced), "--yes")
    assert refused.exit_code == 2 and "--drop-constraint" in refused.stderr
    undone = run_cli(*printed(refused.stderr, "dupewatch undo"), "--yes")
    assert undone.exit_code == 0, undone.output
    assert sqlite_db.scalar("SELECT count(*) FROM users") == 5


def test_guard_refusal_prints_the_fix_that_runs(spaced, sqlite_db):
    refused = run_cli("guard", CHECK["name"], "--config", str(spaced))
    assert refused.exit_code == 2 and "fix them first" in refused.stderr
    fixed = run_cli(*printed(refused.stderr, "dupewatch fix"), "--yes")
    assert fixed.exit_code == 0, fixed.output
    assert sqlite_db.scalar("SELECT count(*) FROM users") == 3


def test_undo_of_an_unknown_fix_prints_a_fixes_command_that_runs(spaced):
    refused = run_cli("undo", "nosuchfix", "--config", str(spaced), "--yes")
    assert refused.exit_code == 2
    listed = run_cli(*printed(refused.stderr, "dupewatch fixes"))
    assert listed.exit_code == 0, listed.output


def test_purge_and_abandon_of_an_unfinished_fix_print_commands_that_run(spaced, sqlite_db):
    from fix_support import stopped_after_one_batch

    config = make_config(sqlite_db, [CHECK])
    monitor = Monitor(config)
    try:
        plan = stopped_after_one_batch(monitor, CHECK["name"])
    finally:
        monitor.close()
    refused = run_cli("fixes", "purge", plan.fix_id, "--config", str(spaced), "--yes")
    assert refused.exit_code == 2
    abandoned = run_cli(*printed(refused.stderr, "dupewatch fixes abandon"), "--yes")
    assert abandoned.exit_code == 0, abandoned.output
    undone = run_cli(*printed(abandoned.stdout, "dupewatch undo"), "--yes")
    assert undone.exit_code == 0, undone.output
    assert sqlite_db.scalar("SELECT count(*) FROM users") == 5
    planned = run_cli(*printed(abandoned.stdout, "dupewatch fix"), "--dry-run")
    assert planned.exit_code == 0, planned.output

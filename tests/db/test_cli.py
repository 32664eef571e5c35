"""`dupewatch check` and `dupewatch demo` as a user runs them: a real subprocess, its exit code, its stdout
and stderr. Bad input is one line, exit 2, never a traceback; passwords never appear."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import MYSQL_URL, PG_URL, REPO_ROOT, server_login, write_config

pytestmark = pytest.mark.timeout(180)
JSON_KEYS = {"name", "database", "status", "groups", "excess_rows", "duration_ms", "setup_ms", "error", "mode",
             "rows_scanned", "excess_percent", "outcome", "new_groups", "notes",
             "check", "target", "target_database", "labels"}  # one entry per check and target (fleet mode)


@pytest.fixture
def pairs(sqlite_db):
    """An SQLite database with one duplicated table and one clean table."""
    sqlite_db.execute("CREATE TABLE dup (id INTEGER PRIMARY KEY, k TEXT)",
                      "CREATE TABLE clean (id INTEGER PRIMARY KEY, k TEXT)",
                      "INSERT INTO dup VALUES (1, 'a'), (2, 'a'), (3, 'a'), (4, 'b'), (5, 'b')",
                      "INSERT INTO clean VALUES (1, 'a'), (2, 'b')")
    return sqlite_db


def config(tmp_path: Path, url: str, *checks: dict[str, Any], name: str = "dw.toml") -> Path:
    return write_config(tmp_path / name, {"d": {"url": url}}, [{"database": "d", **c} for c in checks])


DUP = {"name": "dup", "table": "dup", "key": ["k"]}
CLEAN = {"name": "clean", "table": "clean", "key": ["k"]}
# Fails when it runs (a table or column the config names is refused before any check runs instead).
BROKEN = {"name": "broken", "sql": "SELECT no_such_column FROM dup"}


def assert_no_traceback(run: Any) -> None:
    assert "Traceback" not in run.output and 'File "' not in run.output


def assert_one_line_error(run: Any, *fragments: str) -> str:
    """Exit 2 and exactly one line on stderr, containing every fragment."""
    assert run.code == 2, run.output
    assert_no_traceback(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- exit codes, output shape, --config placement -----------------------------------------------------

def test_exit_codes_zero_clean_one_duplicates_two_errors_win(db, tmp_path, dupewatch):
    db.execute("CREATE TABLE dup (id INTEGER PRIMARY KEY, k VARCHAR(5))",
               "CREATE TABLE clean (id INTEGER PRIMARY KEY, k VARCHAR(5))",
               "INSERT INTO dup VALUES (1, 'a'), (2, 'a')", "INSERT INTO clean VALUES (1, 'a')")
    path = config(tmp_path, db.url, DUP, CLEAN, BROKEN)
    assert dupewatch("check", "--config", path, "clean").code == 0
    assert dupewatch("check", "--config", path, "clean", "dup").code == 1
    both = dupewatch("check", "--config", path)
    assert both.code == 2
    assert_no_traceback(both)
    assert "broken: check 'broken'" not in both.stdout  # the check's name is not repeated in its error
    assert [line for line in both.stdout.splitlines() if line.startswith("broken: ")], both.stdout


def test_json_is_exactly_one_document_of_the_documented_shape(pairs, tmp_path, dupewatch):
    run = dupewatch("check", "--json", "--config", config(tmp_path, pairs.url, DUP, CLEAN, BROKEN))
    assert run.code == 2 and run.stderr == ""
    document = run.json  # the whole of stdout parses as one JSON value
    assert set(document) == {"checks"}
    assert [set(c) for c in document["checks"]] == [JSON_KEYS] * 3
    dup, clean, broken = document["checks"]
    assert dup == {**dup, "name": "dup", "database": "d", "status": "duplicates", "groups": 2, "excess_rows": 3,
                   "error": None}
    assert clean == {**clean, "name": "clean", "status": "ok", "groups": 0, "excess_rows": 0, "error": None}
    assert broken == {**broken, "name": "broken", "status": "error", "groups": None, "excess_rows": None}
    assert "no_such_column" in broken["error"]
    assert all(isinstance(c["duration_ms"], int | float) and c["duration_ms"] >= 0 for c in document["checks"])


def test_human_output_is_a_table_of_checks(pairs, tmp_path, dupewatch):
    run = dupewatch("check", "-c", config(tmp_path, pairs.url, DUP, CLEAN))
    assert run.code == 1
    header, dup, clean = run.stdout.strip().splitlines()
    assert header.split() == ["CHECK", "DATABASE", "STATUS", "OUTCOME", "GROUPS", "EXCESS", "ROWS", "EXCESS", "%",
                              "DURATION"]
    assert dup.split()[:6] == ["dup", "d", "duplicates", "fail", "2", "3"] and dup.endswith("ms")
    assert clean.split()[:7] == ["clean", "d", "ok", "ok", "0", "0", "0.00%"]


def test_config_option_before_or_after_the_subcommand(pairs, tmp_path, dupewatch):
    path = config(tmp_path, pairs.url, DUP)
    before = dupewatch("--config", path, "check", "--json")
    after = dupewatch("check", "--json", "--config", path)
    short = dupewatch("-c", path, "check", "--json")
    for run in (before, after, short):
        assert run.code == 1 and run.json["checks"][0]["groups"] == 2


def test_config_discovered_in_cwd_then_xdg_config_home(pairs, tmp_path, dupewatch):
    xdg = tmp_path / "xdg"
    (xdg / "dupewatch").mkdir(parents=True)
    config(xdg / "dupewatch", pairs.url, CLEAN, name="config.toml")
    work = tmp_path / "work"
    work.mkdir()
    env = {"XDG_CONFIG_HOME": str(xdg), "HOME": str(tmp_path)}

    from_xdg = dupewatch("check", "--json", cwd=work, env=env)
    assert from_xdg.code == 0 and [c["name"] for c in from_xdg.json["checks"]] == ["clean"]

    config(work, pairs.url, DUP, name="dupewatch.toml")  # ./dupewatch.toml wins over XDG
    from_cwd = dupewatch("check", "--json", cwd=work, env=env)
    assert from_cwd.code == 1 and [c["name"] for c in from_cwd.json["checks"]] == ["dup"]


@pytest.mark.parametrize("command", [[], ["check"], ["tui"], ["daemon"], ["fix", "x"], ["fixes"]])
def test_no_config_anywhere_is_one_line(tmp_path, dupewatch, command):
    run = dupewatch(*command, cwd=tmp_path, env={"XDG_CONFIG_HOME": str(tmp_path / "none"), "HOME": str(tmp_path)})
    assert_one_line_error(run, "no config file found", "--config", "dupewatch config example", "dupewatch demo")


@pytest.mark.parametrize(("command", "fragment"), [
    (["check", "--bogus"], "No such option '--bogus'"), (["fix"], "Missing argument 'CHECK'"),
    (["fix", "x", "--batch-size", "abc"], "--batch-size"), (["audit", "--source", "/no/such/dir"], "--source"),
    (["fixes", "purge"], "Missing argument 'FIX_ID'"), (["nosuchcmd"], "No such command 'nosuchcmd'"),
    (["--bogus"], "No such option '--bogus'"),
])
def test_a_malformed_command_line_is_one_line_naming_the_command(tmp_path, dupewatch, command, fragment):
    run = dupewatch(*command, cwd=tmp_path)
    line = assert_one_line_error(run, fragment, "--help")
    assert "Usage:" not in run.stderr and line.startswith("dupewatch: error: dupewatch")


def test_help_lists_every_command_with_a_whole_sentence(dupewatch):
    run = dupewatch("--help")
    assert run.code == 0 and "dupewatch demo" in run.stdout
    commands = run.stdout.split("Commands:")[1].strip().splitlines()
    assert {line.split()[0] for line in commands} == {
        "audit", "check", "config", "daemon", "demo", "fix", "fixes", "guard", "init", "tui", "undo"}
    assert all(line.rstrip().endswith(".") and not line.rstrip().endswith("...") for line in commands), commands


@pytest.mark.parametrize(("url", "fragment"), [
    ("oracle://scott:Tiger-Secret@db.example/orcl", "unsupported database 'oracle'"),
    ("postgresql+psycopg2://u:Tiger-Secret@127.0.0.1/test", "is not installed"),
])
def test_an_unsupported_url_or_missing_driver_is_one_line(tmp_path, dupewatch, url, fragment):
    path = config(tmp_path, url, DUP)
    checked = dupewatch("check", "--config", path)
    assert checked.code == 2 and fragment in checked.output
    assert_no_traceback(checked)
    assert "Tiger-Secret" not in checked.output and "internal error" not in checked.output
    # The daemon refuses it before starting, instead of logging errors forever.
    assert_one_line_error(dupewatch("daemon", "--config", path), "databases.d.url", fragment)


# -- bad input: one line, exit 2, no traceback ---------------------------------------------------------

BAD_CONFIGS = [
    ("toml-syntax", '[databases.d]\nurl = "sqlite://"\n[[checks]\nname = "x"\n', ["invalid TOML", "line 3"]),
    ("unknown-field", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                      'key = ["k"]\ntabel = "t"\n', ["checks[0] ('x').tabel", "unknown field"]),
    ("unknown-database", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "nope"\n'
                         'table = "t"\nkey = ["k"]\n', ["checks[0] ('x').database", "unknown database 'nope'",
                                                        "known: d"]),
    ("empty-key", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                  'key = []\n', ["checks[0] ('x').key", "at least one column"]),
    ("empty-column", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                     'key = [""]\n', ["checks[0] ('x').key", "must not be empty"]),
    ("bad-interval", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                     'key = ["k"]\ninterval = "every now and then"\n', ["checks[0] ('x').interval", "duration"]),
    ("negative-interval", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\n'
                          'table = "t"\nkey = ["k"]\ninterval = "-5s"\n', ["checks[0] ('x').interval"]),
    ("bad-timeout", '[databases.d]\nurl = "sqlite://"\nstatement_timeout = "soon"\n[[checks]]\nname = "x"\n'
                    'database = "d"\ntable = "t"\nkey = ["k"]\n', ["databases.d.statement_timeout"]),
    ("duplicate-names", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                        'key = ["k"]\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "u"\nkey = ["k"]\n',
     ["checks[1] ('x')", "duplicate check name 'x'"]),
    ("missing-query", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\n'
                      'query = "queries/nope.sql"\n', ["checks[0] ('x').query", "query file not found", "nope.sql"]),
    ("table-and-query", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                        'key = ["k"]\nsql = "SELECT 1"\n', ["checks[0] ('x')", "exactly one of"]),
    ("no-url", '[databases.d]\nstatement_timeout = "5s"\n[[checks]]\nname = "x"\ndatabase = "d"\nsql = "SELECT 1"\n',
     ["databases.d", "'url' or 'url_env'"]),
    ("bad-nulls", '[databases.d]\nurl = "sqlite://"\n[[checks]]\nname = "x"\ndatabase = "d"\ntable = "t"\n'
                  'key = ["k"]\nnulls = "maybe"\n', ["checks[0] ('x').nulls"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in BAD_CONFIGS],
                         ids=[name for name, _, _ in BAD_CONFIGS])
def test_bad_config_is_one_line_naming_file_and_field(tmp_path, dupewatch, text, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    run = dupewatch("check", "--config", path)
    assert run.stdout == ""
    assert_one_line_error(run, str(path), *fragments)


def test_bad_config_with_json_still_prints_one_json_document(tmp_path, dupewatch):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIGS[1][1], encoding="utf-8")
    run = dupewatch("check", "--json", "--config", path)
    assert run.code == 2 and run.json["checks"] == [] and "unknown field" in run.json["error"]
    assert_no_traceback(run)


def test_missing_config_file_and_unknown_check_name(pairs, tmp_path, dupewatch):
    assert_one_line_error(dupewatch("check", "--config", tmp_path / "nope.toml"), "nope.toml", "not found")
    path = config(tmp_path, pairs.url, DUP)
    assert_one_line_error(dupewatch("check", "--config", path, "dup", "typo"), "no check named 'typo'", "have: dup")


def test_unknown_table_and_column_name_the_file_check_and_field(pairs, tmp_path, dupewatch):
    path = config(tmp_path, pairs.url, {"name": "broken", "table": "no_such_table", "key": ["k"]},
                  {"name": "col", "table": "dup", "key": ["k", "kk"]},
                  {"name": "ts", "table": "dup", "key": ["k"], "timestamp": "born"})
    run = dupewatch("check", "--json", "--config", path)
    assert run.code == 2 and run.json["checks"] == []
    assert run.json["problems"] == [
        f"{path}: checks[0] ('broken').table: table 'no_such_table' not found in database 'd'",
        f"{path}: checks[1] ('col').key: unknown column 'kk' in table 'dup' (did you mean 'k'?) (columns: id, k)",
        f"{path}: checks[2] ('ts').timestamp: unknown column 'born' in table 'dup' (columns: id, k)",
    ]


def test_one_broken_check_does_not_stop_the_others(pairs, tmp_path, dupewatch):
    path = write_config(tmp_path / "dw.toml", {
        "d": {"url": pairs.url},
        "down": {"url": "postgresql+psycopg://monitor:Hunter2-Secret@127.0.0.1:1/app"},
    }, [
        {"name": "unreachable", "database": "down", "table": "t", "key": ["k"]},
        {"name": "broken", "database": "d", **BROKEN},
        {"name": "dup", "database": "d", "table": "dup", "key": ["k"]},
        {"name": "writes", "database": "d", "sql": "DELETE FROM dup"},
        {"name": "clean", "database": "d", "table": "clean", "key": ["k"]},
    ])
    run = dupewatch("check", "--json", "--config", path)
    assert run.code == 2
    by_name = {c["name"]: c for c in run.json["checks"]}
    assert [c["name"] for c in run.json["checks"]] == ["unreachable", "broken", "dup", "writes", "clean"]
    assert (by_name["dup"]["status"], by_name["dup"]["groups"], by_name["dup"]["excess_rows"]) == ("duplicates", 2, 3)
    assert by_name["clean"]["status"] == "ok"
    assert [by_name[n]["status"] for n in ("unreachable", "broken", "writes")] == ["error"] * 3
    assert "127.0.0.1:1" in by_name["unreachable"]["error"] and "\n" not in by_name["unreachable"]["error"]
    assert "Hunter2-Secret" not in run.output and "monitor:***@" in by_name["unreachable"]["error"]
    assert pairs.scalar("SELECT COUNT(*) FROM dup") == 5
    human = dupewatch("check", "--config", path)
    assert human.code == 2 and "Hunter2-Secret" not in human.output
    assert_no_traceback(human)


def test_url_env_reads_the_url_and_names_a_missing_variable(pairs, tmp_path, dupewatch):
    var = f"DW_TEST_URL_{uuid.uuid4().hex[:8].upper()}"
    path = write_config(tmp_path / "dw.toml", {"d": {"url_env": var}}, [{"database": "d", **DUP}])
    ok = dupewatch("check", "--json", "--config", path, env={var: pairs.url})
    assert ok.code == 1 and ok.json["checks"][0]["groups"] == 2
    missing = dupewatch("check", "--json", "--config", path, env={var: ""})
    assert missing.code == 2 and missing.json["checks"] == []  # a config problem: reported before any check runs
    assert missing.json["error"] == f"{path}: databases.d.url_env: environment variable {var} is not set"


# -- wrong passwords never leak ----------------------------------------------------------------------

@pytest.fixture
def mysql_user() -> Iterator[tuple[str, str]]:
    password = f"Right-{uuid.uuid4().hex}"
    with server_login("mysql", prefix="dw_pw", password=password) as user:
        yield user, password


@pytest.fixture
def pg_role() -> Iterator[tuple[str, str]]:
    password = f"Right-{uuid.uuid4().hex}"
    with server_login("postgresql", prefix="dw_pw", password=password) as role:
        yield role, password


def test_wrong_mysql_password_is_one_line_without_the_password(mysql_user, tmp_path, dupewatch):
    user, right = mysql_user
    wrong = f"Wrong-{uuid.uuid4().hex}"
    url = make_url(MYSQL_URL).set(username=user, password=wrong).render_as_string(hide_password=False)
    path = config(tmp_path, url, {"name": "t", "table": "t", "key": ["k"]})
    for args in (("check", "--json"), ("check",)):
        run = dupewatch(*args, "--config", path)
        assert run.code == 2
        assert_no_traceback(run)
        assert wrong not in run.output and right not in run.output
    error = run.stdout.strip().splitlines()[-1]
    assert "Access denied" in error and f"{user}:***@" in error


def test_postgresql_role_password_never_appears(pg_role, tmp_path, dupewatch):
    """The role exists with a password; whether the server checks it (this CI's pg_hba says `trust` on
    127.0.0.1) or the role lacks privileges, the check fails in one line without either password."""
    role, right = pg_role
    for password in (right, f"Wrong-{uuid.uuid4().hex}"):
        url = make_url(PG_URL).set(username=role, password=password).render_as_string(hide_password=False)
        path = config(tmp_path, url, {"name": "t", "table": f"no_schema_{uuid.uuid4().hex[:6]}.t", "key": ["k"]})
        run = dupewatch("check", "--json", "--config", path)
        assert run.code == 2
        assert_no_traceback(run)
        assert password not in run.output and right not in run.output
        # Connected (trust): the missing schema is a problem found before the check runs; else a run error.
        errors = run.json.get("problems") or [c["error"] for c in run.json["checks"]]
        assert len(errors) == 1 and "\n" not in errors[0]


def _interruptible() -> None:
    """Ctrl-C as at a terminal: a test run started in the background (`pytest &` in a script, as CI runners
    may) ignores SIGINT, and a child inherits that, as POSIX wants for background jobs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# A check's statement that sleeps (`marker` names it), and how many such statements the server runs now (`active`:
# pg_stat_activity also shows an idle session's last query, and a cancel reaching the server before the query
# starts is ignored).
SLEEPS = {"postgresql": "pg_sleep(30) AS {marker}", "mysql": "SLEEP(30) AS {marker}"}
RUNNING = {"postgresql": "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE :q "
                         "AND pid <> pg_backend_pid()",
           "mysql": "SELECT count(*) FROM information_schema.processlist WHERE info LIKE :q AND command = 'Query' "
                    "AND id <> connection_id()"}


@pytest.mark.parametrize("checks", [1, 2])
def test_ctrl_c_during_a_check_is_one_line_and_cancels_its_queries_on_the_server(server, tmp_path, checks):
    """Ctrl-C answers at once (exit 130, one line) and the server stops the checks' statements: PyMySQL leaves a
    statement it stops reading running to its end, and two checks (run on worker threads) were waited for to their
    end, `statement_timeout` later."""
    marker = f"dw_interrupt_{uuid.uuid4().hex[:8]}"
    sleep = SLEEPS[server.dialect].format(marker=marker)
    path = config(tmp_path, server.url, *({"name": f"slow{i}", "sql": f"SELECT {sleep}"} for i in range(checks)))

    def running() -> int:
        return int(server.scalar(RUNNING[server.dialect], {"q": f"%{sleep}%"}))

    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "check", "--config", str(path)], cwd=REPO_ROOT,
                               env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=_interruptible)
    try:
        deadline = time.monotonic() + 30
        while running() < checks:
            assert time.monotonic() < deadline and process.poll() is None, "the checks never started their queries"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)  # the statements sleep 30 s
        # (MariaDB's SLEEP notices a closed connection only every 5 s; a statement that computes never does)
        deadline = time.monotonic() + 2
        while running():
            assert time.monotonic() < deadline, "the server still runs the interrupted checks' statements"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "dupewatch: interrupted" and "Traceback" not in stderr


def test_fix_dry_run_writes_a_value_that_would_overwrite_its_line_with_escapes(sqlite_db, tmp_path, dupewatch):
    """A duplicated value holding a carriage return redrew the line that says which row is kept (`keep id=1`, then
    the value's own `delete id=1`), and a newline started lines of its own in the plan the operator approves."""
    spoof = "x\r      delete  id=1, k=x\nfake line"
    sqlite_db.execute("CREATE TABLE pair (id INTEGER PRIMARY KEY, k TEXT)")
    sqlite_db.execute("INSERT INTO pair (id, k) VALUES (1, :k), (2, :k)", params={"k": spoof})
    run = dupewatch("fix", "pair", "--dry-run", "--config", config(tmp_path, sqlite_db.url,
                                                                    {"name": "pair", "table": "pair", "key": ["k"]}))
    assert run.code == 0, run.output
    assert "\r" not in run.stdout and "fake line" not in run.stdout.splitlines()
    lines = [line.strip() for line in run.stdout.splitlines()]
    escaped = "x\\r      delete  id=1, k=x\\nfake line"
    assert f"group ({escaped}): 2 rows" in lines
    assert [line[:23] for line in lines if line.startswith(("keep", "delete"))] == [
        "keep    id=1, k=x\\r    ", "delete  id=2, k=x\\r    "]


def test_ctrl_c_during_a_sqlite_check_is_not_taken_for_a_timeout(sqlite_db, tmp_path):
    """A long SQLite statement runs Python only in its progress handler, where Ctrl-C lands; sqlite3 took the
    KeyboardInterrupt for the handler's answer, so the check reported "query exceeded statement_timeout (30s)"
    seconds in, exit 2, and the other checks ran on."""
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    count = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2000000000) SELECT n FROM r"
    path = config(tmp_path, sqlite_db.url, {"name": "slow", "sql": f"{count} WHERE n = -1"})
    database = os.path.realpath(make_url(sqlite_db.url).database or "")
    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "check", "--config", str(path)], cwd=REPO_ROOT,
                               env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=_interruptible)

    def opened() -> bool:
        fds = Path(f"/proc/{process.pid}/fd")
        return any(os.path.realpath(fd) == database for fd in fds.iterdir()) if fds.exists() else False

    def cpu_seconds() -> float:  # utime + stime of /proc/PID/stat (after the command's name, which may hold spaces)
        fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        # Nothing outside the process shows a SQLite statement running: the process opened the file, then spent
        # a second of CPU (the probe and the vetting take milliseconds) in the counting statement.
        deadline = time.monotonic() + 30
        while not opened():
            assert time.monotonic() < deadline and process.poll() is None, "the check never opened its database"
            time.sleep(0.02)
        started = cpu_seconds()
        while cpu_seconds() < started + 1:
            assert time.monotonic() < deadline and process.poll() is None, "the check never ran its statement"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "dupewatch: interrupted" and "statement_timeout" not in stdout


def test_a_ctrl_c_the_command_handled_does_not_turn_a_later_statement_error_into_ctrl_c(sqlite_db, monkeypatch):
    """The note of a Ctrl-C stayed for the life of the process: once a command had handled one and gone on (a guard
    cleaning up after it, a fix marking its record), every later statement error on the main thread was raised as
    Ctrl-C, past the handlers written for it (the MySQL guard's `_kill` expects 'Unknown thread id' of a session
    already gone: that would end its interrupted message as a bare 'interrupted')."""
    from monitor import interrupt
    from monitor.config import config_from_dict
    from monitor.db import Database

    monkeypatch.setattr(interrupt, "CTRL_C", threading.Event())
    sqlite_db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    database = Database("d", config_from_dict({"databases": {"d": {"url": sqlite_db.url}},
                                               "checks": [{"name": "c", "database": "d", "sql": "SELECT 1"}]})
                        .databases["d"])
    try:
        with database.connect(database.writer) as conn:
            conn.exec_driver_sql("SELECT 1")
            with contextlib.suppress(KeyboardInterrupt):  # handled: the command goes on
                interrupt.raise_ctrl_c(signal.SIGINT, None)  # the CLI's SIGINT handler
            with pytest.raises(sa.exc.OperationalError, match="no such table"):
                conn.exec_driver_sql("SELECT * FROM no_such_table_dw")
    except KeyboardInterrupt:
        pytest.fail("a statement begun after the handled Ctrl-C had its own error raised as Ctrl-C")
    finally:
        database.dispose()


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """What `dupewatch ARGS` writes to a terminal (a pseudo-terminal as its stdout and stderr)."""
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "monitor.cli", *args], cwd=REPO_ROOT, env=env,
                                   stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_no_color_turns_off_colours_on_a_terminal(pairs, tmp_path):
    """NO_COLOR (no-color.org) was ignored: on a terminal, `check` coloured its table whatever it said."""
    args = ["check", "--config", str(config(tmp_path, pairs.url, DUP, CLEAN))]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert "\x1b[" in _on_a_terminal(args, env)  # coloured by default, on a terminal
    plain = _on_a_terminal(args, {**env, "NO_COLOR": "1"})
    assert "duplicates" in plain and "\x1b[" not in plain, plain


def test_audit_reads_dupewatch_url_ending_in_a_newline(pairs, dupewatch):
    """`export DUPEWATCH_URL="$(cat url-file)"` strips the newline; a secret mounted from a file keeps it, and the
    newline ended the database's name (SQLite: "file not found: /path/db.sqlite\\n")."""
    run = dupewatch("audit", env={**os.environ, "DUPEWATCH_URL": pairs.url + "\n"})
    assert run.code in (0, 1) and "audited 2 table(s)" in run.output, run.output


# -- the demo ------------------------------------------------------------------------------------------

def test_demo_once_from_an_empty_directory_with_a_fresh_home(tmp_path, dupewatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {"HOME": str(home), "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": "", "CI": os.environ.get("CI", "")}
    run = dupewatch("demo", "--once", cwd=work, env=env)
    assert run.code == 0, run.output
    assert_no_traceback(run)
    lines = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.strip()}
    for name in ("login-sources", "daily-checkins", "vote-drift", "role-membership", "profiles-get-or-create"):
        # vote-drift is a custom query: an invariant it breaks is a violation, not a duplicate row
        assert lines[name][2] == ("violations" if name == "vote-drift" else "duplicates"), run.stdout
        assert lines[name][3] == "fail"  # no thresholds: anything found fails
        assert int(lines[name][4].replace(",", "")) > 0
    assert list(work.iterdir()) == []  # nothing written where the user stood
    assert list(home.rglob("demo.sqlite")), "the demo database lives under the per-user data directory"


def test_demo_without_a_terminal_prints_the_figures_once_instead(tmp_path, dupewatch):
    """A newcomer piping the output (or a container without -t) gets the one-shot table, not escape codes."""
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": "", "CI": os.environ.get("CI", "")}
    run = dupewatch("demo", "--no-racer", cwd=tmp_path, env=env, timeout=60)
    assert run.code == 0, run.output
    assert run.stderr.strip() == ("dupewatch: no terminal for the live dashboard; printing the figures once "
                                  "(`dupewatch demo --once`)")
    assert "\x1b[" not in run.stdout
    assert run.stdout.splitlines()[2].split() == ["CHECK", "DATABASE", "STATUS", "OUTCOME", "GROUPS", "EXCESS",
                                                  "ROWS", "EXCESS", "%", "DURATION"]


def test_dashboard_without_a_terminal_is_one_line_and_exit_2(tmp_path, dupewatch):
    path = tmp_path / "dupewatch.toml"
    path.write_text(f'[databases.local]\nurl = "sqlite:///{tmp_path / "app.db"}"\n\n[[checks]]\nname = "t"\n'
                    'database = "local"\ntable = "t"\nkey = ["k"]\n')
    for args in (["tui", "--config", str(path)], ["--config", str(path)]):
        run = dupewatch(*args, cwd=tmp_path)
        assert run.code == 2, run.output
        assert run.stderr.strip().splitlines() == [
            "dupewatch: error: the dashboard needs a terminal (it reads keys from stdin and draws on stderr); "
            "`dupewatch check` prints the figures once and `dupewatch daemon` runs without one"]

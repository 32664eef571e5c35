"""A fix with a left-out group, killed (SIGKILL) after its first batch, changed under by the application, resumed
by another run, then undone: every row read back from the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import sqlalchemy as sa

from fix_support import config_file, json_out, run_cli

CHECK = [{"name": "accounts", "table": "accounts", "key": ["login"]}]
CHILD = textwrap.dedent("""
    import sys
    from monitor.config import load_config
    from monitor.engine import Monitor
    from monitor.fix import run_fix

    def park(progress):
        print("batch", progress.groups_done, flush=True)
        sys.stdin.read()  # parked after the first committed batch until the parent kills us

    run_fix(Monitor(load_config(sys.argv[1])), "accounts", batch_size=2, progress=park)
""")
SEEDED = [(1, "aaa", "a1@x"), (2, "aaa", "a2@x"), (3, "ann", None), (4, "ann", None), (5, "bob", None),
          (6, "bob", None), (7, "cid", None), (8, "cid", None), (9, "dan", None), (10, "dan", None)]


def test_killed_fix_with_a_left_out_group_resumes_and_undoes(db, tmp_path):
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(32) NOT NULL, email VARCHAR(64), "
               "CONSTRAINT accounts_email_key UNIQUE (email))",
               "CREATE TABLE notes (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts (id))")
    db.execute("INSERT INTO accounts VALUES (:i, :l, :e)", params=[{"i": i, "l": lg, "e": e} for i, lg, e in SEEDED])
    db.execute("INSERT INTO notes VALUES (:id, :a)", params=[{"id": 100 + i, "a": i} for i, _l, _e in SEEDED])
    path = config_file(tmp_path, db, CHECK)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise AssertionError(child.stderr.read().decode() if child.stderr else "child died")
            try:
                done = db.rows("SELECT done_through FROM dupewatch_fix")
            except sa.exc.DBAPIError:
                done = []
            if done and done[0][0] > 0:
                break
            assert time.monotonic() < deadline, "the first batch never committed"
            time.sleep(0.02)  # polling interval of a condition with a deadline
        child.send_signal(signal.SIGKILL)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
    # First batch: groups 1 (aaa, left out by the plan) and 2 (ann, fixed).
    assert db.rows("SELECT state, groups, skipped, deleted FROM dupewatch_fix") == [("running", 1, 1, 1)]
    # The application meanwhile: aaa's rows become plain duplicates (too late: the plan left them out), and bob's
    # rows become two entities (the resumed batch must see it under its locks).
    db.execute("UPDATE accounts SET email = NULL WHERE login = 'aaa'",
               "UPDATE accounts SET email = 'b5@x' WHERE id = 5", "UPDATE accounts SET email = 'b6@x' WHERE id = 6")
    result = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    report = json_out(result)
    assert result.exit_code == 1, result.output
    assert (report["groups"], report["skipped"], report["deleted"], report["repointed"]) == (3, 2, 3, 3)
    assert db.rows("SELECT id FROM accounts ORDER BY id") == [(1,), (2,), (3,), (5,), (6,), (7,), (9,)]
    assert db.rows("SELECT id, account_id FROM notes ORDER BY id") == [
        (101, 1), (102, 2), (103, 3), (104, 3), (105, 5), (106, 6), (107, 7), (108, 7), (109, 9), (110, 9)]
    undo = run_cli("undo", report["fix_id"], "--config", str(path), "--yes")
    assert undo.exit_code == 0, undo.output
    changed = {1: None, 2: None, 5: "b5@x", 6: "b6@x"}
    assert db.rows("SELECT id, login, email FROM accounts ORDER BY id") == [
        (i, lg, changed.get(i, e)) for i, lg, e in SEEDED]
    assert db.rows("SELECT id, account_id FROM notes ORDER BY id") == [(100 + i, i) for i, _l, _e in SEEDED]

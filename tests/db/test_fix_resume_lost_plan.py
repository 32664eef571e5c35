"""A fix that stopped (a referencing table's trigger wrote a row the plan does not hold) is resumed by the next
`fix --yes`, not planned afresh. Two surprises met there: the dry run showed a fresh plan and exited 0 without
saying that `--yes` would resume the stopped fix instead; and once the stopped fix's plan table was gone (the
application's schema restored from a dump, a DBA cleaning up `dupewatch_*` tables), `fix --yes` crashed with
`unexpected ProgrammingError ... (please report this)`. Now the dry run names the fix `--yes` will resume, and
resuming without its plan table is refused in one line that says what to do."""

from __future__ import annotations

import sqlalchemy as sa

from fix_support import config_file, contents, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import prepare_fix
from monitor.fix.locks import fix_lock
from monitor.fix.undo import find_fix, locate_fixed_table


def _stopped_fix(db, tmp_path, *options: str):
    """A fix stopped by a trigger of item that writes change_log when the second group's row is repointed: with
    `--batch-size 1` after one committed batch, else at its first."""
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id))",
               "CREATE TABLE change_log (what VARCHAR(20))",
               "INSERT INTO tag VALUES (1, 'x'), (2, 'x'), (3, 'y'), (4, 'y')",
               "INSERT INTO item VALUES (10, 1), (11, 2), (12, 3), (13, 4)")
    body = "INSERT INTO change_log (what) VALUES ('changed')"
    if db.dialect == "postgresql":
        db.execute(f"CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; "
                   "END $$",
                   "CREATE TRIGGER item_audit AFTER UPDATE ON item FOR EACH ROW WHEN (NEW.id = 13) "
                   "EXECUTE FUNCTION log_change()")
    elif db.dialect == "mysql":
        db.execute(f"CREATE TRIGGER item_audit AFTER UPDATE ON item FOR EACH ROW BEGIN IF NEW.id = 13 THEN {body}; "
                   "END IF; END")
    else:
        db.execute(f"CREATE TRIGGER item_audit AFTER UPDATE ON item WHEN NEW.id = 13 BEGIN {body}; END")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    stopped = run_cli("fix", "tags", "--config", str(path), "--yes", *options)
    assert stopped.exit_code == 2 and "item_audit" in stopped.stderr, stopped.output
    fix_id = stopped.stderr.split("fix ", 1)[1].split(" ", 1)[0]
    return path, fix_id


def _drop_plan(db, fix_id: str) -> str:
    plan = f"dupewatch_plan_{fix_id.replace('-', '_')}"
    engine = sa.create_engine(db.url)
    try:
        assert plan in sa.inspect(engine).get_table_names(schema=db.schema)
    finally:
        engine.dispose()
    db.execute(f"DROP TABLE {db.q(plan)}")
    return plan


def test_the_dry_run_says_that_fix_yes_resumes_a_stopped_fix(db, tmp_path):
    path, fix_id = _stopped_fix(db, tmp_path)
    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run")
    assert f"fix {fix_id}" in dry.stderr and "resume" in dry.stderr, dry.output
    as_json = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert f"fix {fix_id}" in as_json.stderr, as_json.output


def test_resuming_a_fix_whose_plan_table_is_gone_is_refused_in_one_line(db, tmp_path):
    path, fix_id = _stopped_fix(db, tmp_path, "--batch-size", "1")
    plan = _drop_plan(db, fix_id)
    before = contents(db, "tag", "item", "change_log")

    resumed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert resumed.exit_code == 2, resumed.output
    assert "please report" not in resumed.stderr and "unexpected" not in resumed.stderr, resumed.stderr
    assert fix_id in resumed.stderr and plan in resumed.stderr and f"dupewatch undo {fix_id}" in resumed.stderr
    assert f"dupewatch fixes abandon {fix_id}" in resumed.stderr, resumed.stderr  # the other way out
    assert len(resumed.stderr.strip().splitlines()) == 1, resumed.stderr
    assert contents(db, "tag", "item", "change_log") == before
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert db.rows("SELECT id FROM tag ORDER BY id") == [(1,), (2,), (3,), (4,)]


def test_a_fix_that_committed_no_batch_is_discarded_when_its_plan_table_is_gone(db, tmp_path):
    """Stopped at its first batch, the fix changed nothing: it is discarded (else nothing could move on: no plan
    to resume, nothing to undo, and `fixes purge` takes only done or undone fixes)."""
    path, fix_id = _stopped_fix(db, tmp_path)
    _drop_plan(db, fix_id)
    before = contents(db, "tag", "item", "change_log")
    resumed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert resumed.exit_code == 2 and "discarded" in resumed.stderr, resumed.output
    assert len(resumed.stderr.strip().splitlines()) == 1, resumed.stderr
    assert contents(db, "tag", "item", "change_log") == before
    again = run_cli("fix", "tags", "--config", str(path), "--dry-run")
    assert "unfinished" not in again.stderr, again.output


def test_abandoning_a_fix_whose_plan_table_is_gone_keeps_its_batch_undoable_and_lets_a_new_fix_run(db, tmp_path):
    """Stuck: the fix committed a batch (tag 2 deleted, item 11 repointed), then lost its plan table (resume is
    refused naming `fixes abandon`, above). Abandon records the fix as given up, deleting nothing; a new fix of the
    check plans afresh and runs; undo of the abandoned fix still restores what its batch did."""
    path, fix_id = _stopped_fix(db, tmp_path, "--batch-size", "1")
    _drop_plan(db, fix_id)
    unconfirmed = run_cli("fixes", "abandon", fix_id, "--config", str(path))
    assert unconfirmed.exit_code == 2 and "without confirmation" in unconfirmed.stderr, unconfirmed.output
    before = contents(db, "tag", "item", "change_log", "dupewatch_archive_tag")

    abandoned = run_cli("fixes", "abandon", fix_id, "--config", str(path), "--yes", "--json")
    assert abandoned.exit_code == 0, abandoned.output
    assert json_out(abandoned) == {"fix_id": fix_id, "check": "tags", "state": "abandoned", "groups": 1,
                                   "deleted": 1, "plan_dropped": False}
    assert contents(db, "tag", "item", "change_log", "dupewatch_archive_tag") == before  # nothing deleted
    assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fix_id}) == "abandoned"

    db.execute("DROP TRIGGER item_audit" + (" ON item" if db.dialect == "postgresql" else ""))
    fresh = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fresh.exit_code == 0 and json_out(fresh)["fix_id"] != fix_id, fresh.output
    assert db.rows("SELECT id FROM tag ORDER BY id") == [(1,), (3,)]
    assert db.rows("SELECT id, tag_id FROM item ORDER BY id") == [(10, 1), (11, 1), (12, 3), (13, 3)]

    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert (json_out(undone)["restored"], json_out(undone)["repointed"]) == (1, 1)
    assert db.rows("SELECT id, label FROM tag ORDER BY id") == [(1, "x"), (2, "x"), (3, "y")]
    assert db.rows("SELECT id, tag_id FROM item ORDER BY id") == [(10, 1), (11, 2), (12, 3), (13, 3)]
    assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fix_id}) == "undone"


def test_abandon_is_refused_for_a_done_or_undone_fix(db, tmp_path):
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)",
               "INSERT INTO tag VALUES (1, 'x'), (2, 'x')")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    fix_id = json_out(fixed)["fix_id"]
    for state in ("done", "undone"):
        refused = run_cli("fixes", "abandon", fix_id, "--config", str(path), "--yes")
        assert refused.exit_code == 2, refused.output
        assert f"fix {fix_id} is {state}: only an unfinished fix" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "unexpected" not in refused.stderr
        assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fix_id}) == state
        if state == "done":
            assert db.rows("SELECT id FROM tag") == [(1,)]
            assert run_cli("undo", fix_id, "--config", str(path), "--yes").exit_code == 0
    assert db.rows("SELECT id FROM tag ORDER BY id") == [(1,), (2,)]


def test_abandoning_a_planned_fix_drops_its_plan_table_unless_another_process_holds_the_table(db, tmp_path):
    """A fix another process runs holds the table's fix lock: abandon is refused, nothing changed; without it
    the planned fix is abandoned and its plan table dropped."""
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)",
               "INSERT INTO tag VALUES (1, 'x'), (2, 'x')")
    check = {"name": "tags", "table": "tag", "key": ["label"]}
    path = config_file(tmp_path, db, [check])
    monitor = Monitor(make_config(db, [check]))
    try:
        fix_id = prepare_fix(monitor, "tags").fix_id or ""
        fixing, record = find_fix(monitor, fix_id)
        with fix_lock(fixing, locate_fixed_table(fixing, record)[1], record.table_name):
            held = run_cli("fixes", "abandon", fix_id, "--config", str(path), "--yes")
    finally:
        monitor.close()
    assert held.exit_code == 2 and "already being fixed" in held.stderr, held.output
    assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fix_id}) == "planned"
    abandoned = run_cli("fixes", "abandon", fix_id, "--config", str(path), "--yes", "--json")
    assert abandoned.exit_code == 0, abandoned.output
    assert (json_out(abandoned)["deleted"], json_out(abandoned)["plan_dropped"]) == (0, True)
    engine = sa.create_engine(db.url)
    try:
        assert not [t for t in sa.inspect(engine).get_table_names(schema=db.schema) if t.startswith("dupewatch_plan")]
    finally:
        engine.dispose()
    assert db.scalar("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fix_id}) == "abandoned"
    assert db.rows("SELECT id FROM tag ORDER BY id") == [(1,), (2,)]

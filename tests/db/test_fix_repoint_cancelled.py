"""A referencing table's BEFORE UPDATE trigger that cancels or reverts the repoint (an "immutable owner" rule
written as a trigger): the batch is rolled back, as before, and the message now says that a trigger or rule of
that table may have done it and that resuming meets it again; it said only "run the fix again to resume"."""

from __future__ import annotations

from fix_support import config_file, contents, run_cli

_CANCEL = {
    "postgresql": ["CREATE FUNCTION keep_owner() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN NEW.account_id := OLD.account_id; RETURN NEW; END$$",
                   "CREATE TRIGGER keep_owner BEFORE UPDATE ON login FOR EACH ROW EXECUTE FUNCTION keep_owner()"],
    "mysql": ["CREATE TRIGGER keep_owner BEFORE UPDATE ON login FOR EACH ROW SET NEW.account_id = OLD.account_id"],
    "sqlite": ["CREATE TRIGGER keep_owner BEFORE UPDATE ON login BEGIN SELECT RAISE(IGNORE); END"],
}


def test_a_trigger_cancelling_the_repoint_is_named_as_a_cause_resuming_meets_again(db, tmp_path):
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL)",
               "CREATE TABLE login (id INTEGER PRIMARY KEY, account_id INTEGER, "
               "FOREIGN KEY (account_id) REFERENCES account (id) ON DELETE CASCADE)",
               "INSERT INTO account VALUES (1, 'a'), (2, 'a'), (3, 'b')",
               "INSERT INTO login VALUES (10, 1), (11, 2)", *_CANCEL[db.dialect])
    path = config_file(tmp_path, db, [{"name": "c", "table": "account", "key": ["email"]}])
    before = contents(db, "account", "login")
    fixed = run_cli("fix", "c", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "the current batch was rolled back" in fixed.stderr
    assert "a BEFORE UPDATE trigger or an UPDATE rule of login changed or cancelled the repoint" in fixed.stderr
    assert "once what is named is dealt with, run the fix again to resume" in fixed.stderr
    assert contents(db, "account", "login") == before

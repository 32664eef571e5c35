"""MariaDB/MySQL tables whose storage engine cannot roll back (MyISAM, Aria: legacy WordPress and forum schemas
still have them). A batch rolled back half-way (here by the batch's account, after an AFTER DELETE trigger wrote
an audit row) kept its deletes while its archive rows were rolled back: the row was gone and not archived, and the
message said "nothing of this batch was kept". Such a table is now refused up front by the dry run and the fix,
and dupewatch's own tables are InnoDB whatever the server's default engine."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from dbtest import write_config
from fix_support import config_file, contents, json_out, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import prepare_fix, run_fix
from monitor.fix.errors import FixError


@pytest.mark.parametrize("engine", ["MyISAM", "Aria"])
def test_a_table_that_cannot_roll_back_is_refused_and_keeps_every_row(mysql, tmp_path, engine):
    mysql.execute(f"CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20)) ENGINE={engine}",
                  "CREATE TABLE audit (id INTEGER AUTO_INCREMENT PRIMARY KEY, deleted_id INTEGER)",
                  "CREATE TRIGGER account_audit AFTER DELETE ON account FOR EACH ROW "
                  "INSERT INTO audit (deleted_id) VALUES (OLD.id)",
                  "INSERT INTO account VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    path = config_file(tmp_path, mysql, [{"name": "c", "table": "account", "key": ["email"]}])
    before = contents(mysql, "account", "audit")
    for args in (["--dry-run"], ["--yes"]):
        result = run_cli("fix", "c", "--config", str(path), *args)
        assert result.exit_code == 2, result.output
        assert f"uses the {engine} storage engine, which cannot roll back" in result.stderr
    assert contents(mysql, "account", "audit") == before


def test_dupewatchs_own_tables_roll_back_on_a_server_whose_default_engine_is_myisam(mysql, tmp_path):
    """`default_storage_engine = MyISAM` (here for the fix's sessions, by `init_command`): the archive was created
    MyISAM, kept the copy of a rolled-back batch, and once the fix finished undo refused forever ("the archive
    holds 2 of its 1 rows"). dupewatch's tables are InnoDB now, and the fix can be undone."""
    mysql.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20))",
                  "CREATE TABLE audit (id INTEGER AUTO_INCREMENT PRIMARY KEY, deleted_id INTEGER)",
                  "CREATE TRIGGER account_audit AFTER DELETE ON account FOR EACH ROW "
                  "INSERT INTO audit (deleted_id) VALUES (OLD.id)",
                  "INSERT INTO account VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    url = make_url(mysql.url).update_query_dict({"init_command": "SET default_storage_engine=MyISAM"})
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": url.render_as_string(hide_password=False)}},
                        [{"database": "app", "name": "c", "table": "account", "key": ["email"]}])
    before = contents(mysql, "account")
    stopped = run_cli("fix", "c", "--config", str(path), "--yes")
    assert stopped.exit_code == 2 and "the current batch was rolled back" in stopped.stderr, stopped.output
    assert mysql.scalar("SELECT count(*) FROM dupewatch_archive_account") == 0
    assert {engine for (engine,) in mysql.rows(
        "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME LIKE 'dupewatch%'")} == {"InnoDB"}
    mysql.execute("DROP TRIGGER account_audit")
    resumed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert resumed.exit_code == 0, resumed.output
    undone = run_cli("undo", json_out(resumed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(mysql, "account") == before


def _seed_user_stats(mysql, engine: str) -> None:
    """An InnoDB `usr` (so its own engine passes) and a legacy counter table of another engine."""
    mysql.execute("CREATE TABLE usr (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL) ENGINE=InnoDB",
                  "CREATE TABLE item (id INTEGER PRIMARY KEY, usr_id INTEGER REFERENCES usr (id)) ENGINE=InnoDB",
                  f"CREATE TABLE user_stats (usr_id INTEGER PRIMARY KEY, logins INTEGER) ENGINE={engine}",
                  "INSERT INTO usr VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'b')",
                  "INSERT INTO item VALUES (10, 2)",
                  "INSERT INTO user_stats VALUES (1, 10), (2, 5), (3, 7), (4, 1)")


@pytest.mark.parametrize("engine, trigger", [
    ("MyISAM", "CREATE TRIGGER usr_gone AFTER DELETE ON usr FOR EACH ROW DELETE FROM user_stats WHERE usr_id = OLD.id"),
    ("Aria", "CREATE TRIGGER usr_gone AFTER DELETE ON usr FOR EACH ROW DELETE FROM user_stats WHERE usr_id = OLD.id"),
    ("MyISAM", "CREATE TRIGGER item_moved AFTER UPDATE ON item FOR EACH ROW "
               "UPDATE user_stats SET logins = logins + 1 WHERE usr_id = NEW.usr_id")])
def test_a_trigger_the_fix_fires_is_refused_while_a_table_cannot_roll_back(mysql, tmp_path, engine, trigger):
    """A trigger of the InnoDB table (or of a referencing table the fix repoints) writing a MyISAM/Aria table: the
    batch's account rolled the batch back and said "nothing of this batch was kept", while the trigger's deletes
    in the MyISAM/Aria table stayed. MariaDB keeps no catalog of what a trigger body writes: while a table that
    cannot roll back exists, a trigger the fix's writes fire is refused up front, named with that table."""
    _seed_user_stats(mysql, engine)
    mysql.execute(trigger)
    path = config_file(tmp_path, mysql, [{"name": "c", "table": "usr", "key": ["email"]}])
    before = contents(mysql, "usr", "item", "user_stats")
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    name = trigger.split()[2]
    [blocker] = [b for b in json_out(dry)["blockers"] if name in b]
    assert f"({make_url(mysql.url).database}.user_stats ({engine}))" in blocker, blocker
    assert "convert those tables to InnoDB" in blocker and "drop the trigger for the fix's duration" in blocker
    fixed = run_cli("fix", "c", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "cannot be fixed" in fixed.stderr and name in fixed.stderr, fixed.output
    assert contents(mysql, "usr", "item", "user_stats") == before


def test_undo_refuses_before_it_changes_anything_when_its_writes_fire_a_trigger_and_a_table_cannot_roll_back(
        mysql, tmp_path):
    _seed_user_stats(mysql, "MyISAM")
    path = config_file(tmp_path, mysql, [{"name": "c", "table": "usr", "key": ["email"]}])
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    mysql.execute("CREATE TRIGGER usr_back AFTER INSERT ON usr FOR EACH ROW DELETE FROM user_stats "
                  "WHERE usr_id = NEW.id")
    before = contents(mysql, "usr", "item", "user_stats")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    assert "refused, nothing changed: undo's writes fire AFTER INSERT trigger usr_back on usr" in undone.stderr
    assert f"{make_url(mysql.url).database}.user_stats (MyISAM)" in undone.stderr, undone.stderr
    assert contents(mysql, "usr", "item", "user_stats") == before


def test_a_rolled_back_batch_that_left_a_table_changed_does_not_say_nothing_was_kept(mysql, tmp_path):
    """The trigger made after the plan (so no refusal saw it): MariaDB's ROLLBACK says its non-transactional
    changes stay (warning 1196), and the stop message says so instead of "nothing of this batch was kept"."""
    _seed_user_stats(mysql, "MyISAM")
    monitor = Monitor(make_config(mysql, [{"name": "c", "table": "usr", "key": ["email"]}]))
    try:
        prepared = prepare_fix(monitor, "c")
        assert prepared.blockers == [], prepared.blockers
        mysql.execute("CREATE TRIGGER usr_gone AFTER DELETE ON usr FOR EACH ROW DELETE FROM user_stats "
                      "WHERE usr_id = OLD.id")
        with pytest.raises(FixError) as stopped:
            run_fix(monitor, "c", prepared)
    finally:
        monitor.close()
    said = str(stopped.value)
    assert "nothing of this batch was kept" not in said, said
    assert "warning 1196" in said and "except in tables that cannot roll back" in said, said
    assert mysql.scalar("SELECT count(*) FROM user_stats") < 4  # (what the warning is about)

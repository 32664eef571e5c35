"""MariaDB/MySQL tables whose storage engine cannot roll back (MyISAM, Aria: legacy WordPress and forum schemas
still have them). A batch rolled back half-way (here by the batch's account, after an AFTER DELETE trigger wrote
an audit row) kept its deletes while its archive rows were rolled back: the row was gone and not archived, and the
message said "nothing of this batch was kept". Such a table is now refused up front by the dry run and the fix,
and dupewatch's own tables are InnoDB whatever the server's default engine."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from dbtest import write_config
from fix_support import config_file, contents, json_out, run_cli


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

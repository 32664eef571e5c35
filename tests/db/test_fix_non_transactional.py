"""MariaDB/MySQL tables whose storage engine cannot roll back (MyISAM, Aria: legacy WordPress and forum schemas
still have them). A batch rolled back half-way (here by the batch's account, after an AFTER DELETE trigger wrote
an audit row) kept its deletes while its archive rows were rolled back: the row was gone and not archived, and the
message said "nothing of this batch was kept". Such a table is now refused up front by the dry run and the fix."""

from __future__ import annotations

import pytest

from fix_support import config_file, contents, run_cli


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

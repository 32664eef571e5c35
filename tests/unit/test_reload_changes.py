"""What a config reload's log line names as changed (`monitor.daemon.changed_checks`)."""

from __future__ import annotations

from pathlib import Path

from monitor.config import load_config
from monitor.daemon import changed_checks


def test_a_custom_query_file_edited_in_place_is_a_changed_check(tmp_path: Path) -> None:
    """A custom check's SQL is read from its `query` file at each load: an operator who edited the file and sent
    SIGHUP changed the check while every field of it stayed the same, and the reload's line did not name it."""
    (tmp_path / "drift.sql").write_text("SELECT id FROM orders WHERE total < 0\n", encoding="utf-8")
    path = tmp_path / "dw.toml"
    path.write_text('[databases.app]\nurl = "sqlite:///app.db"\n\n'
                    '[[checks]]\nname = "drift"\ndatabase = "app"\nquery = "drift.sql"\n\n'
                    '[[checks]]\nname = "orders"\ndatabase = "app"\ntable = "orders"\nkey = ["email"]\n',
                    encoding="utf-8")
    before = load_config(path)
    assert changed_checks(before, load_config(path)) == []
    (tmp_path / "drift.sql").write_text("SELECT id FROM orders WHERE total < 0 OR total IS NULL\n", encoding="utf-8")
    assert changed_checks(before, load_config(path)) == ["drift"]
    path.write_text(path.read_text(encoding="utf-8").replace('key = ["email"]', 'key = ["email", "region"]'),
                    encoding="utf-8")
    assert changed_checks(before, load_config(path)) == ["drift", "orders"]

"""A trigger on a referencing table that the fix's own write fires: a repoint's UPDATE (an audit trigger on
`item`, as django-simple-history or a hand-written audit log has), an archive's DELETE. The batch's account
rolls such a batch back (the trigger wrote rows the plan does not hold), but the dry run said nothing and
exited 0, and on SQLite the stop message named only tables the plan expected. The preview now names the
trigger per reference, and so does the stop message."""

from __future__ import annotations

import pytest

from fix_support import audit_trigger, config_file, contents, json_out, run_cli


def _seed(db) -> None:
    db.execute("CREATE TABLE tag (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, tag_id INTEGER REFERENCES tag (id), note VARCHAR(20))",
               "CREATE TABLE change_log (id INTEGER)",
               "INSERT INTO tag VALUES (1, 'x'), (2, 'x'), (3, 'y')",
               "INSERT INTO item VALUES (10, 1, 'a'), (11, 2, 'b'), (12, 3, 'c')")


@pytest.mark.parametrize("action, event, write", [("repoint", "UPDATE", "repointed"),
                                                  ("archive", "DELETE", "archived and deleted")])
def test_a_trigger_the_fix_fires_on_a_referencing_table_is_named_before_and_when_it_stops(db, tmp_path, action,
                                                                                          event, write):
    _seed(db)
    audit_trigger(db, "item_audit", event, "item", into="change_log")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"],
                                       "on_reference": {"item.tag_id": action}}])
    before = contents(db, "tag", "item", "change_log")

    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    named = [n for n in json_out(dry)["notes"] if "item_audit" in n]
    assert named == [f"each of the 1 {write} row(s) of item(tag_id) fires AFTER {event} trigger item_audit: if it "
                     "writes any other row (an audit or history table), or changes or cancels the fix's own write, "
                     "the batch is rolled back and the fix stops at its first batch; disable it on item for the "
                     "fix (undo fires it too)"]

    fixed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert f"AFTER {event} trigger item_audit" in fixed.stderr, fixed.stderr
    assert contents(db, "tag", "item", "change_log") == before


def test_a_trigger_of_other_columns_or_events_is_not_named(db, tmp_path):
    """An AFTER INSERT trigger, and (PostgreSQL, SQLite) an `UPDATE OF note` trigger, do not fire on the
    repoint's UPDATE of tag_id: the preview names none, and the fix runs."""
    _seed(db)
    audit_trigger(db, "item_insert", "INSERT", "item", into="change_log")
    if db.dialect != "mysql":  # MySQL/MariaDB have no UPDATE OF
        audit_trigger(db, "item_note", "UPDATE OF note", "item", into="change_log")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tag", "key": ["label"]}])
    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert not [n for n in json_out(dry)["notes"] if "trigger" in n], json_out(dry)["notes"]
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert db.rows("SELECT count(*) FROM change_log") == [(0,)]


def test_postgres_names_an_update_rule_of_a_referencing_table(pg, tmp_path):
    """`CREATE RULE ... AS ON UPDATE TO item DO INSTEAD NOTHING` cancels the repoint (the batch stops, rolled back,
    as it should); the dry run now names the rule beforehand."""
    _seed(pg)
    pg.execute("CREATE RULE item_frozen AS ON UPDATE TO item DO INSTEAD NOTHING")
    path = config_file(tmp_path, pg, [{"name": "tags", "table": "tag", "key": ["label"]}])
    before = contents(pg, "tag", "item", "change_log")
    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert any("fires rule item_frozen ON UPDATE" in n for n in json_out(dry)["notes"]), json_out(dry)["notes"]
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "item_frozen" in fixed.stderr, fixed.output
    assert contents(pg, "tag", "item", "change_log") == before

"""A check's key over a nullable column (Oscar's `basket(owner_id, status)`, where an anonymous basket has no
owner): `nulls = "equal"` (the default) groups every anonymous open basket as one key, and the plan listed that
group as any other, with no word: `fix --yes` merged three shoppers' baskets into one, and `--add-constraint`
(NULLS NOT DISTINCT on PostgreSQL 15+) then refused the application's next anonymous basket. The plan now counts
the groups formed by a NULL in the key and says so, with the way to leave them out."""

from __future__ import annotations

from fix_support import config_file, json_out, run_cli


def test_the_plan_names_the_groups_a_null_in_the_key_forms(db, tmp_path):
    db.execute("CREATE TABLE basket (id INTEGER PRIMARY KEY, owner_id INTEGER, status VARCHAR(10) NOT NULL)",
               "INSERT INTO basket VALUES (1, 7, 'Open'), (2, 7, 'Open'), (3, NULL, 'Open'), (4, NULL, 'Open'), "
               "(5, NULL, 'Open'), (6, NULL, 'Frozen'), (7, NULL, 'Frozen'), (8, 8, 'Open')")
    path = config_file(tmp_path, db, [{"name": "baskets", "table": "basket", "key": ["owner_id", "status"]}])
    dry = run_cli("fix", "baskets", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert (plan["groups"], plan["null_key_groups"]) == (3, {"owner_id": 2})
    assert any(note.startswith("2 group(s) are formed by a NULL in the key (owner_id in 2), counted as one value "
                               "(nulls = \"equal\")") and "set nulls = \"distinct\"" in note
               for note in plan["notes"]), plan["notes"]
    # The rule that leaves them out, and a key with no NULL: no such note.
    for checks in ([{"name": "baskets", "table": "basket", "key": ["owner_id", "status"], "nulls": "distinct"}],
                   [{"name": "baskets", "table": "basket", "key": ["owner_id", "status"], "where": "owner_id > 0"}]):
        path = config_file(tmp_path, db, checks)
        plan = json_out(run_cli("fix", "baskets", "--config", str(path), "--dry-run", "--json"))
        assert (plan["groups"], plan["null_key_groups"]) == (1, {}), plan
        assert not any("NULL in the key" in note for note in plan["notes"]), plan["notes"]


def test_the_note_counts_the_groups_a_null_forms_in_any_of_the_key_columns(db, tmp_path):
    """Two nullable key columns, a NULL in one in two groups and in the other in a third: the note said 2 group(s)
    (the largest column's count), not the 3 the fix merges."""
    db.execute("CREATE TABLE basket (id INTEGER PRIMARY KEY, owner_id INTEGER, status VARCHAR(10))",
               "INSERT INTO basket VALUES (1, NULL, 'Open'), (2, NULL, 'Open'), (3, NULL, 'Frozen'), "
               "(4, NULL, 'Frozen'), (5, 7, NULL), (6, 7, NULL), (7, 8, 'Open'), (8, 8, 'Open')")
    path = config_file(tmp_path, db, [{"name": "baskets", "table": "basket", "key": ["owner_id", "status"]}])
    plan = json_out(run_cli("fix", "baskets", "--config", str(path), "--dry-run", "--json"))
    assert (plan["groups"], plan["null_key_groups"]) == (4, {"owner_id": 2, "status": 1}), plan
    assert any(note.startswith("3 group(s) are formed by a NULL in the key (owner_id in 2, status in 1)")
               for note in plan["notes"]), plan["notes"]

"""PostgreSQL: a check naming one partition of a partitioned table (break16 F14). A foreign key declared to refer to
the partitioned table (an ancestor of the partition, at any level) reaches the partition's rows through it; the
plan read only foreign keys to the partition itself, so the dry run showed no reference and the fix stopped at
its first batch (NO ACTION: the database refused the delete; CASCADE: the batch's account caught the cascade).
Such a foreign key is now a reference of the partition: its rows are repointed (the ancestor's unique key holds its
partition key, so the referred values name one row of the whole tree) and undo points them back."""

from __future__ import annotations

import pytest

from fix_support import config_file, contents, json_out, run_cli

TABLES = ("ev", "ev_ref")


def _seed(pg, ondelete: str) -> None:
    """ev partitioned by region; ev_ref refers to ev (not to a partition); ev_eu's rows 1 and 2 share k, and row 2
    (the one to delete) is referenced."""
    pg.execute("CREATE TABLE ev (id INTEGER, region TEXT, k TEXT, PRIMARY KEY (id, region)) PARTITION BY LIST (region)",
               "CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu')",
               "CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us')",
               "CREATE TABLE ev_ref (id INTEGER PRIMARY KEY, ev_id INTEGER, region TEXT, "
               f"FOREIGN KEY (ev_id, region) REFERENCES ev (id, region) ON DELETE {ondelete})",
               "INSERT INTO ev VALUES (1, 'eu', 'k'), (2, 'eu', 'k'), (3, 'us', 'k')",
               "INSERT INTO ev_ref VALUES (1, 2, 'eu'), (2, 1, 'eu'), (3, 3, 'us')")


@pytest.mark.parametrize("ondelete", ["NO ACTION", "CASCADE"])
def test_a_foreign_key_to_the_partitioned_table_is_a_reference_of_its_partition(pg, tmp_path, ondelete):
    _seed(pg, ondelete)
    before = contents(pg, *TABLES)
    path = config_file(tmp_path, pg, [{"name": "eu", "table": "ev_eu", "key": ["k"]}])
    dry = run_cli("fix", "eu", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert [(r["table"], r["rows_to_repoint"]) for r in plan["references"]] == [("ev_ref", 1)], plan["references"]
    text = run_cli("fix", "eu", "--config", str(path), "--dry-run")
    assert "ev_ref(ev_id, region) -> ev_eu(id, region) (declared on ev, of which it is a partition)" in text.stdout
    fixed = run_cli("fix", "eu", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (1, 1)
    assert pg.rows("SELECT id, ev_id, region FROM ev_ref ORDER BY id") == [(1, 1, "eu"), (2, 1, "eu"), (3, 3, "us")]
    assert pg.rows("SELECT id, region FROM ev ORDER BY id") == [(1, "eu"), (3, "us")]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, *TABLES) == before


def test_a_foreign_key_to_an_ancestor_two_levels_up_is_a_reference_too(pg, tmp_path):
    """ev_eu is itself partitioned (by k); the check names its partition ev_eu_a."""
    pg.execute("CREATE TABLE ev (id INTEGER, region TEXT, k TEXT, PRIMARY KEY (id, region, k)) "
               "PARTITION BY LIST (region)",
               "CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu') PARTITION BY LIST (k)",
               "CREATE TABLE ev_eu_a PARTITION OF ev_eu FOR VALUES IN ('a')",
               "CREATE TABLE ev_eu_b PARTITION OF ev_eu FOR VALUES IN ('b')",
               "ALTER TABLE ev ADD COLUMN note TEXT",
               "CREATE TABLE ev_ref (id INTEGER PRIMARY KEY, ev_id INTEGER, region TEXT, k TEXT, "
               "FOREIGN KEY (ev_id, region, k) REFERENCES ev (id, region, k))",
               "INSERT INTO ev VALUES (1, 'eu', 'a', 'x'), (2, 'eu', 'a', 'x'), (3, 'eu', 'b', 'x')",
               "INSERT INTO ev_ref VALUES (1, 2, 'eu', 'a'), (2, 3, 'eu', 'b')")
    before = contents(pg, *TABLES)
    path = config_file(tmp_path, pg, [{"name": "a", "table": "ev_eu_a", "key": ["note"]}])
    fixed = run_cli("fix", "a", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (1, 1)
    assert pg.rows("SELECT id, ev_id, k FROM ev_ref ORDER BY id") == [(1, 1, "a"), (2, 3, "b")]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, *TABLES) == before


def test_a_foreign_key_to_a_sibling_partition_is_no_reference(pg, tmp_path):
    """A foreign key declared to refer to ev_us cannot point at ev_eu's rows."""
    _seed(pg, "NO ACTION")
    pg.execute("CREATE TABLE us_ref (id INTEGER PRIMARY KEY, ev_id INTEGER, region TEXT, "
               "FOREIGN KEY (ev_id, region) REFERENCES ev_us (id, region))")
    path = config_file(tmp_path, pg, [{"name": "eu", "table": "ev_eu", "key": ["k"]}])
    dry = run_cli("fix", "eu", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [r["table"] for r in json_out(dry)["references"]] == ["ev_ref"]


def test_the_partitioned_table_referring_to_itself_is_a_self_reference_of_its_partition(pg, tmp_path):
    """ev(parent_id, region) refers to ev: its rows are rows of ev_eu, which the fix deletes from; repointing inside
    the table being deduplicated is refused, as for a table referring to itself."""
    pg.execute("CREATE TABLE ev (id INTEGER, region TEXT, k TEXT, parent_id INTEGER, PRIMARY KEY (id, region), "
               "FOREIGN KEY (parent_id, region) REFERENCES ev (id, region)) PARTITION BY HASH (id)",
               "CREATE TABLE ev_0 PARTITION OF ev FOR VALUES WITH (MODULUS 1, REMAINDER 0)",
               "INSERT INTO ev VALUES (1, 'eu', 'k', NULL), (2, 'eu', 'k', NULL), (3, 'eu', 'z', 2)")
    before = contents(pg, "ev")
    path = config_file(tmp_path, pg, [{"name": "p", "table": "ev_0", "key": ["k"]}])
    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    assert any("ev(parent_id, region) references 'ev_0' as a partitioned table and its partition" in b
               for b in json_out(dry)["blockers"]), json_out(dry)["blockers"]
    fixed = run_cli("fix", "p", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert contents(pg, "ev") == before

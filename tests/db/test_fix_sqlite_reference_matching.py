"""SQLite matches a foreign key's rows as the referred column compares: its affinity applied to the referencing
value, its collation (SQLite docs, "Foreign Key Constraints": "the parent key column's affinity ... applied to the
child key value", "using the collating sequence of the parent key column"). A plain `=` between the two columns
applies the referencing column's: an `INTEGER` column's 7 equals the text '007', a BINARY column's 'bb' differs
from a NOCASE key's 'BB'. The fix must find, repoint and count the rows SQLite says refer to a row it deletes,
and those only."""

from __future__ import annotations

import sqlite3

import pytest

from fix_support import config_file, contents, json_out, run_cli


def _dangling(sqlite_db) -> list[tuple[object, ...]]:
    with sqlite3.connect(sqlite_db.url.removeprefix("sqlite:///")) as raw:
        return raw.execute("PRAGMA foreign_key_check").fetchall()


def _refused_up_front(sqlite_db, tmp_path, check: dict[str, object], tables: tuple[str, ...], blocker: str) -> None:
    """The dry run names a blocker holding `blocker` (exit 2), and the fix refuses: `tables` unchanged."""
    path = config_file(tmp_path, sqlite_db, [check])
    before = contents(sqlite_db, *tables)
    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    blockers = json_out(dry)["blockers"]
    assert [b for b in blockers if blocker in b], blockers
    fixed = run_cli("fix", "p", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert contents(sqlite_db, *tables) == before


def test_sqlite_a_numeric_referencing_column_is_matched_as_the_text_key_it_refers_to(sqlite_db, tmp_path):
    """`pcode INTEGER REFERENCES p(code TEXT)`: 7 refers to '7', not to '007' (SQLite applies TEXT to 7).
    Deleting '007' (a duplicate of '00') repointed the rows referring to '7' to '00', stored as 0: they then
    referred to no row, and the fix said `2 reference(s) repointed`, exit 0."""
    sqlite_db.execute("CREATE TABLE p (code TEXT PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode INTEGER REFERENCES p (code))",
                      "INSERT INTO p VALUES ('7', 'Seven'), ('007', 'Bond'), ('00', 'Bond')",
                      "INSERT INTO c VALUES (1, 7), (2, '007')")  # both stored as 7: rows of '7'
    assert sqlite_db.rows("SELECT typeof(pcode), pcode FROM c") == [("integer", 7), ("integer", 7)]
    assert _dangling(sqlite_db) == []
    path = config_file(tmp_path, sqlite_db, [{"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]}])
    before = contents(sqlite_db, "p", "c")

    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [r["rows"] for r in json_out(dry)["references"]] == [0]
    fixed = run_cli("fix", "p", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (1, 0)
    assert sqlite_db.rows("SELECT id, typeof(pcode), pcode FROM c ORDER BY id") == [(1, "integer", 7),
                                                                                     (2, "integer", 7)]
    assert _dangling(sqlite_db) == []
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(sqlite_db, "p", "c") == before


def test_sqlite_a_referencing_column_is_matched_under_the_referred_columns_collation(sqlite_db, tmp_path):
    """`p.code TEXT COLLATE NOCASE`: a BINARY `c.pcode` holding 'bb' refers to 'BB'. The fix repointed 'BB' only,
    deleted its row and left 'bb' referring to no row (PRAGMA foreign_key_check lists it), exit 0."""
    sqlite_db.execute("CREATE TABLE p (code TEXT COLLATE NOCASE PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES p (code))",
                      "INSERT INTO p VALUES ('AA', 'Bond'), ('BB', 'Bond'), ('CC', 'x')",
                      "INSERT INTO c VALUES (1, 'bb'), (2, 'BB'), (3, 'cc')")
    assert _dangling(sqlite_db) == []
    path = config_file(tmp_path, sqlite_db, [{"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]}])
    before = contents(sqlite_db, "p", "c")

    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [r["rows"] for r in json_out(dry)["references"]] == [2]
    fixed = run_cli("fix", "p", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (1, 2)
    assert sqlite_db.rows("SELECT id, pcode FROM c ORDER BY id") == [(1, "AA"), (2, "AA"), (3, "cc")]
    assert _dangling(sqlite_db) == []
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(sqlite_db, "p", "c") == before


def test_sqlite_a_repoint_the_referencing_columns_affinity_would_leave_referring_to_no_row_is_refused(sqlite_db,
                                                                                                      tmp_path):
    """`pcode INTEGER` holding the text 'A7' (no number: stored as text) refers to 'A7'; repointed to the kept
    '00', the column stores 0, which refers to no row ('0' is not '00'). The fix did so, exit 0, saying `1
    reference(s) repointed`; the dry run now names it as a blocker and the fix refuses, nothing changed."""
    sqlite_db.execute("CREATE TABLE p (code TEXT PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode INTEGER REFERENCES p (code))",
                      "INSERT INTO p VALUES ('A7', 'Bond'), ('00', 'Bond'), ('5', 'x')",
                      "INSERT INTO c VALUES (1, 'A7'), (2, 5)")
    assert _dangling(sqlite_db) == []
    _refused_up_front(sqlite_db, tmp_path, {"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]},
                      ("p", "c"), "c.pcode (INTEGER) stores the kept value '00' as 0")



def test_sqlite_a_referencing_column_without_affinity_is_matched_as_the_text_key_it_refers_to(sqlite_db, tmp_path):
    """`pcode` declared BLOB, or with no type (no affinity), holding the integer 1 refers to the TEXT key '1': the
    foreign key applies TEXT to it. A plain `=` between the two columns converts nothing (two columns: BLOB
    affinity beside TEXT is no conversion), so the fix counted no reference, deleted '1' and left the row
    referring to no row (PRAGMA foreign_key_check lists it), exit 0."""
    sqlite_db.execute("CREATE TABLE p (code TEXT PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode REFERENCES p (code), "
                      "bcode BLOB REFERENCES p (code))",
                      "INSERT INTO p VALUES ('0', 'Bond'), ('1', 'Bond'), ('2', 'x')",
                      "INSERT INTO c VALUES (1, 1, 1), (2, 2, 2)")  # stored as integers: rows of '1' and '2'
    assert sqlite_db.rows("SELECT typeof(pcode), typeof(bcode) FROM c") == [("integer", "integer")] * 2
    assert _dangling(sqlite_db) == []
    path = config_file(tmp_path, sqlite_db, [{"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]}])
    before = contents(sqlite_db, "p", "c")

    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [r["rows"] for r in json_out(dry)["references"]] == [1, 1]
    fixed = run_cli("fix", "p", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (1, 2)
    assert sqlite_db.rows("SELECT id, pcode, bcode FROM c ORDER BY id") == [(1, "0", "0"), (2, 2, 2)]
    assert _dangling(sqlite_db) == []
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(sqlite_db, "p", "c") == before



def test_sqlite_a_unique_clash_of_rows_referring_under_the_referred_collation_is_a_blocker(sqlite_db, tmp_path):
    """`p.code TEXT COLLATE NOCASE`, `follows(a, b)` two BINARY references with `UNIQUE (a, b)`: ('bb', 'CC') and
    ('AA', 'dd') both become ('AA', 'CC') once 'BB' and 'DD' are repointed to the kept 'AA' and 'CC'. The dry run
    judged the clash over the rows a plain `=` moves ('bb' is no 'BB' in BINARY), said nothing, and the fix's
    batch was refused by the unique constraint, rolled back, every run."""
    sqlite_db.execute("CREATE TABLE p (code TEXT COLLATE NOCASE PRIMARY KEY, name TEXT)",
                      "CREATE TABLE follows (id INTEGER PRIMARY KEY, a TEXT REFERENCES p (code), "
                      "b TEXT REFERENCES p (code), CONSTRAINT one_follow UNIQUE (a, b))",
                      "INSERT INTO p VALUES ('AA', 'Bond'), ('BB', 'Bond'), ('CC', 'Cat'), ('DD', 'Cat')",
                      "INSERT INTO follows VALUES (1, 'bb', 'CC'), (2, 'AA', 'dd')")
    assert _dangling(sqlite_db) == []
    _refused_up_front(sqlite_db, tmp_path, {"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]},
                      ("p", "follows"), "would violate its unique constraint")


def test_sqlite_rows_one_level_down_referring_under_the_referred_collation_refuse_an_archive(sqlite_db, tmp_path):
    """`c.tag TEXT COLLATE NOCASE UNIQUE`, `g.ctag` BINARY holding 'x1' refers to c's 'X1'. Archiving c's row with
    its deleted parent (on_reference = "archive") must refuse, as for any row one level down; the nested count
    compared by a plain `=` ('x1' is no 'X1' in BINARY), found none, and the fix deleted c's row, leaving g's
    referring to no row (PRAGMA foreign_key_check lists it), exit 0."""
    sqlite_db.execute("CREATE TABLE p (code TEXT PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES p (code), "
                      "tag TEXT COLLATE NOCASE UNIQUE)",
                      "CREATE TABLE g (id INTEGER PRIMARY KEY, ctag TEXT REFERENCES c (tag))",
                      "INSERT INTO p VALUES ('A', 'Bond'), ('B', 'Bond')",
                      "INSERT INTO c VALUES (1, 'B', 'X1')",
                      "INSERT INTO g VALUES (1, 'x1')")
    assert _dangling(sqlite_db) == []
    path = config_file(tmp_path, sqlite_db, [{"name": "p", "table": "p", "key": ["name"], "order_by": ["code"],
                                              "on_reference": {"c.pcode": "archive"}}])
    before = contents(sqlite_db, "p", "c", "g")

    fixed = run_cli("fix", "p", "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "1 row(s) of g(ctag) reference rows of c(pcode)" in fixed.output
    assert contents(sqlite_db, "p", "c", "g") == before
    assert _dangling(sqlite_db) == []


@pytest.mark.parametrize("child", ["pcode INT8 REFERENCES p (code))",  # INTEGER affinity, a type with a digit
                                   "pcode INTEGER REFERENCES p (code)) STRICT"])
def test_sqlite_a_repoint_stored_as_a_value_referring_to_no_row_is_refused_whatever_the_declared_type(sqlite_db,
                                                                                                    tmp_path, child):
    """`pcode` of INTEGER affinity, declared `INT8` or in a STRICT table, referring to the TEXT '7': repointed to
    the kept '00', it stores 0, which refers to no row. The probe skipped a declared type with a digit, and a
    STRICT table was asked only whether it refuses the value: the fix repointed, said done, exit 0, and left the
    row referring to no row; a blocker now, nothing changed."""
    sqlite_db.execute("CREATE TABLE p (code TEXT PRIMARY KEY, name TEXT)",
                      f"CREATE TABLE c (id INTEGER PRIMARY KEY, {child}",
                      "INSERT INTO p VALUES ('7', 'Bond'), ('00', 'Bond')",
                      "INSERT INTO c VALUES (1, 7)")
    assert _dangling(sqlite_db) == []
    _refused_up_front(sqlite_db, tmp_path, {"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]},
                      ("p", "c"), "stores the kept value '00' as 0")



def test_sqlite_a_repoint_a_text_column_stores_as_a_rounded_number_is_refused(sqlite_db, tmp_path):
    """`p.k REAL`, `c.pk TEXT`: the numeric key compares alike (`=`, its affinity applied to the text), but the
    kept 0.30000000000000004 is written into the TEXT column as '0.3' (15 digits), which refers to no row. The
    probe ran only where the columns compare otherwise: the fix repointed, exit 0, the row referring to no row."""
    sqlite_db.execute("CREATE TABLE p (k REAL PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pk TEXT REFERENCES p (k))",
                      "INSERT INTO p VALUES (0.1 + 0.2, 'Bond'), (0.5, 'Bond')",
                      "INSERT INTO c VALUES (1, 0.5)")
    assert _dangling(sqlite_db) == []
    _refused_up_front(sqlite_db, tmp_path, {"name": "p", "table": "p", "key": ["name"], "order_by": ["k"]},
                      ("p", "c"), "stores the kept value 3.00000000000000044408e-01 as '0.3'")


def test_sqlite_a_reference_compared_under_rtrim_never_leaves_a_row_referring_to_no_row(sqlite_db, tmp_path):
    """`p.code TEXT COLLATE RTRIM`, BINARY `c.pcode` holding 'BB  ' refers to 'BB'. SQLite's Bloom filter (3.38
    on) hashes the bytes beside an automatic index: the dry run counted 2 rows, the batch's join found 1, repointed
    it, verified none left (by the same join) and deleted 'BB', exit 0, 'BB  ' referring to no row. Where the
    library has that fault (asked of it), a blocker, nothing changed; elsewhere both rows are repointed."""
    sqlite_db.execute("CREATE TABLE p (code TEXT COLLATE RTRIM PRIMARY KEY, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES p (code))",
                      "INSERT INTO p VALUES ('AA', 'Bond'), ('BB', 'Bond')",
                      "INSERT INTO c VALUES (1, 'BB  '), (2, 'BB'), (3, 'AA ')")
    assert _dangling(sqlite_db) == []
    path = config_file(tmp_path, sqlite_db, [{"name": "p", "table": "p", "key": ["name"], "order_by": ["code"]}])
    before = contents(sqlite_db, "p", "c")
    with sqlite3.connect(":memory:") as probe:
        probe.executescript("CREATE TABLE k (k TEXT); CREATE TABLE v (v TEXT); "
                            "INSERT INTO k VALUES ('a'); INSERT INTO v VALUES ('a ');")
        faulty = probe.execute("SELECT count(*) FROM v JOIN k ON k.k COLLATE RTRIM = +v.v").fetchone()[0] == 0

    fixed = run_cli("fix", "p", "--config", str(path), "--yes")
    assert _dangling(sqlite_db) == []
    if faulty:
        assert fixed.exit_code == 2, fixed.output
        assert "under COLLATE RTRIM" in fixed.output
        assert contents(sqlite_db, "p", "c") == before
    else:
        assert fixed.exit_code == 0, fixed.output
        assert sqlite_db.rows("SELECT id, pcode FROM c ORDER BY id") == [(1, "AA"), (2, "AA"), (3, "AA ")]


def test_sqlite_a_kept_null_is_named_once_as_referring_to_no_row(sqlite_db, tmp_path):
    """`p.code TEXT UNIQUE` whose kept row holds NULL, `c.pcode INTEGER`: the preview's blocker says the repointed
    rows would hold NULL; the storage probe added a second, `stores the kept value NULL as NULL`, which blamed the
    column's type for what no type changes."""
    sqlite_db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, code TEXT UNIQUE, name TEXT)",
                      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode INTEGER REFERENCES p (code))",
                      "INSERT INTO p VALUES (1, NULL, 'Bond'), (2, '7', 'Bond')",
                      "INSERT INTO c VALUES (1, 7)")
    path = config_file(tmp_path, sqlite_db, [{"name": "p", "table": "p", "key": ["name"], "order_by": ["id"]}])

    dry = run_cli("fix", "p", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    blockers = json_out(dry)["blockers"]
    assert len(blockers) == 1 and "would hold NULL and refer to no row" in blockers[0], blockers

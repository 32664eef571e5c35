"""Issue 16, found by an adversarial run (F1): undo compared the rows it restored with the archive by each type's
`=`, which is not identity on PostgreSQL (citext 'Bob' = 'bob', a nondeterministic collation, numeric 1.500 = 1.5,
float8 -0 = 0, interval '1 day' = '24 hours'): a BEFORE INSERT trigger normalising the restored values passed, and
undo said "restored" with other values than the archived ones. Compared as stored now (each value's text under the
"C" collation), undo refuses, nothing changed, as README promises; MariaDB (a _ci collation) already did.
"""

from __future__ import annotations

import pytest

from dbtest import TestDatabase
from fix_support import config_file, contents, json_out, run_cli

PERSON = {"name": "person", "table": "person", "key": ["k"]}

# column type, the three rows' values (keeper first), the trigger's normalisation
NORMALISED = {
    "citext": ("citext", ["'Ann@X.org'", "'Bob@X.org'", "'Cy@X.org'"], "lower(NEW.v)"),
    "collation": ("text COLLATE nd", ["'Ann'", "'Bob'", "'Cy'"], "lower(NEW.v)"),
    "numeric-scale": ("numeric", ["1.000", "1.500", "2.500"], "round(NEW.v, 1)"),
    "float-zero": ("float8", ["'1'", "'-0'", "'-0'"], "NEW.v + 0"),
    "interval": ("interval", ["'1 hour'", "'24 hours'", "'48 hours'"], "justify_hours(NEW.v)"),
}


def _normalising_undo(db: TestDatabase, tmp_path, kind: str, values: list[str], normalise: str) -> None:
    db.execute(f"CREATE TABLE person (id INT PRIMARY KEY, k INT, v {kind})",
               *[f"INSERT INTO person VALUES ({i}, 1, {value})" for i, value in enumerate(values, 1)])
    path = str(config_file(tmp_path, db, [PERSON]))
    fixed = run_cli("fix", "person", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0 and json_out(fixed)["deleted"] == 2, fixed.output
    if db.dialect == "postgresql":
        db.execute("CREATE FUNCTION normalise() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN NEW.v := {normalise}; RETURN NEW; END $$",
                   "CREATE TRIGGER normalise BEFORE INSERT ON person FOR EACH ROW EXECUTE FUNCTION normalise()")
    else:
        db.execute(f"CREATE TRIGGER normalise BEFORE INSERT ON person FOR EACH ROW SET NEW.v = {normalise}")
    before = contents(db, "person", "dupewatch_fix")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes")
    assert undone.exit_code == 2, undone.output
    assert "nothing changed" in undone.stderr and "not the archived ones" in undone.stderr, undone.stderr
    assert contents(db, "person", "dupewatch_fix") == before


@pytest.mark.parametrize("shape", list(NORMALISED))
def test_postgres_undo_refuses_when_a_trigger_normalises_restored_values_to_equal_ones(own_pg, tmp_path, shape):
    """Each normalisation alone gives a value the type's `=` finds equal to the archived one."""
    own_pg.execute("CREATE EXTENSION citext",
                   "CREATE COLLATION nd (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    kind, values, normalise = NORMALISED[shape]
    _normalising_undo(own_pg, tmp_path, kind, values, normalise)


def test_postgres_undo_passes_a_trigger_that_changes_nothing(own_pg, tmp_path):
    """The comparison as stored is not stricter than identity: the same values come back, and undo passes."""
    own_pg.execute("CREATE EXTENSION citext")
    own_pg.execute("CREATE TABLE person (id INT PRIMARY KEY, k INT, e citext, n numeric, f float8, i interval)",
                   "INSERT INTO person VALUES (1, 1, 'A@x', 1.50, '-0', '1 day'), (2, 1, 'B@X', 1.500, '0', "
                   "'24 hours'), (3, 1, NULL, NULL, 'NaN', NULL)",
                   "CREATE FUNCTION same() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                   "CREATE TRIGGER same BEFORE INSERT ON person FOR EACH ROW EXECUTE FUNCTION same()")
    before = contents(own_pg, "person")
    path = str(config_file(tmp_path, own_pg, [PERSON]))
    fixed = run_cli("fix", "person", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes").exit_code == 0
    assert contents(own_pg, "person") == before
    assert own_pg.rows("SELECT id, n::text, f::text, i::text FROM person ORDER BY id") == [
        (1, "1.50", "-0", "1 day"), (2, "1.500", "0", "24:00:00"), (3, None, "NaN", None)]


def test_mysql_undo_refuses_when_a_trigger_normalises_restored_values_to_equal_ones(mysql, tmp_path):
    """The same on MariaDB, under a case-insensitive collation (held before: its `exact` compares bytes)."""
    _normalising_undo(mysql, tmp_path, "VARCHAR(20) COLLATE utf8mb4_general_ci", ["'Ann'", "'Bob'", "'Cy'"],
                      "LOWER(NEW.v)")

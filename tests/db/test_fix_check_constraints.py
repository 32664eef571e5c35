"""CHECK constraints of referencing tables, asked of the database by the dry run (issue 16).

A repoint can leave a referencing row that one of its table's CHECK constraints refuses: a self-referencing
`node(parent_id <> id)` whose keeper is a duplicate's child, a `review(owner_id <> reviewer_id)` with two foreign
keys to the table. The batch was rolled back mid-way while the dry run had promised success. The dry run now
evaluates each constraint's own expression (as the server deparses it) on the server, over the rows as the repoint
would leave them, and names what refuses as a blocker; `fix --yes` refuses up front with nothing changed.
"""

from __future__ import annotations

from fix_support import config_file, contents, json_out, run_cli


def _users(db, *rows: str) -> None:
    db.execute("CREATE TABLE usr (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL)",
               f"INSERT INTO usr VALUES {', '.join(rows)}")


def _review(db, check: str, *rows: str, owner_null: bool = False) -> None:
    """`review` with two foreign keys to `usr` and the given CHECK."""
    db.execute(f"CREATE TABLE review (id INTEGER PRIMARY KEY, owner_id INTEGER {'' if owner_null else 'NOT NULL '}"
               "REFERENCES usr (id), reviewer_id INTEGER NOT NULL REFERENCES usr (id), score INTEGER, "
               f"{check})", f"INSERT INTO review VALUES {', '.join(rows)}")


def _refused_up_front(db, tmp_path, check: str, tables: tuple[str, ...], *expected: str, blockers: int = 1) -> dict:
    """The dry run blocks naming `expected` (in one of `blockers` CHECK blockers), and `fix --yes` exits as for any
    blocker, changing nothing."""
    path = config_file(tmp_path, db, [{"name": check, "table": tables[0], "key": ["email"]}])
    before = contents(db, *tables)
    dry = run_cli("fix", check, "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    plan = json_out(dry)
    named = [b for b in plan["blockers"] if "CHECK constraint" in b]
    assert len(named) == blockers, plan["blockers"]
    for words in expected:
        assert any(words in b for b in named), named
    fixed = run_cli("fix", check, "--config", str(path), "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "cannot be fixed" in fixed.stderr, fixed.stderr
    assert contents(db, *tables) == before
    return plan


def test_a_self_referencing_node_whose_keeper_is_a_duplicates_child_is_named_up_front(server, tmp_path):
    """node 1 keeps, its parent 2 is its duplicate: repointing the keeper's parent_id to itself breaks
    `CHECK (parent_id <> id)`. (A self-reference is refused anyway; the CHECK is what a repoint by hand meets.)"""
    server.execute("CREATE TABLE node (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL, parent_id INTEGER "
                   "REFERENCES node (id), CONSTRAINT not_own_parent CHECK (parent_id <> id))",
                   "INSERT INTO node VALUES (1, 'a', NULL), (2, 'a', NULL), (3, 'b', 2)",
                   "UPDATE node SET parent_id = 2 WHERE id = 1")
    plan = _refused_up_front(server, tmp_path, "nodes", ("node",), "1 row(s) that CHECK constraint not_own_parent "
                             "of node refuses", "change those rows (or the constraint) first")
    assert plan["references"][0]["check_refusals"] == {"not_own_parent": 1}


def test_two_foreign_keys_to_the_table_under_one_check_are_named_up_front(server, tmp_path):
    """review (10): reviewer 2 is owner 1's duplicate, so the repoint makes owner = reviewer; (11): owner 2 and
    reviewer 3 both go to 1 (each foreign key alone would pass, both together do not); (12) repoints to (1, 4),
    which passes."""
    _users(server, "(1, 'a'), (2, 'a'), (3, 'a'), (4, 'b')")
    _review(server, "CONSTRAINT not_own_review CHECK (owner_id <> reviewer_id)", "(10, 1, 2, 0)", "(11, 2, 3, 0)",
            "(12, 2, 4, 0)")
    plan = _refused_up_front(server, tmp_path, "users", ("usr", "review"),
                             "repointing review(reviewer_id) to the kept rows would leave 2 row(s) that CHECK "
                             "constraint not_own_review of review refuses",
                             '`"review.reviewer_id" = "archive"`', blockers=2)
    refusals = {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]}
    # (11) is repointed by both foreign keys: each names it; (12), repointed by owner_id, passes.
    assert refusals == {("owner_id",): {"not_own_review": 1}, ("reviewer_id",): {"not_own_review": 2}}


def test_a_column_check_the_kept_value_breaks_is_named_up_front(server, tmp_path):
    """A column-level CHECK (MariaDB lists it under the column's name, PostgreSQL as review_reviewer_id_check)."""
    _users(server, "(1, 'a'), (2, 'a'), (3, 'b')")
    server.execute("CREATE TABLE review (id INTEGER PRIMARY KEY, reviewer_id INTEGER NOT NULL "
                   "CHECK (reviewer_id <> 1) REFERENCES usr (id))", "INSERT INTO review VALUES (10, 2), (11, 3)")
    name = "review_reviewer_id_check" if server.dialect == "postgresql" else "reviewer_id"
    _refused_up_front(server, tmp_path, "users", ("usr", "review"),
                      f"1 row(s) that CHECK constraint {name} of review refuses")


def test_a_check_the_repoint_keeps_or_leaves_unknown_is_not_reported_and_the_fix_runs(server, tmp_path):
    """Evaluated and passing: a CHECK on another column, one the repointed values satisfy, and one whose outcome
    is NULL after the repoint (NULL passes a CHECK): nothing is reported, and the fix repoints as planned."""
    _users(server, "(1, 'a'), (2, 'a'), (3, 'b')")
    _review(server, "CONSTRAINT not_own_review CHECK (owner_id <> reviewer_id), "
            "CONSTRAINT score_positive CHECK (score >= 0)",
            "(10, 3, 2, 5)", "(11, NULL, 2, 1)", owner_null=True)
    path = config_file(tmp_path, server, [{"name": "users", "table": "usr", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert not plan["blockers"], plan["blockers"]
    refusals = {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]}
    assert refusals == {("owner_id",): {}, ("reviewer_id",): {}}  # evaluated, none refuses
    fixed = run_cli("fix", "users", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert server.rows("SELECT id, owner_id, reviewer_id FROM review ORDER BY id") == [(10, 3, 1), (11, None, 1)]


def test_postgres_a_not_valid_check_an_old_row_breaks_refuses_its_repoint(pg, tmp_path):
    """PostgreSQL checks every CHECK on each row an UPDATE writes, a NOT VALID one too: a row written before the
    constraint, which breaks it, cannot be repointed, though the constraint does not read the foreign key."""
    _users(pg, "(1, 'a'), (2, 'a')")
    _review(pg, "CONSTRAINT no_check_yet CHECK (true)", "(10, 1, 2, -1)")
    pg.execute("ALTER TABLE review ADD CONSTRAINT score_positive CHECK (score >= 0) NOT VALID")
    _refused_up_front(pg, tmp_path, "users", ("usr", "review"), "CHECK constraint score_positive of review")


def test_postgres_a_check_calling_a_volatile_function_is_not_run_by_the_dry_run(pg, tmp_path):
    """A CHECK calling a VOLATILE function (which may write: here it logs each call) is not evaluated; the plan
    says so as a risk, and nothing is logged."""
    pg.execute("CREATE TABLE call_log (n INTEGER)",
               "CREATE FUNCTION logged_positive(v INTEGER) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS "
               "$$ BEGIN INSERT INTO call_log VALUES (v); RETURN v > 1; END $$")
    _users(pg, "(1, 'a'), (2, 'a')")
    _review(pg, "CONSTRAINT logged CHECK (logged_positive(reviewer_id))", "(10, 2, 2, 0)")
    pg.execute("DELETE FROM call_log")
    path = config_file(tmp_path, pg, [{"name": "users", "table": "usr", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    notes = [n for n in json_out(dry)["notes"] if "CHECK constraint logged" in n]
    assert len(notes) == 2 and "VOLATILE function logged_positive(integer)" in notes[0], json_out(dry)["notes"]
    assert pg.scalar("SELECT count(*) FROM call_log") == 0


def test_sqlite_says_check_constraints_are_not_evaluated_beforehand(sqlite_db, tmp_path):
    """SQLite keeps a CHECK only in the table's DDL text, which dupewatch does not parse: one line says so."""
    _users(sqlite_db, "(1, 'a'), (2, 'a')")
    _review(sqlite_db, "CONSTRAINT not_own_review CHECK (owner_id <> reviewer_id)", "(10, 1, 2, 0)")
    path = config_file(tmp_path, sqlite_db, [{"name": "users", "table": "usr", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    plan = json_out(dry)
    notes = [n for n in plan["notes"] if "CHECK constraints of referencing tables are not evaluated beforehand" in n]
    assert len(notes) == 1 and "review(reviewer_id)" in notes[0], plan["notes"]
    # owner_id points at kept rows only: nothing of it is repointed
    assert {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]} == \
        {("owner_id",): {}, ("reviewer_id",): None}


def test_sqlite_says_nothing_of_check_constraints_for_a_referencing_table_written_without_one(sqlite_db, tmp_path):
    """No word CHECK in the referencing table's DDL (a column named `checked_by` is not one): SQLite holds no CHECK
    constraint on it, so the plan has nothing to say about them and the repoint's reference reads as evaluated."""
    _users(sqlite_db, "(1, 'a'), (2, 'a')")
    sqlite_db.execute("CREATE TABLE review (id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES usr (id), "
                      "reviewer_id INTEGER REFERENCES usr (id), checked_by INTEGER)",
                      "INSERT INTO review VALUES (10, 1, 2, 0)")
    path = config_file(tmp_path, sqlite_db, [{"name": "users", "table": "usr", "key": ["email"]}])
    plan = json_out(run_cli("fix", "users", "--config", str(path), "--dry-run", "--json"))
    assert not [n for n in plan["notes"] if "CHECK constraints" in n], plan["notes"]
    assert {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]} == \
        {("owner_id",): {}, ("reviewer_id",): {}}



def _domain_child(pg, domains: list[str], column_type: str, *rows: str) -> None:
    """`usr` (1 keeps, 2 is its duplicate, 3 stands alone) and `o(u_id <column_type> REFERENCES usr)`."""
    _users(pg, "(1, 'a'), (2, 'a'), (3, 'b')")
    pg.execute(*domains, f"CREATE TABLE o (id INTEGER PRIMARY KEY, u_id {column_type} REFERENCES usr (id))",
               f"INSERT INTO o VALUES {', '.join(rows)}")


def test_postgres_a_domain_check_the_kept_value_breaks_is_named_up_front(pg, tmp_path):
    """The foreign key column's type is a domain whose CHECK refuses the kept row's id: the repoint's UPDATE of
    o(10) would fail (the table has no CHECK of its own). The dry run evaluates the domain's condition on the value
    the repoint writes and names the constraint and its domain; (11) is not repointed."""
    _domain_child(pg, ["CREATE DOMAIN uid AS INTEGER CHECK (VALUE <> 1)"], "uid", "(10, 2)", "(11, 3)")
    plan = _refused_up_front(pg, tmp_path, "users", ("usr", "o"),
                             "repointing o(u_id) to the kept rows would leave 1 row(s) that CHECK constraint "
                             "uid_check of domain uid (the type of o.u_id) refuses")
    assert plan["references"][0]["check_refusals"] == {"uid_check of domain uid (u_id)": 1}


def test_postgres_a_check_of_the_domain_a_domain_is_based_on_is_named_up_front(pg, tmp_path):
    """A domain over a domain: the inner domain's CHECK refuses the kept id through the outer one's column (the
    outer's own CHECK, and its NOT NULL, pass), evaluated with the server's text `((VALUE)::integer ...)`."""
    _domain_child(pg, ["CREATE DOMAIN any_id AS INTEGER CONSTRAINT not_one CHECK (VALUE <> 1)",
                       "CREATE DOMAIN owner_id AS any_id NOT NULL CONSTRAINT below_100 CHECK (VALUE < 100)"],
                  "owner_id", "(10, 2)", "(11, 2)", "(12, 3)")
    plan = _refused_up_front(pg, tmp_path, "users", ("usr", "o"),
                             "2 row(s) that CHECK constraint not_one of domain any_id (the type of o.u_id) refuses")
    assert plan["references"][0]["check_refusals"] == {"not_one of domain any_id (u_id)": 2}


def test_postgres_a_domain_check_the_repoint_keeps_is_not_reported_and_a_volatile_one_is_not_run(pg, tmp_path):
    """A nested domain: the inner CHECK (VALUE <> 118) holds for the kept id (evaluated, not reported); the outer
    one calls a VOLATILE function (it logs each call), which the dry run does not run but names as a risk. The fix
    then repoints as planned."""
    pg.execute("CREATE TABLE call_log (n INTEGER)",
               "CREATE FUNCTION logged_positive(v INTEGER) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS "
               "$$ BEGIN INSERT INTO call_log VALUES (v); RETURN v > 0; END $$")
    _domain_child(pg, ["CREATE DOMAIN uid AS INTEGER CHECK (VALUE <> 118)",
                       "CREATE DOMAIN logged_uid AS uid CONSTRAINT logged CHECK (logged_positive(VALUE))"],
                  "logged_uid", "(10, 2)", "(11, 3)")
    pg.execute("DELETE FROM call_log")
    path = config_file(tmp_path, pg, [{"name": "users", "table": "usr", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert not plan["blockers"], plan["blockers"]
    assert plan["references"][0]["check_refusals"] == {}
    notes = [n for n in plan["notes"] if "VOLATILE" in n]
    assert notes == ["risk: CHECK constraint logged of domain logged_uid (the type of o.u_id) calls VOLATILE "
                     "function logged_positive(integer), which the dry run does not run: a repointed row of "
                     "o(u_id) it refuses stops its batch, rolled back, naming it"], plan["notes"]
    assert pg.scalar("SELECT count(*) FROM call_log") == 0
    # the fix's own write would call it (and the batch's account would refuse what it logs): it stops logging
    pg.execute("CREATE OR REPLACE FUNCTION logged_positive(v INTEGER) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS "
               "$$ BEGIN RETURN v > 0; END $$")
    fixed = run_cli("fix", "users", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert pg.rows("SELECT id, u_id FROM o ORDER BY id") == [(10, 1), (11, 3)]


def test_postgres_a_domain_not_null_the_kept_rows_null_breaks_is_named_up_front(pg, tmp_path):
    """o references usr(code), a unique column the kept row leaves NULL: the repoint would write NULL into a
    column whose domain is NOT NULL."""
    pg.execute("CREATE DOMAIN some_code AS INTEGER NOT NULL",
               "CREATE TABLE usr (id INTEGER PRIMARY KEY, code INTEGER UNIQUE, email VARCHAR(20) NOT NULL)",
               "INSERT INTO usr VALUES (1, NULL, 'a'), (2, 5, 'a'), (3, 6, 'b')",
               "CREATE TABLE o (id INTEGER PRIMARY KEY, u_code some_code REFERENCES usr (code))",
               "INSERT INTO o VALUES (10, 5), (11, 6)")
    path = config_file(tmp_path, pg, [{"name": "users", "table": "usr", "key": ["email"]}])
    before = contents(pg, "usr", "o")
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    plan = json_out(dry)
    named = [b for b in plan["blockers"] if "NOT NULL of domain" in b]
    assert named == ["repointing o(u_code) to the kept rows would leave 1 row(s) that the NOT NULL of domain "
                     "some_code (the type of o.u_code) refuses (the database evaluated it on the repointed values): "
                     "the batch would be rolled back and the fix would stop there; change those rows (or the "
                     'constraint) first, or set its on_reference to "archive" (`"o.u_code" = "archive"`)'], named
    assert plan["references"][0]["check_refusals"] == {"NOT NULL of domain some_code (u_code)": 1}
    fixed = run_cli("fix", "users", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "cannot be fixed" in fixed.stderr, fixed.output
    assert contents(pg, "usr", "o") == before


def test_postgres_a_check_calling_a_built_in_volatile_function_is_not_run_by_the_dry_run(pg, tmp_path):
    """nextval is built in, so pg_depend does not list it: the constraint's own expression tree names it. The dry
    run (a read-only transaction, which nextval would fail in) does not evaluate the constraint, names the risk,
    and the sequence does not move."""
    pg.execute("CREATE SEQUENCE s")
    _users(pg, "(1, 'a'), (2, 'a')")
    _review(pg, "CONSTRAINT below_next CHECK (id < nextval('s') + 1000000)", "(10, 1, 2, 0)")
    before = pg.rows("SELECT last_value, is_called FROM s")
    path = config_file(tmp_path, pg, [{"name": "users", "table": "usr", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert not plan["blockers"], plan["blockers"]
    notes = [n for n in plan["notes"] if "CHECK constraint below_next" in n]
    assert len(notes) == 1 and "VOLATILE function nextval(regclass)" in notes[0], plan["notes"]
    assert pg.rows("SELECT last_value, is_called FROM s") == before


def test_postgres_every_check_constraint_reads_as_enforced_before_postgres_18(pg):
    """PostgreSQL 18's NOT ENFORCED CHECK constraints are left out; before 18 pg_constraint has no conenforced,
    and the version-independent read says every constraint is enforced."""
    from monitor.dialects.postgresql import _ENFORCED
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY CHECK (id > 0), b INTEGER CONSTRAINT b_small CHECK (b < 9))")
    counts = pg.rows(f"SELECT count(*), count(*) FILTER (WHERE {_ENFORCED}) FROM pg_catalog.pg_constraint c")
    assert counts[0][0] == counts[0][1] > 2


def test_a_row_only_a_state_between_repoints_breaks_is_named_up_front(server, tmp_path):
    """usr groups {2, 8} and {1, 5} (keepers 2 and 1). review (10) = (8, 5) ends as (2, 1), which passes
    `CHECK (owner_id > reviewer_id)`, but the fix runs one UPDATE per reference: after owner_id moves and before
    reviewer_id does, the row is (2, 5), which the database refuses mid-way. (11) = (8, 1): only owner_id moves, to
    (2, 1), which passes (a row one reference moves has no state between repoints)."""
    _users(server, "(1, 'b'), (2, 'a'), (5, 'b'), (8, 'a')")
    _review(server, "CONSTRAINT owner_above CHECK (owner_id > reviewer_id)", "(10, 8, 5, 0)", "(11, 8, 1, 0)")
    plan = _refused_up_front(server, tmp_path, "users", ("usr", "review"),
                             "repointing review(owner_id) to the kept rows would leave 1 row(s) that CHECK constraint "
                             "owner_above of review refuses after repointing review(owner_id) but not yet "
                             "review(reviewer_id)", "their final state passes")
    refusals = {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]}
    assert refusals == {("owner_id",): {"owner_above after repointing review(owner_id) but not yet "
                                        "review(reviewer_id)": 1}, ("reviewer_id",): {}}


def test_every_state_between_three_repointed_references_is_evaluated(server, tmp_path):
    """usr groups {2, 8}, {1, 5}, {3, 9} (keepers 2, 1, 3); trio(a, b, c) each REFERENCES usr, CHECK (a + b + c
    <> 10). (10) = (8, 5, 9) ends as (2, 1, 3) (sum 6), but with a and c moved and b not yet it is (2, 5, 3) (sum
    10); (11) = (8, 5, 3), c a keeper already, is (2, 5, 3) once a moved and b not yet. Only the references that
    move the row are named as not yet repointed."""
    _users(server, "(1, 'b'), (2, 'a'), (3, 'c'), (5, 'b'), (8, 'a'), (9, 'c')")
    server.execute("CREATE TABLE trio (id INTEGER PRIMARY KEY, a INTEGER REFERENCES usr (id), b INTEGER REFERENCES "
                   "usr (id), c INTEGER REFERENCES usr (id), CONSTRAINT not_ten CHECK (a + b + c <> 10))",
                   "INSERT INTO trio VALUES (10, 8, 5, 9), (11, 8, 5, 3)")
    plan = _refused_up_front(server, tmp_path, "users", ("usr", "trio"),
                             "1 row(s) that CHECK constraint not_ten of trio refuses after repointing trio(a) and "
                             "trio(c) but not yet trio(b)",
                             "1 row(s) that CHECK constraint not_ten of trio refuses after repointing trio(a) but not "
                             "yet trio(b) (", blockers=2)
    refusals = {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]}
    assert refusals == {("a",): {"not_ten after repointing trio(a) but not yet trio(b)": 1,
                                 "not_ten after repointing trio(a) and trio(c) but not yet trio(b)": 1},
                        ("b",): {}, ("c",): {}}


def test_a_state_only_the_fixs_order_of_five_repointed_references_passes_through_is_named_up_front(server, tmp_path):
    """usr group 'a' = {1..6} (keeper 1), 'b' = {7, 8} (keeper 7); penta(a..e) each REFERENCES usr, CHECK (a <> b
    OR c <> 4). Each batch repoints one reference after the other, in their order: (10) = (2, 3, 4, 5, 6), whose
    rows to delete are all of group 'a' (one batch), passes through (1, 3, 4, 5, 6), then (1, 1, 4, 5, 6), which
    the constraint refuses, though it and every other state pass. Beyond 4 references the dry run evaluated each
    reference alone only, promised the fix, and its batch was rolled back mid-way; it now evaluates the prefixes
    of the fix's order. (11) = (8, 3, NULL, NULL, NULL) points at rows to delete of two groups, which batches may
    repoint in either order: named as a risk, not evaluated in every order."""
    _users(server, "(1, 'a'), (2, 'a'), (3, 'a'), (4, 'a'), (5, 'a'), (6, 'a'), (7, 'b'), (8, 'b')")
    server.execute("CREATE TABLE penta (id INTEGER PRIMARY KEY, "
                   + ", ".join(f"{c} INTEGER REFERENCES usr (id)" for c in "abcde")
                   + ", CONSTRAINT ab_apart CHECK (a <> b OR c <> 4))",
                   "INSERT INTO penta VALUES (10, 2, 3, 4, 5, 6), (11, 8, 3, NULL, NULL, NULL)")
    plan = _refused_up_front(server, tmp_path, "users", ("usr", "penta"),
                             "1 row(s) that CHECK constraint ab_apart of penta refuses after repointing penta(a) and "
                             "penta(b) but not yet penta(c) or penta(d) or penta(e)")
    refusals = {tuple(r["columns"]): r["check_refusals"] for r in plan["references"]}
    assert refusals == {("a",): {"ab_apart after repointing penta(a) and penta(b) but not yet penta(c) or penta(d) "
                                 "or penta(e)": 1}, ("b",): {}, ("c",): {}, ("d",): {}, ("e",): {}}
    risks = [n for n in plan["notes"] if "not in every order" in n]
    assert len(risks) == 1 and risks[0].startswith("risk: 1 row(s) of penta are repointed by several"), plan["notes"]

"""The fix, undo and guard at the edges: awkward identifiers, `where` filters with `%` and `:`, filters
re-checked under the lock, identity / AUTO_INCREMENT keys on undo, and NULL keys."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fix_support import config_file, contents, json_out, make_config, run_cli, stopped_after_one_batch
from monitor.engine import Monitor
from monitor.fix import FixRefused, make_plan, prepare_fix, run_fix, undo_fix

# -- awkward identifiers ----------------------------------------------------------------------------


def _create_awkward(db, table: str, child: str, schema: str | None = None) -> tuple[str, str]:
    """`table`: mixed case, reserved words and a space as column names; `child` references it."""
    q = db.q
    prefix = f"{q(schema)}." if schema else ""
    parent_sql, child_sql = prefix + q(table), prefix + q(child)
    db.execute(f"CREATE TABLE {parent_sql} ({q('Id')} INTEGER PRIMARY KEY, {q('user')} INTEGER NOT NULL, "
               f"{q('select')} VARCHAR(20) NOT NULL, {q('my col')} VARCHAR(20), {q('order')} INTEGER)")
    db.execute(f"CREATE TABLE {child_sql} ({q('Line Id')} INTEGER PRIMARY KEY, {q('Order Id')} INTEGER "
               f"REFERENCES {parent_sql} ({q('Id')}))")
    rows = [(1, 7, "a", "x", 1), (2, 7, "a", "y", 2), (3, 7, "a", None, 3),  # group (7, a): keep 1
            (4, 8, "b", "x", 1), (5, 8, "b", "x", 2),                          # group (8, b): keep 4
            (6, 9, "c", "solo", 1)]
    db.execute(f"INSERT INTO {parent_sql} VALUES (:i, :u, :s, :m, :o)",
               params=[dict(zip("iusmo", r, strict=True)) for r in rows])
    db.execute(f"INSERT INTO {child_sql} VALUES (10, 2), (11, 3), (12, 5), (13, 1), (14, NULL)")
    return parent_sql, child_sql


def _fix_undo_fix_guard(db, tmp_path, table: str, parent_sql: str, child_sql: str) -> None:
    """The whole path through the CLI on an awkward table: dry run, fix, undo, fix again with the guard."""
    q = db.q
    checks = [{"name": "awkward", "table": table, "key": ["user", "select"],
               "where": f"{q('order')} IS NOT NULL", "order_by": ["Id"]}]
    path = config_file(tmp_path, db, checks)

    def snapshot() -> dict[str, list[str]]:
        return {name: sorted(repr(r) for r in db.rows(f"SELECT * FROM {name}")) for name in (parent_sql, child_sql)}

    before = snapshot()
    dry = run_cli("fix", "awkward", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json_out(dry)
    assert (plan["groups"], plan["rows_to_delete"], plan["rows_to_repoint"]) == (2, 3, 3)
    assert plan["sample"][0]["keep"]["Id"] == 1 and plan["sample"][0]["differs"] == ["my col", "order"]
    assert snapshot() == before

    fixed = run_cli("fix", "awkward", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    report = json_out(fixed)
    assert (report["groups"], report["deleted"], report["archived"], report["repointed"]) == (2, 3, 3, 3)
    assert [r[0] for r in db.rows(f"SELECT {q('Id')} FROM {parent_sql} ORDER BY 1")] == [1, 4, 6]
    assert db.rows(f"SELECT {q('Line Id')}, {q('Order Id')} FROM {child_sql} ORDER BY 1") == [
        (10, 1), (11, 1), (12, 4), (13, 1), (14, None)]

    undone = run_cli("undo", report["fix_id"], "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["restored"] == 3 and snapshot() == before

    guarded = run_cli("fix", "awkward", "--config", str(path), "--yes", "--json", "--add-constraint")
    if db.dialect == "mysql":  # a `where` needs a partial index, which MySQL/MariaDB lack: refused up front
        assert guarded.exit_code == 2 and "no partial" in guarded.stderr and snapshot() == before, guarded.output
        return
    assert guarded.exit_code == 0, guarded.output
    assert json_out(guarded)["constraint"] == "uq_dupewatch_awkward"
    with pytest.raises(sa.exc.IntegrityError):
        db.execute(f"INSERT INTO {parent_sql} VALUES (20, 7, 'a', 'late', 5)")
    db.execute(f"INSERT INTO {parent_sql} VALUES (21, 7, 'a', 'outside the where', NULL)")


def test_fix_undo_and_guard_with_awkward_identifiers(db, tmp_path):
    parent_sql, child_sql = _create_awkward(db, "Order", "Line Item")
    _fix_undo_fix_guard(db, tmp_path, "Order", parent_sql, child_sql)


def test_fix_undo_and_guard_on_a_schema_qualified_table(pg, tmp_path):
    schema = f"Odd Schema {pg.schema[-6:]}"  # unique per test, like the fixture's own schema
    pg.execute(f"CREATE SCHEMA {pg.q(schema)}")
    try:
        parent_sql, child_sql = _create_awkward(pg, "Order", "Line Item", schema=schema)
        _fix_undo_fix_guard(pg, tmp_path, f"{schema}.Order", parent_sql, child_sql)
        created = {t for t in sa.inspect(pg.engine).get_table_names(schema=schema)}
        assert any(t.startswith("dupewatch_archive_order_") for t in created)  # beside the table, sanitised
        assert not any(t.startswith("dupewatch_plan_") for t in created)  # plan tables are dropped when done
    finally:
        pg.execute(f"DROP SCHEMA {pg.q(schema)} CASCADE")


# -- `where` filters ---------------------------------------------------------------------------------

WHERE = "note NOT LIKE '%keep%' AND note <> '100%' AND at < '2024-01-01 10:00:00'"


def _seed_notes(db) -> None:
    db.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, note VARCHAR(40) NOT NULL, "
               "at TIMESTAMP NULL)")
    db.execute("INSERT INTO note VALUES "
               "(1, 1, 'a', '2024-01-01 09:00:00'), (2, 1, 'b', '2024-01-01 09:30:00'), "
               "(3, 1, 'please keep', '2024-01-01 09:45:00'), (4, 1, 'late', '2024-01-01 11:00:00'), "
               "(5, 2, 'a', '2024-01-01 08:00:00'), (6, 2, 'b', '2024-01-01 08:00:01'), "
               "(7, 3, '100%', '2024-01-01 08:00:00'), (8, 3, '100%', '2024-01-01 08:00:01')")


def test_where_filter_with_percent_and_colon(db, tmp_path):
    _seed_notes(db)
    path = config_file(tmp_path, db, [{"name": "notes", "table": "note", "key": ["k"], "where": WHERE}])
    result = run_cli("fix", "notes", "--config", str(path), "--yes", "--json", "--add-constraint")
    if db.dialect == "mysql":  # no partial index: the guard is refused before the fix deletes anything
        assert result.exit_code == 2 and "no partial" in result.stderr, result.output
        assert db.scalar("SELECT count(*) FROM note") == 8
        result = run_cli("fix", "notes", "--config", str(path), "--yes", "--json")
    report = json_out(result)
    assert (report["groups"], report["deleted"]) == (2, 2)
    # rows 3, 4, 7 and 8 are outside the filter: the check ignores them, so the fix leaves them
    assert [r[0] for r in db.rows("SELECT id FROM note ORDER BY id")] == [1, 3, 4, 5, 7, 8]
    if db.dialect == "mysql":
        assert result.exit_code == 0 and report["constraint"] is None
        return
    # the partial index takes the filter as written: with `'100%'` garbled, rows 7 and 8 would block it
    assert result.exit_code == 0, result.output
    assert report["constraint"] == "uq_dupewatch_notes"
    guard = json_out(run_cli("guard", "notes", "--config", str(path), "--json"))
    assert "note <> '100%'" in guard["statement"] and "%%" not in guard["statement"]
    db.execute("INSERT INTO note VALUES (9, 1, 'keep me too', '2024-01-01 09:00:00')")  # outside: allowed
    db.execute("INSERT INTO note VALUES (10, 3, '50%', '2024-01-01 09:00:00')")  # the first of key 3 inside
    with pytest.raises(sa.exc.IntegrityError):
        db.execute("INSERT INTO note VALUES (11, 2, '50%', '2024-01-01 09:00:00')")


def test_a_where_ending_in_a_comment_filters_as_written_and_comments_out_nothing_of_dupewatch(db, tmp_path):
    """`where = "... -- why"`: dupewatch wrote it as `(... -- why)`, the comment ran to the end of the line and took
    the `)` and the AND of dupewatch's own conditions with it: every check and fix failed ("syntax error at end of
    input"). Its `)` is on a line of its own; the check, the fix and the guard's partial index filter as written."""
    _seed_notes(db)
    where = "note <> 'please keep' AND at < '2024-01-01 10:00:00' -- pinned and late notes stay"
    path = config_file(tmp_path, db, [{"name": "notes", "table": "note", "key": ["k"], "where": where}])
    checked = run_cli("check", "notes", "--config", str(path), "--json")
    assert checked.exit_code == 1, checked.output
    found = json_out(checked)["checks"][0]
    assert (found["groups"], found["excess_rows"]) == (3, 3), found
    options = [] if db.dialect == "mysql" else ["--add-constraint"]  # MySQL: no partial index
    result = run_cli("fix", "notes", "--config", str(path), "--yes", "--json", *options)
    assert result.exit_code == 0, result.output
    assert (json_out(result)["groups"], json_out(result)["deleted"]) == (3, 3)
    assert [r[0] for r in db.rows("SELECT id FROM note ORDER BY id")] == [1, 3, 4, 5, 7]
    if db.dialect != "mysql":
        db.execute("INSERT INTO note VALUES (9, 1, 'late', '2024-01-01 11:00:00')")  # outside: allowed
        with pytest.raises(sa.exc.IntegrityError):
            db.execute("INSERT INTO note VALUES (10, 2, 'b', '2024-01-01 09:00:00')")


def test_row_that_left_the_where_filter_after_the_plan_skips_its_group(db):
    _seed_notes(db)
    monitor = Monitor(make_config(db, [{"name": "notes", "table": "note", "key": ["k"], "where": WHERE}]))
    try:
        plan = prepare_fix(monitor, "notes")
        db.execute("UPDATE note SET note = 'keep this one' WHERE id = 2")  # now outside the check's filter
        report = run_fix(monitor, "notes", plan)
    finally:
        monitor.close()
    assert (report.groups, report.deleted, report.skipped) == (1, 1, 1)
    assert [r[0] for r in db.rows("SELECT id FROM note ORDER BY id")] == [1, 2, 3, 4, 5, 7, 8]


def test_where_naming_columns_that_the_plan_table_also_has(db, tmp_path):
    """The lock joins the plan table to the live one and re-applies `where`: plan columns must not clash."""
    db.execute("CREATE TABLE hit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, n INTEGER NOT NULL, "
               "rn INTEGER NOT NULL, group_no INTEGER NOT NULL)")
    db.execute("CREATE TABLE hit_ref (id INTEGER PRIMARY KEY, hit_id INTEGER REFERENCES hit (id))")
    db.execute("INSERT INTO hit VALUES (1, 1, 1, 1, 1), (2, 1, 1, 1, 1), (3, 1, 0, 1, 1), (4, 2, 1, 1, 1)")
    db.execute("INSERT INTO hit_ref VALUES (1, 2), (2, 3)")
    checks = [{"name": "hits", "table": "hit", "key": ["k"], "where": "n > 0 AND rn = 1 AND group_no = 1"}]
    result = run_cli("fix", "hits", "--config", str(config_file(tmp_path, db, checks)), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (json_out(result)["deleted"], json_out(result)["repointed"]) == (1, 1)
    assert db.rows("SELECT id, hit_id FROM hit_ref ORDER BY id") == [(1, 1), (2, 3)]


def test_plan_holding_each_rows_own_key_is_not_resumed(db):
    """A plan table of the earlier layout (each row's own key, `dw_k*`, where a batch compared rows with their
    keeper's key by a self-join) is refused, not resumed comparing rows with their own keys only."""
    db.execute("CREATE TABLE stay (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)")
    db.execute("INSERT INTO stay VALUES (1, 1), (2, 1), (3, 2), (4, 2)")
    monitor = Monitor(make_config(db, [{"name": "stays", "table": "stay", "key": ["k"]}]))
    try:
        plan = stopped_after_one_batch(monitor, "stays")
        name = db.scalar("SELECT plan_table FROM dupewatch_fix WHERE fix_id = :f", {"f": plan.fix_id})
        db.execute(f"ALTER TABLE {name} RENAME COLUMN dw_gk0 TO dw_k0")
        with pytest.raises(FixRefused, match=r"changed since fix .* undo it"):
            run_fix(monitor, "stays")
        assert db.scalar("SELECT count(*) FROM stay") == 3  # the first batch stands, nothing else moved
    finally:
        monitor.close()


def test_plan_made_before_rows_were_reached_by_their_address_is_resumed_by_primary_key(pg):
    """A PostgreSQL plan of a table with a primary key made before batches reached rows by their `ctid` (no
    `dw_at` column) is no stale plan: the fix resumes it, reaching its rows by primary key."""
    pg.execute("CREATE TABLE stay (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)")
    pg.execute("INSERT INTO stay VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)")
    monitor = Monitor(make_config(pg, [{"name": "stays", "table": "stay", "key": ["k"]}]))
    try:
        plan = stopped_after_one_batch(monitor, "stays")
        name = pg.scalar("SELECT plan_table FROM dupewatch_fix WHERE fix_id = :f", {"f": plan.fix_id})
        pg.execute(f"ALTER TABLE {name} DROP COLUMN dw_at")
        report = run_fix(monitor, "stays")
        assert (report.state, report.deleted) == ("done", 3)  # the whole fix: the first batch and the rest
        assert pg.rows("SELECT id FROM stay ORDER BY id") == [(1,), (3,), (5,)]
    finally:
        monitor.close()


def test_a_resumed_fix_reads_the_tables_layout_once(sqlite_db, monkeypatch):
    """Resuming, the layout read to vet dupewatch's tables is the one the batches run with: one read a run."""
    from monitor.fix import execute

    sqlite_db.execute("CREATE TABLE stay (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)",
                      "INSERT INTO stay VALUES (1, 1), (2, 1), (3, 2), (4, 2)")
    monitor = Monitor(make_config(sqlite_db, [{"name": "stays", "table": "stay", "key": ["k"]}]))
    try:
        stopped_after_one_batch(monitor, "stays")
        read, calls = execute._layout, []
        monkeypatch.setattr(execute, "_layout", lambda *a: calls.append(a) or read(*a))
        assert run_fix(monitor, "stays").state == "done"
        assert len(calls) == 1
        assert sqlite_db.rows("SELECT id FROM stay ORDER BY id") == [(1,), (3,)]
    finally:
        monitor.close()


def test_plan_that_no_longer_fits_the_table_is_refused(db):
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)")
    db.execute("INSERT INTO visit VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)")
    monitor = Monitor(make_config(db, [{"name": "visits", "table": "visit", "key": ["k"]}]))
    try:
        plan = stopped_after_one_batch(monitor, "visits")
        db.execute("CREATE TABLE visit_ref (id INTEGER PRIMARY KEY, visit_id INTEGER REFERENCES visit (id))")
        with pytest.raises(FixRefused, match=r"changed since fix .* undo it"):
            run_fix(monitor, "visits")
        assert db.scalar("SELECT count(*) FROM visit") == 5  # the first batch stands, nothing else moved
        undo_fix(monitor, plan.fix_id)
        fresh = prepare_fix(monitor, "visits")
        db.execute("DROP TABLE visit_ref")
        with pytest.raises(FixRefused, match="changed nothing and was discarded"):
            run_fix(monitor, "visits")
        assert db.rows("SELECT state FROM dupewatch_fix WHERE fix_id = :f", {"f": fresh.fix_id}) == [("discarded",)]
        report = run_fix(monitor, "visits")
    finally:
        monitor.close()
    assert (report.groups, report.deleted) == (3, 3)


# -- undo on generated keys ----------------------------------------------------------------------------


def test_undo_restores_original_keys_of_an_identity_column(db, tmp_path):
    id_column = {
        "postgresql": "id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "mysql": "id INTEGER AUTO_INCREMENT PRIMARY KEY",
        "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
    }[db.dialect]
    db.execute(f"CREATE TABLE token (k VARCHAR(10) NOT NULL, {id_column})")
    db.execute("INSERT INTO token (k) VALUES ('a'), ('a'), ('b'), ('a'), ('b')")
    path = config_file(tmp_path, db, [{"name": "tokens", "table": "token", "key": ["k"]}])
    before = contents(db, "token")
    fixed = json_out(run_cli("fix", "tokens", "--config", str(path), "--yes", "--json"))
    assert fixed["deleted"] == 3
    result = run_cli("undo", fixed["fix_id"], "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert contents(db, "token") == before
    db.execute("INSERT INTO token (k) VALUES ('c')")  # the generator carries on past the restored keys
    assert db.scalar("SELECT id FROM token WHERE k = 'c'") == 6


# -- NULL keys ----------------------------------------------------------------------------------------


def _seed_nullable(db, *, primary_key: bool) -> None:
    pk = "id INTEGER PRIMARY KEY" if primary_key else "id INTEGER NOT NULL"
    db.execute(f"CREATE TABLE device ({pk}, user_id INTEGER, os VARCHAR(10))")
    db.execute("INSERT INTO device VALUES (1, NULL, 'ios'), (2, NULL, 'ios'), (3, NULL, NULL), (4, NULL, NULL), "
               "(5, NULL, NULL), (6, 1, NULL), (7, 1, NULL), (8, 1, 'ios'), (9, 1, 'ios'), (10, 2, 'ios')")


@pytest.mark.parametrize("primary_key", [True, False], ids=["pk", "no-pk"])
def test_null_keys_are_fixed_when_nulls_are_equal(db, tmp_path, primary_key):
    _seed_nullable(db, primary_key=primary_key)
    order = {} if primary_key else {"order_by": ["id"]}
    checks = [{"name": "devices", "table": "device", "key": ["user_id", "os"], "nulls": "equal", **order}]
    path = config_file(tmp_path, db, checks)
    if not primary_key and db.dialect == "mysql":  # rows differ in `id` and nothing else tells them apart
        refused = run_cli("fix", "devices", "--config", str(path), "--yes")
        assert refused.exit_code == 2 and "no primary key" in refused.stderr
        return
    result = run_cli("fix", "devices", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (json_out(result)["groups"], json_out(result)["deleted"]) == (4, 5)
    assert [r[0] for r in db.rows("SELECT id FROM device ORDER BY id")] == [1, 3, 6, 8, 10]


def test_null_keys_are_never_touched_when_nulls_are_distinct(db, tmp_path):
    _seed_nullable(db, primary_key=True)
    checks = [{"name": "devices", "table": "device", "key": ["user_id", "os"], "nulls": "distinct"}]
    path = config_file(tmp_path, db, checks)
    result = run_cli("fix", "devices", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (json_out(result)["groups"], json_out(result)["deleted"]) == (1, 1)
    assert [r[0] for r in db.rows("SELECT id FROM device ORDER BY id")] == [1, 2, 3, 4, 5, 6, 7, 8, 10]


def test_identical_rows_with_null_keys_on_a_table_without_primary_key(db, tmp_path):
    db.execute("CREATE TABLE tag (a INTEGER, b VARCHAR(5))")
    db.execute("INSERT INTO tag VALUES (NULL, NULL), (NULL, NULL), (NULL, 'x'), (NULL, 'x'), (NULL, 'x'), "
               "(1, NULL), (2, 'y')")
    monitor = Monitor(make_config(db, [{"name": "tags", "table": "tag", "key": ["a", "b"]}]))
    try:
        report = run_fix(monitor, "tags")
        assert (report.groups, report.deleted, report.archived) == (2, 3, 3)
        undone = undo_fix(monitor, report.fix_id)
    finally:
        monitor.close()
    assert undone.restored == 3 and db.scalar("SELECT count(*) FROM tag") == 7


# -- one group (`f` on a group in the drill-down) -----------------------------------------------------


@pytest.mark.parametrize("primary_key", [True, False], ids=["pk", "no-pk"])
def test_fixing_one_group_leaves_every_other_group_alone(db, primary_key):
    """The NULL key group, picked by the key values the drill-down lists: only its extras go."""
    _seed_nullable(db, primary_key=primary_key)
    order = {} if primary_key else {"order_by": ["id"]}
    monitor = Monitor(make_config(db, [{"name": "devices", "table": "device", "key": ["user_id", "os"], **order}]))
    try:
        picked = next(g for g in monitor.groups("devices").groups if g.key == (None, None))
        assert picked.rows == 3
        if not primary_key and db.dialect == "mysql":  # rows differ in `id` and nothing else tells them apart
            with pytest.raises(FixRefused, match="no primary key"):
                run_fix(monitor, "devices", prepare_fix(monitor, "devices", group=picked.key))
            return
        preview = make_plan(monitor, "devices", group=picked.key)
        assert (preview.groups, preview.rows_to_delete) == (1, 2)
        assert [g.key for g in preview.sample] == [picked.key]
        plan = prepare_fix(monitor, "devices", group=picked.key)
        report = run_fix(monitor, "devices", plan)
        assert (report.groups, report.deleted, report.archived) == (1, 2, 2)
        assert [r[0] for r in db.rows("SELECT id FROM device ORDER BY id")] == [1, 2, 3, 6, 7, 8, 9, 10]
        assert monitor.run("devices").groups == 3  # the other groups are still there for the next fix
    finally:
        monitor.close()


def test_the_preview_names_a_column_without_equality_that_differs_in_a_group(pg):
    """The sample's "differs in" named only columns with `=`: a json, xml or point column whose values differ
    between the kept and deleted rows was left out, as if the rows were alike there (the kept row's values win)."""
    pg.execute("CREATE TABLE profile (id int PRIMARY KEY, user_id int, prefs json, home point, nick text)")
    pg.execute("""INSERT INTO profile VALUES (1, 7, '{"theme": "dark"}', '(1,2)', 'a'),
                                             (2, 7, '{"theme": "light"}', '(3,4)', 'a')""")
    monitor = Monitor(make_config(pg, [{"name": "profiles", "table": "profile", "key": ["user_id"]}]))
    try:
        [group] = make_plan(monitor, "profiles").sample
    finally:
        monitor.close()
    assert group.differs == ["prefs", "home"]

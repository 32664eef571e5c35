"""A key of a type whose `=` is outside the search_path: PostgreSQL's `citext` installed in a schema the session
does not search (`CREATE EXTENSION citext SCHEMA ext`, a column `ext.citext`). GROUP BY groups 'A@x' with 'a@x'
(the type's default operator class), but an unqualified `=` finds `text = text` through citext's implicit cast
and compares case-sensitively: the fix skipped every case-variant group as "changed since the plan". Detection,
the drill-down, the dry run, the fix and undo now compare with the catalog's operator (`OPERATOR(ext.=)`)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fix_support import config_file, contents, json_out, run_cli


@pytest.mark.parametrize("kind", ["ext.citext", "email"])  # the type itself, and a domain over it
def test_case_variant_groups_of_a_citext_outside_the_search_path_are_fixed_and_undone(pg_citext_elsewhere, tmp_path,
                                                                                     kind, monitor_for):
    pg = pg_citext_elsewhere
    assert pg.scalar("SELECT 'A'::ext.citext = 'a'::ext.citext") is False  # the trap: `=` here is text's
    pg.execute("CREATE DOMAIN email AS ext.citext",
               f"CREATE TABLE customer (id INTEGER PRIMARY KEY, email {kind} NOT NULL)",
               "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customer (id))",
               "INSERT INTO customer VALUES (1, 'A@x'), (2, 'a@x'), (3, 'b@y'), (4, 'b@y'), (5, 'C@z'), (6, 'c@Z'),"
               " (7, 'C@Z'), (8, 'd@w')",
               "INSERT INTO orders VALUES (10, 1), (11, 2), (12, 6), (13, 7), (14, 8)")
    before = contents(pg, "customer", "orders")
    checks = [{"name": "c", "table": "customer", "key": ["email"]}]
    monitor = monitor_for({"app": {"url": pg.url}}, [{"database": "app", **c} for c in checks])
    result = monitor.run("c")
    assert (result.groups, result.excess_rows) == (3, 4)
    members = monitor.members("c", ("a@X",))  # the drill-down finds every spelling of the group
    assert sorted(row[0] for row in members.rows) == [1, 2]

    path = config_file(tmp_path, pg, checks)
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert (json_out(dry)["groups"], json_out(dry)["rows_to_delete"]) == (3, 4)
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    report = json_out(fixed)
    assert (report["deleted"], report["archived"], report["repointed"], report["skipped"]) == (4, 4, 3, 0)
    assert pg.rows("SELECT id FROM customer ORDER BY id") == [(1,), (3,), (5,), (8,)]
    assert pg.rows("SELECT id, customer_id FROM orders ORDER BY id") == [(10, 1), (11, 1), (12, 5), (13, 5),
                                                                          (14, 8)]
    undone = run_cli("undo", report["fix_id"], "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, "customer", "orders") == before


def test_whether_a_column_is_citext_is_asked_once_through_every_domain(pg_citext_elsewhere, monitor_for):
    """Two catalog queries asked whether a column is citext (one for the type's hidden `=`, one for comparing
    apart), and the second looked through one domain only: a domain over a domain over citext was taken for
    another type whose `=` is hidden. One query answers it now, through every domain."""
    pg = pg_citext_elsewhere
    pg.execute("CREATE DOMAIN email AS ext.citext", "CREATE DOMAIN work_email AS email",
               "CREATE TABLE customer (id INTEGER PRIMARY KEY, a ext.citext, b email, c work_email, d TEXT)")
    monitor = monitor_for({"app": {"url": pg.url}}, [{"database": "app", "name": "c", "table": "customer",
                                                       "key": ["a", "b", "c", "d"]}])
    asked: list[str] = []
    engine = monitor.database("app").engine
    listener = lambda *args: asked.append(args[2]) if "citext" in args[2] else None  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        compared = monitor.resolve("c").compared
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert len(asked) == 1, asked
    assert {name: (c.kind, c.visible, c.type_name) for name, c in compared.items()} == {
        name: ("citext", False, "ext.citext") for name in ("a", "b", "c")}


def test_case_insensitive_folds_a_key_column_of_a_domain_over_text(pg, tmp_path):
    """`case_insensitive = true` on a key of a domain over text (`CREATE DOMAIN email AS text CHECK (...)`) was
    ignored: only columns SQLAlchemy reflects as strings were folded, and a domain reflects as DOMAIN, so
    'a@x' and 'A@x' were two groups' keys, the fix left them, and `--add-constraint` built a case-sensitive
    `(e)` index. The column is text as the database stores it (the domain's base type): it is folded, the fix
    merges them and the guard is on `lower(e)`."""
    pg.execute("CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%')",
               "CREATE TABLE account (id INTEGER PRIMARY KEY, e email NOT NULL)",
               "INSERT INTO account VALUES (1, 'a@x'), (2, 'A@x'), (3, 'b@y')")
    path = config_file(tmp_path, pg, [{"name": "a", "table": "account", "key": ["e"], "case_insensitive": True}])
    checked = json_out(run_cli("check", "--config", str(path), "--json"))["checks"][0]
    assert (checked["groups"], checked["excess_rows"]) == (1, 1), checked
    fixed = run_cli("fix", "a", "--config", str(path), "--yes", "--add-constraint")
    assert fixed.exit_code == 0, fixed.output
    assert pg.rows("SELECT id FROM account ORDER BY id") == [(1,), (3,)]
    index = pg.scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_dupewatch_a'")
    assert "lower(" in index, index
    with pytest.raises(sa.exc.IntegrityError):
        pg.execute("INSERT INTO account VALUES (4, 'B@Y')")


@pytest.mark.parametrize("option", ["case_insensitive", "trim_whitespace"])
def test_a_folded_key_outside_its_domain_is_planned_as_the_domains_base_type(pg, tmp_path, option):
    """A key of a domain whose CHECK the folded or trimmed key does not pass (`CREATE DOMAIN sku AS text CHECK
    (VALUE ~ '^[A-Z]{3}-')`: 'abc-x1' is not a sku; `CHECK (length(VALUE) >= 5)`: ' ab-1' trimmed is 4 long): the
    dry run planned the group, then `fix --yes` failed on `value for domain sku violates check constraint`, since
    the fix's plan table stored each group's key as the domain. The key is stored as the text it is (the domain's
    base type): the fix merges the group, undo restores it."""
    check = "VALUE ~ '^[A-Z]{3}-'" if option == "case_insensitive" else "length(VALUE) >= 5"
    pg.execute(f"CREATE DOMAIN sku AS varchar(16) CHECK ({check})",
               "CREATE TABLE item (id INTEGER PRIMARY KEY, code sku NOT NULL)",
               "INSERT INTO item VALUES (1, 'ABC-X1'), (2, 'ABC-x1'), (3, 'ABC-Y2')" if option == "case_insensitive"
               else "INSERT INTO item VALUES (1, ' AB-1'), (2, 'AB-1 '), (3, 'AB-22')")
    before = contents(pg, "item")
    path = config_file(tmp_path, pg, [{"name": "i", "table": "item", "key": ["code"], option: True}])
    dry = run_cli("fix", "i", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0 and (json_out(dry)["groups"], json_out(dry)["rows_to_delete"]) == (1, 1), dry.output
    fixed = run_cli("fix", "i", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert pg.rows("SELECT id FROM item ORDER BY id") == [(1,), (3,)]
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, "item") == before


def test_an_incremental_run_counts_folded_keys_of_a_domain_as_text(pg, tmp_path):
    """An incremental check folding a key of a domain (`case_insensitive` on `sku`, a domain over varchar with
    `CHECK (VALUE ~ '^[A-Z]{3}-')`): its first full pass found the group, then every incremental run failed with
    `value for domain sku violates check constraint`, since the folded keys it counts were bound as an array of the
    domain ('abc-x1' is no sku). They are bound as the text they are: each run counts the group as a full pass
    does."""
    pg.execute("CREATE DOMAIN sku AS varchar(16) CHECK (VALUE ~ '^[A-Z]{3}-')",
               "CREATE TABLE item (id SERIAL PRIMARY KEY, code sku NOT NULL)",
               "CREATE INDEX ON item (lower(code))",
               "INSERT INTO item (code) SELECT 'ABC-' || g FROM generate_series(1, 2000) g",
               "INSERT INTO item (code) VALUES ('ABC-X1'), ('ABC-x1')", "ANALYZE item")
    path = config_file(tmp_path, pg, [{"name": "i", "table": "item", "key": ["code"], "case_insensitive": True,
                                       "incremental": "id"}])
    seen = []
    for added in ("('ABC-X2'), ('ABC-x2'), ('ABC-X1')", "('ABC-x1'), ('ABC-Y3')", None):
        run = json_out(run_cli("check", "--config", str(path), "--json"))["checks"][0]
        seen.append((run["mode"], run["error"], run["groups"], run["excess_rows"]))
        if added:
            pg.execute(f"INSERT INTO item (code) VALUES {added}")
    assert seen == [("full", None, 1, 1), ("incremental", None, 2, 3), ("incremental", None, 2, 4)], seen

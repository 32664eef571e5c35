"""Real applications' schemas as a new user meets them (Keycloak, Django, Rails), written as their migrations
write them: what the dry run promises about them, and that fix and undo keep it."""

from __future__ import annotations

import pytest

from fix_support import config_file, contents, json_out, run_cli


def _seed_keycloak(db) -> None:
    """Keycloak's `USER_ENTITY` (duplicate emails allowed in the realm) and `USER_ROLE_MAPPING`, keyed by
    `(ROLE_ID, USER_ID)`: both Ann's accounts hold role r1, so the repoint would make two `(r1, u1)`."""
    db.execute(
        "CREATE TABLE USER_ENTITY (ID varchar(36) NOT NULL, EMAIL varchar(255), REALM_ID varchar(255), "
        "USERNAME varchar(255), CONSTRAINT CONSTRAINT_FB PRIMARY KEY (ID))",
        "CREATE TABLE USER_ROLE_MAPPING (ROLE_ID varchar(255) NOT NULL, USER_ID varchar(36) NOT NULL, "
        "CONSTRAINT CONSTRAINT_C PRIMARY KEY (ROLE_ID, USER_ID), "
        "CONSTRAINT FK_C4FQV34P1MBYLLOXANG7B1Q3L FOREIGN KEY (USER_ID) REFERENCES USER_ENTITY (ID))",
        "INSERT INTO USER_ENTITY VALUES ('u1', 'ann@acme.io', 'acme', 'ann'), ('u2', 'ann@acme.io', 'acme', 'ann2')",
        "INSERT INTO USER_ROLE_MAPPING VALUES ('r1', 'u1'), ('r2', 'u1'), ('r1', 'u2'), ('r3', 'u2')")


def test_composite_primary_key_clash_is_one_blocker_naming_the_key(db, tmp_path):
    """The clash on the link table's primary key was reported twice, once as `PRIMARY KEY` (the unique sets) and
    once by its own name (`constraint_c`, `PRIMARY`, `sqlite_autoindex_USER_ROLE_MAPPING_1`, the catalog's keys):
    two blockers and two `unique_conflicts` for one constraint."""
    _seed_keycloak(db)
    names = ["user_entity", "user_role_mapping"] if db.dialect == "postgresql" else ["USER_ENTITY", "USER_ROLE_MAPPING"]
    key = ["realm_id", "email"] if db.dialect == "postgresql" else ["REALM_ID", "EMAIL"]
    path = config_file(tmp_path, db, [{"name": "kc-users", "table": names[0], "key": key, "merge_distinct": True}])
    before = contents(db, *names)
    dry = run_cli("fix", "kc-users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    clash = [b for b in json_out(dry)["blockers"] if "would violate its unique constraint" in b]
    primary = {"postgresql": "constraint_c", "mysql": "PRIMARY", "sqlite": "sqlite_autoindex_USER_ROLE_MAPPING_1"}
    assert len(clash) == 1 and f"{primary[db.dialect]} (the primary key) in 1 group(s)" in clash[0], clash
    [ref] = json_out(dry)["references"]
    assert ref["unique_conflicts"] == {f"{primary[db.dialect]} (the primary key)": 1}, ref
    fixed = run_cli("fix", "kc-users", "--config", str(path), "--yes")
    assert fixed.exit_code == 2 and "cannot be fixed" in fixed.stderr, fixed.output
    assert contents(db, *names) == before


def test_clash_count_is_of_groups_not_of_clashing_pairs(db, tmp_path):
    """Django's `auth_user_groups` with `unique_together (user_id, group_id)`: the one duplicate group (users 2, 3
    and 4) makes two pairs collide, `(2, 1)` and `(2, 2)`. The blocker said `in 2 group(s)` of a plan of one."""
    db.execute("CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username VARCHAR(150) NOT NULL, "
               "email VARCHAR(254) NOT NULL)",
               "CREATE TABLE auth_user_groups (id INTEGER PRIMARY KEY, "
               "user_id INTEGER NOT NULL REFERENCES auth_user (id), group_id INTEGER NOT NULL, "
               "CONSTRAINT auth_user_groups_user_id_group_id_94350c0c_uniq UNIQUE (user_id, group_id))",
               "INSERT INTO auth_user VALUES (2, 'alice', 'a@x.io'), (3, 'alice2', 'a@x.io'), (4, 'alice3', 'a@x.io')",
               "INSERT INTO auth_user_groups VALUES (1, 2, 1), (2, 3, 1), (3, 3, 2), (4, 4, 2)")
    path = config_file(tmp_path, db, [{"name": "emails", "table": "auth_user", "key": ["email"]}])
    dry = run_cli("fix", "emails", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    clash = [b for b in json_out(dry)["blockers"] if "would violate its unique constraint" in b]
    assert len(clash) == 1 and "in 1 group(s)" in clash[0], clash


def test_rails_polymorphic_reference_is_counted_through_the_index_rails_makes(db, tmp_path):
    """`t.references :commentable, polymorphic: true` indexes `(commentable_type, commentable_id)`, the type first.
    The dry run said `not counted: ... comments(commentable_id) (no index on comments(commentable_id))` and said
    nothing of the two comments the fix would leave pointing at no tag (exit 0): on every Rails schema the
    evidence was never given."""
    db.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, name VARCHAR(255))",
               "CREATE TABLE comments (id INTEGER PRIMARY KEY, body VARCHAR(20), "
               "commentable_type VARCHAR(255) NOT NULL, commentable_id INTEGER NOT NULL)",
               "CREATE INDEX index_comments_on_commentable ON comments (commentable_type, commentable_id)",
               "INSERT INTO tags VALUES (1, 'ruby'), (2, 'ruby'), (3, 'rails'), (6, 'ruby')",
               "INSERT INTO comments VALUES (1, 'x', 'ActsAsTaggableOn::Tag', 2), (2, 'y', 'Post', 2), "
               "(3, 'z', 'Tag', 6), (4, 'kept', 'Tag', 1)")
    path = config_file(tmp_path, db, [{"name": "tags", "table": "tags", "key": ["name"]}])
    before = contents(db, "tags", "comments")
    dry = run_cli("fix", "tags", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert not [n for n in json_out(dry)["notes"] if "not counted" in n], json_out(dry)["notes"]
    [found] = json_out(dry)["undeclared_references"]
    assert (found["table"], found["column"], found["rows"]) == ("comments", "commentable_id", 2), found
    assert found["by_type"] == [{"value": "ActsAsTaggableOn::Tag", "rows": 1}, {"value": "Tag", "rows": 1}]
    assert found["other_types"] == [{"value": "Post", "rows": 1}]
    fixed = run_cli("fix", "tags", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0 and json_out(fixed)["deleted"] == 2, fixed.output
    assert contents(db, "comments") == {"comments": before["comments"]}  # as the plan said: left as they were
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "tags", "comments") == before


def test_odoo_generic_relations_are_counted(pg, tmp_path):
    """Odoo's chatter, attachments and external ids point at a record by `res_id` beside its model's name
    (`res_model` or `model`: 'res.partner' for `res_partner`), no foreign key. The dry run of a duplicate partner
    said nothing of them (exit 0), and the fix left the message, the attachment, the follower and the external id
    pointing at no partner."""
    pg.execute(
        "CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, email varchar, active boolean)",
        "CREATE TABLE mail_message (id serial PRIMARY KEY, model varchar, res_id integer, body text)",
        "CREATE INDEX mail_message_model_res_id_idx ON mail_message (model, res_id)",
        "CREATE TABLE mail_followers (id serial PRIMARY KEY, res_model varchar NOT NULL, res_id integer, "
        "partner_id integer REFERENCES res_partner (id) ON DELETE CASCADE, "
        "CONSTRAINT mail_followers_res_partner_res_model_id_uniq UNIQUE (res_model, res_id, partner_id))",
        "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name varchar NOT NULL, res_model varchar, res_id integer)",
        "CREATE INDEX ir_attachment_res_idx ON ir_attachment (res_model, res_id)",
        "INSERT INTO res_partner VALUES (1, 'Co', 'info@co.io', true), (10, 'Jane', 'jane@x.io', true), "
        "(11, 'Jane', 'jane@x.io', true)",
        "INSERT INTO mail_message VALUES (1, 'res.partner', 11, 'hi'), (2, 'sale.order', 11, 'so'), "
        "(3, 'res.partner', 10, 'kept')",
        "INSERT INTO mail_followers VALUES (1, 'res.partner', 11, 1)",
        "INSERT INTO ir_attachment VALUES (1, 'cv.pdf', 'res.partner', 11)")
    path = config_file(tmp_path, pg, [{"name": "partners", "table": "res_partner", "key": ["email"]}])
    dry = run_cli("fix", "partners", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    found = {u["table"]: u for u in json_out(dry)["undeclared_references"]}
    assert {t: (u["column"], u["type_column"], u["rows"], u["by_type"]) for t, u in found.items()} == {
        "mail_message": ("res_id", "model", 1, [{"value": "res.partner", "rows": 1}]),
        "mail_followers": ("res_id", "res_model", 1, [{"value": "res.partner", "rows": 1}]),
        "ir_attachment": ("res_id", "res_model", 1, [{"value": "res.partner", "rows": 1}])}, found
    assert found["mail_message"]["other_types"] == [{"value": "sale.order", "rows": 1}]


@pytest.mark.parametrize("dialect_db", ["pg", "sqlite_db"])
def test_partial_not_null_index_on_a_foreign_key_is_an_index(dialect_db, request, tmp_path):
    """Mastodon indexes `list_accounts (follow_id) WHERE (follow_id IS NOT NULL)`: the lookup of the rows pointing
    at a deleted follow (`follow_id = $1`) implies the predicate, and the database uses that index (PostgreSQL's
    foreign key check too, measured: `Index Scan using ... Index Cond: (follow_id = $1)`). The dry run said
    `advice: list_accounts(follow_id) has no index ... every deleted row makes the database search all of
    list_accounts` and advised a second, redundant index; a partial index on another predicate still gets it."""
    db = request.getfixturevalue(dialect_db)
    db.execute("CREATE TABLE follows (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, "
               "target_account_id INTEGER NOT NULL)",
               "CREATE TABLE list_accounts (id INTEGER PRIMARY KEY, list_id INTEGER NOT NULL, "
               "follow_id INTEGER REFERENCES follows (id) ON DELETE CASCADE, "
               "other_id INTEGER REFERENCES follows (id))",
               "CREATE INDEX index_list_accounts_on_follow_id ON list_accounts (follow_id) "
               "WHERE (follow_id IS NOT NULL)",
               "CREATE INDEX index_list_accounts_on_other_id ON list_accounts (other_id) WHERE (list_id > 0)",
               "INSERT INTO follows VALUES (10, 1, 2), (11, 1, 2)",
               "INSERT INTO list_accounts VALUES (1, 1, 11, 11)")
    path = config_file(tmp_path, db, [{"name": "follows", "table": "follows",
                                       "key": ["account_id", "target_account_id"]}])
    dry = run_cli("fix", "follows", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    missing = {r["columns"][0]: r["missing_index"] for r in json_out(dry)["references"]}
    assert missing["follow_id"] is None and missing["other_id"] is not None, missing


def _seed_multi_table_inheritance(db) -> None:
    """Django's multi-table inheritance (django-polymorphic's too): `shop_supplier` extends `shop_company`, its
    primary key the parent link; a signup race made two suppliers of one name, each a company row and a supplier
    row; an order refers to the duplicate supplier."""
    db.execute("CREATE TABLE shop_company (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL)",
               "CREATE TABLE shop_supplier (company_ptr_id INTEGER PRIMARY KEY REFERENCES shop_company (id), "
               "rating INTEGER NOT NULL)",
               "CREATE TABLE shop_order (id INTEGER PRIMARY KEY, "
               "supplier_id INTEGER NOT NULL REFERENCES shop_supplier (company_ptr_id))",
               "INSERT INTO shop_company VALUES (1, 'acme'), (2, 'acme'), (3, 'zeta')",
               "INSERT INTO shop_supplier VALUES (1, 5), (2, 7), (3, 1)",
               "INSERT INTO shop_order VALUES (1, 2), (2, 3)")


def test_a_multi_table_inheritance_child_of_a_duplicate_is_one_entity_not_a_row_to_repoint(db, tmp_path):
    """The dry run said the child rows would be repointed and that each kept company would have 2 supplier rows
    (which its primary key forbids), and advised `archive`, which it then refused because an order refers to the
    duplicate supplier. It now says the two supplier rows are one entity's halves, and that archive waits for the
    order to be pointed at the kept supplier."""
    _seed_multi_table_inheritance(db)
    path = config_file(tmp_path, db, [{"name": "companies", "table": "shop_company", "key": ["name"]}])
    dry = run_cli("fix", "companies", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.output
    [blocker] = [b for b in json_out(dry)["blockers"] if "one-to-one" in b]
    assert "each shop_company row has at most one shop_supplier row" in blocker, blocker
    assert "(the primary key)" in blocker, blocker
    assert "nor archive while rows of shop_order(supplier_id) refer to them; merge them by hand" in blocker, blocker
    supplier = next(r for r in json_out(dry)["references"] if r["table"] == "shop_supplier")
    assert supplier["kept_rows_with_several"] is None, supplier  # (was: 1 kept row with 2 shop_supplier rows)


def test_a_multi_table_inheritance_child_no_row_refers_to_is_archived_as_advised_and_undone(db, tmp_path):
    """Once the order is pointed at the kept supplier, the blocker advises archive, and following it fixes the
    duplicate whole (its company and supplier rows) and undo restores both."""
    _seed_multi_table_inheritance(db)
    db.execute("UPDATE shop_order SET supplier_id = 1 WHERE supplier_id = 2")
    path = config_file(tmp_path, db, [{"name": "companies", "table": "shop_company", "key": ["name"]}])
    dry = run_cli("fix", "companies", "--config", str(path), "--dry-run", "--json")
    [blocker] = json_out(dry)["blockers"]
    assert 'or set its on_reference to "archive" (`"shop_supplier.company_ptr_id" = "archive"`)' in blocker, blocker
    assert "which archives all 1 shop_supplier row(s) of rows to delete (undo restores them)" in blocker, blocker
    path = config_file(tmp_path, db, [{"name": "companies", "table": "shop_company", "key": ["name"],
                                       "on_reference": {"shop_supplier.company_ptr_id": "archive"}}])
    before = contents(db, "shop_company", "shop_supplier", "shop_order")
    fixed = run_cli("fix", "companies", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert contents(db, "shop_company", "shop_supplier") == {"shop_company": ["(1, 'acme')", "(3, 'zeta')"],
                                                              "shop_supplier": ["(1, 5)", "(3, 1)"]}
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "shop_company", "shop_supplier", "shop_order") == before

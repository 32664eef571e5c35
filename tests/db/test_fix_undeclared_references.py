"""References the database does not declare: Rails' polymorphic `commentable_type`/`commentable_id`, a Django
`ForeignKey(db_constraint=False)` (an `account_id` without a foreign key). The fix cannot repoint them, and its
plan said nothing about them: the rows they point at were deleted, exit 0, and they pointed at no row. The plan
now names each such column with the database's count of rows holding a key of a row to delete."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import config_file, contents, json_out, run_cli


def _seed(db) -> None:
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(50) NOT NULL)")
    db.execute("CREATE TABLE team (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE post (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id))")
    # Rails: polymorphic, no foreign key; the 'Post' row holds the same number as a deleted account.
    db.execute("CREATE TABLE comment (id INTEGER PRIMARY KEY, commentable_type VARCHAR(20), "
               "commentable_id INTEGER, body VARCHAR(20))")
    # Django db_constraint=False (`account_id`, named after the table); a declared reference elsewhere (team_id),
    # a text `*_id` and a column named after no fixed table (`author_id`, the same values) are not evidence of a
    # reference to account's integer key.
    db.execute("CREATE TABLE audit_entry (id INTEGER PRIMARY KEY, account_id INTEGER, author_id INTEGER, "
               "team_id INTEGER REFERENCES team (id), external_id VARCHAR(20))")
    # Counted through an index that leads with the column (never by a scan of the table).
    db.execute("CREATE INDEX comment_commentable ON comment (commentable_id, commentable_type)")
    db.execute("CREATE INDEX audit_entry_account ON audit_entry (account_id)")
    db.execute("CREATE INDEX audit_entry_author ON audit_entry (author_id)")
    db.execute("INSERT INTO account VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'a')")
    db.execute("INSERT INTO team VALUES (2), (3)")
    db.execute("INSERT INTO post VALUES (1, 2), (2, 3)")
    db.execute("INSERT INTO comment VALUES (1, 'Account', 2, 'x'), (2, 'Post', 2, 'y'), (3, 'Account', 4, 'z'), "
               "(4, 'Account', 1, 'kept'), (5, 'Account', NULL, 'none')")
    db.execute("INSERT INTO audit_entry VALUES (1, 2, 2, 2, '2'), (2, 4, 4, 3, '4'), (3, 3, 3, NULL, '2')")


def test_the_plan_counts_rows_of_columns_no_foreign_key_declares(db, tmp_path):
    _seed(db)
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    before = contents(db, "account", "post", "comment", "audit_entry")

    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    found = {(u["table"], u["column"]): u for u in json_out(dry)["undeclared_references"]}
    assert set(found) == {("comment", "commentable_id"), ("audit_entry", "account_id")}
    # Only the rows whose type names account count; 'Post' 2 is another table's id, listed as not referring.
    assert found["comment", "commentable_id"]["rows"] == 2
    assert found["comment", "commentable_id"]["type_column"] == "commentable_type"
    assert found["comment", "commentable_id"]["by_type"] == [{"value": "Account", "rows": 2}]
    assert found["comment", "commentable_id"]["other_types"] == [{"value": "Post", "rows": 1}]
    assert (found["audit_entry", "account_id"]["rows"], found["audit_entry", "account_id"]["by_type"]) == (2, [])
    text = run_cli("fix", "accounts", "--config", str(path), "--dry-run")
    out = " ".join(text.stdout.split())
    assert ("comment(commentable_id) is named like a reference and no foreign key declares it; of its rows whose "
            "commentable_type names account ('Account' 2), 2 hold the id of a row to delete: if it refers to "
            "account, 2 of its row(s) will point at no row (holding these values with other commentable_type, "
            "not referring to account: 'Post' 1)") in out, text.output

    fixed = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["repointed"]) == (2, 1)
    # What the plan said: the fix left those rows as they were.
    assert contents(db, "comment", "audit_entry") == {t: before[t] for t in ("comment", "audit_entry")}
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "account", "post", "comment", "audit_entry") == before


def test_no_undeclared_reference_is_named_when_no_row_holds_a_key_to_delete(db, tmp_path):
    _seed(db)
    db.execute("DELETE FROM comment", "DELETE FROM audit_entry")
    # Names ending in "id" that are not `_id` / `Id`, holding ids of rows to delete: not references.
    db.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, paid INTEGER, void INTEGER, valid INTEGER, "
               "pid INTEGER, uuid INTEGER)")
    db.execute("INSERT INTO ledger VALUES (1, 2, 2, 4, 4, 2)")
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json_out(dry)["undeclared_references"] == []
    assert not any("no foreign key declares" in note for note in json_out(dry)["notes"])


def test_a_column_no_index_leads_with_is_named_as_not_counted(db, tmp_path):
    _seed(db)
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, at INTEGER, account_id INTEGER)",
               "CREATE INDEX visit_at_account ON visit (at, account_id)", "INSERT INTO visit VALUES (1, 0, 2)")
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    dry = json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json"))
    assert "visit" not in {u["table"] for u in dry["undeclared_references"]}
    assert any("visit(account_id) (no index on visit(account_id))" in n for n in dry["notes"]
               if n.startswith("not counted")), dry["notes"]


def test_a_polymorphic_type_counts_when_it_names_the_table_as_a_class(db, tmp_path):
    _seed(db)
    db.execute("DELETE FROM comment WHERE commentable_type = 'Account'",
               "INSERT INTO comment VALUES (6, 'app.Account', 4, 'django'), (7, 'Admin::Accounting', 2, 'other')")
    path = config_file(tmp_path, db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    found = {u["column"]: u for u in json_out(run_cli("fix", "accounts", "--config", str(path), "--dry-run",
                                                      "--json"))["undeclared_references"]}
    assert (found["commentable_id"]["rows"], found["commentable_id"]["by_type"]) == (
        1, [{"value": "app.Account", "rows": 1}])


def test_a_django_generic_relation_counts_the_rows_whose_content_type_names_the_table(db, tmp_path):
    """Django's contenttypes: taggit's `content_type_id` + `object_id` (its index leads with the content type) and
    guardian's `object_pk` (text). Only rows whose content type is `auth.user` count; a tag of blog post 2 holds the
    same number and is listed as not referring."""
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'auth', 'user'), (2, 'blog', 'post')",
               "CREATE TABLE blog_post (id INTEGER PRIMARY KEY)",
               "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, email VARCHAR(254))",
               "INSERT INTO auth_user VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')",
               "CREATE TABLE taggit_taggeditem (id INTEGER PRIMARY KEY, content_type_id INTEGER NOT NULL, "
               "object_id INTEGER NOT NULL)",
               "CREATE INDEX taggit_ct_obj ON taggit_taggeditem (content_type_id, object_id)",
               "INSERT INTO taggit_taggeditem VALUES (1, 1, 2), (2, 2, 2), (3, 1, 1)",
               "CREATE TABLE guardian_userobjectpermission (id INTEGER PRIMARY KEY, content_type_id INTEGER, "
               "object_pk VARCHAR(255))",
               "CREATE INDEX guardian_obj ON guardian_userobjectpermission (object_pk)",
               "INSERT INTO guardian_userobjectpermission VALUES (1, 1, '2'), (2, 1, '1')",
               # the admin log's object_id is text too (Django's TextField)
               "CREATE TABLE django_admin_log (id INTEGER PRIMARY KEY, content_type_id INTEGER, "
               "object_id VARCHAR(255))", "CREATE INDEX admin_log_obj ON django_admin_log (object_id)",
               "INSERT INTO django_admin_log VALUES (1, 1, '2'), (2, 2, '2')")
    path = config_file(tmp_path, db, [{"name": "users", "table": "auth_user", "key": ["email"]}])
    found = {(u["table"], u["column"]): u for u in json_out(run_cli(
        "fix", "users", "--config", str(path), "--dry-run", "--json"))["undeclared_references"]}
    assert {k: (u["rows"], u["type_column"], u["by_type"]) for k, u in found.items()} == {
        ("django_admin_log", "object_id"): (1, "content_type_id", [{"value": "auth.user", "rows": 1}]),
        ("guardian_userobjectpermission", "object_pk"): (1, "content_type_id", [{"value": "auth.user", "rows": 1}]),
        ("taggit_taggeditem", "object_id"): (1, "content_type_id", [{"value": "auth.user", "rows": 1}])}
    shown = run_cli("fix", "users", "--config", str(path), "--dry-run").output
    assert "taggit_taggeditem(object_id)" in shown and "'auth.user' 1" in shown, shown


def test_generic_relations_named_by_a_prefix_are_counted_each(db, tmp_path):
    """django-notifications (and django-activity-stream) hold three generic relations in one table, each pair named
    by its own prefix: `actor_content_type_id` beside `actor_object_id`, `target_...`, `action_object_...`, the
    object columns text, only the content type columns indexed (Django indexes a ForeignKey). A signup race
    duplicated a customer that notifications named as target and action object: the plan said nothing of them,
    and the fix left them pointing at no row."""
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'auth', 'user'), (2, 'shop', 'customer')",
               "CREATE TABLE auth_user (id INTEGER PRIMARY KEY)",
               "CREATE TABLE shop_customer (id INTEGER PRIMARY KEY, email VARCHAR(254))",
               "INSERT INTO shop_customer VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')",
               "CREATE TABLE notifications_notification (id INTEGER PRIMARY KEY, "
               "actor_content_type_id INTEGER NOT NULL, actor_object_id VARCHAR(255) NOT NULL, "
               "target_content_type_id INTEGER, target_object_id VARCHAR(255), "
               "action_object_content_type_id INTEGER, action_object_object_id VARCHAR(255))",
               "CREATE INDEX n_actor ON notifications_notification (actor_content_type_id)",
               "CREATE INDEX n_target ON notifications_notification (target_content_type_id)",
               "CREATE INDEX n_action ON notifications_notification (action_object_content_type_id)",
               # user 2 signed customer 2 up (the duplicate), and customer 3: only the customer rows refer to it
               "INSERT INTO notifications_notification VALUES (1, 1, '2', 2, '2', 2, '2'), "
               "(2, 1, '2', 2, '3', 2, '3'), (3, 1, '1', 2, '1', NULL, NULL)")
    path = config_file(tmp_path, db, [{"name": "customers", "table": "shop_customer", "key": ["email"]}])
    found = {(u["table"], u["column"]): u for u in json_out(run_cli(
        "fix", "customers", "--config", str(path), "--dry-run", "--json"))["undeclared_references"]}
    assert {k: (u["rows"], u["type_column"], u["by_type"]) for k, u in found.items()} == {
        ("notifications_notification", "target_object_id"):
            (1, "target_content_type_id", [{"value": "shop.customer", "rows": 1}]),
        ("notifications_notification", "action_object_object_id"):
            (1, "action_object_content_type_id", [{"value": "shop.customer", "rows": 1}])}
    # No foreign key can declare a generic relation: the plan does not advise one.
    shown = " ".join(run_cli("fix", "customers", "--config", str(path), "--dry-run").output.split())
    assert ("repoint them by hand before the fix (a column whose target_content_type_id says which table each row "
            "refers to cannot be declared a foreign key)") in shown, shown
    assert "declare a foreign key" not in shown, shown


def test_a_generic_relation_whose_object_column_cannot_hold_the_key_is_not_counted(pg, tmp_path):
    """A prefixed pair whose object column is of another type than the fixed table's key (a `uuid` beside integer
    keys, for models with UUID keys) cannot refer to its rows: it was counted, PostgreSQL refused the comparison,
    and every later pair of the table went uncounted, the actor pair that does refer to a customer to delete
    among them ("notifications_notification (operator does not exist: uuid = integer)")."""
    pg.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'shop', 'customer'), (2, 'shop', 'device')",
               "CREATE TABLE shop_customer (id INTEGER PRIMARY KEY, email VARCHAR(254))",
               "CREATE TABLE shop_device (id uuid PRIMARY KEY)",
               "INSERT INTO shop_customer VALUES (1, 'a@x'), (2, 'a@x')",
               "CREATE TABLE notifications_notification (id INTEGER PRIMARY KEY, "
               "action_object_content_type_id INTEGER, action_object_object_id uuid, "
               "actor_content_type_id INTEGER NOT NULL, actor_object_id INTEGER NOT NULL)",
               "CREATE INDEX n_action ON notifications_notification (action_object_content_type_id)",
               "CREATE INDEX n_actor ON notifications_notification (actor_content_type_id)",
               "INSERT INTO notifications_notification VALUES "
               "(1, 2, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1, 2)")
    path = config_file(tmp_path, pg, [{"name": "customers", "table": "shop_customer", "key": ["email"]}])
    dry = json_out(run_cli("fix", "customers", "--config", str(path), "--dry-run", "--json"))
    assert [(u["column"], u["rows"]) for u in dry["undeclared_references"]] == [("actor_object_id", 1)], dry
    assert not any(n.startswith("not counted") for n in dry["notes"]), dry["notes"]


def test_a_type_column_whose_foreign_key_refers_to_another_table_is_no_generic_relation(db, tmp_path):
    """`parent_content_type_id` declared a foreign key to the application's own `cms_kind` table, beside
    `parent_object_id`: its values are cms_kind ids, not Django content types, yet the plan read them as
    `django_content_type` ids and said a row whose kind is 1 refers to the customer to delete ('shop.customer')."""
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'shop', 'customer')",
               "CREATE TABLE shop_customer (id INTEGER PRIMARY KEY, email VARCHAR(254))",
               "INSERT INTO shop_customer VALUES (1, 'a@x'), (2, 'a@x')",
               "CREATE TABLE cms_kind (id INTEGER PRIMARY KEY, label VARCHAR(20))",
               "INSERT INTO cms_kind VALUES (1, 'page')",
               "CREATE TABLE cms_block (id INTEGER PRIMARY KEY, "
               "parent_content_type_id INTEGER REFERENCES cms_kind (id), parent_object_id INTEGER)",
               "CREATE INDEX cms_block_parent ON cms_block (parent_content_type_id)",
               "INSERT INTO cms_block VALUES (1, 1, 2)")
    path = config_file(tmp_path, db, [{"name": "customers", "table": "shop_customer", "key": ["email"]}])
    dry = json_out(run_cli("fix", "customers", "--config", str(path), "--dry-run", "--json"))
    assert dry["undeclared_references"] == [], dry["undeclared_references"]


def test_a_generic_relation_to_a_model_with_its_own_table_name_is_counted(db, tmp_path):
    """A Django model whose `Meta.db_table` names its table itself (`members` for `notes.member`): no content type
    names `members`, so taggit's and the admin log's rows pointing at the members to delete were not counted and the
    plan said nothing (19 of each found on a real taggit + admin site, left pointing at no row). The content types
    naming no table of the schema are counted, each by its name, and said to be so; 'notes.note' names
    `notes_note`: a tag of note 2 is not counted."""
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'notes', 'note'), (2, 'notes', 'member'), "
               "(4, 'sites', 'site')",
               "CREATE TABLE notes_note (id INTEGER PRIMARY KEY)", "INSERT INTO notes_note VALUES (1), (2)",
               "CREATE TABLE members (id INTEGER PRIMARY KEY, name VARCHAR(50))",
               "INSERT INTO members VALUES (1, 'ann'), (2, 'ann'), (3, 'bob')",
               "CREATE TABLE taggit_taggeditem (id INTEGER PRIMARY KEY, content_type_id INTEGER NOT NULL, "
               "object_id INTEGER NOT NULL)",
               "CREATE INDEX taggit_ct_obj ON taggit_taggeditem (content_type_id, object_id)",
               "INSERT INTO taggit_taggeditem VALUES (1, 2, 2), (2, 1, 2), (3, 2, 1), (4, 2, 3)",
               "CREATE TABLE django_admin_log (id INTEGER PRIMARY KEY, content_type_id INTEGER, "
               "object_id VARCHAR(255))", "CREATE INDEX admin_log_obj ON django_admin_log (object_id)",
               "INSERT INTO django_admin_log VALUES (1, 2, '2'), (2, 1, '2')")
    path = config_file(tmp_path, db, [{"name": "members", "table": "members", "key": ["name"]}])
    dry = run_cli("fix", "members", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    found = {(u["table"], u["column"]): u for u in json_out(dry)["undeclared_references"]}
    expected = {"rows": 1, "type_column": "content_type_id", "by_type": [{"value": "notes.member", "rows": 1}],
                "other_types": [], "types_name_no_table": ["notes.member"]}
    assert {k: {f: u[f] for f in expected} for k, u in found.items()} == {
        ("django_admin_log", "object_id"): expected, ("taggit_taggeditem", "object_id"): expected}
    out = " ".join(run_cli("fix", "members", "--config", str(path), "--dry-run").stdout.split())
    assert ("taggit_taggeditem(object_id) is named like a reference and no foreign key declares it; of its rows "
            "whose content_type_id names no table of the schema (a proxy model, a model whose table has a name of "
            "its own, as members may be, or a removed one: 'notes.member' 1), 1 hold the id of a row to delete") in out
    # Django's own `sites.site` (`django_site`) names no table of this schema either: its rows are counted, by name.
    db.execute("INSERT INTO taggit_taggeditem VALUES (6, 4, 2)")
    found = {(u["table"], u["column"]): u for u in json_out(run_cli(
        "fix", "members", "--config", str(path), "--dry-run", "--json"))["undeclared_references"]}
    assert found["taggit_taggeditem", "object_id"]["by_type"] == [
        {"value": "notes.member", "rows": 1}, {"value": "sites.site", "rows": 1}]
    # A content type naming the fixed table by Django's default name: one naming another table is not counted.
    db.execute("INSERT INTO django_content_type VALUES (3, 'auth', 'user')",
               "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, email VARCHAR(50))",
               "INSERT INTO auth_user VALUES (1, 'a'), (2, 'a')",
               "INSERT INTO taggit_taggeditem VALUES (5, 3, 2)", "DELETE FROM taggit_taggeditem WHERE id IN (1, 6)")
    path = config_file(tmp_path, db, [{"name": "users", "table": "auth_user", "key": ["email"]}])
    found = {(u["table"], u["column"]): u for u in json_out(run_cli(
        "fix", "users", "--config", str(path), "--dry-run", "--json"))["undeclared_references"]}
    assert {k: (u["rows"], u["by_type"], u["types_name_no_table"]) for k, u in found.items()} == {
        ("taggit_taggeditem", "object_id"): (1, [{"value": "auth.user", "rows": 1}], []),
        ("django_admin_log", "object_id"): (1, [{"value": "notes.member", "rows": 1}], ["notes.member"])}


def test_a_proxy_or_moved_model_content_type_is_counted_beside_the_one_naming_the_table(db, tmp_path):
    """The admin log writes a proxy model's own content type (`for_concrete_model=False`): 'staff.staffuser' for a
    proxy of `auth.User`, naming no table. A model moved to another app keeps its table (`db_table = "shop_order"`)
    under a new content type, 'billing.order', and leaves the old 'shop.order', which names the table. Each
    content type naming no table of the schema is counted beside the one naming the fixed table; only one naming
    another table ('blog.post', and Django's own 'sites.site' for `django_site`) is not. Before, with a content
    type naming the table, the others were not counted (their rows left pointing at no row, unsaid); and with
    none, only those whose model names the table as a class were: a stale 'old.member' hid 'notes.person'
    (`db_table = "members"`)."""
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'auth', 'user'), (2, 'staff', 'staffuser'), "
               "(3, 'blog', 'post'), (4, 'shop', 'order'), (5, 'billing', 'order'), (6, 'old', 'member'), "
               "(7, 'notes', 'person'), (8, 'sites', 'site')",
               "CREATE TABLE blog_post (id INTEGER PRIMARY KEY)", "CREATE TABLE django_site (id INTEGER PRIMARY KEY)",
               "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, email VARCHAR(50))",
               "INSERT INTO auth_user VALUES (1, 'a'), (2, 'a')",
               "CREATE TABLE shop_order (id INTEGER PRIMARY KEY, ref VARCHAR(50))",
               "INSERT INTO shop_order VALUES (1, 'r'), (2, 'r')",
               "CREATE TABLE members (id INTEGER PRIMARY KEY, name VARCHAR(50))",
               "INSERT INTO members VALUES (1, 'ann'), (2, 'ann')",
               "CREATE TABLE django_admin_log (id INTEGER PRIMARY KEY, content_type_id INTEGER, "
               "object_id VARCHAR(255))", "CREATE INDEX admin_log_obj ON django_admin_log (object_id)",
               "INSERT INTO django_admin_log VALUES (1, 1, '2'), (2, 2, '2'), (3, 3, '2'), (4, 8, '2')")

    def counted(table: str) -> tuple[int, list[str], list[str]]:
        path = config_file(tmp_path, db, [{"name": "c", "table": table, "key": [
            {"auth_user": "email", "shop_order": "ref", "members": "name"}[table]]}])
        found = json_out(run_cli("fix", "c", "--config", str(path), "--dry-run", "--json"))["undeclared_references"]
        assert [u["column"] for u in found] == ["object_id"], found
        return found[0]["rows"], sorted(t["value"] for t in found[0]["by_type"]), found[0]["types_name_no_table"]

    assert counted("auth_user") == (2, ["auth.user", "staff.staffuser"], ["staff.staffuser"])
    db.execute("UPDATE django_admin_log SET content_type_id = 5 WHERE id = 2")
    assert counted("shop_order") == (1, ["billing.order"], ["billing.order"])
    db.execute("UPDATE django_admin_log SET content_type_id = 7 WHERE id = 2")
    assert counted("members") == (1, ["notes.person"], ["notes.person"])


def test_a_uuid_key_stored_as_32_hex_digits_is_found_hyphenated_in_a_text_object_column(db, tmp_path):
    """Django's `UUIDField` is `char(32)` on SQLite, MySQL and MariaDB (before Django 5.0): the primary key holds
    32 hex digits, while the admin log's and guardian's text object columns hold `str(pk)`, hyphenated. The plan
    compared the stored key's text: the admin log rows of the rows to delete were not counted, nor said."""
    one, two = uuid.UUID(int=1), uuid.UUID(int=2)
    uuid_type, stored = ("UUID", str) if db.dialect == "postgresql" else ("CHAR(32)", lambda u: u.hex)
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'shop', 'item')",
               f"CREATE TABLE shop_item (id {uuid_type} PRIMARY KEY, name VARCHAR(10))",
               f"INSERT INTO shop_item VALUES ('{stored(one)}', 'a'), ('{stored(two)}', 'a')",
               "CREATE TABLE django_admin_log (id INTEGER PRIMARY KEY, content_type_id INTEGER, "
               "object_id VARCHAR(255))", "CREATE INDEX admin_log_obj ON django_admin_log (object_id)",
               f"INSERT INTO django_admin_log VALUES (1, 1, '{one}'), (2, 1, '{two}'), (3, 1, '{two.hex}')")
    path = config_file(tmp_path, db, [{"name": "items", "table": "shop_item", "key": ["name"]}])
    found = json_out(run_cli("fix", "items", "--config", str(path), "--dry-run", "--json"))["undeclared_references"]
    # The row to delete is the later one of the two: both its forms are counted, the kept row's are not.
    assert [(u["table"], u["rows"], u["by_type"]) for u in found] == [
        ("django_admin_log", 2, [{"value": "shop.item", "rows": 2}])], found


def test_postgres_counts_a_partitioned_or_inherited_table_once_and_names_one_the_fix_role_cannot_read(pg, tmp_path):
    """A partitioned `event(account_id)` and an inheritance child of `audit_entry` are counted with their parent
    (a query of the parent reads their rows), not again on their own; a table the fix role may not read is named
    as not counted, with PostgreSQL's reason, and the dry run still plans."""
    _seed(pg)
    s = pg.schema
    pg.execute("CREATE TABLE event (id INTEGER, account_id INTEGER, at DATE) PARTITION BY RANGE (at)",
               "CREATE TABLE event_old PARTITION OF event FOR VALUES FROM ('2020-01-01') TO ('2025-01-01')",
               "CREATE TABLE event_new PARTITION OF event FOR VALUES FROM ('2025-01-01') TO ('2030-01-01')",
               "INSERT INTO event VALUES (1, 2, '2021-01-01'), (2, 4, '2026-01-01'), (3, 1, '2026-01-01')",
               "CREATE INDEX event_account ON event (account_id)",
               "CREATE TABLE audit_archive (archived_at DATE) INHERITS (audit_entry)",
               "INSERT INTO audit_archive VALUES (9, 2, 2, NULL, NULL, '2021-01-01')")
    path = config_file(tmp_path, pg, [{"name": "accounts", "table": "account", "key": ["email"]}])
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    found = {u["table"]: u["rows"] for u in json_out(dry)["undeclared_references"]}
    assert found == {"comment": 2, "audit_entry": 3, "event": 2}

    grants = ["ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS", f'GRANT USAGE, CREATE ON SCHEMA "{s}" TO {{user}}',
              f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{s}".account, "{s}".post, "{s}".comment TO {{user}}']
    with server_login("postgresql", *grants, prefix="dw_undecl", password="pw") as role:
        as_role = make_url(pg.url).set(username=role, password="pw").render_as_string(hide_password=False)
        path = write_config(tmp_path / "role.toml", {"app": {"url": pg.url, "fix_url": as_role}},
                            [{"database": "app", "name": "accounts", "table": "account", "key": ["email"]}])
        before = contents(pg, "account", "post", "comment", "audit_entry", "event")
        dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        assert [u["table"] for u in json_out(dry)["undeclared_references"]] == ["comment"]
        unread = [n for n in json_out(dry)["notes"] if n.startswith("not counted")]
        assert len(unread) == 1 and "audit_entry (permission denied for table audit_entry)" in unread[0], unread
        assert "event (permission denied for table event)" in unread[0] and "event_old" not in unread[0], unread
        fixed = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
        assert fixed.exit_code == 0, fixed.output
        undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
        assert undone.exit_code == 0, undone.output
        assert contents(pg, "account", "post", "comment", "audit_entry", "event") == before


def test_a_content_type_table_the_fix_role_cannot_read_is_named(server, tmp_path):
    """A fix role that may not read `django_content_type` cannot tell which generic relation rows refer to the
    fixed table: the plan counted none and said nothing (the admin log's rows of the users to delete left pointing
    at no row; on MariaDB the catalog does not even list the table). It now names the table as not counted, with
    the database's reason."""
    db, s = server, server.schema
    db.execute("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100), model VARCHAR(100))",
               "INSERT INTO django_content_type VALUES (1, 'auth', 'user')",
               "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, email VARCHAR(50))",
               "INSERT INTO auth_user VALUES (1, 'a'), (2, 'a')",
               "CREATE TABLE django_admin_log (id INTEGER PRIMARY KEY, content_type_id INTEGER, "
               "object_id VARCHAR(255))", "CREATE INDEX admin_log_obj ON django_admin_log (object_id)",
               "INSERT INTO django_admin_log VALUES (1, 1, '2')")
    own = f"{s}_own"  # MariaDB: dupewatch's own tables in a database of their own, where the role may do all
    if db.dialect == "postgresql":
        grants = ["ALTER ROLE {user} NOSUPERUSER NOBYPASSRLS", f'GRANT USAGE, CREATE ON SCHEMA "{s}" TO {{user}}',
                  f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{s}".auth_user, "{s}".django_admin_log TO {{user}}']
    else:
        db.execute(f"CREATE DATABASE `{own}`")
        grants = [f"GRANT ALL ON `{own}`.* TO {{user}}", "GRANT PROCESS ON *.* TO {user}",
                  *[f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{s}`.{t} TO {{user}}"
                    for t in ("auth_user", "django_admin_log")]]
    try:
        with server_login(db.dialect, *grants, prefix="dw_ctype", password="pw") as role:
            as_role = make_url(db.url).set(username=role, password="pw").render_as_string(hide_password=False)
            path = write_config(tmp_path / "role.toml", {"app": {"url": db.url, "fix_url": as_role}},
                                [{"database": "app", "name": "users", "table": "auth_user", "key": ["email"]}],
                                **({} if db.dialect == "postgresql" else {"fix": {"schema": own}}))
            dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
            assert dry.stdout, dry.output
            unread = [n for n in json_out(dry)["notes"] if n.startswith("not counted")]
            assert len(unread) == 1 and "django_content_type (" in unread[0], dry.output
            assert "no generic relation counted)" in unread[0] and "denied" in unread[0], unread
    finally:
        if db.dialect != "postgresql":
            db.execute(f"DROP DATABASE IF EXISTS `{own}`")


def test_postgres_counts_in_a_short_transaction_of_their_own_bounded_by_a_lock_timeout(pg, tmp_path):
    """A session holding ACCESS EXCLUSIVE on `comment` (an ALTER TABLE under way): the count gives up after the
    lock timeout and names the table as not counted, instead of waiting (and queueing locks) until it commits."""
    _seed(pg)
    path = config_file(tmp_path, pg, [{"name": "accounts", "table": "account", "key": ["email"]}])
    with pg.engine.connect() as other:
        other.exec_driver_sql(f'LOCK TABLE "{pg.schema}".comment IN ACCESS EXCLUSIVE MODE')
        dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
        other.rollback()
    assert dry.exit_code == 0, dry.output
    assert [u["table"] for u in json_out(dry)["undeclared_references"]] == ["audit_entry"]
    notes = json_out(dry)["notes"]
    assert any("comment (canceling statement due to lock timeout)" in n for n in notes), notes


def test_a_column_named_after_another_table_is_no_evidence_even_when_its_values_match(db, tmp_path):
    """`checkin.user_id` beside a fixed `checkin` (the demo's shape): user ids equal some checkin ids by chance,
    which says nothing about a reference to checkin; only a column named after the fixed table (or beside a
    polymorphic type naming it) is counted. Django's `auth_user` is named by its last word (`user_id`)."""
    db.execute("CREATE TABLE checkin (id INTEGER PRIMARY KEY, user_id INTEGER, day VARCHAR(10))")
    db.execute("CREATE INDEX checkin_user ON checkin (user_id, day)")
    db.execute("INSERT INTO checkin VALUES (1, 1, 'd'), (2, 1, 'd'), (3, 2, 'e'), (4, 2, 'e')")
    path = config_file(tmp_path, db, [{"name": "checkins", "table": "checkin", "key": ["user_id", "day"]}])
    dry = run_cli("fix", "checkins", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json_out(dry)["undeclared_references"] == []


def test_stem_names_table_by_its_name_its_plural_or_its_last_word() -> None:
    from monitor.fix.undeclared import stem_names_table

    assert stem_names_table("account", "accounts", ["accounts"])
    assert stem_names_table("account", "account", ["account"])
    assert stem_names_table("user", "auth_user", ["auth_user", "auth_group"])
    assert not stem_names_table("user", "auth_user", ["auth_user", "users"])  # `users` is what user_id names
    assert not stem_names_table("user", "checkin", ["checkin", "users"])
    assert not stem_names_table("author", "users", ["users"])


def test_sqlite_stops_a_count_past_its_bound_and_names_the_column_not_counted(sqlite_db, tmp_path, monkeypatch):
    """SQLite counts on the fix's own connection, inside its write transaction: a count over a huge table is stopped
    by a progress handler once the bound has passed (here at once) and named as not counted, not run to its end;
    the handler is removed afterwards (the fix then runs as planned)."""
    from monitor.fix import undeclared

    _seed(sqlite_db)
    sqlite_db.execute("CREATE TABLE ledger_entry (id INTEGER PRIMARY KEY, account_id INTEGER)",
                      "CREATE INDEX ledger_entry_account ON ledger_entry (account_id)")
    sqlite_db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
                      "INSERT INTO ledger_entry SELECT i, 2 + 2 * (i % 2) FROM n")
    monkeypatch.setattr(undeclared, "COUNT_SECONDS", 0.0)
    path = config_file(tmp_path, sqlite_db, [{"name": "accounts", "table": "account", "key": ["email"]}])
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert "ledger_entry" not in {u["table"] for u in json_out(dry)["undeclared_references"]}
    notes = [n for n in json_out(dry)["notes"] if n.startswith("not counted")]
    assert any("ledger_entry (stopped after 0 s: interrupted)" in n for n in notes), json_out(dry)["notes"]
    fixed = run_cli("fix", "accounts", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert json_out(fixed)["deleted"] == 2


def test_postgres_says_the_counts_are_read_after_the_plans_snapshot(pg, tmp_path):
    """PostgreSQL counts on a connection of its own, after the snapshot that gave the rows to delete: the note says
    so (SQLite counts inside the snapshot and says nothing of the kind)."""
    _seed(pg)
    path = config_file(tmp_path, pg, [{"name": "accounts", "table": "account", "key": ["email"]}])
    dry = run_cli("fix", "accounts", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json_out(dry)["undeclared_references"]
    assert any("counted just after it, in the data then current" in n for n in json_out(dry)["notes"]), \
        json_out(dry)["notes"]


def _users_beside_predictions(db, *, indexed: bool) -> None:
    """A `users` table with a duplicate beside an ML table `predictions(model, res_id)` (no Odoo table in the
    schema) whose 'gpt.users' row holds the id of the user to delete."""
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(50) NOT NULL)",
               "CREATE TABLE predictions (id INTEGER PRIMARY KEY, model TEXT, res_id INTEGER)",
               "INSERT INTO users VALUES (1, 'a'), (2, 'a')",
               "INSERT INTO predictions VALUES (1, 'gpt.users', 2), (2, 'gpt.users', 1)")
    if indexed:
        db.execute("CREATE INDEX predictions_model_res ON predictions (model, res_id)")


def test_sqlite_res_id_beside_model_outside_odoo_is_no_reference_nor_uncounted(sqlite_db, tmp_path):
    """Found by review: Odoo's `model`/`res_id` rule fired on any schema. Without an index the dry run always
    noted `not counted: predictions(res_id) (no index ...)`; with one, 'gpt.users' (its last dotted part) was
    reported as an undeclared reference to `users`."""
    _users_beside_predictions(sqlite_db, indexed=False)
    path = config_file(tmp_path, sqlite_db, [{"name": "users", "table": "users", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json_out(dry)["undeclared_references"] == []
    assert not [n for n in json_out(dry)["notes"] if "predictions" in n], json_out(dry)["notes"]


def test_sqlite_an_indexed_model_res_id_outside_odoo_is_no_reference(sqlite_db, tmp_path):
    _users_beside_predictions(sqlite_db, indexed=True)
    path = config_file(tmp_path, sqlite_db, [{"name": "users", "table": "users", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json_out(dry)["undeclared_references"] == []


def test_sqlite_an_odoo_model_name_counts_only_whole(sqlite_db, tmp_path):
    """In an Odoo schema (`ir_model` there), only the whole model name, dots for underscores, names the table:
    'gpt.users' (whose last part named `users` before) does not; 'users' does."""
    sqlite_db.execute("CREATE TABLE ir_model (id INTEGER PRIMARY KEY, model VARCHAR(50))",
                      "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(50) NOT NULL)",
                      "CREATE TABLE mail_message (id INTEGER PRIMARY KEY, model TEXT, res_id INTEGER)",
                      "CREATE INDEX mail_message_res ON mail_message (model, res_id)",
                      "INSERT INTO users VALUES (1, 'a'), (2, 'a')",
                      "INSERT INTO mail_message VALUES (1, 'gpt.users', 2), (2, 'users', 2)")
    path = config_file(tmp_path, sqlite_db, [{"name": "users", "table": "users", "key": ["email"]}])
    dry = run_cli("fix", "users", "--config", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    [found] = json_out(dry)["undeclared_references"]
    assert (found["table"], found["rows"], found["by_type"], found["other_types"]) == (
        "mail_message", 1, [{"value": "users", "rows": 1}], [{"value": "gpt.users", "rows": 1}]), found

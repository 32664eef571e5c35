"""`check_then_insert` reads pg_stat_statements' normalised statements. The server here has no preloaded
pg_stat_statements, so these tests feed the reader statement texts as Django, Rails and SQLAlchemy emit them
(the view's `query` and `calls` columns) and a catalog built as reflection would describe it."""

from __future__ import annotations

from monitor.audit.catalog import ColumnInfo, TableInfo, UniqueKey
from monitor.audit.lookups import check_then_insert, parse_lookup


def table(name: str, columns: list[str], uniques: list[tuple[str, ...]] = ()) -> TableInfo:  # type: ignore[assignment]
    cols = {c: ColumnInfo(c, "integer" if c == "id" or c.endswith("_id") else "text", c != "id") for c in columns}
    keys = [UniqueKey("pk", ("id",), "primary_key")] + [UniqueKey(f"uq{i}", u, "index") for i, u in enumerate(uniques)]
    return TableInfo("public", name, cols, ("id",), keys, [], [])


DJANGO_GET = ('SELECT "accounts_profile"."id", "accounts_profile"."user_id", "accounts_profile"."bio" FROM '
              '"accounts_profile" WHERE "accounts_profile"."user_id" = $1 LIMIT $2')
DJANGO_INSERT = 'INSERT INTO "accounts_profile" ("user_id", "bio") VALUES ($1, $2) RETURNING "accounts_profile"."id"'
PRETIX_GET = ('SELECT "pretixbase_userknownloginsource"."id" FROM "pretixbase_userknownloginsource" WHERE '
              '("pretixbase_userknownloginsource"."agent_type" = $1 AND "pretixbase_userknownloginsource".'
              '"device_type" IS NULL AND "pretixbase_userknownloginsource"."os_type" = $2 AND '
              '"pretixbase_userknownloginsource"."user_id" = $3) LIMIT $4')
PRETIX_INSERT = ('INSERT INTO "pretixbase_userknownloginsource" ("user_id", "agent_type", "device_type", "os_type") '
                 'VALUES ($1, $2, $3, $4) RETURNING "pretixbase_userknownloginsource"."id"')
RAILS_GET = 'SELECT "checkins".* FROM "checkins" WHERE "checkins"."user_id" = $1 AND "checkins"."day" = $2 LIMIT $3'
RAILS_INSERT = 'INSERT INTO "checkins" ("user_id", "day", "created_at") VALUES ($1, $2, $3) RETURNING "id"'
SQLA_GET = "SELECT user_account.id, user_account.name FROM user_account WHERE user_account.name = $1"
SQLA_INSERT = "INSERT INTO user_account (name) VALUES ($1) RETURNING user_account.id"


def test_parses_equality_lookups_from_django_rails_and_sqlalchemy() -> None:
    assert parse_lookup(DJANGO_GET, 5).columns == {"user_id"}
    assert parse_lookup(PRETIX_GET, 5).columns == {"agent_type", "device_type", "os_type", "user_id"}
    assert parse_lookup(RAILS_GET, 5).columns == {"user_id", "day"}
    lookup = parse_lookup(SQLA_GET, 5)
    assert (lookup.table, lookup.columns) == ("user_account", {"name"})


def test_ignores_queries_that_are_not_plain_lookups() -> None:
    assert parse_lookup('SELECT * FROM "orders" WHERE "orders"."total" > $1', 1) is None
    assert parse_lookup('SELECT * FROM "a" INNER JOIN "b" ON a.id = b.a_id WHERE "b"."x" = $1', 1) is None
    assert parse_lookup('SELECT * FROM "a" WHERE "a"."x" = $1 OR "a"."y" = $2', 1) is None
    assert parse_lookup('SELECT * FROM "a" WHERE "a"."x" IN (SELECT id FROM b)', 1) is None
    assert parse_lookup("UPDATE a SET x = $1 WHERE id = $2", 1) is None


def test_finds_lookups_followed_by_inserts_without_a_unique_index_ranked_by_calls() -> None:
    tables = [table("accounts_profile", ["id", "user_id", "bio"]),
              table("pretixbase_userknownloginsource", ["id", "user_id", "agent_type", "device_type", "os_type"]),
              table("checkins", ["id", "user_id", "day", "created_at"]),
              table("user_account", ["id", "name"], uniques=[("name",)])]
    statements = [(DJANGO_GET, 1_200), (DJANGO_INSERT, 40), (PRETIX_GET, 90_000), (PRETIX_INSERT, 300),
                  (RAILS_GET, 5_000), (SQLA_GET, 70_000), (SQLA_INSERT, 10)]
    found = check_then_insert(statements, tables)
    # checkins is looked up but never inserted into here; user_account.name has a unique index
    assert [(c.table.name, c.columns, c.calls) for c in found] == [
        ("pretixbase_userknownloginsource", ("user_id", "agent_type", "device_type", "os_type"), 90_000),
        ("accounts_profile", ("user_id",), 1_200),
    ]
    assert all(c.kind == "check_then_insert" and not c.needs_duplicates for c in found)


def test_lookups_by_primary_key_are_not_reported() -> None:
    tables = [table("accounts_profile", ["id", "user_id", "bio"])]
    by_id = 'SELECT * FROM "accounts_profile" WHERE "accounts_profile"."id" = $1'
    assert check_then_insert([(by_id, 10), (DJANGO_INSERT, 5)], tables) == []


def test_a_lookup_on_null_is_not_protected_by_a_nulls_distinct_unique_key() -> None:
    """The Pretix seed: the login-source lookup has `device_type IS NULL`, and the unique key over the same
    columns lets a second row with a NULL in (NULLs distinct); with NULLS NOT DISTINCT it stops it."""
    columns = ["id", "user_id", "agent_type", "device_type", "os_type"]
    key = ("user_id", "agent_type", "device_type", "os_type")
    statements = [(PRETIX_GET, 90_000), (PRETIX_INSERT, 300)]
    weak = table("pretixbase_userknownloginsource", columns, uniques=[key])
    assert [c.columns for c in check_then_insert(statements, [weak])] == [key]
    strict = TableInfo("public", weak.name, weak.columns, ("id",),
                       [UniqueKey("pk", ("id",), "primary_key"), UniqueKey("uq", key, "index", nulls_distinct=False)],
                       [], [])
    assert check_then_insert(statements, [strict]) == []

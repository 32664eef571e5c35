"""`case_insensitive` folds non-ASCII case on every database: the same data gives the same figures on
PostgreSQL, MariaDB/MySQL (with a binary collation, where comparison rules agree) and SQLite."""

from __future__ import annotations

import sqlalchemy as sa

from monitor.dialects.sqlite import CASE_FOLD_FUNCTION

NAMES = ["Émile", "émile", "ÉMILE", "Ökonom", "ökonom", "Ann", "ann", "Straße", "STRASSE", "Zoë"]
# lower() per character: {émile x3, ökonom x2, ann x2}; "straße" and "strasse" stay apart, as in PostgreSQL.
EXPECTED = ("duplicates", 3, 4)


def test_case_insensitive_gives_the_same_figures_on_every_database(db, monitor_for):
    collate = " COLLATE utf8mb4_bin" if db.dialect == "mysql" else ""  # a _ci collation folds accents too
    db.execute(f"CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(40){collate})")
    db.execute("INSERT INTO people (id, name) VALUES (:id, :name)",
               params=[{"id": i, "name": name} for i, name in enumerate(NAMES, 1)])
    monitor = monitor_for({"d": {"url": db.url}}, [
        {"name": "ci", "database": "d", "table": "people", "key": ["name"], "case_insensitive": True},
        {"name": "exact", "database": "d", "table": "people", "key": ["name"]}])
    ci, exact = monitor.run("ci"), monitor.run("exact")
    assert (ci.status, ci.groups, ci.excess_rows) == EXPECTED
    assert (exact.status, exact.groups, exact.excess_rows) == ("ok", 0, 0)
    page = monitor.groups("ci")
    assert sorted((g.key[0], g.rows) for g in page.groups) == [("ann", 2), ("émile", 3), ("ökonom", 2)]
    members = monitor.members("ci", ("émile",))
    assert sorted(r[1] for r in members.rows) == sorted(["Émile", "émile", "ÉMILE"])


def test_sqlite_builtin_lower_is_ascii_only_which_is_why_dupewatch_registers_its_own(sqlite_db):
    # The reason for the registered function: SQLite's own lower() leaves "É" alone.
    assert sqlite_db.scalar("SELECT lower('ÉMILE')") == "Émile"
    from monitor.config import DatabaseConfig
    from monitor.db import Database

    database = Database("d", DatabaseConfig(url=sqlite_db.url))
    try:
        with database.read_only() as conn:
            assert conn.execute(sa.text(f"SELECT {CASE_FOLD_FUNCTION}('ÉMILE')")).scalar() == "émile"
        with database.connect(database.writer) as conn:  # fixes' connections have it too
            assert conn.execute(sa.text(f"SELECT {CASE_FOLD_FUNCTION}('ÖKONOM')")).scalar() == "ökonom"
    finally:
        database.dispose()


def test_sqlite_indexes_use_the_builtin_lower_which_every_connection_has(sqlite_db):
    # An index on dupewatch_lower() would make the table unwritable for the application; the dialect says the
    # fold cannot be indexed, and DDL compiles it to lower().
    from monitor.dialects import for_backend

    rules = for_backend("sqlite")
    table = sa.Table("people", sa.MetaData(), sa.Column("name", sa.String))
    index = sa.Index("ix", rules.case_fold(table.c.name))
    assert str(sa.schema.CreateIndex(index).compile(dialect=sqlite_db.engine.dialect)).strip() == \
        "CREATE INDEX ix ON people (lower(name))"
    assert str(sa.select(rules.case_fold(table.c.name)).compile(dialect=sqlite_db.engine.dialect)) == \
        "SELECT dupewatch_lower(people.name) AS dupewatch_lower_1 \nFROM people"
    assert rules.case_fold_indexable is False

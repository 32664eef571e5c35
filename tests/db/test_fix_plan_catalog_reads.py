"""What a dry run reads of the catalog, counted per referencing table (issue 16 leftover): a table with two foreign
keys to the fixed table was reflected, and its keys, triggers, indexes and publications read, once per foreign key
(on PostgreSQL 68 catalog queries named it against 39 for a table with one). Each referencing table is now read
once per plan, however many of its foreign keys refer to the fixed table. Counted, not timed: every statement the
dry run sends, by SQLAlchemy's `before_cursor_execute` event."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from monitor.fix import make_plan

# A statement reading the catalog (not the tables' rows), as each database spells it.
CATALOG = re.compile(r"pg_catalog|information_schema|to_regclass|\bSHOW\b|\bPRAGMA\b|sqlite_master|sqlite_schema",
                     re.IGNORECASE)
TABLES = ("ledger_one", "ledger_two", "ledger_three")


@contextmanager
def catalog_reads() -> Iterator[Counter[str]]:
    """Per table of `TABLES`: the catalog statements sent meanwhile that name it (in their text or parameters)."""
    counts: Counter[str] = Counter()

    def seen(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if CATALOG.search(statement):
            for name in TABLES:
                if re.search(rf"\b{name}\b", f"{statement} {parameters!r}"):
                    counts[name] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        yield counts
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)


def test_a_referencing_table_with_two_foreign_keys_is_read_as_often_as_one_with_one(db, monitor_for):
    """parent groups {1, 2}; three referencing tables each point a row at the duplicate 2, ledger_two by two
    foreign keys (payer_id and payee_id): every reference is repointed, and ledger_two is read no more often than
    ledger_one or ledger_three."""
    db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL)",
               "INSERT INTO parent VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    for name in TABLES:
        second = ", payee_id INTEGER REFERENCES parent (id)" if name == "ledger_two" else ""
        db.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, payer_id INTEGER REFERENCES parent (id){second})",
                   f"INSERT INTO {name} (id, payer_id) VALUES (10, 2)")
    db.execute("UPDATE ledger_two SET payee_id = 2")
    monitor = monitor_for({"app": {"url": db.url}},
                          [{"name": "c", "database": "app", "table": "parent", "key": ["email"]}])
    with catalog_reads() as counts:
        plan = make_plan(monitor, "c")
    assert plan.blockers == []
    assert sorted((r.reference.table, r.reference.columns, r.rows) for r in plan.references) == [
        ("ledger_one", ("payer_id",), 1), ("ledger_three", ("payer_id",), 1),
        ("ledger_two", ("payee_id",), 1), ("ledger_two", ("payer_id",), 1)]
    assert counts["ledger_one"] > 0
    assert counts["ledger_two"] == counts["ledger_one"] == counts["ledger_three"], dict(counts)

"""What live mode saves of a check's known groups (`LiveGroups.saved_changes`), and the first count against the
groups saved before (`LiveGroups.resync(saved=...)`), on the three databases: identities as each computes them."""

from __future__ import annotations

from typing import Any

from dbtest import TestDatabase
from monitor.live.groups import LiveGroups, Named


def groups_of(db: TestDatabase, monitor_for: Any) -> tuple[Any, LiveGroups]:
    db.execute("CREATE TABLE signup (id integer PRIMARY KEY, email varchar(50) NOT NULL)",
               "CREATE INDEX signup_email ON signup (email)",
               "INSERT INTO signup (id, email) VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'b'), (5, 'c')")
    monitor = monitor_for({"app": {"url": db.url}},
                          [{"name": "signups", "database": "app", "table": "signup", "key": ["email"]}])
    with monitor.database("app").read_only() as conn:
        resolved = monitor.resolve("signups", conn)
    return monitor, LiveGroups(resolved)


def test_a_first_count_against_saved_groups_counts_only_those_not_saved_and_saves_what_changed(
        db: TestDatabase, monitor_for: Any) -> None:
    monitor, groups = groups_of(db, monitor_for)
    database = monitor.database("app")
    with database.read_only() as conn:  # each step its own transaction (a snapshot sees what the test wrote)
        assert groups.resync(conn) == 2
    present, gone, replace = groups.saved_changes() or ([], [], False)
    assert (len(present), gone, replace) == (2, [], True)  # the first save: all of them
    assert groups.saved_changes() is None  # nothing changed since
    # Another reader (a restarted daemon) whose saved groups are these: the group of 'c' formed meanwhile.
    db.execute("INSERT INTO signup (id, email) VALUES (6, 'c')")
    again = LiveGroups(groups.resolved)
    with database.read_only() as conn:
        assert again.resync(conn, set(present)) == 1
        assert LiveGroups(groups.resolved).resync(conn, set()) == 3  # nothing saved for it: all new
    again.saved_changes()
    # A change dissolves the group of 'a': the next save names it gone, and only it.
    db.execute("DELETE FROM signup WHERE id = 2")
    with database.read_only() as conn:
        figures = again.apply(conn, Named(left={("a",)}))
    assert figures is not None and figures.groups == 2
    changed = again.saved_changes()
    assert changed is not None and (changed[0], len(changed[1]), changed[2]) == ([], 1, False)
    # A later full count (a gap, an overflow) saves only what it added or removed.
    db.execute("INSERT INTO signup (id, email) VALUES (7, 'a'), (8, 'd'), (9, 'd')")
    with database.read_only() as conn:
        assert again.resync(conn) == 2
    changed = again.saved_changes()
    assert changed is not None and (len(changed[0]), changed[1], changed[2]) == (2, [], False)

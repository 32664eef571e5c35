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


def test_postgresql_a_domain_key_named_by_a_change_is_recounted_without_running_the_domains_check(
        pg: TestDatabase, monitor_for: Any) -> None:
    """A change names its key as text, bound back typed: cast to the domain, the cast ran the domain's CHECK, here a
    VOLATILE function (nextval: refused in the read-only session, so every re-count of the check failed; another
    could take locks or write). Cast to its base type, as it is stored, nothing of the domain's runs."""
    pg.execute("CREATE SEQUENCE calls",
               "CREATE FUNCTION counted(n integer) RETURNS boolean VOLATILE LANGUAGE sql"
               " AS 'SELECT nextval(''calls'') > 0'",
               "CREATE DOMAIN account AS integer CHECK (counted(VALUE))",
               "CREATE TABLE signup (id integer PRIMARY KEY, owner account NOT NULL)",
               "INSERT INTO signup (id, owner) VALUES (1, 7), (2, 7), (3, 8), (4, 8)")
    calls = pg.scalar("SELECT last_value FROM calls")
    monitor = monitor_for({"app": {"url": pg.url}},
                          [{"name": "signups", "database": "app", "table": "signup", "key": ["owner"]}])
    database = monitor.database("app")
    with database.read_only() as conn:
        groups = LiveGroups(monitor.resolve("signups", conn))
        assert groups.resync(conn) == 2
    pg.execute("DELETE FROM signup WHERE id = 2")
    with database.read_only() as conn:
        figures = groups.apply(conn, Named(left={("7",)}))
    assert figures is not None and figures.groups == 1
    assert pg.scalar("SELECT last_value FROM calls") == calls  # the CHECK never ran

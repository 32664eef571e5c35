"""Fixtures shared by every test (defined in dbtest.py, which tests also import helpers from: a module named
`conftest` would be ambiguous with tests/tui/conftest.py)."""

import gc

from dbtest import (  # noqa: F401
    db,
    dupewatch,
    monitor_for,
    mysql,
    other_session,
    own_pg,
    pg,
    pg_citext_elsewhere,
    promtool,
    server,
    sqlite_db,
)


def pytest_collection_finish(session: object) -> None:
    """What collection made (the test modules, dupewatch and its dependencies imported, the items) lives to the end
    of the run: frozen out of the garbage collector's reach, so that each of its full collections during the run (and
    pytest's five at the end) no longer walks it. Objects made by tests are collected as before. (tests/unit with a
    dashboard file: 9.3 s of 80-105 s in collections after collection, 4.9 s frozen.)"""
    gc.freeze()

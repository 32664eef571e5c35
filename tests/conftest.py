"""Fixtures shared by every test (defined in dbtest.py, which tests also import helpers from: a module named
`conftest` would be ambiguous with tests/tui/conftest.py)."""

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

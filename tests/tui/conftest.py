"""Fixtures of the dashboard tests (defined in tui_support, which the tests also import helpers from)."""

from tui_support import demo_app, demo_db, demo_template, make_app  # noqa: F401

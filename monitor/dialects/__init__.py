"""One module per database: everything dupewatch does differently on PostgreSQL, MariaDB/MySQL and SQLite.

`for_backend(name)` returns the `Dialect` of a SQLAlchemy backend name; `base.Dialect`'s docstring lists what a
dialect must provide. No module outside this package compares a dialect's name.
"""

from __future__ import annotations

from functools import cache

from monitor.dialects.base import Dialect, ForbiddenCall, NamedLock

__all__ = ["Dialect", "ForbiddenCall", "NamedLock", "for_backend"]


@cache
def for_backend(backend: str) -> Dialect:
    """The dialect of a SQLAlchemy backend name (`postgresql`, `mysql`, `mariadb`, `sqlite`); KeyError otherwise."""
    if backend == "postgresql":
        from monitor.dialects.postgresql import PostgreSQL

        return PostgreSQL()
    if backend in ("mysql", "mariadb"):
        from monitor.dialects.mysql import MySQL

        return MySQL()
    if backend == "sqlite":
        from monitor.dialects.sqlite import SQLite

        return SQLite()
    raise KeyError(backend)

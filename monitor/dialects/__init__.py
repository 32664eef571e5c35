"""One module per database: everything dupewatch does differently on PostgreSQL, MariaDB/MySQL and SQLite.

`for_backend(name)` returns the `Dialect` of a SQLAlchemy backend name; `base.Dialect`'s docstring lists what a
dialect must provide. No module outside this package compares a dialect's name.
"""

from __future__ import annotations

from functools import cache

from monitor.dialects.base import Dialect, KeyViolation, NamedLock, UniqueViolation

__all__ = ["DEFAULT_DRIVERS", "SUPPORTED_BACKENDS", "Dialect", "KeyViolation", "NamedLock", "UniqueViolation",
           "for_backend"]

SUPPORTED_BACKENDS = ("postgresql", "mysql", "mariadb", "sqlite")  # SQLAlchemy backend names with a dialect here
# The driver a bare `postgresql://` / `mysql://` URL gets (SQLAlchemy's defaults, psycopg2 and mysqlclient, are
# not installed with dupewatch).
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                   "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


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

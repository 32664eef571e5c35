"""What the audit asks each database directly, where SQLAlchemy reflection falls short: row estimates, the
definitions of invalid unique indexes, per-query timeouts, sampled scans, and query statistics.

`AuditQueries` holds what most databases share (no statistics, a bounded scan as the sample); one module per
database overrides it (`queries_postgresql.py`, `queries_mysql.py`, `queries_sqlite.py`), and `queries_for`
picks the one registered for the connection's `monitor.dialects.Dialect` class or its nearest base class, so a
PostgreSQL-protocol dialect subclassing `PostgreSQL` gets PostgreSQL's queries. No dialect name is compared.
Every query reads the catalog with bound parameters; table names reach SQL only through SQLAlchemy's quoting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from monitor.dialects import Dialect, for_backend


@dataclass
class CatalogExtras:
    row_estimates: dict[str, int] = field(default_factory=dict)  # table -> rows, from statistics
    invalid_unique_indexes: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {index: DDL}
    equality_exclusions: dict[str, set[str]] = field(default_factory=dict)  # table -> exclusion constraints, all `=`
    partition_of: dict[str, tuple[str, str]] = field(default_factory=dict)  # partition -> its parent (schema, name)
    # table -> {column: the text of its server default}, only for a default the database says is a constant (a
    # literal, not an expression): the value a row left at it holds. Never SQL to run: see constant_default_text
    constant_defaults: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class StatementStats:
    statements: list[tuple[str, int]]  # (normalised query text, calls)
    unavailable: str | None = None  # why there are none


class AuditQueries:
    """The audit's questions to one database family; the defaults hold where a database keeps no more."""

    product = "this database"

    def catalog_extras(self, conn: Connection, schema: str) -> CatalogExtras:
        return CatalogExtras()

    def set_timeout(self, conn: Connection, seconds: float) -> None:
        """Bound the next statements of this transaction to `seconds`."""

    def sample(self, table: sa.TableClause, columns: list[str], rows: int,
               sample_rows: int) -> tuple[FromClause, float]:
        """A FROM clause reading about `sample_rows` of the table's `rows`, and the factor that scales counts
        found in it up to the whole table: the first `sample_rows` rows the server returns (InnoDB and SQLite:
        primary key / rowid order)."""
        inner = sa.select(*(table.c[c] for c in columns)).select_from(table).limit(sample_rows).subquery("dw_scan")
        return inner, max(1.0, rows / sample_rows)

    def statement_stats(self, conn: Connection) -> StatementStats:
        return StatementStats([], f"check_then_insert needs PostgreSQL's pg_stat_statements; not available on "
                                  f"{self.product}")


QUOTED_LITERAL = re.compile(r"'((?:[^']|'')*)'")
PLAIN_INTEGER = re.compile(r"-?[0-9]+")


def constant_default_text(rendered: str, backslash_escapes: bool = True) -> str | None:
    """The value of a default the database rendered as a constant: a quoted string literal (quotes doubled; with
    `backslash_escapes`, one holding a backslash is left alone, its escapes unread) or a plain integer. None for
    anything else, an expression included: never evaluated, never pasted into a query."""
    quoted = QUOTED_LITERAL.fullmatch(rendered)
    if quoted is not None:
        text = quoted.group(1)
        return None if backslash_escapes and "\\" in text else text.replace("''", "'")
    return rendered if PLAIN_INTEGER.fullmatch(rendered) else None


def queries_for(conn: Connection) -> AuditQueries:
    """The audit queries of the connection's database (its `Dialect` class or nearest registered base)."""
    from monitor.audit.queries_mysql import MySQLQueries
    from monitor.audit.queries_postgresql import PostgreSQLQueries
    from monitor.audit.queries_sqlite import SQLiteQueries
    from monitor.dialects.mysql import MySQL
    from monitor.dialects.postgresql import PostgreSQL
    from monitor.dialects.sqlite import SQLite

    registered: dict[type[Dialect], AuditQueries] = {PostgreSQL: PostgreSQLQueries(), MySQL: MySQLQueries(),
                                                     SQLite: SQLiteQueries()}
    for kind in type(for_backend(conn.dialect.name)).__mro__:
        if kind in registered:
            return registered[kind]
    return AuditQueries()


def set_query_timeout(conn: Connection, seconds: float) -> None:
    """Bound the next statements of this transaction to `seconds` (at least 1 ms)."""
    queries_for(conn).set_timeout(conn, max(seconds, 0.001))

"""What the fix must learn from a database's own catalog, where SQLAlchemy's reflection falls short.

Reflection inspects one schema at a time and cannot say who may see what, so the fix asks the catalog:

- `foreign_keys_to(conn, table)`: every foreign key referring to the table, from *any* schema (PostgreSQL
  `pg_constraint.confrelid`) or database (MySQL/MariaDB `information_schema.KEY_COLUMN_USAGE`), with its
  ON DELETE and ON UPDATE actions, whether the fixing role may read and write the referencing table and
  (PostgreSQL) whether row-level security may hide its rows from the role.
- `delete_hooks(conn, table)`: what makes a DELETE do something else than delete the rows it names: triggers
  (PostgreSQL `pg_trigger`, MySQL `information_schema.TRIGGERS`, SQLite `sqlite_master`), PostgreSQL rules
  (`pg_rewrite`) and inheritance children (`pg_inherits`).
- `write_triggers(schema, name, event, columns)`: the triggers (and PostgreSQL rules) a fix's write fires, only
  those enabled for the session (PostgreSQL `tgenabled`/`ev_enabled` under `session_replication_role`); MySQL/
  MariaDB and SQLite read a table's triggers once (`triggers`) for this and `delete_hooks`.
- `raising_triggers(context)`: the triggers whose function a PostgreSQL error's CONTEXT names (the ones that
  raised it); none elsewhere, where errors do not say.
- `table_identity(conn, table)`: the resolved table, so that `parent` and `public.parent` are one table
  (PostgreSQL: its oid; MySQL/MariaDB: schema and name as stored; SQLite: the name, case-folded as SQLite does).
- `restrict_access(conn, table)`: nothing but the owner may read a bookkeeping table (PostgreSQL: revoke what
  default privileges granted and enable row-level security with no policy; the owner is exempt unless forced),
  and a publication may replicate its deletes (PostgreSQL: REPLICA IDENTITY FULL).
- `unique_keys(table)`: every valid unique constraint and unique index, as the catalog states it (PostgreSQL
  `pg_index`, expressions and predicates deparsed by the server, and exclusion constraints of equalities only;
  MySQL/MariaDB `information_schema.STATISTICS`;
  SQLite `PRAGMA index_list`/`index_xinfo`); `distinct_entity_keys(conn, table, key)` keeps those that can tell
  the rows of a duplicate group apart (see its docstring).
- `resolved_schema(table)`: the schema the server resolves the table in (PostgreSQL `to_regclass`, which follows
  `search_path`, so `"$user", public` finds `public.t` even when a schema named after the role exists).

One module per database, its class chosen by `catalog_for(conn)` from the connection's `Dialect` class.
Identifiers reach the catalog as bound values or as `regclass` text quoted by SQLAlchemy's preparer, never pasted
into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.dialects import Dialect, for_backend
from monitor.dialects.mysql import MySQL
from monitor.dialects.postgresql import PostgreSQL
from monitor.dialects.sqlite import SQLite
from monitor.fix.catalog.base import Catalog, DeleteHooks, ForeignKey, UniqueKey, qualified
from monitor.fix.catalog.mysql import MySqlCatalog
from monitor.fix.catalog.postgresql import PostgresCatalog
from monitor.fix.catalog.sqlite import SqliteCatalog

__all__ = ["Catalog", "DeleteHooks", "ForeignKey", "MySqlCatalog", "PostgresCatalog", "SqliteCatalog", "UniqueKey",
           "catalog_for", "distinct_entity_keys", "qualified"]

# Each database's catalog, by the class of its dialect.
_CATALOGS: dict[type[Dialect], type[Catalog]] = {PostgreSQL: PostgresCatalog, MySQL: MySqlCatalog,
                                                 SQLite: SqliteCatalog}


def catalog_for(conn: Connection) -> Catalog:
    return _CATALOGS[type(for_backend(conn.dialect.name))](conn)


def distinct_entity_keys(conn: Connection, table: sa.Table, key: Sequence[str],
                         foreign_keys: Sequence[ForeignKey] | None = None) -> list[UniqueKey]:
    """The unique constraints and indexes of `table` that say two rows sharing the values of `key` are different
    entities when they hold different non-NULL values on them (or NULL and a value, for PostgreSQL's `NULLS NOT
    DISTINCT`): every valid one except the primary key (which always differs), those holding every primary key
    column (which differ alike) and those whose columns all lie within `key` (the rows of a group share them).

    Expression indexes are kept (their parts are the server's deparsed expressions); partial indexes apply under
    their predicate. SQLite keeps expressions and predicates only as the CREATE INDEX text, which dupewatch does
    not parse: an expression index there is `opaque` (rows differing in any column outside the primary key are
    told apart), and a partial one is applied to every row (false refusals, never a merge).

    Then, per set of columns that `foreign_keys` (those referring to `table`; None: asked from the catalog) refer
    to with a primary key column, the columns beside the primary key (`tenant_id` of `orders(tenant_id, user_id)
    REFERENCES users(tenant_id, id)`), as a key whose NULL is a value (`UniqueKey.referenced_by`): a repoint would
    move the referencing rows from one such value to another (another tenant), so rows differing on them are
    different entities too, key columns or not."""
    within = set(key)
    # A unique key holding every primary key column (`UNIQUE (tenant_id, id)`, which a composite foreign key
    # needs in a multi-tenant schema) differs between any two rows, as the primary key does: no evidence either.
    primary = {c.name for c in table.primary_key.columns}
    found = [u for u in catalog_for(conn).unique_keys(table)
             if not u.primary and not (all(c is not None for c in u.columns) and set(u.columns) <= within)
             and not (primary and primary <= set(u.columns))]
    if foreign_keys is None:
        foreign_keys = catalog_for(conn).foreign_keys_to(table)
    # Only a foreign key holding a primary key column: one to other columns alone (`REFERENCES users(email)`)
    # refers to a unique key, which the list above holds already unless the check's key holds it (and a check on
    # that key exists to repoint such rows).
    referring: dict[tuple[str, ...], list[ForeignKey]] = {}
    for fk in foreign_keys:
        if primary & set(fk.referred_columns) and set(fk.referred_columns) - primary:
            referring.setdefault(fk.referred_columns, []).append(fk)
    for referred, fks in referring.items():
        labels = ", ".join(dict.fromkeys(fk.label for fk in fks))
        verb = "references" if len(fks) == 1 else "reference"
        beside = tuple(c for c in referred if c not in primary)
        found.append(UniqueKey(f"{labels} {verb}", beside, nulls_not_distinct=True,
                               referenced_by=f"{labels} {verb} {table.name}({', '.join(referred)})"))
    return found
